/* Event notifications: signed JSON POSTs to subscribers (event_subscriptions), with
 * retries, dead letters, and the /v1/subscriptions routes. docs/notifications.md. */
#ifndef VACS_CONTROL_NOTIFY_H
#define VACS_CONTROL_NOTIFY_H

struct json_t;

struct notify_config {
	unsigned attempts;       /* deliveries per event and subscriber before a dead letter */
	unsigned backoff_ms;     /* wait before the 2nd attempt; doubles each time */
	unsigned backoff_max_ms; /* cap of the wait */
	unsigned timeout_ms;     /* one attempt, connect included */
	unsigned queue_len;      /* deliveries pending (in flight or waiting); more = dropped */
	unsigned refresh_ms;     /* how often the subscriptions are re-read from PostgreSQL */
	int allow_private;       /* subscriber URLs may reach loopback/private addresses */
};

/* Registers the routes and the refresh tick. Main thread, after db_init, before
 * ctl_out_init and ctl_init. 0 or -errno. Without PostgreSQL the routes answer 503 and
 * no event is delivered. */
int notify_init(const struct notify_config *cfg);
/* Frees what is left; after ctl_out_close and ctl_close. */
void notify_close(void);

/* Emits one event to every active subscriber of `type` ("lead.qualified", "call.started",
 * "call.answered", "transfer.completed", "call.ended"). Steals `data` (a JSON object,
 * freed in every case). Any thread; never blocks. 0, or -EAGAIN (queue full: dropped and
 * counted), -ENOTCONN (module off), -EINVAL (unknown type or data not an object),
 * -ENOMEM. */
int notify_emit(const char *type, struct json_t *data);

#endif
