/* Unit tests of the out thread (control/outbound.c) against a small local HTTP server,
 * and of the S3 object key layout (control/uploader.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_alloc.h"

#include "control/outbound.h"
#include "control/uploader.h"
#include "core/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- a one-connection-at-a-time HTTP server: answers the Nth request with codes[N] --- */

static struct {
	int fd;
	uint16_t port;
	pthread_t thr;
	int codes[8];
	int n_codes;
	int hang; /* read the request and never answer */
	int requests;
	char last[4096];
	pthread_mutex_t lock;
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *srv_main(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept(srv.fd, NULL, NULL);
		if (c < 0)
			return NULL;
		char buf[4096];
		size_t got = 0;
		/* Headers, then Content-Length bytes of body. */
		for (;;) {
			ssize_t n = read(c, buf + got, sizeof(buf) - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
			buf[got] = '\0';
			char *end = strstr(buf, "\r\n\r\n");
			if (!end)
				continue;
			const char *cl = strcasestr(buf, "content-length:");
			size_t want = cl ? (size_t)atol(cl + 15) : 0;
			if (got >= (size_t)(end + 4 - buf) + want)
				break;
		}
		pthread_mutex_lock(&srv.lock);
		int k = srv.requests++;
		memcpy(srv.last, buf, got + 1);
		int code = srv.codes[k < srv.n_codes ? k : srv.n_codes - 1];
		int hang = srv.hang;
		pthread_mutex_unlock(&srv.lock);
		if (hang) {
			char tmp[64];
			while (read(c, tmp, sizeof(tmp)) > 0) {
			}
			close(c);
			continue;
		}
		char resp[128];
		int n = snprintf(
		    resp, sizeof(resp),
		    "HTTP/1.1 %d X\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", code);
		if (write(c, resp, (size_t)n) < 0) {
			/* the client left */
		}
		close(c);
	}
}

static void srv_start(const int *codes, int n)
{
	srv.fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(srv.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(srv.fd, 8), 0);
	socklen_t len = sizeof(a);
	getsockname(srv.fd, (struct sockaddr *)&a, &len);
	srv.port = ntohs(a.sin_port);
	memcpy(srv.codes, codes, sizeof(int) * (size_t)n);
	srv.n_codes = n;
	srv.requests = 0;
	srv.hang = 0;
	pthread_create(&srv.thr, NULL, srv_main, NULL);
}

static void srv_stop(void)
{
	shutdown(srv.fd, SHUT_RDWR);
	close(srv.fd);
	pthread_join(srv.thr, NULL);
}

/* ---- what the callbacks saw ---- */

struct result {
	long status[8];
	int err[8];
	char text[8][128];
	int n;
	int done; /* the test's request chain is over */
	int later_order[4];
	int n_later;
	int attempts_max;
	char body[64];
};

static struct result res;
static pthread_mutex_t res_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t res_cond = PTHREAD_COND_INITIALIZER;

static void wait_done(int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&res_lock);
	while (!res.done)
		if (pthread_cond_timedwait(&res_cond, &res_lock, &ts))
			break;
	pthread_mutex_unlock(&res_lock);
}

static void set_done(void)
{
	pthread_mutex_lock(&res_lock);
	res.done = 1;
	pthread_cond_signal(&res_cond);
	pthread_mutex_unlock(&res_lock);
}

struct req_spec {
	char url[128];
	int public_only;
	unsigned timeout_ms;
};
static struct req_spec spec;

static void send_one(void *arg);

static void on_done(void *arg, struct ctl_out *r, long status, int err, const char *text)
{
	(void)arg;
	pthread_mutex_lock(&res_lock);
	int i = res.n++;
	res.status[i] = status;
	res.err[i] = err;
	snprintf(res.text[i], sizeof(res.text[i]), "%s", text);
	size_t blen;
	const char *b = ctl_out_response(r, &blen);
	snprintf(res.body, sizeof(res.body), "%.*s", (int)blen, b);
	int again = !err && status >= 500 && res.n < res.attempts_max;
	pthread_mutex_unlock(&res_lock);
	if (again && !ctl_out_stopping() && ctl_out_send(r, on_done, NULL) == 0)
		return;
	ctl_out_destroy(r);
	set_done();
}

/* Out thread: builds and sends the request of `spec`. */
static void send_one(void *arg)
{
	(void)arg;
	struct ctl_out *r = ctl_out_create("POST", spec.url);
	assert_non_null(r);
	char *body = mem_strdup("{\"a\":1}");
	ctl_out_body(r, body, strlen(body));
	assert_int_equal(ctl_out_header(r, "X-Test: yes"), 0);
	ctl_out_public_only(r, spec.public_only);
	ctl_out_timeout(r, spec.timeout_ms ? spec.timeout_ms : 2000);
	if (ctl_out_send(r, on_done, NULL)) {
		ctl_out_destroy(r);
		set_done();
	}
}

