/* Shared by the bench tools: thread CPU time and the median of per-run figures. */
#ifndef VACS_BENCH_TOOLS_BENCH_CPU_H
#define VACS_BENCH_TOOLS_BENCH_CPU_H

#include <stdlib.h>
#include <time.h>

/* CPU time of the calling thread, µs. */
static inline double bench_cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The median of v[0..n-1] (n >= 1); sorts v. */
static inline double bench_median(double *v, unsigned n)
{
	qsort(v, n, sizeof(v[0]), bench_cmp_double);
	return v[n / 2];
}

#endif
