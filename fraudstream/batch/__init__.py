"""The batch step both engines run, in data-flow order: decode (``rows.decode``) -> apply labels ->
features (``fraudstream.features``) -> score (``scoring``) -> rows, alerts and dead letters (``rows``);
``step.BatchStep`` runs them on one poll's records. ``sink`` states how an engine writes the outputs.

Nothing here imports a Kafka client, Spark or a database driver.
"""

from fraudstream.batch.step import BatchOutput, BatchStep, FeatureStates, ModelChoice, OnePartition, Records

__all__ = ["BatchOutput", "BatchStep", "FeatureStates", "ModelChoice", "OnePartition", "Records"]
