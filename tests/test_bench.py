"""The benchmark runs end to end on a small size and reports every figure. It asserts
no time: only that each figure was measured."""

from __future__ import annotations

import json
import subprocess

import pymysql
import pytest

from tests.conftest import MYSQL_ADMIN, edxstream_cmd

KEYS = (
    "ship_vs_kcat",
    "stream_events_per_s",
    "mysql_rows_per_s",
    "mysql_vs_load_data",
    "e2e_events_per_s",
    "live_p50_s",
    "live_p99_s",
    "clickhouse_rows_per_s",
    "ship_lines_per_s",
    "kcat_lines_per_s",
    "load_data_rows_per_s",
    "scaleout_single_events_per_s",
    "scaleout_scaled_events_per_s",
    "scaleout_single_cpu_us_per_event",
    "scaleout_scaled_cpu_us_per_event",
)


@pytest.mark.slow
def test_bench_small_reports_every_figure(mariadb, tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        edxstream_cmd("bench", "--scale", "small", "--json", str(out)),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    try:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        data = json.loads(out.read_text())
        for key in KEYS:
            assert isinstance(data[key], (int, float)) and data[key] > 0, (key, data.get(key))
        assert data["e2e_events"] == 4_000
        assert data["live_seen"] == data["live_lines"] > 0
        assert data["e2e_peak_mb"] and all(v > 0 for v in data["e2e_peak_mb"].values())
        # the heap part of each peak, sampled: some, and never more than the peak
        heap = data["e2e_peak_anon_mb"]
        assert set(heap) == set(data["e2e_peak_mb"])
        assert all(0 < heap[k] <= data["e2e_peak_mb"][k] for k in heap), heap
        # where the CPU went: each of our processes and the services they run on
        assert {"stream", "sink-mysql", "sink-clickhouse", "broker", "mariadbd"} <= set(data["e2e_cpu_seconds"])
        assert data["e2e_cpu_seconds"]["stream"] > 0
        # scale-out: both runs exact, on 8 partitions, with the CPU of every role
        assert data["scaleout_single_exact"] is True and data["scaleout_scaled_exact"] is True
        assert data["scaleout_events"] == 3_000 and data["scaleout_partitions"] == 8
        for run in ("single", "scaled"):
            cpu = data[f"scaleout_{run}_cpu_us"]
            assert {"stream", "sink-mysql", "sink-clickhouse", "broker", "mariadbd"} <= set(cpu), cpu
            assert cpu["stream"] > 0 and cpu["sink-mysql"] > 0
        # the table is printed too
        assert "end to end: events/s" in res.stdout and "shipper / kcat" in res.stdout
        assert "scale-out: CPU µs/event, 2 stream, 2 MySQL" in res.stdout
        # both stream workers and both MySQL sinks took a share of the work
        assert "stream-2" in res.stdout and "sink-mysql-2 4 of 8 enriched partitions" in res.stdout
    finally:
        conn = pymysql.connect(**MYSQL_ADMIN)
        with conn.cursor() as cur:
            for part in ("sinks", "e2e", "live", "scaleout_1", "scaleout_2"):
                cur.execute(f"DROP DATABASE IF EXISTS `edxstream_bench_{part}`")
        conn.close()
