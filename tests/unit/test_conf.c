/* Unit tests of conf/: loading, validation messages, defaults, ACL lookup, refcount, OOM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "core/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The example lives in the source tree; tests run from the repository root. */
#define EXAMPLE "conf/vacs.conf"

static long live_before;
static char tmp_path[64];
static char err[8192];

static int leak_setup(void **state)
{
	(void)state;
	tmp_path[0] = '\0';
	err[0] = '\0';
	live_before = mem_live_blocks();
	return 0;
}

static int leak_teardown(void **state)
{
	(void)state;
	mem_fail_after(-1);
	if (tmp_path[0])
		unlink(tmp_path);
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

/* Writes text to a fresh temporary file; its name is in tmp_path. */
static const char *write_conf(const char *text)
{
	if (tmp_path[0])
		unlink(tmp_path);
	snprintf(tmp_path, sizeof(tmp_path), "/tmp/vacs-test-conf-XXXXXX");
	int fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	size_t n = strlen(text);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	close(fd);
	return tmp_path;
}

/* Loads text; it must fail with -EINVAL and err must hold "<file>:<line>: <what>". */
static void expect_error(const char *text, int line, const char *what)
{
	const char *path = write_conf(text);
	struct conf *c = NULL;
	int rc = conf_load(path, &c, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_null(c);
	char want[512];
	snprintf(want, sizeof(want), "%s:%d: %s", path, line, what);
	if (!strstr(err, want))
		fail_msg("expected \"%s\" in:\n%s", want, err);
}

static struct conf *load_ok(const char *text)
{
	const char *path = write_conf(text);
	struct conf *c = NULL;
	int rc = conf_load(path, &c, err, sizeof(err));
	if (rc != 0)
		fail_msg("conf_load: %d\n%s", rc, err);
	assert_non_null(c);
	return c;
}

static uint32_t ip(const char *s)
{
	struct in_addr a;
	assert_int_equal(inet_pton(AF_INET, s, &a), 1);
	return ntohl(a.s_addr);
}

#define CARRIER "trunks = ( { name = \"carrier\"; nodes = ( { host = \"192.0.2.10\"; } ); } );\n"

static void test_conf_example_loads(void **state)
{
	(void)state;
	setenv("VACS_CARRIER_PASSWORD", "s3cret", 1);
	struct conf *c = NULL;
	int rc = conf_load(EXAMPLE, &c, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s: %d\n%s", EXAMPLE, rc, err);
	assert_int_equal(c->refs, 1);
	assert_string_equal(c->path, EXAMPLE);
	assert_int_equal(c->n_trunks, 2);
	const struct conf_trunk *carrier = conf_trunk_find(c, "carrier");
	const struct conf_trunk *cucm = conf_trunk_find(c, "cucm");
	assert_non_null(carrier);
	assert_non_null(cucm);
	assert_null(conf_trunk_find(c, "nope"));
	assert_string_equal(carrier->auth.password, "s3cret");
	assert_string_equal(carrier->auth.user, "vidanta");
	assert_int_equal(cucm->type, CONF_TRUNK_CUCM);
	assert_int_equal(cucm->transport, CONF_TP_TCP);
	assert_int_equal(cucm->n_nodes, 2);
	assert_string_equal(cucm->nodes[1].host, "10.10.1.12");
	assert_int_equal(cucm->nodes[1].priority, 2);
	assert_string_equal(cucm->numbering.strip_prefix, "9");
	assert_int_equal(cucm->numbering.egress, CONF_EGRESS_NATIONAL);
	assert_int_equal(carrier->n_codecs, 2);
	assert_string_equal(carrier->codecs[0], "PCMU");
	assert_int_equal(carrier->n_srtp_suites, 4);

	assert_int_equal(c->n_routes, 4);
	assert_string_equal(c->routes[0].name, "sales-direct");
	assert_int_equal(c->routes[0].target_type, CONF_ROUTE_TRUNK);
	assert_ptr_equal(c->routes[0].to_trunk, cucm);
	assert_non_null(c->routes[0].regex);
	assert_non_null(c->routes[1].caller_regex);
	assert_int_equal(c->routes[2].target_type, CONF_ROUTE_AI);
	assert_null(c->routes[2].to_trunk);
	assert_ptr_equal(c->routes[3].to_trunk, carrier);

	/* CUCM nodes are admitted from any port (TCP), the carrier's /24 too. */
	assert_ptr_equal(conf_trunk_by_source(c, ip("10.10.1.12"), 40000), cucm);
	assert_ptr_equal(conf_trunk_by_source(c, ip("192.0.2.77"), 5060), carrier);
	assert_null(conf_trunk_by_source(c, ip("198.51.100.1"), 5060));
	assert_int_equal(c->http.port, 8080);
	conf_unref(c);
	unsetenv("VACS_CARRIER_PASSWORD");
}

static void test_conf_defaults(void **state)
{
	(void)state;
	struct conf *c = load_ok(CARRIER);
	assert_int_equal(c->sip.port, 5060);
	assert_int_equal(c->sip.tls_port, 0);
	assert_int_equal(c->sip.udp_mtu, 65535);
	assert_int_equal(c->sip.max_headers, 256);
	assert_int_equal(c->sip.unknown_source, CONF_UNKNOWN_REJECT);
	assert_int_equal(strncmp(c->sip.user_agent, "VACS/", 5), 0);
	assert_int_equal(c->media.port_min, 20000);
	assert_int_equal(c->media.port_max, 29999);
	assert_int_equal(c->media.rtp_timeout_s, 60);
	assert_int_equal(c->media.hold_timeout_s, 0);
	assert_int_equal(c->media.max_sessions, 2048);
	assert_int_equal(c->media.realtime_priority, 0);
	assert_int_equal(c->media.coalesce_us, 0);
	assert_int_equal(c->http.port, 0);
	assert_string_equal(c->spool.dir, "/var/spool/vacs");
	assert_string_equal(c->log.level, "info");
	assert_string_equal(c->log.format, "text");
	assert_string_equal(c->log.file, "");

	const struct conf_trunk *t = &c->trunks[0];
	assert_int_equal(t->type, CONF_TRUNK_CARRIER);
	assert_int_equal(t->transport, CONF_TP_UDP);
	assert_int_equal(t->nodes[0].port, 5060);
	assert_int_equal(t->dtmf_pt, 101);
	assert_int_equal(t->n_codecs, 2);
	assert_string_equal(t->codecs[1], "PCMA");
	assert_int_equal(t->srtp, CONF_SRTP_OFF);
	assert_int_equal(t->n_srtp_suites, 4);
	assert_string_equal(t->srtp_suites[0], "AEAD_AES_256_GCM");
	assert_string_equal(t->srtp_suites[3], "AES_CM_128_HMAC_SHA1_32");
	assert_int_equal(t->session_expires_s, 0);
	assert_int_equal(t->min_se_s, 90);
	assert_int_equal(t->rel100, 1);
	assert_int_equal(t->options_interval_s, 0);
	assert_int_equal(t->invite_timeout_s, 120);
	assert_int_equal(t->numbering.egress, CONF_EGRESS_PLUS_E164);
	assert_string_equal(t->numbering.international_prefix, "00");
	assert_string_equal(t->auth.password, "");
	assert_string_equal(t->domain, "");
	assert_int_equal(c->n_routes, 0);
	conf_unref(c);
}

static void test_conf_cucm_defaults(void **state)
{
	(void)state;
	struct conf *c =
	    load_ok("sip = { tls_port = 5061; };\n"
	            "trunks = ( { name = \"pbx\"; type = \"cucm\"; transport = \"tls\";\n"
	            "  nodes = ( { host = \"10.0.0.1\"; } ); invite_timeout = 10; } );\n");
	const struct conf_trunk *t = &c->trunks[0];
	assert_int_equal(t->session_expires_s, 1800);
	assert_int_equal(t->min_se_s, 1800);
	assert_int_equal(t->options_interval_s, 30);
	assert_int_equal(t->invite_timeout_s, 10); /* given keys win over type defaults */
	assert_int_equal(t->nodes[0].port, 5061);
	conf_unref(c);
}

static void test_conf_unknown_key(void **state)
{
	(void)state;
	expect_error("trunks = (\n"
	             "  { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } ); },\n"
	             "  { name = \"b\"; nodes = ( { host = \"192.0.2.2\"; } );\n"
	             "    srtpp = \"off\"; }\n"
	             ");\n",
	             4, "trunks.[1].srtpp: unknown key");
	expect_error("sip = { port = 5060; };\ntelegram = { token = \"x\"; };\n", 2,
	             "telegram: unknown key");
	expect_error("sip = { port = 5060; };\nwhatsapp = { token = \"x\"; };\n", 2,
	             "whatsapp.token: unknown key");
	expect_error("vapi = { assistent_id = \"x\"; };\n", 1, "vapi.assistent_id: unknown key");
	expect_error(CARRIER "log = {\n  colour = true;\n};\n", 3, "log.colour: unknown key");
}

static void test_conf_wrong_type(void **state)
{
	(void)state;
	expect_error("sip = {\n  port = \"5060\";\n};\n", 2,
	             "sip.port: must be an integer 1-65535");
	expect_error("log = { level = 3; };\n", 1, "log.level: must be a string");
	expect_error("trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	             "  rel100 = 1; } );\n",
	             2, "trunks.[0].rel100: must be true or false");
	expect_error("sip = 5;\n", 1, "sip: must be a group { ... }");
	expect_error("trunks = 5;\n", 1, "trunks: must be a list of groups");
}

static void test_conf_out_of_range(void **state)
{
	(void)state;
	expect_error("sip = {\n  address = \"127.0.0.1\";\n  port = 70000;\n};\n", 3,
	             "sip.port: must be an integer 1-65535");
	expect_error("trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	             "  dtmf_pt = 90; } );\n",
	             2, "trunks.[0].dtmf_pt: must be an integer 96-127");
	expect_error("media = { port_min = 30000;\n port_max = 20000; };\n", 1,
	             "media.port_min: must not be above media.port_max (20000)");
	expect_error("media = { realtime_priority = 100; };\n", 1,
	             "media.realtime_priority: must be an integer 0-99");
	expect_error("media = { coalesce_us = 1001; };\n", 1,
	             "media.coalesce_us: must be an integer 0-1000");
}

