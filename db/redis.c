/* Redis primitives over one synchronous hiredis connection with reconnect and backoff. */
#include "db/redis.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define MOD "redis"

/* XAUTOCLAIM rounds per claim: each round scans up to 10 * COUNT pending entries. */
#define RECLAIM_ROUNDS 16
/* Longest wait of one blocking claim. */
#define BLOCK_MAX_MS 60000u

struct db_redis {
	redisContext *c; /* NULL while down */
	struct db_redis_url url;
	char target[320]; /* "unix:/path db N" or "host:port db N", for logs (no password) */
	char *prefix;
	size_t prefix_len;
	unsigned connect_timeout_ms;
	unsigned cmd_timeout_ms;
	unsigned backoff_min_ms;
	unsigned backoff_max_ms;
	unsigned backoff_ms;  /* wait after the last failed attempt; 0 = none failed yet */
	uint64_t next_try_us; /* monotonic time before which no reconnect is attempted */
	uint64_t down_since_us;
	int down_logged; /* the "down" line was logged and "up" is owed */
	struct log_ratelimit rl;
};

/* ---- URL parsing ---- */

__attribute__((format(printf, 3, 4))) static int url_fail(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Copies s[0..n) into out (cap bytes) decoding %XX. 0, -EINVAL (bad escape, NUL) or
 * -ENAMETOOLONG. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '%') {
			if (i + 2 >= n)
				return -EINVAL;
			int hi = hexval(s[i + 1]);
			int lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			ch = (char)(hi * 16 + lo);
			i += 2;
		}
		if (o + 1 >= cap)
			return -ENAMETOOLONG;
		out[o++] = ch;
	}
	out[o] = '\0';
	return 0;
}

/* Parses a decimal number in [lo, hi] from s[0..n). 0 or -EINVAL. */
static int parse_uint(const char *s, size_t n, unsigned long lo, unsigned long hi,
                      unsigned long *out)
{
	if (n == 0 || n > 10)
		return -EINVAL;
	unsigned long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_tcp(const char *p, struct db_redis_url *u, char *err, size_t errlen)
{
	const char *end = p + strlen(p);
	const char *slash = strchr(p, '/');
	const char *hostpart_end = slash ? slash : end;
	const char *q = memchr(p, '?', (size_t)(hostpart_end - p));
	if (q)
		return url_fail(err, errlen,
		                "redis URL: no '?' query in redis:// URLs (the db goes in /N)");
	/* userinfo: up to the last '@' before the path */
	const char *at = NULL;
	for (const char *s = p; s < hostpart_end; s++)
		if (*s == '@')
			at = s;
	const char *h = p;
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (!colon)
			return url_fail(err, errlen,
			                "redis URL: credentials need the form "
			                "[user]:password@");
		if (pct_decode(p, (size_t)(colon - p), u->user, sizeof(u->user)) < 0)
			return url_fail(err, errlen, "redis URL: bad or too long user name");
		if (pct_decode(colon + 1, (size_t)(at - colon - 1), u->password,
		               sizeof(u->password)) < 0)
			return url_fail(err, errlen,
			                "redis URL: bad %%-escape in password or password too "
			                "long");
		if (!u->password[0])
			return url_fail(err, errlen, "redis URL: empty password after ':'");
		h = at + 1;
	}
	/* host, [v6] or name */
	const char *hend;
	const char *port = NULL;
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(hostpart_end - h));
		if (!rb)
			return url_fail(err, errlen, "redis URL: missing ']' after IPv6 host");
		if ((size_t)(rb - h - 1) >= sizeof(u->host) || rb == h + 1)
			return url_fail(err, errlen, "redis URL: bad IPv6 host");
		memcpy(u->host, h + 1, (size_t)(rb - h - 1));
		u->host[rb - h - 1] = '\0';
		hend = rb + 1;
		if (hend < hostpart_end && *hend != ':')
			return url_fail(err, errlen, "redis URL: unexpected text after IPv6 host");
	} else {
		hend = memchr(h, ':', (size_t)(hostpart_end - h));
		if (!hend)
			hend = hostpart_end;
		if (hend == h)
			return url_fail(err, errlen, "redis URL: missing host");
		if ((size_t)(hend - h) >= sizeof(u->host))
			return url_fail(err, errlen, "redis URL: host name too long");
		memcpy(u->host, h, (size_t)(hend - h));
		u->host[hend - h] = '\0';
	}
	u->port = 6379;
	if (hend < hostpart_end && *hend == ':') {
		port = hend + 1;
		unsigned long v;
		char shown[16];
		snprintf(shown, sizeof(shown), "%.*s", (int)(hostpart_end - port), port);
		if (parse_uint(port, (size_t)(hostpart_end - port), 1, 65535, &v) < 0)
			return url_fail(err, errlen, "redis URL: bad port '%s' (1..65535)", shown);
		u->port = (uint16_t)v;
	}
	if (slash && slash[1]) {
		unsigned long v;
		char shown[16];
		snprintf(shown, sizeof(shown), "%s", slash + 1);
		if (parse_uint(slash + 1, strlen(slash + 1), 0, 2147483647, &v) < 0)
			return url_fail(err, errlen, "redis URL: bad db number '%s' after '/'",
			                shown);
		u->db = (unsigned)v;
	}
	return 0;
}

