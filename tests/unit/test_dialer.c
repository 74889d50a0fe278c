/* Unit tests of the dialer's pure decisions (dialer/policy.c): zones and DST, number ->
 * zone, calling hours across zones, retry and backoff, CDR -> outcome. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/test_alloc.h"

#include "dialer/dialer_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* 2026-03-08 07:00:00 UTC: the US switch to daylight time in New York (02:00 EST). */
#define US_ON_2026  1772953200
#define US_OFF_2026 1793512800 /* 2026-11-01 06:00 UTC (02:00 EDT) */
#define EU_ON_2026  1774746000 /* 2026-03-29 01:00 UTC */
#define EU_OFF_2026 1792890000 /* 2026-10-25 01:00 UTC */
#define WED_JAN     1768402800 /* Wednesday 2026-01-14 15:00 UTC */
#define WED_JUL     1784127600 /* Wednesday 2026-07-15 15:00 UTC */

static int off(const char *zone, int64_t t)
{
	const struct dialer_zone *z = dialer_zone_find(zone);
	assert_non_null(z);
	return dialer_zone_offset_min(z, t);
}

static void test_dialer_zone_dst_edges(void **state)
{
	(void)state;
	assert_int_equal(off("America/New_York", US_ON_2026 - 1), -300);
	assert_int_equal(off("America/New_York", US_ON_2026), -240);
	assert_int_equal(off("America/New_York", US_OFF_2026 - 1), -240);
	assert_int_equal(off("America/New_York", US_OFF_2026), -300);
	/* Tijuana switches at 02:00 of its own standard time, three hours later in UTC. */
	assert_int_equal(off("America/Tijuana", US_ON_2026), -480);
	assert_int_equal(off("America/Tijuana", US_ON_2026 + 3 * 3600), -420);
	assert_int_equal(off("Europe/Madrid", EU_ON_2026 - 1), 60);
	assert_int_equal(off("Europe/Madrid", EU_ON_2026), 120);
	assert_int_equal(off("Europe/Madrid", EU_OFF_2026), 60);
	/* Mexico City: no DST any more. */
	assert_int_equal(off("America/Mexico_City", WED_JAN), -360);
	assert_int_equal(off("America/Mexico_City", WED_JUL), -360);
	assert_int_equal(off("America/Phoenix", WED_JUL), -420);
	assert_null(dialer_zone_find("Mars/Olympus_Mons"));
	assert_null(dialer_zone_find(NULL));
}

/* Every zone of the table against the system's tz database, hourly over 2024-2027 (the
 * test is single-threaded, so setenv("TZ") is fine here). */
static void test_dialer_zone_matches_tzdata(void **state)
{
	(void)state;
	static const char *const names[] = {
	    "America/Mexico_City", "America/Monterrey",   "America/Cancun",
	    "America/Hermosillo",  "America/Mazatlan",    "America/Tijuana",
	    "America/New_York",    "America/Chicago",     "America/Denver",
	    "America/Phoenix",     "America/Los_Angeles", "America/Anchorage",
	    "Pacific/Honolulu",    "Europe/London",       "Europe/Madrid",
	    "America/Merida",      "America/Chihuahua",   "America/Ciudad_Juarez",
	    "America/Matamoros",   "America/Bogota"};
	char *saved = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
	unsigned checked = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[128];
		snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", names[i]);
		if (access(path, R_OK) != 0)
			continue;
		setenv("TZ", names[i], 1);
		tzset();
		for (int64_t t = 1704067200; t < 1830297600; t += 3600) { /* 2024 .. 2027 */
			time_t tt = (time_t)t;
			struct tm tm;
			localtime_r(&tt, &tm);
			int want = (int)(tm.tm_gmtoff / 60), got = off(names[i], t);
			if (want != got)
				fail_msg("%s at %lld: table %d, tzdata %d", names[i], (long long)t,
				         got, want);
			checked++;
		}
	}
	if (saved)
		setenv("TZ", saved, 1);
	else
		unsetenv("TZ");
	tzset();
	free(saved);
	assert_true(checked > 0);
}

