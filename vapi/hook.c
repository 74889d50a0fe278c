/* VAPI server webhooks: the credential check (bearer, HMAC) and the defensive body parser. */
#include "vapi/vapi.h"

#include "core/mem.h"
#include "core/strbuf.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Pure functions (reference vapi.md §3): no globals, no logging, any thread. The body and
 * the headers come from the network, so nothing in them is trusted: every field is checked
 * for its type, a JSON null counts as absent, and a wrong type is an error whose `why`
 * names the field. Credentials are compared in constant time (CRYPTO_memcmp); only a
 * length mismatch ends a comparison early, and it reveals the length alone.
 */

#define HOOK_HDR_MAX    4096            /* largest credential header value looked at */
#define HOOK_SKEW_S     300u            /* default |now - timestamp| limit */
#define HOOK_TS_MS_FROM 100000000000ull /* a timestamp above 1e11 is in milliseconds */

static void set_why(const char **why, const char *s)
{
	if (why)
		*why = s;
}

/* ---- credentials --------------------------------------------------------------------- */

/* 1 when a (la bytes) equals b (lb bytes). Constant time in the content; the lengths are
 * compared first, and a mismatch still runs one comparison of a's length. */
static int same_secret(const void *a, size_t la, const void *b, size_t lb)
{
	int eq_len = la == lb;
	int eq = CRYPTO_memcmp(a, eq_len ? b : a, la) == 0;
	return eq_len & eq;
}

