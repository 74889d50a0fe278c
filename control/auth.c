/* Dashboard sign-in: argon2id password hashes (libsodium), in-memory sessions with CSRF
 * tokens, the failed-login limiter, and the /auth and /v1/users routes. */
#include "control/auth.h"

#include "control/api_util.h"
#include "control/control.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "db/db.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The session table and the limiter are shared by the http thread (lookups, logout) and the
 * db thread (sign-in answers): one mutex, short critical sections, no I/O under it. */
struct session {
	int used;
	char token[CTL_TOKEN_HEX + 1];
	uint64_t opened_us, seen_us;
	struct ctl_session_who who;
};

#define LIMIT_SLOTS 256
struct limit {
	char addr[48];
	unsigned fails;
	uint64_t first_us;
};

static struct {
	pthread_mutex_t lock;
	struct session s[CTL_SESSIONS_MAX];
	struct limit l[LIMIT_SLOTS];
	int secure;
} au = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- passwords --------------------------------------------------------------------------- */

int ctl_auth_crypto_init(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

int ctl_pw_hash(const char *pw, char out[CTL_PW_HASH_MAX])
{
	size_t n = pw ? strlen(pw) : 0;
	if (n < CTL_PW_MIN || n > CTL_PW_MAX)
		return -EINVAL;
	if (ctl_auth_crypto_init())
		return -EIO;
	if (crypto_pwhash_str(out, pw, n, crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		return -ENOMEM;
	return 0;
}

int ctl_pw_verify(const char *hash, const char *pw)
{
	if (!hash || !pw || ctl_auth_crypto_init() || strlen(pw) > CTL_PW_MAX)
		return -EACCES;
	return crypto_pwhash_str_verify(hash, pw, strlen(pw)) == 0 ? 0 : -EACCES;
}

int ctl_email_valid(const char *email)
{
	size_t n = email ? strlen(email) : 0;
	const char *at = email ? strchr(email, '@') : NULL;
	if (n < 3 || n > CTL_EMAIL_MAX || !at || at == email || !at[1] || strchr(at + 1, '@'))
		return -EINVAL;
	for (const char *p = email; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return -EINVAL;
	return 0;
}

/* ---- sessions ---------------------------------------------------------------------------- */

static int random_hex(char out[CTL_TOKEN_HEX + 1])
{
	unsigned char b[CTL_TOKEN_HEX / 2];
	if (ctl_auth_crypto_init())
		return -EIO;
	randombytes_buf(b, sizeof(b));
	sodium_bin2hex(out, CTL_TOKEN_HEX + 1, b, sizeof(b));
	sodium_memzero(b, sizeof(b));
	return 0;
}

static int live(const struct session *s, uint64_t now_us)
{
	return s->used && now_us < s->seen_us + CTL_SESSION_IDLE_US &&
	       now_us < s->opened_us + CTL_SESSION_MAX_US;
}

int ctl_session_open(int64_t user_id, const char *email, int admin, uint64_t now_us,
                     char token[CTL_TOKEN_HEX + 1], char csrf[CTL_TOKEN_HEX + 1])
{
	if (random_hex(token) || random_hex(csrf))
		return -EIO;
	int rc = -ENOSPC;
	pthread_mutex_lock(&au.lock);
	for (size_t i = 0; i < CTL_SESSIONS_MAX; i++) {
		struct session *s = &au.s[i];
		if (live(s, now_us))
			continue;
		memset(s, 0, sizeof(*s));
		s->used = 1;
		memcpy(s->token, token, CTL_TOKEN_HEX + 1);
		s->opened_us = s->seen_us = now_us;
		s->who.user_id = user_id;
		snprintf(s->who.email, sizeof(s->who.email), "%s", email ? email : "");
		s->who.admin = admin;
		memcpy(s->who.csrf, csrf, CTL_TOKEN_HEX + 1);
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&au.lock);
	return rc;
}

int ctl_session_find(const char *token, uint64_t now_us, struct ctl_session_who *who)
{
	if (!token || strlen(token) != CTL_TOKEN_HEX)
		return -ENOENT;
	struct session *hit = NULL;
	pthread_mutex_lock(&au.lock);
	for (size_t i = 0; i < CTL_SESSIONS_MAX; i++) { /* no early exit: same time for all */
		struct session *s = &au.s[i];
		int eq = sodium_memcmp(s->token, token, CTL_TOKEN_HEX) == 0;
		if (eq && s->used)
			hit = s;
	}
	int rc = -ENOENT;
	if (hit && live(hit, now_us)) {
		hit->seen_us = now_us;
		*who = hit->who;
		rc = 0;
	} else if (hit) {
		memset(hit, 0, sizeof(*hit));
	}
	pthread_mutex_unlock(&au.lock);
	return rc;
}

void ctl_session_close(const char *token)
{
	if (!token || strlen(token) != CTL_TOKEN_HEX)
		return;
	pthread_mutex_lock(&au.lock);
	for (size_t i = 0; i < CTL_SESSIONS_MAX; i++)
		if (au.s[i].used && sodium_memcmp(au.s[i].token, token, CTL_TOKEN_HEX) == 0)
			memset(&au.s[i], 0, sizeof(au.s[i]));
	pthread_mutex_unlock(&au.lock);
}

void ctl_session_close_user(int64_t user_id)
{
	pthread_mutex_lock(&au.lock);
	for (size_t i = 0; i < CTL_SESSIONS_MAX; i++)
		if (au.s[i].used && au.s[i].who.user_id == user_id)
			memset(&au.s[i], 0, sizeof(au.s[i]));
	pthread_mutex_unlock(&au.lock);
}

int ctl_csrf_ok(const struct ctl_session_who *who, const char *hdr)
{
	if (!who || !hdr || strlen(hdr) != CTL_TOKEN_HEX)
		return 0;
	return sodium_memcmp(who->csrf, hdr, CTL_TOKEN_HEX) == 0;
}

void ctl_auth_reset(void)
{
	pthread_mutex_lock(&au.lock);
	memset(au.s, 0, sizeof(au.s));
	memset(au.l, 0, sizeof(au.l));
	pthread_mutex_unlock(&au.lock);
}

/* ---- failed sign-ins per address ---------------------------------------------------------- */

static struct limit *limit_find(const char *addr, uint64_t now_us, int create)
{
	struct limit *free_slot = NULL, *oldest = NULL;
	for (size_t i = 0; i < LIMIT_SLOTS; i++) {
		struct limit *l = &au.l[i];
		if (l->fails && now_us >= l->first_us + CTL_LOGIN_WINDOW_US)
			memset(l, 0, sizeof(*l)); /* the window is over */
		if (l->fails && strcmp(l->addr, addr) == 0)
			return l;
		if (!l->fails && !free_slot)
			free_slot = l;
		if (l->fails && (!oldest || l->first_us < oldest->first_us))
			oldest = l;
	}
	if (!create)
		return NULL;
	struct limit *l = free_slot ? free_slot : oldest;
	memset(l, 0, sizeof(*l));
	snprintf(l->addr, sizeof(l->addr), "%s", addr);
	l->first_us = now_us;
	return l;
}

int ctl_login_allowed(const char *addr, uint64_t now_us, unsigned *retry_s)
{
	int rc = 0;
	pthread_mutex_lock(&au.lock);
	struct limit *l = limit_find(addr ? addr : "", now_us, 0);
	if (l && l->fails >= CTL_LOGIN_MAX_FAILS) {
		rc = -EBUSY;
		if (retry_s)
			*retry_s =
			    (unsigned)((l->first_us + CTL_LOGIN_WINDOW_US - now_us) / 1000000 + 1);
	}
	pthread_mutex_unlock(&au.lock);
	return rc;
}

void ctl_login_failed(const char *addr, uint64_t now_us)
{
	pthread_mutex_lock(&au.lock);
	struct limit *l = limit_find(addr ? addr : "", now_us, 1);
	l->fails++;
	pthread_mutex_unlock(&au.lock);
}

void ctl_login_succeeded(const char *addr)
{
	pthread_mutex_lock(&au.lock);
	for (size_t i = 0; i < LIMIT_SLOTS; i++)
		if (au.l[i].fails && strcmp(au.l[i].addr, addr ? addr : "") == 0)
			memset(&au.l[i], 0, sizeof(au.l[i]));
	pthread_mutex_unlock(&au.lock);
}

const char *ctl_cookie_get(const char *hdr, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name);
	const char *p = hdr;
	while (p && *p) {
		while (*p == ' ' || *p == ';')
			p++;
		const char *end = strchr(p, ';');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			size_t vn = n - nl - 1;
			while (vn && p[nl + 1 + vn - 1] == ' ')
				vn--;
			if (vn + 1 > len)
				return NULL;
			memcpy(buf, p + nl + 1, vn);
			buf[vn] = '\0';
			return buf;
		}
		p = end;
	}
	return NULL;
}

/* ---- routes ------------------------------------------------------------------------------- */

static void reply_store(uint64_t token, int rc)
{
	if (rc == -ENOTCONN || rc == -ECANCELED || rc == -EAGAIN)
		ctl_reply_error(token, 503, "store_unavailable",
		                "the user store (PostgreSQL) is not available: try again", NULL);
	else
		ctl_reply_error(token, 500, "internal", "the user store failed", NULL);
}

/* application/x-www-form-urlencoded value of `name` (decoded) into buf, or NULL. */
static const char *form_get(const char *body, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name);
	for (const char *p = body; p && *p;) {
		const char *end = strchr(p, '&');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			size_t o = 0;
			for (size_t i = nl + 1; i < n; i++) {
				char c = p[i];
				if (c == '+') {
					c = ' ';
				} else if (c == '%' && i + 2 < n + 1 &&
				           isxdigit((unsigned char)p[i + 1]) &&
				           isxdigit((unsigned char)p[i + 2])) {
					char hx[3] = {p[i + 1], p[i + 2], 0};
					c = (char)strtol(hx, NULL, 16);
					i += 2;
				}
				if (o + 1 >= len || !c)
					return NULL;
				buf[o++] = c;
			}
			buf[o] = '\0';
			return buf;
		}
		p = end ? end + 1 : NULL;
	}
	return NULL;
}