static void test_conf_bad_enum(void **state)
{
	(void)state;
	expect_error("trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	             "  srtp = \"always\"; } );\n",
	             2, "trunks.[0].srtp: must be one of off, optional, mandatory");
	expect_error("trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	             "  transport = \"sctp\"; } );\n",
	             2, "trunks.[0].transport: must be one of udp, tcp, tls");
	expect_error("trunks = ( { name = \"a\"; type = \"pbx\";\n"
	             "  nodes = ( { host = \"192.0.2.1\"; } ); } );\n",
	             1, "trunks.[0].type: must be one of carrier, cucm");
	expect_error("trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	             "  numbering = { egress = \"e.164\"; }; } );\n",
	             2, "trunks.[0].numbering.egress: must be one of plus_e164, e164, national");
	expect_error("sip = { unknown_source = \"ignore\"; };\n", 1,
	             "sip.unknown_source: must be one of reject, drop");
	expect_error("log = { level = \"verbose\"; };\n", 1,
	             "log.level: must be one of error, warn, info, debug");
	expect_error("log = { format = \"xml\"; };\n", 1, "log.format: must be one of text, json");
	expect_error("vapi = { key = \"sk-123\"; };\n", 1,
	             "vapi.key: secrets (API keys) are not allowed in the file");
	expect_error("vapi = { key_env = \"VACS_TEST_NO_SUCH_VAR\"; };\n", 1,
	             "vapi.key_env: environment variable VACS_TEST_NO_SUCH_VAR is not set");
	expect_error("vapi = { api_url = \"ftp://x\"; };\n", 1,
	             "vapi.api_url: must start with https://");
	expect_error("vapi = { api_url = \"https://api.vapi.ai/\"; };\n", 1,
	             "vapi.api_url: must be a base URL without a trailing slash");
	expect_error("vapi = { connect_timeout = 100; };\n", 1, "vapi.connect_timeout:");
	expect_error("vapi = { dtmf_text = \"key %s\"; };\n", 1,
	             "vapi.dtmf_text: only %c (the key) and %% may follow a %");
	expect_error("vapi = { dtmf_text = \"no key\"; };\n", 1,
	             "vapi.dtmf_text: must contain %c (the key) exactly once, or be empty");
	expect_error("trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	             "  codecs = [ \"PCMU\",\n \"GSM\" ]; } );\n",
	             3, "trunks.[0].codecs.[1]: \"GSM\" is not one of PCMU, PCMA, G722, G729");
}

static void test_conf_bad_cidr(void **state)
{
	(void)state;
	static const char *const bad[] = {"10.0.0.0/33",      "10.0.0.1/8",  "10.0.0.0/8:0",
	                                  "10.0.0.0/8:70000", "300.0.0.1",   "10.0.0.0/",
	                                  "example.com",      "10.0.0.0/8:", ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text),
		         "trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
		         "  acl = [ \"192.0.2.0/24\",\n    \"%s\" ]; } );\n",
		         bad[i]);
		expect_error(text, 3, "trunks.[0].acl.[1]: ");
	}
	expect_error("trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	             "  acl = [ \"10.0.0.1/8\" ]; } );\n",
	             2, "trunks.[0].acl.[0]: has host bits set after the prefix length");
}

static void test_conf_bad_regex(void **state)
{
	(void)state;
	expect_error(CARRIER "routes = (\n"
	                     "  { name = \"r\"; from = \"carrier\";\n"
	                     "    match = \"^(+\";\n"
	                     "    to = \"ai\"; }\n"
	                     ");\n",
	             4, "routes.[0].match: bad regular expression \"^(+\"");
	expect_error(CARRIER "routes = ( { name = \"r\"; from = \"carrier\"; match = \"^1\";\n"
	                     "  caller_match = \"[\"; to = \"ai\"; } );\n",
	             3, "routes.[0].caller_match: bad regular expression");
	expect_error(CARRIER
	             "routes = ( { name = \"r\"; from = \"carrier\"; match = \"^(1)(2)$\";\n"
	             "  to = \"ai\"; rewrite = \"\\\\3\"; } );\n",
	             3, "routes.[0].rewrite: \\3 refers to a group that match does not have (2)");
	expect_error(CARRIER "routes = ( { name = \"r\"; from = \"carrier\"; match = \"^1\";\n"
	                     "  to = \"ai\"; record = true;\n"
	                     "  record_notice = \"/nonexistent/notice.wav\"; } );\n",
	             4,
	             "routes.[0].record_notice: cannot read \"/nonexistent/notice.wav\": No such "
	             "file or directory");
	expect_error(CARRIER "routes = ( { name = \"r\"; from = \"carrier\"; match = \"^1\";\n"
	                     "  to = \"ai\"; record = \"yes\"; } );\n",
	             3, "routes.[0].record:");
}

static void test_conf_route_unknown_trunk(void **state)
{
	(void)state;
	/* routes before trunks in the file: resolution does not depend on order */
	expect_error("routes = (\n"
	             "  { name = \"r1\"; from = \"carrier\"; match = \"^1\"; to = \"ai\"; },\n"
	             "  { name = \"r2\"; from = \"carrier\"; match = \"^1\";\n"
	             "    to = \"pbx\"; }\n"
	             ");\n" CARRIER,
	             4, "routes.[1].to: no trunk named \"pbx\"");
	expect_error(CARRIER "routes = ( { name = \"r\";\n  from = \"cucm\"; match = \"^1\"; to = "
	                     "\"ai\"; } );\n",
	             3, "routes.[0].from: no trunk named \"cucm\"");
}

static void test_conf_duplicate_trunk(void **state)
{
	(void)state;
	expect_error("trunks = (\n"
	             "  { name = \"carrier\"; nodes = ( { host = \"192.0.2.1\"; } ); },\n"
	             "  { name = \"carrier\"; nodes = ( { host = \"192.0.2.2\"; } ); }\n"
	             ");\n",
	             3, "trunks.[1].name: duplicate trunk name \"carrier\" (first at line 2)");
	expect_error(
	    "trunks = (\n  { name = \"ai\"; nodes = ( { host = \"192.0.2.1\"; } ); }\n);\n", 2,
	    "trunks.[0].name: \"ai\" is reserved");
}

static void test_conf_whatsapp(void **state)
{
	(void)state;
	setenv("VACS_TEST_WA", "s3cret", 1);
	struct conf *c =
	    load_ok("whatsapp = { app_secret_env = \"VACS_TEST_WA\";\n"
	            "  calling_hours = \"08:30-21:00\"; utc_offset = \"-06:00\"; };\n");
	assert_string_equal(c->whatsapp.app_secret, "s3cret");
	assert_int_equal(c->whatsapp.hours_start_min, 8 * 60 + 30);
	assert_int_equal(c->whatsapp.hours_end_min, 21 * 60);
	assert_int_equal(c->whatsapp.utc_offset_min, -360);
	assert_int_equal(c->whatsapp.pair_interval_ms, 6000);
	assert_int_equal(c->whatsapp.rate_per_s, 80);
	assert_int_equal(c->whatsapp.max_age_s, 86400);
	assert_string_equal(c->whatsapp.graph_url, "https://graph.facebook.com/v25.0");
	conf_unref(c);
	unsetenv("VACS_TEST_WA");
	unsetenv("VACS_TEST_NO_SUCH_VAR");
	expect_error(
	    "whatsapp = { app_secret_env = \"VACS_TEST_NO_SUCH_VAR\"; };\n", 1,
	    "whatsapp.app_secret_env: environment variable VACS_TEST_NO_SUCH_VAR is not set");
	expect_error("whatsapp = { app_secret = \"x\"; };\n", 1, "whatsapp.app_secret");
	expect_error("whatsapp = {\n calling_hours = \"20:00-09:00\"; };\n", 2,
	             "whatsapp.calling_hours: the start must be before the end");
	expect_error("whatsapp = {\n calling_hours = \"9-17\"; };\n", 2,
	             "whatsapp.calling_hours: must be \"HH:MM-HH:MM\"");
	expect_error("whatsapp = { utc_offset = \"6\"; };\n", 1,
	             "whatsapp.utc_offset: must be \"+HH:MM\" or \"-HH:MM\"");
	expect_error("whatsapp = { pair_interval_ms = 0; };\n", 1, "whatsapp.pair_interval_ms");
	expect_error("whatsapp = { graph_url = \"ftp://x\"; };\n", 1, "whatsapp.graph_url");
	/* the follow-up after a call, per outcome */
	c = load_ok(
	    "whatsapp = { followup = { answered = { text = \"Gracias, {name}\";\n"
	    "  template = \"post_call_thanks\"; }; machine = { template = \"m_1\"; }; }; };\n");
	assert_string_equal(c->whatsapp.followup[0].text, "Gracias, {name}");
	assert_string_equal(c->whatsapp.followup[0].template_name, "post_call_thanks");
	assert_string_equal(c->whatsapp.followup[1].text, "");
	assert_string_equal(c->whatsapp.followup[2].template_name, "");
	assert_string_equal(c->whatsapp.followup[3].template_name, "m_1");
	conf_unref(c);
	expect_error("whatsapp = { followup = { busy = { text = \"x\"; }; }; };\n", 1,
	             "whatsapp.followup.busy: unknown key");
	expect_error("whatsapp = { followup = { no_answer = { template = \"Bad Name\"; }; }; };\n",
	             1, "whatsapp.followup.no_answer.template: must be a WhatsApp template name");
	expect_error("whatsapp = { followup = { answered = { colour = \"x\"; }; }; };\n", 1,
	             "whatsapp.followup.answered.colour: unknown key");
}

static void test_conf_missing_env(void **state)
{
	(void)state;
	unsetenv("VACS_TEST_NO_SUCH_VAR");
	expect_error(
	    "trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	    "  auth = { user = \"u\";\n"
	    "    password_env = \"VACS_TEST_NO_SUCH_VAR\"; }; } );\n",
	    3,
	    "trunks.[0].auth.password_env: environment variable VACS_TEST_NO_SUCH_VAR is not "
	    "set");

	setenv("VACS_TEST_PW", "pw", 1);
	struct conf *c =
	    load_ok("trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	            "  register = { enable = true; };\n"
	            "  auth = { user = \"u\"; password_env = \"VACS_TEST_PW\"; }; } );\n");
	assert_string_equal(c->trunks[0].auth.password, "pw");
	assert_int_equal(c->trunks[0].register_enable, 1);
	conf_unref(c);
	unsetenv("VACS_TEST_PW");

	expect_error("trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	             "  register = { enable = true; }; } );\n",
	             2, "trunks.[0].register.enable: registration needs auth.user");
}

