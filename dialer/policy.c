/* The dialer's pure decisions: time zones and calling hours, retry policy, CDR outcome. */
#include "dialer/dialer_int.h"

#include "core/clock.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <time.h>

/* ---- time zones ---- */

static const struct dialer_zone zones[] = {
    {"UTC", 0, DIALER_DST_NONE},
    {"Etc/UTC", 0, DIALER_DST_NONE},
    /* Mexico: no DST since October 2022 except the US border strip. */
    {"America/Mexico_City", -360, DIALER_DST_NONE},
    {"America/Monterrey", -360, DIALER_DST_NONE},
    {"America/Merida", -360, DIALER_DST_NONE},
    {"America/Chihuahua", -360, DIALER_DST_NONE},
    {"America/Cancun", -300, DIALER_DST_NONE},
    {"America/Hermosillo", -420, DIALER_DST_NONE},
    {"America/Mazatlan", -420, DIALER_DST_NONE},
    {"America/Tijuana", -480, DIALER_DST_US},
    {"America/Ciudad_Juarez", -420, DIALER_DST_US},
    {"America/Matamoros", -360, DIALER_DST_US},
    /* USA */
    {"America/New_York", -300, DIALER_DST_US},
    {"America/Detroit", -300, DIALER_DST_US},
    {"America/Chicago", -360, DIALER_DST_US},
    {"America/Denver", -420, DIALER_DST_US},
    {"America/Phoenix", -420, DIALER_DST_NONE},
    {"America/Los_Angeles", -480, DIALER_DST_US},
    {"America/Anchorage", -540, DIALER_DST_US},
    {"Pacific/Honolulu", -600, DIALER_DST_NONE},
    /* a few others campaigns name as their own zone */
    {"Europe/London", 0, DIALER_DST_EU},
    {"Europe/Madrid", 60, DIALER_DST_EU},
    {"America/Bogota", -300, DIALER_DST_NONE},
    {"America/Lima", -300, DIALER_DST_NONE},
};

const struct dialer_zone *dialer_zone_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		if (strcmp(zones[i].name, name) == 0)
			return &zones[i];
	}
	return NULL;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12). */
