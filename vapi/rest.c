/* The io thread: POST {api_url}/call with libcurl multi, then the WebSocket host resolved. */
#include "vapi/vapi_int.h"

#include "core/log.h"
#include "core/mbox.h"
#include "core/mem.h"
#include "core/metric.h"
#include "core/strbuf.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/*
 * The io thread owns the curl multi handle. It waits in curl_multi_poll on curl's sockets
 * plus the command mailbox's eventfd; vapi_call_end wakes it with curl_multi_wakeup so it
 * can cancel a transfer whose call was ended. Name resolution of the WebSocket host runs
 * here too (blocking getaddrinfo), never on the ai thread: lws 4.1 would block every socket
 * of its context while it resolves.
 */

#define ERR_TEXT_MAX 300u

static struct vapi_call *io_list; /* transfers in the multi handle (io thread) */

void vapi_io_wake(void)
{
	if (vapi_g.multi)
		curl_multi_wakeup(vapi_g.multi);
}

/* ---- helpers, usable from any thread ---- */

int vapi_ws_url_parse(const char *url, char **host, int *port, char **path, int *tls)
{
	const char *p;
	int secure;
	if (!url)
		return -EINVAL;
	if (strncasecmp(url, "wss://", 6) == 0) {
		secure = 1;
		p = url + 6;
	} else if (strncasecmp(url, "ws://", 5) == 0) {
		secure = 0;
		p = url + 5;
	} else {
		return -EINVAL;
	}
	size_t alen = strcspn(p, "/?#");
	const char *auth_end = p + alen;
	if (!alen || memchr(p, '@', alen))
		return -EINVAL;
	const char *h = p, *hend, *colon = NULL;
	if (*p == '[') {
		hend = memchr(p, ']', alen);
		if (!hend)
			return -EINVAL;
		h = p + 1;
		if (hend + 1 < auth_end) {
			if (hend[1] != ':')
				return -EINVAL;
			colon = hend + 1;
		}
	} else {
		colon = memchr(p, ':', alen);
		hend = colon ? colon : auth_end;
	}
	if (hend == h)
		return -EINVAL;
	long prt = secure ? 443 : 80;
	if (colon) {
		char *e;
		if (colon + 1 == auth_end)
			return -EINVAL;
		prt = strtol(colon + 1, &e, 10);
		if (e != auth_end || prt < 1 || prt > 65535)
			return -EINVAL;
	}
	const char *rest = auth_end;
	size_t rlen = strcspn(rest, "#");
	char *hs = mem_strndup(h, (size_t)(hend - h));
	char *ps = mem_alloc(rlen + 2);
	if (!hs || !ps) {
		mem_free(hs);
		mem_free(ps);
		return -ENOMEM;
	}
	if (rlen && rest[0] == '/') {
		memcpy(ps, rest, rlen);
		ps[rlen] = '\0';
	} else {
		ps[0] = '/';
		memcpy(ps + 1, rest, rlen);
		ps[rlen + 1] = '\0';
	}
	*host = hs;
	*path = ps;
	*port = (int)prt;
	*tls = secure;
	return 0;
}

/* Copies s into sb with control characters as spaces, up to ERR_TEXT_MAX bytes. */
static void put_clean(struct strbuf *sb, const char *s, size_t n)
{
	for (size_t i = 0; i < n && sb->len < ERR_TEXT_MAX; i++) {
		char ch = (unsigned char)s[i] < 0x20 ? ' ' : s[i];
		str_append(sb, &ch, 1);
	}
}

char *vapi_rest_error_text(const char *body, size_t len)
{
	struct strbuf sb;
	str_init(&sb);
	json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
	if (json_is_object(root)) {
		json_t *m = json_object_get(root, "message");
		if (json_is_string(m)) {
			put_clean(&sb, json_string_value(m), json_string_length(m));
		} else if (json_is_array(m)) {
			size_t i;
			json_t *v;
			json_array_foreach(m, i, v)
			{
				if (!json_is_string(v))
					continue;
				if (sb.len)
					put_clean(&sb, "; ", 2);
				put_clean(&sb, json_string_value(v), json_string_length(v));
			}
		}
		json_t *e = json_object_get(root, "error");
		if (!sb.len && json_is_string(e))
			put_clean(&sb, json_string_value(e), json_string_length(e));
	}
	json_decref(root);
	if (!sb.len && body)
		put_clean(&sb, body, len);
	return str_steal(&sb);
}

/* ---- the transfer ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct vapi_call *c = arg;
	size_t n = size * nmemb;
	if (c->resp_len + n > VAPI_BODY_MAX) {
		c->resp_too_big = 1;
		return 0; /* aborts the transfer */
	}
	char *r = mem_realloc(c->resp, c->resp_len + n + 1);
	if (!r)
		return 0;
	memcpy(r + c->resp_len, data, n);
	c->resp = r;
	c->resp_len += n;
	c->resp[c->resp_len] = '\0';
	return n;
}

