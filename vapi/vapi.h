/* The VAPI AI leg: call creation over VAPI's REST API (libcurl, io thread) and the call's
 * media WebSocket (libwebsockets client, ai thread), wired to a media AI port. */
#ifndef VACS_VAPI_VAPI_H
#define VACS_VAPI_VAPI_H

#include "media/media.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Threads (DESIGN.md §4): the sip thread calls everything below; it never blocks. The io
 * thread runs libcurl (POST {api_url}/call, name resolution); the ai thread runs one
 * libwebsockets client context with ONE 20 ms tick for all its sockets. Results come
 * back to the sip thread as events (vapi_event_fd / vapi_events_poll). Audio never
 * passes through the sip thread: the ai thread moves frames between the socket and the
 * media AI port (media_ai_read / media_ai_write) and flushes the port itself on
 * barge-in (user-interrupted, or speech-update role user status started).
 */

struct vapi_config {
	const char *api_url;         /* "https://api.vapi.ai" (no trailing slash) */
	const char *api_key;         /* private key, from the environment */
	const char *user_agent;      /* always sent (Cloudflare answers 403 "1010" without one) */
	unsigned connect_timeout_ms; /* REST request, and WebSocket connect, each */
	const char *ca_file;         /* extra CA file for TLS (tests), NULL = system store */
	size_t max_message;  /* largest text frame accepted from VAPI (bytes), 0 = 256 KiB */
	unsigned ai_threads; /* WebSocket contexts, one per media worker (0 = 1) */
	/* Run context i on media worker i (media_worker_guest_add) instead of a thread of its
	 * own, for every i below media_worker_count(): a frame then goes to VAPI from the
	 * wake-up that received its packet, with no hand-off between threads. */
	int on_media_workers;
};

/* Starts the io and ai threads. 0 or -errno. Main thread, once. */
int vapi_init(const struct vapi_config *cfg);
/* Ends every call (end-call, close) and joins the threads. */
void vapi_close(void);

struct vapi_call_params {
	uint64_t owner;           /* echoed in every event of this call */
	const char *name;         /* "name" of the VAPI call (our call id), may be NULL */
	const char *assistant_id; /* "assistantId" ... */
	const char
	    *assistant_json; /* ... or "assistant": a transient assistant (JSON object text) */
	const char
	    *variables_json; /* assistantOverrides.variableValues (JSON object text), NULL = none */
	unsigned max_duration_s;     /* assistantOverrides.maxDurationSeconds, 0 = VAPI's default */
	enum media_ai_format format; /* transport.audioFormat: mulaw 8000 or pcm_s16le 16000 */
	int defer_connect; /* open the WebSocket only once vapi_call_connect gives the port
	                      (outbound: created while the phone rings, connected on answer) */
	unsigned affinity; /* ai thread (modulo their number): media_session_worker() of the
	                      leg the AI talks to, so a worker wakes only its own thread */
};

struct vapi_call; /* one AI leg; the sip thread's handle until vapi_call_end */

/* Creates the VAPI call (POST /call) and, once created, opens its WebSocket (with
 * defer_connect: once created and given a port); frames flow once a port is given
 * (vapi_call_connect). Copies p. Events follow: VAPI_EV_CONNECTED,
 * or VAPI_EV_FAILED. 0 or -errno. */
int vapi_call_create(const struct vapi_call_params *p, struct vapi_call **out);
/* Gives the call the media AI port to move audio with (the call takes a reference by
 * ownership: it calls media_ai_port_release when done). May be called before or after
 * VAPI_EV_CONNECTED. 0 or -errno. */
int vapi_call_connect(struct vapi_call *c, struct media_ai_port *port);

/* Moves the call's audio to another media AI port (the warm transfer's whisper: the
 * assistant speaks to the agent, and back): the call releases the port it had and
 * takes this one (same format). 0 or -errno; on error the port stays the caller's. */
