"""reconcile's comparison and report, as pure functions (the whole command runs against
the real services in tests/test_counts_e2e.py and, through the demo, tests/test_demo.py)."""

from __future__ import annotations

from datetime import date, datetime, timezone

from edxstream.ops.reconcile import Difference, Figures, day_window, differences, format_report, outcome

C = "course-v1:Org+C1+2024"
D1, D2 = date(2024, 5, 1), date(2024, 5, 2)


def figures(**kw) -> Figures:
    base = dict(
        shipped={(C, D1): 10, (C, D2): 5, ("", D1): 2},
        mysql={(C, D1): 10, (C, D2): 5, ("", D1): 2},
        clickhouse={(C, D1): 10, (C, D2): 5, ("", D1): 2},
        windows={(C, D1): 10, (C, D2): 5},
        dead_shipped=3,
        dead_mysql=3,
    )
    base.update(kw)
    return Figures(**base)


def test_equal_figures_make_no_difference_and_one_line():
    f = figures()
    assert differences(f) == []
    assert format_report(f, []) == (
        "reconcile: 17 events (1 courses, 2 days) and 3 dead letters: MySQL, "
        "ClickHouse and the windows agree with what was shipped"
    )


def test_every_kind_of_difference_is_listed():
    f = figures(
        mysql={(C, D1): 9, (C, D2): 5, ("", D1): 2},
        clickhouse={(C, D1): 10, (C, D2): 5},
        windows={(C, D1): 10, (C, D2): 4, ("course-v1:X+Y+Z", D2): 1},
        dead_mysql=2,
    )
    assert differences(f) == [
        Difference("", D1, 2, 2, 0, None),  # events of no course: in no window
        Difference(C, D1, 10, 9, 10, 10),
        Difference(C, D2, 5, 5, 5, 4),
        Difference("course-v1:X+Y+Z", D2, 0, 0, 0, 1),
        Difference("(dead letters)", None, 3, 2, None, None),
    ]
    text = format_report(f, differences(f), limit=2)
    lines = text.splitlines()
    assert lines[0].split() == ["course", "day", "shipped", "mysql", "clickhouse", "windows"]
    assert lines[1].split() == ["(no", "course)", "2024-05-01", "2", "2", "0", "-"]
    assert lines[-2:] == ["... and 3 more", "reconcile: 5 differences (of 17 events shipped)"]


def test_a_trimmed_raw_topic_compares_only_its_whole_days():
    f = figures(mysql={(C, D1): 30, (C, D2): 5, ("", D1): 9}, dead_mysql=7, compared_after=D1)
    assert differences(f) == []
    assert "only days after 2024-05-01 are compared" in format_report(f, [])


def test_the_day_window_is_the_largest_that_tiles_a_day():
    assert day_window([60, 3600]) == 3600
    assert day_window([60, 7 * 86400]) == 60
    assert day_window([7 * 86400, 7000]) is None


def test_the_outcome_says_which_place_disagreed():
    """What the operators' page shows of a run: per place, whether it agreed."""
    at = datetime(2024, 5, 3, 12, 0, tzinfo=timezone.utc)
    f = figures()
    assert outcome(f, differences(f), at) == {
        "ran_at": "2024-05-03T12:00:00+00:00",
        "events": 17,
        "courses": 1,
        "days": 2,
        "dead_letters": 3,
        "compared_after": None,
        "agree": {"mysql": True, "clickhouse": True, "windows": True},
        "differences": 0,
        "sample": [],
    }
    f = figures(clickhouse={(C, D1): 10, (C, D2): 4, ("", D1): 2}, windows=None)
    got = outcome(f, differences(f), at)
    assert got["agree"] == {"mysql": True, "clickhouse": False, "windows": None}
    assert got["sample"] == [
        {"course": C, "day": "2024-05-02", "shipped": 5, "mysql": 5, "clickhouse": 4, "windows": None}
    ]
    f = figures(dead_mysql=2, windows={(C, D1): 10, (C, D2): 6})
    got = outcome(f, differences(f), at, limit=1)
    assert got["agree"] == {"mysql": False, "clickhouse": True, "windows": False}
    assert got["differences"] == 2 and len(got["sample"]) == 1
