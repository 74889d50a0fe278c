/* The campaign dialer thread: leads -> jobs (PostgreSQL rows + a Redis stream), jobs ->
 * calls (b2b_originate_post), call ends -> outcomes, retries and lead status. */
#include "dialer/dialer.h"
#include "dialer/dialer_int.h"

#include "b2bua/b2bua.h"
#include "conf/conf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mbox.h"
#include "core/mem.h"
#include "core/metric.h"
#include "db/db.h"
#include "db/redis.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Threads: dialer_init/close on the main thread; everything else on the dialer thread,
 * which owns the Redis connection and waits for its PostgreSQL answers (db_query, whose
 * callback wakes it). The sip thread reaches it only through its mailbox: the originate
 * result (b2b_originate_post's callback) and the end of each call it placed (the call-life
 * observer, with the outcome already read from the CDR).
 *
 * Exactly once: a job's PostgreSQL row goes from 'queued' to 'dialing' in one conditional
 * UPDATE before the call is placed; a duplicate stream entry (a resync after Redis came
 * back, a reclaim) finds the row no longer queued and is dropped. Each attempt is its own
 * row (idempotency_key "lead:<lead id>:<attempt>"), so a retry is inserted at most once.
 */

#define STREAM         "jobs:dial"
#define GROUP          "dialer"
#define RETRY_ZSET     "jobs:dial:retry"
#define SLOT_GLOBAL    "vapi"
#define CAMP_MAX       64u
#define ACTIVE_MAX     512u
#define CLAIM_BATCH    16u
#define CLAIM_SEEN_MAX 256u /* entries looked at per tick (put-off ones included) */
#define ID_LEN         64u
#define MARK_TTL_S     (9u * 86400u) /* longer than any wait in Redis (hours: 8 days) */

enum msg_kind { MSG_STOP = 1, MSG_ORIG, MSG_ENDED };

struct dmsg {
	enum msg_kind kind;
	int status;       /* MSG_ORIG: 0 placed, else the refusal's HTTP-like code */
	unsigned idx;     /* MSG_ORIG: the active[] slot */
	int outcome;      /* MSG_ENDED */
	char ref[ID_LEN]; /* MSG_ENDED: the job id */
	char call_id[48];
};

struct camp {
	char id[ID_LEN];
	unsigned max_concurrent;
	double cps;
	const struct dialer_zone *zone; /* campaign's timezone, NULL = UTC */
	struct dialer_window win[DIALER_WINDOWS_MAX];
	size_t n_win;
	int hours_bad; /* calling_hours unreadable: never call */
	struct dialer_retry retry[DIALER_OUTCOME__COUNT];
	char caller_id[40], assistant[96];
	enum b2b_amd_action amd; /* amd_action: on a machine, hang up, message or AI */
	char amd_prompt[256];    /* amd_prompt: the WAV for "message" */
	unsigned gen;            /* refresh generation that last saw it running */
	unsigned active;
	struct metric *m_active;
};

enum act_state { ACT_FREE = 0, ACT_POSTED, ACT_LIVE, ACT_ENDED };

struct active {
	enum act_state state;
	char job[ID_LEN], camp[ID_LEN], lead[ID_LEN], number[40], call_id[48];
	unsigned attempt;
	int placed; /* the originate was accepted (else the job failed before any call) */
	int local;  /* placed by this node in this life (else recovered from a gone node) */
	enum dialer_outcome outcome;
	struct dialer_retry retry[DIALER_OUTCOME__COUNT];
};

static struct {
	struct dialer_config c;
	char node[128], prefix[64], url[512];
	struct db_redis *r;
	struct mbox *mb;
	pthread_t th;
	int started;
	atomic_int closed;
	int paused;   /* 1 while a store is down (or before the first sync) */
	unsigned gen; /* campaign refresh generation */
	struct camp camps[CAMP_MAX];
	struct active act[ACTIVE_MAX];
	uint64_t last_sec_ms, last_sweep_ms, last_beat_ms, resumed_ms;
	int recovered_self;      /* this node's 'dialing' jobs of a previous life were finished */
	struct log_ratelimit rl; /* the dialer thread's */
	struct log_ratelimit rl_sip; /* the observers' (sip thread) */
	struct metric *m_paused, *m_depth, *m_jobs[DIALER_OUTCOME__COUNT], *m_dnc, *m_dup, *m_retry,
	    *m_def_hours, *m_def_cap, *m_def_rate, *m_refused;
} d;

static uint64_t now_ms(void)
{
	return d.c.now_ms ? d.c.now_ms() : clock_wall_ms();
}

/* ---- PostgreSQL, waited for (the dialer thread only) ---- */

/* Runs sql; *rows (may be NULL: then dropped) gets the array. 0 or -errno. */
static int q(const char *sql, const char *const *p, int n, json_t **rows)
{
	int rc = db_query_wait(sql, p, n, rows, 10000);
	if (rc && rc != -ENOTCONN && log_ratelimit_ok(&d.rl))
		log_warn("dialer", "query failed: %s", strerror(-rc));
	return rc;
}

/* ---- small helpers ---- */

static const char *jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static long long jint(const json_t *o, const char *k, long long def)
{
	const json_t *v = json_object_get(o, k);
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v))
		return (long long)json_real_value(v);
	if (json_is_string(v))
		return atoll(json_string_value(v));
	return def;
}

static void copy(char *out, size_t len, const char *s)
{
	snprintf(out, len, "%s", s ? s : "");
}

/* What the dialer is doing, for /readyz (dialer_ready_line, read on the http thread). */
enum { DS_OFF, DS_STARTING, DS_RUNNING, DS_REDIS_DOWN, DS_PG_DOWN };
static atomic_int d_state;

static int redis_ok(int rc)
{
	if (rc == -ENOTCONN && !d.paused) {
		log_warn("dialer", "Redis is down: the dialer pauses (calls in progress go on)");
		atomic_store(&d_state, DS_REDIS_DOWN);
		d.paused = 1;
		metric_set(d.m_paused, 1);
	}
	return rc >= 0;
}

static struct camp *camp_find(const char *id)
{
	for (unsigned i = 0; i < CAMP_MAX; i++) {
		if (d.camps[i].id[0] && strcmp(d.camps[i].id, id) == 0)
			return &d.camps[i];
	}
	return NULL;
}

