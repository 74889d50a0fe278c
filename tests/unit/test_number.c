/* Unit tests of b2bua/number.c: E.164 normalisation, egress formats, route selection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "b2bua/number.h"
#include "conf/conf.h"
#include "core/mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* -Wwrite-strings: the conf structs hold char *; these literals are never written. */
#define S(lit) ((char *)(lit))

static long live_before;

static int leak_setup(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	return 0;
}

static int leak_teardown(void **state)
{
	(void)state;
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

/* Mexico: no national prefix since 2019, 10-digit national numbers, "00" abroad. */
static struct conf_numbering mx = {
    .country_code = S("52"),
    .national_prefix = S(""),
    .international_prefix = S("00"),
    .national_length = 10,
    .egress = CONF_EGRESS_PLUS_E164,
    .strip_prefix = S(""),
};

/* A CUCM trunk in Mexico: agents dial 9 for an outside line. */
static struct conf_numbering cucm = {
    .country_code = S("52"),
    .national_prefix = S(""),
    .international_prefix = S("00"),
    .national_length = 10,
    .egress = CONF_EGRESS_NATIONAL,
    .strip_prefix = S("9"),
};

/* A country with a "0" trunk prefix and fixed-length numbers (UK-like). */
static struct conf_numbering uk = {
    .country_code = S("44"),
    .national_prefix = S("0"),
    .international_prefix = S("00"),
    .national_length = 10,
    .egress = CONF_EGRESS_NATIONAL,
    .strip_prefix = S(""),
};

/* Variable-length numbers with a "0" trunk prefix (Germany-like): national_length 0. */
static struct conf_numbering de = {
    .country_code = S("49"),
    .national_prefix = S("0"),
    .international_prefix = S("00"),
    .national_length = 0,
    .egress = CONF_EGRESS_E164,
    .strip_prefix = S(""),
};

/* No national rules at all: only "+" and the international prefix make E.164. */
static struct conf_numbering bare = {
    .country_code = S(""),
    .national_prefix = S(""),
    .international_prefix = S("00"),
    .national_length = 0,
    .egress = CONF_EGRESS_PLUS_E164,
    .strip_prefix = S(""),
};

static void norm(const struct conf_numbering *n, const char *in, int want_rc, const char *want)
{
	char out[64];
	memset(out, 'X', sizeof(out));
	int rc = b2b_number_normalise(n, in, out, sizeof(out));
	if (rc != want_rc)
		fail_msg("normalise(\"%s\") = %d, want %d (out \"%.63s\")", in ? in : "(null)", rc,
		         want_rc, rc >= 0 ? out : "");
	if (want && strcmp(out, want) != 0)
		fail_msg("normalise(\"%s\") -> \"%s\", want \"%s\"", in, out, want);
}

static void egress(const struct conf_numbering *n, const char *in, int want_rc, const char *want)
{
	char out[64];
	int rc = b2b_number_egress(n, in, out, sizeof(out));
	if (rc != want_rc)
		fail_msg("egress(\"%s\") = %d, want %d", in ? in : "(null)", rc, want_rc);
	if (want && strcmp(out, want) != 0)
		fail_msg("egress(\"%s\") -> \"%s\", want \"%s\"", in, out, want);
}

static void test_number_plus_e164(void **state)
{
	(void)state;
	norm(&mx, "+52 55 1234 5678", 1, "+525512345678");
	norm(&mx, "+525512345678", 1, "+525512345678");
	norm(&mx, "+52 (55) 1234-5678", 1, "+525512345678");
	norm(&mx, "+52.55.1234.5678", 1, "+525512345678");
	norm(&mx, "+1 212 555 1234", 1, "+12125551234");
	norm(&bare, "+44 20 7946 0018", 1, "+442079460018");
}

static void test_number_international_prefix(void **state)
{
	(void)state;
	norm(&mx, "0052 55 1234 5678", 1, "+525512345678");
	norm(&mx, "00525512345678", 1, "+525512345678");
	norm(&mx, "001 212 555 1234", 1, "+12125551234");
	norm(&uk, "0044 20 7946 0018", 1, "+442079460018");
	norm(&bare, "0052 55 1234 5678", 1, "+525512345678");
}

static void test_number_national(void **state)
{
	(void)state;
	/* bare NSN of national_length digits */
	norm(&mx, "55 1234 5678", 1, "+525512345678");
	norm(&mx, "5512345678", 1, "+525512345678");
	/* national prefix + NSN */
	norm(&uk, "020 7946 0018", 1, "+442079460018");
	norm(&de, "030 1234567", 1, "+49301234567");
	struct conf_numbering mx_legacy = mx;
	mx_legacy.national_prefix = S("01");
	norm(&mx_legacy, "01 55 1234 5678", 1, "+525512345678");
	/* E.164 digits without the "+" (what the e164 egress format sends) */
	norm(&mx, "525512345678", 1, "+525512345678");
	/* wrong length for a national number: left alone */
	norm(&mx, "551234567", 0, "551234567");
	norm(&uk, "020 7946 001", 0, "0207946001");
	/* no country code configured: nothing national is guessed */
	norm(&bare, "5512345678", 0, "5512345678");
}

static void test_number_strip_prefix(void **state)
{
	(void)state;
	norm(&cucm, "9 55 1234 5678", 1, "+525512345678");
	norm(&cucm, "95512345678", 1, "+525512345678");
	norm(&cucm, "9 001 212 555 1234", 1, "+12125551234");
	norm(&cucm, "9 0052 55 1234 5678", 1, "+525512345678");
	/* an extension starting with the access code is not a number once stripped */
	norm(&cucm, "9001", 0, "9001");
	norm(&cucm, "9", 0, "9");
	/* numbers without the access code still normalise */
	norm(&cucm, "5512345678", 1, "+525512345678");
}

static void test_number_not_e164(void **state)
{
	(void)state;
	norm(&cucm, "2001", 0, "2001");
	norm(&mx, "2001", 0, "2001");
	norm(&mx, "20-01", 0, "2001");
	norm(&mx, "*67", 0, "*67");
	norm(&mx, "#31#5512345678", 0, "#31#5512345678");
	norm(&mx, "anonymous", 0, "anonymous");
	norm(&mx, "alice.smith", 0, "alice.smith");
}

static void test_number_invalid(void **state)
{
	(void)state;
	norm(&mx, NULL, -EINVAL, NULL);
	norm(NULL, "+525512345678", -EINVAL, NULL);
	norm(&mx, "", -EINVAL, NULL);
	norm(&mx, "   ", -EINVAL, NULL);
	norm(&mx, "-()", -EINVAL, NULL);
	norm(&mx, "+", -EINVAL, NULL);
	norm(&mx, "+ ", -EINVAL, NULL);
	norm(&mx, "+52+5512345678", -EINVAL, NULL);
	norm(&mx, "55+12345678", -EINVAL, NULL);
	norm(&mx, "+52*55", -EINVAL, NULL);
	norm(&mx, "+123", -EINVAL, NULL);              /* too short for E.164 */
	norm(&mx, "+1234567890123456", -EINVAL, NULL); /* 16 digits */
	norm(&mx, "12@34", -EINVAL, NULL);
	norm(&mx, "55<12>", -EINVAL, NULL);
	norm(&mx, "5512;user=phone", -EINVAL, NULL);
	norm(&mx, "+52abc", -EINVAL, NULL);
	norm(&mx, "bob smith", -EINVAL, NULL);
	norm(&mx, "bob\r\nVia: x", -EINVAL, NULL);
	norm(&mx, "55\x01", -EINVAL, NULL);
	char longnum[100];
	memset(longnum, '1', sizeof(longnum) - 1);
	longnum[sizeof(longnum) - 1] = '\0';
	norm(&mx, longnum, -EINVAL, NULL);
}

static void test_number_small_buffer(void **state)
{
	(void)state;
	char out[14];
	/* "+525512345678" needs 14 bytes with its NUL */
	assert_int_equal(b2b_number_normalise(&mx, "5512345678", out, 14), 1);
	assert_string_equal(out, "+525512345678");
	assert_int_equal(b2b_number_normalise(&mx, "5512345678", out, 13), -EINVAL);
	assert_int_equal(b2b_number_normalise(&mx, "+52 55 1234 5678", out, 13), -EINVAL);
	assert_int_equal(b2b_number_normalise(&mx, "2001", out, 4), -EINVAL);
	assert_int_equal(b2b_number_normalise(&mx, "2001", out, 5), 0);
	assert_int_equal(b2b_number_normalise(&mx, "anonymous", out, 5), -EINVAL);
	assert_int_equal(b2b_number_normalise(&mx, "2001", out, 0), -EINVAL);
	assert_int_equal(b2b_number_normalise(&mx, "2001", NULL, 10), -EINVAL);

	assert_int_equal(b2b_number_egress(&mx, "+525512345678", out, 14), 0);
	assert_int_equal(b2b_number_egress(&mx, "+525512345678", out, 13), -EINVAL);
	assert_int_equal(b2b_number_egress(&mx, "2001", out, 4), -EINVAL);
	assert_int_equal(b2b_number_egress(&mx, "2001", NULL, 4), -EINVAL);
	assert_int_equal(b2b_number_egress(NULL, "2001", out, 4), -EINVAL);
	assert_int_equal(b2b_number_egress(&mx, NULL, out, 4), -EINVAL);
}

static void test_number_egress_formats(void **state)
{
	(void)state;
	struct conf_numbering n = mx;
	n.egress = CONF_EGRESS_PLUS_E164;
	egress(&n, "+525512345678", 0, "+525512345678");
	n.egress = CONF_EGRESS_E164;
	egress(&n, "+525512345678", 0, "525512345678");
	egress(&n, "+12125551234", 0, "12125551234");
	n.egress = CONF_EGRESS_NATIONAL;
	egress(&n, "+525512345678", 0, "5512345678");
	/* a foreign number in national format gets the international prefix */
	egress(&n, "+12125551234", 0, "0012125551234");
	n.national_prefix = S("01");
	egress(&n, "+525512345678", 0, "015512345678");
	egress(&uk, "+442079460018", 0, "02079460018");
	/* no international prefix: foreign numbers keep their "+" */
	n.international_prefix = S("");
	egress(&n, "+12125551234", 0, "+12125551234");
	/* non-E.164 input is copied unchanged, in every format */
	egress(&cucm, "2001", 0, "2001");
	egress(&mx, "anonymous", 0, "anonymous");
	egress(&mx, "+52abc", 0, "+52abc");
	/* round trip: what egress sends, normalise reads back */
	char out[32], back[32];
	struct conf_numbering e = mx;
	for (int f = CONF_EGRESS_PLUS_E164; f <= CONF_EGRESS_NATIONAL; f++) {
		e.egress = (enum conf_egress_format)f;
		assert_int_equal(b2b_number_egress(&e, "+525512345678", out, sizeof(out)), 0);
		assert_int_equal(b2b_number_normalise(&e, out, back, sizeof(back)), 1);
		assert_string_equal(back, "+525512345678");
	}
}

/* ------------------------------------------------------------------------ routes */

static const char routes_conf[] =
    "trunks = (\n"
    "  { name = \"carrier\"; nodes = ( { host = \"192.0.2.10\"; } ); },\n"
    "  { name = \"cucm\"; type = \"cucm\"; nodes = ( { host = \"10.0.0.1\"; } ); }\n"
    ");\n"
    "routes = (\n"
    "  { name = \"sales\"; from = \"carrier\"; match = \"^\\\\+5255(1234[0-9]{4})$\";\n"
    "    to = \"cucm\"; rewrite = \"\\\\1\"; },\n"
    "  { name = \"vip\"; from = \"carrier\"; match = \"^\\\\+525598765432$\";\n"
    "    caller_match = \"^\\\\+52(55|33)\"; to = \"cucm\"; rewrite = \"5000\"; },\n"
    "  { name = \"main-ai\"; from = \"carrier\"; match = \"^\\\\+525598765432$\"; to = \"ai\"; },\n"
    "  { name = \"ext\"; from = \"cucm\"; match = \"^(2[0-9]{3})(#)?$\";\n"
    "    to = \"carrier\"; rewrite = \"ext-\\\\1\\\\2-\\\\\\\\-\\\\0\"; },\n"
    "  { name = \"out\"; from = \"cucm\"; match = \"^\\\\+(52)([0-9]{2})([0-9]+)$\";\n"
    "    to = \"carrier\"; rewrite = \"+\\\\1\\\\2\\\\3\"; },\n"
    "  { name = \"catch-all\"; from = \"carrier\"; match = \".\"; to = \"ai\"; }\n"
    ");\n";

static struct conf *load_routes(char *path, size_t len)
{
	snprintf(path, len, "/tmp/vacs-test-number-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, routes_conf, strlen(routes_conf)), (ssize_t)strlen(routes_conf));
	close(fd);
	char err[4096];
	struct conf *c = NULL;
	int rc = conf_load(path, &c, err, sizeof(err));
	unlink(path);
	if (rc)
		fail_msg("conf_load: %d\n%s", rc, err);
	return c;
}

static const char *route_name(const struct conf_route *r)
{
	return r ? r->name : "(none)";
}

static void test_number_route_find(void **state)
{
	(void)state;
	char path[64], target[64];
	struct conf *c = load_routes(path, sizeof(path));
	const struct conf_route *r;

	/* rewrite with a backreference */
	r = b2b_route_find(c, "carrier", "+525512340007", "+528112345678", target, sizeof(target));
	assert_string_equal(route_name(r), "sales");
	assert_ptr_equal(r->to_trunk, conf_trunk_find(c, "cucm"));
	assert_string_equal(target, "12340007");

	/* caller_match picks the VIP route for some callers only; order decides */
	r = b2b_route_find(c, "carrier", "+525598765432", "+525511112222", target, sizeof(target));
	assert_string_equal(route_name(r), "vip");
	assert_string_equal(target, "5000");
	r = b2b_route_find(c, "carrier", "+525598765432", "+523312345678", target, sizeof(target));
	assert_string_equal(route_name(r), "vip");
	r = b2b_route_find(c, "carrier", "+525598765432", "+528112345678", target, sizeof(target));
	assert_string_equal(route_name(r), "main-ai");
	assert_int_equal(r->target_type, CONF_ROUTE_AI);
	assert_string_equal(target, "+525598765432"); /* no rewrite: unchanged */
	/* no caller at all: caller_match cannot accept it */
	r = b2b_route_find(c, "carrier", "+525598765432", NULL, target, sizeof(target));
	assert_string_equal(route_name(r), "main-ai");

	/* first route in file order wins over the catch-all after it */
	r = b2b_route_find(c, "carrier", "+14155550000", "", target, sizeof(target));
	assert_string_equal(route_name(r), "catch-all");

	/* several groups, \0 (whole match), an escaped backslash, a group that did not match */
	r = b2b_route_find(c, "cucm", "+525512345678", "2001", target, sizeof(target));
	assert_string_equal(route_name(r), "out");
	assert_string_equal(target, "+525512345678");
	r = b2b_route_find(c, "cucm", "2001#", "2002", target, sizeof(target));
	assert_string_equal(route_name(r), "ext");
	assert_string_equal(target, "ext-2001#-\\-2001#");
	r = b2b_route_find(c, "cucm", "2001", "2002", target, sizeof(target));
	assert_string_equal(route_name(r), "ext");
	assert_string_equal(target, "ext-2001-\\-2001");

	/* no route */
	assert_null(b2b_route_find(c, "cucm", "12345", "2001", target, sizeof(target)));
	assert_null(b2b_route_find(c, "nope", "+525512340007", "", target, sizeof(target)));
	assert_null(b2b_route_find(c, NULL, "+525512340007", "", target, sizeof(target)));
	assert_null(b2b_route_find(c, "carrier", NULL, "", target, sizeof(target)));
	assert_null(b2b_route_find(NULL, "carrier", "+525512340007", "", target, sizeof(target)));
	assert_null(b2b_route_find(c, "carrier", "", "", target, sizeof(target)));

	/* a rewrite that does not fit is never truncated: no route */
	assert_null(b2b_route_find(c, "carrier", "+525512340007", "", target, 8));
	r = b2b_route_find(c, "carrier", "+525512340007", "", target, 9);
	assert_string_equal(route_name(r), "sales");
	/* no target buffer: only the route */
	r = b2b_route_find(c, "carrier", "+525512340007", "", NULL, 0);
	assert_string_equal(route_name(r), "sales");

	conf_unref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)
	    T(test_number_plus_e164),    T(test_number_international_prefix),
	    T(test_number_national),     T(test_number_strip_prefix),
	    T(test_number_not_e164),     T(test_number_invalid),
	    T(test_number_small_buffer), T(test_number_egress_formats),
	    T(test_number_route_find),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
