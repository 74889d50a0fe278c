/* Unit tests: db/redis.c against a private redis-server (tests/db/redis-ctl, Unix socket,
 * no persistence): URLs, job streams with a consumer group, delayed jobs, dedupe, the slot
 * semaphore, node liveness and reaping, pub/sub, and a server that dies and comes back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define TEST_CUSTOM_LEAK
#include "tests/unit/test_alloc.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "db/redis.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T0 1700000000000ull /* an injected "now" in ms since the epoch */

/* ---- the private server ---- */

static struct {
	char ctl[PATH_MAX];
	char dir[64];
	char sock[128];
	char url[160];
	pid_t pid;
} srv;

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* tests/db/redis-ctl from the working directory (tests/run-all runs from the top) or two
 * levels above this binary (BUILD/tests/test_redis). */
static int find_ctl(void)
{
	const char *rel = "tests/db/redis-ctl";
	if (access(rel, X_OK) == 0 && realpath(rel, srv.ctl))
		return 0;
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len <= 0)
		return -1;
	exe[len] = '\0';
	for (int up = 0; up < 3; up++) {
		char *slash = strrchr(exe, '/');
		if (!slash)
			return -1;
		*slash = '\0';
	}
	int n = snprintf(srv.ctl, sizeof(srv.ctl), "%s/%s", exe, rel);
	if (n < 0 || (size_t)n >= sizeof(srv.ctl))
		return -1;
	return access(srv.ctl, X_OK);
}

static redisContext *raw_connect(void)
{
	struct timeval tv = {.tv_sec = 2};
	redisContext *c = redisConnectUnixWithTimeout(srv.sock, tv);
	if (c && c->err) {
		redisFree(c);
		return NULL;
	}
	if (c)
		redisSetTimeout(c, tv);
	return c;
}

/* Starts redis-server as our child; it gets SIGKILL if this process dies, so nothing is
 * left behind even when a test crashes. Waits until it answers PING (at most 5 s). */
static int server_start(void)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		execl(srv.ctl, srv.ctl, "run", srv.dir, (char *)NULL);
		_exit(127);
	}
	srv.pid = pid;
	for (int i = 0; i < 250; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			srv.pid = 0;
			return -1;
		}
		redisContext *c = raw_connect();
		if (c) {
			redisReply *rep = redisCommand(c, "PING");
			int ok = rep && rep->type == REDIS_REPLY_STATUS;
			freeReplyObject(rep);
			redisFree(c);
			if (ok)
				return 0;
		}
		sleep_ms(20);
	}
	return -1;
}

static void server_kill(void)
{
	if (srv.pid <= 0)
		return;
	kill(srv.pid, SIGKILL);
	waitpid(srv.pid, NULL, 0);
	srv.pid = 0;
}

static int group_setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN); /* as vacsd's main does: a dead server is an error, not a kill */
	if (find_ctl() < 0) {
		fprintf(stderr, "test_redis: tests/db/redis-ctl not found\n");
		return -1;
	}
	snprintf(srv.dir, sizeof(srv.dir), "%s", "/tmp/vacs-redis-test.XXXXXX");
	if (!mkdtemp(srv.dir))
		return -1;
	snprintf(srv.sock, sizeof(srv.sock), "%s/redis.sock", srv.dir);
	snprintf(srv.url, sizeof(srv.url), "unix://%s", srv.sock);
	if (server_start() < 0) {
		fprintf(stderr, "test_redis: redis-server did not start (see %s/redis.log)\n",
		        srv.dir);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	server_kill();
	char path[192];
	snprintf(path, sizeof(path), "%s/redis.log", srv.dir);
	unlink(path);
	unlink(srv.sock);
	rmdir(srv.dir);
	return 0;
}

/* ---- per-test: empty database and the leak check ---- */

static long live_before;

static int leak_setup(void **state)
{
	(void)state;
	if (srv.pid <= 0 && server_start() < 0)
		return -1;
	redisContext *c = raw_connect();
	if (!c)
		return -1;
	freeReplyObject(redisCommand(c, "FLUSHALL"));
	redisFree(c);
	live_before = mem_live_blocks();
	return 0;
}

static int leak_teardown(void **state)
{
	(void)state;
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

/* ---- helpers ---- */

static const struct db_redis_opts opts = {
    .prefix = "vacs:",
    .connect_timeout_ms = 1000,
    .cmd_timeout_ms = 2000,
    .backoff_min_ms = 100,
    .backoff_max_ms = 400,
};

static struct db_redis *open_db(void)
{
	struct db_redis *r = NULL;
	assert_int_equal(db_redis_create(srv.url, &opts, &r), 0);
	assert_non_null(r);
	assert_int_equal(db_redis_up(r), 1);
	return r;
}

/* An integer reply of a raw command (-1 if not an integer). */
static long long raw_int(const char *fmt, ...)
{
	redisContext *c = raw_connect();
	assert_non_null(c);
	va_list ap;
	va_start(ap, fmt);
	redisReply *rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	long long v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
	freeReplyObject(rep);
	redisFree(c);
	return v;
}

/* Pending entries of a group (XPENDING summary count). */
static long long pending(const char *stream, const char *group)
{
	redisContext *c = raw_connect();
	assert_non_null(c);
	redisReply *rep = redisCommand(c, "XPENDING %s %s", stream, group);
	long long v = -1;
	if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
	    rep->element[0]->type == REDIS_REPLY_INTEGER)
		v = rep->element[0]->integer;
	freeReplyObject(rep);
	redisFree(c);
	return v;
}

