"""Monitoring views on the worker's web server (Faust web, aiohttp).

- ``GET /counts/{course_id}/``: the course's latest window of each size (categories,
  actions, distinct active learners), as JSON, from the live tables. A course lives in
  one enriched partition; a worker that does not own it says so and points at the
  worker that does (when known).
- ``GET /metrics/``: what this worker did since it started, plus the per-partition
  event-time watermark, counted and late (restart-proof, from the tables).

The live HTML page and its views are in :mod:`stream_app.live_page`.

Every view goes through :func:`guard` (an aiohttp middleware): the Host header must name
this machine (an IP address, localhost or its own host name), so a web page cannot reach
the worker through DNS rebinding; with ``settings.web_token`` set, a request must carry
it (``Authorization: Bearer``, ``?token=`` or the cookie a ``?token=`` visit sets, so the
live page's own requests carry it too).
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from faust.types import TP

from edxstream.core.errors import UserError
from edxstream.core.settings import Settings

TOKEN_COOKIE = "edxstream_token"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _host_allowed(host: str, names: frozenset[str]) -> bool:
    """An IP literal (DNS rebinding needs a name), or a name of this machine."""
    if host.startswith("["):  # [::1]:6066
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host in names


def check_bind(settings: Settings) -> None:
    """Refuse to serve the views beyond loopback without an access token."""
    try:
        loopback = ipaddress.ip_address(settings.web_bind).is_loopback
    except ValueError:
        loopback = settings.web_bind.lower() in LOOPBACK_NAMES
    if not loopback and not settings.web_token:
        raise UserError(
            f"EDXSTREAM_WEB_BIND={settings.web_bind} serves the worker's web views beyond this "
            f"machine: set EDXSTREAM_WEB_TOKEN to a secret too (see docs/privacy.md)"
        )


def guard(settings: Settings):
    """The aiohttp middleware that checks the Host header and the access token."""
    names = frozenset(LOOPBACK_NAMES | {socket.gethostname().lower(), socket.getfqdn().lower()})
    token = settings.web_token

    @web.middleware
    async def middleware(request, handler):
        if not _host_allowed(request.headers.get("Host", ""), names):
            return web.Response(status=421, text="unknown Host: open the page by this machine's name or address\n")
        if not token:
            return await handler(request)
        given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE, "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer ") :]
        if not secrets.compare_digest(given.encode(), token.encode()):
            return web.Response(
                status=401, text="access token required (EDXSTREAM_WEB_TOKEN)\n", headers={"WWW-Authenticate": "Bearer"}
            )
        response = await handler(request)
        if request.query.get("token"):  # the page's own requests then carry it
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response

    return middleware


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
