-- TimescaleDB only: the per-minute views of 005 read continuous aggregates kept by refresh policies,
-- under the same names and columns, so that the dashboards' and the console's queries do not change.
--
-- Each view is backed by one or more continuous aggregates over the transactions hypertable, bucketed by
-- time_bucket('1 minute', event_time) (the same minute as date_trunc). Real-time aggregation is on
-- (materialized_only = false): a view is the materialized buckets before the aggregate's watermark plus
-- the raw rows after it. A policy materializes, every 30 seconds, the buckets that ended at least a minute
-- ago and re-materializes those invalidated by rows written since (start_offset NULL: however old).
-- What this flavour gives up against the plain one: a row whose minute is already materialized (a late
-- event) is counted from the next policy run on, not at once.
--
-- A continuous aggregate reads one hypertable and no set-returning function, so
--   * segments (payment method, country) and the four latency stages are one aggregate each, joined
--     back into one view by UNION ALL;
--   * reasons are grouped by the array of their kinds (monitoring_reason_kinds) and unnested by the view;
--   * label outcomes stay as in 005 (rollup + live tail kept by monitoring_refresh()): they join labels,
--     and a continuous aggregate is not invalidated by changes to a joined table. monitoring_refresh()
--     now keeps that rollup only, and runs as a TimescaleDB job every 5 seconds.

DROP VIEW scored_per_minute, segments_per_minute, alert_merchants_per_minute, alert_reasons_per_minute,
          latency_per_minute;
DROP FUNCTION monitoring_scored_delta(timestamptz, timestamptz), monitoring_segments_delta(timestamptz, timestamptz),
              monitoring_alert_merchants_delta(timestamptz, timestamptz),
              monitoring_alert_reasons_delta(timestamptz, timestamptz),
              monitoring_latency_delta(timestamptz, timestamptz);
DROP TABLE scored_rollup, segments_rollup, alert_merchants_rollup, alert_reasons_rollup, latency_rollup;

