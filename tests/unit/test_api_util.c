/* Unit tests of control/api_util.c (body checks, ids, times, time zones, SQL column lists)
 * and of the phone normalisation by country the campaign routes use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "b2bua/number.h"
#include "control/api_campaigns_int.h"
#include "control/api_util.h"
#include "core/mem.h"
#include "core/strbuf.h"

#include <jansson.h>
#include <string.h>

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

static json_t *obj(const char *text)
{
	json_t *j = json_loads(text, JSON_ALLOW_NUL, NULL);
	assert_non_null(j);
	return j;
}

static void test_api_util_get_str(void **state)
{
	(void)state;
	struct api_err e;
	const char *s = NULL;
	json_t *j = obj("{\"name\":\"Ana\",\"n\":5,\"z\":null,\"nul\":\"a\\u0000b\"}");
	assert_int_equal(api_get_str(j, "name", NULL, API_REQUIRED, 1, 10, &s, &e), 1);
	assert_string_equal(s, "Ana");
	assert_int_equal(api_get_str(j, "gone", NULL, 0, 1, 10, &s, &e), 0);
	assert_int_equal(api_get_str(j, "gone", NULL, API_REQUIRED, 1, 10, &s, &e), -1);
	assert_string_equal(e.code, "missing_field");
	assert_string_equal(e.field, "gone");
	assert_int_equal(api_get_str(j, "n", "x.n", 0, 1, 10, &s, &e), -1);
	assert_string_equal(e.code, "invalid_field");
	assert_string_equal(e.field, "x.n");
	assert_int_equal(api_get_str(j, "name", NULL, 0, 4, 10, &s, &e), -1);
	assert_non_null(strstr(e.message, "4 to 10"));
	assert_int_equal(api_get_str(j, "z", NULL, API_NULLABLE, 1, 10, &s, &e), 0);
	assert_true(api_is_null(j, "z"));
	assert_int_equal(api_get_str(j, "z", NULL, 0, 1, 10, &s, &e), -1);
	/* a NUL inside a string never reaches SQL */
	assert_int_equal(api_get_str(j, "nul", NULL, 0, 1, 10, &s, &e), -1);
	json_decref(j);
}

static void test_api_util_get_numbers(void **state)
{
	(void)state;
	struct api_err e;
	long long i;
	double d;
	int b;
	const char *s;
	static const char *const modes[] = {"a", "b", NULL};
	json_t *j = obj("{\"i\":5,\"r\":2.5,\"s\":\"5\",\"t\":true,\"m\":\"b\"}");
	assert_int_equal(api_get_int(j, "i", NULL, 0, 1, 10, &i, &e), 1);
	assert_int_equal(i, 5);
	assert_int_equal(api_get_int(j, "i", NULL, 0, 6, 10, &i, &e), -1);
	assert_string_equal(e.message, "i must be an integer from 6 to 10");
	assert_int_equal(api_get_int(j, "s", NULL, 0, 1, 10, &i, &e), -1);
	assert_int_equal(api_get_int(j, "r", NULL, 0, 1, 10, &i, &e), -1);
	assert_int_equal(api_get_num(j, "r", NULL, 0, 0, 1, 10, &d, &e), 1);
	assert_true(d == 2.5);
	assert_int_equal(api_get_num(j, "i", NULL, 0, 5, 1, 10, &d, &e), -1); /* > 5 */
	assert_int_equal(api_get_num(j, "i", NULL, 0, 5, 0, 10, &d, &e), 1);  /* >= 5 */
	assert_int_equal(api_get_bool(j, "t", NULL, 0, &b, &e), 1);
	assert_true(b);
	assert_int_equal(api_get_bool(j, "i", NULL, 0, &b, &e), -1);
	assert_int_equal(api_get_enum(j, "m", NULL, 0, modes, &s, &e), 1);
	assert_ptr_equal(s, modes[1]);
	assert_int_equal(api_get_enum(j, "s", NULL, 0, modes, &s, &e), -1);
	assert_string_equal(e.message, "s must be one of \"a\", \"b\"");
	assert_int_equal(api_get_enum(j, "i", NULL, 0, modes, &s, &e), -1);
	assert_string_equal(e.field, "i");
	json_decref(j);
}

static void test_api_util_known_fields(void **state)
{
	(void)state;
	struct api_err e;
	static const char *const known[] = {"a", "b", NULL};
	json_t *j = obj("{\"a\":1,\"b\":2}");
	assert_int_equal(api_known_fields(j, known, NULL, &e), 0);
	json_object_set_new(j, "zzz", json_true());
	assert_int_equal(api_known_fields(j, known, "retry_policy.", &e), -1);
	assert_string_equal(e.code, "unknown_field");
	assert_string_equal(e.field, "retry_policy.zzz");
	json_decref(j);
}

static void test_api_util_tz_paths(void **state)
{
	(void)state;
	assert_true(api_tz_ok("UTC"));
	assert_true(api_tz_ok("America/Mexico_City"));
	assert_true(api_tz_ok("Etc/GMT-5"));
	assert_false(api_tz_ok("Mars/Olympus_Mons"));
	assert_false(api_tz_ok("../../etc/passwd"));
	assert_false(api_tz_ok("America/../../../etc/passwd"));
	assert_false(api_tz_ok("/etc/passwd"));
	assert_false(api_tz_ok("America//Cancun"));
	assert_false(api_tz_ok("America/"));
	assert_false(api_tz_ok("America"));      /* a directory */
	assert_false(api_tz_ok("zone1970.tab")); /* a file, not TZif */
	assert_false(api_tz_ok(".hidden"));
	assert_false(api_tz_ok(""));
	assert_false(api_tz_ok(NULL));
}

