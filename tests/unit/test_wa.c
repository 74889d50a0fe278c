/* Unit tests: WhatsApp webhook signature over the raw bytes (openssl vectors), the
 * envelope parser for every inbound type, statuses, errors and user_preferences, the
 * discovery rules engine in Spanish and English, the conversation state machine, the
 * calling hours, the LLM answer parser, and the follow-up's outcome and text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/mem.h"
#include "wa/wa_int.h"
#include "tests/unit/test_alloc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- signature ---- */

/* python3: hmac.new(b"secret", body, hashlib.sha256).hexdigest() over these bytes */
static const char sig_body[] = "{\"a\":\"Jos\\u00e9 \xc3\xb1 \xf0\x9f\x98\x80 https:\\/\\/x\"}";
static const char sig_hdr[] =
    "sha256=72691b9a2b9c3cffee5a08b4dbd5fceaae9c9114823e864d46c1a2f7a2e06401";

static void test_wa_sig_raw_bytes(void **state)
{
	(void)state;
	const char *h = sig_hdr;
	assert_int_equal(wa_sig_check("secret", sig_body, strlen(sig_body), h), 0);
	/* uppercase hex is the same signature */
	char up[72];
	memcpy(up, sig_hdr, sizeof(up));
	for (char *p = up + 7; *p; p++)
		*p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
	assert_int_equal(wa_sig_check("secret", sig_body, strlen(sig_body), up), 0);
	/* the same JSON re-serialised (unescaped slash) does not validate */
	const char reser[] = "{\"a\":\"Jos\xc3\xa9 \xc3\xb1 \xf0\x9f\x98\x80 https://x\"}";
	assert_int_equal(wa_sig_check("secret", reser, strlen(reser), h), -EACCES);
	/* one byte less */
	assert_int_equal(wa_sig_check("secret", sig_body, strlen(sig_body) - 1, h), -EACCES);
	assert_int_equal(wa_sig_check("other", sig_body, strlen(sig_body), h), -EACCES);
}

static void test_wa_sig_malformed(void **state)
{
	(void)state;
	const char *b = "{}";
	assert_int_equal(wa_sig_check("s", b, 2, NULL), -ENOENT);
	assert_int_equal(wa_sig_check("s", b, 2, ""), -ENOENT);
	assert_int_equal(wa_sig_check("s", b, 2, "sha1=abcdef"), -ENOENT);
	assert_int_equal(wa_sig_check("s", b, 2, "sha256=zz"), -ENOENT);
	assert_int_equal(
	    wa_sig_check("s", b, 2,
	                 "sha256=g000000000000000000000000000000000000000000000000000000000000000"),
	    -ENOENT);
	assert_int_equal(wa_sig_check("", b, 2, "sha256=00"), -EINVAL);
	assert_int_equal(wa_sig_check(NULL, b, 2, "sha256=00"), -EINVAL);
}