struct strlist {
	char s[16][64];
	int n;
};

static void collect(void *arg, const char *s, size_t len)
{
	struct strlist *l = arg;
	assert_true(l->n < 16);
	assert_int_equal(strlen(s), len);
	snprintf(l->s[l->n++], sizeof(l->s[0]), "%s", s);
}

static int has(const struct strlist *l, const char *s)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->s[i], s) == 0)
			return 1;
	return 0;
}

/* ---- URLs ---- */

static void expect_bad(const char *url, const char *needle)
{
	char err[160] = "unset";
	struct db_redis_url u;
	assert_int_equal(db_redis_url_parse(url, &u, err, sizeof(err)), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("URL '%s': error '%s' does not say '%s'", url ? url : "(null)", err,
		         needle);
}

static void test_redis_url_parse(void **state)
{
	(void)state;
	struct db_redis_url u;
	char err[160];

	assert_int_equal(db_redis_url_parse("redis://localhost", &u, err, sizeof(err)), 0);
	assert_string_equal(u.host, "localhost");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_string_equal(u.path, "");
	assert_string_equal(u.password, "");

	assert_int_equal(db_redis_url_parse("redis://:s3cret@10.0.0.5:6380/2", &u, err, 160), 0);
	assert_string_equal(u.host, "10.0.0.5");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 2);
	assert_string_equal(u.user, "");
	assert_string_equal(u.password, "s3cret");

	assert_int_equal(db_redis_url_parse("redis://vacs:p%40ss%2F@[::1]:7000/", &u, err, 160), 0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 7000);
	assert_string_equal(u.user, "vacs");
	assert_string_equal(u.password, "p@ss/");
	assert_int_equal(u.db, 0);

	assert_int_equal(
	    db_redis_url_parse("unix:///run/redis/r.sock?db=3&password=x", &u, err, 160), 0);
	assert_string_equal(u.path, "/run/redis/r.sock");
	assert_string_equal(u.host, "");
	assert_int_equal(u.db, 3);
	assert_string_equal(u.password, "x");

	expect_bad(NULL, "empty");
	expect_bad("", "empty");
	expect_bad("http://h:80", "unknown scheme");
	expect_bad("localhost:6379", "unknown scheme");
	expect_bad("rediss://h:6379", "TLS");
	expect_bad("redis://", "missing host");
	expect_bad("redis://:6379", "missing host");
	expect_bad("redis://h:0", "bad port '0'");
	expect_bad("redis://h:99999", "bad port '99999'");
	expect_bad("redis://h:abc", "bad port 'abc'");
	expect_bad("redis://h:", "bad port");
	expect_bad("redis://h/x", "bad db number 'x'");
	expect_bad("redis://h:6379?db=1", "no '?' query");
	expect_bad("redis://user@h", "[user]:password@");
	expect_bad("redis://u:@h", "empty password");
	expect_bad("redis://[::1:6379", "missing ']'");
	expect_bad("unix://relative.sock", "absolute");
	expect_bad("unix:///tmp/r.sock?db=x", "bad db number");
	expect_bad("unix:///tmp/r.sock?foo=1", "unknown parameter 'foo'");
	expect_bad("unix:///tmp/r.sock?db", "'db' needs a value");

	/* The password never appears in an error. */
	char bad[160] = "";
	assert_int_equal(db_redis_url_parse("redis://:topsecret%zz@h", &u, bad, sizeof(bad)),
	                 -EINVAL);
	assert_non_null(strstr(bad, "password"));
	assert_null(strstr(bad, "topsecret"));

	/* create() refuses a bad URL and leaves *out alone. */
	struct db_redis *r = NULL;
	assert_int_equal(db_redis_create("redis://h:99999", NULL, &r), -EINVAL);
	assert_null(r);
}

/* The db of the URL is selected and every key carries the prefix. */
static void test_redis_url_db_and_prefix(void **state)
{
	(void)state;
	char url[200];
	snprintf(url, sizeof(url), "%s?db=3", srv.url);
	struct db_redis *r = NULL;
	assert_int_equal(db_redis_create(url, &opts, &r), 0);
	assert_int_equal(db_redis_dedupe(r, "k", 60), 1);
	assert_int_equal(raw_int("EXISTS vacs:k"), 0); /* db 0 */
	redisContext *c = raw_connect();
	assert_non_null(c);
	freeReplyObject(redisCommand(c, "SELECT 3"));
	redisReply *rep = redisCommand(c, "EXISTS vacs:k");
	assert_non_null(rep);
	assert_int_equal(rep->integer, 1);
	freeReplyObject(rep);
	freeReplyObject(redisCommand(c, "FLUSHDB"));
	redisFree(c);
	db_redis_destroy(r);
	db_redis_destroy(NULL);
}

