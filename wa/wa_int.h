/* Private interfaces of wa/: the webhook parser, the signature, the discovery engines. */
#ifndef VACS_WA_WA_INT_H
#define VACS_WA_WA_INT_H

#include <stddef.h>
#include <stdint.h>

struct json_t;
struct strbuf;

/* An HTTP answer being collected by wa_curl_answer (libcurl's write callback; its
 * CURLOPT_WRITEDATA is one of these): at most max bytes, more ends the transfer. */
struct wa_answer {
	struct strbuf *sb;
	size_t max;
};
size_t wa_curl_answer(char *data, size_t size, size_t nmemb, void *arg);

#define WA_MAX_BODY (3u * 1024u * 1024u) /* Meta: payloads up to 3 MB */

/* ---- parse.c (pure: any thread) ---- */

/* Checks `header` ("sha256=<64 hex>", any hex case) against HMAC-SHA256(secret, body)
 * over the raw bytes, in constant time. 0 match, -ENOENT header missing or malformed,
 * -EACCES wrong signature, -EINVAL no secret. */
int wa_sig_check(const char *secret, const char *body, size_t len, const char *header);
/* Lowercase hex SHA-256 of the bytes into out[65]. */
void wa_sha256_hex(const void *data, size_t len, char out[65]);

/* Spreads a webhook envelope into the flat lists the store statement takes:
 * {"messages":[{wamid, from, user_id, name, type, body, reply_id, ts, payload, referral}],
 *  "statuses":[{id, status, ts, recipient_id, error_code, payload}],
 *  "events":[{kind, wa_id, payload}], "prefs":[{wa_id, value}]}.
 * Updates without their required fields are kept as events of kind "invalid".
 * *out (new reference) is set on success. 0, or -EINVAL with why (not an envelope). */
int wa_parse(const struct json_t *root, struct json_t **out, char *why, size_t whylen);

/* ---- rules.c (discovery; pure: any thread) ---- */

struct wa_rules; /* the loaded rules file, read-only once loaded */

/* Loads and checks a rules file. 0, or -EINVAL/-errno with why. */
int wa_rules_load(const char *path, struct wa_rules **out, char *why, size_t whylen);
void wa_rules_destroy(struct wa_rules *r);

/* What one message says, by either engine. Strings are "" when not said. */
struct wa_extract {
	char lang[3];        /* detected language ("" = no clue) */
	char switch_lang[3]; /* an explicit request to change language */
	int withdraw;        /* "no me llamen", "stop" */
	char consent[16];    /* call_now, call_later, call_tomorrow, no_calls */
	char destination[64];
	char dates[64];
	char phone[20]; /* E.164 with '+' */
	int party;      /* 0 = not said */
};

/* The rules engine: what `text` (or the button/list reply id) says, knowing which
 * question was asked last (`asking`: the conversation state). */
void wa_rules_extract(const struct wa_rules *r, const char *text, const char *reply_id,
                      const char *asking, struct wa_extract *x);

/* The optional LLM engine (llm.c): the same extraction through an OpenAI-compatible
 * chat-completions endpoint. 0, or -errno (timeout, HTTP error, invalid JSON): the
 * caller falls back to the rules. Blocking: the worker thread only. */
struct wa_llm {
	const char *url, *key, *model;
	unsigned timeout_ms;
};
int wa_llm_extract(const struct wa_llm *llm, const char *text, const char *asking,
                   struct wa_extract *x);
/* Fills x from the model's JSON answer (exposed for the unit test). 0 or -EINVAL. */
int wa_llm_parse(const char *content, struct wa_extract *x);

struct wa_hours {
	unsigned start_min, end_min; /* local minutes after midnight */
	int utc_offset_min;
};

/* One reply of the conversation. */
struct wa_reply {
	int kind; /* 0 none, 1 text, 2 list (the four call options), 3 reply buttons */
	char text[1024];
	char button[24]; /* list: the button label */
	int n_opts;      /* list: 4; buttons: 1 to 3 */
	char opt_id[4][16];
	char opt_title[4][32];
};

/* One step of the conversation. */
struct wa_step {
	char state[16]; /* new state: new, destination, dates, party, consent, phone,
	                 * qualified, declined, withdrawn */
	struct wa_reply reply;
	int qualify;    /* hand the lead to the dialer */
	int64_t due_s;  /* qualify: when the call may start */
	int withdraw;   /* cancel pending jobs, mark the lead */
	char phone[20]; /* a phone number learnt in this step ("" = none) */
};

/* Advances a conversation: `result` (the discovery result object, updated in place)
 * and `state` with what `x` says; `text` is the exact wording (kept with a consent);
 * `phone` the lead's known number ("" = none); `name` the profile name ("" = none).
 * 0, or -ENOMEM. */
