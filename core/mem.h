/* Counted allocation wrappers: every heap block of the project goes through here. */
#ifndef VACS_CORE_MEM_H
#define VACS_CORE_MEM_H

#include <stddef.h>
#include <stdint.h>

/* Allocate n bytes. Returns NULL on failure (or when fault injection says so).
 * Any thread may call these; counters are atomic. */
void *mem_alloc(size_t n);
void *mem_zalloc(size_t n);
void *mem_realloc(void *p, size_t n);
char *mem_strdup(const char *s);
char *mem_strndup(const char *s, size_t n);
/* Frees p; NULL is accepted. */
void mem_free(void *p);

/* Live blocks allocated through these wrappers and not freed yet. */
long mem_live_blocks(void);
/* Allocations made since start (monotonic). */
uint64_t mem_total_allocs(void);
/* Fault injection for tests: the allocation after `n` more succeed fails, once.
 * n < 0 disables. */
void mem_fail_after(long n);

#endif
