/* Event notifications: subscriptions cached from PostgreSQL, signed deliveries on the out
 * thread with exponential backoff, dead letters, and the /v1/subscriptions routes. */
#include "control/notify.h"

#include "control/control.h"
#include "control/outbound.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"
#include "core/strbuf.h"

#include "db/db.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Threads: notify_emit (any thread) builds the envelope and posts it to the out thread;
 * there it fans out to the cached subscriptions, one delivery each. The cache, the
 * deliveries and their retries live on the out thread only. PostgreSQL answers (db
 * thread) are posted back to the out thread, or answered straight to the http client.
 */

#define URL_MAX    2048u
#define SECRET_MIN 16u
#define SECRET_MAX 256u
#define BODY_MAX   (16u * 1024u)

/* Event types a subscription may name; "ping" is sent by the test route only. */
static const char *const types[] = {"lead.qualified",     "call.started", "call.answered",
                                    "transfer.completed", "call.ended",   NULL};
#define TYPE_PING (1u << 5)

struct sub {
	long long id;
	char *url, *secret;
	unsigned mask;
};

struct delivery {
	struct delivery *qnext; /* in its lane's queue */
	long long sub_id;
	char *url, *secret;
	char *type, *event_id;
	char *payload; /* the body, also the dead letter's payload */
	struct ctl_out *r;
	unsigned attempt;
	uint64_t first_ms, last_ms;
};

/* A subscription's lane (out thread): its first attempts go one at a time, in the order
 * the events happened; retries run beside the lane, so a failing event does not hold
 * back the next ones. */
struct lane {
	struct lane *next;
	long long sub_id;
	int busy; /* a first attempt is in flight */
	struct delivery *head, *tail;
};

struct event {
	unsigned type_bit;
	char *type, *id, *body;
	struct sub *only; /* the test route: this subscription only (owned) */
};

static struct {
	struct notify_config cfg;
	int inited;
	atomic_uint pending; /* events posted + deliveries alive */
	struct sub *subs;    /* out thread */
	size_t n_subs;
	int refreshing;     /* out thread: a SELECT is under way */
	struct lane *lanes; /* out thread */
	struct metric *m_ok, *m_failed, *m_gone, *m_dropped, *m_retries, *m_dead, *m_depth, *m_subs;
	struct log_ratelimit rl;
} nf;

static unsigned type_bit(const char *t)
{
	for (unsigned i = 0; types[i]; i++)
		if (strcmp(types[i], t) == 0)
			return 1u << i;
	return strcmp(t, "ping") == 0 ? TYPE_PING : 0;
}

static void pending_dec(void)
{
	atomic_fetch_sub(&nf.pending, 1);
}

