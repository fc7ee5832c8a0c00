"""The local stack beyond the happy path: a broker whose topics persist in SeaweedFS,
`stack status` with nothing running, and clear errors when MariaDB cannot be used."""

from __future__ import annotations

import subprocess
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from edxstream.core import kafka_admin
from tests.conftest import edxstream_cmd, env_for, free_port


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, v in enumerate(values):
        p.produce(topic, key=str(i % 3).encode(), value=v)
    assert p.flush(30) == 0


def _consume(bootstrap: str, topic: str, n: int, group: str | None = None, commit: bool = False) -> list[bytes]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    if commit:
        c.commit(asynchronous=False)
    c.close()
    return got


def _committed(bootstrap: str, topic: str, group: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    offsets = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
    c.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def test_persistent_broker_keeps_messages_and_offsets_across_restarts(persistent_broker, settings):
    s = settings.model_copy(update={"kafka_bootstrap": persistent_broker.bootstrap})
    kafka_admin.ensure_topics(s, topics=[s.raw_topic])
    first = [f"first-{i}".encode() for i in range(50)]
    _produce(s.kafka_bootstrap, s.raw_topic, first)
    group = f"g-{uuid.uuid4().hex[:8]}"
    assert sorted(_consume(s.kafka_bootstrap, s.raw_topic, 50, group, commit=True)) == sorted(first)

    # the broker process dies; the store keeps running
    persistent_broker.stop()
    persistent_broker.start()
    assert sorted(_consume(s.kafka_bootstrap, s.raw_topic, 50)) == sorted(first)
    assert _committed(s.kafka_bootstrap, s.raw_topic, group, s.partitions) == 50

    # then both die (SIGKILL), as in a machine crash, and come back
    second = [f"second-{i}".encode() for i in range(20)]
    _produce(s.kafka_bootstrap, s.raw_topic, second)
    persistent_broker.stop_store()
    persistent_broker.start()
    assert sorted(_consume(s.kafka_bootstrap, s.raw_topic, 70)) == sorted(first + second)
    # the group resumes after what it committed: only the second batch is new to it
    assert sorted(_consume(s.kafka_bootstrap, s.raw_topic, 20, group)) == sorted(second)


def test_stack_up_with_s3_storage_keeps_topics_across_down_and_up(settings):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    env = env_for(settings, EDXSTREAM_KAFKA_BOOTSTRAP=bootstrap, EDXSTREAM_BROKER_STORAGE="s3")
    s = settings.model_copy(update={"kafka_bootstrap": bootstrap})

    def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(edxstream_cmd("stack", *args), env=env, capture_output=True, text=True, timeout=timeout)

    try:
        up = cli("up")
        assert up.returncode == 0, up.stdout + up.stderr
        lines = {line.split()[0]: line for line in up.stdout.splitlines() if line.strip()}
        assert "answers" in lines["seaweedfs"] and "Tansu (s3 store)" in lines["kafka"], up.stdout
        kafka_admin.ensure_topics(s, topics=[s.raw_topic])
        values = [f"v{i}".encode() for i in range(30)]
        _produce(bootstrap, s.raw_topic, values)

        down = cli("down")
        assert down.returncode == 0, down.stderr
        assert "seaweedfs" in down.stdout and down.stdout.count("stopped (pid") == 2, down.stdout
        assert not kafka_admin.broker_answers(s, timeout=1.0)

        again = cli("up")
        assert again.returncode == 0, again.stdout + again.stderr
        assert sorted(_consume(bootstrap, s.raw_topic, 30)) == sorted(values)
    finally:
        cli("down")


def test_status_with_nothing_running_prints_down_and_exits_1_for_degraded(settings):
    env = env_for(
        settings,
        EDXSTREAM_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        EDXSTREAM_MYSQL_DSN=f"mysql://edxstream:edxstream@127.0.0.1:{free_port()}/edxstream",
    )
    r = subprocess.run(edxstream_cmd("stack", "status"), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert "DOWN" in lines["kafka"] and "DOWN" in lines["mysql"], r.stdout
    assert lines["status:"] == "status: degraded (not answering: kafka, mysql)", r.stdout
    # the embedded engine needs no server: it answers whenever its folder can be opened
    assert "answers" in lines["clickhouse"], r.stdout


def test_up_names_the_problem_when_mariadb_runs_on_another_port(settings, broker):
    # MariaDB is installed and running (the mariadb fixture made sure), but not on this port
    env = env_for(settings, EDXSTREAM_MYSQL_DSN=f"mysql://root:@127.0.0.1:{free_port()}/edxstream")
    r = subprocess.run(edxstream_cmd("stack", "up"), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "MariaDB is running but does not answer" in r.stderr, r.stderr


def test_up_does_not_try_to_start_a_remote_mysql(settings):
    env = env_for(settings, EDXSTREAM_MYSQL_DSN="mysql://u:p@192.0.2.1:3306/x")  # TEST-NET: unroutable
    r = subprocess.run(edxstream_cmd("stack", "up"), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "192.0.2.1:3306 does not answer" in r.stderr, r.stderr


def test_web_up_starts_only_its_own_app_and_names_a_port_held_by_another(tmp_path):
    """An app on the port that this home did not start (another program, or the web app
    of another EDXSTREAM_HOME with other data and accounts) is an error naming the
    setting to change; the app this home started is 'already running'."""
    import http.server
    import os
    import threading

    import pytest

    from edxstream.core import settings as settings_mod
    from edxstream.core.errors import UserError
    from edxstream.ops import stack

    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = settings_mod.load(home=tmp_path / "home", web_app_port=port, web_host="127.0.0.1")
        with pytest.raises(UserError, match="EDXSTREAM_WEB_APP_PORT"):
            stack.web_up(s, demo=True)
        pidfile = s.data_dir / "run" / "web.pid"
        pidfile.parent.mkdir(parents=True)
        pidfile.write_text(str(os.getpid()))  # a live process this home started
        assert stack.web_up(s, demo=True) == f"already running at {s.web_url}/"
    finally:
        server.shutdown()
        server.server_close()
