-- Scored transactions, labels and the engines' bookkeeping. Plain PostgreSQL; when the timescaledb
-- extension is available, 001_core.timescale.sql runs right after this file.

CREATE TABLE IF NOT EXISTS transactions (
    transaction_id     text             NOT NULL,
    event_time         timestamptz      NOT NULL,
    account_id         text             NOT NULL,
    amount             double precision NOT NULL,
    currency           text             NOT NULL,
    merchant_id        text             NOT NULL,
    merchant_category  text             NOT NULL,
    payment_method     text             NOT NULL,
    channel            text             NOT NULL,
    country            text             NOT NULL,
    latitude           double precision NOT NULL,
    longitude          double precision NOT NULL,
    device_id          text             NOT NULL,
    features           jsonb            NOT NULL DEFAULT '{}'::jsonb,  -- the features that mattered
    score              double precision NOT NULL,
    decision           text             NOT NULL CHECK (decision IN ('approve', 'review', 'block')),
    reasons            text[]           NOT NULL DEFAULT '{}',
    model_version      text             NOT NULL,
    is_late            boolean          NOT NULL DEFAULT false,
    engine             text             NOT NULL,
    kafka_partition    integer,
    kafka_offset       bigint,
    ingested_at        timestamptz      NOT NULL,  -- when the engine read the event from Kafka
    scored_at          timestamptz      NOT NULL,  -- when the model scored it
    written_at         timestamptz      NOT NULL DEFAULT clock_timestamp(),
    -- event_time is part of the key because a hypertable's unique keys must hold its time column;
    -- an event's time never changes, so this is one row per transaction_id.
    PRIMARY KEY (transaction_id, event_time)
);
CREATE INDEX IF NOT EXISTS transactions_event_time_idx ON transactions (event_time DESC);
CREATE INDEX IF NOT EXISTS transactions_account_idx ON transactions (account_id, event_time DESC);
CREATE INDEX IF NOT EXISTS transactions_flagged_idx ON transactions (event_time DESC) WHERE decision <> 'approve';

CREATE TABLE IF NOT EXISTS labels (
    transaction_id  text        PRIMARY KEY,
    account_id      text,
    merchant_id     text,
    is_fraud        boolean     NOT NULL,
    scenario        text,
    labeled_at      timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS labels_labeled_at_idx ON labels (labeled_at DESC);

-- Offsets the engines consumed up to, written in the same database transaction as the rows.
CREATE TABLE IF NOT EXISTS engine_offsets (
    consumer_group  text    NOT NULL,
    topic           text    NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint  NOT NULL CHECK (next_offset >= 0),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Feature-state checkpoints per partition, consistent with the offset they were taken at.
CREATE TABLE IF NOT EXISTS engine_state_snapshots (
    consumer_group  text    NOT NULL,
    topic           text    NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint  NOT NULL,
    state           bytea   NOT NULL,
    feature_code_version text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer_group, topic, partition)
);