struct login {
	uint64_t token;
	int form;
	char peer[48];
	char email[CTL_EMAIL_MAX + 1];
	char pw[CTL_PW_MAX + 1];
};

/* A hash to verify against when the user does not exist, so timing does not tell. */
static char dummy_hash[CTL_PW_HASH_MAX];

static void login_fail(struct login *l, unsigned code, const char *ecode, const char *msg,
                       const char *field)
{
	if (l->form) {
		char hdrs[128];
		snprintf(hdrs, sizeof(hdrs), "Location: /?error=%s\r\n", ecode);
		ctl_reply_hdrs(l->token, 303, "text/plain", hdrs, NULL, 0);
		return;
	}
	ctl_reply_error(l->token, code, ecode, msg, field);
}

static void drop_rows(void *arg, int rc, json_t *rows)
{
	(void)arg;
	(void)rc;
	json_decref(rows);
}

static void on_login_rows(void *arg, int rc, json_t *rows)
{
	struct login *l = arg;
	uint64_t now = clock_now_us();
	if (rc) {
		reply_store(l->token, rc);
		goto out;
	}
	json_t *row = json_array_get(rows, 0);
	const char *hash = json_string_value(json_object_get(row, "password_hash"));
	int ok = ctl_pw_verify(hash ? hash : dummy_hash, l->pw) == 0 && hash;
	if (!ok || json_is_true(json_object_get(row, "disabled"))) {
		ctl_login_failed(l->peer, now);
		log_info("ctl", "auth: failed sign-in from %s", l->peer);
		login_fail(l, 401, "invalid_credentials", "wrong email or password", "password");
		goto out;
	}
	ctl_login_succeeded(l->peer);
	int64_t uid = (int64_t)json_integer_value(json_object_get(row, "id"));
	const char *email = json_string_value(json_object_get(row, "email"));
	int admin = strcmp(json_string_value(json_object_get(row, "role")) ?: "", "admin") == 0;
	char tok[CTL_TOKEN_HEX + 1], csrf[CTL_TOKEN_HEX + 1];
	if (ctl_session_open(uid, email, admin, now, tok, csrf)) {
		ctl_reply_error(l->token, 503, "busy", "too many open sessions: try later", NULL);
		goto out;
	}
	log_info("ctl", "auth: %s signed in from %s", email ? email : "?", l->peer);
	char hdrs[384];
	snprintf(hdrs, sizeof(hdrs),
	         "Set-Cookie: " CTL_SESSION_COOKIE
	         "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%llu%s\r\n%s",
	         tok, (unsigned long long)(CTL_SESSION_MAX_US / 1000000),
	         au.secure ? "; Secure" : "", l->form ? "Location: /\r\n" : "");
	sodium_memzero(tok, sizeof(tok));
	if (l->form) {
		ctl_reply_hdrs(l->token, 303, "text/plain", hdrs, NULL, 0);
	} else {
		api_reply_json_hdrs(l->token, 200, hdrs,
		                    json_pack("{s:s, s:s, s:s}", "email", email ? email : "",
		                              "role", admin ? "admin" : "viewer", "csrf", csrf));
	}
	char id[24];
	snprintf(id, sizeof(id), "%lld", (long long)uid);
	const char *p[1] = {id};
	db_query("UPDATE users SET last_login_at = now() WHERE id = $1", p, 1, drop_rows, NULL);
out:
	json_decref(rows);
	sodium_memzero(l, sizeof(*l));
	mem_free(l);
}