static void random_hex(char *out, size_t nbytes)
{
	unsigned char b[64];
	if (nbytes > sizeof(b))
		nbytes = sizeof(b);
	if (RAND_bytes(b, (int)nbytes) != 1)
		for (size_t i = 0; i < nbytes; i++)
			b[i] = (unsigned char)random();
	for (size_t i = 0; i < nbytes; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static void subs_free(struct sub *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mem_free(v[i].url);
		mem_free(v[i].secret);
	}
	mem_free(v);
}

static void delivery_free(struct delivery *d)
{
	if (!d)
		return;
	ctl_out_destroy(d->r);
	mem_free(d->url);
	mem_free(d->secret);
	mem_free(d->type);
	mem_free(d->event_id);
	mem_free(d->payload);
	mem_free(d);
	pending_dec();
}

/* ---- subscriptions cache (out thread) ---- */

static unsigned mask_of(const json_t *events)
{
	unsigned m = 0;
	size_t i;
	const json_t *v;
	json_array_foreach(events, i, v)
	{
		if (json_is_string(v))
			m |= type_bit(json_string_value(v));
	}
	return m;
}

static void subs_apply(void *arg)
{
	json_t *rows = arg;
	nf.refreshing = 0;
	if (!rows)
		return;
	size_t n = json_array_size(rows);
	struct sub *v = n ? mem_zalloc(n * sizeof(*v)) : NULL;
	size_t k = 0;
	if (n && !v)
		goto out;
	for (size_t i = 0; i < n; i++) {
		json_t *row = json_array_get(rows, i);
		const char *url = json_string_value(json_object_get(row, "url"));
		const char *sec = json_string_value(json_object_get(row, "secret"));
		if (!url || !sec)
			continue;
		v[k].id = (long long)json_integer_value(json_object_get(row, "id"));
		v[k].url = mem_strdup(url);
		v[k].secret = mem_strdup(sec);
		v[k].mask = mask_of(json_object_get(row, "events"));
		k++;
		if (!v[k - 1].url || !v[k - 1].secret) {
			subs_free(v, k);
			goto out;
		}
	}
	subs_free(nf.subs, nf.n_subs);
	nf.subs = v;
	nf.n_subs = k;
	metric_set(nf.m_subs, (int64_t)k);
out:
	json_decref(rows);
}

static void on_subs_rows(void *arg, int rc, json_t *rows)
{
	(void)arg;
	if (rc)
		rows = NULL;
	if (ctl_out_run(subs_apply, rows))
		json_decref(rows);
}

static void subs_refresh(void *arg)
{
	(void)arg;
	if (nf.refreshing || ctl_out_stopping())
		return;
	static const char sql[] = "SELECT id, url, secret, array_to_json(events) AS events "
	                          "FROM event_subscriptions WHERE active ORDER BY id";
	if (db_query(sql, NULL, 0, on_subs_rows, NULL) == 0)
		nf.refreshing = 1;
}

static void subs_forget(long long id)
{
	for (size_t i = 0; i < nf.n_subs; i++) {
		if (nf.subs[i].id != id)
			continue;
		mem_free(nf.subs[i].url);
		mem_free(nf.subs[i].secret);
		nf.subs[i] = nf.subs[--nf.n_subs];
		metric_set(nf.m_subs, (int64_t)nf.n_subs);
		return;
	}
}

/* ---- deliveries (out thread) ---- */

static char what_dead[] = "dead letter", what_gone[] = "deactivate subscription";

static void on_db_done(void *arg, int rc, json_t *rows)
{
	const char *what = arg;
	json_decref(rows);
	if (rc)
		log_err("notify", "%s: %s", what, strerror(-rc));
}

static void dead_letter(struct delivery *d, long status, const char *text)
{
	char sid[24], att[16], st[16], first[24], last[24];
	snprintf(sid, sizeof(sid), "%lld", d->sub_id);
	snprintf(att, sizeof(att), "%u", d->attempt);
	snprintf(st, sizeof(st), "%ld", status);
	snprintf(first, sizeof(first), "%" PRIu64, d->first_ms);
	snprintf(last, sizeof(last), "%" PRIu64, d->last_ms);
	const char *p[] = {sid,  d->url, d->type, d->payload, att, status ? st : NULL,
	                   text, first,  last};
	static const char sql[] =
	    "INSERT INTO dead_letters (subscription_id, url, event, payload, attempts, last_status,"
	    " last_error, first_attempt_at, last_attempt_at) VALUES ((SELECT id FROM "
	    "event_subscriptions WHERE id = $1::bigint), $2, $3, $4::jsonb, $5::integer,"
	    " $6::integer, $7, to_timestamp($8::bigint / 1000.0), to_timestamp($9::bigint / "
	    "1000.0))";
	metric_inc(nf.m_dead);
	metric_inc(nf.m_failed);
	log_warn("notify", "event %s (%s) to subscription %lld (%s): gave up after %u attempts: %s",
	         d->event_id, d->type, d->sub_id, d->url, d->attempt, text);
	int rc = db_query(sql, p, 9, on_db_done, what_dead);
	if (rc)
		log_err("notify", "dead letter of event %s not stored: %s", d->event_id,
		        strerror(-rc));
}

static int attempt(struct delivery *d);
static void retry(void *arg);
static void lane_next(long long sub_id);

/* The signature header: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>. */
static int sign(const struct delivery *d, char *out, size_t len)
{
	long long t = (long long)(clock_wall_ms() / 1000u);
	char ts[24];
	int tl = snprintf(ts, sizeof(ts), "%lld.", t);
	size_t blen = strlen(d->payload);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned mlen = 0;
	char *msg = mem_alloc((size_t)tl + blen);
	if (!msg)
		return -ENOMEM;
	memcpy(msg, ts, (size_t)tl);
	memcpy(msg + tl, d->payload, blen);
	unsigned char *ok = HMAC(EVP_sha256(), d->secret, (int)strlen(d->secret),
	                         (const unsigned char *)msg, (size_t)tl + blen, mac, &mlen);
	mem_free(msg);
	if (!ok)
		return -EIO;
	int n = snprintf(out, len, "X-VACS-Signature: t=%lld,v1=", t);
	for (unsigned i = 0; i < mlen && (size_t)n + 3 < len; i++)
		n += snprintf(out + n, len - (size_t)n, "%02x", mac[i]);
	return 0;
}

static void sent(struct delivery *d, struct ctl_out *r, long status, int err, const char *text)
{
	(void)r;
	if (err == -ECANCELED || ctl_out_stopping()) {
		delivery_free(d);
		return;
	}
	if (!err && status >= 200 && status < 300) {
		metric_inc(nf.m_ok);
		log_debug("notify", "event %s (%s) delivered to subscription %lld: HTTP %ld",
		          d->event_id, d->type, d->sub_id, status);
		delivery_free(d);
		return;
	}
	if (!err && status == 410) {
		char sid[24];
		snprintf(sid, sizeof(sid), "%lld", d->sub_id);
		const char *p[] = {sid};
		metric_inc(nf.m_gone);
		log_warn("notify", "subscription %lld (%s) answered 410 Gone: deactivated",
		         d->sub_id, d->url);
		subs_forget(d->sub_id);
		db_query("UPDATE event_subscriptions SET active = false, updated_at = now() "
		         "WHERE id = $1::bigint",
		         p, 1, on_db_done, what_gone);
		delivery_free(d);
		return;
	}
	if (d->attempt >= nf.cfg.attempts) {
		dead_letter(d, status, text);
		delivery_free(d);
		return;
	}
	unsigned delay = nf.cfg.backoff_ms;
	for (unsigned i = 1; i < d->attempt && delay < nf.cfg.backoff_max_ms; i++)
		delay *= 2;
	if (delay > nf.cfg.backoff_max_ms)
		delay = nf.cfg.backoff_max_ms;
	metric_inc(nf.m_retries);
	log_info("notify",
	         "event %s (%s) to subscription %lld: attempt %u failed (%s); next in %u ms",
	         d->event_id, d->type, d->sub_id, d->attempt, text, delay);
	if (ctl_out_later(retry, d, delay)) {
		dead_letter(d, status, "out of memory");
		delivery_free(d);
	}
}

static void on_sent(void *arg, struct ctl_out *r, long status, int err, const char *text)
{
	struct delivery *d = arg;
	long long sub_id = d->sub_id;
	int first = d->attempt == 1;
	sent(d, r, status, err, text); /* may free d */
	if (first)
		lane_next(sub_id);
}

/* Signs and sends one attempt. 0, or -errno with d freed (a dead letter unless stopping). */
static int attempt(struct delivery *d)
{
	if (ctl_out_stopping()) {
		delivery_free(d);
		return -ESHUTDOWN;
	}
	char sig[160], h_ev[96], h_id[96];
	d->attempt++;
	d->last_ms = clock_wall_ms();
	ctl_out_headers_clear(d->r);
	snprintf(h_ev, sizeof(h_ev), "X-VACS-Event: %s", d->type);
	snprintf(h_id, sizeof(h_id), "X-VACS-Delivery: %s", d->event_id);
	int rc = sign(d, sig, sizeof(sig));
	if (!rc)
		rc = ctl_out_header(d->r, "Content-Type: application/json");
	if (!rc)
		rc = ctl_out_header(d->r, h_ev);
	if (!rc)
		rc = ctl_out_header(d->r, h_id);
	if (!rc)
		rc = ctl_out_header(d->r, sig);
	if (!rc)
		rc = ctl_out_header(d->r, "Expect:");
	if (!rc)
		rc = ctl_out_send(d->r, on_sent, d);
	if (rc) {
		if (rc != -ESHUTDOWN)
			dead_letter(d, 0, strerror(-rc));
		delivery_free(d);
	}
	return rc;
}

/* ctl_out_later: a retry. */
static void retry(void *arg)
{
	attempt(arg);
}

static struct lane *lane_find(long long sub_id)
{
	for (struct lane *l = nf.lanes; l; l = l->next)
		if (l->sub_id == sub_id)
			return l;
	return NULL;
}

/* The lane's first attempt in flight is over: start the next queued one, or free the idle
 * lane. */
static void lane_next(long long sub_id)
{
	struct lane *l = lane_find(sub_id);
	if (!l)
		return;
	while (l->head) {
		struct delivery *d = l->head;
		l->head = d->qnext;
		if (!l->head)
			l->tail = NULL;
		d->qnext = NULL;
		if (attempt(d) == 0)
			return;
	}
	struct lane **pp = &nf.lanes;
	while (*pp != l)
		pp = &(*pp)->next;
	*pp = l->next;
	mem_free(l);
}

static void deliver(const struct event *ev, const struct sub *s)
{
	if (atomic_load(&nf.pending) >= nf.cfg.queue_len) {
		metric_inc(nf.m_dropped);
		if (log_ratelimit_ok(&nf.rl))
			log_warn("notify",
			         "event %s (%s) to subscription %lld dropped: %u deliveries "
			         "pending (notify.queue)",
			         ev->id, ev->type, s->id, nf.cfg.queue_len);
		return;
	}
	atomic_fetch_add(&nf.pending, 1);
	struct delivery *d = mem_zalloc(sizeof(*d));
	if (!d) {
		pending_dec();
		return;
	}
	d->sub_id = s->id;
	d->url = mem_strdup(s->url);
	d->secret = mem_strdup(s->secret);
	d->type = mem_strdup(ev->type);
	d->event_id = mem_strdup(ev->id);
	d->payload = mem_strdup(ev->body);
	char *body = mem_strdup(ev->body);
	d->r = ctl_out_create("POST", s->url);
	d->first_ms = clock_wall_ms();
	if (!d->url || !d->secret || !d->type || !d->event_id || !d->payload || !body || !d->r) {
		mem_free(body);
		metric_inc(nf.m_dropped);
		delivery_free(d);
		return;
	}
	ctl_out_body(d->r, body, strlen(body));
	ctl_out_timeout(d->r, nf.cfg.timeout_ms);
	ctl_out_public_only(d->r, !nf.cfg.allow_private);
	struct lane *l = lane_find(s->id);
	if (l && l->busy) {
		if (l->tail)
			l->tail->qnext = d;
		else
			l->head = d;
		l->tail = d;
		return;
	}
	if (!l) {
		l = mem_zalloc(sizeof(*l));
		if (!l) {
			metric_inc(nf.m_dropped);
			delivery_free(d);
			return;
		}
		l->sub_id = s->id;
		l->next = nf.lanes;
		nf.lanes = l;
	}
	l->busy = 1;
	if (attempt(d))
		lane_next(s->id);
}

static void event_free(struct event *ev)
{
	if (ev->only)
		subs_free(ev->only, 1);
	mem_free(ev->type);
	mem_free(ev->id);
	mem_free(ev->body);
	mem_free(ev);
	pending_dec();
}

static void fan_out(void *arg)
{
	struct event *ev = arg;
	if (!ctl_out_stopping()) {
		if (ev->only) {
			deliver(ev, ev->only);
		} else {
			for (size_t i = 0; i < nf.n_subs; i++)
				if (nf.subs[i].mask & ev->type_bit)
					deliver(ev, &nf.subs[i]);
		}
	}
	event_free(ev);
}

/* Any thread: counts a dropped event, logs the 1st, 2nd, 4th, 8th... */
static void drop_log(const char *type, const char *why)
{
	static atomic_ulong drops;
	unsigned long n = atomic_fetch_add(&drops, 1) + 1;
	metric_inc(nf.m_dropped);
	if ((n & (n - 1)) == 0)
		log_warn("notify", "%s event dropped (%lu so far): %s", type, n, why);
}

/* Builds the envelope and posts it; `only` (owned) targets one subscription. */
static int emit(const char *type, json_t *data, struct sub *only, char *id_out)
{
	int rc = -ENOMEM;
	struct event *ev = NULL;
	unsigned bit = type ? type_bit(type) : 0;
	if (!nf.inited) {
		rc = -ENOTCONN;
		goto fail;
	}
	if (!bit || !json_is_object(data)) {
		rc = -EINVAL;
		goto fail;
	}
	if (atomic_fetch_add(&nf.pending, 1) >= nf.cfg.queue_len) {
		pending_dec();
		drop_log(type, "deliveries pending reached notify.queue");
		rc = -EAGAIN;
		goto fail;
	}
	ev = mem_zalloc(sizeof(*ev));
	if (!ev) {
		pending_dec();
		goto fail;
	}
	char id[40], ts[40];
	memcpy(id, "evt_", 4);
	random_hex(id + 4, 12);
	clock_format_iso(clock_wall_ms(), ts, sizeof(ts));
	json_t *env = json_pack("{s:s, s:s, s:s, s:O}", "id", id, "type", type, "created_at", ts,
	                        "data", data);
	ev->type_bit = bit;
	ev->type = mem_strdup(type);
	ev->id = mem_strdup(id);
	char *dump = env ? json_dumps(env, JSON_COMPACT) : NULL;
	ev->body = dump ? mem_strdup(dump) : NULL;
	free(dump);
	json_decref(env);
	if (!ev->type || !ev->id || !ev->body)
		goto fail_ev;
	ev->only = only;
	only = NULL;
	if (id_out)
		memcpy(id_out, id, strlen(id) + 1);
	rc = ctl_out_run(fan_out, ev);
	if (rc == -EAGAIN) {
		drop_log(type, "the out thread's queue is full");
	}
	if (rc)
		goto fail_ev;
	json_decref(data);
	return 0;
fail_ev:
	event_free(ev);
fail:
	if (only)
		subs_free(only, 1);
	json_decref(data);
	return rc;
}

int notify_emit(const char *type, json_t *data)
{
	if (type && strcmp(type, "ping") == 0) {
		json_decref(data);
		return -EINVAL;
	}
	return emit(type, data, NULL, NULL);
}

/* ---- routes (http thread; answers from the db thread) ---- */

static void refresh_soon(void)
{
	ctl_out_run(subs_refresh, NULL);
}

static void reply_json(uint64_t token, unsigned code, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	char *b = s ? mem_strdup(s) : NULL;
	free(s);
	json_decref(o);
	if (!b) {
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
		return;
	}
	ctl_reply(token, code, NULL, b, strlen(b));
}

static void reply_db_error(uint64_t token, int rc)
{
	if (rc == -ENOTCONN)
		ctl_reply_error(token, 503, "store_unavailable",
		                "PostgreSQL is not reachable: subscriptions are unavailable", NULL);
	else if (rc == -EAGAIN)
		ctl_reply_error(token, 503, "busy", "the store's queue is full: try again", NULL);
	else
		ctl_reply_error(token, 500, "internal", "the store failed", NULL);
}

static int host_private(const char *host)
{
	size_t hl = strlen(host);
	if (strcasecmp(host, "localhost") == 0 ||
	    (hl > 10 && strcasecmp(host + hl - 10, ".localhost") == 0))
		return 1;
	char h[64];
	size_t n = strlen(host);
	if (n >= sizeof(h))
		return 0;
	memcpy(h, host, n + 1);
	if (h[0] == '[' && n > 2 && h[n - 1] == ']') {
		memmove(h, h + 1, n - 2);
		h[n - 2] = '\0';
	}
	unsigned char a[16];
	if (inet_pton(AF_INET, h, a) == 1) {
		uint32_t v = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16;
		return a[0] == 127 || a[0] == 10 || a[0] == 0 || (v >> 20) == (172u << 4 | 1) ||
		       (v >> 16) == (192u << 8 | 168) || (v >> 16) == (169u << 8 | 254) ||
		       (v >> 22) == (100u << 2 | 1);
	}
	if (inet_pton(AF_INET6, h, a) == 1) {
		static const unsigned char lo[16] = {[15] = 1}, any[16] = {0};
		return !memcmp(a, lo, 16) || !memcmp(a, any, 16) || (a[0] & 0xfe) == 0xfc ||
		       (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||
		       (a[10] == 0xff && a[11] == 0xff && !memcmp(a, any, 10));
	}
	return 0;
}

/* NULL when url is acceptable, else why not. */
static const char *url_problem(const char *url)
{
	if (strlen(url) > URL_MAX)
		return "url is longer than 2048 bytes";
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return "url must not contain spaces or control characters";
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *user = NULL;
	const char *why = NULL;
	if (!u)
		return "out of memory";
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
		why = "url is not an absolute http:// or https:// URL";
	} else if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
		why = "url must use http or https";
	} else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		why = "url must not carry credentials (sign with the secret instead)";
	} else if (!nf.cfg.allow_private && host_private(host)) {
		why = "url points at a loopback or private address (notify.allow_private is off)";
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_url_cleanup(u);
	return why;
}

