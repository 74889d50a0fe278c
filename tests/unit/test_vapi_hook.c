/* Unit tests: VAPI server webhooks: bearer and HMAC credentials (known vectors from the
 * openssl command line), parsing of every type vacsd routes, rejection of malformed bodies
 * with a reason naming the field, the tool-calls answer, and allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/mem.h"
#include "vapi/vapi.h"
#include "tests/unit/test_alloc.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

/* ---- request headers: a small table, looked up as vacsd's HTTP server would ---- */

struct hdrs {
	const char *name[4], *value[4];
};

static const char *hdr_get(void *ctx, const char *name, char *buf, size_t len)
{
	struct hdrs *h = ctx;
	for (int i = 0; i < 4 && h->name[i]; i++)
		if (strcmp(h->name[i], name) == 0) {
			snprintf(buf, len, "%s", h->value[i]);
			return buf;
		}
	return NULL;
}

static int verify(const struct vapi_hook_config *cfg, struct hdrs *h, const char *body,
                  uint64_t now, const char **why)
{
	*why = NULL;
	return vapi_hook_verify(cfg, hdr_get, h, body, strlen(body), now, why);
}

#define ASSERT_DENIED(rc, why, text)                                                               \
	do {                                                                                       \
		assert_int_equal((rc), -EACCES);                                                   \
		assert_non_null(why);                                                              \
		assert_string_equal((why), (text));                                                \
	} while (0)

static const struct vapi_hook_config bearer_cfg = {
    .auth = VAPI_HOOK_BEARER,
    .secret = "s3cret-token",
    .header = "authorization",
    .bearer_prefix = 1,
};

static void test_vapi_hook_bearer(void **state)
{
	(void)state;
	const char *why;
	struct hdrs ok = {{"authorization"}, {"Bearer s3cret-token"}};
	assert_int_equal(verify(&bearer_cfg, &ok, "{}", 0, &why), 0);
	/* The scheme is case-insensitive; blanks around the token are not part of it. */
	struct hdrs lower = {{"authorization"}, {"bearer   s3cret-token "}};
	assert_int_equal(verify(&bearer_cfg, &lower, "{}", 0, &why), 0);

	struct hdrs none = {{"x-other"}, {"Bearer s3cret-token"}};
	ASSERT_DENIED(verify(&bearer_cfg, &none, "{}", 0, &why), why, "missing credential");
	struct hdrs empty = {{"authorization"}, {""}};
	ASSERT_DENIED(verify(&bearer_cfg, &empty, "{}", 0, &why), why, "missing credential");

	struct hdrs wrong = {{"authorization"}, {"Bearer s3cret-tokem"}};
	ASSERT_DENIED(verify(&bearer_cfg, &wrong, "{}", 0, &why), why, "wrong credential");
	struct hdrs shorter = {{"authorization"}, {"Bearer s3cret-toke"}};
	ASSERT_DENIED(verify(&bearer_cfg, &shorter, "{}", 0, &why), why, "wrong credential");
	struct hdrs longer = {{"authorization"}, {"Bearer s3cret-token2"}};
	ASSERT_DENIED(verify(&bearer_cfg, &longer, "{}", 0, &why), why, "wrong credential");
	struct hdrs no_token = {{"authorization"}, {"Bearer"}};
	ASSERT_DENIED(verify(&bearer_cfg, &no_token, "{}", 0, &why), why, "wrong credential");

	/* The right token without, or with another, scheme. */
	struct hdrs bare = {{"authorization"}, {"s3cret-token"}};
	ASSERT_DENIED(verify(&bearer_cfg, &bare, "{}", 0, &why), why, "wrong credential");
	struct hdrs basic = {{"authorization"}, {"Basic s3cret-token"}};
	ASSERT_DENIED(verify(&bearer_cfg, &basic, "{}", 0, &why), why, "wrong credential");
	struct hdrs glued = {{"authorization"}, {"Bearers3cret-token"}};
	ASSERT_DENIED(verify(&bearer_cfg, &glued, "{}", 0, &why), why, "wrong credential");
}

/* The legacy X-Vapi-Secret: a bearer plan with headerName "X-Vapi-Secret", prefix off. */
static void test_vapi_hook_legacy_secret(void **state)
{
	(void)state;
	const char *why;
	struct vapi_hook_config cfg = {
	    .auth = VAPI_HOOK_BEARER, .secret = "legacy", .header = "x-vapi-secret"};
	struct hdrs ok = {{"x-vapi-secret"}, {"legacy"}};
	assert_int_equal(verify(&cfg, &ok, "{}", 0, &why), 0);
	struct hdrs prefixed = {{"x-vapi-secret"}, {"Bearer legacy"}};
	ASSERT_DENIED(verify(&cfg, &prefixed, "{}", 0, &why), why, "wrong credential");
	struct hdrs in_auth = {{"authorization"}, {"legacy"}};
	ASSERT_DENIED(verify(&cfg, &in_auth, "{}", 0, &why), why, "missing credential");

	/* No header name: Authorization. */
	cfg.header = NULL;
	assert_int_equal(verify(&cfg, &in_auth, "{}", 0, &why), 0);
}