static void test_conf_password_literal(void **state)
{
	(void)state;
	expect_error("trunks = ( { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n"
	             "  auth = { user = \"u\";\n"
	             "    password = \"hunter2\"; }; } );\n",
	             3, "trunks.[0].auth.password: passwords are not allowed in the file");
	assert_non_null(strstr(err, "password_env"));
	assert_null(strstr(err, "hunter2"));
}

static void test_conf_syntax_error(void **state)
{
	(void)state;
	expect_error("sip = {\n  port = 5060;\n  address = ;\n};\n", 3, "syntax error");
	expect_error("sip = { port = 5060; };\nsip = { port = 5061; };\n", 2,
	             "duplicate setting name");
}

static void test_conf_missing_required(void **state)
{
	(void)state;
	expect_error("trunks = (\n  { type = \"carrier\"; }\n);\n", 2, "trunks.[0].name: required");
	expect_error("trunks = (\n  { name = \"a\"; }\n);\n", 2, "trunks.[0].nodes: required");
	expect_error("trunks = ( { name = \"a\"; nodes = (\n { port = 5060; } ); } );\n", 2,
	             "trunks.[0].nodes.[0].host: required");
}

static void test_conf_missing_file(void **state)
{
	(void)state;
	struct conf *c = NULL;
	assert_int_equal(conf_load("/nonexistent/vacs.conf", &c, err, sizeof(err)), -ENOENT);
	assert_null(c);
	assert_non_null(strstr(err, "/nonexistent/vacs.conf"));
}

