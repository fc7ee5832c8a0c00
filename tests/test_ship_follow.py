"""``edxstream ship``: following a live file through rotation, copytruncate, partial
lines, a kill -9 and a broker that goes away, against the real broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path


from producer.checkpoint import ship_store_path
from producer.fingerprint import fingerprint_path
from producer.follow import Follower
from tests.conftest import Broker, edxstream_cmd, env_for
from tests.ship_helpers import check_order_and_duplicates, make_line, read_topic, write_lines


class Running:
    """A Follower in a thread of this process."""

    def __init__(self, settings, path, **kw):
        self.stop = threading.Event()
        self.follower = Follower(
            settings,
            path,
            should_stop=self.stop.is_set,
            rotate_wait=0.6,
            poll_interval=0.05,
            checkpoint_every=0.2,
            **kw,
        )
        self.thread = threading.Thread(target=self.follower.run, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def checkpoint(settings, path) -> dict:
    p = ship_store_path(settings.checkpoints, Path(path))
    return json.loads(p.read_text()) if p.exists() else {}


def shipped_lines(settings, expect, **kw):
    return read_topic(settings.kafka_bootstrap, settings.raw_topic, expect=expect, **kw)


def test_follows_partial_lines_rename_rotation_and_copytruncate(settings, tmp_path):
    log = tmp_path / "tracking.log"
    first = [make_line(i, tag="first") for i in range(500)]
    write_lines(log, first)
    run = Running(settings, log)
    try:
        wait_for(lambda: run.follower.counters.lines == 500, what="the first 500 lines")
        # a partial line waits for its newline
        partial = make_line(10_000, tag="partial")
        with open(log, "ab") as f:
            f.write(partial[:20])
        time.sleep(0.5)
        assert run.follower.counters.produced == 500
        with open(log, "ab") as f:
            f.write(partial[20:] + b"\n")
        wait_for(lambda: run.follower.counters.lines == 501, what="the completed partial line")

        # logrotate's rename-and-create, with the application writing one last line to
        # the old file (it has not reopened yet) and then moving to the new one
        old = open(log, "ab")
        log.rename(tmp_path / "tracking.log.1")
        log.touch()
        late = [make_line(i, tag="late-in-old") for i in range(20)]
        for line in late:
            old.write(line + b"\n")
        old.close()
        second = [make_line(i, tag="second") for i in range(300)]
        write_lines(log, second)
        wait_for(lambda: run.follower.counters.lines == 501 + 20 + 300, what="lines across the rotation")

        # copytruncate: logrotate copies, the app writes a line, logrotate truncates
        shutil.copyfile(log, tmp_path / "tracking.log.2")  # (a copy of the live file)
        unread = [make_line(i, tag="after-copy") for i in range(5)]
        # these go to both: the copy was made after they were written (as in real life the
        # copy holds whatever the shipper had not read yet)
        write_lines(log, unread)
        write_lines(tmp_path / "tracking.log.2", unread)
        with open(log, "r+b") as f:
            f.truncate(0)
        third = [make_line(i, tag="third") for i in range(200)]
        write_lines(log, third)
        total = 501 + 20 + 300 + 5 + 200
        wait_for(lambda: run.follower.counters.lines >= total, what="lines across the copytruncate")
    finally:
        run.close()

    msgs = shipped_lines(settings, total)
    assert len(msgs) == total  # each line exactly once (no crash, so no replay)
    check_order_and_duplicates(msgs)
    by_tag: dict[str, list] = {}
    for m in msgs:
        by_tag.setdefault(json.loads(m.value)["tag"], []).append(m)
    assert {t: len(v) for t, v in by_tag.items()} == {
        "first": 500,
        "partial": 1,
        "late-in-old": 20,
        "second": 300,
        "after-copy": 5,
        "third": 200,
    }
    assert {m.value for m in by_tag["partial"]} == {partial}
    # the old file's lines (incl. the late ones) are one file; the new file is another
    assert len({m.fp for t in ("first", "partial", "late-in-old") for m in by_tag[t]}) == 1
    assert len({m.fp for t in ("second", "after-copy") for m in by_tag[t]}) == 1
    assert len({m.fp for m in msgs}) == 3
    # the checkpoint: every file acknowledged to its end
    cp = checkpoint(settings, log)
    assert cp[fingerprint_path(log)]["offset"] == log.stat().st_size
    assert cp[fingerprint_path(tmp_path / "tracking.log.1")]["offset"] == (tmp_path / "tracking.log.1").stat().st_size
    assert cp[fingerprint_path(tmp_path / "tracking.log.2")]["done"]


def test_replaced_file_and_restart_resume_without_duplicates(settings, tmp_path):
    log = tmp_path / "tracking.log"
    write_lines(log, [make_line(i, tag="a") for i in range(100)])
    run = Running(settings, log)
    try:
        wait_for(lambda: run.follower.counters.lines == 100)
    finally:
        run.close()
    # while the shipper is down: more lines, then the file is replaced by a new one
    write_lines(log, [make_line(i, tag="b") for i in range(50)])
    os.rename(log, tmp_path / "tracking.log.1")
    write_lines(log, [make_line(i, tag="c") for i in range(70)])
    run = Running(settings, log)
    try:
        wait_for(lambda: run.follower.counters.lines == 120, what="the rest after a restart")
    finally:
        run.close()
    msgs = shipped_lines(settings, 220)
    assert len(msgs) == 220
    check_order_and_duplicates(msgs)
    metrics = json.loads((settings.data_dir / "run" / "shipper.metrics.json").read_text())
    assert metrics["lines"] == 120 and metrics["lag_bytes"] == 0 and metrics["errors"] == 0


def _wait_for_checkpoint(settings, log, low, timeout=60):
    def mid():
        cp = checkpoint(settings, log)
        return cp and low < max(e["offset"] for e in cp.values())

    wait_for(mid, timeout, "a checkpoint in the middle of the file")


def test_kill_9_mid_file_replays_only_the_unacknowledged_tail(settings, tmp_path):
    log = tmp_path / "tracking.log"
    lines = [make_line(i, tag="x" * 200) for i in range(150_000)]
    write_lines(log, lines)
    size = log.stat().st_size
    env = env_for(settings)
    cmd = edxstream_cmd("ship", str(log), "--poll-interval", "0.05", "--checkpoint-interval", "0.1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_checkpoint(settings, log, 0)
        proc.kill()  # SIGKILL: no flush, no final checkpoint
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    at_crash = {fp: e["offset"] for fp, e in checkpoint(settings, log).items()}
    assert 0 < at_crash[fingerprint_path(log)] < size, "the kill did not land in the middle of the file"
    # lines keep arriving while the shipper is dead
    more = [make_line(i, tag="after") for i in range(1000)]
    write_lines(log, more)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(
            lambda: checkpoint(settings, log)[fingerprint_path(log)]["offset"] == log.stat().st_size,
            120,
            "the restarted shipper to reach the end",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    total = len(lines) + len(more)
    msgs = shipped_lines(settings, total, timeout=120)
    keys = {(m.fp, m.line_offset) for m in msgs}
    assert len(keys) == total  # every line
    dups = check_order_and_duplicates(msgs, replay_from=at_crash)  # repeats only past the crash checkpoint
    values = sorted(((m.line_offset, m.value) for m in msgs), key=lambda t: t[0])
    assert [v for _, v in dict(values).items()] == lines + more
    print(f"duplicates after kill -9: {dups}")


def test_sigterm_flushes_and_checkpoints(settings, tmp_path):
    log = tmp_path / "tracking.log"
    write_lines(log, [make_line(i) for i in range(20_000)])
    proc = subprocess.Popen(
        edxstream_cmd("ship", str(log)),
        env=env_for(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_checkpoint(settings, log, 0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM received: flushing and checkpointing" in err
    cp = checkpoint(settings, log)[fingerprint_path(log)]
    msgs = shipped_lines(settings, None)
    # everything produced before the signal was acknowledged, and the checkpoint says so
    assert len(msgs) == len({(m.fp, m.line_offset) for m in msgs})
    assert cp["offset"] == max(m.line_offset + len(m.value) + 1 for m in msgs)
    metrics = json.loads((settings.data_dir / "run" / "shipper.metrics.json").read_text())
    assert metrics["lines"] == len(msgs)


def test_broker_down_waits_and_delivers_everything_after_it_returns(settings, tmp_path):
    """The broker is away (killed; its memory store forgets everything): the shipper
    waits with backoff, the checkpoint does not move, and once a broker is back on the
    same address every line written meanwhile reaches the (re-created) topic."""
    b = Broker(tmp_path / "own-broker")
    b.start()
    s = settings.model_copy(update={"kafka_bootstrap": b.bootstrap})
    log = tmp_path / "tracking.log"
    before = [make_line(i, tag="before") for i in range(2000)]
    write_lines(log, before)
    run = Running(s, log)
    try:
        wait_for(lambda: run.follower.counters.lines == 2000, what="lines before the outage")
        wait_for(lambda: checkpoint(s, log).get(fingerprint_path(log), {}).get("offset") == log.stat().st_size)
        b.stop()
        at_stop = checkpoint(s, log)[fingerprint_path(log)]["offset"]
        during = [make_line(i, tag="during") for i in range(3000)]
        write_lines(log, during)
        time.sleep(4)
        # nothing acknowledged, so the checkpoint stays where it was
        assert checkpoint(s, log)[fingerprint_path(log)]["offset"] == at_stop
        b.start()
        after = [make_line(i, tag="after") for i in range(500)]
        write_lines(log, after)
        wait_for(
            lambda: checkpoint(s, log)[fingerprint_path(log)]["offset"] == log.stat().st_size,
            120,
            "delivery after the broker came back",
        )
        run.close()
        msgs = read_topic(b.bootstrap, s.raw_topic, expect=3500)
    finally:
        run.close()
        b.stop()
    tags = [json.loads(m.value)["tag"] for m in msgs]
    # the restarted memory broker lost what it had acknowledged before; of the rest, nothing is missing
    got = {(m.fp, m.line_offset) for m in msgs if m.line_offset >= at_stop}
    assert len(got) == 3500 and tags.count("during") >= 3000 and tags.count("after") >= 500
    check_order_and_duplicates([m for m in msgs if m.line_offset >= at_stop], replay_from={m.fp: at_stop for m in msgs})
    print(f"outage: errors={run.follower.counters.errors} restarts={run.follower.counters.rewinds}")
