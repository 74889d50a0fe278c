/* WhatsApp: the webhook routes (http thread), and the worker thread that spreads stored
 * batches into the tables, runs discovery and hands qualified leads to the dialer. */
#include "wa/wa.h"
#include "wa/wa_int.h"

#include "control/control.h"
#include "control/notify.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"
#include "db/db.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * The path of an update. The http thread checks the signature over the raw body and
 * hands the body to db_put (DB_REC_WA_BATCH): one INSERT into whatsapp_inbox, or the
 * fsync'd spool while PostgreSQL is down. Only when that is durable does Meta get its
 * 200. The worker thread then takes unprocessed inbox rows in order and spreads each
 * batch with ONE statement (STORE_SQL: leads, whatsapp_messages, whatsapp_statuses,
 * whatsapp_events, the conversation's last inbound time, the inbox row marked done): a
 * batch of 1,000 updates is one round trip and one transaction. Replays of the spool
 * land in the inbox like any other write, so nothing else is needed after an outage.
 * Every insert is ON CONFLICT DO NOTHING on its natural key (the body's SHA-256, the
 * wamid, the pair (wamid, status)), so Meta's retries and duplicates are harmless, and
 * discovery only runs on messages that were new in this statement.
 *
 * Sending (send.c) runs on the same worker thread: one queue, paced per number and per
 * user, never dropped for pacing.
 */

#define MOD "wa"

#define INBOX_ROUND   20u /* inbox rows per query */
#define CHALLENGE_MAX 256u

struct wa_g wa_g;

/* ---------------------------------------------------------------- db, synchronously */

int wa_sql(const char *sql, const char *const *params, int n, json_t **rows)
{
	return db_query_wait(sql, params, n, rows, 30000);
}

/* ---------------------------------------------------------------- the webhook */

static void reply_text(uint64_t token, unsigned code, const char *text)
{
	char *b = mem_strdup(text);
	ctl_reply(token, code, "text/plain", b, b ? strlen(b) : 0);
}

static void on_verify(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	char mode[32], vt[256], ch[CHALLENGE_MAX];
	const char *m = ctl_req_query(rq, "hub.mode", mode, sizeof(mode));
	const char *v = ctl_req_query(rq, "hub.verify_token", vt, sizeof(vt));
	const char *c = ctl_req_query(rq, "hub.challenge", ch, sizeof(ch));
	const char *want = wa_g.cfg.verify_token;
	size_t wl = want ? strlen(want) : 0;
	int ok = m && strcmp(m, "subscribe") == 0 && v && wl && strlen(v) == wl &&
	         CRYPTO_memcmp(v, want, wl) == 0;
	if (!ok) {
		metric_inc(wa_g.m_verify_bad);
		ctl_reply_error(token, 403, "forbidden", "hub.mode or hub.verify_token is wrong",
		                m && strcmp(m, "subscribe") == 0 ? "hub.verify_token" : "hub.mode");
		return;
	}
	if (!c) {
		ctl_reply_error(token, 400, "missing_field", "hub.challenge is required",
		                "hub.challenge");
		return;
	}
	log_info(MOD, "webhook verified by %s", ctl_req_peer(rq));
	reply_text(token, 200, c);
}

/* The http thread's request, waiting for its record to be durable. */
struct pending {
	uint64_t token;
	char sha[65];
	char received[32];
	char *raw; /* only kept while a dead letter may still be needed */
	size_t raw_len;
};

static void pending_free(struct pending *p)
{
	mem_free(p->raw);
	mem_free(p);
}

/* The raw body as a JSON string, hex when it is not UTF-8 text PostgreSQL can hold. */
static json_t *raw_json(const char *raw, size_t len, const char **enc)
{
	json_t *s = memchr(raw, 0, len) ? NULL : json_stringn(raw, len);
	*enc = "text";
	if (s)
		return s;
	*enc = "hex";
	char *hex = mem_alloc(len * 2 + 1);
	if (!hex)
		return NULL;
	for (size_t i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char)raw[i]);
	s = json_string(hex);
	mem_free(hex);
	return s;
}

static void on_dead_done(void *arg, int rc);