/* A password from the URL is sent with AUTH; a wrong one keeps the object down; a TCP
 * URL to a closed port is down, not an error. */
static void test_redis_auth_and_tcp(void **state)
{
	(void)state;
	redisContext *c = raw_connect();
	assert_non_null(c);
	freeReplyObject(redisCommand(c, "CONFIG SET requirepass %s", "pa ss"));
	char url[200];
	struct db_redis *r = NULL;
	snprintf(url, sizeof(url), "%s?password=pa%%20ss", srv.url);
	assert_int_equal(db_redis_create(url, &opts, &r), 0);
	assert_int_equal(db_redis_up(r), 1);
	assert_int_equal(db_redis_dedupe(r, "k", 60), 1);
	db_redis_destroy(r);
	snprintf(url, sizeof(url), "%s?password=wrong", srv.url);
	assert_int_equal(db_redis_create(url, &opts, &r), 0);
	assert_int_equal(db_redis_up(r), 0);
	assert_int_equal(db_redis_dedupe(r, "k", 60), -ENOTCONN);
	db_redis_destroy(r);
	freeReplyObject(redisCommand(c, "CONFIG SET requirepass %s", ""));
	redisFree(c);

	assert_int_equal(db_redis_create("redis://127.0.0.1:1/0", &opts, &r), 0);
	assert_int_equal(db_redis_up(r), 0);
	assert_int_equal(db_redis_ping(r), -ENOTCONN);
	db_redis_destroy(r);
}

/* ---- job streams ---- */

#define NJOBS 100

struct consumer_arg {
	const char *name;
	atomic_int *seen;  /* [NJOBS]: deliveries per job */
	atomic_int *acked; /* total acks over both consumers */
	int got;           /* jobs this consumer processed */
	int errors;
};

static void *consumer_main(void *p)
{
	struct consumer_arg *a = p;
	struct db_redis *r = NULL;
	if (db_redis_create(srv.url, &opts, &r) < 0)
		return NULL;
	for (int round = 0; round < 1000 && atomic_load(a->acked) < NJOBS; round++) {
		struct db_redis_job jobs[7];
		size_t n = 0;
		if (db_redis_job_claim(r, "jobs", "dialer", a->name, 7, 50, 0, jobs, &n) < 0) {
			a->errors++;
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			int k = -1;
			if (sscanf(jobs[i].json, "{\"n\":%d}", &k) == 1 && k >= 0 && k < NJOBS)
				atomic_fetch_add(&a->seen[k], 1);
			else
				a->errors++;
			if (db_redis_job_ack(r, "jobs", "dialer", jobs[i].id) == 1)
				atomic_fetch_add(a->acked, 1);
			else
				a->errors++;
			a->got++;
		}
		db_redis_jobs_free(jobs, n);
	}
	db_redis_destroy(r);
	return NULL;
}

/* Two consumers on one group: every one of 100 jobs is delivered exactly once, including
 * the jobs added before the group existed. */
