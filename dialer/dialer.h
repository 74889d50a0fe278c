/* The campaign dialer: turns the leads of running campaigns into calls, paced and capped
 * across every vacsd node sharing one Redis and one PostgreSQL. docs/dialer.md. */
#ifndef VACS_DIALER_DIALER_H
#define VACS_DIALER_DIALER_H

#include <stddef.h>
#include <stdint.h>

struct conf;

struct dialer_config {
	const char *redis_url;    /* required */
	const char *redis_prefix; /* key prefix, NULL = "vacs:" */
	const char *node_id;      /* consumer and lease owner name; NULL/"" = host-pid */
	unsigned max_calls;       /* calls at once over all nodes (the VAPI account's limit) */
	unsigned tick_ms;         /* the scheduling period; 0 = 200 */
	unsigned lease_s;         /* slot lease, renewed every second while a call lives; 0 = 30 */
	unsigned reclaim_s;       /* a job claimed and not acked this long goes to another node;
	                           * 0 = 30 */
	unsigned sweep_s;         /* queued jobs older than this are put back in the stream;
	                           * 0 = 60 */
	unsigned unanswered_hold_s; /* the account's slot of a call that was never answered is
	                             * held this long after it ends (VAPI's connect timeout) */
	unsigned backoff_min_ms, backoff_max_ms; /* Redis reconnect backoff; 0 = defaults */
	uint64_t (*now_ms)(void); /* wall clock in ms since the epoch (calling hours, leases,
	                           * backoff); NULL = clock_wall_ms. Tests inject theirs. */
};

/* Starts the dialer thread with its own Redis connection; PostgreSQL is reached through
 * db_query (db_init must have run). Registers a call-life observer, so it runs on the
 * main thread before b2b_init. 0 or -errno (one log line says why). */
int dialer_init(const struct dialer_config *c);
/* From the configuration: starts the dialer when dialer.enabled and both stores are
 * configured, else logs one line saying why it is off and returns 0. Main thread, before
 * b2b_init. 0 or -errno. */
int dialer_init_conf(const struct conf *cfg);
/* Stops the thread. Jobs of calls still in progress stay 'dialing' until this node id
 * starts again or another node takes them over (docs/dialer.md). After b2b_close, before
 * db_close. Safe when never started. */
void dialer_close(void);
/* /readyz's "dialer:" line (a ctl_check_fn): off, starting, running with Redis up, or
 * paused with the store that is down. Always 0: a paused dialer leaves the node ready. */
int dialer_ready_line(void *arg, char *buf, size_t len);

#endif
