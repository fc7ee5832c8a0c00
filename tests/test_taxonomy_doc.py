"""Every event of the shared corpus and of the generator gets the kind, category and
interaction that docs/taxonomy.md's tables give it, applied here as the document
describes them (not through the code's own lookup); and one simulated problem
submission, with its browser, server, graded and request records, counts once."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from edxstream.core.model import parse_line
from edxstream.core.records import EnrichedEvent
from edxstream.ops.generate import GenConfig, write_stream

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "taxonomy.md"
CORPUS = REPO.parent / "shared" / "corpus"
ROW = re.compile(
    r"^\| `(?P<pattern>[^`]*)` \| (?P<source>\S+) \| (?P<kind>\w+) \| (?P<category>\w+) \| "
    r"`(?P<interaction>[^`]*)` \| (?P<ref>.*) \|$"
)


def _doc_tables() -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {}
    section = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            section = line[4:].strip()
            tables[section] = []
        m = ROW.match(line)
        if m and section is not None:
            tables[section].append(m.groupdict())
    return tables


TABLES = _doc_tables()


def doc_lookup(action: str, source: str | None) -> tuple[str, str, str]:
    """docs/taxonomy.md, "How an event finds its row", step by step."""

    def out(row: dict, rest: str = "") -> tuple[str, str, str]:
        name = row["interaction"]
        return row["kind"], row["category"], name[:-1] + rest if name.endswith("*") else name

    if action.startswith("/"):
        for row in TABLES["Whole routes"]:
            if row["pattern"] == action:
                return out(row)
        for row in TABLES["Routes, first match wins"]:
            if row["pattern"] in action:
                return out(row)
        return "other", "other", ""
    names = TABLES["Event names"]
    exact = [r for r in names if not r["pattern"].endswith("*") and r["pattern"] == action]
    for wanted in (source, "any"):
        for row in exact:
            if row["source"] == wanted:
                return out(row)
    if exact:
        return out(exact[0])
    prefixes = [r for r in names if r["pattern"].endswith("*") and action.startswith(r["pattern"][:-1])]
    if prefixes:
        row = max(prefixes, key=lambda r: len(r["pattern"]))
        return out(row, action[len(row["pattern"]) - 1 :])
    return "other", "other", ""


def test_the_document_is_current_and_complete():
    got = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "taxonomy_table.py"), "--check"], capture_output=True, text=True
    )
    assert got.returncode == 0, got.stderr
    assert sum(len(rows) for rows in TABLES.values()) > 150
    assert all(row["ref"].strip() for rows in TABLES.values() for row in rows)


def _events(lines) -> list[EnrichedEvent]:
    return [e for e in (parse_line(ln) for ln in lines) if isinstance(e, EnrichedEvent)]


def _generated() -> list[bytes]:
    buf = io.BytesIO()
    write_stream(GenConfig(events=4_000, courses=3, learners=120, days=4, seed=11), buf)
    return buf.getvalue().splitlines()


@pytest.mark.parametrize("name", ["public-tracking.log", "odd-and-malformed.log", "hostile.log", "generator"])
def test_every_event_type_maps_as_the_document_says(name):
    lines = _generated() if name == "generator" else (CORPUS / name).read_bytes().splitlines()
    events = _events(lines)
    assert events
    seen = set()
    for e in events:
        key = (e.action, e.event_source)
        if key in seen:
            continue
        seen.add(key)
        assert (e.kind, e.category, e.interaction) == doc_lookup(e.action, e.event_source), key
    if name == "public-tracking.log":
        kinds = Counter(e.kind for e in events)
        # the real log holds all of these, and learners' actions are not the bulk of it
        assert {"learner", "echo", "plumbing", "authoring", "system", "api"} <= set(kinds), kinds
        assert kinds["learner"] < len(events) / 2, kinds


def test_generator_logs_have_no_unclassified_events():
    events = _events(_generated())
    assert not [e.action for e in events if e.kind == "other"]


def _line(event_type: str, source: str, event, **extra) -> bytes:
    ctx = {
        "course_id": "course-v1:Org+C1+2024",
        "user_id": 7,
        "path": extra.pop("path", "/event"),
        "module": {"usage_key": "block-v1:Org+C1+2024+type@problem+block@p1", "display_name": "P1"},
    }
    return orjson.dumps(
        {
            "username": "ada",
            "event_source": source,
            "event_type": event_type,
            "context": ctx,
            "time": "2024-05-01T10:00:00.000000+00:00",
            "event": event,
            "page": None,
            **extra,
        }
    )


def test_one_problem_submission_counts_once():
    usage = "block-v1:Org+C1+2024+type@problem+block@p1"
    handler = f"/courses/course-v1:Org+C1+2024/xblock/{usage}/handler/xmodule_handler/problem_check"
    records = [
        _line("problem_check", "browser", "input_p1_2_1=choice_1"),
        _line(handler, "server", '{"POST": {"input_p1_2_1": ["choice_1"]}, "GET": {}}', path=handler),
        _line(
            "problem_check",
            "server",
            {
                "problem_id": usage,
                "success": "correct",
                "attempts": 1,
                "grade": 1,
                "max_grade": 1,
                "answers": {"p1_2_1": "choice_1"},
            },
            path=handler,
        ),
        _line(
            "edx.grades.problem.submitted",
            "server",
            {"problem_id": usage, "weighted_earned": 1, "weighted_possible": 1},
        ),
        _line("problem_graded", "browser", ["input_p1_2_1=choice_1", "<div>correct</div>"]),
    ]
    events = _events(records)
    assert len(events) == 5
    assert {e.interaction for e in events} == {"problem.submitted"}
    assert {e.category for e in events} == {"assessment"}
    counted = [e for e in events if e.kind == "learner"]
    assert len(counted) == 1 and counted[0].event_source == "server" and counted[0].success is True
