/* Discovery on the worker thread: a new inbound message moves its lead's conversation
 * (rules or LLM engine), the result is stored, a reply queued, a qualified lead handed
 * to the dialer and a withdrawal cancels the lead's pending call jobs. */
#include "wa/wa_int.h"

#include "core/metric.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "wa"

static const char LOAD_SQL[] =
    "SELECT l.id, l.phone_e164, l.wa_id, l.wa_user_id, l.name, c.state, c.lang, c.fields,"
    " extract(epoch FROM c.last_inbound_at)::bigint AS last_in"
    " FROM leads l LEFT JOIN whatsapp_conversations c ON c.lead_id = l.id WHERE l.id = $1";

/* $1 lead, $2 state, $3 lang, $4 result, $5 qualified, $6 engine, $7 phone, $8 withdraw */
static const char SAVE_SQL[] =
    "WITH c AS (INSERT INTO whatsapp_conversations (lead_id, state, lang, fields)"
    " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (lead_id) DO UPDATE SET"
    " state = EXCLUDED.state, lang = EXCLUDED.lang, fields = EXCLUDED.fields,"
    " unreachable = false, updated_at = now() RETURNING lead_id),"
    " d AS (INSERT INTO discovery (lead_id, intent, interest, consent, best_time, qualified,"
    " score, model, result) SELECT $1, r->>'intent', r->'fields'->>'destination',"
    " CASE jsonb_typeof(r->'consent') WHEN 'boolean' THEN (r->>'consent')::boolean END,"
    " r->>'window', $5::boolean, (r->>'score')::numeric, $6, r"
    " FROM (SELECT $4::jsonb AS r) s RETURNING id),"
    " l AS (UPDATE leads SET phone_e164 = coalesce($7, phone_e164), locale = $3,"
    " consent_call = CASE jsonb_typeof($4::jsonb->'consent') WHEN 'boolean'"
    "  THEN ($4::jsonb->>'consent')::boolean ELSE consent_call END,"
    " do_not_call = CASE WHEN $8::boolean THEN true"
    "  WHEN $4::jsonb->>'consent' = 'true' THEN false ELSE do_not_call END,"
    " status = CASE $2 WHEN 'qualified' THEN 'qualified' WHEN 'withdrawn' THEN 'withdrawn'"
    "  WHEN 'declined' THEN 'declined' ELSE 'contacted' END, updated_at = now()"
    " WHERE id = $1 RETURNING id),"
    " j AS (UPDATE call_jobs SET status = 'cancelled', updated_at = now()"
    " WHERE lead_id = $1 AND $8::boolean AND status IN ('queued', 'claimed') RETURNING id)"
    " SELECT (SELECT count(*) FROM j) AS cancelled, (SELECT id FROM d) AS discovery_id,"
    " (SELECT count(*) FROM c) + (SELECT count(*) FROM l) AS touched";

static int conversational(const char *type)
{
	static const char *const t[] = {"text",  "interactive", "button", "image",
	                                "video", "document",    "audio",  NULL};
	for (int i = 0; type && t[i]; i++) {
		if (strcmp(type, t[i]) == 0)
			return 1;
	}
	return 0;
}

