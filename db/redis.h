/* Redis primitives of VACS: job streams, delayed jobs, dedupe, the slot semaphore, node
 * liveness and call ownership, dashboard pub/sub; one synchronous connection that
 * reconnects by itself. Key layout: docs/redis-keys.md. */
#ifndef VACS_DB_REDIS_H
#define VACS_DB_REDIS_H

#include <stddef.h>
#include <stdint.h>

/* A connection. Opaque; used from ONE thread only (the one that created it, later the
 * io/db thread). Every call is a blocking hiredis round trip bounded by the command
 * timeout (plus block_ms for db_redis_job_claim). The process must ignore SIGPIPE (vacsd's
 * main does): hiredis writes to a socket the server may have closed.
 *
 * Errors common to every call below:
 *   -ENOTCONN  not connected: the server is unreachable, the connection broke or timed out
 *              during this call (the command may or may not have run), or the reconnect
 *              backoff has not elapsed yet (then no I/O at all is attempted);
 *   -EPROTO    the server answered with an error or an unexpected reply (logged, rate
 *              limited);
 *   -ENAMETOOLONG  prefix + name longer than DB_REDIS_KEY_MAX - 1;
 *   -ENOMEM, -EINVAL (NULL or empty arguments). */
struct db_redis;

#define DB_REDIS_KEY_MAX 512u /* prefix + key name, with the NUL */
#define DB_REDIS_ID_MAX  48u  /* a stream entry id "ms-seq", with the NUL */

struct db_redis_opts {
	const char *prefix;          /* prepended to every key and channel ("vacs:"); NULL = "" */
	unsigned connect_timeout_ms; /* 0 = 1000 */
	unsigned cmd_timeout_ms;     /* socket timeout of one command; 0 = 1000 */
	unsigned backoff_min_ms;     /* first wait after a failed reconnect; 0 = 100 */
	unsigned backoff_max_ms;     /* the wait doubles up to this; 0 = 10000 */
};

/* A parsed URL. `redis://[[user]:password@]host[:port][/db]` (port 6379 by default, host
 * may be [IPv6]) or `unix:///path/redis.sock[?db=N][&password=P]`. */
struct db_redis_url {
	char host[256]; /* "" for a unix socket */
	uint16_t port;
	char path[108]; /* unix socket path, "" for TCP */
	char user[64];  /* "" = default user */
	char password[256];
	unsigned db;
};

/* Parses url into *out. 0, or -EINVAL with a one-line reason in err (which part is
 * wrong; the password is never copied into it). err may be NULL. Pure, any thread. */
int db_redis_url_parse(const char *url, struct db_redis_url *out, char *err, size_t errlen);

/* Creates a connection to url with options o (NULL = defaults; strings are copied) and
 * tries to connect once. An unreachable server is NOT an error: *out is set, the object
 * starts down and reconnects on later calls (see db_redis_up). Returns 0, -EINVAL for a
 * bad URL or option (reason logged), -ENOMEM. */
int db_redis_create(const char *url, const struct db_redis_opts *o, struct db_redis **out);
/* Closes and frees r; NULL accepted. */
void db_redis_destroy(struct db_redis *r);

/* 1 while connected (the last I/O worked), 0 while down. No I/O. */
int db_redis_up(const struct db_redis *r);
/* One PING round trip (reconnecting first if the backoff allows). 0 or -errno. */
int db_redis_ping(struct db_redis *r);

/* ---- job streams: a consumer group delivers each job to exactly one consumer ---- */

/* One delivered job. json is owned by the job: free with db_redis_jobs_free(). */
struct db_redis_job {
	char id[DB_REDIS_ID_MAX]; /* stream entry id, for db_redis_job_ack */
	char *json;               /* NUL-terminated payload ("" if the entry had none) */
	size_t json_len;
	int reclaimed; /* 1: taken over from a consumer that did not ack within min_idle */
};

/* Appends json to the stream (XADD). When id is not NULL the new entry id is copied into
 * it (idlen >= DB_REDIS_ID_MAX). 0 or -errno. */
int db_redis_job_add(struct db_redis *r, const char *stream, const char *json, char *id,
                     size_t idlen);
/* Creates the consumer group at the start of the stream, creating the stream if needed
 * (XGROUP CREATE ... 0 MKSTREAM). An existing group is success. 0 or -errno. */
int db_redis_group_ensure(struct db_redis *r, const char *stream, const char *group);
/* Fills jobs[0..*n) with at most max jobs for `consumer`: first jobs pending longer than
 * min_idle_ms on other (dead) consumers (XAUTOCLAIM, reclaimed = 1), then new ones
 * (XREADGROUP >). Waits up to block_ms (at most 60000) for new jobs only when nothing was
 * reclaimed (0 = do not wait); min_idle_ms = 0 skips the reclaim step. Claimed jobs stay pending
 * until db_redis_job_ack; a consumer that never acks loses them to another after min_idle_ms, so
 * min_idle_ms must exceed the time a live consumer needs between claim and ack. Returns 0 (*n may
 * be 0), -ENOENT when the group does not exist, or -errno; on error *n = 0 and jobs read but not
 * returned stay pending (they come back after min_idle_ms). */
