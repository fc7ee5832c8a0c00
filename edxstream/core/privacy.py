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
from urllib.parse import quote

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
    '"(?:' + "|".join(sorted(re.escape(k) for k in USERNAME_KEYS | USER_ID_KEYS | IP_KEYS)) + ')[\\\\"]'
)


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


class _Scrubber:
    """Replaces one event's identities inside free-form strings and payload JSON."""

    def __init__(self, event: EnrichedEvent, key: str, ip_mode: IpMode):
        self.key = key
        self.ip_mode = ip_mode
        self.username = event.username or None
        self.forum = event.event_type.startswith("edx.forum.") or event.category == "forum"

    def ip_text(self, match: re.Match[str]) -> str:
        text = match.group(0)
        try:
            ipaddress.ip_address(text)
        except ValueError:
            return text  # a version number or similar, not an address
        return mask_ip(text, self.ip_mode) or "[ip]"

    def text(self, value: str, extra_ip: str | None = None) -> str:
        name = self.username
        if name:
            probe = _username_probe(name)
            if probe is None or any(f in value.lower() for f in probe):
                value = _username_pattern(name).sub(pseudonym_username(name, self.key), value)
        if extra_ip and ":" in extra_ip and extra_ip in value:  # IPv6 echoes; IPv4 is caught below
            value = value.replace(extra_ip, mask_ip(extra_ip, self.ip_mode) or "[ip]")
        if _MAYBE_IPV4.search(value) is not None:
            value = _IPV4.sub(self.ip_text, value)
        return value

    def _holds_no_identity(self, text: str, ip: str | None) -> bool:
        """True when the walk below would change nothing in this JSON text: no key it
        rewrites, no form of the username, no IP address. Checks in C over the text,
        conservative: anything that may be one of them means walking it."""
        low = text.lower()
        if _IDENTITY_KEY.search(low) is not None:
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

    def json(self, node: Any, ip: str | None) -> Any:
        if isinstance(node, dict):
            out: dict[Any, Any] = {}
            for k, v in node.items():
                name = k.lower() if isinstance(k, str) else k
                if self.forum and name in FORUM_TEXT_KEYS:
                    continue
                if name in USERNAME_KEYS and isinstance(v, str):
                    out[k] = pseudonym_username(v, self.key) if v else v
                elif name in USER_ID_KEYS and isinstance(v, (int, str)) and str(v).isdigit():
                    out[k] = pseudonym_user_id(int(v), self.key)
                elif name in IP_KEYS and isinstance(v, str):
                    out[k] = mask_ip(v, self.ip_mode)
                else:
                    out[k] = self.json(v, ip)
            return out
        if isinstance(node, list):
            return [self.json(v, ip) for v in node]
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
        page=scrub.text(event.page, event.ip) if event.page else event.page,
        referer=scrub.text(event.referer, event.ip) if event.referer else event.referer,
        payload=scrub.payload(event.payload, event.ip),
    )


_warned_default_key = False


def for_analysts(event: EnrichedEvent, settings: Settings) -> EnrichedEvent:
    """What the analyst tables may hold: pseudonymized when ``settings.pseudonymize``
    (IP handling from ``settings.pseudonym_ip``)."""
    global _warned_default_key
    if not settings.pseudonymize:
        return event
    if settings.pseudonym_ip not in ("drop", "truncate"):
        raise UserError(f"EDXSTREAM_PSEUDONYM_IP must be drop or truncate, got {settings.pseudonym_ip!r}")
    ip_mode = cast(IpMode, settings.pseudonym_ip)
    if settings.pseudonym_key == DEFAULT_KEY and not _warned_default_key:
        _warned_default_key = True
        log.warning(
            "pseudonymizing with the default key: anyone can recompute the pseudonym of a "
            "known username. Set EDXSTREAM_PSEUDONYM_KEY to a secret (see docs/privacy.md)."
        )
    return pseudonymize(event, settings.pseudonym_key, ip_mode)
