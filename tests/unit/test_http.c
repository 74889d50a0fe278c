/* Unit tests of control/http.c: the HTTP server on loopback, spoken to over a plain socket. */
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
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static long live_before;

struct resp {
	int status;
	char head[4096]; /* status line and headers */
	char *body;      /* points into raw */
	size_t body_len;
	char raw[256 * 1024];
};

static struct resp resp;

/* A port nobody listens on right now (the kernel's choice, then released). */
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

static int connect_to(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_all(int fd, const char *s)
{
	size_t n = strlen(s);
	assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Splits raw[0..n) into status, head and body. */
static void parse_resp(size_t n)
{
	resp.raw[n] = '\0';
	char *sep = strstr(resp.raw, "\r\n\r\n");
	if (!sep)
		fail_msg("no header end in response: \"%s\"", resp.raw);
	size_t hl = (size_t)(sep - resp.raw);
	assert_true(hl < sizeof(resp.head));
	memcpy(resp.head, resp.raw, hl);
	resp.head[hl] = '\0';
	resp.body = sep + 4;
	resp.body_len = n - hl - 4;
	assert_int_equal(sscanf(resp.raw, "HTTP/1.%*d %d", &resp.status), 1);
}

/* One HTTP/1.0 request; the server closes the connection after the answer. */
static void request(const char *method, const char *path)
{
	int fd = connect_to(ctl_bound_port());
	char req[512];
	snprintf(req, sizeof(req),
	         "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: test_http\r\n%s\r\n", method,
	         path, strcmp(method, "GET") ? "Content-Length: 0\r\n" : "");
	send_all(fd, req);
	size_t n = 0;
	for (;;) {
		ssize_t r = recv(fd, resp.raw + n, sizeof(resp.raw) - 1 - n, 0);
		if (r < 0)
			fail_msg("recv: %s", strerror(errno));
		if (r == 0)
			break;
		n += (size_t)r;
		assert_true(n < sizeof(resp.raw) - 1);
	}
	close(fd);
	parse_resp(n);
}

/* The value of header `name` (case-insensitive) in the last response, or NULL. */
static const char *header(const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(resp.head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
		const char *h = p + 2;
		if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
			h += nl + 1;
			while (*h == ' ')
				h++;
			const char *e = strstr(h, "\r\n");
			size_t vl = e ? (size_t)(e - h) : strlen(h);
			snprintf(buf, len, "%.*s", (int)vl, h);
			return buf;
		}
	}
	return NULL;
}

static void expect_header(const char *name, const char *want)
{
	char buf[256];
	const char *v = header(name, buf, sizeof(buf));
	if (!v || strcmp(v, want) != 0)
		fail_msg("%s: \"%s\", want \"%s\"\n%s", name, v ? v : "(absent)", want, resp.head);
}

static int64_t requests_with(unsigned code)
{
	char name[64];
	snprintf(name, sizeof(name), "vacs_http_requests_total{code=\"%u\"}", code);
	return metric_lookup(name);
}

static int start(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	struct ctl_config cfg = {.address = "127.0.0.1", .port = free_port()};
	int rc = ctl_init(&cfg);
	if (rc)
		fail_msg("ctl_init: %s", strerror(-rc));
	assert_int_equal(ctl_bound_port(), cfg.port);
	ctl_set_ready(1, NULL);
	return 0;
}

static int stop(void **state)
{
	(void)state;
	ctl_close();
	assert_int_equal(ctl_bound_port(), 0);
	metric_registry_close();
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

static void test_http_healthz(void **state)
{
	(void)state;
	request("GET", "/healthz");
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "ok\n");
	expect_header("Content-Type", "text/plain");
	expect_header("Content-Length", "3");
	/* query strings do not change the resource */
	request("GET", "/healthz?verbose=1");
	assert_int_equal(resp.status, 200);
}

static void test_http_readyz(void **state)
{
	(void)state;
	request("GET", "/readyz");
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "ready\n");

	ctl_set_ready(0, "draining");
	request("GET", "/readyz");
	assert_int_equal(resp.status, 503);
	assert_string_equal(resp.body, "draining\n");
	expect_header("Content-Type", "text/plain");

	ctl_set_ready(0, NULL);
	request("GET", "/readyz");
	assert_int_equal(resp.status, 503);
	assert_string_equal(resp.body, "not ready\n");

	ctl_set_ready(1, NULL);
	request("GET", "/readyz");
	assert_int_equal(resp.status, 200);
	/* liveness does not depend on readiness */
	ctl_set_ready(0, "draining");
	request("GET", "/healthz");
	assert_int_equal(resp.status, 200);
}

static void test_http_metrics(void **state)
{
	(void)state;
	struct metric *m = metric_get(METRIC_COUNTER, "vacs_test_widgets_total", "Widgets made.");
	assert_non_null(m);
	metric_add(m, 42);
	request("GET", "/healthz");
	request("GET", "/metrics");
	assert_int_equal(resp.status, 200);
	expect_header("Content-Type", "text/plain; version=0.0.4");
	assert_non_null(strstr(resp.body, "# TYPE vacs_test_widgets_total counter\n"));
	assert_non_null(strstr(resp.body, "\nvacs_test_widgets_total 42\n"));
	assert_non_null(strstr(resp.body, "vacs_http_requests_total{code=\"200\"} "));
	char len[32];
	snprintf(len, sizeof(len), "%zu", resp.body_len);
	expect_header("Content-Length", len);
}