/* Keeps a signed body that cannot be processed as a dead letter; answers once durable. */
static void put_dead(struct pending *p, const char *why)
{
	const char *enc;
	json_t *raw = raw_json(p->raw, p->raw_len, &enc);
	json_t *rec = raw ? json_pack("{s:s, s:s, s:o, s:s, s:s}", "sha256", p->sha, "received",
	                              p->received, "raw", raw, "error", why, "encoding", enc)
	                  : NULL;
	metric_inc(wa_g.m_dead);
	log_warn(MOD, "webhook body %.12s kept as a dead letter: %s", p->sha, why);
	int rc = rec ? db_put(DB_REC_WA_BATCH, rec, on_dead_done, p) : -ENOMEM;
	if (rc < 0) {
		ctl_reply_error(p->token, 503, "store_unavailable",
		                "the update could not be stored: try again", NULL);
		pending_free(p);
	}
}

static void on_dead_done(void *arg, int rc)
{
	struct pending *p = arg;
	if (rc == 0)
		ctl_reply(p->token, 200, "text/plain", NULL, 0);
	else
		ctl_reply_error(p->token, 503, "store_unavailable",
		                "the update could not be stored: try again", NULL);
	pending_free(p);
}

static void on_batch_done(void *arg, int rc)
{
	struct pending *p = arg;
	if (rc == 0) {
		metric_inc(wa_g.m_accepted);
		ctl_reply(p->token, 200, "text/plain", NULL, 0);
		pending_free(p);
		wa_wake();
		return;
	}
	if (rc == -EINVAL) { /* PostgreSQL refused the content (e.g. \u0000 in jsonb) */
		put_dead(p, "PostgreSQL refused the body");
		return;
	}
	ctl_reply_error(p->token, 503, "store_unavailable",
	                "the update could not be stored: try again", NULL);
	pending_free(p);
}

static void on_webhook(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	char sig[96];
	const char *h = ctl_req_header(rq, "x-hub-signature-256", sig, sizeof(sig));
	int rc = wa_sig_check(wa_g.cfg.app_secret, body, len, h);
	if (rc < 0) {
		metric_inc(rc == -ENOENT ? wa_g.m_sig_missing : wa_g.m_sig_bad);
		if (log_ratelimit_ok(&wa_g.rl_sig))
			log_warn(MOD, "webhook from %s: %s X-Hub-Signature-256", ctl_req_peer(rq),
			         rc == -ENOENT ? "missing or malformed" : "wrong");
		ctl_reply_error(token, 401, "unauthorized",
		                rc == -ENOENT ? "X-Hub-Signature-256 is missing or malformed"
		                              : "X-Hub-Signature-256 does not match the body",
		                "X-Hub-Signature-256");
		return;
	}
	struct pending *p = mem_zalloc(sizeof(*p));
	if (!p) {
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		return;
	}
	p->token = token;
	wa_sha256_hex(body, len, p->sha);
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(p->received, sizeof(p->received), "%Y-%m-%dT%H:%M:%SZ", &tm);
	p->raw = mem_alloc(len + 1);
	if (!p->raw) {
		pending_free(p);
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		return;
	}
	memcpy(p->raw, body, len);
	p->raw[len] = '\0';
	p->raw_len = len;
	json_error_t je;
	json_t *root = json_loadb(body, len, 0, &je);
	if (!json_is_object(root)) {
		char why[200];
		snprintf(why, sizeof(why), "not a JSON object: %s",
		         root ? "another JSON type" : je.text);
		json_decref(root);
		put_dead(p, why);
		return;
	}
	json_t *rec =
	    json_pack("{s:s, s:s, s:o}", "sha256", p->sha, "received", p->received, "body", root);
	rc = rec ? db_put(DB_REC_WA_BATCH, rec, on_batch_done, p) : -ENOMEM;
	if (rc < 0) {
		metric_inc(wa_g.m_unavailable);
		ctl_reply_error(
		    token, 503, rc == -EAGAIN ? "busy" : "store_unavailable",
		    rc == -ENOTCONN ? "the store is off" : "the store is busy: try again", NULL);
		pending_free(p);
	}
}

/* ---------------------------------------------------------------- the batch store */

/* $1 the parsed batch (wa_parse), $2 the inbox row, $3 media are fetched. One statement,
 * one transaction. */
