-- 006_whatsapp: WhatsApp lead ingest (wa/, docs/whatsapp.md). Raw webhook batches land in
-- whatsapp_inbox first (the durable write that lets the webhook answer 200); wa/ then
-- spreads each batch into leads, whatsapp_messages, whatsapp_statuses and whatsapp_events
-- in one transaction, and keeps one conversation row per lead for discovery.

-- A lead reached over WhatsApp may have no phone number (business-scoped user ids).
ALTER TABLE leads ALTER COLUMN phone_e164 DROP NOT NULL;
ALTER TABLE leads ADD COLUMN wa_user_id text;       -- business-scoped user id (BSUID)
CREATE UNIQUE INDEX leads_wa_user_id ON leads (wa_user_id) WHERE wa_user_id IS NOT NULL;

-- The discovery result handed to the assistant (variableValues) when the job is dialled.
ALTER TABLE call_jobs ADD COLUMN variables jsonb NOT NULL DEFAULT '{}';

CREATE TABLE whatsapp_inbox (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	sha256       text NOT NULL UNIQUE,   -- of the raw body: Meta's retries land once
	body         jsonb NOT NULL,
	received_at  timestamptz NOT NULL,
	processed_at timestamptz,
	error        text
);
CREATE INDEX whatsapp_inbox_todo ON whatsapp_inbox (id) WHERE processed_at IS NULL;

-- Every status webhook once per (message, status); whatsapp_messages.status holds the
-- furthest one (sent < delivered < read; failed is final).
CREATE TABLE whatsapp_statuses (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	wamid        text NOT NULL,
	status       text NOT NULL,
	ts           timestamptz NOT NULL,
	recipient_id text,
	error_code   integer,
	payload      jsonb NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	UNIQUE (wamid, status)
);

-- Value-level errors, user_preferences, and other fields of the webhook.
CREATE TABLE whatsapp_events (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	inbox_id   bigint REFERENCES whatsapp_inbox (id) ON DELETE SET NULL,
	kind       text NOT NULL,             -- error, user_preferences, <field name>
	wa_id      text,
	payload    jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whatsapp_events_kind ON whatsapp_events (kind, created_at DESC);

-- One conversation per lead: where discovery stands.
CREATE TABLE whatsapp_conversations (
	lead_id            text PRIMARY KEY REFERENCES leads (id) ON DELETE CASCADE,
	state              text NOT NULL DEFAULT 'new',
	lang               text,
	fields             jsonb NOT NULL DEFAULT '{}',
	last_inbound_at    timestamptz,
	marketing_opt_out  boolean NOT NULL DEFAULT false,
	unreachable        boolean NOT NULL DEFAULT false,  -- 131026: not on WhatsApp
	updated_at         timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE whatsapp_messages ADD COLUMN user_id text;
ALTER TABLE whatsapp_messages ADD COLUMN error_code integer;

-- Order of a message status: a status webhook only moves whatsapp_messages.status forward.
CREATE FUNCTION wa_status_rank(s text) RETURNS integer IMMUTABLE LANGUAGE sql AS
	'SELECT CASE s WHEN ''accepted'' THEN 0 WHEN ''sent'' THEN 1 WHEN ''delivered'' THEN 2'
	' WHEN ''read'' THEN 3 WHEN ''played'' THEN 4 WHEN ''failed'' THEN 10 ELSE -1 END';
