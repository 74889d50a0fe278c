/* GET /v1/admin/checks: each configured external service is asked one cheap question with
 * the node's own credentials, all at once on the out thread, and the answer lists what
 * each said. Read-only questions only:
 *   s3        HEAD of the bucket, SigV4-signed: 200 = reachable and the keys accepted
 *   vapi      GET /call/<a uuid no call has>: 404 (or 200) = the key is accepted, 401 not
 *   whatsapp  GET /<phone_number_id>?fields=...: the number, its verified name and quality
 * A service that is not configured is "off"; the answer's "ok" is true when none failed. */
#include "control/checks.h"

#include "control/api_util.h"
#include "control/control.h"
#include "control/outbound.h"
#include "control/uploader.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/strbuf.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

enum { CK_S3, CK_VAPI, CK_WA, CK__N };
static const char *const ck_names[CK__N] = {"s3", "vapi", "whatsapp"};
/* The configuration key that turns each on, for "off" answers. */
static const char *const ck_keys[CK__N] = {"s3.bucket", "vapi.key_env",
                                           "whatsapp.access_token_env"};

/* A well-formed call id that no call has: only the key's acceptance matters. */
#define NO_CALL_ID "00000000-0000-4000-8000-000000000000"

static struct {
	char *url[CK__N];  /* what each check asks; NULL = off */
	char *auth[CK__N]; /* its Authorization header line, NULL = none */
	unsigned timeout_ms;
} ck;

struct run {
	uint64_t token;
	unsigned pending;
	json_t *res[CK__N];
};

struct one {
	struct run *run;
	unsigned kind;
	uint64_t t0_us;
};

static json_t *result(unsigned kind, const char *res, const char *detail, long status, uint64_t ms)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "name", ck_names[kind], "result", res, "detail",
	                      detail ? detail : "");
	if (o && status)
		json_object_set_new(o, "http_status", json_integer(status));
	if (o && strcmp(res, "off") != 0)
		json_object_set_new(o, "ms", json_integer((json_int_t)ms));
	return o;
}

static void finish(struct run *run)
{
	json_t *list = json_array();
	int ok = 1;
	for (unsigned k = 0; k < CK__N; k++) {
		json_t *r = run->res[k] ? run->res[k] : result(k, "failed", "no answer", 0, 0);
		run->res[k] = NULL;
		if (strcmp(json_string_value(json_object_get(r, "result")), "failed") == 0)
			ok = 0;
		json_array_append_new(list, r);
	}
	api_reply_json(run->token, 200, json_pack("{s:b, s:o}", "ok", ok, "checks", list));
	mem_free(run);
}

/* The Graph API's error object: "message (code N)". */
static void graph_error(const json_t *body, char *out, size_t len)
{
	const json_t *e = json_object_get(body, "error");
	const char *m = json_string_value(json_object_get(e, "message"));
	snprintf(out, len, "%s (code %" JSON_INTEGER_FORMAT ")", m ? m : "no error message",
	         json_integer_value(json_object_get(e, "code")));
}

static json_t *judge(unsigned kind, const struct ctl_out *r, long status, int err, const char *text,
                     uint64_t ms)
{
	char d[512];
	if (err || !status) {
		snprintf(d, sizeof(d), "no answer from %s: %s", ck.url[kind], text ? text : "?");
		return result(kind, "failed", d, 0, ms);
	}
	if (kind == CK_S3) {
		if (status >= 200 && status < 300)
			snprintf(d, sizeof(d), "bucket %s reachable, the keys accepted",
			         ctl_s3_bucket());
		else if (status == 403 || status == 401)
			snprintf(d, sizeof(d), "bucket %s: the access or secret key is refused",
			         ctl_s3_bucket());
		else if (status == 404)
			snprintf(d, sizeof(d), "no bucket %s at %s", ctl_s3_bucket(), ck.url[kind]);
		else
			snprintf(d, sizeof(d), "bucket %s: HTTP %ld", ctl_s3_bucket(), status);
		return result(kind, status >= 200 && status < 300 ? "ok" : "failed", d, status, ms);
	}
	if (kind == CK_VAPI) {
		int ok = status == 404 || (status >= 200 && status < 300);
		if (ok)
			snprintf(d, sizeof(d), "the private key is accepted");
		else if (status == 401 || status == 403)
			snprintf(d, sizeof(d), "the private key is refused (HTTP %ld)", status);
		else
			snprintf(d, sizeof(d), "unexpected answer HTTP %ld", status);
		return result(kind, ok ? "ok" : "failed", d, status, ms);
	}
	size_t len = 0;
	const char *b = ctl_out_response(r, &len);
	json_t *body = json_loadb(b, len, 0, NULL);
	int ok = status == 200 && json_is_object(body);
	if (ok) {
		const char *num = json_string_value(json_object_get(body, "display_phone_number"));
		const char *name = json_string_value(json_object_get(body, "verified_name"));
		const char *q = json_string_value(json_object_get(body, "quality_rating"));
		snprintf(d, sizeof(d),
		         "number %s, verified name \"%s\", quality %s; the token accepted",
		         num ? num : "?", name ? name : "?", q ? q : "?");
	} else {
		char e[320];
		graph_error(body, e, sizeof(e));
		long code = (long)json_integer_value(
		    json_object_get(json_object_get(body, "error"), "code"));
		snprintf(d, sizeof(d), "%s: %s",
		         status == 401 || code == 190 ? "the access token is refused"
		                                      : "the phone_number_id is not usable",
		         e);
	}
	json_decref(body);
	return result(kind, ok ? "ok" : "failed", d, status, ms);
}

