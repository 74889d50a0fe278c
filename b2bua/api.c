/* The HTTP routes that act on calls: POST /v1/calls (the originate operation) and
 * POST /webhooks/vapi (VAPI's server messages). The http thread authenticates and parses;
 * the sip thread, which owns the calls, acts and answers. */
#include "b2bua/b2bua.h"
#include "b2bua/b2bua_int.h"

#include "conf/conf.h"
#include "control/api_util.h"
#include "control/control.h"
#include "core/log.h"
#include "core/mbox.h"
#include "core/mem.h"
#include "core/metric.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Threads: b2b_api_init/close run on the main thread (before ctl_init, after ctl_close).
 * The handlers run on the http thread: they check the request, parse it into a heap
 * object and post it with the request's token to the sip thread's mailbox. The sip thread
 * (b2b_api_poll) acts and answers with ctl_reply, which any thread may call. A request
 * the sip thread never sees (mailbox full) is answered 503 at once.
 */

enum api_kind { API_ORIGINATE = 1, API_HOOK, API_ACTION, API_TRUNKS, API_DRAIN, API_DIAL };

struct api_msg {
	enum api_kind kind;
	uint64_t token;
	void *ptr; /* struct orig_req, or struct vapi_hook_msg */
};

/* POST /v1/calls/{id}/transfer or /hangup, parsed. */
struct action_req {
	int transfer; /* else hangup */
	char id[96];
	char queue[64];
	char reason[160];
	char summary[1024];
};

/* POST /v1/calls, parsed: o's strings point into the arrays (or vars). */
struct orig_req {
	struct b2b_orig o;
	char to[33], from[33], assistant[96], lead[64], ref[96], at[64], amd_prompt[256];
	char *vars;            /* variables as JSON text (mem_) */
	b2b_orig_done_cb done; /* API_DIAL: b2b_originate_post's caller, else NULL */
	void *done_arg;
};

static struct {
	int sched_on;        /* POST /v1/calls may take "at" (the dialer runs) */
	char sched_why[160]; /* else why not */
	struct mbox *mb;
	struct vapi_hook_config hook;
	char *hook_strs[6]; /* copies behind hook's strings */
	struct metric *m_hook[4];
	struct log_ratelimit rl; /* refusals logged by the http thread */
} api;

enum { HOOK_OK, HOOK_UNAUTHORIZED, HOOK_MALFORMED, HOOK_BUSY };
static const char *const hook_results[] = {"ok", "unauthorized", "malformed", "busy"};

#define ORIG_MAX_BODY (64u * 1024u)
#define ORIG_MAX_VARS (16u * 1024u)

/* Frees what a mailbox message carries. */
static void msg_free(enum api_kind kind, void *ptr)
{
	if (kind == API_HOOK)
		vapi_hook_msg_free(ptr);
	else if (kind == API_ORIGINATE || kind == API_DIAL)
		mem_free(((struct orig_req *)ptr)->vars);
	mem_free(ptr);
}

static void post_or_busy(enum api_kind kind, uint64_t token, void *ptr)
{
	struct api_msg m = {.kind = kind, .token = token, .ptr = ptr};
	if (mbox_post(api.mb, &m) == 0)
		return;
	if (kind == API_HOOK)
		metric_inc(api.m_hook[HOOK_BUSY]);
	msg_free(kind, ptr);
	ctl_reply_error(token, 503, "busy", "the call engine is overloaded: try again", NULL);
}

/* ---- POST /v1/calls ---- */

