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
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { CK_S3, CK_VAPI, CK_WA, CK__N };
static const char *const ck_names[CK__N] = {"s3", "vapi", "whatsapp"};
/* The configuration key that turns each on, for "off" answers. */
static const char *const ck_keys[CK__N] = {"s3.bucket", "vapi.key_env",
                                           "whatsapp.access_token_env"};

/* SHA-256 of an empty payload, as SigV4 wants it for a HEAD. */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* A well-formed call id that no call has: only the key's acceptance matters. */
#define NO_CALL_ID "00000000-0000-4000-8000-000000000000"

static struct {
	char *url[CK__N];  /* what each check asks; NULL = off */
	char *auth[CK__N]; /* its Authorization header line, NULL = none */
	char *sigv4, *access_key, *secret_key, *bucket;
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
			snprintf(d, sizeof(d), "bucket %s reachable, the keys accepted", ck.bucket);
		else if (status == 403 || status == 401)
			snprintf(d, sizeof(d), "bucket %s: the access or secret key is refused",
			         ck.bucket);
		else if (status == 404)
			snprintf(d, sizeof(d), "no bucket %s at %s", ck.bucket, ck.url[kind]);
		else
			snprintf(d, sizeof(d), "bucket %s: HTTP %ld", ck.bucket, status);
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
	struct ctl_out *r = ctl_out_create(kind == CK_S3 ? "HEAD" : "GET", ck.url[kind]);
	struct one *o = mem_alloc(sizeof(*o));
	int rc = r && o ? 0 : -ENOMEM;
	if (!rc && ck.auth[kind])
		rc = ctl_out_header(r, ck.auth[kind]);
	if (!rc && kind == CK_S3)
		rc = ctl_out_header(r, "x-amz-content-sha256: " EMPTY_SHA256) ||
		             ctl_out_sigv4(r, ck.sigv4, ck.access_key, ck.secret_key)
		         ? -ENOMEM
		         : 0;
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

static int set(char **dst, const char *s)
{
	*dst = s ? mem_strdup(s) : NULL;
	return s && !*dst ? -ENOMEM : 0;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int n = vsnprintf(NULL, 0, f, ap);
	va_end(ap);
	char *s = n >= 0 ? mem_alloc((size_t)n + 1) : NULL;
	if (s) {
		va_start(ap, f);
		vsnprintf(s, (size_t)n + 1, f, ap);
		va_end(ap);
	}
	return s;
}

static int on(const char *s)
{
	return s && s[0];
}

int ctl_checks_init(const struct ctl_checks_config *c)
{
	int rc = 0;
	ck.timeout_ms = c->timeout_ms ? c->timeout_ms : 5000;
	if (on(c->s3_bucket) && on(c->s3_access_key) && on(c->s3_secret_key)) {
		const char *region = on(c->s3_region) ? c->s3_region : "us-east-1";
		char *ep = on(c->s3_endpoint) ? mem_strdup(c->s3_endpoint)
		                              : fmt("https://s3.%s.amazonaws.com", region);
		if (ep) {
			size_t n = strlen(ep);
			while (n && ep[n - 1] == '/')
				ep[--n] = '\0';
			const char *host = strstr(ep, "://");
			if (c->s3_path_style || !host)
				ck.url[CK_S3] = fmt("%s/%s", ep, c->s3_bucket);
			else /* virtual-hosted: https://<bucket>.<host>/ */
				ck.url[CK_S3] = fmt("%.*s%s.%s/", (int)(host + 3 - ep), ep,
				                    c->s3_bucket, host + 3);
			mem_free(ep);
		}
		ck.sigv4 = fmt("aws:amz:%s:s3", region);
		rc = !ck.url[CK_S3] || !ck.sigv4 ? -ENOMEM : 0;
		if (!rc)
			rc = set(&ck.access_key, c->s3_access_key);
		if (!rc)
			rc = set(&ck.secret_key, c->s3_secret_key);
		if (!rc)
			rc = set(&ck.bucket, c->s3_bucket);
	}
	if (!rc && on(c->vapi_url) && on(c->vapi_key)) {
		ck.url[CK_VAPI] = fmt("%s/call/%s", c->vapi_url, NO_CALL_ID);
		ck.auth[CK_VAPI] = fmt("Authorization: Bearer %s", c->vapi_key);
		rc = !ck.url[CK_VAPI] || !ck.auth[CK_VAPI] ? -ENOMEM : 0;
	}
	if (!rc && on(c->graph_url) && on(c->wa_token) && on(c->wa_phone_number_id)) {
		ck.url[CK_WA] =
		    fmt("%s/%s?fields=display_phone_number,verified_name,quality_rating",
		        c->graph_url, c->wa_phone_number_id);
		ck.auth[CK_WA] = fmt("Authorization: Bearer %s", c->wa_token);
		rc = !ck.url[CK_WA] || !ck.auth[CK_WA] ? -ENOMEM : 0;
	}
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
	mem_free(ck.sigv4);
	mem_free(ck.access_key);
	mem_free(ck.secret_key);
	mem_free(ck.bucket);
	memset(&ck, 0, sizeof(ck));
}
