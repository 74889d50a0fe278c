/* Sending through the Graph API on the worker thread: one FIFO queue paced at
 * whatsapp.rate_per_s for the number and one message per pair_interval per user, the
 * 24 h window (template outside it), and the error table of reference whatsapp.md §5. */
#include "wa/wa_int.h"

#include "core/clock.h"
#include "core/mem.h"
#include "core/metric.h"
#include "core/strbuf.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOD "wa"

#define MAX_ATTEMPTS   6u
#define USERS          1024u /* pacing slots: users with a recent message */
#define ANSWER_MAX     (64u * 1024u)
#define BACKOFF_MAX_MS 60000u

enum out_kind { OUT_TEXT = 1, OUT_INTERACTIVE, OUT_TEMPLATE, OUT_READ };

/* One queued request; owned by the queue. */
struct out_msg {
	struct out_msg *next;
	enum out_kind kind;
	char lead[64];
	char to[64];
	char lang[3];
	json_t *obj;    /* text: {"body"}, interactive: the object; read: {"message_id"} */
	char body[256]; /* whatsapp_messages.body of what we sent */
	uint64_t not_before_us;
	unsigned attempts;
	int64_t window_until_s; /* 0 = no free-form (templates only) */
	int own_tmpl;           /* a follow-up: its template is tmpl ("" = none), never
	                         * whatsapp.template */
	char tmpl[128];
};

struct user_slot {
	char to[64];
	uint64_t next_us;   /* the next message to this user not before */
	unsigned pair_hits; /* consecutive 131056: the wait is 4^hits s */
};

static struct {
	struct out_msg *head, *tail;
	long queued;
	struct user_slot users[USERS];
	double tokens;
	uint64_t refill_us;
	uint64_t paused_until_us; /* 130429 or 190: the whole number waits */
	unsigned rate_backoff_ms;
	CURL *curl;
	char url[512];
	struct log_ratelimit rl;
} s;

static uint64_t now_us(void)
{
	return clock_now_us();
}

static struct user_slot *user(const char *to, uint64_t now)
{
	struct user_slot *free_slot = NULL;
	for (unsigned i = 0; i < USERS; i++) {
		if (strcmp(s.users[i].to, to) == 0)
			return &s.users[i];
		if (!free_slot && (!s.users[i].to[0] || s.users[i].next_us < now))
			free_slot = &s.users[i];
	}
	if (!free_slot)
		free_slot = &s.users[0]; /* more than USERS users waiting: the oldest rule wins */
	memset(free_slot, 0, sizeof(*free_slot));
	snprintf(free_slot->to, sizeof(free_slot->to), "%s", to);
	return free_slot;
}

static void enqueue(struct out_msg *m)
{
	m->next = NULL;
	if (s.tail)
		s.tail->next = m;
	else
		s.head = m;
	s.tail = m;
	s.queued++;
	metric_set(wa_g.m_queue, s.queued);
}

static void unlink_msg(struct out_msg *prev, struct out_msg *m)
{
	if (prev)
		prev->next = m->next;
	else
		s.head = m->next;
	if (s.tail == m)
		s.tail = prev;
	s.queued--;
	metric_set(wa_g.m_queue, s.queued);
}

static void msg_free(struct out_msg *m)
{
	json_decref(m->obj);
	mem_free(m);
}

static struct out_msg *msg_new(enum out_kind kind, const char *lead, const char *to,
                               const char *lang)
{
	struct out_msg *m = mem_zalloc(sizeof(*m));
	if (!m)
		return NULL;
	m->kind = kind;
	snprintf(m->lead, sizeof(m->lead), "%s", lead ? lead : "");
	snprintf(m->to, sizeof(m->to), "%s", to);
	snprintf(m->lang, sizeof(m->lang), "%s", lang && lang[0] ? lang : "es");
	return m;
}

