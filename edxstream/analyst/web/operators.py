"""What the operators' page shows: the pipeline's health.

- lag per consumer group and partition (the stream app on the raw topic, each sink on the
  enriched and aggregates topics), from the broker;
- each running component's own metrics (throughput, batches, state), which the shipper,
  the stream app and the sinks publish as ``run/*.metrics.json`` under EDXSTREAM_HOME;
- dead letters by reason with a sample line each, from MySQL's ``dead_letters`` table
  (operators see raw lines; course staff never do);
- the last ``edxstream reconcile``: when it ran and whether MySQL, ClickHouse and the
  windows agreed with what was shipped, from the outcome it leaves under EDXSTREAM_HOME.

Each part that cannot be read says why instead of failing the page.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edxstream.core import kafka_admin
from edxstream.core.jsonfile import reconcile_file
from edxstream.core.settings import Settings

SAMPLE_CHARS = 300


def consumer_lags(settings: Settings) -> list[dict] | None:
    groups = [
        (settings.stream_group, [settings.raw_topic]),
        (settings.mysql_sink_group, [settings.enriched_topic, settings.deadletter_topic]),
        (settings.clickhouse_sink_group, [settings.enriched_topic, settings.aggregates_topic]),
    ]
    out: list[dict] = []
    for group, topics in groups:
        parts = kafka_admin.partition_lags(settings, group, topics)
        if parts is None:
            if not kafka_admin.broker_answers(settings):
                return None
            continue
        out.extend(parts)
    return out


def component_metrics(settings: Settings) -> list[dict]:
    run_dir = settings.data_dir / "run"
    out = []
    for path in sorted(run_dir.glob("*.metrics.json")) if run_dir.exists() else []:
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out.append(
            {
                "name": path.name.removesuffix(".metrics.json"),
                "age": time.time() - path.stat().st_mtime,
                "values": values,
            }
        )
    return out


def dead_letters(settings: Settings) -> tuple[list[dict] | None, str]:
    from sinks.migrate import mysql_rows

    try:
        rows = mysql_rows(
            settings,
            """
            SELECT reason, stage, COUNT(*) AS n, MAX(seen_at) AS last_seen,
                   SUBSTRING(MIN(raw), 1, %d) AS sample
            FROM dead_letters GROUP BY reason, stage ORDER BY n DESC, reason"""
            % SAMPLE_CHARS,
        )
    except Exception as exc:  # noqa: BLE001 - shown on the page
        return None, str(exc).splitlines()[0][:200]
    return rows, ""


def last_reconcile(settings: Settings) -> dict | None:
    """The outcome the last reconcile left (None: it never ran here), with its age."""
    path = reconcile_file(settings)
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    out["age"] = time.time() - path.stat().st_mtime
    return out


def health(settings: Settings) -> dict:
    letters, letters_error = dead_letters(settings)
    return {
        "reconcile": last_reconcile(settings),
        "lags": consumer_lags(settings),
        "components": component_metrics(settings),
        "dead_letters": letters,
        "dead_letters_error": letters_error,
        "bootstrap": settings.kafka_bootstrap,
        "home": Path(settings.data_dir),
    }
