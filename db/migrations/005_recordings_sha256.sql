-- 005: the uploader (control/uploader.c) records each object's SHA-256 (hex) with its key,
-- and deliveries of event notifications are looked up by subscription.
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS sha256 text;
CREATE INDEX IF NOT EXISTS dead_letters_subscription ON dead_letters (subscription_id);
