/* PostgreSQL store of VACS: durable records (CDRs, call events) with a local fsync'd spool
 * while the server is down, schema migrations, and reads for the REST API. */
#ifndef VACS_DB_DB_H
#define VACS_DB_DB_H

/*
 * One `db` thread owns the libpq connection; every other thread talks to it through a
 * bounded mailbox (DB_QUEUE_DEFAULT messages unless configured), so a slow query never
 * delays call set-up. Callbacks (db_done_cb, db_rows_cb) run on the db thread: they must
 * be short and hand their result to their own thread (a mailbox post). docs/store.md
 * describes the spool, the replay and the schema.
 */

struct json_t; /* jansson's json_t */

/* Kinds of durable record. The value is also the order of the table in docs/store.md;
 * new kinds are added at the end (the spool stores the kind by name, not by number). */
enum db_rec {
	DB_REC_CALL = 0,   /* a CDR object -> calls row (+ transfers rows) */
	DB_REC_CALL_EVENT, /* {call_id, seq, ts, event, detail} -> call_events row */
	/* A signed WhatsApp webhook body (wa/): {sha256, received, body} -> whatsapp_inbox
	 * row, or {sha256, received, raw, error} (a body that did not parse) -> dead_letters */
	DB_REC_WA_BATCH,
	DB_REC__COUNT,
};

#define DB_QUEUE_DEFAULT 4096u /* mailbox messages (about 64 bytes each) */

struct db_config {
	const char *conninfo;       /* libpq conninfo or URI, may list several hosts;
	                             * NULL or "" = no PostgreSQL (the module stays off) */
	const char *spool_dir;      /* the spool goes to <spool_dir>/store/ */
	unsigned backoff_min_ms;    /* first wait after a failed connect; 0 = 200 */
	unsigned backoff_max_ms;    /* the wait doubles up to this; 0 = 10000 */
	unsigned connect_timeout_s; /* one connection attempt, all hosts; 0 = 10 */
	unsigned queue_len;         /* mailbox capacity; 0 = DB_QUEUE_DEFAULT */
	unsigned close_timeout_ms;  /* db_close: after this, the rest goes to the spool;
	                             * 0 = 5000 */
};

/* Runs on the db thread once a record is durable (rc 0: committed in PostgreSQL or
 * appended and fsync'd to the spool), or could not be kept (rc -EIO: the spool could not
 * be written either; -EINVAL: PostgreSQL rejected the record's content, which was then
 * written to <spool_dir>/store/rejected.jsonl). */
typedef void (*db_done_cb)(void *arg, int rc);
/* Runs on the db thread with the result of db_query(). rc 0: rows is a JSON array of
 * objects, one per row, keyed by column name, and the callback OWNS it (json_decref it,
 * or pass it on). rc < 0: rows is NULL; -ENOTCONN (no connection, or it broke during the
 * query), -EINVAL (the server rejected the statement or its parameters: syntax, type,
 * constraint), -EIO (any other server error), -ECANCELED (db_close ran first). */
typedef void (*db_rows_cb)(void *arg, int rc, struct json_t *rows);

/* Starts the db thread. With a conninfo it connects in the background (an unreachable
 * server is not an error: records go to the spool until it answers), applying the
 * pending migrations at each (re)connect. Called once, from main, before any other db_
 * function. 0, -EINVAL (bad conninfo or config: one log line says why), -ENOMEM, -errno
 * (spool directory or thread). Without a conninfo returns 0 and the module is off. */
int db_init(const struct db_config *c);
/* Stops the db thread: every record already accepted by db_put is made durable
 * (PostgreSQL, or the spool after close_timeout_ms) and its done callback run; queries
 * still queued get -ECANCELED. Producers must have stopped calling db_put. Main thread.
 * Safe when db_init failed or was never called. */
void db_close(void);

/* Queues one durable record; any thread. Steals `rec` (freed in every case). done (may
 * be NULL) runs later on the db thread with arg. Returns 0 (done will run exactly once),
 * or, with done NOT run: -EAGAIN when the mailbox is full (the caller logs it; never
 * blocks), -EINVAL when rec lacks a required field (CALL: call_id and start strings;
 * CALL_EVENT: call_id, ts and event strings, seq integer >= 0; WA_BATCH: sha256 and
 * received strings, and a body object or a raw and an error string), -ENOTCONN when the
 * module is off or closed, -ENOMEM. */
int db_put(enum db_rec kind, struct json_t *rec, db_done_cb done, void *arg);

/* Runs one parameterised statement ($1..$n, text parameters; NULL entries are SQL NULL)
 * on the db thread; cb gets the rows (see db_rows_cb: int2/4/8, oid, numeric, float ->
 * numbers, bool -> true/false, json/jsonb -> parsed JSON, NULL -> null, anything else ->
 * string). sql and params are copied. Any thread. 0 (cb will run exactly once), or with
 * cb NOT run: -ENOTCONN when PostgreSQL is down or the module off, -EAGAIN mailbox full,
 * -EINVAL (NULL sql or cb, n < 0), -ENOMEM. Records still in the spool are not visible
 * to queries until replayed. */
int db_query(const char *sql, const char *const *params, int n, db_rows_cb cb, void *arg);

/* db_query for a worker thread that may block (the dialer's, WhatsApp's; never the db,
 * sip, media or http thread): waits up to timeout_ms (0 = 10000) for the answer. 0 with
 * *rows the array (owned by the caller; rows may be NULL: then dropped), or the errors of
 * db_query and db_rows_cb, or -ETIMEDOUT (the query may still run; its rows are freed). */
int db_query_wait(const char *sql, const char *const *params, int n, struct json_t **rows,
                  unsigned timeout_ms);

/* 1 while connected to a read-write PostgreSQL with the schema migrated, else 0. Any
 * thread (an atomic load). */
int db_pg_up(void);
/* Records in the spool not yet replayed into PostgreSQL. Any thread (an atomic load). */
long db_spool_pending(void);

/* The kind's name in the spool and in logs ("call", "call_event"); NULL if out of range. */
const char *db_rec_name(enum db_rec kind);

#endif