static void test_redis_jobs_two_consumers_exactly_once(void **state)
{
	(void)state;
	struct db_redis *r = open_db();
	char id[DB_REDIS_ID_MAX], json[32];
	for (int i = 0; i < NJOBS; i++) {
		if (i == NJOBS / 2) {
			assert_int_equal(db_redis_group_ensure(r, "jobs", "dialer"), 0);
			assert_int_equal(db_redis_group_ensure(r, "jobs", "dialer"),
			                 0); /* exists */
		}
		snprintf(json, sizeof(json), "{\"n\":%d}", i);
		assert_int_equal(db_redis_job_add(r, "jobs", json, id, sizeof(id)), 0);
		assert_non_null(strchr(id, '-'));
	}
	atomic_int seen[NJOBS];
	atomic_int acked = 0;
	for (int i = 0; i < NJOBS; i++)
		atomic_init(&seen[i], 0);
	struct consumer_arg a = {.name = "node-a", .seen = seen, .acked = &acked};
	struct consumer_arg b = {.name = "node-b", .seen = seen, .acked = &acked};
	pthread_t ta, tb;
	assert_int_equal(pthread_create(&ta, NULL, consumer_main, &a), 0);
	assert_int_equal(pthread_create(&tb, NULL, consumer_main, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);

	assert_int_equal(a.errors + b.errors, 0);
	assert_int_equal(a.got + b.got, NJOBS);
	for (int i = 0; i < NJOBS; i++)
		if (atomic_load(&seen[i]) != 1)
			fail_msg("job %d delivered %d times", i, atomic_load(&seen[i]));
	assert_int_equal(raw_int("XLEN vacs:jobs"), 0); /* acked jobs are deleted */
	assert_int_equal(pending("vacs:jobs", "dialer"), 0);

	/* Nothing left: a non-blocking claim returns no job. */
	struct db_redis_job jobs[4];
	size_t n = 99;
	assert_int_equal(db_redis_job_claim(r, "jobs", "dialer", "node-a", 4, 0, 0, jobs, &n), 0);
	assert_int_equal(n, 0);
	/* A group that does not exist says so. */
	assert_int_equal(db_redis_job_claim(r, "jobs", "nobody", "x", 4, 0, 0, jobs, &n), -ENOENT);
	db_redis_destroy(r);
}

/* A consumer that dies without acking: its jobs stay with it while fresh, then another
 * consumer takes them over after min_idle. */
static void test_redis_jobs_reclaim_dead_consumer(void **state)
{
	(void)state;
	struct db_redis *r = open_db();
	assert_int_equal(db_redis_group_ensure(r, "jobs", "dialer"), 0);
	for (int i = 0; i < 3; i++) {
		char json[32];
		snprintf(json, sizeof(json), "{\"n\":%d}", i);
		assert_int_equal(db_redis_job_add(r, "jobs", json, NULL, 0), 0);
	}
	struct db_redis *dead = open_db();
	struct db_redis_job taken[2];
	size_t n = 0;
	assert_int_equal(db_redis_job_claim(dead, "jobs", "dialer", "dead", 2, 0, 60000, taken, &n),
	                 0);
	assert_int_equal(n, 2);
	assert_int_equal(taken[0].reclaimed, 0);
	db_redis_destroy(dead); /* dies without ack */

	struct db_redis_job jobs[4];
	/* Fresh pending jobs are not stolen: only the third, new job comes. */
	assert_int_equal(db_redis_job_claim(r, "jobs", "dialer", "alive", 4, 0, 60000, jobs, &n),
	                 0);
	assert_int_equal(n, 1);
	assert_string_equal(jobs[0].json, "{\"n\":2}");
	assert_int_equal(jobs[0].reclaimed, 0);
	assert_int_equal(db_redis_job_ack(r, "jobs", "dialer", jobs[0].id), 1);
	db_redis_jobs_free(jobs, n);

	sleep_ms(150);
	assert_int_equal(db_redis_job_claim(r, "jobs", "dialer", "alive", 4, 0, 100, jobs, &n), 0);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(jobs[i].reclaimed, 1);
		assert_string_equal(jobs[i].id, taken[i].id);
		assert_string_equal(jobs[i].json, taken[i].json);
		assert_int_equal(jobs[i].json_len, strlen(taken[i].json));
		assert_int_equal(db_redis_job_ack(r, "jobs", "dialer", jobs[i].id), 1);
		assert_int_equal(db_redis_job_ack(r, "jobs", "dialer", jobs[i].id), 0);
	}
	db_redis_jobs_free(jobs, n);
	db_redis_jobs_free(taken, 2);
	assert_int_equal(pending("vacs:jobs", "dialer"), 0);
	db_redis_destroy(r);
}

/* ---- delayed jobs ---- */

struct mover_arg {
	int moved;
	int errors;
};

static void *mover_main(void *p)
{
	struct mover_arg *a = p;
	struct db_redis *r = NULL;
	if (db_redis_create(srv.url, &opts, &r) < 0)
		return NULL;
	for (int idle = 0; idle < 3;) {
		int rc = db_redis_job_due(r, "retry", "jobs", T0 + 1, 7);
		if (rc < 0)
			a->errors++;
		if (rc > 0) {
			a->moved += rc;
			idle = 0;
		} else {
			idle++;
		}
	}
	db_redis_destroy(r);
	return NULL;
}

