/* The follow-up after a call to a WhatsApp lead: the call's end (a b2bua life observer on
 * the sip thread) is posted to the worker, which sends the message configured for the
 * outcome through the paced sender, at most once per call and never to a lead who
 * withdrew or opted out. */
#include "wa/wa_int.h"

#include "b2bua/b2bua.h"
#include "core/metric.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "wa"

#define ENDINGS_MAX 256u /* calls ended and not yet handled by the worker */
#define SUMMARY_MAX 512u

/* One ended call, copied from the life event (the event's pointers die with the call). */
struct ending {
	char call_id[64];
	char lead[64];
	int outcome;
	char summary[SUMMARY_MAX];
};

static struct {
	pthread_mutex_t mu; /* guards q, head, n */
	struct ending q[ENDINGS_MAX];
	unsigned head, n;
	atomic_int on; /* 0 after wa_followup_close: the observer returns at once */
	struct log_ratelimit rl;
	struct metric *m_sent, *m_barred, *m_dup, *m_lost;
} f = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *const outcome_names[] = {
    [WA_OUT_ANSWERED] = "answered",
    [WA_OUT_TRANSFERRED] = "transferred",
    [WA_OUT_NO_ANSWER] = "no_answer",
    [WA_OUT_MACHINE] = "machine",
};

const char *wa_outcome_name(int o)
{
	return o >= 0 && o < 4 ? outcome_names[o] : "?";
}

int wa_followup_outcome(const json_t *cdr)
{
	const json_t *xf = json_object_get(cdr, "transfer");
	const char *xr = json_string_value(json_object_get(xf, "result"));
	if (xr && strcmp(xr, "bridged") == 0)
		return WA_OUT_TRANSFERRED;
	size_t i;
	const json_t *r;
	json_array_foreach(json_object_get(cdr, "refers"), i, r)
	{
		const char *res = json_string_value(json_object_get(r, "result"));
		if (res && strcmp(res, "transferred") == 0)
			return WA_OUT_TRANSFERRED;
	}
	if (!json_is_string(json_object_get(cdr, "answer")))
		return WA_OUT_NO_ANSWER;
	const char *v = json_string_value(json_object_get(json_object_get(cdr, "amd"), "verdict"));
	return v && strcmp(v, "machine") == 0 ? WA_OUT_MACHINE : WA_OUT_ANSWERED;
}

int wa_followup_render(const char *tpl, const char *name, const char *summary, char *out,
                       size_t len)
{
	size_t o = 0;
	int cut = 0;
	char first[64] = "";
	if (name) { /* the first name: what a person would write */
		size_t n = strcspn(name, " ");
		snprintf(first, sizeof(first), "%.*s", (int)(n < 63 ? n : 63), name);
	}
	if (!len)
		return -ENOSPC;
	for (const char *p = tpl; *p && !cut;) {
		const char *put = NULL;
		size_t skip = 1, n = 1;
		if (strncmp(p, "{name}", 6) == 0) {
			put = first;
			skip = 6;
		} else if (strncmp(p, "{summary}", 9) == 0) {
			put = summary ? summary : "";
			skip = 9;
		} else {
			put = p;
		}
		if (put != p)
			n = strlen(put);
		if (o + n >= len) {
			n = len - 1 - o;
			cut = 1;
		}
		memcpy(out + o, put, n);
		o += n;
		p += skip;
	}
	out[o] = '\0';
	return cut ? -ENOSPC : 0;
}

/* Runs on the sip thread: copy and post, nothing else. */
static void on_life(void *arg, const struct b2b_life_ev *ev)
{
	(void)arg;
	if (!atomic_load(&f.on) || ev->what != B2B_LIFE_ENDED || !ev->lead_id || !ev->lead_id[0] ||
	    strcmp(ev->direction, "outbound") != 0)
		return;
	int o = wa_followup_outcome(ev->cdr);
	const struct wa_followup *fu = &wa_g.cfg.followup[o];
	if (!(fu->text && fu->text[0]) && !(fu->template_name && fu->template_name[0]))
		return;
	const json_t *ai = json_object_get(ev->cdr, "ai");
	const char *sum = json_string_value(json_object_get(ai, "summary"));
	if (!sum)
		sum = json_string_value(
		    json_object_get(json_object_get(ev->cdr, "transfer"), "summary"));
	pthread_mutex_lock(&f.mu);
	int full = f.n == ENDINGS_MAX;
	if (!full) {
		struct ending *e = &f.q[(f.head + f.n) % ENDINGS_MAX];
		snprintf(e->call_id, sizeof(e->call_id), "%s", ev->call_id);
		snprintf(e->lead, sizeof(e->lead), "%s", ev->lead_id);
		snprintf(e->summary, sizeof(e->summary), "%s", sum ? sum : "");
		e->outcome = o;
		f.n++;
	}
	pthread_mutex_unlock(&f.mu);
	if (full) {
		metric_inc(f.m_lost);
		if (log_ratelimit_ok(&f.rl))
			log_err(MOD, "follow-up queue full: no follow-up for call %s", ev->call_id);
		return;
	}
	wa_wake();
}

/* Claims the follow-up of a call: the row in whatsapp_followups is written only for a
 * lead that may get it, and only once per call (the primary key). */
