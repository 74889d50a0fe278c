/* The db thread: the libpq connection, migrations, durable records with the local spool,
 * and queries for the REST API. */
#include "db/db.h"
#include "db/db_int.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/mbox.h"
#include "core/mem.h"
#include "core/metric.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * How it works. db_put and db_query copy a fixed-size message into the mailbox; the db
 * thread takes them in order. Consecutive puts form a batch: written in one transaction
 * when PostgreSQL is up and the spool is empty, else appended to the spool with one
 * fsync. Only then does each done callback run, so "done rc 0" always means durable.
 *
 * Spool files, in <spool_dir>/store/ (only the db thread touches them):
 *   pending.jsonl  {"kind":"call","rec":{...}} per line, appended and fsync'd;
 *   pending.offset the byte offset of the first line not yet replayed (fixed-width
 *                  decimal, rewritten in place and fsync'd after each committed batch);
 *   rejected.jsonl records PostgreSQL refused (bad content), kept for a human.
 * Replay commits a batch of lines, then advances the offset. A crash between the two
 * replays the batch again: every insert is ON CONFLICT DO NOTHING on the record's
 * natural key, so the rows still exist exactly once. When the offset reaches the end,
 * the offset is set to 0 first and the file truncated second (a crash in between
 * replays the whole file again, harmlessly; the other order could skip new lines).
 *
 * Invariant: while the spool holds lines, new records are appended to it too, so rows
 * reach PostgreSQL in the order the records were put.
 */

#define MOD "db"

/* Type OIDs of the built-in types we convert (catalog/pg_type.h, stable across versions). */
#define OID_BOOL    16
#define OID_INT8    20
#define OID_INT2    21
#define OID_INT4    23
#define OID_OID     26
#define OID_JSON    114
#define OID_FLOAT4  700
#define OID_FLOAT8  701
#define OID_NUMERIC 1700
#define OID_JSONB   3802

#define BATCH_MAX      256u         /* puts per transaction / spool append */
#define REPLAY_DEFAULT 256u         /* spool lines per replay transaction */
#define MIGRATION_LOCK "7305675372" /* pg_advisory_xact_lock key: "vacs" migrations */
#define READ_CHUNK     (256u * 1024u)
#define OFFSET_WIDTH   20

enum msg_type { MSG_PUT = 1, MSG_QUERY, MSG_STOP };

/* One mailbox message; every pointer in it is owned by the message until handled. */
struct msg {
	enum msg_type type;
	enum db_rec kind;
	json_t *rec;
	db_done_cb done;
	db_rows_cb rows;
	void *arg;
	char *sql;
	char **params; /* n entries, NULL = SQL NULL */
	int n;
};

/* One record on its way to PostgreSQL (a put, or a spool line during replay). */
struct item {
	enum db_rec kind;
	json_t *rec; /* owned; NULL for a spool line that did not parse */
	char *text;  /* the record as compact JSON (jansson allocation), owned */
	db_done_cb done;
	void *arg;
	int state;        /* 0 pending, 1 written, <0 refused (-EINVAL) */
	const char *line; /* replay: the raw spool line (no newline), in the read buffer */
	size_t line_len;
};

static int valid_call(const json_t *r);
static int valid_event(const json_t *r);
static int valid_wa_batch(const json_t *r);

/* Per kind: its spool name, the prepared statements run with the record as $1. */
static const struct kind_def {
	const char *name;
	const char *stmt[2];
	int (*valid)(const json_t *rec);
} kinds[DB_REC__COUNT] = {
    [DB_REC_CALL] = {"call", {"vacs_call", "vacs_transfer"}, valid_call},
    [DB_REC_CALL_EVENT] = {"call_event", {"vacs_call_event", NULL}, valid_event},
    [DB_REC_WA_BATCH] = {"wa_batch", {"vacs_wa_inbox", "vacs_wa_dead"}, valid_wa_batch},
};

/* The statements of the durable records: the record is one jsonb parameter and the
 * columns are taken from it in SQL, so nothing is ever built from values in C. */
static const struct {
	const char *name;
	const char *sql;
} stmts[] = {
    {"vacs_call",
     "INSERT INTO calls (call_id, direction, from_trunk, to_trunk, route, target, caller,"
     " caller_e164, caller_name, called, called_e164, privacy, lead_id, start_at, answer_at,"
     " end_at, ring_ms, duration_ms, sip_code, end_reason, hangup_side, codecs, srtp,"
     " packets_lost, jitter_ms_max, remote_packets_lost, remote_jitter_ms_max, ai_ms, human_ms,"
     " vapi_call_id, recording, record)"
     " SELECT r->>'call_id', coalesce(r->>'direction', ''), r->>'from_trunk', r->>'to_trunk',"
     " r->>'route', r->>'target', r->>'caller', r->>'caller_e164', r->>'caller_name',"
     " r->>'called', r->>'called_e164', (r->>'privacy')::boolean, nullif(r->>'lead_id', ''),"
     " (r->>'start')::timestamptz, (r->>'answer')::timestamptz, (r->>'end')::timestamptz,"
     " (r->>'ring_ms')::integer, (r->>'duration_ms')::bigint, (r->>'sip_code')::integer,"
     " r->>'end_reason', r->>'hangup_side',"
     " ARRAY(SELECT l->>'codec' FROM jsonb_array_elements(legs) l),"
     " ARRAY(SELECT l->>'srtp' FROM jsonb_array_elements(legs) l),"
     " (SELECT sum((l->>'lost')::bigint) FROM jsonb_array_elements(legs) l),"
     " (SELECT max((l->>'jitter_ms')::integer) FROM jsonb_array_elements(legs) l),"
     " (SELECT sum((l->>'remote_lost')::bigint) FROM jsonb_array_elements(legs) l),"
     " (SELECT max((l->>'remote_jitter_ms')::integer) FROM jsonb_array_elements(legs) l),"
     " CASE WHEN jsonb_typeof(r->'transfer') = 'object'"
     "  THEN (r->'transfer'->>'ai_part_ms')::bigint"
     "  WHEN jsonb_typeof(r->'ai') = 'object' THEN (r->>'duration_ms')::bigint ELSE 0 END,"
     " CASE WHEN jsonb_typeof(r->'transfer') = 'object'"
     "  THEN (r->'transfer'->>'human_part_ms')::bigint"
     "  WHEN jsonb_typeof(r->'ai') = 'object' THEN 0 ELSE (r->>'duration_ms')::bigint END,"
     " r->'ai'->>'vapi_call_id', r->>'recording', r"
     " FROM (SELECT $1::jsonb AS r) s,"
     " LATERAL (SELECT CASE WHEN jsonb_typeof(r->'legs') = 'array' THEN r->'legs'"
     "  ELSE '[]'::jsonb END AS legs) lg"
     " ON CONFLICT (call_id) DO NOTHING"},
    {"vacs_transfer",
     "INSERT INTO transfers (call_id, attempt, queue, number, after_hours, source, reason,"
     " summary, result, why, agent, agent_sip_code, hold_ms, invite_ms, answer_ms, accept_ms,"
     " bridge_ms, end_ms, ai_part_ms, human_part_ms)"
     " SELECT r->>'call_id', x.n, t->>'queue', t->>'number', (t->>'after_hours')::boolean,"
     " t->>'source', t->>'reason', t->>'summary', t->>'result', t->>'why', t->>'agent',"
     " (t->>'agent_sip_code')::integer, (t->>'hold_ms')::bigint, (t->>'invite_ms')::bigint,"
     " (t->>'answer_ms')::bigint, (t->>'accept_ms')::bigint, (t->>'bridge_ms')::bigint,"
     " (t->>'end_ms')::bigint, (t->>'ai_part_ms')::bigint, (t->>'human_part_ms')::bigint"
     " FROM (SELECT $1::jsonb AS r) s,"
     " jsonb_array_elements(CASE WHEN jsonb_typeof(r->'transfers') = 'array' THEN r->'transfers'"
     "  WHEN jsonb_typeof(r->'transfer') = 'object' THEN jsonb_build_array(r->'transfer')"
     "  ELSE '[]'::jsonb END) WITH ORDINALITY AS x(t, n)"
     " WHERE jsonb_typeof(t) = 'object'"
     " ON CONFLICT (call_id, attempt) DO NOTHING"},
    {"vacs_call_event",
     "INSERT INTO call_events (call_id, seq, ts, event, detail)"
     " SELECT r->>'call_id', (r->>'seq')::integer, (r->>'ts')::timestamptz, r->>'event',"
     " CASE jsonb_typeof(r->'detail') WHEN 'string' THEN r->>'detail' WHEN 'null' THEN NULL"
     "  ELSE (r->'detail')::text END"
     " FROM (SELECT $1::jsonb AS r) s"
     " ON CONFLICT (call_id, seq) DO NOTHING"},
    {"vacs_wa_inbox", "INSERT INTO whatsapp_inbox (sha256, body, received_at)"
                      " SELECT r->>'sha256', r->'body', (r->>'received')::timestamptz"
                      " FROM (SELECT $1::jsonb AS r) s WHERE jsonb_typeof(r->'body') = 'object'"
                      " ON CONFLICT (sha256) DO NOTHING"},
    {"vacs_wa_dead",
     "INSERT INTO dead_letters (url, event, payload, attempts, last_error, first_attempt_at,"
     " last_attempt_at)"
     " SELECT '/webhooks/whatsapp', 'whatsapp.webhook',"
     " jsonb_build_object('sha256', r->>'sha256', 'raw', r->'raw'), 1, r->>'error', t, t"
     " FROM (SELECT $1::jsonb AS r, ($1::jsonb->>'received')::timestamptz AS t) s"
     " WHERE r ? 'error' AND NOT EXISTS (SELECT 1 FROM dead_letters d"
     "  WHERE d.event = 'whatsapp.webhook' AND d.payload->>'sha256' = r->>'sha256')"},
};

static struct {
	/* Set by db_init, read-only afterwards. */
	struct mbox *mb;
	pthread_t thread;
	int started;
	char **keys, **vals; /* conninfo as keyword/value arrays, NULL-terminated */
	char *dir;           /* <spool_dir>/store */
	char *pending_path, *offset_path, *rejected_path;
	unsigned backoff_min_ms, backoff_max_ms, connect_timeout_s, close_timeout_ms;
	struct metric *m_up, *m_written, *m_spooled, *m_replayed, *m_rejected, *m_qerr, *m_full,
	    *m_spool, *m_connfail;

	/* Any thread. */
	atomic_int accepting; /* db_put/db_query are taken */
	atomic_int inflight;  /* callers between the accepting check and the post */
	atomic_int stopping;
	atomic_int up;
	atomic_long pending; /* spool lines after the replay offset */

	/* The db thread only. */
	PGconn *conn;
	int connecting;
	PostgresPollingStatusType poll_st;
	uint64_t connect_deadline_us, next_attempt_us, close_deadline_us;
	unsigned backoff_ms;
	int down_logged;
	int spool_fd, offset_fd;
	off_t spool_size, replay_off;
	struct log_ratelimit rl_query, rl_write;
} g = {.spool_fd = -1, .offset_fd = -1};

/* Test hooks (db_int.h). */
static const struct db_migration *test_extra;
static unsigned test_replay_batch;

void db_test_extra_migration(const struct db_migration *m)
{
	test_extra = m;
}

void db_test_replay_batch(unsigned lines)
{
	test_replay_batch = lines;
}

const char *db_rec_name(enum db_rec kind)
{
	return (unsigned)kind < DB_REC__COUNT ? kinds[kind].name : NULL;
}

static int kind_by_name(const char *name)
{
	for (int k = 0; name && k < DB_REC__COUNT; k++) {
		if (strcmp(kinds[k].name, name) == 0)
			return k;
	}
	return -1;
}

static int str_field(const json_t *r, const char *key)
{
	const json_t *v = json_object_get(r, key);
	return json_is_string(v) && json_string_length(v) > 0;
}

static int valid_call(const json_t *r)
{
	return json_is_object(r) && str_field(r, "call_id") && str_field(r, "start");
}

static int valid_event(const json_t *r)
{
	const json_t *seq = json_object_get(r, "seq");
	return json_is_object(r) && str_field(r, "call_id") && str_field(r, "ts") &&
	       str_field(r, "event") && json_is_integer(seq) && json_integer_value(seq) >= 0 &&
	       json_integer_value(seq) <= INT_MAX;
}

static int valid_wa_batch(const json_t *r)
{
	if (!json_is_object(r) || !str_field(r, "sha256") || !str_field(r, "received"))
		return 0;
	return json_is_object(json_object_get(r, "body")) ||
	       (str_field(r, "raw") && str_field(r, "error"));
}

/* Copies libpq's (possibly multi-line) message into buf as one line. */
static void one_line(char *buf, size_t len, const char *msg)
{
	snprintf(buf, len, "%s", msg && msg[0] ? msg : "unknown error");
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	for (char *p = buf; *p; p++) {
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	}
}

/* ---------------------------------------------------------------- spool files */

/* Writes all of buf at the end of fd. 0 or -errno. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t w = write(fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

static int offset_write(off_t off)
{
	char buf[OFFSET_WIDTH + 2];
	snprintf(buf, sizeof(buf), "%0*lld\n", OFFSET_WIDTH, (long long)off);
	if (pwrite(g.offset_fd, buf, OFFSET_WIDTH + 1, 0) != OFFSET_WIDTH + 1 ||
	    fdatasync(g.offset_fd) < 0) {
		int err = errno ? -errno : -EIO;
		if (log_ratelimit_ok(&g.rl_write))
			log_err(MOD, "cannot write %s: %s", g.offset_path, strerror(-err));
		return err;
	}
	return 0;
}

/* Counts the newlines of fd in [from, to). */
static long count_lines(int fd, off_t from, off_t to)
{
	char buf[65536];
	long n = 0;
	while (from < to) {
		size_t want = (size_t)(to - from) < sizeof(buf) ? (size_t)(to - from) : sizeof(buf);
		ssize_t r = pread(fd, buf, want, from);
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			n += buf[i] == '\n';
		from += r;
	}
	return n;
}

static void spool_set_pending(long n)
{
	atomic_store(&g.pending, n);
	metric_set(g.m_spool, n);
}

/* Opens the spool files, drops a torn last line (a crash mid-append: never acknowledged)
 * and finds the replay position. Runs in db_init, before the thread. 0 or -errno. */
static int spool_open(void)
{
	if (mkdir(g.dir, 0750) < 0 && errno != EEXIST) {
		int err = -errno;
		log_err(MOD, "cannot create the spool directory %s: %s", g.dir, strerror(errno));
		return err;
	}
	g.spool_fd = open(g.pending_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	g.offset_fd = g.spool_fd < 0 ? -1 : open(g.offset_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (g.spool_fd < 0 || g.offset_fd < 0) {
		int err = -errno;
		log_err(MOD, "cannot open the spool %s: %s",
		        g.spool_fd < 0 ? g.pending_path : g.offset_path, strerror(errno));
		return err;
	}
	struct stat st;
	if (fstat(g.spool_fd, &st) < 0)
		return -errno;
	off_t size = st.st_size;
	/* A last line without its newline was being appended when the process died. */
	off_t end = size;
	while (end > 0) {
		char c;
		if (pread(g.spool_fd, &c, 1, end - 1) != 1)
			return -EIO;
		if (c == '\n')
			break;
		end--;
	}
	if (end < size) {
		if (ftruncate(g.spool_fd, end) < 0 || fsync(g.spool_fd) < 0)
			return -errno;
		log_warn(MOD, "%s: dropped a torn last line of %lld bytes (never acknowledged)",
		         g.pending_path, (long long)(size - end));
		size = end;
	}
	g.spool_size = size;

	/* The offset must be 0 or just after a newline, inside the file; anything else
	 * (a torn or stale offset file) replays from the start, which is harmless. */
	char buf[OFFSET_WIDTH + 2] = {0};
	ssize_t r = pread(g.offset_fd, buf, OFFSET_WIDTH + 1, 0);
	long long off = r > 0 ? strtoll(buf, NULL, 10) : 0;
	char c = '\n';
	if (off < 0 || off > size || (off > 0 && pread(g.spool_fd, &c, 1, off - 1) != 1) ||
	    c != '\n') {
		log_warn(MOD, "%s: offset %lld is not a line start: replaying from the start",
		         g.offset_path, off);
		off = 0;
	}
	g.replay_off = off;
	if (size == 0 && r <= 0 && offset_write(0) < 0)
		return -EIO;
	spool_set_pending(count_lines(g.spool_fd, off, size));
	if (atomic_load(&g.pending) > 0)
		log_info(MOD, "%ld records in %s wait for PostgreSQL", atomic_load(&g.pending),
		         g.pending_path);
	return 0;
}

/* Appends the items to the spool and fsyncs. 0, or -errno (nothing of this batch kept). */
static int spool_append(struct item *it, unsigned n)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = 0;
	for (unsigned i = 0; i < n; i++) {
		if (it[i].state)
			continue;
		const char *name = kinds[it[i].kind].name;
		size_t need = strlen(it[i].text) + strlen(name) + 32;
		if (len + need > cap) {
			size_t ncap = (len + need) * 2;
			char *nb = mem_realloc(buf, ncap);
			if (!nb) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		len += (size_t)snprintf(buf + len, cap - len, "{\"kind\":\"%s\",\"rec\":%s}\n",
		                        name, it[i].text);
	}
	if (!len)
		goto out;
	rc = write_all(g.spool_fd, buf, len);
	if (rc == 0 && fdatasync(g.spool_fd) < 0)
		rc = -errno;
	if (rc < 0) {
		/* Leave no partial line behind: the records are reported lost instead. */
		if (ftruncate(g.spool_fd, g.spool_size) < 0)
			log_err(MOD, "cannot truncate %s: %s", g.pending_path, strerror(errno));
		if (log_ratelimit_ok(&g.rl_write))
			log_err(MOD, "cannot append to the spool %s: %s", g.pending_path,
			        strerror(-rc));
		goto out;
	}
	g.spool_size += (off_t)len;
	long added = 0;
	for (unsigned i = 0; i < n; i++)
		added += it[i].state == 0;
	spool_set_pending(atomic_load(&g.pending) + added);
	metric_add(g.m_spooled, (uint64_t)added);
out:
	mem_free(buf);
	return rc;
}

/* Keeps a record PostgreSQL refused in rejected.jsonl, with the server's reason. */
static void reject(struct item *it, const char *why)
{
	it->state = -EINVAL;
	metric_inc(g.m_rejected);
	json_t *o = json_object();
	char ts[40];
	clock_format_iso(clock_wall_ms(), ts, sizeof(ts));
	json_object_set_new(o, "ts", json_string(ts));
	json_object_set_new(o, "error", json_string(why));
	if (it->rec) {
		json_object_set_new(o, "kind", json_string(kinds[it->kind].name));
		json_object_set(o, "rec", it->rec);
	} else {
		json_object_set_new(o, "line", json_stringn(it->line, it->line_len));
	}
	char *line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	int fd = open(g.rejected_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0 || !line || dprintf(fd, "%s\n", line) < 0 || fdatasync(fd) < 0)
		log_err(MOD, "cannot append to %s: %s", g.rejected_path,
		        line ? strerror(errno) : "no memory");
	if (fd >= 0)
		close(fd);
	log_warn(MOD, "PostgreSQL refused a %s record (kept in %s): %s",
	         it->rec ? kinds[it->kind].name : "spool", g.rejected_path, why);
	free(line);
}

/* ---------------------------------------------------------------- PostgreSQL */

static void set_up(int up)
{
	atomic_store(&g.up, up);
	metric_set(g.m_up, up);
}

/* The connection is gone or unusable: drop it, log once, schedule the next attempt. */
static void pg_down(const char *why)
{
	if (g.conn)
		PQfinish(g.conn);
	g.conn = NULL;
	g.connecting = 0;
	set_up(0);
	metric_inc(g.m_connfail);
	if (!g.down_logged) {
		log_warn(MOD, "PostgreSQL down: %s; records go to %s until it is back", why,
		         g.pending_path);
		g.down_logged = 1;
	} else {
		log_debug(MOD, "PostgreSQL still down: %s (next attempt in %u ms)", why,
		          g.backoff_ms);
	}
	g.next_attempt_us = clock_now_us() + (uint64_t)g.backoff_ms * 1000u;
	g.backoff_ms = g.backoff_ms * 2 > g.backoff_max_ms ? g.backoff_max_ms : g.backoff_ms * 2;
}

/* 0 for a good result, else the error class: -ENOTCONN (connection lost, server shutting
 * down, read-only after a failover, deadlock, out of resources: worth another try later),
 * -EINVAL (the statement or the data: 22 data exception, 23 constraint, 42 syntax or
 * access), -EIO (anything else). err gets the server's message. */
static int pg_result(PGresult *r, char *err, size_t errlen)
{
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return 0;
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r ? PQresultErrorMessage(r) : NULL;
	one_line(err, errlen, msg && msg[0] ? msg : PQerrorMessage(g.conn));
	if (!state || PQstatus(g.conn) == CONNECTION_BAD)
		return -ENOTCONN;
	if (!strncmp(state, "08", 2) || !strncmp(state, "57", 2) || !strncmp(state, "53", 2) ||
	    !strncmp(state, "40", 2) || !strcmp(state, "25006"))
		return -ENOTCONN;
	if (!strncmp(state, "22", 2) || !strncmp(state, "23", 2) || !strncmp(state, "42", 2))
		return -EINVAL;
	return -EIO;
}

static int pg_exec(const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(g.conn, sql);
	int rc = pg_result(r, err, errlen);
	PQclear(r);
	return rc;
}

static void pg_rollback(void)
{
	char err[256];
	if (PQstatus(g.conn) == CONNECTION_OK)
		pg_exec("ROLLBACK", err, sizeof(err));
}

static int applied(const PGresult *r, unsigned version)
{
	for (int i = 0; i < PQntuples(r); i++) {
		if (strtoul(PQgetvalue(r, i, 0), NULL, 10) == version)
			return 1;
	}
	return 0;
}

/* Applies the migrations not yet applied, all in one transaction under an advisory lock
 * (several nodes may start at once). 0, or <0 with err naming the failing file. */
static int pg_migrate(char *err, size_t errlen)
{
	char msg[512];
	int rc = pg_exec("BEGIN", msg, sizeof(msg));
	if (rc == 0)
		rc = pg_exec("SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")", msg, sizeof(msg));
	if (rc == 0)
		rc = pg_exec(
		    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
		    " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
		    msg, sizeof(msg));
	if (rc < 0) {
		snprintf(err, errlen, "migrations: %s", msg);
		pg_rollback();
		return rc;
	}
	PGresult *have = PQexec(g.conn, "SELECT version FROM schema_migrations");
	rc = pg_result(have, msg, sizeof(msg));
	if (rc < 0) {
		snprintf(err, errlen, "migrations: %s", msg);
		goto fail;
	}
	unsigned n_applied = 0;
	for (unsigned i = 0; i <= db_n_migrations; i++) {
		const struct db_migration *m = i < db_n_migrations ? &db_migrations[i] : test_extra;
		if (!m || applied(have, m->version))
			continue;
		rc = pg_exec(m->sql, msg, sizeof(msg));
		if (rc < 0) {
			snprintf(err, errlen, "migration %s failed (nothing applied): %s", m->name,
			         msg);
			goto fail;
		}
		char ver[16];
		snprintf(ver, sizeof(ver), "%u", m->version);
		const char *params[2] = {ver, m->name};
		PGresult *r = PQexecParams(
		    g.conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
		    NULL, params, NULL, NULL, 0);
		rc = pg_result(r, msg, sizeof(msg));
		PQclear(r);
		if (rc < 0) {
			snprintf(err, errlen, "migration %s: %s", m->name, msg);
			goto fail;
		}
		n_applied++;
		log_info(MOD, "applying migration %s", m->name);
	}
	PQclear(have);
	rc = pg_exec("COMMIT", msg, sizeof(msg));
	if (rc < 0)
		snprintf(err, errlen, "migrations: commit: %s", msg);
	else if (n_applied)
		log_info(MOD, "%u migration(s) applied", n_applied);
	return rc;
fail:
	PQclear(have);
	pg_rollback();
	return rc;
}

static void notice_cb(void *arg, const char *message)
{
	(void)arg;
	if (log_enabled(LOG_DEBUG))
		log_line(LOG_DEBUG, MOD, message);
}

/* A new connection is open: migrate, prepare the statements, and call it up. */
static void pg_ready(void)
{
	char err[768];
	PQsetNoticeProcessor(g.conn, notice_cb, NULL);
	int rc = pg_migrate(err, sizeof(err));
	for (size_t i = 0; rc == 0 && i < sizeof(stmts) / sizeof(stmts[0]); i++) {
		PGresult *r = PQprepare(g.conn, stmts[i].name, stmts[i].sql, 1, NULL);
		char msg[512];
		rc = pg_result(r, msg, sizeof(msg));
		PQclear(r);
		if (rc < 0)
			snprintf(err, sizeof(err), "prepare %s: %s", stmts[i].name, msg);
	}
	if (rc < 0) {
		pg_down(err); /* logged once, like any other reason to be down */
		return;
	}
	const char *host = PQhost(g.conn);
	int ver = PQserverVersion(g.conn);
	log_info(MOD, "PostgreSQL up: %s port %s (server %d.%d)%s", host ? host : "?",
	         PQport(g.conn) ? PQport(g.conn) : "?", ver / 10000, ver % 10000,
	         atomic_load(&g.pending) > 0 ? "; replaying the spool" : "");
	g.down_logged = 0;
	g.backoff_ms = g.backoff_min_ms;
	set_up(1);
}

static void pg_connect_start(void)
{
	g.conn = PQconnectStartParams((const char *const *)g.keys, (const char *const *)g.vals, 0);
	if (!g.conn) {
		pg_down("out of memory");
		return;
	}
	if (PQstatus(g.conn) == CONNECTION_BAD) {
		char err[512];
		one_line(err, sizeof(err), PQerrorMessage(g.conn));
		pg_down(err);
		return;
	}
	g.connecting = 1;
	g.poll_st = PGRES_POLLING_WRITING;
	g.connect_deadline_us = clock_now_us() + (uint64_t)g.connect_timeout_s * 1000000u;
}

/* One step of the asynchronous connect, after the socket was ready (or the deadline). */
static void pg_connect_step(void)
{
	g.poll_st = PQconnectPoll(g.conn);
	if (g.poll_st == PGRES_POLLING_OK) {
		g.connecting = 0;
		pg_ready();
	} else if (g.poll_st == PGRES_POLLING_FAILED) {
		char err[512];
		one_line(err, sizeof(err), PQerrorMessage(g.conn));
		pg_down(err);
	}
}

/* While idle, the socket turns readable when the server closes it (shutdown, crash). */
static void pg_idle_input(void)
{
	if (PQconsumeInput(g.conn) == 0 || PQstatus(g.conn) == CONNECTION_BAD) {
		char err[512];
		one_line(err, sizeof(err), PQerrorMessage(g.conn));
		pg_down(err);
		return;
	}
	PGnotify *n;
	while ((n = PQnotifies(g.conn)))
		PQfreemem(n);
}

/* Writes the pending items in one transaction. 0 (committed), -ENOTCONN (nothing
 * committed, or unknown after a failed COMMIT: the records go to the spool, and a replay
 * is a no-op for what did commit), -EINVAL (item *bad was refused; rolled back). */
static int pg_tx(struct item *it, unsigned n, unsigned *bad, char *err, size_t errlen)
{
	int rc = pg_exec("BEGIN", err, errlen);
	if (rc < 0)
		return -ENOTCONN;
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		if (it[i].state)
			continue;
		const char *param = it[i].text;
		for (int s = 0; rc == 0 && s < 2 && kinds[it[i].kind].stmt[s]; s++) {
			PGresult *r = PQexecPrepared(g.conn, kinds[it[i].kind].stmt[s], 1, &param,
			                             NULL, NULL, 0);
			rc = pg_result(r, err, errlen);
			PQclear(r);
		}
		if (rc < 0)
			*bad = i;
	}
	if (rc == 0)
		return pg_exec("COMMIT", err, errlen) < 0 ? -ENOTCONN : 0;
	if (rc == -EIO)
		rc = -ENOTCONN; /* not the data's fault: keep it and try again later */
	pg_rollback();
	return rc;
}

/* Writes the pending items, setting their state: 1 written, -EINVAL refused (kept in
 * rejected.jsonl). Items still 0 after a -ENOTCONN return were not written. */
static int pg_write(struct item *it, unsigned n)
{
	char err[512];
	for (;;) {
		unsigned bad = 0;
		int rc = pg_tx(it, n, &bad, err, sizeof(err));
		if (rc == 0) {
			for (unsigned i = 0; i < n; i++) {
				if (it[i].state == 0)
					it[i].state = 1;
			}
			return 0;
		}
		if (rc != -EINVAL) {
			pg_down(err);
			return rc;
		}
		/* The others run again without it: at most n rounds. */
		reject(&it[bad], err);
	}
}

/* ---------------------------------------------------------------- durable records */

static int spool_mode(void)
{
	if (!atomic_load(&g.up) || atomic_load(&g.pending) > 0)
		return 1;
	/* db_close ran out of time: what is left goes to the spool at once. */
	return atomic_load(&g.stopping) && g.close_deadline_us &&
	       clock_now_us() > g.close_deadline_us;
}

/* Makes a batch of puts durable, then runs their done callbacks. */
static void flush_puts(struct item *it, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		it[i].text = json_dumps(it[i].rec, JSON_COMPACT);
		if (!it[i].text)
			it[i].state = -ENOMEM;
	}
	if (!spool_mode() && pg_write(it, n) == 0) {
		unsigned written = 0;
		for (unsigned i = 0; i < n; i++)
			written += it[i].state == 1;
		metric_add(g.m_written, written);
	}
	/* Whatever PostgreSQL did not take goes to the spool. */
	int spool_rc = spool_append(it, n);
	for (unsigned i = 0; i < n; i++) {
		int rc = it[i].state == 1 ? 0 : it[i].state < 0 ? it[i].state : spool_rc;
		if (it[i].done)
			it[i].done(it[i].arg,
			           rc ? (rc == -EINVAL || rc == -ENOMEM ? rc : -EIO) : 0);
		json_decref(it[i].rec);
		free(it[i].text);
	}
}

/* Reads up to max whole lines from the replay offset into a buffer (*bufp, mem_free).
 * Sets *n and returns the offset after the last line read, or -errno. */
static off_t spool_read(struct item *it, unsigned max, unsigned *n, char **bufp)
{
	size_t cap = READ_CHUNK;
	*n = 0;
	*bufp = NULL;
	for (;;) {
		off_t left = g.spool_size - g.replay_off;
		size_t want = (size_t)left < cap ? (size_t)left : cap;
		char *buf = mem_alloc(want + 1);
		if (!buf)
			return -ENOMEM;
		ssize_t r = pread(g.spool_fd, buf, want, g.replay_off);
		if (r != (ssize_t)want) {
			mem_free(buf);
			return r < 0 ? -errno : -EIO;
		}
		size_t pos = 0;
		unsigned k = 0;
		while (k < max && pos < want) {
			char *nl = memchr(buf + pos, '\n', want - pos);
			if (!nl)
				break;
			it[k].line = buf + pos;
			it[k].line_len = (size_t)(nl - (buf + pos));
			*nl = '\0';
			pos = (size_t)(nl - buf) + 1;
			k++;
		}
		if (k == 0 && want < (size_t)left) {
			mem_free(buf); /* one line longer than the chunk: read more at once */
			cap *= 2;
			continue;
		}
		*n = k;
		*bufp = buf;
		return g.replay_off + (off_t)pos;
	}
}

/* Replays one batch of spool lines into PostgreSQL. */
static void replay_step(void)
{
	unsigned max = test_replay_batch ? test_replay_batch : REPLAY_DEFAULT;
	if (max > BATCH_MAX)
		max = BATCH_MAX;
	struct item it[BATCH_MAX];
	memset(it, 0, sizeof(it));
	unsigned n = 0;
	char *buf = NULL;
	off_t end = spool_read(it, max, &n, &buf);
	if (end < 0) {
		if (log_ratelimit_ok(&g.rl_write))
			log_err(MOD, "cannot read %s: %s", g.pending_path, strerror((int)-end));
		return;
	}
	if (n == 0) {
		/* The count and the file disagree (cannot happen): trust the file. */
		g.replay_off = g.spool_size;
		spool_set_pending(0);
	}
	for (unsigned i = 0; i < n; i++) {
		json_error_t jerr;
		json_t *o = json_loadb(it[i].line, it[i].line_len, 0, &jerr);
		int kind = kind_by_name(json_string_value(json_object_get(o, "kind")));
		json_t *rec = json_object_get(o, "rec");
		if (kind < 0 || !json_is_object(rec) || !kinds[kind].valid(rec)) {
			reject(&it[i], o ? "not a valid spool record" : jerr.text);
		} else {
			it[i].kind = (enum db_rec)kind;
			it[i].rec = json_incref(rec);
			it[i].text = json_dumps(rec, JSON_COMPACT);
			if (!it[i].text)
				end = -ENOMEM;
		}
		json_decref(o);
	}
	if (end >= 0 && pg_write(it, n) == 0) {
		unsigned done = 0;
		for (unsigned i = 0; i < n; i++)
			done += it[i].state == 1;
		metric_add(g.m_replayed, done);
		if (offset_write(end) == 0) {
			g.replay_off = end;
			spool_set_pending(atomic_load(&g.pending) - (long)n);
		}
	}
	for (unsigned i = 0; i < n; i++) {
		json_decref(it[i].rec);
		free(it[i].text);
	}
	mem_free(buf);
	if (g.replay_off == g.spool_size && g.spool_size > 0) {
		/* Offset first, then truncate: see the comment at the top. */
		if (offset_write(0) == 0) {
			if (ftruncate(g.spool_fd, 0) < 0 || fsync(g.spool_fd) < 0) {
				log_err(MOD, "cannot truncate %s: %s", g.pending_path,
				        strerror(errno));
				return;
			}
			g.replay_off = 0;
			g.spool_size = 0;
			spool_set_pending(0);
			log_info(MOD, "spool replayed into PostgreSQL");
		}
	}
}

/* ---------------------------------------------------------------- queries */

/* One column value as JSON, by its type. NULL only on OOM. */
static json_t *pg_value(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return json_null();
	const char *v = PQgetvalue(r, row, col);
	switch (PQftype(r, col)) {
	case OID_BOOL:
		return json_boolean(v[0] == 't');
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_OID:
		return json_integer((json_int_t)strtoll(v, NULL, 10));
	case OID_NUMERIC:
	case OID_FLOAT4:
	case OID_FLOAT8: {
		char *end;
		if (!strpbrk(v, ".eEnN")) {
			errno = 0;
			long long i = strtoll(v, &end, 10);
			if (!errno && !*end)
				return json_integer((json_int_t)i);
		}
		double d = strtod(v, &end);
		if (!*end && isfinite(d))
			return json_real(d);
		return json_string(v); /* NaN, Infinity, or beyond a double */
	}
	case OID_JSON:
	case OID_JSONB: {
		json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
		return j ? j : json_string(v);
	}
	default:
		return json_string(v);
	}
}

static json_t *pg_rows(const PGresult *r)
{
	json_t *rows = json_array();
	int nr = PQntuples(r), nf = PQnfields(r);
	for (int i = 0; rows && i < nr; i++) {
		json_t *o = json_object();
		for (int c = 0; o && c < nf; c++) {
			json_t *v = pg_value(r, i, c);
			if (!v || json_object_set_new(o, PQfname(r, c), v) < 0) {
				json_decref(o);
				o = NULL;
			}
		}
		if (!o || json_array_append_new(rows, o) < 0) {
			json_decref(rows);
			rows = NULL;
		}
	}
	return rows;
}

static void run_query(struct msg *m)
{
	int rc = -ENOTCONN;
	json_t *rows = NULL;
	if (atomic_load(&g.stopping)) {
		rc = -ECANCELED;
	} else if (atomic_load(&g.up)) {
		PGresult *r = PQexecParams(g.conn, m->sql, m->n, NULL,
		                           (const char *const *)m->params, NULL, NULL, 0);
		char err[512];
		rc = pg_result(r, err, sizeof(err));
		if (rc == 0) {
			rows = pg_rows(r);
			if (!rows)
				rc = -ENOMEM;
		} else {
			metric_inc(g.m_qerr);
			if (log_ratelimit_ok(&g.rl_query))
				log_warn(MOD, "query failed: %s", err);
		}
		PQclear(r);
		if (rc == -ENOTCONN)
			pg_down(err);
	}
	m->rows(m->arg, rc, rows);
}

static void msg_free(struct msg *m)
{
	for (int i = 0; m->params && i < m->n; i++)
		mem_free(m->params[i]);
	mem_free(m->params);
	mem_free(m->sql);
}

/* ---------------------------------------------------------------- the thread */

/* Handles what is in the mailbox (at most a few batches). Returns 1 when it emptied it. */
static int process_mailbox(void)
{
	struct item batch[BATCH_MAX];
	unsigned n = 0;
	int empty = 0;
	for (unsigned taken = 0; taken < 4 * BATCH_MAX; taken++) {
		struct msg m;
		if (mbox_take(g.mb, &m) < 0) {
			empty = 1;
			break;
		}
		if (m.type == MSG_PUT) {
			memset(&batch[n], 0, sizeof(batch[n]));
			batch[n].kind = m.kind;
			batch[n].rec = m.rec;
			batch[n].done = m.done;
			batch[n].arg = m.arg;
			if (++n == BATCH_MAX) {
				flush_puts(batch, n);
				n = 0;
			}
			continue;
		}
		if (n) {
			flush_puts(batch, n); /* keep the order: earlier puts before this query */
			n = 0;
		}
		if (m.type == MSG_QUERY) {
			run_query(&m);
			msg_free(&m);
		}
	}
	if (n)
		flush_puts(batch, n);
	return empty;
}

static void *db_thread(void *arg)
{
	(void)arg;
	for (;;) {
		/* Read the flag first: every post completed before it was set, so an empty
		 * mailbox after it means nothing is left. */
		int stopping = atomic_load(&g.stopping);
		int empty = process_mailbox();
		uint64_t now = clock_now_us();
		if (stopping && !g.close_deadline_us)
			g.close_deadline_us = now + (uint64_t)g.close_timeout_ms * 1000u;
		if (stopping && empty)
			break;
		if (!g.conn && !stopping && now >= g.next_attempt_us)
			pg_connect_start();
		if (g.conn && g.connecting && now >= g.connect_deadline_us) {
			char err[64];
			snprintf(err, sizeof(err), "no connection within %u s",
			         g.connect_timeout_s);
			pg_down(err);
		}
		if (!stopping && atomic_load(&g.up) && atomic_load(&g.pending) > 0) {
			replay_step();
			continue; /* the mailbox is served between batches */
		}

		struct pollfd pfd[2] = {{.fd = mbox_fd(g.mb), .events = POLLIN}};
		nfds_t nfd = 1;
		int sock = g.conn ? PQsocket(g.conn) : -1;
		if (sock >= 0 && (g.connecting || atomic_load(&g.up))) {
			pfd[1].fd = sock;
			pfd[1].events =
			    g.connecting && g.poll_st == PGRES_POLLING_WRITING ? POLLOUT : POLLIN;
			nfd = 2;
		}
		int64_t wait_ms = 1000; /* also how soon a stop without a message is seen */
		if (!empty) {
			wait_ms = 0;
		} else if (g.connecting) {
			int64_t left = (int64_t)(g.connect_deadline_us - now) / 1000;
			wait_ms = left < wait_ms ? left : wait_ms;
		} else if (!g.conn && !stopping) {
			int64_t left = (int64_t)(g.next_attempt_us - now) / 1000 + 1;
			wait_ms = left < wait_ms ? left : wait_ms;
		}
		if (wait_ms < 0)
			wait_ms = 0;
		int pr = poll(pfd, nfd, (int)wait_ms);
		if (pr < 0 && errno != EINTR) {
			log_err(MOD, "poll: %s", strerror(errno));
			continue;
		}
		if (pr <= 0)
			continue;
		if (pfd[0].revents)
			mbox_drain_fd(g.mb);
		if (nfd == 2 && pfd[1].revents) {
			if (g.connecting)
				pg_connect_step();
			else
				pg_idle_input();
		}
	}
	if (g.conn)
		PQfinish(g.conn);
	g.conn = NULL;
	set_up(0);
	return NULL;
}

/* ---------------------------------------------------------------- API */

static int kv_add(unsigned *n, const char *k, const char *v)
{
	g.keys[*n] = mem_strdup(k);
	g.vals[*n] = mem_strdup(v);
	(*n)++;
	return g.keys[*n - 1] && g.vals[*n - 1] ? 0 : -ENOMEM;
}

/* Parses the conninfo (key=value or URI) into keyword/value arrays, adding our defaults
 * where the operator set nothing. 0, -EINVAL (logged; the conninfo itself never is, it
 * may hold a password), -ENOMEM. */
static int conninfo_parse(const char *conninfo)
{
	static const char *const defaults[][2] = {
	    {"target_session_attrs", "read-write"}, /* failover: only the primary will do */
	    {"fallback_application_name", "vacsd"},
	    {"connect_timeout", "5"},
	    {"keepalives_idle", "10"}, /* TCP: a vanished server is noticed in about 20 s */
	    {"keepalives_interval", "3"},
	    {"keepalives_count", "3"},
	    {"tcp_user_timeout", "20000"},
	};
	const unsigned n_def = sizeof(defaults) / sizeof(defaults[0]);
	char *errmsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
	if (!opts) {
		char err[256];
		one_line(err, sizeof(err), errmsg ? errmsg : "out of memory");
		log_err(MOD, "bad PostgreSQL conninfo (store.postgres_env): %s", err);
		PQfreemem(errmsg);
		return errmsg ? -EINVAL : -ENOMEM;
	}
	unsigned total = n_def;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		total++;
	int rc = -ENOMEM;
	g.keys = mem_zalloc((total + 1) * sizeof(char *));
	g.vals = mem_zalloc((total + 1) * sizeof(char *));
	if (!g.keys || !g.vals)
		goto out;
	unsigned n = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (o->val && kv_add(&n, o->keyword, o->val) < 0)
			goto out;
	}
	for (unsigned d = 0; d < n_def; d++) {
		int set = 0;
		for (PQconninfoOption *o = opts; o->keyword; o++)
			set |= o->val && strcmp(o->keyword, defaults[d][0]) == 0;
		if (!set && kv_add(&n, defaults[d][0], defaults[d][1]) < 0)
			goto out;
	}
	rc = 0;
out:
	PQconninfoFree(opts);
	return rc;
}