/* Copies a string member of j (absent = ""); 0, or -1 after answering 400. */
static int take_str(uint64_t token, json_t *j, const char *key, char *out, size_t len)
{
	json_t *v = json_object_get(j, key);
	out[0] = '\0';
	if (!v)
		return 0;
	if (!json_is_string(v) || json_string_length(v) >= len ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		char msg[120];
		snprintf(msg, sizeof(msg), "%s must be a string of at most %zu characters", key,
		         len - 1);
		ctl_reply_error(token, 400, "invalid_field", msg, key);
		return -1;
	}
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

/* ---- POST /v1/calls with lead_id and no to, or with at (docs/dialer.md) ---- */

struct lead_q {
	uint64_t token;
	struct orig_req *r;
};

/* The lead's number, and whether it may be called; -1 with the answer filled when not. */
static int lead_check(const json_t *row, unsigned *code, const char **ecode, const char **msg)
{
	const char *err = json_string_value(json_object_get(row, "err"));
	if (!row || (err && strcmp(err, "no_lead") == 0)) {
		*code = 404;
		*ecode = "not_found";
		*msg = "no lead with this lead_id";
	} else if (err && strcmp(err, "no_phone") == 0) {
		*code = 422;
		*ecode = "lead_without_phone";
		*msg = "the lead has no phone number: give to";
	} else if (err && strcmp(err, "dnc") == 0) {
		*code = 409;
		*ecode = "do_not_call";
		*msg = "the lead's number is on the do-not-call list";
	} else {
		return 0;
	}
	return -1;
}

#define LEAD_SQL                                                                                   \
	" l AS (SELECT phone_e164, coalesce(do_not_call, false) OR EXISTS (SELECT 1 FROM"          \
	" do_not_call n WHERE n.phone_e164 = leads.phone_e164) AS dnc FROM leads WHERE id = $1)"

static void on_lead(void *arg, int rc, json_t *rows)
{
	struct lead_q *lq = arg;
	unsigned code;
	const char *ecode, *msg;
	json_t *row = json_array_get(rows, 0);
	if (rc) {
		api_reply_store(lq->token, rc);
		msg_free(API_ORIGINATE, lq->r);
	} else if (lead_check(row, &code, &ecode, &msg)) {
		ctl_reply_error(lq->token, code, ecode, msg, "lead_id");
		msg_free(API_ORIGINATE, lq->r);
	} else {
		const char *to = json_string_value(json_object_get(row, "phone"));
		snprintf(lq->r->to, sizeof(lq->r->to), "%s", to ? to : "");
		post_or_busy(API_ORIGINATE, lq->token, lq->r);
	}
	json_decref(rows);
	mem_free(lq);
}

/* A call now to the lead's number: read it (and the do-not-call list), then originate. */
static void lead_lookup(uint64_t token, struct orig_req *r)
{
	struct lead_q *lq = mem_zalloc(sizeof(*lq));
	if (!lq) {
		msg_free(API_ORIGINATE, r);
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		return;
	}
	*lq = (struct lead_q){.token = token, .r = r};
	const char *p[] = {r->lead};
	int rc =
	    db_query("WITH" LEAD_SQL " SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM l) THEN"
	             " 'no_lead' WHEN (SELECT coalesce(phone_e164, '') FROM l) = '' THEN 'no_phone'"
	             " WHEN (SELECT dnc FROM l) THEN 'dnc' END AS err,"
	             " (SELECT phone_e164 FROM l) AS phone",
	             p, 1, on_lead, lq);
	if (rc) {
		api_reply_store(token, rc);
		msg_free(API_ORIGINATE, r);
		mem_free(lq);
	}
}

static void on_scheduled(void *arg, int rc, json_t *rows)
{
	struct lead_q *lq = arg;
	json_t *row = json_array_get(rows, 0);
	const char *err = json_string_value(json_object_get(row, "err"));
	unsigned code;
	const char *ecode, *msg;
	if (rc == -EINVAL) { /* the only text PostgreSQL parses here is at */
		ctl_reply_error(lq->token, 400, "invalid_field",
		                "at must be an ISO 8601 date-time such as 2026-01-31T09:30:00Z",
		                "at");
	} else if (rc) {
		api_reply_store(lq->token, rc);
	} else if (err && strcmp(err, "past") == 0) {
		ctl_reply_error(lq->token, 400, "invalid_field", "at must be in the future", "at");
	} else if (err && strcmp(err, "far") == 0) {
		ctl_reply_error(lq->token, 400, "invalid_field", "at must be at most 30 days ahead",
		                "at");
	} else if (!row || lead_check(row, &code, &ecode, &msg)) {
		ctl_reply_error(lq->token, row ? code : 500, row ? ecode : "internal",
		                row ? msg : "no answer", "lead_id");
	} else {
		json_t *o = json_object();
		json_object_set(o, "id", json_object_get(row, "id"));
		json_object_set_new(o, "status", json_string("scheduled"));
		json_object_set(o, "at", json_object_get(row, "at"));
		json_object_set(o, "to", json_object_get(row, "number"));
		if (lq->r->lead[0])
			json_object_set_new(o, "lead_id", json_string(lq->r->lead));
		api_reply_json(lq->token, 202, o);
	}
	json_decref(rows);
	msg_free(API_ORIGINATE, lq->r);
	mem_free(lq);
}

/* A call at r->at: one statement checks the time (future, at most 30 days ahead) and the
 * lead, and writes the campaign-less call_jobs row the dialer places when due. */
static void schedule(uint64_t token, struct orig_req *r)
{
	struct lead_q *lq = mem_zalloc(sizeof(*lq));
	if (!lq) {
		msg_free(API_ORIGINATE, r);
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		return;
	}
	*lq = (struct lead_q){.token = token, .r = r};
	const char *p[] = {r->lead[0] ? r->lead : NULL,
	                   r->at,
	                   r->to[0] ? r->to : NULL,
	                   r->vars,
	                   r->assistant[0] ? r->assistant : NULL,
	                   r->from[0] ? r->from : NULL,
	                   r->ref[0] ? r->ref : NULL};
	int rc = db_query(
	    "WITH t AS (SELECT $2::timestamptz AS at)," LEAD_SQL
	    ", e AS (SELECT CASE WHEN (SELECT at FROM t) <= now() THEN 'past'"
	    " WHEN (SELECT at FROM t) > now() + interval '30 days' THEN 'far'"
	    " WHEN $1::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM l) THEN 'no_lead'"
	    " WHEN $3::text IS NULL AND (SELECT coalesce(phone_e164, '') FROM l) = ''"
	    " THEN 'no_phone'"
	    " WHEN $3::text IS NULL AND (SELECT dnc FROM l) THEN 'dnc' END AS err),"
	    " ins AS (INSERT INTO call_jobs (campaign_id, lead_id, number, attempt, not_before,"
	    " variables, assistant, caller_id, ref) SELECT NULL, $1, coalesce($3, (SELECT"
	    " phone_e164 FROM l)), 1, (SELECT at FROM t), coalesce($4::jsonb, '{}'), $5, $6, $7 "
	    "FROM e WHERE"
	    " e.err IS NULL RETURNING id, number, not_before)"
	    " SELECT e.err, ins.id, ins.number, to_char(ins.not_before AT TIME ZONE 'UTC',"
	    " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at FROM e LEFT JOIN ins ON true",
	    p, 7, on_scheduled, lq);
	if (rc) {
		api_reply_store(token, rc);
		msg_free(API_ORIGINATE, r);
		mem_free(lq);
	}
}

/* DELETE /v1/calls/scheduled/{job id}: a scheduled call still waiting is cancelled. */
static void on_cancelled(void *arg, int rc, json_t *rows)
{
	uint64_t token = (uint64_t)(uintptr_t)arg;
	json_t *row = json_array_get(rows, 0);
	const char *st = json_string_value(json_object_get(row, "status"));
	if (rc) {
		api_reply_store(token, rc);
	} else if (!st) {
		ctl_reply_error(token, 404, "not_found", "no scheduled call with this id", NULL);
	} else if (!json_is_string(json_object_get(row, "cancelled"))) {
		char msg[120];
		snprintf(msg, sizeof(msg), "the scheduled call is %s: too late to cancel it",
		         strcmp(st, "dialing") == 0 ? "dialing" : st);
		ctl_reply_error(token, 409, "conflict", msg, NULL);
	} else {
		json_t *o = json_object();
		json_object_set(o, "id", json_object_get(row, "cancelled"));
		json_object_set_new(o, "status", json_string("cancelled"));
		api_reply_json(token, 200, o);
	}
	json_decref(rows);
}

static void on_cancel(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	const char *id = ctl_req_path(rq) + strlen("/v1/calls/scheduled/");
	if (!api_id_ok(id)) {
		ctl_reply_error(token, 404, "not_found", "no scheduled call with this id", NULL);
		return;
	}
	const char *p[] = {id};
	int rc = db_query("WITH up AS (UPDATE call_jobs SET status = 'cancelled', outcome ="
	                  " 'cancelled', updated_at = now() WHERE id = $1 AND campaign_id IS NULL"
	                  " AND status = 'queued' RETURNING id)"
	                  " SELECT (SELECT id FROM up) AS cancelled, j.status FROM call_jobs j"
	                  " WHERE j.id = $1 AND j.campaign_id IS NULL",
	                  p, 1, on_cancelled, (void *)(uintptr_t)token);
	if (rc)
		api_reply_store(token, rc);
}

void b2b_api_schedule_set(int on, const char *why)
{
	api.sched_on = on;
	snprintf(api.sched_why, sizeof(api.sched_why), "scheduled calls need the dialer: %s",
	         why && why[0] ? why : "it is off");
}

/* Parses and checks the body, then hands it to the sip thread (or answers the error). */
static void on_calls(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const fields[] = {"to",      "from", "assistant_id", "variables",
	                                     "lead_id", "ref",  "at",           NULL};
	uint64_t token = ctl_req_token(rq);
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	json_error_t jerr;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(j)) {
		char msg[200];
		snprintf(msg, sizeof(msg), "the body must be a JSON object%s%s", j ? "" : ": ",
		         j ? "" : jerr.text);
		json_decref(j);
		ctl_reply_error(token, 400, "invalid_json", msg, NULL);
		return;
	}
	const char *key;
	json_t *v;
	json_object_foreach(j, key, v)
	{
		size_t i = 0;
		while (fields[i] && strcmp(fields[i], key) != 0)
			i++;
		if (!fields[i]) {
			char msg[160];
			snprintf(msg, sizeof(msg), "unknown field \"%.60s\"", key);
			ctl_reply_error(token, 400, "invalid_field", msg, key);
			json_decref(j);
			return;
		}
	}
	json_t *vars = json_object_get(j, "variables");
	if (vars && !json_is_object(vars)) {
		ctl_reply_error(token, 400, "invalid_field", "variables must be a JSON object",
		                "variables");
		json_decref(j);
		return;
	}
	struct orig_req *r = mem_zalloc(sizeof(*r));
	if (!r) {
		json_decref(j);
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		return;
	}
	if (take_str(token, j, "to", r->to, sizeof(r->to)) ||
	    take_str(token, j, "from", r->from, sizeof(r->from)) ||
	    take_str(token, j, "assistant_id", r->assistant, sizeof(r->assistant)) ||
	    take_str(token, j, "lead_id", r->lead, sizeof(r->lead)) ||
	    take_str(token, j, "ref", r->ref, sizeof(r->ref)) ||
	    take_str(token, j, "at", r->at, sizeof(r->at))) {
		mem_free(r);
		json_decref(j);
		return;
	}
	const char *bad = NULL, *bad_field = NULL, *bad_code = "invalid_field";
	unsigned bad_status = 400;
	if (!r->to[0] && !r->lead[0]) {
		bad = "to or lead_id is required: the number to call, or the lead whose number "
		      "to call";
		bad_field = "to";
		bad_code = "missing_field";
	} else if (r->lead[0] && !r->to[0] && !api_id_ok(r->lead)) {
		bad = "lead_id must be 1 to 64 of A-Z a-z 0-9 _ . : -";
		bad_field = "lead_id";
	} else if (json_object_get(j, "at") && !api.sched_on) {
		bad =
		    api.sched_why[0] ? api.sched_why : "scheduled calls need the dialer: it is off";
		bad_status = 503;
		bad_code = "dialer_unavailable";
	} else if (json_object_get(j, "at") && (!strchr(r->at, 'T') || !api_iso_time_ok(r->at))) {
		bad = "at must be an ISO 8601 date-time such as 2026-01-31T09:30:00Z";
		bad_field = "at";
	}
	if (bad) {
		ctl_reply_error(token, bad_status, bad_code, bad, bad_field);
		mem_free(r);
		json_decref(j);
		return;
	}
	r->o = (struct b2b_orig){.to = r->to,
	                         .from = r->from,
	                         .assistant_id = r->assistant,
	                         .lead_id = r->lead,
	                         .ref = r->ref};
	if (vars) {
		char *vj = json_dumps(vars, JSON_COMPACT);
		if (!vj || strlen(vj) > ORIG_MAX_VARS) {
			free(vj);
			mem_free(r);
			json_decref(j);
			ctl_reply_error(token, 400, "invalid_field",
			                "variables is larger than 16 KiB", "variables");
			return;
		}
		r->vars = mem_strdup(vj);
		free(vj);
		r->o.variables_json = r->vars;
	}
	json_decref(j);
	if (r->at[0])
		schedule(token, r);
	else if (!r->to[0])
		lead_lookup(token, r);
	else
		post_or_busy(API_ORIGINATE, token, r);
}