/* A scheduled call (no campaign) is attempted once. */
static void no_retry(struct dialer_retry r[DIALER_OUTCOME__COUNT])
{
	for (unsigned o = 0; o < DIALER_OUTCOME__COUNT; o++)
		r[o] = (struct dialer_retry){.max_attempts = 1, .backoff_s = 0};
}

static void slot_name(char *out, size_t len, const char *camp)
{
	snprintf(out, len, "camp:%s", camp);
}

/* The job's stream payload; the same job always gives the same text (the retry zset
 * keys members by it). */
static char *payload(const char *job, const char *camp, const char *lead, const char *number,
                     unsigned attempt)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i}", "job", job, "campaign", camp, "lead",
	                      lead, "number", number, "attempt", (int)attempt);
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	return s;
}

/* Marks a job as present in Redis ("q:<job id>", a dedupe key that lives as long as a job
 * can wait there). 1 when it was not marked, 0 when it was, or -errno. */
static int job_mark(const char *job)
{
	char k[96];
	snprintf(k, sizeof(k), "q:%s", job);
	return db_redis_dedupe(d.r, k, MARK_TTL_S);
}

/* Puts a job row into the stream (due now) or the retry set (due later), then marks it.
 * force = 0: only when it is not marked yet (the sweep: a job whose marker is there is
 * already in Redis). 1 pushed, 0 skipped (marked), or -errno. */
static int job_push(const json_t *row, uint64_t now, int force)
{
	const char *id = jstr(row, "id");
	if (!force) {
		int m = job_mark(id);
		if (m <= 0)
			return m;
	}
	char *p = payload(id, jstr(row, "campaign_id"), jstr(row, "lead_id"), jstr(row, "number"),
	                  (unsigned)jint(row, "attempt", 1));
	if (!p)
		return -ENOMEM;
	uint64_t due = (uint64_t)jint(row, "due_ms", 0);
	int rc = due > now ? db_redis_job_defer(d.r, RETRY_ZSET, p, due)
	                   : db_redis_job_add(d.r, STREAM, p, NULL, 0);
	free(p);
	if (rc >= 0 && force)
		job_mark(id);
	return rc < 0 ? rc : 1;
}

/* Puts the queued jobs of running campaigns and the scheduled calls (camp = NULL: all)
 * back into Redis. force = 1
 * (Redis came back, possibly empty; a campaign seen starting, whose entries were dropped
 * while it was paused): every one, duplicates are harmless (the conditional UPDATE at dial
 * time). force = 0 (the sweep, every sweep_s): at most 2000 rows untouched and due for
 * age_s, and of those only the ones without a marker, i.e. lost between their insert and
 * their enqueue (a node that died in between). */
static void resync(const char *camp, unsigned age_s, int force)
{
	char age[24];
	snprintf(age, sizeof(age), "%u", force ? 0 : age_s);
	const char *p[] = {camp, age};
	json_t *rows;
	int rc =
	    q("UPDATE call_jobs j SET updated_at = now(), enqueued_at = coalesce(enqueued_at,"
	      " now()) WHERE j.id IN (SELECT j2.id FROM"
	      " call_jobs j2 LEFT JOIN campaigns c ON c.id = j2.campaign_id"
	      " WHERE (j2.campaign_id IS NULL OR c.status = 'running') AND j2.status = 'queued'"
	      " AND ($1::text IS NULL OR j2.campaign_id = $1)"
	      " AND ($2::int = 0 OR (j2.updated_at < now() - make_interval(secs => $2::int)"
	      "  AND coalesce(j2.not_before, j2.created_at) < now() - make_interval(secs => "
	      "$2::int)))"
	      " ORDER BY j2.updated_at LIMIT CASE WHEN $2::int = 0 THEN NULL ELSE 2000 END)"
	      " RETURNING j.id, j.campaign_id, j.lead_id, j.number, j.attempt,"
	      " (extract(epoch FROM coalesce(j.not_before, now())) * 1000)::bigint AS due_ms",
	      p, 2, &rows);
	if (rc)
		return;
	uint64_t now = now_ms();
	size_t i;
	json_t *row;
	size_t n = 0;
	json_array_foreach(rows, i, row)
	{
		int prc = job_push(row, now, force);
		if (!redis_ok(prc))
			break;
		n += prc == 1;
	}
	if (n)
		log_info("dialer", "%zu queued job(s) put back in Redis%s%s", n,
		         camp ? " for campaign " : "", camp ? camp : "");
	json_decref(rows);
}

/* ---- campaigns ---- */

static void camp_load(struct camp *c, const json_t *o)
{
	copy(c->id, sizeof(c->id), jstr(o, "id"));
	long long mc = jint(o, "max_concurrent", 1);
	c->max_concurrent = mc > 0 && mc < 100000 ? (unsigned)mc : 1;
	const json_t *cps = json_object_get(o, "calls_per_s");
	c->cps = json_is_number(cps)   ? json_number_value(cps)
	         : json_is_string(cps) ? atof(json_string_value(cps))
	                               : 1.0;
	if (c->cps <= 0.0)
		c->cps = 1.0;
	c->zone = dialer_zone_find(jstr(o, "timezone"));
	c->hours_bad =
	    dialer_hours_parse(json_object_get(o, "calling_hours"), c->win, &c->n_win) != 0;
	long long ma = jint(o, "max_attempts", 3);
	dialer_retry_parse(json_object_get(o, "retry_policy"),
	                   ma > 0 && ma < 100 ? (unsigned)ma : 3, c->retry);
	copy(c->caller_id, sizeof(c->caller_id), jstr(o, "caller_id"));
	copy(c->assistant, sizeof(c->assistant), jstr(o, "assistant"));
	const char *amd = jstr(o, "amd_action");
	c->amd = strcmp(amd, "hangup") == 0    ? B2B_AMD_HANGUP
	         : strcmp(amd, "message") == 0 ? B2B_AMD_MESSAGE
	                                       : B2B_AMD_AI;
	copy(c->amd_prompt, sizeof(c->amd_prompt), jstr(o, "amd_prompt"));
}

static struct metric *camp_metric(const char *id)
{
	char name[160], safe[ID_LEN];
	size_t i;
	for (i = 0; id[i] && i < sizeof(safe) - 1; i++)
		safe[i] = id[i] == '"' || id[i] == '\\' || id[i] == '\n' ? '_' : id[i];
	safe[i] = '\0';
	snprintf(name, sizeof(name), "vacs_dialer_calls_in_progress{campaign=\"%s\"}", safe);
	return metric_get(METRIC_GAUGE, name,
	                  "Calls this node's dialer has in progress, by campaign");
}