static void test_redis_deferred_due_once(void **state)
{
	(void)state;
	struct db_redis *r = open_db();
	/* A payload that would break a command built by concatenation. */
	const char *evil = "{\"x\":\"a b\\r\\n\"}\r\n*1\r\n$8\r\nFLUSHALL\r\n";
	assert_int_equal(db_redis_job_defer(r, "retry", "{\"n\":1}", T0 + 100), 0);
	assert_int_equal(db_redis_job_defer(r, "retry", evil, T0 + 200), 0);
	assert_int_equal(db_redis_job_defer(r, "retry", "{\"n\":3}", T0 + 300), 0);

	assert_int_equal(db_redis_job_due(r, "retry", "jobs", T0 + 99, 10), 0);
	assert_int_equal(raw_int("XLEN vacs:jobs"), 0);
	assert_int_equal(db_redis_job_due(r, "retry", "jobs", T0 + 200, 10), 2);
	assert_int_equal(raw_int("ZCARD vacs:retry"), 1);

	assert_int_equal(db_redis_group_ensure(r, "jobs", "g"), 0);
	struct db_redis_job jobs[4];
	size_t n = 0;
	assert_int_equal(db_redis_job_claim(r, "jobs", "g", "c", 4, 0, 0, jobs, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(jobs[0].json, "{\"n\":1}"); /* in due order */
	assert_string_equal(jobs[1].json, evil);
	db_redis_jobs_free(jobs, n);
	assert_int_equal(db_redis_job_due(r, "retry", "jobs", T0 + 1000, 10), 1);
	assert_int_equal(raw_int("ZCARD vacs:retry"), 0);
	assert_int_equal(raw_int("DEL vacs:jobs"), 1);

	/* Two movers at once on 300 due items: every item moved exactly once. */
	for (int i = 0; i < 300; i++) {
		char json[32];
		snprintf(json, sizeof(json), "{\"n\":%d}", i);
		assert_int_equal(db_redis_job_defer(r, "retry", json, T0), 0);
	}
	struct mover_arg a = {0}, b = {0};
	pthread_t ta, tb;
	assert_int_equal(pthread_create(&ta, NULL, mover_main, &a), 0);
	assert_int_equal(pthread_create(&tb, NULL, mover_main, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(a.errors + b.errors, 0);
	assert_int_equal(a.moved + b.moved, 300);
	assert_int_equal(raw_int("XLEN vacs:jobs"), 300);

	redisContext *c = raw_connect();
	assert_non_null(c);
	redisReply *rep = redisCommand(c, "XRANGE vacs:jobs - +");
	assert_non_null(rep);
	assert_int_equal(rep->elements, 300);
	static char seen[300];
	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i < rep->elements; i++) {
		int k = -1;
		sscanf(rep->element[i]->element[1]->element[1]->str, "{\"n\":%d}", &k);
		assert_true(k >= 0 && k < 300);
		assert_int_equal(seen[k], 0);
		seen[k] = 1;
	}
	freeReplyObject(rep);
	redisFree(c);
	db_redis_destroy(r);
}

/* ---- dedupe and bad input ---- */

static void test_redis_dedupe(void **state)
{
	(void)state;
	struct db_redis *r = open_db();
	assert_int_equal(db_redis_dedupe(r, "wa:wamid.HBgM1", 60), 1);
	assert_int_equal(db_redis_dedupe(r, "wa:wamid.HBgM1", 60), 0);
	assert_int_equal(db_redis_dedupe(r, "wa:wamid.HBgM2", 60), 1);
	long long pttl = raw_int("PTTL vacs:wa:wamid.HBgM1");
	assert_true(pttl > 0 && pttl <= 60000);
	/* Keys with spaces, quotes and CRLF are one key, not a second command. */
	const char *odd = "wa:a b\"c\r\nDEL x";
	assert_int_equal(db_redis_dedupe(r, odd, 60), 1);
	assert_int_equal(db_redis_dedupe(r, odd, 60), 0);
	assert_int_equal(raw_int("DBSIZE"), 3);

	/* Bad arguments and keys. */
	char longname[DB_REDIS_KEY_MAX];
	memset(longname, 'k', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(db_redis_dedupe(r, longname, 60), -ENAMETOOLONG);
	assert_int_equal(db_redis_dedupe(r, "", 60), -EINVAL);
	assert_int_equal(db_redis_dedupe(r, "k", 0), -EINVAL);
	assert_int_equal(db_redis_job_add(r, NULL, "{}", NULL, 0), -EINVAL);
	/* A server error (wrong type) is reported, the connection stays usable. */
	assert_int_equal(db_redis_job_add(r, "wa:wamid.HBgM1", "{}", NULL, 0), -EPROTO);
	assert_int_equal(db_redis_up(r), 1);
	assert_int_equal(db_redis_ping(r), 0);
	db_redis_destroy(r);
}

/* ---- slot semaphore ---- */

#define SLOT_LIMIT 3

struct slot_arg {
	int idx;
	atomic_int *held;
	atomic_int *max_held;
	int acquired;
	int errors;
};

static void *slot_main(void *p)
{
	struct slot_arg *a = p;
	struct db_redis *r = NULL;
	if (db_redis_create(srv.url, &opts, &r) < 0)
		return NULL;
	for (int k = 0; k < 40; k++) {
		char holder[32];
		snprintf(holder, sizeof(holder), "call-%d-%d", a->idx, k);
		int rc = db_redis_slot_acquire(r, "vapi", SLOT_LIMIT, holder, 60000, T0);
		if (rc < 0) {
			a->errors++;
			continue;
		}
		if (rc == 0)
			continue;
		a->acquired++;
		int now_held = atomic_fetch_add(a->held, 1) + 1;
		int m = atomic_load(a->max_held);
		while (now_held > m && !atomic_compare_exchange_weak(a->max_held, &m, now_held))
			;
		int count = db_redis_slot_count(r, "vapi", T0);
		if (count < 1 || count > SLOT_LIMIT)
			a->errors++;
		atomic_fetch_sub(a->held, 1);
		if (db_redis_slot_release(r, "vapi", holder) != 1)
			a->errors++;
	}
	db_redis_destroy(r);
	return NULL;
}

/* Four nodes competing: never more than the limit held at once. */
static void test_redis_slot_never_exceeds_limit(void **state)
{
	(void)state;
	atomic_int held = 0, max_held = 0;
	struct slot_arg args[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct slot_arg){.idx = i, .held = &held, .max_held = &max_held};
		assert_int_equal(pthread_create(&th[i], NULL, slot_main, &args[i]), 0);
	}
	int acquired = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].errors, 0);
		acquired += args[i].acquired;
	}
	assert_true(acquired > 0);
	assert_true(atomic_load(&max_held) <= SLOT_LIMIT);
	struct db_redis *r = open_db();
	assert_int_equal(db_redis_slot_count(r, "vapi", T0), 0);
	db_redis_destroy(r);
}

