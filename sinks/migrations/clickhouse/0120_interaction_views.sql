-- Views that count learner interactions (docs/taxonomy.md) and show names from the
-- course structure (`edxstream course import`, table course_blocks).
-- An action logged by the browser and the server (and the request behind it) is one
-- interaction: only its record of kind 'learner' is counted. Echoes, page-load plumbing,
-- Studio authoring, system and API events keep their own counts (course_daily_kinds).
-- Names are joined at query time, so a structure imported after the events fills them in;
-- a block the structure does not know has an empty name.

-- Blocks by the key that events carry: a usage key's last part (block-v1:...+block@K,
-- i4x://Org/Course/type/K). Newest import wins.
CREATE OR REPLACE VIEW block_names AS
SELECT
    course_id,
    block_key,
    argMax(block_id, imported_at)        AS block_id,
    argMax(block_type, imported_at)      AS block_type,
    argMax(display_name, imported_at)    AS display_name,
    argMax(chapter_name, imported_at)    AS chapter_name,
    argMax(sequential_name, imported_at) AS sequential_name,
    argMax(graded, imported_at)          AS graded,
    argMax(weight, imported_at)          AS weight,
    argMax(due, imported_at)             AS due,
    argMax(video_duration, imported_at)  AS video_duration
FROM course_blocks
GROUP BY course_id, block_key;

-- Graded subsections with a due date (the assignments; their units and problems share
-- the date): the dates the timeline marks.
CREATE OR REPLACE VIEW course_due_dates AS
SELECT course_id, block_id, block_type, display_name, assignment_type, assumeNotNull(due) AS due,
       toDate(assumeNotNull(due)) AS day
FROM course_blocks FINAL
WHERE graded AND due IS NOT NULL AND block_type = 'sequential';

-- Learner interactions per course, day and category: the course history chart. `due`
-- lists the graded items due that day.
CREATE OR REPLACE VIEW course_daily_interactions AS
SELECT i.course_id AS course_id, i.day AS day, i.category AS category, i.events AS events,
       i.learners AS learners, d.due AS due
FROM
(
    SELECT
        course_id,
        toDate(time)             AS day,
        category,
        count()                  AS events,
        uniqExactIf(user_id, user_id IS NOT NULL) AS learners
    FROM course_events
    WHERE kind = 'learner'
    GROUP BY course_id, day, category
) AS i
LEFT JOIN
(
    SELECT course_id, day, groupArray(display_name) AS due
    FROM (SELECT course_id, day, display_name FROM course_due_dates ORDER BY due, display_name)
    GROUP BY course_id, day
) AS d ON i.course_id = d.course_id AND i.day = d.day;

-- Every event per course, day and kind (learner, echo, plumbing, authoring, system, api,
-- other): what the interactions leave out stays visible here.
CREATE OR REPLACE VIEW course_daily_kinds AS
SELECT course_id, toDate(time) AS day, kind, count() AS events
FROM course_events
GROUP BY course_id, day, kind;

-- Each video's length: from the course structure when it gives one, else estimated as
-- the furthest position any learner's player reported (duration_estimated = 1).
CREATE OR REPLACE VIEW video_durations AS
SELECT
    p.course_id AS course_id,
    p.video_id  AS video_id,
    b.display_name AS display_name,
    if(ifNull(b.video_duration, 0) > 0, assumeNotNull(b.video_duration), round(p.furthest, 1)) AS duration,
    toUInt8(ifNull(b.video_duration, 0) <= 0) AS duration_estimated
FROM
(
    SELECT course_id, video_id,
           -- a block hash, an i4x-Org-Course-video-KEY id or a usage key
           if(startsWith(video_id, 'i4x-'), arrayElement(splitByString('-video-', video_id), -1),
              arrayElement(splitByRegexp('[@/]', video_id), -1)) AS block_key,
           max(greatest(ifNull(video_position, 0), ifNull(video_old_time, 0), ifNull(video_new_time, 0))) AS furthest
    FROM course_events
    WHERE video_id IS NOT NULL
    GROUP BY course_id, video_id
) AS p
LEFT JOIN block_names AS b ON p.course_id = b.course_id AND p.block_key = b.block_key
SETTINGS join_use_nulls = 1;

-- Video engagement per video (see 0100), with the video's name and length.
CREATE OR REPLACE VIEW video_engagement AS
SELECT
    v.course_id AS course_id,
    v.video_id  AS video_id,
    v.plays, v.unique_viewers, v.pauses, v.seeks, v.completions,
    round(ifNull(s.seconds_watched, 0), 1) AS seconds_watched,
    d.display_name AS display_name,
    d.duration AS duration,
    d.duration_estimated AS duration_estimated
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
) AS s ON v.course_id = s.course_id AND v.video_id = s.video_id
LEFT JOIN video_durations AS d ON v.course_id = d.course_id AND v.video_id = d.video_id;

-- Problem outcomes per problem (see 0100), from the server's graded checks (one per
-- submission), with the problem's name, subsection, weight and due date.
CREATE OR REPLACE VIEW problem_outcomes AS
SELECT
    o.course_id AS course_id, o.problem_id AS problem_id,
    o.attempts, o.learners, o.first_try_successes, o.first_try_success_rate, o.learners_solved, o.avg_best_score,
    b.display_name AS display_name, b.sequential_name AS sequential_name, b.chapter_name AS chapter_name,
    b.weight AS weight, b.due AS due
FROM
(
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
        WHERE problem_id IS NOT NULL AND success IS NOT NULL AND kind = 'learner'
        GROUP BY course_id, problem_id, user_id
    )
    GROUP BY course_id, problem_id
) AS o
LEFT JOIN block_names AS b
    ON o.course_id = b.course_id AND arrayElement(splitByRegexp('[@/]', o.problem_id), -1) = b.block_key
SETTINGS join_use_nulls = 1;

-- One row per learner and course (see 0100): the per-category columns count learner
-- interactions; `events` is every event, `interactions` the learner interactions.
CREATE OR REPLACE VIEW learner_activity AS
SELECT
    course_id,
    user_id,
    anyLast(username)        AS username,
    count()                  AS events,
    countIf(kind = 'learner' AND category = 'access')     AS access_events,
    countIf(kind = 'learner' AND category = 'content')    AS content_events,
    countIf(kind = 'learner' AND category = 'video')      AS video_events,
    countIf(kind = 'learner' AND category = 'forum')      AS forum_events,
    countIf(kind = 'learner' AND category = 'assessment') AS assessment_events,
    countIf(kind = 'learner' AND category = 'other')      AS other_events,
    uniqExact(toDate(time))          AS active_days,
    uniqExactIf(session, session IS NOT NULL) AS sessions,
    min(time)                        AS first_seen,
    max(time)                        AS last_seen,
    uniqExactIf(video_id, video_id IS NOT NULL AND event_type IN ('play_video', 'edx.video.played')) AS videos_watched,
    uniqExactIf(problem_id, problem_id IS NOT NULL AND success IS NOT NULL) AS problems_attempted,
    uniqExactIf(problem_id, problem_id IS NOT NULL AND success = 1)         AS problems_solved,
    countIf(kind = 'learner')                             AS interactions,
    countIf(kind = 'learner' AND category = 'enrollment') AS enrollment_events
FROM course_events
WHERE user_id IS NOT NULL
GROUP BY course_id, user_id;