static void test_wa_sha256_hex(void **state)
{
	(void)state;
	char out[65];
	wa_sha256_hex("abc", 3, out);
	assert_string_equal(out,
	                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* ---- parser ---- */

static json_t *parse_ok(const char *text)
{
	json_t *root = json_loads(text, 0, NULL);
	assert_non_null(root);
	json_t *out = NULL;
	char why[128];
	assert_int_equal(wa_parse(root, &out, why, sizeof(why)), 0);
	json_decref(root);
	return out;
}

#define ENV(field, value)                                                                          \
	"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"W\",\"changes\":[{"        \
	"\"field\":"                                                                               \
	"\"" field "\",\"value\":" value "}]}]}"

static void test_wa_parse_messages(void **state)
{
	(void)state;
	json_t *o = parse_ok(ENV(
	    "messages",
	    "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"profile\":{\"name\":\"Ana\"},"
	    "\"wa_id\":\"521\"},{\"profile\":{\"name\":\"Bo\"},\"wa_id\":\"522\"}],\"messages\":["
	    "{\"from\":\"521\",\"id\":\"w1\",\"timestamp\":\"1749416383\",\"type\":\"text\","
	    "\"text\":{\"body\":\"hola\"},\"referral\":{\"ctwa_clid\":\"C1\",\"source_id\":\"9\"}},"
	    "{\"from\":\"522\",\"id\":\"w2\",\"timestamp\":\"1\",\"type\":\"interactive\","
	    "\"interactive\":{\"type\":\"list_reply\",\"list_reply\":{\"id\":\"call_now\","
	    "\"title\":\"Ahora\"}}},"
	    "{\"from\":\"522\",\"id\":\"w3\",\"timestamp\":\"1\",\"type\":\"button\","
	    "\"button\":{\"payload\":\"P\",\"text\":\"T\"}},"
	    "{\"from\":\"522\",\"id\":\"w4\",\"timestamp\":\"x\",\"type\":\"image\","
	    "\"image\":{\"id\":\"M1\",\"caption\":\"cap\"}},"
	    "{\"from\":\"522\",\"id\":\"w5\",\"timestamp\":\"1\",\"type\":\"location\","
	    "\"location\":{\"latitude\":1.5,\"longitude\":-2,\"name\":\"N\"}},"
	    "{\"from\":\"522\",\"id\":\"w6\",\"timestamp\":\"1\",\"type\":\"reaction\","
	    "\"reaction\":{\"message_id\":\"w0\"}},"
	    "{\"from\":\"522\",\"id\":\"w7\",\"timestamp\":\"1\",\"type\":\"unsupported\","
	    "\"errors\":[{\"code\":131051}],\"unsupported\":{\"type\":\"poll\"}},"
	    "{\"from\":\"522\",\"id\":\"w8\",\"timestamp\":\"1\",\"type\":\"system\","
	    "\"system\":{\"body\":\"changed\",\"wa_id\":\"523\"}},"
	    "{\"id\":\"w9\",\"type\":\"text\"},"
	    "{\"from_user_id\":\"US.1\",\"id\":\"w10\",\"timestamp\":\"1\",\"type\":\"text\","
	    "\"text\":{\"body\":\"x\"}}]}"));
	json_t *m = json_object_get(o, "messages");
	assert_int_equal(json_array_size(m), 9);
	json_t *a = json_array_get(m, 0);
	assert_string_equal(json_string_value(json_object_get(a, "name")), "Ana");
	assert_string_equal(json_string_value(json_object_get(a, "body")), "hola");
	assert_int_equal(json_integer_value(json_object_get(a, "ts")), 1749416383);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(a, "referral"), "ctwa_clid")), "C1");
	a = json_array_get(m, 1);
	assert_string_equal(json_string_value(json_object_get(a, "name")), "Bo");
	assert_string_equal(json_string_value(json_object_get(a, "reply_id")), "call_now");
	assert_string_equal(json_string_value(json_object_get(a, "body")), "Ahora");
	a = json_array_get(m, 2);
	assert_string_equal(json_string_value(json_object_get(a, "reply_id")), "P");
	a = json_array_get(m, 3);
	assert_string_equal(json_string_value(json_object_get(a, "body")), "cap");
	assert_true(json_is_null(json_object_get(a, "ts"))); /* bad timestamp: the store's now() */
	a = json_array_get(m, 4);
	assert_string_equal(json_string_value(json_object_get(a, "body")), "1.500000,-2.000000 N");
	a = json_array_get(m, 5);
	assert_true(json_is_null(json_object_get(a, "body"))); /* reaction removed */
	a = json_array_get(m, 6);
	assert_string_equal(json_string_value(json_object_get(a, "body")), "poll");
	a = json_array_get(m, 8);
	assert_true(json_is_null(json_object_get(a, "from")));
	assert_string_equal(json_string_value(json_object_get(a, "user_id")), "US.1");
	/* unsupported and system are also events; w9 (no from) is invalid */
	json_t *e = json_object_get(o, "events");
	assert_int_equal(json_array_size(e), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(e, 0), "kind")),
	                    "unsupported");
	assert_string_equal(json_string_value(json_object_get(json_array_get(e, 1), "kind")),
	                    "system");
	assert_string_equal(json_string_value(json_object_get(json_array_get(e, 2), "kind")),
	                    "invalid");
	json_decref(o);
}

