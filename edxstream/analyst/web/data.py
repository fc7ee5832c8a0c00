"""What each page shows, as plain rows read through the one analyst query path.

Every function takes a :class:`~edxstream.core.chdb_server.Runner` (a ClickHouse server,
the chdb folder, or the ClickHouse sink's read-only endpoint while it holds the folder)
and returns lists of dicts; the pages format them. Reads go to the views documented in
docs/analysts.md, so a page and an analyst's ``edxstream query`` agree by construction.
Tables that another command fills (course structure, analysis runs) may be empty: the
functions then return empty lists and the pages say what to run.
"""

from __future__ import annotations

from clickhouse_connect.driver.binding import format_query_value

from edxstream.analyst.report import json_rows
from edxstream.core.chdb_server import Runner


# the learner's figures the learner page compares with the course's peers
PEER_MEASURES = (
    ("interactions", "Interactions"),
    ("active_days", "Active days"),
    ("videos_watched", "Videos watched"),
    ("problems_solved", "Problems solved"),
)


def q(value) -> str:
    return format_query_value(value)


def data_version(runner: Runner) -> tuple:
    """What changes whenever what the pages show may change: the row counts of the
    tables behind them (events: written by the sink, shrunk by deduplicating merges and
    by forgetting a learner; the courses' structure; the analysis runs). The engine
    answers these counts from its metadata, without reading the rows."""
    rows = json_rows(
        runner,
        """
        SELECT (SELECT count() FROM events) AS events, (SELECT count() FROM course_blocks) AS blocks,
               (SELECT count() FROM analysis_runs) AS runs""",
    )
    return tuple(rows[0].values()) if rows else ()


def course_exists(runner: Runner, course: str) -> bool:
    return bool(json_rows(runner, f"SELECT 1 AS x FROM events WHERE course_id = {q(course)} LIMIT 1"))


def courses(runner: Runner) -> list[dict]:
    """Every course with its events, learners and latest event (newest first)."""
    return json_rows(
        runner,
        """
        SELECT course_id, count() AS events, uniqExact(user_id) AS learners, toString(max(time)) AS last_event
        FROM course_events GROUP BY course_id ORDER BY max(time) DESC, course_id""",
    )


def enrolment_table(runner: Runner) -> list[dict]:
    """Enrolments per course and run with the totals of each course (the paper's Table 1)."""
    return json_rows(
        runner,
        """
        SELECT org, course, run, course_id, enrolments, unenrolments, enrolled_now, learners_enrolled_ever
        FROM course_enrolments ORDER BY org, course, run""",
    )


def enrolments_by_mode(runner: Runner, course: str) -> list[dict]:
    return json_rows(
        runner,
        f"""
        SELECT toString(toDate(time)) AS day,
               if(JSONExtractString(payload, 'mode') = '', 'unknown', JSONExtractString(payload, 'mode')) AS mode,
               count() AS n
        FROM course_events
        WHERE course_id = {q(course)} AND event_type = 'edx.course.enrollment.activated'
        GROUP BY day, mode ORDER BY day, mode""",
    )


def week_change(runner: Runner, course: str) -> dict:
    """Learner interactions and active learners in the last 7 days of the course's data
    and the 7 days before."""
    rows = json_rows(
        runner,
        f"""
        WITH (SELECT max(time) FROM course_events WHERE course_id = {q(course)}) AS last
        SELECT countIf(kind = 'learner' AND time > last - INTERVAL 7 DAY) AS events_now,
               countIf(kind = 'learner' AND time <= last - INTERVAL 7 DAY) AS events_before,
               uniqExactIf(user_id, time > last - INTERVAL 7 DAY) AS learners_now,
               uniqExactIf(user_id, time <= last - INTERVAL 7 DAY) AS learners_before,
               toString(toDate(last)) AS last_day
        FROM course_events
        WHERE course_id = {q(course)} AND time > last - INTERVAL 14 DAY""",
    )
    return rows[0] if rows else {}


def daily_categories(runner: Runner, course: str) -> list[dict]:
    return json_rows(
        runner,
        f"""
        SELECT toString(day) AS day, category, events FROM course_daily_interactions
        WHERE course_id = {q(course)} ORDER BY day, category""",
    )


