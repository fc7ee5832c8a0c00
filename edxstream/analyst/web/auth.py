"""Logging in, roles and the learners' signed links.

Sessions are Flask's signed cookies (HttpOnly, SameSite=Lax), every form carries
Flask-WTF's CSRF token, and every page needs a login except the login page, the health
check and a learner's own page, which a signed link opens: ``/me/<token>`` where the
token holds the course and the pseudonymous learner id, signed with the app's secret key
(itsdangerous, which Flask already uses for its sessions). Nobody can make a link for
another learner without the key; the link is what the LMS or a teacher hands out.
"""

from __future__ import annotations

from functools import wraps

from flask import abort, current_app, g, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeSerializer

from edxstream.analyst.web.accounts import Account, Accounts

LEARNER_SALT = "edxstream-learner-link"


def accounts() -> Accounts:
    return current_app.extensions["edxstream_accounts"]


def current_account() -> Account | None:
    if "account" not in g:
        name = session.get("account")
        g.account = accounts().get(name) if name else None
    return g.account


def login_required(view):
    """The page needs an account (any role); without one, the login page."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if current_account() is None:
            return redirect(url_for("login", next=request.full_path))
        return view(*args, **kwargs)

    return wrapped


def operator_required(view):
    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if current_account().role != "operator":
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def check_course(course_id: str) -> None:
    """403 when the account may not see this course (staff see their own courses)."""
    if not current_account().can_see(course_id):
        abort(403)


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt=LEARNER_SALT)


def learner_token(course_id: str, user_id: int) -> str:
    return _serializer().dumps({"c": course_id, "u": int(user_id)})


def read_learner_token(token: str) -> tuple[str, int]:
    """The course and learner a link is for; 404 for a link that was not signed here."""
    try:
        data = _serializer().loads(token)
        return str(data["c"]), int(data["u"])
    except (BadSignature, KeyError, TypeError, ValueError):
        abort(404)
