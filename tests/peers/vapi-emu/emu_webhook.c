/* vapi-emu webhook sender: blocking HTTP/1.1 POSTs from one worker thread, with VAPI's
 * credential modes (reference vapi.md §3.4). */
#include "emu_webhook.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define WH_MAX_QUEUE 64
#define WH_MAX_RESP  (64 * 1024)
#define WH_TIMEOUT_S 5
#define WH_DRAIN_MS  2000 /* emu_webhook_stop: budget for the POSTs still queued */

enum wh_kind { WH_XVAPI, WH_BEARER, WH_HEADER, WH_HMAC256, WH_HMAC512B64, WH_NONE };

/* A credential mode; `wrong` sends it with a wrong secret. */
struct wh_auth {
	enum wh_kind kind;
	int wrong;
	char header[128]; /* WH_HEADER */
};

struct wh_req {
	struct wh_req *next;
	char *call_id, *type, *body;
	long long at_ms;
	struct wh_auth auth;
};

static struct {
	pthread_t thread;
	int started, stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct wh_req *qh, *qt;
	unsigned qn;
	struct emu_webhook_result *rh, *rt;
	char host[256], port[16], path[1024], *secret;
	struct wh_auth auth;
	long long drain_until_ms; /* set by emu_webhook_stop */
	emu_webhook_wake_cb wake;
	void *wake_arg;
} wh = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Decodes a chunked body in place; returns its length. */
static size_t dechunk(char *b, size_t n)
{
	size_t in = 0, out = 0;

	while (in < n) {
		char *end;
		unsigned long sz = strtoul(b + in, &end, 16);
		char *nl = memchr(b + in, '\n', n - in);
		if (!nl || end == b + in || sz == 0)
			break;
		in = (size_t)(nl - b) + 1;
		if (sz > n - in)
			sz = n - in;
		memmove(b + out, b + in, sz);
		out += sz;
		in += sz;
		if (in < n && b[in] == '\r')
			in++;
		if (in < n && b[in] == '\n')
			in++;
	}
	b[out] = '\0';
	return out;
}

/* Parses a --webhook-auth MODE; "wrong" only when allow_wrong (it takes the configured
 * mode). 0 or -EINVAL. */
static int auth_parse(const char *mode, int allow_wrong, struct wh_auth *out)
{
	memset(out, 0, sizeof *out);
	if (!strcmp(mode, "x-vapi-secret")) {
		out->kind = WH_XVAPI;
	} else if (!strcmp(mode, "bearer")) {
		out->kind = WH_BEARER;
	} else if (!strncmp(mode, "header:", 7)) {
		const char *n = mode + 7;
		/* An HTTP token (RFC 9110 5.6.2). */
		if (!*n || strlen(n) >= sizeof out->header ||
		    n[strspn(n, "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
		                "ABCDEFGHIJKLMNOPQRSTUVWXYZ")])
			return -EINVAL;
		out->kind = WH_HEADER;
		snprintf(out->header, sizeof out->header, "%s", n);
	} else if (!strcmp(mode, "hmac-sha256")) {
		out->kind = WH_HMAC256;
	} else if (!strcmp(mode, "hmac-sha512-base64")) {
		out->kind = WH_HMAC512B64;
	} else if (!strcmp(mode, "none")) {
		out->kind = WH_NONE;
	} else if (allow_wrong && !strcmp(mode, "wrong")) {
		*out = wh.auth;
		out->wrong = 1;
	} else {
		return -EINVAL;
	}
	return 0;
}

static const char *auth_name(const struct wh_auth *a, char *buf, size_t n)
{
	static const char *const names[] = {
	    "x-vapi-secret", "bearer", "header:", "hmac-sha256", "hmac-sha512-base64", "none"};
	snprintf(buf, n, "%s%s%s", a->wrong ? "wrong:" : "", names[a->kind],
	         a->kind == WH_HEADER ? a->header : "");
	return buf;
}

/* The credential header lines (each ending in CRLF) for a POST of body; heap, NULL when
 * out of memory. */
