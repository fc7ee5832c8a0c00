-- Run once by the mysql image on an empty data volume (docker-entrypoint-initdb.d).
-- The same database settings and grants `edxstream stack up` gives MariaDB
-- (edxstream.ops.stack.ensure_mysql_database): utf8mb4_bin, so ids compare byte for byte,
-- and the edxstream_* databases a replay or a test run may create.
ALTER DATABASE edxstream CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
GRANT ALL PRIVILEGES ON `edxstream\_%`.* TO 'edxstream'@'%';
-- The read-only account (EDXSTREAM_MYSQL_ANALYST_DSN): SELECT on the edxstream database only.
CREATE USER IF NOT EXISTS 'edxstream_analyst'@'%' IDENTIFIED BY 'edxstream_analyst';
GRANT SELECT ON edxstream.* TO 'edxstream_analyst'@'%';
