/* The call record routes of the /v1 API: GET /v1/calls (the list, newest first, keyset
 * pagination) and GET /v1/calls/{id} (one call: its record, events, recordings). They
 * read PostgreSQL through db_query; the db thread's callback formats and answers. */
#include "control/api_calls.h"
#include "control/api_util.h"
#include "control/control.h"
#include "control/uploader.h"

#include "core/log.h"
#include "core/mem.h"
#include "db/db.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIST_DEFAULT 50
#define LIST_MAX     200
#define CALL_ID_MAX  255 /* a SIP Call-ID as vacsd keeps it is shorter: longer = unknown */

/* What a list callback needs besides the rows. */
struct list_req {
	uint64_t token;
	int limit;
};

/* ---- GET /v1/calls ---- */

static void on_list_rows(void *arg, int rc, json_t *rows)
{
	struct list_req *lr = arg;
	if (rc) {
		api_reply_store(lr->token, rc);
		mem_free(lr);
		return;
	}
	json_t *next = json_null();
	size_t n = json_array_size(rows);
	if (n > (size_t)lr->limit) {
		json_array_remove(rows, n - 1);
		n--;
		json_t *last = json_array_get(rows, n - 1);
		char cur[64];
		snprintf(cur, sizeof(cur), "%" JSON_INTEGER_FORMAT "_%" JSON_INTEGER_FORMAT,
		         json_integer_value(json_object_get(last, "cursor_us")),
		         json_integer_value(json_object_get(last, "cursor_id")));
		next = json_string(cur);
	}
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		json_object_del(row, "cursor_us");
		json_object_del(row, "cursor_id");
	}
	api_reply_json(lr->token, 200, json_pack("{s:o, s:o}", "calls", rows, "next", next));
	mem_free(lr);
}

#define LIST_SQL                                                                                   \
	"SELECT call_id, direction, caller_e164 AS caller, called_e164 AS called,"                 \
	" nullif(lead_id, '') AS lead_id, from_trunk, to_trunk, route,"                            \
	" record->'start' AS start, record->'answer' AS answer, record->'end' AS \"end\","         \
	" ring_ms, duration_ms, sip_code, end_reason, hangup_side, to_json(codecs) AS codecs,"     \
	" ai_ms, human_ms,"                                                                        \
	" vapi_call_id, nullif(recording, '') AS recording,"                                       \
	" (extract(epoch FROM start_at) * 1000000)::bigint AS cursor_us, id AS cursor_id"          \
	" FROM calls WHERE ($1::text IS NULL OR direction = $1)"                                   \
	" AND ($2::text IS NULL OR lead_id = $2)"                                                  \
	" AND ($3::timestamptz IS NULL OR start_at >= $3)"                                         \
	" AND ($4::timestamptz IS NULL OR start_at < $4)"                                          \
	" AND ($5::bigint IS NULL OR (start_at, id) < (timestamptz 'epoch' + $5::bigint"           \
	" * interval '1 microsecond', $6::bigint))"                                                \
	" ORDER BY start_at DESC, id DESC LIMIT $7::int"

static void on_list(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const known[] = {"limit", "after", "direction", "lead_id",
	                                    "since", "until", NULL};
	uint64_t token = ctl_req_token(rq);
	char v[5][128];
	const char *after, *dir, *lead, *since, *until;
	long long limit;
	struct api_err e;
	if (api_query_known(rq, known, &e) ||
	    api_query_int(rq, "limit", 1, LIST_MAX, LIST_DEFAULT, &limit, &e) ||
	    api_query(rq, "after", v[0], sizeof(v[0]), &after, &e) ||
	    api_query(rq, "direction", v[1], sizeof(v[1]), &dir, &e) ||
	    api_query(rq, "lead_id", v[2], sizeof(v[2]), &lead, &e) ||
	    api_query(rq, "since", v[3], sizeof(v[3]), &since, &e) ||
	    api_query(rq, "until", v[4], sizeof(v[4]), &until, &e)) {
		api_reply_err(token, &e);
		return;
	}
	if (dir && strcmp(dir, "inbound") != 0 && strcmp(dir, "outbound") != 0) {
		ctl_reply_error(token, 400, "invalid_field",
		                "direction must be \"inbound\" or \"outbound\"", "direction");
		return;
	}
	if (since && !api_iso_time_ok(since)) {
		ctl_reply_error(
		    token, 400, "invalid_field",
		    "since must be an ISO 8601 date or date-time (2026-11-28T09:00:00Z)", "since");
		return;
	}
	if (until && !api_iso_time_ok(until)) {
		ctl_reply_error(
		    token, 400, "invalid_field",
		    "until must be an ISO 8601 date or date-time (2026-11-28T09:00:00Z)", "until");
		return;
	}
	char cur_us[24] = "", cur_id[24] = "";
	if (after) {
		unsigned long long us, id;
		int n = 0;
		if (sscanf(after, "%20llu_%20llu%n", &us, &id, &n) != 2 || after[n]) {
			ctl_reply_error(token, 400, "invalid_field",
			                "after must be the \"next\" value of a previous page",
			                "after");
			return;
		}
		snprintf(cur_us, sizeof(cur_us), "%llu", us);
		snprintf(cur_id, sizeof(cur_id), "%llu", id);
	}
	char lim[24];
	snprintf(lim, sizeof(lim), "%lld", limit + 1);
	const char *params[7] = {
	    dir, lead, since, until, after ? cur_us : NULL, after ? cur_id : NULL, lim};
	struct list_req *lr = mem_alloc(sizeof(*lr));
	if (!lr) {
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
		return;
	}
	lr->token = token;
	lr->limit = (int)limit;
	int rc = db_query(LIST_SQL, params, 7, on_list_rows, lr);
	if (rc) {
		mem_free(lr);
		api_reply_store(token, rc);
	}
}

