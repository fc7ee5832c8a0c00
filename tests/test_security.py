"""Keys and secrets: the sinks refuse the public default pseudonym key, and no command
prints a password, in errors or otherwise."""

from __future__ import annotations

import subprocess

from edxstream.core import settings as settings_mod
from edxstream.ops import demo_cli
from tests.conftest import REPO, edxstream_cmd, env_for


def run(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(edxstream_cmd(*args), env=env, cwd=REPO, capture_output=True, timeout=120, text=True)


def test_the_clickhouse_sink_refuses_the_default_key(settings):
    p = run(env_for(settings, EDXSTREAM_PSEUDONYM_KEY="change-me"), "sink", "clickhouse", "--max-idle", "1")
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("edxstream:") and "EDXSTREAM_PSEUDONYM_KEY" in p.stderr and "Traceback" not in p.stderr
    # nothing was created: the refusal comes before the sink touches ClickHouse
    assert not (settings.home / "clickhouse-subprocess").exists()
    # pseudonymisation off: no key is used, nothing to refuse
    off = run(
        env_for(settings, EDXSTREAM_PSEUDONYM_KEY="change-me", EDXSTREAM_PSEUDONYMIZE="false"),
        "sink",
        "clickhouse",
        "--max-idle",
        "1",
    )
    assert off.returncode == 0, off.stderr


def test_a_bad_dsn_is_one_line_without_its_password(settings):
    secret = "s3cr3t-pw"
    p = run(env_for(settings, EDXSTREAM_MYSQL_DSN=f"postgres://edx:{secret}@127.0.0.1:3306/db"), "db", "status")
    assert p.returncode == 2
    assert secret not in p.stdout + p.stderr and "Traceback" not in p.stderr
    assert "postgres://edx:***@127.0.0.1:3306/db" in p.stderr


def test_the_demo_help_text_names_no_password(tmp_path):
    s = settings_mod.load(mysql_dsn="mysql://edxstream:s3cr3t-pw@127.0.0.1:3306/edxstream", home=tmp_path)
    options = demo_cli.write_mysql_options(s)
    text = demo_cli.how_to_query(s, "edxstream_demo", options)
    # the mysql hint logs in through an option file only its owner can read
    assert "s3cr3t-pw" not in text and f"--defaults-extra-file={options}" in text
    assert options.stat().st_mode & 0o077 == 0


def test_redact():
    assert settings_mod.redact("mysql://u:p%40ss@h:3306/d") == "mysql://u:***@h:3306/d"
    assert settings_mod.redact("http://h:8123") == "http://h:8123"


def _serve_and_get(settings, requests):
    """Run the worker's guard in front of a real aiohttp server; (status, set-cookie) per request."""
    import asyncio

    import aiohttp
    from aiohttp import web

    from stream_app.views import guard

    async def main():
        app = web.Application(middlewares=[guard(settings)])
        app.router.add_get("/counts/{course}/", lambda r: web.json_response({"ok": True}))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        out = []
        try:
            async with aiohttp.ClientSession() as session:
                for path, headers in requests:
                    async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as r:
                        out.append((r.status, r.headers.get("Set-Cookie", "")))
        finally:
            await runner.cleanup()
        return out

    return asyncio.run(main())


def test_web_views_check_the_host_header_and_the_token(tmp_path):
    import pytest

    from edxstream.core.errors import UserError
    from stream_app.views import check_bind

    open_ = settings_mod.load(home=tmp_path)
    assert [
        s
        for s, _ in _serve_and_get(
            open_,
            [
                ("/counts/c/", {}),  # Host: 127.0.0.1:port
                ("/counts/c/", {"Host": "localhost:6066"}),
                ("/counts/c/", {"Host": "attacker.example.com"}),  # DNS rebinding
            ],
        )
    ] == [200, 200, 421]

    tok = settings_mod.load(home=tmp_path, web_token="t0k3n-secret")
    got = _serve_and_get(
        tok,
        [
            ("/counts/c/", {}),
            ("/counts/c/", {"Authorization": "Bearer wrong"}),
            ("/counts/c/", {"Authorization": "Bearer t0k3n-secret"}),
            ("/counts/c/?token=t0k3n-secret", {}),
        ],
    )
    assert [s for s, _ in got] == [401, 401, 200, 200]
    assert "edxstream_token=t0k3n-secret" in got[3][1] and "HttpOnly" in got[3][1]

    with pytest.raises(UserError, match="EDXSTREAM_WEB_TOKEN"):
        check_bind(settings_mod.load(web_bind="0.0.0.0"))
    check_bind(settings_mod.load(web_bind="0.0.0.0", web_token="x"))
    check_bind(settings_mod.load())
