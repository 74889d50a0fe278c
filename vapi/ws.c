/* The ai contexts: each a libwebsockets client context holding the VAPI sockets of the
 * calls of one media worker, with one 20 ms tick, run by that worker (or a thread). */
#include "vapi/vapi_int.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/mbox.h"
#include "core/mem.h"
#include "core/metric.h"
#include "media/media.h"

#include <errno.h>
#include <ev.h>
#include <libwebsockets.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/*
 * Everything here runs on the thread that runs a call's ai context (its "ai thread"
 * below), except vapi_ai_start/stop (main thread, before the context is run and after it
 * no longer is), vapi_ai_post/wake and vapi_ai_notify (any thread: they only post to the
 * mailbox and call lws_cancel_service; vapi_ai_notify on the hosting worker pumps). There
 * is one context per media worker (libwebsockets runs one service thread per context, so
 * contexts are how the sockets use more than one core); a call is given the context of
 * its leg's worker when it is created. Hosted (vapi_config.on_media_workers), media worker
 * N runs context N as its guest (media_worker_guest_add): the worker runs the libev loop
 * without waiting when the loop's epoll fd is readable and every GUEST_POLL_US, and its
 * vapi_ai_notify writes the frames it just queued, so a frame goes up from the wake-up
 * that received its packet. Otherwise (no worker for it) the context has a thread of its
 * own that blocks in ev_run.
 *
 * The thread wakes on three things: lws socket events, lws_cancel_service (a media worker
 * queued frames, or a mailbox message waits) which lws turns into EVENT_WAIT_CANCELLED,
 * and ONE 20 ms sul tick for the whole context (never a timer per socket). A media
 * worker's wake-up pumps only the calls whose ports it queued on the thread's
 * media_ai_ready (pump_ready): their frames are written at once while the socket takes
 * them. The tick, and a wake-up from the sip thread (a call ended), also run sweep(),
 * which visits each call: it acts on vapi_call_end, enforces the connect and close
 * bounds, resumes reading once the caller's playout has drained, and pumps. Text frames
 * and frames that found the socket full go through the writable callback, which keeps
 * their order. Nothing on the audio path allocates: frames are built in the thread's txbuf
 * (frame.c masks them; lws writes them as raw bytes).
 *
 * A call's wsi is gone after CLIENT_CONNECTION_ERROR, CLIENT_CLOSED or WSI_DESTROY
 * (lws gives some of those in sequence for one wsi); the call leaves the list only in a
 * later sweep, outside any callback of its wsi.
 */

_Static_assert(LWS_PRE <= VAPI_PRE, "VAPI_PRE must cover LWS_PRE");

#define TICK_US        20000u
#define CLOSE_BOUND_US 1000000u /* a peer that does not answer our close is dropped */
#define STOP_BOUND_US  1500000u
#define KILL_RETRY_US  500000u
/* Stop reading the socket above this much queued audio, resume below RESUME_MS. With
 * RX_CHUNK this keeps the playout ring (bound 1 s, media/dsp.c) from ever dropping audio:
 * VAPI's bursts wait in TCP instead. (A barge-in message queued in TCP behind audio is
 * only seen once that audio was read: the pause leaves 700 ms of room to find it.) */
#define PAUSE_MS  700u
#define RESUME_MS 500u
/* lws hands us at most this much per receive callback (and holds this per socket: 1 KB
 * is 128 ms of mu-law, 32 ms of 16 kHz PCM). */
#define RX_CHUNK 1024u
/* A text message is gathered in a buffer of the call's; one that grew past this is
 * given back once the message is handled (most are a few hundred bytes; a
 * conversation-update can be many KB), so idle calls hold little. */
#define RX_KEEP 1024u

/* Upstream frames of one call written at once (more than one waits after a late wake-up,
 * or behind a text message or a full socket). */
#define TX_BATCH 4u

#define AI_CAP 4096u /* commands waiting for one ai thread */
#define AI_MAX 16u   /* ai threads at most (one per media worker) */

