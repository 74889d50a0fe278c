/* The control plane's HTTP server (libwebsockets, own thread): health, readiness, metrics,
 * and the routes other modules register (webhooks, the REST API). */
#ifndef VACS_CONTROL_CONTROL_H
#define VACS_CONTROL_CONTROL_H

#include <stddef.h>
#include <stdint.h>

struct ctl_config {
	const char *address; /* bind address, e.g. "127.0.0.1" */
	uint16_t port;       /* 0 = HTTP server off */
	/* Bootstrap keys (NULL-terminated list of secrets; ctl_init keeps only their SHA-256):
	 * accepted as admin keys besides the keys of PostgreSQL's api_keys (docs/api/auth.md).
	 * NULL or empty and no PostgreSQL = every CTL_AUTH_API route answers 401. */
	const char *const *api_keys;
	/* The dashboard (docs/dashboard.md): the directory of its built files served at "/"
	 * (NULL = none), and whether the session cookie is marked Secure (served over TLS). */
	const char *web_dir;
	int cookie_secure;
};

/* Posts one event to every client of GET /v1/events/stream (Server-Sent Events): `type` is
 * the SSE event name ("call.started"), json a one-line JSON object (copied). Any thread;
 * never blocks on a client: the last CTL_EVENTS_KEPT events are kept and a client that
 * falls further behind is dropped. */
#define CTL_EVENTS_KEPT 1024
void ctl_event_post(const char *type, const char *json);

/* Starts the http thread. 0 or -errno (e.g. -EADDRINUSE). Called once by main, after
 * every ctl_route_add. */
int ctl_init(const struct ctl_config *cfg);
/* Stops and joins the http thread. Requests not answered yet are dropped (connection
 * closed); later ctl_reply calls for them are no-ops. */
void ctl_close(void);

/* Readiness shown by /readyz: 1 = taking calls, 0 = draining or not ready.
 * `why` is a short static reason ("draining"). Any thread. */
void ctl_set_ready(int ready, const char *why);

/* A dependency /readyz reports on, one line "name: text" under the first line. fn runs
 * on the http thread for each /readyz: it writes a short state into buf and returns 0
 * (fine, or degraded but still able to take calls) or -1 (not ready: /readyz answers
 * 503). Main thread, before ctl_init. 0, -EINVAL, -ENOSPC (8 at most). */
typedef int (*ctl_check_fn)(void *arg, char *buf, size_t len);
int ctl_ready_check(const char *name, ctl_check_fn fn, void *arg);

/* The port actually bound (useful when cfg->port asked for an ephemeral one), 0 if off. */
uint16_t ctl_bound_port(void);

/* ---- Routes ----------------------------------------------------------------------------
 *
 * A route is a method and a path (exact, or a prefix when it ends in '/'), with a body
 * limit and a handler that runs on the http thread once the whole body is in. The server
 * answers by itself: 404 (no route for the path), 405 with Allow (path known, method not),
 * 411 (POST/PUT/PATCH without Content-Length, or chunked), 413 (Content-Length or the
 * bytes received over max_body; the body is not read further and the connection closes),
 * 401 (CTL_AUTH_API and no valid Bearer key: missing, unknown or revoked), 403 (the key
 * lacks the route's scope; the message names it), 504 (the handler did not answer within
 * timeout_ms). Every answer is counted in vacs_http_requests_total{code}. Error bodies are
 * JSON: {"error":{"code":"...","message":"...","field":"..."}} (field only when known).
 * `Expect: 100-continue` is answered so clients do not stall.
 */

struct ctl_request; /* owned by the server; valid in the handler only */

enum ctl_route_flags {
	CTL_AUTH_API = 1 << 0, /* requires Authorization: Bearer <a valid API key> */
	/* The scope the key must hold (admin holds every scope). Each implies CTL_AUTH_API;
	 * a key without the scope gets 403 {"error":{"code":"forbidden",...}}. */
	CTL_SCOPE_READ = CTL_AUTH_API | 1 << 1,      /* "read": GET of calls, leads, ... */
	CTL_SCOPE_CALLS = CTL_AUTH_API | 1 << 2,     /* "calls:write": originate, hangup */
	CTL_SCOPE_CAMPAIGNS = CTL_AUTH_API | 1 << 3, /* "campaigns": campaigns and leads */
	CTL_SCOPE_ADMIN = CTL_AUTH_API | 1 << 4,     /* "admin": keys, drain, subscriptions */
	/* POST that creates something: an Idempotency-Key header (1-255 printable ASCII
	 * characters, else 400) makes the server keep the handler's first answer (status
	 * below 500 except 409 and 429) for 24 h per calling key, in memory and in
	 * PostgreSQL's idempotency_keys, and replay it to a repeat with the header
	 * `Idempotent-Replayed: true` without calling the handler. A repeat while the first
	 * is still running gets 409 idempotency_key_in_progress; the same key on another
	 * method or path 422 idempotency_key_reused. Without PostgreSQL, memory only. */
	CTL_IDEMPOTENT = 1 << 5,
};
/* CTL_AUTH_API alone: any valid key, whatever its scopes. Several scope flags: the key
 * must hold all of them (or admin). */