static const char STORE_SQL[] =
    "WITH b AS (SELECT $1::jsonb AS j),"
    " m AS (SELECT x.* FROM b, jsonb_to_recordset(b.j->'messages') AS x(wamid text,"
    "  \"from\" text, user_id text, name text, type text, body text, reply_id text, ts bigint,"
    "  payload jsonb, referral jsonb)),"
    /* The number to call: "+" and the wa_id, except Mexican mobiles, whose WhatsApp id
     * keeps the "1" Mexico dropped from dialling in 2019 (521 + 10 digits): +52 and the
     * 10 digits, the form a carrier dials and a CSV holds. */
    " snd AS (SELECT DISTINCT ON (coalesce(\"from\", user_id)) \"from\" AS wa_id, user_id, name,"
    "  referral, CASE WHEN \"from\" ~ '^521[0-9]{10}$' THEN '+52' || substr(\"from\", 4)"
    "  ELSE '+' || \"from\" END AS phone"
    "  FROM m ORDER BY coalesce(\"from\", user_id), referral IS NULL, ts),"
    /* A sender new to WhatsApp whose number already has a lead (a CSV or API import):
     * the conversation joins that lead (the newest if several campaigns have it). */
    " ad AS (UPDATE leads SET wa_id = snd.wa_id, wa_user_id = coalesce(leads.wa_user_id,"
    "  CASE WHEN EXISTS (SELECT 1 FROM leads x WHERE x.wa_user_id = snd.user_id) THEN NULL"
    "  ELSE snd.user_id END), name = coalesce(leads.name, snd.name),"
    "  attributes = CASE WHEN snd.referral IS NULL OR leads.attributes ? 'referral' THEN"
    "  leads.attributes ELSE leads.attributes || jsonb_build_object('referral', snd.referral)"
    "  END, updated_at = now() FROM snd WHERE snd.wa_id ~ '^[0-9]+$'"
    "  AND NOT EXISTS (SELECT 1 FROM leads y WHERE y.wa_id = snd.wa_id)"
    "  AND leads.id = (SELECT x.id FROM leads x WHERE x.phone_e164 = snd.phone"
    "  AND x.wa_id IS NULL ORDER BY x.created_at DESC, x.id LIMIT 1)"
    "  RETURNING leads.id, leads.wa_id, leads.wa_user_id),"
    " lw AS (INSERT INTO leads (phone_e164, name, source, wa_id, wa_user_id, attributes)"
    "  SELECT phone, name, 'whatsapp', wa_id, CASE WHEN EXISTS (SELECT 1 FROM leads x"
    "  WHERE x.wa_user_id = snd.user_id) THEN NULL ELSE user_id END, CASE WHEN referral IS NULL"
    "  THEN '{}'::jsonb ELSE jsonb_build_object('referral', referral) END FROM snd"
    "  WHERE wa_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ad WHERE ad.wa_id = snd.wa_id)"
    "  ON CONFLICT (wa_id) WHERE wa_id IS NOT NULL DO UPDATE SET"
    "  name = coalesce(leads.name, EXCLUDED.name),"
    "  wa_user_id = coalesce(leads.wa_user_id, EXCLUDED.wa_user_id),"
    "  attributes = CASE WHEN leads.attributes ? 'referral' THEN leads.attributes"
    "  ELSE leads.attributes || EXCLUDED.attributes END, updated_at = now()"
    "  RETURNING id, wa_id, wa_user_id),"
    " lu AS (INSERT INTO leads (phone_e164, name, source, wa_user_id, attributes)"
    "  SELECT NULL, name, 'whatsapp', user_id, CASE WHEN referral IS NULL"
    "  THEN '{}'::jsonb ELSE jsonb_build_object('referral', referral) END FROM snd"
    "  WHERE wa_id IS NULL AND user_id IS NOT NULL"
    "  ON CONFLICT (wa_user_id) WHERE wa_user_id IS NOT NULL DO UPDATE SET"
    "  name = coalesce(leads.name, EXCLUDED.name),"
    "  attributes = CASE WHEN leads.attributes ? 'referral' THEN leads.attributes"
    "  ELSE leads.attributes || EXCLUDED.attributes END, updated_at = now()"
    "  RETURNING id, wa_id, wa_user_id),"
    " ld AS (SELECT * FROM lw UNION ALL SELECT * FROM lu UNION ALL SELECT * FROM ad),"
    " md AS (SELECT DISTINCT ON (m.wamid) m.*, ld.id AS lead_id FROM m JOIN ld ON"
    "  (m.\"from\" IS NOT NULL AND ld.wa_id = m.\"from\") OR"
    "  (m.\"from\" IS NULL AND ld.wa_user_id = m.user_id) ORDER BY m.wamid),"
    " im AS (INSERT INTO whatsapp_messages (wamid, lead_id, direction, wa_id, user_id, type,"
    "  body, ts, payload, media_id, media_status)"
    "  SELECT wamid, lead_id, 'in', coalesce(\"from\", user_id), user_id, type, body,"
    "  coalesce(to_timestamp(ts), now()), payload, payload -> type ->> 'id',"
    "  CASE WHEN $3::boolean AND type IN ('image', 'audio', 'video', 'document', 'sticker')"
    "  AND payload -> type ->> 'id' IS NOT NULL THEN 'pending' END FROM md"
    "  ON CONFLICT (wamid) DO NOTHING RETURNING wamid, lead_id, ts),"
    " cv AS (INSERT INTO whatsapp_conversations (lead_id, last_inbound_at)"
    "  SELECT lead_id, max(ts) FROM im GROUP BY lead_id"
    "  ON CONFLICT (lead_id) DO UPDATE SET last_inbound_at ="
    "  greatest(whatsapp_conversations.last_inbound_at, EXCLUDED.last_inbound_at),"
    "  updated_at = now() RETURNING lead_id),"
    " s AS (SELECT x.* FROM b, jsonb_to_recordset(b.j->'statuses') AS x(id text, status text,"
    "  ts bigint, recipient_id text, error_code integer, payload jsonb)),"
    " ist AS (INSERT INTO whatsapp_statuses (wamid, status, ts, recipient_id, error_code,"
    "  payload)"
    "  SELECT DISTINCT ON (id, status) id, status, coalesce(to_timestamp(ts), now()),"
    "  recipient_id, error_code, payload FROM s ORDER BY id, status"
    "  ON CONFLICT (wamid, status) DO NOTHING RETURNING wamid, status, error_code),"
    " best AS (SELECT DISTINCT ON (wamid) wamid, status, error_code FROM ist"
    "  ORDER BY wamid, wa_status_rank(status) DESC),"
    " up AS (UPDATE whatsapp_messages w SET status = best.status,"
    "  error_code = coalesce(best.error_code, w.error_code) FROM best"
    "  WHERE w.wamid = best.wamid"
    "  AND wa_status_rank(best.status) > wa_status_rank(coalesce(w.status, 'accepted'))"
    "  RETURNING w.wamid),"
    " ev AS (INSERT INTO whatsapp_events (inbox_id, kind, wa_id, payload)"
    "  SELECT $2::bigint, x->>'kind', x->>'wa_id', coalesce(x->'payload', 'null'::jsonb)"
    "  FROM b, jsonb_array_elements(b.j->'events') x RETURNING id),"
    " done AS (UPDATE whatsapp_inbox SET processed_at = now(), error = NULL"
    "  WHERE id = $2::bigint RETURNING id)"
    " SELECT (SELECT coalesce(jsonb_agg(jsonb_build_object('wamid', md.wamid, 'lead_id',"
    "  md.lead_id, 'type', md.type, 'body', md.body, 'reply_id', md.reply_id, 'name', md.name,"
    "  'ts', coalesce(md.ts, extract(epoch FROM now())::bigint)) ORDER BY md.ts), '[]'::jsonb)"
    "  FROM im JOIN md ON md.wamid = im.wamid) AS new_messages,"
    " (SELECT coalesce(jsonb_agg(jsonb_build_object('wamid', ist.wamid, 'error_code',"
    "  ist.error_code, 'lead_id', w.lead_id, 'wa_id', w.wa_id, 'type', w.type)), '[]'::jsonb)"
    "  FROM ist LEFT JOIN whatsapp_messages w ON w.wamid = ist.wamid"
    "  WHERE ist.status = 'failed') AS failed,"
    " (SELECT count(*) FROM up) AS moved, (SELECT count(*) FROM ev) AS events,"
    " (SELECT count(*) FROM cv) AS conversations, (SELECT count(*) FROM done) AS done";