struct vapi_ai {
	unsigned idx;
	/* Run by media worker idx (ai_guest) rather than by a thread of its own. */
	int hosted;
	atomic_int hosted_live; /* cleared by vapi_ai_stop before the guest is removed */
	atomic_int done;        /* the stopping sweep finished (hosted) */
	uint64_t guest_next_us; /* hosted: when a tick next runs the loop */
	struct mbox *cmd;       /* struct vapi_aimsg */
	struct lws_context *ctx;
	/* The thread's event loop: libev on epoll, handed to lws as a foreign loop. lws's
	 * own poll() loop visits every socket of the context at each wake-up, and with a
	 * wake-up per upstream frame (media/dsp.c sends a frame when its packet arrives)
	 * that cost most of the thread's time at a few hundred calls; epoll's cost follows
	 * the ready sockets. */
	struct ev_loop *loop;
	pthread_t thread;
	int started, exit;
	struct vapi_ovf ovf;
	_Atomic(struct lws_context *) notify_ctx; /* NULL once closing */
	atomic_int notify_users;
	/* A media worker's wake-up is on its way (vapi_ai_notify): later ones need no
	 * second lws_cancel_service until this thread has taken it. */
	atomic_int wake_pending;
	/* The sip thread ended a call (vapi_ai_wake): the next wake-up visits every call,
	 * not only those with frames. */
	atomic_int sweep_wanted;
	struct media_ai_ready ready; /* the calls' ports with frames waiting */
	struct vapi_mask_rng rng;    /* masking keys of the upstream frames */
	/* Upstream frames being written (send_frames): up to TX_BATCH of one call in one
	 * write, and their packets' receive stamps. */
	unsigned char txbuf[VAPI_PRE + TX_BATCH * (VAPI_WS_HDR_MAX + VAPI_FRAME_MAX)];
	uint64_t tx_rx_us[TX_BATCH];
	struct vapi_call *list; /* the calls this thread holds */
	lws_sorted_usec_list_t tick_sul;
	uint64_t tick_next_us, stop_deadline_us;
};

/* Hosted: the loop is run at least this often from the worker's ticks (the 20 ms tick and
 * lws's timeouts are timers of the loop; events on its sockets run it at once). */
#define GUEST_POLL_US 2000u

/* The context the current thread hosts (a media worker's guest), else NULL. */
static _Thread_local struct vapi_ai *ai_self;

/* Static: a media worker may still call vapi_ai_notify with one as its argument while
 * vapi_ai_stop runs (notify_ctx tells it the thread is gone). */
static struct vapi_ai ai_threads[AI_MAX];

/* ---- events and state changes ---- */

void vapi_ws_event(struct vapi_call *c, enum vapi_event_type type, int status, const char *id,
                   const char *text, const char *text2)
{
	vapi_event_post(&c->ai->ovf, c, type, status, id, text, text2);
}

static void ws_fail(struct vapi_call *c, const char *why)
{
	if (c->reported)
		return;
	c->reported = 1;
	if (atomic_load(&c->ended))
		return;
	metric_inc(vapi_g.m_failed);
	log_warn("vapi", "%s: VAPI WebSocket to %s:%d failed: %s", c->name,
	         c->ws_host ? c->ws_host : "?", c->ws_port, why);
	vapi_ws_event(c, VAPI_EV_FAILED, 0, NULL, why, NULL);
}

/* The wsi is gone: report the end once (ENDED when the socket was up, else FAILED). */
static void ws_gone(struct vapi_call *c)
{
	if (c->state == VAPI_WS_GONE)
		return;
	c->state = VAPI_WS_GONE;
	c->wsi = NULL;
	c->rx_paused = 0;
	if (!c->established) {
		ws_fail(c, c->err[0] ? c->err : "the WebSocket closed before it was up");
		return;
	}
	if (c->reported)
		return;
	c->reported = 1;
	char why[200];
	if (c->ended_reason)
		snprintf(why, sizeof(why), "%s", c->ended_reason);
	else if (c->close_code)
		snprintf(why, sizeof(why), "socket-closed (code %d)", c->close_code);
	else
		snprintf(why, sizeof(why), "socket-closed");
	if (atomic_load(&c->ended))
		return;
	log_info("vapi", "%s: VAPI call %s ended: %s", c->name, c->vapi_id, why);
	/* status 1: the socket dropped without VAPI ending the call (no status-update ended,
	 * no normal close): a failure the call's fallback handles. */
	vapi_ws_event(c, VAPI_EV_ENDED, !c->ended_reason && c->close_code != 1000, NULL, why, NULL);
}

/* Closes the wsi at lws's next turn. lws may replace the timeout that does it (a state
 * change sets its own), so the sweep kills again while the wsi outlives KILL_RETRY_US. */
static void kill_wsi(struct vapi_call *c)
{
	if (c->wsi && !c->killed) {
		c->killed = 1;
		c->kill_us = clock_now_us();
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	}
}

static void txq_push(struct vapi_call *c, struct vapi_txt *t)
{
	t->next = NULL;
	if (c->txq_tail)
		c->txq_tail->next = t;
	else
		c->txq = t;
	c->txq_tail = t;
}

