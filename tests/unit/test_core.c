/* Unit tests for core/: mailboxes, metrics rendering, strings, counted allocation, logging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mbox.h"
#include "core/mem.h"
#include "core/metric.h"
#include "core/strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long live_at_start;

static int setup(void **state)
{
	(void)state;
	live_at_start = mem_live_blocks();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(mem_live_blocks(), live_at_start);
	return 0;
}

struct msg {
	uint32_t seq;
	uint32_t from;
};

static struct mbox *shared_mb;

static void *producer(void *arg)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;
	for (uint32_t i = 0; i < 1000; i++) {
		struct msg m = {.seq = i, .from = id};
		while (mbox_post(shared_mb, &m) == -EAGAIN)
			usleep(50);
	}
	return NULL;
}

/* "HH:MM" as calling hours, "24:00" ends and UTC offsets use it. */
static void test_core_clock_hhmm(void **state)
{
	(void)state;
	assert_int_equal(clock_hhmm("00:00", 1439), 0);
	assert_int_equal(clock_hhmm("09:30", 1439), 570);
	assert_int_equal(clock_hhmm("23:59", 1439), 1439);
	assert_int_equal(clock_hhmm("24:00", 1439), -1);
	assert_int_equal(clock_hhmm("24:00", 1440), 1440);
	assert_int_equal(clock_hhmm("24:01", 1440), -1);
	assert_int_equal(clock_hhmm("14:00", 840), 840);
	assert_int_equal(clock_hhmm("14:30", 840), -1);
	assert_int_equal(clock_hhmm("10:60", 1440), -1);
	assert_int_equal(clock_hhmm("9:30", 1440), -1);
	assert_int_equal(clock_hhmm("09-30", 1440), -1);
	assert_int_equal(clock_hhmm("0a:30", 1440), -1);
	assert_int_equal(clock_hhmm("09:30 ", 1440), -1);
	assert_int_equal(clock_hhmm(NULL, 1440), -1);
}

static void test_core_mbox_orders_per_producer_and_wakes(void **state)
{
	(void)state;
	assert_int_equal(mbox_create(&shared_mb, sizeof(struct msg), 64), 0);
	pthread_t t[2];
	pthread_create(&t[0], NULL, producer, (void *)(uintptr_t)0);
	pthread_create(&t[1], NULL, producer, (void *)(uintptr_t)1);
	uint32_t next[2] = {0, 0};
	unsigned got = 0;
	for (int rounds = 0; got < 2000 && rounds < 100000; rounds++) {
		struct pollfd pfd = {.fd = mbox_fd(shared_mb), .events = POLLIN};
		poll(&pfd, 1, 100);
		mbox_drain_fd(shared_mb);
		struct msg m;
		while (mbox_take(shared_mb, &m) == 0) {
			assert_true(m.from < 2);
			assert_int_equal(m.seq, next[m.from]);
			next[m.from]++;
			got++;
		}
	}
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	assert_int_equal(got, 2000);
	struct msg m;
	assert_int_equal(mbox_take(shared_mb, &m), -EAGAIN);
	mbox_destroy(shared_mb);
}

static void test_core_mbox_full_is_eagain(void **state)
{
	(void)state;
	struct mbox *mb;
	assert_int_equal(mbox_create(&mb, 8, 2), 0);
	uint64_t v = 1;
	assert_int_equal(mbox_post(mb, &v), 0);
	assert_int_equal(mbox_post(mb, &v), 0);
	assert_int_equal(mbox_post(mb, &v), -EAGAIN);
	mbox_destroy(mb);
	mbox_destroy(NULL);
}

/* A histogram renders cumulative buckets with +Inf, sum and count; bad bounds refused. */
static void test_core_metrics_histogram(void **state)
{
	(void)state;
	static const uint64_t b[] = {100, 500, 1000};
	static const uint64_t bad[] = {100, 100};
	assert_null(metric_hist_get("t_bad", "x", bad, 2));
	assert_null(metric_hist_get("t_bad", "x", b, 0));
	struct metric_hist *h = metric_hist_get("t_lat_us", "Latency", b, 3);
	assert_non_null(h);
	assert_ptr_equal(metric_hist_get("t_lat_us", "Latency", b, 3), h);
	static const uint64_t obs[] = {50, 100, 101, 700, 1000, 5000};
	for (unsigned i = 0; i < 6; i++)
		metric_hist_observe(h, obs[i]);
	struct strbuf sb;
	str_init(&sb);
	assert_int_equal(metric_render(&sb), 0);
	assert_non_null(strstr(sb.p, "# TYPE t_lat_us histogram\n"
	                             "t_lat_us_bucket{le=\"100\"} 2\n"
	                             "t_lat_us_bucket{le=\"500\"} 3\n"
	                             "t_lat_us_bucket{le=\"1000\"} 5\n"
	                             "t_lat_us_bucket{le=\"+Inf\"} 6\n"
	                             "t_lat_us_sum 6951\n"
	                             "t_lat_us_count 6\n"));
	str_deinit(&sb);
	metric_registry_close();
}

