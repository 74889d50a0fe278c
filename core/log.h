/* Logging with call-id correlation, as plain text or JSON lines. */
#ifndef VACS_CORE_LOG_H
#define VACS_CORE_LOG_H

#include <stdint.h>

enum log_level { LOG_ERR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_FMT_TEXT = 0, LOG_FMT_JSON };

struct log_config {
	enum log_level level;
	enum log_format format;
	const char *path; /* NULL or "" = stderr */
};

/* Opens the sink. May be called again (SIGHUP) from the sip thread. 0 or -errno. */
int log_init(const struct log_config *cfg);
void log_close(void);

/* Sets the call id attached to this thread's following lines (NULL clears).
 * The string is copied (truncated to 127 bytes). */
void log_set_call(const char *call_id);

/* One line. Thread-safe; each line is written with a single write(2). */
void log_msg(enum log_level lvl, const char *mod, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int log_enabled(enum log_level lvl);
/* One line handed over by a library's log hook: logged under `mod` with its trailing
 * CR/LF dropped. Thread-safe. */
void log_line(enum log_level lvl, const char *mod, const char *text);

/* Rate limit state: at most `burst` lines per `interval_s`; members are private. */
struct log_ratelimit {
	uint64_t window_start_us;
	uint32_t count;
	uint32_t suppressed;
};
/* Returns 1 when a line may be logged now (5 per 10 s). Not thread-safe per object. */
int log_ratelimit_ok(struct log_ratelimit *rl);

const char *log_level_name(enum log_level lvl);
int log_level_parse(const char *s, enum log_level *out);

#define log_err(mod, ...)  log_msg(LOG_ERR, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_WARN, mod, __VA_ARGS__)
#define log_info(mod, ...) log_msg(LOG_INFO, mod, __VA_ARGS__)
#define log_debug(mod, ...)                                                                        \
	do {                                                                                       \
		if (log_enabled(LOG_DEBUG))                                                        \
			log_msg(LOG_DEBUG, mod, __VA_ARGS__);                                      \
	} while (0)

#endif