static const char *js(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static void extract(const char *text, const char *reply_id, const char *state, struct wa_extract *x,
                    char *engine, size_t elen)
{
	struct wa_llm llm = {.url = wa_g.cfg.llm_url,
	                     .key = wa_g.cfg.llm_key,
	                     .model = wa_g.cfg.llm_model,
	                     .timeout_ms = wa_g.cfg.llm_timeout_ms};
	/* Our own button ids need no model. */
	if (llm.url && llm.url[0] && !(reply_id && reply_id[0]) && text && text[0]) {
		int rc = wa_llm_extract(&llm, text, state, x);
		if (rc == 0) {
			snprintf(engine, elen, "llm:%s", llm.model ? llm.model : "");
			return;
		}
		metric_inc(wa_g.m_llm_fallback);
		log_warn(MOD, "LLM engine: %s; the rules answer", strerror(-rc));
	}
	wa_rules_extract(wa_g.rules, text, reply_id, state, x);
	snprintf(engine, elen, "rules");
}

void wa_on_message(const json_t *m)
{
	const char *lead = js(m, "lead_id"), *type = js(m, "type"), *wamid = js(m, "wamid");
	json_int_t ts = json_integer_value(json_object_get(m, "ts"));
	int64_t now = (int64_t)time(NULL);
	if (!lead[0])
		return;
	if (now - ts > (int64_t)wa_g.cfg.max_age_s) {
		metric_inc(wa_g.m_stale);
		return; /* a replay of old messages: kept, never answered */
	}
	json_t *rows = NULL;
	const char *lp[] = {lead};
	if (wa_sql(LOAD_SQL, lp, 1, &rows) < 0) {
		log_warn(MOD, "lead %s: not loaded; message %s gets no reply", lead, wamid);
		return;
	}
	const json_t *l = json_array_get(rows, 0);
	const char *to = js(l, "wa_id")[0] ? js(l, "wa_id") : js(l, "wa_user_id");
	if (!l || !to[0]) {
		json_decref(rows);
		return;
	}
	wa_send_read(to, wamid);
	if (!conversational(type) || !json_is_string(json_object_get(m, "body"))) {
		json_decref(rows);
		return;
	}
	const char *state = js(l, "state")[0] ? js(l, "state") : "new";
	json_t *res = json_object_get(l, "fields");
	res = json_is_object(res) ? json_deep_copy(res) : json_object();
	if (!res) {
		json_decref(rows);
		return;
	}
	if (js(l, "lang")[0] && !json_object_get(res, "lang"))
		json_object_set_new(res, "lang", json_string(js(l, "lang")));
	struct wa_extract x;
	char engine[96];
	const char *text = js(m, "body"),
	           *reply_id = json_string_value(json_object_get(m, "reply_id"));
	extract(text, reply_id, state, &x, engine, sizeof(engine));
	struct wa_hours h = {.start_min = wa_g.cfg.hours_start_min,
	                     .end_min = wa_g.cfg.hours_end_min,
	                     .utc_offset_min = wa_g.cfg.utc_offset_min};
	struct wa_step st;
	const char *name = js(m, "name")[0] ? js(m, "name") : js(l, "name");
	char first[48];
	snprintf(first, sizeof(first), "%s", name);
	first[strcspn(first, " ")] = '\0';
	if (wa_disc_step(wa_g.rules, res, state, &x, text, js(l, "phone_e164"), first, now, &h,
	                 engine, &st) < 0) {
		json_decref(res);
		json_decref(rows);
		return;
	}
	json_object_set_new(res, "lead_id", json_string(lead));
	if (js(m, "name")[0] || js(l, "name")[0])
		json_object_set_new(res, "name", json_string(name));
	char *rtext = json_dumps(res, JSON_COMPACT);
	const char *lang = js(res, "lang");
	const char *sp[] = {lead,
	                    st.state,
	                    lang,
	                    rtext,
	                    st.qualify ? "true" : "false",
	                    engine,
	                    st.phone[0] ? st.phone : NULL,
	                    st.withdraw ? "true" : "false"};
	json_t *saved = NULL;
	int rc = rtext ? wa_sql(SAVE_SQL, sp, 8, &saved) : -ENOMEM;
	if (rc < 0) {
		log_err(MOD, "lead %s: discovery not stored: %s", lead, strerror(-rc));
	} else {
		json_int_t cancelled =
		    json_integer_value(json_object_get(json_array_get(saved, 0), "cancelled"));
		if (st.withdraw)
			log_info(MOD,
			         "lead %s withdrew consent: %" JSON_INTEGER_FORMAT
			         " pending call job(s) cancelled",
			         lead, cancelled);
		if (st.qualify) {
			char key[160];
			const char *phone = st.phone[0] ? st.phone : js(l, "phone_e164");
			snprintf(key, sizeof(key), "wa:%s:%s", lead, js(res, "consent_at"));
			struct wa_lead_job job = {.lead_id = lead,
			                          .number = phone,
			                          .not_before_s = st.due_s,
			                          .variables = rtext,
			                          .idempotency_key = key};
			wa_lead_qualified(&job);
		}
		if (st.reply.kind)
			wa_send_reply(lead, to, lang, &st.reply, (int64_t)ts + 86400);
	}
	free(rtext);
	json_decref(saved);
	json_decref(res);
	json_decref(rows);
}
