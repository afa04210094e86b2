-- The model lifecycle's log: one row per promote, rollback and retrain run (fraudstream.store.model_events).
-- A small append-only table read newest first, so no hypertable twin: it never grows like transactions.
CREATE TABLE IF NOT EXISTS model_events (
    event_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind                text        NOT NULL CHECK (kind IN ('promote', 'rollback', 'retrain')),
    -- production before and after the event; the challenger a retrain trained (NULL otherwise)
    production_before   text,
    production_after    text,
    challenger          text,
    -- 'promoted', 'shadow' (challenger kept beside the champion), 'rolled_back', 'failed'
    decision            text        NOT NULL CHECK (decision IN ('promoted', 'shadow', 'rolled_back', 'failed')),
    reasons             text[]      NOT NULL DEFAULT '{}',
    -- event-time "now" of a retrain and its periods: {"train": {"start", "end"}, "evaluation": {...}, ...}
    as_of               timestamptz,
    windows             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    champion_metrics    jsonb,
    challenger_metrics  jsonb,
    -- who or what did it: 'cli', 'retrain', 'retrain --every', 'console'
    actor               text        NOT NULL DEFAULT 'cli'
);
CREATE INDEX IF NOT EXISTS model_events_occurred_idx ON model_events (occurred_at DESC);
