/* Unit tests: db/pg.c against a private PostgreSQL (tests/db/pg-ctl, Unix socket): migrations,
 * CDR and event rows, the spool through an outage and its replay, queries, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"
#include "db/db.h"
#include "db/db_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 20000 /* a hang guard, not a speed requirement */

static struct {
	char ctl[PATH_MAX];
	char dir[256]; /* the cluster: socket, data/, port */
	char port[16];
	char admin[512];   /* conninfo of the postgres database */
	char logpath[300]; /* vacs log of the whole run */
	pid_t pid;
	int dbn;
} srv;

/* Per test: a fresh database and spool directory, and our own connection to check rows. */
static struct {
	char conninfo[512];
	char down[512]; /* the same server on a port nobody listens on */
	char spool[300];
	char pending[400];
	char offset[400];
	char rejected[400];
	PGconn *c;
	long log_start;
	long live_before;
} t;

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------- the server */

/* tests/db/pg-ctl from the working directory or two levels above this binary. */
static int find_ctl(void)
{
	const char *rel = "tests/db/pg-ctl";
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

static int admin_ok(void)
{
	PGconn *c = PQconnectdb(srv.admin);
	int ok = PQstatus(c) == CONNECTION_OK;
	PQfinish(c);
	return ok;
}

/* Starts postgres as our child (SIGKILLed if we die); waits until it accepts connections. */
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
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(srv.ctl, srv.ctl, "run", srv.dir, (char *)NULL);
		_exit(127);
	}
	srv.pid = pid;
	uint64_t end = mono_ms() + WAIT_MS;
	while (mono_ms() < end) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			srv.pid = 0;
			return -1;
		}
		if (admin_ok())
			return 0;
		sleep_ms(20);
	}
	return -1;
}

/* Fast shutdown (SIGINT): clients are disconnected, as when an operator stops it. */
static void server_stop(void)
{
	if (srv.pid <= 0)
		return;
	kill(srv.pid, SIGINT);
	waitpid(srv.pid, NULL, 0);
	srv.pid = 0;
}

static int group_setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	if (find_ctl() < 0) {
		fprintf(stderr, "test_db: tests/db/pg-ctl not found\n");
		return -1;
	}
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "%s init", srv.ctl);
	FILE *p = popen(cmd, "r");
	if (!p || !fgets(srv.dir, sizeof(srv.dir), p)) {
		if (p)
			pclose(p);
		fprintf(stderr, "test_db: pg-ctl init failed\n");
		return -1;
	}
	pclose(p);
	srv.dir[strcspn(srv.dir, "\n")] = '\0';
	char path[300];
	snprintf(path, sizeof(path), "%s/port", srv.dir);
	FILE *f = fopen(path, "r");
	if (!f || !fgets(srv.port, sizeof(srv.port), f)) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	srv.port[strcspn(srv.port, "\n")] = '\0';
	snprintf(srv.admin, sizeof(srv.admin), "host=%s port=%s user=vacs dbname=postgres", srv.dir,
	         srv.port);
	if (server_start() < 0) {
		fprintf(stderr, "test_db: postgres did not start in %s\n", srv.dir);
		return -1;
	}
	snprintf(srv.logpath, sizeof(srv.logpath), "/tmp/vacs-test-db-%d.log", (int)getpid());
	struct log_config lc = {.level = LOG_INFO, .format = LOG_FMT_TEXT, .path = srv.logpath};
	if (log_init(&lc) != 0)
		return -1;
	/* One start and stop first, so that the metrics it registers (they live until the
	 * registry closes) are not counted as a leak of the first test. */
	char spool[64] = "/tmp/vacs-test-db-spool.XXXXXX";
	char down[512];
	snprintf(down, sizeof(down), "host=%s port=1 user=vacs", srv.dir);
	struct db_config c = {.conninfo = down, .spool_dir = mkdtemp(spool)};
	if (!c.spool_dir || db_init(&c) != 0)
		return -1;
	db_close();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", spool);
	return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	server_stop();
	char cmd[PATH_MAX + 300];
	snprintf(cmd, sizeof(cmd), "%s destroy %s", srv.ctl, srv.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_db: pg-ctl destroy failed\n");
	log_close();
	unlink(srv.logpath);
	return 0;
}

