/* Shared by the bench tools: thread and process CPU time, the median of per-run figures. */
#ifndef VACS_BENCH_TOOLS_BENCH_CPU_H
#define VACS_BENCH_TOOLS_BENCH_CPU_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* utime + stime of process pid from /proc, in seconds; -1 when it cannot be read. */
static inline double bench_proc_cpu_s(long pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* after ") ": field 3 is state; utime and stime are fields 14 and 15 */
	unsigned long long ut = 0, st = 0;
	int field = 2;
	for (char *tok = p + 1; *tok && field < 15;) {
		while (*tok == ' ')
			tok++;
		field++;
		if (field == 14)
			ut = strtoull(tok, NULL, 10);
		else if (field == 15)
			st = strtoull(tok, NULL, 10);
		while (*tok && *tok != ' ')
			tok++;
	}
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

#endif