static void test_conf_multiple_errors(void **state)
{
	(void)state;
	const char *text =
	    "log = { level = \"loud\"; };\n"                             /* 1 */
	    "sip = { port = 0; };\n"                                     /* 2 */
	    "trunks = (\n"                                               /* 3 */
	    "  { name = \"a\"; nodes = ( { host = \"192.0.2.1\"; } );\n" /* 4 */
	    "    srtp = \"yes\";\n"                                      /* 5 */
	    "    bogus = 1; }\n"                                         /* 6 */
	    ");\n"                                                       /* 7 */
	    "routes = ( { name = \"r\"; from = \"a\"; match = \"(\"; to = \"b\"; } );\n";
	expect_error(text, 1, "log.level: must be one of");
	const char *path = tmp_path;
	char want[256];
	static const struct {
		int line;
		const char *what;
	} all[] = {
	    {2, "sip.port: must be an integer 1-65535"},
	    {5, "trunks.[0].srtp: must be one of"},
	    {6, "trunks.[0].bogus: unknown key"},
	    {8, "routes.[0].match: bad regular expression"},
	    {8, "routes.[0].to: no trunk named \"b\""},
	};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		snprintf(want, sizeof(want), "%s:%d: %s", path, all[i].line, all[i].what);
		if (!strstr(err, want))
			fail_msg("expected \"%s\" in:\n%s", want, err);
	}
	/* one line per problem, in file order */
	int lines = 0;
	for (const char *p = err; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 6);
	assert_true(strstr(err, ":2: sip.port") < strstr(err, ":6: trunks"));
}

