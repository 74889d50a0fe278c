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

#endif
