-- One row per enriched event, keyed by the deterministic event id, so a replay upserts
-- instead of duplicating. Columns are EnrichedEvent's fields, in order.
CREATE TABLE IF NOT EXISTS `events` (
  `event_id`       VARCHAR(64)   NOT NULL,
  `time`           DATETIME(6)   NOT NULL,  -- UTC
  `category`       VARCHAR(32)   NOT NULL,
  `action`         VARCHAR(255)  NOT NULL,
  `event_type`     VARCHAR(1024) NOT NULL,
  `event_source`   VARCHAR(16)   NULL,
  `course_id`      VARCHAR(255)  NULL,
  `org`            VARCHAR(255)  NULL,
  `course`         VARCHAR(255)  NULL,
  `run`            VARCHAR(255)  NULL,
  `block_id`       VARCHAR(512)  NULL,
  `section_id`     VARCHAR(512)  NULL,
  `subsection_id`  VARCHAR(512)  NULL,
  `user_id`        BIGINT        NULL,
  `username`       VARCHAR(255)  NULL,
  `session`        VARCHAR(255)  NULL,
  `ip`             VARCHAR(255)  NULL,
  `agent`          TEXT          NULL,
  `host`           VARCHAR(255)  NULL,
  `page`           TEXT          NULL,
  `referer`        TEXT          NULL,
  `video_id`       VARCHAR(255)  NULL,
  `video_code`     VARCHAR(255)  NULL,
  `video_position` DOUBLE        NULL,
  `video_old_time` DOUBLE        NULL,
  `video_new_time` DOUBLE        NULL,
  `video_speed`    DOUBLE        NULL,
  `problem_id`     VARCHAR(512)  NULL,
  `attempts`       BIGINT        NULL,
  `success`        BOOLEAN       NULL,
  `grade`          DOUBLE        NULL,
  `max_grade`      DOUBLE        NULL,
  `payload`        MEDIUMTEXT    NOT NULL,  -- up to 16 MiB; the shipper caps lines at 1 MB
  `source`         VARCHAR(1024) NULL,
  `offset`         BIGINT        NULL,
  PRIMARY KEY (`event_id`),
  KEY `events_course_time` (`course_id`, `time`),
  KEY `events_user_time` (`user_id`, `time`),
  KEY `events_time` (`time`),
  KEY `events_category_time` (`category`, `time`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Lines and messages something rejected, with the bytes needed to fix and replay them.
CREATE TABLE IF NOT EXISTS `dead_letters` (
  `dead_letter_id` VARCHAR(64)   NOT NULL,
  `reason`         VARCHAR(64)   NOT NULL,
  `detail`         TEXT          NOT NULL,
  `raw`            LONGTEXT      NOT NULL,  -- text, or base64 when raw_encoding says so
  `raw_encoding`   VARCHAR(16)   NOT NULL,
  `source`         VARCHAR(1024) NULL,
  `offset`         BIGINT        NULL,
  `stage`          VARCHAR(16)   NOT NULL,
  `seen_at`        DATETIME(6)   NULL,      -- UTC; the first time it was rejected
  PRIMARY KEY (`dead_letter_id`),
  KEY `dead_letters_reason_seen` (`reason`, `seen_at`),
  KEY `dead_letters_seen` (`seen_at`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
