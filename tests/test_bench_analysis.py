"""The analysis bench's measured target: a generated log stored in a ClickHouse folder of
its own, then one ``analyze`` run in a fresh child, timed and with its peak memory. Here
on a small log (``--scale full`` runs it on 2 million events); it asserts no figure,
only that each was measured and every step ran."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edxstream.ops.generate import GenConfig

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_analysis.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_analysis", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_target_is_one_measured_analyze_run(tmp_path):
    bench = load_bench()
    cfg = GenConfig(
        events=20_000, courses=1, learners=3_000, days=60, seed=7, malformed=0, prefixed=0, session_events=8
    )
    res = bench.bench_target(tmp_path, cfg)
    assert res["target_events"] > 0.95 * cfg.events
    assert res["target_learners"] > 1_000  # short sessions spread the events over many learners
    assert res["target_courses"] == 1
    assert res["target_steps"] == dict.fromkeys(
        ("segments", "prediction", "correlations", "problems", "recommendations", "suggestions"), "ok"
    )
    for key in ("seconds", "cpu_seconds", "peak_mb", "read_peak_mb", "base_mb"):
        assert res[f"target_{key}"] > 0, key
    assert res["target_base_mb"] <= res["target_read_peak_mb"] <= res["target_peak_mb"]
    # the log was stored, then removed: the folder holds the events
    assert (tmp_path / "target-clickhouse").is_dir() and not (tmp_path / "target-clickhouse-gen").exists()
    assert "analyze: peak MB" in bench.table(res)