static void test_dialer_zone_of_number(void **state)
{
	(void)state;
	static const struct {
		const char *num, *zone;
	} cases[] = {
	    {"+525512345678", "America/Mexico_City"}, {"+5215512345678", "America/Mexico_City"},
	    {"+526641234567", "America/Tijuana"},     {"+529981234567", "America/Cancun"},
	    {"+526621234567", "America/Hermosillo"},  {"+528112345678", "America/Monterrey"},
	    {"+524421234567", "America/Mexico_City"}, /* Querétaro: central by default */
	    {"+12125551234", "America/New_York"},     {"+13125551234", "America/Chicago"},
	    {"+13035551234", "America/Denver"},       {"+16025551234", "America/Phoenix"},
	    {"+14155551234", "America/Los_Angeles"},  {"+18085551234", "Pacific/Honolulu"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct dialer_zone *z = dialer_zone_of_number(cases[i].num);
		if (!z || strcmp(z->name, cases[i].zone) != 0)
			fail_msg("%s: want %s, got %s", cases[i].num, cases[i].zone,
			         z ? z->name : "none");
	}
	assert_null(dialer_zone_of_number("+19995551234")); /* +1, an area not in the table */
	assert_null(dialer_zone_of_number("+4930123456"));  /* a country not in the table */
	assert_null(dialer_zone_of_number("5512345678"));   /* not E.164 */
	assert_null(dialer_zone_of_number("+52abc"));
	assert_null(dialer_zone_of_number(NULL));
}

static json_t *hours(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	assert_non_null(j);
	return j;
}

static void test_dialer_hours_across_zones(void **state)
{
	(void)state;
	struct dialer_window w[DIALER_WINDOWS_MAX];
	size_t n;
	json_t *j = hours("[{\"days\":[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\"],"
	                  "\"start\":\"09:00\",\"end\":\"18:00\"}]");
	assert_int_equal(dialer_hours_parse(j, w, &n), 0);
	assert_int_equal(n, 1);
	json_decref(j);
	const struct dialer_zone *mx = dialer_zone_find("America/Mexico_City"),
	                         *ny = dialer_zone_find("America/New_York"),
	                         *tj = dialer_zone_find("America/Tijuana"),
	                         *hi = dialer_zone_find("Pacific/Honolulu");
	/* Wednesday 15:00 UTC in January: 09:00 Mexico City, 10:00 New York, 07:00 Tijuana,
	 * 05:00 Honolulu. */
	assert_int_equal(dialer_hours_open(w, n, mx, WED_JAN), 1);
	assert_int_equal(dialer_hours_open(w, n, mx, WED_JAN - 1), 0);
	assert_int_equal(dialer_hours_open(w, n, ny, WED_JAN), 1);
	assert_int_equal(dialer_hours_open(w, n, tj, WED_JAN), 0);
	assert_int_equal(dialer_hours_open(w, n, hi, WED_JAN), 0);
	/* Tijuana opens two hours later: 17:00 UTC; DST in July makes it 16:00 UTC. */
	assert_int_equal(dialer_hours_next(w, n, tj, WED_JAN), WED_JAN + 2 * 3600);
	assert_int_equal(dialer_hours_next(w, n, tj, WED_JUL), WED_JUL + 3600);
	/* New York closes at 18:00 local: 23:00 UTC in winter, 22:00 in summer. */
	assert_int_equal(dialer_hours_open(w, n, ny, WED_JAN + 8 * 3600 - 1), 1);
	assert_int_equal(dialer_hours_open(w, n, ny, WED_JAN + 8 * 3600), 0);
	assert_int_equal(dialer_hours_open(w, n, ny, WED_JUL + 7 * 3600 - 1), 1);
	assert_int_equal(dialer_hours_open(w, n, ny, WED_JUL + 7 * 3600), 0);
	/* Friday after hours -> Monday 09:00 in Mexico City (15:00 UTC), two days skipped. */
	int64_t fri_night = WED_JAN + 2 * 86400 + 4 * 3600; /* Fri 13:00 MX... +4h = 19:00 UTC */
	fri_night += 4 * 3600;                              /* Fri 17:00 MX -> 23:00 UTC */
	fri_night += 3600;                                  /* Fri 18:00 MX: closed */
	assert_int_equal(dialer_hours_open(w, n, mx, fri_night), 0);
	assert_int_equal(dialer_hours_next(w, n, mx, fri_night), WED_JAN + 5 * 86400);
	/* The last minute of a window to 24:00 is open; no window = always open. */
	j = hours("[{\"days\":[\"wed\"],\"start\":\"23:00\",\"end\":\"24:00\"}]");
	assert_int_equal(dialer_hours_parse(j, w, &n), 0);
	json_decref(j);
	const struct dialer_zone *utc = dialer_zone_find("UTC");
	int64_t wed_2359 = WED_JAN - 15 * 3600 + 86400 - 60;
	assert_int_equal(dialer_hours_open(w, n, utc, wed_2359), 1);
	assert_int_equal(dialer_hours_open(w, n, utc, wed_2359 + 60), 0);
	assert_int_equal(dialer_hours_open(w, 0, utc, wed_2359 + 60), 1);
	/* A NULL zone is UTC. */
	assert_int_equal(dialer_hours_open(w, n, NULL, wed_2359), 1);
}

static void test_dialer_hours_parse_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "{}",
	    "[1]",
	    "[{\"days\":[\"mon\"],\"start\":\"9:00\",\"end\":\"18:00\"}]",
	    "[{\"days\":[\"mon\"],\"start\":\"18:00\",\"end\":\"09:00\"}]",
	    "[{\"days\":[\"monday\"],\"start\":\"09:00\",\"end\":\"18:00\"}]",
	    "[{\"days\":\"mon\",\"start\":\"09:00\",\"end\":\"18:00\"}]",
	    "[{\"days\":[\"mon\"],\"start\":\"24:00\",\"end\":\"24:00\"}]",
	    "[{\"days\":[\"mon\"],\"start\":\"09:60\",\"end\":\"10:00\"}]",
	};
	struct dialer_window w[DIALER_WINDOWS_MAX];
	size_t n = 99;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *j = hours(bad[i]);
		if (dialer_hours_parse(j, w, &n) != -EINVAL || n != 0)
			fail_msg("accepted %s", bad[i]);
		json_decref(j);
	}
	assert_int_equal(dialer_hours_parse(NULL, w, &n), 0);
	assert_int_equal(n, 0);
	json_t *j = hours("[{\"days\":[],\"start\":\"09:00\",\"end\":\"10:00\"}]");
	assert_int_equal(dialer_hours_parse(j, w, &n), 0); /* a window on no day: never open */
	json_decref(j);
	assert_int_equal(dialer_hours_next(w, n, NULL, WED_JAN), -1);
}

