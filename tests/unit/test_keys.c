/* Unit tests of control/keys.c and control/idem.c: key format, hash, Bearer parsing, scopes,
 * the bootstrap key, and Idempotency-Key replay through the HTTP server (memory only). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "control/control.h"
#include "control/keys.h"
#include "core/mem.h"
#include "core/metric.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static long live_before;

/* ---- pure helpers --------------------------------------------------------------------- */

static void test_keys_generate(void **state)
{
	(void)state;
	char a[CTL_KEY_LEN + 1], b[CTL_KEY_LEN + 1];
	assert_int_equal(ctl_key_generate(a), 0);
	assert_int_equal(ctl_key_generate(b), 0);
	assert_int_equal(strlen(a), 48);
	assert_memory_equal(a, "vacs_", 5);
	assert_int_equal(
	    strspn(a + 5, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
	assert_string_not_equal(a, b);
	/* the prefix shown in listings differs too (42 random bits) */
	assert_memory_not_equal(a, b, CTL_KEY_PREFIX_LEN);
}

static void test_keys_hash(void **state)
{
	(void)state;
	char hex[65];
	ctl_key_hash_hex("abc", 3, hex);
	assert_string_equal(hex,
	                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	ctl_key_hash_hex("", 0, hex);
	assert_string_equal(hex,
	                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	unsigned char h[CTL_KEY_HASH_LEN];
	ctl_key_hash("abc", 3, h);
	assert_int_equal(h[0], 0xba);
	assert_int_equal(h[31], 0xad);
}

static void test_keys_bearer(void **state)
{
	(void)state;
	size_t n = 0;
	const char *t = ctl_bearer_token("Bearer vacs_abc", &n);
	assert_non_null(t);
	assert_int_equal(n, 8);
	assert_memory_equal(t, "vacs_abc", 8);
	t = ctl_bearer_token("bearer   k1 \t", &n);
	assert_non_null(t);
	assert_int_equal(n, 2);
	assert_memory_equal(t, "k1", 2);
	assert_null(ctl_bearer_token("Basic abc", &n));
	assert_null(ctl_bearer_token("Bearer ", &n));
	assert_null(ctl_bearer_token("Bearer    ", &n));
	assert_null(ctl_bearer_token("Bearerabc", &n));
	assert_null(ctl_bearer_token(NULL, &n));
}

static void test_keys_scopes(void **state)
{
	(void)state;
	unsigned read = ctl_scope_bit("read"), calls = ctl_scope_bit("calls:write"),
	         camp = ctl_scope_bit("campaigns"), admin = ctl_scope_bit("admin");
	assert_true(read && calls && camp && admin);
	assert_int_equal(read | calls | camp | admin, CTL_SCOPE_BITS);
	assert_int_equal(ctl_scope_bit("Read"), 0);
	assert_int_equal(ctl_scope_bit("calls"), 0);
	assert_int_equal(ctl_scope_bit(""), 0);
	assert_string_equal(ctl_scope_name(calls), "calls:write");
	assert_null(ctl_scope_name(1u << 20));

	/* any valid key on CTL_AUTH_API alone; the scope on the others; admin everywhere */
	assert_true(ctl_scope_allows(0, CTL_AUTH_API));
	assert_true(ctl_scope_allows(read, CTL_SCOPE_READ));
	assert_false(ctl_scope_allows(read, CTL_SCOPE_CALLS));
	assert_false(ctl_scope_allows(read | calls, CTL_SCOPE_ADMIN));
	assert_true(ctl_scope_allows(admin, CTL_SCOPE_READ));
	assert_true(ctl_scope_allows(admin, CTL_SCOPE_CAMPAIGNS | CTL_IDEMPOTENT));
	assert_false(ctl_scope_allows(read, CTL_SCOPE_READ | CTL_SCOPE_CALLS));
	assert_true(ctl_scope_allows(read | calls, CTL_SCOPE_READ | CTL_SCOPE_CALLS));
	assert_string_equal(ctl_scope_missing(read, CTL_SCOPE_ADMIN), "admin");
	assert_string_equal(ctl_scope_missing(read, CTL_SCOPE_READ | CTL_SCOPE_CAMPAIGNS),
	                    "campaigns");

	char msg[160];
	unsigned m = 0;
	json_t *j = json_pack("[s,s,s]", "read", "admin", "read");
	assert_int_equal(ctl_scopes_parse(j, &m, msg, sizeof(msg)), 0);
	assert_int_equal(m, read | admin);
	json_decref(j);
	j = json_pack("[s,s]", "read", "superuser");
	assert_int_equal(ctl_scopes_parse(j, &m, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "superuser"));
	json_decref(j);
	j = json_pack("[s,i]", "read", 3);
	assert_int_equal(ctl_scopes_parse(j, &m, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "scopes[1]"));
	json_decref(j);
	j = json_array();
	assert_int_equal(ctl_scopes_parse(j, &m, msg, sizeof(msg)), -EINVAL);
	json_decref(j);
	j = json_string("read");
	assert_int_equal(ctl_scopes_parse(j, &m, msg, sizeof(msg)), -EINVAL);
	json_decref(j);
	assert_int_equal(ctl_scopes_parse(NULL, &m, msg, sizeof(msg)), -EINVAL);
}

/* The bootstrap keys: admin, prefix "bootstrap", id 0; anything else is unknown. */
static void test_keys_bootstrap(void **state)
{
	(void)state;
	static const char *const boot[] = {"", "boot-secret", "second", NULL};
	assert_int_equal(ctl_keys_start(boot), 0);
	struct ctl_key_who who;
	memset(&who, 0x55, sizeof(who));
	assert_int_equal(ctl_keys_check("boot-secret", 11, &who), CTL_KEY_OK);
	assert_string_equal(who.prefix, "bootstrap");
	assert_int_equal(who.id, 0);
	assert_int_equal(who.scopes, CTL_SCOPE_BITS);
	assert_int_equal(ctl_keys_check("second", 6, &who), CTL_KEY_OK);
	assert_int_equal(ctl_keys_check("boot-secre", 10, &who), CTL_KEY_UNKNOWN);
	assert_int_equal(ctl_keys_check("boot-secret!", 12, &who), CTL_KEY_UNKNOWN);
	assert_int_equal(ctl_keys_check("", 0, &who), CTL_KEY_UNKNOWN);
	ctl_close(); /* forgets the keys and the /v1/keys routes it registered */
	assert_int_equal(ctl_keys_check("boot-secret", 11, &who), CTL_KEY_UNKNOWN);
}

/* ---- through the server --------------------------------------------------------------- */

static struct {
	pthread_mutex_t lock;
	int made, failed;
	uint64_t slow_token;
	char who[32];
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct resp {
	int status;
	char head[4096];
	char *body;
	size_t body_len;
	char raw[65536];
};
static struct resp resp;

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

/* Sends one HTTP/1.0 request on a new connection; returns the connection. */
static int send_req(const char *method, const char *path, const char *headers, const char *body)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(ctl_bound_port()),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	char req[4096];
	int n = snprintf(req, sizeof(req),
	                 "%s %s HTTP/1.0\r\nHost: x\r\nContent-Length: %zu\r\n%s\r\n%s", method,
	                 path, strlen(body), headers, body);
	assert_true(n > 0 && (size_t)n < sizeof(req));
	assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
	return fd;
}

/* Reads the answer up to EOF and closes fd. */
static void read_resp(int fd)
{
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
	resp.raw[n] = '\0';
	char *sep = strstr(resp.raw, "\r\n\r\n");
	if (!sep)
		fail_msg("no header end: \"%s\"", resp.raw);
	size_t hl = (size_t)(sep - resp.raw);
	assert_true(hl < sizeof(resp.head));
	memcpy(resp.head, resp.raw, hl);
	resp.head[hl] = '\0';
	resp.body = sep + 4;
	resp.body_len = n - hl - 4;
	assert_int_equal(sscanf(resp.raw, "HTTP/1.%*d %d", &resp.status), 1);
}

static void req(const char *method, const char *path, const char *headers, const char *body)
{
	read_resp(send_req(method, path, headers, body));
}

static int replayed(void)
{
	return strcasestr(resp.head, "\r\nIdempotent-Replayed: true") != NULL;
}

static void expect_error(unsigned status, const char *code, const char *field)
{
	if (resp.status != (int)status)
		fail_msg("status %d, want %u: %s", resp.status, status, resp.body);
	json_t *j = json_loadb(resp.body, resp.body_len, 0, NULL);
	json_t *e = json_object_get(j, "error");
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "code")), code);
	if (field)
		assert_string_equal(json_string_value(json_object_get(e, "field")), field);
	json_decref(j);
}

/* POST /v1/make: 201 {"n":<how many times the handler ran>,"who":"<key prefix>"}. */
static void on_make(struct ctl_request *rq, void *arg)
{
	(void)arg;
	char body[128];
	pthread_mutex_lock(&seen.lock);
	int n = ++seen.made;
	snprintf(seen.who, sizeof(seen.who), "%s", ctl_req_key_prefix(rq));
	pthread_mutex_unlock(&seen.lock);
	int len = snprintf(body, sizeof(body), "{\"n\":%d,\"who\":\"%s\",\"admin\":%d}", n,
	                   ctl_req_key_prefix(rq), ctl_req_has_scope(rq, CTL_SCOPE_ADMIN));
	ctl_reply(ctl_req_token(rq), 201, NULL, mem_strdup(body), (size_t)len);
}

/* POST /v1/fail: 503 the first time, then 200. */
static void on_fail(struct ctl_request *rq, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&seen.lock);
	int n = ++seen.failed;
	pthread_mutex_unlock(&seen.lock);
	if (n == 1)
		ctl_reply_error(ctl_req_token(rq), 503, "busy", "try again", NULL);
	else
		ctl_reply(ctl_req_token(rq), 200, NULL, mem_strdup("{\"ok\":true}"), 11);
}

