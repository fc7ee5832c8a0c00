"""The stream app's counting rules, without a broker: windows, replay dedup by high-water
offsets, distinct learners, event-time lateness, expiry, versions."""

from __future__ import annotations

from datetime import datetime, timezone

from stream_app import state
from stream_app import windows as win
from edxstream.core import frames, records
from edxstream.core.records import EnrichedEvent
from stream_app.factory import item_of

T0 = datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc).timestamp()
C = "course-v1:Org+C1+2024"


def item(
    dt: float,
    off: int,
    *,
    p: int = 0,
    cat: str = "video",
    act: str = "play_video",
    learner: str | None = "7",
    course: str = C,
) -> win.Item:
    return win.Item(T0 + dt, course, cat, act, learner, p, off)


def run(items, store, pstate=None, windows=(60, 3600), grace=48 * 3600, q=0):
    pstate = pstate or win.PartitionState()
    res = win.count_batch(items, q, windows, grace, pstate, store.get)
    store.update(res.changed)
    return res, pstate


def all_dims(cell: win.Cell) -> list[tuple[str, str]]:
    """Every (kind, dimension) a window has counted."""
    dims = [(win.CATEGORY, c) for c in cell.categories] + [(win.ACTION, a) for a in cell.actions]
    if cell.learners:
        dims.append((win.LEARNERS, ""))
    return dims


def counts(store, kind, size):
    """(dimension, window start) -> count, over every stored window of this size."""
    out = {}
    for k, cell in store.items():
        _, _, wsize, start = win.split_key(k)
        if wsize == size:
            for dkind, dim in all_dims(cell):
                if dkind == kind:
                    out[(dim, start)] = cell.count(dkind, dim)
    return out


def test_tumbling_windows_by_event_time_including_out_of_order():
    store = {}
    # 10:00:05, 10:01:10, then an out-of-order 10:00:59 and one at 10:59:59
    run([item(5, 0), item(70, 1), item(59, 2, cat="assessment", act="problem_check"), item(3599, 3)], store)
    m = int(T0)
    assert counts(store, win.CATEGORY, 60) == {
        ("video", m): 1,
        ("assessment", m): 1,
        ("video", m + 60): 1,
        ("video", m + 3540): 1,
    }
    assert counts(store, win.CATEGORY, 3600) == {("video", m): 3, ("assessment", m): 1}
    assert counts(store, win.ACTION, 3600) == {("play_video", m): 3, ("problem_check", m): 1}
    # one learner, counted once per window however many events
    assert counts(store, win.LEARNERS, 3600) == {("", m): 1}


def test_each_key_changes_once_per_batch_and_only_changed_counts_are_emitted():
    store = {}
    res, _ = run([item(i, i) for i in range(100)], store, windows=(3600,))
    # category, action, learners of one course window: one key, written once
    key = win.cell_key(0, C, 3600, int(T0))
    assert list(res.changed) == [key]
    assert store[key].categories == {"video": 100}
    assert res.dims[key] == {(win.CATEGORY, "video"), (win.ACTION, "play_video"), (win.LEARNERS, "")}
    # the next batch touches another action of the same window, by the same learner:
    # only the counts that changed go out, each with its full value
    res, _ = run([item(200, 100, act="pause_video")], store, windows=(3600,))
    assert res.dims[key] == {(win.CATEGORY, "video"), (win.ACTION, "pause_video")}
    got = {(w.kind, w.dimension): w.count for w in win.window_counts(key, store[key], res.dims[key])}
    assert got == {(win.CATEGORY, "video"): 101, (win.ACTION, "pause_video"): 1}


def test_redelivered_events_are_not_counted_twice():
    store = {}
    batch = [item(i, 100 + i, p=1) for i in range(10)] + [item(i, 50 + i, p=0) for i in range(5)]
    run(batch, store)
    key = win.cell_key(0, C, 3600, int(T0))
    assert store[key].categories["video"] == 15
    assert store[key].hw == {1: 109, 0: 54}
    # a crash re-delivers a tail of both raw partitions, then new events follow
    res, _ = run(
        [
            item(7, 107, p=1),
            item(8, 108, p=1),
            item(9, 109, p=1),
            item(4, 54, p=0),
            item(10, 110, p=1),
            item(5, 55, p=0),
        ],
        store,
    )
    assert store[key].categories["video"] == 17
    assert store[key].actions["play_video"] == 17
    assert res.skipped == 8  # four re-delivered events, in two window sizes


def test_distinct_learners_are_a_set():
    store = {}
    run(
        [item(1, 0, learner="7"), item(2, 1, learner="8"), item(3, 2, learner="7"), item(4, 3, learner=None)],
        store,
        windows=(3600,),
    )
    key = win.cell_key(0, C, 3600, int(T0))
    assert store[key].count(win.LEARNERS, "") == 2 and store[key].learners == {"7", "8"}
    # anonymous events still count per category
    assert store[key].count(win.CATEGORY, "video") == 4


