/* vapi-emu webhook sender: blocking HTTP/1.1 POSTs (X-Vapi-Secret) from one worker thread. */
#ifndef VAPI_EMU_WEBHOOK_H
#define VAPI_EMU_WEBHOOK_H

/* One finished POST. Heap strings; body/error NULL when absent. */
struct emu_webhook_result {
	struct emu_webhook_result *next;
	char *call_id;
	long long at_ms; /* when the scenario asked for it (ms since the socket opened) */
	char *type;      /* message.type */
	int status;      /* HTTP status, 0 when there was no response */
	char *body;      /* response body (at most 64 KiB) */
	char *error;     /* transport error text */
	long long elapsed_ms;
};

typedef void (*emu_webhook_wake_cb)(void *arg);

/* Parses url ("http://HOST[:PORT][/PATH]", plain http only) and starts the worker; wake(arg)
 * is called from the worker after each result (it must be thread-safe). 0 or -errno. */
int emu_webhook_start(const char *url, const char *secret, emu_webhook_wake_cb wake, void *arg);
/* Queues a POST of body (takes ownership; freed in every case). 0, -EAGAIN when 64 are
 * already waiting, -ENOTCONN when not started. Any thread. */
int emu_webhook_post(const char *call_id, long long at_ms, const char *type, char *body);
/* Takes every finished result, oldest first (caller frees each with
 * emu_webhook_result_free). Any thread. */
struct emu_webhook_result *emu_webhook_take(void);
void emu_webhook_result_free(struct emu_webhook_result *r);
/* Stops and joins the worker (a POST in flight ends within its 5 s timeouts). */
void emu_webhook_stop(void);

#endif