static char *path_join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *p = mem_alloc(n);
	if (p)
		snprintf(p, n, "%s/%s", a, b);
	return p;
}

static void state_free(void)
{
	for (unsigned i = 0; g.keys && g.keys[i]; i++)
		mem_free(g.keys[i]);
	for (unsigned i = 0; g.vals && g.vals[i]; i++)
		mem_free(g.vals[i]);
	mem_free(g.keys);
	mem_free(g.vals);
	mem_free(g.dir);
	mem_free(g.pending_path);
	mem_free(g.offset_path);
	mem_free(g.rejected_path);
	if (g.spool_fd >= 0)
		close(g.spool_fd);
	if (g.offset_fd >= 0)
		close(g.offset_fd);
	mbox_destroy(g.mb);
	memset(&g, 0, sizeof(g));
	g.spool_fd = g.offset_fd = -1;
}

int db_init(const struct db_config *c)
{
	if (!c || g.started || g.mb)
		return -EINVAL;
	if (!c->conninfo || !c->conninfo[0]) {
		log_info(MOD, "no PostgreSQL (store.postgres_env unset): call records stay in the "
		              "spool files only; the dialer, WhatsApp and the dashboard are off");
		return 0;
	}
	if (!c->spool_dir || !c->spool_dir[0]) {
		log_err(MOD, "no spool directory");
		return -EINVAL;
	}
	g.backoff_min_ms = c->backoff_min_ms ? c->backoff_min_ms : 200;
	g.backoff_max_ms = c->backoff_max_ms ? c->backoff_max_ms : 10000;
	if (g.backoff_max_ms < g.backoff_min_ms)
		g.backoff_max_ms = g.backoff_min_ms;
	g.backoff_ms = g.backoff_min_ms;
	g.connect_timeout_s = c->connect_timeout_s ? c->connect_timeout_s : 10;
	g.close_timeout_ms = c->close_timeout_ms ? c->close_timeout_ms : 5000;
	g.m_up = metric_get(METRIC_GAUGE, "vacs_db_pg_up", "1 while PostgreSQL is connected");
	g.m_written = metric_get(METRIC_COUNTER, "vacs_db_records_written_total",
	                         "Records committed to PostgreSQL directly");
	g.m_spooled = metric_get(METRIC_COUNTER, "vacs_db_records_spooled_total",
	                         "Records appended to the local spool");
	g.m_replayed = metric_get(METRIC_COUNTER, "vacs_db_records_replayed_total",
	                          "Spooled records committed to PostgreSQL");
	g.m_rejected = metric_get(METRIC_COUNTER, "vacs_db_records_rejected_total",
	                          "Records PostgreSQL refused (kept in store/rejected.jsonl)");
	g.m_qerr = metric_get(METRIC_COUNTER, "vacs_db_query_errors_total", "Failed db queries");
	g.m_full = metric_get(METRIC_COUNTER, "vacs_db_queue_full_total",
	                      "db_put/db_query refused: the db mailbox was full");
	g.m_spool = metric_get(METRIC_GAUGE, "vacs_db_spool_records",
	                       "Records in the spool waiting for PostgreSQL");
	g.m_connfail = metric_get(METRIC_COUNTER, "vacs_db_connect_failures_total",
	                          "Failed PostgreSQL connection attempts and lost connections");
	int rc = conninfo_parse(c->conninfo);
	if (rc < 0)
		goto fail;
	rc = -ENOMEM;
	g.dir = path_join(c->spool_dir, "store");
	if (!g.dir)
		goto fail;
	g.pending_path = path_join(g.dir, "pending.jsonl");
	g.offset_path = path_join(g.dir, "pending.offset");
	g.rejected_path = path_join(g.dir, "rejected.jsonl");
	if (!g.pending_path || !g.offset_path || !g.rejected_path)
		goto fail;
	rc = spool_open();
	if (rc < 0)
		goto fail;
	rc = mbox_create(&g.mb, sizeof(struct msg), c->queue_len ? c->queue_len : DB_QUEUE_DEFAULT);
	if (rc < 0)
		goto fail;
	set_up(0);
	atomic_store(&g.accepting, 1);
	rc = -pthread_create(&g.thread, NULL, db_thread, NULL);
	if (rc < 0) {
		log_err(MOD, "cannot start the db thread: %s", strerror(-rc));
		goto fail;
	}
	pthread_setname_np(g.thread, "db");
	g.started = 1;
	return 0;
fail:
	state_free();
	return rc;
}