static void test_core_metrics_render_prometheus(void **state)
{
	(void)state;
	struct metric *a = metric_get(METRIC_COUNTER, "t_requests_total{code=\"200\"}", "Requests");
	struct metric *g = metric_get(METRIC_GAUGE, "t_active", "Active things");
	struct metric *b = metric_get(METRIC_COUNTER, "t_requests_total{code=\"404\"}", "Requests");
	assert_ptr_equal(metric_get(METRIC_COUNTER, "t_requests_total{code=\"200\"}", "x"), a);
	metric_add(a, 5);
	metric_inc(b);
	metric_set(g, -3);
	struct strbuf sb;
	str_init(&sb);
	assert_int_equal(metric_render(&sb), 0);
	/* One HELP/TYPE per family, samples of a family together. */
	const char *help =
	    strstr(sb.p, "# HELP t_requests_total Requests\n# TYPE t_requests_total counter\n");
	assert_non_null(help);
	assert_null(strstr(help + 1, "# HELP t_requests_total"));
	const char *s200 = strstr(sb.p, "t_requests_total{code=\"200\"} 5\n");
	const char *s404 = strstr(sb.p, "t_requests_total{code=\"404\"} 1\n");
	assert_non_null(s200);
	assert_non_null(s404);
	assert_true(s404 > s200);
	assert_non_null(strstr(sb.p, "# TYPE t_active gauge\nt_active -3\n"));
	assert_int_equal(metric_lookup("t_active"), -3);
	assert_int_equal(metric_lookup("nope"), -1);
	str_deinit(&sb);
	metric_registry_close();
}

static void test_core_mem_fault_injection(void **state)
{
	(void)state;
	mem_fail_after(1);
	void *a = mem_alloc(10);
	void *b = mem_alloc(10);
	void *c = mem_alloc(10);
	assert_non_null(a);
	assert_null(b);
	assert_non_null(c);
	mem_free(a);
	mem_free(c);
	mem_fail_after(-1);
	char *d = mem_strndup("abcdef", 3);
	assert_string_equal(d, "abc");
	mem_free(d);
	mem_free(NULL);
}

static void test_core_strbuf_grows_and_steals(void **state)
{
	(void)state;
	struct strbuf sb;
	str_init(&sb);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(str_printf(&sb, "%04d,", i), 0);
	assert_int_equal(sb.len, 5000);
	assert_memory_equal(sb.p + 4995, "0999,", 5);
	char *s = str_steal(&sb);
	assert_null(sb.p);
	assert_int_equal(strlen(s), 5000);
	mem_free(s);
	str_init(&sb);
	mem_fail_after(0);
	assert_int_equal(str_puts(&sb, "x"), -ENOMEM);
	mem_fail_after(-1);
	assert_int_equal(str_puts(&sb, "y"), -ENOMEM); /* sticky */
	str_deinit(&sb);
}

static void test_core_log_json_lines_carry_call_id(void **state)
{
	(void)state;
	char path[] = "/tmp/vacs-test-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct log_config lc = {.level = LOG_INFO, .format = LOG_FMT_JSON, .path = path};
	assert_int_equal(log_init(&lc), 0);
	log_set_call("abc@host");
	log_info("test", "quote \" and newline\n here");
	log_set_call(NULL);
	log_debug("test", "not shown");
	log_warn("test", "no call");
	lc.format = LOG_FMT_TEXT;
	lc.path = NULL;
	log_init(&lc);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[1024];
	assert_non_null(fgets(line, sizeof(line), f));
	assert_non_null(strstr(line, "\"level\":\"info\""));
	assert_non_null(strstr(line, "\"call_id\":\"abc@host\""));
	assert_non_null(strstr(line, "quote \\\" and newline\\u000a here"));
	assert_non_null(fgets(line, sizeof(line), f));
	assert_null(strstr(line, "call_id"));
	assert_non_null(strstr(line, "\"msg\":\"no call\""));
	assert_null(fgets(line, sizeof(line), f));
	fclose(f);
	unlink(path);
}

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
	return fake_now;
}

static void test_core_log_ratelimit(void **state)
{
	(void)state;
	clock_set_source(fake_clock);
	fake_now = 1000000000ull;
	struct log_ratelimit rl = {0};
	int ok = 0;
	for (int i = 0; i < 100; i++)
		ok += log_ratelimit_ok(&rl);
	assert_int_equal(ok, 5);
	fake_now += 11000000ull;
	assert_int_equal(log_ratelimit_ok(&rl), 1);
	clock_set_source(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_core_clock_hhmm),
	    cmocka_unit_test_setup_teardown(test_core_mbox_orders_per_producer_and_wakes, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_core_mbox_full_is_eagain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_core_metrics_render_prometheus, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_core_metrics_histogram, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_core_mem_fault_injection, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_core_strbuf_grows_and_steals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_core_log_json_lines_carry_call_id, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_core_log_ratelimit, setup, teardown),
	};
	return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
