/* The http thread: a libwebsockets server context serving /healthz, /readyz, /metrics and the
 * routes other modules register with ctl_route_add (webhooks, the REST API). */
#include "control/control.h"

#include "control/api_recordings.h"
#include "control/api_wa_thread.h"
#include "control/auth.h"
#include "control/idem.h"
#include "control/keys.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"
#include "core/strbuf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Threads: ctl_route_add, ctl_init and ctl_close run on the main thread; everything lws does,
 * every callback below and every route handler runs on the http thread, which owns the
 * context and every struct ctl_request. Other threads touch only the atomics (readiness,
 * stop flag) and, through ctl_reply, the hand-off below.
 *
 * A request's life (struct ctl_request is the lws per-session data, fresh and zeroed for
 * every transaction, freed by lws after HTTP_DROP_PROTOCOL or CLOSED_HTTP):
 *   LWS_CALLBACK_HTTP: route lookup and the checks that need no body (404, 405, 401, 411,
 *     400, 413 by Content-Length); `Expect: 100-continue` answered; then either the body
 *     is read (RQ_BODY) or the handler runs at once.
 *   HTTP_BODY chunks go into a buffer bounded by the route's max_body; BODY_COMPLETION runs
 *     the handler (RQ_WAITING).
 *   The answer (RQ_ANSWER) is written from HTTP_WRITEABLE: headers, then the body in chunks
 *     of at most WRITE_CHUNK; then keep-alive (lws_http_transaction_completed) or close.
 *
 * Hand-off: a waiting request sits on `hand.pending` (mutex-protected, searched by token).
 * ctl_reply on the http thread (the handler answering at once) takes it off and answers
 * directly. From another thread it stores the answer in the request, moves it to
 * `hand.ready` and wakes the service loop with lws_cancel_service(); the http thread picks
 * it up in LWS_CALLBACK_EVENT_WAIT_CANCELLED. Matching is by token, never by pointer from
 * outside: a request that is gone (closed, timed out) is no longer on either list, so a late
 * reply finds nothing and gets -ENOENT.
 *
 * One sweep timer (SWEEP_US), armed only while requests wait, answers 504 past a route's
 * timeout and notices clients that left: lws 4.1.6 does not read a socket whose response
 * has not started (LRS_DOING_TRANSACTION), so a hang-up there would go unnoticed (and poll
 * would spin on the pending EOF) until we look with recv(MSG_PEEK).
 *
 * The dashboard (docs/dashboard.md): every request's session cookie is looked up first
 * (control/auth.c); on CTL_AUTH_API routes a session stands in for a key when no
 * Authorization header is sent (viewer "read", admin every scope; X-CSRF-Token checked on
 * anything but GET/HEAD/OPTIONS). A GET/HEAD no route takes, outside /v1/, /auth/ and
 * /webhooks/, is a file of ctl_config.web_dir (static_serve), or the sign-in page when
 * signed out. GET /v1/events/stream turns its request into RQ_STREAM: on the `streams`
 * list, fed from the `evq` ring that ctl_event_post fills from any thread (the wake-up is
 * lws_cancel_service, as for replies); each client keeps its own position in the ring.
 *
 * Rejections that leave a request body unread close the connection. When lws is still
 * reading that body, the close lingers (our side shut for writing, the rest of the body
 * drained and dropped, bounded in bytes and time) so the client reads the answer instead
 * of a reset.
 */

#define WRITE_CHUNK        16384
#define MAX_ROUTES         128
#define ROUTE_PATH_MAX     128
#define DEFAULT_TIMEOUT_MS 30000u
#define SWEEP_US           20000 /* the tick while requests wait */
#define LINGER_US          1000000
#define LINGER_MAX_BYTES   (256 * 1024)
#define CTYPE_MAX          128
#define AUTH_MAX           2048
#define BODY_MIN_CAP       16384
#define HEADER_DATA_MAX    8192   /* VAPI and Meta send long headers */
#define TICK_US            250000 /* key table reload and idempotency expiry checks */

/* The methods lws 4.1.6 parses, in the order Allow lists them. */
static const struct method {
	const char *name;
	enum lws_token_indexes tok;
	int needs_length; /* 411 without Content-Length */
} methods[] = {
    {"GET", WSI_TOKEN_GET_URI, 0},       {"POST", WSI_TOKEN_POST_URI, 1},
    {"PUT", WSI_TOKEN_PUT_URI, 1},       {"PATCH", WSI_TOKEN_PATCH_URI, 1},
    {"DELETE", WSI_TOKEN_DELETE_URI, 0}, {"OPTIONS", WSI_TOKEN_OPTIONS_URI, 0},
    {"HEAD", WSI_TOKEN_HEAD_URI, 0},
};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

struct ctl_request;
typedef void (*builtin_fn)(struct ctl_request *rq);

struct route {
	const struct method *method;
	char path[ROUTE_PATH_MAX];
	size_t path_len;
	unsigned flags;
	size_t max_body;     /* bytes */
	unsigned timeout_ms; /* ms */
	ctl_handler_fn fn;
	void *arg;
	builtin_fn builtin; /* the server's own routes answer at once */
};

enum rq_state {
	RQ_IDLE = 0,
	RQ_BODY,    /* reading the body */
	RQ_WAITING, /* handler called, no answer yet: on hand.pending */
	RQ_READY,   /* answered from another thread: on hand.ready */
	RQ_ANSWER,  /* the answer is being written */
	RQ_LINGER,  /* answered, closing: draining the unread body */
	RQ_DEAD,    /* the client left: close at the next WRITEABLE */
	RQ_STREAM,  /* an event stream (GET /v1/events/stream): open until the client leaves */
};

enum { LIST_NONE = 0, LIST_PENDING, LIST_READY };

/* Per transaction (lws per-session data). Members belong to the http thread, except while
 * `handed` is set: then `state`, `listed`, the links and the answer fields are under
 * hand.lock. */
struct ctl_request {
	struct lws *wsi;
	uint64_t token;
	enum rq_state state;
	const struct route *route;
	const char *method;
	const char *path; /* decoded, no query; in the lws header table (valid all transaction) */
	char peer[48];
	int head_only;      /* HEAD: the headers are the whole answer */
	int lws_reads_body; /* lws delivers (or discards) a body for this request */
	int has_unread;     /* a body may follow that we do not read */
	int body_done;      /* lws said BODY_COMPLETION */
	int handed;         /* on hand.pending or hand.ready (http thread's view) */
	int listed;         /* LIST_*, under hand.lock */
	/* request body: NUL-terminated, body_len does not count the NUL */
	char *body;
	size_t body_len, body_cap, content_length;
	uint64_t deadline_us; /* 504 past this */
	struct ctl_request *prev, *next;
	/* the answer */
	unsigned code;
	char ctype[CTYPE_MAX];
	char *resp; /* owned when resp_owned, else static text */
	size_t resp_len, resp_off;
	int resp_owned;
	int hdr_sent;
	int close; /* close the connection once this answer is sent */
	char allow[64];
	/* lingering close */
	size_t linger_bytes;
	uint64_t linger_until_us;
	/* the caller, on CTL_AUTH_API routes (else id 0, prefix "") */
	struct ctl_key_who who;
	/* Idempotency-Key: idem_owner while the key is ours to finish or abandon */
	char idem_key[CTL_IDEM_KEY_MAX + 1];
	int idem_owner;
	int replayed;      /* the answer is a stored one: Idempotent-Replayed: true */
	int secret_answer; /* ctl_req_secret_answer: not written to PostgreSQL */
	/* the dashboard session the cookie names (has_sess), checked at the request's start */
	int has_sess;
	struct ctl_session_who sess;
	char sess_token[CTL_TOKEN_HEX + 1];
	char *hdrs;        /* more answer headers, "Name: value\r\n"...; mem_alloc'd or NULL */
	const char *cache; /* Cache-Control of the answer (static text), NULL = no-store */
	/* RQ_STREAM: the next event to send, the heartbeat due, the stream list */
	uint64_t ev_seq;
	int beat;
	struct ctl_request *sprev, *snext;
};

/* A PostgreSQL idempotency lookup handed back to the http thread. */
struct resume {
	struct resume *next;
	uint64_t token;
	json_t *row;
};

static const unsigned code_num[] = {200, 201, 202, 204, 400, 401, 403, 404, 405,
                                    409, 411, 413, 422, 429, 500, 502, 503, 504};
#define N_CODES (sizeof(code_num) / sizeof(code_num[0]))

static void builtin_healthz(struct ctl_request *rq);
static void builtin_readyz(struct ctl_request *rq);
static void builtin_metrics(struct ctl_request *rq);
static void on_stream_route(struct ctl_request *rq, void *arg);
static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
                      unsigned char *end);
static uint64_t next_beat_us; /* http thread only: the next event-stream heartbeat */
#define BEAT_US 15000000ull
static void stream_start(struct ctl_request *rq);
static void stream_del(struct ctl_request *rq);
static void streams_wake(int beat);
static int stream_write(struct lws *wsi, struct ctl_request *rq);

static const struct route builtins[] = {
    {.method = &methods[0], .path = "/healthz", .path_len = 8, .builtin = builtin_healthz},
    {.method = &methods[0], .path = "/readyz", .path_len = 7, .builtin = builtin_readyz},
    {.method = &methods[0], .path = "/metrics", .path_len = 8, .builtin = builtin_metrics},
};
#define N_BUILTINS (sizeof(builtins) / sizeof(builtins[0]))