void db_close(void)
{
	if (g.started) {
		atomic_store(&g.accepting, 0);
		while (atomic_load(&g.inflight))
			sched_yield();
		atomic_store(&g.stopping, 1);
		struct msg m = {.type = MSG_STOP};
		mbox_post(g.mb, &m); /* when full, the thread is busy and sees the flag anyway */
		pthread_join(g.thread, NULL);
	}
	state_free();
}

int db_pg_up(void)
{
	return atomic_load(&g.up);
}

long db_spool_pending(void)
{
	return atomic_load(&g.pending);
}

/* Posts m unless the module is off or closing. 0, -ENOTCONN, -EAGAIN. */
static int post(struct msg *m)
{
	atomic_fetch_add(&g.inflight, 1);
	int rc = -ENOTCONN;
	if (atomic_load(&g.accepting)) {
		rc = mbox_post(g.mb, m);
		if (rc == -EAGAIN)
			metric_inc(g.m_full);
	}
	atomic_fetch_sub(&g.inflight, 1);
	return rc;
}

int db_put(enum db_rec kind, json_t *rec, db_done_cb done, void *arg)
{
	int rc = -EINVAL;
	if ((unsigned)kind < DB_REC__COUNT && rec && kinds[kind].valid(rec)) {
		struct msg m = {
		    .type = MSG_PUT, .kind = kind, .rec = rec, .done = done, .arg = arg};
		rc = post(&m);
		if (rc == 0)
			return 0;
	}
	json_decref(rec);
	return rc;
}

