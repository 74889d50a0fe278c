/* Monotonic and wall clocks, with an injectable monotonic source for tests. */
#ifndef VACS_CORE_CLOCK_H
#define VACS_CORE_CLOCK_H

#include <stdint.h>

typedef uint64_t (*clock_source_cb)(void);

/* Microseconds on the monotonic clock (or the injected source). Any thread. */
uint64_t clock_now_us(void);
/* Milliseconds since the Unix epoch. */
uint64_t clock_wall_ms(void);
/* Test hook: replace the monotonic source; NULL restores the real clock. */
void clock_set_source(clock_source_cb cb);
/* Formats wall time `ms` as ISO 8601 UTC with milliseconds into buf (>= 25 bytes). */
void clock_format_iso(uint64_t ms, char *buf, unsigned len);
/* "HH:MM" (exactly five characters) -> minutes since midnight, when the minutes are 0-59
 * and the total is at most max_min (1439 for a time of day, 1440 to allow "24:00", 840
 * for a UTC offset up to 14:00); -1 otherwise, or for NULL. */
int clock_hhmm(const char *s, int max_min);

#endif
