"""The chaos run (bench/chaos.py), short: the whole pipeline on its own stack while the
shipper, workers, sinks and broker are killed and restarted, MySQL is cut and the log
rotated; nothing may be lost or counted twice."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_short_chaos_run_loses_nothing_and_counts_nothing_twice(mariadb):
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "chaos.py"), "--short"], capture_output=True, text=True, timeout=1400
    )
    print(run.stdout[-2500:])  # the run's figures, for whoever runs this with -s
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "chaos: PASS: 8 disruptions survived" in run.stdout and "lost 0, counted twice 0" in run.stdout
