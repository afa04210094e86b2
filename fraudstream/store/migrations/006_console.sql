-- The analyst console (fraudstream.console): users, sessions, claims on alert cases, the verdict audit log,
-- and where a label came from.

CREATE TABLE IF NOT EXISTS console_users (
    user_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text        NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_.-]{1,64}$'),
    password_hash  text        NOT NULL,  -- argon2id, with its parameters and salt
    role           text        NOT NULL CHECK (role IN ('analyst', 'admin')),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- A session cookie holds a random token; only its SHA-256 is stored, so a copy of this table logs no one in.
CREATE TABLE IF NOT EXISTS console_sessions (
    token_sha256  text        PRIMARY KEY,
    user_id       bigint      NOT NULL REFERENCES console_users ON DELETE CASCADE,
    csrf_token    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expires_idx ON console_sessions (expires_at);

-- One claim per alert case: the analyst working it, until expires_at (then anyone may claim it).
CREATE TABLE IF NOT EXISTS case_claims (
    transaction_id  text        PRIMARY KEY,
    user_id         bigint      NOT NULL REFERENCES console_users ON DELETE CASCADE,
    claimed_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at      timestamptz NOT NULL
);

-- Every verdict given (the audit trail): a later verdict on a transaction wins for its label, all are kept.
-- request_id comes from the form the verdict was given on, so a double click or a retry is one verdict.
CREATE TABLE IF NOT EXISTS verdicts (
    verdict_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id      uuid        NOT NULL UNIQUE,
    transaction_id  text        NOT NULL,
    user_id         bigint      NOT NULL REFERENCES console_users,
    verdict         text        NOT NULL CHECK (verdict IN ('fraud', 'legitimate', 'escalate')),
    note            text        NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    decided_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS verdicts_transaction_idx ON verdicts (transaction_id, decided_at DESC);

-- Where a label came from: 'feed' = read from the labels topic by an engine (the simulator, a chargeback
-- feed); 'analyst' = a console verdict, with the analyst's user id.
ALTER TABLE labels ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'feed';
ALTER TABLE labels ADD COLUMN IF NOT EXISTS analyst_id bigint;

-- The alert queue, highest score first: keyset pagination on (score, event_time, transaction_id).
CREATE INDEX IF NOT EXISTS transactions_flagged_score_idx
    ON transactions (score DESC, event_time DESC, transaction_id DESC) WHERE decision <> 'approve';
-- A transaction page's merchant alert count: only flagged rows are indexed, so the engines' writes barely notice.
CREATE INDEX IF NOT EXISTS transactions_merchant_flagged_idx
    ON transactions (merchant_id, event_time DESC) WHERE decision <> 'approve';
