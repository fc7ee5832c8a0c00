"""Broker restarts never make counts go backwards: the default `stack up` keeps topics and
committed offsets (SeaweedFS), `stack up` right after `stack down` starts a broker
instead of taking the stopping one for a running one, and a worker carried across a
restart of the persistent broker ends with exact counts."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

from edxstream.core import kafka_admin
from producer.fingerprint import fingerprint_path
from tests.conftest import edxstream_cmd, env_for, free_port
from tests.ship_helpers import check_order_and_duplicates, file_lines, make_line, read_topic, write_lines
from tests.test_ship_follow import Running, wait_for
from tests.test_stack import _consume, _produce
from tests.test_stream_app import (
    check_outputs,
    expected_counts,
    make_log,
    produce,
    read_metrics,
    wait_exit,
    worker,
)


def test_default_stack_up_keeps_topics_and_up_right_after_down_starts_a_broker(settings):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    env = env_for(settings, EDXSTREAM_KAFKA_BOOTSTRAP=bootstrap)
    env.pop("EDXSTREAM_BROKER_STORAGE")  # the default
    s = settings.model_copy(update={"kafka_bootstrap": bootstrap})

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(edxstream_cmd("stack", *args), env=env, capture_output=True, text=True, timeout=180)

    try:
        up = cli("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Tansu (s3 store)" in up.stdout and "seaweedfs" in up.stdout, up.stdout
        kafka_admin.ensure_topics(s, topics=[s.raw_topic])
        values = [f"v{i}".encode() for i in range(30)]
        _produce(bootstrap, s.raw_topic, values)
        down = cli("down")
        assert down.returncode == 0, down.stderr
        again = cli("up")  # at once: the old broker must be gone, not taken for a running one
        assert again.returncode == 0 and "kafka       started" in again.stdout, again.stdout + again.stderr
        assert sorted(_consume(bootstrap, s.raw_topic, 30)) == sorted(values)
    finally:
        cli("down")


def test_stack_up_refuses_a_port_held_by_something_that_is_not_a_broker(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = env_for(settings, EDXSTREAM_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}", EDXSTREAM_BROKER_STORAGE="memory")
        up = subprocess.run(edxstream_cmd("stack", "up"), env=env, capture_output=True, text=True, timeout=120)
    err = [line for line in up.stderr.splitlines() if line.startswith("edxstream:")]
    assert up.returncode == 2 and len(err) == 1 and "does not answer as a Kafka broker" in err[0], up.stderr


def test_counts_stay_exact_across_a_restart_of_the_persistent_broker(persistent_broker, settings, tmp_path):
    s = settings.model_copy(update={"kafka_bootstrap": persistent_broker.bootstrap, "broker_storage": "s3"})
    lines = make_log(1200, seed=21)
    kafka_admin.ensure_topics(s)
    produce(s, lines[:600])
    log = tmp_path / "worker.log"
    metrics = tmp_path / "m.json"
    proc = worker(s, metrics=metrics, log=log)
    try:
        deadline = time.monotonic() + 120
        while read_metrics(metrics).get("lines", 0) < 600 and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        persistent_broker.stop()  # a crash: SIGKILL
        time.sleep(2)
        persistent_broker.start()
        produce(s, lines[600:])
        got = check_outputs(s, lines, exactly_once_enriched=False)
        assert got == expected_counts(lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    wait_exit(proc, 60, log)


def test_lines_the_broker_acknowledged_survive_kill_9_of_the_broker(persistent_broker, settings, tmp_path):
    """The shipper follows a growing log while the broker is killed (SIGKILL) six times:
    once the shipper has had every line acknowledged, every line is in the raw topic, in
    file order per partition; a line may be there twice (a batch stored whose answer
    was lost is sent again), and the stream app drops the second copy.

    Tansu records an idempotent producer's sequence before it stores the batch: a broker
    killed between the two answers the re-sent batch "duplicate", librdkafka reports it
    delivered, and its lines were lost (before the fix this test failed 2 runs in 2 that way)."""
    s = settings.model_copy(update={"kafka_bootstrap": persistent_broker.bootstrap, "broker_storage": "s3"})
    kafka_admin.ensure_topics(s, topics=[s.raw_topic, s.deadletter_topic])
    log = tmp_path / "tracking.log"
    log.touch()
    pad = "p" * 400
    total = 0
    run = Running(s, log)
    try:
        kills = 0
        restarted, acked_then = time.monotonic(), 0
        while kills < 6:
            write_lines(log, [make_line(total + i, user=f"learner{(total + i) % 97}", tag=pad) for i in range(1500)])
            total += 1500
            # kill while the shipper is sending: after it has been acknowledged again
            if time.monotonic() - restarted >= 1.5 and run.follower.counters.lines > acked_then + 20_000:
                kills += 1
                persistent_broker.stop()  # SIGKILL
                time.sleep(0.7)
                persistent_broker.start()
                restarted, acked_then = time.monotonic(), run.follower.counters.lines
            time.sleep(0.05)
        wait_for(lambda: run.follower.counters.lines >= total, timeout=120, what=f"{total} acknowledged lines")
    finally:
        run.close()
    msgs = read_topic(s.kafka_bootstrap, s.raw_topic, expect=total, timeout=30)
    wanted = file_lines(log.read_bytes())
    got = {m.line_offset for m in msgs}
    lost = sorted(set(wanted) - got)
    assert not lost, f"{len(lost)} of {total} acknowledged lines are not in the raw topic (first at byte {lost[0]})"
    check_order_and_duplicates(msgs, replay_from={fingerprint_path(log): 0})