/* Sends what is queued (and end-call when asked), then a close 1000; bounded. */
static void begin_close(struct vapi_call *c, int send_end_call)
{
	if (c->closing || c->state != VAPI_WS_UP)
		return;
	c->closing = 1;
	c->deadline_us = clock_now_us() + CLOSE_BOUND_US;
	if (send_end_call) {
		struct vapi_txt *t = vapi_txt_new(VAPI_END_CALL, strlen(VAPI_END_CALL));
		if (t)
			txq_push(c, t);
	} else {
		vapi_txt_free_all(c->txq);
		c->txq = c->txq_tail = NULL;
	}
	if (c->rx_paused) {
		lws_rx_flow_control(c->wsi, 1);
		c->rx_paused = 0;
	}
	lws_callback_on_writable(c->wsi);
}

void vapi_ws_remote_end(struct vapi_call *c, const char *reason)
{
	if (!c->ended_reason)
		c->ended_reason = mem_strdup(reason && reason[0] ? reason : "ended");
	if (!c->reported) {
		c->reported = 1;
		if (!atomic_load(&c->ended)) {
			log_info("vapi", "%s: VAPI ended call %s: %s", c->name, c->vapi_id,
			         c->ended_reason ? c->ended_reason : "ended");
			vapi_ws_event(c, VAPI_EV_ENDED, 0, NULL,
			              c->ended_reason ? c->ended_reason : "ended", NULL);
		}
	}
	begin_close(c, 0);
}

/* ---- the socket ---- */

static void ws_connect(struct vapi_call *c)
{
	struct lws_client_connect_info ci;
	memset(&ci, 0, sizeof(ci));
	ci.context = c->ai->ctx;
	ci.address = c->ws_address;
	ci.port = c->ws_port;
	ci.path = c->ws_path;
	ci.host = c->ws_host;
	ci.ssl_connection = c->ws_tls ? LCCSCF_USE_SSL : 0;
	ci.protocol = NULL;
	ci.local_protocol_name = "vapi";
	ci.userdata = c;
	ci.ietf_version_or_minus_one = -1;
	c->state = VAPI_WS_CONNECTING;
	c->deadline_us = clock_now_us() + (uint64_t)vapi_g.timeout_ms * 1000u;
	struct lws *w = lws_client_connect_via_info(&ci);
	if (c->state != VAPI_WS_CONNECTING)
		return; /* already gone inside the call */
	if (w) {
		c->wsi = w;
		return;
	}
	snprintf(c->err, sizeof(c->err), "cannot open a WebSocket to %s:%d", c->ws_address,
	         c->ws_port);
	ws_gone(c);
}

/* Empties c's upstream ring (nobody to send to: no stale audio piles up). */
static void discard_frames(struct vapi_call *c)
{
	uint64_t rx;
	while (c->port && media_ai_read(c->port, c->ai->txbuf + VAPI_PRE, &rx) == 1)
		;
}

static void on_established(struct vapi_call *c, struct lws *wsi)
{
	c->wsi = wsi;
	c->state = VAPI_WS_UP;
	c->established = 1;
	c->killed = 0;
	if (c->reported || c->end_handled) {
		/* Ended, or given up as timed out, while connecting: VAPI's call is live now,
		 * so end it properly. */
		c->reported = 1;
		begin_close(c, 1);
		return;
	}
	if (!atomic_load(&c->ended)) {
		metric_inc(vapi_g.m_connected);
		log_info("vapi", "%s: VAPI call %s: WebSocket up", c->name, c->vapi_id);
		vapi_ws_event(c, VAPI_EV_CONNECTED, 0, c->vapi_id, NULL, NULL);
	}
	/* Audio the caller said while the socket was connecting is stale: start fresh. */
	discard_frames(c);
	if (c->txq)
		lws_callback_on_writable(wsi);
}

