/* API keys: generation, hashing and scopes, the in-memory table the http thread checks every
 * request against (reloaded from api_keys every few seconds), and POST/GET/DELETE /v1/keys. */
#include "control/keys.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "db/db.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

/*
 * Threads: ctl_keys_start/stop run on the main thread (inside ctl_init/ctl_close), the
 * check on the http thread, the reload and the /v1/keys answers on the db thread (db_query
 * callbacks). The table is under keys.lock, held only to copy or scan it, never across a
 * query. The db thread runs queries and their callbacks in order, so a reload that started
 * before a key was created or revoked here is applied before that change, never after it:
 * a change made through this node's API is visible at once and stays visible. A change
 * made on another node is seen at the next reload (REFRESH_US).
 *
 * Every db callback carries the epoch it was asked in; after ctl_keys_stop (and a new
 * start) an older answer is dropped.
 */

#define REFRESH_US       5000000u /* reload the table this often */
#define REFRESH_FIRST_US 500000u  /* until the first load succeeded */
#define NAME_MAX_CHARS   100
#define KEYS_MAX_BODY    4096

struct key_ent {
	int64_t id; /* 0 = bootstrap */
	char prefix[CTL_KEY_PREFIX_LEN + 1];
	unsigned char hash[CTL_KEY_HASH_LEN];
	unsigned scopes;
	int revoked;
	int used; /* since the last last_used_at write */
};

static struct {
	pthread_mutex_t lock;
	struct key_ent *boot; /* immutable between start and stop */
	size_t n_boot;
	struct key_ent *tab; /* from PostgreSQL, sorted by id */
	size_t n;
	int loaded;
	unsigned epoch;
	atomic_int refreshing;
	uint64_t next_refresh_us; /* http thread */
} keys = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const struct {
	const char *name;
	unsigned bit;
} scope_names[] = {
    {"read", (unsigned)CTL_SCOPE_READ & ~(unsigned)CTL_AUTH_API},
    {"calls:write", (unsigned)CTL_SCOPE_CALLS & ~(unsigned)CTL_AUTH_API},
    {"campaigns", (unsigned)CTL_SCOPE_CAMPAIGNS & ~(unsigned)CTL_AUTH_API},
    {"admin", (unsigned)CTL_SCOPE_ADMIN & ~(unsigned)CTL_AUTH_API},
};
#define N_SCOPES  (sizeof(scope_names) / sizeof(scope_names[0]))
#define ADMIN_BIT ((unsigned)CTL_SCOPE_ADMIN & ~(unsigned)CTL_AUTH_API)

/* ---- pure helpers ------------------------------------------------------------------------ */