static void on_created(void *arg, int rc, json_t *rows)
{
	json_t *extra = arg; /* {token, secret} */
	uint64_t token = (uint64_t)json_integer_value(json_object_get(extra, "token"));
	json_t *row = json_array_get(rows, 0);
	if (rc || !row) {
		reply_db_error(token, rc ? rc : -EIO);
	} else {
		char id[24];
		snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT,
		         json_integer_value(json_object_get(row, "id")));
		json_t *o = json_object();
		json_object_set_new(o, "id", json_string(id));
		const char *keys[] = {"url", "events", "active", "created_at"};
		for (size_t i = 0; i < 4; i++)
			json_object_set(o, keys[i], json_object_get(row, keys[i]));
		json_object_set(o, "secret", json_object_get(extra, "secret"));
		reply_json(token, 201, o);
		refresh_soon();
	}
	json_decref(rows);
	json_decref(extra);
}

static void bad(uint64_t token, const char *code, const char *msg, const char *field)
{
	ctl_reply_error(token, 400, code, msg, field);
}

static void on_create(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	json_error_t jerr;
	json_t *in = json_loadb(body, len, 0, &jerr);
	json_t *extra = NULL;
	char gen[80];
	if (!json_is_object(in)) {
		bad(token, "invalid_json", in ? "the body must be a JSON object" : jerr.text, NULL);
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(in, key, v)
	{
		if (strcmp(key, "url") && strcmp(key, "events") && strcmp(key, "secret")) {
			char msg[160];
			snprintf(msg, sizeof(msg),
			         "unknown field %.60s (allowed: url, events, secret)", key);
			bad(token, "invalid_field", msg, key);
			goto out;
		}
	}
	json_t *url = json_object_get(in, "url"), *events = json_object_get(in, "events"),
	       *secret = json_object_get(in, "secret");
	if (!url) {
		bad(token, "missing_field", "url is required: where the events are POSTed", "url");
		goto out;
	}
	if (!json_is_string(url)) {
		bad(token, "invalid_field", "url must be a string", "url");
		goto out;
	}
	const char *why = url_problem(json_string_value(url));
	if (why) {
		bad(token, "invalid_field", why, "url");
		goto out;
	}
	if (!events) {
		bad(token, "missing_field", "events is required: a list of event types", "events");
		goto out;
	}
	if (!json_is_array(events) || !json_array_size(events)) {
		bad(token, "invalid_field", "events must be a non-empty array of event types",
		    "events");
		goto out;
	}
	struct strbuf arr;
	str_init(&arr);
	str_puts(&arr, "{");
	unsigned seen = 0;
	size_t i;
	json_array_foreach(events, i, v)
	{
		unsigned b = json_is_string(v) ? type_bit(json_string_value(v)) : 0;
		if (!b || b == TYPE_PING) {
			char msg[200];
			snprintf(msg, sizeof(msg),
			         "events[%zu] is not an event type (lead.qualified, call.started, "
			         "call.answered, transfer.completed, call.ended)",
			         i);
			str_deinit(&arr);
			bad(token, "invalid_field", msg, "events");
			goto out;
		}
		if (seen & b)
			continue;
		seen |= b;
		str_printf(&arr, "%s%s", arr.len > 1 ? "," : "", json_string_value(v));
	}
	str_puts(&arr, "}");
	const char *sec;
	if (secret) {
		if (!json_is_string(secret) || json_string_length(secret) < SECRET_MIN ||
		    json_string_length(secret) > SECRET_MAX) {
			str_deinit(&arr);
			bad(token, "invalid_field",
			    "secret must be a string of 16 to 256 characters", "secret");
			goto out;
		}
		sec = json_string_value(secret);
		for (const char *p = sec; *p; p++) {
			if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
				str_deinit(&arr);
				bad(token, "invalid_field",
				    "secret must be printable ASCII without spaces", "secret");
				goto out;
			}
		}
	} else {
		memcpy(gen, "whsec_", 6);
		random_hex(gen + 6, 32);
		sec = gen;
	}
	extra = json_pack("{s:I, s:s}", "token", (json_int_t)token, "secret", sec);
	if (arr.oom || !extra) {
		str_deinit(&arr);
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
		goto out;
	}
	const char *p[] = {json_string_value(url), sec, arr.p};
	int rc = db_query("INSERT INTO event_subscriptions (url, secret, events) VALUES ($1, $2, "
	                  "$3::text[]) RETURNING id, url, array_to_json(events) AS events, active,"
	                  " to_char(created_at AT TIME ZONE 'UTC', "
	                  "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created_at",
	                  p, 3, on_created, extra);
	str_deinit(&arr);
	if (rc) {
		reply_db_error(token, rc);
		goto out;
	}
	extra = NULL;
out:
	json_decref(extra);
	json_decref(in);
}

