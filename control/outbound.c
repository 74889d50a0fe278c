/* The out thread: outbound HTTP requests on a libcurl multi handle, delayed work, ticks. */
#include "control/outbound.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/mbox.h"
#include "core/mem.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define RESP_MAX  (64u * 1024u)
#define TICKS_MAX 8u

struct ctl_out {
	struct ctl_out *next; /* in flight list */
	char *method, *url;
	struct curl_slist *hdrs;
	char *body;
	size_t body_len;
	char *file;
	FILE *fp; /* open while in flight */
	char *sigv4, *userpwd;
	unsigned timeout_ms;
	int public_only;
	int refused; /* the address guard refused a connection */
	CURL *easy;
	char *resp;
	size_t resp_len;
	char errbuf[CURL_ERROR_SIZE];
	ctl_out_done_cb cb;
	void *cb_arg;
};

struct work {
	ctl_out_fn fn;
	void *arg;
};

struct later {
	struct later *next;
	uint64_t due_us;
	ctl_out_fn fn;
	void *arg;
};

static struct {
	CURLM *multi;
	struct mbox *mb;
	pthread_t thread;
	int started;
	atomic_int stop;
	int stopping; /* out thread: tearing down */
	struct ctl_out *flight;
	struct later *later; /* sorted by due_us */
	struct {
		ctl_out_fn fn;
		void *arg;
		unsigned period_ms;
		uint64_t next_us;
	} ticks[TICKS_MAX];
	unsigned n_ticks;
	atomic_uint in_flight;
} g;

int ctl_out_stopping(void)
{
	return g.stopping;
}

unsigned ctl_out_in_flight(void)
{
	return atomic_load(&g.in_flight);
}

int ctl_out_run(ctl_out_fn fn, void *arg)
{
	if (!g.started || atomic_load(&g.stop))
		return -ENOTCONN;
	struct work w = {.fn = fn, .arg = arg};
	int rc = mbox_post(g.mb, &w);
	if (rc == 0)
		curl_multi_wakeup(g.multi);
	return rc;
}

int ctl_out_tick(ctl_out_fn fn, void *arg, unsigned period_ms)
{
	if (g.n_ticks >= TICKS_MAX)
		return -ENOSPC;
	g.ticks[g.n_ticks].fn = fn;
	g.ticks[g.n_ticks].arg = arg;
	g.ticks[g.n_ticks].period_ms = period_ms ? period_ms : 1000;
	g.n_ticks++;
	return 0;
}

int ctl_out_later(ctl_out_fn fn, void *arg, unsigned delay_ms)
{
	struct later *l = mem_alloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->due_us = clock_now_us() + (uint64_t)delay_ms * 1000u;
	l->fn = fn;
	l->arg = arg;
	struct later **pp = &g.later;
	while (*pp && (*pp)->due_us <= l->due_us)
		pp = &(*pp)->next;
	l->next = *pp;
	*pp = l;
	return 0;
}

/* ---- requests ---- */

struct ctl_out *ctl_out_create(const char *method, const char *url)
{
	struct ctl_out *r = mem_zalloc(sizeof(*r));
	if (!r)
		return NULL;
	r->method = mem_strdup(method);
	r->url = mem_strdup(url);
	r->timeout_ms = 10000;
	if (!r->method || !r->url) {
		ctl_out_destroy(r);
		return NULL;
	}
	return r;
}

void ctl_out_destroy(struct ctl_out *r)
{
	if (!r)
		return;
	curl_slist_free_all(r->hdrs);
	mem_free(r->method);
	mem_free(r->url);
	mem_free(r->body);
	mem_free(r->file);
	mem_free(r->sigv4);
	mem_free(r->userpwd);
	mem_free(r->resp);
	if (r->fp)
		fclose(r->fp);
	mem_free(r);
}

int ctl_out_header(struct ctl_out *r, const char *line)
{
	struct curl_slist *h = curl_slist_append(r->hdrs, line);
	if (!h)
		return -ENOMEM;
	r->hdrs = h;
	return 0;
}

void ctl_out_headers_clear(struct ctl_out *r)
{
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
}

void ctl_out_body(struct ctl_out *r, char *body, size_t len)
{
	mem_free(r->body);
	r->body = body;
	r->body_len = len;
}

int ctl_out_file(struct ctl_out *r, const char *path)
{
	char *p = mem_strdup(path);
	if (!p)
		return -ENOMEM;
	mem_free(r->file);
	r->file = p;
	return 0;
}

