"""Open edX course and usage keys as they appear in tracking logs.

Course ids come in several spellings: ``course-v1:Org+Course+Run`` (current),
``Org/Course/Run`` (old "slash" keys), ``ccx-v1:Org+Course+Run+ccx@N`` (custom courses),
percent-encoded inside URLs, or embedded in a path such as
``/courses/<course>/courseware/...``. Block (usage) ids are ``block-v1:...+type@T+block@B``
or the old ``i4x://Org/Course/Category/Name``. Everything here is a pure str function.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import unquote

COURSE_V1 = "course-v1:"
CCX_V1 = "ccx-v1:"
BLOCK_V1 = "block-v1:"
I4X = "i4x://"

# Characters that end a key inside free text (URLs, JSON-ish strings).
_KEY_END = "/?#&\"' ,;<>\\)]}"


def _take_key(text: str, start: int) -> str:
    end = len(text)
    for ch in _KEY_END:
        i = text.find(ch, start)
        if i != -1 and i < end:
            end = i
    return text[start:end]


# Longest course id kept: the sinks index course ids (MySQL: VARCHAR(255)); no real
# course id comes near it.
MAX_COURSE_ID = 255


def _valid_part(part: str) -> bool:
    """A part of a course key as Open edX allows it (letters, digits, ``._-~``)."""
    return bool(part) and all(c.isalnum() or c in "._-~" for c in part)


@lru_cache(maxsize=4096)
def normalize_course_id(value: str | None) -> str | None:
    """Return the course id in ``course-v1:Org+Course+Run`` form (``ccx-v1:`` ids keep
    their form), or None when ``value`` is not a well-formed course id.

    Percent-encoding is undone and the id is cut where it ends (a URL's path tail, a
    query); its org, course and run must then be made of the characters course keys
    allow, and the whole id fit in :data:`MAX_COURSE_ID` characters."""
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    if "%" in value:
        value = unquote(value)
    if value.startswith(COURSE_V1) or value.startswith(CCX_V1):
        prefix = COURSE_V1 if value.startswith(COURSE_V1) else CCX_V1
        value = _take_key(value, 0)
        parts = value[len(prefix) :].split("+")
        if len(parts) < 3 or not all(_valid_part(p) for p in parts[:3]) or len(value) > MAX_COURSE_ID:
            return None
        if prefix == COURSE_V1:
            # a course key never carries a branch/version suffix in the logs we keep
            return COURSE_V1 + "+".join(parts[:3])
        return value
    if value.startswith(BLOCK_V1):
        return course_of_usage_key(value)
    if value.startswith(I4X):
        return None  # i4x keys lack the run
    parts = value.split("/")
    if len(parts) == 3 and all(_valid_part(p) for p in parts) and len(value) + 8 <= MAX_COURSE_ID:
        return f"{COURSE_V1}{parts[0]}+{parts[1]}+{parts[2]}"
    return None


@lru_cache(maxsize=4096)
def course_key_parts(course_id: str | None) -> tuple[str | None, str | None, str | None]:
    """(org, course, run) of a course id in any supported spelling."""
    norm = normalize_course_id(course_id) if course_id else None
    if not norm:
        return (None, None, None)
    body = norm.split(":", 1)[1]
    parts = body.split("+")
    return (parts[0], parts[1], parts[2].split("+", 1)[0])


def course_of_usage_key(key: str) -> str | None:
    """Course id of a ``block-v1:`` usage key (None for other keys)."""
    if not key.startswith(BLOCK_V1):
        return None
    parts = key[len(BLOCK_V1) :].split("+")
    if len(parts) < 3 or not (_valid_part(parts[0]) and _valid_part(parts[1]) and _valid_part(parts[2])):
        return None
    return f"{COURSE_V1}{parts[0]}+{parts[1]}+{parts[2]}"


@lru_cache(maxsize=8192)
def find_usage_key(text: str | None) -> str | None:
    """The first usage key (``block-v1:`` or ``i4x://``) inside ``text``, or None."""
    if not text or not isinstance(text, str):
        return None
    if "%" in text and ("block-v1%3A" in text or "i4x%3A" in text):
        text = unquote(text)
    i = text.find(BLOCK_V1)
    if i != -1:
        key = _take_key(text, i)
        if "@" in key:
            return key
    i = text.find(I4X)
    if i != -1:
        # i4x://Org/Course/Category/Name: four path segments after the scheme
        rest = text[i + len(I4X) :]
        segs = rest.split("/", 4)
        if len(segs) >= 4 and all(segs[:4]):
            name = _take_key(segs[3], 0)
            if name:
                return I4X + "/".join(segs[:3] + [name])
    return None


@lru_cache(maxsize=8192)
def course_from_path(text: str | None) -> str | None:
    """Course id found in a URL, path, event type or any free text: after ``/courses/``,
    or a bare ``course-v1:``/``ccx-v1:``/``block-v1:`` key; percent-encoding is undone."""
    if not text:
        return None
    if "%" in text:
        if "%3A" in text or "%3a" in text or "%2F" in text or "%2f" in text or "%2B" in text:
            text = unquote(text)
    i = text.find("/courses/")
    if i != -1:
        start = i + len("/courses/")
        if text.startswith(COURSE_V1, start) or text.startswith(CCX_V1, start):
            found = normalize_course_id(_take_key(text, start))
            if found:
                return found
        else:
            segs = text[start:].split("/", 3)
            if len(segs) >= 3:
                found = normalize_course_id("/".join(_take_key(s, 0) if n == 2 else s for n, s in enumerate(segs[:3])))
                if found:
                    return found
    for prefix in (COURSE_V1, CCX_V1):
        i = text.find(prefix)
        if i != -1:
            found = normalize_course_id(_take_key(text, i))
            if found:
                return found
    i = text.find(BLOCK_V1)
    if i != -1:
        return course_of_usage_key(_take_key(text, i))
    return None


@lru_cache(maxsize=8192)
def courseware_location(path: str | None) -> tuple[str | None, str | None]:
    """(section/chapter id, subsection/sequential id) of a ``.../courseware/<chapter>/
    <sequential>/...`` URL; either may be None."""
    if not path:
        return (None, None)
    i = path.find("/courseware/")
    if i == -1:
        return (None, None)
    rest = path[i + len("/courseware/") :]
    q = min((j for j in (rest.find("?"), rest.find("#")) if j != -1), default=-1)
    if q != -1:
        rest = rest[:q]
    segs = [s for s in rest.split("/") if s]
    chapter = unquote(segs[0]) if segs else None
    seq = unquote(segs[1]) if len(segs) > 1 else None
    return (chapter, seq)


def short_block(key: str | None) -> str:
    """The readable end of a usage key: ``type@video+block@abc...`` -> ``video abc12345``."""
    if not key:
        return "-"
    if "+type@" in key and "+block@" in key:
        kind = key.split("+type@", 1)[1].split("+", 1)[0]
        return f"{kind} {key.rsplit('@', 1)[1][:8]}"
    return key[-40:]
