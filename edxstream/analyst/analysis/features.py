"""Learner features per course, as of a time, read from the events in ClickHouse.

One SQL query (``features_sql``) builds one row per course and learner from
``course_events``: activity days, sessions, interactions per category, video plays,
completions and seconds watched, problems attempted, the first-try rate and the grade so
far (each problem's score as the latest check left it, ``grade / max_grade``, as the
LMS keeps it, averaged over the problems the learner tried), forum posts, days since the
last activity and progress (share of the course's known video and problem blocks the
learner used), the events of the window's last seven days, the course units opened
(sequence navigation and courseware pages) and the first-try points (the points the first
checks earned over the points they offered, pooled over the problems tried). A learner's
time in the course starts when they enrol (``START``): ``first_seen`` is that moment and
``span_days`` and ``present_days`` count from it, not from a look at the course's about
page before they enrolled (the counts take in every event). With ``first_days`` it only
looks at each learner's first days in the course from that start: what is known "after
two weeks", the input of the predictions. Reading goes through the analyst query path (a
``Runner``); the rest of this module is pure.
"""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from clickhouse_connect.driver.binding import format_query_value

from edxstream.analyst.cli import _ts
from edxstream.core.chdb_server import Runner

PLAYS = "('play_video', 'edx.video.played')"
ENDS = "('stop_video', 'complete_video', 'edx.video.completed', 'edx.video.stopped')"

# The numeric behaviour features (columns of ``load_features``) the models use.
BEHAVIOUR = (
    "active_days",
    "sessions",
    "events",
    "video_events",
    "assessment_events",
    "content_events",
    "forum_events",
    "videos_watched",
    "video_completions",
    "video_seconds",
    "problems_attempted",
    "first_try_rate",
    "first_try_score",
    "forum_posts",
    "days_since_last",
    "progress",
    "span_days",
)
# What the early prediction adds (``features_sql`` has them for every window): how the
# activity of the window's last week compares with the one before, how many course units
# the learner opened, and the points their first tries earned out of those on offer.
EARLY = ("recent_events", "units_visited", "first_try_points")


# When a learner's time in a course starts (an aggregate over their events in it): their
# first event other than a look at the course's about page or a request of the enrolment
# page, which people make before they enrol, sometimes weeks before (or without finishing
# it): the enrolment itself, or for someone enrolled before the log began, their first
# visit. A learner with nothing but those in the log starts at their first event.
_BEFORE = "interaction IN ('course_about.viewed', 'enrollment.changed')"
START = f"if(countIf(NOT {_BEFORE}) > 0, minIf(time, NOT {_BEFORE}), min(time))"


