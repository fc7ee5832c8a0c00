-- Learners removed with `edxstream forget`. The sinks read this list and keep the
-- learner's future events out. It holds keyed hashes, never the id or the name: the
-- pseudonyms of the user id and of the username under EDXSTREAM_PSEUDONYM_KEY.
CREATE TABLE IF NOT EXISTS `retired_learners` (
  `user_key`   VARCHAR(32) NOT NULL,
  `retired_at` DATETIME(6) NOT NULL,  -- UTC
  PRIMARY KEY (`user_key`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
