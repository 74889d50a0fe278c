/* The http thread: a libwebsockets server context serving /healthz, /readyz and /metrics. */
#include "control/control.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"
#include "core/strbuf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Threads: ctl_init/ctl_close run on the main thread; everything lws does, and every
 * callback below, runs on the http thread, which owns the context. The only things
 * other threads touch are the atomics (readiness, stop flag) and lws_cancel_service(),
 * the one lws call that is safe from another thread.
 *
 * A response is built whole in LWS_CALLBACK_HTTP (headers written at once), then the
 * body is written from LWS_CALLBACK_HTTP_WRITEABLE in chunks of at most WRITE_CHUNK.
 * Request bodies are not read: every route here is GET, so anything else gets 405 and
 * the connection is closed after the answer.
 */

#define WRITE_CHUNK 16384

/* Per connection (lws per-session data); members belong to the http thread. */
struct ctl_req {
	char *body; /* owned when `owned`, else static text */
	size_t len, off;
	int owned;
	int close;     /* close the connection once this answer is sent */
	int head_only; /* HEAD: the headers are the whole answer */
};

enum { CODE_200, CODE_404, CODE_405, CODE_500, CODE_503, N_CODES };
static const unsigned code_num[N_CODES] = {200, 404, 405, 500, 503};

static struct {
	struct lws_context *ctx;
	pthread_t thread;
	uint16_t port; /* bound port, 0 = off */
	struct metric *requests[N_CODES];
} srv;

static atomic_int stop_flag;
/* NULL = ready; otherwise the static reason /readyz gives. */
static const char *_Atomic not_ready = "starting";

static void req_reset(struct ctl_req *rq)
{
	if (rq->owned)
		mem_free(rq->body);
	rq->body = NULL;
	rq->len = rq->off = 0;
	rq->owned = 0;
}

static void count(unsigned code)
{
	for (int i = 0; i < N_CODES; i++) {
		if (code_num[i] == code)
			metric_inc(srv.requests[i]);
	}
}

/* Writes the status line and headers now and queues body for HTTP_WRITEABLE.
 * Takes ownership of body when owned. */
static int respond(struct lws *wsi, struct ctl_req *rq, unsigned code, const char *ctype,
                   char *body, size_t len, int owned)
{
	unsigned char hdr[LWS_PRE + 1024];
	unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;

	req_reset(rq);
	rq->body = body;
	rq->len = len;
	rq->owned = owned;
	count(code);
	if (lws_add_http_common_headers(wsi, code, ctype, len, &p, end))
		return -1;
	static const char no_store[] = "no-store";
	if (lws_add_http_header_by_name(
	        wsi, (const unsigned char *)"Cache-Control:", (const unsigned char *)no_store,
	        (int)strlen(no_store), &p, end))
		return -1;
	if (code == 405 && lws_add_http_header_by_name(wsi, (const unsigned char *)"Allow:",
	                                               (const unsigned char *)"GET", 3, &p, end))
		return -1;
	if (lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	lws_callback_on_writable(wsi);
	return 0;
}

/* {"error":{"code":"...","message":"... <detail>"}} with detail JSON-escaped. */
static int respond_error(struct lws *wsi, struct ctl_req *rq, unsigned code, const char *ecode,
                         const char *msg, const char *detail)
{
	struct strbuf sb;
	str_init(&sb);
	str_printf(&sb, "{\"error\":{\"code\":\"%s\",\"message\":\"%s", ecode, msg);
	for (const unsigned char *s = (const unsigned char *)detail;
	     *s && s - (const unsigned char *)detail < 200; s++) {
		if (*s == '"' || *s == '\\')
			str_printf(&sb, "\\%c", *s);
		else if (*s < 0x20 || *s >= 0x7f)
			str_printf(&sb, "\\u%04x", *s);
		else
			str_append(&sb, (const char *)s, 1);
	}
	str_puts(&sb, "\"}}\n");
	if (sb.oom) {
		str_deinit(&sb);
		static char oom[] =
		    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
		return respond(wsi, rq, 500, "application/json", oom, sizeof(oom) - 1, 0);
	}
	size_t len = sb.len;
	return respond(wsi, rq, code, "application/json", str_steal(&sb), len, 1);
}

static int on_request(struct lws *wsi, struct ctl_req *rq, const char *path)
{
	static char ok[] = "ok\n", ready[] = "ready\n";
	int is_get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
	int known = strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
	            strcmp(path, "/metrics") == 0;

	rq->close = 0;
	rq->head_only = 0;
	if (!known)
		return respond_error(wsi, rq, 404, "not_found", "no such resource: ", path);
	if (!is_get) {
		rq->close = 1; /* a request body may follow; we do not read it */
		rq->head_only = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
		return respond_error(wsi, rq, 405, "method_not_allowed", "use GET on ", path);
	}
	if (strcmp(path, "/healthz") == 0)
		return respond(wsi, rq, 200, "text/plain", ok, sizeof(ok) - 1, 0);
	if (strcmp(path, "/readyz") == 0) {
		const char *why = atomic_load(&not_ready);
		if (!why)
			return respond(wsi, rq, 200, "text/plain", ready, sizeof(ready) - 1, 0);
		struct strbuf sb;
		str_init(&sb);
		str_printf(&sb, "%s\n", why);
		if (sb.oom)
			return respond_error(wsi, rq, 500, "internal", "out of memory", "");
		size_t len = sb.len;
		return respond(wsi, rq, 503, "text/plain", str_steal(&sb), len, 1);
	}
	/* /metrics: the page shows the counters as they were before this request. */
	struct strbuf sb;
	str_init(&sb);
	if (metric_render(&sb) != 0) {
		str_deinit(&sb);
		return respond_error(wsi, rq, 500, "internal", "out of memory", "");
	}
	size_t len = sb.len;
	char *body = str_steal(&sb);
	if (!body)
		return respond_error(wsi, rq, 500, "internal", "out of memory", "");
	return respond(wsi, rq, 200, "text/plain; version=0.0.4", body, len, 1);
}

static int on_writeable(struct lws *wsi, struct ctl_req *rq)
{
	static unsigned char buf[LWS_PRE + WRITE_CHUNK]; /* http thread only */
	if (!rq->body)
		return 0;
	if (rq->head_only) {
		req_reset(rq);
		return -1; /* headers are out; HEAD answers carry no body */
	}
	size_t n = rq->len - rq->off;
	if (n > WRITE_CHUNK)
		n = WRITE_CHUNK;
	int final = rq->off + n == rq->len;
	memcpy(buf + LWS_PRE, rq->body + rq->off, n);
	if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) <
	    (int)n) {
		req_reset(rq);
		return -1;
	}
	rq->off += n;
	if (!final) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	req_reset(rq);
	if (rq->close)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
	struct ctl_req *rq = user;
	switch (reason) {
	case LWS_CALLBACK_HTTP:
		if (!rq || !in)
			return -1;
		return on_request(wsi, rq, in);
	case LWS_CALLBACK_HTTP_BODY:
		return 0; /* only 405 answers see bodies; the connection closes after them */
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return rq ? on_writeable(wsi, rq) : 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (rq)
			req_reset(rq);
		break;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		return 0; /* the service loop re-checks the stop flag; never nonzero here */
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {.name = "vacs-http", .callback = http_cb, .per_session_data_size = sizeof(struct ctl_req)},
    {.name = NULL},
};