def test_late_within_grace_counts_in_its_own_window_beyond_grace_goes_the_late_way():
    store = {}
    grace = 48 * 3600
    res, ps = run(
        [item(30 * 3600, 0), item(-18 * 3600, 1), item(-5 * 86400, 2)], store, windows=(60, 3600), grace=grace
    )
    assert res.late == 1 and ps.late == 1
    assert ps.watermark == T0 + 30 * 3600
    late_window = int(T0 - 18 * 3600)
    assert counts(store, win.CATEGORY, 3600)[("video", late_window)] == 1
    # beyond the grace: not counted here, its windows are named for a recount
    old = int(T0 - 5 * 86400)
    assert ("video", old) not in counts(store, win.CATEGORY, 3600)
    assert res.recount == {(C, 60, old), (C, 3600, old)}
    rows = win.recount_rows(res.recount, 99)
    assert [
        (r.kind, r.course_id, r.window_seconds, int(r.window_start.timestamp()), r.count, r.version) for r in rows
    ] == [(win.RECOUNT, C, 60, old, 0, 99), (win.RECOUNT, C, 3600, old, 0, 99)]
    # a re-delivery of the late event names its windows again but is not counted twice
    res2, _ = run([item(-5 * 86400, 2)], store, ps, windows=(60, 3600), grace=grace)
    assert ps.late == 1 and res2.late == 0 and res2.recount == res.recount
    # a late event without a course names no window
    res3, _ = run([item(-6 * 86400, 3, course="")], store, ps, windows=(3600,), grace=grace)
    assert res3.late == 1 and res3.recount == set()


def test_events_without_course_are_not_counted_per_course():
    store = {}
    res, ps = run([item(1, 0, course="")], store)
    assert store == {} and res.counted == 1 and ps.counted == 1


def test_versions_grow_and_window_counts_are_full_values():
    store = {}
    res, _ = run([item(1, 0), item(2, 1, cat="assessment", act="problem_check", learner=None)], store, windows=(60,))
    key = win.cell_key(0, C, 60, int(T0))
    cell = store[key]
    cell.version = win.next_version(cell, 1000)
    v1 = cell.version
    cell.version = win.next_version(cell, 10)  # clock went backwards: still grows
    assert cell.version == v1 + 1
    wcs = win.window_counts(key, cell, res.dims[key])
    assert [(w.kind, w.course_id, w.dimension, w.window_seconds, w.count, w.version) for w in wcs] == [
        (win.ACTION, C, "play_video", 60, 1, v1 + 1),
        (win.ACTION, C, "problem_check", 60, 1, v1 + 1),
        (win.CATEGORY, C, "assessment", 60, 1, v1 + 1),
        (win.CATEGORY, C, "video", 60, 1, v1 + 1),
        (win.LEARNERS, C, "", 60, 1, v1 + 1),
    ]
    assert all(w.window_start == datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc) for w in wcs)
    assert sorted(all_dims(cell)) == sorted(res.dims[key])
    assert win.aggregate_key(C, 60, int(T0)) == f"{C}|60|{int(T0)}"
    # an aggregates record (an array) and a lone WindowCount both read back
    assert records.decode_windows(records.encode(wcs)) == wcs
    assert records.decode_windows(records.encode(wcs[0])) == wcs[:1]


def test_lateness_is_judged_per_raw_partition():
    """Raw partition 1 is a backfill days behind raw partition 0's live tail: its events
    are on time for their own partition and are counted, not dropped."""
    store = {}
    grace = 48 * 3600
    live = [item(10 * 86400 + i, i, p=0) for i in range(5)]
    backfill = [item(i * 60, i, p=1) for i in range(5)]
    res, ps = run(live + backfill + [item(-3 * 86400, 5, p=1)], store, windows=(3600,), grace=grace)
    assert res.late == 1  # only the one 3 days behind its own partition
    assert counts(store, win.CATEGORY, 3600) == {("video", int(T0 + 10 * 86400)): 5, ("video", int(T0)): 5}
    assert ps.marks == {0: T0 + 10 * 86400 + 4, 1: T0 + 240}


def test_expiry_only_after_every_raw_partition_passes_end_plus_grace():
    key = win.cell_key(0, C, 3600, int(T0))
    grace = 48 * 3600
    ps = win.PartitionState(marks={0: T0 + 3600 + grace + 500})
    # raw partition 1 not seen yet: it may still bring anything
    assert ps.closed_before(2, grace) == float("-inf")
    ps.marks[1] = T0 + 3600 + grace - 1
    queue = win.ExpiryQueue()
    queue.add(key)
    assert queue.pop_ended(ps.closed_before(2, grace)) == []
    ps.marks[1] = T0 + 3600 + grace
    assert queue.pop_ended(ps.closed_before(2, grace)) == [key]
    # a cell of the one-cell-per-dimension layout that came before: cleared by expiry
    old = win.SEP.join(["0", win.CATEGORY, C, "video", "3600", str(int(T0))])
    assert not win.is_cell_key(old) and not win.is_cell_key(state.MARKER_KEY) and win.is_cell_key(key)
    queue.add(old)
    assert queue.pop_ended(float("-inf")) == [old]


