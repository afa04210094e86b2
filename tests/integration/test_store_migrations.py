"""Migrations on a scratch database: rows written before 003 keep their features, now as named arrays;
snapshots are stored uncompressed (004)."""

from __future__ import annotations

import psycopg
import pytest

from fraudstream.store.schema import migrate, migrations

pytestmark = pytest.mark.integration


def test_feature_arrays_migration_keeps_the_features_of_older_rows(scratch_url: str) -> None:
    with psycopg.connect(scratch_url, autocommit=True) as connection:
        for migration in migrations():
            if migration.version < 3:
                connection.execute(migration.sql)
        connection.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, flavour text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())")
        connection.execute("INSERT INTO schema_migrations VALUES (1, 'core', 'postgresql'),"
                           " (2, 'engine_label_offsets', 'postgresql')")
        for number, features in enumerate(('{"amount": 12.5, "hour_of_day": null, "merchant_fraud_rate": 0.25}',
                                           '{"amount": 3.0, "hour_of_day": 23, "merchant_fraud_rate": 0}', "{}")):
            connection.execute(
                "INSERT INTO transactions (transaction_id, event_time, account_id, amount, currency, merchant_id,"
                " merchant_category, payment_method, channel, country, latitude, longitude, device_id, features,"
                " score, decision, model_version, engine, ingested_at, scored_at) VALUES (%s, now(), 'a', 1, 'EUR',"
                " 'm', 'grocery', 'credit_card', 'online', 'DE', 0, 0, 'd', %s, 0.5, 'approve', %s, 'local', now(),"
                " now())", (f"t{number}", features, "v0001" if number < 2 else "v0000"))

    report = migrate(scratch_url)
    assert report.applied[:2] == ["003_feature_arrays", "004_snapshot_storage"]
    with psycopg.connect(scratch_url) as connection:
        assert connection.execute("SELECT data_type FROM information_schema.columns WHERE table_name = "
                                  "'transactions' AND column_name = 'features'").fetchone() == ("ARRAY",)
        named = dict(connection.execute("SELECT transaction_id, features FROM transaction_features").fetchall())
        storage = connection.execute("SELECT attstorage FROM pg_attribute WHERE attrelid = "
                                     "'engine_state_snapshots'::regclass AND attname = 'state'").fetchone()[0]
    assert storage == "e"  # snapshots out of line, uncompressed (004)
    assert named["t0"] == {"amount": 12.5, "hour_of_day": None, "merchant_fraud_rate": 0.25}
    assert named["t1"] == {"amount": 3.0, "hour_of_day": 23, "merchant_fraud_rate": 0}
    assert named["t2"] is None  # stored without features: an empty array, no names