static int on_receive(struct vapi_call *c, struct lws *wsi, const void *in, size_t len)
{
	if (c->state != VAPI_WS_UP)
		return 0;
	int last = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
	if (lws_frame_is_binary(wsi)) {
		if (c->port && !c->closing && len) {
			media_ai_write(c->port, in, len);
			if (!c->rx_paused && media_ai_queued_ms(c->port) > PAUSE_MS) {
				lws_rx_flow_control(wsi, 0);
				c->rx_paused = 1;
			}
		}
		if (last)
			metric_inc(vapi_g.m_down);
		return 0;
	}
	if (lws_is_first_fragment(wsi)) {
		c->rx_len = 0;
		c->rx_skip = 0;
	}
	if (c->rx_len + len > vapi_g.max_message) {
		metric_inc(vapi_g.m_too_large);
		log_warn("vapi", "%s: text message from VAPI over %zu bytes: closing (1009)",
		         c->name, vapi_g.max_message);
		c->close_code = LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE;
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
		                 (unsigned char *)"message too large", 17);
		return -1;
	}
	if (c->rx_len + len + 1 > c->rx_cap) {
		size_t cap = c->rx_cap ? c->rx_cap : 512u;
		while (cap < c->rx_len + len + 1)
			cap *= 2;
		if (cap > vapi_g.max_message + 1)
			cap = vapi_g.max_message + 1;
		char *r = mem_realloc(c->rx, cap);
		if (!r) {
			c->rx_skip = 1; /* out of memory: this message is lost */
		} else {
			c->rx = r;
			c->rx_cap = cap;
		}
	}
	if (!c->rx_skip && len) {
		memcpy(c->rx + c->rx_len, in, len);
		c->rx_len += len;
	}
	if (last) {
		if (!c->rx_skip && c->rx) {
			c->rx[c->rx_len] = '\0';
			vapi_msg_handle(c, c->rx, c->rx_len);
		}
		c->rx_len = 0;
		c->rx_skip = 0;
		if (c->rx_cap > RX_KEEP) {
			mem_free(c->rx);
			c->rx = NULL;
			c->rx_cap = 0;
		}
	}
	return 0;
}

/* Sends what waits in c's upstream ring (ai thread: from the writeable callback or
 * straight from a wake-up). The frames are built here (frame.c: header and mask, no system
 * call for the key), up to TX_BATCH of them in one write, and handed to lws as raw bytes
 * (LWS_WRITE_RAW: lws adds nothing, encrypts for wss, and keeps what the socket did not
 * take, in order with its own frames, in front of anything written later). Nothing is
 * written while lws still holds bytes for the socket (lws_partial_buffered: no system
 * call, unlike lws_send_pipe_choked's poll): lws asks for the writeable callback once they
 * are out, and the frames wait in the ring. 0, or -1 when the socket failed. */
static int send_frames(struct vapi_call *c)
{
	struct vapi_ai *ai = c->ai;
	size_t fb = media_ai_frame_bytes(c->format), hl = vapi_ws_frame_hdr_len(fb);
	while (!lws_partial_buffered(c->wsi)) {
		unsigned char *p = ai->txbuf + VAPI_PRE;
		size_t len = 0;
		unsigned n = 0;
		while (n < TX_BATCH &&
		       media_ai_read(c->port, p + len + hl, &ai->tx_rx_us[n]) == 1) {
			len += vapi_ws_frame_binary(&ai->rng, p + len, fb);
			n++;
		}
		if (!n)
			return 0;
		if (lws_write(c->wsi, p, len, LWS_WRITE_RAW) < (int)len)
			return -1;
		metric_add(vapi_g.m_up, n);
		/* Added latency upstream: the kernel's receive stamp of each frame's RTP packet
		 * to the frame handed to the socket. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
		for (unsigned i = 0; i < n; i++) {
			uint64_t rx = ai->tx_rx_us[i];
			if (rx)
				metric_hist_observe(vapi_g.m_up_latency, now > rx ? now - rx : 0);
		}
		if (n < TX_BATCH)
			return 0;
	}
	return 0;
}

static int on_writeable(struct vapi_call *c, struct lws *wsi)
{
	if (c->state != VAPI_WS_UP)
		return 0;
	if (c->txq) {
		struct vapi_txt *t = c->txq;
		c->txq = t->next;
		if (!c->txq)
			c->txq_tail = NULL;
		int n = lws_write(wsi, t->buf + VAPI_PRE, t->len, LWS_WRITE_TEXT);
		int ok = n >= 0 && (size_t)n >= t->len;
		mem_free(t);
		if (!ok)
			return -1;
		/* More text, the close, or the frames that waited behind this text. */
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (c->closing) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		return -1;
	}
	return c->port ? send_frames(c) : 0;
}

static void on_connection_error(struct vapi_call *c, struct lws *wsi, const char *in, size_t len)
{
	unsigned code = lws_http_client_http_response(wsi);
	int n = in ? (int)strnlen(in, len) : 0;
	if (code)
		snprintf(c->err, sizeof(c->err), "WebSocket connect failed (HTTP %u): %.*s", code,
		         n, in ? in : "");
	else
		snprintf(c->err, sizeof(c->err), "WebSocket connect failed: %.*s", n,
		         in ? in : "?");
	ws_gone(c);
}

