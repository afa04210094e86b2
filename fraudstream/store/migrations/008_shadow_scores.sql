-- Champion and challenger: when the registry has a challenger in shadow, the engines score every
-- transaction with it too and store its probability beside the production score. It decides nothing
-- and raises no alert; comparing both on arrived labels tells whether to promote it. NULL: no shadow model.
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS shadow_score double precision;
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS shadow_model_version text;