static struct {
	struct lws_context *ctx;
	pthread_t thread;
	uint16_t port;                        /* bound port, 0 = off */
	int started;                          /* ctl_init succeeded; no more routes */
	struct metric *requests[N_CODES + 1]; /* the last one is code="other" */
	struct metric *abandoned;
	struct metric *streams_dropped; /* event-stream clients dropped for not reading */
	/* written before the thread starts, read-only afterwards */
	struct route routes[MAX_ROUTES];
	unsigned n_routes;
	/* http thread only */
	uint64_t next_token;
	lws_sorted_usec_list_t sweep;
	lws_sorted_usec_list_t tick;
	int sweep_armed;
	struct log_ratelimit rl;
} srv;

static struct {
	pthread_mutex_t lock;
	int live; /* the context runs: replies can be delivered */
	struct ctl_request *pending, *ready;
	struct resume *resumed;
} hand = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local int on_http_thread;
static atomic_int stop_flag;
/* NULL = ready; otherwise the static reason /readyz gives. */
static const char *_Atomic not_ready = "starting";

/* Dependencies /readyz reports on (ctl_ready_check); set before ctl_init. */
#define READY_CHECKS 8
static struct {
	const char *name;
	ctl_check_fn fn;
	void *arg;
} ready_checks[READY_CHECKS];
static unsigned n_ready_checks;

/* ---- small helpers ------------------------------------------------------------------- */

static void count(unsigned code)
{
	for (size_t i = 0; i < N_CODES; i++) {
		if (code_num[i] == code) {
			metric_inc(srv.requests[i]);
			return;
		}
	}
	metric_inc(srv.requests[N_CODES]);
}

/* Length of the valid UTF-8 sequence at p (2..4), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	size_t k;
	unsigned cp;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		k = 2;
		cp = p[0] & 0x1fu;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		k = 3;
		cp = p[0] & 0x0fu;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		k = 4;
		cp = p[0] & 0x07u;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < k)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	if (k == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
		return 0;
	if (k == 4 && (cp < 0x10000 || cp > 0x10ffff))
		return 0;
	return k;
}

/* Appends s[0..n) as the inside of a JSON string: quotes, backslashes and control bytes
 * escaped, valid UTF-8 kept, any other byte replaced by U+FFFD: always valid JSON. */