static void on_listed(void *arg, int rc, json_t *rows)
{
	uint64_t token = (uint64_t)(uintptr_t)arg;
	if (rc) {
		reply_db_error(token, rc);
		return;
	}
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		char id[24];
		snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT,
		         json_integer_value(json_object_get(row, "id")));
		json_object_set_new(row, "id", json_string(id));
	}
	reply_json(token, 200, json_pack("{s:o}", "subscriptions", rows));
}

static void on_list(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	int rc = db_query("SELECT id, url, array_to_json(events) AS events, active, "
	                  "to_char(created_at AT TIME ZONE 'UTC', "
	                  "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS created_at "
	                  "FROM event_subscriptions ORDER BY id",
	                  NULL, 0, on_listed, (void *)(uintptr_t)token);
	if (rc)
		reply_db_error(token, rc);
}

/* The id in /v1/subscriptions/{id}[/suffix]: digits only, else 0. */
static long long path_id(const char *path, const char *suffix)
{
	const char *p = path + strlen("/v1/subscriptions/");
	char *end;
	if (*p < '1' || *p > '9' || strlen(p) > 30)
		return 0;
	long long id = strtoll(p, &end, 10);
	if (strcmp(end, suffix) != 0 || id <= 0)
		return 0;
	return id;
}

