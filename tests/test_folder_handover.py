"""The embedded ClickHouse folder (one process at a time) and the processes that share it:
the web app started first holds it and serves queries, a real ClickHouse sink started
later takes it over and writes, and the web app, `query` and `analyze` then go through
the sink. All real processes; the figures are checked against the events produced."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import requests

from edxstream.core import kafka_admin
from edxstream.core.chdb_server import endpoint_file
from tests.conftest import edxstream_cmd, env_for
from tests.test_query_while_running import COURSE, _produce

PASSWORD = "handover-password-123"


def _wait(what: str, check, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _endpoint(settings) -> dict | None:
    try:
        return json.loads(endpoint_file(settings).read_text())
    except (OSError, ValueError):
        return None


def _query(env, sql: str) -> str | None:
    r = subprocess.run(edxstream_cmd("query", sql, "--format", "csv"), env=env, capture_output=True, text=True)
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None


def test_web_app_first_then_sink_then_analyze(settings):
    kafka_admin.ensure_topics(settings)
    env = env_for(settings, EDXSTREAM_WEB_SECRET_KEY="handover-key-long-enough-0123456789")
    sub = settings.model_copy(update={"clickhouse_url": env["EDXSTREAM_CLICKHOUSE_URL"]})
    subprocess.run(
        edxstream_cmd("user", "add", "ops", "--role", "operator"),
        env={**env, "EDXSTREAM_WEB_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
    )
    web = subprocess.Popen(
        edxstream_cmd("serve"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    sink = None
    try:
        # the web app opens the free folder itself and serves queries on it, yielding it
        first = _wait("the web app's endpoint", lambda: (_endpoint(sub) or {}).get("pid") == web.pid and _endpoint(sub))
        assert first["yields"] is True
        assert _query(env, "SELECT 41 + 1 AS x") == "42"

        # a sink started now takes the folder over and writes the produced events
        _, n_events = _produce(settings)
        sink = subprocess.Popen(
            edxstream_cmd("sink", "clickhouse"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        held = _wait("the sink's endpoint", lambda: (_endpoint(sub) or {}).get("pid") == sink.pid and _endpoint(sub))
        assert held["yields"] is False
        assert _wait("the sink's events", lambda: _query(env, "SELECT count() FROM events") == str(n_events))
        assert sink.poll() is None and web.poll() is None

        # the web app reads through the sink: its course list has the events
        base = f"http://127.0.0.1:{settings.web_app_port}"
        s = requests.Session()
        token = re.search(r'name="csrf_token" value="([^"]+)"', s.get(base + "/login", timeout=30).text).group(1)
        s.post(base + "/login", data={"name": "ops", "password": PASSWORD, "csrf_token": token}, timeout=30)

        def events_listed():
            r = s.get(base + "/", timeout=60)
            m = re.search(re.escape(COURSE) + r'</a></td>\s*<td class="n">([^<]+)</td>', r.text)
            return m.group(1) if r.status_code == 200 and m else None

        assert _wait("the course on the web app", events_listed) == str(n_events)

        # analyze writes its tables through the sink too (a course this small gets its
        # "not enough data" rows)
        r = subprocess.run(edxstream_cmd("analyze"), env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        runs = _query(env, f"SELECT count() FROM analysis_runs WHERE course_id = '{COURSE}'")
        assert runs is not None and int(runs) > 0
        assert (_endpoint(sub) or {}).get("pid") == sink.pid and sink.poll() is None
    finally:
        for p in (sink, web):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(60)


def test_a_short_writer_takes_the_folder_from_the_web_app_and_gives_it_back(settings):
    """`edxstream db init` (any command that writes ClickHouse itself) run while the web
    app holds the folder: it gets the folder, and once it exits the web app opens it
    again and serves queries."""
    env = env_for(settings, EDXSTREAM_WEB_SECRET_KEY="handover-key-long-enough-0123456789")
    sub = settings.model_copy(update={"clickhouse_url": env["EDXSTREAM_CLICKHOUSE_URL"]})
    web = subprocess.Popen(
        edxstream_cmd("serve"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait("the web app's endpoint", lambda: (_endpoint(sub) or {}).get("pid") == web.pid)
        r = subprocess.run(edxstream_cmd("db", "init"), env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        # the web app opens the folder again when next asked (its figures' refresh asks)
        _wait("the web app's endpoint again", lambda: (_endpoint(sub) or {}).get("pid") == web.pid)
        assert _query(env, "SELECT count() FROM events") == "0"
        assert web.poll() is None
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(60)