static int parse_unix(const char *p, struct db_redis_url *u, char *err, size_t errlen)
{
	if (*p != '/')
		return url_fail(err, errlen,
		                "redis URL: unix socket path must be absolute (unix:///path)");
	const char *q = strchr(p, '?');
	size_t plen = q ? (size_t)(q - p) : strlen(p);
	if (plen >= sizeof(u->path))
		return url_fail(err, errlen,
		                "redis URL: unix socket path too long (max 107 bytes)");
	if (plen == 1)
		return url_fail(err, errlen, "redis URL: missing unix socket path");
	memcpy(u->path, p, plen);
	u->path[plen] = '\0';
	while (q && *q) {
		const char *k = q + 1;
		const char *amp = strchr(k, '&');
		const char *vend = amp ? amp : k + strlen(k);
		const char *eq = memchr(k, '=', (size_t)(vend - k));
		char name[32];
		snprintf(name, sizeof(name), "%.*s", (int)((eq ? eq : vend) - k), k);
		if (!eq)
			return url_fail(err, errlen, "redis URL: parameter '%s' needs a value",
			                name);
		if (strcmp(name, "db") == 0) {
			unsigned long v;
			if (parse_uint(eq + 1, (size_t)(vend - eq - 1), 0, 2147483647, &v) < 0)
				return url_fail(err, errlen, "redis URL: bad db number in '%s='",
				                name);
			u->db = (unsigned)v;
		} else if (strcmp(name, "password") == 0) {
			if (pct_decode(eq + 1, (size_t)(vend - eq - 1), u->password,
			               sizeof(u->password)) < 0 ||
			    !u->password[0])
				return url_fail(err, errlen,
				                "redis URL: bad, empty or too long '%s='", name);
		} else {
			return url_fail(err, errlen,
			                "redis URL: unknown parameter '%s' (db, password)", name);
		}
		q = amp;
	}
	return 0;
}

int db_redis_url_parse(const char *url, struct db_redis_url *out, char *err, size_t errlen)
{
	struct db_redis_url u;
	memset(&u, 0, sizeof(u));
	if (err && errlen)
		err[0] = '\0';
	if (!url || !url[0])
		return url_fail(err, errlen, "redis URL: empty");
	int rc;
	if (strncmp(url, "redis://", 8) == 0)
		rc = parse_tcp(url + 8, &u, err, errlen);
	else if (strncmp(url, "unix://", 7) == 0)
		rc = parse_unix(url + 7, &u, err, errlen);
	else if (strncmp(url, "rediss://", 9) == 0)
		rc = url_fail(err, errlen, "redis URL: TLS (rediss://) is not supported");
	else
		rc = url_fail(err, errlen,
		              "redis URL: unknown scheme, expected redis://host:port or "
		              "unix:///path");
	if (rc == 0 && out)
		*out = u;
	explicit_bzero(&u, sizeof(u)); /* the password does not linger on the stack */
	return rc;
}

/* ---- connection, reconnect and backoff ---- */

static struct timeval tv_ms(unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	return tv;
}

/* Sends AUTH and SELECT on a fresh context. 0, or -1 with a reason in why. */
static int conn_setup(struct db_redis *r, redisContext *c, char *why, size_t whylen)
{
	const char *argv[3];
	size_t lens[3];
	int argc = 0;
	if (r->url.password[0]) {
		argv[argc] = "AUTH";
		lens[argc++] = 4;
		if (r->url.user[0]) {
			argv[argc] = r->url.user;
			lens[argc] = strlen(r->url.user);
			argc++;
		}
		argv[argc] = r->url.password;
		lens[argc] = strlen(r->url.password);
		argc++;
		redisReply *rep = redisCommandArgv(c, argc, argv, lens);
		if (!rep || rep->type == REDIS_REPLY_ERROR) {
			snprintf(why, whylen, "AUTH: %s", rep ? rep->str : c->errstr);
			freeReplyObject(rep);
			return -1;
		}
		freeReplyObject(rep);
	}
	if (r->url.db) {
		char db[16];
		snprintf(db, sizeof(db), "%u", r->url.db);
		argv[0] = "SELECT";
		lens[0] = 6;
		argv[1] = db;
		lens[1] = strlen(db);
		redisReply *rep = redisCommandArgv(c, 2, argv, lens);
		if (!rep || rep->type == REDIS_REPLY_ERROR) {
			snprintf(why, whylen, "SELECT %u: %s", r->url.db,
			         rep ? rep->str : c->errstr);
			freeReplyObject(rep);
			return -1;
		}
		freeReplyObject(rep);
	}
	return 0;
}

/* One connection attempt. 0, or -1 with a reason in why. */
static int conn_open(struct db_redis *r, char *why, size_t whylen)
{
	struct timeval ctv = tv_ms(r->connect_timeout_ms);
	redisContext *c = r->url.path[0] ? redisConnectUnixWithTimeout(r->url.path, ctv)
	                                 : redisConnectWithTimeout(r->url.host, r->url.port, ctv);
	if (!c) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (c->err) {
		snprintf(why, whylen, "%s", c->errstr);
		redisFree(c);
		return -1;
	}
	if (redisSetTimeout(c, tv_ms(r->cmd_timeout_ms)) != REDIS_OK) {
		snprintf(why, whylen, "setting the socket timeout: %s", c->errstr);
		redisFree(c);
		return -1;
	}
	if (!r->url.path[0])
		redisEnableKeepAlive(c);
	if (conn_setup(r, c, why, whylen) < 0) {
		redisFree(c);
		return -1;
	}
	r->c = c;
	return 0;
}