/* Reads the running campaigns (to_jsonb: columns a later migration adds or drops are
 * optional), enqueues their new leads and reports the queue depth. */
static void camps_refresh(void)
{
	json_t *rows;
	if (q("SELECT to_jsonb(c) AS c FROM campaigns c WHERE c.status = 'running'", NULL, 0,
	      &rows))
		return;
	d.gen++;
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		const json_t *o = json_object_get(row, "c");
		const char *id = jstr(o, "id");
		struct camp *c = camp_find(id);
		int fresh = 0;
		if (!c) {
			for (unsigned k = 0; k < CAMP_MAX && !c; k++) {
				if (!d.camps[k].id[0] ||
				    (d.camps[k].gen != d.gen - 1 && !d.camps[k].active))
					c = &d.camps[k];
			}
			if (!c || strlen(id) >= ID_LEN) {
				if (log_ratelimit_ok(&d.rl))
					log_warn("dialer",
					         "campaign %s not dialed: more than %u running", id,
					         CAMP_MAX);
				continue;
			}
			memset(c, 0, sizeof(*c));
			fresh = 1;
		} else if (c->gen != d.gen - 1) {
			fresh = 1; /* running again after a pause */
		}
		unsigned active = c->active;
		struct metric *m = c->m_active;
		camp_load(c, o);
		c->active = active;
		c->m_active = m ? m : camp_metric(c->id);
		c->gen = d.gen;
		if (fresh) {
			log_info("dialer", "campaign %s running: %u at once, %.2f calls/s%s", c->id,
			         c->max_concurrent, c->cps,
			         c->hours_bad ? ", calling_hours unreadable" : "");
			resync(c->id, 0, 1);
		}
	}
	json_decref(rows);

	/* New leads of each running campaign become attempt-1 jobs, once (unique key). */
	for (unsigned k = 0; k < CAMP_MAX && !d.paused; k++) {
		struct camp *c = &d.camps[k];
		if (!c->id[0] || c->gen != d.gen)
			continue;
		const char *p[] = {c->id};
		if (q("WITH ins AS (INSERT INTO call_jobs (campaign_id, lead_id, number, attempt,"
		      " idempotency_key, enqueued_at) SELECT l.campaign_id, l.id, l.phone_e164, 1,"
		      " 'lead:' || l.id || ':1', now() FROM leads l WHERE l.campaign_id = $1 AND "
		      "l.status = 'new'"
		      " ORDER BY l.created_at, l.id LIMIT 500"
		      " ON CONFLICT (idempotency_key) DO NOTHING"
		      " RETURNING id, campaign_id, lead_id, number, attempt),"
		      " up AS (UPDATE leads SET status = 'queued', updated_at = now()"
		      " WHERE id IN (SELECT lead_id FROM ins))"
		      " SELECT ins.*, 0::bigint AS due_ms FROM ins",
		      p, 1, &rows))
			continue;
		uint64_t now = now_ms();
		json_array_foreach(rows, i, row)
		{
			if (!redis_ok(job_push(row, now, 1)))
				break;
		}
		json_decref(rows);
	}
	/* Jobs written by others, never put in Redis yet: scheduled calls (POST /v1/calls
	 * with at, no campaign) and WhatsApp's qualified leads (wa_lead_qualified, in
	 * whatsapp.campaign_id while it runs). One node (the conditional UPDATE) puts each
	 * in Redis, into the retry set until it is due. The dialer's own inserts above set
	 * enqueued_at as they push. */
	if (!d.paused &&
	    q("UPDATE call_jobs SET enqueued_at = now(), updated_at = now() WHERE id IN (SELECT"
	      " id FROM call_jobs WHERE status = 'queued' AND enqueued_at IS NULL AND (campaign_id"
	      " IS NULL OR campaign_id IN (SELECT id FROM campaigns WHERE status = 'running'))"
	      " ORDER BY created_at LIMIT 500 FOR UPDATE SKIP LOCKED)"
	      " AND enqueued_at IS NULL RETURNING id, campaign_id, lead_id, number, attempt,"
	      " (extract(epoch FROM coalesce(not_before, now())) * 1000)::bigint AS due_ms",
	      NULL, 0, &rows) == 0) {
		uint64_t now = now_ms();
		json_array_foreach(rows, i, row)
		{
			if (!redis_ok(job_push(row, now, 1)))
				break; /* the sweep puts it back */
		}
		json_decref(rows);
	}
	if (q("SELECT count(*) AS n FROM call_jobs WHERE status = 'queued'", NULL, 0, &rows) == 0) {
		metric_set(d.m_depth, jint(json_array_get(rows, 0), "n", 0));
		json_decref(rows);
	}
}

/* ---- placing calls ---- */

static void on_orig_done(void *arg, int status, const char *call_id, const char *why)
{
	if (atomic_load(&d.closed))
		return;
	struct dmsg m = {.kind = MSG_ORIG, .status = status, .idx = (unsigned)(uintptr_t)arg};
	copy(m.call_id, sizeof(m.call_id), call_id);
	if (status)
		log_warn("dialer", "originate refused (%d): %s", status, why ? why : "");
	if (mbox_post(d.mb, &m) && log_ratelimit_ok(&d.rl_sip))
		log_err("dialer", "mailbox full: an originate result is lost");
}

static void on_life(void *arg, const struct b2b_life_ev *ev)
{
	(void)arg;
	if (atomic_load(&d.closed) || ev->what != B2B_LIFE_ENDED || !ev->ref || !ev->ref[0] ||
	    strcmp(ev->direction, "outbound") != 0)
		return;
	struct dmsg m = {.kind = MSG_ENDED, .outcome = (int)dialer_outcome_of_cdr(ev->cdr)};
	copy(m.ref, sizeof(m.ref), ev->ref);
	copy(m.call_id, sizeof(m.call_id), ev->call_id);
	if (mbox_post(d.mb, &m) && log_ratelimit_ok(&d.rl_sip))
		log_err("dialer", "mailbox full: the end of call %s is lost", ev->call_id);
}