static void on_done(void *arg, struct ctl_out *r, long status, int err, const char *text)
{
	struct one *o = arg;
	struct run *run = o->run;
	uint64_t ms = (clock_now_us() - o->t0_us) / 1000u;
	run->res[o->kind] = judge(o->kind, r, status, err, text, ms);
	ctl_out_destroy(r);
	mem_free(o);
	if (--run->pending == 0)
		finish(run);
}

static int send_one(struct run *run, unsigned kind)
{
	struct ctl_out *r =
	    kind == CK_S3 ? ctl_s3_head_bucket() : ctl_out_create("GET", ck.url[kind]);
	struct one *o = mem_alloc(sizeof(*o));
	int rc = r && o ? 0 : -ENOMEM;
	if (!rc && ck.auth[kind])
		rc = ctl_out_header(r, ck.auth[kind]);
	if (!rc) {
		ctl_out_timeout(r, ck.timeout_ms);
		*o = (struct one){.run = run, .kind = kind, .t0_us = clock_now_us()};
		rc = ctl_out_send(r, on_done, o);
	}
	if (rc) {
		ctl_out_destroy(r);
		mem_free(o);
	}
	return rc;
}

/* Out thread: every configured check goes out at once. */
static void start(void *arg)
{
	struct run *run = arg;
	run->pending = 1; /* held until every send is made */
	for (unsigned k = 0; k < CK__N; k++) {
		char d[160];
		if (!ck.url[k]) {
			snprintf(d, sizeof(d), "not configured (%s)", ck_keys[k]);
			run->res[k] = result(k, "off", d, 0, 0);
			continue;
		}
		int rc = ctl_out_stopping() ? -ESHUTDOWN : send_one(run, k);
		if (rc) {
			snprintf(d, sizeof(d), "not tried: %s", strerror(-rc));
			run->res[k] = result(k, "failed", d, 0, 0);
			continue;
		}
		run->pending++;
	}
	if (--run->pending == 0)
		finish(run);
}

static void on_checks(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	struct run *run = mem_zalloc(sizeof(*run));
	if (!run) {
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		return;
	}
	run->token = token;
	int rc = ctl_out_run(start, run);
	if (rc) {
		mem_free(run);
		ctl_reply_error(token, 503, "busy", "the outbound HTTP worker cannot take it now",
		                NULL);
	}
}

/* The text sb holds, or NULL when it ran out of memory. */
static char *taken(struct strbuf *sb)
{
	return sb->oom ? (str_deinit(sb), NULL) : str_steal(sb);
}

static int on(const char *s)
{
	return s && s[0];
}

int ctl_checks_init(const struct ctl_checks_config *c)
{
	int rc = 0;
	struct strbuf sb;
	str_init(&sb);
	ck.timeout_ms = c->timeout_ms ? c->timeout_ms : 5000;
	if (ctl_s3_bucket())
		rc = (ck.url[CK_S3] = ctl_s3_bucket_url()) ? 0 : -ENOMEM;
	if (!rc && on(c->vapi_url) && on(c->vapi_key)) {
		str_printf(&sb, "%s/call/%s", c->vapi_url, NO_CALL_ID);
		ck.url[CK_VAPI] = taken(&sb);
		str_printf(&sb, "Authorization: Bearer %s", c->vapi_key);
		ck.auth[CK_VAPI] = taken(&sb);
		rc = !ck.url[CK_VAPI] || !ck.auth[CK_VAPI] ? -ENOMEM : 0;
	}
	if (!rc && on(c->graph_url) && on(c->wa_token) && on(c->wa_phone_number_id)) {
		str_printf(&sb, "%s/%s?fields=display_phone_number,verified_name,quality_rating",
		           c->graph_url, c->wa_phone_number_id);
		ck.url[CK_WA] = taken(&sb);
		str_printf(&sb, "Authorization: Bearer %s", c->wa_token);
		ck.auth[CK_WA] = taken(&sb);
		rc = !ck.url[CK_WA] || !ck.auth[CK_WA] ? -ENOMEM : 0;
	}
	str_deinit(&sb);
	if (!rc)
		rc = ctl_route_add("GET", "/v1/admin/checks", CTL_SCOPE_ADMIN, 0,
		                   ck.timeout_ms + 5000, on_checks, NULL);
	if (rc)
		ctl_checks_close();
	return rc;
}

void ctl_checks_close(void)
{
	for (unsigned k = 0; k < CK__N; k++) {
		mem_free(ck.url[k]);
		mem_free(ck.auth[k]);
	}
	memset(&ck, 0, sizeof(ck));
}
