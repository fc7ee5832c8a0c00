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


def test_mysql_counts_are_exact_once_the_highest_row_id_allows_the_expected_count(settings):
    from sinks import migrate

    conn = migrate.mysql_connect(settings, autocommit=True)
    try:
        assert pipeline.mysql_counts(conn, 3) == (0, 0)  # no tables yet
        migrate.migrate_mysql(settings)
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO events (event_id, time, category, action, event_type, payload) VALUES "
                "('a', NOW(), 'video', 'play', 'play_video', '{}'), "
                "('b', NOW(), 'video', 'play', 'play_video', '{}'), "
                "('c', NOW(), 'video', 'play', 'play_video', '{}')"
            )
            cur.execute("DELETE FROM events WHERE event_id = 'b'")  # leaves a gap in row_id
        assert pipeline.mysql_counts(conn) == (2, 0)
        # below the expected count the highest row_id stands in: an upper bound
        assert pipeline.mysql_counts(conn, 5) == (3, 0)
        # once it reaches the expected count, the rows are counted
        assert pipeline.mysql_counts(conn, 3) == (2, 0)
    finally:
        conn.close()
