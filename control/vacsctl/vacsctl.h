/* vacsctl's shared parts: the command table, the HTTP client of vacsd's API and the output
 * helpers (raw JSON with --json, tables otherwise). */
#ifndef VACS_CONTROL_VACSCTL_VACSCTL_H
#define VACS_CONTROL_VACSCTL_VACSCTL_H

#include <stddef.h>
#include <stdio.h>

struct json_t;

/*
 * Adding commands: a file of control/vacsctl/ (the Makefile builds every .c there) declares
 * a `static const struct vacsctl_cmd x[]` and registers it with VACSCTL_COMMANDS(x); no
 * other file changes. The usage text lists every command, sorted by name.
 *
 * Exit status, for every command (the usage text says the same):
 */
enum vacsctl_exit {
	VACSCTL_OK = 0,     /* a 2xx answer */
	VACSCTL_FAIL = 1,   /* any other answer, vacsd unreachable, timed out, bad answer */
	VACSCTL_USAGE = 2,  /* bad command line, $VACS_API_KEY unset */
	VACSCTL_DENIED = 3, /* 401 or 403: the key is missing, unknown, revoked or lacks a scope */
	VACSCTL_NOT_FOUND = 4, /* 404 */
};

/* The global options, parsed by main. */
struct vacsctl {
	const char *url;             /* --url, $VACS_URL, else http://127.0.0.1:8080 */
	int timeout_s;               /* --timeout */
	int json;                    /* --json: print the answer's JSON as it came */
	const char *idempotency_key; /* --idempotency-key: sent with POSTs */
	const char *content_type;    /* of request bodies; NULL = application/json */
};

struct vacsctl_cmd {
	const char *name;     /* "keys" */
	const char *sub;      /* "create", or NULL for a command without subcommands */
	const char *synopsis; /* what follows the (sub)command in the usage, "" if nothing */
	const char *help;     /* what it does; may hold '\n' for more lines */
	/* argv[0] is the (sub)command's name, the arguments follow (getopt-ready: reset
	 * optind to 0 first). Returns an enum vacsctl_exit. */
	int (*run)(const struct vacsctl *v, int argc, char **argv);
};

void vacsctl_register(const struct vacsctl_cmd *cmds, size_t n);
#define VACSCTL_COMMANDS(tab)                                                                      \
	__attribute__((constructor)) static void vacsctl_register_##tab(void)                      \
	{                                                                                          \
		vacsctl_register(tab, sizeof(tab) / sizeof(tab[0]));                               \
	}

/* ---- HTTP ------------------------------------------------------------------------------ */

struct vacsctl_resp {
	int status; /* HTTP status */
	char *head; /* status line and headers (NUL-terminated) */
	char *body; /* NUL-terminated; len does not count the NUL */
	size_t len;
	char *raw; /* owns head and body */
};

/* METHOD path (path and query under --url; escape ids with vacsctl_escape) with a JSON body
 * or NULL; with_key sends $VACS_API_KEY as a Bearer key (VACSCTL_USAGE when unset). POST,
 * PUT, PATCH and DELETE always carry Content-Length; POST carries --idempotency-key. Returns
 * 0 with *r filled whatever the status, or an exit status after saying why on stderr. */
int vacsctl_http(const struct vacsctl *v, const char *method, const char *path, const char *body,
                 int with_key, struct vacsctl_resp *r);
void vacsctl_resp_free(struct vacsctl_resp *r);
/* The value of header `name` (case-insensitive) in r, copied to buf; NULL when absent. */
const char *vacsctl_resp_header(const struct vacsctl_resp *r, const char *name, char *buf,
                                size_t len);
/* The exit status for an HTTP status (see enum vacsctl_exit). */
int vacsctl_exit_for(int status);

/* The usual API call: sends body (a JSON value, borrowed, or NULL) with the key. On 2xx:
 * with --json prints the raw body; otherwise calls show(answer, arg) (answer NULL when the
 * body is empty or not JSON; show may be NULL). Otherwise prints the error: the raw body
 * on stdout with --json, "vacsctl: <status> <code>: <message> (field: f)" on stderr
 * always. Returns the exit status. */
int vacsctl_api(const struct vacsctl *v, const char *method, const char *path,
                const struct json_t *body,
                void (*show)(const struct json_t *answer, const void *arg), const void *arg);

/* vacsctl_api with a body that is already text (sent as it is, with v->content_type). */
int vacsctl_api_text(const struct vacsctl *v, const char *method, const char *path,
                     const char *text, void (*show)(const struct json_t *answer, const void *arg),
                     const void *arg);

/* Percent-encodes one path segment (an id) into out; -1 when it does not fit. */
int vacsctl_escape(const char *seg, char *out, size_t len);

/* ---- output ----------------------------------------------------------------------------- */

struct vacsctl_col {
	const char *title; /* column title, "CALL ID" */
	const char *key;   /* member of each row */
};

/* A JSON value as a table cell: strings as they are, null/absent "-", arrays of scalars
 * joined with ',', objects as compact JSON. Returns buf. */
const char *vacsctl_cell(const struct json_t *v, char *buf, size_t len);
/* Rows (a JSON array of objects) as an aligned table with a title line. */
void vacsctl_table(FILE *f, const struct json_t *rows, const struct vacsctl_col *cols, size_t n);
/* One object as "title: value" lines (titles aligned). */
void vacsctl_fields(FILE *f, const struct json_t *obj, const struct vacsctl_col *cols, size_t n);

#endif