static void test_conf_by_source(void **state)
{
	(void)state;
	struct conf *c =
	    load_ok("trunks = (\n"
	            "  { name = \"carrier\"; nodes = ( { host = \"127.0.0.1\"; port = 5070; } );\n"
	            "    acl = [ \"192.0.2.0/24\", \"198.51.100.7:5062\" ]; },\n"
	            "  { name = \"cucm\"; type = \"cucm\";\n"
	            "    nodes = ( { host = \"127.0.0.1\"; port = 5080; },\n"
	            "              { host = \"10.1.1.2\"; } ); },\n"
	            "  { name = \"tcp\"; transport = \"tcp\";\n"
	            "    nodes = ( { host = \"10.9.9.9\"; port = 5060; } ); },\n"
	            "  { name = \"wide\"; nodes = ( { host = \"10.200.0.1\"; } );\n"
	            "    acl = [ \"10.0.0.0/8\" ]; }\n"
	            ");\n");
	const struct conf_trunk *carrier = conf_trunk_find(c, "carrier");
	const struct conf_trunk *cucm = conf_trunk_find(c, "cucm");
	const struct conf_trunk *tcp = conf_trunk_find(c, "tcp");
	const struct conf_trunk *wide = conf_trunk_find(c, "wide");
	/* two trunks on one host, told apart by the UDP port */
	assert_ptr_equal(conf_trunk_by_source(c, ip("127.0.0.1"), 5070), carrier);
	assert_ptr_equal(conf_trunk_by_source(c, ip("127.0.0.1"), 5080), cucm);
	assert_null(conf_trunk_by_source(c, ip("127.0.0.1"), 5090));
	/* ACL network, any port */
	assert_ptr_equal(conf_trunk_by_source(c, ip("192.0.2.200"), 1234), carrier);
	assert_null(conf_trunk_by_source(c, ip("192.0.3.1"), 5060));
	/* ACL entry with a port */
	assert_ptr_equal(conf_trunk_by_source(c, ip("198.51.100.7"), 5062), carrier);
	assert_null(conf_trunk_by_source(c, ip("198.51.100.7"), 5060));
	/* default node port 5060 on UDP */
	assert_ptr_equal(conf_trunk_by_source(c, ip("10.1.1.2"), 5060), cucm);
	/* TCP nodes: any source port; the /32 beats the /8 of another trunk */
	assert_ptr_equal(conf_trunk_by_source(c, ip("10.9.9.9"), 43210), tcp);
	assert_ptr_equal(conf_trunk_by_source(c, ip("10.1.1.2"), 9999), wide);
	assert_ptr_equal(conf_trunk_by_source(c, ip("10.3.4.5"), 5060), wide);
	assert_null(conf_trunk_by_source(NULL, ip("10.3.4.5"), 5060));
	conf_unref(c);
}

static void test_conf_ref_unref(void **state)
{
	(void)state;
	setenv("VACS_CARRIER_PASSWORD", "x", 1);
	long before = mem_live_blocks();
	struct conf *c = NULL;
	assert_int_equal(conf_load(EXAMPLE, &c, err, sizeof(err)), 0);
	assert_true(mem_live_blocks() > before);
	assert_ptr_equal(conf_ref(c), c);
	assert_int_equal(c->refs, 2);
	conf_unref(c);
	assert_int_equal(c->refs, 1);
	assert_true(mem_live_blocks() > before);
	conf_unref(c); /* frees strings, arrays, nodes, ACLs and the compiled regexes */
	assert_int_equal(mem_live_blocks(), before);
	conf_unref(NULL);
	assert_null(conf_ref(NULL));
	unsetenv("VACS_CARRIER_PASSWORD");
}

/* Fails allocation N = 0, 1, 2, ... of a load of the example: each run must fail with
 * -ENOMEM, say so, and leave nothing allocated; the run after the last allocation works. */