static void on_login(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	char ct[128] = "";
	ctl_req_header(rq, "content-type", ct, sizeof(ct));
	struct login *l = mem_zalloc(sizeof(*l));
	if (!l) {
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
		return;
	}
	l->token = token;
	snprintf(l->peer, sizeof(l->peer), "%s", ctl_req_peer(rq));
	l->form = strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
	if (l->form) {
		if (!form_get(body, "email", l->email, sizeof(l->email)) ||
		    !form_get(body, "password", l->pw, sizeof(l->pw))) {
			login_fail(l, 400, "missing_field", "email and password are required",
			           "email");
			goto drop;
		}
	} else {
		json_error_t jerr;
		json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
		const char *e = json_string_value(json_object_get(j, "email"));
		const char *pw = json_string_value(json_object_get(j, "password"));
		if (!json_is_object(j)) {
			ctl_reply_error(
			    token, 400, "invalid_json",
			    "the body must be a JSON object {email, password} or a form", NULL);
		} else if (!e || !*e) {
			ctl_reply_error(token, 400, "missing_field", "email is required", "email");
		} else if (!pw || !*pw) {
			ctl_reply_error(token, 400, "missing_field", "password is required",
			                "password");
		} else if (strlen(e) > CTL_EMAIL_MAX || strlen(pw) > CTL_PW_MAX) {
			ctl_reply_error(token, 400, "invalid_field",
			                "email or password is too long",
			                strlen(e) > CTL_EMAIL_MAX ? "email" : "password");
		} else {
			snprintf(l->email, sizeof(l->email), "%s", e);
			snprintf(l->pw, sizeof(l->pw), "%s", pw);
			json_decref(j);
			goto query;
		}
		json_decref(j);
		goto drop;
	}
query:;
	unsigned retry = 0;
	if (ctl_login_allowed(l->peer, clock_now_us(), &retry)) {
		char msg[128];
		snprintf(msg, sizeof(msg), "too many failed sign-ins: try again in %u s", retry);
		log_info("ctl", "auth: sign-in from %s refused (too many failures)", l->peer);
		login_fail(l, 429, "too_many_attempts", msg, "password");
		goto drop;
	}
	const char *p[1] = {l->email};
	int rc =
	    db_query("SELECT id, email, password_hash, role, disabled_at IS NOT NULL AS disabled "
	             "FROM users WHERE lower(email) = lower($1)",
	             p, 1, on_login_rows, l);
	if (!rc)
		return;
	reply_store(token, rc);
drop:
	sodium_memzero(l, sizeof(*l));
	mem_free(l);
}

