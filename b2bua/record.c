/* Call recording by route: the consent notice prompts, starting a recording on answer,
 * and handing finished files on (spool/recordings.jsonl) to whoever uploads them. */
#include "b2bua/b2bua_int.h"

#include "conf/conf.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The notices of the running configuration, loaded (and converted) once per load. */
struct notice {
	char *path;
	struct media_prompt *prompt;
};

/* Recordings started and not yet closed by the writer thread: the call may be gone by
 * the time the file is, so what the hand-off line needs is kept here. */
struct pending_rec {
	struct pending_rec *next;
	uint64_t owner;
	char call_id[96];
	char path[512];
};

static struct {
	struct notice *notices;
	size_t n_notices;
	struct pending_rec *pending;
	int events_fd;     /* spool/call-events.jsonl once opened, else -1 */
	int events_opened; /* the open was tried (on first use) */
	struct log_ratelimit store_rl;
} rec;

static void notices_free(struct notice *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		media_prompt_unref(v[i].prompt);
		mem_free(v[i].path);
	}
	mem_free(v);
}

/* The i-th prompt path a configuration names (NULL past the last), with the key that
 * names it for error messages. */
static const char *prompt_path(const struct conf *c, size_t i, char *key, size_t klen)
{
	if (i < 2 * c->n_routes) {
		snprintf(key, klen, "routes.[%zu].%s", i / 2,
		         i % 2 ? "fallback_prompt" : "record_notice");
		return i % 2 ? c->routes[i / 2].fallback.prompt : c->routes[i / 2].record_notice;
	}
	i -= 2 * c->n_routes;
	if (i < 2 * c->n_queues) {
		snprintf(key, klen, "queues.[%zu].%s", i / 2, i % 2 ? "whisper_prompt" : "moh");
		return i % 2 ? c->queues[i / 2].whisper_prompt : c->queues[i / 2].moh;
	}
	if (i == 2 * c->n_queues) {
		snprintf(key, klen, "outbound.fallback_prompt");
		return c->outbound.fallback.prompt ? c->outbound.fallback.prompt : "";
	}
	return NULL;
}

int b2b_notices_load(const struct conf *c, char *err, size_t errlen)
{
	size_t cap = 2 * c->n_routes + 2 * c->n_queues + 1;
	struct notice *v = mem_zalloc(sizeof(*v) * cap);
	size_t n = 0;
	if (!v)
		return -ENOMEM;
	char key[64];
	const char *path;
	for (size_t i = 0; (path = prompt_path(c, i, key, sizeof(key))) != NULL; i++) {
		if (!path[0])
			continue;
		int dup = 0;
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(v[j].path, path) == 0;
		if (dup)
			continue;
		char why[384];
		int rc = media_prompt_load(path, &v[n].prompt, why, sizeof(why));
		if (rc) {
			snprintf(err, errlen, "%s: %s", key, why);
			notices_free(v, n);
			return rc;
		}
		v[n].path = mem_strdup(path);
		if (!v[n].path) {
			media_prompt_unref(v[n].prompt);
			notices_free(v, n);
			return -ENOMEM;
		}
		n++;
	}
	notices_free(rec.notices, rec.n_notices);
	rec.notices = v;
	rec.n_notices = n;
	return 0;
}

void b2b_record_close(void)
{
	if (rec.events_opened && rec.events_fd >= 0)
		close(rec.events_fd);
	rec.events_fd = -1;
	rec.events_opened = 0;
	notices_free(rec.notices, rec.n_notices);
	rec.notices = NULL;
	rec.n_notices = 0;
	while (rec.pending) {
		struct pending_rec *p = rec.pending;
		rec.pending = p->next;
		mem_free(p);
	}
}

struct media_prompt *b2b_prompt_find(const char *path)
{
	for (size_t i = 0; i < rec.n_notices; i++)
		if (strcmp(rec.notices[i].path, path) == 0)
			return rec.notices[i].prompt;
	return NULL;
}