static void test_wa_parse_statuses_errors_prefs(void **state)
{
	(void)state;
	json_t *o = parse_ok(
	    "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"W\",\"changes\":["
	    "{\"field\":\"messages\",\"value\":{\"statuses\":[{\"id\":\"s1\",\"status\":\"read\","
	    "\"timestamp\":\"5\",\"recipient_id\":\"521\"},{\"id\":\"s2\",\"status\":\"failed\","
	    "\"timestamp\":\"6\",\"errors\":[{\"code\":131047}]},{\"status\":\"sent\"}],"
	    "\"errors\":[{\"code\":130429}]}},"
	    "{\"field\":\"user_preferences\",\"value\":{\"user_preferences\":[{\"wa_id\":\"521\","
	    "\"category\":\"marketing_messages\",\"value\":\"stop\",\"timestamp\":1731705721}]}},"
	    "{\"field\":\"account_update\",\"value\":{\"event\":\"X\"}},"
	    "{\"field\":\"messages\",\"value\":\"nope\"}]},{\"id\":\"W2\"}]}");
	json_t *s = json_object_get(o, "statuses");
	assert_int_equal(json_array_size(s), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(s, 1), "error_code")),
	                 131047);
	assert_true(json_is_null(json_object_get(json_array_get(s, 0), "error_code")));
	json_t *p = json_object_get(o, "prefs");
	assert_int_equal(json_array_size(p), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(p, 0), "value")),
	                    "stop");
	/* events: invalid status, value error, user_preferences, account_update, bad value,
	 * entry without changes */
	json_t *e = json_object_get(o, "events");
	const char *kinds[] = {"invalid",        "error",   "user_preferences",
	                       "account_update", "invalid", "invalid"};
	assert_int_equal(json_array_size(e), 6);
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(
		    json_string_value(json_object_get(json_array_get(e, i), "kind")), kinds[i]);
	json_decref(o);
}

static void test_wa_parse_not_envelope(void **state)
{
	(void)state;
	const char *bad[] = {"{\"object\":\"page\",\"entry\":[]}", "{\"entry\":[]}",
	                     "{\"object\":\"whatsapp_business_account\",\"entry\":{}}", "[]", "3"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *root = json_loads(bad[i], JSON_DECODE_ANY, NULL);
		json_t *out = NULL;
		char why[128] = "";
		assert_int_equal(wa_parse(root, &out, why, sizeof(why)), -EINVAL);
		assert_null(out);
		assert_non_null(strstr(why, "WhatsApp"));
		json_decref(root);
	}
}

/* ---- rules ---- */

static struct wa_rules *rules(void)
{
	struct wa_rules *r = NULL;
	char why[256];
	const char *paths[] = {"conf/discovery-rules.json", "../../conf/discovery-rules.json",
	                       "../conf/discovery-rules.json"};
	for (size_t i = 0; i < 3 && !r; i++) {
		if (access(paths[i], R_OK) == 0)
			assert_int_equal(wa_rules_load(paths[i], &r, why, sizeof(why)), 0);
	}
	assert_non_null(r);
	return r;
}

static void test_wa_rules_load_errors(void **state)
{
	(void)state;
	char path[] = "/tmp/vacs-wa-rules-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *bodies[] = {
	    "{ not json",
	    "{\"languages\":{\"es\":{}}}",
	    "{\"languages\":{\"es\":{\"detect\":[1]}}}",
	};
	const char *want[] = {"discovery-rules", "languages.es.detect", "languages.es.detect[0]"};
	(void)want;
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(ftruncate(fd, 0), 0);
		assert_int_equal(pwrite(fd, bodies[i], strlen(bodies[i]), 0),
		                 (ssize_t)strlen(bodies[i]));
		struct wa_rules *r = NULL;
		char why[256] = "";
		assert_int_equal(wa_rules_load(path, &r, why, sizeof(why)), -EINVAL);
		assert_null(r);
		assert_non_null(strstr(why, path));
		if (i > 0)
			assert_non_null(strstr(why, want[i]));
	}
	close(fd);
	unlink(path);
}

