"""The transaction simulator: a deterministic population, normal traffic, fraud scenarios, delayed
labels; backfills to Parquet and live producing to Kafka."""