static void on_deleted(void *arg, int rc, json_t *rows)
{
	uint64_t token = (uint64_t)(uintptr_t)arg;
	if (rc)
		reply_db_error(token, rc);
	else if (!json_array_size(rows))
		ctl_reply_error(token, 404, "not_found", "no subscription has that id", NULL);
	else {
		ctl_reply(token, 204, NULL, NULL, 0);
		refresh_soon();
	}
	json_decref(rows);
}

static void on_delete(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	long long id = path_id(ctl_req_path(rq), "");
	if (!id) {
		ctl_reply_error(token, 404, "not_found", "no subscription has that id", NULL);
		return;
	}
	char sid[24];
	snprintf(sid, sizeof(sid), "%lld", id);
	const char *p[] = {sid};
	int rc = db_query("DELETE FROM event_subscriptions WHERE id = $1::bigint RETURNING id", p,
	                  1, on_deleted, (void *)(uintptr_t)token);
	if (rc)
		reply_db_error(token, rc);
}

static void on_test_row(void *arg, int rc, json_t *rows)
{
	uint64_t token = (uint64_t)(uintptr_t)arg;
	json_t *row = json_array_get(rows, 0);
	if (rc) {
		reply_db_error(token, rc);
	} else if (!row) {
		ctl_reply_error(token, 404, "not_found", "no subscription has that id", NULL);
	} else {
		struct sub *s = mem_zalloc(sizeof(*s));
		if (s) {
			s->id = (long long)json_integer_value(json_object_get(row, "id"));
			s->url = mem_strdup(json_string_value(json_object_get(row, "url")));
			s->secret = mem_strdup(json_string_value(json_object_get(row, "secret")));
			s->mask = TYPE_PING;
		}
		char id[48] = "";
		int e = !s || !s->url || !s->secret ? -ENOMEM : 0;
		if (e && s) {
			subs_free(s, 1);
		} else if (!e) {
			char sid[24];
			snprintf(sid, sizeof(sid), "%lld", s->id);
			e = emit("ping", json_pack("{s:s}", "subscription_id", sid), s, id);
		}
		if (e == -EAGAIN)
			ctl_reply_error(token, 503, "busy", "the notification queue is full", NULL);
		else if (e)
			ctl_reply_error(token, 500, "internal", strerror(-e), NULL);
		else
			reply_json(token, 202, json_pack("{s:s, s:s}", "id", id, "type", "ping"));
	}
	json_decref(rows);
}

