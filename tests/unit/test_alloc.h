/* Test helpers: every heap allocation of the process counted (glibc's entry points
 * interposed, or the sanitizers' allocator hooks in sanitizer builds), so a "nothing
 * allocated per frame" check also sees what a library (spandsp, speexdsp, opus, bcg729,
 * OpenSSL) would allocate; and the leak check put around every test. Include after
 * <cmocka.h>, once per test binary. Define TEST_CUSTOM_LEAK first to write your own
 * leak_setup/leak_teardown. */
#ifndef VACS_TESTS_UNIT_TEST_ALLOC_H
#define VACS_TESTS_UNIT_TEST_ALLOC_H

#include "core/mem.h"

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>

static _Atomic unsigned long test_heap_allocs;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TEST_SAN_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TEST_SAN_ALLOCATOR 1
#endif
#endif

#ifdef TEST_SAN_ALLOCATOR
/* From <sanitizer/allocator_interface.h>, which gcc does not install. */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));

static void test_alloc_hook(const volatile void *p, size_t n)
{
	(void)p;
	(void)n;
	atomic_fetch_add_explicit(&test_heap_allocs, 1, memory_order_relaxed);
}

static void test_free_hook(const volatile void *p)
{
	(void)p;
}

__attribute__((constructor)) static void test_alloc_hooks_install(void)
{
	__sanitizer_install_malloc_and_free_hooks(test_alloc_hook, test_free_hook);
}
#else
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t a, size_t n);
extern void __libc_free(void *p);

static inline void test_count_alloc(void)
{
	atomic_fetch_add_explicit(&test_heap_allocs, 1, memory_order_relaxed);
}

void *malloc(size_t n)
{
	test_count_alloc();
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
	test_count_alloc();
	return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
	test_count_alloc();
	return __libc_realloc(p, n);
}

void *memalign(size_t a, size_t n)
{
	test_count_alloc();
	return __libc_memalign(a, n);
}

void *aligned_alloc(size_t a, size_t n)
{
	test_count_alloc();
	return __libc_memalign(a, n);
}

int posix_memalign(void **out, size_t a, size_t n)
{
	test_count_alloc();
	void *p = __libc_memalign(a, n);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

void free(void *p)
{
	__libc_free(p);
}
#endif

/* Heap allocations made by the whole process so far (every thread, every library). */
static inline unsigned long alloc_count(void)
{
	return atomic_load(&test_heap_allocs);
}

#ifndef TEST_CUSTOM_LEAK
static long live_before;

static inline int leak_setup(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	return 0;
}

static inline int leak_teardown(void **state)
{
	(void)state;
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}
#endif

#endif
