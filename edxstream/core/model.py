"""The event model: one raw tracking-log line in, one typed record out.

``parse_line`` is the single entry point used by the stream app, the sinks' tools and
``edxstream inspect``. It is pure and deterministic (no I/O, no clock): the same bytes
always give an equal record, so a replayed line gets the same ``event_id``.

A line becomes an :class:`~edxstream.core.records.EnrichedEvent` when it is a JSON object
(optionally behind a logger prefix) with an event type (``event_type`` or ``name``) and
a parsable ``time``; anything else becomes a :class:`~edxstream.core.records.DeadLetter`
with a short reason code, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from math import isfinite
from datetime import datetime, timedelta, timezone
from hashlib import blake2b
from urllib.parse import parse_qsl

import orjson

from edxstream.core.events.classification import (
    ASSESSMENT,
    CATEGORIES,
    VIDEO,
    classify,
    describe,
    route_template,
)
from edxstream.core.events.courses import (
    course_from_path,
    course_key_parts,
    course_of_usage_key,
    courseware_location,
    find_usage_key,
    normalize_course_id,
)
from edxstream.core.privacy import scrub_emails
from edxstream.core.records import DeadLetter, EnrichedEvent, dead_letter

_find_usage_key_uncached = find_usage_key.__wrapped__

__all__ = [
    "CATEGORIES",
    "DEAD_LETTER_REASONS",
    "EnrichedEvent",
    "DeadLetter",
    "parse_line",
    "line_id",
    "event_identity",
    "rejected_course_id",
    "EARLIEST_TIME",
    "course_key_parts",
    "normalize_course_id",
    "classify",
    "route_template",
    "decode_payload",
    "parse_time",
    "UNKNOWN_TIME",
]

UTC = timezone.utc

# Dead-letter reason codes (DeadLetter.reason), for readers and dashboards.
DEAD_LETTER_REASONS: dict[str, str] = {
    "empty": "the line is empty or only whitespace",
    "not_utf8": "the line is not valid UTF-8 (raw kept as base64)",
    "not_json": "the line is not valid JSON (truncated, broken, or not JSON at all)",
    "not_object": "the line is valid JSON but not an object",
    "missing_event_type": "the object has neither a usable event_type nor name",
    "bad_time": "the time cannot be read as a date and time",
    "time_out_of_range": "the time is before the platform existed, or further ahead of when the line was "
    "read than the allowed clock skew",
    "unwritable": "the event cannot be written as JSON (nested too deep)",
    "too_large": "the line is longer than the limit (EDXSTREAM_MAX_MESSAGE_BYTES); raw keeps its start",
    "truncated_file": "the rest of a file cannot be read (a truncated or corrupt .gz); raw keeps the partial line",
    "internal_error": "parsing or encoding the line raised an error (a fault in edxstream; replay after a fix)",
}

_WS = b" \t\r\n\x0b\x0c"

# The time of an event whose line carries none (neither "time" nor "timestamp"): the
# epoch, a value no real tracking event has, so consumers can recognise and replace it.
UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=UTC)

# No Open edX tracking event is older than the platform (2012). An earlier time is a
# broken clock or a placeholder; counted in a window it would sit in a window nobody
# looks at, and a ClickHouse DateTime cannot even hold it (year 1 becomes 1970).
EARLIEST_TIME = datetime(2012, 1, 1, tzinfo=UTC)


def line_id(body: bytes) -> str:
    """Deterministic id of a line's JSON bytes (prefix and surrounding whitespace
    removed): 128-bit BLAKE2b, hex."""
    return blake2b(body, digest_size=16).hexdigest()


def event_identity(fingerprint: str, offset: int) -> str:
    """The id of the line at byte ``offset`` of the file whose fingerprint is
    ``fingerprint`` (producer.fingerprint): every shipped line has its own, identical
    lines at different offsets are distinct events, a re-delivered line keeps its id.
    The offset is fixed-width hex, so a file's ids sort in file order and the sinks'
    unique indexes grow at their end as the file grows."""
    return f"{fingerprint}-{offset:012x}"


def _dead(reason: str, detail: str, line: bytes, source, offset, ident: str | None = None) -> DeadLetter:
    return dead_letter(
        line, reason, detail, dead_letter_id=ident or line_id(line), stage="parse", source=source, offset=offset
    )


def line_dead_letter(reason: str, detail: str, line: bytes, source=None, offset=None) -> DeadLetter:
    """The dead letter of ``line`` as the model makes it (for the readers of logs: a line
    cut off as too long, the unreadable rest of a file)."""
    return _dead(reason, detail, line, source, offset)


def unhandled(line: bytes, source, offset, exc: BaseException) -> DeadLetter:
    """The dead letter of a line whose parsing or encoding raised: a fault in this code,
    not in the line's shape. The stream goes on, and the line waits among the dead
    letters, with the error, for a fix and a replay."""
    detail = f"{type(exc).__name__}: {exc}"[:500].encode("utf-8", "backslashreplace").decode("utf-8")
    return _dead("internal_error", detail, line, source, offset)


# --- small typed accessors: tracking logs put anything anywhere ----------------------


def _str(value) -> str | None:
    """A non-empty string, or None."""
    if value.__class__ is str:
        return value or None
    return None


_INT_MAX = 2**63 - 1  # the sinks store ids and counts as BIGINT


class _Unusable:
    """A value that is there but makes no number a column can hold (1e400, "abc", an
    integer beyond 64 bits): the column gets null and the event a note (see _noted)."""

    __slots__ = ()


UNUSABLE = _Unusable()


def _float(value) -> float | None | _Unusable:
    """A finite float; None when absent (None or ""); UNUSABLE for anything else."""
    cls = value.__class__
    if cls is float:
        return value if isfinite(value) else UNUSABLE
    if cls is int:
        return float(value) if -_INT_MAX <= value <= _INT_MAX else UNUSABLE
    if cls is str:
        if not value:
            return None
        try:
            f = float(value)
        except ValueError:
            return UNUSABLE
        return f if isfinite(f) else UNUSABLE
    return None if value is None else UNUSABLE


def _float_of(pd: dict, key: str, other: str) -> float | None | _Unusable:
    """The number under ``key``, else under ``other`` (older and newer spellings)."""
    f = _float(pd.get(key))
    return _float(pd.get(other)) if f is None else f


def _noted(values: tuple, columns: tuple[str, ...]) -> tuple[tuple, str]:
    """``values`` with UNUSABLE made None, and the note naming those columns."""
    notes = "; ".join([f"{c}: not a usable number" for v, c in zip(values, columns, strict=True) if v is UNUSABLE])
    return tuple(None if v is UNUSABLE else v for v in values), notes


def _int(value) -> int | None:
    cls = value.__class__
    if cls is int:
        return value if -_INT_MAX <= value <= _INT_MAX else None
    if cls is str:
        s = value.strip()
        if s.isdigit() and len(s) < 19:
            return int(s)
        return None
    if cls is float and value.is_integer() and -_INT_MAX <= value <= _INT_MAX:
        return int(value)
    return None


def _success(value) -> bool | None:
    if value.__class__ is bool:
        return value
    if value.__class__ is str:
        v = value.lower()
        if v == "correct":
            return True
        if v in ("incorrect", "partially-correct", "partially_correct"):
            return False
    return None


# --- time -----------------------------------------------------------------------------


def parse_time(value) -> datetime | None:
    """UTC datetime (microsecond precision) of a tracking-log time, or None.

    Accepts ISO 8601 with or without a zone (no zone means UTC, as the LMS writes UTC),
    ``Z``, a space instead of ``T``, and epoch seconds or milliseconds."""
    cls = value.__class__
    if cls is str:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            s = value.strip()
            if s.endswith(" UTC"):
                s = s[:-4]
            # "+0100" style offsets predate Python's acceptance of them in some forms
            try:
                dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
            except ValueError:
                return None
        tz = dt.tzinfo
        if tz is None:
            return dt.replace(tzinfo=UTC)
        if tz is UTC:
            return dt
        off = dt.utcoffset()
        if not off:
            return dt.replace(tzinfo=UTC)
        try:
            return dt.astimezone(UTC)
        except OverflowError:
            return None
    if (cls is int or cls is float) and value > 0:
        seconds = value / 1000.0 if value > 1e11 else float(value)
        try:
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
        except OverflowError:
            return None
    return None


# --- payload ---------------------------------------------------------------------------


def _without_username(action: str, username: str) -> str:
    """A URL action with the learner's own username, where it stands as a path segment,
    replaced by ``{username}``: routes that route_template does not know may still name
    the learner, and the action is a dimension every analyst sees (and the windows count)."""
    return "/".join("{username}" if seg == username else seg for seg in action.split("/"))


def decode_payload(event) -> tuple[object, str | None]:
    """(decoded value, JSON text) of an ``event`` field.

    A JSON-encoded string is decoded; a URL-encoded query string (browser
    ``problem_check``) becomes an object whose repeated keys hold lists; anything that
    cannot be decoded (a truncated string) is kept as its text. Missing -> (None, "");
    a value no JSON writer can write (nested too deep) -> (value, None)."""
    cls = event.__class__
    if cls is str:
        text = event
        s = text.lstrip()
        if s[:1] in ("{", "["):
            try:
                value = orjson.loads(s)
            except orjson.JSONDecodeError:
                # what orjson refuses may still be JSON (1e400, integers beyond 64 bits):
                # read it to find the fields, keep the text as logged (a writer would
                # turn 1e400 into null)
                value = _slow_loads(s)
                return (text, text) if value is _INVALID else (value, text)
            return value, json_text(value)
        if "=" in s and " " not in s and "\n" not in s:
            pairs = parse_qsl(s, keep_blank_values=True)
            if pairs:
                query: dict = {}
                for k, v in pairs:
                    old = query.get(k)
                    if old is None:
                        query[k] = v
                    elif old.__class__ is list:
                        old.append(v)
                    else:
                        query[k] = [old, v]
                return query, orjson.dumps(query).decode()
        return text, text
    if event is None:
        return None, ""
    return event, json_text(event)


def _i4x_from_dashed(text: str) -> str | None:
    """``i4x-Org-Course-category-name`` (old ids in answers and video ids) ->
    ``i4x://Org/Course/category/name``."""
    if not text.startswith("i4x-"):
        return None
    parts = text[4:].split("-", 3)
    if len(parts) < 4 or not all(parts):
        return None
    return "i4x://" + "/".join(parts)