static long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static int test_setup(void **state)
{
	(void)state;
	if (srv.pid <= 0 && server_start() < 0)
		return -1;
	PGconn *a = PQconnectdb(srv.admin);
	char sql[64];
	snprintf(sql, sizeof(sql), "CREATE DATABASE t%d", ++srv.dbn);
	PGresult *r = PQexec(a, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	PQfinish(a);
	if (!ok)
		return -1;
	snprintf(t.conninfo, sizeof(t.conninfo), "host=%s port=%s user=vacs dbname=t%d", srv.dir,
	         srv.port, srv.dbn);
	snprintf(t.down, sizeof(t.down), "host=%s port=1 user=vacs dbname=t%d", srv.dir, srv.dbn);
	snprintf(t.spool, sizeof(t.spool), "/tmp/vacs-test-db-spool.XXXXXX");
	if (!mkdtemp(t.spool))
		return -1;
	snprintf(t.pending, sizeof(t.pending), "%s/store/pending.jsonl", t.spool);
	snprintf(t.offset, sizeof(t.offset), "%s/store/pending.offset", t.spool);
	snprintf(t.rejected, sizeof(t.rejected), "%s/store/rejected.jsonl", t.spool);
	t.c = PQconnectdb(t.conninfo);
	if (PQstatus(t.c) != CONNECTION_OK)
		return -1;
	t.log_start = file_size(srv.logpath);
	t.live_before = mem_live_blocks();
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	db_close();
	db_test_extra_migration(NULL);
	db_test_replay_batch(0);
	PQfinish(t.c);
	t.c = NULL;
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", t.spool);
	if (system(cmd) != 0)
		return -1;
	assert_int_equal(mem_live_blocks(), t.live_before);
	return 0;
}

/* ---------------------------------------------------------------- helpers */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int n_done;
static int done_rc[512];
static int q_rc;
static int q_calls;
static json_t *q_rows;

static void reset_done(void)
{
	pthread_mutex_lock(&mu);
	n_done = 0;
	for (size_t i = 0; i < sizeof(done_rc) / sizeof(done_rc[0]); i++)
		done_rc[i] = 1;
	q_calls = 0;
	q_rc = 1;
	json_decref(q_rows);
	q_rows = NULL;
	pthread_mutex_unlock(&mu);
}

static void on_done(void *arg, int rc)
{
	pthread_mutex_lock(&mu);
	done_rc[(intptr_t)arg] = rc;
	n_done++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void on_rows(void *arg, int rc, json_t *rows)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	q_rc = rc;
	json_decref(q_rows);
	q_rows = rows;
	q_calls++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

/* Waits until *counter >= n (under mu). */
static void wait_count(const int *counter, int n)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += WAIT_MS / 1000;
	pthread_mutex_lock(&mu);
	while (*counter < n) {
		if (pthread_cond_timedwait(&cv, &mu, &dl) == ETIMEDOUT)
			break;
	}
	int got = *counter;
	pthread_mutex_unlock(&mu);
	if (got < n)
		fail_msg("waited for %d callbacks, got %d", n, got);
}

static int is_up(void)
{
	return db_pg_up();
}

static int up_and_replayed(void)
{
	return db_pg_up() && db_spool_pending() == 0;
}

static void wait_until(int (*cond)(void), const char *what)
{
	uint64_t end = mono_ms() + WAIT_MS;
	while (!cond()) {
		if (mono_ms() > end)
			fail_msg("timed out waiting for %s", what);
		sleep_ms(5);
	}
}

static struct db_config cfg(const char *conninfo)
{
	struct db_config c = {
	    .conninfo = conninfo,
	    .spool_dir = t.spool,
	    .backoff_min_ms = 20,
	    .backoff_max_ms = 100,
	    .connect_timeout_s = 5,
	};
	return c;
}

static void init_up(void)
{
	struct db_config c = cfg(t.conninfo);
	assert_int_equal(db_init(&c), 0);
	wait_until(is_up, "PostgreSQL up");
}

/* The first column of the first row as an integer (-1 for NULL). */
static long long q_int(const char *sql)
{
	PGresult *r = PQexec(t.c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	long long v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

/* The first column of the first row as text, into a static buffer ("<null>" for NULL). */
static const char *q_str(const char *sql)
{
	static char buf[4096];
	PGresult *r = PQexec(t.c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	snprintf(buf, sizeof(buf), "%s", PQgetisnull(r, 0, 0) ? "<null>" : PQgetvalue(r, 0, 0));
	PQclear(r);
	return buf;
}

static void q_exec(const char *sql)
{
	PGresult *r = PQexec(t.c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

/* Occurrences of needle in the log since the test started. */
static int log_count(const char *needle)
{
	FILE *f = fopen(srv.logpath, "r");
	if (!f)
		return 0;
	fseek(f, t.log_start > 0 ? t.log_start : 0, SEEK_SET);
	char line[4096];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

static long count_file_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long n = 0;
	int ch;
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

static json_t *event(const char *call_id, int seq)
{
	char ts[40];
	snprintf(ts, sizeof(ts), "2026-11-28T07:%02d:%02d.%03dZ", seq / 60 % 60, seq % 60,
	         seq % 1000);
	char detail[32];
	snprintf(detail, sizeof(detail), "step %d", seq);
	return json_pack("{s:s, s:i, s:s, s:s, s:s}", "call_id", call_id, "seq", seq, "ts", ts,
	                 "event", "bridge", "detail", detail);
}

static void put_events(const char *call_id, int from, int to, int first_idx)
{
	for (int s = from; s <= to; s++) {
		int rc = db_put(DB_REC_CALL_EVENT, event(call_id, s), on_done,
		                (void *)(intptr_t)(first_idx + s - from));
		assert_int_equal(rc, 0);
	}
}

/* A CDR as b2bua/record.c writes it (shape of spool/cdr.jsonl). */
static const char cdr_text[] =
    "{\"call_id\":\"cdr-1\",\"direction\":\"inbound\",\"from_trunk\":\"carrier\","
    "\"to_trunk\":\"cucm\",\"route\":\"in\",\"caller\":\"+525598765432\","
    "\"caller_e164\":\"+525598765432\",\"caller_name\":\"Ana\",\"called\":\"5512342001\","
    "\"called_e164\":\"+525512342001\",\"target\":\"2001\",\"privacy\":false,"
    "\"lead_id\":\"lead-42\",\"start\":\"2026-11-28T07:08:31.906Z\","
    "\"answer\":\"2026-11-28T07:08:31.908Z\",\"end\":\"2026-11-28T07:08:37.106Z\","
    "\"ring_ms\":-1,\"duration_ms\":5198,\"sip_code\":200,\"end_reason\":\"caller hung up\","
    "\"hangup_side\":\"a\",\"dtmf_digits\":0,\"recording\":\"/var/spool/vacs/recordings/"
    "cdr-1.wav\","
    "\"ai\":{\"vapi_call_id\":\"d46dbbe9\",\"format\":\"mulaw\",\"transcript\":[],"
    "\"answer_to_speech_ms\":208},\"amd\":null,"
    "\"transfer\":{\"queue\":\"sales\",\"number\":\"2000\",\"after_hours\":false,"
    "\"source\":\"tool\",\"reason\":\"wants to book\",\"summary\":\"Ana quiere una villa "
    "\\\"vip\\\"\","
    "\"result\":\"bridged\",\"why\":null,\"agent\":\"<sip:2000@127.0.0.3>;tag=5\","
    "\"agent_sip_code\":200,\"hold_ms\":null,\"invite_ms\":0,\"answer_ms\":58,\"accept_ms\":59,"
    "\"bridge_ms\":59,\"end_ms\":null,\"ai_part_ms\":1068,\"human_part_ms\":4130},"
    "\"refers\":[],\"legs\":[{\"side\":\"a\",\"codec\":\"PCMU\",\"srtp\":\"none\",\"lost\":3,"
    "\"jitter_ms\":12,\"remote_lost\":1,\"remote_jitter_ms\":4},{\"side\":\"x\",\"codec\":\"G722\","
    "\"srtp\":\"AES_CM_128_HMAC_SHA1_80\",\"lost\":4,\"jitter_ms\":2,\"remote_lost\":0,"
    "\"remote_jitter_ms\":9}]}";

static json_t *cdr(const char *call_id)
{
	json_t *o = json_loads(cdr_text, 0, NULL);
	assert_non_null(o);
	json_object_set_new(o, "call_id", json_string(call_id));
	return o;
}

/* ---------------------------------------------------------------- tests */

static void test_db_migrations_once(void **state)
{
	(void)state;
	init_up();
	assert_int_equal(q_int("SELECT count(*) FROM schema_migrations"), db_n_migrations);
	assert_int_equal(q_int("SELECT min(version) FROM schema_migrations"), 1);
	assert_int_equal(
	    q_int("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN "
	          "('leads', 'whatsapp_messages', 'discovery', 'campaigns', 'call_jobs', 'calls', "
	          "'call_events', 'transfers', 'recordings', 'api_keys', 'event_subscriptions', "
	          "'dead_letters')"),
	    12);
	char applied[128];
	snprintf(applied, sizeof(applied), "%s",
	         q_str("SELECT applied_at::text FROM schema_migrations WHERE version = 1"));
	q_exec("INSERT INTO leads (phone_e164) VALUES ('+525512345678')");
	db_close();

	init_up();
	assert_int_equal(q_int("SELECT count(*) FROM schema_migrations"), db_n_migrations);
	assert_string_equal(
	    q_str("SELECT applied_at::text FROM schema_migrations WHERE version = 1"), applied);
	assert_int_equal(q_int("SELECT count(*) FROM leads"), 1);
	assert_int_equal(log_count("applying migration 001_init.sql"), 1);
	assert_int_equal(log_count("PostgreSQL up"), 2);
}

static void test_db_call_row(void **state)
{
	(void)state;
	reset_done();
	init_up();
	int64_t written = metric_lookup("vacs_db_records_written_total");
	json_t *plain = cdr("cdr-2");
	json_object_set_new(plain, "transfer", json_null());
	json_object_set_new(plain, "ai", json_null());
	json_object_set_new(plain, "answer", json_null());
	json_object_set_new(plain, "duration_ms", json_integer(505));
	assert_int_equal(db_put(DB_REC_CALL, cdr("cdr-1"), on_done, (void *)0), 0);
	assert_int_equal(db_put(DB_REC_CALL, plain, on_done, (void *)1), 0);
	assert_int_equal(db_put(DB_REC_CALL, cdr("cdr-1"), on_done, (void *)2), 0); /* again */
	wait_count(&n_done, 3);
	assert_int_equal(done_rc[0], 0);
	assert_int_equal(done_rc[1], 0);
	assert_int_equal(done_rc[2], 0);
	assert_int_equal(metric_lookup("vacs_db_records_written_total") - written, 3);

	assert_int_equal(q_int("SELECT count(*) FROM calls"), 2);
	assert_string_equal(
	    q_str(
	        "SELECT concat_ws('|', direction, from_trunk, to_trunk, route, target, caller_e164,"
	        " caller_name, called, called_e164, privacy, lead_id, ring_ms, duration_ms, "
	        "sip_code,"
	        " end_reason, hangup_side, codecs, srtp, packets_lost, jitter_ms_max,"
	        " remote_packets_lost, remote_jitter_ms_max, ai_ms, human_ms, vapi_call_id, "
	        "recording)"
	        " FROM calls WHERE call_id = 'cdr-1'"),
	    "inbound|carrier|cucm|in|2001|+525598765432|Ana|5512342001|+525512342001|f|lead-42|"
	    "-1|"
	    "5198|200|caller hung "
	    "up|a|{PCMU,G722}|{none,AES_CM_128_HMAC_SHA1_80}|7|12|1|9|1068|4130|"
	    "d46dbbe9|/var/spool/vacs/recordings/cdr-1.wav");
	assert_int_equal(q_int("SELECT count(*) FROM calls WHERE call_id = 'cdr-1' AND"
	                       " start_at = '2026-11-28T07:08:31.906Z' AND"
	                       " answer_at = '2026-11-28T07:08:31.908Z' AND"
	                       " end_at = '2026-11-28T07:08:37.106Z'"),
	                 1);
	/* The whole CDR is kept as it was written. */
	json_t *want = cdr("cdr-1");
	char *want_text = json_dumps(want, JSON_COMPACT);
	json_decref(want);
	const char *params[1] = {want_text};
	PGresult *r =
	    PQexecParams(t.c, "SELECT record = $1::jsonb FROM calls WHERE call_id = 'cdr-1'", 1,
	                 NULL, params, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(r, 0, 0), "t");
	PQclear(r);
	free(want_text);

	assert_int_equal(q_int("SELECT count(*) FROM transfers"), 1);
	assert_string_equal(
	    q_str("SELECT concat_ws('|', attempt, queue, number, after_hours, source, reason, "
	          "summary,"
	          " result, coalesce(why, '-'), agent, agent_sip_code, coalesce(hold_ms, -1), "
	          "invite_ms,"
	          " answer_ms, accept_ms, bridge_ms, ai_part_ms, human_part_ms)"
	          " FROM transfers WHERE call_id = 'cdr-1'"),
	    "1|sales|2000|f|tool|wants to book|Ana quiere una villa \"vip\"|bridged|-|"
	    "<sip:2000@127.0.0.3>;tag=5|200|-1|0|58|59|59|1068|4130");
	/* No AI, no transfer: all of it was time with a person. */
	assert_string_equal(q_str("SELECT concat_ws('|', ai_ms, human_ms, answer_at IS NULL)"
	                          " FROM calls WHERE call_id = 'cdr-2'"),
	                    "0|505|t");
}

static void test_db_events_in_order(void **state)
{
	(void)state;
	reset_done();
	init_up();
	put_events("ev-1", 1, 60, 0);
	json_t *obj = event("ev-1", 61);
	json_object_set_new(obj, "detail", json_pack("{s:i}", "code", 486));
	assert_int_equal(db_put(DB_REC_CALL_EVENT, obj, on_done, (void *)60), 0);
	wait_count(&n_done, 61);
	/* The same (call_id, seq) again, with other content: the first one stays. */
	json_t *dup = event("ev-1", 7);
	json_object_set_new(dup, "event", json_string("changed"));
	assert_int_equal(db_put(DB_REC_CALL_EVENT, dup, on_done, (void *)61), 0);
	wait_count(&n_done, 62);
	for (int i = 0; i < 62; i++)
		assert_int_equal(done_rc[i], 0);

	assert_int_equal(q_int("SELECT count(*) FROM call_events WHERE call_id = 'ev-1'"), 61);
	char want[512] = "";
	for (int s = 1; s <= 61; s++) {
		size_t l = strlen(want);
		snprintf(want + l, sizeof(want) - l, "%s%d", s > 1 ? "," : "", s);
	}
	assert_string_equal(q_str("SELECT string_agg(seq::text, ',' ORDER BY id) FROM call_events"),
	                    want);
	assert_string_equal(q_str("SELECT event FROM call_events WHERE seq = 7"), "bridge");
	assert_string_equal(q_str("SELECT detail FROM call_events WHERE seq = 7"), "step 7");
	assert_string_equal(q_str("SELECT detail FROM call_events WHERE seq = 61"),
	                    "{\"code\": 486}");
	assert_int_equal(q_int("SELECT count(*) FROM call_events WHERE ts = "
	                       "'2026-11-28T07:00:07.007Z'"),
	                 1);
}

static int enough_failures_base;
static int retried(void)
{
	return metric_lookup("vacs_db_connect_failures_total") >= enough_failures_base + 3;
}

static void test_db_outage_spool_replay(void **state)
{
	(void)state;
	reset_done();
	db_test_replay_batch(4); /* several replay transactions */
	init_up();
	put_events("out-1", 1, 5, 0);
	wait_count(&n_done, 5);
	int64_t spooled = metric_lookup("vacs_db_records_spooled_total");
	int64_t replayed = metric_lookup("vacs_db_records_replayed_total");

	server_stop();
	put_events("out-1", 6, 25, 5);
	assert_int_equal(db_put(DB_REC_CALL, cdr("out-1"), on_done, (void *)25), 0);
	wait_count(&n_done, 26);
	for (int i = 0; i < 26; i++)
		assert_int_equal(done_rc[i], 0); /* durable although PostgreSQL is gone */
	assert_int_equal(db_pg_up(), 0);
	assert_int_equal(db_spool_pending(), 21);
	assert_int_equal(count_file_lines(t.pending), 21);
	assert_int_equal(metric_lookup("vacs_db_records_spooled_total") - spooled, 21);
	assert_int_equal(db_query("SELECT 1", NULL, 0, on_rows, NULL), -ENOTCONN);

	/* It keeps trying, and says so once. */
	enough_failures_base = (int)metric_lookup("vacs_db_connect_failures_total");
	wait_until(retried, "reconnect attempts");
	assert_int_equal(log_count("PostgreSQL down"), 1);

	assert_int_equal(server_start(), 0);
	wait_until(up_and_replayed, "replay of the spool");
	PQreset(t.c);
	assert_int_equal(PQstatus(t.c), CONNECTION_OK);
	char want[256] = "";
	for (int s = 1; s <= 25; s++) {
		size_t l = strlen(want);
		snprintf(want + l, sizeof(want) - l, "%s%d", s > 1 ? "," : "", s);
	}
	assert_string_equal(q_str("SELECT string_agg(seq::text, ',' ORDER BY id) FROM call_events "
	                          "WHERE call_id = 'out-1'"),
	                    want);
	assert_int_equal(q_int("SELECT count(*) FROM calls WHERE call_id = 'out-1'"), 1);
	assert_int_equal(q_int("SELECT count(*) FROM transfers WHERE call_id = 'out-1'"), 1);
	assert_int_equal(file_size(t.pending), 0);
	assert_int_equal(q_int("SELECT 0") + 0, 0);
	FILE *f = fopen(t.offset, "r");
	assert_non_null(f);
	long long off = -1;
	assert_int_equal(fscanf(f, "%lld", &off), 1);
	fclose(f);
	assert_int_equal(off, 0);
	assert_int_equal(metric_lookup("vacs_db_records_replayed_total") - replayed, 21);
	assert_int_equal(log_count("PostgreSQL up"), 2);
	assert_int_equal(log_count("PostgreSQL down"), 1);
}

static void test_db_replay_resumes(void **state)
{
	(void)state;
	reset_done();
	init_up(); /* the schema */
	db_close();

	/* Ten events spooled while the server cannot be reached. */
	struct db_config c = cfg(t.down);
	assert_int_equal(db_init(&c), 0);
	put_events("rr-1", 1, 10, 0);
	wait_count(&n_done, 10);
	db_close();
	assert_int_equal(count_file_lines(t.pending), 10);

	/* A crash mid-replay: lines 1-7 were committed, the offset was written after line 5
	 * only, and an append was torn. */
	FILE *f = fopen(t.pending, "r");
	assert_non_null(f);
	long off5 = 0;
	for (int line = 0; line < 5;) {
		int ch = fgetc(f);
		assert_int_not_equal(ch, EOF);
		off5++;
		line += ch == '\n';
	}
	fclose(f);
	q_exec("INSERT INTO call_events (call_id, seq, ts, event, detail) SELECT 'rr-1', g,"
	       " now(), 'bridge', 'step ' || g FROM generate_series(1, 7) g");
	f = fopen(t.offset, "w");
	assert_non_null(f);
	fprintf(f, "%020ld\n", off5);
	fclose(f);
	int fd = open(t.pending, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	const char torn[] = "{\"kind\":\"call_event\",\"rec\":{\"call_id\":\"rr-1\",\"seq\":11,";
	assert_int_equal(write(fd, torn, sizeof(torn) - 1), (ssize_t)sizeof(torn) - 1);
	close(fd);

	init_up();
	wait_until(up_and_replayed, "replay of the spool");
	assert_int_equal(q_int("SELECT count(*) FROM call_events"), 10);
	assert_int_equal(q_int("SELECT count(DISTINCT seq) FROM call_events"), 10);
	assert_int_equal(q_int("SELECT max(seq) FROM call_events"), 10);
	assert_string_equal(q_str("SELECT string_agg(seq::text, ',' ORDER BY id) FROM call_events"),
	                    "1,2,3,4,5,6,7,8,9,10");
	assert_int_equal(file_size(t.pending), 0);
	assert_int_equal(file_size(t.rejected), -1);
	assert_int_equal(log_count("torn last line"), 1);
}

static void test_db_query_types(void **state)
{
	(void)state;
	reset_done();
	init_up();
	const char *params[2] = {"h\xc3\xa9llo \"q\"", NULL};
	assert_int_equal(
	    db_query(
	        "SELECT 1::int4 AS i, 9007199254740993::int8 AS big, 7::int2 AS small,"
	        " true AS b, false AS f, 2.5::numeric AS n, 10::numeric AS ni, 0.25::float8 AS d,"
	        " '{\"a\":[1,2]}'::jsonb AS j, '[true]'::json AS js, NULL::text AS z,"
	        " $1::text AS s, $2::text AS p2, 'NaN'::numeric AS nan,"
	        " '2026-11-28T07:08:31Z'::timestamptz AT TIME ZONE 'UTC' AS ts",
	        params, 2, on_rows, NULL),
	    0);
	wait_count(&q_calls, 1);
	assert_int_equal(q_rc, 0);
	assert_true(json_is_array(q_rows));
	assert_int_equal(json_array_size(q_rows), 1);
	json_t *row = json_array_get(q_rows, 0);
	assert_true(json_is_integer(json_object_get(row, "i")));
	assert_int_equal(json_integer_value(json_object_get(row, "i")), 1);
	assert_true(json_integer_value(json_object_get(row, "big")) == 9007199254740993LL);
	assert_int_equal(json_integer_value(json_object_get(row, "small")), 7);
	assert_true(json_is_true(json_object_get(row, "b")));
	assert_true(json_is_false(json_object_get(row, "f")));
	assert_true(json_is_real(json_object_get(row, "n")));
	assert_true(json_real_value(json_object_get(row, "n")) == 2.5);
	assert_true(json_is_integer(json_object_get(row, "ni")));
	assert_int_equal(json_integer_value(json_object_get(row, "ni")), 10);
	assert_true(json_real_value(json_object_get(row, "d")) == 0.25);
	json_t *j = json_object_get(row, "j");
	assert_true(json_is_object(j));
	assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "a"), 1)), 2);
	assert_true(json_is_true(json_array_get(json_object_get(row, "js"), 0)));
	assert_true(json_is_null(json_object_get(row, "z")));
	assert_string_equal(json_string_value(json_object_get(row, "s")), params[0]);
	assert_true(json_is_null(json_object_get(row, "p2")));
	assert_string_equal(json_string_value(json_object_get(row, "nan")), "NaN");
	assert_string_equal(json_string_value(json_object_get(row, "ts")), "2026-11-28 07:08:31");

	/* Several rows, in order; a statement without rows gives []. */
	assert_int_equal(
	    db_query("SELECT g FROM generate_series(1, 3) g ORDER BY g", NULL, 0, on_rows, NULL),
	    0);
	wait_count(&q_calls, 2);
	assert_int_equal(q_rc, 0);
	assert_int_equal(json_array_size(q_rows), 3);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(q_rows, 2), "g")), 3);
	const char *phone[1] = {"+525511112222"};
	assert_int_equal(
	    db_query("INSERT INTO leads (phone_e164) VALUES ($1)", phone, 1, on_rows, NULL), 0);
	wait_count(&q_calls, 3);
	assert_int_equal(q_rc, 0);
	assert_int_equal(json_array_size(q_rows), 0);
	assert_int_equal(q_int("SELECT count(*) FROM leads WHERE phone_e164 = '+525511112222'"), 1);

	/* A bad statement: -EINVAL, no rows, counted. */
	int64_t errs = metric_lookup("vacs_db_query_errors_total");
	assert_int_equal(db_query("SELECT nope FROM nowhere", NULL, 0, on_rows, NULL), 0);
	wait_count(&q_calls, 4);
	assert_int_equal(q_rc, -EINVAL);
	assert_null(q_rows);
	assert_int_equal(metric_lookup("vacs_db_query_errors_total") - errs, 1);
	assert_int_equal(db_query(NULL, NULL, 0, on_rows, NULL), -EINVAL);
	assert_int_equal(db_query("SELECT 1", NULL, 0, NULL, NULL), -EINVAL);
	reset_done();
}

static void test_db_down_query_and_put(void **state)
{
	(void)state;
	reset_done();
	enough_failures_base = (int)metric_lookup("vacs_db_connect_failures_total");
	struct db_config c = cfg(t.down);
	assert_int_equal(db_init(&c), 0);
	assert_int_equal(db_query("SELECT 1", NULL, 0, on_rows, NULL), -ENOTCONN);
	wait_until(retried, "reconnect attempts");
	assert_int_equal(db_pg_up(), 0);
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("dn-1", 1), on_done, (void *)0), 0);
	wait_count(&n_done, 1);
	assert_int_equal(done_rc[0], 0);
	assert_int_equal(count_file_lines(t.pending), 1);
	assert_int_equal(q_calls, 0); /* the refused query never calls back */
	assert_int_equal(log_count("PostgreSQL down"), 1);
	db_close();

	/* No conninfo at all: the module is off and says so. */
	struct db_config off = cfg("");
	assert_int_equal(db_init(&off), 0);
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("dn-1", 2), on_done, (void *)1),
	                 -ENOTCONN);
	assert_int_equal(db_query("SELECT 1", NULL, 0, on_rows, NULL), -ENOTCONN);
	assert_int_equal(db_pg_up(), 0);
	assert_int_equal(log_count("no PostgreSQL"), 1);
	db_close();
	assert_int_equal(n_done, 1);
}