/* ---- the mailbox, the sweep and the tick ---- */

static void finish(struct vapi_call *c)
{
	c->ai_finished = 1;
	c->ai_listed = 0;
	c->ai_next = NULL;
	if (c->port)
		media_ai_port_set_ready(c->port, NULL, NULL);
	media_ai_port_release(c->port);
	c->port = NULL;
	vapi_txt_free_all(c->txq);
	c->txq = c->txq_tail = NULL;
	mem_free(c->rx);
	c->rx = NULL;
	c->rx_len = c->rx_cap = 0;
	vapi_call_unref(c);
}

static void msg_discard(struct vapi_aimsg *m)
{
	if (m->op == VAPI_AI_PORT)
		media_ai_port_release(m->ptr);
	else if (m->op == VAPI_AI_TEXT)
		mem_free(m->ptr);
	vapi_call_unref(m->call);
}

static void handle(struct vapi_aimsg *m)
{
	struct vapi_call *c = m->call;
	if (c->ai_finished) {
		msg_discard(m);
		return;
	}
	if (!c->ai_listed) {
		c->ai_listed = 1;
		vapi_call_ref(c);
		c->ai_next = c->ai->list;
		c->ai->list = c;
	}
	switch (m->op) {
	case VAPI_AI_PORT: /* the first port, or a move (vapi_call_move) */
		if (c->port)
			media_ai_port_set_ready(c->port, NULL, NULL);
		media_ai_port_release(c->port);
		c->port = m->ptr;
		media_ai_port_set_ready(c->port, &c->ai->ready, c);
		break;
	case VAPI_AI_MARK:
		if (c->port)
			media_ai_mark(c->port, (uint32_t)(uintptr_t)m->ptr);
		break;
	case VAPI_AI_TEXT:
		if (c->closing) {
			mem_free(m->ptr);
			break;
		}
		txq_push(c, m->ptr);
		if (c->state == VAPI_WS_UP)
			lws_callback_on_writable(c->wsi);
		break;
	case VAPI_AI_CONNECT:
		if (c->state == VAPI_WS_IDLE && !atomic_load(&c->ended))
			ws_connect(c);
		break;
	}
	vapi_call_unref(c);
}

static void drain(struct vapi_ai *ai)
{
	struct vapi_aimsg m;
	while (mbox_take(ai->cmd, &m) == 0)
		handle(&m);
}

/* vapi_call_end (or vapi_close) reached this call. */
static void end_call(struct vapi_call *c)
{
	switch (c->state) {
	case VAPI_WS_IDLE:
		c->state = VAPI_WS_GONE;
		break;
	case VAPI_WS_CONNECTING:
		kill_wsi(c);
		break;
	case VAPI_WS_UP:
		begin_close(c, 1);
		break;
	case VAPI_WS_GONE:
		break;
	}
}

static void pump(struct vapi_call *c)
{
	if (!c->port)
		return;
	if (c->state != VAPI_WS_UP || c->closing) {
		discard_frames(c);
		return;
	}
	if (c->rx_paused && media_ai_queued_ms(c->port) < RESUME_MS) {
		lws_rx_flow_control(c->wsi, 1);
		c->rx_paused = 0;
	}
	/* Frames go out from here: a writeable callback costs two epoll changes and a loop
	 * turn per frame (lws_write is fine on this thread). Text messages queued: the
	 * writeable callback sends them first, then the frames, keeping the order. */
	if (c->txq) {
		lws_callback_on_writable(c->wsi);
		return;
	}
	if (send_frames(c))
		kill_wsi(c); /* as a writeable callback returning -1: lws closes it */
}

/* The calls whose ports got frames since the last time: their frames go out now. */
static void pump_ready(struct vapi_ai *ai)
{
	struct media_ai_port *p;
	while ((p = media_ai_ready_pop(&ai->ready))) {
		struct vapi_call *c = media_ai_port_user(p);
		if (c && c->port == p && !c->ai_finished)
			pump(c);
		media_ai_port_release(p); /* the queue's reference */
	}
}

