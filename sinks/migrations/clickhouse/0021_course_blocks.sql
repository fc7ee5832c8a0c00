-- A course's structure, as `edxstream course import` reads it from an OLX export or a
-- Course Blocks API response: one row per block. Tracking logs carry block ids only;
-- the analyst views join this table at query time, so a structure imported after the
-- events fills their names in without reprocessing. Importing a course again replaces
-- its rows (the newest import of a block wins).
CREATE TABLE IF NOT EXISTS course_blocks
(
    course_id        String,
    block_id         String,                  -- usage key, block-v1:...+type@T+block@H
    block_key        String,                  -- H: what video events and i4x ids carry
    block_type       LowCardinality(String),  -- course, chapter, sequential, vertical, video, problem, ...
    display_name     String,
    chapter_id       Nullable(String),
    chapter_name     Nullable(String),
    sequential_id    Nullable(String),
    sequential_name  Nullable(String),
    position         UInt32,                  -- order of the block in the course outline
    graded           Bool,
    assignment_type  String,                  -- the grading format (Homework, Exam, ...)
    weight           Nullable(Float64),
    due              Nullable(DateTime('UTC')),
    video_duration   Nullable(Float64),       -- seconds, when the structure gives it
    source           LowCardinality(String),  -- olx | blocks_api
    imported_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(imported_at)
ORDER BY (course_id, block_id);