static void test_wa_rules_extract_es(void **state)
{
	(void)state;
	struct wa_rules *r = rules();
	struct wa_extract x;
	wa_rules_extract(r, "Hola, quiero ir a Cancún del 10 al 15 de julio, somos cuatro personas",
	                 NULL, "new", &x);
	assert_string_equal(x.lang, "es");
	assert_string_equal(x.destination, "Cancún");
	assert_string_equal(x.dates, "10 al 15 de julio");
	assert_int_equal(x.party, 4);
	assert_int_equal(x.withdraw, 0);
	assert_string_equal(x.consent, "");
	/* a short answer to "where?" is the destination; to "how many?" any number */
	wa_rules_extract(r, "Ixtapa", NULL, "destination", &x);
	assert_string_equal(x.destination, "Ixtapa");
	wa_rules_extract(r, "quiero viajar a Bacalar en agosto", NULL, "destination", &x);
	assert_string_equal(x.destination, "Bacalar");
	assert_string_equal(x.dates, "agosto");
	wa_rules_extract(r, "3", NULL, "party", &x);
	assert_int_equal(x.party, 3);
	wa_rules_extract(r, "la próxima semana", NULL, "dates", &x);
	assert_string_equal(x.dates, "la proxima semana");
	wa_rules_extract(r, "mañana por favor", NULL, "consent", &x);
	assert_string_equal(x.consent, "call_tomorrow");
	wa_rules_extract(r, "no", NULL, "consent", &x);
	assert_string_equal(x.consent, "no_calls");
	wa_rules_extract(r, "no", NULL, "dates", &x); /* "no" only answers the consent question */
	assert_string_equal(x.consent, "");
	wa_rules_extract(r, "Por favor NO ME LLAMEN", NULL, "qualified", &x);
	assert_int_equal(x.withdraw, 1);
	wa_rules_extract(r, "mi número es +52 (55) 1234-5678", NULL, "phone", &x);
	assert_string_equal(x.phone, "+525512345678");
	wa_rules_extract(r, "123", NULL, "phone", &x);
	assert_string_equal(x.phone, "");
	wa_rules_extract(r, "Llámame ahora", "call_now", "consent", &x);
	assert_string_equal(x.consent, "call_now");
	wa_rules_extract(r, "en español por favor", NULL, "destination", &x);
	assert_string_equal(x.switch_lang, "es");
	assert_string_equal(x.destination, "");
	wa_rules_destroy(r);
}

static void test_wa_rules_extract_en(void **state)
{
	(void)state;
	struct wa_rules *r = rules();
	struct wa_extract x;
	wa_rules_extract(r, "Hi! We'd like a trip to New York next month, two adults", NULL, "new",
	                 &x);
	assert_string_equal(x.lang, "en");
	assert_string_equal(x.destination, "New York");
	assert_string_equal(x.dates, "next month");
	assert_int_equal(x.party, 2);
	wa_rules_extract(r, "5 people", NULL, "dates", &x);
	assert_int_equal(x.party, 5);
	wa_rules_extract(r, "later today please", NULL, "consent", &x);
	assert_string_equal(x.consent, "call_later");
	wa_rules_extract(r, "Please don't call me", NULL, "consent", &x);
	assert_int_equal(x.withdraw, 1);
	wa_rules_extract(r, "STOP", NULL, "new", &x);
	assert_int_equal(x.withdraw, 1);
	wa_rules_extract(r, "in english please", NULL, "destination", &x);
	assert_string_equal(x.switch_lang, "en");
	assert_string_equal(x.destination, "");
	wa_rules_destroy(r);
}

/* ---- the conversation ---- */