/* POST /v1/slow: answered later by the test. */
static void on_slow(struct ctl_request *rq, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&seen.lock);
	seen.slow_token = ctl_req_token(rq);
	pthread_mutex_unlock(&seen.lock);
}

static void on_open(struct ctl_request *rq, void *arg)
{
	(void)arg;
	char body[64];
	int len = snprintf(body, sizeof(body), "{\"who\":\"%s\",\"id\":%lld}",
	                   ctl_req_key_prefix(rq), (long long)ctl_req_key_id(rq));
	ctl_reply(ctl_req_token(rq), 200, NULL, mem_strdup(body), (size_t)len);
}

static const char *const api_keys[] = {"boot-secret", NULL};
#define AUTH "Authorization: Bearer boot-secret\r\n"

static int start(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	pthread_mutex_lock(&seen.lock);
	seen.made = seen.failed = 0;
	seen.slow_token = 0;
	pthread_mutex_unlock(&seen.lock);
	assert_int_equal(ctl_route_add("POST", "/v1/make", CTL_SCOPE_CALLS | CTL_IDEMPOTENT, 1024,
	                               0, on_make, NULL),
	                 0);
	assert_int_equal(ctl_route_add("POST", "/v1/other", CTL_SCOPE_CALLS | CTL_IDEMPOTENT, 1024,
	                               0, on_make, NULL),
	                 0);
	assert_int_equal(ctl_route_add("POST", "/v1/fail", CTL_AUTH_API | CTL_IDEMPOTENT, 1024, 0,
	                               on_fail, NULL),
	                 0);
	assert_int_equal(ctl_route_add("POST", "/v1/slow", CTL_AUTH_API | CTL_IDEMPOTENT, 1024,
	                               5000, on_slow, NULL),
	                 0);
	assert_int_equal(ctl_route_add("GET", "/v1/open", 0, 0, 0, on_open, NULL), 0);
	assert_int_equal(ctl_route_add("GET", "/v1/admin", CTL_SCOPE_ADMIN, 0, 0, on_open, NULL),
	                 0);
	struct ctl_config cfg = {.address = "127.0.0.1", .port = free_port(), .api_keys = api_keys};
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

/* 401 without or with a wrong key; the bootstrap key is admin; handlers see who called. */
static void test_keys_auth(void **state)
{
	(void)state;
	req("GET", "/v1/admin", "", "");
	expect_error(401, "unauthorized", "authorization");
	req("GET", "/v1/admin", "Authorization: Bearer vacs_wrong\r\n", "");
	expect_error(401, "unauthorized", "authorization");
	req("GET", "/v1/admin", AUTH, "");
	assert_int_equal(resp.status, 200);
	assert_non_null(strstr(resp.body, "\"who\":\"bootstrap\",\"id\":0"));
	req("GET", "/v1/open", "", "");
	assert_int_equal(resp.status, 200);
	assert_non_null(strstr(resp.body, "\"who\":\"\""));
	/* without PostgreSQL the key routes say so (after the auth and the checks) */
	req("POST", "/v1/keys", AUTH, "{\"name\":\"x\",\"scopes\":[\"read\"]}");
	expect_error(503, "store_unavailable", NULL);
	req("POST", "/v1/keys", AUTH, "{\"name\":\"x\",\"scopes\":[\"root\"]}");
	expect_error(400, "invalid_field", "scopes");
	req("POST", "/v1/keys", AUTH, "{\"scopes\":[\"read\"]}");
	expect_error(400, "missing_field", "name");
	req("GET", "/v1/keys", "", "");
	expect_error(401, "unauthorized", "authorization");
}

static void test_keys_idempotent_replay(void **state)
{
	(void)state;
	req("POST", "/v1/make", AUTH "Idempotency-Key: k-1\r\n", "{}");
	assert_int_equal(resp.status, 201);
	assert_false(replayed());
	char first[256];
	snprintf(first, sizeof(first), "%.*s", (int)resp.body_len, resp.body);
	assert_string_equal(first, "{\"n\":1,\"who\":\"bootstrap\",\"admin\":1}");

	req("POST", "/v1/make", AUTH "Idempotency-Key: k-1\r\n", "{}");
	assert_int_equal(resp.status, 201);
	assert_true(replayed());
	assert_int_equal(resp.body_len, strlen(first));
	assert_memory_equal(resp.body, first, resp.body_len);
	assert_int_equal(seen.made, 1);

	/* another key runs the handler; no key runs it every time */
	req("POST", "/v1/make", AUTH "Idempotency-Key: k-2\r\n", "{}");
	assert_int_equal(resp.status, 201);
	assert_false(replayed());
	req("POST", "/v1/make", AUTH, "{}");
	req("POST", "/v1/make", AUTH, "{}");
	assert_int_equal(seen.made, 4);

	/* the same key on another path: 422 */
	req("POST", "/v1/other", AUTH "Idempotency-Key: k-1\r\n", "{}");
	expect_error(422, "idempotency_key_reused", "Idempotency-Key");
	assert_int_equal(seen.made, 4);

	/* too long, empty, control characters: 400 naming the header */
	char hdr[600];
	snprintf(hdr, sizeof(hdr), AUTH "Idempotency-Key: %0256d\r\n", 7);
	req("POST", "/v1/make", hdr, "{}");
	expect_error(400, "invalid_header", "Idempotency-Key");
	snprintf(hdr, sizeof(hdr), AUTH "Idempotency-Key: %0255d\r\n", 7);
	req("POST", "/v1/make", hdr, "{}");
	assert_int_equal(resp.status, 201);
	req("POST", "/v1/make",
	    AUTH "Idempotency-Key: a\x01"
	         "b\r\n",
	    "{}");
	expect_error(400, "invalid_header", "Idempotency-Key");
	/* no replay across callers that are not allowed in: the 401 comes first */
	req("POST", "/v1/make", "Idempotency-Key: k-1\r\n", "{}");
	expect_error(401, "unauthorized", "authorization");
}

/* 5xx answers are not kept: the repeat runs the handler again, and that answer is kept. */
static void test_keys_idempotent_5xx(void **state)
{
	(void)state;
	req("POST", "/v1/fail", AUTH "Idempotency-Key: f\r\n", "");
	expect_error(503, "busy", NULL);
	req("POST", "/v1/fail", AUTH "Idempotency-Key: f\r\n", "");
	assert_int_equal(resp.status, 200);
	assert_false(replayed());
	req("POST", "/v1/fail", AUTH "Idempotency-Key: f\r\n", "");
	assert_int_equal(resp.status, 200);
	assert_true(replayed());
	assert_int_equal(seen.failed, 2);
}

/* A repeat while the first is being processed: 409; the first's answer is then replayed. */
static void test_keys_idempotent_in_progress(void **state)
{
	(void)state;
	int fd = send_req("POST", "/v1/slow", AUTH "Idempotency-Key: s\r\n", "");
	uint64_t token = 0;
	for (int i = 0; i < 500 && !token; i++) {
		pthread_mutex_lock(&seen.lock);
		token = seen.slow_token;
		pthread_mutex_unlock(&seen.lock);
		if (!token)
			usleep(2000);
	}
	assert_true(token != 0);
	req("POST", "/v1/slow", AUTH "Idempotency-Key: s\r\n", "");
	expect_error(409, "idempotency_key_in_progress", "Idempotency-Key");
	assert_int_equal(ctl_reply(token, 202, "text/plain", mem_strdup("later\n"), 6), 0);
	read_resp(fd);
	assert_int_equal(resp.status, 202);
	assert_false(replayed());
	req("POST", "/v1/slow", AUTH "Idempotency-Key: s\r\n", "");
	assert_int_equal(resp.status, 202);
	assert_true(replayed());
	assert_non_null(strstr(resp.head, "text/plain"));
	assert_int_equal(resp.body_len, 6);
	assert_memory_equal(resp.body, "later\n", 6);
}

/* A client that leaves before the answer frees the key: the repeat runs the handler. */
static void test_keys_idempotent_abandoned(void **state)
{
	(void)state;
	int fd = send_req("POST", "/v1/slow", AUTH "Idempotency-Key: gone\r\n", "");
	uint64_t token = 0;
	for (int i = 0; i < 500 && !token; i++) {
		pthread_mutex_lock(&seen.lock);
		token = seen.slow_token;
		pthread_mutex_unlock(&seen.lock);
		if (!token)
			usleep(2000);
	}
	assert_true(token != 0);
	close(fd);
	/* the server notices within its sweep; then the key is free again */
	int status = 409;
	for (int i = 0; i < 200 && status == 409; i++) {
		pthread_mutex_lock(&seen.lock);
		seen.slow_token = 0;
		pthread_mutex_unlock(&seen.lock);
		fd = send_req("POST", "/v1/slow", AUTH "Idempotency-Key: gone\r\n", "");
		usleep(20000);
		pthread_mutex_lock(&seen.lock);
		token = seen.slow_token;
		pthread_mutex_unlock(&seen.lock);
		if (token) {
			ctl_reply(token, 200, NULL, mem_strdup("{}"), 2);
			read_resp(fd);
			status = resp.status;
		} else {
			read_resp(fd);
			status = resp.status;
			assert_int_equal(status, 409);
		}
	}
	assert_int_equal(status, 200);
	assert_false(replayed());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keys_generate),
	    cmocka_unit_test(test_keys_hash),
	    cmocka_unit_test(test_keys_bearer),
	    cmocka_unit_test(test_keys_scopes),
	    cmocka_unit_test_setup_teardown(test_keys_bootstrap, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_keys_auth, start, stop),
	    cmocka_unit_test_setup_teardown(test_keys_idempotent_replay, start, stop),
	    cmocka_unit_test_setup_teardown(test_keys_idempotent_5xx, start, stop),
	    cmocka_unit_test_setup_teardown(test_keys_idempotent_in_progress, start, stop),
	    cmocka_unit_test_setup_teardown(test_keys_idempotent_abandoned, start, stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