static void sweep(struct vapi_ai *ai)
{
	uint64_t now = clock_now_us();
	int stopping = atomic_load(&vapi_g.ai_stop), redrained = 0;
	if (stopping && !ai->stop_deadline_us)
		ai->stop_deadline_us = now + STOP_BOUND_US;
	for (struct vapi_call *c = ai->list; c; c = c->ai_next) {
		if (!c->end_handled && (stopping || atomic_load(&c->ended))) {
			/* What the sip thread posted before ending must be seen first. */
			if (!redrained) {
				drain(ai);
				redrained = 1;
			}
			c->end_handled = 1;
			end_call(c);
		}
		if (c->state == VAPI_WS_CONNECTING && !c->killed && now >= c->deadline_us) {
			snprintf(c->err, sizeof(c->err), "WebSocket connect timed out after %u ms",
			         vapi_g.timeout_ms);
			ws_fail(c, c->err);
			kill_wsi(c);
		}
		if (c->state == VAPI_WS_UP && c->closing && !c->killed && now >= c->deadline_us)
			kill_wsi(c); /* the peer did not close in time: drop it */
		if (c->killed && c->wsi && now >= c->kill_us + KILL_RETRY_US) {
			c->killed = 0;
			kill_wsi(c);
		}
		pump(c);
	}
	struct vapi_call **pp = &ai->list;
	while (*pp) {
		struct vapi_call *c = *pp;
		if (c->state == VAPI_WS_GONE) {
			*pp = c->ai_next;
			finish(c);
		} else {
			pp = &c->ai_next;
		}
	}
	vapi_ovf_flush(&ai->ovf, 0);
	if (stopping && (!ai->list || now >= ai->stop_deadline_us)) {
		ai->exit = 1;
		ev_break(ai->loop, EVBREAK_ALL); /* ai_main's ev_run returns */
		atomic_store(&ai->done, 1);
	}
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
	struct vapi_ai *ai = lws_container_of(sul, struct vapi_ai, tick_sul);
	/* Posters wake us with lws_cancel_service; the mailbox's own eventfd is never
	 * polled, only kept from filling up, once per tick rather than per wake. */
	mbox_drain_fd(ai->cmd);
	pump_ready(ai);
	sweep(ai);
	uint64_t now = clock_now_us();
	ai->tick_next_us += TICK_US;
	if (ai->tick_next_us + TICK_US < now)
		ai->tick_next_us = now + TICK_US; /* fell behind: resynchronise */
	uint64_t delay = ai->tick_next_us > now ? ai->tick_next_us - now : 1000u;
	lws_sul_schedule(ai->ctx, 0, &ai->tick_sul, on_tick, (lws_usec_t)delay);
}

static struct vapi_call *call_of(void *user)
{
	struct vapi_call *c = user;
	return c && c->magic == VAPI_CALL_MAGIC ? c : NULL;
}