static void log_down(struct db_redis *r, const char *why)
{
	if (r->down_logged)
		return;
	r->down_logged = 1;
	log_warn(MOD, "%s down: %s; reconnecting with backoff (%u..%u ms)", r->target, why,
	         r->backoff_min_ms, r->backoff_max_ms);
}

/* The connection broke during a command: drop it. The first reconnect is tried on the
 * next call without waiting; failed attempts then back off. */
static void conn_lost(struct db_redis *r, const char *why)
{
	if (r->c)
		redisFree(r->c);
	r->c = NULL;
	uint64_t now = clock_now_us();
	r->down_since_us = now;
	r->next_try_us = now;
	r->backoff_ms = 0;
	log_down(r, why);
}

/* Makes sure there is a connection: reconnects when the backoff allows, else fails at
 * once. 0 or -ENOTCONN. */
static int conn_ensure(struct db_redis *r)
{
	if (r->c)
		return 0;
	uint64_t now = clock_now_us();
	if (now < r->next_try_us)
		return -ENOTCONN;
	char why[256];
	if (conn_open(r, why, sizeof(why)) < 0) {
		if (!r->backoff_ms)
			r->backoff_ms = r->backoff_min_ms;
		else if (r->backoff_ms < r->backoff_max_ms / 2)
			r->backoff_ms *= 2;
		else
			r->backoff_ms = r->backoff_max_ms;
		r->next_try_us = now + (uint64_t)r->backoff_ms * 1000u;
		log_down(r, why);
		return -ENOTCONN;
	}
	if (r->down_logged)
		log_info(MOD, "%s up again after %" PRIu64 " ms", r->target,
		         (now - r->down_since_us) / 1000u);
	r->down_logged = 0;
	r->backoff_ms = 0;
	return 0;
}

int db_redis_create(const char *url, const struct db_redis_opts *o, struct db_redis **out)
{
	static const struct db_redis_opts defaults;
	if (!out)
		return -EINVAL;
	if (!o)
		o = &defaults;
	char err[160];
	struct db_redis_url u;
	int rc = db_redis_url_parse(url, &u, err, sizeof(err));
	if (rc < 0) {
		log_err(MOD, "%s", err);
		return rc;
	}
	struct db_redis *r = mem_zalloc(sizeof(*r));
	if (!r) {
		explicit_bzero(&u, sizeof(u));
		return -ENOMEM;
	}
	r->url = u;
	explicit_bzero(&u, sizeof(u));
	r->prefix = mem_strdup(o->prefix ? o->prefix : "");
	if (!r->prefix) {
		rc = -ENOMEM;
		goto out;
	}
	r->prefix_len = strlen(r->prefix);
	if (r->prefix_len >= DB_REDIS_KEY_MAX / 2) {
		log_err(MOD, "key prefix longer than %u bytes", DB_REDIS_KEY_MAX / 2 - 1);
		rc = -EINVAL;
		goto out;
	}
	r->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000;
	r->cmd_timeout_ms = o->cmd_timeout_ms ? o->cmd_timeout_ms : 1000;
	r->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : 100;
	r->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : 10000;
	if (r->backoff_max_ms < r->backoff_min_ms)
		r->backoff_max_ms = r->backoff_min_ms;
	if (r->url.path[0])
		snprintf(r->target, sizeof(r->target), "redis unix:%s db %u", r->url.path,
		         r->url.db);
	else
		snprintf(r->target, sizeof(r->target), "redis %s:%u db %u", r->url.host,
		         (unsigned)r->url.port, r->url.db);
	r->down_since_us = clock_now_us();
	r->down_logged = 0;
	if (conn_ensure(r) == 0)
		log_info(MOD, "%s connected", r->target);
	*out = r;
	r = NULL;
	rc = 0;
out:
	if (r) {
		mem_free(r->prefix);
		explicit_bzero(&r->url, sizeof(r->url));
		mem_free(r);
	}
	return rc;
}

void db_redis_destroy(struct db_redis *r)
{
	if (!r)
		return;
	if (r->c)
		redisFree(r->c);
	mem_free(r->prefix);
	explicit_bzero(&r->url, sizeof(r->url));
	mem_free(r);
}

int db_redis_up(const struct db_redis *r)
{
	return r && r->c ? 1 : 0;
}

/* ---- commands ---- */

/* Maps a server error reply to -errno; logs the unexpected ones at a rate limit. */
static int reply_error(struct db_redis *r, const redisReply *rep, const char *cmd)
{
	const char *e = rep->str ? rep->str : "";
	if (strncmp(e, "NOGROUP", 7) == 0)
		return -ENOENT;
	if (strncmp(e, "BUSYGROUP", 9) == 0)
		return -EEXIST;
	if (log_ratelimit_ok(&r->rl))
		log_err(MOD, "%s %s: %s", r->target, cmd, e);
	return -EPROTO;
}

/* Runs one command. On 0, *out holds a non-error reply the caller frees. */
static int cmd_argv(struct db_redis *r, int argc, const char **argv, const size_t *lens,
                    redisReply **out)
{
	*out = NULL;
	int rc = conn_ensure(r);
	if (rc < 0)
		return rc;
	redisReply *rep = redisCommandArgv(r->c, argc, argv, lens);
	if (!rep) {
		int oom = r->c->err == REDIS_ERR_OOM;
		char why[160];
		snprintf(why, sizeof(why), "%s: %s", argv[0], r->c->errstr);
		conn_lost(r, why);
		return oom ? -ENOMEM : -ENOTCONN;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		rc = reply_error(r, rep, argv[0]);
		freeReplyObject(rep);
		return rc;
	}
	*out = rep;
	return 0;
}

