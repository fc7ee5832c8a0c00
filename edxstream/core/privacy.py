"""Pseudonymization of learners before events reach the analyst tables.

A pure transformation of :class:`~edxstream.core.records.EnrichedEvent`:

- ``user_id`` becomes a stable 63-bit integer from a keyed BLAKE2b hash, so per-learner
  joins, counts and models still work, but the id cannot be looked up in the LMS;
- ``username`` becomes ``u_`` + 16 hex digits of a keyed hash (``session`` likewise
  ``s_`` + 16 hex), stable for the same key;
- ``ip`` is dropped (default) or truncated to its /24 (IPv4) or /48 (IPv6) network;
- the free text of forum posts (``body``, ``title``, search ``query``) is dropped from
  the payload of ``edx.forum.*`` events;
- the username and the IP are also scrubbed wherever they occur in ``payload``, ``page``
  and ``referer`` (profile URLs such as ``/u/<username>``, ``"username"`` keys, the IP
  echoed in a payload), and ``user_id`` keys inside the payload get the same
  pseudonymous integer as the column.

The hash is keyed (``settings.pseudonym_key``): without the key nobody can recompute a
pseudonym from a known username, and whoever holds it can only check a guess, never
invert. Use the same key everywhere the tables must join, and keep it secret.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from functools import lru_cache
from typing import Any, Literal, cast
from urllib.parse import quote, unquote

import msgspec
import orjson

from edxstream.core.errors import UserError
from edxstream.core.records import EnrichedEvent
from edxstream.core.settings import Settings

log = logging.getLogger(__name__)

IpMode = Literal["drop", "truncate"]

DEFAULT_KEY = "change-me"

# Free text a learner typed in the forum. Everything else in a forum payload (ids,
# categories, flags) is kept because the forum views count on it.
FORUM_TEXT_KEYS = frozenset({"body", "title", "query", "text", "search_text"})
USERNAME_KEYS = frozenset({"username", "user", "author_username", "target_username", "student", "instructor"})
USER_ID_KEYS = frozenset({"user_id", "author_id", "target_user_id", "student_id"})
IP_KEYS = frozenset({"ip", "ip_address", "client_ip", "remote_addr"})
# Keys whose value is removed wherever they stand: secrets and e-mail addresses (a login or
# registration form is logged with them, often before the learner is known).
SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "old_password",
        "password_confirm",
        "confirm_password",
        "password1",
        "password2",
        "email",
        "new_email",
        "old_email",
        "confirm_email",
        "email_address",
        "secondary_email",
        "csrfmiddlewaretoken",
    }
)
# Form fields of server events (the request's POST and GET, as the LMS logs them) that
# hold who the learner is; outside a form these keys mean other things ("name" of a
# block, a category), so they are removed only there.
FORM_KEYS = frozenset({"POST", "GET"})
FORM_IDENTITY_KEYS = frozenset(
    {
        "name",
        "full_name",
        "first_name",
        "last_name",
        "phone",
        "phone_number",
        "mailing_address",
        "address",
        "city",
        "year_of_birth",
        "date_of_birth",
        "goals",
        "bio",
        "gender",
        "level_of_education",
    }
)
EMAIL_MASK = "[email]"

# E-mail addresses in any text, also URL-encoded (%40) as query strings carry them: a
# local part, an @, a dotted domain ending in letters (so a usage key such as
# "type@problem+block@4f1a" is not one). The regex finds the @ and the domain (it starts
# on one character class, which the engine skips through in C); the local part is then
# walked back by hand, only where a domain matched.
_EMAIL_DOMAIN = re.compile(r"(?:@|%40)[A-Za-z0-9][A-Za-z0-9-]{0,62}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b")
_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%'*+^_`{|}~-")
# URL paths whose next segment names a learner: profiles (/u/<name>), the accounts and
# preferences APIs (/api/user/v1/accounts/<name>), the forum's user pages (/users/<id>).
# Also URL-encoded (%2F), as a ?next= parameter carries a path.
_URL_NAME = re.compile(
    r"((?:/|%2[Ff])(?:u|accounts|preferences|users)(?:/|%2[Ff]))((?:[^/?#&;%\s\"'\\<>]|%(?!2[Ff]))+)"
)
_URL_NAME_PROBES = ("/u/", "/accounts/", "/preferences/", "/users/")
# Segments after those words that are routes, not learners.
_URL_NOT_NAMES = frozenset(
    {
        "email_opt_in",
        "time_zones",
        "me",
        "settings",
        "login",
        "logout",
        "register",
        "password_reset",
        "deactivate_logout",
        "retire",
        "search",
        "{username}",
    }
)
# Query-string parameters that carry an identity (?username=, &user_id=, ?email=...).
_QUERY_IDENTITY = re.compile(
    r"([?&;](?:username|user|user_name|student|author|email|user_id|student_id)=)([^&#;\s\"'\\<>]*)", re.IGNORECASE
)
_QUERY_PROBE = re.compile(r"[?&;](?:username|user|user_name|student|author|email|user_id|student_id)=")
# A form field above with a value, in lower-cased payload JSON (the LMS logs each field
# as a list of strings; a key in JSON-in-a-string has escaped quotes).
_FORM_FIELD = re.compile('"(?:' + "|".join(sorted(FORM_IDENTITY_KEYS)) + ')\\\\?":\\\\?[\\["]')

# Characters that can be part of an edX username (and of a URL path segment holding one):
# a match must not be glued to more of them, so "ann" is not scrubbed out of "annual".
_NAME_CHARS = r"A-Za-z0-9_\-"
_IPV4 = re.compile(r"(?<![0-9.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9])")
# Cheap test for text that may hold an IPv4 address at all: what every address holds
# from its first dot on. Starting with a literal lets the regex engine jump from dot to
# dot instead of trying every position (3-4x faster than _IPV4 on event payloads).
_MAYBE_IPV4 = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d")
# A key the payload walk rewrites, as it appears in lower-cased JSON text at any depth
# of nesting (a key in JSON-in-a-string is followed by an escaped quote, a backslash
# first). Searched in the lower-cased text: the walk compares lower-cased keys, and a
# case-sensitive search is 4x faster than an IGNORECASE one.
_IDENTITY_KEY = re.compile(
    '"(?:' + "|".join(sorted(re.escape(k) for k in USERNAME_KEYS | USER_ID_KEYS | IP_KEYS | SECRET_KEYS)) + ')[\\\\"]'
)


_KEY_OR_FORM_FIELD = re.compile(_IDENTITY_KEY.pattern + "|" + _FORM_FIELD.pattern)


def _key_bytes(key: str) -> bytes:
    raw = key.encode()
    # BLAKE2b takes keys up to 64 bytes; longer secrets are condensed first.
    return raw if len(raw) <= 64 else hashlib.blake2b(raw).digest()


@lru_cache(maxsize=65536)
def _digest(key: str, domain: bytes, value: str) -> bytes:
    return hashlib.blake2b(value.encode(), key=_key_bytes(key), person=domain, digest_size=8).digest()


def pseudonym_user_id(user_id: int, key: str) -> int:
    """A stable non-negative 63-bit integer: fits Int64 and UInt64 columns alike."""
    return int.from_bytes(_digest(key, b"edxstream-uid", str(user_id)), "big") >> 1


def pseudonym_username(username: str, key: str) -> str:
    """The keyed pseudonym of a username (``u_`` and hex)."""
    # Case-folded: edX treats usernames case-insensitively, so "Ann" and "ann" are one learner.
    return "u_" + _digest(key, b"edxstream-user", username.casefold()).hex()


def pseudonym_session(session: str, key: str) -> str:
    """The keyed pseudonym of a session id (``s_`` and hex)."""
    return "s_" + _digest(key, b"edxstream-sess", session).hex()


def mask_ip(ip: str | None, mode: IpMode = "drop") -> str | None:
    """None for ``drop``; the network address for ``truncate`` (/24 IPv4, /48 IPv6).

    Something that is not an IP address is dropped whatever the mode: it may be anything."""
    if not ip or mode == "drop":
        return None
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def _username_forms(username: str) -> set[str]:
    return {username, quote(username, safe=""), quote(username)}


@lru_cache(maxsize=65536)
def _username_pattern(username: str) -> re.Pattern[str]:
    forms = _username_forms(username)
    alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.compile(rf"(?<![{_NAME_CHARS}])(?:{alternatives})(?![{_NAME_CHARS}])", re.IGNORECASE)


@lru_cache(maxsize=65536)
def _username_probe(username: str) -> tuple[str, ...] | None:
    """Lower-cased forms of an ASCII username: text that contains none of them cannot
    match its pattern, which is far cheaper to check than compiling and running the
    pattern (most pages and payloads never mention the learner). None for a non-ASCII
    name, whose case-insensitive matches a plain lower() may not foresee."""
    if not username.isascii() or '"' in username or "\\" in username:
        return None
    return tuple(f.lower() for f in _username_forms(username))


def _emails(text: str) -> list[tuple[int, int]]:
    """(start, end) of each e-mail address in ``text``."""
    found = []
    last = 0
    for m in _EMAIL_DOMAIN.finditer(text):
        at = j = m.start()
        while j > last and at - j < 64 and text[j - 1] in _EMAIL_LOCAL:
            j -= 1
        if j < at:
            found.append((j, m.end()))
            last = m.end()
    return found


def scrub_emails(text: str) -> str:
    """``text`` with every e-mail address replaced by EMAIL_MASK (pure; a C-level test
    first: most text holds no @)."""
    if "@" not in text and "%40" not in text:
        return text
    spans = _emails(text)
    if not spans:
        return text
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(EMAIL_MASK)
        last = end
    out.append(text[last:])
    return "".join(out)


def _may_hold_url_identity(text: str, low: str | None = None) -> bool:
    return (
        "/u/" in text
        or "/accounts/" in text
        or "/preferences/" in text
        or "/users/" in text
        or "%2F" in text
        or "%2f" in text
        or ("=" in text and _QUERY_PROBE.search(text.lower() if low is None else low) is not None)
    )


def scrub_url_identities(text: str, key: str) -> str:
    """``text`` with the learners named by URLs in it (profile and account paths, identity
    query parameters) replaced by their pseudonyms; addresses by EMAIL_MASK (pure)."""
    if not _may_hold_url_identity(text):
        return text

    def path(m: re.Match[str]) -> str:
        seg = unquote(m.group(2))
        if seg.lower() in _URL_NOT_NAMES:
            return m.group(0)
        if seg.isdigit() and m.group(1).lower().replace("%2f", "/") == "/users/":  # the forum's user pages take the id
            return m.group(1) + str(pseudonym_user_id(int(seg), key))
        return m.group(1) + pseudonym_username(seg, key)

    def param(m: re.Match[str]) -> str:
        name, value = m.group(1).lower(), unquote(m.group(2))
        if not value:
            return m.group(0)
        if "email" in name or "@" in value:
            return m.group(1) + EMAIL_MASK
        if name.endswith("id=") and value.isdigit():
            return m.group(1) + str(pseudonym_user_id(int(value), key))
        return m.group(1) + pseudonym_username(value, key)

    return _QUERY_IDENTITY.sub(param, _URL_NAME.sub(path, text))


def _scrub_text(value: str, username: str | None, extra_ip: str | None, key: str, ip_mode: IpMode) -> str:
    """``value`` with the identities in it replaced: addresses, learners named by URLs,
    the event's learner's username in any of its forms, IP addresses (pure)."""
    low = value.lower()
    if "@" in value or "%40" in value or _may_hold_url_identity(value, low):
        value = scrub_emails(scrub_url_identities(value, key))
        low = value.lower()
    if username:
        probe = _username_probe(username)
        if probe is None or any(f in low for f in probe):
            value = _username_pattern(username).sub(pseudonym_username(username, key), value)
    if extra_ip and ":" in extra_ip and extra_ip in value:  # IPv6 echoes; IPv4 is caught below
        value = value.replace(extra_ip, mask_ip(extra_ip, ip_mode) or "[ip]")
    if _MAYBE_IPV4.search(value) is not None:

        def ip_text(match: re.Match[str]) -> str:
            text = match.group(0)
            try:
                ipaddress.ip_address(text)
            except ValueError:
                return text  # a version number or similar, not an address
            return mask_ip(text, ip_mode) or "[ip]"

        value = _IPV4.sub(ip_text, value)
    return value


# Pages and referers repeat (a learner's video events share their page): short texts are
# scrubbed once per learner and IP and then read back, in bounded memory.
_CACHED_TEXT_CHARS = 1024
_scrubbed_text = lru_cache(maxsize=16384)(_scrub_text)


class _Scrubber:
    """Replaces one event's identities inside free-form strings and payload JSON."""

    def __init__(self, event: EnrichedEvent, key: str, ip_mode: IpMode):
        self.key = key
        self.ip_mode = ip_mode
        self.username = event.username or None
        self.forum = event.event_type.startswith("edx.forum.") or event.category == "forum"

    def text(self, value: str, extra_ip: str | None = None) -> str:
        if len(value) <= _CACHED_TEXT_CHARS:
            return _scrubbed_text(value, self.username, extra_ip, self.key, self.ip_mode)
        return _scrub_text(value, self.username, extra_ip, self.key, self.ip_mode)

    def event_type(self, value: str) -> str:
        """A URL event type is scrubbed like a page; a dotted name (edx.forum.thread.created)
        only of addresses, as a short username ("edx") may be one of its words. The action
        needs nothing here: the model derives it identity-free (``model.parse_line``), and
        the windows count that same action."""
        if value[:1] == "/" or value.startswith("http"):
            return self.text(value)
        return scrub_emails(value)

    def _holds_no_identity(self, text: str, ip: str | None) -> bool:
        """True when the walk below would change nothing in this JSON text: no key it
        rewrites, no form of the username, no IP address. Checks in C over the text,
        conservative: anything that may be one of them means walking it."""
        low = text.lower()
        # one search for keys and form fields (both start with a quote); the other tests
        # stay separate: one regex of all the alternatives is slower than their sum
        if _KEY_OR_FORM_FIELD.search(low) is not None:
            return False
        if ("@" in text or "%40" in text) and _emails(text):
            return False
        if _may_hold_url_identity(text, low):
            return False
        if _MAYBE_IPV4.search(text) is not None and _IPV4.search(text) is not None:
            return False
        if ip and ip in text:
            return False
        if self.username:
            probe = _username_probe(self.username)
            if probe is None or any(f in low for f in probe):
                return False
        return True

    def json(self, node: Any, ip: str | None, form: bool = False) -> Any:
        """``node`` with identities replaced; ``form``: inside a request's POST or GET."""
        if isinstance(node, dict):
            out: dict[Any, Any] = {}
            for k, v in node.items():
                name = k.lower() if isinstance(k, str) else k
                if (self.forum and name in FORUM_TEXT_KEYS) or name in SECRET_KEYS:
                    continue
                if form and name in FORM_IDENTITY_KEYS:
                    continue
                if name in USERNAME_KEYS and isinstance(v, (str, list)):
                    out[k] = self.username_value(v)
                elif name in USER_ID_KEYS and isinstance(v, (int, str)) and str(v).isdigit():
                    out[k] = pseudonym_user_id(int(v), self.key)
                elif name in IP_KEYS and isinstance(v, str):
                    out[k] = mask_ip(v, self.ip_mode)
                else:
                    out[k] = self.json(v, ip, form or (k in FORM_KEYS and isinstance(v, dict)))
            return out
        if isinstance(node, list):
            return [self.json(v, ip, form) for v in node]
        if isinstance(node, str):
            stripped = node.lstrip()
            if stripped[:1] in ("{", "["):  # browser events carry their payload as JSON text
                try:
                    inner = orjson.loads(node)
                except orjson.JSONDecodeError:
                    return self.text(node, ip)
                return orjson.dumps(self.json(inner, ip)).decode()
            return self.text(node, ip)
        return node

    def username_value(self, v: str | list) -> Any:
        """A username field's value (forms log each field as a list of strings)."""
        if isinstance(v, list):
            return [self.username_value(x) if isinstance(x, (str, list)) else x for x in v]
        return pseudonym_username(v, self.key) if v else v

    def payload(self, payload: str, ip: str | None) -> str:
        if not payload:
            return payload
        if not self.forum and self._holds_no_identity(payload, ip):
            return payload  # most payloads (video positions, problem answers): no walk
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            # A forum payload we cannot take apart may be a post's text: drop all of it.
            return "" if self.forum else self.text(payload, ip)
        return orjson.dumps(self.json(data, ip)).decode()


