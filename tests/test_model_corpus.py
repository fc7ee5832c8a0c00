"""Acceptance: the shared corpus of real tracking-log lines written by others."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from edxstream.core.model import CATEGORIES, DeadLetter, EnrichedEvent, normalize_course_id, parse_line

from .conftest import CORPUS

PUBLIC = CORPUS / "public-tracking.log"
ODD = CORPUS / "odd-and-malformed.log"


def _lines(path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_every_public_line_parses():
    lines = _lines(PUBLIC)
    assert len(lines) == 2761
    records = [parse_line(ln, str(PUBLIC), i) for i, ln in enumerate(lines)]
    dead = [(i, r.reason) for i, r in enumerate(records) if isinstance(r, DeadLetter)]
    assert dead == []


def test_every_context_course_id_is_kept():
    checked = 0
    for ln in _lines(PUBLIC):
        doc = orjson.loads(ln)
        ctx = doc.get("context")
        cid = ctx.get("course_id") if isinstance(ctx, dict) else None
        if not cid:
            continue
        rec = parse_line(ln)
        assert rec.course_id == (normalize_course_id(cid) or cid), ln[:200]
        checked += 1
    assert checked > 1500


def test_public_corpus_spreads_over_all_categories():
    counts = Counter(parse_line(ln).category for ln in _lines(PUBLIC))
    assert set(counts) == set(CATEGORIES)
    for cat in CATEGORIES:
        assert counts[cat] >= 50, counts


def test_odd_lines_parse_or_dead_letter_with_a_reason():
    lines = _lines(ODD)
    records = [parse_line(ln, str(ODD), i) for i, ln in enumerate(lines)]
    parsed = [r for r in records if isinstance(r, EnrichedEvent)]
    dead = [r for r in records if isinstance(r, DeadLetter)]
    assert len(parsed) + len(dead) == len(lines) == 57
    assert all(r.reason and r.detail and r.raw for r in dead)
    reasons = Counter(r.reason for r in dead)
    # the template placeholders, the broken JSON and the {username,time} stubs
    assert reasons["bad_time"] >= 13 and reasons["not_json"] >= 3 and reasons["missing_event_type"] >= 23
    # the grep-prefixed lines ("tracking.log-...gz:{...}") are real events
    assert len(parsed) >= 2


@pytest.mark.parametrize("path", [PUBLIC, ODD])
def test_parse_is_deterministic_over_the_corpus(path):
    lines = _lines(path)
    assert [parse_line(ln) for ln in lines] == [parse_line(ln) for ln in lines]