static void lws_log(int level, const char *line)
{
	log_line(level & LLL_ERR ? LOG_ERR : LOG_WARN, "lws", line);
}

static void *http_main(void *arg)
{
	(void)arg;
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

int ctl_init(const struct ctl_config *cfg)
{
	int rc;
	if (!cfg)
		return -EINVAL;
	if (srv.ctx)
		return -EALREADY;
	srv.port = 0;
	if (!cfg->port)
		return 0;
	const char *address = cfg->address && cfg->address[0] ? cfg->address : "0.0.0.0";
	rc = probe_bind(address, cfg->port);
	if (rc) {
		log_err("ctl", "http: cannot listen on %s:%u: %s", address, cfg->port,
		        strerror(-rc));
		return rc;
	}
	for (int i = 0; i < N_CODES; i++) {
		char name[64];
		snprintf(name, sizeof(name), "vacs_http_requests_total{code=\"%u\"}", code_num[i]);
		srv.requests[i] =
		    metric_get(METRIC_COUNTER, name, "HTTP requests answered, by status code");
		if (!srv.requests[i])
			return -ENOMEM;
	}
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);

	struct lws_context_creation_info info;
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	srv.ctx = lws_create_context(&info);
	if (!srv.ctx) {
		log_err("ctl", "http: cannot create the lws context");
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

	/* Signals belong to the main thread; the http thread never takes one. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	atomic_store(&stop_flag, 0);
	rc = -pthread_create(&srv.thread, NULL, http_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		goto fail;
	pthread_setname_np(srv.thread, "http");
	log_info("ctl", "http: listening on %s:%u", address, srv.port);
	return 0;
fail:
	lws_context_destroy(srv.ctx);
	srv.ctx = NULL;
	srv.port = 0;
	return rc;
}

void ctl_close(void)
{
	if (!srv.ctx)
		return;
	atomic_store(&stop_flag, 1);
	lws_cancel_service(srv.ctx);
	pthread_join(srv.thread, NULL);
	lws_context_destroy(srv.ctx); /* closes connections: CLOSED_HTTP frees their bodies */
	srv.ctx = NULL;
	srv.port = 0;
}

void ctl_set_ready(int ready, const char *why)
{
	atomic_store(&not_ready, ready ? NULL : (why && why[0] ? why : "not ready"));
}

uint16_t ctl_bound_port(void)
{
	return srv.port;
}
