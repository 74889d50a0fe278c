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
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
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

/* ---- client side -------------------------------------------------------------------- */

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

static void send_bytes(int fd, const void *p, size_t n)
{
	const char *s = p;
	while (n) {
		ssize_t r = send(fd, s, n, MSG_NOSIGNAL);
		if (r <= 0)
			fail_msg("send: %s", r < 0 ? strerror(errno) : "0");
		s += r;
		n -= (size_t)r;
	}
}

static void send_all(int fd, const char *s)
{
	send_bytes(fd, s, strlen(s));
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

/* Reads one whole response (Content-Length, or up to EOF without one); keeps the
 * connection usable for the next request. */
static void read_response(int fd)
{
	size_t n = 0, want = SIZE_MAX;
	char *sep = NULL;
	for (;;) {
		if (sep && n >= want)
			break;
		ssize_t r = recv(fd, resp.raw + n, sizeof(resp.raw) - 1 - n, 0);
		if (r < 0)
			fail_msg("recv: %s (after %zu bytes)", strerror(errno), n);
		if (r == 0) {
			if (!sep || want != SIZE_MAX)
				fail_msg("connection closed early after %zu bytes", n);
			break;
		}
		n += (size_t)r;
		assert_true(n < sizeof(resp.raw) - 1);
		resp.raw[n] = '\0';
		if (!sep && (sep = strstr(resp.raw, "\r\n\r\n"))) {
			size_t hl = (size_t)(sep - resp.raw) + 4;
			unsigned long long cl;
			const char *h = strcasestr(resp.raw, "\r\ncontent-length:");
			int status = 0;
			sscanf(resp.raw, "HTTP/1.%*d %d", &status);
			if (h && h < sep && sscanf(h + 17, " %llu", &cl) == 1)
				want = hl + (size_t)cl;
			else if (status == 204 || status == 304)
				want = hl;
		}
	}
	parse_resp(n);
}

/* The peer closed: recv gives 0 (within the socket's 5 s timeout). */
static void expect_eof(int fd)
{
	char c;
	ssize_t r = recv(fd, &c, 1, 0);
	if (r != 0)
		fail_msg("expected EOF, got %zd (%s)", r, r < 0 ? strerror(errno) : "data");
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

/* One HTTP/1.1 request with extra header lines and a body, on a new connection that is
 * returned still open (the caller closes it). */
static int request11(const char *method, const char *path, const char *headers, const void *body,
                     size_t len)
{
	int fd = connect_to(ctl_bound_port());
	char req[8192];
	snprintf(req, sizeof(req),
	         "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n%s\r\n", method, path,
	         len, headers ? headers : "");
	send_all(fd, req);
	if (len)
		send_bytes(fd, body, len);
	read_response(fd);
	return fd;
}

static void expect_error_json(const char *want_code, const char *want_field)
{
	json_error_t jerr;
	json_t *j = json_loadb(resp.body, resp.body_len, 0, &jerr);
	if (!j)
		fail_msg("not JSON (%s): %s", jerr.text, resp.body);
	json_t *e = json_object_get(j, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *field = json_string_value(json_object_get(e, "field"));
	assert_non_null(code);
	assert_string_equal(code, want_code);
	assert_non_null(json_string_value(json_object_get(e, "message")));
	if (want_field) {
		assert_non_null(field);
		assert_string_equal(field, want_field);
	} else {
		assert_null(json_object_get(e, "field"));
	}
	json_decref(j);
}

static int64_t requests_with(unsigned code)
{
	char name[64];
	snprintf(name, sizeof(name), "vacs_http_requests_total{code=\"%u\"}", code);
	return metric_lookup(name);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits (at most 5 s) for the abandoned-request counter to reach `want`. */
static void wait_abandoned(int64_t want)
{
	uint64_t until = now_ms() + 5000;
	while (metric_lookup("vacs_http_abandoned_total") < want) {
		if (now_ms() > until)
			fail_msg("vacs_http_abandoned_total stays at %lld, want %lld",
			         (long long)metric_lookup("vacs_http_abandoned_total"),
			         (long long)want);
		struct timespec ts = {.tv_nsec = 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* ---- server side: the test routes (handlers run on the http thread) ------------------ */

/* What the handlers saw; under `seen.lock`, calls signalled on `seen.cond`. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned calls;
	uint64_t token;
	char method[16], path[256], peer[64];
	char secret[128], auth[128], ctype[128], agent[128], host[128], accept[128];
	int missing_null, small_null, twice_rc;
	unsigned char *big; /* the last body of /v1/big */
	size_t big_len;
	pthread_t thread;
	int thread_started;
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void saw_call(struct ctl_request *rq)
{
	pthread_mutex_lock(&seen.lock);
	seen.calls++;
	seen.token = ctl_req_token(rq);
	snprintf(seen.method, sizeof(seen.method), "%s", ctl_req_method(rq));
	snprintf(seen.path, sizeof(seen.path), "%s", ctl_req_path(rq));
	snprintf(seen.peer, sizeof(seen.peer), "%s", ctl_req_peer(rq));
	pthread_cond_broadcast(&seen.cond);
	pthread_mutex_unlock(&seen.lock);
}

/* Waits (at most 5 s) for the handlers to have been called `n` times in all. */
static uint64_t wait_calls(unsigned n)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&seen.lock);
	while (seen.calls < n) {
		if (pthread_cond_timedwait(&seen.cond, &seen.lock, &until) == ETIMEDOUT) {
			pthread_mutex_unlock(&seen.lock);
			fail_msg("handler not called (%u calls, want %u)", seen.calls, n);
		}
	}
	uint64_t token = seen.token;
	pthread_mutex_unlock(&seen.lock);
	return token;
}

static unsigned calls(void)
{
	pthread_mutex_lock(&seen.lock);
	unsigned n = seen.calls;
	pthread_mutex_unlock(&seen.lock);
	return n;
}

static void reply_text(struct ctl_request *rq, unsigned code, const char *text)
{
	/* no cmocka assert here: this runs on the http thread; a lost answer shows as 504 */
	char *b = mem_strdup(text);
	ctl_reply(ctl_req_token(rq), code, "text/plain", b, b ? strlen(b) : 0);
}

/* POST /v1/echo: the body back, byte for byte. */
static void on_echo(struct ctl_request *rq, void *arg)
{
	(void)arg;
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	saw_call(rq);
	char *copy = len ? mem_alloc(len) : NULL;
	if (len)
		memcpy(copy, body, len);
	ctl_reply(ctl_req_token(rq), 200, "application/octet-stream", copy, len);
}

/* POST /v1/big: keeps a copy of the body for the test; answers its length. */
static void on_big(struct ctl_request *rq, void *arg)
{
	(void)arg;
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	pthread_mutex_lock(&seen.lock);
	free(seen.big);
	seen.big = malloc(len + 1);
	memcpy(seen.big, body, len + 1); /* the NUL after the body too */
	seen.big_len = len;
	pthread_mutex_unlock(&seen.lock);
	saw_call(rq);
	char msg[64];
	snprintf(msg, sizeof(msg), "{\"len\":%zu}", len);
	char *b = mem_strdup(msg);
	ctl_reply(ctl_req_token(rq), 200, NULL, b, strlen(b));
}

static void *reply_later(void *arg)
{
	uint64_t token = (uint64_t)(uintptr_t)arg;
	struct timespec ts = {.tv_nsec = 50 * 1000 * 1000};
	nanosleep(&ts, NULL);
	char *b = mem_strdup("{\"later\":true}");
	int rc = ctl_reply(token, 202, NULL, b, strlen(b));
	return (void *)(intptr_t)rc;
}

/* POST /v1/later: another thread answers 50 ms later. */
static void on_later(struct ctl_request *rq, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&seen.lock);
	seen.thread_started = pthread_create(&seen.thread, NULL, reply_later,
	                                     (void *)(uintptr_t)ctl_req_token(rq)) == 0;
	pthread_mutex_unlock(&seen.lock);
	saw_call(rq);
}

static int join_later(void)
{
	pthread_mutex_lock(&seen.lock);
	int started = seen.thread_started;
	seen.thread_started = 0;
	pthread_mutex_unlock(&seen.lock);
	assert_true(started);
	void *rc;
	assert_int_equal(pthread_join(seen.thread, &rc), 0);
	return (int)(intptr_t)rc;
}

/* GET|POST /v1/never: never answers (the test answers, or the timeout does). */
static void on_never(struct ctl_request *rq, void *arg)
{
	(void)arg;
	saw_call(rq);
}

static void on_ok(struct ctl_request *rq, void *arg)
{
	(void)arg;
	saw_call(rq);
	reply_text(rq, 200, "ok");
}

/* GET /v1/items/...: the path back. */
static void on_items(struct ctl_request *rq, void *arg)
{
	(void)arg;
	saw_call(rq);
	reply_text(rq, 200, ctl_req_path(rq));
}

/* GET /v1/headers: what ctl_req_header returns. */
static void on_headers(struct ctl_request *rq, void *arg)
{
	(void)arg;
	char small[4];
	pthread_mutex_lock(&seen.lock);
#define H(name, dst)                                                                               \
	do {                                                                                       \
		if (!ctl_req_header(rq, name, dst, sizeof(dst)))                                   \
			snprintf(dst, sizeof(dst), "(null)");                                      \
	} while (0)
	H("x-vapi-secret", seen.secret);
	H("authorization", seen.auth);
	H("content-type", seen.ctype);
	H("user-agent", seen.agent);
	H("host", seen.host);
	H("accept", seen.accept);
#undef H
	char buf[64];
	seen.missing_null = ctl_req_header(rq, "x-not-there", buf, sizeof(buf)) == NULL;
	seen.small_null = ctl_req_header(rq, "x-vapi-secret", small, sizeof(small)) == NULL &&
	                  ctl_req_header(rq, "user-agent", small, sizeof(small)) == NULL;
	pthread_mutex_unlock(&seen.lock);
	saw_call(rq);
	reply_text(rq, 200, "ok");
}

/* GET /v1/error: an error with a field and text that needs escaping. */
static void on_error(struct ctl_request *rq, void *arg)
{
	(void)arg;
	saw_call(rq);
	ctl_reply_error(ctl_req_token(rq), 422, "invalid_field",
	                "bad \"to\"\\ n\xc3\xbamero\n\x01 \xff", "to");
}

/* GET /v1/code/<n>: answers status n with no body; a second reply is refused. */
static void on_code(struct ctl_request *rq, void *arg)
{
	(void)arg;
	unsigned code = (unsigned)atoi(ctl_req_path(rq) + strlen("/v1/code/"));
	saw_call(rq);
	int rc1 = ctl_reply(ctl_req_token(rq), code, NULL, NULL, 0);
	int rc2 = ctl_reply(ctl_req_token(rq), 200, NULL, mem_strdup("x"), 1);
	pthread_mutex_lock(&seen.lock);
	seen.twice_rc = rc2;
	if (rc1 && rc1 != -EINVAL)
		seen.twice_rc = 1;
	pthread_mutex_unlock(&seen.lock);
}

static const char *const api_keys[] = {"k-one", "", "secret-two", NULL};

static void add_routes(void)
{
	assert_int_equal(ctl_route_add("POST", "/v1/echo", 0, 4096, 0, on_echo, NULL), 0);
	assert_int_equal(ctl_route_add("POST", "/v1/big", 0, 2u << 20, 0, on_big, NULL), 0);
	assert_int_equal(ctl_route_add("POST", "/v1/later", 0, 1024, 5000, on_later, NULL), 0);
	assert_int_equal(ctl_route_add("POST", "/v1/never", 0, 1024, 200, on_never, NULL), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/never", 0, 0, 200, on_never, NULL), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/wait", 0, 0, 10000, on_never, NULL), 0);
	assert_int_equal(ctl_route_add("POST", "/v1/wait", 0, 4096, 10000, on_never, NULL), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/secure", CTL_AUTH_API, 0, 0, on_ok, NULL), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/things", 0, 0, 0, on_ok, NULL), 0);
	assert_int_equal(ctl_route_add("POST", "/v1/things", 0, 64, 0, on_ok, NULL), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/items/", 0, 0, 0, on_items, NULL), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/headers", 0, 0, 0, on_headers, NULL), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/error", 0, 0, 0, on_error, NULL), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/code/", 0, 0, 0, on_code, NULL), 0);
}

