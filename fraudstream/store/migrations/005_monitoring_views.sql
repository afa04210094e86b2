-- Per-minute aggregates that dashboards (Grafana, the console) read instead of scanning raw rows.
--
-- Each view below is keyed by `minute` (the event-time minute of the transaction) and `model_version`,
-- and holds counts that add up: a panel sums the minutes of its range into its own buckets. A view is
-- the UNION ALL of
--   * a rollup table holding every row written before the watermark (monitoring_watermark), kept by
--     monitoring_refresh(), which adds the aggregate of the rows written since (rows are never updated:
--     the writer inserts with ON CONFLICT DO NOTHING, so adding deltas is exact), and
--   * the same aggregate over the rows written after the watermark (the live tail), found through BRIN
--     indexes on written_at / received_at, which cost the writer next to nothing.
-- Each aggregate is written once, as a monitoring_*_delta(from, to) function used by both sides. They
-- run their query with EXECUTE ... USING so that it is planned with the actual watermark: inlined (SQL
-- functions), the bound came from a table at plan time and the planner guessed a third of the table,
-- scanning millions of rows for a tail of thousands.
-- Late events land in their own (old) minute: the delta is chosen by write time, not by event time.
-- On TimescaleDB the same objects are used (the functions work on a hypertable as on a table).

CREATE INDEX IF NOT EXISTS transactions_written_at_brin ON transactions USING brin (written_at);
CREATE INDEX IF NOT EXISTS labels_received_at_brin ON labels USING brin (received_at);

-- Everything written before refreshed_to is in the rollups.
CREATE TABLE IF NOT EXISTS monitoring_watermark (
    singleton     boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    refreshed_to  timestamptz NOT NULL,
    refreshed_at  timestamptz
);
INSERT INTO monitoring_watermark (refreshed_to) VALUES ('-infinity') ON CONFLICT DO NOTHING;

