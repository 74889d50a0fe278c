/* Private sharing inside the vapi module: the call object, the threads' shared state. */
#ifndef VACS_VAPI_VAPI_INT_H
#define VACS_VAPI_VAPI_INT_H

#include "vapi/vapi.h"

#include "core/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Ownership. A call is one heap object shared by three threads and freed by whoever drops
 * the last reference (vapi_call_unref):
 *   - the sip thread's handle: one reference, dropped by vapi_call_end;
 *   - every message in a mailbox (io commands, ai commands, events) holds one;
 *   - the io thread holds one while the POST /call transfer is in its multi handle;
 *   - its ai thread holds one while the call is on that thread's list (from the first message about
 *     the call until its socket is gone and, when it never had one, until vapi_call_end).
 * Fields are grouped by the thread that writes them. `ended` is the only field written by
 * the sip thread and read by the others; the io thread fills the ws_* fields before it
 * posts AI_CONNECT, and the mailbox's lock orders those writes before the ai thread reads.
 */

struct lws;
struct lws_context;
struct mbox;
struct metric;
struct vapi_ai; /* one ai thread (ws.c) */

#define VAPI_FRAME_MAX  640u          /* 20 ms of 16 kHz PCM */
#define VAPI_PRE        32u           /* >= LWS_PRE (checked in ws.c) */
#define VAPI_BODY_MAX   (64u * 1024u) /* largest REST answer accepted */
#define VAPI_CALL_MAGIC 0x76617069u
#define VAPI_END_CALL   "{\"type\":\"end-call\"}"

/* One queued text frame for the socket; buf has VAPI_PRE bytes of headroom for lws. */
struct vapi_txt {
	struct vapi_txt *next;
	size_t len;
	unsigned char buf[];
};

enum { VAPI_GATE_IDLE = 0, VAPI_GATE_CREATED, VAPI_GATE_WANTED };

enum vapi_ws_state {
	VAPI_WS_IDLE = 0,   /* no connect requested yet */
	VAPI_WS_CONNECTING, /* lws_client_connect_via_info issued */
	VAPI_WS_UP,         /* established */
	VAPI_WS_GONE,       /* the wsi is gone (or never came); nothing more on the socket */
};

struct vapi_call {
	uint32_t magic;
	atomic_int refs;
	atomic_int ended; /* vapi_call_end ran (sip thread writes, all read) */
	uint64_t owner;
	char *name; /* our call id, for logs ("-" when none) */
	char *body; /* POST /call JSON, built by vapi_call_create */
	enum media_ai_format format;

	/* When the WebSocket may open (defer_connect): the io thread swaps in GATE_CREATED once
	 * the call exists, the sip thread GATE_WANTED once it has a port; whichever comes
	 * second posts VAPI_AI_CONNECT. Calls without defer_connect start at GATE_WANTED. */
	atomic_int gate;
	int deferred;       /* defer_connect (set at create, read-only after) */
	struct vapi_ai *ai; /* the ai thread holding its socket (set at create) */

	/* sip thread */
	struct vapi_call *sip_prev, *sip_next;
	int port_given;

	/* io thread (the ws_* and vapi_id fields are read-only once AI_CONNECT is posted) */
	struct vapi_call *io_next;
	void *easy; /* CURL * */
	void *hdrs; /* struct curl_slist * */
	char *resp;
	size_t resp_len;
	int resp_too_big;
	char errbuf[256]; /* CURL_ERROR_SIZE */
	char *vapi_id;
	char *ws_address; /* numeric */
	char *ws_host;    /* Host header, SNI, certificate name */
	char *ws_path;    /* with the query */
	int ws_port;
	int ws_tls;

	/* ai thread */
	struct vapi_call *ai_next;
	int ai_listed, ai_finished, end_handled, reported, established, closing, killed;
	int rx_paused, rx_skip;
	enum vapi_ws_state state;
	struct lws *wsi;
	struct media_ai_port *port;
	struct vapi_txt *txq, *txq_tail;
	char *rx; /* text message being reassembled */
	size_t rx_len, rx_cap;
	char *ended_reason;   /* from status-update ended */
	int close_code;       /* the peer's, or the one we sent (1009) */
	uint64_t deadline_us; /* connect or close bound */
	uint64_t kill_us;     /* when kill_wsi last asked lws to drop the wsi */
	char err[160];        /* why the connect failed */
};

/* Masking keys for upstream frames (frame.c): a ChaCha20 stream seeded from the kernel.
 * One per ai thread; members are private. */
struct vapi_mask_rng {
	unsigned char seed[32];
	unsigned char pool[512]; /* 128 keys; a key is zeroed once taken */
	unsigned pos;            /* next unused byte of pool */
	unsigned refills;
};

/* Events waiting for room in the event mailbox (terminal events are never dropped). */
struct vapi_ovf_node {
	struct vapi_ovf_node *next;
	unsigned char msg[]; /* struct vapi_evmsg */
};
struct vapi_ovf {
	struct vapi_ovf_node *head, *tail;
	struct log_ratelimit rl; /* for "event dropped" lines of this thread */
};

/* What the event mailbox carries: the public event plus a reference on its call, so the
 * sip thread can drop events of calls it has ended. */
struct vapi_evmsg {
	struct vapi_event ev;
	struct vapi_call *call;
};

