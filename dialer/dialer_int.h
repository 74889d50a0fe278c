/* The dialer's pure decisions (policy.c), shared with its thread and the unit test. */
#ifndef VACS_DIALER_DIALER_INT_H
#define VACS_DIALER_DIALER_INT_H

#include <stddef.h>
#include <stdint.h>

struct json_t;

/* ---- time zones: a built-in table (docs/dialer.md lists it) ---- */

enum dialer_dst {
	DIALER_DST_NONE = 0,
	DIALER_DST_US, /* 2nd Sunday of March 02:00 local -> 1st Sunday of November 02:00 */
	DIALER_DST_EU, /* last Sunday of March 01:00 UTC -> last Sunday of October 01:00 UTC */
};
struct dialer_zone {
	const char *name;   /* IANA name */
	int std_offset_min; /* standard time minus UTC, minutes */
	enum dialer_dst dst;
};

/* The zone named `name` (IANA, case-sensitive), or NULL when the table lacks it. */
const struct dialer_zone *dialer_zone_find(const char *name);
/* Local time minus UTC in minutes at utc_s (seconds since the epoch), DST included. */
int dialer_zone_offset_min(const struct dialer_zone *z, int64_t utc_s);
/* The zone of an E.164 number ("+52 55...", "+1 212...") from its country and area
 * code, or NULL when the table does not know it. Pure. */
const struct dialer_zone *dialer_zone_of_number(const char *e164);

/* ---- calling hours: [{days: ["mon", ...], start: "HH:MM", end: "HH:MM"}, ...] ---- */

#define DIALER_WINDOWS_MAX 14u
struct dialer_window {
	uint8_t days;       /* bit tm_wday (0 = Sunday) */
	uint16_t start_min; /* minutes after local midnight, inclusive */
	uint16_t end_min;   /* exclusive; 1440 = midnight */
};
/* Parses the campaign's calling_hours (NULL or [] = any time: *n = 0). 0, or -EINVAL
 * (then *n = 0 and the caller treats the campaign as misconfigured). */
int dialer_hours_parse(const struct json_t *hours, struct dialer_window *w, size_t *n);
/* 1 when utc_s falls inside a window in zone z (n = 0: always), else 0. */
int dialer_hours_open(const struct dialer_window *w, size_t n, const struct dialer_zone *z,
                      int64_t utc_s);
/* The first second >= utc_s at which the hours are open (utc_s itself when open now), or
 * -1 when none within 8 days (a window list with no day). Minute resolution. */
int64_t dialer_hours_next(const struct dialer_window *w, size_t n, const struct dialer_zone *z,
                          int64_t utc_s);

/* ---- outcomes and the retry policy ---- */

enum dialer_outcome {
	DIALER_ANSWERED = 0,
	DIALER_NO_ANSWER,
	DIALER_BUSY,
	DIALER_FAILED,
	DIALER_MACHINE,
	DIALER_OUTCOME__COUNT,
};
/* "answered", "no_answer", "busy", "failed", "machine"; NULL if out of range. */
const char *dialer_outcome_name(enum dialer_outcome o);
/* The lead's status once its last attempt ended this way (docs/campaigns.md: the funnel's
 * vocabulary; call_jobs.outcome keeps the detail): "connected" for a person who answered,
 * "unreachable" otherwise. */
const char *dialer_lead_final_status(enum dialer_outcome o);
/* The outcome of a call from its CDR (sip_code, end_reason, answer, amd.verdict). */
enum dialer_outcome dialer_outcome_of_cdr(const struct json_t *cdr);

struct dialer_retry {
	unsigned max_attempts; /* attempts in all after which this outcome is final */
	unsigned backoff_s;    /* wait before the 2nd attempt; doubles for each later one */
};
/* Reads retry_policy {no_answer|busy|failed|machine: {max_attempts, backoff_s}} into
 * out[outcome]; an absent outcome gets (campaign_max, DIALER_BACKOFF_DEFAULT_S), answered
 * never retries. Unreadable members are treated as absent. Pure. */
#define DIALER_BACKOFF_DEFAULT_S 600u
void dialer_retry_parse(const struct json_t *policy, unsigned campaign_max,
                        struct dialer_retry out[DIALER_OUTCOME__COUNT]);
/* After attempt number `attempt` (1 = the first) ended with o: 1 = call again after
 * *delay_s, 0 = final. The delay is backoff_s * 2^(attempt-1), at most one day. */
int dialer_retry_decide(const struct dialer_retry pol[DIALER_OUTCOME__COUNT], enum dialer_outcome o,
                        unsigned attempt, uint64_t *delay_s);

#endif