static void json_escape(struct strbuf *sb, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	while (p < end) {
		const unsigned char *run = p;
		while (p < end && *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
			p++;
		if (p > run)
			str_append(sb, (const char *)run, (size_t)(p - run));
		if (p == end)
			break;
		if (*p == '"' || *p == '\\') {
			char e[2] = {'\\', (char)*p};
			str_append(sb, e, 2);
			p++;
		} else if (*p < 0x80) {
			str_printf(sb, "\\u%04x", *p);
			p++;
		} else {
			size_t k = utf8_len(p, end);
			if (k) {
				str_append(sb, (const char *)p, k);
				p += k;
			} else {
				str_puts(sb, "\\ufffd");
				p++;
			}
		}
	}
}

/* {"error":{"code":"...","message":"<message><detail>","field":"..."}} with everything
 * escaped; detail (the request path) is cut at 200 bytes. A mem_alloc'd string, or NULL. */
static char *error_json(const char *ecode, const char *message, const char *detail,
                        const char *field, size_t *len)
{
	struct strbuf sb;
	str_init(&sb);
	str_puts(&sb, "{\"error\":{\"code\":\"");
	json_escape(&sb, ecode ? ecode : "", ecode ? strlen(ecode) : 0);
	str_puts(&sb, "\",\"message\":\"");
	json_escape(&sb, message ? message : "", message ? strlen(message) : 0);
	if (detail)
		json_escape(&sb, detail, strnlen(detail, 200));
	str_puts(&sb, "\"");
	if (field) {
		str_puts(&sb, ",\"field\":\"");
		json_escape(&sb, field, strlen(field));
		str_puts(&sb, "\"");
	}
	str_puts(&sb, "}}\n");
	if (sb.oom) {
		str_deinit(&sb);
		return NULL;
	}
	*len = sb.len;
	return str_steal(&sb);
}

/* A path fit for a log line: printable ASCII, at most 80 bytes. */
static const char *log_path(const char *path, char *buf, size_t len)
{
	size_t i = 0;
	for (; path && path[i] && i + 1 < len && i < 80; i++)
		buf[i] = path[i] > 0x20 && path[i] < 0x7f ? path[i] : '?';
	buf[i] = '\0';
	return buf;
}

static void log_reject(const struct ctl_request *rq, unsigned code, const char *why)
{
	if (!log_ratelimit_ok(&srv.rl))
		return;
	char p[96];
	log_warn("ctl", "http: %u %s %s from %s: %s", code, rq->method ? rq->method : "?",
	         log_path(rq->path, p, sizeof(p)), rq->peer, why);
}

/* ---- hand-off lists (hand.lock held) ------------------------------------------------- */

static void list_add(struct ctl_request **head, struct ctl_request *rq, int which)
{
	rq->prev = NULL;
	rq->next = *head;
	if (*head)
		(*head)->prev = rq;
	*head = rq;
	rq->listed = which;
}

static void list_del(struct ctl_request *rq)
{
	struct ctl_request **head = rq->listed == LIST_READY ? &hand.ready : &hand.pending;
	if (rq->listed == LIST_NONE)
		return;
	if (rq->prev)
		rq->prev->next = rq->next;
	else
		*head = rq->next;
	if (rq->next)
		rq->next->prev = rq->prev;
	rq->prev = rq->next = NULL;
	rq->listed = LIST_NONE;
}

static struct ctl_request *find_pending(uint64_t token)
{
	for (struct ctl_request *rq = hand.pending; rq; rq = rq->next) {
		if (rq->token == token)
			return rq;
	}
	return NULL;
}

/* ---- answers (http thread) ----------------------------------------------------------- */

static void body_free(struct ctl_request *rq)
{
	if (rq->resp_owned)
		mem_free(rq->resp);
	rq->resp = NULL;
	rq->resp_len = rq->resp_off = 0;
	rq->resp_owned = 0;
}

static void resp_free(struct ctl_request *rq)
{
	body_free(rq);
	mem_free(rq->hdrs);
	rq->hdrs = NULL;
	rq->cache = NULL;
}

static void set_ctype(struct ctl_request *rq, const char *ctype)
{
	snprintf(rq->ctype, sizeof(rq->ctype), "%s", ctype ? ctype : "application/json");
}

/* The answer's fields are set: count it and have it written. */
static void start_answer(struct ctl_request *rq)
{
	rq->state = RQ_ANSWER;
	rq->hdr_sent = 0;
	rq->resp_off = 0;
	if (rq->code == 204 || rq->code == 304)
		body_free(rq); /* these carry no body */
	if (rq->idem_owner) {
		rq->idem_owner = 0;
		ctl_idem_finish(rq->who.prefix, rq->idem_key, rq->token, rq->code, rq->ctype,
		                rq->resp, rq->resp_len, !rq->secret_answer);
	}
	count(rq->code);
	lws_callback_on_writable(rq->wsi);
}

/* Answers rq; takes ownership of body when owned. */
static void respond(struct ctl_request *rq, unsigned code, const char *ctype, char *body,
                    size_t len, int owned)
{
	resp_free(rq);
	rq->code = code;
	set_ctype(rq, ctype);
	rq->resp = body;
	rq->resp_len = body ? len : 0;
	rq->resp_owned = owned;
	start_answer(rq);
}

static void respond_error(struct ctl_request *rq, unsigned code, const char *ecode, const char *msg,
                          const char *detail, const char *field)
{
	size_t len = 0;
	char *body = error_json(ecode, msg, detail, field, &len);
	if (!body) {
		static char oom[] =
		    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
		respond(rq, 500, "application/json", oom, sizeof(oom) - 1, 0);
		return;
	}
	respond(rq, code, "application/json", body, len, 1);
}

/* An answer decided by the server before the handler runs. A body we will not read makes
 * the connection close after it. */
static void reject(struct ctl_request *rq, unsigned code, const char *ecode, const char *msg,
                   const char *detail, const char *field)
{
	if (rq->has_unread)
		rq->close = 1;
	respond_error(rq, code, ecode, msg, detail, field);
}

static void builtin_healthz(struct ctl_request *rq)
{
	static char ok[] = "ok\n";
	respond(rq, 200, "text/plain", ok, sizeof(ok) - 1, 0);
}

static void builtin_readyz(struct ctl_request *rq)
{
	static char ready[] = "ready\n";
	const char *why = atomic_load(&not_ready);
	if (!why && !n_ready_checks) {
		respond(rq, 200, "text/plain", ready, sizeof(ready) - 1, 0);
		return;
	}
	/* First line: "ready" or why not; then one line per dependency. */
	struct strbuf sb;
	str_init(&sb);
	char lines[READY_CHECKS][160];
	for (unsigned i = 0; i < n_ready_checks; i++) {
		lines[i][0] = '\0';
		if (ready_checks[i].fn(ready_checks[i].arg, lines[i], sizeof(lines[i])) < 0 && !why)
			why = "not ready";
	}
	str_printf(&sb, "%s\n", why ? why : "ready");
	for (unsigned i = 0; i < n_ready_checks; i++)
		str_printf(&sb, "%s: %s\n", ready_checks[i].name, lines[i]);
	if (!why) {
		if (sb.oom) {
			str_deinit(&sb);
			respond(rq, 200, "text/plain", ready, sizeof(ready) - 1, 0);
			return;
		}
		size_t len = sb.len;
		respond(rq, 200, "text/plain", str_steal(&sb), len, 1);
		return;
	}
	if (sb.oom) {
		str_deinit(&sb);
		respond_error(rq, 500, "internal", "out of memory", NULL, NULL);
		return;
	}
	size_t len = sb.len;
	respond(rq, 503, "text/plain", str_steal(&sb), len, 1);
}

static void builtin_metrics(struct ctl_request *rq)
{
	/* The page shows the counters as they were before this request. */
	struct strbuf sb;
	str_init(&sb);
	if (metric_render(&sb) != 0) {
		str_deinit(&sb);
		respond_error(rq, 500, "internal", "out of memory", NULL, NULL);
		return;
	}
	size_t len = sb.len;
	char *body = str_steal(&sb);
	if (!body) {
		respond_error(rq, 500, "internal", "out of memory", NULL, NULL);
		return;
	}
	respond(rq, 200, "text/plain; version=0.0.4", body, len, 1);
}

/* ---- the sweep: timeouts and clients that left --------------------------------------- */

static void sweep_cb(lws_sorted_usec_list_t *sul);

static void sweep_arm(void)
{
	if (srv.sweep_armed)
		return;
	srv.sweep_armed = 1;
	lws_sul_schedule(srv.ctx, 0, &srv.sweep, sweep_cb, SWEEP_US);
}

/* 1 when the peer closed its side (or the socket failed). */
static int peer_gone(struct lws *wsi)
{
	char c;
	int fd = lws_get_socket_fd(wsi);
	if (fd < 0)
		return 1;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return 1;
	return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

static void sweep_cb(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	uint64_t now = clock_now_us();
	struct ctl_request *expired = NULL, *gone = NULL, *rq, *next;
	int more;

	srv.sweep_armed = 0;
	pthread_mutex_lock(&hand.lock);
	for (rq = hand.pending; rq; rq = next) {
		next = rq->next;
		if (now >= rq->deadline_us) {
			list_del(rq);
			rq->next = expired;
			expired = rq;
		} else if (peer_gone(rq->wsi)) {
			list_del(rq);
			rq->next = gone;
			gone = rq;
		}
	}
	more = hand.pending != NULL;
	pthread_mutex_unlock(&hand.lock);

	for (rq = expired; rq; rq = next) {
		next = rq->next;
		rq->next = NULL;
		rq->handed = 0;
		log_reject(rq, 504, "the handler did not answer in time");
		respond_error(rq, 504, "timeout", "no answer in time", NULL, NULL);
	}
	for (rq = gone; rq; rq = next) {
		next = rq->next;
		rq->next = NULL;
		rq->handed = 0;
		rq->state = RQ_DEAD;
		metric_inc(srv.abandoned);
		lws_callback_on_writable(rq->wsi);
	}
	if (more)
		sweep_arm();
}

/* Answers given on other threads (LWS_CALLBACK_EVENT_WAIT_CANCELLED). */
static void drain_ready(void)
{
	struct ctl_request *list, *rq, *next;
	pthread_mutex_lock(&hand.lock);
	list = hand.ready;
	hand.ready = NULL;
	for (rq = list; rq; rq = rq->next)
		rq->listed = LIST_NONE;
	pthread_mutex_unlock(&hand.lock);
	for (rq = list; rq; rq = next) {
		next = rq->next;
		rq->prev = rq->next = NULL;
		rq->handed = 0;
		start_answer(rq);
	}
}

/* ---- requests ------------------------------------------------------------------------ */

/* Frees what rq holds and takes it off the hand-off lists; idempotent. */
static void req_reset(struct ctl_request *rq)
{
	stream_del(rq);
	if (rq->handed) {
		pthread_mutex_lock(&hand.lock);
		list_del(rq); /* a reply stored by another thread is freed with resp below */
		pthread_mutex_unlock(&hand.lock);
		rq->handed = 0;
		metric_inc(srv.abandoned);
	} else if (rq->state == RQ_BODY) {
		metric_inc(srv.abandoned); /* the client left mid-body */
	}
	if (rq->idem_owner) {
		rq->idem_owner = 0;
		ctl_idem_abandon(rq->who.prefix, rq->idem_key, rq->token);
	}
	mem_free(rq->body);
	rq->body = NULL;
	rq->body_len = rq->body_cap = 0;
	resp_free(rq);
	rq->state = RQ_IDLE;
}

/* The request waits on hand.pending (for ctl_reply, or a PostgreSQL lookup) until the
 * route's timeout. */
static void wait_pending(struct ctl_request *rq)
{
	rq->deadline_us = clock_now_us() + (uint64_t)rq->route->timeout_ms * 1000;
	/* lws put a 5 s timer on the request; the route's timeout_ms governs from here. */
	lws_set_timeout(rq->wsi, NO_PENDING_TIMEOUT, 0);
	pthread_mutex_lock(&hand.lock);
	rq->state = RQ_WAITING;
	list_add(&hand.pending, rq, LIST_PENDING);
	pthread_mutex_unlock(&hand.lock);
	rq->handed = 1;
	sweep_arm();
}

/* Runs the route's handler; the request waits on hand.pending until ctl_reply. */
static void run_handler(struct ctl_request *rq)
{
	wait_pending(rq);
	rq->route->fn(rq, rq->route->arg);
}

/* Answers what the idempotency map decided; 1 when answered, 0 = run the handler. */
static int idem_answer(struct ctl_request *rq, enum ctl_idem_verdict v, struct ctl_idem_answer *ans)
{
	switch (v) {
	case CTL_IDEM_RUN:
		return 0;
	case CTL_IDEM_LOOKUP:
		wait_pending(rq);
		return 1;
	case CTL_IDEM_REPLAY:
		rq->replayed = 1;
		respond(rq, ans->code, ans->ctype, ans->body, ans->len, 1);
		return 1;
	case CTL_IDEM_BUSY:
		log_reject(rq, 409, "Idempotency-Key in progress");
		respond_error(rq, 409, "idempotency_key_in_progress",
		              "a request with this Idempotency-Key is still being processed: "
		              "retry later",
		              NULL, "Idempotency-Key");
		return 1;
	case CTL_IDEM_REUSED:
		log_reject(rq, 422, "Idempotency-Key reused");
		respond_error(rq, 422, "idempotency_key_reused",
		              "this Idempotency-Key was used for another method or path", NULL,
		              "Idempotency-Key");
		return 1;
	}
	return 0;
}

/* Idempotency-Key on a CTL_IDEMPOTENT route: 1 when answered (or waiting for PostgreSQL),
 * 0 = run the handler (owning the key when there is one). */
static int idem_start(struct ctl_request *rq)
{
	char buf[HEADER_DATA_MAX + 1];
	const char *k = ctl_req_header(rq, "idempotency-key", buf, sizeof(buf));
	if (!k)
		return 0;
	size_t n = strlen(k), i = 0;
	while (i < n && k[i] >= 0x20 && k[i] < 0x7f)
		i++;
	if (!n || n > CTL_IDEM_KEY_MAX || i < n) {
		log_reject(rq, 400, "bad Idempotency-Key");
		respond_error(rq, 400, "invalid_header",
		              "Idempotency-Key must be 1 to 255 printable ASCII characters", NULL,
		              "Idempotency-Key");
		return 1;
	}
	memcpy(rq->idem_key, k, n + 1);
	struct ctl_idem_answer ans = {0};
	enum ctl_idem_verdict v =
	    ctl_idem_begin(rq->who.prefix, rq->idem_key, rq->method, rq->path, rq->token, &ans);
	rq->idem_owner = v == CTL_IDEM_RUN || v == CTL_IDEM_LOOKUP;
	return idem_answer(rq, v, &ans);
}

/* Runs the route's handler (after the idempotency check on CTL_IDEMPOTENT routes). */
static void dispatch(struct ctl_request *rq)
{
	const struct route *r = rq->route;
	if (r->builtin) {
		r->builtin(rq);
		return;
	}
	if (r->fn == on_stream_route) {
		stream_start(rq);
		return;
	}
	if ((r->flags & CTL_IDEMPOTENT) && idem_start(rq))
		return;
	run_handler(rq);
}

/* PostgreSQL answered idempotency lookups (LWS_CALLBACK_EVENT_WAIT_CANCELLED). */
static void drain_resumed(void)
{
	struct resume *list, *r, *next;
	pthread_mutex_lock(&hand.lock);
	list = hand.resumed;
	hand.resumed = NULL;
	pthread_mutex_unlock(&hand.lock);
	for (r = list; r; r = next) {
		next = r->next;
		pthread_mutex_lock(&hand.lock);
		struct ctl_request *rq = find_pending(r->token);
		if (rq)
			list_del(rq);
		pthread_mutex_unlock(&hand.lock);
		if (rq) {
			struct ctl_idem_answer ans = {0};
			rq->handed = 0;
			enum ctl_idem_verdict v =
			    ctl_idem_resolve(rq->who.prefix, rq->idem_key, rq->method, rq->path,
			                     rq->token, r->row, &ans);
			if (v != CTL_IDEM_RUN)
				rq->idem_owner = 0;
			if (!idem_answer(rq, v, &ans))
				run_handler(rq);
		}
		json_decref(r->row);
		mem_free(r);
	}
}

void ctl_http_resume(uint64_t token, json_t *row)
{
	struct resume *r = mem_zalloc(sizeof(*r));
	pthread_mutex_lock(&hand.lock);
	if (!r || !hand.live) {
		pthread_mutex_unlock(&hand.lock);
		mem_free(r);
		json_decref(row); /* the request times out (504) without r */
		return;
	}
	r->token = token;
	r->row = row;
	r->next = hand.resumed;
	hand.resumed = r;
	lws_cancel_service(srv.ctx);
	pthread_mutex_unlock(&hand.lock);
}

static void tick_cb(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	uint64_t now = clock_now_us();
	ctl_keys_tick(now);
	ctl_idem_tick(now);
	if (now >= next_beat_us) {
		next_beat_us = now + BEAT_US;
		streams_wake(1);
	}
	lws_sul_schedule(srv.ctx, 0, &srv.tick, tick_cb, TICK_US);
}

static int path_matches(const struct route *r, const char *path, size_t plen)
{
	if (r->path[r->path_len - 1] == '/')
		return plen >= r->path_len && memcmp(path, r->path, r->path_len) == 0;
	return plen == r->path_len && memcmp(path, r->path, plen) == 0;
}

/* The route for (method, path): an exact path beats a prefix, a longer prefix a shorter
 * one. When none has the method, *known says whether the path matched at all, and allow
 * lists the methods that would be accepted. */
static const struct route *route_find(const struct method *m, const char *path, int *known,
                                      char *allow, size_t allow_len)
{
	const struct route *best = NULL;
	size_t best_score = 0, plen = strlen(path);
	unsigned allowed = 0;

	*known = 0;
	for (unsigned i = 0; i < N_BUILTINS + srv.n_routes; i++) {
		const struct route *r = i < N_BUILTINS ? &builtins[i] : &srv.routes[i - N_BUILTINS];
		if (!path_matches(r, path, plen))
			continue;
		*known = 1;
		allowed |= 1u << (r->method - methods);
		size_t score = r->path[r->path_len - 1] == '/' ? r->path_len : SIZE_MAX;
		if (r->method == m && (!best || score > best_score)) {
			best = r;
			best_score = score;
		}
	}
	allow[0] = '\0';
	if (!best) {
		size_t off = 0;
		for (unsigned i = 0; i < N_METHODS; i++) {
			if (!(allowed & 1u << i))
				continue;
			int n = snprintf(allow + off, allow_len - off, "%s%s", off ? ", " : "",
			                 methods[i].name);
			if (n < 0 || (size_t)n >= allow_len - off)
				break;
			off += (size_t)n;
		}
	}
	return best;
}

/* `Authorization: Bearer <key>` against the key table; sets rq->who on success. */
static enum ctl_key_verdict authenticate(struct ctl_request *rq)
{
	char buf[AUTH_MAX];
	enum ctl_key_verdict v = CTL_KEY_UNKNOWN;
	int n = lws_hdr_total_length(rq->wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
	if (n <= 0 || n >= (int)sizeof(buf) ||
	    lws_hdr_copy(rq->wsi, buf, (int)sizeof(buf), WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
		return CTL_KEY_UNKNOWN;
	size_t len = 0;
	const char *tok = ctl_bearer_token(buf, &len);
	if (tok)
		v = ctl_keys_check(tok, len, &rq->who);
	explicit_bzero(buf, sizeof(buf));
	return v;
}

/* ---- the dashboard: session cookie, static files, event stream ------------------------- */

static struct {
	char dir[PATH_MAX]; /* realpath of ctl_config.web_dir, "" = no dashboard */
} web;

/* The event ring ctl_event_post fills; every stream client reads it at its own pace. */
static struct {
	pthread_mutex_t lock;
	char *ev[CTL_EVENTS_KEPT]; /* "event: x\ndata: {...}\n\n", mem_alloc'd */
	size_t len[CTL_EVENTS_KEPT];
	uint64_t head; /* sequence number of the next event */
} evq = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct ctl_request *streams; /* http thread only */
#define STATIC_MAX   (16u * 1024 * 1024)
#define STREAM_HELLO "retry: 3000\n: connected\n\n"

/* Looks the session cookie up (any route: /auth/me needs it too). */
static void session_of(struct ctl_request *rq)
{
	char cbuf[HEADER_DATA_MAX];
	rq->has_sess = 0;
	rq->sess_token[0] = '\0';
	if (ctl_req_header(rq, "cookie", cbuf, sizeof(cbuf)) &&
	    ctl_cookie_get(cbuf, CTL_SESSION_COOKIE, rq->sess_token, sizeof(rq->sess_token)) &&
	    ctl_session_find(rq->sess_token, clock_now_us(), &rq->sess) == 0)
		rq->has_sess = 1;
}

/* Paths that are the API's, never the dashboard's: a JSON 404 there. */
static int api_path(const char *path)
{
	return strncmp(path, "/v1/", 4) == 0 || strncmp(path, "/auth/", 6) == 0 ||
	       strncmp(path, "/webhooks/", 10) == 0 || strcmp(path, "/v1") == 0;
}

static const char *ctype_of(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	    {".html", "text/html; charset=utf-8"},
	    {".js", "text/javascript; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".svg", "image/svg+xml"},
	    {".png", "image/png"},
	    {".ico", "image/x-icon"},
	    {".json", "application/json"},
	    {".woff2", "font/woff2"},
	    {".map", "application/json"},
	    {".txt", "text/plain; charset=utf-8"},
	};
	const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
	for (size_t i = 0; dot && dot > slash && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcasecmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

/* Reads web.dir/rel into a mem_alloc'd buffer, refusing anything outside web.dir (.., links)
 * and anything not a regular file. 0, -ENOENT, -EFBIG, -ENOMEM, -EIO. */
static int static_read(const char *rel, char **out, size_t *len)
{
	char want[PATH_MAX], real[PATH_MAX];
	size_t dl = strlen(web.dir);
	if (snprintf(want, sizeof(want), "%s/%s", web.dir, rel) >= (int)sizeof(want) ||
	    !realpath(want, real) || strncmp(real, web.dir, dl) != 0 || real[dl] != '/')
		return -ENOENT;
	int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc = 0;
	struct stat st;
	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return -ENOENT;
	}
	if ((size_t)st.st_size > STATIC_MAX) {
		close(fd);
		return -EFBIG;
	}
	char *b = mem_alloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (b && got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
		if (n <= 0) {
			rc = -EIO;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	if (!b)
		return -ENOMEM;
	if (rc) {
		mem_free(b);
		return rc;
	}
	*out = b;
	*len = got;
	return 0;
}

/* GET/HEAD of a path no route has: the dashboard's files. Signed out, every page is the
 * sign-in page; signed in, a path without a file extension is a route of the SPA
 * (index.html). Hashed assets are cached for a year, pages revalidated. */
static void static_serve(struct ctl_request *rq, const char *path)
{
	const char *base = strrchr(path, '/');
	int has_ext = base && strchr(base, '.') != NULL;
	int page = !has_ext || strcmp(ctype_of(path), "text/html; charset=utf-8") == 0;
	const char *rel = path + 1;
	char *body = NULL;
	size_t len = 0;
	int rc;

	if (strstr(path, "/.") || strchr(path, '\\') || path[0] != '/') {
		reject(rq, 404, "not_found", "no such resource: ", path, NULL);
		return;
	}
	if (page && !rq->has_sess)
		rel = "login.html";
	else if (!has_ext)
		rel = "index.html";
	rc = static_read(rel, &body, &len);
	if (rc == -ENOENT && strcmp(rel, "index.html") && strcmp(rel, "login.html")) {
		reject(rq, 404, "not_found", "no such resource: ", path, NULL);
		return;
	}
	if (rc) {
		if (log_ratelimit_ok(&srv.rl))
			log_warn("ctl", "http: dashboard file %s: %s", rel, strerror(-rc));
		reject(rq, rc == -ENOENT ? 404 : 500, "not_found",
		       "the dashboard is not built (make builds web/dist)", NULL, NULL);
		return;
	}
	respond(rq, 200, ctype_of(rel), body, len, 1);
	rq->cache =
	    strncmp(rel, "assets/", 7) == 0 ? "public, max-age=31536000, immutable" : "no-cache";
	if (page) { /* the dashboard is never framed (clickjacking) nor leaks its paths */
		static const char sec[] = "X-Frame-Options: DENY\r\n"
		                          "Content-Security-Policy: frame-ancestors 'none'\r\n"
		                          "Referrer-Policy: same-origin\r\n";
		rq->hdrs = mem_alloc(sizeof(sec));
		if (rq->hdrs)
			memcpy(rq->hdrs, sec, sizeof(sec));
	}
}

void ctl_event_post(const char *type, const char *json)
{
	struct strbuf sb;
	str_init(&sb);
	str_printf(&sb, "event: %s\ndata: %s\n\n", type, json);
	size_t len = sb.len;
	char *ev = sb.oom ? NULL : str_steal(&sb);
	str_deinit(&sb);
	if (!ev)
		return;
	pthread_mutex_lock(&evq.lock);
	size_t at = evq.head % CTL_EVENTS_KEPT;
	mem_free(evq.ev[at]);
	evq.ev[at] = ev;
	evq.len[at] = len;
	evq.head++;
	pthread_mutex_unlock(&evq.lock);
	pthread_mutex_lock(&hand.lock);
	if (hand.live)
		lws_cancel_service(srv.ctx);
	pthread_mutex_unlock(&hand.lock);
}

static void on_stream_route(struct ctl_request *rq, void *arg)
{
	(void)rq;
	(void)arg; /* never called: dispatch starts the stream itself */
}

static void stream_start(struct ctl_request *rq)
{
	pthread_mutex_lock(&evq.lock);
	rq->ev_seq = evq.head;
	pthread_mutex_unlock(&evq.lock);
	rq->state = RQ_STREAM;
	rq->code = 200;
	rq->hdr_sent = 0;
	rq->beat = 0;
	rq->sprev = NULL;
	rq->snext = streams;
	if (streams)
		streams->sprev = rq;
	streams = rq;
	lws_set_timeout(rq->wsi, NO_PENDING_TIMEOUT, 0);
	count(200);
	lws_callback_on_writable(rq->wsi);
}

static void stream_del(struct ctl_request *rq)
{
	if (rq->state != RQ_STREAM)
		return;
	if (rq->sprev)
		rq->sprev->snext = rq->snext;
	else
		streams = rq->snext;
	if (rq->snext)
		rq->snext->sprev = rq->sprev;
	rq->sprev = rq->snext = NULL;
}

/* New events or a heartbeat due: have every stream written. */
static void streams_wake(int beat)
{
	uint64_t head;
	pthread_mutex_lock(&evq.lock);
	head = evq.head;
	pthread_mutex_unlock(&evq.lock);
	for (struct ctl_request *rq = streams; rq; rq = rq->snext) {
		rq->beat |= beat;
		if (head - rq->ev_seq > CTL_EVENTS_KEPT) {
			/* it does not read (its socket is full, so no WRITEABLE comes): close it
			 * from here; it reconnects and reloads GET /v1/live */
			if (log_ratelimit_ok(&srv.rl))
				log_warn("ctl",
				         "http: event stream of %s dropped: it does not read",
				         rq->peer);
			metric_inc(srv.streams_dropped);
			lws_set_timeout(rq->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		} else if (rq->ev_seq != head || rq->beat) {
			lws_callback_on_writable(rq->wsi);
		}
	}
}

static int stream_write(struct lws *wsi, struct ctl_request *rq)
{
	static unsigned char buf[LWS_PRE + WRITE_CHUNK]; /* http thread only */
	size_t n = 0;
	if (!rq->hdr_sent) {
		unsigned char hdr[LWS_PRE + 512];
		unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
		if (lws_add_http_common_headers(wsi, 200, "text/event-stream",
		                                LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
		    add_header(wsi, "Cache-Control:", "no-store", &p, end) ||
		    add_header(wsi, "X-Accel-Buffering:", "no", &p, end) ||
		    lws_finalize_write_http_header(wsi, start, &p, end))
			return -1;
		rq->hdr_sent = 1;
		memcpy(buf + LWS_PRE, STREAM_HELLO, sizeof(STREAM_HELLO) - 1);
		n = sizeof(STREAM_HELLO) - 1;
	}
	if (lws_send_pipe_choked(wsi)) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	int more = 0;
	pthread_mutex_lock(&evq.lock);
	if (evq.head - rq->ev_seq > CTL_EVENTS_KEPT) {
		pthread_mutex_unlock(&evq.lock);
		if (log_ratelimit_ok(&srv.rl))
			log_warn("ctl", "http: event stream of %s dropped: it does not read",
			         rq->peer);
		return -1; /* it does not keep up: drop it, it reconnects and reloads */
	}
	while (rq->ev_seq < evq.head) {
		size_t at = rq->ev_seq % CTL_EVENTS_KEPT, l = evq.len[at];
		if (n + l > WRITE_CHUNK) {
			more = n > 0;
			if (!more) /* a single event over the chunk: skipped */
				rq->ev_seq++;
			break;
		}
		memcpy(buf + LWS_PRE + n, evq.ev[at], l);
		n += l;
		rq->ev_seq++;
	}
	pthread_mutex_unlock(&evq.lock);
	if (rq->beat && n + 9 <= WRITE_CHUNK) {
		memcpy(buf + LWS_PRE + n, ": beat\n\n", 8);
		n += 8;
		rq->beat = 0;
	}
	if (n && lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP) < (int)n)
		return -1;
	if (more)
		lws_callback_on_writable(wsi);
	return 0;
}

/* Sends the interim answer lws 4.1.6 never sends, so clients do not wait (curl: 1 s). */
static int send_continue(struct lws *wsi)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	char exp[32];
	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_EXPECT) <= 0 ||
	    lws_hdr_copy(wsi, exp, (int)sizeof(exp), WSI_TOKEN_HTTP_EXPECT) < 0 ||
	    strcasecmp(exp, "100-continue") != 0)
		return 0;
	/* nothing else has been written on this transaction: the socket takes 25 bytes */
	if (send(lws_get_socket_fd(wsi), cont, sizeof(cont) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) !=
	    (ssize_t)(sizeof(cont) - 1))
		return -1;
	return 0;
}

static int on_request(struct lws *wsi, struct ctl_request *rq, const char *path)
{
	const struct method *m = NULL;
	char clbuf[32] = "";
	unsigned long long cl = 0;
	int has_cl, bad_cl = 0, chunked = 0, known;

	rq->wsi = wsi;
	rq->token = ++srv.next_token;
	rq->path = path;
	rq->close = 0;
	memset(&rq->who, 0, sizeof(rq->who));
	rq->idem_owner = 0;
	rq->replayed = 0;
	rq->secret_answer = 0;
	for (unsigned i = 0; i < N_METHODS; i++) {
		if (lws_hdr_total_length(wsi, methods[i].tok) > 0) {
			m = &methods[i];
			break;
		}
	}
	rq->method = m ? m->name : "?";
	rq->head_only = m && m->tok == WSI_TOKEN_HEAD_URI;
	if (!lws_get_peer_simple(wsi, rq->peer, sizeof(rq->peer)))
		rq->peer[0] = '\0';
	session_of(rq);

	/* What lws will do about a body (server.c lws_http_action): read Content-Length
	 * bytes, or 100 MB for POST/PUT/PATCH without one. */
	has_cl = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
	if (has_cl) {
		char *end = NULL;
		if (lws_hdr_copy(wsi, clbuf, (int)sizeof(clbuf), WSI_TOKEN_HTTP_CONTENT_LENGTH) <=
		        0 ||
		    clbuf[0] < '0' || clbuf[0] > '9') {
			bad_cl = 1;
		} else {
			errno = 0;
			cl = strtoull(clbuf, &end, 10);
			bad_cl = errno != 0 || *end != '\0';
		}
		rq->lws_reads_body = atoll(clbuf) > 0;
	} else {
		rq->lws_reads_body = m && m->needs_length;
	}
	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
		char te[64];
		chunked =
		    lws_hdr_copy(wsi, te, (int)sizeof(te), WSI_TOKEN_HTTP_TRANSFER_ENCODING) < 0 ||
		    strcasestr(te, "chunked") != NULL;
	}
	rq->has_unread = rq->lws_reads_body || chunked || bad_cl;

	rq->route = route_find(m, path, &known, rq->allow, sizeof(rq->allow));
	if (!rq->route && !known && m && (m->tok == WSI_TOKEN_GET_URI || rq->head_only) &&
	    web.dir[0] && !api_path(path)) {
		static_serve(rq, path);
		return 0;
	}
	if (!rq->route) {
		if (!known) {
			rq->allow[0] = '\0';
			reject(rq, 404, "not_found", "no such resource: ", path, NULL);
		} else {
			reject(rq, 405, "method_not_allowed", "method not allowed on ", path, NULL);
		}
		return 0;
	}
	if ((rq->route->flags & CTL_AUTH_API) && rq->has_sess &&
	    lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) <= 0) {
		/* a browser session instead of a key: viewer "read", admin every scope */
		char csrf[CTL_TOKEN_HEX + 8];
		rq->who.id = 0;
		snprintf(rq->who.prefix, sizeof(rq->who.prefix), "u:%lld",
		         (long long)rq->sess.user_id);
		rq->who.scopes = rq->sess.admin
		                     ? CTL_SCOPE_BITS
		                     : ((unsigned)CTL_SCOPE_READ & ~(unsigned)CTL_AUTH_API);
		if (m->tok != WSI_TOKEN_GET_URI && !rq->head_only &&
		    m->tok != WSI_TOKEN_OPTIONS_URI &&
		    !ctl_csrf_ok(&rq->sess,
		                 ctl_req_header(rq, "x-csrf-token", csrf, sizeof(csrf)))) {
			log_reject(rq, 403, "CSRF token missing or wrong");
			reject(rq, 403, "csrf_failed",
			       "the X-CSRF-Token header is missing or wrong", NULL, "X-CSRF-Token");
			return 0;
		}
		if (!ctl_scope_allows(rq->who.scopes, rq->route->flags)) {
			log_reject(rq, 403, "role lacks the scope");
			reject(rq, 403, "forbidden",
			       "your role (viewer) may only read: ask an admin", NULL, NULL);
			return 0;
		}
	} else if (rq->route->flags & CTL_AUTH_API) {
		enum ctl_key_verdict v = authenticate(rq);
		if (v != CTL_KEY_OK) {
			log_reject(rq, 401,
			           v == CTL_KEY_REVOKED ? "revoked key" : "no valid bearer key");
			reject(rq, 401, "unauthorized",
			       v == CTL_KEY_REVOKED ? "this API key has been revoked"
			                            : "a valid API key is required",
			       NULL, "authorization");
			return 0;
		}
		if (!ctl_scope_allows(rq->who.scopes, rq->route->flags)) {
			char msg[128];
			snprintf(msg, sizeof(msg),
			         "this API key lacks the \"%s\" scope this route needs",
			         ctl_scope_missing(rq->who.scopes, rq->route->flags));
			log_reject(rq, 403, "scope missing");
			reject(rq, 403, "forbidden", msg, NULL, NULL);
			return 0;
		}
	}
	if (chunked || (!has_cl && m->needs_length)) {
		log_reject(rq, 411, chunked ? "chunked body" : "no Content-Length");
		rq->close = 1;
		respond_error(rq, 411, "length_required",
		              chunked
		                  ? "chunked request bodies are not accepted; send Content-Length"
		                  : "Content-Length is required",
		              NULL, "content-length");
		return 0;
	}
	if (bad_cl) {
		log_reject(rq, 400, "bad Content-Length");
		rq->close = 1;
		respond_error(rq, 400, "bad_request", "invalid Content-Length", NULL,
		              "content-length");
		return 0;
	}
	if (cl > rq->route->max_body) {
		char msg[96];
		snprintf(msg, sizeof(msg), "the body is limited to %zu bytes", rq->route->max_body);
		log_reject(rq, 413, "Content-Length over the limit");
		rq->close = 1;
		respond_error(rq, 413, "payload_too_large", msg, NULL, NULL);
		return 0;
	}
	if (cl > 0) {
		rq->content_length = (size_t)cl;
		rq->state = RQ_BODY;
		return send_continue(wsi);
	}
	dispatch(rq);
	return 0;
}

static int on_body(struct ctl_request *rq, const char *in, size_t len)
{
	if (rq->handed)
		return 0; /* its state is under hand.lock; nothing more to read for it */
	if (rq->state == RQ_LINGER) {
		rq->linger_bytes += len;
		if (rq->linger_bytes > LINGER_MAX_BYTES || clock_now_us() > rq->linger_until_us)
			return -1;
		return 0;
	}
	if (rq->state != RQ_BODY || !len)
		return 0; /* a body we answered before reading: dropped */
	size_t max = rq->route->max_body;
	if (len > max - rq->body_len) { /* lws keeps to Content-Length; never trust it alone */
		log_reject(rq, 413, "body over the limit");
		mem_free(rq->body);
		rq->body = NULL;
		rq->body_len = rq->body_cap = 0;
		rq->close = 1;
		respond_error(rq, 413, "payload_too_large", "the body is over the limit", NULL,
		              NULL);
		return 0;
	}
	size_t need = rq->body_len + len + 1;
	if (need > rq->body_cap) {
		size_t cap = rq->body_cap ? rq->body_cap * 2 : BODY_MIN_CAP;
		if (cap > rq->content_length + 1)
			cap = rq->content_length + 1;
		if (cap < need)
			cap = need;
		char *nb = mem_realloc(rq->body, cap);
		if (!nb) {
			mem_free(rq->body);
			rq->body = NULL;
			rq->body_len = rq->body_cap = 0;
			rq->close = 1;
			respond_error(rq, 500, "internal", "out of memory", NULL, NULL);
			return 0;
		}
		rq->body = nb;
		rq->body_cap = cap;
	}
	memcpy(rq->body + rq->body_len, in, len);
	rq->body_len += len;
	rq->body[rq->body_len] = '\0';
	return 0;
}

static int on_body_done(struct ctl_request *rq)
{
	rq->body_done = 1;
	if (rq->handed)
		return 0;
	if (rq->state == RQ_LINGER)
		return -1; /* all read: the close is clean now */
	if (rq->state == RQ_BODY)
		dispatch(rq);
	return 0;
}

static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
                      unsigned char *end)
{
	return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
	                                   (const unsigned char *)value, (int)strlen(value), p,
	                                   end);
}

static int write_headers(struct lws *wsi, struct ctl_request *rq)
{
	unsigned char hdr[LWS_PRE + 2048 + CTYPE_MAX];
	unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;

	if (rq->code == 204 || rq->code == 304) {
		if (lws_add_http_header_status(wsi, rq->code, &p, end))
			return -1;
	} else if (lws_add_http_common_headers(wsi, rq->code, rq->ctype, rq->resp_len, &p, end)) {
		return -1;
	}
	if (add_header(wsi, "Cache-Control:", rq->cache ? rq->cache : "no-store", &p, end) ||
	    add_header(wsi, "X-Content-Type-Options:", "nosniff", &p, end))
		return -1;
	for (const char *h = rq->hdrs; h && *h;) { /* "Name: value\r\n" lines */
		const char *colon = strchr(h, ':'), *eol = strstr(h, "\r\n");
		char name[64], value[512];
		if (!colon || !eol || colon > eol || (size_t)(colon - h) + 2 > sizeof(name))
			break;
		const char *v = colon + 1;
		while (*v == ' ')
			v++;
		snprintf(name, sizeof(name), "%.*s:", (int)(colon - h), h);
		snprintf(value, sizeof(value), "%.*s", (int)(eol - v), v);
		if (add_header(wsi, name, value, &p, end))
			return -1;
		h = eol + 2;
	}
	if (rq->allow[0] && add_header(wsi, "Allow:", rq->allow, &p, end))
		return -1;
	if (rq->code == 401 && add_header(wsi, "WWW-Authenticate:", "Bearer", &p, end))
		return -1;
	if (rq->replayed && add_header(wsi, "Idempotent-Replayed:", "true", &p, end))
		return -1;
	if ((rq->close || rq->head_only) && add_header(wsi, "Connection:", "close", &p, end))
		return -1;
	return lws_finalize_write_http_header(wsi, start, &p, end) ? -1 : 0;
}

/* The answer is out: keep-alive, close, or close after draining the unread body. */
static int finish(struct lws *wsi, struct ctl_request *rq)
{
	int close = rq->close || rq->head_only;
	int linger = close && rq->lws_reads_body && !rq->body_done;

	resp_free(rq);
	mem_free(rq->body);
	rq->body = NULL;
	rq->body_len = rq->body_cap = 0;
	rq->state = RQ_IDLE;
	if (!close) /* rq may be freed by lws from here (protocol rebind) */
		return lws_http_transaction_completed(wsi) ? -1 : 0;
	if (!linger || lws_partial_buffered(wsi))
		return -1;
	shutdown(lws_get_socket_fd(wsi), SHUT_WR);
	rq->state = RQ_LINGER;
	rq->linger_bytes = 0;
	rq->linger_until_us = clock_now_us() + LINGER_US;
	lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, 2);
	return 0;
}

static int on_writeable(struct lws *wsi, struct ctl_request *rq)
{
	static unsigned char buf[LWS_PRE + WRITE_CHUNK]; /* http thread only */

	if (rq->handed)
		return 0; /* still waiting for its answer */
	if (rq->state == RQ_DEAD)
		return -1;
	if (rq->state == RQ_STREAM)
		return stream_write(wsi, rq);
	if (rq->state != RQ_ANSWER)
		return 0;
	if (!rq->hdr_sent) {
		if (write_headers(wsi, rq))
			return -1;
		rq->hdr_sent = 1;
		if (rq->head_only || !rq->resp_len)
			return finish(wsi, rq);
		lws_callback_on_writable(wsi);
		return 0;
	}
	size_t n = rq->resp_len - rq->resp_off;
	if (n > WRITE_CHUNK)
		n = WRITE_CHUNK;
	int final = rq->resp_off + n == rq->resp_len;
	memcpy(buf + LWS_PRE, rq->resp + rq->resp_off, n);
	if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) <
	    (int)n)
		return -1;
	rq->resp_off += n;
	if (!final) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	return finish(wsi, rq);
}