def videos(runner: Runner, course: str) -> list[dict]:
    return json_rows(
        runner,
        f"""
        SELECT video_id, ifNull(display_name, '') AS display_name, plays, unique_viewers, completions,
               seconds_watched, duration, duration_estimated,
               if(unique_viewers > 0, least(completions, unique_viewers) / unique_viewers, 0) AS completion_rate
        FROM video_engagement WHERE course_id = {q(course)}
        ORDER BY unique_viewers DESC, plays DESC, video_id""",
    )


def video_dropoff(runner: Runner, course: str, video_ids: list[str], buckets: int = 20) -> list[dict]:
    """Per video, the share of its viewers who watched each twentieth of it (from the
    watched segments): the drop-off curves, all in one pass over the segments."""
    if not video_ids:
        return []
    ids = ", ".join(q(v) for v in video_ids)
    return json_rows(
        runner,
        f"""
        SELECT s.video_id AS video_id, b AS bucket, round(100 * b / {buckets}) AS percent_of_video,
               uniqExactIf(s.user_id, s.start_position <= (b + 0.5) * d.duration / {buckets}
                                  AND s.end_position >= (b + 0.5) * d.duration / {buckets})
                   / uniqExact(s.user_id) AS share
        FROM (SELECT video_id, user_id, start_position, end_position FROM video_segments
              WHERE course_id = {q(course)} AND video_id IN ({ids})) AS s
        INNER JOIN (SELECT video_id, max(duration) AS duration FROM video_durations
                    WHERE course_id = {q(course)} AND video_id IN ({ids}) GROUP BY video_id) AS d
            ON s.video_id = d.video_id
        ARRAY JOIN range({buckets}) AS b
        WHERE d.duration > 0
        GROUP BY video_id, b ORDER BY video_id, b""",
    )


def problems(runner: Runner, course: str) -> list[dict]:
    return json_rows(
        runner,
        f"""
        SELECT problem_id, ifNull(display_name, '') AS display_name, ifNull(sequential_name, '') AS sequential_name,
               attempts, learners, first_try_success_rate, learners_solved, avg_best_score
        FROM problem_outcomes WHERE course_id = {q(course)}
        ORDER BY learners DESC, attempts DESC, problem_id""",
    )


def grade_distribution(runner: Runner, course: str) -> list[dict]:
    """Learners by best score on the course's problems, in tenths."""
    return json_rows(
        runner,
        f"""
        SELECT least(floor(score * 10), 9) AS decile, count() AS learners FROM (
            SELECT user_id, avg(best) AS score FROM (
                SELECT user_id, problem_id, max(grade / max_grade) AS best FROM course_events
                WHERE course_id = {q(course)} AND kind = 'learner' AND max_grade > 0 AND grade IS NOT NULL
                GROUP BY user_id, problem_id)
            GROUP BY user_id)
        GROUP BY decile ORDER BY decile""",
    )


def answer_distribution(runner: Runner, course: str, limit: int = 8) -> list[dict]:
    """The most submitted answers of each problem, from the server's problem_check
    events (``answers``: one value per input, joined with " / ")."""
    return json_rows(
        runner,
        f"""
        SELECT problem_id, answer, n, correct FROM (
            SELECT problem_id, answer, count() AS n, max(success) AS correct,
                   row_number() OVER (PARTITION BY problem_id ORDER BY count() DESC, answer) AS r
            FROM (SELECT problem_id, success,
                         arrayStringConcat(arrayMap(x -> replaceRegexpAll(x.2, '^"|"$', ''),
                             JSONExtractKeysAndValuesRaw(payload, 'answers')), ' / ') AS answer
                  FROM course_events
                  WHERE course_id = {q(course)} AND kind = 'learner' AND problem_id IS NOT NULL
                    AND success IS NOT NULL)
            WHERE answer != ''
            GROUP BY problem_id, answer)
        WHERE r <= {int(limit)} ORDER BY problem_id, n DESC, answer""",
    )