/* A Call-ID as a file name: letters, digits, '-', '_' and '.' kept, the rest '_'. */
static void file_safe(const char *in, char *out, size_t cap)
{
	size_t i = 0;
	for (; in[i] && i + 1 < cap && i < 64; i++) {
		char ch = in[i];
		int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		         (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || (ch == '.' && i);
		out[i] = ok ? ch : '_';
	}
	out[i] = '\0';
}

void b2b_call_record_start(struct b2b_call *call)
{
	const struct conf_route *r = call->route_cfg;
	/* The customer's leg: the caller, or the lead of an outbound call. */
	struct b2b_leg *cust = b2b_call_customer(call);
	struct b2b_leg *other = cust == &call->a ? &call->b : &call->a;
	int record = call->outbound ? call->conf->outbound.record : r && r->record;
	const char *notice = r ? r->record_notice : NULL;
	if (!record || !cust->ms || call->recording[0])
		return;
	char dir[400], name[80];
	snprintf(dir, sizeof(dir), "%s/recordings", call->conf->spool.dir);
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		log_err("rec", "cannot create %s: %s", dir, strerror(errno));
		return;
	}
	file_safe(call->id, name, sizeof(name));
	struct pending_rec *p = mem_zalloc(sizeof(*p));
	if (!p)
		return;
	snprintf(p->path, sizeof(p->path), "%s/%s-%llu.wav", dir, name,
	         (unsigned long long)clock_wall_ms());
	int rc = media_session_record(cust->ms, p->path);
	if (rc) {
		log_err("rec", "cannot record to %s: %s", p->path, strerror(-rc));
		metric_inc(metric_get(METRIC_COUNTER, "vacs_recordings_failed_total",
		                      "Recordings that could not start or be written"));
		mem_free(p);
		return;
	}
	p->owner = cust->id;
	snprintf(p->call_id, sizeof(p->call_id), "%s", call->id);
	p->next = rec.pending;
	rec.pending = p;
	snprintf(call->recording, sizeof(call->recording), "%s", p->path);
	log_info("rec", "recording to %s", p->path);
	if (notice && notice[0]) {
		struct media_prompt *np = b2b_prompt_find(notice);
		if (!np) {
			log_warn("rec", "notice %s is not loaded (configuration reloaded since?)",
			         notice);
			return;
		}
		/* Both parties hear that the call is recorded; their audio resumes after. */
		media_session_play(cust->ms, np, 0, 0);
		if (other->ms)
			media_session_play(other->ms, np, 0, 0);
	}
}

int b2b_record_event(const struct media_event *ev)
{
	struct pending_rec **pp = &rec.pending;
	while (*pp && (*pp)->owner != ev->owner)
		pp = &(*pp)->next;
	struct pending_rec *p = *pp;
	if (!p)
		return 0;
	*pp = p->next;
	if (ev->result) {
		log_set_call(p->call_id);
		log_err("rec", "recording %s failed: %s (%llu bytes kept)", p->path,
		        strerror(-ev->result), (unsigned long long)ev->bytes);
		log_set_call(NULL);
		metric_inc(metric_get(METRIC_COUNTER, "vacs_recordings_failed_total",
		                      "Recordings that could not start or be written"));
	} else {
		metric_inc(metric_get(METRIC_COUNTER, "vacs_recordings_total",
		                      "Recordings closed and synced"));
	}
	/* One line per closed file: what the uploader (the data layer) picks up. */
	json_t *o = json_object();
	char ts[40];
	clock_format_iso(clock_wall_ms(), ts, sizeof(ts));
	json_object_set_new(o, "call_id", json_string(p->call_id));
	json_object_set_new(o, "path", json_string(p->path));
	json_object_set_new(o, "result", json_integer(ev->result));
	json_object_set_new(o, "bytes", json_integer((json_int_t)ev->bytes));
	json_object_set_new(o, "closed", json_string(ts));
	b2b_spool_append("recordings.jsonl", o);
	mem_free(p);
	return 1;
}