static char *auth_headers(const struct wh_auth *a, const char *body, size_t blen)
{
	const char *secret = wh.secret ? wh.secret : "";
	char wrong[512], *out = NULL;
	int rc = 0;

	if (a->wrong) {
		/* A plausible but wrong credential: well formed, another secret. */
		snprintf(wrong, sizeof wrong, "wrong-%s", secret);
		secret = wrong;
	}
	switch (a->kind) {
	case WH_XVAPI:
		rc = asprintf(&out, "X-Vapi-Secret: %s\r\n", secret);
		break;
	case WH_BEARER:
		rc = asprintf(&out, "Authorization: Bearer %s\r\n", secret);
		break;
	case WH_HEADER:
		rc = asprintf(&out, "%s: %s\r\n", a->header, secret);
		break;
	case WH_NONE:
		out = strdup("");
		break;
	case WH_HMAC256:
	case WH_HMAC512B64: {
		const EVP_MD *md = a->kind == WH_HMAC256 ? EVP_sha256() : EVP_sha512();
		unsigned char d[EVP_MAX_MD_SIZE];
		char ts[32], sig[2 * EVP_MAX_MD_SIZE + 1];
		unsigned int dl = 0;
		size_t tl = (size_t)snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
		unsigned char *msg = malloc(tl + 1 + blen);

		if (!msg)
			return NULL;
		memcpy(msg, ts, tl);
		msg[tl] = '.';
		memcpy(msg + tl + 1, body, blen);
		if (!HMAC(md, secret, (int)strlen(secret), msg, tl + 1 + blen, d, &dl)) {
			free(msg);
			return NULL;
		}
		free(msg);
		if (a->kind == WH_HMAC256) {
			for (unsigned i = 0; i < dl; i++)
				snprintf(sig + 2 * i, 3, "%02x", d[i]);
		} else {
			EVP_EncodeBlock((unsigned char *)sig, d, (int)dl);
		}
		rc = asprintf(&out, "x-signature: %s\r\nx-timestamp: %s\r\n", sig, ts);
		break;
	}
	}
	if (rc < 0)
		return NULL;
	return out;
}

static void do_post(struct wh_req *rq, struct emu_webhook_result *res)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
	struct timeval tv = {.tv_sec = WH_TIMEOUT_S};
	char *hdr = NULL, *resp = NULL, *cred = NULL, an[160];
	size_t len = 0, blen = strlen(rq->body);
	int fd = -1, rc;
	long long t0 = mono_ms();

	res->auth = xstrdup(auth_name(&rq->auth, an, sizeof an));
	pthread_mutex_lock(&wh.lock);
	if (wh.drain_until_ms) {
		/* Stopping: what is left of the drain budget bounds this POST. */
		long long left = wh.drain_until_ms - t0;
		if (left < 100)
			left = 100;
		if (left < WH_TIMEOUT_S * 1000) {
			tv.tv_sec = left / 1000;
			tv.tv_usec = (suseconds_t)(left % 1000 * 1000);
		}
	}
	pthread_mutex_unlock(&wh.lock);
	cred = auth_headers(&rq->auth, rq->body, blen);
	if (!cred) {
		res->error = xstrdup("out of memory");
		goto out;
	}

	rc = getaddrinfo(wh.host, wh.port, &hints, &ai);
	if (rc) {
		res->error = xstrdup(gai_strerror(rc));
		goto out;
	}
	fd = socket(ai->ai_family, ai->ai_socktype, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) ||
	    connect(fd, ai->ai_addr, ai->ai_addrlen)) {
		res->error = xstrdup(strerror(errno));
		goto out;
	}
	if (asprintf(&hdr,
	             "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: vapi-emu\r\n"
	             "Content-Type: application/json\r\n%s"
	             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	             wh.path, wh.host, wh.port, cred, blen) < 0) {
		hdr = NULL;
		res->error = xstrdup("out of memory");
		goto out;
	}
	if (write_all(fd, hdr, strlen(hdr)) || write_all(fd, rq->body, blen)) {
		res->error = xstrdup(strerror(errno));
		goto out;
	}
	resp = malloc(WH_MAX_RESP + 1);
	if (!resp) {
		res->error = xstrdup("out of memory");
		goto out;
	}
	for (;;) {
		ssize_t r = recv(fd, resp + len, WH_MAX_RESP - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			res->error =
			    xstrdup(errno == EAGAIN ? "response timed out" : strerror(errno));
			break;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		resp[len] = '\0';
		char *eoh = strstr(resp, "\r\n\r\n");
		if (eoh) {
			/* Stop early when Content-Length is satisfied (server keeps it open). */
			char *cl = strcasestr(resp, "\r\ncontent-length:");
			if (cl && cl < eoh &&
			    len >= (size_t)(eoh + 4 - resp) + strtoul(cl + 17, NULL, 10))
				break;
		}
		if (len == WH_MAX_RESP)
			break;
	}
	resp[len] = '\0';
	if (len > 12 && strncmp(resp, "HTTP/1.", 7) == 0)
		res->status = atoi(resp + 9);
	char *eoh = strstr(resp, "\r\n\r\n");
	if (eoh) {
		char *b = eoh + 4;
		size_t bl = len - (size_t)(b - resp);
		char *te = strcasestr(resp, "\r\ntransfer-encoding: chunked");
		if (te && te < eoh)
			bl = dechunk(b, bl);
		res->body = strndup(b, bl);
	}
	if (res->status)
		free(res->error), res->error = NULL;
out:
	res->elapsed_ms = mono_ms() - t0;
	if (fd >= 0)
		close(fd);
	if (ai)
		freeaddrinfo(ai);
	free(hdr);
	free(cred);
	free(resp);
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&wh.lock);
	for (;;) {
		while (!wh.qh && !wh.stop)
			pthread_cond_wait(&wh.cond, &wh.lock);
		if (!wh.qh)
			break; /* stopping, and nothing left to send */
		struct wh_req *rq = wh.qh;
		wh.qh = rq->next;
		if (!wh.qh)
			wh.qt = NULL;
		wh.qn--;
		int too_late = wh.stop && mono_ms() >= wh.drain_until_ms;
		pthread_mutex_unlock(&wh.lock);

		struct emu_webhook_result *res = calloc(1, sizeof *res);
		if (res) {
			res->call_id = rq->call_id;
			res->type = rq->type;
			res->at_ms = rq->at_ms;
			rq->call_id = rq->type = NULL;
			if (too_late) {
				char an[160];
				res->auth = xstrdup(auth_name(&rq->auth, an, sizeof an));
				res->error = xstrdup("not sent: emulator stopping");
			} else {
				do_post(rq, res);
			}
		}
		free(rq->call_id);
		free(rq->type);
		free(rq->body);
		free(rq);

		pthread_mutex_lock(&wh.lock);
		if (res) {
			if (wh.rt)
				wh.rt->next = res;
			else
				wh.rh = res;
			wh.rt = res;
		}
		if (wh.wake)
			wh.wake(wh.wake_arg);
	}
	pthread_mutex_unlock(&wh.lock);
	return NULL;
}