static int start(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	pthread_mutex_lock(&seen.lock);
	seen.calls = 0;
	seen.token = 0;
	pthread_mutex_unlock(&seen.lock);
	add_routes();
	struct ctl_config cfg = {.address = "127.0.0.1", .port = free_port(), .api_keys = api_keys};
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
	pthread_mutex_lock(&seen.lock);
	free(seen.big);
	seen.big = NULL;
	pthread_mutex_unlock(&seen.lock);
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

static int leak_setup(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	return 0;
}

static int leak_teardown(void **state)
{
	(void)state;
	ctl_close();
	metric_registry_close();
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

/* ---- the server's own routes --------------------------------------------------------- */

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
	assert_non_null(strstr(resp.body, "vacs_http_requests_total{code=\"504\"} 0\n"));
	assert_non_null(strstr(resp.body, "vacs_http_requests_total{code=\"other\"} 0\n"));
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
	expect_error_json("not_found", NULL);
	json_t *j = json_loads(resp.body, 0, NULL);
	const char *msg =
	    json_string_value(json_object_get(json_object_get(j, "error"), "message"));
	assert_non_null(msg);
	assert_non_null(strstr(msg, "/nope"));
	json_decref(j);
	assert_int_equal(requests_with(404), before + 1);

	/* a path that needs escaping still gives valid JSON */
	request("GET", "/a%22b\\c%0a%ff");
	assert_int_equal(resp.status, 404);
	expect_error_json("not_found", NULL);
	/* unknown paths are 404 whatever the method */
	request("POST", "/nope");
	assert_int_equal(resp.status, 404);
	/* a prefix route needs its '/': /v1/itemsx is not under /v1/items/ */
	request("GET", "/v1/itemsx");
	assert_int_equal(resp.status, 404);
	request("GET", "/v1/items");
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
		expect_error_json("method_not_allowed", NULL);
	}
	/* Allow lists every method registered for the path */
	request("DELETE", "/v1/things");
	assert_int_equal(resp.status, 405);
	expect_header("Allow", "GET, POST");
	expect_error_json("method_not_allowed", NULL);
	request("PATCH", "/v1/echo");
	assert_int_equal(resp.status, 405);
	expect_header("Allow", "POST");
	assert_int_equal(requests_with(405), before + 6);
	assert_int_equal(calls(), 0);
}

