"""CPU accounting of the benchmark's processes, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys

from edxstream import pipeline


def test_cpu_seconds_grows_with_work_and_pid_of_finds_a_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\n"
                             "while time.process_time() - t < 0.5: pass\ninput()"],
                            stdin=subprocess.PIPE)
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