static void test_vapi_hook_bad_config(void **state)
{
	(void)state;
	const char *why;
	struct hdrs h = {{"authorization"}, {"Bearer x"}};
	struct vapi_hook_config cfg = bearer_cfg;
	cfg.secret = NULL;
	assert_int_equal(verify(&cfg, &h, "{}", 0, &why), -EINVAL);
	assert_non_null(why);
	cfg.secret = "";
	assert_int_equal(verify(&cfg, &h, "{}", 0, &why), -EINVAL);
	cfg.secret = "x";
	cfg.auth = (enum vapi_hook_auth)0;
	assert_int_equal(verify(&cfg, &h, "{}", 0, &why), -EINVAL);
	cfg.auth = VAPI_HOOK_HMAC;
	cfg.algorithm = "md5";
	assert_int_equal(verify(&cfg, &h, "{}", 0, &why), -EINVAL);
	assert_int_equal(vapi_hook_verify(NULL, hdr_get, &h, "{}", 2, 0, &why), -EINVAL);
	assert_int_equal(vapi_hook_verify(&bearer_cfg, NULL, &h, "{}", 2, 0, &why), -EINVAL);
}

/* `printf '%s' "1700000000.{}" | openssl dgst -sha256 -hmac key` */
#define VEC_SHA256 "9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
/* B='{"message":{"type":"tool-calls"}}';
 * `printf '%s' "1700000000.$B" | openssl dgst -sha512 -hmac s3cret -binary | base64 -w0` */
#define VEC_BODY "{\"message\":{\"type\":\"tool-calls\"}}"
#define VEC_SHA512_B64                                                                             \
	"9nLLHeQP0+h2lhFskTquXm0m4mMCuigv58NRkGnnp54hlmKe6LGyzlNnOJZxlTi48Gs3CNiEh4Vr+mE77TzQVQ=="
/* `printf '%s' "$B" | openssl dgst -sha1 -hmac s3cret` (no timestamp) */
#define VEC_SHA1_NOTS "e148090367eed1ede86adad00c41847ab4779499"

static const struct vapi_hook_config hmac_cfg = {
    .auth = VAPI_HOOK_HMAC,
    .secret = "key",
    .include_timestamp = 1,
};