int db_redis_job_claim(struct db_redis *r, const char *stream, const char *group,
                       const char *consumer, size_t max, unsigned block_ms, unsigned min_idle_ms,
                       struct db_redis_job *jobs, size_t *n);
/* Frees the payloads of jobs[0..n) and clears them. */
void db_redis_jobs_free(struct db_redis_job *jobs, size_t n);
/* Acknowledges and deletes a job (XACK + XDEL). 1 when it was pending, 0 when it was not
 * (already acked), or -errno. */
int db_redis_job_ack(struct db_redis *r, const char *stream, const char *group, const char *id);

/* ---- delayed jobs: a sorted set scored by due time, moved into a stream when due ---- */

/* Schedules json for due_ms (ms since the Unix epoch). The payload is the set member:
 * deferring an identical payload again only moves its due time. 0 or -errno. */
int db_redis_job_defer(struct db_redis *r, const char *zset, const char *json, uint64_t due_ms);
/* Atomically (one Lua script) moves up to max items with due_ms <= now_ms from zset to
 * stream, oldest first; two nodes running it at once never move an item twice. Returns
 * the number moved, or -errno. */
int db_redis_job_due(struct db_redis *r, const char *zset, const char *stream, uint64_t now_ms,
                     unsigned max);

/* ---- dedupe ---- */

/* Marks key as seen for ttl_s seconds (SET NX EX). 1 the first time, 0 for a duplicate
 * within the TTL, or -errno. */
int db_redis_dedupe(struct db_redis *r, const char *key, unsigned ttl_s);

/* ---- slot semaphore: at most `limit` holders at a time over all nodes ----
 * Time is the caller's now_ms (wall clock, ms since the epoch, clock_wall_ms()) in every
 * slot and node function: the nodes' clocks must agree (NTP) to well within a lease. A
 * lease ends at now_ms + lease_ms unless renewed; expired leases are dropped before each
 * acquire, so the slots of a dead node come back. */

/* Takes a slot of semaphore `name` for holder (unique per use, e.g. the call id). Holding
 * already renews. 1 acquired, 0 full, or -errno. */
int db_redis_slot_acquire(struct db_redis *r, const char *name, unsigned limit, const char *holder,
                          uint64_t lease_ms, uint64_t now_ms);
/* Extends holder's lease to now_ms + lease_ms. 1 renewed, 0 when the lease had already
 * expired or was never held (the slot may be someone else's now), or -errno. */
int db_redis_slot_renew(struct db_redis *r, const char *name, const char *holder, uint64_t lease_ms,
                        uint64_t now_ms);
/* Gives holder's slot back. 1 released, 0 not held, or -errno. */
int db_redis_slot_release(struct db_redis *r, const char *name, const char *holder);
/* Number of unexpired leases at now_ms, or -errno. */
int db_redis_slot_count(struct db_redis *r, const char *name, uint64_t now_ms);

/* ---- node liveness and call ownership ---- */

/* Called with each string of a list; s is NUL-terminated and valid during the call only. */
typedef void (*db_redis_str_cb)(void *arg, const char *s, size_t len);

/* Marks node_id alive until now_ms + ttl_ms. 0 or -errno. */
int db_redis_node_beat(struct db_redis *r, const char *node_id, uint64_t ttl_ms, uint64_t now_ms);
/* Calls cb for each node alive (dead = 0) or dead (dead = 1: missed its beat and not reaped
 * yet) at now_ms. Returns the number of nodes listed, or -errno. */
int db_redis_nodes_list(struct db_redis *r, int dead, uint64_t now_ms, db_redis_str_cb cb,
                        void *arg);
/* Records that node_id owns call_id (SADD); _disown removes it. 0 or -errno. */
int db_redis_call_own(struct db_redis *r, const char *node_id, const char *call_id);
int db_redis_call_disown(struct db_redis *r, const char *node_id, const char *call_id);
/* Calls cb for each call owned by node_id. Returns the count, or -errno. */
int db_redis_node_calls(struct db_redis *r, const char *node_id, db_redis_str_cb cb, void *arg);
/* Takes over a dead node, atomically: when node_id's beat has expired at now_ms, removes
 * it from the node set, calls cb for each call it owned and deletes that list. Only one
 * caller wins a given death. Returns the number of calls handed over (0 or more) to the
 * winner, -ENOENT when the node is alive, unknown or already reaped (by another caller),
 * or another -errno. */
int db_redis_node_reap(struct db_redis *r, const char *node_id, uint64_t now_ms, db_redis_str_cb cb,
                       void *arg);

/* ---- pub/sub ---- */

/* Publishes msg[0..len) (binary-safe) on prefix + channel. Returns the number of
 * subscribers that received it, or -errno. */
int db_redis_publish(struct db_redis *r, const char *channel, const void *msg, size_t len);

#endif