static void release_slots(const struct active *a)
{
	char sn[96];
	slot_name(sn, sizeof(sn), a->camp);
	if (a->camp[0])
		db_redis_slot_release(d.r, sn, a->job);
	/* VAPI counts an AI call whose socket never opened (busy, no answer) until its own
	 * connect timeout: the account's slot is held that long, then expires by itself. */
	if (a->placed && d.c.unanswered_hold_s && a->outcome != DIALER_ANSWERED &&
	    a->outcome != DIALER_MACHINE)
		db_redis_slot_renew(d.r, SLOT_GLOBAL, a->job,
		                    (uint64_t)d.c.unanswered_hold_s * 1000u, now_ms());
	else
		db_redis_slot_release(d.r, SLOT_GLOBAL, a->job);
	if (a->call_id[0])
		db_redis_call_disown(d.r, d.node, a->call_id);
}

/* A job's attempt is over: record it, and insert the next attempt or set the lead's final
 * status. 0, or -errno with nothing lost (the caller tries again later: each statement is
 * idempotent). */
static int finish(struct active *a)
{
	const char *out = dialer_outcome_name(a->outcome);
	uint64_t delay_s;
	int again = dialer_retry_decide(a->retry, a->outcome, a->attempt, &delay_s);
	const char *p1[] = {a->job, out, a->call_id[0] ? a->call_id : NULL,
	                    a->placed ? "done" : "failed"};
	json_t *done;
	int rc = q("UPDATE call_jobs SET status = $4, outcome = $2,"
	           " call_id = coalesce($3, call_id), updated_at = now()"
	           " WHERE id = $1 AND status = 'dialing' RETURNING id",
	           p1, 4, &done);
	if (rc)
		return rc;
	size_t n_done = json_array_size(done);
	json_decref(done);
	if (!n_done && !a->local) { /* another survivor recovered it first */
		memset(a, 0, sizeof(*a));
		return 0;
	}
	if (again) {
		char att[16], due[32];
		uint64_t due_ms = now_ms() + delay_s * 1000u;
		snprintf(att, sizeof(att), "%u", a->attempt + 1);
		snprintf(due, sizeof(due), "%llu", (unsigned long long)due_ms);
		const char *p2[] = {a->camp, a->lead, a->number, att, due};
		json_t *rows;
		rc = q(
		    "WITH ins AS (INSERT INTO call_jobs (campaign_id, lead_id, number, attempt,"
		    " not_before, idempotency_key, enqueued_at) VALUES ($1, $2, $3, $4::int,"
		    " to_timestamp($5::bigint / 1000.0), 'lead:' || $2 || ':' || $4, now())"
		    " ON CONFLICT (idempotency_key) DO NOTHING"
		    " RETURNING id, campaign_id, lead_id, number, attempt),"
		    " up AS (UPDATE leads SET status = 'called', updated_at = now() WHERE id = $2)"
		    " SELECT ins.*, $5::bigint AS due_ms FROM ins",
		    p2, 5, &rows);
		if (rc)
			return rc;
		if (json_array_size(rows)) {
			metric_inc(d.m_retry);
			redis_ok(job_push(json_array_get(rows, 0), now_ms(), 1));
			/* lost in Redis: the sweep puts it back */
		}
		json_decref(rows);
	} else if (a->camp[0]) { /* a scheduled call leaves the lead's funnel status alone */
		const char *p3[] = {a->lead, dialer_lead_final_status(a->outcome)};
		rc = q("UPDATE leads SET status = $2, updated_at = now() WHERE id = $1", p3, 2,
		       NULL);
		if (rc)
			return rc;
	}
	log_info("dialer", "job %s (lead %s, attempt %u): %s%s", a->job, a->lead, a->attempt, out,
	         again ? ", will retry" : "");
	metric_inc(d.m_jobs[a->outcome]);
	release_slots(a);
	struct camp *c = a->local ? camp_find(a->camp) : NULL;
	if (c && c->active) {
		c->active--;
		metric_set(c->m_active, c->active);
	}
	memset(a, 0, sizeof(*a));
	return 0;
}

static struct active *act_new(void)
{
	for (unsigned i = 0; i < ACTIVE_MAX; i++) {
		if (d.act[i].state == ACT_FREE)
			return &d.act[i];
	}
	return NULL;
}

static void defer(const char *p, uint64_t due_ms, struct metric *why)
{
	metric_inc(why);
	redis_ok(db_redis_job_defer(d.r, RETRY_ZSET, p, due_ms));
}

/* One claimed job: check it, take its slots and rate token, mark it dialing, place the
 * call. Returns 1 to ack the entry, 0 to leave it pending (a store broke: it comes back
 * after reclaim_s, or here after a resync). */