static const char PREFS_SQL[] =
    "INSERT INTO whatsapp_conversations (lead_id, marketing_opt_out)"
    " SELECT l.id, bool_or(p->>'value' = 'stop') FROM jsonb_array_elements($1::jsonb) p"
    " JOIN leads l ON l.wa_id = p->>'wa_id' GROUP BY l.id"
    " ON CONFLICT (lead_id) DO UPDATE SET marketing_opt_out = EXCLUDED.marketing_opt_out,"
    " updated_at = now()";

static const char DEAD_SQL[] =
    "WITH d AS (UPDATE whatsapp_inbox SET processed_at = now(), error = $2"
    " WHERE id = $1::bigint RETURNING id, sha256, body)"
    " INSERT INTO dead_letters (url, event, payload, attempts, last_error, first_attempt_at,"
    " last_attempt_at) SELECT '/webhooks/whatsapp', 'whatsapp.webhook',"
    " jsonb_build_object('sha256', sha256, 'inbox_id', id, 'body', body), 1, $2, now(), now()"
    " FROM d";

static void inbox_dead(const char *id, const char *why)
{
	const char *p[] = {id, why};
	metric_inc(wa_g.m_dead);
	log_warn(MOD, "inbox row %s kept as a dead letter: %s", id, why);
	int rc = wa_sql(DEAD_SQL, p, 2, NULL);
	if (rc < 0)
		log_err(MOD, "inbox row %s: the dead letter could not be written: %s", id,
		        strerror(-rc));
}

