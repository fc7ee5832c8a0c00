-- What each event is (docs/taxonomy.md): its kind and the interaction it belongs to.
-- Columns at the end, as in EnrichedEvent; rows written before read as '' until a replay
-- reprocesses them.
ALTER TABLE events
    ADD COLUMN IF NOT EXISTS kind LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS interaction LowCardinality(String) DEFAULT '';