/* The handler: read the request, then answer with ctl_reply (now or later, from any
 * thread) using the token. It must answer exactly once. */
typedef void (*ctl_handler_fn)(struct ctl_request *rq, void *arg);

/* Registers a route. Before ctl_init only (main thread). method "GET", "POST", ...;
 * max_body in bytes (0 = no body accepted); timeout_ms 0 = 30000. 0 or -errno
 * (-EEXIST same method and path, -ENOSPC table full, -EINVAL). */
int ctl_route_add(const char *method, const char *path, unsigned flags, size_t max_body,
                  unsigned timeout_ms, ctl_handler_fn fn, void *arg);

/* What a handler may read (http thread, during the handler call only). */
const char *ctl_req_method(const struct ctl_request *rq);
const char *ctl_req_path(const struct ctl_request *rq); /* decoded path, no query */
/* The raw body, NUL-terminated (the NUL is not counted), "" when there is none. */
const char *ctl_req_body(const struct ctl_request *rq, size_t *len);
/* A request header by lowercase name without ':' ("authorization", "x-vapi-secret").
 * Copies it to buf; returns buf, or NULL when absent or longer than len - 1. */
const char *ctl_req_header(const struct ctl_request *rq, const char *name, char *buf, size_t len);
/* A query parameter (`?name=value&...`, URL-decoded): its value copied to buf; returns
 * buf, or NULL when absent or when the value does not fit in len - 1 bytes (or the whole
 * parameter in 4095). The first of repeated names wins; other parameters never hide it. */
#define CTL_QUERY_MAX 32 /* parameters looked at; more make ctl_req_query_unknown fail */
const char *ctl_req_query(const struct ctl_request *rq, const char *name, char *buf, size_t len);
/* The first query parameter whose name is not in `known` (NULL-terminated), copied to
 * buf (the name only), or NULL when every name is known. For 400 unknown_field. */
const char *ctl_req_query_unknown(const struct ctl_request *rq, const char *const *known, char *buf,
                                  size_t len);
/* The peer's address as text ("127.0.0.1"). */
const char *ctl_req_peer(const struct ctl_request *rq);
/* A token naming this request for ctl_reply, unique for the process's life. */
uint64_t ctl_req_token(const struct ctl_request *rq);
/* The calling API key on a CTL_AUTH_API route (handler call only, like the above): its
 * prefix as api_keys.prefix stores it (the first 12 characters of the key; "bootstrap"
 * for the http.api_key_env key), safe to log and to store as "who did it"; "" on routes
 * without CTL_AUTH_API. */
const char *ctl_req_key_prefix(const struct ctl_request *rq);
/* Its api_keys.id; 0 for the bootstrap key and on routes without CTL_AUTH_API. */
int64_t ctl_req_key_id(const struct ctl_request *rq);
/* 1 when the calling key holds `scope` (a CTL_SCOPE_* flag; admin holds every scope),
 * for handlers that allow more to some keys; 0 without a key. */
int ctl_req_has_scope(const struct ctl_request *rq, unsigned scope);
/* The answer this request will get holds a secret (a new API key): on a CTL_IDEMPOTENT
 * route it is then kept for replay in this process's memory only, never written to
 * PostgreSQL. Handler call only. */
void ctl_req_secret_answer(struct ctl_request *rq);

/* Answers the request `token` from any thread: takes ownership of body (mem_alloc'd, or
 * NULL with len 0). When the request is gone (client left, timed out, server closed) the
 * body is freed and -ENOENT returned. ctype NULL = "application/json". */
int ctl_reply(uint64_t token, unsigned code, const char *ctype, char *body, size_t len);
/* The same with more headers: hdrs is "Name: value\r\n" lines (copied; NULL = none), e.g.
 * Set-Cookie or Location. Any thread. */
int ctl_reply_hdrs(uint64_t token, unsigned code, const char *ctype, const char *hdrs, char *body,
                   size_t len);
/* Answers with the JSON error body above (field may be NULL). Any thread. */
int ctl_reply_error(uint64_t token, unsigned code, const char *ecode, const char *message,
                    const char *field);

#endif