static int http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
	struct ctl_request *rq = user;
	switch (reason) {
	case LWS_CALLBACK_HTTP:
		if (!rq || !in)
			return -1;
		return on_request(wsi, rq, in);
	case LWS_CALLBACK_HTTP_BODY:
		return rq ? on_body(rq, in, len) : 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		return rq ? on_body_done(rq) : 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return rq ? on_writeable(wsi, rq) : 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (rq)
			req_reset(rq);
		break;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		/* ctl_reply from another thread, or ctl_close: never nonzero here */
		if (on_http_thread) {
			drain_ready();
			drain_resumed();
			streams_wake(0);
		}
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {.name = "vacs-http", .callback = http_cb, .per_session_data_size = sizeof(struct ctl_request)},
    {.name = NULL},
};

/* ---- the API ------------------------------------------------------------------------- */

int ctl_route_add(const char *method, const char *path, unsigned flags, size_t max_body,
                  unsigned timeout_ms, ctl_handler_fn fn, void *arg)
{
	const struct method *m = NULL;
	if (srv.started || !method || !path || !fn || path[0] != '/' ||
	    strlen(path) >= ROUTE_PATH_MAX ||
	    (flags & ~(unsigned)(CTL_SCOPE_READ | CTL_SCOPE_CALLS | CTL_SCOPE_CAMPAIGNS |
	                         CTL_SCOPE_ADMIN | CTL_IDEMPOTENT)))
		return -EINVAL;
	for (unsigned i = 0; i < N_METHODS; i++) {
		if (strcmp(method, methods[i].name) == 0)
			m = &methods[i];
	}
	if (!m)
		return -EINVAL;
	for (unsigned i = 0; i < N_BUILTINS + srv.n_routes; i++) {
		const struct route *r = i < N_BUILTINS ? &builtins[i] : &srv.routes[i - N_BUILTINS];
		if (r->method == m && strcmp(r->path, path) == 0)
			return -EEXIST;
	}
	if (srv.n_routes == MAX_ROUTES)
		return -ENOSPC;
	struct route *r = &srv.routes[srv.n_routes++];
	memset(r, 0, sizeof(*r));
	r->method = m;
	snprintf(r->path, sizeof(r->path), "%s", path);
	r->path_len = strlen(path);
	r->flags = flags;
	r->max_body = max_body;
	r->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
	r->fn = fn;
	r->arg = arg;
	return 0;
}