def time_on_sections(runner: Runner, course: str) -> list[dict]:
    """Time spent per section and subsection: the gap to the learner's next event in the
    session, capped at 30 minutes (a longer gap is a break), credited to the block the
    event names (its block, video or problem). Events that name no block (page views
    of the courseware) are not counted: the logs do not say where they were."""
    return json_rows(
        runner,
        f"""
        SELECT ifNull(nullIf(b.chapter_name, ''), '(no section)') AS section,
               ifNull(nullIf(b.sequential_name, ''), '(no subsection)') AS subsection,
               round(sum(gap) / 60, 1) AS minutes, uniqExact(t.user_id) AS learners
        FROM (
            SELECT user_id,
                   arrayElement(splitByRegexp('[@/]', coalesce(block_id, video_id, problem_id, '')), -1) AS key,
                   least(dateDiff('second', time, leadInFrame(time) OVER w), 1800) AS gap
            FROM course_events
            WHERE course_id = {q(course)} AND kind = 'learner' AND user_id IS NOT NULL
            WINDOW w AS (PARTITION BY user_id, session ORDER BY time
                         ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
        ) AS t
        INNER JOIN (SELECT block_key, chapter_name, sequential_name FROM block_names
                    WHERE course_id = {q(course)}) AS b ON b.block_key = t.key
        WHERE t.gap > 0
        GROUP BY section, subsection ORDER BY minutes DESC LIMIT 50""",
    )


def forum(runner: Runner, course: str) -> list[dict]:
    return json_rows(
        runner,
        f"""
        SELECT toString(day) AS day, threads, responses, comments, votes, thread_views, posters, participants
        FROM forum_activity WHERE course_id = {q(course)} ORDER BY day""",
    )


def _latest(table: str, course: str) -> str:
    return (
        f"(SELECT * FROM {table} WHERE course_id = {q(course)} AND run_id = "
        f"(SELECT run_id FROM latest_analysis_runs WHERE course_id = {q(course)}))"
    )


def roster(runner: Runner, course: str, limit: int = 0) -> list[dict]:
    """One row per learner (the ``limit`` most recently seen, 0: all): activity, segment,
    risk, last seen and the suggestion for them from the latest analysis run (empty
    when none ran)."""
    return json_rows(
        runner,
        f"""
        SELECT a.user_id AS user_id, a.username AS username, a.interactions AS interactions,
               a.active_days AS active_days, a.videos_watched AS videos_watched,
               a.problems_solved AS problems_solved, toString(a.last_seen) AS last_seen,
               s.segment_label AS segment, p.risk AS risk, p.at_risk AS at_risk, g.text AS suggestion
        FROM (SELECT * FROM learner_activity WHERE course_id = {q(course)}) AS a
        LEFT JOIN {_latest("learner_segments", course)} AS s ON a.user_id = s.user_id
        LEFT JOIN {_latest("learner_predictions", course)} AS p ON a.user_id = p.user_id
        LEFT JOIN (SELECT assumeNotNull(user_id) AS user_id, any(text) AS text
                   FROM {_latest("suggestions", course)} WHERE audience = 'learner' AND user_id IS NOT NULL
                   GROUP BY user_id) AS g ON a.user_id = g.user_id
        ORDER BY a.last_seen DESC, a.user_id
        {f"LIMIT {int(limit)}" if limit else ""}
        SETTINGS join_use_nulls = 1""",
    )


def learner_count(runner: Runner, course: str) -> int:
    rows = json_rows(
        runner,
        f"SELECT uniqExact(user_id) AS n FROM course_events WHERE course_id = {q(course)} AND user_id IS NOT NULL",
    )
    return int(rows[0]["n"]) if rows else 0


def learner(runner: Runner, course: str, user_id: int) -> dict | None:
    """One learner's activity in the course, or None when they have none."""
    rows = json_rows(
        runner,
        f"""
        SELECT user_id, username, interactions, active_days, videos_watched, problems_solved,
               toString(first_seen) AS first_seen, toString(last_seen) AS last_seen
        FROM learner_activity WHERE course_id = {q(course)} AND user_id = {int(user_id)}""",
    )
    return rows[0] if rows else None