static int bad_reply(struct db_redis *r, redisReply *rep, const char *cmd)
{
	if (log_ratelimit_ok(&r->rl))
		log_err(MOD, "%s %s: unexpected reply type %d", r->target, cmd,
		        rep ? rep->type : -1);
	freeReplyObject(rep);
	return -EPROTO;
}

/* Writes prefix + a + b + c (b, c may be NULL) into buf[DB_REDIS_KEY_MAX]. Returns the
 * length, -EINVAL for a NULL or empty a, or -ENAMETOOLONG. */
static int make_key(const struct db_redis *r, char *buf, const char *a, const char *b,
                    const char *c)
{
	if (!a || !a[0])
		return -EINVAL;
	int n = snprintf(buf, DB_REDIS_KEY_MAX, "%s%s%s%s", r->prefix, a, b ? b : "", c ? c : "");
	if (n < 0 || (size_t)n >= DB_REDIS_KEY_MAX)
		return -ENAMETOOLONG;
	return n;
}

static int check_str(const char *s)
{
	return s && s[0] ? 0 : -EINVAL;
}

int db_redis_ping(struct db_redis *r)
{
	if (!r)
		return -EINVAL;
	const char *argv[] = {"PING"};
	size_t lens[] = {4};
	redisReply *rep;
	int rc = cmd_argv(r, 1, argv, lens, &rep);
	if (rc < 0)
		return rc;
	freeReplyObject(rep);
	return 0;
}

/* ---- Lua scripts (each runs atomically on the server) ---- */

/* KEYS[1] zset, KEYS[2] stream; ARGV[1] now_ms, ARGV[2] max. */
static const char lua_due[] =
    "local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, "
    "tonumber(ARGV[2]))\n"
    "for _, v in ipairs(items) do\n"
    "  redis.call('XADD', KEYS[2], '*', 'j', v)\n"
    "  redis.call('ZREM', KEYS[1], v)\n"
    "end\n"
    "return #items\n";

/* KEYS[1] slot zset; ARGV[1] limit, ARGV[2] holder, ARGV[3] expiry_ms, ARGV[4] now_ms. */
static const char lua_slot_acquire[] = "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])\n"
                                       "if redis.call('ZSCORE', KEYS[1], ARGV[2]) or "
                                       "redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then\n"
                                       "  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])\n"
                                       "  return 1\n"
                                       "end\n"
                                       "return 0\n";

/* KEYS[1] slot zset; ARGV[1] holder, ARGV[2] expiry_ms, ARGV[3] now_ms. */
static const char lua_slot_renew[] = "local s = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
                                     "if not s then return 0 end\n"
                                     "if tonumber(s) <= tonumber(ARGV[3]) then\n"
                                     "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
                                     "  return 0\n"
                                     "end\n"
                                     "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
                                     "return 1\n";

/* KEYS[1] nodes zset, KEYS[2] the node's call set; ARGV[1] node id, ARGV[2] now_ms. */
static const char lua_node_reap[] =
    "local s = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
    "if not s or tonumber(s) > tonumber(ARGV[2]) then return false end\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "local calls = redis.call('SMEMBERS', KEYS[2])\n"
    "redis.call('DEL', KEYS[2])\n"
    "return calls\n";

#define SCRIPT(s) (s), (sizeof(s) - 1)

/* EVAL with keys and args given as C strings (n <= 6 in total). */
static int eval(struct db_redis *r, const char *script, size_t slen, int nkeys,
                const char *const *keys, int nargs, const char *const *args, redisReply **out)
{
	const char *argv[10];
	size_t lens[10];
	char nk[8];
	snprintf(nk, sizeof(nk), "%d", nkeys);
	int argc = 0;
	argv[argc] = "EVAL";
	lens[argc++] = 4;
	argv[argc] = script;
	lens[argc++] = slen;
	argv[argc] = nk;
	lens[argc++] = strlen(nk);
	for (int i = 0; i < nkeys; i++) {
		argv[argc] = keys[i];
		lens[argc++] = strlen(keys[i]);
	}
	for (int i = 0; i < nargs; i++) {
		argv[argc] = args[i];
		lens[argc++] = strlen(args[i]);
	}
	return cmd_argv(r, argc, argv, lens, out);
}

/* Runs a command or script whose reply is an integer; returns it (clamped to INT_MAX). */
static int int_reply(struct db_redis *r, int rc, redisReply *rep, const char *cmd)
{
	if (rc < 0)
		return rc;
	if (rep->type != REDIS_REPLY_INTEGER || rep->integer < 0)
		return bad_reply(r, rep, cmd);
	long long v = rep->integer;
	freeReplyObject(rep);
	return v > 0x7fffffff ? 0x7fffffff : (int)v;
}

/* ---- job streams ---- */

int db_redis_job_add(struct db_redis *r, const char *stream, const char *json, char *id,
                     size_t idlen)
{
	char key[DB_REDIS_KEY_MAX];
	if (!r || !json)
		return -EINVAL;
	if (id && idlen < DB_REDIS_ID_MAX)
		return -EINVAL;
	int kl = make_key(r, key, stream, NULL, NULL);
	if (kl < 0)
		return kl;
	const char *argv[] = {"XADD", key, "*", "j", json};
	size_t lens[] = {4, (size_t)kl, 1, 1, strlen(json)};
	redisReply *rep;
	int rc = cmd_argv(r, 5, argv, lens, &rep);
	if (rc < 0)
		return rc;
	if (rep->type != REDIS_REPLY_STRING || rep->len >= DB_REDIS_ID_MAX)
		return bad_reply(r, rep, "XADD");
	if (id)
		snprintf(id, idlen, "%s", rep->str);
	freeReplyObject(rep);
	return 0;
}

