/* Growable string buffer for signalling-time text (SDP, JSON, metrics); not for the packet path.
 * Functions use the core str_ prefix: libconfig.so exports strbuf_append(), which a
 * same-named function in the executable would interpose. */
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

void str_init(struct strbuf *sb);
void str_deinit(struct strbuf *sb);
void str_reset(struct strbuf *sb);
int str_append(struct strbuf *sb, const char *s, size_t n);
int str_puts(struct strbuf *sb, const char *s);
int str_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the string to the caller (free with mem_free) and resets sb. */
char *str_steal(struct strbuf *sb);

#endif