static void test_conf_fault_injection(void **state)
{
	(void)state;
	setenv("VACS_CARRIER_PASSWORD", "x", 1);
	struct conf *c = NULL;
	uint64_t a0 = mem_total_allocs();
	assert_int_equal(conf_load(EXAMPLE, &c, err, sizeof(err)), 0);
	long allocs = (long)(mem_total_allocs() - a0);
	conf_unref(c);
	assert_true(allocs > 50);

	long n;
	for (n = 0;; n++) {
		long live = mem_live_blocks();
		c = NULL;
		mem_fail_after(n);
		int rc = conf_load(EXAMPLE, &c, err, sizeof(err));
		mem_fail_after(-1);
		if (rc == 0) {
			conf_unref(c);
			break;
		}
		assert_int_equal(rc, -ENOMEM);
		assert_null(c);
		assert_non_null(strstr(err, "out of memory"));
		assert_int_equal(mem_live_blocks(), live);
	}
	assert_int_equal(n, allocs);
	unsetenv("VACS_CARRIER_PASSWORD");
}

/* The AI leg's fallback, outbound calls, the API key and the VAPI webhook settings. */
static void test_conf_ai_outbound_webhook(void **state)
{
	(void)state;
	expect_error(CARRIER
	             "routes = ( { name = \"r\"; from = \"carrier\"; match = \"^1\";\n"
	             "  to = \"ai\"; fallback_to = \"pbx\"; fallback_number = \"2000\"; } );\n",
	             3, "routes.[0].fallback_to: no trunk named \"pbx\"");
	expect_error(CARRIER "routes = ( { name = \"r\"; from = \"carrier\"; match = \"^1\";\n"
	                     "  to = \"ai\"; fallback_to = \"carrier\"; } );\n",
	             2, "routes.[0].fallback_number: fallback_to and fallback_number go together");
	expect_error(CARRIER "routes = ( { name = \"r\"; from = \"carrier\"; match = \"^1\";\n"
	                     "  to = \"carrier\"; fallback_callback = true; } );\n",
	             2,
	             "routes.[0].fallback_prompt: the fallback keys are for routes to \"ai\" only");
	expect_error(CARRIER "routes = ( { name = \"r\"; from = \"carrier\"; match = \"^1\";\n"
	                     "  to = \"ai\"; fallback_prompt = \"/nonexistent/sorry.wav\"; } );\n",
	             3, "routes.[0].fallback_prompt: cannot read \"/nonexistent/sorry.wav\"");
	expect_error(CARRIER "outbound = {\n trunk = \"nope\"; };\n", 3,
	             "outbound.trunk: no trunk named \"nope\"");
	expect_error("outbound = { caller_id = \"+52-55\"; };\n", 1,
	             "outbound.caller_id: must be a phone number");
	expect_error("outbound = { ring_timeout = 1; };\n", 1, "outbound.ring_timeout:");
	expect_error("http = { api_key = \"k\"; };\n", 1,
	             "http.api_key: secrets (API keys) are not allowed in the file");
	expect_error("vapi = { webhook = { secret = \"s\"; }; };\n", 1,
	             "vapi.webhook.secret: secrets (API keys) are not allowed in the file");
	expect_error("vapi = { webhook = { auth = \"none\"; }; };\n", 1,
	             "vapi.webhook.auth: webhooks must be authenticated: bearer or hmac");
	expect_error("vapi = { webhook = { header = \"X-Vapi-Secret\"; }; };\n", 1,
	             "vapi.webhook.header: must be a lowercase header name");
	expect_error("vapi = { webhook = { algorithm = \"md5\"; }; };\n", 1,
	             "vapi.webhook.algorithm: must be one of sha256, sha512, sha1");
	expect_error("vapi = { webhook = { max_body = 10; }; };\n", 1, "vapi.webhook.max_body:");

	expect_error(CARRIER
	             "queues = ( { name = \"sales\"; trunk = \"pbx\";\n number = \"2000\"; } );\n",
	             2, "queues.[0].trunk: no trunk named \"pbx\"");
	expect_error(CARRIER
	             "queues = ( { name = \"sales\"; trunk = \"carrier\"; number = \"20x\"; } );\n",
	             2, "queues.[0].number: must be 1-20 digits, optionally after a +");
	expect_error(CARRIER
	             "queues = ( { name = \"sales\"; trunk = \"carrier\"; number = \"2000\";\n"
	             "  whisper = \"prompt\"; } );\n",
	             2, "queues.[0].whisper_prompt: whisper = \"prompt\" needs whisper_prompt");
	expect_error(CARRIER
	             "queues = ( { name = \"sales\"; trunk = \"carrier\"; number = \"2000\";\n"
	             "  whisper = \"tts\"; } );\n",
	             3, "queues.[0].whisper: must be one of none, prompt, ai");
	expect_error(CARRIER "queues = ( { name = \"q\"; trunk = \"carrier\"; number = \"1\"; },\n"
	                     "  { name = \"q\"; trunk = \"carrier\"; number = \"2\"; } );\n",
	             3, "queues.[1].name: duplicate queue name \"q\"");
	expect_error("http = { public_url = \"http://x/\"; };\n", 1,
	             "http.public_url: must be a base URL without a trailing slash");
	{
		struct conf *q = load_ok(
		    CARRIER
		    "queues = ( { name = \"sales\"; trunk = \"carrier\";\n"
		    "  number = \"2000\"; accept = \"dtmf\"; },\n"
		    "  { name = \"vip\"; trunk = \"carrier\"; number = \"+525512340000\"; } );\n");
		assert_int_equal(q->n_queues, 2);
		assert_string_equal(conf_queue_find(q, NULL)->name, "sales");
		assert_string_equal(conf_queue_find(q, "vip")->number, "+525512340000");
		assert_null(conf_queue_find(q, "nope"));
		assert_int_equal(q->queues[0].accept, CONF_ACCEPT_DTMF);
		assert_int_equal(q->queues[0].ring_timeout_s, 25);
		assert_int_equal(q->queues[0].accept_timeout_s, 15);
		assert_ptr_equal(q->queues[0].to_trunk, conf_trunk_find(q, "carrier"));
		conf_unref(q);
	}

	expect_error(CARRIER "queues = ( { name = \"q\"; trunk = \"carrier\"; number = \"1\";\n"
	                     "  hours = [ \"Mon-Fri 9-19\" ]; after_hours_number = \"2\"; } );\n",
	             3, "queues.[0].hours.[0]: must be \"Day[-Day] HH:MM-HH:MM\"");
	expect_error(CARRIER "queues = ( { name = \"q\"; trunk = \"carrier\"; number = \"1\";\n"
	                     "  hours = [ \"Mon-Fri 09:00-19:00\" ]; } );\n",
	             2, "queues.[0].after_hours_number: hours need an after-hours target");
	expect_error(CARRIER "queues = ( { name = \"q\"; trunk = \"carrier\"; number = \"1\";\n"
	                     "  utc_offset = 900; } );\n",
	             3, "queues.[0].utc_offset: must be minutes east of UTC");
	{
		/* Mexico City (UTC-6), weekdays 09:00-19:00 and Saturday mornings. */
		struct conf *q = load_ok(
		    CARRIER "queues = ( { name = \"q\"; trunk = \"carrier\"; number = \"1\";\n"
		            "  hours = [ \"Mon-Fri 09:00-19:00\", \"Sat 08:00-12:30\" ]; "
		            "utc_offset = -360;\n"
		            "  after_hours_number = \"+525512340000\"; after_hours_trunk = "
		            "\"carrier\"; } );\n");
		const struct conf_queue *qq = &q->queues[0];
		assert_int_equal(conf_queue_open(qq, 1795780800), 0); /* Fri 06:00 local */
		assert_int_equal(conf_queue_open(qq, 1795791600), 1); /* Fri 09:00 */
		assert_int_equal(conf_queue_open(qq, 1795791600 - 1), 0);
		assert_int_equal(conf_queue_open(qq, 1795845540), 0); /* Fri 23:59 */
		assert_int_equal(conf_queue_open(qq, 1795878000), 1); /* Sat 09:00 */
		assert_int_equal(conf_queue_open(qq, 1795914000), 0); /* Sat 19:00 */
		assert_non_null(qq->after_hours_to);
		conf_unref(q);
	}

	setenv("VACS_TEST_HOOK", "s3cret", 1);
	setenv("VACS_TEST_API", "k3y", 1);
	struct conf *c = load_ok(
	    CARRIER "http = { api_key_env = \"VACS_TEST_API\"; };\n"
	            "outbound = { trunk = \"carrier\"; caller_id = \"+525512340000\"; };\n"
	            "vapi = { webhook = { auth = \"hmac\"; secret_env = \"VACS_TEST_HOOK\";\n"
	            "  signature_encoding = \"base64\"; }; };\n");
	assert_string_equal(c->http.api_key, "k3y");
	assert_non_null(c->outbound.to_trunk);
	assert_string_equal(c->outbound.to_trunk->name, "carrier");
	assert_int_equal(c->outbound.ring_timeout_s, 45);
	assert_int_equal(c->vapi.webhook.auth, 2);
	assert_string_equal(c->vapi.webhook.secret, "s3cret");
	assert_string_equal(c->vapi.webhook.header, "authorization");
	assert_int_equal(c->vapi.webhook.bearer_prefix, 1);
	assert_int_equal(c->vapi.webhook.include_timestamp, 1);
	assert_int_equal(c->vapi.webhook.base64, 1);
	assert_string_equal(c->vapi.webhook.signature_header, "x-signature");
	assert_int_equal(c->vapi.webhook.max_skew_s, 300);
	conf_unref(c);
	unsetenv("VACS_TEST_HOOK");
	unsetenv("VACS_TEST_API");
}