int emu_webhook_set_auth(const char *mode)
{
	struct wh_auth a;

	if (!mode || auth_parse(mode, 0, &a))
		return -EINVAL;
	wh.auth = a;
	return 0;
}

int emu_webhook_auth_valid(const char *mode)
{
	struct wh_auth a;

	return mode && auth_parse(mode, 1, &a) == 0;
}

int emu_webhook_start(const char *url, const char *secret, emu_webhook_wake_cb wake, void *arg)
{
	const char *p = url, *hs, *he, *ps;
	int rc;

	if (strncmp(p, "http://", 7) != 0)
		return -EINVAL;
	hs = p + 7;
	he = hs + strcspn(hs, ":/");
	if (he == hs || (size_t)(he - hs) >= sizeof wh.host)
		return -EINVAL;
	memcpy(wh.host, hs, (size_t)(he - hs));
	wh.host[he - hs] = '\0';
	snprintf(wh.port, sizeof wh.port, "80");
	ps = he;
	if (*he == ':') {
		size_t n = strspn(he + 1, "0123456789");
		if (n == 0 || n >= sizeof wh.port)
			return -EINVAL;
		memcpy(wh.port, he + 1, n);
		wh.port[n] = '\0';
		ps = he + 1 + n;
	}
	if (*ps && *ps != '/')
		return -EINVAL;
	if (strlen(ps) >= sizeof wh.path)
		return -EINVAL;
	snprintf(wh.path, sizeof wh.path, "%s", *ps ? ps : "/");
	wh.secret = xstrdup(secret);
	wh.wake = wake;
	wh.wake_arg = arg;
	rc = pthread_create(&wh.thread, NULL, worker, NULL);
	if (rc)
		return -rc;
	wh.started = 1;
	return 0;
}

int emu_webhook_post(const char *call_id, long long at_ms, const char *type, char *body)
{
	return emu_webhook_post_auth(call_id, at_ms, type, body, NULL);
}