const char *ctl_req_method(const struct ctl_request *rq)
{
	return rq && rq->method ? rq->method : "";
}

const char *ctl_req_path(const struct ctl_request *rq)
{
	return rq && rq->path ? rq->path : "";
}

const char *ctl_req_body(const struct ctl_request *rq, size_t *len)
{
	if (len)
		*len = rq && rq->body ? rq->body_len : 0;
	return rq && rq->body ? rq->body : "";
}

/* The lws token for a header lws parses itself ("name:" lowercase), or -1. */
static int header_token(const char *key)
{
	static const struct {
		const char *name;
		enum lws_token_indexes tok;
	} common[] = {
	    {"authorization:", WSI_TOKEN_HTTP_AUTHORIZATION},
	    {"content-type:", WSI_TOKEN_HTTP_CONTENT_TYPE},
	    {"user-agent:", WSI_TOKEN_HTTP_USER_AGENT},
	    {"content-length:", WSI_TOKEN_HTTP_CONTENT_LENGTH},
	    {"host:", WSI_TOKEN_HOST},
	};
	for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++) {
		if (strcmp(key, common[i].name) == 0)
			return (int)common[i].tok;
	}
	/* lws stores every header it knows (accept:, origin:, x-forwarded-for:, ...) by token
	 * only; lws_hdr_custom_copy would not find those. */
	for (int t = 0; t < (int)WSI_TOKEN_COUNT; t++) {
		const unsigned char *s = lws_token_to_string((enum lws_token_indexes)t);
		if (s && strcmp((const char *)s, key) == 0)
			return t;
	}
	return -1;
}