/* Leases: full means full; an expired lease frees its slot (a dead node's calls); renew
 * keeps it; release frees it. */
static void test_redis_slot_lease_expiry_release(void **state)
{
	(void)state;
	struct db_redis *r = open_db();
	assert_int_equal(db_redis_slot_acquire(r, "vapi", 2, "A", 1000, T0), 1);
	assert_int_equal(db_redis_slot_acquire(r, "vapi", 2, "B", 5000, T0), 1);
	assert_int_equal(db_redis_slot_acquire(r, "vapi", 2, "C", 1000, T0), 0);      /* full */
	assert_int_equal(db_redis_slot_acquire(r, "vapi", 2, "A", 1000, T0 + 10), 1); /* again */
	assert_int_equal(db_redis_slot_count(r, "vapi", T0 + 10), 2);
	assert_int_equal(db_redis_slot_acquire(r, "vapi", 0, "Z", 1000, T0), 0); /* limit 0 */

	/* A's lease (renewed to T0 + 1010) ends: its slot comes back. */
	assert_int_equal(db_redis_slot_count(r, "vapi", T0 + 1010), 1);
	assert_int_equal(db_redis_slot_acquire(r, "vapi", 2, "C", 1000, T0 + 1010), 1);
	assert_int_equal(db_redis_slot_renew(r, "vapi", "A", 1000, T0 + 1500), 0); /* lost */
	/* B renews before its end and so keeps its slot past the first end. */
	assert_int_equal(db_redis_slot_renew(r, "vapi", "B", 5000, T0 + 4000), 1);
	/* C ended at T0 + 2010: its expired lease makes room for D. */
	assert_int_equal(db_redis_slot_acquire(r, "vapi", 2, "D", 1000, T0 + 6000), 1);
	assert_int_equal(db_redis_slot_count(r, "vapi", T0 + 6000), 2);
	assert_int_equal(db_redis_slot_acquire(r, "vapi", 2, "E", 1000, T0 + 6000), 0);

	assert_int_equal(db_redis_slot_release(r, "vapi", "B"), 1);
	assert_int_equal(db_redis_slot_release(r, "vapi", "B"), 0);
	assert_int_equal(db_redis_slot_acquire(r, "vapi", 2, "E", 1000, T0 + 6000), 1);
	assert_int_equal(db_redis_slot_release(r, "vapi", "D"), 1);
	assert_int_equal(db_redis_slot_release(r, "vapi", "E"), 1);
	assert_int_equal(db_redis_slot_count(r, "vapi", T0 + 6000), 0);
	db_redis_destroy(r);
}

/* ---- node liveness and call ownership ---- */

static void test_redis_node_liveness_and_reap(void **state)
{
	(void)state;
	struct db_redis *r = open_db();
	struct db_redis *r2 = open_db(); /* a second surviving node */
	assert_int_equal(db_redis_node_beat(r, "n1", 1000, T0), 0);
	assert_int_equal(db_redis_node_beat(r, "n2", 5000, T0), 0);
	assert_int_equal(db_redis_call_own(r, "n1", "call-1"), 0);
	assert_int_equal(db_redis_call_own(r, "n1", "call-2"), 0);
	assert_int_equal(db_redis_call_own(r, "n2", "call-3"), 0);

	struct strlist l = {0};
	assert_int_equal(db_redis_nodes_list(r, 0, T0 + 500, collect, &l), 2);
	assert_true(has(&l, "n1") && has(&l, "n2"));
	assert_int_equal(db_redis_nodes_list(r, 1, T0 + 500, NULL, NULL), 0);
	assert_int_equal(db_redis_node_reap(r, "n1", T0 + 500, NULL, NULL), -ENOENT); /* alive */

	/* n1 misses its beat. */
	memset(&l, 0, sizeof(l));
	assert_int_equal(db_redis_nodes_list(r, 0, T0 + 2000, collect, &l), 1);
	assert_string_equal(l.s[0], "n2");
	memset(&l, 0, sizeof(l));
	assert_int_equal(db_redis_nodes_list(r, 1, T0 + 2000, collect, &l), 1);
	assert_string_equal(l.s[0], "n1");
	assert_int_equal(db_redis_node_calls(r, "n1", NULL, NULL), 2);

	/* Two survivors reap it: only one gets its calls. */
	memset(&l, 0, sizeof(l));
	assert_int_equal(db_redis_node_reap(r2, "n1", T0 + 2000, collect, &l), 2);
	assert_true(has(&l, "call-1") && has(&l, "call-2"));
	assert_int_equal(db_redis_node_reap(r, "n1", T0 + 2000, NULL, NULL), -ENOENT); /* reaped */
	assert_int_equal(db_redis_nodes_list(r, 1, T0 + 2000, NULL, NULL), 0);
	assert_int_equal(db_redis_node_calls(r, "n1", NULL, NULL), 0);

	/* A dead node that owned no call: the winner gets 0, the next caller -ENOENT. */
	assert_int_equal(db_redis_node_beat(r, "n3", 1000, T0), 0);
	assert_int_equal(db_redis_node_reap(r2, "n3", T0 + 2000, NULL, NULL), 0);
	assert_int_equal(db_redis_node_reap(r, "n3", T0 + 2000, NULL, NULL), -ENOENT);

	/* n2 is untouched; its call ends. */
	memset(&l, 0, sizeof(l));
	assert_int_equal(db_redis_node_calls(r, "n2", collect, &l), 1);
	assert_string_equal(l.s[0], "call-3");
	assert_int_equal(db_redis_call_disown(r, "n2", "call-3"), 0);
	assert_int_equal(db_redis_node_calls(r, "n2", NULL, NULL), 0);

	/* n1 comes back and beats again. */
	assert_int_equal(db_redis_node_beat(r, "n1", 1000, T0 + 3000), 0);
	assert_int_equal(db_redis_nodes_list(r, 0, T0 + 3000, NULL, NULL), 2);
	db_redis_destroy(r2);
	db_redis_destroy(r);
}