/* A page larger than one write chunk arrives whole. */
static void test_http_metrics_large(void **state)
{
	(void)state;
	for (int i = 0; i < 2000; i++) {
		char name[64];
		snprintf(name, sizeof(name), "vacs_test_bulk_total{n=\"%d\"}", i);
		metric_add(metric_get(METRIC_COUNTER, name, "Bulk."), (uint64_t)i);
	}
	request("GET", "/metrics");
	assert_int_equal(resp.status, 200);
	assert_true(resp.body_len > 60000);
	assert_int_equal(strlen(resp.body), resp.body_len);
	assert_non_null(strstr(resp.body, "vacs_test_bulk_total{n=\"0\"} 0\n"));
	assert_non_null(strstr(resp.body, "vacs_test_bulk_total{n=\"1999\"} 1999\n"));
}

static void test_http_not_found(void **state)
{
	(void)state;
	int64_t before = requests_with(404);
	request("GET", "/nope");
	assert_int_equal(resp.status, 404);
	expect_header("Content-Type", "application/json");
	json_error_t jerr;
	json_t *j = json_loads(resp.body, 0, &jerr);
	if (!j)
		fail_msg("not JSON (%s): %s", jerr.text, resp.body);
	const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
	const char *msg =
	    json_string_value(json_object_get(json_object_get(j, "error"), "message"));
	assert_non_null(code);
	assert_string_equal(code, "not_found");
	assert_non_null(msg);
	assert_non_null(strstr(msg, "/nope"));
	json_decref(j);
	assert_int_equal(requests_with(404), before + 1);

	/* a path that needs escaping still gives valid JSON */
	request("GET", "/a%22b\\c");
	assert_int_equal(resp.status, 404);
	j = json_loads(resp.body, 0, &jerr);
	if (!j)
		fail_msg("not JSON (%s): %s", jerr.text, resp.body);
	json_decref(j);
	/* unknown paths are 404 whatever the method */
	request("POST", "/nope");
	assert_int_equal(resp.status, 404);
}

static void test_http_method_not_allowed(void **state)
{
	(void)state;
	static const char *const paths[] = {"/healthz", "/readyz", "/metrics", "/healthz"};
	static const char *const methods[] = {"POST", "PUT", "DELETE", "HEAD"};
	int64_t before = requests_with(405);
	for (int i = 0; i < 4; i++) {
		request(methods[i], paths[i]);
		assert_int_equal(resp.status, 405);
		expect_header("Allow", "GET");
		if (strcmp(methods[i], "HEAD") == 0) {
			assert_int_equal(resp.body_len, 0); /* HEAD answers carry no body */
			continue;
		}
		json_t *j = json_loads(resp.body, 0, NULL);
		assert_non_null(j);
		assert_string_equal(
		    json_string_value(json_object_get(json_object_get(j, "error"), "code")),
		    "method_not_allowed");
		json_decref(j);
	}
	assert_int_equal(requests_with(405), before + 4);
}

/* HTTP/1.1 keep-alive: two requests on one connection. */
static void test_http_keep_alive(void **state)
{
	(void)state;
	int fd = connect_to(ctl_bound_port());
	for (int i = 0; i < 2; i++) {
		send_all(fd, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
		size_t n = 0;
		char *end = NULL;
		while (!end || (size_t)(resp.raw + n - (end + 4)) < 3) {
			ssize_t r = recv(fd, resp.raw + n, sizeof(resp.raw) - 1 - n, 0);
			assert_true(r > 0);
			n += (size_t)r;
			resp.raw[n] = '\0';
			end = strstr(resp.raw, "\r\n\r\n");
		}
		parse_resp(n);
		assert_int_equal(resp.status, 200);
		assert_string_equal(resp.body, "ok\n");
	}
	close(fd);
}

static void test_http_port_in_use(void **state)
{
	(void)state;
	/* the running server holds its port: a second listener on it must fail cleanly */
	ctl_close();
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	struct ctl_config cfg = {.address = "127.0.0.1", .port = ntohs(sa.sin_port)};
	assert_int_equal(ctl_init(&cfg), -EADDRINUSE);
	assert_int_equal(ctl_bound_port(), 0);
	close(fd);
	ctl_close(); /* nothing running: harmless */

	/* port 0 = off */
	cfg.port = 0;
	assert_int_equal(ctl_init(&cfg), 0);
	assert_int_equal(ctl_bound_port(), 0);
	ctl_close();
	cfg.address = "not-an-address";
	cfg.port = free_port();
	assert_int_equal(ctl_init(&cfg), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, start, stop)
	    T(test_http_healthz),       T(test_http_readyz),      T(test_http_metrics),
	    T(test_http_metrics_large), T(test_http_not_found),   T(test_http_method_not_allowed),
	    T(test_http_keep_alive),    T(test_http_port_in_use),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