int db_redis_group_ensure(struct db_redis *r, const char *stream, const char *group)
{
	char key[DB_REDIS_KEY_MAX];
	if (!r || check_str(group) < 0)
		return -EINVAL;
	int kl = make_key(r, key, stream, NULL, NULL);
	if (kl < 0)
		return kl;
	const char *argv[] = {"XGROUP", "CREATE", key, group, "0", "MKSTREAM"};
	size_t lens[] = {6, 6, (size_t)kl, strlen(group), 1, 8};
	redisReply *rep;
	int rc = cmd_argv(r, 6, argv, lens, &rep);
	if (rc == -EEXIST)
		return 0;
	if (rc < 0)
		return rc;
	freeReplyObject(rep);
	return 0;
}

void db_redis_jobs_free(struct db_redis_job *jobs, size_t n)
{
	if (!jobs)
		return;
	for (size_t i = 0; i < n; i++) {
		mem_free(jobs[i].json);
		memset(&jobs[i], 0, sizeof(jobs[i]));
	}
}

/* Appends the entries of an [id, [field, value, ...]] array to jobs. Entries that are
 * nil (deleted meanwhile) are skipped. 0, -ENOMEM or -EPROTO. */
static int take_entries(const redisReply *arr, int reclaimed, struct db_redis_job *jobs, size_t max,
                        size_t *n)
{
	if (arr->type != REDIS_REPLY_ARRAY)
		return -EPROTO;
	for (size_t i = 0; i < arr->elements && *n < max; i++) {
		const redisReply *e = arr->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
			continue;
		const redisReply *eid = e->element[0];
		const redisReply *fields = e->element[1];
		if (eid->type != REDIS_REPLY_STRING || eid->len >= DB_REDIS_ID_MAX)
			return -EPROTO;
		const char *val = "";
		size_t vlen = 0;
		if (fields->type == REDIS_REPLY_ARRAY) {
			for (size_t f = 0; f + 1 < fields->elements; f += 2) {
				const redisReply *k = fields->element[f];
				const redisReply *v = fields->element[f + 1];
				if (k->type == REDIS_REPLY_STRING && k->len == 1 &&
				    k->str[0] == 'j' && v->type == REDIS_REPLY_STRING) {
					val = v->str;
					vlen = v->len;
					break;
				}
			}
		}
		struct db_redis_job *j = &jobs[*n];
		j->json = mem_alloc(vlen + 1);
		if (!j->json)
			return -ENOMEM;
		memcpy(j->json, val, vlen);
		j->json[vlen] = '\0';
		j->json_len = vlen;
		memcpy(j->id, eid->str, eid->len);
		j->id[eid->len] = '\0';
		j->reclaimed = reclaimed;
		(*n)++;
	}
	return 0;
}

/* XAUTOCLAIM rounds until max jobs or the end of the pending list. */
static int reclaim(struct db_redis *r, const char *key, size_t kl, const char *group,
                   const char *consumer, unsigned min_idle_ms, struct db_redis_job *jobs,
                   size_t max, size_t *n)
{
	char cursor[DB_REDIS_ID_MAX] = "0-0";
	char idle[16];
	snprintf(idle, sizeof(idle), "%u", min_idle_ms);
	for (int round = 0; round < RECLAIM_ROUNDS && *n < max; round++) {
		char count[24];
		snprintf(count, sizeof(count), "%zu", max - *n);
		const char *argv[] = {"XAUTOCLAIM", key,    group,   consumer,
		                      idle,         cursor, "COUNT", count};
		size_t lens[] = {
		    10, kl,           strlen(group), strlen(consumer), strlen(idle), strlen(cursor),
		    5,  strlen(count)};
		redisReply *rep;
		int rc = cmd_argv(r, 8, argv, lens, &rep);
		if (rc < 0)
			return rc;
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING ||
		    rep->element[0]->len >= sizeof(cursor))
			return bad_reply(r, rep, "XAUTOCLAIM");
		rc = take_entries(rep->element[1], 1, jobs, max, n);
		if (rc < 0) {
			if (rc == -EPROTO)
				return bad_reply(r, rep, "XAUTOCLAIM");
			freeReplyObject(rep);
			return rc;
		}
		memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
		cursor[rep->element[0]->len] = '\0';
		freeReplyObject(rep);
		if (strcmp(cursor, "0-0") == 0)
			break;
	}
	return 0;
}

