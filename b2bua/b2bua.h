/* The B2BUA: sofia-sip glue, the call model, trunks and routing, owned by the sip thread. */
#ifndef VACS_B2BUA_B2BUA_H
#define VACS_B2BUA_B2BUA_H

#include <stdint.h>

struct conf;
struct json_t;

/* Starts the SIP stack on the calling thread (the sip thread) with the given
 * configuration (a reference is taken); `vapi_up`: vapi_init succeeded, routes to "ai"
 * create VAPI calls (else they answer 503). 0 or -errno. */
int b2b_init(struct conf *cfg, int vapi_up);
/* Runs the sip thread's loop until b2b_stop(). */
int b2b_run(void);
/* Asks the loop to stop: drain (no new calls, 503 to OPTIONS), unregister, shut down.
 * Async-signal-safe. */
void b2b_stop(void);
/* Asks for a configuration reload (SIGHUP). Async-signal-safe. */
void b2b_reload(void);
void b2b_close(void);

/* ---- Call life, for the control plane (dialer, event notifications, dashboard) ----
 * Observers see each call start, answer, reach an agent and end. They run on the sip
 * thread, in registration order, and must be short: copy what they need and post it to
 * their own thread. Pointers are valid during the call only. */
enum b2b_life {
	B2B_LIFE_STARTED = 0, /* an inbound INVITE was accepted for routing, or an
	                       * outbound call was originated (not yet ringing) */
	B2B_LIFE_ANSWERED,    /* the caller (inbound) or the lead (outbound) answered */
	B2B_LIFE_TRANSFERRED, /* a warm transfer bridged the customer to an agent */
	B2B_LIFE_ENDED,       /* the call is over; cdr is its record (as in cdr.jsonl) */
};
struct b2b_life_ev {
	enum b2b_life what;
	const char *call_id;
	const char *direction; /* "inbound" or "outbound" */
	const char *lead_id;   /* "" when none */
	const char *ref;       /* the originator's reference (a job id), "" when none */
	const char *caller, *called;
	const char *agent;        /* TRANSFERRED: who took the call, else "" */
	uint64_t ts_ms;           /* wall clock, ms since the epoch */
	const struct json_t *cdr; /* ENDED only, else NULL */
};
typedef void (*b2b_life_fn)(void *arg, const struct b2b_life_ev *ev);
/* Adds an observer. Main thread, before b2b_init. 0, or -ENOSPC (8 at most). */
int b2b_life_watch(b2b_life_fn fn, void *arg);
/* Sends call.started, call.answered, transfer.completed and call.ended event
 * notifications (control/notify.h) for every call. Main thread, before b2b_init. */
int b2b_events_init(void);

/* ---- Originate from another thread (the dialer) ----
 * The same operation as POST /v1/calls: an outbound AI call to `to` through
 * outbound.trunk. Strings are copied; NULL or "" = the configured default. */
/* What an outbound call does when AMD says an answering machine picked up. */
enum b2b_amd_action {
	B2B_AMD_AI = 0,  /* the assistant goes on (AMD only reports, if outbound.amd) */
	B2B_AMD_HANGUP,  /* the call ends: end_reason "answering machine" */
	B2B_AMD_MESSAGE, /* amd_prompt (a WAV) is played, then the call ends */
};

struct b2b_orig_req {
	const char *to;                 /* the number to call (E.164, or national on the trunk) */
	const char *from;               /* caller ID */
	const char *assistant_id;       /* VAPI assistant */
	const char *variables_json;     /* variableValues object text, at most 16 KiB */
	const char *lead_id;            /* echoed in the call record and life events */
	const char *ref;                /* the originator's reference (a job id), likewise */
	enum b2b_amd_action amd_action; /* not AI: AMD runs on this call whatever outbound.amd */
	const char *amd_prompt;         /* MESSAGE: path of the WAV to play (< 256 bytes) */
};
/* Runs once on the sip thread when the call was placed (status 0, call_id set) or
 * refused (status 400 bad input, 429 trunk at max_calls, 503 unavailable; why says
 * why). Strings are valid during the call only: copy and post to your own thread. */
typedef void (*b2b_orig_done_cb)(void *arg, int status, const char *call_id, const char *why);
/* Queues an originate for the sip thread. Any thread, after b2b_api_init. 0 (done will
 * run exactly once, unless vacsd stops first), or with done NOT run: -EAGAIN (the sip
 * thread's mailbox is full), -EINVAL (no to or done, a string too long), -ENOTCONN
 * (b2b_api_init not run), -ENOMEM. */
int b2b_originate_post(const struct b2b_orig_req *r, b2b_orig_done_cb done, void *arg);

/* The HTTP routes that act on calls (POST /v1/calls, POST /webhooks/vapi): registers
 * them with the control plane. Main thread, before ctl_init; the configuration's
 * http and vapi.webhook settings are copied (a reload does not change them). 0 or -errno. */
int b2b_api_init(const struct conf *cfg);
/* After ctl_close and b2b_close: frees what is left. */
void b2b_api_close(void);
/* Whether POST /v1/calls may schedule calls ({"at": ...}: a call_jobs row the campaign
 * dialer places when due). on = 0: such requests answer 503 dialer_unavailable with
 * `why` (copied; e.g. "no Redis (store.redis_env)"). Main thread, before ctl_init (the
 * dialer calls it from dialer_init_conf). Off until called. */
void b2b_api_schedule_set(int on, const char *why);

#endif
