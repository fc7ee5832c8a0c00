-- Views for the questions every course team asks (docs/analysts.md documents each one
-- with example queries). The events table is a ReplacingMergeTree, so it may hold a
-- re-delivered event twice until a merge: every view reads `events FINAL`, which
-- collapses duplicates at query time, so the answers are exact at any moment.
-- Rows without a course (site-wide pages, logins) are left out of the per-course views.

-- Every event that belongs to a course, deduplicated, with a non-nullable course_id.
-- The per-course views below read it; analysts can too.
CREATE VIEW IF NOT EXISTS course_events AS
SELECT * REPLACE (assumeNotNull(course_id) AS course_id)
FROM (SELECT * FROM events FINAL WHERE course_id IS NOT NULL);

-- Interactions per course, day and category: the course history chart.
CREATE VIEW IF NOT EXISTS course_daily_interactions AS
SELECT
    course_id,
    toDate(time)             AS day,
    category,
    count()                  AS events,
    uniqExactIf(user_id, user_id IS NOT NULL) AS learners
FROM course_events
GROUP BY course_id, day, category;

-- Distinct active learners per course and day (not the sum over categories: a learner
-- who watched a video and answered a problem counts once).
CREATE VIEW IF NOT EXISTS course_daily_learners AS
SELECT
    course_id,
    toDate(time)             AS day,
    uniqExactIf(user_id, user_id IS NOT NULL) AS active_learners,
    count()                  AS events
FROM course_events
GROUP BY course_id, day;

-- Enrolments per course and run. `enrolled_now` counts learners whose latest
-- activation or deactivation activates them.
CREATE VIEW IF NOT EXISTS course_enrolments AS
SELECT
    course_id,
    any(org)          AS org,
    any(course)       AS course,
    any(run)          AS run,
    sum(activations)  AS enrolments,
    sum(deactivations) AS unenrolments,
    sum(mode_changes) AS mode_changes,
    countIf(activations > 0) AS learners_enrolled_ever,
    countIf(last_change = 'edx.course.enrollment.activated') AS enrolled_now
FROM
(
    SELECT
        course_id,
        user_id,
        any(org) AS org, any(course) AS course, any(run) AS run,
        countIf(event_type = 'edx.course.enrollment.activated')    AS activations,
        countIf(event_type = 'edx.course.enrollment.deactivated')  AS deactivations,
        countIf(event_type = 'edx.course.enrollment.mode_changed') AS mode_changes,
        argMaxIf(event_type, time, event_type IN ('edx.course.enrollment.activated',
                                                  'edx.course.enrollment.deactivated')) AS last_change
    FROM course_events
    WHERE event_type LIKE 'edx.course.enrollment.%'
    GROUP BY course_id, user_id
)
GROUP BY course_id;

-- Video engagement per video. A learner's video events are taken in time order (per
-- session); a play followed by a pause, stop or seek (or by the next play) is a
-- watched segment from the play's position to the position where it ended. The
-- segment is capped by the wall-clock time between the two events (times 2, the
-- fastest speed) so a lost pause event cannot count hours.
CREATE VIEW IF NOT EXISTS video_segments AS
SELECT
    course_id, video_id, user_id, session, time AS started_at,
    start_position,
    end_position,
    greatest(0, least(end_position - start_position, 2 * wall_seconds)) AS seconds_watched