void wa_send_reply(const char *lead, const char *to, const char *lang, const struct wa_reply *r,
                   int64_t window_until_s)
{
	if (!wa_g.cfg.access_token || !wa_g.cfg.access_token[0] || !r->kind)
		return;
	struct out_msg *m = msg_new(r->kind == 1 ? OUT_TEXT : OUT_INTERACTIVE, lead, to, lang);
	if (!m)
		return;
	m->window_until_s = window_until_s;
	snprintf(m->body, sizeof(m->body), "%.255s", r->text);
	if (r->kind == 1) {
		m->obj = json_pack("{s:b, s:s}", "preview_url", 0, "body", r->text);
	} else if (r->kind == 3) {
		json_t *btns = json_array();
		for (int i = 0; btns && i < r->n_opts && i < 3; i++)
			json_array_append_new(btns, json_pack("{s:s, s:{s:s, s:s}}", "type",
			                                      "reply", "reply", "id", r->opt_id[i],
			                                      "title", r->opt_title[i]));
		m->obj = json_pack("{s:s, s:{s:s}, s:{s:o}}", "type", "button", "body", "text",
		                   r->text, "action", "buttons", btns);
	} else {
		json_t *rows = json_array();
		for (int i = 0; rows && i < r->n_opts && i < 4; i++)
			json_array_append_new(rows, json_pack("{s:s, s:s}", "id", r->opt_id[i],
			                                      "title", r->opt_title[i]));
		m->obj = json_pack("{s:s, s:{s:s}, s:{s:s, s:[{s:s, s:o}]}}", "type", "list",
		                   "body", "text", r->text, "action", "button", r->button,
		                   "sections", "title", "Options", "rows", rows);
	}
	if (!m->obj) {
		msg_free(m);
		return;
	}
	enqueue(m);
}

void wa_send_template(const char *lead, const char *to, const char *lang)
{
	char lg[3] = "";
	if (!wa_g.cfg.template_name || !wa_g.cfg.template_name[0]) {
		log_warn(MOD, "lead %s: the 24 h window is closed and whatsapp.template is not set",
		         lead);
		return;
	}
	if (!lang) {
		const char *p[] = {lead};
		json_t *rows = NULL;
		if (wa_sql("SELECT lang FROM whatsapp_conversations WHERE lead_id = $1", p, 1,
		           &rows) == 0) {
			const char *l =
			    json_string_value(json_object_get(json_array_get(rows, 0), "lang"));
			snprintf(lg, sizeof(lg), "%s", l ? l : "");
		}
		json_decref(rows);
		lang = lg;
	}
	struct out_msg *m = msg_new(OUT_TEMPLATE, lead, to, lang);
	if (!m)
		return;
	enqueue(m);
}

/* The template m goes as when it must, NULL = none. */
static const char *tmpl_of(const struct out_msg *m)
{
	const char *t = m->own_tmpl ? m->tmpl : wa_g.cfg.template_name;
	return t && t[0] ? t : NULL;
}

void wa_send_followup(const char *lead, const char *to, const char *lang, const char *text,
                      const char *tmpl, int64_t window_until_s)
{
	if (!wa_g.cfg.access_token || !wa_g.cfg.access_token[0])
		return;
	int free_form = text && text[0] && (int64_t)time(NULL) <= window_until_s;
	struct out_msg *m = msg_new(free_form ? OUT_TEXT : OUT_TEMPLATE, lead, to, lang);
	if (!m)
		return;
	m->own_tmpl = 1;
	snprintf(m->tmpl, sizeof(m->tmpl), "%s", tmpl ? tmpl : "");
	if (free_form) {
		m->window_until_s = window_until_s;
		snprintf(m->body, sizeof(m->body), "%.255s", text);
		m->obj = json_pack("{s:b, s:s}", "preview_url", 0, "body", text);
		if (!m->obj) {
			msg_free(m);
			return;
		}
	}
	enqueue(m);
}

void wa_send_read(const char *to, const char *wamid)
{
	if (!wa_g.cfg.access_token || !wa_g.cfg.access_token[0] || !wamid || !wamid[0])
		return;
	struct out_msg *m = msg_new(OUT_READ, NULL, to, NULL);
	if (!m)
		return;
	m->obj = json_pack("{s:s}", "message_id", wamid);
	if (!m->obj) {
		msg_free(m);
		return;
	}
	enqueue(m);
}

void wa_send_error_metric(int code)
{
	switch (code) {
	case 131047:
		metric_inc(wa_g.m_err_window);
		break;
	case 131026:
		metric_inc(wa_g.m_err_unreach);
		break;
	case 130429:
	case 131056:
	case 4:
	case 80007:
		metric_inc(wa_g.m_err_rate);
		break;
	case 0:
	case 190:
		metric_inc(wa_g.m_err_auth);
		metric_set(wa_g.m_auth_alert, 1);
		break;
	default:
		metric_inc(wa_g.m_err_other);
	}
}

