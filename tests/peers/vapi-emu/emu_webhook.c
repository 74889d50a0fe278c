/* vapi-emu webhook sender: blocking HTTP/1.1 POSTs (X-Vapi-Secret) from one worker thread. */
#include "emu_webhook.h"

#include <errno.h>
#include <netdb.h>
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

struct wh_req {
	struct wh_req *next;
	char *call_id, *type, *body;
	long long at_ms;
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

static void do_post(struct wh_req *rq, struct emu_webhook_result *res)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
	struct timeval tv = {.tv_sec = WH_TIMEOUT_S};
	char *hdr = NULL, *resp = NULL;
	size_t len = 0, blen = strlen(rq->body);
	int fd = -1, rc;
	long long t0 = mono_ms();

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
	             "Content-Type: application/json\r\nX-Vapi-Secret: %s\r\n"
	             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	             wh.path, wh.host, wh.port, wh.secret ? wh.secret : "", blen) < 0) {
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
	free(resp);
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&wh.lock);
	for (;;) {
		while (!wh.qh && !wh.stop)
			pthread_cond_wait(&wh.cond, &wh.lock);
		if (wh.stop)
			break;
		struct wh_req *rq = wh.qh;
		wh.qh = rq->next;
		if (!wh.qh)
			wh.qt = NULL;
		wh.qn--;
		pthread_mutex_unlock(&wh.lock);

		struct emu_webhook_result *res = calloc(1, sizeof *res);
		if (res) {
			res->call_id = rq->call_id;
			res->type = rq->type;
			res->at_ms = rq->at_ms;
			rq->call_id = rq->type = NULL;
			do_post(rq, res);
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
	rq->call_id = xstrdup(call_id);
	rq->type = xstrdup(type);
	rq->body = body;
	rq->at_ms = at_ms;
	pthread_mutex_lock(&wh.lock);
	if (wh.qn >= WH_MAX_QUEUE) {
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
	free(r);
}

void emu_webhook_stop(void)
{
	if (!wh.started)
		return;
	pthread_mutex_lock(&wh.lock);
	wh.stop = 1;
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
	free(wh.secret);
	wh.secret = NULL;
}