static int64_t days_of(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* Weekday of a day number, 0 = Sunday (1970-01-01 was a Thursday). */
static unsigned wday_of(int64_t days)
{
	return (unsigned)(((days % 7) + 11) % 7);
}

static unsigned month_len(int64_t y, unsigned m)
{
	static const unsigned len[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : len[m - 1];
}

/* Day number of the n-th (1-based) Sunday of a month, or of its last when n = 0. */
static int64_t sunday(int64_t y, unsigned m, unsigned n)
{
	if (n == 0) {
		int64_t last = days_of(y, m, month_len(y, m));
		return last - wday_of(last);
	}
	int64_t first = days_of(y, m, 1);
	return first + (7 - wday_of(first)) % 7 + 7 * (n - 1);
}

int dialer_zone_offset_min(const struct dialer_zone *z, int64_t utc_s)
{
	if (!z)
		return 0;
	if (z->dst == DIALER_DST_NONE)
		return z->std_offset_min;
	time_t t = (time_t)utc_s;
	struct tm tm;
	gmtime_r(&t, &tm);
	int64_t y = tm.tm_year + 1900;
	int64_t on, off;
	if (z->dst == DIALER_DST_US) {
		/* 02:00 local standard time on, 02:00 local daylight time off. */
		on = sunday(y, 3, 2) * 86400 + 7200 - (int64_t)z->std_offset_min * 60;
		off = sunday(y, 11, 1) * 86400 + 7200 - (int64_t)(z->std_offset_min + 60) * 60;
	} else {
		on = sunday(y, 3, 0) * 86400 + 3600;
		off = sunday(y, 10, 0) * 86400 + 3600;
	}
	return utc_s >= on && utc_s < off ? z->std_offset_min + 60 : z->std_offset_min;
}

/* Area codes by zone; the first match of the longest listed prefix wins. */
struct area {
	const char *prefix; /* digits after '+' */
	const char *zone;
};
static const struct area areas[] = {
    /* Mexico (+52): national numbers are 10 digits, area codes of 2 or 3 */
    {"52664", "America/Tijuana"}, /* Tijuana */
    {"52686", "America/Tijuana"}, /* Mexicali */
    {"52646", "America/Tijuana"}, /* Ensenada */
    {"52656", "America/Ciudad_Juarez"},
    {"52662", "America/Hermosillo"}, /* Sonora */
    {"52644", "America/Hermosillo"}, /* Ciudad Obregon */
    {"52669", "America/Mazatlan"},   /* Mazatlan */
    {"52667", "America/Mazatlan"},   /* Culiacan */
    {"52612", "America/Mazatlan"},   /* La Paz */
    {"52624", "America/Mazatlan"},   /* Los Cabos */
    {"52998", "America/Cancun"},     /* Cancun */
    {"52984", "America/Cancun"},     /* Playa del Carmen */
    {"52983", "America/Cancun"},     /* Chetumal */
    {"52868", "America/Matamoros"},  /* Matamoros */
    {"52614", "America/Chihuahua"},  /* Chihuahua */
    {"5281", "America/Monterrey"},   /* Monterrey */
    {"52999", "America/Merida"},     /* Merida */
    {"5255", "America/Mexico_City"}, /* Mexico City */
    {"5233", "America/Mexico_City"}, /* Guadalajara */
    {"52", "America/Mexico_City"},   /* the rest of Mexico: central time */
    /* USA and Canada (+1): area codes of the main metropolitan areas */
    {"1212", "America/New_York"},
    {"1646", "America/New_York"},
    {"1718", "America/New_York"},
    {"1917", "America/New_York"},
    {"1347", "America/New_York"},
    {"1305", "America/New_York"},
    {"1786", "America/New_York"},
    {"1404", "America/New_York"},
    {"1617", "America/New_York"},
    {"1202", "America/New_York"},
    {"1215", "America/New_York"},
    {"1407", "America/New_York"},
    {"1313", "America/Detroit"},
    {"1312", "America/Chicago"},
    {"1773", "America/Chicago"},
    {"1214", "America/Chicago"},
    {"1469", "America/Chicago"},
    {"1972", "America/Chicago"},
    {"1713", "America/Chicago"},
    {"1832", "America/Chicago"},
    {"1512", "America/Chicago"},
    {"1210", "America/Chicago"},
    {"1612", "America/Chicago"},
    {"1303", "America/Denver"},
    {"1720", "America/Denver"},
    {"1801", "America/Denver"},
    {"1505", "America/Denver"},
    {"1602", "America/Phoenix"},
    {"1480", "America/Phoenix"},
    {"1520", "America/Phoenix"},
    {"1213", "America/Los_Angeles"},
    {"1310", "America/Los_Angeles"},
    {"1323", "America/Los_Angeles"},
    {"1415", "America/Los_Angeles"},
    {"1510", "America/Los_Angeles"},
    {"1408", "America/Los_Angeles"},
    {"1619", "America/Los_Angeles"},
    {"1818", "America/Los_Angeles"},
    {"1206", "America/Los_Angeles"},
    {"1503", "America/Los_Angeles"},
    {"1702", "America/Los_Angeles"},
    {"1907", "America/Anchorage"},
    {"1808", "Pacific/Honolulu"},
};

const struct dialer_zone *dialer_zone_of_number(const char *e164)
{
	char d[24];
	size_t n = 0;
	if (!e164 || e164[0] != '+')
		return NULL;
	for (const char *p = e164 + 1; *p && n < sizeof(d) - 1; p++) {
		if (*p >= '0' && *p <= '9')
			d[n++] = *p;
		else if (*p != ' ' && *p != '-')
			return NULL;
	}
	d[n] = '\0';
	/* Old Mexican mobile format +52 1 + 10 digits: the 1 is not part of the area. */
	if (n == 13 && strncmp(d, "521", 3) == 0)
		memmove(d + 2, d + 3, n - 2);
	const struct area *best = NULL;
	size_t best_len = 0;
	for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]); i++) {
		size_t l = strlen(areas[i].prefix);
		if (l > best_len && strncmp(d, areas[i].prefix, l) == 0) {
			best = &areas[i];
			best_len = l;
		}
	}
	return best ? dialer_zone_find(best->zone) : NULL;
}

/* ---- calling hours ---- */

static int hhmm(const char *s, int allow24)
{
	return clock_hhmm(s, allow24 ? 24 * 60 : 24 * 60 - 1);
}

int dialer_hours_parse(const json_t *hours, struct dialer_window *w, size_t *n)
{
	static const char *const days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
	*n = 0;
	if (!hours || json_is_null(hours))
		return 0;
	if (!json_is_array(hours) || json_array_size(hours) > DIALER_WINDOWS_MAX)
		return -EINVAL;
	size_t i;
	const json_t *o;
	json_array_foreach(hours, i, o)
	{
		const json_t *dl = json_object_get(o, "days");
		int s = hhmm(json_string_value(json_object_get(o, "start")), 0);
		int e = hhmm(json_string_value(json_object_get(o, "end")), 1);
		if (s < 0 || e <= s || !json_is_array(dl))
			goto bad;
		uint8_t bits = 0;
		size_t k;
		const json_t *d;
		json_array_foreach(dl, k, d)
		{
			unsigned wd = 0;
			while (wd < 7 &&
			       !(json_is_string(d) && strcmp(json_string_value(d), days[wd]) == 0))
				wd++;
			if (wd == 7)
				goto bad;
			bits |= (uint8_t)(1u << wd);
		}
		w[i] = (struct dialer_window){
		    .days = bits, .start_min = (uint16_t)s, .end_min = (uint16_t)e};
	}
	*n = json_array_size(hours);
	return 0;
bad:
	*n = 0;
	return -EINVAL;
}

