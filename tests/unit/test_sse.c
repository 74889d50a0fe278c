/* Unit tests of the event stream (GET /v1/events/stream in control/http.c): events reach a
 * client, a client that does not read is dropped, no key no stream, nothing leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "control/control.h"
#include "core/mem.h"
#include "core/metric.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long live_before;
static const char *const keys[] = {"sse-test-key-123", NULL};

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/* Connects and asks for the stream; rcvbuf > 0 makes the client's socket buffer small. */
static int open_stream(const char *key, int rcvbuf)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(ctl_bound_port()),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char req[256];
	int n =
	    snprintf(req, sizeof(req), "GET /v1/events/stream HTTP/1.1\r\nHost: t\r\n%s%s%s\r\n",
	             key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "");
	assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
	return fd;
}

/* Reads into buf (NUL-terminated) until `want` shows up or ms pass; 1 when it did. */
static int read_until(int fd, char *buf, size_t len, size_t *got, const char *want, int ms)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		buf[*got] = '\0';
		if (strstr(buf, want))
			return 1;
		clock_gettime(CLOCK_MONOTONIC, &t);
		long left =
		    ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (left <= 0 || *got + 1 >= len || poll(&p, 1, (int)left) <= 0)
			return 0;
		ssize_t r = recv(fd, buf + *got, len - 1 - *got, 0);
		if (r <= 0)
			return 0;
		*got += (size_t)r;
	}
}

static int start(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	struct ctl_config cfg = {.address = "127.0.0.1", .port = free_port(), .api_keys = keys};
	int rc = ctl_init(&cfg);
	if (rc)
		fail_msg("ctl_init: %s", strerror(-rc));
	return 0;
}

static int stop(void **state)
{
	(void)state;
	ctl_close();
	metric_registry_close();
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

static void test_sse_events_reach_the_client(void **state)
{
	(void)state;
	static char buf[16384];
	size_t got = 0;
	int fd = open_stream(keys[0], 0);
	assert_true(read_until(fd, buf, sizeof(buf), &got, ": connected\n\n", 3000));
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	assert_non_null(strcasestr(buf, "content-type: text/event-stream"));
	ctl_event_post("call.started", "{\"call_id\":\"c1\"}");
	ctl_event_post("call.transcript", "{\"call_id\":\"c1\",\"text\":\"hola\"}");
	assert_true(read_until(
	    fd, buf, sizeof(buf), &got,
	    "event: call.transcript\ndata: {\"call_id\":\"c1\",\"text\":\"hola\"}\n\n", 3000));
	char *a = strstr(buf, "event: call.started\ndata: {\"call_id\":\"c1\"}\n\n");
	char *b = strstr(buf, "event: call.transcript");
	assert_true(a && b && a < b); /* in order */
	close(fd);
}

static void test_sse_needs_a_key(void **state)
{
	(void)state;
	static char buf[4096];
	size_t got = 0;
	int fd = open_stream(NULL, 0);
	assert_true(read_until(fd, buf, sizeof(buf), &got, "\r\n\r\n", 3000));
	assert_non_null(strstr(buf, "HTTP/1.1 401"));
	close(fd);
	got = 0;
	fd = open_stream("wrong-key", 0);
	assert_true(read_until(fd, buf, sizeof(buf), &got, "\r\n\r\n", 3000));
	assert_non_null(strstr(buf, "HTTP/1.1 401"));
	close(fd);
}

static void test_sse_slow_client_dropped(void **state)
{
	(void)state;
	static char buf[1 << 16];
	size_t got = 0;
	int fd = open_stream(keys[0], 4096);
	assert_true(read_until(fd, buf, sizeof(buf), &got, ": connected\n\n", 3000));
	/* a client that stops reading while far more than CTL_EVENTS_KEPT events go out */
	char ev[1024];
	memset(ev, 'x', sizeof(ev));
	memcpy(ev, "{\"pad\":\"", 8);
	memcpy(ev + sizeof(ev) - 3, "\"}", 3);
	for (int i = 0; i < 4 * CTL_EVENTS_KEPT; i++) {
		ctl_event_post("call.quality", ev);
		if (i % 256 == 0)
			usleep(2000); /* let the http thread see the backlog grow */
	}
	usleep(300000);
	/* it was closed: draining what the kernel holds ends in EOF, well short of 4 MB */
	size_t total = 0;
	int eof = 0;
	for (int i = 0; i < 2000 && !eof; i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 2000) <= 0)
			break;
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r <= 0)
			eof = 1;
		else
			total += (size_t)r;
	}
	assert_true(eof);
	assert_true(total < (size_t)4 * CTL_EVENTS_KEPT * 1024);
	close(fd);
	/* a new client still gets new events */
	got = 0;
	fd = open_stream(keys[0], 0);
	assert_true(read_until(fd, buf, sizeof(buf), &got, ": connected\n\n", 3000));
	ctl_event_post("call.ended", "{\"call_id\":\"c2\"}");
	assert_true(read_until(fd, buf, sizeof(buf), &got, "event: call.ended", 3000));
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_sse_events_reach_the_client, start, stop),
	    cmocka_unit_test_setup_teardown(test_sse_needs_a_key, start, stop),
	    cmocka_unit_test_setup_teardown(test_sse_slow_client_dropped, start, stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
