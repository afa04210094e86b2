"""Stream engines: they only move data; every decision lives in the core (``fraudstream.batch``: the
batch step both engines run, over ``features`` and ``batch.scoring``).

``local``: one Python process per consumer-group member (the embedded default); its own part is the
checkpoint protocol. The Spark engine lives in ``spark_*`` modules; its own part is the state wiring.
Both write through ``sink.PostgresKafkaSink``, so they store identical rows for identical input.
"""
