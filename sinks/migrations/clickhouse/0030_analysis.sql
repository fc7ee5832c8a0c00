-- Tables of `edxstream analyze` (learner segments, predictions, correlations,
-- recommendations, suggestions). Every run appends rows under a new run_id; each row
-- carries the run id, the run's time and the quality figures of the model it came from,
-- so an analyst can always tell how good (and how old) a figure is. Old runs are kept:
-- query the latest with the `latest_analysis_runs` view (migration 0130).

-- One row per course and step of a run: ok, or why there was nothing to fit.
CREATE TABLE IF NOT EXISTS analysis_runs
(
    run_id      String,
    run_at      DateTime64(3, 'UTC'),
    as_of       DateTime64(3, 'UTC'),
    course_id   String,
    step        LowCardinality(String),
    status      LowCardinality(String),
    learners    UInt32,
    quality     String,
    message     String
)
ENGINE = MergeTree
ORDER BY (course_id, run_at, step);

-- Each learner's segment (k-means on standardised behaviour features).
CREATE TABLE IF NOT EXISTS learner_segments
(
    run_id        String,
    run_at        DateTime64(3, 'UTC'),
    course_id     String,
    user_id       Int64,
    segment       UInt16,
    segment_label String,
    silhouette    Float64
)
ENGINE = MergeTree
ORDER BY (course_id, run_at, user_id);

-- Each segment: its size, its centre (feature means, JSON) and its description in words.
CREATE TABLE IF NOT EXISTS segment_profiles
(
    run_id      String,
    run_at      DateTime64(3, 'UTC'),
    course_id   String,
    method      LowCardinality(String),
    segment     UInt16,
    label       String,
    description String,
    learners    UInt32,
    centre      String,
    k           UInt16,
    silhouette  Float64
)
ENGINE = MergeTree
ORDER BY (course_id, run_at, method, segment);

-- Each learner's predicted final grade and risk of not passing or stopping, from what
-- was known after their first weeks, with the features that drove the risk.
CREATE TABLE IF NOT EXISTS learner_predictions
(
    run_id           String,
    run_at           DateTime64(3, 'UTC'),
    course_id        String,
    user_id          Int64,
    predicted_grade  Float64,
    risk             Float64,
    at_risk          Bool,
    drivers          String,
    auc              Float64,
    r2               Float64,
    trained_on       UInt32
)
ENGINE = MergeTree
ORDER BY (course_id, run_at, user_id);

-- Rank correlations of behaviours with results, with 95 % confidence intervals.
CREATE TABLE IF NOT EXISTS behaviour_correlations
(
    run_id    String,
    run_at    DateTime64(3, 'UTC'),
    course_id String,
    feature   String,
    outcome   LowCardinality(String),
    rho       Float64,
    ci_low    Float64,
    ci_high   Float64,
    p_value   Float64,
    learners  UInt32
)
ENGINE = MergeTree
ORDER BY (course_id, run_at, outcome, feature);

-- Error-prone problems: the first-try failure rate, overall ('' segment) and per
-- segment, and the block seen before the first try that goes with passing most.
CREATE TABLE IF NOT EXISTS problem_difficulty
(
    run_id              String,
    run_at              DateTime64(3, 'UTC'),
    course_id           String,
    problem_id          String,
    segment_label       String,
    learners            UInt32,
    first_try_fail_rate Float64,
    helpful_block       String,
    helpful_lift        Float64
)
ENGINE = MergeTree
ORDER BY (course_id, run_at, problem_id, segment_label);

-- For each learner, the next content to use (never one they already used), best first.
CREATE TABLE IF NOT EXISTS recommendations
(
    run_id            String,
    run_at            DateTime64(3, 'UTC'),
    course_id         String,
    user_id           Int64,
    rank              UInt8,
    block_id          String,
    score             Float64,
    reason            String,
    hit_rate          Float64,
    baseline_hit_rate Float64
)
ENGINE = MergeTree
ORDER BY (course_id, run_at, user_id, rank);

-- Short texts for the course team (audience 'teacher', user_id NULL) and for learners.
CREATE TABLE IF NOT EXISTS suggestions
(
    run_id    String,
    run_at    DateTime64(3, 'UTC'),
    course_id String,
    audience  LowCardinality(String),
    user_id   Nullable(Int64),
    priority  UInt8,
    text      String
)
ENGINE = MergeTree
ORDER BY (course_id, run_at, audience, priority);
