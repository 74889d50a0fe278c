/* Dashboard sign-in (private to control/): password hashing, the in-memory session table with
 * CSRF tokens, the failed-login limiter per address, and the /auth and /v1/users routes. */
#ifndef VACS_CONTROL_AUTH_H
#define VACS_CONTROL_AUTH_H

#include <stddef.h>
#include <stdint.h>

/*
 * Passwords: libsodium crypto_pwhash_str (argon2id, the parameters inside the string), as
 * users.password_hash stores it. Sessions: a random 256-bit token (hex) in the cookie
 * CTL_SESSION_COOKIE (HttpOnly, SameSite=Strict), kept in memory with the user, the role and
 * a per-session CSRF token the SPA sends back as X-CSRF-Token on POST/PUT/PATCH/DELETE.
 * A session ends CTL_SESSION_IDLE_US after its last use, or CTL_SESSION_MAX_US after sign-in.
 */
#define CTL_SESSION_COOKIE  "vacs_session"
#define CTL_TOKEN_HEX       64 /* session and CSRF tokens: 32 random bytes in hex */
#define CTL_SESSION_IDLE_US (2ull * 3600 * 1000000)
#define CTL_SESSION_MAX_US  (12ull * 3600 * 1000000)
#define CTL_SESSIONS_MAX    1024
#define CTL_PW_HASH_MAX     128 /* crypto_pwhash_STRBYTES */
#define CTL_PW_MIN          10  /* characters a password must have at least */
#define CTL_PW_MAX          256
#define CTL_EMAIL_MAX       254
/* Failed sign-ins: CTL_LOGIN_MAX_FAILS per address within CTL_LOGIN_WINDOW_US, then 429
 * until the window since the first failure is over. */
#define CTL_LOGIN_MAX_FAILS 5
#define CTL_LOGIN_WINDOW_US (10ull * 60 * 1000000)

/* A signed-in user, as the session table keeps it. */
struct ctl_session_who {
	int64_t user_id;
	char email[CTL_EMAIL_MAX + 1];
	int admin; /* role admin: every scope; else viewer: "read" */
	char csrf[CTL_TOKEN_HEX + 1];
};

/* 0 once libsodium is ready (idempotent), -EIO if it cannot start. Any thread. */
int ctl_auth_crypto_init(void);
/* Hashes pw into out (NUL-terminated, at most CTL_PW_HASH_MAX). 0, -EINVAL (pw not
 * CTL_PW_MIN..CTL_PW_MAX bytes), -ENOMEM (libsodium could not get the memory). Any thread;
 * slow on purpose (about 0.1 s, 64 MiB). */
int ctl_pw_hash(const char *pw, char out[CTL_PW_HASH_MAX]);
/* 0 when pw matches hash; -EACCES otherwise (also for a malformed hash). Any thread. */
int ctl_pw_verify(const char *hash, const char *pw);
/* 0 when email looks like an address (one '@', printable, no spaces, 3..254 bytes). */
int ctl_email_valid(const char *email);

/* Opens a session; token and csrf receive fresh hex tokens. 0, -ENOSPC (table full of live
 * sessions), -EIO (no randomness). Any thread. */
int ctl_session_open(int64_t user_id, const char *email, int admin, uint64_t now_us,
                     char token[CTL_TOKEN_HEX + 1], char csrf[CTL_TOKEN_HEX + 1]);
/* Looks a token up (constant time over the table); refreshes its idle time. 0 and *who,
 * or -ENOENT (unknown, expired). Any thread. */
int ctl_session_find(const char *token, uint64_t now_us, struct ctl_session_who *who);
/* Ends one session (logout); unknown tokens are ignored. Any thread. */
void ctl_session_close(const char *token);
/* Ends every session of a user (disabled). Any thread. */
void ctl_session_close_user(int64_t user_id);
/* 1 when hdr (the X-CSRF-Token value, may be NULL) is the session's token. */
int ctl_csrf_ok(const struct ctl_session_who *who, const char *hdr);
/* Forgets every session and counter (tests, ctl_close). */
void ctl_auth_reset(void);

/* 0 when addr may try to sign in now, -EBUSY after too many failures (*retry_s set). */
int ctl_login_allowed(const char *addr, uint64_t now_us, unsigned *retry_s);
void ctl_login_failed(const char *addr, uint64_t now_us);
void ctl_login_succeeded(const char *addr);

/* The value of cookie `name` in a Cookie header into buf; NULL when absent or too long. */
const char *ctl_cookie_get(const char *hdr, const char *name, char *buf, size_t len);

/* Registers /auth/login, /auth/logout, /auth/me, GET and POST /v1/users, PATCH
 * /v1/users/{id}. secure_cookie: add Secure to the cookie (the site is served over TLS).
 * Main thread, from ctl_init. 0 or -errno. */
int ctl_auth_start(int secure_cookie);

struct ctl_request;
/* The request's session (its cookie named a live one), or NULL. http thread, handler call. */
const struct ctl_session_who *ctl_req_session(const struct ctl_request *rq);
/* The session token of the request's cookie ("" when none). Handler call only. */
const char *ctl_req_session_token(const struct ctl_request *rq);

#endif
