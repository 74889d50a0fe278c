/* Idempotency-Key: the in-memory map of keys in flight and of recent answers, and their
 * copies in PostgreSQL's idempotency_keys. */
#include "control/idem.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "db/db.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

/*
 * Threads: everything here runs on the http thread except the db_query callbacks (db
 * thread), which touch nothing of the map: the lookup hands its row to ctl_http_resume.
 *
 * An entry is (caller's key prefix, Idempotency-Key). In flight it has an owner (the
 * request's token); done, it holds the answer for TTL_US. The map keeps at most MAX_DONE
 * answers (the oldest go first) and answers up to MAX_BODY bytes; with PostgreSQL up every
 * answer kept is also written there (ON CONFLICT DO NOTHING: the first one wins) and a key
 * the map does not know is looked up there before the handler runs, so a repeat is
 * replayed after a restart and on another node. Without PostgreSQL the map is all there
 * is: answers do not survive a restart.
 */

#define TTL_US   (24ull * 3600 * 1000000)
#define PURGE_US (600ull * 1000000) /* delete expired rows this often */
#define MAX_DONE 4096
#define MAX_BODY (1u << 20)
#define TTL_SQL  "interval '24 hours'"

struct idem_ent {
	struct idem_ent *prev, *next; /* oldest first */
	char prefix[16];
	char *key;
	char method[8];
	char *path;
	int done;
	uint64_t owner;      /* token, while in flight */
	uint64_t created_us; /* done: when the answer was kept */
	unsigned code;
	char ctype[128];
	char *body;
	size_t len;
};

static struct {
	struct idem_ent *head, *tail;
	size_t n_done;
	uint64_t next_purge_us;
} idem;

static void ent_free(struct idem_ent *e)
{
	if (!e)
		return;
	mem_free(e->key);
	mem_free(e->path);
	mem_free(e->body);
	mem_free(e);
}

static void unlink_ent(struct idem_ent *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		idem.head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		idem.tail = e->prev;
	if (e->done)
		idem.n_done--;
	ent_free(e);
}

static void append(struct idem_ent *e)
{
	e->next = NULL;
	e->prev = idem.tail;
	if (idem.tail)
		idem.tail->next = e;
	else
		idem.head = e;
	idem.tail = e;
}

static struct idem_ent *find(const char *prefix, const char *key)
{
	for (struct idem_ent *e = idem.tail; e; e = e->prev) {
		if (strcmp(e->key, key) == 0 && strcmp(e->prefix, prefix) == 0)
			return e;
	}
	return NULL;
}

static int same_request(const struct idem_ent *e, const char *method, const char *path)
{
	return strcmp(e->method, method) == 0 && strcmp(e->path, path) == 0;
}

static int copy_answer(const struct idem_ent *e, struct ctl_idem_answer *ans)
{
	ans->code = e->code;
	snprintf(ans->ctype, sizeof(ans->ctype), "%s", e->ctype);
	ans->len = e->len;
	ans->body = NULL;
	if (!e->len)
		return 0;
	ans->body = mem_alloc(e->len);
	if (!ans->body)
		return -ENOMEM;
	memcpy(ans->body, e->body, e->len);
	return 0;
}

static void on_ignore(void *arg, int rc, json_t *rows)
{
	(void)arg;
	if (rc && rc != -ECANCELED)
		log_warn("ctl", "idempotency keys: a PostgreSQL write failed: %s", strerror(-rc));
	json_decref(rows);
}

static void on_lookup(void *arg, int rc, json_t *rows)
{
	uint64_t *token = arg;
	json_t *row = rc == 0 ? json_array_get(rows, 0) : NULL;
	ctl_http_resume(*token, json_incref(row));
	json_decref(rows);
	mem_free(token);
}

enum ctl_idem_verdict ctl_idem_begin(const char *prefix, const char *key, const char *method,
                                     const char *path, uint64_t token, struct ctl_idem_answer *ans)
{
	struct idem_ent *e = find(prefix, key);
	if (e && !same_request(e, method, path))
		return CTL_IDEM_REUSED;
	if (e && !e->done)
		return CTL_IDEM_BUSY;
	if (e)
		return copy_answer(e, ans) ? CTL_IDEM_BUSY : CTL_IDEM_REPLAY;
	e = mem_zalloc(sizeof(*e));
	if (!e)
		return CTL_IDEM_BUSY; /* cannot track it: refuse rather than risk a double */
	snprintf(e->prefix, sizeof(e->prefix), "%s", prefix);
	snprintf(e->method, sizeof(e->method), "%s", method);
	e->key = mem_strdup(key);
	e->path = mem_strdup(path);
	e->owner = token;
	if (!e->key || !e->path) {
		ent_free(e);
		return CTL_IDEM_BUSY;
	}
	append(e);
	if (!db_pg_up())
		return CTL_IDEM_RUN;
	uint64_t *t = mem_alloc(sizeof(*t));
	if (!t)
		return CTL_IDEM_RUN;
	*t = token;
	const char *p[] = {prefix, key};
	if (db_query("SELECT method, path, status, response FROM idempotency_keys "
	             "WHERE key_prefix = $1 AND key = $2 AND created_at > now() - " TTL_SQL,
	             p, 2, on_lookup, t)) {
		mem_free(t);
		return CTL_IDEM_RUN; /* PostgreSQL went away: memory only */
	}
	return CTL_IDEM_LOOKUP;
}