int db_query(const char *sql, const char *const *params, int n, db_rows_cb cb, void *arg)
{
	if (!sql || !cb || n < 0 || (n > 0 && !params))
		return -EINVAL;
	if (!atomic_load(&g.up))
		return -ENOTCONN;
	struct msg m = {.type = MSG_QUERY, .rows = cb, .arg = arg, .n = n};
	m.sql = mem_strdup(sql);
	m.params = n ? mem_zalloc((size_t)n * sizeof(char *)) : NULL;
	int rc = -ENOMEM;
	if (!m.sql || (n && !m.params))
		goto fail;
	for (int i = 0; i < n; i++) {
		if (params[i] && !(m.params[i] = mem_strdup(params[i])))
			goto fail;
	}
	rc = post(&m);
	if (rc == 0)
		return 0;
fail:
	msg_free(&m);
	return rc;
}

/* ---- db_query_wait: a worker thread waits for the db thread's answer ---- */

/* Shared by the waiter and the callback: whoever lets go last frees it (a waiter that
 * timed out leaves before the callback runs). */
struct qwait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, rc, refs;
	json_t *rows;
};

static void qwait_unref(struct qwait *w)
{
	pthread_mutex_lock(&w->mu);
	int last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (last) {
		json_decref(w->rows);
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		mem_free(w);
	}
}