static void do_originate(uint64_t token, struct orig_req *r)
{
	char id[96];
	const char *why = NULL, *field = NULL;
	int code = b2b_originate(&r->o, id, sizeof(id), &why, &field);
	if (code) {
		const char *ecode = code == 400   ? "invalid_field"
		                    : code == 429 ? "capacity"
		                                  : "unavailable";
		ctl_reply_error(token, (unsigned)code, ecode, why, field);
	} else {
		json_t *o = json_object();
		json_object_set_new(o, "id", json_string(id));
		json_object_set_new(o, "status", json_string("dialing"));
		json_object_set_new(o, "to", json_string(r->o.to));
		size_t len;
		char *body = api_json_body(o, &len);
		if (body)
			ctl_reply(token, 201, NULL, body, len);
		else
			ctl_reply_error(token, 500, "internal", "out of memory", NULL);
	}
	msg_free(API_ORIGINATE, r);
}

/* ---- b2b_originate_post: the same operation for another thread ---- */

static int copy_str(char *out, size_t len, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n >= len)
		return -EINVAL;
	memcpy(out, s ? s : "", n + 1);
	return 0;
}

int b2b_originate_post(const struct b2b_orig_req *q, b2b_orig_done_cb done, void *arg)
{
	if (!q || !q->to || !q->to[0] || !done)
		return -EINVAL;
	if (!api.mb)
		return -ENOTCONN;
	if (q->variables_json && strlen(q->variables_json) > ORIG_MAX_VARS)
		return -EINVAL;
	struct orig_req *r = mem_zalloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	if (copy_str(r->to, sizeof(r->to), q->to) || copy_str(r->from, sizeof(r->from), q->from) ||
	    copy_str(r->assistant, sizeof(r->assistant), q->assistant_id) ||
	    copy_str(r->lead, sizeof(r->lead), q->lead_id) ||
	    copy_str(r->ref, sizeof(r->ref), q->ref) ||
	    copy_str(r->amd_prompt, sizeof(r->amd_prompt), q->amd_prompt)) {
		mem_free(r);
		return -EINVAL;
	}
	if (q->variables_json && !(r->vars = mem_strdup(q->variables_json))) {
		mem_free(r);
		return -ENOMEM;
	}
	r->o = (struct b2b_orig){.to = r->to,
	                         .from = r->from,
	                         .assistant_id = r->assistant,
	                         .variables_json = r->vars,
	                         .lead_id = r->lead,
	                         .ref = r->ref,
	                         .amd_action = q->amd_action,
	                         .amd_prompt = r->amd_prompt};
	r->done = done;
	r->done_arg = arg;
	struct api_msg m = {.kind = API_DIAL, .ptr = r};
	if (mbox_post(api.mb, &m) == 0)
		return 0;
	msg_free(API_DIAL, r);
	return -EAGAIN;
}