def features_sql(as_of: datetime, first_days: int | None = None, course: str | None = None) -> str:
    """One row per (course, learner) with events up to ``as_of`` (and, with
    ``first_days``, only in the learner's first that many days in the course)."""
    until = _ts(as_of)
    where = f"user_id IS NOT NULL AND time <= {until}"
    if course is not None:
        where += f" AND course_id = {format_query_value(course)}"
    window = f"time >= t0 AND time < t0 + INTERVAL {int(first_days)} DAY" if first_days else "1"
    # the window's end: days since the last activity are counted from it
    end = f"least({until}, t0 + INTERVAL {int(first_days)} DAY)" if first_days else until
    columns = """course_id, assumeNotNull(user_id) AS user_id, time, category, event_type, interaction, session,
                 video_id, problem_id, block_id, success, grade, max_grade, video_position"""
    if first_days:
        # each learner's start in the course, joined on to keep their first days from it
        ev = f"""
    SELECT e.* , f.t0 AS t0
    FROM (SELECT {columns} FROM course_events WHERE {where}) AS e
    INNER JOIN (SELECT course_id, assumeNotNull(user_id) AS user_id, {START} AS t0
                FROM course_events WHERE {where} GROUP BY course_id, user_id) AS f
    USING (course_id, user_id)
    WHERE {window}"""
    else:
        # every event up to as_of: no join (``ev`` is read once per part of the query
        # below, and the join's table of first times took a third of its memory)
        ev = f"SELECT {columns} FROM course_events WHERE {where}"
    return f"""
WITH ev AS ({ev}
),
problems AS (
    SELECT course_id, user_id, problem_id,
           argMin(success, time) = 1 AS first_ok,
           argMin(if(max_grade > 0, grade, toFloat64(success = 1)), time) AS first_points,
           argMin(if(max_grade > 0, max_grade, 1), time) AS first_max,
           argMin(if(max_grade > 0, grade / max_grade, toFloat64(success = 1)), time) AS first_score,
           argMax(if(max_grade > 0, grade / max_grade, toFloat64(success = 1)), time) AS latest
    FROM ev WHERE problem_id IS NOT NULL AND success IS NOT NULL
    GROUP BY course_id, user_id, problem_id
),
per_problem AS (
    SELECT course_id, user_id, avg(first_ok) AS first_try_rate, avg(first_score) AS first_try_score,
           avg(latest) AS grade_so_far, sum(first_points) / greatest(sum(first_max), 1) AS first_try_points
    FROM problems GROUP BY course_id, user_id
),
blocks AS (
    SELECT course_id, uniqExact(block_id) AS course_blocks
    FROM course_events
    WHERE block_id IS NOT NULL AND category IN ('video', 'assessment') AND time <= {until}
    GROUP BY course_id
),
videos AS (
    SELECT course_id, user_id,
           sum(greatest(0, least(ifNull(next_pos, video_position) - video_position,
                                 2 * dateDiff('millisecond', time, next_time) / 1000.0))) AS video_seconds
    FROM (
        SELECT course_id, user_id, time, event_type, video_position,
               leadInFrame(time) OVER w AS next_time,
               leadInFrame(video_position) OVER w AS next_pos,
               leadInFrame(event_type) OVER w AS next_type
        FROM ev WHERE video_id IS NOT NULL
        WINDOW w AS (PARTITION BY course_id, user_id, session, video_id ORDER BY time
                     ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING))
    WHERE event_type IN {PLAYS} AND next_type != '' AND video_position IS NOT NULL
    GROUP BY course_id, user_id
)
SELECT
    a.course_id AS course_id,
    a.user_id AS user_id,
    a.first_seen AS first_seen,
    a.last_seen AS last_seen,
    a.active_days AS active_days,
    a.sessions AS sessions,
    a.events AS events,
    a.video_events AS video_events,
    a.assessment_events AS assessment_events,
    a.content_events AS content_events,
    a.forum_events AS forum_events,
    a.videos_watched AS videos_watched,
    a.video_completions AS video_completions,
    ifNull(v.video_seconds, 0) AS video_seconds,
    a.problems_attempted AS problems_attempted,
    if(a.problems_attempted > 0, p.first_try_rate, NULL) AS first_try_rate,
    if(a.problems_attempted > 0, p.first_try_score, NULL) AS first_try_score,
    if(a.problems_attempted > 0, p.grade_so_far, NULL) AS grade_so_far,
    if(a.problems_attempted > 0, p.first_try_points, NULL) AS first_try_points,
    a.recent_events AS recent_events,
    a.units_visited AS units_visited,
    a.forum_posts AS forum_posts,
    dateDiff('second', a.last_seen, a.window_end) / 86400.0 AS days_since_last,
    a.blocks_used / greatest(b.course_blocks, 1) AS progress,
    dateDiff('second', a.first_seen, a.last_seen) / 86400.0 AS span_days,
    greatest(dateDiff('second', a.first_seen, a.window_end) / 86400.0, 1.0) AS present_days
FROM (
    SELECT course_id, user_id,
           {START} AS first_seen, max(time) AS last_seen, any({end}) AS window_end,
           uniqExact(toDate(time)) AS active_days,
           uniqExactIf(session, session IS NOT NULL) AS sessions,
           count() AS events,
           countIf(category = 'video') AS video_events,
           countIf(category = 'assessment') AS assessment_events,
           countIf(category = 'content') AS content_events,
           countIf(category = 'forum') AS forum_events,
           uniqExactIf(video_id, event_type IN {PLAYS}) AS videos_watched,
           countIf(event_type IN {ENDS}) AS video_completions,
           uniqExactIf(problem_id, problem_id IS NOT NULL AND success IS NOT NULL) AS problems_attempted,
           countIf(event_type LIKE 'edx.forum.%.created') AS forum_posts,
           uniqExactIf(block_id, block_id IS NOT NULL AND category IN ('video', 'assessment')) AS blocks_used,
           countIf(time >= {end} - INTERVAL 7 DAY) AS recent_events,
           countIf(event_type IN ('seq_next', 'seq_prev', 'seq_goto')
                   OR event_type LIKE '%/courseware/%/%/') AS units_visited
    FROM ev GROUP BY course_id, user_id
) AS a
LEFT JOIN per_problem AS p ON a.course_id = p.course_id AND a.user_id = p.user_id
LEFT JOIN videos AS v ON a.course_id = v.course_id AND a.user_id = v.user_id
LEFT JOIN blocks AS b ON a.course_id = b.course_id
ORDER BY course_id, user_id
SETTINGS join_use_nulls = 1
"""


# What a learner did in their other courses (``history_sql``): known before the prediction
# time, and telling of how they work and how well (the same person, another course).
HISTORY = ("other_courses", "other_events", "other_video_events", "other_assessment_events", "other_score")


