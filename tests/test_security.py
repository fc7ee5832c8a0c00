"""Keys and secrets: the sinks refuse the public default pseudonym key, and no command
prints a password, in errors or otherwise."""

from __future__ import annotations

import subprocess

from edxstream.core import settings as settings_mod
from edxstream.ops import demo_cli
from tests.conftest import REPO, edxstream_cmd, env_for


def run(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(edxstream_cmd(*args), env=env, cwd=REPO, capture_output=True, timeout=120, text=True)


def test_the_clickhouse_sink_refuses_the_default_key(settings):
    p = run(env_for(settings, EDXSTREAM_PSEUDONYM_KEY="change-me"), "sink", "clickhouse", "--max-idle", "1")
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("edxstream:") and "EDXSTREAM_PSEUDONYM_KEY" in p.stderr and "Traceback" not in p.stderr
    # nothing was created: the refusal comes before the sink touches ClickHouse
    assert not (settings.home / "clickhouse-subprocess").exists()
    # pseudonymisation off: no key is used, nothing to refuse
    off = run(env_for(settings, EDXSTREAM_PSEUDONYM_KEY="change-me", EDXSTREAM_PSEUDONYMIZE="false"),
              "sink", "clickhouse", "--max-idle", "1")
    assert off.returncode == 0, off.stderr


def test_a_bad_dsn_is_one_line_without_its_password(settings):
    secret = "s3cr3t-pw"
    p = run(env_for(settings, EDXSTREAM_MYSQL_DSN=f"postgres://edx:{secret}@127.0.0.1:3306/db"), "db", "status")
    assert p.returncode == 2
    assert secret not in p.stdout + p.stderr and "Traceback" not in p.stderr
    assert "postgres://edx:***@127.0.0.1:3306/db" in p.stderr


def test_the_demo_help_text_names_no_password():
    s = settings_mod.load(mysql_dsn="mysql://edxstream:s3cr3t-pw@127.0.0.1:3306/edxstream")
    text = demo_cli.how_to_query(s, "edxstream_demo")
    assert "s3cr3t-pw" not in text and "mysql://edxstream:***@127.0.0.1:3306/edxstream" in text


def test_redact():
    assert settings_mod.redact("mysql://u:p%40ss@h:3306/d") == "mysql://u:***@h:3306/d"
    assert settings_mod.redact("http://h:8123") == "http://h:8123"