def _problem_from_answers(answers: dict) -> str | None:
    """Problem usage key from capa answer keys: ``input_<block>_<n>_<m>``."""
    for key in answers:
        if key.__class__ is not str or not key.startswith("input_"):
            continue
        name = key[6:]
        # strip the trailing _<response>_<input> (and an optional [] list marker)
        if name.endswith("[]"):
            name = name[:-2]
        parts = name.rsplit("_", 2)
        if len(parts) == 3 and parts[1].isdigit():
            name = parts[0]
        if name.startswith("block-v1"):
            return name
        if name.startswith("i4x-"):
            return _i4x_from_dashed(name)
        if "type@problem" in name:
            return name
        return None
    return None


def _usage_from_url(url: str | None) -> str | None:
    """Usage key inside a URL: ``.../xblock/<key>/...``, ``jump_to/<key>``, ``modx/i4x://``,
    including the ``i4x:;_;_Org;_Course;_cat;_name`` form of old xblock URLs."""
    if not url:
        return None
    i = url.find("i4x:;_;_")
    if i != -1:
        end = url.find("/", i)
        seg = url[i:end] if end != -1 else url[i:]
        return seg.replace(";_", "/")
    return find_usage_key(url)


def _course_from_usage(key: str | None) -> str | None:
    if not key:
        return None
    return course_of_usage_key(key)


