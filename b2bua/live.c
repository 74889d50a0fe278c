/* The dashboard's live feed: call life and transcript lines posted to the control plane's
 * event stream (GET /v1/events/stream), and GET /v1/live, the calls in progress now. */
#include "b2bua/b2bua.h"
#include "b2bua/b2bua_int.h"
#include "b2bua/live.h"

#include "control/api_util.h"
#include "control/control.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "media/media.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The table is written on the sip thread (observers) and read on the http thread (GET
 * /v1/live), under one mutex; entries are small fixed strings, no pointers. */
#define LIVE_MAX    512
#define LINES_KEPT  6
#define TX_LINE_MAX 240

struct live_call {
	int used;
	char id[80], direction[10], lead_id[64], ref[64], caller[64], called[64], agent[96];
	const char *state; /* static: "ringing", "answered", "transferred" */
	uint64_t started_ms, answered_ms;
	unsigned n_lines;  /* lines seen; the last LINES_KEPT are kept */
	char quality[400]; /* the last call.quality legs object (JSON), "" = none yet */
	char role[LINES_KEPT][16];
	char line[LINES_KEPT][TX_LINE_MAX];
};

static struct {
	pthread_mutex_t lock;
	struct live_call c[LIVE_MAX];
} lv = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const life_name[] = {
    [B2B_LIFE_STARTED] = "call.started",
    [B2B_LIFE_ANSWERED] = "call.answered",
    [B2B_LIFE_TRANSFERRED] = "call.transferred",
    [B2B_LIFE_ENDED] = "call.ended",
};

static struct live_call *find(const char *id)
{
	for (size_t i = 0; i < LIVE_MAX; i++)
		if (lv.c[i].used && strcmp(lv.c[i].id, id) == 0)
			return &lv.c[i];
	return NULL;
}

static json_t *call_json(const struct live_call *c, int with_lines)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "call_id", c->id,
	                      "direction", c->direction, "lead_id", c->lead_id, "ref", c->ref,
	                      "caller", c->caller, "called", c->called, "state", c->state, "agent",
	                      c->agent, "started_ms", (json_int_t)c->started_ms);
	if (!o)
		return NULL;
	json_object_set_new(o, "answered_ms",
	                    c->answered_ms ? json_integer((json_int_t)c->answered_ms)
	                                   : json_null());
	json_t *q = c->quality[0] ? json_loads(c->quality, 0, NULL) : NULL;
	json_object_set_new(o, "quality", q ? q : json_null());
	if (with_lines) {
		json_t *a = json_array();
		unsigned n = c->n_lines < LINES_KEPT ? c->n_lines : LINES_KEPT;
		for (unsigned k = c->n_lines - n; k < c->n_lines; k++)
			json_array_append_new(a, json_pack("{s:s, s:s}", "role",
			                                   c->role[k % LINES_KEPT], "text",
			                                   c->line[k % LINES_KEPT]));
		json_object_set_new(o, "transcript", a);
	}
	return o;
}

static void post(const char *type, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (s)
		ctl_event_post(type, s);
	free(s);
}

static void on_life(void *arg, const struct b2b_life_ev *ev)
{
	(void)arg;
	struct live_call snap, *c;
	memset(&snap, 0, sizeof(snap));
	pthread_mutex_lock(&lv.lock);
	c = find(ev->call_id);
	if (!c && ev->what != B2B_LIFE_ENDED) {
		for (size_t i = 0; i < LIVE_MAX && !c; i++)
			if (!lv.c[i].used)
				c = &lv.c[i];
		if (c) {
			memset(c, 0, sizeof(*c));
			c->used = 1;
			snprintf(c->id, sizeof(c->id), "%s", ev->call_id);
			snprintf(c->direction, sizeof(c->direction), "%s", ev->direction);
			snprintf(c->lead_id, sizeof(c->lead_id), "%s", ev->lead_id);
			snprintf(c->ref, sizeof(c->ref), "%s", ev->ref);
			snprintf(c->caller, sizeof(c->caller), "%s", ev->caller ? ev->caller : "");
			snprintf(c->called, sizeof(c->called), "%s", ev->called ? ev->called : "");
			c->state = "ringing";
			c->started_ms = ev->ts_ms;
		}
	}
	if (c) {
		if (ev->what == B2B_LIFE_ANSWERED) {
			c->state = "answered";
			c->answered_ms = ev->ts_ms;
		} else if (ev->what == B2B_LIFE_TRANSFERRED) {
			c->state = "transferred";
			snprintf(c->agent, sizeof(c->agent), "%s", ev->agent ? ev->agent : "");
		}
		snap = *c;
		if (ev->what == B2B_LIFE_ENDED)
			c->used = 0;
	}
	pthread_mutex_unlock(&lv.lock);
	if (!snap.used) { /* the table was full: the event still goes out */
		snprintf(snap.id, sizeof(snap.id), "%s", ev->call_id);
		snprintf(snap.direction, sizeof(snap.direction), "%s", ev->direction);
		snap.state = "unknown";
		snap.started_ms = ev->ts_ms;
	}
	if (ev->what == B2B_LIFE_ENDED)
		snap.state = "ended";
	json_t *o = call_json(&snap, 0);
	if (o)
		json_object_set_new(o, "ts_ms", json_integer((json_int_t)ev->ts_ms));
	if ((unsigned)ev->what < sizeof(life_name) / sizeof(life_name[0]))
		post(life_name[ev->what], o);
	else
		json_decref(o);
}