static void on_logout(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	const struct ctl_session_who *who = ctl_req_session(rq);
	char csrf[CTL_TOKEN_HEX + 8];
	if (who && !ctl_csrf_ok(who, ctl_req_header(rq, "x-csrf-token", csrf, sizeof(csrf)))) {
		ctl_reply_error(token, 403, "csrf_failed",
		                "the X-CSRF-Token header is missing or wrong", "X-CSRF-Token");
		return;
	}
	if (who)
		ctl_session_close(ctl_req_session_token(rq));
	ctl_reply_hdrs(token, 204, NULL,
	               "Set-Cookie: " CTL_SESSION_COOKIE
	               "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0\r\n",
	               NULL, 0);
}

static void on_me(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	const struct ctl_session_who *who = ctl_req_session(rq);
	if (!who) {
		ctl_reply_error(token, 401, "unauthorized", "not signed in", NULL);
		return;
	}
	api_reply_json_hdrs(token, 200, NULL,
	                    json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)who->user_id,
	                              "email", who->email, "role", who->admin ? "admin" : "viewer",
	                              "csrf", who->csrf));
}

/* ---- /v1/users (admin) --------------------------------------------------------------------- */

#define USER_COLS "id, email, role, created_at, disabled_at, last_login_at"

static void on_user_rows(void *arg, int rc, json_t *rows)
{
	uint64_t token = (uint64_t)(uintptr_t)arg;
	if (rc == -EINVAL) { /* the unique index on lower(email) */
		ctl_reply_error(token, 409, "conflict", "a user with this email exists", "email");
	} else if (rc) {
		reply_store(token, rc);
	} else if (!json_array_size(rows)) {
		ctl_reply_error(token, 404, "not_found", "no such user", "id");
	} else {
		json_t *o = json_incref(json_array_get(rows, 0));
		api_reply_json_hdrs(token, 201, NULL, o);
	}
	json_decref(rows);
}

