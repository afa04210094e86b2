-- A partition's feature state also holds the labels applied to it: the snapshot records up to which
-- offset of each label partition, so a restored state re-applies exactly the labels it had not seen.
ALTER TABLE engine_state_snapshots ADD COLUMN IF NOT EXISTS label_offsets jsonb NOT NULL DEFAULT '{}'::jsonb;
