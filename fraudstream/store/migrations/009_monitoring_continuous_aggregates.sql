-- Plain PostgreSQL keeps the per-minute monitoring views of 005 as they are (rollup tables kept by
-- monitoring_refresh() plus the live tail). On TimescaleDB, 009_monitoring_continuous_aggregates.timescale.sql
-- runs right after this file and puts continuous aggregates behind the same view names.
SELECT 1;
