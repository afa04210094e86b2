"""Stream engines: they only move data; every decision lives in the core (features, scoring, pipeline).

``local``: one Python process per consumer-group member (the embedded default). The Spark engine lives
in ``spark_*`` modules. Both write through fraudstream.store.writer and build rows with
fraudstream.pipeline, so they store identical rows for identical input.
"""