static void fail(struct vapi_call *c, int status, const char *text)
{
	if (!atomic_load(&c->ended)) {
		metric_inc(vapi_g.m_failed);
		log_warn("vapi", "%s: VAPI call not created%s%.0d: %s", c->name,
		         status ? ": HTTP " : "", status, text);
	}
	vapi_event_post(&vapi_g.io_ovf, c, VAPI_EV_FAILED, status, NULL, text, NULL);
}

static void transfer_drop(struct vapi_call *c)
{
	struct vapi_call **pp = &io_list;
	while (*pp && *pp != c)
		pp = &(*pp)->io_next;
	if (*pp)
		*pp = c->io_next;
	c->io_next = NULL;
	curl_multi_remove_handle(vapi_g.multi, c->easy);
	curl_easy_cleanup(c->easy);
	curl_slist_free_all(c->hdrs);
	c->easy = NULL;
	c->hdrs = NULL;
	vapi_call_unref(c);
}

static void transfer_start(struct vapi_call *c)
{
	const char *why = "cannot start the request";
	CURL *e = curl_easy_init();
	size_t ulen = strlen(vapi_g.api_url) + sizeof("/call");
	size_t hlen = strlen(vapi_g.auth) + sizeof("Authorization: ");
	char *url = mem_alloc(ulen), *auth = mem_alloc(hlen);
	struct curl_slist *h = NULL;
	if (e && url && auth) {
		snprintf(url, ulen, "%s/call", vapi_g.api_url);
		snprintf(auth, hlen, "Authorization: %s", vapi_g.auth);
		struct curl_slist *t;
		h = curl_slist_append(NULL, auth);
		t = h ? curl_slist_append(h, "Content-Type: application/json") : NULL;
		t = t ? curl_slist_append(h, "Accept: application/json") : NULL;
		t = t ? curl_slist_append(h, "Expect:") : NULL;
		if (!t) {
			curl_slist_free_all(h);
			h = NULL;
		}
	}
	if (h) {
		long to = (long)vapi_g.timeout_ms;
		CURLcode r = CURLE_OK;
		r |= curl_easy_setopt(e, CURLOPT_URL, url);
		r |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
		r |= curl_easy_setopt(e, CURLOPT_POST, 1L);
		r |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
		r |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
		r |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
		r |= curl_easy_setopt(e, CURLOPT_USERAGENT, vapi_g.user_agent);
		r |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, to);
		r |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, to);
		r |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		r |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
		r |= curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
		r |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
		r |= curl_easy_setopt(e, CURLOPT_PRIVATE, c);
		if (vapi_g.ca_file)
			r |= curl_easy_setopt(e, CURLOPT_CAINFO, vapi_g.ca_file);
		if (r == CURLE_OK && curl_multi_add_handle(vapi_g.multi, e) == CURLM_OK) {
			mem_free(url);
			mem_free(auth);
			c->easy = e;
			c->hdrs = h;
			c->io_next = io_list;
			io_list = c; /* the command's reference is now the transfer's */
			return;
		}
		why = "cannot set up the request";
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	mem_free(url);
	mem_free(auth);
	fail(c, 0, why);
	vapi_call_unref(c);
}