static int ws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len)
{
	struct vapi_call *c;
	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
		/* Broadcast with a fake wsi; must return 0 (a nonzero closes the event pipe).
		 * Cleared before the sweep: a frame queued from here on wakes us again. */
		struct vapi_ai *ai = lws_context_user(lws_get_context(wsi));
		atomic_store(&ai->wake_pending, 0);
		drain(ai);
		pump_ready(ai);
		if (atomic_exchange(&ai->sweep_wanted, 0) || atomic_load(&vapi_g.ai_stop))
			sweep(ai);
		return 0;
	}
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
		unsigned char **p = in, *end = *p + len;
		const char *ua = vapi_g.user_agent;
		if (lws_add_http_header_by_name(wsi, (const unsigned char *)"Authorization:",
		                                (const unsigned char *)vapi_g.auth,
		                                (int)strlen(vapi_g.auth), p, end) ||
		    lws_add_http_header_by_name(wsi, (const unsigned char *)"User-Agent:",
		                                (const unsigned char *)ua, (int)strlen(ua), p, end))
			return -1;
		return 0;
	}
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if ((c = call_of(user)))
			on_established(c, wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return (c = call_of(user)) ? on_receive(c, wsi, in, len) : 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return (c = call_of(user)) ? on_writeable(c, wsi) : 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if ((c = call_of(user)) && in && len >= 2) {
			const unsigned char *b = in;
			c->close_code = (b[0] << 8) | b[1];
		}
		return 0;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if ((c = call_of(user)))
			on_connection_error(c, wsi, in, len);
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
	case LWS_CALLBACK_WSI_DESTROY:
		if ((c = call_of(user)))
			ws_gone(c);
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols protocols[] = {
    {.name = "vapi", .callback = ws_cb, .rx_buffer_size = RX_CHUNK, .tx_packet_size = 16384},
    {.name = NULL},
};

/* ---- the thread ---- */

static void lws_log(int level, const char *line)
{
	log_line(level & LLL_ERR ? LOG_ERR : LOG_WARN, "lws", line);
}

static void *ai_main(void *arg)
{
	struct vapi_ai *ai = arg;
	ev_run(ai->loop, 0);
	if (!ai->exit)
		log_err("vapi", "ai thread %u: its event loop ended: the thread stops", ai->idx);
	lws_sul_cancel(&ai->tick_sul);
	return NULL;
}

struct vapi_ai *vapi_ai_pick(unsigned affinity)
{
	return &vapi_g.ai[affinity % vapi_g.n_ai];
}

void vapi_ai_wake(struct vapi_ai *ai)
{
	atomic_store(&ai->sweep_wanted, 1);
	if (ai->ctx)
		lws_cancel_service(ai->ctx);
}

/* A message in the mailbox needs the drain only, not a visit of every call. */
static void ai_kick(struct vapi_ai *ai)
{
	if (ai->ctx)
		lws_cancel_service(ai->ctx);
}

int vapi_ai_post(enum vapi_ai_op op, struct vapi_call *c, void *ptr)
{
	struct vapi_aimsg m = {.op = op, .call = c, .ptr = ptr};
	vapi_call_ref(c);
	if (mbox_post(c->ai->cmd, &m) != 0) {
		vapi_call_unref(c);
		return -EAGAIN;
	}
	ai_kick(c->ai);
	return 0;
}

/* The media worker's guest callback (hosted): runs the context's loop without waiting,
 * when one of its sockets (or lws's wake-up pipe) is ready, else every GUEST_POLL_US for
 * its timers. */
static void ai_guest(void *arg, int readable)
{
	struct vapi_ai *ai = arg;
	ai_self = ai;
	uint64_t now = clock_now_us();
	/* Also after the stopping sweep (ai->exit): a readable fd left alone would bring the
	 * worker straight back until vapi_ai_stop takes the guest away. */
	if (!readable && now < ai->guest_next_us)
		return;
	ai->guest_next_us = now + GUEST_POLL_US;
	ev_run(ai->loop, EVRUN_NOWAIT);
}

/* The epoll fd of the context's libev loop, or -1. libev keeps it to itself; ev_embed, its
 * way of running one loop inside another, watches exactly that fd, so a throw-away outer
 * loop (select backend: no fd of its own) and an embed watcher started on it name it. */
static int loop_fd(struct ev_loop *loop)
{
	if (!(ev_backend(loop) & ev_embeddable_backends()))
		return -1;
	struct ev_loop *outer = ev_loop_new(EVBACKEND_SELECT | EVFLAG_NOENV);
	if (!outer)
		return -1;
	ev_embed e;
	ev_embed_init(&e, NULL, loop);
	ev_embed_start(outer, &e);
	int fd = e.io.fd;
	ev_embed_stop(outer, &e);
	ev_loop_destroy(outer);
	return fd;
}

void vapi_ai_notify(void *arg)
{
	struct vapi_ai *ai = arg ? arg : &vapi_g.ai[0];
	if (ai == ai_self && atomic_load_explicit(&ai->hosted_live, memory_order_relaxed)) {
		/* The worker that queued the frames hosts this context: they go out now, from
		 * the wake-up that received their packets. */
		pump_ready(ai);
		return;
	}
	/* vapi_ai_stop clears notify_ctx, then waits for callers in here to leave. */
	if (atomic_exchange(&ai->wake_pending, 1))
		return; /* one is on its way: the sweep it causes takes this frame too */
	atomic_fetch_add(&ai->notify_users, 1);
	struct lws_context *ctx = atomic_load(&ai->notify_ctx);
	if (ctx)
		lws_cancel_service(ctx);
	atomic_fetch_sub(&ai->notify_users, 1);
}

static int ai_start_one(struct vapi_ai *ai)
{
	int rc = mbox_create(&ai->cmd, sizeof(struct vapi_aimsg), AI_CAP);
	if (rc)
		return rc;
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_LIBEV;
	ai->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
	if (!ai->loop) {
		log_err("vapi", "cannot create the ai thread's event loop");
		return -ENOMEM;
	}
	void *foreign[1] = {ai->loop};
	info.foreign_loops = foreign;
	info.gid = -1;
	info.uid = -1;
	info.user = ai;
	info.pt_serv_buf_size = 8192;
	info.client_ssl_ca_filepath = vapi_g.ca_file;
	info.timeout_secs = (vapi_g.timeout_ms + 999u) / 1000u + 1u;
	info.connect_timeout_secs = info.timeout_secs;
	ai->ctx = lws_create_context(&info);
	if (!ai->ctx) {
		log_err("vapi", "cannot create the lws client context");
		return -ENOMEM;
	}
	atomic_store(&ai->notify_ctx, ai->ctx);
	ai->tick_next_us = clock_now_us() + TICK_US;
	lws_sul_schedule(ai->ctx, 0, &ai->tick_sul, on_tick, TICK_US);
	if (vapi_g.ai_hosted && ai->idx < media_worker_count()) {
		atomic_store(&ai->hosted_live, 1);
		int fd = loop_fd(ai->loop);
		rc = fd < 0 ? -ENOTSUP : media_worker_guest_add(ai->idx, fd, ai_guest, ai);
		if (!rc) {
			ai->hosted = 1;
			return 0;
		}
		atomic_store(&ai->hosted_live, 0);
		log_warn("vapi", "ai context %u: media worker %u cannot run it (%s): own thread",
		         ai->idx, ai->idx, strerror(-rc));
	}
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&ai->thread, NULL, ai_main, ai);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		return rc; /* vapi_ai_stop frees the context */
	char name[16];
	snprintf(name, sizeof(name), "ai-%u", ai->idx);
	pthread_setname_np(ai->thread, name);
	ai->started = 1;
	return 0;
}

