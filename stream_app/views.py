"""Monitoring views on the worker's web server (Faust web, aiohttp).

- ``GET /counts/{course_id}/``: the course's latest window of each size (categories,
  actions, distinct active learners), as JSON, from the live tables. A course lives in
  one enriched partition; a worker that does not own it says so and points at the
  worker that does (when known).
- ``GET /metrics/``: what this worker did since it started, plus the per-partition
  event-time watermark, counted and late (restart-proof, from the tables).

The live HTML page and its views are in :mod:`stream_app.live_page`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from faust.types import TP


def _owner(app: Any, pipe: Any, course: str) -> dict:
    """Which enriched partition holds the course, and whether this worker has it."""
    try:
        tp = app.producer.key_partition(pipe.settings.enriched_topic, course.encode())
    except Exception:  # producer not started yet
        return {"partition": None, "owned": False}
    # counts live with the tally partition of the same number (tally records are
    # placed in the course's enriched-topic partition)
    owned = TP(pipe.settings.tally_topic, tp.partition) in app.assignor.assigned_actives()
    out: dict[str, Any] = {"partition": tp.partition, "owned": owned}
    if not owned:
        try:
            topic = app.topic(pipe.settings.tally_topic)
            out["owner"] = str(app.router.external_topic_key_store(topic, course.encode()))
        except Exception:  # no owner known (yet): assignment in progress
            out["owner"] = None
    return out


def register(app: Any, pipe: Any) -> None:
    @app.page("/counts/{course_id}/")
    async def counts(self, request, course_id: str):
        course = unquote(course_id)
        body = pipe.course_counts(course)
        body.update(_owner(app, pipe, course))
        return self.json(body)

    @app.page("/metrics/")
    async def metrics(self, request):
        body = pipe.metrics.snapshot()
        body["partitions"] = pipe.partition_states()
        body["late_total"] = sum(p["late"] for p in body["partitions"].values())
        body["windows"] = list(pipe.windows)
        body["grace_seconds"] = pipe.grace
        return self.json(body)