static void on_failed_status(const json_t *f)
{
	json_int_t code = json_integer_value(json_object_get(f, "error_code"));
	const char *lead = json_string_value(json_object_get(f, "lead_id"));
	const char *to = json_string_value(json_object_get(f, "wa_id"));
	const char *type = json_string_value(json_object_get(f, "type"));
	wa_send_error_metric((int)code);
	if (!lead || !to)
		return;
	if (code == 131047 && type && strcmp(type, "template") != 0)
		wa_send_template(lead, to, NULL);
	else if (code == 131026)
		wa_mark_unreachable(lead, to);
}

/* One inbox row: parse, store, then discovery on what was new. 0, or -ENOTCONN to stop
 * the round (PostgreSQL went away: the row stays unprocessed). */
static int inbox_one(const char *id, const json_t *body)
{
	char why[160];
	json_t *batch = NULL;
	int rc = wa_parse(body, &batch, why, sizeof(why));
	if (rc == -EINVAL) {
		inbox_dead(id, why);
		return 0;
	}
	if (rc < 0)
		return rc;
	char *text = json_dumps(batch, JSON_COMPACT);
	json_t *prefs = json_incref(json_object_get(batch, "prefs"));
	json_decref(batch);
	if (!text) {
		json_decref(prefs);
		return -ENOMEM;
	}
	const char *p[] = {text, id, wa_media_on() ? "true" : "false"};
	json_t *rows = NULL;
	rc = wa_sql(STORE_SQL, p, 3, &rows);
	free(text);
	if (rc == -EINVAL) {
		json_decref(prefs);
		inbox_dead(id, "PostgreSQL refused the batch");
		return 0;
	}
	if (rc < 0) {
		json_decref(prefs);
		return rc == -ENOTCONN ? rc : -ENOTCONN;
	}
	if (json_array_size(prefs)) {
		char *pt = json_dumps(prefs, JSON_COMPACT);
		const char *pp[] = {pt};
		if (pt && (rc = wa_sql(PREFS_SQL, pp, 1, NULL)) < 0)
			log_warn(MOD, "user_preferences of inbox row %s: %s", id, strerror(-rc));
		free(pt);
	}
	json_decref(prefs);
	const json_t *row = json_array_get(rows, 0);
	size_t i;
	const json_t *x;
	json_array_foreach(json_object_get(row, "new_messages"), i, x)
	{
		metric_inc(wa_g.m_in);
		wa_media_kick(json_string_value(json_object_get(x, "type")));
		wa_on_message(x);
	}
	json_array_foreach(json_object_get(row, "failed"), i, x)
	{
		on_failed_status(x);
	}
	json_decref(rows);
	return 0;
}