static void do_dial(struct orig_req *r)
{
	char id[96];
	const char *why = NULL, *field = NULL;
	int code = b2b_originate(&r->o, id, sizeof(id), &why, &field);
	r->done(r->done_arg, code, code ? "" : id, code ? (why ? why : "refused") : "");
	msg_free(API_DIAL, r);
}

/* ---- POST /v1/calls/{id}/transfer, POST /v1/calls/{id}/hangup ---- */

static void on_call_action(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	const char *path = ctl_req_path(rq) + strlen("/v1/calls/");
	const char *slash = strchr(path, '/');
	struct action_req *r = mem_zalloc(sizeof(*r));
	if (!r) {
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		return;
	}
	size_t idlen = slash ? (size_t)(slash - path) : 0;
	if (!slash || !idlen || idlen >= sizeof(r->id) ||
	    (strcmp(slash, "/transfer") != 0 && strcmp(slash, "/hangup") != 0)) {
		mem_free(r);
		ctl_reply_error(token, 404, "not_found",
		                "no such resource: use /v1/calls/{id}/transfer or /hangup", NULL);
		return;
	}
	memcpy(r->id, path, idlen);
	r->transfer = strcmp(slash, "/transfer") == 0;
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	if (len) {
		json_error_t jerr;
		json_t *j = json_loadb(body, len, 0, &jerr);
		if (!json_is_object(j)) {
			json_decref(j);
			mem_free(r);
			ctl_reply_error(token, 400, "invalid_json",
			                "the body must be a JSON object", NULL);
			return;
		}
		const char *key;
		json_t *v;
		json_object_foreach(j, key, v)
		{
			if (!r->transfer || (strcmp(key, "queue") && strcmp(key, "reason") &&
			                     strcmp(key, "summary"))) {
				char msg[120];
				snprintf(msg, sizeof(msg), "unknown field \"%.60s\"", key);
				ctl_reply_error(token, 400, "invalid_field", msg, key);
				json_decref(j);
				mem_free(r);
				return;
			}
		}
		int bad = take_str(token, j, "queue", r->queue, sizeof(r->queue)) ||
		          take_str(token, j, "reason", r->reason, sizeof(r->reason)) ||
		          take_str(token, j, "summary", r->summary, sizeof(r->summary));
		json_decref(j);
		if (bad) {
			mem_free(r);
			return;
		}
	}
	post_or_busy(API_ACTION, token, r);
}