const char *ctl_req_header(const struct ctl_request *rq, const char *name, char *buf, size_t len)
{
	char key[96];
	size_t n = name ? strlen(name) : 0;
	if (!rq || !rq->wsi || !buf || !len || !n || n + 2 > sizeof(key))
		return NULL;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++)
		key[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
	key[n] = ':';
	key[n + 1] = '\0';
	int blen = len > INT_MAX ? INT_MAX : (int)len;
	int tok = header_token(key);
	if (tok >= 0) {
		if (lws_hdr_total_length(rq->wsi, (enum lws_token_indexes)tok) <= 0)
			return NULL;
		return lws_hdr_copy(rq->wsi, buf, blen, (enum lws_token_indexes)tok) > 0 ? buf
		                                                                         : NULL;
	}
	return lws_hdr_custom_copy(rq->wsi, buf, blen, key, (int)(n + 1)) >= 0 ? buf : NULL;
}

/* lws keeps the query's name=value pairs as decoded fragments of URI_ARGS. Each is read
 * whole into frag (QUERY_FRAG_MAX): a long parameter never hides the ones after it. The
 * length copied, -1 past the last one, -2 for one longer than frag. */
#define QUERY_FRAG_MAX 4096
static int query_fragment(const struct ctl_request *rq, int idx, char *frag)
{
	int n = lws_hdr_fragment_length(rq->wsi, WSI_TOKEN_HTTP_URI_ARGS, idx);
	if (n <= 0)
		return -1;
	if (n >= QUERY_FRAG_MAX)
		return -2;
	return lws_hdr_copy_fragment(rq->wsi, frag, QUERY_FRAG_MAX, WSI_TOKEN_HTTP_URI_ARGS, idx);
}

