/* Counted allocation wrappers with one-shot fault injection for tests. */
#include "core/mem.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long live_blocks;
static atomic_uint_fast64_t total_allocs;
static atomic_long fail_countdown = -1;

static int should_fail(void)
{
	long v = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
	if (v < 0)
		return 0;
	if (atomic_fetch_sub(&fail_countdown, 1) == 0)
		return 1;
	return 0;
}

void *mem_alloc(size_t n)
{
	if (should_fail())
		return NULL;
	void *p = malloc(n ? n : 1);
	if (p) {
		atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&total_allocs, 1, memory_order_relaxed);
	}
	return p;
}

void *mem_zalloc(size_t n)
{
	void *p = mem_alloc(n);
	if (p)
		memset(p, 0, n ? n : 1);
	return p;
}

void *mem_realloc(void *p, size_t n)
{
	if (!p)
		return mem_alloc(n);
	if (should_fail())
		return NULL;
	void *q = realloc(p, n ? n : 1);
	if (q)
		atomic_fetch_add_explicit(&total_allocs, 1, memory_order_relaxed);
	return q;
}

char *mem_strndup(const char *s, size_t n)
{
	if (!s)
		return NULL;
	size_t len = strnlen(s, n);
	char *d = mem_alloc(len + 1);
	if (!d)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

char *mem_strdup(const char *s)
{
	return s ? mem_strndup(s, strlen(s)) : NULL;
}

void mem_free(void *p)
{
	if (!p)
		return;
	atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
	free(p);
}

long mem_live_blocks(void)
{
	return atomic_load(&live_blocks);
}

uint64_t mem_total_allocs(void)
{
	return atomic_load(&total_allocs);
}

void mem_fail_after(long n)
{
	atomic_store(&fail_countdown, n);
}
