-- Feature-state snapshots (~1.5 MB of NumPy arrays per partition) are stored out of line without
-- compression: pglz compressing one took ~110 ms of the batch transaction it was written in (~12 ms
-- uncompressed), every few seconds, which was the local engine's p99 latency.
ALTER TABLE engine_state_snapshots ALTER COLUMN state SET STORAGE EXTERNAL;