/* ---- pub/sub ---- */

static void test_redis_publish_reaches_subscriber(void **state)
{
	(void)state;
	redisContext *sub = raw_connect();
	assert_non_null(sub);
	redisReply *rep = redisCommand(sub, "SUBSCRIBE vacs:dashboard");
	assert_non_null(rep);
	freeReplyObject(rep);

	struct db_redis *r = open_db();
	static const char msg[] = "{\"ev\":\"call.answered\"}\0binary";
	assert_int_equal(db_redis_publish(r, "dashboard", msg, sizeof(msg)), 1);
	assert_int_equal(db_redis_publish(r, "elsewhere", "x", 1), 0);

	void *p = NULL;
	assert_int_equal(redisGetReply(sub, &p), REDIS_OK);
	rep = p;
	assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
	assert_int_equal(rep->elements, 3);
	assert_string_equal(rep->element[0]->str, "message");
	assert_string_equal(rep->element[1]->str, "vacs:dashboard");
	assert_int_equal(rep->element[2]->len, sizeof(msg));
	assert_memory_equal(rep->element[2]->str, msg, sizeof(msg));
	freeReplyObject(rep);
	redisFree(sub);
	db_redis_destroy(r);
}

/* ---- the server dies and comes back ---- */

static _Atomic uint64_t fake_us;

static uint64_t fake_clock(void)
{
	return atomic_load(&fake_us);
}

struct blocked_arg {
	struct db_redis *r;
	int rc;
};

static void *blocked_main(void *p)
{
	struct blocked_arg *a = p;
	struct db_redis_job jobs[2];
	size_t n = 0;
	a->rc = db_redis_job_claim(a->r, "jobs", "g", "c", 2, 5000, 0, jobs, &n);
	db_redis_jobs_free(jobs, n);
	return NULL;
}

static int count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

