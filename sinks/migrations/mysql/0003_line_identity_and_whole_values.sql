-- Event and dead-letter ids are now the line's identity, "<file fingerprint>-<byte
-- offset as 12 hex digits>" (edxstream.core.model.event_identity), instead of a hash of
-- the line's content: identical lines at different offsets are distinct rows, and the
-- ids of one file sort in file order, so the unique index on event_id grows at its end
-- like the table itself instead of taking every insert at a random page (which made the
-- sink slower as the table outgrew the buffer pool). Ids are ASCII: the index holds 29
-- bytes per row instead of up to 256 (utf8mb4).
-- Values are kept whole: every text column that is not part of an index becomes
-- MEDIUMTEXT (as payload already is), so a long action, URL or key is stored as it is
-- in ClickHouse, instead of being refused by MySQL alone. Indexed columns keep their
-- widths: course ids are validated (at most 255 characters) and categories are a
-- fixed set.
-- The ALTERs rebuild existing tables (about a minute per million rows). Rows stored
-- before them keep their content-hash ids (32 hex digits, no "-"); docs/replay.md
-- says what to do before replaying that period.
ALTER TABLE `events`
  MODIFY `event_id`      VARCHAR(64)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  MODIFY `action`        MEDIUMTEXT    NOT NULL,
  MODIFY `event_type`    MEDIUMTEXT    NOT NULL,
  MODIFY `event_source`  MEDIUMTEXT    NULL,
  MODIFY `block_id`      MEDIUMTEXT    NULL,
  MODIFY `section_id`    MEDIUMTEXT    NULL,
  MODIFY `subsection_id` MEDIUMTEXT    NULL,
  MODIFY `username`      MEDIUMTEXT    NULL,
  MODIFY `session`       MEDIUMTEXT    NULL,
  MODIFY `ip`            MEDIUMTEXT    NULL,
  MODIFY `agent`         MEDIUMTEXT    NULL,
  MODIFY `host`          MEDIUMTEXT    NULL,
  MODIFY `page`          MEDIUMTEXT    NULL,
  MODIFY `referer`       MEDIUMTEXT    NULL,
  MODIFY `video_id`      MEDIUMTEXT    NULL,
  MODIFY `video_code`    MEDIUMTEXT    NULL,
  MODIFY `problem_id`    MEDIUMTEXT    NULL,
  MODIFY `source`        MEDIUMTEXT    NULL;

ALTER TABLE `dead_letters`
  MODIFY `dead_letter_id` VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  MODIFY `source`         MEDIUMTEXT   NULL;