void wa_mark_unreachable(const char *lead, const char *to)
{
	const char *p[] = {lead};
	int rc =
	    wa_sql("INSERT INTO whatsapp_conversations (lead_id, unreachable) VALUES ($1, true)"
	           " ON CONFLICT (lead_id) DO UPDATE SET unreachable = true, updated_at = now()",
	           p, 1, NULL);
	log_warn(MOD, "lead %s is not reachable on WhatsApp (131026)%s", lead,
	         rc < 0 ? "; not stored" : "");
	struct out_msg *prev = NULL, *m = s.head;
	while (m) {
		struct out_msg *next = m->next;
		if (strcmp(m->to, to) == 0) {
			unlink_msg(prev, m);
			msg_free(m);
		} else {
			prev = m;
		}
		m = next;
	}
}

/* ---------------------------------------------------------------- one request */

size_t wa_curl_answer(char *data, size_t size, size_t nmemb, void *arg)
{
	struct wa_answer *a = arg;
	size_t n = size * nmemb;
	if (a->sb->len + n > a->max || str_append(a->sb, data, n) < 0)
		return 0;
	return n;
}

static const char *template_lang(const char *lang)
{
	const char *l =
	    strcmp(lang, "en") == 0 ? wa_g.cfg.template_lang_en : wa_g.cfg.template_lang_es;
	return l && l[0] ? l : strcmp(lang, "en") == 0 ? "en_US" : "es_MX";
}

/* 1 when `to` is a phone-number wa_id (digits only), 0 for a business-scoped user id. */
static int phone_recipient(const char *to)
{
	int digits = to[0] != '\0';
	for (const char *p = to; *p; p++)
		digits &= *p >= '0' && *p <= '9';
	return digits;
}

/* The recipient fields of a send: a phone number goes in `to` with '+' and its country
 * code (reference §5); a business-scoped user id goes in `recipient`, without `to`. The
 * `recipient` field is NOT in the project's reference notes: it comes from a BSP's page
 * on Meta's BSUID changes (docs/whatsapp.md "Business-scoped user ids": unverified). */
static int add_recipient(json_t *req, const char *to)
{
	char buf[72];
	if (!phone_recipient(to))
		return json_object_set_new(req, "recipient", json_string(to));
	snprintf(buf, sizeof(buf), "+%s", to);
	return json_object_set_new(req, "to", json_string(buf));
}

static json_t *request_of(const struct out_msg *m)
{
	json_t *req = NULL;
	switch (m->kind) {
	case OUT_READ:
		return json_pack("{s:s, s:s, s:O}", "messaging_product", "whatsapp", "status",
		                 "read", "message_id", json_object_get(m->obj, "message_id"));
	case OUT_TEMPLATE:
		req = json_pack("{s:s, s:s, s:s, s:{s:s, s:{s:s}}, s:s}", "messaging_product",
		                "whatsapp", "recipient_type", "individual", "type", "template",
		                "template", "name", tmpl_of(m), "language", "code",
		                template_lang(m->lang), "biz_opaque_callback_data", m->lead);
		break;
	case OUT_TEXT:
	case OUT_INTERACTIVE: {
		const char *t = m->kind == OUT_TEXT ? "text" : "interactive";
		req = json_pack("{s:s, s:s, s:s, s:O, s:s}", "messaging_product", "whatsapp",
		                "recipient_type", "individual", "type", t, t, m->obj,
		                "biz_opaque_callback_data", m->lead);
		break;
	}
	}
	if (req && add_recipient(req, m->to) < 0) {
		json_decref(req);
		req = NULL;
	}
	return req;
}