static void on_test(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	long long id = path_id(ctl_req_path(rq), "/test");
	if (!id) {
		ctl_reply_error(token, 404, "not_found", "no subscription has that id", NULL);
		return;
	}
	char sid[24];
	snprintf(sid, sizeof(sid), "%lld", id);
	const char *p[] = {sid};
	int rc = db_query("SELECT id, url, secret FROM event_subscriptions WHERE id = $1::bigint"
	                  " AND active",
	                  p, 1, on_test_row, (void *)(uintptr_t)token);
	if (rc)
		reply_db_error(token, rc);
}

static void collect(void *arg)
{
	(void)arg;
	metric_set(nf.m_depth, (int64_t)atomic_load(&nf.pending));
}

int notify_init(const struct notify_config *cfg)
{
	nf.cfg = *cfg;
	if (!nf.cfg.attempts)
		nf.cfg.attempts = 5;
	if (!nf.cfg.backoff_ms)
		nf.cfg.backoff_ms = 1000;
	if (nf.cfg.backoff_max_ms < nf.cfg.backoff_ms)
		nf.cfg.backoff_max_ms = nf.cfg.backoff_ms;
	if (!nf.cfg.queue_len)
		nf.cfg.queue_len = 4096;
	if (!nf.cfg.refresh_ms)
		nf.cfg.refresh_ms = 5000;
	nf.rl = (struct log_ratelimit){0};
	nf.m_ok = metric_get(METRIC_COUNTER, "vacs_notify_deliveries_total{result=\"ok\"}",
	                     "Event deliveries by result");
	nf.m_failed = metric_get(METRIC_COUNTER, "vacs_notify_deliveries_total{result=\"failed\"}",
	                         "Event deliveries by result");
	nf.m_gone = metric_get(METRIC_COUNTER, "vacs_notify_deliveries_total{result=\"gone\"}",
	                       "Event deliveries by result");
	nf.m_dropped = metric_get(METRIC_COUNTER, "vacs_notify_dropped_total",
	                          "Event deliveries dropped: queue full or out of memory");
	nf.m_retries = metric_get(METRIC_COUNTER, "vacs_notify_retries_total",
	                          "Event delivery attempts that failed and were retried");
	nf.m_dead = metric_get(METRIC_COUNTER, "vacs_notify_dead_letters_total",
	                       "Event deliveries given up (dead_letters rows)");
	nf.m_depth = metric_get(METRIC_GAUGE, "vacs_notify_queue_depth",
	                        "Events and deliveries pending (in flight or waiting to retry)");
	nf.m_subs = metric_get(METRIC_GAUGE, "vacs_notify_subscriptions",
	                       "Active event subscriptions cached");
	if (!nf.m_ok || !nf.m_failed || !nf.m_gone || !nf.m_dropped || !nf.m_retries ||
	    !nf.m_dead || !nf.m_depth || !nf.m_subs)
		return -ENOMEM;
	metric_on_collect(collect, NULL);
	int rc = ctl_out_tick(subs_refresh, NULL, nf.cfg.refresh_ms);
	const unsigned adm = CTL_SCOPE_ADMIN;
	if (!rc)
		rc = ctl_route_add("POST", "/v1/subscriptions", adm | CTL_IDEMPOTENT, BODY_MAX,
		                   10000, on_create, NULL);
	if (!rc)
		rc = ctl_route_add("GET", "/v1/subscriptions", adm, 0, 10000, on_list, NULL);
	if (!rc)
		rc = ctl_route_add("DELETE", "/v1/subscriptions/", adm, 0, 10000, on_delete, NULL);
	if (!rc)
		rc = ctl_route_add("POST", "/v1/subscriptions/", adm, 1024, 10000, on_test, NULL);
	if (rc)
		return rc;
	nf.inited = 1;
	return 0;
}

void notify_close(void)
{
	nf.inited = 0;
	while (nf.lanes) { /* empty after ctl_out_close: each queue was drained */
		struct lane *l = nf.lanes;
		nf.lanes = l->next;
		mem_free(l);
	}
	subs_free(nf.subs, nf.n_subs);
	nf.subs = NULL;
	nf.n_subs = 0;
}
