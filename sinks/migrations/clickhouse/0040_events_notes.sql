-- What the event model could not use in an event (for example "grade: not a usable
-- number" for a grade of 1e400): the column is null and the value stays in payload.
-- At the end, as in EnrichedEvent; rows written before read as '' until a replay.
ALTER TABLE events
    ADD COLUMN IF NOT EXISTS notes LowCardinality(String) DEFAULT '';