/* XREADGROUP > for up to max - *n new jobs, waiting up to block_ms (0 = no wait). */
static int read_new(struct db_redis *r, const char *key, size_t kl, const char *group,
                    const char *consumer, unsigned block_ms, struct db_redis_job *jobs, size_t max,
                    size_t *n)
{
	char count[24], block[16];
	snprintf(count, sizeof(count), "%zu", max - *n);
	snprintf(block, sizeof(block), "%u", block_ms);
	const char *argv[11];
	size_t lens[11];
	int argc = 0;
#define ARG(s, l) (argv[argc] = (s), lens[argc++] = (l))
	ARG("XREADGROUP", 10);
	ARG("GROUP", 5);
	ARG(group, strlen(group));
	ARG(consumer, strlen(consumer));
	ARG("COUNT", 5);
	ARG(count, strlen(count));
	if (block_ms) {
		ARG("BLOCK", 5);
		ARG(block, strlen(block));
	}
	ARG("STREAMS", 7);
	ARG(key, kl);
	ARG(">", 1);
#undef ARG
	int rc = conn_ensure(r);
	if (rc < 0)
		return rc;
	/* The socket must wait longer than the server blocks. */
	if (block_ms)
		redisSetTimeout(r->c, tv_ms(r->cmd_timeout_ms + block_ms));
	redisReply *rep;
	rc = cmd_argv(r, argc, argv, lens, &rep);
	if (block_ms && r->c)
		redisSetTimeout(r->c, tv_ms(r->cmd_timeout_ms));
	if (rc < 0)
		return rc;
	if (rep->type == REDIS_REPLY_NIL) {
		freeReplyObject(rep);
		return 0;
	}
	if (rep->type != REDIS_REPLY_ARRAY)
		return bad_reply(r, rep, "XREADGROUP");
	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *s = rep->element[i];
		if (s->type != REDIS_REPLY_ARRAY || s->elements != 2)
			return bad_reply(r, rep, "XREADGROUP");
		rc = take_entries(s->element[1], 0, jobs, max, n);
		if (rc == -EPROTO)
			return bad_reply(r, rep, "XREADGROUP");
		if (rc < 0)
			break;
	}
	freeReplyObject(rep);
	return rc;
}

int db_redis_job_claim(struct db_redis *r, const char *stream, const char *group,
                       const char *consumer, size_t max, unsigned block_ms, unsigned min_idle_ms,
                       struct db_redis_job *jobs, size_t *n)
{
	char key[DB_REDIS_KEY_MAX];
	if (n)
		*n = 0;
	if (!r || !n || !jobs || !max || check_str(group) < 0 || check_str(consumer) < 0)
		return -EINVAL;
	memset(jobs, 0, max * sizeof(*jobs));
	int kl = make_key(r, key, stream, NULL, NULL);
	if (kl < 0)
		return kl;
	if (block_ms > BLOCK_MAX_MS)
		block_ms = BLOCK_MAX_MS;
	int rc = 0;
	if (min_idle_ms)
		rc = reclaim(r, key, (size_t)kl, group, consumer, min_idle_ms, jobs, max, n);
	if (rc == 0 && *n < max)
		rc = read_new(r, key, (size_t)kl, group, consumer, *n ? 0 : block_ms, jobs, max, n);
	if (rc < 0) {
		db_redis_jobs_free(jobs, *n);
		*n = 0;
	}
	return rc;
}

int db_redis_job_ack(struct db_redis *r, const char *stream, const char *group, const char *id)
{
	char key[DB_REDIS_KEY_MAX];
	if (!r || check_str(group) < 0 || check_str(id) < 0)
		return -EINVAL;
	int kl = make_key(r, key, stream, NULL, NULL);
	if (kl < 0)
		return kl;
	int rc = conn_ensure(r);
	if (rc < 0)
		return rc;
	/* Pipelined: XACK then XDEL (an acked entry left behind by a crash between the two
	 * is never delivered again: the group has moved past it). */
	const char *ack[] = {"XACK", key, group, id};
	size_t acklen[] = {4, (size_t)kl, strlen(group), strlen(id)};
	const char *del[] = {"XDEL", key, id};
	size_t dellen[] = {4, (size_t)kl, strlen(id)};
	if (redisAppendCommandArgv(r->c, 4, ack, acklen) != REDIS_OK ||
	    redisAppendCommandArgv(r->c, 3, del, dellen) != REDIS_OK) {
		conn_lost(r, "XACK: out of memory");
		return -ENOMEM;
	}
	redisReply *rep[2] = {NULL, NULL};
	for (int i = 0; i < 2; i++) {
		void *p = NULL;
		if (redisGetReply(r->c, &p) != REDIS_OK) {
			char why[160];
			snprintf(why, sizeof(why), "XACK: %s", r->c->errstr);
			freeReplyObject(rep[0]);
			conn_lost(r, why);
			return -ENOTCONN;
		}
		rep[i] = p;
	}
	rc = 0;
	for (int i = 0; i < 2 && rc == 0; i++)
		if (rep[i]->type == REDIS_REPLY_ERROR)
			rc = reply_error(r, rep[i], i ? "XDEL" : "XACK");
	if (rc == 0)
		rc = rep[0]->type == REDIS_REPLY_INTEGER ? (rep[0]->integer > 0) : -EPROTO;
	freeReplyObject(rep[0]);
	freeReplyObject(rep[1]);
	return rc;
}

/* ---- delayed jobs ---- */

int db_redis_job_defer(struct db_redis *r, const char *zset, const char *json, uint64_t due_ms)
{
	char key[DB_REDIS_KEY_MAX], score[24];
	if (!r || !json)
		return -EINVAL;
	int kl = make_key(r, key, zset, NULL, NULL);
	if (kl < 0)
		return kl;
	snprintf(score, sizeof(score), "%" PRIu64, due_ms);
	const char *argv[] = {"ZADD", key, score, json};
	size_t lens[] = {4, (size_t)kl, strlen(score), strlen(json)};
	redisReply *rep;
	int rc = cmd_argv(r, 4, argv, lens, &rep);
	rc = int_reply(r, rc, rep, "ZADD");
	return rc < 0 ? rc : 0;
}

