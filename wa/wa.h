/* WhatsApp lead ingest: Meta's webhook (/webhooks/whatsapp), discovery per lead, replies
 * through the Graph API, and the hand-off of qualified leads to the dialer (call_jobs). */
#ifndef VACS_WA_WA_H
#define VACS_WA_WA_H

#include <stdint.h>

struct wa_config {
	const char *app_secret;       /* X-Hub-Signature-256 key; NULL or "" = module off */
	const char *verify_token;     /* GET hub.verify_token; NULL or "" = GET answers 403 */
	const char *access_token;     /* Graph API bearer; NULL or "" = nothing is sent */
	const char *graph_url;        /* "https://graph.facebook.com/v25.0" (no trailing /) */
	const char *phone_number_id;  /* the number we send from */
	const char *rules_file;       /* discovery rules (JSON, docs/whatsapp.md) */
	const char *campaign_id;      /* call_jobs.campaign_id of qualified leads ("" = none) */
	const char *template_name;    /* sent when the 24 h window is closed ("" = none) */
	const char *template_lang_es; /* its language code per conversation language */
	const char *template_lang_en;
	unsigned max_age_s;        /* inbound messages older than this get no reply */
	unsigned pair_interval_ms; /* one message per user per this (Meta: 6000) */
	unsigned rate_per_s;       /* messages per second from the number (Meta: 80) */
	unsigned send_timeout_ms;  /* one Graph API request */
	unsigned poll_ms;          /* inbox poll when nothing woke the worker */
	unsigned hours_start_min;  /* calling hours, minutes after local midnight */
	unsigned hours_end_min;
	int utc_offset_min; /* local time of the calling hours = UTC + this */
	/* Optional LLM engine (OpenAI-compatible chat completions); url "" = rules only. */
	const char *llm_url;
	const char *llm_key;
	const char *llm_model;
	unsigned llm_timeout_ms;
	/* Inbound media (wa/media.c): fetched into <spool_dir>/wa-media/ up to this size;
	 * 0 = not fetched (the media id stays on the message). */
	unsigned media_max_bytes;
	const char *spool_dir;
	/* Processed whatsapp_inbox rows older than this are deleted (0 = kept forever). */
	unsigned inbox_retention_days;
	/* Follow-up after a call to a WhatsApp lead, per outcome (enum wa_outcome): the text
	 * (inside the 24 h window; "{name}", "{summary}" filled in) and/or the approved
	 * template (outside it). Both NULL or "" = no follow-up for that outcome. */
	struct wa_followup {
		const char *text;
		const char *template_name;
	} followup[4];
};

/* The outcome of a call, for its follow-up. */
enum wa_outcome {
	WA_OUT_ANSWERED = 0, /* answered, the AI only */
	WA_OUT_TRANSFERRED,  /* a warm transfer bridged the lead to an agent */
	WA_OUT_NO_ANSWER,    /* no answer, busy or failed */
	WA_OUT_MACHINE,      /* answered by a machine (AMD) */
};

/* Registers the webhook routes and loads the rules; starts the worker thread. Main
 * thread, after db_init and before ctl_init. Without an app secret returns 0 and the
 * module stays off (no route). 0, -EINVAL (bad rules file: logged), -ENOMEM, -errno. */
int wa_init(const struct wa_config *cfg);
/* Stops the worker (messages still queued for sending are dropped and counted). Main
 * thread, after ctl_close and before db_close. Safe when wa_init failed or was off. */
void wa_close(void);

/* The discovery result of a qualified lead, handed to the dialer. */
struct wa_lead_job {
	const char *lead_id;
	const char *number;    /* E.164 with '+' */
	int64_t not_before_s;  /* Unix seconds: when the call may start */
	const char *variables; /* JSON object: the discovery result (variableValues) */
	const char *idempotency_key;
};

/* The single hand-off point from WhatsApp to the dialer: writes a call_jobs row
 * (status 'queued', the schema's initial state) and emits lead.qualified. Worker thread
 * (it waits for PostgreSQL). 0, -EEXIST (that job already exists), -EPERM (the number is
 * in do_not_call: no job), or -errno. */
int wa_lead_qualified(const struct wa_lead_job *job);

#endif