static const char CLAIM_SQL[] =
    "WITH l AS (SELECT l.id, l.wa_id, coalesce(l.name, '') AS name,"
    " coalesce(c.lang, '') AS lang,"
    " coalesce(extract(epoch FROM c.last_inbound_at)::bigint, 0) AS last_in,"
    " (l.do_not_call OR l.status = 'withdrawn' OR coalesce(c.state IN ('withdrawn',"
    " 'declined'), false) OR coalesce(c.marketing_opt_out, false) OR coalesce(c.unreachable,"
    " false) OR EXISTS (SELECT 1 FROM do_not_call d WHERE d.phone_e164 = l.phone_e164))"
    " AS barred FROM leads l LEFT JOIN whatsapp_conversations c ON c.lead_id = l.id"
    " WHERE l.id = $1 AND l.wa_id IS NOT NULL),"
    " f AS (INSERT INTO whatsapp_followups (call_id, lead_id, outcome)"
    " SELECT $2, id, $3 FROM l WHERE NOT barred ON CONFLICT (call_id) DO NOTHING"
    " RETURNING call_id)"
    " SELECT wa_id, name, lang, last_in, barred, (SELECT count(*) FROM f) AS fresh FROM l";

/* 0 done (sent, or nothing to send), or -errno to try again later. */
static int followup_one(const struct ending *e)
{
	const char *p[] = {e->lead, e->call_id, wa_outcome_name(e->outcome)};
	json_t *rows = NULL;
	int rc = wa_sql(CLAIM_SQL, p, 3, &rows);
	if (rc < 0)
		return rc;
	const json_t *r = json_array_get(rows, 0);
	const char *outn = wa_outcome_name(e->outcome);
	if (!r) {
		log_debug(MOD, "call %s: lead %s is not a WhatsApp lead: no follow-up", e->call_id,
		          e->lead);
	} else if (json_is_true(json_object_get(r, "barred"))) {
		metric_inc(f.m_barred);
		log_info(MOD, "call %s (%s): lead %s withdrew or opted out: no follow-up",
		         e->call_id, outn, e->lead);
	} else if (json_integer_value(json_object_get(r, "fresh")) != 1) {
		metric_inc(f.m_dup);
		log_info(MOD, "call %s: follow-up already sent", e->call_id);
	} else {
		const struct wa_followup *fu = &wa_g.cfg.followup[e->outcome];
		char text[1024] = "";
		if (fu->text && fu->text[0] &&
		    wa_followup_render(fu->text, json_string_value(json_object_get(r, "name")),
		                       e->summary, text, sizeof(text)) < 0)
			log_warn(MOD, "call %s: follow-up text cut to %zu bytes", e->call_id,
			         sizeof(text) - 1);
		json_int_t last = json_integer_value(json_object_get(r, "last_in"));
		wa_send_followup(e->lead, json_string_value(json_object_get(r, "wa_id")),
		                 json_string_value(json_object_get(r, "lang")), text,
		                 fu->template_name, last ? (int64_t)last + 86400 : 0);
		metric_inc(f.m_sent);
		log_info(MOD, "call %s (%s): follow-up queued for lead %s", e->call_id, outn,
		         e->lead);
	}
	json_decref(rows);
	return 0;
}

void wa_followup_round(void)
{
	for (unsigned i = 0; i < ENDINGS_MAX && !wa_g.stop; i++) {
		struct ending e;
		pthread_mutex_lock(&f.mu);
		int any = f.n > 0;
		if (any)
			e = f.q[f.head];
		pthread_mutex_unlock(&f.mu);
		if (!any || followup_one(&e) < 0)
			return; /* PostgreSQL away: the ending stays first in line */
		pthread_mutex_lock(&f.mu);
		f.head = (f.head + 1) % ENDINGS_MAX;
		f.n--;
		pthread_mutex_unlock(&f.mu);
	}
}

int wa_followup_init(void)
{
	int any = 0;
	for (int o = 0; o < 4; o++) {
		const struct wa_followup *fu = &wa_g.cfg.followup[o];
		any |= (fu->text && fu->text[0]) || (fu->template_name && fu->template_name[0]);
	}
	if (!any)
		return 0;
	static const char h[] = "follow-ups after a call to a WhatsApp lead, by result";
	f.m_sent = metric_get(METRIC_COUNTER, "vacs_wa_followups_total{result=\"queued\"}", h);
	f.m_barred = metric_get(METRIC_COUNTER, "vacs_wa_followups_total{result=\"opted_out\"}", h);
	f.m_dup = metric_get(METRIC_COUNTER, "vacs_wa_followups_total{result=\"duplicate\"}", h);
	f.m_lost = metric_get(METRIC_COUNTER, "vacs_wa_followups_total{result=\"lost\"}", h);
	static int watching; /* observers cannot be removed: register once per process */
	if (!watching) {
		int rc = b2b_life_watch(on_life, NULL);
		if (rc < 0)
			return rc;
		watching = 1;
	}
	atomic_store(&f.on, 1);
	return 0;
}

void wa_followup_close(void)
{
	atomic_store(&f.on, 0);
	pthread_mutex_lock(&f.mu);
	f.head = f.n = 0;
	pthread_mutex_unlock(&f.mu);
}