-- Latency histogram buckets: bucket b holds latencies in (1.1^(b-1), 1.1^b] ms (10% resolution),
-- bucket 0 everything up to 1 ms; percentiles are read as a bucket's upper bound.
CREATE OR REPLACE FUNCTION monitoring_latency_bucket(latency_ms double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN greatest(0, least(250, ceil(ln(greatest(latency_ms, 1.0)) / ln(1.1))))::integer;

CREATE OR REPLACE FUNCTION monitoring_bucket_upper_ms(bucket integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN power(1.1, bucket);

-- A reason sentence with its figures taken out ("amount is 4.2x this account's average" ->
-- "amount is …x this account's average"): the reason's kind, in words, to count by.
CREATE OR REPLACE FUNCTION monitoring_reason_kind(reason text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN regexp_replace(reason, '[0-9][0-9,.]*', '…', 'g');

-- Decisions, late events, amounts and the score histogram (20 buckets of 0.05).
CREATE OR REPLACE FUNCTION monitoring_scored_delta(written_from timestamptz, written_to timestamptz)
RETURNS TABLE (minute timestamptz, model_version text, decision text, score_bucket double precision,
               transactions bigint, late bigint, amount double precision)
LANGUAGE plpgsql STABLE AS $f$ BEGIN RETURN QUERY EXECUTE $q$
    SELECT date_trunc('minute', t.event_time), t.model_version, t.decision,
           least(floor(t.score * 20), 19) / 20.0, count(*), count(*) FILTER (WHERE t.is_late), sum(t.amount)
    FROM transactions t
    WHERE t.written_at >= $1 AND t.written_at < $2
    GROUP BY 1, 2, 3, 4
$q$ USING written_from, written_to; END $f$;

-- Counts per payment method and per country (segment says which), with coordinates for a map.
CREATE OR REPLACE FUNCTION monitoring_segments_delta(written_from timestamptz, written_to timestamptz)
RETURNS TABLE (minute timestamptz, model_version text, decision text, segment text, value text,
               transactions bigint, amount double precision, latitude_sum double precision,
               longitude_sum double precision)
LANGUAGE plpgsql STABLE AS $f$ BEGIN RETURN QUERY EXECUTE $q$
    SELECT date_trunc('minute', t.event_time), t.model_version, t.decision, s.segment, s.value,
           count(*), sum(t.amount), sum(t.latitude), sum(t.longitude)
    FROM transactions t
    CROSS JOIN LATERAL (VALUES ('payment_method', t.payment_method), ('country', t.country)) AS s(segment, value)
    WHERE t.written_at >= $1 AND t.written_at < $2
    GROUP BY 1, 2, 3, 4, 5
$q$ USING written_from, written_to; END $f$;

-- Alerts (review or block) per merchant.
CREATE OR REPLACE FUNCTION monitoring_alert_merchants_delta(written_from timestamptz, written_to timestamptz)
RETURNS TABLE (minute timestamptz, model_version text, decision text, merchant_id text,
               merchant_category text, alerts bigint, amount double precision)
LANGUAGE plpgsql STABLE AS $f$ BEGIN RETURN QUERY EXECUTE $q$
    SELECT date_trunc('minute', t.event_time), t.model_version, t.decision, t.merchant_id, t.merchant_category,
           count(*), sum(t.amount)
    FROM transactions t
    WHERE t.written_at >= $1 AND t.written_at < $2 AND t.decision <> 'approve'
    GROUP BY 1, 2, 3, 4, 5
$q$ USING written_from, written_to; END $f$;

-- Alerts per reason kind (each alert counts once for each of its reasons).
CREATE OR REPLACE FUNCTION monitoring_alert_reasons_delta(written_from timestamptz, written_to timestamptz)
RETURNS TABLE (minute timestamptz, model_version text, decision text, reason text, alerts bigint)
LANGUAGE plpgsql STABLE AS $f$ BEGIN RETURN QUERY EXECUTE $q$
    SELECT date_trunc('minute', t.event_time), t.model_version, t.decision, monitoring_reason_kind(r.reason),
           count(*)
    FROM transactions t CROSS JOIN LATERAL unnest(t.reasons) AS r(reason)
    WHERE t.written_at >= $1 AND t.written_at < $2 AND t.decision <> 'approve'
    GROUP BY 1, 2, 3, 4
$q$ USING written_from, written_to; END $f$;

-- Latency histograms of the row's own timestamps, per stage:
--   ingest_to_score (scored_at - ingested_at), score_to_write (written_at - scored_at),
--   ingest_to_write (written_at - ingested_at), event_to_write (written_at - event_time: a latency only
--   when producers stamp wall-clock event times).
CREATE OR REPLACE FUNCTION monitoring_latency_delta(written_from timestamptz, written_to timestamptz)
RETURNS TABLE (minute timestamptz, model_version text, stage text, bucket integer, transactions bigint)
LANGUAGE plpgsql STABLE AS $f$ BEGIN RETURN QUERY EXECUTE $q$
    SELECT date_trunc('minute', t.event_time), t.model_version, l.stage,
           monitoring_latency_bucket(extract(epoch FROM l.latency) * 1000), count(*)
    FROM transactions t
    CROSS JOIN LATERAL (VALUES ('ingest_to_score', t.scored_at - t.ingested_at),
                               ('score_to_write', t.written_at - t.scored_at),
                               ('ingest_to_write', t.written_at - t.ingested_at),
                               ('event_to_write', t.written_at - t.event_time)) AS l(stage, latency)
    WHERE t.written_at >= $1 AND t.written_at < $2
    GROUP BY 1, 2, 3, 4
$q$ USING written_from, written_to; END $f$;

-- Ground truth against decisions, for transactions whose label has arrived: a pair (transaction, label)
-- is counted when the later of the two is written, so whichever arrives second brings it in.
-- Pending labels = scored_per_minute's transactions - these.
CREATE OR REPLACE FUNCTION monitoring_label_outcomes_delta(written_from timestamptz, written_to timestamptz)
RETURNS TABLE (minute timestamptz, model_version text, decision text, is_fraud boolean, transactions bigint)
LANGUAGE plpgsql STABLE AS $f$ BEGIN RETURN QUERY EXECUTE $q$
    SELECT date_trunc('minute', pairs.event_time), pairs.model_version, pairs.decision, pairs.is_fraud, count(*)
    FROM (
        SELECT t.event_time, t.model_version, t.decision, l.is_fraud
        FROM labels l JOIN transactions t ON t.transaction_id = l.transaction_id
        WHERE l.received_at >= $1 AND l.received_at < $2 AND t.written_at < $2
        UNION ALL
        SELECT t.event_time, t.model_version, t.decision, l.is_fraud
        FROM transactions t JOIN labels l ON l.transaction_id = t.transaction_id
        WHERE t.written_at >= $1 AND t.written_at < $2 AND l.received_at < $1
    ) AS pairs
    GROUP BY 1, 2, 3, 4
$q$ USING written_from, written_to; END $f$;

CREATE TABLE IF NOT EXISTS scored_rollup (
    minute timestamptz NOT NULL, model_version text NOT NULL, decision text NOT NULL,
    score_bucket double precision NOT NULL, transactions bigint NOT NULL, late bigint NOT NULL,
    amount double precision NOT NULL,
    PRIMARY KEY (minute, model_version, decision, score_bucket)
);
CREATE TABLE IF NOT EXISTS segments_rollup (
    minute timestamptz NOT NULL, model_version text NOT NULL, decision text NOT NULL, segment text NOT NULL,
    value text NOT NULL, transactions bigint NOT NULL, amount double precision NOT NULL,
    latitude_sum double precision NOT NULL, longitude_sum double precision NOT NULL,
    PRIMARY KEY (minute, segment, model_version, decision, value)
);
CREATE TABLE IF NOT EXISTS alert_merchants_rollup (
    minute timestamptz NOT NULL, model_version text NOT NULL, decision text NOT NULL, merchant_id text NOT NULL,
    merchant_category text NOT NULL, alerts bigint NOT NULL, amount double precision NOT NULL,
    PRIMARY KEY (minute, model_version, decision, merchant_id, merchant_category)
);
CREATE TABLE IF NOT EXISTS alert_reasons_rollup (
    minute timestamptz NOT NULL, model_version text NOT NULL, decision text NOT NULL, reason text NOT NULL,
    alerts bigint NOT NULL,
    PRIMARY KEY (minute, model_version, decision, reason)
);
CREATE TABLE IF NOT EXISTS latency_rollup (
    minute timestamptz NOT NULL, model_version text NOT NULL, stage text NOT NULL, bucket integer NOT NULL,
    transactions bigint NOT NULL,
    PRIMARY KEY (minute, stage, model_version, bucket)
);
CREATE TABLE IF NOT EXISTS label_outcomes_rollup (
    minute timestamptz NOT NULL, model_version text NOT NULL, decision text NOT NULL, is_fraud boolean NOT NULL,
    transactions bigint NOT NULL,
    PRIMARY KEY (minute, model_version, decision, is_fraud)
);

CREATE OR REPLACE VIEW scored_per_minute AS
SELECT minute, model_version, decision, score_bucket, transactions, late, amount FROM scored_rollup
UNION ALL
SELECT d.* FROM monitoring_watermark w, monitoring_scored_delta(w.refreshed_to, 'infinity') d;

CREATE OR REPLACE VIEW segments_per_minute AS
SELECT minute, model_version, decision, segment, value, transactions, amount, latitude_sum, longitude_sum
FROM segments_rollup
UNION ALL
SELECT d.* FROM monitoring_watermark w, monitoring_segments_delta(w.refreshed_to, 'infinity') d;

CREATE OR REPLACE VIEW alert_merchants_per_minute AS
SELECT minute, model_version, decision, merchant_id, merchant_category, alerts, amount FROM alert_merchants_rollup
UNION ALL
SELECT d.* FROM monitoring_watermark w, monitoring_alert_merchants_delta(w.refreshed_to, 'infinity') d;

CREATE OR REPLACE VIEW alert_reasons_per_minute AS
SELECT minute, model_version, decision, reason, alerts FROM alert_reasons_rollup
UNION ALL
SELECT d.* FROM monitoring_watermark w, monitoring_alert_reasons_delta(w.refreshed_to, 'infinity') d;

CREATE OR REPLACE VIEW latency_per_minute AS
SELECT v.minute, v.model_version, v.stage, v.bucket, monitoring_bucket_upper_ms(v.bucket) AS upper_ms,
       v.transactions
FROM (
    SELECT minute, model_version, stage, bucket, transactions FROM latency_rollup
    UNION ALL
    SELECT d.* FROM monitoring_watermark w, monitoring_latency_delta(w.refreshed_to, 'infinity') d
) AS v;

CREATE OR REPLACE VIEW label_outcomes_per_minute AS
SELECT minute, model_version, decision, is_fraud, transactions FROM label_outcomes_rollup
UNION ALL
SELECT d.* FROM monitoring_watermark w, monitoring_label_outcomes_delta(w.refreshed_to, 'infinity') d;

-- Add what was written since the watermark to the rollups and move the watermark, in one transaction.
-- The new watermark stays before the start of every open writing transaction in this database (their
-- rows may carry an earlier written_at than their commit), which needs a role that sees other sessions in
-- pg_stat_activity (the writers' own role, a superuser or pg_read_all_stats). Safe to run concurrently:
-- callers queue on the watermark row. Returns the window it added.
CREATE OR REPLACE FUNCTION monitoring_refresh(margin interval DEFAULT interval '1 second')
RETURNS TABLE (refreshed_from timestamptz, refreshed_to timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    low timestamptz;
    high timestamptz;
BEGIN
    SELECT w.refreshed_to INTO low FROM monitoring_watermark w FOR UPDATE;
    SELECT least(clock_timestamp() - margin, min(a.xact_start)) INTO high
    FROM pg_stat_activity a
    WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid() AND a.datname = current_database();
    IF high <= low THEN
        RETURN QUERY SELECT low, low;
        RETURN;
    END IF;

    INSERT INTO scored_rollup AS r SELECT * FROM monitoring_scored_delta(low, high)
    ON CONFLICT (minute, model_version, decision, score_bucket) DO UPDATE
    SET transactions = r.transactions + excluded.transactions, late = r.late + excluded.late,
        amount = r.amount + excluded.amount;

    INSERT INTO segments_rollup AS r SELECT * FROM monitoring_segments_delta(low, high)
    ON CONFLICT (minute, segment, model_version, decision, value) DO UPDATE
    SET transactions = r.transactions + excluded.transactions, amount = r.amount + excluded.amount,
        latitude_sum = r.latitude_sum + excluded.latitude_sum,
        longitude_sum = r.longitude_sum + excluded.longitude_sum;

    INSERT INTO alert_merchants_rollup AS r SELECT * FROM monitoring_alert_merchants_delta(low, high)
    ON CONFLICT (minute, model_version, decision, merchant_id, merchant_category) DO UPDATE
    SET alerts = r.alerts + excluded.alerts, amount = r.amount + excluded.amount;

    INSERT INTO alert_reasons_rollup AS r SELECT * FROM monitoring_alert_reasons_delta(low, high)
    ON CONFLICT (minute, model_version, decision, reason) DO UPDATE SET alerts = r.alerts + excluded.alerts;

    INSERT INTO latency_rollup AS r SELECT * FROM monitoring_latency_delta(low, high)
    ON CONFLICT (minute, stage, model_version, bucket) DO UPDATE
    SET transactions = r.transactions + excluded.transactions;

    INSERT INTO label_outcomes_rollup AS r SELECT * FROM monitoring_label_outcomes_delta(low, high)
    ON CONFLICT (minute, model_version, decision, is_fraud) DO UPDATE
    SET transactions = r.transactions + excluded.transactions;

    UPDATE monitoring_watermark SET refreshed_to = high, refreshed_at = clock_timestamp();
    RETURN QUERY SELECT low, high;
END
$$;