int vapi_ai_start(unsigned n)
{
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
	if (n == 0)
		n = 1;
	if (n > AI_MAX)
		n = AI_MAX;
	memset(ai_threads, 0, sizeof(ai_threads));
	vapi_g.ai = ai_threads;
	vapi_g.n_ai = n;
	atomic_store(&vapi_g.ai_stop, 0);
	for (unsigned i = 0; i < n; i++) {
		struct vapi_ai *ai = &vapi_g.ai[i];
		ai->idx = i;
		vapi_mask_rng_init(&ai->rng);
		atomic_init(&ai->wake_pending, 0);
		atomic_init(&ai->sweep_wanted, 0);
		atomic_init(&ai->notify_users, 0);
		atomic_init(&ai->hosted_live, 0);
		atomic_init(&ai->done, 0);
		int rc = ai_start_one(ai);
		if (rc)
			return rc; /* vapi_ai_stop undoes what started */
	}
	return 0;
}

static void ai_stop_one(struct vapi_ai *ai)
{
	if (ai->hosted) {
		/* The worker stops running the context before it is destroyed here. */
		atomic_store(&ai->hosted_live, 0);
		if (media_worker_guest_remove(ai->idx)) {
			log_err("vapi",
			        "ai context %u: media worker %u did not let it go: left as is",
			        ai->idx, ai->idx);
			return;
		}
		ai->hosted = 0;
	}
	if (ai->started) {
		lws_cancel_service(ai->ctx);
		pthread_join(ai->thread, NULL);
		ai->started = 0;
	}
	atomic_store(&ai->notify_ctx, NULL);
	while (atomic_load(&ai->notify_users))
		sched_yield();
	if (ai->ctx) {
		/* Closes what is left; its callbacks still find their calls on the list. */
		lws_context_destroy(ai->ctx);
		ai->ctx = NULL;
	}
	if (ai->loop) {
		ev_loop_destroy(ai->loop);
		ai->loop = NULL;
	}
	while (ai->list) {
		struct vapi_call *c = ai->list;
		ai->list = c->ai_next;
		finish(c);
	}
	struct vapi_aimsg m;
	while (ai->cmd && mbox_take(ai->cmd, &m) == 0)
		msg_discard(&m);
	struct media_ai_port *p;
	while ((p = media_ai_ready_pop(&ai->ready)))
		media_ai_port_release(p);
	vapi_ovf_flush(&ai->ovf, 1);
	mbox_destroy(ai->cmd);
	ai->cmd = NULL;
}

void vapi_ai_stop(void)
{
	if (!vapi_g.ai)
		return;
	atomic_store(&vapi_g.ai_stop, 1);
	/* Hosted contexts end their calls on their workers (bounded by STOP_BOUND_US in the
	 * sweep); threads do the same before they are joined. */
	uint64_t until = clock_now_us() + STOP_BOUND_US + 500000u;
	for (unsigned i = 0; i < vapi_g.n_ai; i++)
		if (vapi_g.ai[i].hosted)
			lws_cancel_service(vapi_g.ai[i].ctx);
	for (unsigned i = 0; i < vapi_g.n_ai; i++) {
		while (vapi_g.ai[i].hosted && !atomic_load(&vapi_g.ai[i].done) &&
		       clock_now_us() < until) {
			struct timespec ts = {0, 1000000};
			nanosleep(&ts, NULL);
		}
	}
	for (unsigned i = 0; i < vapi_g.n_ai; i++)
		ai_stop_one(&vapi_g.ai[i]);
	vapi_g.ai = NULL;
	vapi_g.n_ai = 0;
}
