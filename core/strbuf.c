/* Growable string buffer (signalling-time only). */
#include "core/strbuf.h"

#include "core/mem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void str_init(struct strbuf *sb)
{
	memset(sb, 0, sizeof(*sb));
}

void str_deinit(struct strbuf *sb)
{
	mem_free(sb->p);
	memset(sb, 0, sizeof(*sb));
}

void str_reset(struct strbuf *sb)
{
	sb->len = 0;
	if (sb->p)
		sb->p[0] = '\0';
}

static int grow(struct strbuf *sb, size_t need)
{
	if (sb->oom)
		return -ENOMEM;
	if (sb->len + need + 1 <= sb->cap)
		return 0;
	size_t cap = sb->cap ? sb->cap : 256;
	while (cap < sb->len + need + 1)
		cap *= 2;
	char *p = mem_realloc(sb->p, cap);
	if (!p) {
		sb->oom = 1;
		return -ENOMEM;
	}
	sb->p = p;
	sb->cap = cap;
	return 0;
}

int str_append(struct strbuf *sb, const char *s, size_t n)
{
	if (grow(sb, n))
		return -ENOMEM;
	memcpy(sb->p + sb->len, s, n);
	sb->len += n;
	sb->p[sb->len] = '\0';
	return 0;
}

int str_puts(struct strbuf *sb, const char *s)
{
	return str_append(sb, s, strlen(s));
}

int str_printf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || grow(sb, (size_t)n))
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(sb->p + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
	return 0;
}

char *str_steal(struct strbuf *sb)
{
	char *p = sb->p;
	if (!p)
		p = mem_strdup("");
	memset(sb, 0, sizeof(*sb));
	return p;
}
