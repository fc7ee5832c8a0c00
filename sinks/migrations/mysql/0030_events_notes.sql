-- What the event model could not use in an event (for example "grade: not a usable
-- number" for a grade of 1e400): the column is null and the value stays in `payload`.
-- At the end, as in EnrichedEvent; rows written before read as '' until a replay
-- reprocesses them. The ALTER runs only while the column is missing.
SET @edxstream_sql = IF(
  (SELECT COUNT(*) FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = 'events' AND column_name = 'notes') = 0,
  'ALTER TABLE `events` ADD COLUMN `notes` VARCHAR(255) NOT NULL DEFAULT \'\'',
  'DO 0');
PREPARE edxstream_stmt FROM @edxstream_sql;
EXECUTE edxstream_stmt;
DEALLOCATE PREPARE edxstream_stmt;