_INVALID = object()


def _slow_loads(text: str):
    """The standard library's reading of what orjson refused: it also takes integers
    beyond 64 bits and NaN/Infinity, which real logs contain. Only runs on the rare
    lines orjson rejects.

    It also takes lone surrogate escapes (``"\\ud800"``), which no encoder downstream
    can write as UTF-8: they become U+FFFD here, so every line this accepts can be
    encoded and stored (the event id still comes from the line's own bytes)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return _INVALID
    if _SURROGATE_ESCAPE.search(text) is not None:
        try:
            doc = _without_surrogates(doc)
        except RecursionError:
            return _INVALID
    return doc


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value):
    """``value`` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    cls = value.__class__
    if cls is str:
        return _SURROGATE.sub("\ufffd", value)
    if cls is dict:
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if cls is list:
        return [_without_surrogates(v) for v in value]
    return value


def json_text(value) -> str | None:
    """``value`` as JSON text: orjson, else the standard library for what orjson refuses
    (integers beyond 64 bits, nesting deeper than 255); None when neither can write it."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except (ValueError, RecursionError):
            return None


def rejected_course_id(raw: bytes) -> str | None:
    """The course id a line's context names when it is not well formed (so the event
    was kept without a course, see ``normalize_course_id``), else None. For the stream
    app's count of rejected course ids; it reads the line again, so it is meant for the
    few events left without a course whose line mentions one."""
    brace = raw.find(b"{")
    try:
        doc = orjson.loads(raw[brace:]) if brace >= 0 else None
    except orjson.JSONDecodeError:
        return None
    ctx = doc.get("context") if doc.__class__ is dict else None
    value = ctx.get("course_id") if ctx.__class__ is dict else None
    if value.__class__ is str and value.strip() and normalize_course_id(value) is None:
        return value
    return None


# --- the sections of a line, each a pure function ------------------------------------


def _read_object(raw: bytes, source, offset, ident: str | None) -> tuple[dict, bytes, bytes] | DeadLetter:
    """The line's JSON object, the bytes it was read from (the line without a logger
    prefix: what ``event_id`` hashes) and the whole stripped line; or the dead letter of a
    line that is empty, not UTF-8, not JSON or not an object."""
    if raw.__class__ is not bytes:
        raw = bytes(raw) if not isinstance(raw, str) else raw.encode("utf-8", "surrogateescape")
    line = raw.strip(_WS)
    if not line:
        return _dead("empty", "empty line", line, source, offset, ident)
    body = line
    if line[0] != 0x7B:  # "{": maybe a logger prefix ("... logger.py:41 - {...}")
        brace = line.find(b"{")
        if brace > 0:
            body = line[brace:]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return _dead("not_utf8", f"invalid UTF-8 at byte {uexc.start}", line, source, offset, ident)
        doc = _slow_loads(body.decode("utf-8"))
        if doc is _INVALID and body is not line:
            # the prefix guess may be wrong: the whole line might be JSON that is not an object
            doc = _slow_loads(text)
            if doc is not _INVALID:
                body = line
        if doc is _INVALID:
            return _dead("not_json", f"invalid JSON: {exc}", line, source, offset, ident)
    if doc.__class__ is not dict:
        return _dead("not_object", f"JSON {type(doc).__name__}, not an object", line, source, offset, ident)
    return doc, body, line


def _time_without_time(doc: dict) -> datetime | None:
    """The time of an event that has no ``time``. Documentation samples and some
    exporters omit it (a few carry ``timestamp``). The event is still worth keeping;
    UNKNOWN_TIME marks it so a consumer can substitute the time it received the line."""
    raw_time = doc.get("timestamp")
    return UNKNOWN_TIME if raw_time is None else parse_time(raw_time)


def _action(name, event_type: str) -> str:
    """The canonical name of what happened: ``name`` when it is one, else the event type;
    URL event types reduced to their route template."""
    base = name if name.__class__ is str and name and name[0] != "/" else event_type
    if base[0] == "/" or base.startswith("http"):
        return route_template(base)
    action = base.strip()
    if "@" in action:  # an address in an event name: the action is a dimension analysts see
        action = scrub_emails(action)
    return action


def _context_of(ctx) -> dict:
    """A ``context`` that is not an object: some exporters write it as a JSON string;
    anything else counts as an empty context."""
    if ctx.__class__ is str and ctx[:1] == "{":
        try:
            ctx = orjson.loads(ctx)
        except orjson.JSONDecodeError:
            return {}
    return ctx if ctx.__class__ is dict else {}


def _block_and_problem(
    category: str, value, pd: dict | None, module_key: str | None, url_type: str | None, path: str | None
) -> tuple[str | None, str | None]:
    """(block usage id, problem usage id): the context's module first, then the payload's
    many spellings, then the URLs of the request."""
    block_id = module_key
    problem_id = None
    if pd is not None:
        problem_id = _str(pd.get("problem_id"))
        if problem_id is None and category == ASSESSMENT:
            problem_id = _str(pd.get("problem")) or _str(pd.get("module_id"))
            if problem_id is None:
                problem_id = _problem_from_answers(pd)
        if block_id is None:
            block_id = problem_id or _str(pd.get("usage_key")) or _str(pd.get("module_id"))
            if block_id is None:
                cand = _str(pd.get("id")) or _str(pd.get("location")) or _str(pd.get("block_id"))
                if cand is not None and (cand.startswith("block-v1:") or cand.startswith("i4x://")):
                    block_id = cand
                elif cand is not None and category == VIDEO and cand.startswith("i4x-"):
                    block_id = _i4x_from_dashed(cand)
    elif value.__class__ is list and category == ASSESSMENT and value:
        # browser problem_graded: [answers query string, rendered html]
        first = value[0]
        if first.__class__ is str and "=" in first:
            problem_id = _problem_from_answers(dict(parse_qsl(first, keep_blank_values=True)))
        block_id = block_id or problem_id
    elif value.__class__ is str and category == ASSESSMENT and value:
        problem_id = _find_usage_key_uncached(value)  # payloads are too varied to cache
        block_id = block_id or problem_id
    if block_id is None:
        block_id = _usage_from_url(url_type) or _usage_from_url(path)
    if problem_id is None and category == ASSESSMENT and block_id is not None:
        if "type@problem+" in block_id or "/problem/" in block_id:
            problem_id = block_id
    return block_id, problem_id


def _course_id(
    ctx: dict,
    pd: dict | None,
    url_type: str | None,
    path: str | None,
    block_id: str | None,
    page: str | None,
    referer: str | None,
) -> str | None:
    """The course id: the context first (authoritative), then the payload, then URLs and keys."""
    ctx_course = ctx.get("course_id")
    if ctx_course.__class__ is str and ctx_course:
        course_id = normalize_course_id(ctx_course)  # a malformed id is no course
        if course_id is not None:
            return course_id
    if pd is not None:
        c = pd.get("course_id")
        if c.__class__ is str and c:
            course_id = normalize_course_id(c)
            if course_id is not None:
                return course_id
    return (
        course_from_path(url_type)
        or course_from_path(path)
        or _course_from_usage(block_id)
        or course_from_path(page)
        or course_from_path(referer)
    )


def _courseware(
    url_type: str | None, path: str | None, page: str | None, referer: str | None
) -> tuple[str | None, str | None]:
    """(section id, subsection id) of the courseware page the event happened on: the
    request itself, else the page the browser was showing, else where an AJAX call came
    from."""
    for url in (url_type, path, page, referer):
        if url is not None and "/courseware/" in url:
            return courseware_location(url)
    return None, None


def _video(pd: dict, block_id: str | None, course_id: str | None) -> tuple:
    """(video id, code, position, old time, new time, speed, block id) of a video event;
    the block id is rebuilt from the course when the player logged only its hash."""
    video_id = _str(pd.get("id"))
    position = _float_of(pd, "currentTime", "current_time")
    speed = _float_of(pd, "new_speed", "speed")
    if block_id is None and video_id is not None and course_id is not None and video_id.isalnum():
        # newer players log only the block hash as "id": rebuild the usage key
        if course_id.startswith("course-v1:"):
            block_id = f"block-v1:{course_id[10:]}+type@video+block@{video_id}"
    return (
        video_id,
        _str(pd.get("code")),
        position,
        _float(pd.get("old_time")),
        _float(pd.get("new_time")),
        speed,
        block_id,
    )


def _problem(pd: dict) -> tuple:
    """(attempts, success, grade, max grade) of a problem event (grades of newer server
    events are ``weighted_earned`` / ``weighted_possible``); UNUSABLE for a number that
    is there but that no column can hold."""
    raw = pd.get("attempts")
    attempts: int | None | _Unusable = _int(raw)
    if attempts is None and raw is not None and raw != "":
        attempts = UNUSABLE
    return (
        attempts,
        _success(pd.get("success")),
        _float_of(pd, "grade", "weighted_earned"),
        _float_of(pd, "max_grade", "weighted_possible"),
    )


def _agent_of(agent, ctx: dict) -> str | None:
    """A user agent that is not a string: missing (then the context's), or an object
    (some mobile exporters), kept as its JSON."""
    return _str(ctx.get("agent")) if agent is None else (json_text(agent) if agent else None)


# --- the entry point ----------------------------------------------------------------


def parse_line(
    raw: bytes,
    source: str | None = None,
    offset: int | None = None,
    fingerprint: str | None = None,
    latest: datetime | None = None,
) -> EnrichedEvent | DeadLetter:
    """Parse, classify and enrich one tracking-log line.

    ``source``/``offset`` (file and byte offset) are copied into the record. With the
    file's ``fingerprint`` and the offset, the record's id is :func:`event_identity`;
    without them (a line from another shipper) it is a hash of the line's content.
    A time before :data:`EARLIEST_TIME`, or after ``latest`` (the caller's clock plus
    the allowed skew), makes a ``time_out_of_range`` dead letter: such a time would
    move the stream's event-time watermark. Returns an EnrichedEvent, or a DeadLetter
    saying why the line could not be one. The steps, each
    a function above: read the JSON object, its event type and time, the action and its
    category, the context and the payload, then the block and problem, the course, the
    courseware page, the learner, and the video or problem fields."""
    ident = event_identity(fingerprint, offset) if fingerprint is not None and offset is not None else None
    read = _read_object(raw, source, offset, ident)
    if isinstance(read, DeadLetter):
        return read
    doc, body, line = read

    name = doc.get("name")
    event_type = doc.get("event_type")
    if event_type.__class__ is not str or not event_type:
        event_type = name if name.__class__ is str and name else None
        if event_type is None:
            hint = " (Segment-shaped event)" if "messageId" in doc or "anonymousId" in doc else ""
            return _dead("missing_event_type", f"no event_type or name{hint}", line, source, offset, ident)
    raw_time = doc.get("time")
    when = parse_time(raw_time) if raw_time is not None else _time_without_time(doc)
    if when is None:
        if raw_time is None:
            raw_time = doc.get("timestamp")
        return _dead("bad_time", f"unreadable time {str(raw_time)[:80]!r}", line, source, offset, ident)

    if (when < EARLIEST_TIME and when is not UNKNOWN_TIME) or (latest is not None and when > latest):
        bound = (
            f"before {EARLIEST_TIME:%Y-%m-%d}"
            if when < EARLIEST_TIME or latest is None
            else f"after {latest.isoformat()}"
        )
        return _dead("time_out_of_range", f"time {when.isoformat()} is {bound}", line, source, offset, ident)

    action = _action(name, event_type)
    event_source = _str(doc.get("event_source"))
    taxon = describe(action, event_source)  # cached per (action, event_source)
    category = taxon.category
    ctx = doc.get("context")
    if ctx.__class__ is not dict:
        ctx = _context_of(ctx)
    event = doc.get("event")
    if event is None:  # newer server events (edx.grades.*) carry "data" instead
        event = doc.get("data")
    value, payload = decode_payload(event)
    if payload is None:
        return _dead("unwritable", "the event payload is nested too deep to store", line, source, offset, ident)
    pd = value if value.__class__ is dict else None

    page = _str(doc.get("page"))
    referer = _str(doc.get("referer")) or _str(ctx.get("referer"))
    path = _str(ctx.get("path"))
    url_type = event_type if event_type[0] == "/" else None
    module = ctx.get("module")
    module_key = _str(module.get("usage_key")) if module.__class__ is dict else None

    block_id, problem_id = _block_and_problem(category, value, pd, module_key, url_type, path)
    course_id = _course_id(ctx, pd, url_type, path, block_id, page, referer)
    org, course, run = course_key_parts(course_id) if course_id else (None, None, None)
    if org is None:
        org = _str(ctx.get("org_id"))
    section_id, subsection_id = _courseware(url_type, path, page, referer)

    user_id = _int(ctx.get("user_id"))
    if user_id is None and pd is not None and category != VIDEO:
        user_id = _int(pd.get("user_id"))

    video_id = video_code = position = old_time = new_time = speed = None
    attempts = success = grade = max_grade = None
    username = _str(doc.get("username")) or _str(ctx.get("username"))
    if username is not None and action[:1] == "/" and username in action:
        action = _without_username(action, username)
    agent = doc.get("agent")
    if agent.__class__ is not str:
        agent = _agent_of(agent, ctx)
    notes = ""
    if pd is not None:
        if category == VIDEO:
            video_id, video_code, position, old_time, new_time, speed, block_id = _video(pd, block_id, course_id)
            # identity tests: the cheap way to find the rare unusable value on every event
            if position is UNUSABLE or old_time is UNUSABLE or new_time is UNUSABLE or speed is UNUSABLE:
                (position, old_time, new_time, speed), notes = _noted(
                    (position, old_time, new_time, speed),
                    ("video_position", "video_old_time", "video_new_time", "video_speed"),
                )
        elif category == ASSESSMENT:
            attempts, success, grade, max_grade = _problem(pd)
            if attempts is UNUSABLE or grade is UNUSABLE or max_grade is UNUSABLE:
                (attempts, grade, max_grade), notes = _noted(
                    (attempts, grade, max_grade), ("attempts", "grade", "max_grade")
                )

    return EnrichedEvent(
        event_id=ident or line_id(body),
        time=when,
        category=category,
        action=action,
        event_type=event_type,
        event_source=event_source,
        course_id=course_id,
        org=org,
        course=course,
        run=run,
        block_id=block_id,
        section_id=section_id,
        subsection_id=subsection_id,
        user_id=user_id,
        username=username,
        session=_str(doc.get("session")) or _str(ctx.get("session")),
        ip=_str(doc.get("ip")) or _str(ctx.get("ip")),
        agent=agent or None,
        host=_str(doc.get("host")) or _str(ctx.get("host")),
        page=page,
        referer=referer,
        video_id=video_id,
        video_code=video_code,
        video_position=position,
        video_old_time=old_time,
        video_new_time=new_time,
        video_speed=speed,
        problem_id=problem_id,
        attempts=attempts,
        success=success,
        grade=grade,
        max_grade=max_grade,
        payload=payload,
        source=source,
        offset=offset,
        kind=taxon.kind,
        interaction=taxon.interaction,
        notes=notes,
    )