/* Resolves the WebSocket host to a numeric address (IPv4 preferred). */
static int resolve(const char *host, int port, char **out, char *why, size_t whylen)
{
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	char ps[8];
	snprintf(ps, sizeof(ps), "%d", port);
	int rc = getaddrinfo(host, ps, &hints, &res);
	if (rc) {
		snprintf(why, whylen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	const struct addrinfo *pick = res;
	for (const struct addrinfo *a = res; a; a = a->ai_next) {
		if (a->ai_family == AF_INET) {
			pick = a;
			break;
		}
	}
	char buf[INET6_ADDRSTRLEN];
	const void *sa =
	    pick->ai_family == AF_INET
	        ? (const void *)&((struct sockaddr_in *)(void *)pick->ai_addr)->sin_addr
	        : (const void *)&((struct sockaddr_in6 *)(void *)pick->ai_addr)->sin6_addr;
	const char *s = inet_ntop(pick->ai_family, sa, buf, sizeof(buf));
	freeaddrinfo(res);
	if (!s) {
		snprintf(why, whylen, "cannot resolve %s", host);
		return -EHOSTUNREACH;
	}
	*out = mem_strdup(buf);
	return *out ? 0 : -ENOMEM;
}

/* 200/201: the call exists; hands the socket to the ai thread. */
static void created(struct vapi_call *c, long code)
{
	char why[256];
	json_error_t jerr;
	json_t *root = json_loadb(c->resp ? c->resp : "", c->resp_len, 0, &jerr);
	json_t *tr = json_object_get(root, "transport");
	const char *url = json_string_value(json_object_get(tr, "websocketCallUrl"));
	const char *id = json_string_value(json_object_get(root, "id"));
	if (!url) {
		fail(c, (int)code,
		     root ? "VAPI's answer has no transport.websocketCallUrl"
		          : "VAPI's answer is not JSON");
		json_decref(root);
		return;
	}
	c->vapi_id = mem_strdup(id ? id : "");
	int rc = vapi_ws_url_parse(url, &c->ws_host, &c->ws_port, &c->ws_path, &c->ws_tls);
	json_decref(root);
	if (rc || !c->vapi_id) {
		fail(c, (int)code,
		     rc == -EINVAL ? "websocketCallUrl is not a ws:// or wss:// URL"
		                   : "out of memory");
		return;
	}
	if (atomic_load(&c->ended))
		return;
	rc = resolve(c->ws_host, c->ws_port, &c->ws_address, why, sizeof(why));
	if (rc) {
		fail(c, 0, why);
		return;
	}
	log_info("vapi", "%s: VAPI call %s created; WebSocket %s://%s:%d", c->name, c->vapi_id,
	         c->ws_tls ? "wss" : "ws", c->ws_host, c->ws_port);
	/* A deferred call waits for its port (vapi_call_connect posts CONNECT then). */
	if (atomic_exchange(&c->gate, VAPI_GATE_CREATED) != VAPI_GATE_WANTED)
		return;
	if (vapi_ai_post(VAPI_AI_CONNECT, c, NULL))
		fail(c, 0, "the ai thread is overloaded");
}

static void transfer_done(struct vapi_call *c, CURLcode result)
{
	long code = 0;
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
	if (atomic_load(&c->ended)) {
		/* nothing to report */
	} else if (result != CURLE_OK) {
		const char *t = c->resp_too_big ? "VAPI's answer is larger than 64 KiB"
		                : c->errbuf[0]  ? c->errbuf
		                                : curl_easy_strerror(result);
		fail(c, c->resp_too_big ? (int)code : 0, t);
	} else if (code == 200 || code == 201) {
		created(c, code);
	} else {
		char *t = vapi_rest_error_text(c->resp, c->resp_len);
		char dflt[32];
		snprintf(dflt, sizeof(dflt), "HTTP %ld", code);
		fail(c, (int)code, t && t[0] ? t : dflt);
		mem_free(t);
	}
	mem_free(c->resp);
	c->resp = NULL;
	c->resp_len = 0;
	transfer_drop(c);
}

static void *io_main(void *arg)
{
	(void)arg;
	CURLM *multi = vapi_g.multi;
	while (!atomic_load(&vapi_g.io_stop)) {
		struct curl_waitfd wfd = {.fd = mbox_fd(vapi_g.io_cmd), .events = CURL_WAIT_POLLIN};
		int timeout = vapi_g.io_ovf.head ? 20 : 1000;
		curl_multi_poll(multi, &wfd, 1, timeout, NULL);
		mbox_drain_fd(vapi_g.io_cmd);
		struct vapi_call *c;
		while (mbox_take(vapi_g.io_cmd, &c) == 0) {
			if (atomic_load(&c->ended))
				vapi_call_unref(c);
			else
				transfer_start(c);
		}
		for (struct vapi_call *t = io_list, *n; t; t = n) {
			n = t->io_next;
			if (atomic_load(&t->ended))
				transfer_drop(t); /* vapi_call_end before the answer came */
		}
		int running = 0;
		curl_multi_perform(multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			char *priv = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
			CURLcode result = m->data.result;
			transfer_done((struct vapi_call *)(void *)priv, result);
		}
		vapi_ovf_flush(&vapi_g.io_ovf, 0);
	}
	while (io_list)
		transfer_drop(io_list);
	return NULL;
}

int vapi_io_start(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	vapi_g.multi = curl_multi_init();
	if (!vapi_g.multi) {
		curl_global_cleanup();
		return -ENOMEM;
	}
	atomic_store(&vapi_g.io_stop, 0);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = -pthread_create(&vapi_g.io_thread, NULL, io_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		curl_multi_cleanup(vapi_g.multi);
		vapi_g.multi = NULL;
		curl_global_cleanup();
		return rc;
	}
	pthread_setname_np(vapi_g.io_thread, "io");
	vapi_g.io_started = 1;
	return 0;
}

void vapi_io_stop(void)
{
	if (vapi_g.io_started) {
		atomic_store(&vapi_g.io_stop, 1);
		curl_multi_wakeup(vapi_g.multi);
		pthread_join(vapi_g.io_thread, NULL);
		vapi_g.io_started = 0;
	}
	struct vapi_call *c;
	while (vapi_g.io_cmd && mbox_take(vapi_g.io_cmd, &c) == 0)
		vapi_call_unref(c);
	if (vapi_g.multi) {
		curl_multi_cleanup(vapi_g.multi);
		vapi_g.multi = NULL;
		curl_global_cleanup();
	}
}
