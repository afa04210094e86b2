"""Model build: replay history through the feature core, train LightGBM against two baselines,
evaluate on a later held-out period, choose cost-based thresholds, publish to the registry.

Entry points: ``train.build`` (the `fraudstream train` command), ``registry.Registry`` (versions,
promote, ``production_version()`` for hot reload), ``dataset.import_labeled`` (your own history in
the format of docs/import-format.md). No Kafka, Spark or database imports.
"""