static void on_users_create(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	json_error_t jerr;
	char msg[160], hash[CTL_PW_HASH_MAX];
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *k;
	json_t *v;
	if (!json_is_object(j)) {
		ctl_reply_error(token, 400, "invalid_json",
		                "the body must be a JSON object {email, role, password}", NULL);
		goto out;
	}
	json_object_foreach(j, k, v)
	{
		if (strcmp(k, "email") && strcmp(k, "role") && strcmp(k, "password")) {
			snprintf(msg, sizeof(msg),
			         "unknown field \"%.60s\": use email, role, password", k);
			ctl_reply_error(token, 400, "invalid_field", msg, k);
			goto out;
		}
	}
	const char *email = json_string_value(json_object_get(j, "email"));
	const char *role = json_string_value(json_object_get(j, "role"));
	const char *pw = json_string_value(json_object_get(j, "password"));
	if (!email) {
		ctl_reply_error(token, 400, "missing_field", "email is required", "email");
	} else if (ctl_email_valid(email)) {
		ctl_reply_error(token, 400, "invalid_field", "email is not an email address",
		                "email");
	} else if (!role) {
		ctl_reply_error(token, 400, "missing_field", "role is required: viewer or admin",
		                "role");
	} else if (strcmp(role, "viewer") && strcmp(role, "admin")) {
		ctl_reply_error(token, 400, "invalid_field", "role must be viewer or admin",
		                "role");
	} else if (!pw) {
		ctl_reply_error(token, 400, "missing_field", "password is required", "password");
	} else if (ctl_pw_hash(pw, hash)) {
		snprintf(msg, sizeof(msg), "password must be %d to %d characters", CTL_PW_MIN,
		         CTL_PW_MAX);
		ctl_reply_error(token, 400, "invalid_field", msg, "password");
	} else {
		const char *p[3] = {email, hash, role};
		int rc =
		    db_query("INSERT INTO users (email, password_hash, role) VALUES ($1, $2, $3) "
		             "RETURNING " USER_COLS,
		             p, 3, on_user_rows, (void *)(uintptr_t)token);
		if (rc)
			reply_store(token, rc);
		else
			log_info("ctl", "auth: user %s (%s) created by %s", email, role,
			         ctl_req_key_prefix(rq));
	}
out:
	sodium_memzero(hash, sizeof(hash));
	json_decref(j);
}

static void on_users_rows(void *arg, int rc, json_t *rows)
{
	uint64_t token = (uint64_t)(uintptr_t)arg;
	if (rc) {
		reply_store(token, rc);
		return;
	}
	api_reply_json_hdrs(token, 200, NULL, json_pack("{s:o}", "users", rows));
}

static void on_users_list(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	int rc = db_query("SELECT " USER_COLS " FROM users ORDER BY id", NULL, 0, on_users_rows,
	                  (void *)(uintptr_t)token);
	if (rc)
		reply_store(token, rc);
}

