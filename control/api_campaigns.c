/* The campaign routes of the /v1 API (create, list, read with progress, update, delete,
 * start, pause), GET /v1/stats, and what they share with the lead routes (api_leads.c):
 * phone numbers by country, keyset pages, path ids. */
#include "control/api_campaigns.h"
#include "control/api_campaigns_int.h"
#include "control/api_util.h"
#include "control/control.h"

#include "conf/conf.h"
#include "core/clock.h"
#include "core/mem.h"
#include "core/strbuf.h"
#include "db/db.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Threads: handlers run on the http thread; they check the request, build a
 * parameterised statement (column names only from the static tables below, values only
 * as parameters) and hand it to db_query. The callback runs on the db thread, builds the
 * answer and calls ctl_reply. Nothing here keeps state between requests.
 */

int (*api_normalise)(const struct conf_numbering *n, const char *in, char *out, size_t outlen);

/* ---- numbers by country ---- */

/* How national numbers are written in the countries campaigns call most. */
static const struct country {
	char iso[3];
	const char *cc, *national_prefix, *international_prefix;
	unsigned national_length; /* 0 = varies: only numbers with the prefix are read */
} countries[] = {
    {"CA", "1", "1", "011", 10}, {"CL", "56", "", "00", 9},  {"CO", "57", "", "00", 10},
    {"DE", "49", "0", "00", 0},  {"ES", "34", "", "00", 9},  {"FR", "33", "0", "00", 9},
    {"GB", "44", "0", "00", 10}, {"MX", "52", "", "00", 10}, {"NL", "31", "0", "00", 9},
    {"US", "1", "1", "011", 10},
};
#define N_COUNTRIES (sizeof(countries) / sizeof(countries[0]))

static const struct country *country_find(const char *iso)
{
	for (size_t i = 0; iso && i < N_COUNTRIES; i++) {
		if (strcmp(countries[i].iso, iso) == 0)
			return &countries[i];
	}
	return NULL;
}

int api_country_ok(const char *iso)
{
	return country_find(iso) != NULL;
}

const char *api_country_list(void)
{
	return "CA, CL, CO, DE, ES, FR, GB, MX, NL, US";
}

int api_phone(const char *in, const char *country, const char *field, char *out, size_t len,
              struct api_err *e)
{
	struct conf_numbering n;
	memset(&n, 0, sizeof(n));
	const struct country *c = country_find(country);
	if (c) {
		n.country_code = (char *)c->cc;
		n.national_prefix = (char *)c->national_prefix;
		n.international_prefix = (char *)c->international_prefix;
		n.national_length = c->national_length;
	}
	int rc = api_normalise ? api_normalise(&n, in, out, len) : -EINVAL;
	if (rc == 1)
		return 0;
	if (rc == 0 && !c)
		return api_fail(e, 400, "invalid_field", field,
		                "%s \"%.40s\" is not in international form (+ and country code): "
		                "give the country (campaign country or ?country=)",
		                field, in);
	return api_fail(e, 400, "invalid_field", field,
	                "%s \"%.40s\" is not a phone number that can be called%s%s", field, in,
	                c ? " in " : "", c ? c->iso : "");
}

/* ---- requests, pages, paths ---- */

struct api_q *api_q_new(uint64_t token, const char *key, const char *what)
{
	struct api_q *q = mem_zalloc(sizeof(*q));
	if (!q) {
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
		return NULL;
	}
	q->token = token;
	q->key = key;
	q->what = what;
	q->ok_code = 200;
	return q;
}

int api_q_run(struct api_q *q, const char *sql, const char *const *params, int n,
              void (*cb)(void *, int, json_t *))
{
	int rc = db_query(sql, params, n, cb, q);
	if (!rc)
		return 0;
	api_reply_store(q->token, rc);
	mem_free(q);
	return -1;
}

void api_q_list_cb(void *arg, int rc, json_t *rows)
{
	struct api_q *q = arg;
	if (rc) {
		api_reply_store(q->token, rc);
		mem_free(q);
		return;
	}
	json_t *next = json_null();
	size_t n = json_array_size(rows);
	if (n > (size_t)q->limit) {
		n = (size_t)q->limit;
		json_t *last = json_array_get(rows, n - 1);
		char cur[128];
		snprintf(cur, sizeof(cur), "%" JSON_INTEGER_FORMAT "_%s",
		         json_integer_value(json_object_get(last, "cur_us")),
		         json_string_value(json_object_get(last, "cur_id"))
		             ? json_string_value(json_object_get(last, "cur_id"))
		             : "");
		next = json_string(cur);
	}
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append(list, json_object_get(json_array_get(rows, i), "obj"));
	json_decref(rows);
	api_reply_json(q->token, 200, json_pack("{s:o, s:o}", q->key, list, "next", next));
	mem_free(q);
}

void api_q_one_cb(void *arg, int rc, json_t *rows)
{
	struct api_q *q = arg;
	json_t *obj = json_object_get(json_array_get(rows, 0), "obj");
	if (rc) {
		api_reply_store(q->token, rc);
	} else if (!obj || json_is_null(obj)) {
		char msg[120];
		snprintf(msg, sizeof(msg), "no %s %s", q->what, q->id);
		ctl_reply_error(q->token, 404, "not_found", msg, "id");
	} else {
		api_reply_json(q->token, q->ok_code, json_incref(obj));
	}
	json_decref(rows);
	mem_free(q);
}