/* Processes what is waiting in the inbox. Worker thread. */
static void inbox_round(void)
{
	static const char sql[] = "SELECT id::text AS id, body FROM whatsapp_inbox"
	                          " WHERE processed_at IS NULL ORDER BY id LIMIT 20";
	for (int round = 0; round < 50 && !wa_g.stop; round++) {
		json_t *rows = NULL;
		if (wa_sql(sql, NULL, 0, &rows) < 0)
			return;
		size_t n = json_array_size(rows), i;
		const json_t *r;
		int rc = 0;
		json_array_foreach(rows, i, r)
		{
			if (rc == 0 && !wa_g.stop)
				rc = inbox_one(json_string_value(json_object_get(r, "id")),
				               json_object_get(r, "body"));
		}
		json_decref(rows);
		if (rc < 0 || n < INBOX_ROUND)
			return;
	}
}

/* ---------------------------------------------------------------- retention */

#define RETENTION_EVERY_S 3600 /* how often old inbox rows are looked for */
#define RETENTION_BATCHES 50   /* DELETEs of RETENTION_BATCH rows per look */
#define RETENTION_BATCH   "1000"

/* Deletes processed inbox rows older than inbox_retention_days, in bounded batches (each
 * its own short transaction), once at start and then hourly. Meta's retries of a deleted
 * body land again in the inbox, and the wamid keeps their messages from counting twice. */
static void inbox_retention(void)
{
	static const char sql[] =
	    "WITH d AS (DELETE FROM whatsapp_inbox WHERE id IN (SELECT id FROM whatsapp_inbox"
	    " WHERE processed_at < now() - $1::integer * interval '1 day' ORDER BY processed_at"
	    " LIMIT " RETENTION_BATCH ") RETURNING 1) SELECT count(*) AS n FROM d";
	static time_t next;
	time_t now = time(NULL);
	if (!wa_g.cfg.inbox_retention_days || now < next)
		return;
	char days[16];
	snprintf(days, sizeof(days), "%u", wa_g.cfg.inbox_retention_days);
	const char *p[] = {days};
	long total = 0;
	for (int i = 0; i < RETENTION_BATCHES && !wa_g.stop; i++) {
		json_t *rows = NULL;
		int rc = wa_sql(sql, p, 1, &rows);
		json_int_t n = json_integer_value(json_object_get(json_array_get(rows, 0), "n"));
		json_decref(rows);
		if (rc < 0) {
			log_warn(MOD, "inbox retention: %s", strerror(-rc));
			return; /* tried again on the next round */
		}
		total += (long)n;
		if (n < atol(RETENTION_BATCH))
			break;
	}
	next = now + RETENTION_EVERY_S;
	if (total)
		log_info(MOD, "inbox retention: %ld processed row(s) older than %u day(s) deleted",
		         total, wa_g.cfg.inbox_retention_days);
}

/* ---------------------------------------------------------------- the worker */

void wa_wake(void)
{
	pthread_mutex_lock(&wa_g.mu);
	wa_g.kicked = 1;
	pthread_cond_signal(&wa_g.cv);
	pthread_mutex_unlock(&wa_g.mu);
}

static void *worker(void *arg)
{
	(void)arg;
	while (!wa_g.stop) {
		if (db_pg_up()) {
			inbox_round();
			wa_followup_round();
			wa_media_round();
			inbox_retention();
		}
		uint64_t wait_ms = wa_send_round();
		if (wait_ms > wa_g.cfg.poll_ms)
			wait_ms = wa_g.cfg.poll_ms;
		pthread_mutex_lock(&wa_g.mu);
		if (!wa_g.kicked && !wa_g.stop) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += (time_t)(wait_ms / 1000);
			ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&wa_g.cv, &wa_g.mu, &ts);
		}
		wa_g.kicked = 0;
		pthread_mutex_unlock(&wa_g.mu);
	}
	return NULL;
}

/* ---------------------------------------------------------------- hand-off */

/* No job for a number on the do-not-call list (dnc = true in the answer). */
static const char JOB_SQL[] =
    "WITH dnc AS (SELECT EXISTS (SELECT 1 FROM do_not_call WHERE phone_e164 = $3) AS hit),"
    " j AS (INSERT INTO call_jobs (campaign_id, lead_id, number, status, not_before,"
    " idempotency_key, variables) SELECT nullif($1, ''), $2, $3, 'queued',"
    " to_timestamp($4::bigint), $5, $6::jsonb FROM dnc WHERE NOT dnc.hit"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)"
    " SELECT (SELECT id FROM j) AS id, (SELECT hit FROM dnc) AS dnc";