static const struct wa_hours hours = {.start_min = 9 * 60, .end_min = 20 * 60, .utc_offset_min = 0};

static void step(struct wa_rules *r, json_t *res, char *state, const char *text,
                 const char *reply_id, const char *phone, int64_t now, struct wa_step *st)
{
	struct wa_extract x;
	wa_rules_extract(r, text, reply_id, state, &x);
	assert_int_equal(
	    wa_disc_step(r, res, state, &x, text, phone, "Ana", now, &hours, "rules", st), 0);
	strcpy(state, st->state);
}

static void test_wa_disc_flow(void **state_)
{
	(void)state_;
	struct wa_rules *r = rules();
	json_t *res = json_object();
	char state[16] = "new";
	struct wa_step st;
	int64_t now = 1767261600; /* 2026-01-01 10:00 UTC: inside 09:00-20:00 */
	step(r, res, state, "Hola! info para Tulum", NULL, "+5215511110001", now, &st);
	assert_string_equal(state, "dates");
	assert_int_equal(st.reply.kind, 1);
	assert_non_null(strstr(st.reply.text, "¡Hola Ana!"));
	step(r, res, state, "en marzo", NULL, "+5215511110001", now, &st);
	assert_string_equal(state, "party");
	step(r, res, state, "dos", NULL, "+5215511110001", now, &st);
	assert_string_equal(state, "consent");
	assert_int_equal(st.reply.kind, 2);
	assert_string_equal(st.reply.opt_id[3], "no_calls");
	assert_true(strlen(st.reply.opt_title[0]) <= 24);
	step(r, res, state, "Hoy más tarde", "call_later", "+5215511110001", now, &st);
	assert_string_equal(state, "qualified");
	assert_int_equal(st.qualify, 1);
	assert_int_equal(st.reply.kind, 3); /* the confirmation, with a "no calls" button */
	assert_int_equal(st.reply.n_opts, 1);
	assert_string_equal(st.reply.opt_id[0], "no_calls");
	assert_true(strlen(st.reply.opt_title[0]) <= 20);
	assert_int_equal(st.due_s, now + 2 * 3600);
	assert_string_equal(json_string_value(json_object_get(res, "window")), "call_later");
	assert_string_equal(json_string_value(json_object_get(res, "consent_text")),
	                    "Hoy más tarde");
	assert_string_equal(json_string_value(json_object_get(res, "consent_at")),
	                    "2026-01-01T10:00:00Z");
	assert_string_equal(json_string_value(json_object_get(res, "intent")), "call_back");
	assert_true(json_real_value(json_object_get(res, "score")) > 0.99);
	/* after qualification a plain message changes nothing and gets no reply */
	step(r, res, state, "gracias!", NULL, "+5215511110001", now, &st);
	assert_string_equal(state, "qualified");
	assert_int_equal(st.reply.kind, 0);
	assert_int_equal(st.qualify, 0);
	/* withdrawal */
	step(r, res, state, "no me llamen", NULL, "+5215511110001", now, &st);
	assert_string_equal(state, "withdrawn");
	assert_int_equal(st.withdraw, 1);
	assert_true(json_is_false(json_object_get(res, "consent")));
	assert_string_equal(json_string_value(json_object_get(res, "intent")), "withdrawn");
	json_decref(res);
	wa_rules_destroy(r);
}