static void test_dialer_retry_backoff(void **state)
{
	(void)state;
	struct dialer_retry pol[DIALER_OUTCOME__COUNT];
	json_t *j = hours("{\"busy\":{\"max_attempts\":3,\"backoff_s\":10},"
	                  "\"machine\":{\"max_attempts\":1,\"backoff_s\":5},"
	                  "\"failed\":{\"max_attempts\":\"x\"}}");
	dialer_retry_parse(j, 4, pol);
	json_decref(j);
	uint64_t d;
	assert_int_equal(dialer_retry_decide(pol, DIALER_BUSY, 1, &d), 1);
	assert_int_equal(d, 10);
	assert_int_equal(dialer_retry_decide(pol, DIALER_BUSY, 2, &d), 1);
	assert_int_equal(d, 20); /* doubles */
	assert_int_equal(dialer_retry_decide(pol, DIALER_BUSY, 3, &d), 0);
	assert_int_equal(d, 0);
	assert_int_equal(dialer_retry_decide(pol, DIALER_MACHINE, 1, &d), 0);
	/* Absent or unreadable: the campaign's max_attempts, the default backoff. */
	assert_int_equal(pol[DIALER_NO_ANSWER].max_attempts, 4);
	assert_int_equal(pol[DIALER_FAILED].max_attempts, 4);
	assert_int_equal(dialer_retry_decide(pol, DIALER_NO_ANSWER, 3, &d), 1);
	assert_int_equal(d, DIALER_BACKOFF_DEFAULT_S * 4);
	assert_int_equal(dialer_retry_decide(pol, DIALER_NO_ANSWER, 4, &d), 0);
	assert_int_equal(dialer_retry_decide(pol, DIALER_ANSWERED, 1, &d), 0);
	/* capped at one day */
	pol[DIALER_BUSY] = (struct dialer_retry){.max_attempts = 30, .backoff_s = 3600};
	assert_int_equal(dialer_retry_decide(pol, DIALER_BUSY, 20, &d), 1);
	assert_int_equal(d, 86400);
	dialer_retry_parse(NULL, 0, pol);
	assert_int_equal(dialer_retry_decide(pol, DIALER_BUSY, 1, &d), 0);
}