/* POSTs the request; *code = Graph error code (-1 transport, 0 none), *wamid on success. */
static int post(const struct out_msg *m, int *code, char *wamid, size_t wlen)
{
	json_t *req = request_of(m);
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	*code = -1;
	wamid[0] = '\0';
	if (!body)
		return -ENOMEM;
	struct strbuf sb;
	str_init(&sb);
	char auth[1024];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", wa_g.cfg.access_token);
	struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
	struct curl_slist *h2 = hd ? curl_slist_append(hd, auth) : NULL;
	int rc = -ENOMEM;
	if (h2) {
		hd = h2;
		curl_easy_reset(s.curl);
		curl_easy_setopt(s.curl, CURLOPT_URL, s.url);
		curl_easy_setopt(s.curl, CURLOPT_HTTPHEADER, hd);
		curl_easy_setopt(s.curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(s.curl, CURLOPT_TIMEOUT_MS, (long)wa_g.cfg.send_timeout_ms);
		curl_easy_setopt(s.curl, CURLOPT_NOSIGNAL, 1L);
		struct wa_answer ans = {&sb, ANSWER_MAX};
		curl_easy_setopt(s.curl, CURLOPT_WRITEFUNCTION, wa_curl_answer);
		curl_easy_setopt(s.curl, CURLOPT_WRITEDATA, &ans);
		CURLcode cc = curl_easy_perform(s.curl);
		long http = 0;
		curl_easy_getinfo(s.curl, CURLINFO_RESPONSE_CODE, &http);
		rc = cc == CURLE_OK ? 0 : -EIO;
		json_t *a = rc == 0 ? json_loadb(sb.p ? sb.p : "", sb.len, 0, NULL) : NULL;
		const json_t *err = json_object_get(a, "error");
		if (rc == 0 && http / 100 == 2 && !err) {
			*code = 0;
			const char *id = json_string_value(json_object_get(
			    json_array_get(json_object_get(a, "messages"), 0), "id"));
			snprintf(wamid, wlen, "%s", id ? id : "");
		} else if (rc == 0) {
			const json_t *c = json_object_get(err, "code");
			*code = json_is_integer(c) ? (int)json_integer_value(c) : 1;
			rc = -EIO;
			if (log_ratelimit_ok(&s.rl))
				log_warn(MOD, "Graph API %ld for %s: code %d %s", http, m->to,
				         *code,
				         json_string_value(json_object_get(err, "message"))
				             ? json_string_value(json_object_get(err, "message"))
				             : "");
		}
		json_decref(a);
	}
	curl_slist_free_all(hd);
	str_deinit(&sb);
	free(body);
	return rc;
}

static void store_out(const struct out_msg *m, const char *wamid)
{
	static const char sql[] =
	    "INSERT INTO whatsapp_messages (wamid, lead_id, direction, wa_id, type, body, status, "
	    "ts,"
	    " payload) VALUES ($1, nullif($2, ''), 'out', $3, $4, $5, coalesce((SELECT status FROM"
	    " whatsapp_statuses WHERE wamid = $1 ORDER BY wa_status_rank(status) DESC LIMIT 1),"
	    " 'accepted'), now(), $6::jsonb) ON CONFLICT (wamid) DO NOTHING";
	json_t *req = request_of(m);
	char *payload = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	const char *type = m->kind == OUT_TEXT       ? "text"
	                   : m->kind == OUT_TEMPLATE ? "template"
	                                             : "interactive";
	const char *p[] = {wamid,
	                   m->lead,
	                   m->to,
	                   type,
	                   m->kind == OUT_TEMPLATE ? tmpl_of(m) : m->body,
	                   payload ? payload : "{}"};
	int rc = wa_sql(sql, p, 6, NULL);
	if (rc < 0)
		log_warn(MOD, "sent %s not stored: %s", wamid, strerror(-rc));
	free(payload);
}

/* Handles the answer to m. 1 = done (remove it), 0 = keep it queued. */
static int outcome(struct out_msg *m, int rc, int code, const char *wamid, uint64_t now,
                   struct user_slot *u)
{
	if (rc == 0) {
		s.rate_backoff_ms = 0;
		if (m->kind != OUT_READ) {
			u->next_us = now + (uint64_t)wa_g.cfg.pair_interval_ms * 1000u;
			u->pair_hits = 0;
			metric_inc(wa_g.m_out);
			if (wamid[0])
				store_out(m, wamid);
		}
		return 1;
	}
	if (code > 0)
		wa_send_error_metric(code);
	m->attempts++;
	switch (code) {
	case 131047: /* the window is closed: the template instead */
		if (m->kind == OUT_TEXT || m->kind == OUT_INTERACTIVE) {
			m->kind = OUT_TEMPLATE;
			m->window_until_s = 0;
			m->attempts = 0;
			return 0;
		}
		return 1;
	case 131026:
		wa_mark_unreachable(m->lead, m->to); /* frees the user's other messages */
		return 1;
	case 130429:
	case 4:
	case 80007:
		s.rate_backoff_ms = s.rate_backoff_ms ? s.rate_backoff_ms * 2 : 1000;
		if (s.rate_backoff_ms > BACKOFF_MAX_MS)
			s.rate_backoff_ms = BACKOFF_MAX_MS;
		s.paused_until_us = now + (uint64_t)s.rate_backoff_ms * 1000u;
		return m->attempts >= MAX_ATTEMPTS * 2;
	case 131056: { /* pair rate: 4^x s */
		uint64_t wait_s = 1;
		for (unsigned i = 0; i < u->pair_hits && wait_s < 3600; i++)
			wait_s *= 4;
		u->pair_hits++;
		u->next_us = now + wait_s * 1000000u;
		return m->attempts >= MAX_ATTEMPTS * 2;
	}
	case 0:
	case 190:
		log_err(MOD,
		        "Graph API access token rejected (code %d): sending paused for 60 s;"
		        " renew whatsapp.access_token_env",
		        code);
		s.paused_until_us = now + 60000000u;
		return m->attempts >= MAX_ATTEMPTS;
	default:
		m->not_before_us = now + (1000000u << (m->attempts < 6 ? m->attempts : 6));
		if (m->attempts >= MAX_ATTEMPTS)
			log_warn(MOD, "message to %s dropped after %u attempts (code %d)", m->to,
			         m->attempts, code);
		return m->attempts >= MAX_ATTEMPTS;
	}
}

uint64_t wa_send_round(void)
{
	uint64_t now = now_us(), wait_us = 60000000u;
	if (!s.curl || !s.head)
		return 60000;
	if (s.paused_until_us > now)
		return (s.paused_until_us - now) / 1000 + 1;
	double rate = wa_g.cfg.rate_per_s;
	s.tokens += (double)(now - s.refill_us) * rate / 1e6;
	if (s.tokens > rate)
		s.tokens = rate;
	s.refill_us = now;
	struct out_msg *prev = NULL, *m = s.head;
	while (m && !wa_g.stop) {
		struct out_msg *next = m->next;
		struct user_slot *u = user(m->to, now);
		uint64_t due = m->not_before_us;
		if (m->kind != OUT_READ && u->next_us > due)
			due = u->next_us;
		/* A later message to the same user never overtakes an earlier one. */
		int blocked = 0;
		for (struct out_msg *q = s.head; q != m && !blocked; q = q->next)
			blocked =
			    q->kind != OUT_READ && m->kind != OUT_READ && strcmp(q->to, m->to) == 0;
		if (blocked || due > now) {
			if (!blocked && due - now < wait_us)
				wait_us = due - now;
			prev = m;
			m = next;
			continue;
		}
		if (s.tokens < 1) {
			wait_us = (uint64_t)(1e6 / rate) + 1;
			break;
		}
		s.tokens -= 1;
		if ((m->kind == OUT_TEXT || m->kind == OUT_INTERACTIVE) && m->window_until_s &&
		    (int64_t)time(NULL) > m->window_until_s) {
			metric_inc(wa_g.m_err_window);
			m->kind = OUT_TEMPLATE; /* outside the 24 h window: templates only */
		}
		if (m->kind == OUT_TEMPLATE && !tmpl_of(m)) {
			unlink_msg(prev, m);
			msg_free(m);
			m = next;
			continue;
		}
		int code;
		char wamid[256];
		int rc = post(m, &code, wamid, sizeof(wamid));
		now = now_us();
		if (code == 131026) {
			/* wa_mark_unreachable unlinks every message to this user, m included */
			outcome(m, rc, code, wamid, now, u);
			prev = NULL;
			m = s.head;
			continue;
		}
		if (outcome(m, rc, code, wamid, now, u)) {
			unlink_msg(prev, m);
			msg_free(m);
		} else {
			prev = m;
		}
		if (s.paused_until_us > now)
			return (s.paused_until_us - now) / 1000 + 1;
		m = next;
	}
	return wait_us / 1000 + 1;
}

int wa_send_init(void)
{
	if (!wa_g.cfg.access_token || !wa_g.cfg.access_token[0])
		return 0;
	if (snprintf(s.url, sizeof(s.url), "%s/%s/messages", wa_g.cfg.graph_url,
	             wa_g.cfg.phone_number_id) >= (int)sizeof(s.url))
		return -EINVAL;
	s.curl = curl_easy_init();
	if (!s.curl)
		return -ENOMEM;
	s.refill_us = now_us();
	s.tokens = wa_g.cfg.rate_per_s;
	return 0;
}

void wa_send_close(void)
{
	long dropped = 0;
	while (s.head) {
		struct out_msg *m = s.head;
		s.head = m->next;
		msg_free(m);
		dropped++;
	}
	if (dropped)
		log_warn(MOD, "%ld WhatsApp message(s) not sent at shutdown", dropped);
	s.tail = NULL;
	s.queued = 0;
	if (s.curl)
		curl_easy_cleanup(s.curl);
	memset(&s, 0, sizeof(s));
}