int b2b_spool_append(const char *name, json_t *o)
{
	char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", b2b_g.conf->spool.dir, name);
	int rc = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0 || !line || dprintf(fd, "%s\n", line) < 0 || fsync(fd) < 0) {
		rc = line ? -errno : -ENOMEM;
		log_err("spool", "cannot append to %s: %s", path,
		        line ? strerror(errno) : "no memory");
	}
	if (fd >= 0)
		close(fd);
	free(line);
	return rc;
}

void b2b_call_step(struct b2b_call *call, const char *event, const char *detail)
{
	if (!rec.events_opened) {
		rec.events_opened = 1;
		char path[1024];
		snprintf(path, sizeof(path), "%s/call-events.jsonl", b2b_g.conf->spool.dir);
		rec.events_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (rec.events_fd < 0)
			log_err("spool", "cannot open %s: %s", path, strerror(errno));
	}
	/* Without the local file the store still gets the event. */
	char ts[40];
	clock_format_iso(clock_wall_ms(), ts, sizeof(ts));
	json_t *o = json_object();
	json_object_set_new(o, "call_id", json_string(call->id));
	json_object_set_new(o, "ts", json_string(ts));
	json_object_set_new(o, "event", json_string(event));
	json_object_set_new(o, "detail", json_string(detail ? detail : ""));
	json_object_set_new(o, "seq", json_integer(call->step_seq++));
	char *line = rec.events_fd >= 0 ? json_dumps(o, JSON_COMPACT) : NULL;
	b2b_store_put(DB_REC_CALL_EVENT, o);
	if (line && dprintf(rec.events_fd, "%s\n", line) < 0)
		log_err("spool", "call-events.jsonl: %s", strerror(errno));
	free(line);
}

/* Hands a record to the store (PostgreSQL, or its spool); the JSON lines files above stay
 * the operator's local trail. With no store configured db_put says -ENOTCONN: nothing
 * to do. A full mailbox loses the store copy only, so it is counted and logged. */
void b2b_store_put(enum db_rec kind, json_t *o)
{
	int rc = db_put(kind, o, NULL, NULL);
	if (rc == 0 || rc == -ENOTCONN)
		return;
	metric_inc(metric_get(METRIC_COUNTER, "vacs_store_refused_total",
	                      "Records the store refused (mailbox full or invalid)"));
	if (log_ratelimit_ok(&rec.store_rl))
		log_warn("store", "%s record not queued: %s", db_rec_name(kind), strerror(-rc));
}

/* ---- call life observers ---- */

#define LIFE_MAX 8

static struct {
	b2b_life_fn fn;
	void *arg;
} life[LIFE_MAX];
static unsigned n_life;

int b2b_life_watch(b2b_life_fn fn, void *arg)
{
	if (!fn)
		return -EINVAL;
	if (n_life == LIFE_MAX)
		return -ENOSPC;
	life[n_life].fn = fn;
	life[n_life].arg = arg;
	n_life++;
	return 0;
}

void b2b_life_emit(const struct b2b_call *call, enum b2b_life what, const char *agent,
                   const json_t *cdr)
{
	if (!n_life)
		return;
	struct b2b_life_ev ev = {
	    .what = what,
	    .call_id = call->id,
	    .direction = call->outbound ? "outbound" : "inbound",
	    .lead_id = call->lead_id,
	    .ref = call->ref,
	    .caller = call->caller_e164[0] ? call->caller_e164 : call->caller,
	    .called = call->called_e164[0] ? call->called_e164 : call->called,
	    .agent = agent ? agent : "",
	    .ts_ms = clock_wall_ms(),
	    .cdr = cdr,
	};
	for (unsigned i = 0; i < n_life; i++)
		life[i].fn(life[i].arg, &ev);
}
