-- 001_init: the first VACS schema (docs/store.md describes every table).
-- Ids that clients or other systems hand us (leads, campaigns, jobs) are text; rows we
-- create internally use bigint identities. Every timestamp is timestamptz (UTC on the wire).

CREATE TABLE campaigns (
	id             text PRIMARY KEY DEFAULT gen_random_uuid()::text,
	name           text NOT NULL,
	status         text NOT NULL DEFAULT 'draft'
	               CHECK (status IN ('draft', 'running', 'paused', 'done')),
	assistant      text,
	caller_id      text,
	trunk          text,
	max_concurrent integer NOT NULL DEFAULT 1 CHECK (max_concurrent > 0),
	calls_per_s    numeric NOT NULL DEFAULT 1 CHECK (calls_per_s > 0),
	timezone       text NOT NULL DEFAULT 'UTC',
	calling_hours  jsonb NOT NULL DEFAULT '[]',
	retry_policy   jsonb NOT NULL DEFAULT '{}',
	max_attempts   integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
	amd_action     text NOT NULL DEFAULT 'hangup'
	               CHECK (amd_action IN ('hangup', 'message', 'ai')),
	amd_prompt     text,
	created_at     timestamptz NOT NULL DEFAULT now(),
	updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leads (
	id            text PRIMARY KEY DEFAULT gen_random_uuid()::text,
	campaign_id   text REFERENCES campaigns (id) ON DELETE SET NULL,
	phone_e164    text NOT NULL,
	name          text,
	email         text,
	source        text,              -- 'whatsapp', 'api', 'csv', ...
	wa_id         text,              -- WhatsApp user id
	timezone      text,              -- IANA name; NULL = from the number, else the campaign
	locale        text,
	status        text NOT NULL DEFAULT 'new',
	consent_call  boolean,
	do_not_call   boolean NOT NULL DEFAULT false,
	attributes    jsonb NOT NULL DEFAULT '{}',
	created_at    timestamptz NOT NULL DEFAULT now(),
	updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leads_phone ON leads (phone_e164);
CREATE INDEX leads_campaign ON leads (campaign_id, status);
CREATE UNIQUE INDEX leads_wa_id ON leads (wa_id) WHERE wa_id IS NOT NULL;

CREATE TABLE do_not_call (
	phone_e164 text PRIMARY KEY,
	reason     text,
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE whatsapp_messages (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	wamid      text NOT NULL UNIQUE,  -- Graph API message id: the idempotency key
	lead_id    text REFERENCES leads (id) ON DELETE SET NULL,
	direction  text NOT NULL CHECK (direction IN ('in', 'out')),
	wa_id      text NOT NULL,         -- the other party
	type       text NOT NULL,         -- text, button, interactive, ...
	body       text,
	status     text,                  -- out: sent, delivered, read, failed
	ts         timestamptz NOT NULL,
	payload    jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whatsapp_messages_lead ON whatsapp_messages (lead_id, ts);

CREATE TABLE discovery (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	lead_id     text NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
	intent      text,
	interest    text,
	consent     boolean,               -- consent to be called
	best_time   text,
	qualified   boolean NOT NULL DEFAULT false,
	score       numeric,
	model       text,
	result      jsonb NOT NULL DEFAULT '{}',
	created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX discovery_lead ON discovery (lead_id, created_at DESC);

CREATE TABLE call_jobs (
	id              text PRIMARY KEY DEFAULT gen_random_uuid()::text,
	campaign_id     text REFERENCES campaigns (id) ON DELETE CASCADE,
	lead_id         text REFERENCES leads (id) ON DELETE CASCADE,
	number          text NOT NULL,
	attempt         integer NOT NULL DEFAULT 1,
	status          text NOT NULL DEFAULT 'queued'
	                CHECK (status IN ('queued', 'claimed', 'dialing', 'done', 'failed',
	                                  'cancelled')),
	not_before      timestamptz,
	claimed_by      text,              -- node id
	claimed_at      timestamptz,
	call_id         text,              -- calls.call_id once placed
	outcome         text,              -- answered, no_answer, busy, failed, machine
	idempotency_key text UNIQUE,
	created_at      timestamptz NOT NULL DEFAULT now(),
	updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_jobs_campaign ON call_jobs (campaign_id, status);
CREATE INDEX call_jobs_lead ON call_jobs (lead_id);

-- One row per call, from the CDR vacsd writes when the call ends (record = the whole CDR).
CREATE TABLE calls (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	call_id        text NOT NULL UNIQUE,  -- vacsd's call id: the idempotency key
	direction      text NOT NULL,         -- inbound, outbound
	from_trunk     text,
	to_trunk       text,
	route          text,
	target         text,
	caller         text,
	caller_e164    text,
	caller_name    text,
	called         text,
	called_e164    text,
	privacy        boolean,
	lead_id        text,                  -- no foreign key: a CDR may name a lead not (yet) stored
	start_at       timestamptz NOT NULL,
	answer_at      timestamptz,
	end_at         timestamptz,
	ring_ms        integer,
	duration_ms    bigint,
	sip_code       integer,
	end_reason     text,
	hangup_side    text,
	codecs         text[],                -- per leg, in leg order
	srtp           text[],
	packets_lost   bigint,                -- sum over legs, as we received
	jitter_ms_max  integer,
	remote_packets_lost bigint,           -- as the far ends reported (RTCP)
	remote_jitter_ms_max integer,
	ai_ms          bigint,                -- time with the AI assistant
	human_ms       bigint,                -- time with a person (agent, PBX)
	vapi_call_id   text,
	recording      text,
	record         jsonb NOT NULL,
	created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_start ON calls (start_at DESC, id DESC);
CREATE INDEX calls_lead ON calls (lead_id, start_at DESC) WHERE lead_id IS NOT NULL;

-- Events of a call in order; they arrive before the call's CDR, hence no foreign key.
CREATE TABLE call_events (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	call_id    text NOT NULL,
	seq        integer NOT NULL,
	ts         timestamptz NOT NULL,
	event      text NOT NULL,
	detail     text,
	UNIQUE (call_id, seq)
);
CREATE INDEX call_events_ts ON call_events (ts);

-- One row per transfer attempt of a call (attempt = 1, 2, ... in the CDR's order).
CREATE TABLE transfers (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	call_id        text NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
	attempt        integer NOT NULL,
	queue          text,
	number         text,
	after_hours    boolean,
	source         text,                  -- tool, webhook, api
	reason         text,
	summary        text,
	result         text,                  -- bridged, no_answer, busy, declined, failed, ...
	why            text,
	agent          text,
	agent_sip_code integer,
	hold_ms        bigint,
	invite_ms      bigint,
	answer_ms      bigint,
	accept_ms      bigint,
	bridge_ms      bigint,
	end_ms         bigint,
	ai_part_ms     bigint,
	human_part_ms  bigint,
	UNIQUE (call_id, attempt)
);

-- Recordings as the recorder closes them; uploaded to S3 later.
CREATE TABLE recordings (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	call_id      text NOT NULL,
	path         text NOT NULL,
	bytes        bigint,
	result       integer NOT NULL DEFAULT 0,   -- 0 or -errno from the writer
	closed_at    timestamptz,
	s3_bucket    text,
	s3_key       text,
	uploaded_at  timestamptz,
	upload_error text,
	created_at   timestamptz NOT NULL DEFAULT now(),
	UNIQUE (call_id, path)
);
CREATE INDEX recordings_pending ON recordings (created_at) WHERE uploaded_at IS NULL;

CREATE TABLE api_keys (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name         text NOT NULL,
	prefix       text NOT NULL UNIQUE,   -- first characters of the key, shown in listings
	hash         text NOT NULL UNIQUE,   -- SHA-256 of the whole key, hex; the key itself is never stored
	scopes       text[] NOT NULL
	             CHECK (scopes <@ ARRAY['read', 'calls:write', 'campaigns', 'admin']::text[]),
	created_at   timestamptz NOT NULL DEFAULT now(),
	last_used_at timestamptz,
	revoked_at   timestamptz
);

-- Idempotency-Key of POSTs that create things: the first answer is replayed.
CREATE TABLE idempotency_keys (
	key_prefix  text NOT NULL,            -- api_keys.prefix of the caller
	key         text NOT NULL,
	method      text NOT NULL,
	path        text NOT NULL,
	status      integer NOT NULL,
	response    jsonb,
	created_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (key_prefix, key)
);

CREATE TABLE event_subscriptions (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	url         text NOT NULL,
	secret      text NOT NULL,            -- HMAC-SHA256 key of the signature header
	events      text[] NOT NULL,          -- lead.qualified, call.started, ...
	active      boolean NOT NULL DEFAULT true,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Notifications that failed every retry.
CREATE TABLE dead_letters (
	id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	subscription_id bigint REFERENCES event_subscriptions (id) ON DELETE SET NULL,
	url             text NOT NULL,
	event           text NOT NULL,
	payload         jsonb NOT NULL,
	attempts        integer NOT NULL,
	last_status     integer,              -- HTTP status, NULL = no answer
	last_error      text,
	first_attempt_at timestamptz NOT NULL,
	last_attempt_at  timestamptz NOT NULL,
	created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_created ON dead_letters (created_at DESC);