int api_cursor_parse(const char *s, char *us, size_t uslen, char *id, size_t idlen,
                     struct api_err *e)
{
	const char *u = strchr(s, '_');
	size_t n = u ? (size_t)(u - s) : 0;
	int ok = u && n && n < uslen && strlen(u + 1) < idlen && api_id_ok(u + 1);
	for (size_t i = 0; ok && i < n; i++)
		ok = s[i] >= '0' && s[i] <= '9';
	if (!ok)
		return api_fail(e, 400, "invalid_field", "after",
		                "after must be the \"next\" value of a previous page");
	memcpy(us, s, n);
	us[n] = '\0';
	memcpy(id, u + 1, strlen(u + 1) + 1);
	return 0;
}

int api_q_page(struct ctl_request *rq, struct api_q *q, char *us, size_t uslen, char *id,
               size_t idlen, struct api_err *e)
{
	long long limit;
	char buf[160];
	const char *after;
	us[0] = id[0] = '\0';
	if (api_query_int(rq, "limit", 1, API_LIST_MAX, API_LIST_DEFAULT, &limit, e) ||
	    api_query(rq, "after", buf, sizeof(buf), &after, e))
		return -1;
	q->limit = (int)limit;
	if (after && api_cursor_parse(after, us, uslen, id, idlen, e))
		return -1;
	return 0;
}

int api_path_id(struct ctl_request *rq, const char *prefix, const char *what, char *id,
                size_t idlen, const char **rest)
{
	const char *p = ctl_req_path(rq) + strlen(prefix);
	const char *slash = strchr(p, '/');
	size_t n = slash ? (size_t)(slash - p) : strlen(p);
	char msg[96];
	if (n && n < idlen && n <= 64) {
		memcpy(id, p, n);
		id[n] = '\0';
		if (api_id_ok(id)) {
			*rest = p + n;
			return 0;
		}
	}
	snprintf(msg, sizeof(msg), "no such %s", what);
	ctl_reply_error(ctl_req_token(rq), 404, "not_found", msg, "id");
	return -1;
}

/* ---- campaign fields ---- */

#define CAMP_OBJ                                                                                   \
	"json_build_object('id', c.id, 'name', c.name, 'status', c.status, 'assistant',"           \
	" c.assistant, 'caller_id', c.caller_id, 'trunk', c.trunk, 'country', c.country,"          \
	" 'max_concurrent', c.max_concurrent, 'calls_per_second', c.calls_per_s, 'timezone',"      \
	" c.timezone, 'calling_hours', c.calling_hours, 'retry_policy', c.retry_policy,"           \
	" 'max_attempts', c.max_attempts, 'amd_action', c.amd_action, 'amd_prompt',"               \
	" c.amd_prompt, 'created_at', " API_ISO("c.created_at") ", 'updated_at', " API_ISO(        \
	    "c.updated_at") ")"

static const struct api_col camp_cols[] = {
    {"id", "text"},
    {"name", "text"},
    {"assistant", "text"},
    {"caller_id", "text"},
    {"trunk", "text"},
    {"country", "text"},
    {"max_concurrent", "integer"},
    {"calls_per_s", "numeric"},
    {"timezone", "text"},
    {"calling_hours", "jsonb"},
    {"retry_policy", "jsonb"},
    {"max_attempts", "integer"},
    {"amd_action", "text"},
    {"amd_prompt", "text"},
    {NULL, NULL},
};