int wa_lead_qualified(const struct wa_lead_job *job)
{
	char due[24];
	snprintf(due, sizeof(due), "%" PRId64, job->not_before_s);
	const char *p[] = {wa_g.cfg.campaign_id ? wa_g.cfg.campaign_id : "",
	                   job->lead_id,
	                   job->number,
	                   due,
	                   job->idempotency_key,
	                   job->variables ? job->variables : "{}"};
	json_t *rows = NULL;
	int rc = wa_sql(JOB_SQL, p, 6, &rows);
	if (rc < 0) {
		log_err(MOD, "lead %s: call job not written: %s", job->lead_id, strerror(-rc));
		return rc;
	}
	const json_t *row = json_array_get(rows, 0);
	const char *id = json_string_value(json_object_get(row, "id"));
	if (json_is_true(json_object_get(row, "dnc"))) {
		log_warn(MOD, "lead %s qualified but %s is on the do-not-call list: no call job",
		         job->lead_id, job->number);
		json_decref(rows);
		return -EPERM;
	}
	if (!id) {
		json_decref(rows);
		return -EEXIST;
	}
	metric_inc(wa_g.m_jobs);
	log_info(MOD, "lead %s qualified: call job %s for %s at %" PRId64, job->lead_id, id,
	         job->number, job->not_before_s);
	json_t *disc = job->variables ? json_loads(job->variables, 0, NULL) : NULL;
	int nrc = notify_emit("lead.qualified",
	                      json_pack("{s:s, s:s, s:s, s:I, s:o}", "lead_id", job->lead_id,
	                                "job_id", id, "number", job->number, "not_before",
	                                (json_int_t)job->not_before_s, "discovery",
	                                disc ? disc : json_object()));
	if (nrc && nrc != -ENOTCONN)
		log_warn(MOD, "lead.qualified for lead %s not sent: %s", job->lead_id,
		         strerror(-nrc));
	/* The dialer takes queued call_jobs rows of running campaigns on its next sweep. */
	json_decref(rows);
	return 0;
}

/* ---------------------------------------------------------------- life cycle */

static void copy_cfg(const struct wa_config *c)
{
	wa_g.cfg = *c;
	if (!wa_g.cfg.pair_interval_ms)
		wa_g.cfg.pair_interval_ms = 6000;
	if (!wa_g.cfg.rate_per_s)
		wa_g.cfg.rate_per_s = 80;
	if (!wa_g.cfg.send_timeout_ms)
		wa_g.cfg.send_timeout_ms = 10000;
	if (!wa_g.cfg.poll_ms)
		wa_g.cfg.poll_ms = 1000;
	if (!wa_g.cfg.max_age_s)
		wa_g.cfg.max_age_s = 86400;
}