static void test_conf_store(void **state)
{
	(void)state;
	/* Defaults: no store. */
	struct conf *c = load_ok(CARRIER);
	assert_string_equal(c->store.postgres_env, "");
	assert_string_equal(c->store.postgres, "");
	assert_string_equal(c->store.redis, "");
	assert_int_equal(c->store.backoff_min_ms, 200);
	assert_int_equal(c->store.backoff_max_ms, 10000);
	conf_unref(c);

	/* Connection strings come from the named variables. */
	setenv("VACS_TEST_PG", "host=/run/pg port=5432 user=vacs password=pw", 1);
	setenv("VACS_TEST_REDIS", "unix:///run/redis.sock", 1);
	c = load_ok(CARRIER "store = { postgres_env = \"VACS_TEST_PG\"; redis_env = "
	                    "\"VACS_TEST_REDIS\";\n"
	                    "  backoff_min_ms = 50; backoff_max_ms = 2000; };\n");
	assert_string_equal(c->store.postgres_env, "VACS_TEST_PG");
	assert_string_equal(c->store.postgres, "host=/run/pg port=5432 user=vacs password=pw");
	assert_string_equal(c->store.redis_env, "VACS_TEST_REDIS");
	assert_string_equal(c->store.redis, "unix:///run/redis.sock");
	assert_int_equal(c->store.backoff_min_ms, 50);
	assert_int_equal(c->store.backoff_max_ms, 2000);
	conf_unref(c);

	/* A named but unset (or empty) variable is no store, not an error. */
	unsetenv("VACS_TEST_PG");
	setenv("VACS_TEST_REDIS", "", 1);
	c = load_ok(CARRIER "store = { postgres_env = \"VACS_TEST_PG\";\n"
	                    "  redis_env = \"VACS_TEST_REDIS\"; };\n");
	assert_string_equal(c->store.postgres_env, "VACS_TEST_PG");
	assert_string_equal(c->store.postgres, "");
	assert_string_equal(c->store.redis, "");
	conf_unref(c);
	unsetenv("VACS_TEST_REDIS");

	expect_error(CARRIER "store = {\n  postgres_url = \"x\"; };\n", 3,
	             "store.postgres_url: unknown key");
	expect_error(CARRIER "store = {\n  postgres = \"host=db password=hunter2\"; };\n", 3,
	             "store.postgres: secrets (API keys) are not allowed in the file");
	assert_null(strstr(err, "hunter2"));
	expect_error(CARRIER "store = {\n  postgres_env = \"not a name\"; };\n", 3,
	             "store.postgres_env: \"not a name\" is not an environment variable name");
	expect_error(CARRIER "store = {\n  redis_env = 5; };\n", 3,
	             "store.redis_env: must be a string");
	expect_error(CARRIER "store = {\n  backoff_min_ms = 5; };\n", 3,
	             "store.backoff_min_ms: must be an integer 10-60000");
	expect_error(CARRIER "store = {\n  backoff_min_ms = 3000;\n  backoff_max_ms = 1000; };\n",
	             3, "store.backoff_min_ms: must not be above store.backoff_max_ms (1000)");
}

