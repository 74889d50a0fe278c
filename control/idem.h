/* Idempotency-Key of the REST API (private to control/): routes registered with
 * CTL_IDEMPOTENT replay their first answer to a repeated key. http thread only, except
 * where said. */
#ifndef VACS_CONTROL_IDEM_H
#define VACS_CONTROL_IDEM_H

#include <stddef.h>
#include <stdint.h>

struct json_t;

#define CTL_IDEM_KEY_MAX 255 /* characters of an Idempotency-Key */

/* A stored answer handed back for a replay: body is mem_alloc'd and owned by the caller. */
struct ctl_idem_answer {
	unsigned code;
	char ctype[128];
	char *body;
	size_t len;
};

enum ctl_idem_verdict {
	CTL_IDEM_RUN = 0, /* run the handler: the caller now owns the key (finish or abandon) */
	CTL_IDEM_REPLAY,  /* answer *ans, with Idempotent-Replayed: true */
	CTL_IDEM_BUSY,    /* 409 idempotency_key_in_progress */
	CTL_IDEM_REUSED,  /* 422 idempotency_key_reused: another method or path */
	CTL_IDEM_LOOKUP,  /* asked PostgreSQL: ctl_http_resume(token, row) follows; the caller
	                   * owns the key (abandon it if the request goes away) */
};

/* The first look at (prefix, key) for a request `token`. */
enum ctl_idem_verdict ctl_idem_begin(const char *prefix, const char *key, const char *method,
                                     const char *path, uint64_t token, struct ctl_idem_answer *ans);
/* After CTL_IDEM_LOOKUP: row is the stored answer from PostgreSQL or NULL (borrowed).
 * Returns RUN, REPLAY or REUSED (the key is no longer owned on REPLAY and REUSED). */
enum ctl_idem_verdict ctl_idem_resolve(const char *prefix, const char *key, const char *method,
                                       const char *path, uint64_t token, const struct json_t *row,
                                       struct ctl_idem_answer *ans);
/* The owner's answer: kept (memory, and PostgreSQL when up and `durable`) when worth
 * replaying: every status below 500 except 409 and 429; otherwise the key is forgotten and
 * a repeat runs the handler again. body is borrowed. */
void ctl_idem_finish(const char *prefix, const char *key, uint64_t token, unsigned code,
                     const char *ctype, const char *body, size_t len, int durable);
/* The owner went away without an answer: the key is forgotten. */
void ctl_idem_abandon(const char *prefix, const char *key, uint64_t token);
/* Expires old answers (memory; and PostgreSQL rows every few minutes). */
void ctl_idem_tick(uint64_t now_us);
/* Forgets everything; later database answers are dropped. Main thread, http thread gone. */
void ctl_idem_stop(void);

/* Implemented by http.c: hands the PostgreSQL lookup for request `token` back to the http
 * thread. Takes ownership of row (NULL = nothing stored). Any thread (the db thread). */
void ctl_http_resume(uint64_t token, struct json_t *row);

#endif
