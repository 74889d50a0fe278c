/* Helpers for the /v1 routes: JSON body checks that name the field at fault, query
 * parameters, JSON answers and the store's errors. */
#ifndef VACS_CONTROL_API_UTIL_H
#define VACS_CONTROL_API_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct json_t;
struct ctl_request;

/*
 * A check that fails fills a struct api_err instead of answering, so the caller decides:
 * answer it (api_reply_err) or collect it (a per-row error of an import). The codes are
 * the API's: invalid_json, missing_field, invalid_field, unknown_field (400).
 */
struct api_err {
	unsigned status;   /* HTTP status, 400 for every check here */
	const char *code;  /* static: "invalid_field", ... */
	char field[64];    /* the field at fault ("retry_policy.busy.backoff_s"), "" if none */
	char message[240]; /* for a person: what is wrong and what is expected */
};

/* Fills e (printf-style message). Returns -1, so checks can `return api_fail(...)`. */
int api_fail(struct api_err *e, unsigned status, const char *code, const char *field,
             const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Parses the request body as a JSON object (duplicate keys refused). Returns the object
 * (the caller owns it), or NULL with e = invalid_json. */
struct json_t *api_body_object(struct ctl_request *rq, struct api_err *e);

/* Every key of o must be in known (NULL-terminated); prefix (may be NULL or "") is put
 * before the key in e->field ("retry_policy." -> "retry_policy.x"). 0, or -1 with
 * e = unknown_field naming the first stranger. */
int api_known_fields(struct json_t *o, const char *const *known, const char *prefix,
                     struct api_err *e);

/* The getters: `name` is the key in o, `field` the name reported (NULL = name).
 * Return 1 when the value was taken, 0 when the key is absent (or null when nullable is
 * set: *out untouched, *is_null set if given), -1 with e filled (missing_field when
 * required and absent, invalid_field when of the wrong type or out of range). */
enum api_get_flags {
	API_REQUIRED = 1 << 0, /* absent -> missing_field */
	API_NULLABLE = 1 << 1, /* null is taken as "absent" (clears a column in a PATCH) */
};
/* A string of min_len..max_len bytes (UTF-8 as jansson checked it; no NUL inside).
 * *out points into o. */
int api_get_str(struct json_t *o, const char *name, const char *field, unsigned flags,
                size_t min_len, size_t max_len, const char **out, struct api_err *e);
/* An integer in min..max. */
int api_get_int(struct json_t *o, const char *name, const char *field, unsigned flags,
                long long min, long long max, long long *out, struct api_err *e);
/* A number (integer or real) with min < value <= max when min_open, else min <= value. */
int api_get_num(struct json_t *o, const char *name, const char *field, unsigned flags, double min,
                int min_open, double max, double *out, struct api_err *e);
/* true or false. */
int api_get_bool(struct json_t *o, const char *name, const char *field, unsigned flags, int *out,
                 struct api_err *e);
/* One of the strings of `allowed` (NULL-terminated); *out is the allowed entry. */
int api_get_enum(struct json_t *o, const char *name, const char *field, unsigned flags,
                 const char *const *allowed, const char **out, struct api_err *e);
/* Was the member present and null? (For PATCH: null clears.) */
int api_is_null(struct json_t *o, const char *name);

/* A query parameter (URL-decoded) into out: *val = out, or NULL when absent. 0, or -1 with
 * e = invalid_field when it does not fit in outlen - 1 bytes. (Reads through a 2 KiB
 * buffer: ctl_req_query stops at the first parameter longer than the buffer it is given.) */
int api_query(struct ctl_request *rq, const char *name, char *out, size_t outlen, const char **val,
              struct api_err *e);
/* A query parameter that must be an integer in min..max; absent = def. 0 or -1 with e. */
int api_query_int(struct ctl_request *rq, const char *name, long long min, long long max,
                  long long def, long long *out, struct api_err *e);
/* Refuses query parameters not in known (NULL-terminated): 0 or -1 with e = unknown_field. */
int api_query_known(struct ctl_request *rq, const char *const *known, struct api_err *e);

/* 1 when s is an ISO 8601 date or date-time PostgreSQL reads as timestamptz. */
int api_iso_time_ok(const char *s);
/* 1 when s is an IANA time zone name present under /usr/share/zoneinfo (a TZif file;
 * no "..", no leading '/', only [A-Za-z0-9_+-] in /-separated parts). */
int api_tz_ok(const char *s);
/* 1 when s is a resource id the API hands out or accepts: 1..64 of [A-Za-z0-9_.:-]. */
int api_id_ok(const char *s);

/* A column an API object is stored in: its name and PostgreSQL type ("text", "integer",
 * "numeric", "boolean", "jsonb"). Lists end with {NULL, NULL}. */
struct api_col {
	const char *name;
	const char *type;
};
struct strbuf;
/* SQL for the columns of cols that are keys of `clean` (a JSON object of checked values,
 * keyed by column, that the statement receives as its parameter $param): with update 0
 * "(a, b) SELECT <a>, <b>", with update 1 "a = <a>, b = <b>", where <x> reads x from the
 * parameter ("($2::jsonb->>'x')::integer"). Column names come from cols only, never from
 * the request. Returns how many columns were written, or -ENOMEM. */
int api_sql_cols(struct strbuf *sb, const struct api_col *cols, struct json_t *clean, int param,
                 int update);

/* Answers e (any thread). */
void api_reply_err(uint64_t token, const struct api_err *e);
/* o as compact JSON text, mem_alloc'd, its length in *len; steals o. NULL (len 0) when o is
 * NULL or memory is short. */
char *api_json_body(struct json_t *o, size_t *len);
/* Answers o as JSON with `code`; steals o (NULL = 500). Any thread. */
void api_reply_json(uint64_t token, unsigned code, struct json_t *o);
/* The same with more headers ("Name: value\r\n" lines, NULL = none). Any thread. */
void api_reply_json_hdrs(uint64_t token, unsigned code, const char *hdrs, struct json_t *o);
/* Answers a db_query failure: -ENOTCONN 503 store_unavailable, -EAGAIN 503 busy, else 500.
 * Any thread. */
void api_reply_store(uint64_t token, int rc);

#endif