static int dial_one(const struct db_redis_job *j, unsigned *budget)
{
	json_t *o = json_loads(j->json, 0, NULL);
	const char *job = jstr(o, "job"), *camp = jstr(o, "campaign"), *lead = jstr(o, "lead"),
	           *number = jstr(o, "number");
	unsigned attempt = (unsigned)jint(o, "attempt", 1);
	int ack = 1;
	char *vars = NULL;
	struct camp *c = camp_find(camp);
	/* solo: a scheduled call (POST /v1/calls with at), no campaign. The same steps with
	 * the campaign's parts (running, its slots, calling hours, rate, retries) skipped:
	 * the requester chose the time; the account's cap and do-not-call still apply. */
	int solo = !camp[0];
	const char *lead_up = solo ? NULL : lead; /* the lead's funnel status: campaigns only */
	char from[40] = "", assistant[96] = "";
	if (!job[0] || !number[0] || strlen(job) >= ID_LEN || strlen(lead) >= ID_LEN ||
	    strlen(number) >= 40) {
		log_warn("dialer", "stream entry %s is not a job: dropped", j->id);
		goto out;
	}
	if (!solo && (!c || c->gen != d.gen))
		goto out; /* not running: the row stays queued until it runs again */
	/* A full campaign: put off before any query (a long backlog cycles through here). */
	char sn[96];
	slot_name(sn, sizeof(sn), camp);
	uint64_t now = now_ms();
	int held = solo ? 0 : db_redis_slot_count(d.r, sn, now);
	if (held < 0 || (!solo && (unsigned)held >= c->max_concurrent)) {
		if (redis_ok(held))
			defer(j->json, now + 1000u, d.m_def_cap);
		else
			ack = 0;
		goto out;
	}

	const char *pj[] = {job, number};
	json_t *rows;
	int rc = q("SELECT j.status, l.timezone, coalesce(l.do_not_call, false) OR EXISTS"
	           " (SELECT 1 FROM do_not_call n WHERE n.phone_e164 = $2) AS dnc,"
	           " coalesce(l.attributes, '{}'::jsonb) || jsonb_strip_nulls(jsonb_build_object("
	           "'name', l.name, 'email', l.email, 'locale', l.locale, 'campaignId',"
	           " j.campaign_id, 'attempt', j.attempt)) || coalesce(j.variables, '{}'::jsonb)"
	           " AS vars, coalesce(j.caller_id, '') AS caller_id, coalesce(j.assistant, '')"
	           " AS assistant"
	           " FROM call_jobs j LEFT JOIN leads l ON l.id = j.lead_id WHERE j.id = $1",
	           pj, 2, &rows);
	if (rc) {
		ack = 0;
		goto out;
	}
	json_t *row = json_array_get(rows, 0);
	if (!row || strcmp(jstr(row, "status"), "queued") != 0) {
		metric_inc(d.m_dup);
		json_decref(rows);
		goto out;
	}
	int dnc = json_is_true(json_object_get(row, "dnc"));
	const struct dialer_zone *z = dialer_zone_find(jstr(row, "timezone"));
	copy(from, sizeof(from), solo ? jstr(row, "caller_id") : c->caller_id);
	copy(assistant, sizeof(assistant), solo ? jstr(row, "assistant") : c->assistant);
	/* The lead's attributes, name, email and locale become the assistant's variables. */
	vars = json_is_object(json_object_get(row, "vars"))
	           ? json_dumps(json_object_get(row, "vars"), JSON_COMPACT)
	           : NULL;
	if (vars && strlen(vars) > 16u * 1024u) {
		free(vars);
		vars = NULL;
	}
	json_decref(rows);
	if (dnc) {
		const char *p[] = {job, lead_up};
		if (q("WITH j AS (UPDATE call_jobs SET status = 'cancelled', outcome = "
		      "'do_not_call',"
		      " updated_at = now() WHERE id = $1 AND status = 'queued' RETURNING id)"
		      " UPDATE leads SET status = 'dnc', updated_at = now() WHERE id = $2",
		      p, 2, NULL)) {
			ack = 0;
			goto out;
		}
		log_info("dialer", "job %s: %s is on the do-not-call list, not dialed", job,
		         number);
		metric_inc(d.m_dnc);
		goto out;
	}
	if (!z)
		z = dialer_zone_of_number(number);
	if (!z && !solo)
		z = c->zone;
	now = now_ms();
	int64_t now_s = (int64_t)(now / 1000u);
	if (!solo && (c->hours_bad || !dialer_hours_open(c->win, c->n_win, z, now_s))) {
		int64_t next = c->hours_bad ? -1 : dialer_hours_next(c->win, c->n_win, z, now_s);
		uint64_t due = next > 0 ? (uint64_t)next * 1000u : now + 3600000u;
		char dues[32];
		snprintf(dues, sizeof(dues), "%llu", (unsigned long long)due);
		const char *p[] = {job, dues};
		q("UPDATE call_jobs SET not_before = to_timestamp($2::bigint / 1000.0),"
		  " updated_at = now() WHERE id = $1 AND status = 'queued'",
		  p, 2, NULL);
		log_info("dialer", "job %s: outside calling hours in %s for %s, next try %llds",
		         job, z ? z->name : "UTC", number,
		         (long long)((int64_t)(due / 1000u) - now_s));
		defer(j->json, due, d.m_def_hours);
		goto out;
	}
	/* Capacity: this campaign's, then the account's; then the campaign's call rate. */
	uint64_t lease = (uint64_t)d.c.lease_s * 1000u;
	rc = solo ? 1 : db_redis_slot_acquire(d.r, sn, c->max_concurrent, job, lease, now);
	if (rc == 1) {
		rc = db_redis_slot_acquire(d.r, SLOT_GLOBAL, d.c.max_calls, job, lease, now);
		if (rc != 1 && !solo)
			db_redis_slot_release(d.r, sn, job);
		if (rc == 0)
			*budget = 0; /* the account is full: stop claiming this tick */
	}
	if (rc != 1) {
		if (redis_ok(rc))
			defer(j->json, now + 1000u, d.m_def_cap);
		else
			ack = 0;
		goto out;
	}
	uint64_t interval = solo ? 1 : (uint64_t)(1000.0 / c->cps);
	if (interval < 1)
		interval = 1;
	char rk[160];
	snprintf(rk, sizeof(rk), "rate:%s:%llu", camp, (unsigned long long)(now / interval));
	rc = solo ? 1 : db_redis_dedupe(d.r, rk, (unsigned)(interval / 1000u) + 2u);
	if (rc != 1) {
		db_redis_slot_release(d.r, sn, job);
		db_redis_slot_release(d.r, SLOT_GLOBAL, job);
		if (redis_ok(rc))
			defer(j->json, (now / interval + 1) * interval, d.m_def_rate);
		else
			ack = 0;
		goto out;
	}
	/* The exactly-once step: only one node turns the row from queued to dialing. */
	const char *pg[] = {job, d.node, lead_up};
	rc = q("WITH j AS (UPDATE call_jobs SET status = 'dialing', claimed_by = $2,"
	       " claimed_at = now(), updated_at = now() WHERE id = $1 AND status = 'queued'"
	       " RETURNING id), l AS (UPDATE leads SET status = 'called', updated_at = now()"
	       " WHERE id = $3 AND EXISTS (SELECT 1 FROM j)) SELECT id FROM j",
	       pg, 3, &rows);
	if (rc || !json_array_size(rows)) {
		db_redis_slot_release(d.r, sn, job);
		db_redis_slot_release(d.r, SLOT_GLOBAL, job);
		if (rc)
			ack = 0;
		else
			metric_inc(d.m_dup);
		json_decref(rows);
		goto out;
	}
	json_decref(rows);
	struct active *a = act_new();
	if (!a) { /* cannot happen below max_calls <= ACTIVE_MAX; fail the attempt */
		log_err("dialer", "job %s: more than %u calls in progress on this node", job,
		        ACTIVE_MAX);
		struct active tmp = {
		    .state = ACT_ENDED, .outcome = DIALER_FAILED, .attempt = attempt};
		copy(tmp.job, sizeof(tmp.job), job);
		copy(tmp.camp, sizeof(tmp.camp), camp);
		copy(tmp.lead, sizeof(tmp.lead), lead);
		copy(tmp.number, sizeof(tmp.number), number);
		if (solo)
			no_retry(tmp.retry);
		else
			memcpy(tmp.retry, c->retry, sizeof(tmp.retry));
		finish(&tmp);
		goto out;
	}
	*a = (struct active){.state = ACT_POSTED, .attempt = attempt, .local = 1};
	copy(a->job, sizeof(a->job), job);
	copy(a->camp, sizeof(a->camp), camp);
	copy(a->lead, sizeof(a->lead), lead);
	copy(a->number, sizeof(a->number), number);
	if (solo) {
		no_retry(a->retry);
	} else {
		memcpy(a->retry, c->retry, sizeof(a->retry));
		c->active++;
		metric_set(c->m_active, c->active);
	}
	struct b2b_orig_req req = {.to = number,
	                           .from = from,
	                           .assistant_id = assistant,
	                           .variables_json = vars,
	                           .lead_id = lead,
	                           .ref = job,
	                           .amd_action = solo ? B2B_AMD_AI : c->amd,
	                           .amd_prompt = solo ? NULL : c->amd_prompt};
	rc = b2b_originate_post(&req, on_orig_done, (void *)(uintptr_t)(a - d.act));
	if (rc) {
		log_warn("dialer", "job %s: originate not queued: %s", job, strerror(-rc));
		metric_inc(d.m_refused);
		a->state = ACT_ENDED;
		a->outcome = DIALER_FAILED;
	} else {
		log_info("dialer", "job %s: dialing %s (lead %s, attempt %u)", job, number, lead,
		         attempt);
	}
	if (*budget)
		(*budget)--;
out:
	free(vars);
	json_decref(o);
	return ack;
}

