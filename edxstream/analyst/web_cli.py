"""``edxstream serve`` (the web app) and ``edxstream user`` (its accounts)."""

from __future__ import annotations

import getpass
import os
import sys

from edxstream.core.errors import UserError


def register(sub) -> None:
    s = sub.add_parser(
        "serve",
        help="the web app for course teams, learners and operators",
        description="Serve the web app on EDXSTREAM_WEB_HOST:EDXSTREAM_WEB_APP_PORT (default 127.0.0.1:8050). "
        "Log in with an account made by `edxstream user add`; learners open their own page through the link "
        "shown on their timeline. Set EDXSTREAM_WEB_SECRET_KEY to a long random value first.",
    )
    s.add_argument("--demo", action="store_true", help="accept the default secret key (synthetic demo data only)")
    s.set_defaults(func=run_serve)

    u = sub.add_parser(
        "user",
        help="add, remove or list the web app's accounts",
        description="Accounts of the web app: operators see every course and the pipeline's "
        "health, staff the courses given with --course. The password is asked for "
        "(or read from EDXSTREAM_WEB_PASSWORD when there is no terminal).",
    )
    u.add_argument(
        "action",
        choices=["add", "remove", "list", "link"],
        help="add (or replace) an account, remove one, list them, or print a learner's link",
    )
    u.add_argument("name", nargs="?", help="account name (add, remove)")
    u.add_argument(
        "--role",
        choices=["operator", "staff"],
        default="staff",
        help="operator: every course and the pipeline page; staff: the --course courses (default)",
    )
    u.add_argument(
        "--course",
        action="append",
        default=[],
        help="a course the staff account may see (repeatable); for link: the learner's course",
    )
    u.add_argument("--user-id", type=int, help="for link: the learner's pseudonymous user id")
    u.set_defaults(func=run_user)


def run_serve(args) -> int:
    from edxstream.analyst.web.app import serve
    from edxstream.core.settings import load

    serve(load(), demo=args.demo)
    return 0


def _password() -> str:
    env = os.environ.get("EDXSTREAM_WEB_PASSWORD")
    if env:
        return env
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask the password on: set EDXSTREAM_WEB_PASSWORD")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first


def run_user(args) -> int:
    from edxstream.analyst.web.accounts import Accounts, accounts_file
    from edxstream.core.settings import load

    settings = load()
    accounts = Accounts(accounts_file(settings))
    if args.action == "list":
        for a in accounts.all():
            print(f"{a.name}\t{a.role}\t{_courses_of(a)}")
        return 0
    if args.action == "link":
        if not args.course or args.user_id is None:
            raise UserError("user link needs --course and --user-id")
        from edxstream.analyst.web.app import create_app
        from edxstream.analyst.web.auth import learner_token

        app = create_app(settings, demo=True, warm_up=False)
        with app.test_request_context():
            print(f"{settings.web_url}/me/{learner_token(args.course[0], args.user_id)}")
        return 0
    if not args.name:
        raise UserError(f"user {args.action} needs an account name")
    if args.action == "remove":
        if not accounts.remove(args.name):
            raise UserError(f"no account {args.name!r}")
        print(f"removed {args.name}")
        return 0
    account = accounts.add(args.name, args.role, _password(), args.course)
    print(f"{account.name}: {account.role}" + (f" of {', '.join(account.courses)}" if account.courses else ""))
    return 0


def _courses_of(account) -> str:
    """The courses column of `user list`: an operator with none sees every course."""
    courses = ",".join(account.courses)
    return courses or "(every course)" if account.role == "operator" else courses
