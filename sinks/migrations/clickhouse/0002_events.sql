-- Every enriched event, for analysts' per-course and per-learner scans. Rows are
-- deduplicated by the sorting key (within a month partition): event_id is in it, and
-- the other key parts (course, learner, time) are read straight from the event's line,
-- so a re-delivered event collapses into one row; a re-classified event (new category,
-- action, ...) replaces the old row. Query with FINAL for exact counts before merges.
CREATE TABLE IF NOT EXISTS events
(
    event_id       String,
    time           DateTime64(6, 'UTC'),
    category       LowCardinality(String),
    action         LowCardinality(String),
    event_type     String,
    event_source   LowCardinality(Nullable(String)),
    course_id      Nullable(String),
    org            Nullable(String),
    course         Nullable(String),
    run            Nullable(String),
    block_id       Nullable(String),
    section_id     Nullable(String),
    subsection_id  Nullable(String),
    user_id        Nullable(Int64),
    username       Nullable(String),
    session        Nullable(String),
    ip             Nullable(String),
    agent          Nullable(String),
    host           Nullable(String),
    page           Nullable(String),
    referer        Nullable(String),
    video_id       Nullable(String),
    video_code     Nullable(String),
    video_position Nullable(Float64),
    video_old_time Nullable(Float64),
    video_new_time Nullable(Float64),
    video_speed    Nullable(Float64),
    problem_id     Nullable(String),
    attempts       Nullable(Int64),
    success        Nullable(Bool),
    grade          Nullable(Float64),
    max_grade      Nullable(Float64),
    payload        String,
    source         Nullable(String),
    offset         Nullable(Int64)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (course_id, user_id, time, event_id)
SETTINGS allow_nullable_key = 1;