/* ---- the thread ---- */

static void on_msg(const struct dmsg *m)
{
	if (m->kind == MSG_ORIG) {
		struct active *a = m->idx < ACTIVE_MAX ? &d.act[m->idx] : NULL;
		if (!a || a->state == ACT_FREE)
			return;
		if (m->status) {
			metric_inc(d.m_refused);
			if (a->state == ACT_POSTED) {
				a->state = ACT_ENDED;
				a->outcome = DIALER_FAILED;
			}
			return;
		}
		a->placed = 1;
		copy(a->call_id, sizeof(a->call_id), m->call_id);
		if (a->state == ACT_POSTED)
			a->state = ACT_LIVE;
		db_redis_call_own(d.r, d.node, a->call_id);
		const char *p[] = {a->job, a->call_id};
		q("UPDATE call_jobs SET call_id = $2, updated_at = now() WHERE id = $1", p, 2,
		  NULL);
		return;
	}
	if (m->kind == MSG_ENDED) {
		for (unsigned i = 0; i < ACTIVE_MAX; i++) {
			struct active *a = &d.act[i];
			if (a->state != ACT_FREE && a->state != ACT_ENDED &&
			    strcmp(a->job, m->ref) == 0) {
				a->state = ACT_ENDED;
				a->placed = 1;
				a->outcome = (enum dialer_outcome)m->outcome;
				copy(a->call_id, sizeof(a->call_id), m->call_id);
				return;
			}
		}
	}
}

/* Finishes the 'dialing' jobs claimed by `node` as failed (the retry policy applies): a
 * node that is gone (reaped), or this node's previous life. Their calls died with it. */
static void recover(const char *node)
{
	const char *p[] = {node};
	json_t *rows;
	if (q("SELECT id, campaign_id, lead_id, number, attempt, coalesce(call_id, '') AS call_id"
	      " FROM call_jobs WHERE claimed_by = $1 AND status = 'dialing'",
	      p, 1, &rows))
		return;
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		struct active a = {.state = ACT_ENDED,
		                   .outcome = DIALER_FAILED,
		                   .placed = 1,
		                   .attempt = (unsigned)jint(row, "attempt", 1)};
		copy(a.job, sizeof(a.job), jstr(row, "id"));
		copy(a.camp, sizeof(a.camp), jstr(row, "campaign_id"));
		copy(a.lead, sizeof(a.lead), jstr(row, "lead_id"));
		copy(a.number, sizeof(a.number), jstr(row, "number"));
		copy(a.call_id, sizeof(a.call_id), jstr(row, "call_id"));
		struct camp *c = camp_find(a.camp);
		if (c)
			memcpy(a.retry, c->retry, sizeof(a.retry));
		else if (!a.camp[0])
			no_retry(a.retry);
		else
			dialer_retry_parse(NULL, 3, a.retry);
		log_warn("dialer", "job %s (lead %s) was dialing on node %s, which is gone: failed",
		         a.job, a.lead, node);
		if (finish(&a))
			break;
	}
	json_decref(rows);
}

struct names {
	char n[8][128];
	unsigned count;
};

static void add_name(void *arg, const char *s, size_t len)
{
	struct names *nm = arg;
	if (nm->count < 8 && len < sizeof(nm->n[0]))
		memcpy(nm->n[nm->count++], s, len + 1);
}

static void no_call(void *arg, const char *s, size_t len)
{
	(void)arg;
	(void)s;
	(void)len;
}

/* Nodes whose beat ended (3 x lease_s without one) are taken over: one survivor wins each
 * in Redis, and PostgreSQL's conditional updates make the takeover of each job single.
 * Not in the first 3 x lease_s after this node resumed: the others need a beat to show
 * they are alive after an outage. */
static void reap_dead(uint64_t now)
{
	uint64_t ttl = 3u * 1000u * (uint64_t)d.c.lease_s;
	if (now - d.resumed_ms < ttl)
		return;
	struct names nm = {.count = 0};
	if (!redis_ok(db_redis_nodes_list(d.r, 1, now, add_name, &nm)))
		return;
	for (unsigned i = 0; i < nm.count && !d.paused; i++) {
		if (strcmp(nm.n[i], d.node) == 0)
			continue;
		int rc = db_redis_node_reap(d.r, nm.n[i], now, no_call, NULL);
		if (rc == -ENOENT)
			continue; /* it beat again, or another node took it over first */
		if (!redis_ok(rc))
			return;
		log_warn("dialer", "node %s missed its beats: taking over its jobs", nm.n[i]);
		recover(nm.n[i]);
	}
}