static void test_redis_server_killed_and_back(void **state)
{
	(void)state;
	char logpath[192];
	snprintf(logpath, sizeof(logpath), "%s/vacs.log", srv.dir);
	struct log_config lc = {.level = LOG_INFO, .format = LOG_FMT_TEXT, .path = logpath};
	assert_int_equal(log_init(&lc), 0);
	atomic_store(&fake_us, 1000000);
	clock_set_source(fake_clock);

	struct db_redis *r = open_db();
	struct db_redis *blocked = open_db();
	assert_int_equal(db_redis_group_ensure(r, "jobs", "g"), 0);

	/* A consumer is blocked waiting for jobs when the server dies. */
	struct blocked_arg ba = {.r = blocked, .rc = 1};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, blocked_main, &ba), 0);
	sleep_ms(100);
	server_kill();
	pthread_join(th, NULL);
	assert_int_equal(ba.rc, -ENOTCONN);
	assert_int_equal(db_redis_up(blocked), 0);
	db_redis_destroy(blocked);

	/* The first call finds the broken connection, the next one tries to reconnect and
	 * fails, then calls fail at once during the backoff. */
	assert_int_equal(db_redis_job_add(r, "jobs", "{}", NULL, 0), -ENOTCONN);
	assert_int_equal(db_redis_up(r), 0);
	assert_int_equal(db_redis_ping(r), -ENOTCONN);
	for (int i = 0; i < 20; i++)
		assert_int_equal(db_redis_dedupe(r, "k", 60), -ENOTCONN);

	/* The server is back, but the backoff (100 ms) has not elapsed: still no attempt. */
	assert_int_equal(server_start(), 0);
	assert_int_equal(db_redis_ping(r), -ENOTCONN);
	atomic_fetch_add(&fake_us, 99000);
	assert_int_equal(db_redis_ping(r), -ENOTCONN);
	atomic_fetch_add(&fake_us, 1000);
	assert_int_equal(db_redis_ping(r), 0);
	assert_int_equal(db_redis_up(r), 1);

	/* The same object works; the new server is empty, so the group is made again. */
	struct db_redis_job jobs[2];
	size_t n = 0;
	assert_int_equal(db_redis_job_claim(r, "jobs", "g", "c", 2, 0, 0, jobs, &n), -ENOENT);
	assert_int_equal(db_redis_group_ensure(r, "jobs", "g"), 0);
	assert_int_equal(db_redis_job_add(r, "jobs", "{\"after\":1}", NULL, 0), 0);
	assert_int_equal(db_redis_job_claim(r, "jobs", "g", "c", 2, 0, 0, jobs, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(jobs[0].json, "{\"after\":1}");
	db_redis_jobs_free(jobs, n);
	db_redis_destroy(r);

	clock_set_source(NULL);
	struct log_config back = {.level = LOG_INFO, .format = LOG_FMT_TEXT, .path = NULL};
	log_init(&back);
	/* One line when it went down, one when it came back (for r; `blocked` logged its own
	 * down line). */
	assert_int_equal(count_lines(logpath, " down: "), 2);
	assert_int_equal(count_lines(logpath, "up again"), 1);
	unlink(logpath);
}

/* Backoff doubles up to the maximum after repeated failed reconnects; a server that is
 * missing at create time is not an error. */
static void test_redis_backoff_grows(void **state)
{
	(void)state;
	atomic_store(&fake_us, 5000000);
	clock_set_source(fake_clock);
	char url[200];
	snprintf(url, sizeof(url), "unix://%s/nothing.sock", srv.dir);
	struct db_redis *none = NULL;
	assert_int_equal(db_redis_create(url, &opts, &none), 0);
	assert_int_equal(db_redis_up(none), 0);
	assert_int_equal(db_redis_ping(none), -ENOTCONN);
	db_redis_destroy(none);

	struct db_redis *r = open_db();
	server_kill();
	assert_int_equal(db_redis_ping(r), -ENOTCONN); /* finds the connection broken */
	assert_int_equal(db_redis_ping(r), -ENOTCONN); /* attempt 1 fails: wait 100 ms */
	atomic_fetch_add(&fake_us, 100000);
	assert_int_equal(db_redis_ping(r), -ENOTCONN); /* attempt 2 fails: wait 200 ms */
	atomic_fetch_add(&fake_us, 200000);
	assert_int_equal(db_redis_ping(r), -ENOTCONN); /* attempt 3 fails: wait 400 ms */
	atomic_fetch_add(&fake_us, 400000);
	assert_int_equal(db_redis_ping(r), -ENOTCONN); /* attempt 4 fails: wait 400 (max) */
	assert_int_equal(server_start(), 0);
	atomic_fetch_add(&fake_us, 399000);
	assert_int_equal(db_redis_ping(r), -ENOTCONN); /* server up, but no attempt yet */
	atomic_fetch_add(&fake_us, 1000);
	assert_int_equal(db_redis_ping(r), 0);
	db_redis_destroy(r);
	clock_set_source(NULL);
}

/* ---- allocation failures ---- */

static void test_redis_alloc_failure(void **state)
{
	(void)state;
	struct db_redis *r = NULL;
	for (long k = 0;; k++) {
		mem_fail_after(k);
		int rc = db_redis_create(srv.url, &opts, &r);
		mem_fail_after(-1);
		if (rc == 0)
			break;
		assert_int_equal(rc, -ENOMEM);
		assert_null(r);
		assert_true(k < 10);
	}
	assert_int_equal(db_redis_group_ensure(r, "jobs", "g"), 0);
	assert_int_equal(db_redis_job_add(r, "jobs", "{\"a\":1}", NULL, 0), 0);
	assert_int_equal(db_redis_job_add(r, "jobs", "{\"a\":2}", NULL, 0), 0);
	/* A claim that cannot copy its jobs fails cleanly; the jobs come back later. */
	struct db_redis_job jobs[4];
	size_t n = 0;
	mem_fail_after(1);
	assert_int_equal(db_redis_job_claim(r, "jobs", "g", "c", 4, 0, 0, jobs, &n), -ENOMEM);
	mem_fail_after(-1);
	assert_int_equal(n, 0);
	sleep_ms(5);
	assert_int_equal(db_redis_job_claim(r, "jobs", "g", "c", 4, 0, 1, jobs, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(jobs[0].reclaimed, 1);
	db_redis_jobs_free(jobs, n);
	db_redis_destroy(r);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, leak_setup, leak_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_redis_url_parse),
	    T(test_redis_url_db_and_prefix),
	    T(test_redis_auth_and_tcp),
	    T(test_redis_jobs_two_consumers_exactly_once),
	    T(test_redis_jobs_reclaim_dead_consumer),
	    T(test_redis_deferred_due_once),
	    T(test_redis_dedupe),
	    T(test_redis_slot_never_exceeds_limit),
	    T(test_redis_slot_lease_expiry_release),
	    T(test_redis_node_liveness_and_reap),
	    T(test_redis_publish_reaches_subscriber),
	    T(test_redis_server_killed_and_back),
	    T(test_redis_backoff_grows),
	    T(test_redis_alloc_failure),
	};
	return cmocka_run_group_tests_name("redis", tests, group_setup, group_teardown);
}