static const char *skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* Length of s without trailing blanks. */
static size_t trimmed_len(const char *s)
{
	size_t n = strlen(s);
	while (n > 0 &&
	       (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		n--;
	return n;
}

static int verify_bearer(const struct vapi_hook_config *cfg, vapi_hook_header_fn hdr, void *ctx,
                         const char **why)
{
	char buf[HOOK_HDR_MAX];
	const char *name = cfg->header && *cfg->header ? cfg->header : "authorization";
	const char *v = hdr(ctx, name, buf, sizeof(buf));
	if (!v || !*skip_ws(v)) {
		set_why(why, "missing credential");
		return -EACCES;
	}
	v = skip_ws(v);
	if (cfg->bearer_prefix) {
		/* RFC 7235: the scheme is case-insensitive; one or more spaces follow it. */
		if (strncasecmp(v, "Bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t')) {
			set_why(why, "wrong credential");
			return -EACCES;
		}
		v = skip_ws(v + 6);
	}
	if (!same_secret(v, trimmed_len(v), cfg->secret, strlen(cfg->secret))) {
		set_why(why, "wrong credential");
		return -EACCES;
	}
	return 0;
}

static int hex_val(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes the signature text s (n bytes) into out; the result must be exactly want bytes.
 * 0 or -1. */
static int sig_decode(const char *s, size_t n, int base64, unsigned char *out, size_t want)
{
	if (!base64) {
		if (n != 2 * want)
			return -1;
		for (size_t i = 0; i < want; i++) {
			int hi = hex_val((unsigned char)s[2 * i]),
			    lo = hex_val((unsigned char)s[2 * i + 1]);
			if (hi < 0 || lo < 0)
				return -1;
			out[i] = (unsigned char)(hi << 4 | lo);
		}
		return 0;
	}
	/* Base64 with or without its '=' padding; EVP_DecodeBlock wants it padded. */
	unsigned char in[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 4];
	unsigned char tmp[sizeof(in)];
	if (n == 0 || n > sizeof(in) - 4)
		return -1;
	memcpy(in, s, n);
	while (n % 4)
		in[n++] = '=';
	size_t pad = 0;
	if (in[n - 1] == '=')
		pad++;
	if (in[n - 2] == '=')
		pad++;
	for (size_t i = 0; i < n - pad; i++)
		if (in[i] == '=')
			return -1;
	int got = EVP_DecodeBlock(tmp, in, (int)n);
	if (got < 0 || (size_t)got < pad || (size_t)got - pad != want)
		return -1;
	memcpy(out, tmp, want);
	return 0;
}

static const EVP_MD *hmac_md(const char *algorithm)
{
	if (!algorithm || !*algorithm || strcasecmp(algorithm, "sha256") == 0)
		return EVP_sha256();
	if (strcasecmp(algorithm, "sha512") == 0)
		return EVP_sha512();
	if (strcasecmp(algorithm, "sha1") == 0)
		return EVP_sha1();
	return NULL;
}

/* Parses a Unix timestamp (digits, surrounding blanks allowed) in seconds or, when above
 * 1e11, milliseconds. 0 or -1. */
static int parse_ts(const char *s, uint64_t *out_s)
{
	s = skip_ws(s);
	size_t n = trimmed_len(s);
	uint64_t v = 0;
	if (n == 0 || n > 19)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out_s = v > HOOK_TS_MS_FROM ? v / 1000u : v;
	return 0;
}

static int verify_hmac(const struct vapi_hook_config *cfg, vapi_hook_header_fn hdr, void *ctx,
                       const char *body, size_t len, uint64_t now_s, const char **why)
{
	const EVP_MD *md = hmac_md(cfg->algorithm);
	char sig[HOOK_HDR_MAX], ts[64];
	unsigned char *msg = NULL;
	int rc = -EACCES;
	if (!md) {
		set_why(why, "unknown HMAC algorithm");
		return -EINVAL;
	}
	const char *sh =
	    cfg->signature_header && *cfg->signature_header ? cfg->signature_header : "x-signature";
	const char *th =
	    cfg->timestamp_header && *cfg->timestamp_header ? cfg->timestamp_header : "x-timestamp";
	const char *v = hdr(ctx, sh, sig, sizeof(sig));
	if (!v || !*skip_ws(v)) {
		set_why(why, "missing credential");
		return -EACCES;
	}
	v = skip_ws(v);
	const char *t = NULL;
	size_t tlen = 0;
	if (cfg->include_timestamp) {
		uint64_t ts_s;
		t = hdr(ctx, th, ts, sizeof(ts));
		if (!t || !*skip_ws(t)) {
			set_why(why, "missing timestamp");
			return -EACCES;
		}
		if (parse_ts(t, &ts_s) != 0) {
			set_why(why, "malformed timestamp");
			return -EACCES;
		}
		uint64_t skew = cfg->max_skew_s ? cfg->max_skew_s : HOOK_SKEW_S;
		uint64_t d = ts_s > now_s ? ts_s - now_s : now_s - ts_s;
		if (d > skew) {
			set_why(why, "stale timestamp");
			return -EACCES;
		}
		tlen = strlen(t);
	}

	const char *pfx = cfg->signature_prefix ? cfg->signature_prefix : "";
	size_t pl = strlen(pfx);
	if (strncmp(v, pfx, pl) != 0) {
		set_why(why, "malformed signature");
		return -EACCES;
	}
	v += pl;
	unsigned char want[EVP_MAX_MD_SIZE], got[EVP_MAX_MD_SIZE];
	size_t mdlen = (size_t)EVP_MD_get_size(md);
	if (sig_decode(v, trimmed_len(v), cfg->base64, got, mdlen) != 0) {
		set_why(why, "malformed signature");
		return -EACCES;
	}

	/* The signed payload: "<timestamp as sent>.<body>", or the body alone. */
	size_t mlen = t ? tlen + 1 + len : len;
	msg = mem_alloc(mlen ? mlen : 1);
	if (!msg) {
		set_why(why, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	if (t) {
		memcpy(msg, t, tlen);
		msg[tlen] = '.';
		if (len)
			memcpy(msg + tlen + 1, body, len);
	} else if (len) {
		memcpy(msg, body, len);
	}
	unsigned int wl = 0;
	if (!HMAC(md, cfg->secret, (int)strlen(cfg->secret), msg, mlen, want, &wl) || wl != mdlen) {
		set_why(why, "HMAC failed");
		rc = -EINVAL;
		goto out;
	}
	if (CRYPTO_memcmp(want, got, mdlen) != 0) {
		set_why(why, "wrong credential");
		goto out;
	}
	rc = 0;
out:
	mem_free(msg);
	return rc;
}

int vapi_hook_verify(const struct vapi_hook_config *cfg, vapi_hook_header_fn hdr, void *ctx,
                     const char *body, size_t len, uint64_t now_s, const char **why)
{
	if (!cfg || !hdr || (!body && len)) {
		set_why(why, "bad arguments");
		return -EINVAL;
	}
	if (!cfg->secret || !*cfg->secret) {
		set_why(why, "no secret configured");
		return -EINVAL;
	}
	if (len > (size_t)INT32_MAX) {
		set_why(why, "body too large");
		return -EINVAL;
	}
	switch (cfg->auth) {
	case VAPI_HOOK_BEARER:
		return verify_bearer(cfg, hdr, ctx, why);
	case VAPI_HOOK_HMAC:
		return verify_hmac(cfg, hdr, ctx, body, len, now_s, why);
	}
	set_why(why, "unknown authentication kind");
	return -EINVAL;
}

/* ---- the body -------------------------------------------------------------------------- */

/* A member that is absent or JSON null reads as NULL. */
static json_t *get(const json_t *obj, const char *key)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	return json_is_null(v) ? NULL : v;
}

/* An optional object member: 0 with *out (NULL when absent), or -EINVAL. */
static int get_obj(const json_t *obj, const char *key, const char *bad, json_t **out,
                   const char **why)
{
	json_t *v = get(obj, key);
	if (v && !json_is_object(v)) {
		set_why(why, bad);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* An optional string member copied into *dst unless *dst is set already (so the first of
 * several sources wins). 0, -EINVAL (not a string), -ENOMEM. */
static int take_str(const json_t *obj, const char *key, const char *bad, char **dst,
                    const char **why)
{
	json_t *v = get(obj, key);
	if (!v)
		return 0;
	if (!json_is_string(v)) {
		set_why(why, bad);
		return -EINVAL;
	}
	if (*dst)
		return 0;
	*dst = mem_strdup(json_string_value(v));
	if (!*dst) {
		set_why(why, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* jansson's malloc'ed text moved into a mem_ block. */
static char *dump_obj(const json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	if (!s)
		return NULL;
	char *r = mem_strdup(s);
	free(s);
	return r;
}

/* The field names of one tool-call source, for the errors. */
struct tc_names {
	const char *not_obj, *id, *function, *name_missing, *name_type, *args;
};

static const struct tc_names tc_list = {
    "message.toolCallList[] is not an object",
    "message.toolCallList[].id is not a string",
    "message.toolCallList[].function is not an object",
    "message.toolCallList[].function.name missing",
    "message.toolCallList[].function.name is not a string",
    "message.toolCallList[].function.arguments is not a JSON object",
};

static const struct tc_names tc_with = {
    "message.toolWithToolCallList[] is not an object",
    "message.toolWithToolCallList[].toolCall.id is not a string",
    "message.toolWithToolCallList[].toolCall.function is not an object",
    "message.toolWithToolCallList[].toolCall.function.name missing",
    "message.toolWithToolCallList[].toolCall.function.name is not a string",
    "message.toolWithToolCallList[].toolCall.function.arguments is not a JSON object",
};

static const struct tc_names tc_legacy = {
    "message.functionCall is not an object",
    "message.functionCall.id is not a string",
    "message.functionCall.function is not an object",
    "message.functionCall.name missing",
    "message.functionCall.name is not a string",
    "message.functionCall.parameters is not a JSON object",
};

/* The arguments as JSON object text: an object is serialized, a string must hold an object
 * (an empty one is "{}"), absent is "{}". 0, -EINVAL, -ENOMEM. */
static int args_text(const json_t *args, const char *bad, char **out, const char **why)
{
	json_t *parsed = NULL;
	if (json_is_string(args)) {
		const char *s = json_string_value(args);
		if (!*skip_ws(s)) {
			args = NULL;
		} else {
			parsed = json_loads(s, 0, NULL);
			args = parsed;
			if (!json_is_object(args)) {
				json_decref(parsed);
				set_why(why, bad);
				return -EINVAL;
			}
		}
	} else if (args && !json_is_object(args)) {
		set_why(why, bad);
		return -EINVAL;
	}
	*out = args ? dump_obj(args) : mem_strdup("{}");
	json_decref(parsed);
	if (!*out) {
		set_why(why, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* One tool call, [OAS] {id,type,function:{name,arguments}} or the docs' {id,name,parameters};
 * fallback_fn is where a name may also be found (toolWithToolCallList[].function). */
static int tool_one(const json_t *tc, const json_t *fallback_fn, const struct tc_names *nm,
                    struct vapi_hook_tool *t, const char **why)
{
	json_t *fn;
	int rc;
	if (!json_is_object(tc)) {
		set_why(why, nm->not_obj);
		return -EINVAL;
	}
	rc = get_obj(tc, "function", nm->function, &fn, why);
	if (rc == 0)
		rc = take_str(tc, "id", nm->id, &t->id, why);
	if (rc == 0)
		rc = take_str(fn, "name", nm->name_type, &t->name, why);
	if (rc == 0)
		rc = take_str(tc, "name", nm->name_type, &t->name, why);
	if (rc == 0 && fallback_fn)
		rc = take_str(fallback_fn, "name", nm->name_type, &t->name, why);
	if (rc)
		return rc;
	if (!t->name) {
		set_why(why, nm->name_missing);
		return -EINVAL;
	}
	if (!t->id) {
		t->id = mem_strdup("");
		if (!t->id) {
			set_why(why, "out of memory");
			return -ENOMEM;
		}
	}
	json_t *args = get(fn, "arguments");
	if (!args)
		args = get(tc, "arguments");
	if (!args)
		args = get(tc, "parameters");
	return args_text(args, nm->args, &t->arguments, why);
}

static int tools_alloc(struct vapi_hook_msg *m, size_t n, const char **why)
{
	if (n == 0)
		return 0;
	if (n > UINT32_MAX / sizeof(*m->tools)) {
		set_why(why, "too many tool calls");
		return -EINVAL;
	}
	m->tools = mem_zalloc(n * sizeof(*m->tools));
	if (!m->tools) {
		set_why(why, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int parse_tool_calls(const json_t *msg, struct vapi_hook_msg *m, const char **why)
{
	json_t *list = get(msg, "toolCallList");
	json_t *with = get(msg, "toolWithToolCallList");
	size_t i;
	json_t *e;
	int rc;
	if (list && !json_is_array(list)) {
		set_why(why, "message.toolCallList is not an array");
		return -EINVAL;
	}
	if (!list && with && !json_is_array(with)) {
		set_why(why, "message.toolWithToolCallList is not an array");
		return -EINVAL;
	}
	if (!list && !with) {
		set_why(why, "message.toolCallList missing");
		return -EINVAL;
	}
	if (list) {
		rc = tools_alloc(m, json_array_size(list), why);
		if (rc)
			return rc;
		json_array_foreach(list, i, e)
		{
			rc = tool_one(e, NULL, &tc_list, &m->tools[i], why);
			m->n_tools = (unsigned)i + 1; /* so that free sees the partial one */
			if (rc)
				return rc;
		}
		return 0;
	}
	rc = tools_alloc(m, json_array_size(with), why);
	if (rc)
		return rc;
	json_array_foreach(with, i, e)
	{
		json_t *fn = NULL, *tc;
		m->n_tools = (unsigned)i + 1;
		if (!json_is_object(e)) {
			set_why(why, tc_with.not_obj);
			return -EINVAL;
		}
		rc = get_obj(e, "function",
		             "message.toolWithToolCallList[].function is not an object", &fn, why);
		if (rc)
			return rc;
		tc = get(e, "toolCall");
		if (!tc) {
			set_why(why, "message.toolWithToolCallList[].toolCall missing");
			return -EINVAL;
		}
		rc = tool_one(tc, fn, &tc_with, &m->tools[i], why);
		if (rc)
			return rc;
	}
	return 0;
}

static const struct {
	const char *name;
	enum vapi_hook_type type;
} hook_types[] = {
    {"tool-calls", VAPI_HOOK_TOOL_CALLS},
    {"assistant-request", VAPI_HOOK_ASSISTANT_REQUEST},
    {"transfer-destination-request", VAPI_HOOK_TRANSFER_DEST},
    {"function-call", VAPI_HOOK_FUNCTION_CALL},
    {"status-update", VAPI_HOOK_STATUS},
    {"end-of-call-report", VAPI_HOOK_END_REPORT},
    {"hang", VAPI_HOOK_HANG},
};

/* Copies s into dst (size n), cut at a UTF-8 character boundary. */
static void copy_cut(char *dst, size_t n, const char *s)
{
	size_t l = strlen(s);
	if (l >= n) {
		l = n - 1;
		while (l > 0 && ((unsigned char)s[l] & 0xC0) == 0x80)
			l--;
	}
	memcpy(dst, s, l);
	dst[l] = '\0';
}

/* The fields every type may carry: the call, the number called, the customer. */
static int parse_common(const json_t *msg, struct vapi_hook_msg *m, const char **why)
{
	json_t *call, *pn, *cu, *cpn = NULL, *ccu = NULL;
	int rc = get_obj(msg, "call", "message.call is not an object", &call, why);
	if (rc == 0)
		rc = get_obj(msg, "phoneNumber", "message.phoneNumber is not an object", &pn, why);
	if (rc == 0)
		rc = get_obj(msg, "customer", "message.customer is not an object", &cu, why);
	if (rc == 0)
		rc = get_obj(call, "phoneNumber", "message.call.phoneNumber is not an object", &cpn,
		             why);
	if (rc == 0)
		rc = get_obj(call, "customer", "message.call.customer is not an object", &ccu, why);
	if (rc == 0)
		rc = take_str(call, "id", "message.call.id is not a string", &m->call_id, why);
	if (rc == 0)
		rc =
		    take_str(call, "name", "message.call.name is not a string", &m->call_name, why);
	if (rc == 0)
		rc = take_str(pn, "number", "message.phoneNumber.number is not a string",
		              &m->phone_number, why);
	if (rc == 0)
		rc = take_str(cpn, "number", "message.call.phoneNumber.number is not a string",
		              &m->phone_number, why);
	if (rc == 0)
		rc = take_str(cu, "number", "message.customer.number is not a string",
		              &m->customer_number, why);
	if (rc == 0)
		rc = take_str(ccu, "number", "message.call.customer.number is not a string",
		              &m->customer_number, why);
	return rc;
}

/* status-update and end-of-call-report: the reason, the report's artifact and analysis. */
static int parse_report(const json_t *msg, struct vapi_hook_msg *m, const char **why)
{
	json_t *art, *ana, *rec = NULL, *mono = NULL, *call = get(msg, "call");
	int rc = get_obj(msg, "artifact", "message.artifact is not an object", &art, why);
	if (rc == 0)
		rc = get_obj(msg, "analysis", "message.analysis is not an object", &ana, why);
	if (rc == 0)
		rc = get_obj(art, "recording", "message.artifact.recording is not an object", &rec,
		             why);
	if (rc == 0)
		rc = get_obj(rec, "mono", "message.artifact.recording.mono is not an object", &mono,
		             why);
	if (rc == 0)
		rc = take_str(msg, "status", "message.status is not a string", &m->status, why);
	if (rc == 0)
		rc = take_str(msg, "endedReason", "message.endedReason is not a string",
		              &m->ended_reason, why);
	if (rc == 0)
		rc = take_str(call, "endedReason", "message.call.endedReason is not a string",
		              &m->ended_reason, why);
	if (rc == 0)
		rc = take_str(ana, "summary", "message.analysis.summary is not a string",
		              &m->summary, why);
	if (rc == 0)
		rc = take_str(msg, "summary", "message.summary is not a string", &m->summary, why);
	if (rc == 0)
		rc = take_str(art, "transcript", "message.artifact.transcript is not a string",
		              &m->transcript, why);
	if (rc == 0)
		rc = take_str(msg, "transcript", "message.transcript is not a string",
		              &m->transcript, why);
	if (rc == 0)
		rc = take_str(art, "recordingUrl", "message.artifact.recordingUrl is not a string",
		              &m->recording_url, why);
	if (rc == 0)
		rc = take_str(mono, "combinedUrl",
		              "message.artifact.recording.mono.combinedUrl is not a string",
		              &m->recording_url, why);
	if (rc == 0)
		rc = take_str(rec, "stereoUrl",
		              "message.artifact.recording.stereoUrl is not a string",
		              &m->recording_url, why);
	if (rc == 0)
		rc = take_str(msg, "recordingUrl", "message.recordingUrl is not a string",
		              &m->recording_url, why);
	if (rc == 0)
		rc = take_str(msg, "startedAt", "message.startedAt is not a string", &m->started_at,
		              why);
	if (rc == 0)
		rc = take_str(msg, "endedAt", "message.endedAt is not a string", &m->ended_at, why);
	if (rc)
		return rc;
	json_t *cost = get(msg, "cost");
	if (cost) {
		if (!json_is_number(cost)) {
			set_why(why, "message.cost is not a number");
			return -EINVAL;
		}
		m->cost = json_number_value(cost);
		m->has_cost = 1;
	}
	return 0;
}

int vapi_hook_parse(const char *body, size_t len, struct vapi_hook_msg *out, const char **why)
{
	json_t *root = NULL, *msg;
	int rc = -EINVAL;
	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!body) {
		set_why(why, "body is not JSON");
		return -EINVAL;
	}
	root = json_loadb(body, len, 0, NULL);
	if (!root) {
		set_why(why, "body is not JSON");
		goto out;
	}
	if (!json_is_object(root)) {
		set_why(why, "body is not a JSON object");
		goto out;
	}
	msg = get(root, "message");
	if (!msg) {
		set_why(why, "no message object");
		goto out;
	}
	if (!json_is_object(msg)) {
		set_why(why, "message is not an object");
		goto out;
	}
	json_t *type = get(msg, "type");
	if (!type) {
		set_why(why, "message.type missing");
		goto out;
	}
	if (!json_is_string(type)) {
		set_why(why, "message.type is not a string");
		goto out;
	}
	const char *tn = json_string_value(type);
	copy_cut(out->type_name, sizeof(out->type_name), tn);
	out->type = VAPI_HOOK_OTHER;
	for (size_t i = 0; i < sizeof(hook_types) / sizeof(hook_types[0]); i++)
		if (strcmp(tn, hook_types[i].name) == 0)
			out->type = hook_types[i].type;

	rc = parse_common(msg, out, why);
	if (rc)
		goto out;
	switch (out->type) {
	case VAPI_HOOK_TOOL_CALLS:
		rc = parse_tool_calls(msg, out, why);
		break;
	case VAPI_HOOK_FUNCTION_CALL: {
		/* Legacy: {"functionCall":{"name","parameters"}}, given as one tool. */
		json_t *fc = get(msg, "functionCall");
		if (!fc) {
			set_why(why, "message.functionCall missing");
			rc = -EINVAL;
			break;
		}
		rc = tools_alloc(out, 1, why);
		if (rc)
			break;
		out->n_tools = 1;
		rc = tool_one(fc, NULL, &tc_legacy, &out->tools[0], why);
		break;
	}
	case VAPI_HOOK_STATUS:
	case VAPI_HOOK_END_REPORT:
		rc = parse_report(msg, out, why);
		break;
	default:
		break;
	}
out:
	json_decref(root);
	if (rc)
		vapi_hook_msg_free(out);
	return rc;
}

void vapi_hook_msg_free(struct vapi_hook_msg *m)
{
	if (!m)
		return;
	for (unsigned i = 0; m->tools && i < m->n_tools; i++) {
		mem_free(m->tools[i].id);
		mem_free(m->tools[i].name);
		mem_free(m->tools[i].arguments);
	}
	mem_free(m->tools);
	mem_free(m->call_id);
	mem_free(m->call_name);
	mem_free(m->status);
	mem_free(m->ended_reason);
	mem_free(m->phone_number);
	mem_free(m->customer_number);
	mem_free(m->summary);
	mem_free(m->transcript);
	mem_free(m->recording_url);
	mem_free(m->started_at);
	mem_free(m->ended_at);
	memset(m, 0, sizeof(*m));
}

/* ---- the tool-calls answer ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		return (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
			return 0;
		if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F))
			return 0; /* overlong, or a surrogate */
		return 3;
	}
	if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
			return 0;
		if ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
			return 0;
		return 4;
	}
	return 0;
}

/* s as a JSON string literal: quotes, backslashes and control characters escaped, bytes
 * that are not UTF-8 replaced by U+FFFD so that the answer is always valid JSON. */
static void put_json_str(struct strbuf *sb, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	str_append(sb, "\"", 1);
	while (*p) {
		size_t run = 0;
		while (p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
			run++;
		if (run) {
			str_append(sb, (const char *)p, run);
			p += run;
			continue;
		}
		switch (*p) {
		case '"':
			str_puts(sb, "\\\"");
			break;
		case '\\':
			str_puts(sb, "\\\\");
			break;
		case '\n':
			str_puts(sb, "\\n");
			break;
		case '\r':
			str_puts(sb, "\\r");
			break;
		case '\t':
			str_puts(sb, "\\t");
			break;
		case '\b':
			str_puts(sb, "\\b");
			break;
		case '\f':
			str_puts(sb, "\\f");
			break;
		default:
			if (*p < 0x20) {
				str_printf(sb, "\\u%04x", *p);
			} else {
				size_t n = utf8_len(p);
				if (n) {
					str_append(sb, (const char *)p, n);
					p += n;
					continue;
				}
				str_puts(sb, "\\ufffd");
			}
			break;
		}
		p++;
	}
	str_append(sb, "\"", 1);
}

char *vapi_hook_results_json(const struct vapi_hook_result *r, unsigned n, size_t *len)
{
	struct strbuf sb;
	str_init(&sb);
	str_puts(&sb, "{\"results\":[");
	for (unsigned i = 0; r && i < n; i++) {
		str_puts(&sb, i ? ",{\"toolCallId\":" : "{\"toolCallId\":");
		put_json_str(&sb, r[i].id);
		if (r[i].name) {
			str_puts(&sb, ",\"name\":");
			put_json_str(&sb, r[i].name);
		}
		if (r[i].result || !r[i].error) {
			str_puts(&sb, ",\"result\":");
			put_json_str(&sb, r[i].result);
		}
		if (r[i].error) {
			str_puts(&sb, ",\"error\":");
			put_json_str(&sb, r[i].error);
		}
		str_append(&sb, "}", 1);
	}
	str_puts(&sb, "]}");
	if (sb.oom) {
		str_deinit(&sb);
		return NULL;
	}
	if (len)
		*len = sb.len;
	return str_steal(&sb);
}