int db_redis_job_due(struct db_redis *r, const char *zset, const char *stream, uint64_t now_ms,
                     unsigned max)
{
	char zkey[DB_REDIS_KEY_MAX], skey[DB_REDIS_KEY_MAX], now[24], cnt[16];
	if (!r || !max)
		return -EINVAL;
	int rc = make_key(r, zkey, zset, NULL, NULL);
	if (rc >= 0)
		rc = make_key(r, skey, stream, NULL, NULL);
	if (rc < 0)
		return rc;
	snprintf(now, sizeof(now), "%" PRIu64, now_ms);
	snprintf(cnt, sizeof(cnt), "%u", max);
	const char *keys[] = {zkey, skey};
	const char *args[] = {now, cnt};
	redisReply *rep;
	rc = eval(r, SCRIPT(lua_due), 2, keys, 2, args, &rep);
	return int_reply(r, rc, rep, "EVAL due");
}

/* ---- dedupe ---- */

int db_redis_dedupe(struct db_redis *r, const char *key, unsigned ttl_s)
{
	char k[DB_REDIS_KEY_MAX], ttl[16];
	if (!r || !ttl_s)
		return -EINVAL;
	int kl = make_key(r, k, key, NULL, NULL);
	if (kl < 0)
		return kl;
	snprintf(ttl, sizeof(ttl), "%u", ttl_s);
	const char *argv[] = {"SET", k, "1", "NX", "EX", ttl};
	size_t lens[] = {3, (size_t)kl, 1, 2, 2, strlen(ttl)};
	redisReply *rep;
	int rc = cmd_argv(r, 6, argv, lens, &rep);
	if (rc < 0)
		return rc;
	if (rep->type == REDIS_REPLY_NIL)
		rc = 0;
	else if (rep->type == REDIS_REPLY_STATUS)
		rc = 1;
	else
		return bad_reply(r, rep, "SET NX");
	freeReplyObject(rep);
	return rc;
}

/* ---- slot semaphore ---- */

int db_redis_slot_acquire(struct db_redis *r, const char *name, unsigned limit, const char *holder,
                          uint64_t lease_ms, uint64_t now_ms)
{
	char key[DB_REDIS_KEY_MAX], lim[16], exp[24], now[24];
	if (!r || check_str(holder) < 0 || check_str(name) < 0 || !lease_ms)
		return -EINVAL;
	int rc = make_key(r, key, "slot:", name, NULL);
	if (rc < 0)
		return rc;
	snprintf(lim, sizeof(lim), "%u", limit);
	snprintf(exp, sizeof(exp), "%" PRIu64, now_ms + lease_ms);
	snprintf(now, sizeof(now), "%" PRIu64, now_ms);
	const char *keys[] = {key};
	const char *args[] = {lim, holder, exp, now};
	redisReply *rep;
	rc = eval(r, SCRIPT(lua_slot_acquire), 1, keys, 4, args, &rep);
	return int_reply(r, rc, rep, "EVAL slot_acquire");
}

int db_redis_slot_renew(struct db_redis *r, const char *name, const char *holder, uint64_t lease_ms,
                        uint64_t now_ms)
{
	char key[DB_REDIS_KEY_MAX], exp[24], now[24];
	if (!r || check_str(holder) < 0 || check_str(name) < 0 || !lease_ms)
		return -EINVAL;
	int rc = make_key(r, key, "slot:", name, NULL);
	if (rc < 0)
		return rc;
	snprintf(exp, sizeof(exp), "%" PRIu64, now_ms + lease_ms);
	snprintf(now, sizeof(now), "%" PRIu64, now_ms);
	const char *keys[] = {key};
	const char *args[] = {holder, exp, now};
	redisReply *rep;
	rc = eval(r, SCRIPT(lua_slot_renew), 1, keys, 3, args, &rep);
	return int_reply(r, rc, rep, "EVAL slot_renew");
}

int db_redis_slot_release(struct db_redis *r, const char *name, const char *holder)
{
	char key[DB_REDIS_KEY_MAX];
	if (!r || check_str(holder) < 0 || check_str(name) < 0)
		return -EINVAL;
	int kl = make_key(r, key, "slot:", name, NULL);
	if (kl < 0)
		return kl;
	const char *argv[] = {"ZREM", key, holder};
	size_t lens[] = {4, (size_t)kl, strlen(holder)};
	redisReply *rep;
	int rc = cmd_argv(r, 3, argv, lens, &rep);
	return int_reply(r, rc, rep, "ZREM");
}

int db_redis_slot_count(struct db_redis *r, const char *name, uint64_t now_ms)
{
	char key[DB_REDIS_KEY_MAX], min[24];
	if (!r || check_str(name) < 0)
		return -EINVAL;
	int kl = make_key(r, key, "slot:", name, NULL);
	if (kl < 0)
		return kl;
	snprintf(min, sizeof(min), "(%" PRIu64, now_ms); /* a lease ending at now_ms is over */
	const char *argv[] = {"ZCOUNT", key, min, "+inf"};
	size_t lens[] = {6, (size_t)kl, strlen(min), 4};
	redisReply *rep;
	int rc = cmd_argv(r, 4, argv, lens, &rep);
	return int_reply(r, rc, rep, "ZCOUNT");
}

/* ---- node liveness and call ownership ---- */

/* Calls cb for each string of an array reply; returns the count or -EPROTO. */
static int each_string(struct db_redis *r, redisReply *rep, const char *cmd, db_redis_str_cb cb,
                       void *arg)
{
	if (rep->type != REDIS_REPLY_ARRAY)
		return bad_reply(r, rep, cmd);
	int count = 0;
	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *e = rep->element[i];
		if (e->type != REDIS_REPLY_STRING)
			continue;
		if (cb)
			cb(arg, e->str, e->len);
		count++;
	}
	freeReplyObject(rep);
	return count;
}