const char *ctl_req_query(const struct ctl_request *rq, const char *name, char *buf, size_t len)
{
	size_t n = name ? strlen(name) : 0;
	if (!rq || !rq->wsi || !buf || !len || !n)
		return NULL;
	buf[0] = '\0';
	char frag[QUERY_FRAG_MAX];
	for (int i = 0; i < CTL_QUERY_MAX; i++) {
		int got = query_fragment(rq, i, frag);
		if (got == -1)
			break;
		if (got < 0 || (size_t)got <= n || strncmp(frag, name, n) != 0 || frag[n] != '=')
			continue;
		size_t vlen = (size_t)got - n - 1;
		if (vlen >= len)
			return NULL;
		memcpy(buf, frag + n + 1, vlen + 1);
		return buf;
	}
	return NULL;
}

const char *ctl_req_query_unknown(const struct ctl_request *rq, const char *const *known, char *buf,
                                  size_t len)
{
	if (!rq || !rq->wsi || !buf || !len)
		return NULL;
	char frag[QUERY_FRAG_MAX];
	for (int i = 0; i < CTL_QUERY_MAX; i++) {
		int got = query_fragment(rq, i, frag);
		if (got == -1)
			return NULL;
		if (got == -2) {
			snprintf(buf, len, "(a parameter over %d bytes)", QUERY_FRAG_MAX - 1);
			return buf;
		}
		/* An empty parameter ("?", "a=1&") comes as "" or, from lws 4.1, "/". */
		if (!frag[0] || (frag[0] == '/' && !frag[1]))
			continue;
		char *eq = strchr(frag, '=');
		if (eq)
			*eq = '\0';
		if (!frag[0]) {
			snprintf(buf, len, "(a parameter without a name)");
			return buf;
		}
		size_t k = 0;
		while (known && known[k] && strcmp(known[k], frag) != 0)
			k++;
		if (!known || !known[k]) {
			snprintf(buf, len, "%s", frag);
			return buf;
		}
	}
	snprintf(buf, len, "(more than %d parameters)", CTL_QUERY_MAX);
	return buf;
}

const char *ctl_req_peer(const struct ctl_request *rq)
{
	return rq ? rq->peer : "";
}

uint64_t ctl_req_token(const struct ctl_request *rq)
{
	return rq ? rq->token : 0;
}

const struct ctl_session_who *ctl_req_session(const struct ctl_request *rq)
{
	return rq && rq->has_sess ? &rq->sess : NULL;
}

const char *ctl_req_session_token(const struct ctl_request *rq)
{
	return rq && rq->has_sess ? rq->sess_token : "";
}

const char *ctl_req_key_prefix(const struct ctl_request *rq)
{
	return rq ? rq->who.prefix : "";
}

int64_t ctl_req_key_id(const struct ctl_request *rq)
{
	return rq ? rq->who.id : 0;
}

void ctl_req_secret_answer(struct ctl_request *rq)
{
	if (rq)
		rq->secret_answer = 1;
}

int ctl_req_has_scope(const struct ctl_request *rq, unsigned scope)
{
	return rq && rq->who.prefix[0] && ctl_scope_allows(rq->who.scopes, scope);
}

int ctl_reply(uint64_t token, unsigned code, const char *ctype, char *body, size_t len)
{
	return ctl_reply_hdrs(token, code, ctype, NULL, body, len);
}

int ctl_reply_hdrs(uint64_t token, unsigned code, const char *ctype, const char *hdrs, char *body,
                   size_t len)
{
	int rc = 0;
	char *hcopy = NULL;
	if (!body)
		len = 0;
	if (hdrs && *hdrs) {
		size_t hn = strlen(hdrs);
		hcopy = mem_alloc(hn + 1);
		if (!hcopy) {
			mem_free(body);
			body = NULL;
			len = 0;
			code = 500;
		} else {
			memcpy(hcopy, hdrs, hn + 1);
		}
	}
	if (!ctype)
		ctype = "application/json";
	if (code < 200 || code > 599 || strlen(ctype) >= CTYPE_MAX || strpbrk(ctype, "\r\n")) {
		/* a programming error: still answer, so the client is not left waiting */
		mem_free(body);
		body = NULL;
		len = 0;
		code = 500;
		ctype = "application/json";
		rc = -EINVAL;
	}
	pthread_mutex_lock(&hand.lock);
	struct ctl_request *rq = hand.live ? find_pending(token) : NULL;
	if (!rq) {
		pthread_mutex_unlock(&hand.lock);
		mem_free(body);
		mem_free(hcopy);
		return -ENOENT;
	}
	list_del(rq);
	if (on_http_thread) {
		pthread_mutex_unlock(&hand.lock);
		rq->handed = 0;
		respond(rq, code, ctype, body, len, 1);
		rq->hdrs = hcopy; /* written with the headers, at the next WRITEABLE */
		return rc;
	}
	rq->hdrs = hcopy;
	rq->code = code;
	set_ctype(rq, ctype);
	rq->resp = body;
	rq->resp_len = len;
	rq->resp_owned = 1;
	rq->state = RQ_READY;
	list_add(&hand.ready, rq, LIST_READY);
	lws_cancel_service(srv.ctx);
	pthread_mutex_unlock(&hand.lock);
	return rc;
}

int ctl_reply_error(uint64_t token, unsigned code, const char *ecode, const char *message,
                    const char *field)
{
	size_t len = 0;
	char *body = error_json(ecode, message, NULL, field, &len);
	if (!body) {
		int rc = ctl_reply(token, 500, NULL, NULL, 0);
		return rc ? rc : -ENOMEM;
	}
	return ctl_reply(token, code, "application/json", body, len);
}