int ctl_out_sigv4(struct ctl_out *r, const char *spec, const char *access_key,
                  const char *secret_key)
{
	size_t n = strlen(access_key) + strlen(secret_key) + 2;
	char *s = mem_strdup(spec), *up = mem_alloc(n);
	if (!s || !up) {
		mem_free(s);
		mem_free(up);
		return -ENOMEM;
	}
	snprintf(up, n, "%s:%s", access_key, secret_key);
	mem_free(r->sigv4);
	mem_free(r->userpwd);
	r->sigv4 = s;
	r->userpwd = up;
	return 0;
}

void ctl_out_timeout(struct ctl_out *r, unsigned ms)
{
	r->timeout_ms = ms ? ms : 10000;
}

void ctl_out_public_only(struct ctl_out *r, int on)
{
	r->public_only = on;
}

const char *ctl_out_response(const struct ctl_out *r, size_t *len)
{
	if (len)
		*len = r->resp ? r->resp_len : 0;
	return r->resp ? r->resp : "";
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct ctl_out *r = arg;
	size_t n = size * nmemb;
	if (r->resp_len + n > RESP_MAX)
		return n; /* keep the head only; the rest is read and dropped */
	char *p = mem_realloc(r->resp, r->resp_len + n + 1);
	if (!p)
		return n;
	memcpy(p + r->resp_len, data, n);
	r->resp = p;
	r->resp_len += n;
	r->resp[r->resp_len] = '\0';
	return n;
}

/* Loopback, private (RFC 1918), CGNAT, link-local, unspecified; IPv6 loopback, unique
 * local, link-local, and v4-mapped forms of the IPv4 ones. */
static int addr_private(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		uint32_t a = ntohl(in->sin_addr.s_addr);
		return (a >> 24) == 127 || (a >> 24) == 10 || (a >> 24) == 0 ||
		       (a >> 20) == (172u << 4 | 1) || (a >> 16) == (192u << 8 | 168) ||
		       (a >> 16) == (169u << 8 | 254) || (a >> 22) == (100u << 2 | 1);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		const uint8_t *b = in6->sin6_addr.s6_addr;
		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
		    IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
			return 1;
		if ((b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80))
			return 1;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			struct sockaddr_in v4 = {.sin_family = AF_INET};
			memcpy(&v4.sin_addr, b + 12, 4);
			return addr_private((const struct sockaddr *)&v4);
		}
		return 0;
	}
	return 1;
}