int vapi_call_move(struct vapi_call *c, struct media_ai_port *port);
/* Asks for MEDIA_EV_MARK(id) (owner: the port's leg) once the assistant's audio received
 * so far has been played (or flushed). 0 or -errno. */
int vapi_call_mark(struct vapi_call *c, uint32_t id);

/* The media AI port's notify callback, with the call's argument:
 * media_ai_attach(..., vapi_ai_notify, vapi_call_notify_arg(c), ...). Wakes the call's ai
 * thread once per batch of frames. Any thread. */
void vapi_ai_notify(void *arg);
void *vapi_call_notify_arg(const struct vapi_call *c);

/* Messages to the assistant (queued; sent once the socket is up). 0 or -errno. */
int vapi_call_say(struct vapi_call *c, const char *text, int end_call_after);
int vapi_call_add_message(struct vapi_call *c, const char *role, const char *content,
                          int trigger_response);
/* "mute-assistant", "unmute-assistant", "mute-customer", "unmute-customer". */
int vapi_call_control(struct vapi_call *c, const char *control);

/* Ends the AI leg: end-call on the socket if it is up, then close; cancels a pending
 * create. No more events for this call after it; the handle is dead on return. NULL ok. */
void vapi_call_end(struct vapi_call *c);

enum vapi_event_type {
	VAPI_EV_CONNECTED = 1, /* the socket is up: id = VAPI call id */
	VAPI_EV_FAILED,        /* create or connect failed: status (HTTP code, 0 = none), text */
	VAPI_EV_ENDED,         /* VAPI ended the call or the socket closed: text = endedReason;
	                          status 1 = the socket dropped without an end from VAPI */
	VAPI_EV_STATUS,        /* status-update: text = status */
	VAPI_EV_SPEECH,        /* speech-update: text = role, status = 1 started / 0 stopped */
	VAPI_EV_TRANSCRIPT,    /* final transcript: text = role, text2 = transcript */
	VAPI_EV_TOOL_CALL,     /* in-band tool call: text = name, text2 = arguments (JSON), id */
	VAPI_EV_INTERRUPTED,   /* user-interrupted (the port was flushed already) */
};

struct vapi_event {
	enum vapi_event_type type;
	uint64_t owner;
	int status;
	char *id; /* heap strings, NULL when absent; freed by vapi_event_free */
	char *text;
	char *text2;
};

/* Readable when events wait; the sip thread then polls. */
int vapi_event_fd(void);
unsigned vapi_events_poll(struct vapi_event *ev, unsigned max);
void vapi_event_free(struct vapi_event *ev);

/* ---- Server webhooks (reference vapi.md §3): pure functions, any thread ------------------
 * vacsd's HTTP server receives them (route /webhooks/vapi); these check the credential and
 * parse the body. Nothing here touches the calls: the caller routes the result. */

enum vapi_hook_auth {
	VAPI_HOOK_BEARER = 1, /* a token in a header (Authorization: Bearer, or X-Vapi-Secret) */
	VAPI_HOOK_HMAC,       /* an HMAC of "{timestamp}.{body}" (or "{body}") in a header */
};

struct vapi_hook_config {
	enum vapi_hook_auth auth;
	const char *secret;           /* the token (bearer) or the HMAC key */
	const char *header;           /* bearer: lowercase header name ("authorization") */
	int bearer_prefix;            /* bearer: the value is "Bearer <token>" (else the token) */
	const char *algorithm;        /* hmac: "sha256" (default), "sha512", "sha1" */
	const char *signature_header; /* hmac: lowercase, NULL = "x-signature" */
	const char *timestamp_header; /* hmac: lowercase, NULL = "x-timestamp" */
	const char *signature_prefix; /* hmac: text before the signature ("sha256="), NULL = "" */
	int include_timestamp;        /* hmac: sign "{timestamp}.{body}" (else "{body}") */
	int base64;                   /* hmac: signature in base64 (else lowercase hex) */
	unsigned max_skew_s;          /* hmac: |now - timestamp| limit, 0 = 300 s */
};

