-- The latest run of `edxstream analyze` per course: join the analysis tables on it to
-- read only current figures. (The inner query renames the columns so the outer
-- aliases do not shadow them.)
CREATE VIEW IF NOT EXISTS latest_analysis_runs AS
SELECT course_id, argMax(r, t) AS run_id, max(t) AS run_at
FROM (SELECT course_id, run_id AS r, run_at AS t FROM analysis_runs)
GROUP BY course_id;
