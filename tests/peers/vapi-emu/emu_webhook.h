/* vapi-emu webhook sender: blocking HTTP/1.1 POSTs from one worker thread, with VAPI's
 * credential modes (X-Vapi-Secret, bearer, a custom header, HMAC-SHA256/512). */
#ifndef VAPI_EMU_WEBHOOK_H
#define VAPI_EMU_WEBHOOK_H

#include <stddef.h>

/* One finished POST. Heap strings; body/error NULL when absent. */
struct emu_webhook_result {
	struct emu_webhook_result *next;
	char *call_id;
	long long at_ms; /* when the scenario asked for it (ms since the socket opened) */
	char *type;      /* message.type */
	int status;      /* HTTP status, 0 when there was no response */
	char *body;      /* response body (at most 64 KiB) */
	char *error;     /* transport error text */
	char *auth;      /* the credential sent: a MODE, "none", or "wrong:MODE" */
	long long elapsed_ms;
};

typedef void (*emu_webhook_wake_cb)(void *arg);

/* Sets the credential mode of every POST (--webhook-auth), before emu_webhook_start:
 *   x-vapi-secret (default)  X-Vapi-Secret: <secret>
 *   bearer                   Authorization: Bearer <secret>
 *   header:NAME              NAME: <secret>   (a bearer plan, headerName NAME, no prefix)
 *   hmac-sha256              x-signature: hex HMAC-SHA256(secret, "<ts>.<body>"),
 *                            x-timestamp: <ts> (Unix seconds)
 *   hmac-sha512-base64       the same with SHA-512, the signature in base64
 *   none                     no credential
 * 0, or -EINVAL for an unknown mode. */
int emu_webhook_set_auth(const char *mode);
/* 1 when mode is valid for one request (emu_webhook_post_auth): a mode above, or "wrong"
 * (the configured mode with a wrong secret). */
int emu_webhook_auth_valid(const char *mode);

/* Parses url ("http://HOST[:PORT][/PATH]", plain http only) and starts the worker; wake(arg)
 * is called from the worker after each result (it must be thread-safe). 0 or -errno. */
int emu_webhook_start(const char *url, const char *secret, emu_webhook_wake_cb wake, void *arg);
/* Queues a POST of body (takes ownership; freed in every case). 0, -EAGAIN when 64 are
 * already waiting, -ENOTCONN when not started. Any thread. */
int emu_webhook_post(const char *call_id, long long at_ms, const char *type, char *body);
/* The same with the credential of this one request overridden (auth NULL = configured). */
int emu_webhook_post_auth(const char *call_id, long long at_ms, const char *type, char *body,
                          const char *auth);
/* Takes every finished result, oldest first (caller frees each with
 * emu_webhook_result_free). Any thread. */
struct emu_webhook_result *emu_webhook_take(void);
void emu_webhook_result_free(struct emu_webhook_result *r);
/* Stops and joins the worker. POSTs still queued are sent within 2 s in all; those left
 * then are reported with the error "not sent: emulator stopping". */
void emu_webhook_stop(void);

struct json_t;
/* The body of an end-of-call-report (reference vapi.md §3.3) as a heap string (free()):
 * {"message":{"type":"end-of-call-report","timestamp","endedReason","call":{"id","name"},
 * "artifact":{"transcript","messages":[],"recordingUrl":null},"analysis":{"summary"},
 * "cost":0.0,"startedAt","endedAt"}}. The transcript holds one line per final `transcript`
 * message among the first n_done scenario actions ("AI: ..." / "User: ..."), "" when none.
 * name may be NULL (left out). NULL when out of memory. */
char *emu_webhook_end_report(const char *call_id, const char *name, const char *ended_reason,
                             const struct json_t *actions, size_t n_done,
                             long long started_epoch_ms, long long ended_epoch_ms);

#endif