enum vapi_ai_op { VAPI_AI_PORT = 1, VAPI_AI_TEXT, VAPI_AI_CONNECT, VAPI_AI_MARK };
struct vapi_aimsg {
	enum vapi_ai_op op;
	struct vapi_call *call; /* one reference, dropped by the ai thread */
	void *ptr;              /* PORT: the media AI port; TEXT: struct vapi_txt; MARK: the id */
};

enum vapi_msg_type {
	VAPI_MT_STATUS = 0,
	VAPI_MT_SPEECH,
	VAPI_MT_INTERRUPTED,
	VAPI_MT_TRANSCRIPT,
	VAPI_MT_TOOL_CALLS,
	VAPI_MT_CONVERSATION,
	VAPI_MT_MODEL_OUTPUT,
	VAPI_MT_HANG,
	VAPI_MT_VOICE_INPUT,
	VAPI_MT_TRANSFER,
	VAPI_MT_FUNCTION_CALL,
	VAPI_MT_END_REPORT,
	VAPI_MT_OTHER,
	VAPI_MT_COUNT
};

struct vapi_global {
	int up;
	char *api_url, *api_key, *user_agent, *ca_file;
	char *auth; /* "Bearer <key>" */
	unsigned timeout_ms;
	size_t max_message;
	struct mbox *events; /* struct vapi_evmsg, read by the sip thread */
	struct vapi_call *sip_calls;

	/* io thread */
	struct mbox *io_cmd; /* struct vapi_call * (one reference each) */
	void *multi;         /* CURLM * */
	pthread_t io_thread;
	int io_started;
	atomic_int io_stop;
	struct vapi_ovf io_ovf;

	/* ai threads, one per media worker */
	struct vapi_ai *ai;
	unsigned n_ai;
	int ai_hosted; /* vapi_config.on_media_workers */
	atomic_int ai_stop;

	struct metric *m_connected, *m_failed, *m_up, *m_down, *m_active;
	struct metric_hist *m_up_latency; /* RTP packet received -> its frame written */
	struct metric *m_malformed, *m_too_large, *m_dropped;
	struct metric *m_type[VAPI_MT_COUNT];
};

extern struct vapi_global vapi_g;

/* vapi.c */
void vapi_call_ref(struct vapi_call *c);
/* Drops one reference; the last one frees the call (any thread). */
void vapi_call_unref(struct vapi_call *c);
/* Posts an event for c (strings copied; NULL ok) unless the sip thread ended c. CONNECTED,
 * FAILED and ENDED wait in ovf when the mailbox is full; others are dropped and counted.
 * Called by the io and ai threads, each with its own ovf. */
void vapi_event_post(struct vapi_ovf *ovf, struct vapi_call *c, enum vapi_event_type type,
                     int status, const char *id, const char *text, const char *text2);
/* Retries what waits in ovf; frees it all when `discard`. */
void vapi_ovf_flush(struct vapi_ovf *ovf, int discard);
void vapi_txt_free_all(struct vapi_txt *t);
struct vapi_txt *vapi_txt_new(const char *s, size_t len);

/* frame.c: upstream binary frames written by vacsd (RFC 6455 5.2, client side) */
#define VAPI_WS_HDR_MAX 14u /* the largest client frame header, masking key included */
void vapi_mask_rng_init(struct vapi_mask_rng *r);
/* Header length (masking key included) of a client frame of len payload bytes. */
size_t vapi_ws_frame_hdr_len(size_t len);
/* Turns out[hdr .. hdr + len), hdr = vapi_ws_frame_hdr_len(len), into one whole masked
 * binary frame: writes the header and a fresh masking key in front and masks the payload
 * in place. Returns the frame's length (hdr + len). Any thread, one rng per thread. */
size_t vapi_ws_frame_binary(struct vapi_mask_rng *r, unsigned char *out, size_t len);

/* rest.c: the io thread */
int vapi_io_start(void);
void vapi_io_stop(void);
void vapi_io_wake(void);
/* Splits a ws:// or wss:// URL. Outputs are heap strings (mem_free). 0 or -EINVAL. */
int vapi_ws_url_parse(const char *url, char **host, int *port, char **path, int *tls);
/* The error text of a failed REST answer: VAPI's "message" (string or array of strings),
 * else "error", else the raw body, at most ~300 characters. Heap string or NULL. */
char *vapi_rest_error_text(const char *body, size_t len);

/* ws.c: the ai thread */
/* Starts n ai threads (0 = 1). */
int vapi_ai_start(unsigned n);
void vapi_ai_stop(void);
/* The ai thread for a call created with this affinity. */
struct vapi_ai *vapi_ai_pick(unsigned affinity);
/* Posts to the ai thread and wakes it; the message takes its own reference on c. On
 * failure (-EAGAIN, mailbox full) ptr stays the caller's. */
int vapi_ai_post(enum vapi_ai_op op, struct vapi_call *c, void *ptr);
void vapi_ai_wake(struct vapi_ai *ai);
/* msg.c -> ws.c: VAPI ended the call (status-update ended): ENDED, then close. */
void vapi_ws_remote_end(struct vapi_call *c, const char *reason);
/* msg.c -> ws.c: an event from the socket's thread. */
void vapi_ws_event(struct vapi_call *c, enum vapi_event_type type, int status, const char *id,
                   const char *text, const char *text2);

/* msg.c: one complete text frame from VAPI (ai thread). Never fails: bad input is counted. */
void vapi_msg_handle(struct vapi_call *c, const char *text, size_t len);
/* The metric slot of a message type name. */
enum vapi_msg_type vapi_msg_type_of(const char *type);
extern const char *const vapi_msg_type_names[VAPI_MT_COUNT];

#endif
