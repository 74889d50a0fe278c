-- 011_amd_default: a campaign without an answering-machine setting lets the assistant talk
-- ('ai'), as calls did before the action existed. Hanging up is opt-in: the detector can
-- take a person who stays silent for a moment for a machine, and hanging up on a lead is
-- the worse mistake.
ALTER TABLE campaigns ALTER COLUMN amd_action SET DEFAULT 'ai';