static void test_conf_notify_s3(void **state)
{
	(void)state;
	/* Defaults: notifications with 6 attempts from 1 s; uploads off. */
	struct conf *c = load_ok(CARRIER);
	assert_int_equal(c->notify.attempts, 6);
	assert_int_equal(c->notify.backoff_ms, 1000);
	assert_int_equal(c->notify.allow_private, 0);
	assert_string_equal(c->s3.bucket, "");
	assert_string_equal(c->s3.region, "us-east-1");
	assert_int_equal(c->s3.timeout_s, 300);
	conf_unref(c);

	setenv("VACS_TEST_S3_A", "AKIDEXAMPLE", 1);
	setenv("VACS_TEST_S3_S", "wJalrXUtnFEMI", 1);
	c = load_ok(CARRIER "notify = { attempts = 3; backoff_ms = 200; allow_private = true; };\n"
	                    "s3 = { endpoint = \"http://127.0.0.1:9000\"; bucket = \"vacs-rec\";\n"
	                    "  access_key_env = \"VACS_TEST_S3_A\"; secret_key_env = "
	                    "\"VACS_TEST_S3_S\"; path_style = true; };\n");
	assert_int_equal(c->notify.attempts, 3);
	assert_int_equal(c->notify.allow_private, 1);
	assert_string_equal(c->s3.access_key, "AKIDEXAMPLE");
	assert_string_equal(c->s3.secret_key, "wJalrXUtnFEMI");
	assert_int_equal(c->s3.path_style, 1);
	conf_unref(c);

	expect_error(CARRIER "notify = {\n  attempts = 0; };\n", 3,
	             "notify.attempts: must be an integer 1-20");
	expect_error(CARRIER "notify = {\n  backoff_ms = 5000;\n  backoff_max_ms = 1000; };\n", 3,
	             "notify.backoff_ms: must not be above notify.backoff_max_ms (1000)");
	expect_error(CARRIER "s3 = {\n  bucket = \"Bad_Bucket\"; };\n", 3,
	             "s3.bucket: may hold lowercase letters");
	expect_error(CARRIER "s3 = {\n  endpoint = \"ftp://x\"; };\n", 3,
	             "s3.endpoint: must start with http:// or https://");
	expect_error(CARRIER "s3 = {\n  bucket = \"vacs-rec\"; };\n", 2,
	             "s3.access_key_env: is required when s3.bucket is set");
	expect_error(CARRIER "s3 = {\n  secret_key = \"hunter2\"; };\n", 3,
	             "s3.secret_key: secrets (API keys) are not allowed in the file");
	assert_null(strstr(err, "hunter2"));
	unsetenv("VACS_TEST_S3_S");
	expect_error(CARRIER "s3 = { bucket = \"vacs-rec\"; access_key_env = \"VACS_TEST_S3_A\";\n"
	                     "  secret_key_env = \"VACS_TEST_S3_S\"; };\n",
	             3, "s3.secret_key_env: environment variable VACS_TEST_S3_S is not set");
	unsetenv("VACS_TEST_S3_A");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)
	    T(test_conf_example_loads),   T(test_conf_defaults),
	    T(test_conf_cucm_defaults),   T(test_conf_unknown_key),
	    T(test_conf_wrong_type),      T(test_conf_out_of_range),
	    T(test_conf_bad_enum),        T(test_conf_bad_cidr),
	    T(test_conf_bad_regex),       T(test_conf_route_unknown_trunk),
	    T(test_conf_duplicate_trunk), T(test_conf_missing_env),
	    T(test_conf_whatsapp),        T(test_conf_password_literal),
	    T(test_conf_syntax_error),    T(test_conf_missing_required),
	    T(test_conf_missing_file),    T(test_conf_multiple_errors),
	    T(test_conf_by_source),       T(test_conf_ref_unref),
	    T(test_conf_fault_injection), T(test_conf_ai_outbound_webhook),
	    T(test_conf_store),           T(test_conf_notify_s3),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
