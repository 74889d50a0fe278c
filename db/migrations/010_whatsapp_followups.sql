-- 010: the follow-up message after a call to a WhatsApp lead (wa/followup.c,
-- docs/whatsapp.md). One row per call: the primary key is what makes a follow-up go at
-- most once, whatever replays or restarts happen.
CREATE TABLE whatsapp_followups (
	call_id    text PRIMARY KEY,
	lead_id    text NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
	outcome    text NOT NULL,   -- answered, transferred, no_answer, machine
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whatsapp_followups_lead ON whatsapp_followups (lead_id);