int emu_webhook_post_auth(const char *call_id, long long at_ms, const char *type, char *body,
                          const char *auth)
{
	struct wh_req *rq;
	int rc = 0;

	if (!wh.started) {
		free(body);
		return -ENOTCONN;
	}
	rq = calloc(1, sizeof *rq);
	if (!rq) {
		free(body);
		return -ENOMEM;
	}
	rq->auth = wh.auth;
	if (auth && auth_parse(auth, 1, &rq->auth)) {
		free(body);
		free(rq);
		return -EINVAL;
	}
	rq->call_id = xstrdup(call_id);
	rq->type = xstrdup(type);
	rq->body = body;
	rq->at_ms = at_ms;
	pthread_mutex_lock(&wh.lock);
	if (wh.stop) {
		rc = -ENOTCONN;
	} else if (wh.qn >= WH_MAX_QUEUE) {
		rc = -EAGAIN;
	} else {
		if (wh.qt)
			wh.qt->next = rq;
		else
			wh.qh = rq;
		wh.qt = rq;
		wh.qn++;
		pthread_cond_signal(&wh.cond);
	}
	pthread_mutex_unlock(&wh.lock);
	if (rc) {
		free(rq->call_id);
		free(rq->type);
		free(rq->body);
		free(rq);
	}
	return rc;
}

struct emu_webhook_result *emu_webhook_take(void)
{
	struct emu_webhook_result *r;

	pthread_mutex_lock(&wh.lock);
	r = wh.rh;
	wh.rh = wh.rt = NULL;
	pthread_mutex_unlock(&wh.lock);
	return r;
}

void emu_webhook_result_free(struct emu_webhook_result *r)
{
	if (!r)
		return;
	free(r->call_id);
	free(r->type);
	free(r->body);
	free(r->error);
	free(r->auth);
	free(r);
}

void emu_webhook_stop(void)
{
	if (!wh.started)
		return;
	pthread_mutex_lock(&wh.lock);
	wh.stop = 1;
	wh.drain_until_ms = mono_ms() + WH_DRAIN_MS;
	pthread_cond_broadcast(&wh.cond);
	pthread_mutex_unlock(&wh.lock);
	pthread_join(wh.thread, NULL);
	wh.started = 0;
	while (wh.qh) {
		struct wh_req *rq = wh.qh;
		wh.qh = rq->next;
		free(rq->call_id);
		free(rq->type);
		free(rq->body);
		free(rq);
	}
	wh.qt = NULL;
	wh.qn = 0;
	wh.stop = 0;
	wh.drain_until_ms = 0;
	free(wh.secret);
	wh.secret = NULL;
}

static void iso_ms(long long ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

/* "AI: ...\nUser: ...\n" from the final transcript messages the scenario sent. */
static char *transcript_of(const json_t *actions, size_t n_done)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	for (size_t i = 0; i < n_done && i < json_array_size(actions); i++) {
		json_t *m = json_object_get(json_array_get(actions, i), "send");
		const char *type = json_string_value(json_object_get(m, "type"));
		const char *tt = json_string_value(json_object_get(m, "transcriptType"));
		const char *role = json_string_value(json_object_get(m, "role"));
		const char *text = json_string_value(json_object_get(m, "transcript"));
		if (!type || strcmp(type, "transcript") || !text || (tt && strcmp(tt, "final")))
			continue;
		fprintf(f, "%s: %s\n", role && !strcmp(role, "user") ? "User" : "AI", text);
	}
	if (fclose(f))
		return NULL;
	return out;
}

char *emu_webhook_end_report(const char *call_id, const char *name, const char *ended_reason,
                             const json_t *actions, size_t n_done, long long started_epoch_ms,
                             long long ended_epoch_ms)
{
	char started[80], ended[80], *tr = transcript_of(actions, n_done), *s = NULL;
	json_t *call, *body;

	if (!tr)
		return NULL;
	iso_ms(started_epoch_ms, started, sizeof started);
	iso_ms(ended_epoch_ms, ended, sizeof ended);
	call = json_pack("{s:s,s:s}", "id", call_id, "type", "vapi.websocketCall");
	if (call && name)
		json_object_set_new(call, "name", json_string(name));
	body = json_pack("{s:{s:s,s:I,s:s,s:o,s:{s:s,s:[],s:n},s:{s:s},s:f,s:s,s:s}}", "message",
	                 "type", "end-of-call-report", "timestamp", (json_int_t)ended_epoch_ms,
	                 "endedReason", ended_reason ? ended_reason : "", "call", call, "artifact",
	                 "transcript", tr, "messages", "recordingUrl", "analysis", "summary",
	                 "emulated summary", "cost", 0.0, "startedAt", started, "endedAt", ended);
	if (body)
		s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	free(tr);
	return s;
}