/* Lowercase hex HMAC-SHA256 of "<ts>.<body>" computed here, to check the literal. */
static void hmac_hex(const char *key, const char *ts, const char *body, char out[65])
{
	char msg[256];
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dl = 0;
	int n = snprintf(msg, sizeof(msg), "%s.%s", ts, body);
	assert_non_null(
	    HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)msg, (size_t)n, d, &dl));
	for (unsigned i = 0; i < dl; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_vapi_hook_hmac_sha256_hex(void **state)
{
	(void)state;
	const char *why;
	char mine[65];
	hmac_hex("key", "1700000000", "{}", mine);
	assert_string_equal(mine, VEC_SHA256);

	struct hdrs ok = {{"x-signature", "x-timestamp"}, {VEC_SHA256, "1700000000"}};
	assert_int_equal(verify(&hmac_cfg, &ok, "{}", 1700000000, &why), 0);
	assert_int_equal(verify(&hmac_cfg, &ok, "{}", 1700000000 + 300, &why), 0);
	assert_int_equal(verify(&hmac_cfg, &ok, "{}", 1700000000 - 300, &why), 0);
	/* Uppercase hex decodes to the same bytes. */
	char upper[65];
	for (int i = 0; i < 65; i++)
		upper[i] = (char)(VEC_SHA256[i] >= 'a' ? VEC_SHA256[i] - 32 : VEC_SHA256[i]);
	struct hdrs up = {{"x-signature", "x-timestamp"}, {upper, "1700000000"}};
	assert_int_equal(verify(&hmac_cfg, &up, "{}", 1700000000, &why), 0);

	/* A timestamp in milliseconds: the freshness is in seconds, the payload as sent. */
	char ms_sig[65];
	hmac_hex("key", "1700000000123", "{}", ms_sig);
	struct hdrs ms = {{"x-signature", "x-timestamp"}, {ms_sig, "1700000000123"}};
	assert_int_equal(verify(&hmac_cfg, &ms, "{}", 1700000100, &why), 0);
	ASSERT_DENIED(verify(&hmac_cfg, &ms, "{}", 1700000400, &why), why, "stale timestamp");

	/* Other header names. */
	struct vapi_hook_config named = hmac_cfg;
	named.signature_header = "x-vapi-signature";
	named.timestamp_header = "x-vapi-timestamp";
	struct hdrs nh = {{"x-vapi-signature", "x-vapi-timestamp"}, {VEC_SHA256, "1700000000"}};
	assert_int_equal(verify(&named, &nh, "{}", 1700000000, &why), 0);
	ASSERT_DENIED(verify(&named, &ok, "{}", 1700000000, &why), why, "missing credential");
}

static void test_vapi_hook_hmac_sha512_base64(void **state)
{
	(void)state;
	const char *why;
	struct vapi_hook_config cfg = {.auth = VAPI_HOOK_HMAC,
	                               .secret = "s3cret",
	                               .algorithm = "sha512",
	                               .include_timestamp = 1,
	                               .base64 = 1};
	struct hdrs ok = {{"x-signature", "x-timestamp"}, {VEC_SHA512_B64, "1700000000"}};
	assert_int_equal(verify(&cfg, &ok, VEC_BODY, 1700000005, &why), 0);
	/* Unpadded base64 is the same signature. */
	char unpadded[sizeof(VEC_SHA512_B64)];
	snprintf(unpadded, sizeof(unpadded), "%s", VEC_SHA512_B64);
	unpadded[strlen(unpadded) - 2] = '\0';
	struct hdrs np = {{"x-signature", "x-timestamp"}, {unpadded, "1700000000"}};
	assert_int_equal(verify(&cfg, &np, VEC_BODY, 1700000005, &why), 0);
	/* The same bytes in hex are refused when base64 is configured. */
	struct hdrs hex = {{"x-signature", "x-timestamp"}, {VEC_SHA256, "1700000000"}};
	ASSERT_DENIED(verify(&cfg, &hex, VEC_BODY, 1700000000, &why), why, "malformed signature");
	/* sha256 of this body is shorter than a sha512: malformed, not merely wrong. */
	struct hdrs short_b64 = {{"x-signature", "x-timestamp"},
	                         {"nXE+1Aa7cHbUEj8NwsOdLfXGVO1LDNVrUsi0yUC9Y64=", "1700000000"}};
	ASSERT_DENIED(verify(&cfg, &short_b64, VEC_BODY, 1700000000, &why), why,
	              "malformed signature");
	struct hdrs junk = {{"x-signature", "x-timestamp"}, {"!!!!", "1700000000"}};
	ASSERT_DENIED(verify(&cfg, &junk, VEC_BODY, 1700000000, &why), why, "malformed signature");
	struct hdrs mid_pad = {
	    {"x-signature", "x-timestamp"},
	    {"9nLL=eQP0+h2lhFskTquXm0m4mMCuigv58NRkGnnp54hlmKe6LGyzlNnOJZxlTi48Gs3"
	     "CNiEh4Vr+mE77TzQVQ==",
	     "1700000000"}};
	ASSERT_DENIED(verify(&cfg, &mid_pad, VEC_BODY, 1700000000, &why), why,
	              "malformed signature");
}

static void test_vapi_hook_hmac_prefix(void **state)
{
	(void)state;
	const char *why;
	struct vapi_hook_config cfg = hmac_cfg;
	cfg.signature_prefix = "sha256=";
	struct hdrs ok = {{"x-signature", "x-timestamp"}, {"sha256=" VEC_SHA256, "1700000000"}};
	assert_int_equal(verify(&cfg, &ok, "{}", 1700000000, &why), 0);
	struct hdrs bare = {{"x-signature", "x-timestamp"}, {VEC_SHA256, "1700000000"}};
	ASSERT_DENIED(verify(&cfg, &bare, "{}", 1700000000, &why), why, "malformed signature");
	struct hdrs other = {{"x-signature", "x-timestamp"}, {"sha512=" VEC_SHA256, "1700000000"}};
	ASSERT_DENIED(verify(&cfg, &other, "{}", 1700000000, &why), why, "malformed signature");
	/* Without a configured prefix, a prefixed signature is malformed. */
	ASSERT_DENIED(verify(&hmac_cfg, &ok, "{}", 1700000000, &why), why, "malformed signature");
}

static void test_vapi_hook_hmac_timestamp(void **state)
{
	(void)state;
	const char *why;
	struct hdrs ok = {{"x-signature", "x-timestamp"}, {VEC_SHA256, "1700000000"}};
	ASSERT_DENIED(verify(&hmac_cfg, &ok, "{}", 1700000301, &why), why, "stale timestamp");
	ASSERT_DENIED(verify(&hmac_cfg, &ok, "{}", 1699999699, &why), why, "stale timestamp");
	struct vapi_hook_config tight = hmac_cfg;
	tight.max_skew_s = 5;
	assert_int_equal(verify(&tight, &ok, "{}", 1700000005, &why), 0);
	ASSERT_DENIED(verify(&tight, &ok, "{}", 1700000006, &why), why, "stale timestamp");

	struct hdrs no_ts = {{"x-signature"}, {VEC_SHA256}};
	ASSERT_DENIED(verify(&hmac_cfg, &no_ts, "{}", 1700000000, &why), why, "missing timestamp");
	struct hdrs bad_ts = {{"x-signature", "x-timestamp"}, {VEC_SHA256, "17000000x0"}};
	ASSERT_DENIED(verify(&hmac_cfg, &bad_ts, "{}", 1700000000, &why), why,
	              "malformed timestamp");
	struct hdrs neg_ts = {{"x-signature", "x-timestamp"}, {VEC_SHA256, "-1700000000"}};
	ASSERT_DENIED(verify(&hmac_cfg, &neg_ts, "{}", 1700000000, &why), why,
	              "malformed timestamp");
	struct hdrs no_sig = {{"x-timestamp"}, {"1700000000"}};
	ASSERT_DENIED(verify(&hmac_cfg, &no_sig, "{}", 1700000000, &why), why,
	              "missing credential");

	/* includeTimestamp false: the body alone is signed and no timestamp is needed. */
	struct vapi_hook_config nots = {
	    .auth = VAPI_HOOK_HMAC, .secret = "s3cret", .algorithm = "sha1"};
	struct hdrs s1 = {{"x-signature"}, {VEC_SHA1_NOTS}};
	assert_int_equal(verify(&nots, &s1, VEC_BODY, 42, &why), 0);
}

static void test_vapi_hook_hmac_rejects(void **state)
{
	(void)state;
	const char *why;
	struct hdrs ok = {{"x-signature", "x-timestamp"}, {VEC_SHA256, "1700000000"}};
	/* The body tampered with, or a different key. */
	ASSERT_DENIED(verify(&hmac_cfg, &ok, "{ }", 1700000000, &why), why, "wrong credential");
	struct vapi_hook_config other_key = hmac_cfg;
	other_key.secret = "kez";
	ASSERT_DENIED(verify(&other_key, &ok, "{}", 1700000000, &why), why, "wrong credential");
	/* The timestamp is signed: another fresh one does not verify. */
	struct hdrs moved = {{"x-signature", "x-timestamp"}, {VEC_SHA256, "1700000001"}};
	ASSERT_DENIED(verify(&hmac_cfg, &moved, "{}", 1700000000, &why), why, "wrong credential");
	/* One hex digit off: wrong; a digit short, a non-hex digit: malformed. */
	char sig[65];
	memcpy(sig, VEC_SHA256, sizeof(sig));
	sig[10] = sig[10] == '0' ? '1' : '0';
	struct hdrs flipped = {{"x-signature", "x-timestamp"}, {sig, "1700000000"}};
	ASSERT_DENIED(verify(&hmac_cfg, &flipped, "{}", 1700000000, &why), why, "wrong credential");
	sig[63] = '\0';
	struct hdrs shorter = {{"x-signature", "x-timestamp"}, {sig, "1700000000"}};
	ASSERT_DENIED(verify(&hmac_cfg, &shorter, "{}", 1700000000, &why), why,
	              "malformed signature");
	memcpy(sig, VEC_SHA256, sizeof(sig));
	sig[5] = 'g';
	struct hdrs nonhex = {{"x-signature", "x-timestamp"}, {sig, "1700000000"}};
	ASSERT_DENIED(verify(&hmac_cfg, &nonhex, "{}", 1700000000, &why), why,
	              "malformed signature");
	/* Base64 where hex is configured. */
	struct hdrs b64 = {{"x-signature", "x-timestamp"},
	                   {"nXE+1Aa7cHbUEj8NwsOdLfXGVO1LDNVrUsi0yUC9Y64=", "1700000000"}};
	ASSERT_DENIED(verify(&hmac_cfg, &b64, "{}", 1700000000, &why), why, "malformed signature");
}

/* ---- parsing ---- */

static int parse(const char *body, struct vapi_hook_msg *m, const char **why)
{
	*why = NULL;
	return vapi_hook_parse(body, strlen(body), m, why);
}

static void test_vapi_hook_parse_tool_calls(void **state)
{
	(void)state;
	const char *why;
	struct vapi_hook_msg m;
	/* [OAS] shape with string arguments, then the docs' flat shape with an object. */
	const char *body =
	    "{\"message\":{\"type\":\"tool-calls\",\"timestamp\":1700000000000,"
	    "\"call\":{\"id\":\"vapi-1\",\"name\":\"vacs-42\"},"
	    "\"toolCallList\":["
	    "{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"lookup\","
	    "\"arguments\":\"{\\\"order\\\": 17, \\\"q\\\": \\\"x\\\"}\"}},"
	    "{\"id\":\"call_b\",\"name\":\"transfer\",\"parameters\":{\"to\":\"+15551234\"}}],"
	    "\"toolWithToolCallList\":[{\"type\":\"function\",\"function\":{\"name\":\"ignored\"},"
	    "\"toolCall\":{\"id\":\"call_z\",\"function\":{\"name\":\"ignored\"}}}]}}";
	assert_int_equal(parse(body, &m, &why), 0);
	assert_int_equal(m.type, VAPI_HOOK_TOOL_CALLS);
	assert_string_equal(m.type_name, "tool-calls");
	assert_string_equal(m.call_id, "vapi-1");
	assert_string_equal(m.call_name, "vacs-42");
	assert_int_equal(m.n_tools, 2);
	assert_string_equal(m.tools[0].id, "call_a");
	assert_string_equal(m.tools[0].name, "lookup");
	assert_string_equal(m.tools[0].arguments, "{\"order\":17,\"q\":\"x\"}");
	assert_string_equal(m.tools[1].id, "call_b");
	assert_string_equal(m.tools[1].name, "transfer");
	assert_string_equal(m.tools[1].arguments, "{\"to\":\"+15551234\"}");
	vapi_hook_msg_free(&m);
	assert_null(m.tools);

	/* Object arguments in function, absent arguments, an empty string, no id. */
	body = "{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":["
	       "{\"id\":\"1\",\"function\":{\"name\":\"a\",\"arguments\":{\"k\":[1,2]}}},"
	       "{\"id\":\"2\",\"function\":{\"name\":\"b\"}},"
	       "{\"function\":{\"name\":\"c\",\"arguments\":\"  \"}},"
	       "{\"id\":\"4\",\"function\":{\"name\":\"d\",\"arguments\":null}}]}}";
	assert_int_equal(parse(body, &m, &why), 0);
	assert_int_equal(m.n_tools, 4);
	assert_string_equal(m.tools[0].arguments, "{\"k\":[1,2]}");
	assert_string_equal(m.tools[1].arguments, "{}");
	assert_string_equal(m.tools[2].id, "");
	assert_string_equal(m.tools[2].name, "c");
	assert_string_equal(m.tools[2].arguments, "{}");
	assert_string_equal(m.tools[3].arguments, "{}");
	assert_null(m.call_id);
	vapi_hook_msg_free(&m);

	/* No toolCallList: toolWithToolCallList[].toolCall, the name from its function. */
	body = "{\"message\":{\"type\":\"tool-calls\",\"toolWithToolCallList\":["
	       "{\"type\":\"function\",\"function\":{\"name\":\"weather\"},"
	       "\"toolCall\":{\"id\":\"tc1\",\"type\":\"function\","
	       "\"function\":{\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}},"
	       "{\"function\":{\"name\":\"x\"},\"toolCall\":{\"id\":\"tc2\","
	       "\"function\":{\"name\":\"time\",\"arguments\":{}}}}]}}";
	assert_int_equal(parse(body, &m, &why), 0);
	assert_int_equal(m.n_tools, 2);
	assert_string_equal(m.tools[0].id, "tc1");
	assert_string_equal(m.tools[0].name, "weather");
	assert_string_equal(m.tools[0].arguments, "{\"city\":\"Oslo\"}");
	assert_string_equal(m.tools[1].name, "time");
	assert_string_equal(m.tools[1].arguments, "{}");
	vapi_hook_msg_free(&m);

	/* An empty list parses; the caller answers with no results. */
	assert_int_equal(
	    parse("{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":[]}}", &m, &why), 0);
	assert_int_equal(m.n_tools, 0);
	vapi_hook_msg_free(&m);
}

static void test_vapi_hook_parse_function_call(void **state)
{
	(void)state;
	const char *why;
	struct vapi_hook_msg m;
	assert_int_equal(parse("{\"message\":{\"type\":\"function-call\",\"functionCall\":"
	                       "{\"name\":\"legacy\",\"parameters\":{\"a\":1}}}}",
	                       &m, &why),
	                 0);
	assert_int_equal(m.type, VAPI_HOOK_FUNCTION_CALL);
	assert_int_equal(m.n_tools, 1);
	assert_string_equal(m.tools[0].name, "legacy");
	assert_string_equal(m.tools[0].id, "");
	assert_string_equal(m.tools[0].arguments, "{\"a\":1}");
	vapi_hook_msg_free(&m);
}

static void test_vapi_hook_parse_assistant_request(void **state)
{
	(void)state;
	const char *why;
	struct vapi_hook_msg m;
	const char *body = "{\"message\":{\"type\":\"assistant-request\","
	                   "\"call\":{\"id\":\"c1\",\"type\":\"inboundPhoneCall\","
	                   "\"customer\":{\"number\":\"+15550000\"},"
	                   "\"phoneNumber\":{\"number\":\"+15559999\"}},"
	                   "\"phoneNumber\":{\"id\":\"pn\",\"number\":\"+15551111\"},"
	                   "\"customer\":{\"number\":\"+15552222\"}}}";
	assert_int_equal(parse(body, &m, &why), 0);
	assert_int_equal(m.type, VAPI_HOOK_ASSISTANT_REQUEST);
	assert_string_equal(m.call_id, "c1");
	assert_null(m.call_name);
	/* message.phoneNumber / message.customer win over the call's. */
	assert_string_equal(m.phone_number, "+15551111");
	assert_string_equal(m.customer_number, "+15552222");
	vapi_hook_msg_free(&m);

	body =
	    "{\"message\":{\"type\":\"assistant-request\",\"call\":{\"id\":\"c1\","
	    "\"customer\":{\"number\":\"+15550000\"},\"phoneNumber\":{\"number\":\"+15559999\"}},"
	    "\"phoneNumber\":null}}";
	assert_int_equal(parse(body, &m, &why), 0);
	assert_string_equal(m.phone_number, "+15559999");
	assert_string_equal(m.customer_number, "+15550000");
	vapi_hook_msg_free(&m);

	assert_int_equal(parse("{\"message\":{\"type\":\"transfer-destination-request\","
	                       "\"call\":{\"id\":\"c2\"}}}",
	                       &m, &why),
	                 0);
	assert_int_equal(m.type, VAPI_HOOK_TRANSFER_DEST);
	vapi_hook_msg_free(&m);
}

static void test_vapi_hook_parse_status_update(void **state)
{
	(void)state;
	const char *why;
	struct vapi_hook_msg m;
	assert_int_equal(parse("{\"message\":{\"type\":\"status-update\",\"status\":\"ended\","
	                       "\"endedReason\":\"customer-ended-call\","
	                       "\"call\":{\"id\":\"c3\",\"name\":\"vacs-7\"}}}",
	                       &m, &why),
	                 0);
	assert_int_equal(m.type, VAPI_HOOK_STATUS);
	assert_string_equal(m.status, "ended");
	assert_string_equal(m.ended_reason, "customer-ended-call");
	assert_string_equal(m.call_name, "vacs-7");
	assert_int_equal(m.has_cost, 0);
	vapi_hook_msg_free(&m);

	/* The reason only on the call object. */
	assert_int_equal(parse("{\"message\":{\"type\":\"status-update\",\"status\":\"ended\","
	                       "\"call\":{\"id\":\"c3\",\"endedReason\":\"silence-timed-out\"}}}",
	                       &m, &why),
	                 0);
	assert_string_equal(m.ended_reason, "silence-timed-out");
	vapi_hook_msg_free(&m);
}

static void test_vapi_hook_parse_end_of_call_report(void **state)
{
	(void)state;
	const char *why;
	struct vapi_hook_msg m;
	const char *body =
	    "{\"message\":{\"type\":\"end-of-call-report\",\"endedReason\":\"assistant-ended-"
	    "call\","
	    "\"call\":{\"id\":\"c4\",\"name\":\"vacs-9\"},"
	    "\"artifact\":{\"transcript\":\"AI: Hello\\nUser: Hi\\n\",\"messages\":[],"
	    "\"recordingUrl\":\"https://storage.vapi.ai/c4-mono.wav\"},"
	    "\"analysis\":{\"summary\":\"The caller said hi.\",\"successEvaluation\":\"true\"},"
	    "\"cost\":0.0123,\"costs\":[],\"startedAt\":\"2024-05-01T10:00:00.000Z\","
	    "\"endedAt\":\"2024-05-01T10:01:30.500Z\"}}";
	assert_int_equal(parse(body, &m, &why), 0);
	assert_int_equal(m.type, VAPI_HOOK_END_REPORT);
	assert_string_equal(m.ended_reason, "assistant-ended-call");
	assert_string_equal(m.call_id, "c4");
	assert_string_equal(m.call_name, "vacs-9");
	assert_string_equal(m.transcript, "AI: Hello\nUser: Hi\n");
	assert_string_equal(m.summary, "The caller said hi.");
	assert_string_equal(m.recording_url, "https://storage.vapi.ai/c4-mono.wav");
	assert_int_equal(m.has_cost, 1);
	assert_true(m.cost > 0.0122 && m.cost < 0.0124);
	assert_string_equal(m.started_at, "2024-05-01T10:00:00.000Z");
	assert_string_equal(m.ended_at, "2024-05-01T10:01:30.500Z");
	assert_null(m.status);
	vapi_hook_msg_free(&m);

	/* The emulator's shape: recordingUrl null, integer cost; the recording object and the
	 * older top-level summary/transcript as fallbacks. */
	body = "{\"message\":{\"type\":\"end-of-call-report\",\"endedReason\":\"x\","
	       "\"artifact\":{\"transcript\":\"\",\"recordingUrl\":null,"
	       "\"recording\":{\"mono\":{\"combinedUrl\":\"https://r/m.wav\"}}},"
	       "\"summary\":\"old summary\",\"cost\":0}}";
	assert_int_equal(parse(body, &m, &why), 0);
	assert_string_equal(m.transcript, "");
	assert_string_equal(m.recording_url, "https://r/m.wav");
	assert_string_equal(m.summary, "old summary");
	assert_int_equal(m.has_cost, 1);
	assert_true(m.cost == 0.0);
	assert_null(m.started_at);
	vapi_hook_msg_free(&m);
}

static void test_vapi_hook_parse_hang_and_other(void **state)
{
	(void)state;
	const char *why;
	struct vapi_hook_msg m;
	assert_int_equal(
	    parse("{\"message\":{\"type\":\"hang\",\"call\":{\"id\":\"c5\"}}}", &m, &why), 0);
	assert_int_equal(m.type, VAPI_HOOK_HANG);
	assert_string_equal(m.call_id, "c5");
	vapi_hook_msg_free(&m);

	/* Unknown types are not errors, and their own fields are not looked at. */
	assert_int_equal(parse("{\"message\":{\"type\":\"speech-update\",\"status\":7,"
	                       "\"toolCallList\":5,\"cost\":\"x\"},\"extra\":1}",
	                       &m, &why),
	                 0);
	assert_int_equal(m.type, VAPI_HOOK_OTHER);
	assert_string_equal(m.type_name, "speech-update");
	assert_null(m.status);
	vapi_hook_msg_free(&m);

	/* A long type is cut to fit, at a character boundary. */
	char body[256];
	snprintf(body, sizeof(body), "{\"message\":{\"type\":\"%s\xc3\xa9xyz\"}}",
	         "0123456789012345678901234567890123456789012345"); /* 46 + 2-byte é */
	assert_int_equal(parse(body, &m, &why), 0);
	assert_int_equal(m.type, VAPI_HOOK_OTHER);
	assert_int_equal(strlen(m.type_name), 46);
	vapi_hook_msg_free(&m);
}

static void test_vapi_hook_parse_errors(void **state)
{
	(void)state;
	static const struct {
		const char *body, *why;
	} bad[] = {
	    {"", "body is not JSON"},
	    {"not json", "body is not JSON"},
	    {"{\"message\":{\"type\":\"hang\"}", "body is not JSON"},
	    {"[1,2]", "body is not a JSON object"},
	    {"{}", "no message object"},
	    {"{\"message\":null}", "no message object"},
	    {"{\"message\":\"tool-calls\"}", "message is not an object"},
	    {"{\"message\":[]}", "message is not an object"},
	    {"{\"message\":{}}", "message.type missing"},
	    {"{\"message\":{\"type\":7}}", "message.type is not a string"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":{}}}",
	     "message.toolCallList is not an array"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":\"x\"}}",
	     "message.toolCallList is not an array"},
	    {"{\"message\":{\"type\":\"tool-calls\"}}", "message.toolCallList missing"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolWithToolCallList\":7}}",
	     "message.toolWithToolCallList is not an array"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":[1]}}",
	     "message.toolCallList[] is not an object"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":[{\"id\":\"a\"}]}}",
	     "message.toolCallList[].function.name missing"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":[{\"id\":5,\"name\":\"f\"}]}}",
	     "message.toolCallList[].id is not a string"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":[{\"function\":\"f\"}]}}",
	     "message.toolCallList[].function is not an object"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":[{\"function\":{\"name\":1}}]}"
	     "}",
	     "message.toolCallList[].function.name is not a string"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":[{\"function\":{\"name\":"
	     "\"f\","
	     "\"arguments\":\"not json\"}}]}}",
	     "message.toolCallList[].function.arguments is not a JSON object"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":[{\"function\":{\"name\":"
	     "\"f\","
	     "\"arguments\":\"[1]\"}}]}}",
	     "message.toolCallList[].function.arguments is not a JSON object"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolCallList\":[{\"name\":\"f\","
	     "\"parameters\":3}]}}",
	     "message.toolCallList[].function.arguments is not a JSON object"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolWithToolCallList\":[{\"function\":{}}]}}",
	     "message.toolWithToolCallList[].toolCall missing"},
	    {"{\"message\":{\"type\":\"tool-calls\",\"toolWithToolCallList\":[{\"toolCall\":"
	     "{\"id\":\"x\"}}]}}",
	     "message.toolWithToolCallList[].toolCall.function.name missing"},
	    {"{\"message\":{\"type\":\"function-call\"}}", "message.functionCall missing"},
	    {"{\"message\":{\"type\":\"function-call\",\"functionCall\":[]}}",
	     "message.functionCall is not an object"},
	    {"{\"message\":{\"type\":\"hang\",\"call\":\"c\"}}", "message.call is not an object"},
	    {"{\"message\":{\"type\":\"hang\",\"call\":{\"id\":1}}}",
	     "message.call.id is not a string"},
	    {"{\"message\":{\"type\":\"hang\",\"call\":{\"name\":[]}}}",
	     "message.call.name is not a string"},
	    {"{\"message\":{\"type\":\"assistant-request\",\"customer\":{\"number\":1}}}",
	     "message.customer.number is not a string"},
	    {"{\"message\":{\"type\":\"assistant-request\",\"phoneNumber\":\"+1\"}}",
	     "message.phoneNumber is not an object"},
	    {"{\"message\":{\"type\":\"status-update\",\"status\":1}}",
	     "message.status is not a string"},
	    {"{\"message\":{\"type\":\"status-update\",\"endedReason\":{}}}",
	     "message.endedReason is not a string"},
	    {"{\"message\":{\"type\":\"end-of-call-report\",\"artifact\":[]}}",
	     "message.artifact is not an object"},
	    {"{\"message\":{\"type\":\"end-of-call-report\",\"analysis\":{\"summary\":1}}}",
	     "message.analysis.summary is not a string"},
	    {"{\"message\":{\"type\":\"end-of-call-report\",\"artifact\":{\"transcript\":[]}}}",
	     "message.artifact.transcript is not a string"},
	    {"{\"message\":{\"type\":\"end-of-call-report\",\"cost\":\"0.1\"}}",
	     "message.cost is not a number"},
	    {"{\"message\":{\"type\":\"end-of-call-report\",\"startedAt\":1}}",
	     "message.startedAt is not a string"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vapi_hook_msg m;
		const char *why = NULL;
		int rc = vapi_hook_parse(bad[i].body, strlen(bad[i].body), &m, &why);
		if (rc != -EINVAL || !why || strcmp(why, bad[i].why) != 0)
			fail_msg("%s: rc %d why \"%s\", want \"%s\"", bad[i].body, rc,
			         why ? why : "(null)", bad[i].why);
		/* Nothing is left to free on an error, and freeing again is harmless. */
		assert_null(m.tools);
		assert_null(m.call_id);
		vapi_hook_msg_free(&m);
	}
	/* A body with a NUL inside is not JSON. */
	struct vapi_hook_msg m;
	const char *why;
	assert_int_equal(vapi_hook_parse("{\"message\":{}}\0x", 16, &m, &why), -EINVAL);
	assert_int_equal(vapi_hook_parse(NULL, 0, &m, &why), -EINVAL);
	vapi_hook_msg_free(NULL);
}

/* Every allocation of a parse fails in turn: -ENOMEM, nothing left behind. */
static void test_vapi_hook_parse_fault_injection(void **state)
{
	(void)state;
	const char *body =
	    "{\"message\":{\"type\":\"tool-calls\",\"call\":{\"id\":\"v\",\"name\":\"n\","
	    "\"customer\":{\"number\":\"+1\"}},\"phoneNumber\":{\"number\":\"+2\"},"
	    "\"toolCallList\":[{\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}},"
	    "{\"id\":\"b\",\"name\":\"g\",\"parameters\":{\"x\":1}}]}}";
	long live = mem_live_blocks(), n;
	int rc = -ENOMEM;
	for (n = 0; rc == -ENOMEM; n++) {
		struct vapi_hook_msg m;
		const char *why = NULL;
		mem_fail_after(n);
		rc = vapi_hook_parse(body, strlen(body), &m, &why);
		mem_fail_after(-1);
		if (rc == -ENOMEM)
			assert_string_equal(why, "out of memory");
		vapi_hook_msg_free(&m);
		assert_int_equal(mem_live_blocks(), live);
	}
	assert_int_equal(rc, 0);
	assert_true(n - 1 >= 10); /* 4 call/number strings, the array, 6 tool strings */

	/* The HMAC payload buffer. */
	struct hdrs ok = {{"x-signature", "x-timestamp"}, {VEC_SHA256, "1700000000"}};
	const char *why;
	mem_fail_after(0);
	assert_int_equal(verify(&hmac_cfg, &ok, "{}", 1700000000, &why), -ENOMEM);
	mem_fail_after(-1);
	assert_int_equal(verify(&hmac_cfg, &ok, "{}", 1700000000, &why), 0);

	/* The answer. */
	struct vapi_hook_result r = {.id = "a", .name = "f", .result = "ok"};
	mem_fail_after(0);
	assert_null(vapi_hook_results_json(&r, 1, NULL));
	mem_fail_after(-1);
	assert_int_equal(mem_live_blocks(), live);
}

/* ---- the answer ---- */

static void test_vapi_hook_results_json(void **state)
{
	(void)state;
	struct vapi_hook_result r[] = {
	    {.id = "call_a", .name = "lookup", .result = "order 17 shipped"},
	    {.id = "call_b", .name = "transfer", .error = "no such number"},
	};
	size_t len = 0;
	char *s = vapi_hook_results_json(r, 2, &len);
	assert_non_null(s);
	assert_string_equal(s, "{\"results\":[{\"toolCallId\":\"call_a\",\"name\":\"lookup\","
	                       "\"result\":\"order 17 shipped\"},{\"toolCallId\":\"call_b\","
	                       "\"name\":\"transfer\",\"error\":\"no such number\"}]}");
	assert_int_equal(len, strlen(s));
	mem_free(s);

	/* Quotes, backslashes, newlines, control characters, UTF-8 and a stray byte. */
	struct vapi_hook_result q = {.id = "i\"d",
	                             .name = NULL,
	                             .result = "say \"hi\"\nthen \\ leave\t\x01 caf\xc3\xa9 \xff!"};
	s = vapi_hook_results_json(&q, 1, &len);
	assert_non_null(s);
	assert_string_equal(s, "{\"results\":[{\"toolCallId\":\"i\\\"d\",\"result\":\"say "
	                       "\\\"hi\\\"\\nthen \\\\ leave\\t\\u0001 caf\xc3\xa9 \\ufffd!\"}]}");
	json_error_t err;
	json_t *j = json_loadb(s, len, 0, &err);
	assert_non_null(j);
	json_t *e = json_array_get(json_object_get(j, "results"), 0);
	assert_string_equal(json_string_value(json_object_get(e, "toolCallId")), "i\"d");
	assert_string_equal(json_string_value(json_object_get(e, "result")),
	                    "say \"hi\"\nthen \\ leave\t\x01 caf\xc3\xa9 \xef\xbf\xbd!");
	json_decref(j);
	mem_free(s);

	/* No results; a result with neither text gets an empty result. */
	s = vapi_hook_results_json(NULL, 0, &len);
	assert_string_equal(s, "{\"results\":[]}");
	mem_free(s);
	struct vapi_hook_result empty = {.id = NULL};
	s = vapi_hook_results_json(&empty, 1, NULL);
	assert_string_equal(s, "{\"results\":[{\"toolCallId\":\"\",\"result\":\"\"}]}");
	mem_free(s);
}

#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_vapi_hook_bearer),
	    T(test_vapi_hook_legacy_secret),
	    T(test_vapi_hook_bad_config),
	    T(test_vapi_hook_hmac_sha256_hex),
	    T(test_vapi_hook_hmac_sha512_base64),
	    T(test_vapi_hook_hmac_prefix),
	    T(test_vapi_hook_hmac_timestamp),
	    T(test_vapi_hook_hmac_rejects),
	    T(test_vapi_hook_parse_tool_calls),
	    T(test_vapi_hook_parse_function_call),
	    T(test_vapi_hook_parse_assistant_request),
	    T(test_vapi_hook_parse_status_update),
	    T(test_vapi_hook_parse_end_of_call_report),
	    T(test_vapi_hook_parse_hang_and_other),
	    T(test_vapi_hook_parse_errors),
	    T(test_vapi_hook_parse_fault_injection),
	    T(test_vapi_hook_results_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