int ctl_key_generate(char out[CTL_KEY_LEN + 1])
{
	static const char b64u[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char r[33];
	size_t got = 0;
	while (got < 32) {
		ssize_t n = getrandom(r + got, 32 - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	r[32] = 0;
	memcpy(out, "vacs_", 5);
	size_t o = 5;
	/* 32 bytes = 256 bits: 42 full 6-bit groups and 4 bits left (43 characters). */
	for (size_t i = 0; i < 33 && o < CTL_KEY_LEN; i += 3) {
		unsigned v = (unsigned)r[i] << 16 | (i + 1 < 33 ? (unsigned)r[i + 1] << 8 : 0) |
		             (i + 2 < 33 ? r[i + 2] : 0);
		for (int k = 18; k >= 0 && o < CTL_KEY_LEN; k -= 6)
			out[o++] = b64u[(v >> k) & 63];
	}
	out[CTL_KEY_LEN] = '\0';
	explicit_bzero(r, sizeof(r));
	return 0;
}

void ctl_key_hash(const char *key, size_t len, unsigned char out[CTL_KEY_HASH_LEN])
{
	unsigned int n = CTL_KEY_HASH_LEN;
	if (!EVP_Digest(key, len, out, &n, EVP_sha256(), NULL))
		memset(out, 0, CTL_KEY_HASH_LEN); /* matches no stored key */
}

void ctl_key_hash_hex(const char *key, size_t len, char out[2 * CTL_KEY_HASH_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char h[CTL_KEY_HASH_LEN];
	ctl_key_hash(key, len, h);
	for (size_t i = 0; i < CTL_KEY_HASH_LEN; i++) {
		out[2 * i] = hex[h[i] >> 4];
		out[2 * i + 1] = hex[h[i] & 15];
	}
	out[2 * CTL_KEY_HASH_LEN] = '\0';
}

static int hex_decode(const char *s, unsigned char *out, size_t n)
{
	if (!s || strlen(s) != 2 * n)
		return -EINVAL;
	for (size_t i = 0; i < 2 * n; i++) {
		char c = s[i];
		int v = c >= '0' && c <= '9'   ? c - '0'
		        : c >= 'a' && c <= 'f' ? c - 'a' + 10
		        : c >= 'A' && c <= 'F' ? c - 'A' + 10
		                               : -1;
		if (v < 0)
			return -EINVAL;
		if (i % 2)
			out[i / 2] = (unsigned char)(out[i / 2] | v);
		else
			out[i / 2] = (unsigned char)(v << 4);
	}
	return 0;
}

const char *ctl_bearer_token(const char *hdr, size_t *len)
{
	if (!hdr || strncasecmp(hdr, "Bearer ", 7) != 0)
		return NULL;
	const char *tok = hdr + 7;
	while (*tok == ' ' || *tok == '\t')
		tok++;
	size_t n = strlen(tok);
	while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
		n--;
	if (!n)
		return NULL;
	*len = n;
	return tok;
}

unsigned ctl_scope_bit(const char *name)
{
	for (size_t i = 0; name && i < N_SCOPES; i++) {
		if (strcmp(name, scope_names[i].name) == 0)
			return scope_names[i].bit;
	}
	return 0;
}

const char *ctl_scope_name(unsigned bit)
{
	for (size_t i = 0; i < N_SCOPES; i++) {
		if (scope_names[i].bit == bit)
			return scope_names[i].name;
	}
	return NULL;
}

int ctl_scope_allows(unsigned held, unsigned flags)
{
	unsigned need = flags & CTL_SCOPE_BITS;
	return (held & ADMIN_BIT) || (held & need) == need;
}

const char *ctl_scope_missing(unsigned held, unsigned flags)
{
	unsigned need = flags & CTL_SCOPE_BITS & ~held;
	for (size_t i = 0; i < N_SCOPES; i++) {
		if (need & scope_names[i].bit)
			return scope_names[i].name;
	}
	return "admin";
}

int ctl_scopes_parse(const json_t *arr, unsigned *mask, char *msg, size_t msglen)
{
	unsigned m = 0;
	size_t i;
	json_t *v;
	if (!json_is_array(arr) || json_array_size(arr) == 0) {
		snprintf(msg, msglen,
		         "scopes must be a non-empty array of \"read\", \"calls:write\", "
		         "\"campaigns\", \"admin\"");
		return -EINVAL;
	}
	json_array_foreach(arr, i, v)
	{
		unsigned b =
		    json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v)
		        ? ctl_scope_bit(json_string_value(v))
		        : 0;
		if (!b) {
			if (json_is_string(v))
				snprintf(
				    msg, msglen,
				    "unknown scope \"%.40s\": use read, calls:write, campaigns or "
				    "admin",
				    json_string_value(v));
			else
				snprintf(msg, msglen, "scopes[%zu] must be a string", i);
			return -EINVAL;
		}
		m |= b;
	}
	*mask = m;
	return 0;
}

/* ---- the table --------------------------------------------------------------------------- */

/* Constant time in the contents: every byte of every entry is compared. */
static int hash_eq(const unsigned char *a, const unsigned char *b)
{
	unsigned char d = 0;
	for (size_t i = 0; i < CTL_KEY_HASH_LEN; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

enum ctl_key_verdict ctl_keys_check(const char *token, size_t len, struct ctl_key_who *who)
{
	unsigned char h[CTL_KEY_HASH_LEN];
	enum ctl_key_verdict v = CTL_KEY_UNKNOWN;
	if (!token || !len)
		return CTL_KEY_UNKNOWN;
	ctl_key_hash(token, len, h);
	struct key_ent *hit = NULL;
	pthread_mutex_lock(&keys.lock);
	for (size_t i = 0; i < keys.n_boot; i++) {
		if (hash_eq(h, keys.boot[i].hash))
			hit = &keys.boot[i];
	}
	for (size_t i = 0; i < keys.n; i++) {
		if (hash_eq(h, keys.tab[i].hash))
			hit = &keys.tab[i];
	}
	if (hit && hit->revoked) {
		v = CTL_KEY_REVOKED;
	} else if (hit) {
		v = CTL_KEY_OK;
		hit->used = hit->id != 0;
		if (who) {
			who->id = hit->id;
			memcpy(who->prefix, hit->prefix, sizeof(who->prefix));
			who->scopes = hit->scopes;
		}
	}
	pthread_mutex_unlock(&keys.lock);
	explicit_bzero(h, sizeof(h));
	return v;
}

/* keys.lock held. The entry with that id, or NULL. */
static struct key_ent *find_id(int64_t id)
{
	size_t lo = 0, hi = keys.n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (keys.tab[mid].id == id)
			return &keys.tab[mid];
		if (keys.tab[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* One api_keys row -> an entry; -EINVAL when it does not fit. */
static int row_entry(json_t *row, struct key_ent *e)
{
	json_t *sc = json_object_get(row, "scopes");
	const char *prefix = json_string_value(json_object_get(row, "prefix"));
	char msg[8];
	memset(e, 0, sizeof(*e));
	e->id = (int64_t)json_integer_value(json_object_get(row, "id"));
	if (e->id <= 0 || !prefix ||
	    hex_decode(json_string_value(json_object_get(row, "hash")), e->hash, CTL_KEY_HASH_LEN))
		return -EINVAL;
	snprintf(e->prefix, sizeof(e->prefix), "%s", prefix);
	if (ctl_scopes_parse(sc, &e->scopes, msg, sizeof(msg)))
		e->scopes = 0; /* a key without scopes reaches routes with no scope only */
	e->revoked = json_is_true(json_object_get(row, "revoked"));
	return 0;
}

static void on_reload(void *arg, int rc, json_t *rows)
{
	unsigned epoch = (unsigned)(uintptr_t)arg;
	size_t n = rc == 0 ? json_array_size(rows) : 0, k = 0, i;
	struct key_ent *tab = NULL;
	json_t *row;
	if (rc == 0 && n) {
		tab = mem_zalloc(n * sizeof(*tab));
		if (!tab)
			rc = -ENOMEM;
	}
	if (rc == 0) {
		json_array_foreach(rows, i, row)
		{
			if (row_entry(row, &tab[k]) == 0 && (!k || tab[k].id > tab[k - 1].id))
				k++;
		}
	}
	pthread_mutex_lock(&keys.lock);
	if (rc == 0 && epoch == keys.epoch) {
		/* keep the marks of keys used since the last write */
		for (i = 0; i < k; i++) {
			struct key_ent *old = find_id(tab[i].id);
			tab[i].used = old && old->used;
		}
		mem_free(keys.tab);
		keys.tab = tab;
		keys.n = k;
		tab = NULL;
		if (!keys.loaded)
			log_info("ctl", "api keys: %zu loaded from PostgreSQL", k);
		keys.loaded = 1;
	}
	pthread_mutex_unlock(&keys.lock);
	mem_free(tab);
	json_decref(rows);
	atomic_store(&keys.refreshing, 0);
}

static void on_ignore(void *arg, int rc, json_t *rows)
{
	(void)arg;
	if (rc)
		log_warn("ctl", "api keys: writing last_used_at failed: %s", strerror(-rc));
	json_decref(rows);
}

/* The ids used since the last call as a PostgreSQL array literal ("{3,7}"), or NULL. */
static char *take_used(void)
{
	char *s = NULL;
	size_t len = 0, cap = 0;
	pthread_mutex_lock(&keys.lock);
	for (size_t i = 0; i < keys.n; i++) {
		if (!keys.tab[i].used)
			continue;
		if (len + 24 > cap) {
			size_t ncap = cap ? cap * 2 : 256;
			char *ns = mem_realloc(s, ncap);
			if (!ns)
				break;
			s = ns;
			cap = ncap;
		}
		len += (size_t)snprintf(s + len, cap - len, "%c%lld", len ? ',' : '{',
		                        (long long)keys.tab[i].id);
		keys.tab[i].used = 0;
	}
	pthread_mutex_unlock(&keys.lock);
	if (!s)
		return NULL;
	if (len + 2 > cap) {
		char *ns = mem_realloc(s, len + 2);
		if (!ns) {
			mem_free(s);
			return NULL;
		}
		s = ns;
	}
	memcpy(s + len, "}", 2);
	return s;
}

void ctl_keys_tick(uint64_t now_us)
{
	if (now_us < keys.next_refresh_us || !db_pg_up() || atomic_load(&keys.refreshing))
		return;
	pthread_mutex_lock(&keys.lock);
	unsigned epoch = keys.epoch;
	int loaded = keys.loaded;
	pthread_mutex_unlock(&keys.lock);
	keys.next_refresh_us = now_us + (loaded ? REFRESH_US : REFRESH_FIRST_US);
	char *used = take_used();
	if (used) {
		const char *p[] = {used};
		db_query("UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::bigint[])", p,
		         1, on_ignore, NULL);
		mem_free(used);
	}
	atomic_store(&keys.refreshing, 1);
	if (db_query("SELECT id, prefix, hash, array_to_json(scopes) AS scopes, "
	             "revoked_at IS NOT NULL AS revoked FROM api_keys ORDER BY id",
	             NULL, 0, on_reload, (void *)(uintptr_t)epoch))
		atomic_store(&keys.refreshing, 0);
}

/* ---- /v1/keys ------------------------------------------------------------------------------ */

/* Answers with o as JSON (steals o). */
static void reply_json(uint64_t token, unsigned code, json_t *o)
{
	size_t n = o ? json_dumpb(o, NULL, 0, JSON_COMPACT) : 0;
	char *b = n ? mem_alloc(n + 1) : NULL;
	if (!b || json_dumpb(o, b, n, JSON_COMPACT) != n) {
		mem_free(b);
		json_decref(o);
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
		return;
	}
	b[n] = '\n';
	json_decref(o);
	ctl_reply(token, code, NULL, b, n + 1);
}

static void reply_db_error(uint64_t token, int rc)
{
	if (rc == -ENOTCONN || rc == -ECANCELED || rc == -EAGAIN)
		ctl_reply_error(token, 503, "store_unavailable",
		                "the key store (PostgreSQL) is not available: try again", NULL);
	else
		ctl_reply_error(token, 500, "internal", "the key store failed", NULL);
}

/* Number of UTF-8 characters of s (valid UTF-8, as jansson guarantees), or SIZE_MAX when it
 * holds a control character. */
static size_t name_chars(const char *s)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return SIZE_MAX;
		n += (*p & 0xc0) != 0x80;
	}
	return n;
}

struct create_req {
	uint64_t token;
	unsigned epoch;
	struct key_ent ent;
	char key[CTL_KEY_LEN + 1];
};

static void on_created(void *arg, int rc, json_t *rows)
{
	struct create_req *c = arg;
	json_t *row = rc == 0 ? json_array_get(rows, 0) : NULL;
	if (!row) {
		if (rc == -EINVAL)
			log_warn("ctl", "api keys: PostgreSQL refused a new key (prefix %s)",
			         c->ent.prefix);
		reply_db_error(c->token, rc ? rc : -EIO);
		goto out;
	}
	c->ent.id = (int64_t)json_integer_value(json_object_get(row, "id"));
	pthread_mutex_lock(&keys.lock);
	if (c->epoch == keys.epoch && c->ent.id > 0 && !find_id(c->ent.id)) {
		struct key_ent *nt = mem_realloc(keys.tab, (keys.n + 1) * sizeof(*nt));
		if (nt) {
			size_t at = keys.n;
			while (at && nt[at - 1].id > c->ent.id)
				at--;
			memmove(nt + at + 1, nt + at, (keys.n - at) * sizeof(*nt));
			nt[at] = c->ent;
			keys.tab = nt;
			keys.n++;
		}
	}
	pthread_mutex_unlock(&keys.lock);
	json_t *o = json_deep_copy(row);
	if (o) {
		json_object_set_new(o, "key", json_string(c->key));
		/* id, name, prefix, scopes, key, created_at: the order users read */
	}
	log_info("ctl", "api keys: created key %lld (prefix %s)", (long long)c->ent.id,
	         c->ent.prefix);
	reply_json(c->token, 201, o);
out:
	json_decref(rows);
	explicit_bzero(c, sizeof(*c));
	mem_free(c);
}

static void on_keys_create(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	json_error_t jerr;
	char msg[200];
	ctl_req_secret_answer(rq); /* the new key is never written to idempotency_keys */
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(j)) {
		snprintf(msg, sizeof(msg), "the body must be a JSON object%s%.120s", j ? "" : ": ",
		         j ? "" : jerr.text);
		ctl_reply_error(token, 400, "invalid_json", msg, NULL);
		goto out;
	}
	const char *k;
	json_t *v;
	json_object_foreach(j, k, v)
	{
		if (strcmp(k, "name") != 0 && strcmp(k, "scopes") != 0) {
			snprintf(msg, sizeof(msg), "unknown field \"%.60s\": use name and scopes",
			         k);
			ctl_reply_error(token, 400, "invalid_field", msg, k);
			goto out;
		}
	}
	json_t *name = json_object_get(j, "name"), *scopes = json_object_get(j, "scopes");
	if (!name) {
		ctl_reply_error(token, 400, "missing_field", "name is required", "name");
		goto out;
	}
	size_t nc =
	    json_is_string(name) && strlen(json_string_value(name)) == json_string_length(name)
	        ? name_chars(json_string_value(name))
	        : SIZE_MAX;
	if (nc < 1 || nc > NAME_MAX_CHARS) {
		ctl_reply_error(token, 400, "invalid_field",
		                "name must be a string of 1 to 100 characters without control "
		                "characters",
		                "name");
		goto out;
	}
	if (!scopes) {
		ctl_reply_error(token, 400, "missing_field",
		                "scopes is required: a non-empty array of read, calls:write, "
		                "campaigns, admin",
		                "scopes");
		goto out;
	}
	unsigned mask;
	if (ctl_scopes_parse(scopes, &mask, msg, sizeof(msg))) {
		ctl_reply_error(token, 400, "invalid_field", msg, "scopes");
		goto out;
	}
	if (!db_pg_up()) {
		reply_db_error(token, -ENOTCONN);
		goto out;
	}
	struct create_req *c = mem_zalloc(sizeof(*c));
	if (!c) {
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		goto out;
	}
	c->token = token;
	if (ctl_key_generate(c->key)) {
		mem_free(c);
		ctl_reply_error(token, 500, "internal", "no randomness for a key", NULL);
		goto out;
	}
	char hex[2 * CTL_KEY_HASH_LEN + 1], arr[64];
	ctl_key_hash(c->key, CTL_KEY_LEN, c->ent.hash);
	ctl_key_hash_hex(c->key, CTL_KEY_LEN, hex);
	memcpy(c->ent.prefix, c->key, CTL_KEY_PREFIX_LEN);
	c->ent.scopes = mask;
	size_t off = 0;
	for (size_t i = 0; i < N_SCOPES; i++) {
		if (mask & scope_names[i].bit)
			off += (size_t)snprintf(arr + off, sizeof(arr) - off, "%c%s",
			                        off ? ',' : '{', scope_names[i].name);
	}
	snprintf(arr + off, sizeof(arr) - off, "}");
	pthread_mutex_lock(&keys.lock);
	c->epoch = keys.epoch;
	pthread_mutex_unlock(&keys.lock);
	const char *p[] = {json_string_value(name), c->ent.prefix, hex, arr};
	int rc = db_query("INSERT INTO api_keys (name, prefix, hash, scopes) "
	                  "VALUES ($1, $2, $3, $4::text[]) RETURNING id, name, prefix, "
	                  "array_to_json(scopes) AS scopes, to_json(created_at) AS created_at",
	                  p, 4, on_created, c);
	explicit_bzero(hex, sizeof(hex));
	if (rc) {
		explicit_bzero(c, sizeof(*c));
		mem_free(c);
		reply_db_error(token, rc);
	}
out:
	json_decref(j);
}

static void on_listed(void *arg, int rc, json_t *rows)
{
	uint64_t *token = arg;
	if (rc)
		reply_db_error(*token, rc);
	else
		reply_json(*token, 200, json_pack("{s:O}", "keys", rows));
	json_decref(rows);
	mem_free(token);
}

static void on_keys_list(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	uint64_t *t = mem_alloc(sizeof(*t));
	if (!t) {
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		return;
	}
	*t = token;
	int rc =
	    db_query("SELECT id, name, prefix, array_to_json(scopes) AS scopes, "
	             "to_json(created_at) AS created_at, to_json(last_used_at) AS "
	             "last_used_at, to_json(revoked_at) AS revoked_at FROM api_keys ORDER BY id",
	             NULL, 0, on_listed, t);
	if (rc) {
		mem_free(t);
		reply_db_error(token, rc);
	}
}

struct revoke_req {
	uint64_t token;
	unsigned epoch;
	int64_t id;
};

static void on_revoked(void *arg, int rc, json_t *rows)
{
	struct revoke_req *r = arg;
	if (rc) {
		reply_db_error(r->token, rc);
	} else if (json_array_size(rows) == 0) {
		ctl_reply_error(r->token, 404, "not_found", "no API key has that id", NULL);
	} else {
		pthread_mutex_lock(&keys.lock);
		struct key_ent *e = r->epoch == keys.epoch ? find_id(r->id) : NULL;
		if (e)
			e->revoked = 1;
		pthread_mutex_unlock(&keys.lock);
		log_info("ctl", "api keys: revoked key %lld", (long long)r->id);
		ctl_reply(r->token, 204, NULL, NULL, 0);
	}
	json_decref(rows);
	mem_free(r);
}

static void on_keys_revoke(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	const char *id = ctl_req_path(rq) + strlen("/v1/keys/");
	size_t n = strspn(id, "0123456789");
	if (!n || n > 18 || id[n] || id[0] == '0') {
		ctl_reply_error(token, 404, "not_found", "no API key has that id", NULL);
		return;
	}
	struct revoke_req *r = mem_zalloc(sizeof(*r));
	if (!r) {
		ctl_reply_error(token, 503, "busy", "out of memory", NULL);
		return;
	}
	r->token = token;
	r->id = strtoll(id, NULL, 10);
	pthread_mutex_lock(&keys.lock);
	r->epoch = keys.epoch;
	pthread_mutex_unlock(&keys.lock);
	const char *p[] = {id};
	int rc = db_query("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
	                  "WHERE id = $1::bigint RETURNING id",
	                  p, 1, on_revoked, r);
	if (rc) {
		mem_free(r);
		reply_db_error(token, rc);
	}
}

/* ---- life ----------------------------------------------------------------------------------- */

int ctl_keys_start(const char *const *bootstrap)
{
	size_t n = 0;
	int rc;
	ctl_keys_stop();
	for (size_t i = 0; bootstrap && bootstrap[i]; i++)
		n += bootstrap[i][0] != '\0';
	struct key_ent *boot = n ? mem_zalloc(n * sizeof(*boot)) : NULL;
	if (n && !boot)
		return -ENOMEM;
	for (size_t i = 0, k = 0; k < n; i++) {
		if (!bootstrap[i][0])
			continue;
		ctl_key_hash(bootstrap[i], strlen(bootstrap[i]), boot[k].hash);
		snprintf(boot[k].prefix, sizeof(boot[k].prefix), "%s", CTL_KEY_BOOTSTRAP);
		boot[k].scopes = CTL_SCOPE_BITS;
		k++;
	}
	pthread_mutex_lock(&keys.lock);
	keys.boot = boot;
	keys.n_boot = n;
	pthread_mutex_unlock(&keys.lock);
	keys.next_refresh_us = 0;
	atomic_store(&keys.refreshing, 0);
	rc = ctl_route_add("POST", "/v1/keys", CTL_SCOPE_ADMIN | CTL_IDEMPOTENT, KEYS_MAX_BODY,
	                   10000, on_keys_create, NULL);
	if (!rc)
		rc =
		    ctl_route_add("GET", "/v1/keys", CTL_SCOPE_ADMIN, 0, 10000, on_keys_list, NULL);
	if (!rc)
		rc = ctl_route_add("DELETE", "/v1/keys/", CTL_SCOPE_ADMIN, 0, 10000, on_keys_revoke,
		                   NULL);
	if (rc)
		ctl_keys_stop();
	return rc;
}

void ctl_keys_stop(void)
{
	pthread_mutex_lock(&keys.lock);
	if (keys.boot)
		explicit_bzero(keys.boot, keys.n_boot * sizeof(*keys.boot));
	mem_free(keys.boot);
	mem_free(keys.tab);
	keys.boot = keys.tab = NULL;
	keys.n_boot = keys.n = 0;
	keys.loaded = 0;
	keys.epoch++;
	pthread_mutex_unlock(&keys.lock);
}
