"""The shipper's acceptance scenario on a broker that keeps its data across restarts:
a kill -9 in the middle of a file, a rotation by rename, a broker restart and a
copytruncate, all in one run of ``edxstream ship``. The topic must then hold every line
of the input, in file order per partition, with repeats only of lines that were not
acknowledged (past the checkpoint) when the shipper or the broker went down."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest

from producer.fingerprint import fingerprint_path
from tests.conftest import edxstream_cmd, env_for
from tests.test_ship_follow import checkpoint, wait_for
from tests.ship_helpers import check_order_and_duplicates, file_lines, make_line, read_topic, write_lines


@pytest.mark.slow
def test_kill9_rotation_broker_restart_and_copytruncate(settings, persistent_broker, tmp_path):
    s = settings.model_copy(update={"kafka_bootstrap": persistent_broker.bootstrap})
    env = env_for(s)
    log = tmp_path / "tracking.log"
    cmd = edxstream_cmd(
        "ship", str(log), "--poll-interval", "0.05", "--checkpoint-interval", "0.1", "--rotate-wait", "0.5"
    )
    replay_from: dict[str, int] = {}

    def snapshot():  # the checkpoint at a disruption: repeats are allowed from here on
        for fp, e in checkpoint(s, log).items():
            replay_from[fp] = min(replay_from.get(fp, e["offset"]), e["offset"])

    def at_end(path):
        return lambda: checkpoint(s, log).get(fingerprint_path(path), {}).get("offset") == path.stat().st_size

    n = 0

    def more(count, tag):
        nonlocal n
        write_lines(log, [make_line(i, tag=tag) for i in range(n, n + count)])
        n += count

    more(100_000, "big")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: checkpoint(s, log), 60, "a first checkpoint")
        proc.kill()  # 1. kill -9 in the middle of the file
        proc.wait(10)
        snapshot()
        assert 0 < replay_from[fingerprint_path(log)] < log.stat().st_size
        more(2000, "while-dead")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(at_end(log), 120, "catching up after the kill")

        log.rename(tmp_path / "tracking.log.1")  # 2. rotation by rename
        more(3000, "after-rename")
        wait_for(at_end(log), 60, "the new file after the rename")

        persistent_broker.stop()  # 3. broker restart (its store keeps the topic)
        snapshot()
        more(3000, "broker-down")
        time.sleep(2)
        persistent_broker.start()
        more(1000, "broker-back")
        wait_for(at_end(log), 120, "delivery after the broker restart")

        shutil.copyfile(log, tmp_path / "tracking.log.2")  # 4. copytruncate
        with open(log, "r+b") as f:
            f.truncate(0)
        more(2000, "after-truncate")
        wait_for(at_end(log), 60, "the truncated file's new lines")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()

    expected = {}
    for path in (tmp_path / "tracking.log.1", tmp_path / "tracking.log.2", log):
        fp = fingerprint_path(path)
        for off, line in file_lines(path.read_bytes()).items():
            expected[(fp, off)] = line
    assert len(expected) == n
    msgs = read_topic(s.kafka_bootstrap, s.raw_topic, expect=n, timeout=180)
    got = {(m.fp, m.line_offset): m.value for m in msgs}
    assert got == expected  # every line of the input, byte for byte
    dups = check_order_and_duplicates(msgs, replay_from=replay_from)
    print(f"{n} lines, {len(msgs)} messages, {dups} repeats of unacknowledged lines")