static void run_request(const char *url, int public_only, int attempts)
{
	memset(&res, 0, sizeof(res));
	res.attempts_max = attempts;
	snprintf(spec.url, sizeof(spec.url), "%s", url);
	spec.public_only = public_only;
	assert_int_equal(ctl_out_run(send_one, NULL), 0);
	wait_done(5000);
	assert_true(res.done);
}

static long live_before;

static int start(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	return ctl_out_init(16);
}

static int stop(void **state)
{
	(void)state;
	ctl_out_close();
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

static void test_outbound_post_ok(void **state)
{
	(void)state;
	int codes[] = {200};
	srv_start(codes, 1);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook", srv.port);
	run_request(url, 0, 1);
	assert_int_equal(res.n, 1);
	assert_int_equal(res.err[0], 0);
	assert_int_equal(res.status[0], 200);
	assert_string_equal(res.body, "hello");
	pthread_mutex_lock(&srv.lock);
	assert_non_null(strstr(srv.last, "POST /hook HTTP/1.1"));
	assert_non_null(strstr(srv.last, "X-Test: yes"));
	assert_non_null(strstr(srv.last, "{\"a\":1}"));
	pthread_mutex_unlock(&srv.lock);
	srv_stop();
}

static void test_outbound_status_and_resend(void **state)
{
	(void)state;
	int codes[] = {500, 503, 201};
	srv_start(codes, 3);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", srv.port);
	run_request(url, 0, 5);
	assert_int_equal(res.n, 3);
	assert_int_equal(res.status[0], 500);
	assert_string_equal(res.text[0], "HTTP 500");
	assert_int_equal(res.status[1], 503);
	assert_int_equal(res.status[2], 201);
	assert_int_equal(srv.requests, 3);
	srv_stop();
}

static void test_outbound_refused(void **state)
{
	(void)state;
	int codes[] = {200};
	srv_start(codes, 1);
	uint16_t port = srv.port;
	srv_stop(); /* nothing listens there now */
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", port);
	run_request(url, 0, 1);
	assert_int_equal(res.n, 1);
	assert_int_equal(res.err[0], -ECONNREFUSED);
	assert_int_equal(res.status[0], 0);
}

static void test_outbound_private_guard(void **state)
{
	(void)state;
	int codes[] = {200};
	srv_start(codes, 1);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", srv.port);
	run_request(url, 1, 1);
	assert_int_equal(res.err[0], -EACCES);
	assert_non_null(strstr(res.text[0], "private address refused"));
	assert_int_equal(srv.requests, 0);
	srv_stop();
}

static void test_outbound_timeout(void **state)
{
	(void)state;
	int codes[] = {200};
	srv_start(codes, 1);
	srv.hang = 1;
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", srv.port);
	spec.timeout_ms = 300;
	run_request(url, 0, 1);
	spec.timeout_ms = 0;
	assert_int_equal(res.err[0], -ETIMEDOUT);
	ctl_out_close(); /* before the server: its connection is the client's to close */
	srv_stop();
}

/* Shutting down with a request in flight: its callback gets -ECANCELED, nothing leaks. */
static void test_outbound_close_cancels(void **state)
{
	(void)state;
	int codes[] = {200};
	srv_start(codes, 1);
	srv.hang = 1;
	memset(&res, 0, sizeof(res));
	res.attempts_max = 1;
	snprintf(spec.url, sizeof(spec.url), "http://127.0.0.1:%u/x", srv.port);
	spec.timeout_ms = 30000;
	assert_int_equal(ctl_out_run(send_one, NULL), 0);
	for (int i = 0; i < 200 && ctl_out_in_flight() == 0; i++)
		usleep(10000);
	assert_int_equal(ctl_out_in_flight(), 1u);
	ctl_out_close();
	spec.timeout_ms = 0;
	assert_true(res.done);
	assert_int_equal(res.err[0], -ECANCELED);
	assert_int_equal(ctl_out_in_flight(), 0u);
	assert_int_equal(ctl_out_run(send_one, NULL), -ENOTCONN);
	srv_stop();
}

static void later_fn(void *arg)
{
	int v = (int)(intptr_t)arg;
	pthread_mutex_lock(&res_lock);
	res.later_order[res.n_later++] = v;
	pthread_mutex_unlock(&res_lock);
	if (res.n_later == 3)
		set_done();
}

static void schedule(void *arg)
{
	(void)arg;
	ctl_out_later(later_fn, (void *)(intptr_t)3, 150);
	ctl_out_later(later_fn, (void *)(intptr_t)1, 10);
	ctl_out_later(later_fn, (void *)(intptr_t)2, 80);
}

static void test_outbound_later_in_order(void **state)
{
	(void)state;
	memset(&res, 0, sizeof(res));
	assert_int_equal(ctl_out_run(schedule, NULL), 0);
	wait_done(3000);
	assert_int_equal(res.n_later, 3);
	assert_int_equal(res.later_order[0], 1);
	assert_int_equal(res.later_order[1], 2);
	assert_int_equal(res.later_order[2], 3);
}

/* ---- S3 keys ---- */

static void test_outbound_s3_key(void **state)
{
	(void)state;
	long before = mem_live_blocks();
	char *k = ctl_s3_key("abc-123", "/var/spool/vacs/recordings/abc-123-17.wav",
	                     "2026-11-28T09:59:10.933Z");
	assert_string_equal(k, "recordings/2026/11/28/abc-123/abc-123-17.wav");
	mem_free(k);
	k = ctl_s3_key("1-1370@127.0.0.2", "x y+z.wav", "2026-01-02T00:00:00Z");
	assert_string_equal(k, "recordings/2026/01/02/1-1370_127.0.0.2/x_y_z.wav");
	mem_free(k);
	k = ctl_s3_key("../etc", "/a/..", "2026-01-02T00:00:00Z");
	assert_string_equal(k, "recordings/2026/01/02/_._etc/_.");
	mem_free(k);
	assert_null(ctl_s3_key("c", "/a/f.wav", "yesterday"));
	assert_null(ctl_s3_key("c", "/a/f.wav", "2026-1-02T"));
	assert_null(ctl_s3_key("c", "/a/", "2026-01-02T00:00:00Z"));
	assert_null(ctl_s3_key("", "/a/f.wav", "2026-01-02T00:00:00Z"));
	assert_null(ctl_s3_key(NULL, "/a/f.wav", "2026-01-02T00:00:00Z"));
	for (long n = 0; n < 4; n++) {
		mem_fail_after(n);
		k = ctl_s3_key("c", "/a/f.wav", "2026-01-02T00:00:00Z");
		mem_fail_after(-1);
		mem_free(k);
	}
	assert_int_equal(mem_live_blocks(), before);
}

/* The presigned-URL example of the S3 SigV4 documentation (query-string authentication). */
static void test_outbound_s3_presign(void **state)
{
	(void)state;
	long before = mem_live_blocks();
	static const char ak[] = "AKIAIOSFODNN7EXAMPLE",
	                  sk[] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
	char *u = ctl_s3_presign_url("https://s3.amazonaws.com", 0, "us-east-1", ak, sk,
	                             "examplebucket", "test.txt", 1369353600LL, 86400);
	assert_string_equal(
	    u, "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
	       "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
	       "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
	       "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
	mem_free(u);
	u = ctl_s3_presign_url("http://127.0.0.1:9000", 1, "us-east-1", ak, sk, "b",
	                       "recordings/2026/01/02/a_b/x y.wav", 1369353600LL, 300);
	assert_non_null(u);
	assert_true(
	    strncmp(u, "http://127.0.0.1:9000/b/recordings/2026/01/02/a_b/x%20y.wav?", 60) == 0);
	mem_free(u);
	assert_null(ctl_s3_presign_url("http://h", 1, "r", ak, sk, "b", "", 0, 300));
	assert_null(ctl_s3_presign_url("http://h", 1, "r", ak, sk, "b", "k", 0, 0));
	assert_null(ctl_s3_presign_url("http://h", 1, "r", ak, sk, "b", "k", 0, 604801));
	assert_null(ctl_s3_presign_url("http://", 1, "r", ak, sk, "b", "k", 0, 300));
	assert_null(ctl_s3_presign("b", "k", 300)); /* uploads off */
	for (long n = 0; n < 12; n++) {
		mem_fail_after(n);
		u = ctl_s3_presign_url("http://h", 1, "r", ak, sk, "b", "k", 0, 300);
		mem_fail_after(-1);
		mem_free(u);
	}
	assert_int_equal(mem_live_blocks(), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, start, stop)
	    T(test_outbound_post_ok),
	    T(test_outbound_status_and_resend),
	    T(test_outbound_refused),
	    T(test_outbound_private_guard),
	    T(test_outbound_timeout),
	    T(test_outbound_close_cancels),
	    T(test_outbound_later_in_order),
	    cmocka_unit_test(test_outbound_s3_key),
	    cmocka_unit_test(test_outbound_s3_presign),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