/* HTTP/1.1 keep-alive: two requests on one connection. */
static void test_http_keep_alive(void **state)
{
	(void)state;
	int fd = connect_to(ctl_bound_port());
	for (int i = 0; i < 2; i++) {
		send_all(fd, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
		read_response(fd);
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

/* ---- routes ----------------------------------------------------------------------------- */

static void dummy(struct ctl_request *rq, void *arg)
{
	(void)rq;
	(void)arg;
}

static void test_http_route_add_errors(void **state)
{
	(void)state;
	assert_int_equal(ctl_route_add("GET", "/v1/a", 0, 0, 0, dummy, NULL), 0);
	assert_int_equal(ctl_route_add("POST", "/v1/a", 0, 10, 0, dummy, NULL), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/a", 0, 0, 0, dummy, NULL), -EEXIST);
	assert_int_equal(ctl_route_add("GET", "/healthz", 0, 0, 0, dummy, NULL), -EEXIST);
	assert_int_equal(ctl_route_add("get", "/v1/b", 0, 0, 0, dummy, NULL), -EINVAL);
	assert_int_equal(ctl_route_add("BREW", "/v1/b", 0, 0, 0, dummy, NULL), -EINVAL);
	assert_int_equal(ctl_route_add(NULL, "/v1/b", 0, 0, 0, dummy, NULL), -EINVAL);
	assert_int_equal(ctl_route_add("GET", "v1/b", 0, 0, 0, dummy, NULL), -EINVAL);
	assert_int_equal(ctl_route_add("GET", NULL, 0, 0, 0, dummy, NULL), -EINVAL);
	assert_int_equal(ctl_route_add("GET", "/v1/b", 0, 0, 0, NULL, NULL), -EINVAL);
	assert_int_equal(ctl_route_add("GET", "/v1/b", 1u << 7, 0, 0, dummy, NULL), -EINVAL);
	char longp[300];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(ctl_route_add("GET", longp, 0, 0, 0, dummy, NULL), -EINVAL);
	int rc = 0, added = 0;
	for (int i = 0; i < 1000 && rc == 0; i++) {
		char p[32];
		snprintf(p, sizeof(p), "/v1/fill/%d", i);
		rc = ctl_route_add("GET", p, 0, 0, 0, dummy, NULL);
		added += rc == 0;
	}
	assert_int_equal(rc, -ENOSPC);
	assert_true(added > 10);
	ctl_close(); /* forgets the routes */
	assert_int_equal(ctl_route_add("GET", "/v1/a", 0, 0, 0, dummy, NULL), 0);
	/* no routes once the server runs */
	struct ctl_config cfg = {.address = "127.0.0.1", .port = free_port()};
	assert_int_equal(ctl_init(&cfg), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/late", 0, 0, 0, dummy, NULL), -EINVAL);
	ctl_close();
}

/* The handler gets the exact body, NUL bytes included, and what it answers arrives. */
static void test_http_post_body(void **state)
{
	(void)state;
	static const char body[] = "a\0b\0\xff\r\n\r\nc";
	int fd = request11("POST", "/v1/echo?x=1", "Content-Type: application/octet-stream\r\n",
	                   body, sizeof(body) - 1);
	close(fd);
	assert_int_equal(resp.status, 200);
	expect_header("Content-Type", "application/octet-stream");
	assert_int_equal(resp.body_len, sizeof(body) - 1);
	assert_memory_equal(resp.body, body, sizeof(body) - 1);
	wait_calls(1);
	pthread_mutex_lock(&seen.lock);
	assert_string_equal(seen.method, "POST");
	assert_string_equal(seen.path, "/v1/echo");
	assert_string_equal(seen.peer, "127.0.0.1");
	pthread_mutex_unlock(&seen.lock);

	/* Content-Length: 0 runs the handler with "" */
	fd = request11("POST", "/v1/echo", NULL, NULL, 0);
	close(fd);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 0);
}

/* 1 MB sent in several pieces arrives whole and exact. */
static void test_http_post_large_body(void **state)
{
	(void)state;
	size_t n = 1u << 20;
	unsigned char *body = malloc(n);
	assert_non_null(body);
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		body[i] = (unsigned char)x;
	}
	body[10] = 0;
	int fd = connect_to(ctl_bound_port());
	char req[256];
	snprintf(req, sizeof(req),
	         "POST /v1/big HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
	send_all(fd, req);
	for (size_t off = 0; off < n; off += 65536)
		send_bytes(fd, body + off, n - off < 65536 ? n - off : 65536);
	read_response(fd);
	close(fd);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "{\"len\":1048576}");
	pthread_mutex_lock(&seen.lock);
	assert_int_equal(seen.big_len, n);
	assert_memory_equal(seen.big, body, n);
	assert_int_equal(seen.big[n], 0); /* NUL-terminated */
	pthread_mutex_unlock(&seen.lock);
	free(body);
}

/* A prefix route gets every path under it, query removed. */
static void test_http_prefix_route(void **state)
{
	(void)state;
	request("GET", "/v1/items/abc/def?q=1");
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "/v1/items/abc/def");
	request("GET", "/v1/items/");
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "/v1/items/");
}

/* Content-Length over max_body: 413 without reading, and the connection closes. */
static void test_http_too_large(void **state)
{
	(void)state;
	int64_t before = requests_with(413);
	int fd = connect_to(ctl_bound_port());
	send_all(fd, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
	read_response(fd);
	assert_int_equal(resp.status, 413);
	expect_header("Connection", "close");
	expect_error_json("payload_too_large", NULL);
	expect_eof(fd);
	close(fd);

	/* the client sends the body anyway: the answer still arrives, then the close */
	char *big = calloc(1, 200000);
	assert_non_null(big);
	fd = connect_to(ctl_bound_port());
	send_all(fd, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n");
	send_bytes(fd, big, 200000);
	read_response(fd);
	assert_int_equal(resp.status, 413);
	expect_eof(fd);
	close(fd);
	free(big);

	/* with Expect: 100-continue there is no interim answer, only the 413 */
	fd = connect_to(ctl_bound_port());
	send_all(fd, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
	             "Expect: 100-continue\r\n\r\n");
	read_response(fd);
	assert_int_equal(resp.status, 413);
	expect_eof(fd);
	close(fd);

	assert_int_equal(requests_with(413), before + 3);
	assert_int_equal(calls(), 0);
}

/* POST without Content-Length, or chunked: 411, and the connection closes. */
static void test_http_length_required(void **state)
{
	(void)state;
	int64_t before = requests_with(411);
	int fd = connect_to(ctl_bound_port());
	send_all(fd, "POST /v1/echo HTTP/1.1\r\nHost: x\r\n\r\n");
	read_response(fd);
	assert_int_equal(resp.status, 411);
	expect_error_json("length_required", "content-length");
	expect_eof(fd);
	close(fd);

	fd = connect_to(ctl_bound_port());
	send_all(fd, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	             "5\r\nhello\r\n0\r\n\r\n");
	read_response(fd);
	assert_int_equal(resp.status, 411);
	expect_eof(fd);
	close(fd);

	/* a Content-Length that is not a number: 400 */
	fd = connect_to(ctl_bound_port());
	send_all(fd, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello");
	read_response(fd);
	assert_int_equal(resp.status, 400);
	expect_error_json("bad_request", "content-length");
	close(fd);

	assert_int_equal(requests_with(411), before + 2);
	assert_int_equal(calls(), 0);
}

static void test_http_auth(void **state)
{
	(void)state;
	int64_t before = requests_with(401);
	static const char *const bad[] = {
	    NULL,
	    "Authorization: Bearer wrong\r\n",
	    "Authorization: Bearer secret-tw\r\n",
	    "Authorization: Bearer secret-two-and-more\r\n",
	    "Authorization: Basic secret-two\r\n",
	    "Authorization: Bearer \r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = request11("GET", "/v1/secure", bad[i], NULL, 0);
		assert_int_equal(resp.status, 401);
		expect_header("WWW-Authenticate", "Bearer");
		expect_error_json("unauthorized", "authorization");
		/* keep-alive survives a 401 without a body */
		send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
		read_response(fd);
		assert_int_equal(resp.status, 200);
		close(fd);
	}
	assert_int_equal(requests_with(401), before + 6);
	assert_int_equal(calls(), 0);

	int fd = request11("GET", "/v1/secure", "Authorization: Bearer secret-two\r\n", NULL, 0);
	close(fd);
	assert_int_equal(resp.status, 200);
	fd = request11("GET", "/v1/secure", "Authorization: bearer k-one\r\n", NULL, 0);
	close(fd);
	assert_int_equal(resp.status, 200);
	assert_int_equal(calls(), 2);
}

/* Without keys, every CTL_AUTH_API route answers 401. */
static void test_http_auth_no_keys(void **state)
{
	(void)state;
	ctl_close();
	add_routes();
	struct ctl_config cfg = {.address = "127.0.0.1", .port = free_port()};
	assert_int_equal(ctl_init(&cfg), 0);
	int fd = request11("GET", "/v1/secure", "Authorization: Bearer \r\n", NULL, 0);
	close(fd);
	assert_int_equal(resp.status, 401);
	fd = request11("GET", "/v1/secure", "Authorization: Bearer k-one\r\n", NULL, 0);
	close(fd);
	assert_int_equal(resp.status, 401);
}

/* A handler that hands the token to another thread: that thread's answer arrives, and
 * keep-alive goes on after it. */
static void test_http_reply_from_thread(void **state)
{
	(void)state;
	int fd = request11("POST", "/v1/later", NULL, "x", 1);
	assert_int_equal(resp.status, 202);
	assert_string_equal(resp.body, "{\"later\":true}");
	expect_header("Content-Type", "application/json");
	assert_int_equal(join_later(), 0);
	send_all(fd, "POST /v1/later HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nyz");
	read_response(fd);
	assert_int_equal(resp.status, 202);
	assert_int_equal(join_later(), 0);
	close(fd);
}

/* A handler that never answers: 504 after the route's timeout; a late reply is refused. */
static void test_http_timeout(void **state)
{
	(void)state;
	int64_t before = requests_with(504);
	uint64_t t0 = now_ms();
	int fd = request11("POST", "/v1/never", NULL, "abc", 3);
	uint64_t took = now_ms() - t0;
	assert_int_equal(resp.status, 504);
	expect_error_json("timeout", NULL);
	assert_true(took >= 190);
	assert_true(took < 3000);
	uint64_t token = wait_calls(1);
	char *late = mem_strdup("{}");
	assert_int_equal(ctl_reply(token, 200, NULL, late, 2), -ENOENT);
	/* the connection stays usable */
	send_all(fd, "GET /v1/never HTTP/1.1\r\nHost: x\r\n\r\n");
	read_response(fd);
	assert_int_equal(resp.status, 504);
	close(fd);
	assert_int_equal(requests_with(504), before + 2);
}

/* The client leaves while its answer is pending: the request is dropped, the late reply
 * gets -ENOENT and frees its body (the teardown checks nothing leaked). */
static void test_http_client_gone(void **state)
{
	(void)state;
	int64_t gone = metric_lookup("vacs_http_abandoned_total");
	/* a request with a body: lws reads the socket and sees the close */
	int fd = connect_to(ctl_bound_port());
	send_all(fd, "POST /v1/wait HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody");
	uint64_t token = wait_calls(1);
	close(fd);
	wait_abandoned(gone + 1);
	assert_int_equal(ctl_reply(token, 200, NULL, mem_strdup("late"), 4), -ENOENT);
	assert_int_equal(ctl_reply_error(token, 500, "x", "y", NULL), -ENOENT);

	/* a bodiless request: the server must look at the socket itself */
	fd = connect_to(ctl_bound_port());
	send_all(fd, "GET /v1/wait HTTP/1.1\r\nHost: x\r\n\r\n");
	token = wait_calls(2);
	close(fd);
	wait_abandoned(gone + 2);
	assert_int_equal(ctl_reply(token, 200, NULL, mem_strdup("late"), 4), -ENOENT);

	/* the client leaves mid-body: the partial body (the one block allocated) is freed */
	long live = mem_live_blocks();
	fd = connect_to(ctl_bound_port());
	send_all(fd, "POST /v1/wait HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc");
	uint64_t until = now_ms() + 5000;
	while (mem_live_blocks() == live) {
		assert_true(now_ms() < until);
		struct timespec ts = {.tv_nsec = 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	close(fd);
	wait_abandoned(gone + 3);
	assert_int_equal(calls(), 2);
}

/* ctl_close drops the requests still waiting; replies after it are refused. */
static void test_http_close_pending(void **state)
{
	(void)state;
	int fd = connect_to(ctl_bound_port());
	send_all(fd, "POST /v1/wait HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody");
	uint64_t token = wait_calls(1);
	ctl_close();
	assert_int_equal(ctl_reply(token, 200, NULL, mem_strdup("late"), 4), -ENOENT);
	close(fd);
}

/* Expect: 100-continue gets the interim answer at once, then the real one. */
static void test_http_expect_continue(void **state)
{
	(void)state;
	int fd = connect_to(ctl_bound_port());
	send_all(fd, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	             "Expect: 100-continue\r\n\r\n");
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 500), 1); /* curl would wait 1 s */
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	char buf[64];
	size_t n = 0;
	while (n < sizeof(cont) - 1) {
		ssize_t r = recv(fd, buf + n, sizeof(cont) - 1 - n, 0);
		assert_true(r > 0);
		n += (size_t)r;
	}
	assert_memory_equal(buf, cont, sizeof(cont) - 1);
	send_all(fd, "hello");
	read_response(fd);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "hello");
	close(fd);
}

/* Answered requests keep the connection: bodies, deferred answers and errors in a row. */
static void test_http_keep_alive_routes(void **state)
{
	(void)state;
	int fd = request11("POST", "/v1/echo", NULL, "one", 3);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "one");
	send_all(fd, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo");
	read_response(fd);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "two");
	send_all(fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
	read_response(fd);
	assert_int_equal(resp.status, 404);
	send_all(fd, "POST /v1/later HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz");
	read_response(fd);
	assert_int_equal(resp.status, 202);
	assert_int_equal(join_later(), 0);
	send_all(fd, "GET /v1/code/204 HTTP/1.1\r\nHost: x\r\n\r\n");
	read_response(fd);
	assert_int_equal(resp.status, 204);
	assert_int_equal(resp.body_len, 0);
	send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
	read_response(fd);
	assert_int_equal(resp.status, 200);
	close(fd);
}

static void test_http_req_header(void **state)
{
	(void)state;
	int fd = request11("GET", "/v1/headers",
	                   "X-Vapi-Secret: s3cr3t value\r\n"
	                   "Authorization: Bearer abc.def\r\n"
	                   "Content-Type: application/json\r\n"
	                   "User-Agent: test_http/1\r\n"
	                   "Accept: */*\r\n",
	                   NULL, 0);
	close(fd);
	assert_int_equal(resp.status, 200);
	pthread_mutex_lock(&seen.lock);
	assert_string_equal(seen.secret, "s3cr3t value");
	assert_string_equal(seen.auth, "Bearer abc.def");
	assert_string_equal(seen.ctype, "application/json");
	assert_string_equal(seen.agent, "test_http/1");
	assert_string_equal(seen.host, "127.0.0.1");
	assert_string_equal(seen.accept, "*/*");
	assert_true(seen.missing_null);
	assert_true(seen.small_null);
	pthread_mutex_unlock(&seen.lock);

	/* a header block over lws's default 4096 bytes still gets an answer */
	char big[6200];
	memset(big, 'v', sizeof(big));
	memcpy(big, "X-Long: ", 8);
	memcpy(big + sizeof(big) - 3, "\r\n", 3);
	fd = request11("GET", "/v1/headers", big, NULL, 0);
	close(fd);
	assert_int_equal(resp.status, 200);
}

/* ctl_reply_error: the error body with field, escaped; status codes without a series
 * count as "other"; bad arguments still answer. */
static void test_http_reply_error_and_codes(void **state)
{
	(void)state;
	request("GET", "/v1/error");
	assert_int_equal(resp.status, 422);
	expect_header("Content-Type", "application/json");
	expect_error_json("invalid_field", "to");
	json_t *j = json_loadb(resp.body, resp.body_len, 0, NULL);
	const char *msg =
	    json_string_value(json_object_get(json_object_get(j, "error"), "message"));
	assert_string_equal(msg, "bad \"to\"\\ n\xc3\xbamero\n\x01 \xef\xbf\xbd");
	json_decref(j);

	int64_t other = metric_lookup("vacs_http_requests_total{code=\"other\"}");
	request("GET", "/v1/code/299");
	assert_int_equal(resp.status, 299);
	assert_int_equal(metric_lookup("vacs_http_requests_total{code=\"other\"}"), other + 1);
	pthread_mutex_lock(&seen.lock);
	assert_int_equal(seen.twice_rc, -ENOENT); /* one answer per request */
	pthread_mutex_unlock(&seen.lock);

	int64_t e500 = requests_with(500);
	request("GET", "/v1/code/99"); /* not a final status: answered 500 */
	assert_int_equal(resp.status, 500);
	assert_int_equal(requests_with(500), e500 + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, start, stop)
	    T(test_http_healthz),
	    T(test_http_readyz),
	    T(test_http_metrics),
	    T(test_http_metrics_large),
	    T(test_http_not_found),
	    T(test_http_method_not_allowed),
	    T(test_http_keep_alive),
	    T(test_http_port_in_use),
	    cmocka_unit_test_setup_teardown(test_http_route_add_errors, leak_setup, leak_teardown),
	    T(test_http_post_body),
	    T(test_http_post_large_body),
	    T(test_http_prefix_route),
	    T(test_http_too_large),
	    T(test_http_length_required),
	    T(test_http_auth),
	    T(test_http_auth_no_keys),
	    T(test_http_reply_from_thread),
	    T(test_http_timeout),
	    T(test_http_client_gone),
	    T(test_http_close_pending),
	    T(test_http_expect_continue),
	    T(test_http_keep_alive_routes),
	    T(test_http_req_header),
	    T(test_http_reply_error_and_codes),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