/* db_query_wait: the rows come back to the waiting thread; errors are db_query's; a
 * query slower than the wait gives -ETIMEDOUT and its late answer is freed. */
static void test_db_query_wait(void **state)
{
	(void)state;
	init_up();
	const char *params[1] = {"41"};
	json_t *rows = NULL;
	assert_int_equal(db_query_wait("SELECT $1::int + 1 AS n", params, 1, &rows, 5000), 0);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 0), "n")), 42);
	json_decref(rows);
	assert_int_equal(db_query_wait("SELECT 1", NULL, 0, NULL, 0), 0);
	assert_int_equal(db_query_wait("SELEC nonsense", NULL, 0, &rows, 5000), -EINVAL);
	assert_null(rows);
	assert_int_equal(db_query_wait("SELECT pg_sleep(0.5)", NULL, 0, &rows, 50), -ETIMEDOUT);
	assert_null(rows);
	/* The slow one still answers (and is freed) before this one runs. */
	assert_int_equal(db_query_wait("SELECT 2 AS n", NULL, 0, &rows, 5000), 0);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 0), "n")), 2);
	json_decref(rows);
	db_close();
	assert_int_equal(db_query_wait("SELECT 1", NULL, 0, &rows, 100), -ENOTCONN);
}

static void test_db_bad_conninfo(void **state)
{
	(void)state;
	struct db_config c = cfg("password=sekrit this is not a conninfo");
	assert_int_equal(db_init(&c), -EINVAL);
	assert_int_equal(log_count("bad PostgreSQL conninfo"), 1);
	assert_int_equal(log_count("sekrit"), 0);
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("bc-1", 1), NULL, NULL), -ENOTCONN);
	db_close();
	c = cfg("host=/tmp nosuchoption=1");
	assert_int_equal(db_init(&c), -EINVAL);
	assert_int_equal(log_count("nosuchoption"), 1);
	db_close();
	c = cfg("postgresql://[::1");
	assert_int_equal(db_init(&c), -EINVAL);
	assert_int_equal(log_count("bad PostgreSQL conninfo"), 3);
	db_close();
	/* A spool directory that cannot be made. */
	c = cfg(t.conninfo);
	c.spool_dir = "/proc/vacs-no-such-dir";
	assert_true(db_init(&c) < 0);
	db_close();
}