/* Once a second: leases of the calls in progress, campaigns and new leads, recovery. */
static void each_second(uint64_t now)
{
	uint64_t lease = (uint64_t)d.c.lease_s * 1000u;
	for (unsigned i = 0; i < ACTIVE_MAX && !d.paused; i++) {
		struct active *a = &d.act[i];
		if (a->state != ACT_POSTED && a->state != ACT_LIVE)
			continue;
		struct camp *c = camp_find(a->camp);
		char sn[96];
		slot_name(sn, sizeof(sn), a->camp);
		/* acquire renews a held lease and takes it back after Redis lost it */
		if (a->camp[0])
			redis_ok(db_redis_slot_acquire(d.r, sn, c ? c->max_concurrent : 1, a->job,
			                               lease, now));
		redis_ok(
		    db_redis_slot_acquire(d.r, SLOT_GLOBAL, d.c.max_calls, a->job, lease, now));
	}
	if (!d.paused)
		camps_refresh();
	if (!d.paused && !d.recovered_self) {
		recover(d.node); /* before this life claims anything: all from a previous one */
		d.recovered_self = 1;
	}
	if (!d.paused)
		reap_dead(now);
}

static void resume(void)
{
	if (!redis_ok(db_redis_group_ensure(d.r, STREAM, GROUP)))
		return;
	d.paused = 0;
	d.resumed_ms = now_ms();
	resync(NULL, 0, 1);
	if (d.paused)
		return;
	metric_set(d.m_paused, 0);
	atomic_store(&d_state, DS_RUNNING);
	log_info("dialer", "dialer running (node %s, at most %u calls at once over all nodes)",
	         d.node, d.c.max_calls);
}

static void tick(void)
{
	uint64_t now = now_ms();
	if (now - d.last_beat_ms >= 1000u) { /* paused too: a live node is never taken over */
		d.last_beat_ms = now;
		db_redis_node_beat(d.r, d.node, 3u * 1000u * (uint64_t)d.c.lease_s, now);
	}
	if (d.paused) {
		if (!db_pg_up() || db_redis_ping(d.r) != 0) {
			if (atomic_load(&d_state) != DS_STARTING)
				atomic_store(&d_state, db_pg_up() ? DS_REDIS_DOWN : DS_PG_DOWN);
			return;
		}
		resume();
		if (d.paused)
			return;
	} else if (!db_pg_up()) {
		log_warn("dialer",
		         "PostgreSQL is down: the dialer pauses (calls in progress go on)");
		atomic_store(&d_state, DS_PG_DOWN);
		d.paused = 1;
		metric_set(d.m_paused, 1);
		return;
	}
	for (unsigned i = 0; i < ACTIVE_MAX && !d.paused; i++) {
		if (d.act[i].state == ACT_ENDED && finish(&d.act[i]) == -ENOTCONN)
			break;
	}
	if (d.paused)
		return;
	if (now - d.last_sec_ms >= 1000u) {
		d.last_sec_ms = now;
		each_second(now);
	}
	if (d.paused)
		return;
	if (now - d.last_sweep_ms >= (uint64_t)d.c.sweep_s * 1000u) {
		if (d.last_sweep_ms)
			resync(NULL, d.c.sweep_s, 0);
		d.last_sweep_ms = now;
	}
	if (!redis_ok(db_redis_job_due(d.r, RETRY_ZSET, STREAM, now, 256)))
		return;
	unsigned budget = CLAIM_BATCH, seen = 0;
	int held = db_redis_slot_count(d.r, SLOT_GLOBAL, now);
	if (!redis_ok(held) || (unsigned)held >= d.c.max_calls)
		return;
	/* Claim no more than the free slots: the other nodes get their share. */
	if (d.c.max_calls - (unsigned)held < budget)
		budget = d.c.max_calls - (unsigned)held;
	while (budget && !d.paused && seen < CLAIM_SEEN_MAX) {
		struct db_redis_job jobs[CLAIM_BATCH];
		size_t n = 0;
		int rc = db_redis_job_claim(d.r, STREAM, GROUP, d.node, budget, 0,
		                            d.c.reclaim_s * 1000u, jobs, &n);
		if (rc == -ENOENT)
			rc = db_redis_group_ensure(d.r, STREAM, GROUP);
		if (!redis_ok(rc) || n == 0) {
			db_redis_jobs_free(jobs, n);
			break;
		}
		seen += (unsigned)n;
		for (size_t i = 0; i < n; i++) {
			if (d.paused || !dial_one(&jobs[i], &budget))
				continue; /* left pending */
			redis_ok(db_redis_job_ack(d.r, STREAM, GROUP, jobs[i].id));
		}
		db_redis_jobs_free(jobs, n);
	}
}

static void *dialer_main(void *arg)
{
	(void)arg;
	struct pollfd pfd = {.fd = mbox_fd(d.mb), .events = POLLIN};
	for (;;) {
		int stop = 0;
		if (poll(&pfd, 1, (int)d.c.tick_ms) > 0)
			mbox_drain_fd(d.mb);
		struct dmsg m;
		while (mbox_take(d.mb, &m) == 0) {
			if (m.kind == MSG_STOP)
				stop = 1;
			else
				on_msg(&m);
		}
		if (stop)
			break;
		tick();
	}
	return NULL;
}

/* ---- set-up ---- */

static struct metric *counter(const char *name, const char *help)
{
	return metric_get(METRIC_COUNTER, name, help);
}

