/* Shared between control/api_campaigns.c and control/api_leads.c. */
#ifndef VACS_CONTROL_API_CAMPAIGNS_INT_H
#define VACS_CONTROL_API_CAMPAIGNS_INT_H

#include <stddef.h>
#include <stdint.h>

struct api_err;
struct json_t;
struct conf_numbering;

#define API_LIST_DEFAULT 50
#define API_LIST_MAX     500

/* A time as the API shows it: ISO 8601 UTC with milliseconds. */
#define API_ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
/* A keyset cursor over (created_at, id): microseconds since the epoch, '_', the id. */
#define API_CURSOR_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

/* 1 when iso names a country of the built-in numbering table ("MX", "US", ...). */
int api_country_ok(const char *iso);
/* The list of those countries, for messages ("CA, CO, ..."). */
const char *api_country_list(void);
/* Normalises a phone number to E.164 ("+..." in out) under the numbering of country
 * (NULL = the number must be international already). 0, or -1 with e (invalid_field,
 * naming `field`). Any thread. */
int api_phone(const char *in, const char *country, const char *field, char *out, size_t len,
              struct api_err *e);
/* Parses a cursor ("<us>_<id>") into its two parts. 0 or -1 with e (invalid_field after). */
int api_cursor_parse(const char *s, char *us, size_t uslen, char *id, size_t idlen,
                     struct api_err *e);

/* A query the routes run: what its callback needs to answer. Columns the callbacks read:
 * "obj" (the object to answer), and for lists "cur_us" and "cur_id" (the keyset). */
struct api_q {
	uint64_t token;
	int limit;          /* lists: page size (the statement asks for limit + 1 rows) */
	unsigned ok_code;   /* one object: 200 or 201 */
	const char *key;    /* lists: the answer's array ("campaigns") */
	const char *what;   /* "campaign": for the 404 message */
	char id[72];        /* the id asked for (404 message) */
	char cur_prefix[2]; /* lists: put before cur_id in a cursor ("" or "+" removed) */
};
/* A zeroed api_q (mem_), or NULL after answering 500. */
struct api_q *api_q_new(uint64_t token, const char *key, const char *what);
/* Runs sql; on failure answers (503 store_unavailable, ...) and frees q. 0 or -1. */
int api_q_run(struct api_q *q, const char *sql, const char *const *params, int n,
              void (*cb)(void *, int, struct json_t *));
/* Callbacks (db thread) that answer and free q: a page {key: [obj...], next}, or one obj
 * (404 not_found when there is no row or obj is null). */
void api_q_list_cb(void *arg, int rc, struct json_t *rows);
void api_q_one_cb(void *arg, int rc, struct json_t *rows);
/* Reads ?limit= and ?after= into q->limit and the two cursor strings (empty = first
 * page). 0, or -1 with e. */
struct ctl_request;
int api_q_page(struct ctl_request *rq, struct api_q *q, char *us, size_t uslen, char *id,
               size_t idlen, struct api_err *e);
/* The id in "<prefix><id>[/rest]", checked with api_id_ok; *rest is "" or "/start"...
 * 0, or -1 after answering 404 not_found. */
int api_path_id(struct ctl_request *rq, const char *prefix, const char *what, char *id,
                size_t idlen, const char **rest);

/* POST /v1/campaigns/{id}/leads (api_leads.c). */
void api_leads_import(struct ctl_request *rq, const char *campaign_id);

/* Registers the lead, do-not-call routes (api_leads.c). */
int api_leads_init(void);
/* The normaliser given to api_campaigns_init. */
extern int (*api_normalise)(const struct conf_numbering *n, const char *in, char *out,
                            size_t outlen);

#endif
