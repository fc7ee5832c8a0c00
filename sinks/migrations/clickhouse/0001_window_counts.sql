-- Each emission of a window carries its full value and a growing version, so the table
-- keeps the highest version per window (after merges); window_counts_final gives the
-- final value at any time, before merges too.
CREATE TABLE IF NOT EXISTS window_counts
(
    kind           LowCardinality(String),
    course_id      String,
    dimension      String,
    window_seconds UInt32,
    window_start   DateTime('UTC'),
    count          UInt64,
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (course_id, kind, window_seconds, window_start, dimension);

-- (The inner query renames count and version so the outer aliases do not shadow them.)
CREATE VIEW IF NOT EXISTS window_counts_final AS
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
)
GROUP BY kind, course_id, dimension, window_seconds, window_start;