static enum dialer_outcome outcome(const char *cdr)
{
	json_t *j = hours(cdr);
	enum dialer_outcome o = dialer_outcome_of_cdr(j);
	json_decref(j);
	return o;
}

static void test_dialer_outcome_of_cdr(void **state)
{
	(void)state;
	assert_int_equal(outcome("{\"answer\":\"2026-01-01T00:00:00.000Z\",\"sip_code\":200,"
	                         "\"amd\":null}"),
	                 DIALER_ANSWERED);
	assert_int_equal(outcome("{\"answer\":\"2026-01-01T00:00:00.000Z\",\"sip_code\":200,"
	                         "\"amd\":{\"verdict\":\"human\",\"ms\":900,\"reason\":\"\"}}"),
	                 DIALER_ANSWERED);
	assert_int_equal(
	    outcome("{\"answer\":\"2026-01-01T00:00:00.000Z\",\"sip_code\":200,"
	            "\"amd\":{\"verdict\":\"machine\",\"ms\":2100,\"reason\":\"long\"}}"),
	    DIALER_MACHINE);
	assert_int_equal(outcome("{\"answer\":null,\"sip_code\":486,\"end_reason\":\"busy\"}"),
	                 DIALER_BUSY);
	assert_int_equal(outcome("{\"answer\":null,\"sip_code\":600}"), DIALER_BUSY);
	assert_int_equal(outcome("{\"answer\":null,\"sip_code\":480,\"end_reason\":\"no answer\"}"),
	                 DIALER_NO_ANSWER);
	assert_int_equal(outcome("{\"answer\":null,\"sip_code\":408}"), DIALER_NO_ANSWER);
	assert_int_equal(outcome("{\"answer\":null,\"sip_code\":503,\"end_reason\":\"x\"}"),
	                 DIALER_FAILED);
	assert_int_equal(outcome("{}"), DIALER_FAILED);
	assert_int_equal(dialer_outcome_of_cdr(NULL), DIALER_FAILED);
	assert_string_equal(dialer_outcome_name(DIALER_NO_ANSWER), "no_answer");
	assert_null(dialer_outcome_name(DIALER_OUTCOME__COUNT));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)
	    T(test_dialer_zone_dst_edges),     T(test_dialer_zone_matches_tzdata),
	    T(test_dialer_zone_of_number),     T(test_dialer_hours_across_zones),
	    T(test_dialer_hours_parse_errors), T(test_dialer_retry_backoff),
	    T(test_dialer_outcome_of_cdr),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