static void qwait_done(void *arg, int rc, json_t *rows)
{
	struct qwait *w = arg;
	pthread_mutex_lock(&w->mu);
	w->rc = rc;
	w->rows = rows;
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	qwait_unref(w);
}

int db_query_wait(const char *sql, const char *const *params, int n, json_t **rows,
                  unsigned timeout_ms)
{
	if (rows)
		*rows = NULL;
	struct qwait *w = mem_zalloc(sizeof(*w));
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->refs = 2;
	int rc = db_query(sql, params, n, qwait_done, w);
	if (rc) {
		w->refs = 1;
		qwait_unref(w);
		return rc;
	}
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	uint64_t ns =
	    (uint64_t)dl.tv_nsec + (uint64_t)(timeout_ms ? timeout_ms : 10000u) * 1000000u;
	dl.tv_sec += (time_t)(ns / 1000000000u);
	dl.tv_nsec = (long)(ns % 1000000000u);
	pthread_mutex_lock(&w->mu);
	while (!w->done && rc == 0)
		rc = pthread_cond_timedwait(&w->cv, &w->mu, &dl);
	if (w->done) {
		rc = w->rc;
		if (rows && rc == 0) {
			*rows = w->rows;
			w->rows = NULL;
		}
	} else {
		rc = -ETIMEDOUT;
	}
	pthread_mutex_unlock(&w->mu);
	qwait_unref(w);
	return rc;
}