-- The kinds of an alert's reasons, in order (monitoring_reason_kind of each).
CREATE OR REPLACE FUNCTION monitoring_reason_kinds(reasons text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY(SELECT monitoring_reason_kind(r.reason) FROM unnest(reasons) WITH ORDINALITY AS r(reason, n)
             ORDER BY r.n);

-- Decisions, late events, amounts and the score histogram (20 buckets of 0.05).
CREATE MATERIALIZED VIEW monitoring_scored_cagg
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', t.event_time) AS minute, t.model_version, t.decision,
       least(floor(t.score * 20), 19) / 20.0 AS score_bucket, count(*) AS transactions,
       count(*) FILTER (WHERE t.is_late) AS late, sum(t.amount) AS amount
FROM transactions t
GROUP BY 1, 2, 3, 4
WITH NO DATA;

-- Counts per payment method and per country, with coordinates for a map.
CREATE MATERIALIZED VIEW monitoring_payment_methods_cagg
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', t.event_time) AS minute, t.model_version, t.decision,
       t.payment_method AS value, count(*) AS transactions, sum(t.amount) AS amount,
       sum(t.latitude) AS latitude_sum, sum(t.longitude) AS longitude_sum
FROM transactions t
GROUP BY 1, 2, 3, 4
WITH NO DATA;

CREATE MATERIALIZED VIEW monitoring_countries_cagg
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', t.event_time) AS minute, t.model_version, t.decision,
       t.country AS value, count(*) AS transactions, sum(t.amount) AS amount,
       sum(t.latitude) AS latitude_sum, sum(t.longitude) AS longitude_sum
FROM transactions t
GROUP BY 1, 2, 3, 4
WITH NO DATA;

-- Alerts (review or block) per merchant.
CREATE MATERIALIZED VIEW monitoring_alert_merchants_cagg
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', t.event_time) AS minute, t.model_version, t.decision, t.merchant_id,
       t.merchant_category, count(*) AS alerts, sum(t.amount) AS amount
FROM transactions t
WHERE t.decision <> 'approve'
GROUP BY 1, 2, 3, 4, 5
WITH NO DATA;

-- Alerts per combination of reason kinds; the view counts each alert once for each of its reasons.
CREATE MATERIALIZED VIEW monitoring_alert_reasons_cagg
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', t.event_time) AS minute, t.model_version, t.decision,
       monitoring_reason_kinds(t.reasons) AS reasons, count(*) AS alerts
FROM transactions t
WHERE t.decision <> 'approve'
GROUP BY 1, 2, 3, 4
WITH NO DATA;

-- Latency histograms of the row's own timestamps, one aggregate per stage (stages as in 005).
CREATE MATERIALIZED VIEW monitoring_latency_ingest_to_score_cagg
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', t.event_time) AS minute, t.model_version,
       monitoring_latency_bucket(extract(epoch FROM t.scored_at - t.ingested_at) * 1000) AS bucket,
       count(*) AS transactions
FROM transactions t
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW monitoring_latency_score_to_write_cagg
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', t.event_time) AS minute, t.model_version,
       monitoring_latency_bucket(extract(epoch FROM t.written_at - t.scored_at) * 1000) AS bucket,
       count(*) AS transactions
FROM transactions t
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW monitoring_latency_ingest_to_write_cagg
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', t.event_time) AS minute, t.model_version,
       monitoring_latency_bucket(extract(epoch FROM t.written_at - t.ingested_at) * 1000) AS bucket,
       count(*) AS transactions
FROM transactions t
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW monitoring_latency_event_to_write_cagg
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', t.event_time) AS minute, t.model_version,
       monitoring_latency_bucket(extract(epoch FROM t.written_at - t.event_time) * 1000) AS bucket,
       count(*) AS transactions
FROM transactions t
GROUP BY 1, 2, 3
WITH NO DATA;

-- buckets_per_batch: a backlog (the first run on a filled table) is materialized an hour per transaction.
SELECT add_continuous_aggregate_policy(cagg::regclass, start_offset => NULL, end_offset => INTERVAL '1 minute',
                                       schedule_interval => INTERVAL '30 seconds', buckets_per_batch => 60)
FROM unnest(ARRAY['monitoring_scored_cagg', 'monitoring_payment_methods_cagg', 'monitoring_countries_cagg',
                  'monitoring_alert_merchants_cagg', 'monitoring_alert_reasons_cagg',
                  'monitoring_latency_ingest_to_score_cagg', 'monitoring_latency_score_to_write_cagg',
                  'monitoring_latency_ingest_to_write_cagg', 'monitoring_latency_event_to_write_cagg']) AS cagg;

-- The views the panels read, as in 005.
CREATE VIEW scored_per_minute AS
SELECT minute, model_version, decision, score_bucket, transactions, late, amount FROM monitoring_scored_cagg;

CREATE VIEW segments_per_minute AS
SELECT minute, model_version, decision, 'payment_method'::text AS segment, value, transactions, amount,
       latitude_sum, longitude_sum
FROM monitoring_payment_methods_cagg
UNION ALL
SELECT minute, model_version, decision, 'country'::text, value, transactions, amount, latitude_sum, longitude_sum
FROM monitoring_countries_cagg;

CREATE VIEW alert_merchants_per_minute AS
SELECT minute, model_version, decision, merchant_id, merchant_category, alerts, amount
FROM monitoring_alert_merchants_cagg;

CREATE VIEW alert_reasons_per_minute AS
SELECT c.minute, c.model_version, c.decision, r.reason, c.alerts
FROM monitoring_alert_reasons_cagg c CROSS JOIN LATERAL unnest(c.reasons) AS r(reason);

CREATE VIEW latency_per_minute AS
SELECT v.minute, v.model_version, v.stage, v.bucket, monitoring_bucket_upper_ms(v.bucket) AS upper_ms,
       v.transactions
FROM (
    SELECT minute, model_version, 'ingest_to_score'::text AS stage, bucket, transactions
    FROM monitoring_latency_ingest_to_score_cagg
    UNION ALL
    SELECT minute, model_version, 'score_to_write', bucket, transactions FROM monitoring_latency_score_to_write_cagg
    UNION ALL
    SELECT minute, model_version, 'ingest_to_write', bucket, transactions FROM monitoring_latency_ingest_to_write_cagg
    UNION ALL
    SELECT minute, model_version, 'event_to_write', bucket, transactions FROM monitoring_latency_event_to_write_cagg
) AS v;

-- Label outcomes only (the rest is in the continuous aggregates); otherwise as in 005.
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

    INSERT INTO label_outcomes_rollup AS r SELECT * FROM monitoring_label_outcomes_delta(low, high)
    ON CONFLICT (minute, model_version, decision, is_fraud) DO UPDATE
    SET transactions = r.transactions + excluded.transactions;

    UPDATE monitoring_watermark SET refreshed_to = high, refreshed_at = clock_timestamp();
    RETURN QUERY SELECT low, high;
END
$$;

-- monitoring_refresh() as a TimescaleDB job, so that no refresher process is needed on this flavour.
CREATE OR REPLACE PROCEDURE monitoring_refresh_job(job_id integer, config jsonb)
LANGUAGE plpgsql AS $$ BEGIN PERFORM monitoring_refresh(); END $$;
SELECT add_job('monitoring_refresh_job', INTERVAL '5 seconds');