int db_redis_node_beat(struct db_redis *r, const char *node_id, uint64_t ttl_ms, uint64_t now_ms)
{
	char key[DB_REDIS_KEY_MAX], exp[24];
	if (!r || check_str(node_id) < 0 || !ttl_ms)
		return -EINVAL;
	int kl = make_key(r, key, "nodes", NULL, NULL);
	if (kl < 0)
		return kl;
	snprintf(exp, sizeof(exp), "%" PRIu64, now_ms + ttl_ms);
	const char *argv[] = {"ZADD", key, exp, node_id};
	size_t lens[] = {4, (size_t)kl, strlen(exp), strlen(node_id)};
	redisReply *rep;
	int rc = cmd_argv(r, 4, argv, lens, &rep);
	rc = int_reply(r, rc, rep, "ZADD");
	return rc < 0 ? rc : 0;
}

int db_redis_nodes_list(struct db_redis *r, int dead, uint64_t now_ms, db_redis_str_cb cb,
                        void *arg)
{
	char key[DB_REDIS_KEY_MAX], now[24];
	if (!r)
		return -EINVAL;
	int kl = make_key(r, key, "nodes", NULL, NULL);
	if (kl < 0)
		return kl;
	/* alive: expiry > now; dead: expiry <= now */
	snprintf(now, sizeof(now), "%s%" PRIu64, dead ? "" : "(", now_ms);
	const char *argv[] = {"ZRANGEBYSCORE", key, dead ? "-inf" : now, dead ? now : "+inf"};
	size_t lens[] = {13, (size_t)kl, strlen(argv[2]), strlen(argv[3])};
	redisReply *rep;
	int rc = cmd_argv(r, 4, argv, lens, &rep);
	if (rc < 0)
		return rc;
	return each_string(r, rep, "ZRANGEBYSCORE", cb, arg);
}

static int call_set(struct db_redis *r, const char *cmd, const char *node_id, const char *call_id)
{
	char key[DB_REDIS_KEY_MAX];
	if (!r || check_str(node_id) < 0 || check_str(call_id) < 0)
		return -EINVAL;
	int kl = make_key(r, key, "node:", node_id, ":calls");
	if (kl < 0)
		return kl;
	const char *argv[] = {cmd, key, call_id};
	size_t lens[] = {4, (size_t)kl, strlen(call_id)};
	redisReply *rep;
	int rc = cmd_argv(r, 3, argv, lens, &rep);
	rc = int_reply(r, rc, rep, cmd);
	return rc < 0 ? rc : 0;
}

int db_redis_call_own(struct db_redis *r, const char *node_id, const char *call_id)
{
	return call_set(r, "SADD", node_id, call_id);
}

int db_redis_call_disown(struct db_redis *r, const char *node_id, const char *call_id)
{
	return call_set(r, "SREM", node_id, call_id);
}

int db_redis_node_calls(struct db_redis *r, const char *node_id, db_redis_str_cb cb, void *arg)
{
	char key[DB_REDIS_KEY_MAX];
	if (!r || check_str(node_id) < 0)
		return -EINVAL;
	int kl = make_key(r, key, "node:", node_id, ":calls");
	if (kl < 0)
		return kl;
	const char *argv[] = {"SMEMBERS", key};
	size_t lens[] = {8, (size_t)kl};
	redisReply *rep;
	int rc = cmd_argv(r, 2, argv, lens, &rep);
	if (rc < 0)
		return rc;
	return each_string(r, rep, "SMEMBERS", cb, arg);
}

int db_redis_node_reap(struct db_redis *r, const char *node_id, uint64_t now_ms, db_redis_str_cb cb,
                       void *arg)
{
	char nkey[DB_REDIS_KEY_MAX], ckey[DB_REDIS_KEY_MAX], now[24];
	if (!r || check_str(node_id) < 0)
		return -EINVAL;
	int rc = make_key(r, nkey, "nodes", NULL, NULL);
	if (rc >= 0)
		rc = make_key(r, ckey, "node:", node_id, ":calls");
	if (rc < 0)
		return rc;
	snprintf(now, sizeof(now), "%" PRIu64, now_ms);
	const char *keys[] = {nkey, ckey};
	const char *args[] = {node_id, now};
	redisReply *rep;
	rc = eval(r, SCRIPT(lua_node_reap), 2, keys, 2, args, &rep);
	if (rc < 0)
		return rc;
	if (rep->type == REDIS_REPLY_NIL) { /* Lua false: not this caller's to reap */
		freeReplyObject(rep);
		return -ENOENT;
	}
	return each_string(r, rep, "EVAL node_reap", cb, arg);
}

/* ---- pub/sub ---- */

int db_redis_publish(struct db_redis *r, const char *channel, const void *msg, size_t len)
{
	char key[DB_REDIS_KEY_MAX];
	if (!r || (!msg && len))
		return -EINVAL;
	int kl = make_key(r, key, channel, NULL, NULL);
	if (kl < 0)
		return kl;
	const char *argv[] = {"PUBLISH", key, msg ? msg : ""};
	size_t lens[] = {7, (size_t)kl, len};
	redisReply *rep;
	int rc = cmd_argv(r, 3, argv, lens, &rep);
	return int_reply(r, rc, rep, "PUBLISH");
}
