-- TimescaleDB only: the transactions table becomes a hypertable partitioned by event time.
SELECT create_hypertable('transactions', by_range('event_time', INTERVAL '1 day'),
                         if_not_exists => TRUE, migrate_data => TRUE);
