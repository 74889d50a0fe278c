/* GET /v1/whatsapp/thread?lead_id=: a lead's WhatsApp messages and discovery state, for the
 * dashboard's lead page (read scope). */
#include "control/api_wa_thread.h"

#include "control/api_util.h"
#include "control/control.h"
#include "core/mem.h"
#include "db/db.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREAD_SQL                                                                                 \
	"SELECT (SELECT row_to_json(c) FROM (SELECT state, lang, fields, last_inbound_at,"         \
	"   marketing_opt_out, unreachable, updated_at FROM whatsapp_conversations"                \
	"   WHERE lead_id = $1) c) AS conversation,"                                               \
	" (SELECT coalesce(json_agg(m ORDER BY m.ts, m.id), '[]') FROM (SELECT id, direction,"     \
	"   type, body, status, ts, error_code FROM whatsapp_messages WHERE lead_id = $1"          \
	"   ORDER BY ts DESC, id DESC LIMIT 500) m) AS messages"

static void on_rows(void *arg, int rc, json_t *rows)
{
	uint64_t token = (uint64_t)(uintptr_t)arg;
	json_t *row = json_array_get(rows, 0);
	if (rc || !row) {
		if (rc == -ENOTCONN || rc == -ECANCELED || rc == -EAGAIN)
			ctl_reply_error(token, 503, "store_unavailable",
			                "PostgreSQL is not available: try again", NULL);
		else
			ctl_reply_error(token, 500, "internal", "the store failed", NULL);
		json_decref(rows);
		return;
	}
	json_incref(row);
	json_decref(rows);
	api_reply_json(token, 200, row);
}

static void on_thread(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const known[] = {"lead_id", NULL};
	uint64_t token = ctl_req_token(rq);
	char bad[64], lead[128];
	if (ctl_req_query_unknown(rq, known, bad, sizeof(bad))) {
		char msg[128];
		snprintf(msg, sizeof(msg), "unknown query parameter %.60s: use lead_id", bad);
		ctl_reply_error(token, 400, "unknown_field", msg, bad);
		return;
	}
	if (!ctl_req_query(rq, "lead_id", lead, sizeof(lead)) || !lead[0]) {
		ctl_reply_error(token, 400, "missing_field",
		                "lead_id is required (at most 64 bytes)", "lead_id");
		return;
	}
	const char *p[1] = {lead};
	int rc = db_query(THREAD_SQL, p, 1, on_rows, (void *)(uintptr_t)token);
	if (rc)
		on_rows((void *)(uintptr_t)token, rc, NULL);
}

int api_wa_thread_init(void)
{
	return ctl_route_add("GET", "/v1/whatsapp/thread", CTL_SCOPE_READ, 0, 10000, on_thread,
	                     NULL);
}