static void do_action(uint64_t token, struct action_req *r)
{
	struct b2b_call *call = b2b_call_by_id(r->id);
	if (!call) {
		ctl_reply_error(token, 404, "not_found", "no call in progress has that id", NULL);
	} else if (!r->transfer) {
		b2b_call_hangup(call, 16, "hung up by the API");
		ctl_reply(token, 204, NULL, NULL, 0);
	} else {
		const char *why = NULL;
		int code = b2b_xfer_start(call, r->queue, r->reason, r->summary, "api", &why);
		if (code) {
			ctl_reply_error(token, (unsigned)code,
			                code == 404 ? "not_found" : "conflict", why,
			                code == 404 ? "queue" : NULL);
		} else {
			char body[200];
			int n = snprintf(body, sizeof(body),
			                 "{\"id\":\"%s\",\"status\":\"transferring\"}", r->id);
			char *b = mem_strdup(body);
			if (b)
				ctl_reply(token, 202, NULL, b, (size_t)n);
			else
				ctl_reply_error(token, 500, "internal", "out of memory", NULL);
		}
	}
	mem_free(r);
}

/* ---- GET /v1/trunks, POST /v1/admin/drain ---- */

static void on_trunks(struct ctl_request *rq, void *arg)
{
	(void)arg;
	post_or_busy(API_TRUNKS, ctl_req_token(rq), NULL);
}