/* The entry in flight owned by token, or NULL. */
static struct idem_ent *owned(const char *prefix, const char *key, uint64_t token)
{
	struct idem_ent *e = find(prefix, key);
	return e && !e->done && e->owner == token ? e : NULL;
}

/* Makes e done with the answer; 0, or -errno (e unchanged). */
static int keep(struct idem_ent *e, unsigned code, const char *ctype, const char *body, size_t len)
{
	char *b = NULL;
	if (len > MAX_BODY)
		return -EFBIG;
	if (len) {
		b = mem_alloc(len);
		if (!b)
			return -ENOMEM;
		memcpy(b, body, len);
	}
	e->done = 1;
	e->owner = 0;
	e->code = code;
	snprintf(e->ctype, sizeof(e->ctype), "%s", ctype ? ctype : "application/json");
	e->body = b;
	e->len = len;
	e->created_us = clock_now_us();
	idem.n_done++;
	while (idem.n_done > MAX_DONE) {
		struct idem_ent *old = idem.head;
		while (old && !old->done)
			old = old->next;
		if (!old || old == e)
			break;
		unlink_ent(old);
	}
	return 0;
}

enum ctl_idem_verdict ctl_idem_resolve(const char *prefix, const char *key, const char *method,
                                       const char *path, uint64_t token, const json_t *row,
                                       struct ctl_idem_answer *ans)
{
	struct idem_ent *e = owned(prefix, key, token);
	if (!row)
		return CTL_IDEM_RUN;
	const char *m = json_string_value(json_object_get(row, "method"));
	const char *p = json_string_value(json_object_get(row, "path"));
	if (!m || !p || strcmp(m, method) != 0 || strcmp(p, path) != 0) {
		if (e)
			unlink_ent(e);
		return CTL_IDEM_REUSED;
	}
	json_t *resp = json_object_get(row, "response");
	json_t *body = json_object_get(resp, "body");
	const char *ctype = json_string_value(json_object_get(resp, "content_type"));
	json_int_t code = json_integer_value(json_object_get(row, "status"));
	ans->code = code >= 200 && code <= 599 ? (unsigned)code : 500;
	snprintf(ans->ctype, sizeof(ans->ctype), "%s", ctype ? ctype : "application/json");
	ans->len = json_string_length(body);
	ans->body = ans->len ? mem_alloc(ans->len) : NULL;
	if (ans->len && !ans->body) {
		if (e)
			unlink_ent(e);
		return CTL_IDEM_BUSY;
	}
	if (ans->len)
		memcpy(ans->body, json_string_value(body), ans->len);
	if (e && keep(e, ans->code, ans->ctype, ans->body, ans->len))
		unlink_ent(e);
	return CTL_IDEM_REPLAY;
}

static void persist(const struct idem_ent *e)
{
	if (!db_pg_up())
		return;
	/* jsonb keeps strings exactly: the body is stored as one, so the replay is byte for
	 * byte (not valid UTF-8, or with a NUL: memory only). */
	json_t *resp = json_object();
	json_t *body = json_stringn(e->body ? e->body : "", e->len);
	if (!resp || !body || memchr(e->body ? e->body : "", '\0', e->len)) {
		json_decref(body);
		json_decref(resp);
		return;
	}
	json_object_set_new(resp, "content_type", json_string(e->ctype));
	json_object_set_new(resp, "body", body);
	char *r = json_dumps(resp, JSON_COMPACT);
	json_decref(resp);
	if (!r)
		return;
	char status[16];
	snprintf(status, sizeof(status), "%u", e->code);
	const char *p[] = {e->prefix, e->key, e->method, e->path, status, r};
	db_query("INSERT INTO idempotency_keys (key_prefix, key, method, path, status, response) "
	         "VALUES ($1, $2, $3, $4, $5::integer, $6::jsonb) ON CONFLICT DO NOTHING",
	         p, 6, on_ignore, NULL);
	free(r);
}

void ctl_idem_finish(const char *prefix, const char *key, uint64_t token, unsigned code,
                     const char *ctype, const char *body, size_t len, int durable)
{
	struct idem_ent *e = owned(prefix, key, token);
	if (!e)
		return;
	if (code >= 500 || code == 409 || code == 429 || keep(e, code, ctype, body, len)) {
		unlink_ent(e);
		return;
	}
	if (durable)
		persist(e);
}

void ctl_idem_abandon(const char *prefix, const char *key, uint64_t token)
{
	struct idem_ent *e = owned(prefix, key, token);
	if (e)
		unlink_ent(e);
}

void ctl_idem_tick(uint64_t now_us)
{
	struct idem_ent *e = idem.head, *next;
	for (; e; e = next) {
		next = e->next;
		if (e->done && now_us - e->created_us > TTL_US)
			unlink_ent(e);
	}
	if (now_us >= idem.next_purge_us && db_pg_up()) {
		idem.next_purge_us = now_us + PURGE_US;
		db_query("DELETE FROM idempotency_keys WHERE created_at < now() - " TTL_SQL, NULL,
		         0, on_ignore, NULL);
	}
}

void ctl_idem_stop(void)
{
	while (idem.head)
		unlink_ent(idem.head);
	idem.n_done = 0;
	idem.next_purge_us = 0;
}
