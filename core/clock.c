/* Monotonic and wall clocks with an injectable source for tests. */
#include "core/clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static clock_source_cb source;

uint64_t clock_now_us(void)
{
	if (source)
		return source();
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t clock_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void clock_set_source(clock_source_cb cb)
{
	source = cb;
}

void clock_format_iso(uint64_t ms, char *buf, unsigned len)
{
	time_t t = (time_t)(ms / 1000u);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000u));
}

int clock_hhmm(const char *s, int max_min)
{
	if (!s || strlen(s) != 5 || s[2] != ':')
		return -1;
	for (int i = 0; i < 5; i++) {
		if (i != 2 && (s[i] < '0' || s[i] > '9'))
			return -1;
	}
	int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
	return m > 59 || h * 60 + m > max_min ? -1 : h * 60 + m;
}
