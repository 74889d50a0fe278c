/* Logging with call-id correlation: text or JSON lines, one write(2) per line. */
#include "core/log.h"

#include "core/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static atomic_int level = LOG_INFO;
static atomic_int format = LOG_FMT_TEXT;
static atomic_int fd = 2;
static _Thread_local char call_id[128];

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *log_level_name(enum log_level lvl)
{
	return (unsigned)lvl < 4 ? level_names[lvl] : "?";
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (unsigned i = 0; i < 4; i++) {
		if (s && strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

int log_init(const struct log_config *cfg)
{
	int nfd = 2;
	if (cfg->path && cfg->path[0]) {
		nfd = open(cfg->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (nfd < 0)
			return -errno;
	}
	int old = atomic_exchange(&fd, nfd);
	if (old > 2)
		close(old);
	atomic_store(&level, cfg->level);
	atomic_store(&format, cfg->format);
	return 0;
}

void log_close(void)
{
	int old = atomic_exchange(&fd, 2);
	if (old > 2)
		close(old);
}

void log_set_call(const char *id)
{
	if (!id) {
		call_id[0] = '\0';
		return;
	}
	snprintf(call_id, sizeof(call_id), "%s", id);
}

int log_enabled(enum log_level lvl)
{
	return (int)lvl <= atomic_load_explicit(&level, memory_order_relaxed);
}

/* Appends s JSON-escaped to buf at *pos (bounded). */
static void json_escape(char *buf, size_t cap, size_t *pos, const char *s)
{
	for (; *s && *pos + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[(*pos)++] = '\\';
			buf[(*pos)++] = (char)c;
		} else if (c < 0x20) {
			*pos += (size_t)snprintf(buf + *pos, cap - *pos, "\\u%04x", c);
		} else {
			buf[(*pos)++] = (char)c;
		}
	}
}

void log_msg(enum log_level lvl, const char *mod, const char *fmt, ...)
{
	if (!log_enabled(lvl))
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	char ts[32];
	clock_format_iso(clock_wall_ms(), ts, sizeof(ts));
	char line[4096];
	size_t pos = 0;
	if (atomic_load(&format) == LOG_FMT_JSON) {
		pos = (size_t)snprintf(line, sizeof(line),
		                       "{\"ts\":\"%s\",\"level\":\"%s\",\"mod\":\"", ts,
		                       log_level_name(lvl));
		json_escape(line, sizeof(line), &pos, mod);
		if (call_id[0]) {
			pos +=
			    (size_t)snprintf(line + pos, sizeof(line) - pos, "\",\"call_id\":\"");
			json_escape(line, sizeof(line), &pos, call_id);
		}
		pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\",\"msg\":\"");
		json_escape(line, sizeof(line), &pos, msg);
		pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "\"}\n");
	} else {
		pos = (size_t)snprintf(line, sizeof(line), "%s %-5s %-6s %s%s%s%s\n", ts,
		                       log_level_name(lvl), mod, call_id[0] ? "[" : "", call_id,
		                       call_id[0] ? "] " : "", msg);
	}
	if (pos >= sizeof(line)) {
		pos = sizeof(line) - 1;
		line[pos - 1] = '\n';
	}
	ssize_t w = write(atomic_load(&fd), line, pos);
	(void)w;
}

int log_ratelimit_ok(struct log_ratelimit *rl)
{
	uint64_t now = clock_now_us();
	if (now - rl->window_start_us > 10u * 1000000u) {
		if (rl->suppressed)
			log_msg(LOG_WARN, "log", "%u similar lines suppressed", rl->suppressed);
		rl->window_start_us = now;
		rl->count = 0;
		rl->suppressed = 0;
	}
	if (rl->count < 5) {
		rl->count++;
		return 1;
	}
	rl->suppressed++;
	return 0;
}

void log_line(enum log_level lvl, const char *mod, const char *text)
{
	size_t n = strlen(text);
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		n--;
	log_msg(lvl, mod, "%.*s", (int)n, text);
}