def pseudonymize(event: EnrichedEvent, key: str, ip_mode: IpMode = "drop") -> EnrichedEvent:
    """The event with its learner's identities replaced by keyed pseudonyms (pure)."""
    scrub = _Scrubber(event, key, ip_mode)
    return msgspec.structs.replace(
        event,
        user_id=None if event.user_id is None else pseudonym_user_id(event.user_id, key),
        username=pseudonym_username(event.username, key) if event.username else event.username,
        session=pseudonym_session(event.session, key) if event.session else event.session,
        ip=mask_ip(event.ip, ip_mode),
        event_type=scrub.event_type(event.event_type),
        page=scrub.text(event.page, event.ip) if event.page else event.page,
        referer=scrub.text(event.referer, event.ip) if event.referer else event.referer,
        payload=scrub.payload(event.payload, event.ip),
    )


def check_key(settings: Settings) -> None:
    """Refuse (UserError) to pseudonymize with the default key: it is public, so anyone
    could recompute a learner's pseudonym from a username. The sinks call this before
    they start; the demo sets a key of its own."""
    if settings.pseudonymize and settings.pseudonym_key == DEFAULT_KEY:
        raise UserError(
            "EDXSTREAM_PSEUDONYM_KEY is the default key, which anyone can use to recompute a learner's "
            "pseudonym: set it to a long random secret, e.g. "
            '`python -c "import secrets; print(secrets.token_hex(32))"` (see docs/privacy.md)'
        )


def for_analysts(event: EnrichedEvent, settings: Settings) -> EnrichedEvent:
    """What the analyst tables may hold: pseudonymized when ``settings.pseudonymize``
    (IP handling from ``settings.pseudonym_ip``)."""
    if not settings.pseudonymize:
        return event
    if settings.pseudonym_ip not in ("drop", "truncate"):
        raise UserError(f"EDXSTREAM_PSEUDONYM_IP must be drop or truncate, got {settings.pseudonym_ip!r}")
    ip_mode = cast(IpMode, settings.pseudonym_ip)
    return pseudonymize(event, settings.pseudonym_key, ip_mode)