struct patch {
	uint64_t token;
	int64_t id;
	int disable; /* -1 unchanged */
};

static void on_patch_rows(void *arg, int rc, json_t *rows)
{
	struct patch *pa = arg;
	if (!rc && json_array_size(rows) && pa->disable == 1)
		ctl_session_close_user(pa->id);
	if (!rc && json_array_size(rows)) {
		api_reply_json_hdrs(pa->token, 200, NULL, json_incref(json_array_get(rows, 0)));
		json_decref(rows);
	} else {
		on_user_rows((void *)(uintptr_t)pa->token, rc, rows);
	}
	mem_free(pa);
}

static void on_users_patch(struct ctl_request *rq, void *arg)
{
	(void)arg;
	uint64_t token = ctl_req_token(rq);
	const char *id = ctl_req_path(rq) + strlen("/v1/users/");
	char *end = NULL;
	long long n = strtoll(id, &end, 10);
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	json_t *j = NULL;
	if (!*id || *end || n <= 0) {
		ctl_reply_error(token, 404, "not_found", "no such user", "id");
		return;
	}
	j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *dis = json_object_get(j, "disabled"), *role = json_object_get(j, "role");
	const char *r = json_string_value(role);
	if (!json_is_object(j)) {
		ctl_reply_error(token, 400, "invalid_json",
		                "the body must be a JSON object {disabled, role}", NULL);
	} else if (json_object_size(j) != (dis ? 1u : 0u) + (role ? 1u : 0u) ||
	           !json_object_size(j)) {
		ctl_reply_error(token, 400, "invalid_field", "only disabled and role can change",
		                NULL);
	} else if (dis && !json_is_boolean(dis)) {
		ctl_reply_error(token, 400, "invalid_field", "disabled must be true or false",
		                "disabled");
	} else if (role && (!r || (strcmp(r, "viewer") && strcmp(r, "admin")))) {
		ctl_reply_error(token, 400, "invalid_field", "role must be viewer or admin",
		                "role");
	} else {
		struct patch *pa = mem_zalloc(sizeof(*pa));
		char ids[24];
		snprintf(ids, sizeof(ids), "%lld", n);
		const char *p[3] = {ids, dis ? (json_is_true(dis) ? "t" : "f") : NULL, r};
		int rc =
		    pa ? db_query("UPDATE users SET disabled_at = CASE WHEN $2::boolean IS NULL "
		                  "THEN disabled_at WHEN $2::boolean THEN coalesce(disabled_at, "
		                  "now()) ELSE NULL END, role = coalesce($3, role) WHERE id = "
		                  "$1::bigint RETURNING " USER_COLS,
		                  p, 3, on_patch_rows, pa)
		       : -ENOMEM;
		if (pa) {
			pa->token = token;
			pa->id = n;
			pa->disable = dis ? json_is_true(dis) : -1;
		}
		if (rc) {
			mem_free(pa);
			reply_store(token, rc);
		}
		if (!rc && role) /* a role change takes effect at the next sign-in */
			ctl_session_close_user(n);
	}
	json_decref(j);
}

int ctl_auth_start(int secure_cookie)
{
	au.secure = secure_cookie;
	int rc = ctl_auth_crypto_init();
	if (!rc && !dummy_hash[0])
		rc = ctl_pw_hash("not-a-password-of-anyone", dummy_hash);
	if (!rc)
		rc = ctl_route_add("POST", "/auth/login", 0, 4096, 10000, on_login, NULL);
	if (!rc)
		rc = ctl_route_add("POST", "/auth/logout", 0, 1024, 5000, on_logout, NULL);
	if (!rc)
		rc = ctl_route_add("GET", "/auth/me", 0, 0, 5000, on_me, NULL);
	if (!rc)
		rc = ctl_route_add("POST", "/v1/users", CTL_SCOPE_ADMIN, 4096, 10000,
		                   on_users_create, NULL);
	if (!rc)
		rc = ctl_route_add("GET", "/v1/users", CTL_SCOPE_ADMIN, 0, 10000, on_users_list,
		                   NULL);
	if (!rc)
		rc = ctl_route_add("PATCH", "/v1/users/", CTL_SCOPE_ADMIN, 1024, 10000,
		                   on_users_patch, NULL);
	return rc;
}