void b2b_live_transcript(const char *call_id, const char *role, const char *text, uint64_t ts_ms)
{
	if (!call_id || !text)
		return;
	pthread_mutex_lock(&lv.lock);
	struct live_call *c = find(call_id);
	if (c) {
		unsigned k = c->n_lines++ % LINES_KEPT;
		snprintf(c->role[k], sizeof(c->role[k]), "%s", role ? role : "");
		snprintf(c->line[k], sizeof(c->line[k]), "%s", text);
	}
	pthread_mutex_unlock(&lv.lock);
	char cut[2048];
	snprintf(cut, sizeof(cut), "%s", text); /* one line stays well under a stream chunk */
	post("call.transcript",
	     json_pack("{s:s, s:s, s:s, s:I}", "call_id", call_id, "role", role ? role : "", "text",
	               cut, "ts_ms", (json_int_t)ts_ms));
}

void b2b_live_trunk(const char *trunk, const char *node, const char *state)
{
	json_t *o = json_pack("{s:s, s:s, s:I}", "trunk", trunk ? trunk : "", "state", state,
	                      "ts_ms", (json_int_t)clock_wall_ms());
	if (o)
		json_object_set_new(o, "node", node ? json_string(node) : json_null());
	post("trunk.status", o);
}

#define QUALITY_EVERY_MS 5000

static json_t *leg_quality(const struct b2b_leg *leg)
{
	struct media_stats st;
	if (!leg->ms)
		return NULL;
	memset(&st, 0, sizeof(st));
	media_session_stats(leg->ms, &st);
	return json_pack("{s:I, s:i, s:i, s:i, s:i}", "pkts_in", (json_int_t)st.pkts_in, "lost",
	                 (int)st.lost, "jitter_ms", (int)st.jitter_ms, "remote_lost",
	                 (int)st.remote_lost, "remote_jitter_ms", (int)st.remote_jitter_ms);
}

void b2b_live_quality(uint64_t now_ms)
{
	static uint64_t next_ms;
	if (now_ms < next_ms)
		return;
	next_ms = now_ms + QUALITY_EVERY_MS;
	for (struct b2b_call *c = b2b_g.calls; c; c = c->next) {
		json_t *legs = json_object();
		const struct b2b_leg *l[3] = {&c->a, &c->b, &c->x};
		static const char *const names[3] = {"a", "b", "x"};
		for (int i = 0; legs && i < 3; i++) {
			json_t *q = leg_quality(l[i]);
			if (q)
				json_object_set_new(legs, names[i], q);
		}
		if (!legs || !json_object_size(legs)) {
			json_decref(legs);
			continue;
		}
		char *s = json_dumps(legs, JSON_COMPACT);
		pthread_mutex_lock(&lv.lock);
		struct live_call *lc = find(c->id);
		if (lc && s)
			snprintf(lc->quality, sizeof(lc->quality), "%s",
			         strlen(s) < sizeof(lc->quality) ? s : "");
		pthread_mutex_unlock(&lv.lock);
		free(s);
		post("call.quality", json_pack("{s:s, s:o, s:I}", "call_id", c->id, "legs", legs,
		                               "ts_ms", (json_int_t)clock_wall_ms()));
	}
}

static void on_live(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	json_t *a = json_array();
	pthread_mutex_lock(&lv.lock);
	for (size_t i = 0; a && i < LIVE_MAX; i++)
		if (lv.c[i].used)
			json_array_append_new(a, call_json(&lv.c[i], 1));
	pthread_mutex_unlock(&lv.lock);
	api_reply_json(token, 200, a ? json_pack("{s:o}", "calls", a) : NULL);
}

int b2b_live_init(void)
{
	int rc = b2b_life_watch(on_life, NULL);
	if (!rc)
		rc = ctl_route_add("GET", "/v1/live", CTL_SCOPE_READ, 0, 5000, on_live, NULL);
	return rc;
}
