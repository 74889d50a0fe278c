/* Growable string buffer for signalling-time text (SDP, JSON, metrics); not for the packet path. */
#ifndef VACS_CORE_STRBUF_H
#define VACS_CORE_STRBUF_H

#include <stddef.h>

/* Members are readable: p is NUL-terminated after any successful append. */
struct strbuf {
	char *p;
	size_t len;
	size_t cap;
	int oom; /* sticky: an append failed */
};

void strbuf_init(struct strbuf *sb);
void strbuf_deinit(struct strbuf *sb);
void strbuf_reset(struct strbuf *sb);
int strbuf_append(struct strbuf *sb, const char *s, size_t n);
int strbuf_puts(struct strbuf *sb, const char *s);
int strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the string to the caller (free with mem_free) and resets sb. */
char *strbuf_steal(struct strbuf *sb);

#endif