FROM
(
    SELECT
        course_id,
        video_id,
        user_id, session, time, event_type,
        video_position AS start_position,
        leadInFrame(event_type) OVER w AS next_type,
        leadInFrame(time) OVER w       AS next_time,
        leadInFrame(multiIf(
            event_type IN ('seek_video', 'edx.video.position.changed'), video_old_time,
            video_position)) OVER w   AS next_position,
        if(next_type = '', NULL, next_position) AS end_position,
        dateDiff('millisecond', time, next_time) / 1000.0 AS wall_seconds
    FROM course_events
    WHERE video_id IS NOT NULL
    WINDOW w AS (PARTITION BY course_id, video_id, user_id, session ORDER BY time, event_id
                 ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
)
WHERE event_type IN ('play_video', 'edx.video.played')
  AND start_position IS NOT NULL AND end_position IS NOT NULL;

CREATE VIEW IF NOT EXISTS video_engagement AS
SELECT
    v.course_id AS course_id,
    v.video_id  AS video_id,
    v.plays, v.unique_viewers, v.pauses, v.seeks, v.completions,
    round(ifNull(s.seconds_watched, 0), 1) AS seconds_watched
FROM
(
    SELECT
        course_id,
        video_id,
        countIf(event_type IN ('play_video', 'edx.video.played'))  AS plays,
        uniqExactIf(user_id, event_type IN ('play_video', 'edx.video.played') AND user_id IS NOT NULL) AS unique_viewers,
        countIf(event_type IN ('pause_video', 'edx.video.paused')) AS pauses,
        countIf(event_type IN ('seek_video', 'edx.video.position.changed')) AS seeks,
        countIf(event_type IN ('complete_video', 'edx.video.completed', 'stop_video', 'edx.video.stopped')) AS completions
    FROM course_events
    WHERE video_id IS NOT NULL
    GROUP BY course_id, video_id
) AS v
LEFT JOIN
(
    SELECT course_id, video_id, sum(seconds_watched) AS seconds_watched
    FROM video_segments
    GROUP BY course_id, video_id
) AS s ON v.course_id = s.course_id AND v.video_id = s.video_id;

-- Problem outcomes per problem, from the graded checks (events with a success value).
-- A learner's first try is their earliest graded check of the problem.
CREATE VIEW IF NOT EXISTS problem_outcomes AS
SELECT
    course_id,
    problem_id,
    sum(checks)          AS attempts,
    count()              AS learners,
    countIf(first_ok)    AS first_try_successes,
    round(countIf(first_ok) / count(), 4) AS first_try_success_rate,
    countIf(ever_ok)     AS learners_solved,
    round(avg(best_score), 4) AS avg_best_score
FROM
(
    SELECT
        course_id,
        problem_id,
        user_id,
        count()                    AS checks,
        argMin(success, time) = 1  AS first_ok,
        max(success) = 1           AS ever_ok,
        max(if(max_grade > 0, grade / max_grade, NULL)) AS best_score
    FROM course_events
    WHERE problem_id IS NOT NULL AND success IS NOT NULL
    GROUP BY course_id, problem_id, user_id
)
GROUP BY course_id, problem_id;

-- Forum activity per course and day.
CREATE VIEW IF NOT EXISTS forum_activity AS
SELECT
    course_id,
    toDate(time)             AS day,
    countIf(event_type = 'edx.forum.thread.created')   AS threads,
    countIf(event_type = 'edx.forum.response.created') AS responses,
    countIf(event_type = 'edx.forum.comment.created')  AS comments,
    countIf(event_type LIKE 'edx.forum.%.voted')       AS votes,
    countIf(event_type = 'edx.forum.thread.viewed')    AS thread_views,
    countIf(event_type = 'edx.forum.searched')         AS searches,
    uniqExactIf(user_id, event_type LIKE 'edx.forum.%.created' AND user_id IS NOT NULL) AS posters,
    uniqExactIf(user_id, user_id IS NOT NULL)          AS participants
FROM course_events
WHERE category = 'forum'
GROUP BY course_id, day;

-- One row per learner and course: features for clustering or at-risk models.
CREATE VIEW IF NOT EXISTS learner_activity AS
SELECT
    course_id,
    user_id,
    anyLast(username)        AS username,
    count()                  AS events,
    countIf(category = 'access')     AS access_events,
    countIf(category = 'content')    AS content_events,
    countIf(category = 'video')      AS video_events,
    countIf(category = 'forum')      AS forum_events,
    countIf(category = 'assessment') AS assessment_events,
    countIf(category = 'other')      AS other_events,
    uniqExact(toDate(time))          AS active_days,
    uniqExactIf(session, session IS NOT NULL) AS sessions,
    min(time)                        AS first_seen,
    max(time)                        AS last_seen,
    uniqExactIf(video_id, video_id IS NOT NULL AND event_type IN ('play_video', 'edx.video.played')) AS videos_watched,
    uniqExactIf(problem_id, problem_id IS NOT NULL AND success IS NOT NULL) AS problems_attempted,
    uniqExactIf(problem_id, problem_id IS NOT NULL AND success = 1)         AS problems_solved
FROM course_events
WHERE user_id IS NOT NULL
GROUP BY course_id, user_id;
