"""The message key of a raw line: the learner, found without parsing the JSON.

A full JSON parse per line would cost more than the whole produce call, so the key is
cut out of the bytes: the first ``"username"`` value (unless empty or ``anonymous``),
else the first ``"user_id"`` number, else the first ``"session"`` value. Tracking lines
put these at the top level (or in ``context``), so the first occurrence is the learner.
A line with none of them returns None and the caller keys it by its file.
"""

from __future__ import annotations

_USERNAME = b'"username":'
_USER_ID = b'"user_id":'
_SESSION = b'"session":'
_ANONYMOUS = b"anonymous"


def _string_after(line: bytes, label: bytes) -> bytes | None:
    i = line.find(label)
    if i < 0:
        return None
    j = i + len(label)
    if line[j : j + 1] == b" ":
        j += 1
    if line[j : j + 1] != b'"':
        return None
    k = line.find(b'"', j + 1)
    if k < 0:
        return None
    return line[j + 1 : k]


def _number_after(line: bytes, label: bytes) -> bytes | None:
    i = line.find(label)
    if i < 0:
        return None
    j = i + len(label)
    if line[j : j + 1] == b" ":
        j += 1
    k = j
    n = len(line)
    while k < n and 48 <= line[k] <= 57:
        k += 1
    return line[j:k] if k > j else None


def learner_key(line: bytes) -> bytes | None:
    name = _string_after(line, _USERNAME)
    if name and name != _ANONYMOUS:
        return name
    uid = _number_after(line, _USER_ID)
    if uid:
        return b"user_id:" + uid
    session = _string_after(line, _SESSION)
    if session:
        return b"session:" + session
    return None