static void test_api_util_ids_and_times(void **state)
{
	(void)state;
	assert_true(api_id_ok("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
	assert_true(api_id_ok("spring-2027:a_b.c"));
	assert_false(api_id_ok("a b"));
	assert_false(api_id_ok("a/b"));
	assert_false(api_id_ok("x'; DROP TABLE leads; --"));
	assert_false(api_id_ok(""));
	char long_id[80];
	memset(long_id, 'a', 65);
	long_id[65] = '\0';
	assert_false(api_id_ok(long_id));
	assert_true(api_iso_time_ok("2026-11-28"));
	assert_true(api_iso_time_ok("2026-11-28T09:00:00Z"));
	assert_true(api_iso_time_ok("2026-11-28T09:00:00.123+01:00"));
	assert_false(api_iso_time_ok("yesterday"));
	assert_false(api_iso_time_ok("2026-11-28T09:00"));
	assert_false(api_iso_time_ok("2026-11-28T09:00:00Zjunk"));
}

static void test_api_util_sql_cols(void **state)
{
	(void)state;
	static const struct api_col cols[] = {
	    {"name", "text"}, {"n", "integer"}, {"attrs", "jsonb"}, {NULL, NULL}};
	json_t *clean = obj("{\"n\":3,\"name\":\"x\",\"evil; DROP\":1}");
	struct strbuf sb;
	str_init(&sb);
	assert_int_equal(api_sql_cols(&sb, cols, clean, 2, 0), 2);
	assert_string_equal(sb.p,
	                    "(name, n) SELECT ($2::jsonb->>'name'), ($2::jsonb->>'n')::integer");
	str_reset(&sb);
	json_object_set_new(clean, "attrs", json_object());
	assert_int_equal(api_sql_cols(&sb, cols, clean, 1, 1), 3);
	assert_string_equal(sb.p, "name = ($1::jsonb->>'name'), n = ($1::jsonb->>'n')::integer, "
	                          "attrs = ($1::jsonb->'attrs')");
	str_deinit(&sb);
	json_decref(clean);
}

static void test_api_util_phone_by_country(void **state)
{
	(void)state;
	struct api_err e;
	char out[24];
	api_normalise = b2b_number_normalise;
	assert_int_equal(api_phone("+52 55 1234 5678", NULL, "phone", out, sizeof(out), &e), 0);
	assert_string_equal(out, "+525512345678");
	assert_int_equal(api_phone("55 1234 5678", "MX", "phone", out, sizeof(out), &e), 0);
	assert_string_equal(out, "+525512345678");
	assert_int_equal(api_phone("0052 55 1234 5678", "MX", "phone", out, sizeof(out), &e), 0);
	assert_string_equal(out, "+525512345678");
	assert_int_equal(api_phone("(212) 555-0100", "US", "phone", out, sizeof(out), &e), 0);
	assert_string_equal(out, "+12125550100");
	assert_int_equal(api_phone("1 212 555 0100", "US", "phone", out, sizeof(out), &e), 0);
	assert_string_equal(out, "+12125550100");
	assert_int_equal(api_phone("020 7946 0018", "GB", "phone", out, sizeof(out), &e), 0);
	assert_string_equal(out, "+442079460018");
	/* national without a country: refused, and the message says what to do */
	assert_int_equal(api_phone("55 1234 5678", NULL, "phone", out, sizeof(out), &e), -1);
	assert_string_equal(e.field, "phone");
	assert_non_null(strstr(e.message, "country"));
	assert_int_equal(api_phone("12", "MX", "phone", out, sizeof(out), &e), -1);
	assert_int_equal(api_phone("call me", "MX", "phone", out, sizeof(out), &e), -1);
	assert_int_equal(api_phone("+52 55 12a4", NULL, "phone", out, sizeof(out), &e), -1);
	assert_true(api_country_ok("MX"));
	assert_false(api_country_ok("mx"));
	assert_false(api_country_ok("ZZ"));
}

static void test_api_util_cursor(void **state)
{
	(void)state;
	struct api_err e;
	char us[24], id[72];
	assert_int_equal(
	    api_cursor_parse("1764322800123456_ab-c", us, sizeof(us), id, sizeof(id), &e), 0);
	assert_string_equal(us, "1764322800123456");
	assert_string_equal(id, "ab-c");
	assert_int_equal(api_cursor_parse("12_a_b", us, sizeof(us), id, sizeof(id), &e), 0);
	assert_string_equal(id, "a_b");
	assert_int_equal(api_cursor_parse("x1_a", us, sizeof(us), id, sizeof(id), &e), -1);
	assert_string_equal(e.field, "after");
	assert_int_equal(api_cursor_parse("_a", us, sizeof(us), id, sizeof(id), &e), -1);
	assert_int_equal(api_cursor_parse("12_", us, sizeof(us), id, sizeof(id), &e), -1);
	assert_int_equal(api_cursor_parse("12_a'b", us, sizeof(us), id, sizeof(id), &e), -1);
	assert_int_equal(api_cursor_parse("123456789012345678901234567890_a", us, sizeof(us), id,
	                                  sizeof(id), &e),
	                 -1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)
	const struct CMUnitTest tests[] = {
	    T(test_api_util_get_str),          T(test_api_util_get_numbers),
	    T(test_api_util_known_fields),     T(test_api_util_tz_paths),
	    T(test_api_util_ids_and_times),    T(test_api_util_sql_cols),
	    T(test_api_util_phone_by_country), T(test_api_util_cursor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