int dialer_hours_open(const struct dialer_window *w, size_t n, const struct dialer_zone *z,
                      int64_t utc_s)
{
	if (n == 0)
		return 1;
	time_t local = (time_t)(utc_s + (int64_t)dialer_zone_offset_min(z, utc_s) * 60);
	struct tm tm;
	gmtime_r(&local, &tm);
	unsigned mod = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
	for (size_t i = 0; i < n; i++) {
		if ((w[i].days & (1u << tm.tm_wday)) && mod >= w[i].start_min && mod < w[i].end_min)
			return 1;
	}
	return 0;
}

int64_t dialer_hours_next(const struct dialer_window *w, size_t n, const struct dialer_zone *z,
                          int64_t utc_s)
{
	if (dialer_hours_open(w, n, z, utc_s))
		return utc_s;
	int64_t t = utc_s - (utc_s % 60) + 60; /* the next whole minute */
	for (unsigned i = 0; i < 8u * 24u * 60u; i++, t += 60) {
		if (dialer_hours_open(w, n, z, t))
			return t;
	}
	return -1;
}

/* ---- outcomes and retries ---- */

static const char *const outcome_names[] = {"answered", "no_answer", "busy", "failed", "machine"};

const char *dialer_outcome_name(enum dialer_outcome o)
{
	return (unsigned)o < DIALER_OUTCOME__COUNT ? outcome_names[o] : NULL;
}

const char *dialer_lead_final_status(enum dialer_outcome o)
{
	return o == DIALER_ANSWERED ? "connected" : "unreachable";
}

enum dialer_outcome dialer_outcome_of_cdr(const json_t *cdr)
{
	const json_t *answer = json_object_get(cdr, "answer");
	const char *verdict =
	    json_string_value(json_object_get(json_object_get(cdr, "amd"), "verdict"));
	if (json_is_string(answer))
		return verdict && strcmp(verdict, "machine") == 0 ? DIALER_MACHINE
		                                                  : DIALER_ANSWERED;
	json_int_t code = json_integer_value(json_object_get(cdr, "sip_code"));
	const char *why = json_string_value(json_object_get(cdr, "end_reason"));
	if (code == 486 || code == 600)
		return DIALER_BUSY;
	if (code == 408 || code == 480 || code == 487 || (why && strstr(why, "no answer")))
		return DIALER_NO_ANSWER;
	return DIALER_FAILED;
}

void dialer_retry_parse(const json_t *policy, unsigned campaign_max,
                        struct dialer_retry out[DIALER_OUTCOME__COUNT])
{
	out[DIALER_ANSWERED] = (struct dialer_retry){.max_attempts = 1, .backoff_s = 0};
	for (unsigned o = DIALER_NO_ANSWER; o < DIALER_OUTCOME__COUNT; o++) {
		out[o] = (struct dialer_retry){.max_attempts = campaign_max ? campaign_max : 1,
		                               .backoff_s = DIALER_BACKOFF_DEFAULT_S};
		const json_t *p = json_object_get(policy, outcome_names[o]);
		const json_t *m = json_object_get(p, "max_attempts");
		const json_t *b = json_object_get(p, "backoff_s");
		if (json_is_integer(m) && json_integer_value(m) >= 0 &&
		    json_integer_value(m) <= 100)
			out[o].max_attempts = (unsigned)json_integer_value(m);
		if (json_is_integer(b) && json_integer_value(b) >= 0 &&
		    json_integer_value(b) <= 7 * 86400)
			out[o].backoff_s = (unsigned)json_integer_value(b);
	}
}

int dialer_retry_decide(const struct dialer_retry pol[DIALER_OUTCOME__COUNT], enum dialer_outcome o,
                        unsigned attempt, uint64_t *delay_s)
{
	*delay_s = 0;
	if ((unsigned)o >= DIALER_OUTCOME__COUNT || o == DIALER_ANSWERED)
		return 0;
	if (attempt >= pol[o].max_attempts)
		return 0;
	uint64_t d = pol[o].backoff_s;
	for (unsigned i = 1; i < attempt && d < 86400; i++)
		d *= 2;
	*delay_s = d > 86400 ? 86400 : d;
	return 1;
}
