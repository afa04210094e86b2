"""Local services for the demo and the tests (Kafka, PostgreSQL, Spark), started by the project itself.

Nothing here is needed when the endpoints point at existing clusters (FRAUDSTREAM_KAFKA_BOOTSTRAP,
FRAUDSTREAM_DATABASE_URL).
"""