static curl_socket_t on_open(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct ctl_out *r = arg;
	(void)purpose;
	if (r->public_only && addr_private(&a->addr)) {
		r->refused = 1;
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

int ctl_out_send(struct ctl_out *r, ctl_out_done_cb cb, void *arg)
{
	if (g.stopping)
		return -ESHUTDOWN;
	CURL *e = curl_easy_init();
	if (!e)
		return -ENOMEM;
	mem_free(r->resp);
	r->resp = NULL;
	r->resp_len = 0;
	r->refused = 0;
	r->errbuf[0] = '\0';
	CURLcode c = CURLE_OK;
	c |= curl_easy_setopt(e, CURLOPT_URL, r->url);
	c |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	c |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	c |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
	c |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)r->timeout_ms);
	c |= curl_easy_setopt(e, CURLOPT_USERAGENT, "vacsd");
	c |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	c |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	c |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	c |= curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	c |= curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open);
	c |= curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
	if (r->file) {
		r->fp = fopen(r->file, "rb");
		if (!r->fp) {
			int err = -errno;
			curl_easy_cleanup(e);
			return err;
		}
		fseeko(r->fp, 0, SEEK_END);
		curl_off_t size = (curl_off_t)ftello(r->fp);
		rewind(r->fp);
		c |= curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		c |= curl_easy_setopt(e, CURLOPT_READDATA, r->fp);
		c |= curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, size);
		if (strcmp(r->method, "PUT") != 0)
			c |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	} else if (strcmp(r->method, "GET") == 0) {
		c |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(r->method, "HEAD") == 0) {
		c |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else {
		c |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
		c |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
		if (strcmp(r->method, "POST") != 0)
			c |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	}
	if (r->sigv4) {
		c |= curl_easy_setopt(e, CURLOPT_AWS_SIGV4, r->sigv4);
		c |= curl_easy_setopt(e, CURLOPT_USERPWD, r->userpwd);
	}
	if (r->hdrs)
		c |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	if (c != CURLE_OK || curl_multi_add_handle(g.multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		if (r->fp) {
			fclose(r->fp);
			r->fp = NULL;
		}
		return -EIO;
	}
	r->easy = e;
	r->cb = cb;
	r->cb_arg = arg;
	r->next = g.flight;
	g.flight = r;
	atomic_fetch_add(&g.in_flight, 1);
	return 0;
}

static void finish(struct ctl_out *r, CURLcode result)
{
	struct ctl_out **pp = &g.flight;
	while (*pp && *pp != r)
		pp = &(*pp)->next;
	if (*pp)
		*pp = r->next;
	r->next = NULL;
	long status = 0;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(g.multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
	if (r->fp) {
		fclose(r->fp);
		r->fp = NULL;
	}
	atomic_fetch_sub(&g.in_flight, 1);
	int err = 0;
	char text[CURL_ERROR_SIZE + 16];
	if (g.stopping && result == CURLE_ABORTED_BY_CALLBACK) {
		err = -ECANCELED;
		snprintf(text, sizeof(text), "shutting down");
	} else if (result != CURLE_OK) {
		err = r->refused                             ? -EACCES
		      : result == CURLE_OPERATION_TIMEDOUT   ? -ETIMEDOUT
		      : result == CURLE_COULDNT_CONNECT      ? -ECONNREFUSED
		      : result == CURLE_COULDNT_RESOLVE_HOST ? -EHOSTUNREACH
		                                             : -EIO;
		snprintf(text, sizeof(text), "%s",
		         r->refused     ? "private address refused (notify.allow_private is off)"
		         : r->errbuf[0] ? r->errbuf
		                        : curl_easy_strerror(result));
		status = 0;
	} else {
		snprintf(text, sizeof(text), "HTTP %ld", status);
	}
	r->cb(r->cb_arg, r, status, err, text);
}

static void run_later(uint64_t now_us)
{
	while (g.later && (g.stopping || g.later->due_us <= now_us)) {
		struct later *l = g.later;
		g.later = l->next;
		ctl_out_fn fn = l->fn;
		void *arg = l->arg;
		mem_free(l);
		fn(arg);
	}
}

static void run_mailbox(void)
{
	struct work w;
	mbox_drain_fd(g.mb);
	while (mbox_take(g.mb, &w) == 0)
		w.fn(w.arg);
}

static void *out_main(void *arg)
{
	(void)arg;
	uint64_t now = clock_now_us();
	for (unsigned i = 0; i < g.n_ticks; i++)
		g.ticks[i].next_us = now;
	while (!atomic_load(&g.stop)) {
		now = clock_now_us();
		for (unsigned i = 0; i < g.n_ticks; i++) {
			if (g.ticks[i].next_us <= now) {
				g.ticks[i].next_us = now + g.ticks[i].period_ms * 1000ull;
				g.ticks[i].fn(g.ticks[i].arg);
			}
		}
		run_later(now);
		uint64_t next = now + 1000000u;
		for (unsigned i = 0; i < g.n_ticks; i++)
			if (g.ticks[i].next_us < next)
				next = g.ticks[i].next_us;
		if (g.later && g.later->due_us < next)
			next = g.later->due_us;
		now = clock_now_us();
		int wait_ms = next > now ? (int)((next - now + 999) / 1000) : 0;
		struct curl_waitfd wfd = {.fd = mbox_fd(g.mb), .events = CURL_WAIT_POLLIN};
		curl_multi_poll(g.multi, &wfd, 1, wait_ms, NULL);
		run_mailbox();
		int running = 0;
		curl_multi_perform(g.multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(g.multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			char *priv = NULL;
			CURLcode result = m->data.result;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
			finish((struct ctl_out *)(void *)priv, result);
		}
	}
	/* Tear down: owners see the stopping flag and free what they hold. */
	g.stopping = 1;
	for (int round = 0; round < 4; round++) {
		run_mailbox();
		run_later(UINT64_MAX);
		while (g.flight)
			finish(g.flight, CURLE_ABORTED_BY_CALLBACK);
	}
	return NULL;
}

int ctl_out_init(unsigned queue_len)
{
	int rc = mbox_create(&g.mb, sizeof(struct work), queue_len ? queue_len : 4096u);
	if (rc)
		return rc;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		rc = -ENOMEM;
		goto out_mb;
	}
	g.multi = curl_multi_init();
	if (!g.multi) {
		rc = -ENOMEM;
		goto out_curl;
	}
	atomic_store(&g.stop, 0);
	g.stopping = 0;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&g.thread, NULL, out_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		goto out_multi;
	pthread_setname_np(g.thread, "out");
	g.started = 1;
	return 0;
out_multi:
	curl_multi_cleanup(g.multi);
	g.multi = NULL;
out_curl:
	curl_global_cleanup();
out_mb:
	mbox_destroy(g.mb);
	g.mb = NULL;
	return rc;
}

void ctl_out_close(void)
{
	if (!g.started)
		return;
	atomic_store(&g.stop, 1);
	curl_multi_wakeup(g.multi);
	pthread_join(g.thread, NULL);
	g.started = 0;
	curl_multi_cleanup(g.multi);
	g.multi = NULL;
	curl_global_cleanup();
	mbox_destroy(g.mb);
	g.mb = NULL;
	g.n_ticks = 0;
}