static void on_drain(struct ctl_request *rq, void *arg)
{
	(void)arg;
	post_or_busy(API_DRAIN, ctl_req_token(rq), NULL);
}

static void reply_json(uint64_t token, unsigned code, json_t *o)
{
	size_t len;
	char *body = api_json_body(o, &len);
	if (body)
		ctl_reply(token, code, NULL, body, len);
	else
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
}

/* The trunks as the sip thread sees them: nodes up or down (OPTIONS), registration,
 * calls in progress. */
static void do_trunks(uint64_t token)
{
	static const char *const transports[] = {"udp", "tcp", "tls"};
	json_t *arr = json_array();
	for (size_t i = 0; i < b2b_g.n_trunks; i++) {
		const struct b2b_trunk_rt *rt = &b2b_g.trunks[i];
		const struct conf_trunk *t = rt->t;
		json_t *nodes = json_array();
		unsigned up = 0;
		for (size_t k = 0; k < t->n_nodes && k < B2B_MAX_NODES; k++) {
			up += rt->nodes[k].up != 0;
			json_array_append_new(nodes, json_pack("{s:s, s:i, s:i, s:b}", "host",
			                                       t->nodes[k].host, "port",
			                                       (int)t->nodes[k].port, "priority",
			                                       (int)t->nodes[k].priority, "up",
			                                       rt->nodes[k].up != 0));
		}
		json_t *reg = t->register_enable
		                  ? json_pack("{s:b, s:i}", "registered", rt->registered != 0,
		                              "failures", (int)rt->reg_failures)
		                  : json_null();
		json_array_append_new(
		    arr,
		    json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:o, s:o}", "name", t->name, "type",
		              t->type == CONF_TRUNK_CUCM ? "cucm" : "carrier", "transport",
		              (unsigned)t->transport < 3 ? transports[t->transport] : "?", "status",
		              up == t->n_nodes ? "up"
		              : up             ? "degraded"
		                               : "down",
		              "active_calls", (int)rt->active_calls, "max_calls", (int)t->max_calls,
		              "registration", reg, "nodes", nodes));
	}
	reply_json(token, 200,
	           json_pack("{s:o, s:b, s:i}", "trunks", arr, "draining", b2b_g.draining != 0,
	                     "calls", (int)b2b_g.n_calls));
}