def test_expiry_queue_hands_out_windows_in_the_order_they_end_once_each():
    q = win.ExpiryQueue()
    hour = win.cell_key(0, C, 3600, int(T0))
    minute_late = win.cell_key(0, C, 60, int(T0) + 3600)
    minute = win.cell_key(0, C, 60, int(T0))
    old = win.SEP.join(["0", win.CATEGORY, C, "video", "3600", str(int(T0))])
    for key in (hour, minute_late, minute, hour, minute, old):  # changed again and again
        q.add(key)
    assert len(q) == 4
    assert q.pop_ended(T0) == [old]  # a key of the older layout goes at once
    assert q.pop_ended(T0 + 59) == []
    assert q.pop_ended(T0 + 3600) == [minute, hour]
    assert q.pop_ended(T0 + 3600) == []
    assert len(q) == 1
    q.add(hour)  # a window seen again after it was handed out is queued again
    assert q.pop_ended(T0 + 4000) == [hour, minute_late]
    assert len(q) == 0


def test_cells_survive_the_changelog_encoding():
    cell = win.Cell(
        hw={0: 5, 3: 9}, version=77, categories={"video": 3}, actions={"play_video": 2, "x": 1}, learners={"a", "b"}
    )
    assert win.decode_cell(win.encode_state(cell)) == cell
    ps = win.PartitionState(watermark=T0, late=2, counted=9, hw={1: 4}, marks={1: T0})
    assert win.decode_partition_state(win.encode_state(ps)) == ps


def test_enriched_record_to_item_and_through_a_tally_record():
    ev = EnrichedEvent(
        event_id="x",
        time=datetime(2024, 3, 1, 10, 0, 1, 500000, tzinfo=timezone.utc),
        category="forum",
        action="edx.forum.thread.created",
        event_type="edx.forum.thread.created",
        course_id=C,
        user_id=None,
        username="ann",
    )
    it = item_of(ev, 2, 40)
    assert it == win.Item(T0 + 1.5, C, "forum", "edx.forum.thread.created", "ann", 2, 40)
    ev.user_id = 7
    it7 = item_of(ev, 2, 41)
    assert it7.learner == "7"
    anonymous = win.Item(T0, "", "access", "login", None, 0, 1)
    assert win.decode_tally(win.encode_tally([it, it7, anonymous])) == [it, it7, anonymous]


def test_line_positions_grow_with_every_line_of_a_raw_partition():
    lines_of_record_9 = [frames.position(9, i) for i in range(3)]
    assert lines_of_record_9 == sorted(lines_of_record_9)
    assert frames.position(9, frames.MAX_LINES) < frames.position(10, 0)
    assert frames.position(10, 0) > frames.position(9, 2)


def test_changelog_topic_names(tmp_path):
    from edxstream.core.settings import load

    s = load(app_id="myapp", home=tmp_path)
    assert state.changelog_topics(s) == [
        "myapp-shipped-changelog",
        "myapp-counts-changelog",
        "myapp-partitions-changelog",
    ]
    assert "myapp-__assignor-__leader" in state.internal_topics(s)


def test_an_event_without_time_is_counted_at_its_stored_time():
    """Not at its arrival: a replay or a re-shipped line must land in the same window,
    and the windows must agree with the stored events."""
    from edxstream.core.model import UNKNOWN_TIME

    ev = EnrichedEvent(
        event_id="x",
        time=UNKNOWN_TIME,
        category="video",
        action="play_video",
        event_type="play_video",
        course_id=C,
        user_id=7,
    )
    assert item_of(ev, 0, 1).time == UNKNOWN_TIME.timestamp() == 0.0


def test_skipped_records_are_caught_and_replays_pass():
    from stream_app.positions import split_gaps

    ev = lambda p, o: (p, o)  # noqa: E731
    expected = {0: 10}
    batch = [ev(0, 8), ev(0, 9), ev(0, 10), ev(1, 50), ev(0, 11), ev(0, 14), ev(0, 15), ev(1, 51)]
    kept, gaps = split_gaps(batch, expected, offset_of=lambda e: e)
    # 12 and 13 never came: partition 0 stops at the jump and is sought back to 12
    assert kept == [ev(0, 8), ev(0, 9), ev(0, 10), ev(1, 50), ev(0, 11), ev(1, 51)]
    assert gaps == {0: 12}
    assert expected == {0: 12, 1: 52}
    kept, gaps = split_gaps([ev(0, 12), ev(0, 13), ev(0, 14)], expected, offset_of=lambda e: e)
    assert len(kept) == 3 and gaps == {} and expected[0] == 15
