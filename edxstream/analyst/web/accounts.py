"""Who may open the web app: accounts with a role, kept in one small JSON file.

Three roles:

- ``operator``: every course and the pipeline's health;
- ``staff``: the courses listed on the account, with their learners;
- learners have no account: they open their own page through a signed link (see
  :mod:`edxstream.analyst.web.auth`).

The accounts live in ``<EDXSTREAM_HOME>/web/accounts.json`` (mode 0600), not in MySQL:
the app otherwise reads only the analyst store, a handful of accounts needs no database,
and the file goes wherever the stack's data goes. Passwords are stored as argon2id hashes
(argon2-cffi's defaults); the file is rewritten whole through a temporary file and
``os.replace``, so a crash leaves the old or the new version, never half of one.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from edxstream.core.errors import UserError
from edxstream.core.jsonfile import write_json
from edxstream.core.settings import Settings

ROLES = ("operator", "staff")
NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")
MIN_PASSWORD = 8

_hasher = PasswordHasher()


@dataclass
class Account:
    name: str
    role: str
    courses: list[str] = field(default_factory=list)
    password_hash: str = ""

    def can_see(self, course_id: str) -> bool:
        return self.role == "operator" or course_id in self.courses


def accounts_file(settings: Settings) -> Path:
    return settings.data_dir / "web" / "accounts.json"


class Accounts:
    """The account file: read on every lookup (it is tiny), so an account added with
    ``edxstream user add`` works in a running app without a restart."""

    def __init__(self, path: Path):
        self.path = path

    def _load(self) -> dict[str, Account]:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the web accounts in {self.path}: {exc}") from None
        return {name: Account(name=name, **fields) for name, fields in raw.items()}

    def _save(self, accounts: dict[str, Account]) -> None:
        data = {a.name: {k: v for k, v in asdict(a).items() if k != "name"} for a in accounts.values()}
        write_json(self.path, data, private=True, durable=True)

    def all(self) -> list[Account]:
        return sorted(self._load().values(), key=lambda a: a.name)

    def get(self, name: str) -> Account | None:
        return self._load().get(name)

    def add(self, name: str, role: str, password: str, courses: list[str] | None = None) -> Account:
        """Create or replace an account (replacing one sets a new password and courses)."""
        if not NAME_RE.match(name):
            raise UserError(f"account name {name!r}: use 1-64 letters, digits and . _ @ + -")
        if role not in ROLES:
            raise UserError(f"role {role!r}: choose one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
        courses = list(dict.fromkeys(courses or []))
        if role == "staff" and not courses:
            raise UserError("a staff account needs at least one --course")
        accounts = self._load()
        account = Account(name, role, courses, _hasher.hash(password))
        accounts[name] = account
        self._save(accounts)
        return account

    def remove(self, name: str) -> bool:
        accounts = self._load()
        if accounts.pop(name, None) is None:
            return False
        self._save(accounts)
        return True

    def verify(self, name: str, password: str) -> Account | None:
        """The account when the password matches, else None (an unknown name costs a
        hash too, so timing does not tell which names exist)."""
        account = self._load().get(name)
        try:
            _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return account


_DUMMY_HASH = _hasher.hash("no such account")