/* ---- the thread and its life --------------------------------------------------------- */

static void lws_log(int level, const char *line)
{
	log_line(level & LLL_ERR ? LOG_ERR : LOG_WARN, "lws", line);
}

static void *http_main(void *arg)
{
	(void)arg;
	on_http_thread = 1;
	lws_sul_schedule(srv.ctx, 0, &srv.tick, tick_cb, 1);
	while (!atomic_load(&stop_flag)) {
		if (lws_service(srv.ctx, 0) < 0)
			break;
	}
	return NULL;
}

/* lws gives no reason when a vhost cannot listen: find the errno ourselves first. */
static int probe_bind(const char *address, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, address, &sa.sin_addr) != 1)
		return -EINVAL;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1, rc = 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* GET /v1/admin/routes: what this server answers, for operators and the test that holds
 * docs/api/openapi.yaml to it. */
static void on_routes(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const struct {
		unsigned flag;
		const char *name;
	} scopes[] = {{CTL_SCOPE_ADMIN, "admin"},
	              {CTL_SCOPE_CAMPAIGNS, "campaigns"},
	              {CTL_SCOPE_CALLS, "calls:write"},
	              {CTL_SCOPE_READ, "read"},
	              {CTL_AUTH_API, "any"}};
	struct strbuf sb;
	str_init(&sb);
	str_printf(&sb, "{\"routes\":[");
	for (unsigned i = 0; i < N_BUILTINS + srv.n_routes; i++) {
		const struct route *r = i < N_BUILTINS ? &builtins[i] : &srv.routes[i - N_BUILTINS];
		const char *scope = NULL;
		for (size_t k = 0; k < sizeof(scopes) / sizeof(scopes[0]) && !scope; k++) {
			if ((r->flags & scopes[k].flag) == scopes[k].flag)
				scope = scopes[k].name;
		}
		str_printf(&sb, "%s{\"method\":\"%s\",\"path\":\"", i ? "," : "", r->method->name);
		json_escape(&sb, r->path, r->path_len);
		str_printf(&sb, "\",\"prefix\":%s,\"scope\":%s%s%s,\"idempotent\":%s}",
		           r->path[r->path_len - 1] == '/' ? "true" : "false", scope ? "\"" : "",
		           scope ? scope : "null", scope ? "\"" : "",
		           r->flags & CTL_IDEMPOTENT ? "true" : "false");
	}
	str_printf(&sb, "]}");
	size_t len = sb.len;
	char *body = sb.oom ? NULL : str_steal(&sb);
	str_deinit(&sb);
	if (!body)
		ctl_reply_error(ctl_req_token(rq), 500, "internal", "out of memory", NULL);
	else
		ctl_reply(ctl_req_token(rq), 200, NULL, body, len);
}

int ctl_init(const struct ctl_config *cfg)
{
	int rc;
	if (!cfg)
		return -EINVAL;
	if (srv.ctx)
		return -EALREADY;
	if (!srv.started &&
	    (rc = ctl_route_add("GET", "/v1/admin/routes", CTL_SCOPE_ADMIN, 0, 0, on_routes,
	                        NULL)) &&
	    rc != -EEXIST)
		return rc;
	srv.port = 0;
	if (!cfg->port) {
		srv.started = 1;
		return 0;
	}
	const char *address = cfg->address && cfg->address[0] ? cfg->address : "0.0.0.0";
	rc = probe_bind(address, cfg->port);
	if (rc) {
		log_err("ctl", "http: cannot listen on %s:%u: %s", address, cfg->port,
		        strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i <= N_CODES; i++) {
		char name[64];
		if (i < N_CODES)
			snprintf(name, sizeof(name), "vacs_http_requests_total{code=\"%u\"}",
			         code_num[i]);
		else
			snprintf(name, sizeof(name), "vacs_http_requests_total{code=\"other\"}");
		srv.requests[i] =
		    metric_get(METRIC_COUNTER, name, "HTTP requests answered, by status code");
		if (!srv.requests[i])
			return -ENOMEM;
	}
	srv.abandoned = metric_get(METRIC_COUNTER, "vacs_http_abandoned_total",
	                           "HTTP requests whose client left before the answer");
	if (!srv.abandoned)
		return -ENOMEM;
	srv.streams_dropped =
	    metric_get(METRIC_COUNTER, "vacs_http_event_streams_dropped_total",
	               "GET /v1/events/stream clients dropped for falling behind");
	if (!srv.streams_dropped)
		return -ENOMEM;
	unsigned n_routes = srv.n_routes; /* the /v1/keys routes are added here */
	rc = ctl_keys_start(cfg->api_keys);
	if (!rc)
		rc = ctl_auth_start(cfg->cookie_secure);
	if (!rc)
		rc = api_wa_thread_init();
	if (!rc)
		rc = api_recordings_init();
	if (!rc)
		rc = ctl_route_add("GET", "/v1/events/stream", CTL_SCOPE_READ, 0, 0,
		                   on_stream_route, NULL);
	if (rc) {
		ctl_keys_stop();
		srv.n_routes = n_routes;
		return rc;
	}
	web.dir[0] = '\0';
	if (cfg->web_dir && cfg->web_dir[0] && !realpath(cfg->web_dir, web.dir)) {
		log_info("ctl",
		         "http: the dashboard directory %s is missing (%s): / answers 404 "
		         "until it is built",
		         cfg->web_dir, strerror(errno));
		snprintf(web.dir, sizeof(web.dir), "%s", cfg->web_dir);
	}
	next_beat_us = 0;
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);

	struct lws_context_creation_info info;
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	info.max_http_header_data = HEADER_DATA_MAX;
	srv.ctx = lws_create_context(&info);
	if (!srv.ctx) {
		log_err("ctl", "http: cannot create the lws context");
		ctl_keys_stop();
		srv.n_routes = n_routes;
		return -ENOMEM;
	}
	info.options |= LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
	info.port = cfg->port;
	info.iface = strcmp(address, "0.0.0.0") == 0 ? NULL : address;
	info.vhost_name = "vacs";
	struct lws_vhost *vh = lws_create_vhost(srv.ctx, &info);
	if (!vh) {
		log_err("ctl", "http: cannot listen on %s:%u", address, cfg->port);
		rc = -EADDRINUSE;
		goto fail;
	}
	int port = lws_get_vhost_listen_port(vh);
	srv.port = port > 0 ? (uint16_t)port : cfg->port;
	memset(&srv.sweep, 0, sizeof(srv.sweep));
	memset(&srv.tick, 0, sizeof(srv.tick));
	srv.sweep_armed = 0;

	pthread_mutex_lock(&hand.lock);
	hand.live = 1;
	pthread_mutex_unlock(&hand.lock);
	/* Signals belong to the main thread; the http thread never takes one. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	atomic_store(&stop_flag, 0);
	rc = -pthread_create(&srv.thread, NULL, http_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		pthread_mutex_lock(&hand.lock);
		hand.live = 0;
		pthread_mutex_unlock(&hand.lock);
		goto fail;
	}
	pthread_setname_np(srv.thread, "http");
	srv.started = 1;
	log_info("ctl", "http: listening on %s:%u", address, srv.port);
	return 0;
fail:
	lws_context_destroy(srv.ctx);
	srv.ctx = NULL;
	srv.port = 0;
	ctl_keys_stop();
	srv.n_routes = n_routes;
	return rc;
}

void ctl_close(void)
{
	if (srv.ctx) {
		/* From here ctl_reply answers -ENOENT and no longer touches the context. */
		pthread_mutex_lock(&hand.lock);
		hand.live = 0;
		pthread_mutex_unlock(&hand.lock);
		atomic_store(&stop_flag, 1);
		lws_cancel_service(srv.ctx);
		pthread_join(srv.thread, NULL);
		/* Closes every connection: CLOSED_HTTP frees bodies and stored replies. */
		lws_context_destroy(srv.ctx);
		srv.ctx = NULL;
	}
	pthread_mutex_lock(&hand.lock);
	struct resume *r = hand.resumed;
	hand.resumed = NULL;
	pthread_mutex_unlock(&hand.lock);
	while (r) {
		struct resume *next = r->next;
		json_decref(r->row);
		mem_free(r);
		r = next;
	}
	srv.port = 0;
	srv.sweep_armed = 0;
	srv.started = 0;
	srv.n_routes = 0;
	ctl_keys_stop();
	ctl_idem_stop();
	ctl_auth_reset();
	pthread_mutex_lock(&evq.lock);
	for (size_t i = 0; i < CTL_EVENTS_KEPT; i++) {
		mem_free(evq.ev[i]);
		evq.ev[i] = NULL;
	}
	evq.head = 0;
	pthread_mutex_unlock(&evq.lock);
}

int ctl_ready_check(const char *name, ctl_check_fn fn, void *arg)
{
	if (!name || !fn)
		return -EINVAL;
	if (n_ready_checks == READY_CHECKS)
		return -ENOSPC;
	ready_checks[n_ready_checks].name = name;
	ready_checks[n_ready_checks].fn = fn;
	ready_checks[n_ready_checks].arg = arg;
	n_ready_checks++;
	return 0;
}

void ctl_set_ready(int ready, const char *why)
{
	atomic_store(&not_ready, ready ? NULL : (why && why[0] ? why : "not ready"));
}

uint16_t ctl_bound_port(void)
{
	return srv.port;
}
