-- What each event is (docs/taxonomy.md): its kind (learner, echo, plumbing, authoring,
-- system, api, other) and the interaction it belongs to, so that a learner action logged
-- by the browser and the server counts once (count the rows whose kind is 'learner').
-- Columns at the end, as in EnrichedEvent; rows written before are empty strings until
-- a replay (docs/replay.md) reprocesses them. The ALTER runs only while the columns are
-- missing, so the migration can be run again, in SQL that MariaDB and MySQL both take.
SET @edxstream_sql = IF(
  (SELECT COUNT(*) FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = 'events' AND column_name = 'kind') = 0,
  'ALTER TABLE `events`
     ADD COLUMN `kind` VARCHAR(16) NOT NULL DEFAULT \'\',
     ADD COLUMN `interaction` VARCHAR(128) NOT NULL DEFAULT \'\'',
  'DO 0');
PREPARE edxstream_stmt FROM @edxstream_sql;
EXECUTE edxstream_stmt;
DEALLOCATE PREPARE edxstream_stmt;