static void do_drain(uint64_t token)
{
	b2b_drain_start("the API");
	reply_json(token, 202,
	           json_pack("{s:s, s:i}", "status", "draining", "calls", (int)b2b_g.n_calls));
}

/* ---- POST /webhooks/vapi ---- */

static const char *hook_header(void *ctx, const char *name, char *buf, size_t len)
{
	return ctl_req_header(ctx, name, buf, len);
}

static void on_vapi_hook(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	const char *why = NULL;
	if (vapi_hook_verify(&api.hook, hook_header, rq, body, len, (uint64_t)time(NULL), &why)) {
		metric_inc(api.m_hook[HOOK_UNAUTHORIZED]);
		if (log_ratelimit_ok(&api.rl))
			log_warn("vapi", "webhook from %s refused: %s", ctl_req_peer(rq),
			         why ? why : "?");
		ctl_reply_error(token, 401, "unauthorized", why ? why : "bad credential", NULL);
		return;
	}
	struct vapi_hook_msg *m = mem_zalloc(sizeof(*m));
	if (!m) {
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		return;
	}
	int rc = vapi_hook_parse(body, len, m, &why);
	if (rc) {
		mem_free(m);
		metric_inc(api.m_hook[HOOK_MALFORMED]);
		if (log_ratelimit_ok(&api.rl))
			log_warn("vapi", "webhook from %s malformed: %s", ctl_req_peer(rq),
			         why ? why : strerror(-rc));
		if (rc == -ENOMEM)
			ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		else
			ctl_reply_error(token, 400, "invalid_body", why ? why : "malformed", NULL);
		return;
	}
	post_or_busy(API_HOOK, token, m);
}

static void do_hook(uint64_t token, struct vapi_hook_msg *m)
{
	char *answer = NULL;
	size_t len = 0;
	metric_inc(api.m_hook[HOOK_OK]);
	char name[96];
	snprintf(name, sizeof(name), "vacs_vapi_webhooks_total{type=\"%s\"}",
	         m->type == VAPI_HOOK_OTHER ? "other" : m->type_name);
	metric_inc(metric_get(METRIC_COUNTER, name, "VAPI server messages received, by type"));
	int code = b2b_call_hook(m, &answer, &len);
	if (!answer) {
		answer = mem_strdup("{}");
		len = answer ? 2 : 0;
	}
	if (code != 200) {
		mem_free(answer);
		ctl_reply_error(token, (unsigned)code, "unavailable",
		                "could not store the message: retry later", NULL);
	} else if (answer) {
		ctl_reply(token, 200, NULL, answer, len);
	} else {
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
	}
	msg_free(API_HOOK, m);
}

/* ---- set-up, and the sip thread's side ---- */

static char *keep(unsigned i, const char *s)
{
	api.hook_strs[i] = s && s[0] ? mem_strdup(s) : NULL;
	return api.hook_strs[i];
}