static void test_wa_disc_no_phone_and_declined(void **state_)
{
	(void)state_;
	struct wa_rules *r = rules();
	json_t *res = json_object();
	char state[16] = "new";
	struct wa_step st;
	int64_t now = 1767261600;
	step(r, res, state, "Hi, trip to Rome in June for 3 people", NULL, "", now, &st);
	assert_string_equal(state, "consent");
	/* after hours: "now" means the next opening */
	step(r, res, state, "now", NULL, "", now - 2 * 3600, &st); /* 08:00 */
	assert_string_equal(state, "phone");
	assert_int_equal(st.qualify, 0);
	step(r, res, state, "+1 415 555 0100", NULL, "", now, &st);
	assert_string_equal(state, "qualified");
	assert_int_equal(st.qualify, 1);
	assert_string_equal(st.phone, "+14155550100");
	assert_int_equal(st.due_s, now - 3600); /* 09:00 that day */
	json_decref(res);

	res = json_object();
	strcpy(state, "new");
	step(r, res, state, "Hi, trip to Rome in June for 3 people", NULL, "+1415", now, &st);
	step(r, res, state, "No calls", "no_calls", "+1415", now, &st);
	assert_string_equal(state, "declined");
	assert_int_equal(st.qualify, 0);
	assert_int_equal(st.withdraw, 1); /* pending jobs are cancelled */
	assert_string_equal(json_string_value(json_object_get(res, "intent")), "no_call");
	json_decref(res);
	wa_rules_destroy(r);
}

static void test_wa_hours_next(void **state)
{
	(void)state;
	int64_t day = 1767225600; /* 2026-01-01 00:00 UTC */
	assert_int_equal(wa_hours_next(&hours, day + 10 * 3600), day + 10 * 3600);
	assert_int_equal(wa_hours_next(&hours, day + 3600), day + 9 * 3600);
	assert_int_equal(wa_hours_next(&hours, day + 21 * 3600), day + 86400 + 9 * 3600);
	struct wa_hours mx = {.start_min = 9 * 60, .end_min = 20 * 60, .utc_offset_min = -360};
	/* 02:00 UTC is 20:00 in Mexico City: next opening 09:00 local = 15:00 UTC */
	assert_int_equal(wa_hours_next(&mx, day + 2 * 3600), day + 15 * 3600);
	struct wa_hours all = {.start_min = 0, .end_min = 24 * 60};
	assert_int_equal(wa_hours_next(&all, day + 23 * 3600), day + 23 * 3600);
}

