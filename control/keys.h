/* API keys of the REST API (private to control/): the key format and hash, scopes, the
 * in-memory key table the http thread checks each request against, and the /v1/keys routes. */
#ifndef VACS_CONTROL_KEYS_H
#define VACS_CONTROL_KEYS_H

#include "control/control.h"

#include <stddef.h>
#include <stdint.h>

struct json_t;

/*
 * A key is "vacs_" followed by 43 base64url characters (32 random bytes): 48 characters.
 * PostgreSQL keeps its SHA-256 (hex) and its first CTL_KEY_PREFIX_LEN characters, never the
 * key. Scopes are the bits of enum ctl_route_flags without CTL_AUTH_API; "admin" holds
 * every scope. The keys configured by http.api_key_env (ctl_config.api_keys) are bootstrap
 * keys: admin, prefix "bootstrap", id 0, never in PostgreSQL.
 */
#define CTL_KEY_LEN        48
#define CTL_KEY_PREFIX_LEN 12
#define CTL_KEY_HASH_LEN   32
#define CTL_KEY_BOOTSTRAP  "bootstrap"
#define CTL_SCOPE_BITS                                                                             \
	((unsigned)(CTL_SCOPE_READ | CTL_SCOPE_CALLS | CTL_SCOPE_CAMPAIGNS | CTL_SCOPE_ADMIN) &    \
	 ~(unsigned)CTL_AUTH_API)

/* ---- pure helpers (any thread) ---------------------------------------------------------- */

/* A fresh key into out (CTL_KEY_LEN characters and a NUL). 0 or -errno (no randomness). */
int ctl_key_generate(char out[CTL_KEY_LEN + 1]);
/* SHA-256 of key[0..len). */
void ctl_key_hash(const char *key, size_t len, unsigned char out[CTL_KEY_HASH_LEN]);
/* The same in lowercase hex (64 characters and a NUL), as api_keys.hash stores it. */
void ctl_key_hash_hex(const char *key, size_t len, char out[2 * CTL_KEY_HASH_LEN + 1]);
/* The token of an Authorization header value "Bearer <token>" (scheme case-insensitive,
 * spaces around the token dropped): a pointer into hdr and its length, or NULL. */
const char *ctl_bearer_token(const char *hdr, size_t *len);
/* The scope bit of "read", "calls:write", "campaigns", "admin"; 0 for anything else. */
unsigned ctl_scope_bit(const char *name);
/* The name of one scope bit, or NULL. */
const char *ctl_scope_name(unsigned bit);
/* 1 when a key holding `held` may use a route registered with `flags`. */
int ctl_scope_allows(unsigned held, unsigned flags);
/* The name of the first scope `flags` asks for that `held` lacks ("admin" when none is
 * named), for the 403 message. */
const char *ctl_scope_missing(unsigned held, unsigned flags);
/* Scopes from a JSON array of names: 0 and *mask, or -EINVAL with a message naming the
 * problem in msg (not an array, empty, not a string, unknown name). */
int ctl_scopes_parse(const struct json_t *arr, unsigned *mask, char *msg, size_t msglen);

/* ---- the key table ------------------------------------------------------------------------ */

/* Who made a request: set by ctl_keys_check. */
struct ctl_key_who {
	int64_t id;                          /* api_keys.id; 0 for a bootstrap key */
	char prefix[CTL_KEY_PREFIX_LEN + 1]; /* api_keys.prefix, or CTL_KEY_BOOTSTRAP */
	unsigned scopes;                     /* CTL_SCOPE_BITS */
};

enum ctl_key_verdict { CTL_KEY_OK = 0, CTL_KEY_UNKNOWN, CTL_KEY_REVOKED };

/* Starts the table with the bootstrap keys (NULL-terminated, empty strings skipped; only
 * their hashes are kept) and registers the /v1/keys routes. ctl_init, main thread, before
 * the http thread starts. 0 or -errno. */
int ctl_keys_start(const char *const *bootstrap);
/* Forgets every key; later database answers are dropped. ctl_close, main thread. */
void ctl_keys_stop(void);
/* Checks a presented token (constant time over the table, whatever matches). Marks the key
 * used (last_used_at is written in batches by ctl_keys_tick). Any thread; never waits on
 * PostgreSQL. */
enum ctl_key_verdict ctl_keys_check(const char *token, size_t len, struct ctl_key_who *who);
/* Reloads the table from PostgreSQL every few seconds and writes last_used_at of the keys
 * used since; call it about once a second. http thread. */
void ctl_keys_tick(uint64_t now_us);

#endif
