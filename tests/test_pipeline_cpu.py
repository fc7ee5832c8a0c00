"""What the benchmark reads while it runs: its processes' CPU from /proc, and row counts
from MySQL."""

from __future__ import annotations

import os
import subprocess
import sys

from edxstream.ops import pipeline


def test_cpu_seconds_grows_with_work_and_pid_of_finds_a_process():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt=time.process_time()\nwhile time.process_time() - t < 0.5: pass\ninput()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        before = pipeline.cpu_seconds(proc.pid)
        assert before is not None
        # busy for half a second of CPU, then blocked on input
        deadline = 50
        while (pipeline.cpu_seconds(proc.pid) or 0) < 0.45 and deadline:
            subprocess.run(["sleep", "0.1"])
            deadline -= 1
        assert pipeline.cpu_seconds(proc.pid) >= 0.45
    finally:
        proc.kill()
        proc.wait()
    assert pipeline.cpu_seconds(proc.pid) is None  # gone
    me = pipeline.pid_of(open(f"/proc/{os.getpid()}/comm").read().strip())
    assert me is not None and pipeline.cpu_seconds(me) is not None


def _insert(conn, *ids: str) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO events (event_id, time, category, action, event_type, payload) VALUES "
            + ", ".join("(%s, NOW(), 'video', 'play', 'play_video', '{}')" for _ in ids),
            ids,
        )


def test_row_counter_counts_new_rows_by_key_range_and_recounts_what_it_missed(settings):
    from sinks import migrate

    conn = migrate.mysql_connect(settings, autocommit=True)
    late = None
    try:
        counter = pipeline.RowCounter(conn, expect_events=100, recount_seconds=3600)
        assert counter() == (0, 0)  # no tables yet
        assert pipeline.mysql_counts(conn) == (0, 0)
        migrate.migrate_mysql(settings)
        _insert(conn, "a", "b", "c")
        with conn.cursor() as cur:
            cur.execute("DELETE FROM events WHERE event_id = 'b'")  # a gap in row_id
        assert counter() == (2, 0)  # the first look counts the whole table
        _insert(conn, "d", "e")
        assert counter() == (4, 0)  # then only the rows past the highest id seen
        # a transaction that takes a lower id commits after a higher one was counted
        late = migrate.mysql_connect(settings, autocommit=False)
        _insert(late, "f")
        _insert(conn, "g")
        assert counter() == (5, 0)
        late.commit()
        assert counter() == (5, 0)  # past the highest id: not seen by the range count
        assert pipeline.mysql_counts(conn) == (6, 0)
        # the whole table is counted again when the running count may mean "done"
        counter.expect_events = 5
        assert counter() == (6, 0)
        # and on its own schedule otherwise
        late_again = pipeline.RowCounter(conn, recount_seconds=0)
        _insert(conn, "h")
        assert late_again() == (7, 0)
    finally:
        if late is not None:
            late.close()
        conn.close()