int wa_disc_step(const struct wa_rules *r, struct json_t *result, const char *state,
                 const struct wa_extract *x, const char *text, const char *phone, const char *name,
                 int64_t now_s, const struct wa_hours *h, const char *engine, struct wa_step *out);

/* The first moment >= t inside the calling hours. */
int64_t wa_hours_next(const struct wa_hours *h, int64_t t);

#endif

/* ---- shared state of wa.c, disc.c, send.c (the worker thread unless noted) ---- */

#include "core/log.h"
#include "wa/wa.h"

#include <pthread.h>
#include <stdatomic.h>

struct metric;

extern struct wa_g {
	struct wa_config cfg; /* copied by wa_init; strings owned by the caller (conf) */
	struct wa_rules *rules;
	pthread_t thread;
	pthread_mutex_t mu; /* guards kicked; with cv wakes the worker */
	pthread_cond_t cv;
	int kicked;
	atomic_int stop;
	int on;
	struct log_ratelimit rl_sig; /* http thread */
	struct metric *m_accepted, *m_sig_bad, *m_sig_missing, *m_dead, *m_unavailable,
	    *m_verify_bad, *m_in, *m_out, *m_stale, *m_jobs, *m_llm_fallback, *m_queue,
	    *m_auth_alert, *m_err_window, *m_err_unreach, *m_err_rate, *m_err_auth, *m_err_other;
} wa_g;

/* Runs one statement and waits for its rows (*rows owned by the caller; NULL = drop
 * them). Worker thread. 0 or db_query's / db_rows_cb's -errno. */
int wa_sql(const char *sql, const char *const *params, int n, struct json_t **rows);
/* Wakes the worker (new inbox rows). Any thread. */
void wa_wake(void);

/* disc.c: discovery for one new inbound message (an element of new_messages). */
void wa_on_message(const struct json_t *m);

/* send.c */
int wa_send_init(void);
void wa_send_close(void); /* drops what is queued (counted) */
/* Sends what is due; returns the ms until something may be due again. */
uint64_t wa_send_round(void);
/* Queues a reply of the conversation for `to` (a wa_id or user id) in language lang; the
 * 24 h window of the lead closes at window_until_s (Unix s). */
void wa_send_reply(const char *lead, const char *to, const char *lang, const struct wa_reply *r,
                   int64_t window_until_s);
/* Queues the configured template (lang NULL = the lead's language from the store). */
void wa_send_template(const char *lead, const char *to, const char *lang);
/* Queues a mark-as-read of wamid. */
void wa_send_read(const char *to, const char *wamid);
/* 131026: the lead has no WhatsApp; its queued messages are dropped. */
void wa_mark_unreachable(const char *lead, const char *to);
void wa_send_error_metric(int code);

/* media.c: inbound media fetched from the Graph API (docs/whatsapp.md "Media"). */
int wa_media_init(void); /* 0 also when off (media_max_bytes 0, no token, no spool) */
void wa_media_close(void);
int wa_media_on(void);
/* A new inbound message of this type was stored: look for its media on the next round
 * (without one, pending media are looked for every 10 s). Worker thread. */
void wa_media_kick(const char *type);
/* Fetches a few pending media (blocking HTTP). Worker thread. */
void wa_media_round(void);
/* The 32-byte digest a sha256 string names: 64 hex digits (any case) or standard base64
 * with its '=' (Meta's webhooks show base64). 0, or -EINVAL. Any thread. */
int wa_media_digest(const char *s, unsigned char out[32]);
/* The file extension for a MIME type (parameters ignored), ".bin" when unknown. */
const char *wa_media_ext(const char *mime);

/* followup.c: the follow-up after a call (wa/wa.h struct wa_followup). */
/* The outcome of a call record (cdr.jsonl form): a bridged warm transfer or a completed
 * REFER = transferred; answered with the AMD verdict machine = machine; answered =
 * answered; else no_answer (busy, no answer, failed). Any thread. */
int wa_followup_outcome(const struct json_t *cdr);
const char *wa_outcome_name(int outcome);
/* Fills "{name}" (the first name) and "{summary}" into tpl. 0, or -ENOSPC (cut to len). */
int wa_followup_render(const char *tpl, const char *name, const char *summary, char *out,
                       size_t len);
/* Watches call ends when a follow-up is configured. Main thread, before b2b_init. */
int wa_followup_init(void);
void wa_followup_close(void);
/* Handles the calls that ended. Worker thread. */
void wa_followup_round(void);
/* Queues a follow-up: text inside the window, else the template tmpl (NULL or "" = none:
 * nothing is sent outside the window). */
void wa_send_followup(const char *lead, const char *to, const char *lang, const char *text,
                      const char *tmpl, int64_t window_until_s);