static int migration_logged(void)
{
	return log_count("999_broken.sql") > 0;
}

static void test_db_broken_migration(void **state)
{
	(void)state;
	reset_done();
	static const struct db_migration bad = {
	    .version = 999,
	    .name = "999_broken.sql",
	    .sql = "CREATE TABLE broken_ok (x integer);\nSELECT no_such_column FROM leads;\n",
	};
	db_test_extra_migration(&bad);
	struct db_config c = cfg(t.conninfo);
	assert_int_equal(db_init(&c), 0);
	wait_until(migration_logged, "the migration error");
	assert_int_equal(log_count("migration 999_broken.sql failed"), 1);
	assert_int_equal(log_count("no_such_column"), 1);
	assert_int_equal(db_pg_up(), 0);
	/* Rolled back as a whole: not even 001 or the bookkeeping table remain. */
	assert_int_equal(q_int("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), 0);
	/* Records still become durable (spool). */
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("bm-1", 1), on_done, (void *)0), 0);
	wait_count(&n_done, 1);
	assert_int_equal(done_rc[0], 0);
	db_close();

	/* Fixed: the next start migrates and replays. */
	db_test_extra_migration(NULL);
	init_up();
	wait_until(up_and_replayed, "replay of the spool");
	assert_int_equal(q_int("SELECT count(*) FROM call_events WHERE call_id = 'bm-1'"), 1);
	assert_int_equal(q_int("SELECT count(*) FROM pg_tables WHERE tablename = 'broken_ok'"), 0);
}