static const char *const weekdays[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun", NULL};

/* "HH:MM" -> minutes since midnight; "24:00" only when allow24. -1 when malformed. */
static int hhmm(const char *s, int allow24)
{
	return clock_hhmm(s, allow24 ? 24 * 60 : 24 * 60 - 1);
}

/* calling_hours: [{days: ["mon", ...], start: "09:00", end: "18:00"}, ...] (local time of
 * the lead, else the campaign's timezone). [] = any time. */
static int check_hours(json_t *v, json_t *clean, struct api_err *e)
{
	static const char *const known[] = {"days", "start", "end", NULL};
	if (!json_is_array(v) || json_array_size(v) > 14)
		return api_fail(e, 400, "invalid_field", "calling_hours",
		                "calling_hours must be an array of at most 14 windows "
		                "{\"days\":[\"mon\",...],\"start\":\"09:00\",\"end\":\"18:00\"}");
	json_t *out = json_array();
	size_t i;
	json_t *w;
	json_array_foreach(v, i, w)
	{
		char pre[40], f[48];
		snprintf(pre, sizeof(pre), "calling_hours[%zu].", i);
		const char *start, *end;
		if (!json_is_object(w)) {
			snprintf(f, sizeof(f), "calling_hours[%zu]", i);
			api_fail(e, 400, "invalid_field", f,
			         "%s must be an object {days, start, end}", f);
			goto fail;
		}
		if (api_known_fields(w, known, pre, e))
			goto fail;
		snprintf(f, sizeof(f), "%sstart", pre);
		if (api_get_str(w, "start", f, API_REQUIRED, 5, 5, &start, e) < 0)
			goto fail;
		if (hhmm(start, 0) < 0) {
			api_fail(e, 400, "invalid_field", f,
			         "%s must be a time HH:MM (00:00 to 23:59)", f);
			goto fail;
		}
		snprintf(f, sizeof(f), "%send", pre);
		if (api_get_str(w, "end", f, API_REQUIRED, 5, 5, &end, e) < 0)
			goto fail;
		if (hhmm(end, 1) <= hhmm(start, 0)) {
			api_fail(e, 400, "invalid_field", f,
			         "%s must be a time HH:MM after start (24:00 = midnight)", f);
			goto fail;
		}
		snprintf(f, sizeof(f), "%sdays", pre);
		json_t *days = json_object_get(w, "days");
		if (!days) {
			api_fail(e, 400, "missing_field", f, "%s is required", f);
			goto fail;
		}
		unsigned seen = 0;
		size_t k;
		json_t *d;
		int ok = json_is_array(days) && json_array_size(days) > 0;
		json_array_foreach(days, k, d)
		{
			size_t wd = 0;
			while (
			    ok && weekdays[wd] &&
			    !(json_is_string(d) && strcmp(weekdays[wd], json_string_value(d)) == 0))
				wd++;
			ok = ok && weekdays[wd] && !(seen & (1u << wd));
			if (ok)
				seen |= 1u << wd;
		}
		if (!ok) {
			api_fail(e, 400, "invalid_field", f,
			         "%s must be a non-empty array of distinct days \"mon\" .. \"sun\"",
			         f);
			goto fail;
		}
		json_t *days_out = json_array();
		for (size_t wd = 0; weekdays[wd]; wd++) {
			if (seen & (1u << wd))
				json_array_append_new(days_out, json_string(weekdays[wd]));
		}
		json_array_append_new(out, json_pack("{s:o, s:s, s:s}", "days", days_out, "start",
		                                     start, "end", end));
	}
	json_object_set_new(clean, "calling_hours", out);
	return 0;
fail:
	json_decref(out);
	return -1;
}

/* retry_policy: {no_answer|busy|failed|machine: {max_attempts, backoff_s}}. */
static int check_retry(json_t *v, json_t *clean, struct api_err *e)
{
	static const char *const outcomes[] = {"no_answer", "busy", "failed", "machine", NULL};
	static const char *const known[] = {"max_attempts", "backoff_s", NULL};
	if (!json_is_object(v))
		return api_fail(e, 400, "invalid_field", "retry_policy",
		                "retry_policy must be an object {\"no_answer\": {\"max_attempts\": "
		                "3, \"backoff_s\": 3600}, \"busy\": ..., \"failed\": ..., "
		                "\"machine\": ...}");
	if (api_known_fields(v, outcomes, "retry_policy.", e))
		return -1;
	json_t *out = json_object();
	for (size_t i = 0; outcomes[i]; i++) {
		json_t *o = json_object_get(v, outcomes[i]);
		char pre[40], f[56];
		long long max, backoff;
		if (!o)
			continue;
		snprintf(pre, sizeof(pre), "retry_policy.%s.", outcomes[i]);
		if (!json_is_object(o)) {
			snprintf(f, sizeof(f), "retry_policy.%s", outcomes[i]);
			api_fail(e, 400, "invalid_field", f,
			         "%s must be an object {max_attempts, backoff_s}", f);
			goto fail;
		}
		if (api_known_fields(o, known, pre, e))
			goto fail;
		snprintf(f, sizeof(f), "%smax_attempts", pre);
		if (api_get_int(o, "max_attempts", f, API_REQUIRED, 0, 20, &max, e) < 0)
			goto fail;
		snprintf(f, sizeof(f), "%sbackoff_s", pre);
		if (api_get_int(o, "backoff_s", f, API_REQUIRED, 0, 7 * 86400, &backoff, e) < 0)
			goto fail;
		json_object_set_new(out, outcomes[i],
		                    json_pack("{s:I, s:I}", "max_attempts", (json_int_t)max,
		                              "backoff_s", (json_int_t)backoff));
	}
	json_object_set_new(clean, "retry_policy", out);
	return 0;
fail:
	json_decref(out);
	return -1;
}

/* A nullable string member into clean[col]: the value, or null when null was given. */
static void put_str(json_t *clean, const char *col, json_t *j, const char *name, int rc,
                    const char *s)
{
	if (rc > 0)
		json_object_set_new(clean, col, json_string(s));
	else if (api_is_null(j, name))
		json_object_set_new(clean, col, json_null());
}

/* Checks a campaign body (create: name required, id allowed) into clean, keyed by column. */
static int campaign_check(json_t *j, int create, json_t *clean, struct api_err *e)
{
	static const char *const known[] = {
	    "id",           "name",           "assistant",        "caller_id",  "trunk",
	    "country",      "max_concurrent", "calls_per_second", "timezone",   "calling_hours",
	    "retry_policy", "max_attempts",   "amd_action",       "amd_prompt", NULL};
	static const char *const amd[] = {"hangup", "message", "ai", NULL};
	const char *s;
	long long i;
	double d;
	int rc;
	if (json_object_get(j, "status"))
		return api_fail(e, 400, "invalid_field", "status",
		                "status changes with POST /v1/campaigns/{id}/start and /pause");
	if (!create && json_object_get(j, "id"))
		return api_fail(e, 400, "invalid_field", "id", "id cannot be changed");
	if (api_known_fields(j, known, NULL, e))
		return -1;
	if ((rc = api_get_str(j, "id", NULL, 0, 1, 64, &s, e)) < 0)
		return -1;
	if (rc && !api_id_ok(s))
		return api_fail(e, 400, "invalid_field", "id",
		                "id must be 1 to 64 characters among A-Z a-z 0-9 _ . : -");
	put_str(clean, "id", j, "id", rc, s);
	if ((rc = api_get_str(j, "name", NULL, create ? API_REQUIRED : 0, 1, 200, &s, e)) < 0)
		return -1;
	put_str(clean, "name", j, "name", rc, s);
	if ((rc = api_get_str(j, "assistant", NULL, API_NULLABLE, 1, 128, &s, e)) < 0)
		return -1;
	put_str(clean, "assistant", j, "assistant", rc, s);
	if ((rc = api_get_str(j, "caller_id", NULL, API_NULLABLE, 1, 40, &s, e)) < 0)
		return -1;
	char e164[24];
	if (rc && api_phone(s, NULL, "caller_id", e164, sizeof(e164), e))
		return api_fail(e, 400, "invalid_field", "caller_id",
		                "caller_id must be an E.164 number (+ and 7 to 15 digits)");
	put_str(clean, "caller_id", j, "caller_id", rc, e164);
	if ((rc = api_get_str(j, "trunk", NULL, API_NULLABLE, 1, 64, &s, e)) < 0)
		return -1;
	put_str(clean, "trunk", j, "trunk", rc, s);
	if ((rc = api_get_str(j, "country", NULL, API_NULLABLE, 2, 2, &s, e)) < 0)
		return -1;
	if (rc && !api_country_ok(s))
		return api_fail(e, 400, "invalid_field", "country", "country must be one of %s",
		                api_country_list());
	put_str(clean, "country", j, "country", rc, s);
	if ((rc = api_get_int(j, "max_concurrent", NULL, 0, 1, 10000, &i, e)) < 0)
		return -1;
	if (rc)
		json_object_set_new(clean, "max_concurrent", json_integer(i));
	if ((rc = api_get_num(j, "calls_per_second", NULL, 0, 0, 1, 1000, &d, e)) < 0)
		return -1;
	if (rc)
		json_object_set_new(clean, "calls_per_s", json_real(d));
	if ((rc = api_get_str(j, "timezone", NULL, 0, 1, 64, &s, e)) < 0)
		return -1;
	if (rc && !api_tz_ok(s))
		return api_fail(
		    e, 400, "invalid_field", "timezone",
		    "timezone must be an IANA time zone name (\"America/Mexico_City\")");
	put_str(clean, "timezone", j, "timezone", rc, s);
	json_t *v = json_object_get(j, "calling_hours");
	if (v && check_hours(v, clean, e))
		return -1;
	v = json_object_get(j, "retry_policy");
	if (v && check_retry(v, clean, e))
		return -1;
	if ((rc = api_get_int(j, "max_attempts", NULL, 0, 1, 100, &i, e)) < 0)
		return -1;
	if (rc)
		json_object_set_new(clean, "max_attempts", json_integer(i));
	if ((rc = api_get_enum(j, "amd_action", NULL, 0, amd, &s, e)) < 0)
		return -1;
	put_str(clean, "amd_action", j, "amd_action", rc, s);
	if ((rc = api_get_str(j, "amd_prompt", NULL, API_NULLABLE, 1, 4000, &s, e)) < 0)
		return -1;
	put_str(clean, "amd_prompt", j, "amd_prompt", rc, s);
	return 0;
}

/* Runs `sql` with $1 = clean as JSON text, or ($1 = id, $2 = clean) when id is given,
 * and answers through cb. */
static void run_with_clean(uint64_t token, const char *sql, const char *id, json_t *clean,
                           unsigned ok_code, void (*cb)(void *, int, json_t *))
{
	char *cj = json_dumps(clean, JSON_COMPACT);
	struct api_q *q = cj ? api_q_new(token, NULL, "campaign") : NULL;
	if (!cj)
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
	if (q) {
		const char *params[2] = {id ? id : cj, cj};
		q->ok_code = ok_code;
		snprintf(q->id, sizeof(q->id), "%s", id ? id : "");
		api_q_run(q, sql, params, id ? 2 : 1, cb);
	}
	free(cj);
}

/* ---- POST /v1/campaigns ---- */

static void on_create_rows(void *arg, int rc, json_t *rows)
{
	struct api_q *q = arg;
	if (!rc && !json_is_object(json_object_get(json_array_get(rows, 0), "obj"))) {
		/* ON CONFLICT DO NOTHING: the client's id is taken */
		ctl_reply_error(q->token, 409, "conflict", "a campaign with this id exists", "id");
		json_decref(rows);
		mem_free(q);
		return;
	}
	api_q_one_cb(arg, rc, rows);
}

static void on_create(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	struct api_err e;
	json_t *j = api_body_object(rq, &e);
	json_t *clean = json_object();
	struct strbuf sb;
	str_init(&sb);
	if (!j || campaign_check(j, 1, clean, &e)) {
		api_reply_err(token, &e);
		goto out;
	}
	str_puts(&sb, "WITH c AS (INSERT INTO campaigns ");
	api_sql_cols(&sb, camp_cols, clean, 1, 0);
	str_puts(&sb, " ON CONFLICT (id) DO NOTHING RETURNING *) SELECT (SELECT " CAMP_OBJ
	              " FROM c) AS obj");
	if (sb.oom)
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
	else
		run_with_clean(token, sb.p, NULL, clean, 201, on_create_rows);
out:
	str_deinit(&sb);
	json_decref(clean);
	json_decref(j);
}

/* ---- GET /v1/campaigns ---- */

static void on_list(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const known[] = {"limit", "after", "status", NULL};
	static const char *const statuses[] = {"draft", "running", "paused", "done", NULL};
	uint64_t token = ctl_req_token(rq);
	struct api_err e;
	char us[24], id[72], st[16];
	struct api_q *q = api_q_new(token, "campaigns", "campaign");
	if (!q)
		return;
	const char *status = NULL;
	int bad = api_query(rq, "status", st, sizeof(st), &status, &e);
	size_t k = 0;
	while (status && statuses[k] && strcmp(statuses[k], status) != 0)
		k++;
	if (bad || api_query_known(rq, known, &e) ||
	    api_q_page(rq, q, us, sizeof(us), id, sizeof(id), &e) ||
	    (status && !statuses[k] &&
	     api_fail(&e, 400, "invalid_field", "status",
	              "status must be draft, running, paused or done"))) {
		api_reply_err(token, &e);
		mem_free(q);
		return;
	}
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", q->limit + 1);
	const char *params[4] = {status, us[0] ? us : NULL, us[0] ? id : NULL, lim};
	api_q_run(q,
	          "SELECT " CAMP_OBJ " AS obj, " API_CURSOR_US(
	              "c.created_at") " AS cur_us,"
	                              " c.id AS cur_id FROM campaigns c WHERE ($1::text IS NULL OR "
	                              "c.status = $1)"
	                              " AND ($2::bigint IS NULL OR (c.created_at, c.id) < "
	                              "(timestamptz 'epoch' +"
	                              " $2::bigint * interval '1 microsecond', $3::text))"
	                              " ORDER BY c.created_at DESC, c.id DESC LIMIT $4::int",
	          params, 4, api_q_list_cb);
}

/* ---- GET/PATCH/DELETE /v1/campaigns/{id}, POST .../start|pause|leads ---- */

static void on_get(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	char id[72];
	const char *rest;
	if (api_path_id(rq, "/v1/campaigns/", "campaign", id, sizeof(id), &rest))
		return;
	if (rest[0]) {
		ctl_reply_error(token, 404, "not_found", "no such resource", NULL);
		return;
	}
	struct api_q *q = api_q_new(token, NULL, "campaign");
	if (!q)
		return;
	snprintf(q->id, sizeof(q->id), "%s", id);
	const char *params[1] = {id};
	api_q_run(q,
	          "SELECT " CAMP_OBJ "::jsonb || jsonb_build_object('progress', jsonb_build_object("
	          "'leads_total', (SELECT count(*) FROM leads WHERE campaign_id = c.id),"
	          " 'leads', (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM (SELECT"
	          " status, count(*) AS n FROM leads WHERE campaign_id = c.id GROUP BY status) s),"
	          " 'jobs', (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM (SELECT"
	          " status, count(*) AS n FROM call_jobs WHERE campaign_id = c.id GROUP BY status)"
	          " s))) AS obj FROM campaigns c WHERE c.id = $1",
	          params, 1, api_q_one_cb);
}

static void on_patch(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	char id[72];
	const char *rest;
	if (api_path_id(rq, "/v1/campaigns/", "campaign", id, sizeof(id), &rest))
		return;
	if (rest[0]) {
		ctl_reply_error(token, 404, "not_found", "no such resource", NULL);
		return;
	}
	struct api_err e;
	json_t *j = api_body_object(rq, &e);
	json_t *clean = json_object();
	struct strbuf sb;
	str_init(&sb);
	if (!j || campaign_check(j, 0, clean, &e)) {
		api_reply_err(token, &e);
		goto out;
	}
	str_puts(&sb, "WITH c AS (UPDATE campaigns SET ");
	if (api_sql_cols(&sb, camp_cols, clean, 2, 1) > 0)
		str_puts(&sb, ", ");
	str_puts(&sb,
	         "updated_at = now() WHERE id = $1 RETURNING *) SELECT " CAMP_OBJ " AS obj FROM c");
	if (sb.oom)
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
	else
		run_with_clean(token, sb.p, id, clean, 200, api_q_one_cb);
out:
	str_deinit(&sb);
	json_decref(clean);
	json_decref(j);
}

static void on_delete_rows(void *arg, int rc, json_t *rows)
{
	struct api_q *q = arg;
	json_t *row = json_array_get(rows, 0);
	const char *old = json_string_value(json_object_get(row, "old"));
	if (rc) {
		api_reply_store(q->token, rc);
	} else if (!old) {
		char msg[120];
		snprintf(msg, sizeof(msg), "no campaign %s", q->id);
		ctl_reply_error(q->token, 404, "not_found", msg, "id");
	} else if (json_integer_value(json_object_get(row, "deleted")) == 0) {
		ctl_reply_error(q->token, 409, "conflict",
		                "the campaign is running: pause it before deleting it", NULL);
	} else {
		ctl_reply(q->token, 204, NULL, NULL, 0);
	}
	json_decref(rows);
	mem_free(q);
}

static void on_delete(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	char id[72];
	const char *rest;
	if (api_path_id(rq, "/v1/campaigns/", "campaign", id, sizeof(id), &rest))
		return;
	if (rest[0]) {
		ctl_reply_error(token, 404, "not_found", "no such resource", NULL);
		return;
	}
	struct api_q *q = api_q_new(token, NULL, "campaign");
	if (!q)
		return;
	snprintf(q->id, sizeof(q->id), "%s", id);
	const char *params[1] = {id};
	api_q_run(q,
	          "WITH cur AS (SELECT status FROM campaigns WHERE id = $1),"
	          " d AS (DELETE FROM campaigns WHERE id = $1 AND status <> 'running' RETURNING id)"
	          " SELECT (SELECT status FROM cur) AS old, (SELECT count(*) FROM d) AS deleted",
	          params, 1, on_delete_rows);
}

struct move {
	const char *verb; /* "start" */
	const char *to;   /* new status */
	const char *from; /* statuses it may come from, as a PostgreSQL array */
};
static const struct move moves[] = {
    {"start", "running", "{draft,paused}"},
    {"pause", "paused", "{running}"},
};

static void on_move_rows(void *arg, int rc, json_t *rows)
{
	struct api_q *q = arg;
	json_t *row = json_array_get(rows, 0);
	const char *old = json_string_value(json_object_get(row, "old"));
	json_t *obj = json_object_get(row, "obj");
	int start = strcmp(q->key, "start") == 0;
	if (rc || !old || json_is_object(obj)) {
		api_q_one_cb(arg, rc, rows);
		return;
	}
	char msg[160];
	if (strcmp(old, "done") == 0)
		snprintf(msg, sizeof(msg), "the campaign is done: it cannot be %s",
		         start ? "started again" : "paused");
	else if (start)
		snprintf(msg, sizeof(msg), "the campaign is already running");
	else if (strcmp(old, "paused") == 0)
		snprintf(msg, sizeof(msg), "the campaign is already paused");
	else
		snprintf(msg, sizeof(msg), "the campaign is %s, not running: start it first", old);
	ctl_reply_error(q->token, 409, "conflict", msg, "status");
	json_decref(rows);
	mem_free(q);
}

static void on_post_sub(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	char id[72];
	const char *rest;
	if (api_path_id(rq, "/v1/campaigns/", "campaign", id, sizeof(id), &rest))
		return;
	if (strcmp(rest, "/leads") == 0) {
		api_leads_import(rq, id);
		return;
	}
	const struct move *m = NULL;
	for (size_t i = 0; i < sizeof(moves) / sizeof(moves[0]); i++) {
		if (rest[0] == '/' && strcmp(rest + 1, moves[i].verb) == 0)
			m = &moves[i];
	}
	if (!m) {
		ctl_reply_error(token, 404, "not_found",
		                "no such resource: POST /v1/campaigns/{id}/start, /pause or /leads",
		                NULL);
		return;
	}
	struct api_q *q = api_q_new(token, m->verb, "campaign");
	if (!q)
		return;
	snprintf(q->id, sizeof(q->id), "%s", id);
	const char *params[3] = {id, m->to, m->from};
	api_q_run(q,
	          "WITH cur AS (SELECT status FROM campaigns WHERE id = $1),"
	          " c AS (UPDATE campaigns SET status = $2, updated_at = now() WHERE id = $1 AND"
	          " status = ANY ($3::text[]) RETURNING *)"
	          " SELECT (SELECT status FROM cur) AS old, (SELECT " CAMP_OBJ " FROM c) AS obj",
	          params, 3, on_move_rows);
}

/* ---- GET /v1/stats ---- */

/* The group key of a lead for ?group_by= ($4): its source, the Click-to-WhatsApp ad id of its
 * referral (wa/ keeps Meta's referral object in attributes->'referral', source_id is the ad),
 * or its campaign; '' when the lead has none (answered as key null). */
#define STATS_KEY(x)                                                                               \
	"coalesce(CASE $4::text WHEN 'source' THEN " x ".source WHEN 'ad' THEN " x                 \
	".attributes->'referral'->>'source_id' WHEN 'campaign' THEN " x ".campaign_id END, '')"

/* Leads created and calls started in the period, each with its group key g. */
#define STATS_WITH                                                                                 \
	"WITH l AS (SELECT id, status, source, attributes, campaign_id, " STATS_KEY(               \
	    "leads") " AS g FROM leads WHERE ($1::timestamptz IS NULL OR created_at >="            \
	             " $1) AND ($2::timestamptz IS NULL OR created_at < $2) AND ($3::text IS "     \
	             "NULL OR"                                                                     \
	             " campaign_id = $3)),"                                                        \
	             " k AS (SELECT c.call_id, c.lead_id, c.answer_at, c.sip_code, c.duration_ms," \
	             " c.ai_ms, c.human_ms, c.end_reason, coalesce(c.record->'amd'->>'verdict', "  \
	             "'')"                                                                         \
	             " = 'machine' AS machine, EXISTS (SELECT 1 FROM transfers t WHERE t.call_id " \
	             "="                                                                           \
	             " c.call_id AND t.result = 'bridged') AS xfer, " STATS_KEY(                   \
	                 "x") " AS g FROM calls c LEFT JOIN leads x ON x.id = c.lead_id WHERE"     \
	                      " ($1::timestamptz IS NULL OR c.start_at >= $1)"                     \
	                      " AND ($2::timestamptz IS NULL OR c.start_at < $2) AND ($3::text IS" \
	                      " NULL OR x.campaign_id = $3)),"                                     \
	                      " o AS (SELECT *, CASE WHEN machine THEN 'machine' WHEN answer_at "  \
	                      "IS"                                                                 \
	                      " NOT NULL THEN 'answered' WHEN sip_code IN (486, 600) THEN 'busy'"  \
	                      " WHEN sip_code IN (408, 480, 487) OR end_reason ILIKE '%no "        \
	                      "answer%'"                                                           \
	                      " THEN 'no_answer' ELSE 'failed' END AS outcome FROM k)"

/* The funnel over the rows of l (an aggregate: one row even when l is empty). */
#define STATS_FUNNEL                                                                               \
	"json_build_object('leads', count(*),"                                                     \
	" 'engaged', count(*) FILTER (WHERE l.status IN ('engaged', 'contacted',"                  \
	" 'qualified', 'withdrawn', 'declined', 'converted') OR EXISTS (SELECT 1 FROM "            \
	"whatsapp_messages w WHERE w.lead_id = l.id AND w.direction = 'in')),"                     \
	" 'qualified', count(*) FILTER (WHERE l.status IN ('qualified', 'converted') OR"           \
	" EXISTS (SELECT 1 FROM discovery d WHERE d.lead_id = l.id AND d.qualified)),"             \
	" 'called', count(*) FILTER (WHERE EXISTS (SELECT 1 FROM calls c WHERE c.lead_id"          \
	" = l.id)),"                                                                               \
	" 'connected', count(*) FILTER (WHERE EXISTS (SELECT 1 FROM calls c WHERE"                 \
	" c.lead_id = l.id AND c.answer_at IS NOT NULL AND c.ai_ms > 0 AND"                        \
	" coalesce(c.record->'amd'->>'verdict', '') <> 'machine')),"                               \
	" 'transferred', count(*) FILTER (WHERE EXISTS (SELECT 1 FROM calls c JOIN"                \
	" transfers t ON t.call_id = c.call_id WHERE c.lead_id = l.id AND t.result ="              \
	" 'bridged')),"                                                                            \
	" 'converted', count(*) FILTER (WHERE l.status = 'converted'))"

/* The call outcomes over the rows of o. */
#define STATS_CALLS                                                                                \
	"json_build_object('total', count(*),"                                                     \
	" 'answered', count(*) FILTER (WHERE outcome = 'answered'),"                               \
	" 'no_answer', count(*) FILTER (WHERE outcome = 'no_answer'),"                             \
	" 'busy', count(*) FILTER (WHERE outcome = 'busy'),"                                       \
	" 'failed', count(*) FILTER (WHERE outcome = 'failed'),"                                   \
	" 'machine', count(*) FILTER (WHERE outcome = 'machine'),"                                 \
	" 'ai_only', count(*) FILTER (WHERE outcome = 'answered' AND NOT xfer AND ai_ms > 0),"     \
	" 'transferred', count(*) FILTER (WHERE outcome = 'answered' AND xfer),"                   \
	" 'avg_handle_ms', round(avg(duration_ms) FILTER (WHERE outcome = 'answered'))::bigint,"   \
	" 'ai_ms', coalesce(sum(ai_ms), 0), 'human_ms', coalesce(sum(human_ms), 0))"

/* Without group_by ($4 NULL): one row, funnel and calls over everything. */
#define STATS_SQL                                                                                  \
	STATS_WITH " SELECT (SELECT " STATS_FUNNEL " FROM l) AS funnel, " STATS_CALLS " AS calls"  \
	           " FROM o"

/* With group_by: one row per key met among the leads or the calls of the period, the
 * biggest groups first, the leads without a key last; one GROUP BY per side (a group
 * absent from one side gets that side's zeros, an aggregate over no rows computed once).
 * The label is what a person reads: the source, the ad's headline, the campaign's name. */
#define STATS_GROUPED_SQL                                                                          \
	STATS_WITH                                                                                 \
	", lf AS (SELECT g, " STATS_FUNNEL " AS funnel, count(*) AS n FROM l GROUP BY"             \
	" g), cf AS (SELECT g, " STATS_CALLS " AS calls, count(*) AS nc FROM o GROUP BY"           \
	" g), keys AS (SELECT g FROM lf UNION SELECT g FROM cf)"                                   \
	" SELECT json_build_object('key', nullif(keys.g, ''), 'label', CASE WHEN keys.g"           \
	" = '' THEN NULL WHEN $4 = 'ad' THEN (SELECT max(x.attributes->'referral'->>"              \
	"'headline') FROM leads x WHERE x.attributes->'referral'->>'source_id' = keys.g)"          \
	" WHEN $4 = 'campaign' THEN (SELECT name FROM campaigns WHERE id = keys.g) ELSE"           \
	" keys.g END, 'funnel', coalesce(lf.funnel, (SELECT " STATS_FUNNEL " FROM l"               \
	" WHERE false)), 'calls', coalesce(cf.calls, (SELECT " STATS_CALLS " FROM o"               \
	" WHERE false))) AS grp FROM keys LEFT JOIN lf ON lf.g = keys.g LEFT JOIN cf ON"           \
	" cf.g = keys.g ORDER BY keys.g = '', coalesce(lf.n, 0) DESC, coalesce(cf.nc, 0)"          \
	" DESC, keys.g"

static void on_stats_rows(void *arg, int rc, json_t *rows)
{
	struct api_q *q = arg;
	json_t *row = json_array_get(rows, 0);
	if (rc || !row) {
		api_reply_store(q->token, rc ? rc : -EIO);
	} else {
		json_t *o = json_object();
		json_object_set(o, "funnel", json_object_get(row, "funnel"));
		json_object_set(o, "calls", json_object_get(row, "calls"));
		api_reply_json(q->token, 200, o);
	}
	json_decref(rows);
	mem_free(q);
}

/* The grouped answer: {"group_by": ..., "groups": [{key, label, funnel, calls}, ...]}.
 * q->id holds the group_by value. */
static void on_stats_grouped_rows(void *arg, int rc, json_t *rows)
{
	struct api_q *q = arg;
	if (rc) {
		api_reply_store(q->token, rc);
	} else {
		json_t *groups = json_array();
		size_t i;
		json_t *row;
		json_array_foreach(rows, i, row)
		{
			json_array_append(groups, json_object_get(row, "grp"));
		}
		json_t *o = json_object();
		json_object_set_new(o, "group_by", json_string(q->id));
		json_object_set_new(o, "groups", groups);
		api_reply_json(q->token, 200, o);
	}
	json_decref(rows);
	mem_free(q);
}

static void on_stats(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const known[] = {"from", "to", "campaign_id", "group_by", NULL};
	uint64_t token = ctl_req_token(rq);
	struct api_err e;
	char v[4][72];
	const char *from = NULL, *to = NULL, *camp = NULL, *group = NULL;
	if (api_query(rq, "from", v[0], sizeof(v[0]), &from, &e) ||
	    api_query(rq, "to", v[1], sizeof(v[1]), &to, &e) ||
	    api_query(rq, "campaign_id", v[2], sizeof(v[2]), &camp, &e) ||
	    api_query(rq, "group_by", v[3], sizeof(v[3]), &group, &e) ||
	    api_query_known(rq, known, &e) ||
	    (from && !api_iso_time_ok(from) &&
	     api_fail(&e, 400, "invalid_field", "from",
	              "from must be an ISO 8601 date or date-time (2026-11-01T00:00:00Z)")) ||
	    (to && !api_iso_time_ok(to) &&
	     api_fail(&e, 400, "invalid_field", "to",
	              "to must be an ISO 8601 date or date-time (2026-12-01T00:00:00Z)")) ||
	    (camp && !api_id_ok(camp) &&
	     api_fail(&e, 400, "invalid_field", "campaign_id", "campaign_id is not an id")) ||
	    (group && strcmp(group, "source") != 0 && strcmp(group, "ad") != 0 &&
	     strcmp(group, "campaign") != 0 &&
	     api_fail(&e, 400, "invalid_field", "group_by",
	              "group_by must be one of source, ad, campaign"))) {
		api_reply_err(token, &e);
		return;
	}
	struct api_q *q = api_q_new(token, NULL, "stats");
	if (!q)
		return;
	const char *params[4] = {from, to, camp, group};
	if (group) {
		snprintf(q->id, sizeof(q->id), "%s", group);
		api_q_run(q, STATS_GROUPED_SQL, params, 4, on_stats_grouped_rows);
	} else {
		api_q_run(q, STATS_SQL, params, 4, on_stats_rows);
	}
}

/* ---- set-up ---- */

#define IMPORT_MAX_BODY (10u * 1024u * 1024u)
#define BODY_MAX        (256u * 1024u)

int api_campaigns_init(api_number_fn normalise)
{
	static const struct {
		const char *method, *path;
		unsigned flags;
		size_t max_body;
		ctl_handler_fn fn;
	} routes[] = {
	    {"POST", "/v1/campaigns", CTL_SCOPE_CAMPAIGNS | CTL_IDEMPOTENT, BODY_MAX, on_create},
	    {"GET", "/v1/campaigns", CTL_SCOPE_READ, 0, on_list},
	    {"GET", "/v1/campaigns/", CTL_SCOPE_READ, 0, on_get},
	    {"PATCH", "/v1/campaigns/", CTL_SCOPE_CAMPAIGNS, BODY_MAX, on_patch},
	    {"DELETE", "/v1/campaigns/", CTL_SCOPE_CAMPAIGNS, 0, on_delete},
	    {"POST", "/v1/campaigns/", CTL_SCOPE_CAMPAIGNS | CTL_IDEMPOTENT, IMPORT_MAX_BODY,
	     on_post_sub},
	    {"GET", "/v1/stats", CTL_SCOPE_READ, 0, on_stats},
	};
	api_normalise = normalise;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		int rc = ctl_route_add(routes[i].method, routes[i].path, routes[i].flags,
		                       routes[i].max_body, 30000, routes[i].fn, NULL);
		if (rc)
			return rc;
	}
	return api_leads_init();
}