def history_sql(as_of: datetime, first_days: int, course: str | None = None) -> str:
    """One row per (course, learner) who was active in another course before the end of
    their first ``first_days`` days in this one: how much, on what, and the average score
    of their problem checks there. Only events before that moment count, so a prediction
    made then could have used them."""
    until = _ts(as_of)
    mine = f"user_id IS NOT NULL AND time <= {until}"
    if course is not None:
        mine += f" AND course_id = {format_query_value(course)}"
    return f"""
SELECT s.course_id AS course_id, s.user_id AS user_id,
       uniqExact(o.course_id) AS other_courses,
       count() AS other_events,
       countIf(o.category = 'video') AS other_video_events,
       countIf(o.category = 'assessment') AS other_assessment_events,
       avgIf(if(o.max_grade > 0, o.grade / o.max_grade, toFloat64(o.success = 1)),
             o.success IS NOT NULL AND o.problem_id IS NOT NULL) AS other_score
FROM (SELECT course_id, assumeNotNull(user_id) AS user_id,
             least({START} + INTERVAL {int(first_days)} DAY, {until}) AS window_end
      FROM course_events WHERE {mine} GROUP BY course_id, user_id) AS s
INNER JOIN (SELECT course_id, assumeNotNull(user_id) AS user_id, time, category, problem_id, success, grade, max_grade
            FROM course_events WHERE user_id IS NOT NULL AND time <= {until}) AS o
ON o.user_id = s.user_id
WHERE o.course_id != s.course_id AND o.time < s.window_end
GROUP BY course_id, user_id
"""


def interactions_sql(as_of: datetime, course: str | None = None) -> str:
    """One row per (course, learner, content block used): the video and problem blocks,
    when the learner first used each, and for problems whether the first try passed."""
    where = (
        f"user_id IS NOT NULL AND block_id IS NOT NULL AND category IN ('video', 'assessment') AND time <= {_ts(as_of)}"
    )
    if course is not None:
        where += f" AND course_id = {format_query_value(course)}"
    return f"""
SELECT course_id, assumeNotNull(user_id) AS user_id, assumeNotNull(block_id) AS block_id,
       min(time) AS first_used,
       anyIf(category, category = 'assessment') = 'assessment' AS is_problem,
       minIf(time, success IS NOT NULL) AS first_try_at,
       argMinIf(success, time, success IS NOT NULL) AS first_ok
FROM course_events
WHERE {where}
GROUP BY course_id, user_id, block_id
ORDER BY course_id, user_id, first_used
"""


def read_frame(runner: Runner, sql: str) -> pd.DataFrame:
    """Run ``sql`` through the analyst query path and return it as a DataFrame."""
    return pq.read_table(io.BytesIO(runner.raw(sql, "Parquet"))).to_pandas()


def load_features(
    runner: Runner, as_of: datetime, first_days: int | None = None, course: str | None = None
) -> pd.DataFrame:
    """``features_sql``'s rows; with ``first_days``, each learner's history in their other
    courses joined on (``HISTORY`` columns, 0 and no score for someone with none)."""
    df = read_frame(runner, features_sql(as_of, first_days, course))
    if first_days:
        history = read_frame(runner, history_sql(as_of, first_days, course))
        df = df.merge(history, on=["course_id", "user_id"], how="left")
        counts = [c for c in HISTORY if c != "other_score"]
        df[counts] = df[counts].fillna(0)
    return df


def load_interactions(runner: Runner, as_of: datetime, course: str | None = None) -> pd.DataFrame:
    df = read_frame(runner, interactions_sql(as_of, course))
    # a block with no graded check has no first try: a default of the aggregate, not a time
    df["first_ok"] = df["first_ok"].astype(float)
    df.loc[~df["is_problem"].astype(bool), ["first_try_at", "first_ok"]] = None
    return df


def behaviour_shares(df: pd.DataFrame) -> pd.DataFrame:
    """Scale-free descriptions of how a learner works (what segments are made of): the
    share of each kind of interaction, of videos among the blocks they used, the first-try
    score (the share of a problem's points the first check earned, averaged: how well they
    answer), and persistence (the share of their time since they started in which they
    were still coming: first to last activity). Counts alone would mostly separate the
    busy from the quiet; progress through the course is left out for the same reason (it
    says how long someone has been in the course more than how they work)."""
    events = df["events"].clip(lower=1)
    out = pd.DataFrame(
        {
            "video_share": df["video_events"] / events,
            "problem_share": df["assessment_events"] / events,
            "forum_share": df["forum_events"] / events,
            "first_try_score": df["first_try_score"].astype(float),
            "persistence": df["span_days"] / df["present_days"],
            "video_block_share": df["videos_watched"] / (df["videos_watched"] + df["problems_attempted"]).clip(lower=1),
        },
        index=df.index,
    )
    # a learner who tried no problem has no first-try score: the course's typical one
    # keeps them from being a segment of their own for a missing value
    out["first_try_score"] = out["first_try_score"].fillna(out["first_try_score"].median()).fillna(0.0)
    return out.replace([np.inf, -np.inf], np.nan).fillna(0.0).astype(float)