static void metrics_init(void)
{
	static const char hooks[] = "WhatsApp webhook POSTs by result";
	wa_g.m_accepted =
	    metric_get(METRIC_COUNTER, "vacs_wa_webhooks_total{result=\"stored\"}", hooks);
	wa_g.m_sig_bad =
	    metric_get(METRIC_COUNTER, "vacs_wa_webhooks_total{result=\"bad_signature\"}", hooks);
	wa_g.m_sig_missing =
	    metric_get(METRIC_COUNTER, "vacs_wa_webhooks_total{result=\"no_signature\"}", hooks);
	wa_g.m_dead =
	    metric_get(METRIC_COUNTER, "vacs_wa_webhooks_total{result=\"dead_letter\"}", hooks);
	wa_g.m_unavailable =
	    metric_get(METRIC_COUNTER, "vacs_wa_webhooks_total{result=\"unavailable\"}", hooks);
	wa_g.m_verify_bad = metric_get(METRIC_COUNTER, "vacs_wa_verify_rejected_total",
	                               "GET verifications with a wrong mode or token");
	wa_g.m_in = metric_get(METRIC_COUNTER, "vacs_wa_messages_total{dir=\"in\"}",
	                       "WhatsApp messages stored (in: new inbound, out: sent)");
	wa_g.m_out = metric_get(METRIC_COUNTER, "vacs_wa_messages_total{dir=\"out\"}",
	                        "WhatsApp messages stored (in: new inbound, out: sent)");
	wa_g.m_stale = metric_get(METRIC_COUNTER, "vacs_wa_stale_messages_total",
	                          "inbound messages older than whatsapp.max_age: stored, no reply");
	wa_g.m_jobs = metric_get(METRIC_COUNTER, "vacs_wa_qualified_total",
	                         "qualified leads handed to the dialer (call_jobs rows)");
	wa_g.m_llm_fallback = metric_get(METRIC_COUNTER, "vacs_wa_llm_fallback_total",
	                                 "LLM discovery failures answered by the rules");
	wa_g.m_queue =
	    metric_get(METRIC_GAUGE, "vacs_wa_send_queue", "messages waiting to be sent");
	wa_g.m_auth_alert = metric_get(METRIC_GAUGE, "vacs_wa_auth_alert",
	                               "1 after Graph API error 190 (access token expired)");
	static const char errs[] = "Graph API errors by class";
	wa_g.m_err_window =
	    metric_get(METRIC_COUNTER, "vacs_wa_send_errors_total{class=\"window\"}", errs);
	wa_g.m_err_unreach =
	    metric_get(METRIC_COUNTER, "vacs_wa_send_errors_total{class=\"unreachable\"}", errs);
	wa_g.m_err_rate =
	    metric_get(METRIC_COUNTER, "vacs_wa_send_errors_total{class=\"rate\"}", errs);
	wa_g.m_err_auth =
	    metric_get(METRIC_COUNTER, "vacs_wa_send_errors_total{class=\"auth\"}", errs);
	wa_g.m_err_other =
	    metric_get(METRIC_COUNTER, "vacs_wa_send_errors_total{class=\"other\"}", errs);
}

int wa_init(const struct wa_config *cfg)
{
	if (!cfg || !cfg->app_secret || !cfg->app_secret[0])
		return 0;
	char why[512];
	int rc = wa_rules_load(cfg->rules_file, &wa_g.rules, why, sizeof(why));
	if (rc < 0) {
		log_err(MOD, "discovery rules: %s", why);
		return rc;
	}
	copy_cfg(cfg);
	metrics_init();
	pthread_mutex_init(&wa_g.mu, NULL);
	pthread_cond_init(&wa_g.cv, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = ctl_route_add("GET", "/webhooks/whatsapp", 0, 0, 5000, on_verify, NULL);
	if (rc == 0)
		rc = ctl_route_add("POST", "/webhooks/whatsapp", 0, WA_MAX_BODY, 10000, on_webhook,
		                   NULL);
	if (rc == 0)
		rc = wa_send_init();
	if (rc == 0 && (rc = wa_media_init()) < 0)
		wa_send_close();
	if (rc == 0 && (rc = wa_followup_init()) < 0) {
		wa_media_close();
		wa_send_close();
	}
	if (rc == 0) {
		rc = -pthread_create(&wa_g.thread, NULL, worker, NULL);
		if (rc < 0) {
			wa_followup_close();
			wa_media_close();
			wa_send_close();
		}
	}
	if (rc < 0) {
		wa_rules_destroy(wa_g.rules);
		wa_g.rules = NULL;
		curl_global_cleanup();
		log_err(MOD, "start: %s", strerror(-rc));
		return rc;
	}
	wa_g.on = 1;
	log_info(MOD, "WhatsApp webhook at /webhooks/whatsapp; sending %s",
	         cfg->access_token && cfg->access_token[0] ? "on" : "off (no access token)");
	return 0;
}

void wa_close(void)
{
	if (!wa_g.on)
		return;
	pthread_mutex_lock(&wa_g.mu);
	wa_g.stop = 1;
	pthread_cond_signal(&wa_g.cv);
	pthread_mutex_unlock(&wa_g.mu);
	pthread_join(wa_g.thread, NULL);
	wa_followup_close();
	wa_media_close();
	wa_send_close();
	wa_rules_destroy(wa_g.rules);
	wa_g.rules = NULL;
	curl_global_cleanup();
	wa_g.on = 0;
}