static void test_db_rejects_bad_records(void **state)
{
	(void)state;
	reset_done();
	init_up();
	json_t *noseq = event("rj-1", 1);
	json_object_del(noseq, "seq");
	assert_int_equal(db_put(DB_REC_CALL_EVENT, noseq, on_done, (void *)9), -EINVAL);
	assert_int_equal(db_put(DB_REC__COUNT, event("rj-1", 1), on_done, (void *)9), -EINVAL);
	assert_int_equal(db_put(DB_REC_CALL_EVENT, NULL, on_done, (void *)9), -EINVAL);
	json_t *nostart = cdr("rj-call");
	json_object_del(nostart, "start");
	assert_int_equal(db_put(DB_REC_CALL, nostart, on_done, (void *)9), -EINVAL);

	/* Valid JSON that PostgreSQL refuses: that record fails, its neighbours do not. */
	json_t *badts = event("rj-1", 2);
	json_object_set_new(badts, "ts", json_string("not a time"));
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("rj-1", 1), on_done, (void *)0), 0);
	assert_int_equal(db_put(DB_REC_CALL_EVENT, badts, on_done, (void *)1), 0);
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("rj-1", 3), on_done, (void *)2), 0);
	wait_count(&n_done, 3);
	assert_int_equal(done_rc[0], 0);
	assert_int_equal(done_rc[1], -EINVAL);
	assert_int_equal(done_rc[2], 0);
	assert_int_equal(n_done, 3); /* the refused puts never called back */
	assert_string_equal(q_str("SELECT string_agg(seq::text, ',' ORDER BY id) FROM call_events"),
	                    "1,3");
	assert_int_equal(count_file_lines(t.rejected), 1);
	FILE *f = fopen(t.rejected, "r");
	char line[2048] = "";
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	assert_non_null(strstr(line, "not a time"));
	assert_non_null(strstr(line, "\"kind\":\"call_event\""));
	assert_int_equal(db_spool_pending(), 0);
}