static void test_wa_llm_parse(void **state)
{
	(void)state;
	struct wa_extract x;
	assert_int_equal(
	    wa_llm_parse("{\"lang\":\"en\",\"destination\":\"Lisbon\",\"party_size\":3,"
	                 "\"consent\":\"call_now\",\"withdraw\":false,"
	                 "\"phone\":\"+351911110001\"}",
	                 &x),
	    0);
	assert_string_equal(x.lang, "en");
	assert_string_equal(x.destination, "Lisbon");
	assert_int_equal(x.party, 3);
	assert_string_equal(x.consent, "call_now");
	assert_string_equal(x.phone, "+351911110001");
	assert_int_equal(wa_llm_parse("{\"withdraw\":true}", &x), 0);
	assert_int_equal(x.withdraw, 1);
	const char *bad[] = {"not json",
	                     "[1]",
	                     "{\"lang\":\"fr\"}",
	                     "{\"consent\":\"maybe\"}",
	                     "{\"party_size\":0}",
	                     "{\"party_size\":\"3\"}",
	                     "{\"withdraw\":\"yes\"}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(wa_llm_parse(bad[i], &x), -EINVAL);
}

/* ---- the follow-up after a call ---- */

static void test_wa_followup_outcome(void **state)
{
	(void)state;
	static const struct {
		const char *cdr;
		int want;
	} v[] = {
	    {"{\"answer\":\"2026-11-28T10:00:00Z\",\"amd\":null,\"transfer\":null}",
	     WA_OUT_ANSWERED},
	    {"{\"answer\":\"2026-11-28T10:00:00Z\",\"amd\":{\"verdict\":\"human\"}}",
	     WA_OUT_ANSWERED},
	    {"{\"answer\":\"2026-11-28T10:00:00Z\",\"amd\":{\"verdict\":\"machine\"}}",
	     WA_OUT_MACHINE},
	    {"{\"answer\":\"x\",\"transfer\":{\"result\":\"bridged\"}}", WA_OUT_TRANSFERRED},
	    {"{\"answer\":\"x\",\"transfer\":{\"result\":\"failed\"}}", WA_OUT_ANSWERED},
	    {"{\"answer\":\"x\",\"refers\":[{\"result\":\"failed\"},{\"result\":\"transferred\"}]}",
	     WA_OUT_TRANSFERRED},
	    {"{\"answer\":null,\"sip_code\":486}", WA_OUT_NO_ANSWER},
	    {"{\"answer\":null,\"sip_code\":408}", WA_OUT_NO_ANSWER},
	    {"{\"answer\":null,\"sip_code\":503}", WA_OUT_NO_ANSWER},
	    {"{}", WA_OUT_NO_ANSWER},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		json_t *cdr = json_loads(v[i].cdr, 0, NULL);
		assert_non_null(cdr);
		assert_int_equal(wa_followup_outcome(cdr), v[i].want);
		json_decref(cdr);
	}
	assert_int_equal(wa_followup_outcome(NULL), WA_OUT_NO_ANSWER);
	assert_string_equal(wa_outcome_name(WA_OUT_NO_ANSWER), "no_answer");
	assert_string_equal(wa_outcome_name(7), "?");
}

static void test_wa_followup_render(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(wa_followup_render("Gracias {name}. {summary} {x}", "Ana López",
	                                    "Villa en mayo.", out, sizeof(out)),
	                 0);
	assert_string_equal(out, "Gracias Ana. Villa en mayo. {x}");
	assert_int_equal(wa_followup_render("Hi {name}{summary}!", NULL, NULL, out, sizeof(out)),
	                 0);
	assert_string_equal(out, "Hi !");
	char small[8];
	assert_int_equal(wa_followup_render("{summary}", NULL, "0123456789", small, sizeof(small)),
	                 -ENOSPC);
	assert_string_equal(small, "0123456");
	assert_int_equal(wa_followup_render("abcdefghij", NULL, NULL, small, sizeof(small)),
	                 -ENOSPC);
	assert_string_equal(small, "abcdefg");
}

/* The SHA-256 of "abc" (FIPS 180-2), as hex and as base64. */
static void test_wa_media_digest(void **state)
{
	(void)state;
	static const unsigned char want[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
	                                       0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
	                                       0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
	                                       0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
	unsigned char d[32];
	assert_int_equal(
	    wa_media_digest("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d),
	    0);
	assert_memory_equal(d, want, 32);
	assert_int_equal(
	    wa_media_digest("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", d),
	    0);
	assert_memory_equal(d, want, 32);
	assert_int_equal(wa_media_digest("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", d), 0);
	assert_memory_equal(d, want, 32);
	assert_int_equal(wa_media_digest("", d), -EINVAL);
	assert_int_equal(wa_media_digest("ba7816bf", d), -EINVAL);
	assert_int_equal(
	    wa_media_digest("zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d),
	    -EINVAL);
	assert_int_equal(wa_media_digest("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0A", d),
	                 -EINVAL);
	assert_int_equal(wa_media_digest("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIA*a0=", d),
	                 -EINVAL);
	assert_string_equal(wa_media_ext("audio/ogg; codecs=opus"), ".ogg");
	assert_string_equal(wa_media_ext("image/jpeg"), ".jpg");
	assert_string_equal(wa_media_ext("application/x-unknown"), ".bin");
	assert_string_equal(wa_media_ext(NULL), ".bin");
}

#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_wa_sig_raw_bytes),
	    T(test_wa_sig_malformed),
	    T(test_wa_sha256_hex),
	    T(test_wa_parse_messages),
	    T(test_wa_parse_statuses_errors_prefs),
	    T(test_wa_parse_not_envelope),
	    T(test_wa_rules_load_errors),
	    T(test_wa_rules_extract_es),
	    T(test_wa_rules_extract_en),
	    T(test_wa_disc_flow),
	    T(test_wa_disc_no_phone_and_declined),
	    T(test_wa_hours_next),
	    T(test_wa_llm_parse),
	    T(test_wa_followup_outcome),
	    T(test_wa_followup_render),
	    T(test_wa_media_digest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
