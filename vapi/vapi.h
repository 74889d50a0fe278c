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
	size_t max_message; /* largest text frame accepted from VAPI (bytes), 0 = 256 KiB */
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
};

struct vapi_call; /* one AI leg; the sip thread's handle until vapi_call_end */

/* Creates the VAPI call (POST /call) and, once created, opens its WebSocket; frames flow
 * once a port is given (vapi_call_connect). Copies p. Events follow: VAPI_EV_CONNECTED,
 * or VAPI_EV_FAILED. 0 or -errno. */
int vapi_call_create(const struct vapi_call_params *p, struct vapi_call **out);
/* Gives the call the media AI port to move audio with (the call takes a reference by
 * ownership: it calls media_ai_port_release when done). May be called before or after
 * VAPI_EV_CONNECTED. 0 or -errno. */
int vapi_call_connect(struct vapi_call *c, struct media_ai_port *port);

/* The media AI port's notify callback (media_ai_attach(..., vapi_ai_notify, NULL, ...)):
 * wakes the ai thread once per media tick. Any thread. */
void vapi_ai_notify(void *arg);

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
	VAPI_EV_ENDED,         /* VAPI ended the call or the socket closed: text = endedReason */
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

#endif