static pthread_mutex_t block_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t block_cv = PTHREAD_COND_INITIALIZER;
static int block_entered, block_release;

static void on_done_blocking(void *arg, int rc)
{
	pthread_mutex_lock(&block_mu);
	block_entered = 1;
	pthread_cond_broadcast(&block_cv);
	while (!block_release)
		pthread_cond_wait(&block_cv, &block_mu);
	pthread_mutex_unlock(&block_mu);
	on_done(arg, rc);
}

static void test_db_queue_full(void **state)
{
	(void)state;
	reset_done();
	struct db_config c = cfg(t.conninfo);
	c.queue_len = 2;
	assert_int_equal(db_init(&c), 0);
	wait_until(is_up, "PostgreSQL up");
	int64_t full = metric_lookup("vacs_db_queue_full_total");
	block_entered = block_release = 0;
	/* The db thread is held inside a done callback: the mailbox fills up. */
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("qf-1", 1), on_done_blocking, (void *)0),
	                 0);
	pthread_mutex_lock(&block_mu);
	while (!block_entered)
		pthread_cond_wait(&block_cv, &block_mu);
	pthread_mutex_unlock(&block_mu);
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("qf-1", 2), on_done, (void *)1), 0);
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("qf-1", 3), on_done, (void *)2), 0);
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("qf-1", 4), on_done, (void *)3), -EAGAIN);
	assert_int_equal(db_query("SELECT 1", NULL, 0, on_rows, NULL), -EAGAIN);
	assert_int_equal(metric_lookup("vacs_db_queue_full_total") - full, 2);
	pthread_mutex_lock(&block_mu);
	block_release = 1;
	pthread_cond_broadcast(&block_cv);
	pthread_mutex_unlock(&block_mu);
	wait_count(&n_done, 3);
	assert_int_equal(done_rc[3], 1); /* never called */
	assert_string_equal(q_str("SELECT string_agg(seq::text, ',' ORDER BY id) FROM call_events"),
	                    "1,2,3");
}

static void test_db_close_drains(void **state)
{
	(void)state;
	reset_done();
	init_up();
	put_events("cl-1", 1, 300, 0);
	db_close(); /* returns after every accepted record is durable */
	assert_int_equal(n_done, 300);
	for (int i = 0; i < 300; i++)
		assert_int_equal(done_rc[i], 0);
	assert_int_equal(q_int("SELECT count(*) FROM call_events"), 300);
	assert_int_equal(db_put(DB_REC_CALL_EVENT, event("cl-1", 301), on_done, (void *)0),
	                 -ENOTCONN);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_db_migrations_once),     T(test_db_call_row),       T(test_db_events_in_order),
	    T(test_db_outage_spool_replay), T(test_db_replay_resumes), T(test_db_query_types),
	    T(test_db_down_query_and_put),  T(test_db_bad_conninfo),   T(test_db_broken_migration),
	    T(test_db_rejects_bad_records), T(test_db_queue_full),     T(test_db_close_drains),
	    T(test_db_query_wait),
	};
	return cmocka_run_group_tests_name("db", tests, group_setup, group_teardown);
}