/* ---- GET /v1/calls/{id} ---- */

#define ONE_SQL                                                                                    \
	"SELECT c.record,"                                                                         \
	" (SELECT json_agg(json_build_object('seq', e.seq, 'ts', e.ts, 'event', e.event,"          \
	"   'detail', e.detail) ORDER BY e.seq) FROM call_events e WHERE e.call_id = q.id)"        \
	"   AS events,"                                                                            \
	" (SELECT json_agg(json_build_object('path', r.path, 'bytes', r.bytes, 'result',"          \
	"   r.result, 'closed_at', r.closed_at, 's3_bucket', r.s3_bucket, 's3_key', r.s3_key,"     \
	"   'uploaded_at', r.uploaded_at, 'upload_error', r.upload_error) ORDER BY r.id)"          \
	"   FROM recordings r WHERE r.call_id = q.id) AS recordings"                               \
	" FROM (SELECT $1::text AS id) q LEFT JOIN calls c ON c.call_id = q.id"

struct one_req {
	uint64_t token;
	char id[CALL_ID_MAX + 1];
};

static void on_one_rows(void *arg, int rc, json_t *rows)
{
	struct one_req *r = arg;
	if (rc) {
		api_reply_store(r->token, rc);
		mem_free(r);
		return;
	}
	json_t *row = json_array_get(rows, 0);
	json_t *rec = json_object_get(row, "record");
	json_t *events = json_object_get(row, "events");
	json_t *recs = json_object_get(row, "recordings");
	if (!json_is_object(rec) && !json_is_array(events)) {
		char msg[CALL_ID_MAX + 40];
		snprintf(msg, sizeof(msg), "no call %s", r->id);
		ctl_reply_error(r->token, 404, "not_found", msg, "id");
	} else {
		/* A call still in progress has events but no record yet. */
		json_t *o =
		    json_is_object(rec) ? json_incref(rec) : json_pack("{s:s}", "call_id", r->id);
		json_object_set_new(o, "status",
		                    json_string(json_is_object(rec) ? "ended" : "active"));
		json_object_set(o, "events", json_is_array(events) ? events : json_array());
		json_object_set(o, "recordings", json_is_array(recs) ? recs : json_array());
		/* An uploaded recording carries a presigned link to its S3 object (docs/api). */
		size_t i;
		json_t *x;
		json_array_foreach(recs, i, x)
		{
			char *url = json_is_string(json_object_get(x, "uploaded_at"))
			                ? ctl_s3_presign(
			                      json_string_value(json_object_get(x, "s3_bucket")),
			                      json_string_value(json_object_get(x, "s3_key")), 300)
			                : NULL;
			if (url)
				json_object_set_new(x, "s3_url", json_string(url));
			mem_free(url);
		}
		api_reply_json(r->token, 200, o);
	}
	json_decref(rows);
	mem_free(r);
}

static void on_one(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	const char *path = ctl_req_path(rq);
	const char *id = path + strlen("/v1/calls/");
	size_t n = strlen(id);
	if (!n || n > CALL_ID_MAX || strchr(id, '/')) {
		ctl_reply_error(token, 404, "not_found", "no such call", "id");
		return;
	}
	struct one_req *r = mem_alloc(sizeof(*r));
	if (!r) {
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
		return;
	}
	r->token = token;
	memcpy(r->id, id, n + 1);
	const char *params[1] = {r->id};
	int rc = db_query(ONE_SQL, params, 1, on_one_rows, r);
	if (rc) {
		mem_free(r);
		api_reply_store(token, rc);
	}
}

int api_calls_init(void)
{
	int rc = ctl_route_add("GET", "/v1/calls", CTL_SCOPE_READ, 0, 10000, on_list, NULL);
	if (!rc)
		rc = ctl_route_add("GET", "/v1/calls/", CTL_SCOPE_READ, 0, 10000, on_one, NULL);
	return rc;
}