def timeline(runner: Runner, course: str, user_id: int, limit: int = 500) -> list[dict]:
    """A learner's interactions, newest first, with the block's name where known."""
    return json_rows(
        runner,
        f"""
        SELECT toString(e.time) AS time, e.category AS category, e.interaction AS interaction,
               ifNull(b.display_name, '') AS name
        FROM (SELECT time, category, interaction, arrayElement(splitByRegexp('[@/]',
                     coalesce(problem_id, video_id, block_id, '')), -1) AS key
              FROM course_events
              WHERE course_id = {q(course)} AND user_id = {int(user_id)} AND kind = 'learner'
              ORDER BY time DESC LIMIT {int(limit)}) AS e
        LEFT JOIN (SELECT block_key, display_name FROM block_names WHERE course_id = {q(course)}) AS b
            ON e.key = b.block_key
        ORDER BY e.time DESC
        SETTINGS join_use_nulls = 1""",
    )


def peer_quartiles(runner: Runner, course: str) -> dict:
    cols = ", ".join(f"quantilesExact(0.25, 0.5, 0.75)({m}) AS {m}" for m, _ in PEER_MEASURES)
    rows = json_rows(runner, f"SELECT count() AS learners, {cols} FROM learner_activity WHERE course_id = {q(course)}")
    return rows[0] if rows else {}


def recommendations(runner: Runner, course: str, user_id: int) -> list[dict]:
    return json_rows(
        runner,
        f"""
        SELECT r.rank AS rank, r.block_id AS block_id, r.reason AS reason, ifNull(b.display_name, '') AS name
        FROM {_latest("recommendations", course)} AS r
        LEFT JOIN (SELECT block_key, display_name FROM block_names WHERE course_id = {q(course)}) AS b
            ON arrayElement(splitByRegexp('[@/]', r.block_id), -1) = b.block_key
        WHERE r.user_id = {int(user_id)} ORDER BY r.rank
        SETTINGS join_use_nulls = 1""",
    )


def suggestions(runner: Runner, course: str, audience: str, user_id: int | None = None) -> list[dict]:
    who = f"AND user_id = {int(user_id)}" if user_id is not None else ""
    return json_rows(
        runner,
        f"""
        SELECT priority, text FROM {_latest("suggestions", course)}
        WHERE audience = {q(audience)} {who} ORDER BY priority, text""",
    )


def _last_window(course: str, window: int) -> str:
    """The start of the course's latest stored window of ``window`` seconds (SQL)."""
    return (
        f"(SELECT max(window_start) FROM window_counts WHERE course_id = {q(course)} "
        f"AND window_seconds = {int(window)})"
    )


def live_series(runner: Runner, course: str, window: int, points: int = 60) -> list[dict]:
    """The stream app's latest windows of the course: events (every kind) and active
    learners per window, as the ClickHouse sink has them (seconds behind the stream).

    The latest window is read from the stored rows, not the deduplicating view: a
    window the view shows has stored rows (counts or a recount mark), and the view's
    work then covers only the windows shown, not the course's whole history."""
    return json_rows(
        runner,
        f"""
        WITH {_last_window(course, window)} AS last
        SELECT toString(window_start) AS at,
               sumIf(count, kind = 'course_category') AS events,
               sumIf(count, kind = 'course_learners') AS learners
        FROM window_counts_final
        WHERE course_id = {q(course)} AND window_seconds = {int(window)}
          AND window_start > last - INTERVAL {int(window) * int(points)} SECOND
        GROUP BY at ORDER BY at""",
    )


def live_top_actions(runner: Runner, course: str, window: int) -> list[dict]:
    return json_rows(
        runner,
        f"""
        WITH {_last_window(course, window)} AS last
        SELECT dimension AS action, sum(count) AS events FROM window_counts_final
        WHERE course_id = {q(course)} AND window_seconds = {int(window)} AND kind = 'course_action'
          AND window_start > last - INTERVAL {int(window) * 10} SECOND
        GROUP BY action ORDER BY events DESC, action LIMIT 10""",
    )
