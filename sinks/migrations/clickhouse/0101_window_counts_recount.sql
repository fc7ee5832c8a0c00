-- Late events (older than their raw partition's watermark minus the grace) are not
-- counted by the stream app: their window may already be forgotten there. The stream
-- app emits a row of kind 'recount' for each window a late event falls in instead, and
-- this view gives such a window's counts from the stored events (same rules as the
-- stream: per category, per action, distinct learners = user id, else username), and
-- every other window's latest emitted value as before. So every window equals its
-- stored events whatever the order the events came in (docs/architecture.md).
CREATE OR REPLACE VIEW window_counts_final AS
SELECT
    kind,
    course_id,
    dimension,
    window_seconds,
    window_start,
    argMax(c, v) AS count,
    max(v) AS version
FROM
(
    SELECT kind, course_id, dimension, window_seconds, window_start, count AS c, version AS v
    FROM window_counts
    WHERE kind != 'recount'
      AND (course_id, window_seconds, window_start) NOT IN
          (SELECT course_id, window_seconds, window_start FROM window_counts WHERE kind = 'recount')
)
GROUP BY kind, course_id, dimension, window_seconds, window_start
UNION ALL
SELECT
    kind,
    course_id,
    dimension,
    window_seconds,
    window_start,
    count,
    version
FROM
(
    SELECT
        course_id,
        window_seconds,
        window_start,
        -- (kind, dimension, count) of each count of the window
        arrayJoin(arrayConcat(
            arrayMap(kv -> ('course_category', kv.1, kv.2), CAST(sumMap(map(category, toUInt64(1))), 'Array(Tuple(String, UInt64))')),
            arrayMap(kv -> ('course_action', kv.1, kv.2), CAST(sumMap(map(action, toUInt64(1))), 'Array(Tuple(String, UInt64))')),
            if(uniqExact(learner) > 0, [('course_learners', '', toUInt64(uniqExact(learner)))], [])
        )) AS kdc,
        kdc.1 AS kind,
        kdc.2 AS dimension,
        kdc.3 AS count,
        any(r.version) AS version
    FROM
    (
        SELECT
            assumeNotNull(course_id) AS course_id,
            -- what the stream counts an event under (classification.counted_as): a
            -- learner interaction under its category, any other event under its kind
            toString(if(kind = 'learner' OR kind = '', category, kind)) AS category,
            toString(action) AS action,
            if(user_id IS NOT NULL, toString(user_id), username) AS learner,
            arrayJoin((SELECT groupUniqArray(window_seconds) FROM window_counts WHERE kind = 'recount')) AS window_seconds,
            toDateTime(intDiv(toUnixTimestamp(time), window_seconds) * window_seconds, 'UTC') AS window_start
        FROM events FINAL
        -- only the events of the (course, UTC day) pairs that recounted windows cover
        WHERE (course_id, intDiv(toUnixTimestamp(time), 86400)) IN
              (SELECT course_id,
                      arrayJoin(range(intDiv(toUnixTimestamp(window_start), 86400),
                                      intDiv(toUnixTimestamp(window_start) + window_seconds - 1, 86400) + 1))
               FROM window_counts WHERE kind = 'recount')
    ) AS e
    INNER JOIN
    (
        SELECT course_id, window_seconds, window_start, max(version) AS version
        FROM window_counts
        WHERE kind = 'recount'
        GROUP BY course_id, window_seconds, window_start
    ) AS r
    USING (course_id, window_seconds, window_start)
    GROUP BY course_id, window_seconds, window_start
);