int b2b_api_init(const struct conf *cfg)
{
	int rc = mbox_create(&api.mb, sizeof(struct api_msg), 256);
	if (rc)
		return rc;
	for (unsigned i = 0; i < 4; i++) {
		char name[96];
		snprintf(name, sizeof(name), "vacs_vapi_webhooks_total{result=\"%s\"}",
		         hook_results[i]);
		api.m_hook[i] =
		    metric_get(METRIC_COUNTER, name, "VAPI server messages received, by result");
		if (!api.m_hook[i])
			return -ENOMEM;
	}
	if (!cfg->http.port)
		return 0;
	rc = ctl_route_add("POST", "/v1/calls", CTL_SCOPE_CALLS | CTL_IDEMPOTENT, ORIG_MAX_BODY,
	                   10000, on_calls, NULL);
	if (!rc)
		rc = ctl_route_add("POST", "/v1/calls/", CTL_SCOPE_CALLS, ORIG_MAX_BODY, 10000,
		                   on_call_action, NULL);
	if (!rc)
		rc = ctl_route_add("DELETE", "/v1/calls/scheduled/", CTL_SCOPE_CALLS, 0, 10000,
		                   on_cancel, NULL);
	if (!rc)
		rc = ctl_route_add("GET", "/v1/trunks", CTL_SCOPE_READ, 0, 5000, on_trunks, NULL);
	if (!rc)
		rc = ctl_route_add("POST", "/v1/admin/drain", CTL_SCOPE_ADMIN, 1024, 5000, on_drain,
		                   NULL);
	if (rc)
		return rc;
	const struct conf_vapi_webhook *w = &cfg->vapi.webhook;
	if (!w->secret || !w->secret[0]) {
		log_info("main", "vapi.webhook.secret_env not set: /webhooks/vapi is off");
		return 0;
	}
	api.hook.auth = w->auth == 2 ? VAPI_HOOK_HMAC : VAPI_HOOK_BEARER;
	api.hook.secret = keep(0, w->secret);
	api.hook.header = keep(1, w->header);
	api.hook.bearer_prefix = w->bearer_prefix;
	api.hook.algorithm = keep(2, w->algorithm);
	api.hook.signature_header = keep(3, w->signature_header);
	api.hook.timestamp_header = keep(4, w->timestamp_header);
	api.hook.signature_prefix = keep(5, w->signature_prefix);
	api.hook.include_timestamp = w->include_timestamp;
	api.hook.base64 = w->base64;
	api.hook.max_skew_s = w->max_skew_s;
	if (!api.hook.secret)
		return -ENOMEM;
	rc = ctl_route_add("POST", "/webhooks/vapi", 0, w->max_body, w->answer_timeout_ms,
	                   on_vapi_hook, NULL);
	if (rc)
		return rc;
	log_info("main", "VAPI webhooks at /webhooks/vapi (%s)",
	         api.hook.auth == VAPI_HOOK_HMAC ? "hmac" : "bearer");
	return 0;
}

int b2b_api_fd(void)
{
	return api.mb ? mbox_fd(api.mb) : -1;
}

void b2b_api_poll(void)
{
	if (!api.mb)
		return;
	mbox_drain_fd(api.mb);
	struct api_msg m;
	while (mbox_take(api.mb, &m) == 0) { /* bounded by the mailbox's capacity */
		if (m.kind == API_ORIGINATE)
			do_originate(m.token, m.ptr);
		else if (m.kind == API_ACTION)
			do_action(m.token, m.ptr);
		else if (m.kind == API_TRUNKS)
			do_trunks(m.token);
		else if (m.kind == API_DRAIN)
			do_drain(m.token);
		else if (m.kind == API_DIAL)
			do_dial(m.ptr);
		else
			do_hook(m.token, m.ptr);
	}
}

void b2b_api_close(void)
{
	struct api_msg m;
	while (api.mb && mbox_take(api.mb, &m) == 0)
		msg_free(m.kind, m.ptr);
	mbox_destroy(api.mb);
	for (unsigned i = 0; i < 6; i++)
		mem_free(api.hook_strs[i]);
	memset(&api, 0, sizeof(api));
}