/* Looks a request header up by lowercase name; copies it into buf (NULL when absent). */
typedef const char *(*vapi_hook_header_fn)(void *ctx, const char *name, char *buf, size_t len);

/* Checks the request's credential against cfg, comparing in constant time. 0 when
 * authentic; -EACCES with *why a static reason ("missing credential", "wrong credential",
 * "missing timestamp", "stale timestamp", "malformed signature"); -EINVAL for a bad cfg.
 * Timestamps are Unix seconds (milliseconds are recognised by size). */
int vapi_hook_verify(const struct vapi_hook_config *cfg, vapi_hook_header_fn hdr, void *ctx,
                     const char *body, size_t len, uint64_t now_s, const char **why);

enum vapi_hook_type {
	VAPI_HOOK_OTHER = 0,         /* any other type: acknowledged, counted */
	VAPI_HOOK_TOOL_CALLS,        /* answer {"results":[...]} */
	VAPI_HOOK_ASSISTANT_REQUEST, /* answer {"assistantId"} or {"error"} within 7.5 s */
	VAPI_HOOK_TRANSFER_DEST, /* transfer-destination-request: {"destination"} or {"error"} */
	VAPI_HOOK_FUNCTION_CALL, /* legacy function-call: answer {"result"} */
	VAPI_HOOK_STATUS,        /* status-update */
	VAPI_HOOK_END_REPORT,    /* end-of-call-report */
	VAPI_HOOK_HANG,          /* hang: the assistant is stalled */
};

struct vapi_hook_tool {
	char *id;        /* toolCallId ("" when VAPI gave none) */
	char *name;      /* function name */
	char *arguments; /* JSON object text ("{}" when absent; a string argument is parsed) */
};

/* A parsed webhook. Strings are heap copies (mem_), NULL when absent. */
struct vapi_hook_msg {
	enum vapi_hook_type type;
	char type_name[48];    /* message.type as sent (cut to fit) */
	char *call_id;         /* message.call.id (VAPI's call id) */
	char *call_name;       /* message.call.name (vacsd sets it to its own call id) */
	char *status;          /* status-update: status */
	char *ended_reason;    /* status-update / end-of-call-report: endedReason */
	char *phone_number;    /* the number called: message.phoneNumber.number, else
	                          message.call.phoneNumber.number */
	char *customer_number; /* message.customer.number, else message.call.customer.number */
	struct vapi_hook_tool *tools; /* tool-calls: toolCallList[] (both argument shapes) */
	unsigned n_tools;
	char *summary;       /* end-of-call-report: analysis.summary (else message.summary) */
	char *transcript;    /* end-of-call-report: artifact.transcript (else message.transcript) */
	char *recording_url; /* end-of-call-report: artifact.recordingUrl / recording.mono... */
	double cost;         /* end-of-call-report: cost */
	int has_cost;
	char *started_at, *ended_at; /* end-of-call-report: ISO 8601 as sent */
};

/* Parses a webhook body ({"message":{...}}). 0, or -EINVAL with *why a static reason
 * naming the bad part ("body is not JSON", "no message object", "message.type missing",
 * "toolCallList is not an array", ...); -ENOMEM. Unknown types parse as VAPI_HOOK_OTHER. */
int vapi_hook_parse(const char *body, size_t len, struct vapi_hook_msg *out, const char **why);
void vapi_hook_msg_free(struct vapi_hook_msg *m);

/* One tool result for vapi_hook_results_json. */
struct vapi_hook_result {
	const char *id, *name;
	const char *result; /* NULL when error is set */
	const char *error;
};
/* {"results":[{"toolCallId","name","result"|"error"}, ...]} as a heap string (mem_). */
char *vapi_hook_results_json(const struct vapi_hook_result *r, unsigned n, size_t *len);

#endif