int dialer_init(const struct dialer_config *c)
{
	if (!c || !c->redis_url || !c->redis_url[0] || !c->max_calls)
		return -EINVAL;
	memset(&d, 0, sizeof(d));
	d.c = *c;
	d.c.tick_ms = c->tick_ms ? c->tick_ms : 200;
	d.c.lease_s = c->lease_s ? c->lease_s : 30;
	d.c.reclaim_s = c->reclaim_s ? c->reclaim_s : 30;
	d.c.sweep_s = c->sweep_s ? c->sweep_s : 60;
	copy(d.prefix, sizeof(d.prefix), c->redis_prefix ? c->redis_prefix : "vacs:");
	copy(d.url, sizeof(d.url), c->redis_url);
	d.c.redis_url = d.url;
	d.c.redis_prefix = d.prefix;
	if (c->node_id && c->node_id[0]) {
		copy(d.node, sizeof(d.node), c->node_id);
	} else {
		char host[64] = "vacsd";
		gethostname(host, sizeof(host) - 1);
		snprintf(d.node, sizeof(d.node), "%s-%d", host, (int)getpid());
	}
	d.c.node_id = d.node;
	d.paused = 1;
	atomic_store(&d_state, DS_STARTING);
	d.m_paused = metric_get(METRIC_GAUGE, "vacs_dialer_paused",
	                        "1 while the dialer is paused (a store is down), else 0");
	metric_set(d.m_paused, 1);
	d.m_depth = metric_get(METRIC_GAUGE, "vacs_dialer_queue_depth",
	                       "Dial jobs queued (all campaigns, all nodes)");
	for (unsigned o = 0; o < DIALER_OUTCOME__COUNT; o++) {
		char name[96];
		snprintf(name, sizeof(name), "vacs_dialer_jobs_total{outcome=\"%s\"}",
		         dialer_outcome_name(o));
		d.m_jobs[o] = counter(name, "Dial attempts finished by this node, by outcome");
	}
	d.m_dnc = counter("vacs_dialer_jobs_total{outcome=\"do_not_call\"}",
	                  "Dial attempts finished by this node, by outcome");
	d.m_dup = counter("vacs_dialer_duplicates_total",
	                  "Job entries dropped because the job was no longer queued");
	d.m_retry = counter("vacs_dialer_retries_total", "Retries scheduled");
	d.m_def_hours =
	    counter("vacs_dialer_deferred_total{reason=\"hours\"}", "Jobs put off, by reason");
	d.m_def_cap =
	    counter("vacs_dialer_deferred_total{reason=\"capacity\"}", "Jobs put off, by reason");
	d.m_def_rate =
	    counter("vacs_dialer_deferred_total{reason=\"rate\"}", "Jobs put off, by reason");
	d.m_refused = counter("vacs_dialer_originate_refused_total",
	                      "Jobs whose call the call engine refused to place");
	int rc = -ENOMEM;
	if (!d.m_paused || !d.m_depth || !d.m_dnc || !d.m_dup || !d.m_retry || !d.m_def_hours ||
	    !d.m_def_cap || !d.m_def_rate || !d.m_refused)
		goto fail;
	struct db_redis_opts ro = {.prefix = d.prefix,
	                           .backoff_min_ms = c->backoff_min_ms,
	                           .backoff_max_ms = c->backoff_max_ms};
	if ((rc = db_redis_create(d.url, &ro, &d.r)))
		goto fail;
	if ((rc = mbox_create(&d.mb, sizeof(struct dmsg), 1024)))
		goto fail;
	if ((rc = b2b_life_watch(on_life, NULL)))
		goto fail;
	if ((rc = -pthread_create(&d.th, NULL, dialer_main, NULL)))
		goto fail;
	pthread_setname_np(d.th, "dialer");
	d.started = 1;
	log_info("dialer", "dialer starting: node %s, at most %u calls at once", d.node,
	         d.c.max_calls);
	return 0;
fail:
	log_err("dialer", "cannot start the dialer: %s", strerror(-rc));
	atomic_store(&d.closed, 1);
	mbox_destroy(d.mb);
	d.mb = NULL;
	db_redis_destroy(d.r);
	d.r = NULL;
	return rc;
}

int dialer_init_conf(const struct conf *cfg)
{
	const char *off = !cfg->dialer.enabled ? "dialer.enabled is false"
	                  : !cfg->store.postgres || !cfg->store.postgres[0]
	                      ? "no PostgreSQL (store.postgres_env)"
	                  : !cfg->store.redis || !cfg->store.redis[0] ? "no Redis (store.redis_env)"
	                                                              : NULL;
	if (off) {
		log_info("main", "the campaign dialer is off: %s", off);
		b2b_api_schedule_set(0, off);
		return 0;
	}
	struct dialer_config dc = {
	    .redis_url = cfg->store.redis,
	    .redis_prefix = cfg->dialer.redis_prefix,
	    .node_id = cfg->dialer.node_id,
	    .max_calls = cfg->dialer.max_calls,
	    .tick_ms = cfg->dialer.tick_ms,
	    .lease_s = cfg->dialer.lease_s,
	    .reclaim_s = cfg->dialer.reclaim_s,
	    .sweep_s = cfg->dialer.sweep_s,
	    .unanswered_hold_s = cfg->dialer.unanswered_hold_s,
	    .backoff_min_ms = cfg->store.backoff_min_ms,
	    .backoff_max_ms = cfg->store.backoff_max_ms,
	};
	int rc = dialer_init(&dc);
	b2b_api_schedule_set(rc == 0, rc ? "it could not start" : NULL);
	return rc;
}

void dialer_close(void)
{
	if (!d.mb)
		return;
	if (d.started) {
		struct dmsg m = {.kind = MSG_STOP};
		while (mbox_post(d.mb, &m) == -EAGAIN)
			usleep(1000);
		pthread_join(d.th, NULL);
	}
	atomic_store(&d.closed, 1); /* the life observer stays registered: it now returns */
	unsigned live = 0;
	for (unsigned i = 0; i < ACTIVE_MAX; i++)
		live += d.act[i].state != ACT_FREE;
	if (live)
		log_warn(
		    "dialer",
		    "stopped with %u call(s) of campaigns in progress: their jobs stay 'dialing' "
		    "until this node starts again or another takes them over",
		    live);
	mbox_destroy(d.mb);
	d.mb = NULL;
	db_redis_destroy(d.r);
	d.r = NULL;
	d.started = 0;
	atomic_store(&d_state, DS_OFF);
}

int dialer_ready_line(void *arg, char *buf, size_t len)
{
	(void)arg;
	switch (atomic_load(&d_state)) {
	case DS_STARTING:
		snprintf(buf, len, "starting (waiting for PostgreSQL and Redis)");
		break;
	case DS_RUNNING:
		snprintf(buf, len, "running, Redis up, node %s", d.node);
		break;
	case DS_REDIS_DOWN:
		snprintf(buf, len, "paused: Redis is down (calls in progress go on)");
		break;
	case DS_PG_DOWN:
		snprintf(buf, len, "paused: PostgreSQL is down (calls in progress go on)");
		break;
	default:
		snprintf(buf, len, "off");
		break;
	}
	return 0; /* a paused dialer places no calls; the node still takes calls */
}
