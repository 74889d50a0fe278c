-- 012: media of inbound WhatsApp messages (wa/media.c, docs/whatsapp.md). An inbound
-- image, audio, video, document or sticker carries a media id; the worker fetches the
-- media from the Graph API and keeps it on disk (<spool.dir>/wa-media/). The message row
-- says where it is, or why it could not be fetched.
ALTER TABLE whatsapp_messages
	ADD COLUMN media_id       text,      -- the Graph API media id (messages[].<type>.id)
	ADD COLUMN media_status   text CHECK (media_status IN ('pending', 'stored', 'failed')),
	ADD COLUMN media_path     text,      -- stored: the file
	ADD COLUMN media_mime     text,
	ADD COLUMN media_size     bigint,    -- bytes
	ADD COLUMN media_sha256   text,      -- lowercase hex of the stored bytes
	ADD COLUMN media_error    text,      -- failed (or the last transient error)
	ADD COLUMN media_attempts integer NOT NULL DEFAULT 0,
	ADD COLUMN media_retry_at timestamptz;
CREATE INDEX whatsapp_messages_media_todo ON whatsapp_messages (id)
	WHERE media_status = 'pending';

-- The inbox retention (whatsapp.inbox_retention_days) deletes processed rows by age.
CREATE INDEX whatsapp_inbox_processed ON whatsapp_inbox (processed_at)
	WHERE processed_at IS NOT NULL;
-- Deleting an inbox row sets whatsapp_events.inbox_id to NULL: find those rows by index.
CREATE INDEX whatsapp_events_inbox ON whatsapp_events (inbox_id) WHERE inbox_id IS NOT NULL;
