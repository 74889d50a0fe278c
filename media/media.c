/* Media workers: session slots, the RTP/RTCP relay with SRTP, tones, timeouts, events. */
#include "media/media.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/mbox.h"
#include "core/mem.h"
#include "core/metric.h"
#include "media/dsp_int.h"
#include "media/media_int.h"
#include "media/wav_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/*
 * Threads and ownership (DESIGN.md §4):
 * - The control thread owns media_init/close and every media_session_* call. It picks a
 *   free slot of the chosen worker (slot->in_use 0 -> 1), binds the sockets and posts
 *   CMD_ADD; after that it only posts commands and reads the atomic counters.
 * - Worker N owns everything else in its slots: sockets, SRTP contexts, the bridge
 *   pointers, stream state. Bridged legs share a worker, so a bridge is two plain
 *   pointers and destroying one leg unlinks the other with no race.
 * - The worker releases a slot (in_use 1 -> 0, release order) after closing its
 *   sockets; the control thread reuses it only after seeing 0 (acquire order).
 * Packet path: level-triggered epoll -> recvmmsg into pool slots -> SRTP unprotect in
 * place -> parse -> stats/DTMF -> rewrite PT/SSRC/seq/ts in place -> SRTP protect in
 * place -> one sendmmsg per batch on the peer's socket. No allocation, lock or
 * formatted log on that path; the only lock is mbox_post when a DTMF digit ends.
 */

#define MOD        "media"
#define BATCH      32
#define POOL_SLOTS (BATCH + 8)
/* The 20 ms frame period is cut into N_SLOTS slots of 1 ms: each session belongs to one
 * slot and is served once per period when its slot comes, so a worker's work is spread
 * over the period (no burst of every session's packet at once, and an arriving packet
 * waits for at most one slot's work, not every session's). */
#define N_SLOTS            20u
#define SLOT_NS            1000000L
#define DEFAULT_SESSIONS   2048u
#define EVENT_QUEUE        4096u
#define RTCP_INTERVAL_MS   5000u
#define MAX_EPOLL_EVENTS   64
#define MAX_CATCHUP_FRAMES 5u
#define SEQ_REBASE_GAP     500 /* an input seq jump this large starts a new output segment */
#define CMD_RETRY_MS       2000u
#define MAX_NOTIFY         8 /* distinct AI threads woken per tick */

enum ev_kind { KIND_TIMER = 0, KIND_MBOX, KIND_RTP, KIND_RTCP };
/* epoll data of the mailbox and of the guest's fd: both KIND_MBOX, index 0 and 1. */
#define EV_MBOX  ((uint64_t)KIND_MBOX)
#define EV_GUEST ((uint64_t)KIND_MBOX | 1u << 2)

enum drop_reason {
	DROP_SRTP = 0,
	DROP_MALFORMED,
	DROP_UNKNOWN_PT,
	DROP_NO_PEER,
	DROP_POOL, /* no slot, or no socket buffer (EAGAIN/ENOBUFS on send) */
	DROP_N
};

static const char *const drop_metric[DROP_N] = {
    "vacs_media_dropped_total{reason=\"srtp_auth\"}",
    "vacs_media_dropped_total{reason=\"malformed\"}",
    "vacs_media_dropped_total{reason=\"unknown_pt\"}",
    "vacs_media_dropped_total{reason=\"no_peer\"}",
    "vacs_media_dropped_total{reason=\"pool\"}",
};

/* Per-session counters: written by the owning worker only, read by the control thread. */
struct stat_ctr {
	_Atomic uint64_t pkts_in, pkts_out, bytes_in, bytes_out, pkts_dropped;
	_Atomic uint32_t lost, jitter_ms, remote_lost, remote_jitter_ms;
	_Atomic uint32_t rtcp_in, rtcp_out, dtmf_events;
};

/* Single writer: a relaxed load + store is enough and is a plain add on x86. */
#define CTR_ADD(field, n)                                                                          \
	atomic_store_explicit(&(field),                                                            \
	                      atomic_load_explicit(&(field), memory_order_relaxed) + (n),          \
	                      memory_order_relaxed)
#define CTR_SET(field, v) atomic_store_explicit(&(field), (v), memory_order_relaxed)

struct media_worker;

struct media_session {
	/* Fixed at media_init. */
	struct media_worker *w;
	uint32_t idx;
	/* 0 = free. Control thread sets 1, worker sets 0 when it let go of the slot. */
	_Atomic int in_use;
	/* Written by the control thread while the slot is free, then handed over by CMD_ADD. */
	uint64_t owner;
	int rtp_fd, rtcp_fd;
	uint16_t port;
	/* Control thread only: what was last handed to the worker about codec and dsp. */
	int ctl_dsp;
	enum media_codec ctl_codec, ctl_dsp_codec;
	int ctl_te, ctl_dsp_te, ctl_rec;
	struct media_session *ctl_peer;
	/* Control thread only: the keys last handed to the worker, to rebuild SRTP only on
	 * a real key change (a rebuild would reset the rollover counter). */
	struct media_srtp_params ctl_tx, ctl_rx;
	struct stat_ctr st;

	/* Worker only from here on (zeroed by CMD_ADD). */
	int active;
	unsigned slot; /* which 1 ms slot of the period serves it */
	/* dsp bridge: stages run at a packet's arrival instead of at the slot (which then
	 * skips them once): this leg's rx stage, and its tx stage (its peer's packet). */
	int rx_early, tx_early;
	struct media_session *act_prev, *act_next; /* the slot's list */
	struct media_stream_params p;
	struct sockaddr_in rtp_dst, rtcp_dst; /* signalled or latched */
	struct media_srtp *srtp_rx, *srtp_tx;
	struct media_session *peer;

	enum media_tone tone;
	uint32_t tone_pos; /* samples since the tone started */
	int tone_live;     /* the previous output packet was locally made (tone or dsp) */
	unsigned clock;    /* RTP clock of the leg's codec, Hz */

	/* Audio processing instead of relay (NULL: a plain relay leg). Both legs of a
	 * bridge have one or neither does. */
	struct media_dsp *dsp;

	/* What the far end sees from us. out_seq/out_ts are the highest sent. */
	uint32_t out_ssrc;
	uint16_t out_seq;
	uint32_t out_ts;
	uint64_t out_ts_us; /* when out_ts was sent */
	int out_any;
	uint32_t out_pkts, out_octets, out_pkts_rtcp; /* for SR; octets = payload */

	/* Mapping of the stream forwarded into this leg: out = in + offset. */
	int map_valid;
	uint32_t map_ssrc;
	uint16_t map_last_seq;
	uint16_t seq_off;
	uint32_t ts_off;

	/* Receive side. */
	struct media_rtp_rxstats rx;
	int rx_any;
	uint32_t lost_carry; /* loss of earlier sources */
	int dtmf_have;
	uint32_t dtmf_ts;
	uint32_t lsr; /* from the far end's last SR */
	uint64_t lsr_at_us;
	uint64_t last_rx_us, last_update_us;
	int timeout_sent;
	uint64_t next_rtcp_us;
	char cname[16];
	uint8_t cname_len;
};

enum cmd_type {
	CMD_ADD = 1,
	CMD_UPDATE,
	CMD_BRIDGE,
	CMD_TONE,
	CMD_DESTROY,
	CMD_STOP,
	CMD_DSP,       /* install dsp (first time) */
	CMD_DSP_CODEC, /* replace the codec part (dk) and has_te */
	CMD_AI,        /* attach ai (NULL detaches) */
	CMD_PLAY,      /* prompt, loop, id (NULL prompt stops) */
	CMD_REC,       /* start rec (NULL stops) */
	CMD_AMD,       /* start amd */
	CMD_DTMF,      /* send digit for dur_ms */
	CMD_GUEST,     /* guest_cb/arg/fd (NULL cb removes); answered in guest_ack */
};

/* Fixed-size command from the control thread to a worker. */
struct media_cmd {
	enum cmd_type type;
	struct media_session *s;
	struct media_session *peer;
	enum media_tone tone;
	int new_rx, new_tx;           /* replace the SRTP context (rx/tx may be NULL) */
	struct media_srtp *rx, *tx;   /* built on the control thread; worker takes them */
	struct media_stream_params p; /* keys wiped: the contexts above carry them */
	/* dsp commands: the worker takes ownership of the pointers. */
	struct media_dsp *dsp;
	struct media_dsp_codec *dk;
	int has_te;
	struct media_ai_port *ai;
	struct media_prompt *prompt;
	int loop;
	uint32_t id;
	struct media_recorder *rec;
	struct media_amd *amd;
	char digit;
	unsigned dur_ms;
	media_guest_cb guest_cb;
	void *guest_arg;
	int guest_fd;
};

struct media_worker {
	unsigned idx;
	pthread_t thread;
	int thread_started;
	int epfd, tfd;
	struct mbox *cmds;
	struct media_session *sess;
	unsigned n_sess;
	unsigned alloc_cursor; /* control thread */
	_Atomic unsigned load; /* slots in use */

	/* Worker only. */
	int stop;
	uint8_t *slab; /* POOL_SLOTS packet slots + one scratch slot */
	uint16_t free_slot[POOL_SLOTS];
	unsigned n_free;
	struct mmsghdr rx_msg[BATCH];
	struct iovec rx_iov[BATCH];
	struct sockaddr_in rx_addr[BATCH];
	uint16_t rx_slot[BATCH];
	union {
		char buf[CMSG_SPACE(sizeof(struct timespec))];
		struct cmsghdr align;
	} rx_ctl[BATCH];
	struct mmsghdr tx_msg[BATCH];
	struct iovec tx_iov[BATCH];
	uint64_t rng;
	uint64_t m_in, m_out, m_drop[DROP_N]; /* not yet added to the metrics */
	unsigned n_dsp;                       /* sessions with a dsp */
	struct media_session *slot_head[N_SLOTS];
	unsigned slot_n[N_SLOTS]; /* sessions per slot */
	unsigned cur_slot;        /* the slot served last */
	unsigned n_notify;
	media_ai_notify_cb notify_cb[MAX_NOTIFY];
	void *notify_arg[MAX_NOTIFY];
	/* The guest (media_worker_guest_add): set and cleared by CMD_GUEST, worker only. */
	media_guest_cb guest_cb;
	void *guest_arg;
	int guest_fd;
	/* CMD_GUEST's answer: 1 done, a negative errno, 0 while waiting (control thread
	 * clears, worker sets). */
	atomic_int guest_ack;
	int guest_given; /* control thread: a guest was added and not removed */
};

/* Port pairs held by our sessions, one bit per even port (bit = port / 2). Set by the
 * control thread when it binds a pair, cleared by the worker that closes it; with the
 * count, a full range is refused at once instead of trying every pair with bind(). */
static _Atomic uint64_t pair_used[32768 / 64];
static atomic_uint pairs_used;

static int pair_test(uint16_t port)
{
	unsigned b = port >> 1;
	return (atomic_load_explicit(&pair_used[b / 64], memory_order_relaxed) >> (b % 64)) & 1u;
}

static void pair_mark(uint16_t port, int used)
{
	unsigned b = port >> 1;
	uint64_t bit = (uint64_t)1 << (b % 64);
	if (used) {
		atomic_fetch_or(&pair_used[b / 64], bit);
		atomic_fetch_add(&pairs_used, 1);
	} else {
		atomic_fetch_and(&pair_used[b / 64], ~bit);
		atomic_fetch_sub(&pairs_used, 1);
	}
}

static struct {
	int up;
	struct media_config cfg;
	char address[INET_ADDRSTRLEN];
	char advertise[256];
	struct in_addr bind_addr;
	uint16_t port_lo, port_hi; /* first and last even RTP port */
	uint16_t next_port;        /* control thread: where the next search starts */
	unsigned max_sessions;
	unsigned n_workers;
	struct media_worker *workers;
	struct mbox *events;
	struct metric *m_in, *m_out, *m_drop[DROP_N], *m_sessions;
	int recorder_up;
} eng;

static unsigned rtcp_interval_ms = RTCP_INTERVAL_MS;

void media_set_rtcp_interval_ms(unsigned ms)
{
	rtcp_interval_ms = ms ? ms : RTCP_INTERVAL_MS;
}

/* ---- small helpers ---- */

static inline uint8_t *slot_buf(struct media_worker *w, unsigned i)
{
	return w->slab + (size_t)i * MEDIA_SLOT_SIZE + MEDIA_SLOT_HEADROOM;
}

static inline int slot_get(struct media_worker *w)
{
	return w->n_free ? w->free_slot[--w->n_free] : -1;
}

static inline void slot_put(struct media_worker *w, unsigned i)
{
	w->free_slot[w->n_free++] = (uint16_t)i;
}

static uint32_t rng_next(struct media_worker *w)
{
	uint64_t x = w->rng; /* xorshift64* */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

static inline int sa_eq(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
	return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

static inline void drop(struct media_worker *w, struct media_session *s, enum drop_reason r)
{
	w->m_drop[r]++;
	CTR_ADD(s->st.pkts_dropped, 1);
}

static void ev_init(struct media_event *ev, enum media_event_type type, uint64_t owner)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->owner = owner;
}

static int post_event(enum media_event_type type, uint64_t owner, char digit, uint16_t dur_ms)
{
	struct media_event ev;
	ev_init(&ev, type, owner);
	ev.digit = digit;
	ev.duration_ms = dur_ms;
	return mbox_post(eng.events, &ev);
}

static int post_event_full(const struct media_event *ev)
{
	return mbox_post(eng.events, ev);
}

static uint64_t ntp_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t sec = (uint64_t)ts.tv_sec + 2208988800u;
	uint64_t frac = ((uint64_t)ts.tv_nsec << 32) / 1000000000u;
	return sec << 32 | frac;
}

static void flush_metrics(struct media_worker *w)
{
	if (w->m_in) {
		metric_add(eng.m_in, w->m_in);
		w->m_in = 0;
	}
	if (w->m_out) {
		metric_add(eng.m_out, w->m_out);
		w->m_out = 0;
	}
	for (unsigned i = 0; i < DROP_N; i++) {
		if (w->m_drop[i]) {
			metric_add(eng.m_drop[i], w->m_drop[i]);
			w->m_drop[i] = 0;
		}
	}
}

/* ---- outbound stream continuity ---- */

/* The seq/ts that continue this leg's output after a break (first packet, new input
 * source, tone start/stop): seq + 1, ts advanced by the time elapsed, at least a frame. */
static void out_next(const struct media_session *o, uint64_t now, uint16_t *seq, uint32_t *ts)
{
	if (!o->out_any) {
		*seq = o->out_seq;
		*ts = o->out_ts;
		return;
	}
	unsigned clk = o->clock ? o->clock : MEDIA_CLOCK_RATE;
	uint64_t adv = (now - o->out_ts_us) * clk / 1000000u;
	if (adv < clk / 50u)
		adv = clk / 50u;
	*seq = (uint16_t)(o->out_seq + 1u);
	*ts = o->out_ts + (uint32_t)adv;
}

static void out_note(struct media_session *o, uint16_t seq, uint32_t ts, uint64_t now)
{
	if (!o->out_any || (int16_t)(uint16_t)(seq - o->out_seq) > 0)
		o->out_seq = seq;
	if (!o->out_any || (int32_t)(ts - o->out_ts) > 0) {
		o->out_ts = ts;
		o->out_ts_us = now;
	}
	o->out_any = 1;
}

/* Maps an input packet's seq/ts into output leg o's numbering. Returns 1 when a new
 * output segment starts (marker bit for audio). */
static int out_map(struct media_session *o, const struct media_rtp_hdr *h, uint64_t now,
                   uint16_t *seq, uint32_t *ts)
{
	int restart = 0;
	int d = (int16_t)(uint16_t)(h->seq - o->map_last_seq);
	if (!o->map_valid || h->ssrc != o->map_ssrc || d > SEQ_REBASE_GAP || d < -SEQ_REBASE_GAP) {
		uint16_t nseq;
		uint32_t nts;
		out_next(o, now, &nseq, &nts);
		o->seq_off = (uint16_t)(nseq - h->seq);
		o->ts_off = nts - h->ts;
		o->map_valid = 1;
		o->map_ssrc = h->ssrc;
		o->map_last_seq = h->seq;
		restart = 1;
	} else if (d > 0) {
		o->map_last_seq = h->seq;
	}
	*seq = (uint16_t)(h->seq + o->seq_off);
	*ts = h->ts + o->ts_off;
	out_note(o, *seq, *ts, now);
	o->tone_live = 0;
	return restart;
}

/* ---- receive path ---- */

/* A digit that ended on one dsp leg is sent on to the bridged dsp leg: as RFC 4733 when
 * that leg negotiated telephone-event, else as an in-band tone. */
static void dtmf_regenerate(struct media_session *o, char digit, uint32_t ms)
{
	struct media_dsp *d = o->dsp;
	if (!d->k)
		return;
	if (d->has_te)
		media_rfc4733_tx_start(&d->tx4733, digit, ms, o->clock);
	else
		media_dtmf_gen_start(d->k->gen, digit, ms);
}

static void dtmf_input(struct media_session *s, const struct media_rtp_hdr *h,
                       const uint8_t *payload)
{
	struct media_dtmf_event ev;
	if (media_rfc4733_parse(payload, h->payload_len, &ev) || !ev.end)
		return;
	/* The end packet is sent three times; one event per event timestamp. */
	if (s->dtmf_have && s->dtmf_ts == h->ts)
		return;
	s->dtmf_have = 1;
	s->dtmf_ts = h->ts;
	char digit = media_rfc4733_digit(ev.event);
	if (!digit)
		return;
	uint32_t ms = (uint32_t)ev.duration * 1000u / (s->clock ? s->clock : MEDIA_CLOCK_RATE);
	if (post_event(MEDIA_EV_DTMF, s->owner, digit, (uint16_t)ms) == 0)
		CTR_ADD(s->st.dtmf_events, 1);
	if (s->dsp && s->peer && s->peer->dsp)
		dtmf_regenerate(s->peer, digit, ms);
}

static void rx_stats(struct media_session *s, const struct media_rtp_hdr *h, uint32_t arrival)
{
	if (!s->rx_any || h->ssrc != s->rx.ssrc) {
		if (s->rx_any) {
			int32_t l = media_rtp_rx_lost(&s->rx);
			if (l > 0)
				s->lost_carry += (uint32_t)l;
		}
		media_rtp_rx_init(&s->rx, h->ssrc, h->seq);
		s->rx_any = 1;
	}
	media_rtp_rx_seq(&s->rx, h->seq);
	/* Telephone events keep the event's start timestamp: not usable for jitter. */
	if (s->p.pt_dtmf < 0 || h->pt != (uint8_t)s->p.pt_dtmf)
		media_rtp_rx_jitter(&s->rx, h->ts, arrival);
}

static void rtcp_input(struct media_worker *w, struct media_session *s, uint8_t *buf, size_t len,
                       const struct sockaddr_in *src, int muxed, uint64_t now)
{
	struct media_rtcp_info info;
	if (s->srtp_rx && media_srtp_unprotect_rtcp(s->srtp_rx, buf, &len) != 0) {
		drop(w, s, DROP_SRTP);
		return;
	}
	if (media_rtcp_parse(buf, len, &info) != 0) {
		drop(w, s, DROP_MALFORMED);
		return;
	}
	CTR_ADD(s->st.rtcp_in, 1);
	if (s->p.latch && !muxed && !sa_eq(src, &s->rtcp_dst))
		s->rtcp_dst = *src;
	/* On hold RTP stops by design; RTCP then shows that the far end is alive. */
	if (!s->p.recv) {
		s->last_rx_us = now;
		s->timeout_sent = 0;
	}
	if (info.has_sr) {
		s->lsr = (info.sr.ntp_sec << 16) | (info.sr.ntp_frac >> 16);
		s->lsr_at_us = now;
	}
	for (unsigned i = 0; i < info.n_reports; i++) {
		const struct media_rtcp_report *r = &info.reports[i];
		if (r->ssrc != s->out_ssrc)
			continue;
		CTR_SET(s->st.remote_lost, r->cum_lost < 0 ? 0u : (uint32_t)r->cum_lost);
		CTR_SET(s->st.remote_jitter_ms,
		        (uint32_t)((uint64_t)r->jitter * 1000u / MEDIA_CLOCK_RATE));
	}
}

/* Rewrites PT; returns the output PT or -1 to drop (reason in *why). */
static int map_pt(const struct media_session *s, const struct media_session *peer, uint8_t pt,
                  enum drop_reason *why)
{
	*why = DROP_UNKNOWN_PT;
	if (pt == s->p.pt_audio)
		return peer->p.pt_audio;
	if (s->p.pt_dtmf >= 0 && pt == s->p.pt_dtmf)
		return peer->p.pt_dtmf;
	if (s->p.pt_cn >= 0 && pt == s->p.pt_cn)
		return peer->p.pt_cn;
	return -1;
}

static void send_batch(struct media_worker *w, struct media_session *o, unsigned n, uint64_t bytes)
{
	unsigned done = 0, ok = 0;
	while (done < n) {
		int r = sendmmsg(o->rtp_fd, w->tx_msg + done, n - done, MSG_DONTWAIT);
		if (r > 0) {
			done += (unsigned)r;
			ok += (unsigned)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno != EAGAIN && errno != ENOBUFS) {
			/* This datagram failed (e.g. unreachable); the rest may still go. */
			bytes -= w->tx_iov[done].iov_len;
			drop(w, o, DROP_POOL);
			done++;
			continue;
		}
		/* Socket buffer full: what is left of the batch is lost. */
		for (; done < n; done++) {
			bytes -= w->tx_iov[done].iov_len;
			drop(w, o, DROP_POOL);
		}
	}
	w->m_out += ok;
	CTR_ADD(o->st.pkts_out, ok);
	CTR_ADD(o->st.bytes_out, bytes);
}

static void notify_add(struct media_worker *w, const struct media_dsp *d);
static void dsp_rx(struct media_worker *w, struct media_session *s, uint64_t now);
static void dsp_tx(struct media_worker *w, struct media_session *s, uint64_t now);
static void notify_fire(struct media_worker *w);

static void rtp_readable(struct media_worker *w, struct media_session *s)
{
	unsigned k = w->n_free < BATCH ? w->n_free : BATCH;
	if (k == 0) {
		/* Every slot is busy: read into scratch so the socket does not spin. */
		ssize_t r =
		    recv(s->rtp_fd, slot_buf(w, POOL_SLOTS), MEDIA_SLOT_MAX_PKT, MSG_DONTWAIT);
		if (r >= 0)
			drop(w, s, DROP_POOL);
		return;
	}
	for (unsigned i = 0; i < k; i++) {
		unsigned si = (unsigned)slot_get(w);
		w->rx_slot[i] = (uint16_t)si;
		w->rx_iov[i].iov_base = slot_buf(w, si);
		w->rx_iov[i].iov_len = MEDIA_SLOT_MAX_PKT;
		struct msghdr *mh = &w->rx_msg[i].msg_hdr;
		mh->msg_name = &w->rx_addr[i];
		mh->msg_namelen = sizeof(w->rx_addr[i]);
		mh->msg_iov = &w->rx_iov[i];
		mh->msg_iovlen = 1;
		mh->msg_control = w->rx_ctl[i].buf;
		mh->msg_controllen = sizeof(w->rx_ctl[i].buf);
		mh->msg_flags = 0;
	}
	int n = recvmmsg(s->rtp_fd, w->rx_msg, k, MSG_DONTWAIT, NULL);
	if (n <= 0)
		goto out;

	uint64_t now = clock_now_us();
	struct media_session *peer = s->peer;
	int fwd = 0, mute = 0;
	if (peer && s->p.recv && peer->p.send && peer->rtp_dst.sin_port) {
		if (peer->tone != MEDIA_TONE_NONE)
			mute = 1; /* a local tone owns that leg's output */
		else
			fwd = 1;
	}
	unsigned ntx = 0, n_rtp = 0;
	uint64_t in_bytes = 0, tx_bytes = 0;
	struct timespec arrival_now = {0, 0};
	int have_arrival_now = 0;

	for (int i = 0; i < n; i++) {
		struct msghdr *mh = &w->rx_msg[i].msg_hdr;
		uint8_t *buf = w->rx_iov[i].iov_base;
		size_t len = w->rx_msg[i].msg_len;
		if (media_is_rtcp(buf, len) && !(mh->msg_flags & MSG_TRUNC)) {
			/* RTCP on the RTP port (rtcp-mux): terminated here, never forwarded. */
			rtcp_input(w, s, buf, len, &w->rx_addr[i], 1, now);
			continue;
		}
		n_rtp++;
		in_bytes += len;
		if (mh->msg_flags & MSG_TRUNC) {
			drop(w, s, DROP_MALFORMED);
			continue;
		}
		if (s->srtp_rx && media_srtp_unprotect(s->srtp_rx, buf, &len) != 0) {
			drop(w, s, DROP_SRTP);
			continue;
		}
		struct media_rtp_hdr h;
		if (media_rtp_parse(buf, len, &h) != 0) {
			drop(w, s, DROP_MALFORMED);
			continue;
		}
		if (s->p.latch && !sa_eq(&w->rx_addr[i], &s->rtp_dst)) {
			s->rtp_dst = w->rx_addr[i];
			if (s->p.rtcp_mux)
				s->rtcp_dst = s->rtp_dst;
		}
		s->last_rx_us = now;
		s->timeout_sent = 0;

		/* Arrival time from the kernel's receive stamp (CLOCK_REALTIME), in us and
		 * in timestamp units. */
		struct timespec kt;
		struct cmsghdr *cm = CMSG_FIRSTHDR(mh);
		if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
			memcpy(&kt, CMSG_DATA(cm), sizeof(kt));
		} else {
			if (!have_arrival_now) {
				clock_gettime(CLOCK_REALTIME, &arrival_now);
				have_arrival_now = 1;
			}
			kt = arrival_now;
		}
		uint64_t rx_us = (uint64_t)kt.tv_sec * 1000000u + (uint64_t)kt.tv_nsec / 1000u;

		uint32_t arrival =
		    (uint32_t)((uint64_t)kt.tv_sec * MEDIA_CLOCK_RATE +
		               (uint64_t)kt.tv_nsec / (1000000000u / MEDIA_CLOCK_RATE));
		rx_stats(s, &h, arrival);

		uint8_t *payload = buf + h.hdr_len;
		if (s->p.pt_dtmf >= 0 && h.pt == (uint8_t)s->p.pt_dtmf)
			dtmf_input(s, &h, payload);

		if (s->dsp) {
			/* Decoded on the tick; telephone events were handled above, comfort
			 * noise and unknown types go no further. */
			if (h.pt == s->p.pt_audio && s->p.recv &&
			    media_dsp_rx_packet(s->dsp, h.ssrc, h.seq, h.ts, payload, h.payload_len,
			                        now, rx_us))
				notify_add(w, s->dsp);
			/* Bridged dsp legs (a transcoded bridge, a customer and an agent after the
			 * AI): the expected packet goes through to the peer now, as a relay's
			 * would, rather than up to 20 ms later at the slot; the slot then skips
			 * those two stages, so each still runs once per period. */
			if (peer && peer->dsp && !s->rx_early && !peer->tx_early &&
			    media_dsp_rx_ready(s->dsp, now)) {
				dsp_rx(w, s, now);
				dsp_tx(w, peer, now);
				s->rx_early = peer->tx_early = 1;
			}
			continue;
		}
		if (!fwd) {
			if (!mute)
				drop(w, s, DROP_NO_PEER);
			continue;
		}
		enum drop_reason why;
		int opt = map_pt(s, peer, h.pt, &why);
		if (opt < 0) {
			drop(w, s, why);
			continue;
		}
		if (h.pt == s->p.pt_audio && s->p.codec != peer->p.codec)
			media_g711_transcode(s->p.codec, peer->p.codec, payload, h.payload_len);
		uint16_t oseq;
		uint32_t ots;
		int restart = out_map(peer, &h, now, &oseq, &ots);
		uint8_t marker = (uint8_t)(buf[1] & 0x80);
		if (restart && h.pt == s->p.pt_audio)
			marker = 0x80;
		buf[1] = (uint8_t)(marker | (uint8_t)opt);
		media_put16(buf + 2, oseq);
		media_put32(buf + 4, ots);
		media_put32(buf + 8, peer->out_ssrc);
		peer->out_pkts++;
		peer->out_octets += h.payload_len;
		if (peer->srtp_tx && media_srtp_protect(peer->srtp_tx, buf, &len) != 0) {
			drop(w, peer, DROP_SRTP);
			continue;
		}
		w->tx_iov[ntx].iov_base = buf;
		w->tx_iov[ntx].iov_len = len;
		struct msghdr *th = &w->tx_msg[ntx].msg_hdr;
		th->msg_name = &peer->rtp_dst;
		th->msg_namelen = sizeof(peer->rtp_dst);
		th->msg_iov = &w->tx_iov[ntx];
		th->msg_iovlen = 1;
		th->msg_control = NULL;
		th->msg_controllen = 0;
		th->msg_flags = 0;
		tx_bytes += len;
		ntx++;
	}
	w->m_in += n_rtp;
	CTR_ADD(s->st.pkts_in, n_rtp);
	CTR_ADD(s->st.bytes_in, in_bytes);
	if (s->rx_any) {
		int32_t l = media_rtp_rx_lost(&s->rx);
		CTR_SET(s->st.lost, s->lost_carry + (l > 0 ? (uint32_t)l : 0u));
		CTR_SET(s->st.jitter_ms, media_rtp_rx_jitter_ts(&s->rx) * 1000u / MEDIA_CLOCK_RATE);
	}
	if (ntx)
		send_batch(w, peer, ntx, tx_bytes);
out:
	for (unsigned i = k; i-- > 0;)
		slot_put(w, w->rx_slot[i]);
}

static void rtcp_readable(struct media_worker *w, struct media_session *s)
{
	for (unsigned i = 0; i < 8; i++) {
		int si = slot_get(w);
		uint8_t *buf = slot_buf(w, si < 0 ? POOL_SLOTS : (unsigned)si);
		struct sockaddr_in src;
		socklen_t sl = sizeof(src);
		ssize_t r = recvfrom(s->rtcp_fd, buf, MEDIA_SLOT_MAX_PKT, MSG_DONTWAIT | MSG_TRUNC,
		                     (struct sockaddr *)&src, &sl);
		if (r >= 0) {
			if (si < 0)
				drop(w, s, DROP_POOL);
			else if ((size_t)r > MEDIA_SLOT_MAX_PKT)
				drop(w, s, DROP_MALFORMED);
			else
				rtcp_input(w, s, buf, (size_t)r, &src, 0, clock_now_us());
		}
		if (si >= 0)
			slot_put(w, (unsigned)si);
		if (r < 0)
			break;
	}
}

/* ---- locally generated packets (tick) ---- */

/* Sends one locally made packet (tone, prompt, AI audio, transcoded audio, RFC 4733
 * event) on this leg, continuing its seq/ts: step timestamp units after the previous
 * local packet, or a new segment with the marker bit after relayed audio or a pause.
 * An event packet carries its segment's start timestamp (this tick's minus ev_off)
 * while the audio clock keeps running underneath. */
static void send_local(struct media_worker *w, struct media_session *s, uint64_t now,
                       const uint8_t *payload, size_t plen, uint8_t pt, uint32_t step, int ev,
                       uint32_t ev_off, int ev_marker)
{
	if (!s->p.send || !s->rtp_dst.sin_port)
		return;
	int si = slot_get(w);
	if (si < 0) {
		drop(w, s, DROP_POOL);
		return;
	}
	uint8_t *buf = slot_buf(w, (unsigned)si);
	struct media_rtp_hdr h;
	memset(&h, 0, sizeof(h));
	if (s->tone_live) {
		h.seq = (uint16_t)(s->out_seq + 1u);
		h.ts = s->out_ts + step;
	} else {
		out_next(s, now, &h.seq, &h.ts);
		h.marker = 1;
	}
	uint32_t audio_ts = h.ts;
	if (ev) {
		h.ts = audio_ts - ev_off;
		h.marker = (uint8_t)ev_marker;
	}
	h.pt = pt;
	h.ssrc = s->out_ssrc;
	h.payload_len = (uint16_t)plen;
	int hl = media_rtp_build(buf, MEDIA_SLOT_MAX_PKT, &h, NULL, NULL, payload);
	if (hl < 0)
		goto out;
	out_note(s, h.seq, audio_ts, now);
	s->tone_live = 1;
	s->map_valid = 0; /* relayed audio resumes as a new segment */
	s->out_pkts++;
	s->out_octets += (uint32_t)plen;
	size_t len = (size_t)hl;
	if (s->srtp_tx && media_srtp_protect(s->srtp_tx, buf, &len) != 0) {
		drop(w, s, DROP_SRTP);
		goto out;
	}
	if (sendto(s->rtp_fd, buf, len, MSG_DONTWAIT, (const struct sockaddr *)&s->rtp_dst,
	           sizeof(s->rtp_dst)) < 0) {
		drop(w, s, DROP_POOL);
		goto out;
	}
	w->m_out++;
	CTR_ADD(s->st.pkts_out, 1);
	CTR_ADD(s->st.bytes_out, len);
out:
	slot_put(w, (unsigned)si);
}

static void tone_send(struct media_worker *w, struct media_session *s, uint64_t now)
{
	uint8_t frame[MEDIA_FRAME_SAMPLES];
	media_tone_frame(s->tone, s->p.codec, s->tone_pos, frame, MEDIA_FRAME_SAMPLES);
	s->tone_pos += MEDIA_FRAME_SAMPLES;
	send_local(w, s, now, frame, MEDIA_FRAME_SAMPLES, s->p.pt_audio, MEDIA_FRAME_SAMPLES, 0, 0,
	           0);
}

/* ---- dsp legs (media/dsp.c does the audio; this turns its results into packets and
 * events) ---- */

static void notify_add(struct media_worker *w, const struct media_dsp *d)
{
	media_ai_notify_cb cb;
	void *arg;
	media_ai_port_notify_target(d->ai, &cb, &arg);
	if (!cb)
		return;
	for (unsigned i = 0; i < w->n_notify; i++)
		if (w->notify_cb[i] == cb && w->notify_arg[i] == arg)
			return;
	if (w->n_notify < MAX_NOTIFY) {
		w->notify_cb[w->n_notify] = cb;
		w->notify_arg[w->n_notify++] = arg;
	} else {
		cb(arg); /* more targets than slots: wake this one now */
	}
}

/* Wakes each AI thread that got frames since the last call, once. */
static void notify_fire(struct media_worker *w)
{
	for (unsigned i = 0; i < w->n_notify; i++)
		w->notify_cb[i](w->notify_arg[i]);
	w->n_notify = 0;
}

static void dsp_rx(struct media_worker *w, struct media_session *s, uint64_t now)
{
	struct media_dsp_emit em;
	media_dsp_rx_tick(s->dsp, now, &em);
	if (em.notify)
		notify_add(w, s->dsp);
	for (unsigned i = 0; i < em.n_digits; i++) {
		struct media_event ev;
		ev_init(&ev, MEDIA_EV_DTMF, s->owner);
		ev.digit = em.digits[i].digit;
		ev.inband = 1;
		ev.duration_ms = (uint16_t)em.digits[i].duration_ms;
		if (post_event_full(&ev) == 0)
			CTR_ADD(s->st.dtmf_events, 1);
		if (s->peer && s->peer->dsp)
			dtmf_regenerate(s->peer, ev.digit, ev.duration_ms);
	}
	if (em.amd) {
		struct media_event ev;
		ev_init(&ev, MEDIA_EV_AMD, s->owner);
		ev.result = em.amd_verdict;
		ev.ms = em.amd_ms;
		ev.why = em.amd_why;
		post_event_full(&ev);
	}
	if (em.amd_end) {
		struct media_event ev;
		ev_init(&ev, MEDIA_EV_AMD_END, s->owner);
		ev.result = MEDIA_AMD_MACHINE;
		ev.ms = em.amd_end_ms;
		ev.why = em.amd_end_why;
		post_event_full(&ev);
	}
}

static void dsp_tx(struct media_worker *w, struct media_session *s, uint64_t now)
{
	struct media_dsp_emit em;
	struct media_dsp_tx tx;
	uint8_t payload[MEDIA_CODED_FRAME_MAX];
	struct media_dsp *d = s->dsp;
	const struct media_dsp *pd = s->peer ? s->peer->dsp : NULL;
	int any =
	    media_dsp_tx_tick(d, pd, s->tone, s->tone_pos, now, payload, sizeof(payload), &em, &tx);
	if (s->tone != MEDIA_TONE_NONE)
		s->tone_pos += MEDIA_FRAME_SAMPLES;
	uint32_t step = d->k ? d->k->ts_step : MEDIA_FRAME_SAMPLES;
	if (any && tx.dtmf && s->p.pt_dtmf >= 0)
		send_local(w, s, now, payload, tx.len, (uint8_t)s->p.pt_dtmf, step, 1, tx.ts_off,
		           tx.marker);
	else if (any && !tx.dtmf)
		send_local(w, s, now, payload, tx.len, s->p.pt_audio, step, 0, 0, 0);
	else
		s->tone_live = 0; /* nothing this tick: the next packet starts a new segment */
	for (unsigned i = 0; i < em.n_marks; i++) {
		struct media_event ev;
		ev_init(&ev, MEDIA_EV_MARK, s->owner);
		ev.id = em.marks[i].id;
		ev.result = em.marks[i].played;
		post_event_full(&ev);
	}
	if (em.play_done) {
		struct media_event ev;
		ev_init(&ev, MEDIA_EV_PLAY_DONE, s->owner);
		ev.id = em.play_id;
		ev.result = 1;
		post_event_full(&ev);
	}
}

static void rtcp_send(struct media_worker *w, struct media_session *s, uint64_t now)
{
	int fd = s->p.rtcp_mux ? s->rtp_fd : s->rtcp_fd;
	const struct sockaddr_in *dst = s->p.rtcp_mux ? &s->rtp_dst : &s->rtcp_dst;
	if (!dst->sin_port || (!s->out_any && !s->rx_any))
		return;
	int si = slot_get(w);
	if (si < 0)
		return;
	uint8_t *buf = slot_buf(w, (unsigned)si);
	struct media_rtcp_sr sr, *srp = NULL;
	struct media_rtcp_report rb, *rbp = NULL;
	if (s->out_pkts != s->out_pkts_rtcp) {
		uint64_t ntp = ntp_now();
		sr.ntp_sec = (uint32_t)(ntp >> 32);
		sr.ntp_frac = (uint32_t)ntp;
		unsigned clk = s->clock ? s->clock : MEDIA_CLOCK_RATE;
		sr.rtp_ts = s->out_ts + (uint32_t)((now - s->out_ts_us) * clk / 1000000u);
		sr.pkt_count = s->out_pkts;
		sr.octet_count = s->out_octets;
		srp = &sr;
		s->out_pkts_rtcp = s->out_pkts;
	}
	if (s->rx_any) {
		rb.ssrc = s->rx.ssrc;
		rb.fraction = media_rtp_rx_fraction(&s->rx);
		rb.cum_lost = media_rtp_rx_lost(&s->rx);
		rb.ext_max_seq = media_rtp_rx_ext_max(&s->rx);
		rb.jitter = media_rtp_rx_jitter_ts(&s->rx);
		rb.lsr = s->lsr;
		rb.dlsr = s->lsr_at_us ? (uint32_t)(((now - s->lsr_at_us) << 16) / 1000000u) : 0;
		rbp = &rb;
	}
	int r = media_rtcp_build(buf, MEDIA_SLOT_MAX_PKT, s->out_ssrc, srp, rbp, s->cname,
	                         s->cname_len);
	if (r < 0)
		goto out;
	size_t len = (size_t)r;
	if (s->srtp_tx && media_srtp_protect_rtcp(s->srtp_tx, buf, &len) != 0)
		goto out;
	if (sendto(fd, buf, len, MSG_DONTWAIT, (const struct sockaddr *)dst, sizeof(*dst)) >= 0)
		CTR_ADD(s->st.rtcp_out, 1);
out:
	slot_put(w, (unsigned)si);
}

static uint64_t rtcp_next(struct media_worker *w, uint64_t now)
{
	/* RFC 3550 §6.3.1: randomise over [0.5, 1.5] of the interval. */
	uint64_t base = (uint64_t)rtcp_interval_ms * 1000u;
	return now + base / 2 + rng_next(w) % (base + 1);
}

static void tick_slot(struct media_worker *w, unsigned k, uint64_t now)
{
	/* dsp legs: every rx stage before any tx stage, so a bridged peer's frame (the peer
	 * is kept in the same slot) is this period's. */
	if (w->n_dsp) {
		for (struct media_session *s = w->slot_head[k]; s; s = s->act_next) {
			if (s->dsp && !s->rx_early)
				dsp_rx(w, s, now);
			s->rx_early = 0;
		}
		for (struct media_session *s = w->slot_head[k]; s; s = s->act_next) {
			if (s->dsp && !s->tx_early)
				dsp_tx(w, s, now);
			s->tx_early = 0;
		}
	}
	for (struct media_session *s = w->slot_head[k]; s; s = s->act_next) {
		if (s->tone != MEDIA_TONE_NONE && !s->dsp)
			tone_send(w, s, now);
		unsigned limit_ms = s->p.recv ? eng.cfg.rtp_timeout_ms : eng.cfg.hold_timeout_ms;
		if (limit_ms && !s->timeout_sent) {
			uint64_t since =
			    s->last_rx_us > s->last_update_us ? s->last_rx_us : s->last_update_us;
			if (now - since >= (uint64_t)limit_ms * 1000u &&
			    post_event(MEDIA_EV_TIMEOUT, s->owner, 0, 0) == 0)
				s->timeout_sent = 1;
		}
		if (now >= s->next_rtcp_us) {
			s->next_rtcp_us = rtcp_next(w, now);
			rtcp_send(w, s, now);
		}
	}
}

/* `expirations` slots went by: serve each in turn; a late worker catches up slot by slot
 * (at most MAX_CATCHUP_FRAMES periods) to keep every session's 20 ms cadence. */
static void tick(struct media_worker *w, uint64_t expirations)
{
	uint64_t now = clock_now_us();
	uint64_t steps = expirations > (uint64_t)N_SLOTS * MAX_CATCHUP_FRAMES
	                     ? (uint64_t)N_SLOTS * MAX_CATCHUP_FRAMES
	                     : expirations;
	for (uint64_t i = 0; i < steps; i++) {
		w->cur_slot = (w->cur_slot + 1u) % N_SLOTS;
		if (w->slot_head[w->cur_slot])
			tick_slot(w, w->cur_slot, now);
		if (w->cur_slot == 0)
			flush_metrics(w);
	}
	notify_fire(w);
}

/* Puts s into slot k's list. */
static void slot_link(struct media_worker *w, struct media_session *s, unsigned k)
{
	s->slot = k;
	s->act_prev = NULL;
	s->act_next = w->slot_head[k];
	if (s->act_next)
		s->act_next->act_prev = s;
	w->slot_head[k] = s;
	w->slot_n[k]++;
}

static void slot_unlink(struct media_worker *w, struct media_session *s)
{
	if (s->act_prev)
		s->act_prev->act_next = s->act_next;
	else
		w->slot_head[s->slot] = s->act_next;
	if (s->act_next)
		s->act_next->act_prev = s->act_prev;
	s->act_prev = s->act_next = NULL;
	w->slot_n[s->slot]--;
}

/* ---- commands (worker side) ---- */

static void epoll_add(struct media_worker *w, int fd, uint32_t idx, enum ev_kind kind)
{
	struct epoll_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = (uint64_t)idx << 2 | (uint64_t)kind;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		log_err(MOD, "worker %u: epoll add fd %d: %s", w->idx, fd, strerror(errno));
}

static void session_start(struct media_worker *w, struct media_session *s, uint64_t now)
{
	size_t off = offsetof(struct media_session, active);
	memset((char *)s + off, 0, sizeof(*s) - off);
	s->p.pt_dtmf = -1;
	s->p.pt_cn = -1;
	s->out_ssrc = rng_next(w);
	s->out_seq = (uint16_t)rng_next(w);
	s->out_ts = rng_next(w);
	s->last_update_us = now;
	s->next_rtcp_us = rtcp_next(w, now);
	static const char hex[] = "0123456789abcdef";
	memcpy(s->cname, "vacs-", 5);
	for (unsigned i = 0; i < 8; i++)
		s->cname[5 + i] = hex[(s->out_ssrc >> (28 - 4 * i)) & 0xf];
	s->cname_len = 13;
	s->active = 1;
	/* The least loaded slot, the one after the current first (served soonest). */
	unsigned best = (w->cur_slot + 1u) % N_SLOTS;
	for (unsigned i = 1; i < N_SLOTS; i++) {
		unsigned k = (w->cur_slot + 1u + i) % N_SLOTS;
		if (w->slot_n[k] < w->slot_n[best])
			best = k;
	}
	slot_link(w, s, best);
	int on = 1;
	setsockopt(s->rtp_fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));
	epoll_add(w, s->rtp_fd, s->idx, KIND_RTP);
	epoll_add(w, s->rtcp_fd, s->idx, KIND_RTCP);
}

static void unlink_peer(struct media_session *s)
{
	struct media_session *p = s->peer;
	if (!p)
		return;
	if (p->peer == s)
		p->peer = NULL;
	p->map_valid = 0;
	s->peer = NULL;
	s->map_valid = 0;
}

/* Ends the prompt a dsp leg was playing, telling the control thread it was stopped. */
static void play_stopped(struct media_session *s)
{
	struct media_dsp *d = s->dsp;
	if (!d->prompt)
		return;
	struct media_event ev;
	ev_init(&ev, MEDIA_EV_PLAY_DONE, s->owner);
	ev.id = d->play_id;
	ev.result = 0;
	post_event_full(&ev);
	media_prompt_unref(d->prompt);
	d->prompt = NULL;
}

/* Worker or (after the worker stopped) media_close. Releases the slot last. */
static void session_release(struct media_worker *w, struct media_session *s)
{
	if (s->active) {
		unlink_peer(s);
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, s->rtp_fd, NULL);
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, s->rtcp_fd, NULL);
		slot_unlink(w, s);
		media_srtp_destroy(s->srtp_rx);
		media_srtp_destroy(s->srtp_tx);
		s->srtp_rx = s->srtp_tx = NULL;
		if (s->dsp) {
			play_stopped(s);
			media_dsp_destroy(s->dsp);
			s->dsp = NULL;
			w->n_dsp--;
		}
		s->active = 0;
	}
	if (s->rtp_fd >= 0)
		close(s->rtp_fd);
	if (s->rtcp_fd >= 0)
		close(s->rtcp_fd);
	if (s->rtp_fd >= 0)
		pair_mark(s->port, 0);
	s->rtp_fd = s->rtcp_fd = -1;
	atomic_fetch_sub(&w->load, 1);
	metric_add(eng.m_sessions, (uint64_t)-1); /* gauge decrement */
	atomic_store_explicit(&s->in_use, 0, memory_order_release);
}

static void session_update(struct media_session *s, struct media_cmd *c, uint64_t now)
{
	if (c->new_rx) {
		media_srtp_destroy(s->srtp_rx);
		s->srtp_rx = c->rx;
		c->rx = NULL;
	}
	if (c->new_tx) {
		media_srtp_destroy(s->srtp_tx);
		s->srtp_tx = c->tx;
		c->tx = NULL;
	}
	s->p = c->p;
	const struct media_codec_desc *cd = media_codec_desc(c->p.codec);
	s->clock = cd ? cd->rtp_clock : MEDIA_CLOCK_RATE;
	s->rtp_dst = c->p.remote_rtp;
	if (c->p.rtcp_mux) {
		s->rtcp_dst = s->rtp_dst;
	} else if (c->p.remote_rtcp.sin_port) {
		s->rtcp_dst = c->p.remote_rtcp;
	} else {
		s->rtcp_dst = s->rtp_dst; /* RFC 3550 §11: RTCP on the next port */
		if (s->rtp_dst.sin_port)
			s->rtcp_dst.sin_port = htons((uint16_t)(ntohs(s->rtp_dst.sin_port) + 1u));
	}
	s->last_update_us = now;
	s->timeout_sent = 0;
}

static void session_bridge(struct media_session *a, struct media_session *b)
{
	if (!a->active || a->peer == b)
		return;
	unlink_peer(a);
	if (!b || !b->active)
		return;
	unlink_peer(b);
	a->peer = b;
	b->peer = a;
	a->rx_early = a->tx_early = b->rx_early = b->tx_early = 0;
	if (b->slot != a->slot) {
		/* Bridged legs are served in the same slot: one's frame is the other's at once. */
		struct media_worker *w = a->w;
		slot_unlink(w, b);
		slot_link(w, b, a->slot);
	}
}

/* Frees what a command carried that the worker did not take. */
static void cmd_discard(struct media_cmd *c)
{
	switch (c->type) {
	case CMD_UPDATE:
		media_srtp_destroy(c->rx);
		media_srtp_destroy(c->tx);
		c->rx = c->tx = NULL;
		break;
	case CMD_DSP:
		media_dsp_destroy(c->dsp);
		break;
	case CMD_DSP_CODEC:
		media_dsp_codec_destroy(c->dk);
		break;
	case CMD_AI:
		media_ai_port_release(c->ai);
		break;
	case CMD_PLAY:
		media_prompt_unref(c->prompt);
		break;
	case CMD_REC:
		if (c->rec)
			media_recorder_finish(c->rec);
		break;
	case CMD_AMD:
		media_amd_destroy(c->amd);
		break;
	default:
		break;
	}
}

/* The dsp commands: each takes its objects when the session is a live dsp leg, else
 * they are discarded. */
static void handle_dsp_cmd(struct media_worker *w, struct media_session *s, struct media_cmd *c)
{
	struct media_dsp *d = s->dsp;
	if (!s->active || (c->type != CMD_DSP && !d)) {
		cmd_discard(c);
		return;
	}
	switch (c->type) {
	case CMD_DSP:
		if (d) {
			cmd_discard(c);
			return;
		}
		s->dsp = c->dsp;
		w->n_dsp++;
		break;
	case CMD_DSP_CODEC:
		media_dsp_codec_destroy(d->k);
		d->k = c->dk;
		d->has_te = c->has_te;
		d->amd_done = d->amd ? d->amd_done : 0;
		break;
	case CMD_AI:
		if (c->ai)
			session_bridge(s, NULL);
		media_ai_port_release(d->ai);
		d->ai = c->ai;
		break;
	case CMD_PLAY:
		play_stopped(s);
		d->prompt = c->prompt;
		d->loop = c->loop;
		d->play_id = c->id;
		d->prompt_frame = 0;
		break;
	case CMD_REC:
		if (d->rec)
			media_recorder_finish(d->rec);
		d->rec = c->rec;
		break;
	case CMD_AMD:
		media_amd_destroy(d->amd);
		d->amd = c->amd;
		d->amd_done = 0;
		break;
	case CMD_DTMF:
		dtmf_regenerate(s, c->digit, c->dur_ms);
		break;
	default:
		break;
	}
}

static void guest_set(struct media_worker *w, const struct media_cmd *c)
{
	int rc = 1;
	if (w->guest_cb) {
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->guest_fd, NULL);
		w->guest_cb = NULL;
		w->guest_arg = NULL;
		w->guest_fd = -1;
	}
	if (c->guest_cb) {
		struct epoll_event ev;
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.u64 = EV_GUEST;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->guest_fd, &ev) < 0) {
			rc = -errno;
		} else {
			w->guest_cb = c->guest_cb;
			w->guest_arg = c->guest_arg;
			w->guest_fd = c->guest_fd;
		}
	}
	atomic_store(&w->guest_ack, rc);
}

static void handle_cmd(struct media_worker *w, struct media_cmd *c)
{
	uint64_t now = clock_now_us();
	struct media_session *s = c->s;
	switch (c->type) {
	case CMD_ADD:
		session_start(w, s, now);
		break;
	case CMD_UPDATE:
		if (s->active)
			session_update(s, c, now);
		cmd_discard(c);
		break;
	case CMD_BRIDGE:
		session_bridge(s, c->peer);
		break;
	case CMD_TONE:
		if (s->active && s->tone != c->tone) {
			s->tone = c->tone;
			s->tone_pos = 0;
			s->tone_live = 0;
			s->map_valid = 0;
		}
		break;
	case CMD_DESTROY:
		session_release(w, s);
		break;
	case CMD_STOP:
		w->stop = 1;
		break;
	case CMD_GUEST:
		guest_set(w, c);
		break;
	case CMD_DSP:
	case CMD_DSP_CODEC:
	case CMD_AI:
	case CMD_PLAY:
	case CMD_REC:
	case CMD_AMD:
	case CMD_DTMF:
		handle_dsp_cmd(w, s, c);
		break;
	}
}

static void *worker_main(void *arg)
{
	struct media_worker *w = arg;
	struct epoll_event evs[MAX_EPOLL_EVENTS];
	/* media.coalesce_us: each wake-up starts at least this long after the previous one,
	 * so one wake-up serves the packets of several calls instead of one or two. It pays
	 * with realtime_priority, where the sleep ends on time (docs/PERFORMANCE.md, "ai"). */
	const uint64_t coalesce_ns = (uint64_t)eng.cfg.coalesce_us * 1000u;
	struct timespec wake = {0, 0};
	char name[16];
	snprintf(name, sizeof(name), "media-%u", w->idx);
	pthread_setname_np(pthread_self(), name);

	while (!w->stop) {
		if (coalesce_ns && wake.tv_sec) {
			uint64_t ns = (uint64_t)wake.tv_nsec + coalesce_ns;
			wake.tv_sec += (time_t)(ns / 1000000000u);
			wake.tv_nsec = (long)(ns % 1000000000u);
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL) ==
			       EINTR)
				;
		}
		int n = epoll_wait(w->epfd, evs, MAX_EPOLL_EVENTS, 1000);
		if (coalesce_ns)
			clock_gettime(CLOCK_MONOTONIC, &wake);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err(MOD, "worker %u: epoll_wait: %s", w->idx, strerror(errno));
			break;
		}
		/* Commands first: a packet that arrived after an update was posted is then
		 * handled with that update applied. Events of this batch for a slot that a
		 * command released are skipped (active == 0). */
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 != EV_MBOX)
				continue;
			struct media_cmd c;
			mbox_drain_fd(w->cmds);
			while (!w->stop && mbox_take(w->cmds, &c) == 0)
				handle_cmd(w, &c);
			break;
		}
		int timer = 0, guest = 0;
		for (int i = 0; i < n && !w->stop; i++) {
			enum ev_kind kind = (enum ev_kind)(evs[i].data.u64 & 3u);
			uint32_t idx = (uint32_t)(evs[i].data.u64 >> 2);
			struct media_session *s = &w->sess[idx];
			switch (kind) {
			case KIND_TIMER:
				timer = 1;
				break;
			case KIND_MBOX:
				guest |= evs[i].data.u64 == EV_GUEST;
				break;
			case KIND_RTP:
				if (s->active)
					rtp_readable(w, s);
				break;
			case KIND_RTCP:
				if (s->active)
					rtcp_readable(w, s);
				break;
			}
		}
		/* Frames that went up as their packets arrived: one wake-up per AI thread
		 * for the whole batch of events, before the tick (which takes a while with
		 * many sessions) so that they do not wait for it. */
		if (w->n_notify)
			notify_fire(w);
		if (guest && w->guest_cb)
			w->guest_cb(w->guest_arg, 1);
		if (timer && !w->stop) {
			uint64_t exp = 0;
			if (read(w->tfd, &exp, sizeof(exp)) == (ssize_t)sizeof(exp) && exp)
				tick(w, exp);
			if (w->n_notify)
				notify_fire(w);
			if (w->guest_cb)
				w->guest_cb(w->guest_arg, 0);
		}
	}
	flush_metrics(w);
	return NULL;
}

/* ---- setup and teardown ---- */

static void worker_teardown(struct media_worker *w)
{
	if (w->cmds) {
		struct media_cmd c;
		while (mbox_take(w->cmds, &c) == 0) {
			/* A pending CMD_ADD leaves its slot in use: released below. */
			if (c.type == CMD_DESTROY)
				session_release(w, c.s);
			else
				cmd_discard(&c);
		}
	}
	for (unsigned i = 0; w->sess && i < w->n_sess; i++) {
		struct media_session *s = &w->sess[i];
		if (atomic_load_explicit(&s->in_use, memory_order_acquire))
			session_release(w, s);
	}
	if (w->tfd >= 0)
		close(w->tfd);
	if (w->epfd >= 0)
		close(w->epfd);
	mbox_destroy(w->cmds);
	mem_free(w->sess);
	mem_free(w->slab);
	memset(w, 0, sizeof(*w));
	w->epfd = w->tfd = -1;
}

static int worker_setup(struct media_worker *w, unsigned idx)
{
	int err;
	w->idx = idx;
	w->epfd = w->tfd = -1;
	w->guest_fd = -1;
	w->n_sess = eng.max_sessions;
	w->sess = mem_zalloc(sizeof(*w->sess) * w->n_sess);
	w->slab = mem_alloc((size_t)(POOL_SLOTS + 1) * MEDIA_SLOT_SIZE);
	if (!w->sess || !w->slab)
		return -ENOMEM;
	for (unsigned i = 0; i < w->n_sess; i++) {
		w->sess[i].w = w;
		w->sess[i].idx = i;
		w->sess[i].rtp_fd = w->sess[i].rtcp_fd = -1;
	}
	for (unsigned i = 0; i < POOL_SLOTS; i++)
		w->free_slot[i] = (uint16_t)(POOL_SLOTS - 1 - i);
	w->n_free = POOL_SLOTS;
	err = mbox_create(&w->cmds, sizeof(struct media_cmd), w->n_sess + 256);
	if (err)
		return err;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		return -errno;
	w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (w->tfd < 0)
		return -errno;
	struct itimerspec its;
	memset(&its, 0, sizeof(its));
	its.it_interval.tv_nsec = SLOT_NS;
	its.it_value.tv_nsec = SLOT_NS;
	if (timerfd_settime(w->tfd, 0, &its, NULL) < 0)
		return -errno;
	struct epoll_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = KIND_TIMER;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->tfd, &ev) < 0)
		return -errno;
	ev.data.u64 = EV_MBOX;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, mbox_fd(w->cmds), &ev) < 0)
		return -errno;
	if (getrandom(&w->rng, sizeof(w->rng), 0) != (ssize_t)sizeof(w->rng) || !w->rng)
		w->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)clock_now_us() ^ idx;
	return 0;
}

static void cmd_init(struct media_cmd *c, enum cmd_type type, struct media_session *s)
{
	memset(c, 0, sizeof(*c));
	c->type = type;
	c->s = s;
}

static int post_cmd(struct media_worker *w, const struct media_cmd *c, int must)
{
	unsigned waited = 0;
	for (;;) {
		int err = mbox_post(w->cmds, c);
		if (err != -EAGAIN || !must || waited >= CMD_RETRY_MS)
			return err;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
		waited++;
	}
}

/* The recorder's writer thread closed a file. */
static void recording_done(uint64_t owner, int result, uint64_t bytes, void *arg)
{
	(void)arg;
	struct media_event ev;
	ev_init(&ev, MEDIA_EV_RECORDING, owner);
	ev.result = result;
	ev.bytes = bytes;
	if (eng.events)
		post_event_full(&ev);
}

void media_close(void)
{
	if (!eng.workers)
		goto out;
	for (unsigned i = 0; i < eng.n_workers; i++) {
		struct media_worker *w = &eng.workers[i];
		if (!w->thread_started)
			continue;
		struct media_cmd c;
		memset(&c, 0, sizeof(c));
		c.type = CMD_STOP;
		if (post_cmd(w, &c, 1) != 0)
			log_err(MOD, "worker %u: cannot post stop", i);
		pthread_join(w->thread, NULL);
	}
	/* The workers are gone: their slots are ours now. */
	for (unsigned i = 0; i < eng.n_workers; i++)
		worker_teardown(&eng.workers[i]);
	mem_free(eng.workers);
	eng.workers = NULL;
out:
	/* After the workers: their recordings were finished at session release. */
	if (eng.recorder_up)
		media_recorder_close();
	mbox_destroy(eng.events);
	memset(&eng, 0, sizeof(eng));
}

/* media.realtime_priority: the worker runs SCHED_FIFO, so a packet's wake-up preempts
 * ordinary work on its core at once (docs/PERFORMANCE.md, "ai"). Without the right
 * (CAP_SYS_NICE, or RLIMIT_RTPRIO) the worker keeps normal scheduling, with a warning. */
static void set_realtime(struct media_worker *w)
{
	if (!eng.cfg.realtime_priority)
		return;
	struct sched_param sp = {.sched_priority = (int)eng.cfg.realtime_priority};
	int e = pthread_setschedparam(w->thread, SCHED_FIFO, &sp);
	if (e)
		log_warn(MOD,
		         "worker %u: cannot run at SCHED_FIFO priority %u (%s): normal scheduling",
		         w->idx, eng.cfg.realtime_priority, strerror(e));
}

int media_init(const struct media_config *cfg)
{
	int err = 0;
	if (eng.up || eng.workers)
		return -EALREADY;
	if (!cfg || !cfg->address)
		return -EINVAL;
	memset(&eng, 0, sizeof(eng));
	eng.cfg = *cfg;
	if (inet_pton(AF_INET, cfg->address, &eng.bind_addr) != 1)
		return -EINVAL;
	snprintf(eng.address, sizeof(eng.address), "%s", cfg->address);
	snprintf(eng.advertise, sizeof(eng.advertise), "%s",
	         cfg->advertise && cfg->advertise[0] ? cfg->advertise : cfg->address);
	eng.cfg.address = eng.address;
	eng.cfg.advertise = eng.advertise;
	unsigned lo = ((unsigned)cfg->port_min + 1u) & ~1u;
	if (lo == 0 || cfg->port_max == 0 || lo + 1u > cfg->port_max)
		return -EINVAL;
	eng.port_lo = (uint16_t)lo;
	eng.port_hi = (uint16_t)((cfg->port_max - 1u) & ~1u);
	eng.next_port = eng.port_lo;
	for (unsigned i = 0; i < sizeof(pair_used) / sizeof(pair_used[0]); i++)
		atomic_store(&pair_used[i], 0);
	atomic_store(&pairs_used, 0);
	eng.max_sessions = cfg->max_sessions ? cfg->max_sessions : DEFAULT_SESSIONS;
	if (eng.max_sessions > (1u << 24))
		return -EINVAL;
	unsigned nw = cfg->workers;
	if (nw == 0) {
		long np = sysconf(_SC_NPROCESSORS_ONLN);
		nw = np > 0 ? (unsigned)np : 1u;
	}
	if (nw > 1024)
		nw = 1024;

	eng.m_in = metric_get(METRIC_COUNTER, "vacs_media_packets_total{dir=\"in\"}",
	                      "RTP packets received and sent by the media workers");
	eng.m_out = metric_get(METRIC_COUNTER, "vacs_media_packets_total{dir=\"out\"}",
	                       "RTP packets received and sent by the media workers");
	for (unsigned i = 0; i < DROP_N; i++)
		eng.m_drop[i] =
		    metric_get(METRIC_COUNTER, drop_metric[i],
		               "RTP/RTCP packets dropped by the media workers, by reason");
	eng.m_sessions = metric_get(METRIC_GAUGE, "vacs_media_sessions", "Live media sessions");
	metric_set(eng.m_sessions, 0);
	if (!eng.m_in || !eng.m_out || !eng.m_sessions) {
		err = -ENOMEM;
		goto out;
	}
	err = mbox_create(&eng.events, sizeof(struct media_event), EVENT_QUEUE);
	if (err)
		goto out;
	err = media_recorder_init(recording_done, NULL);
	if (err)
		goto out;
	eng.recorder_up = 1;
	eng.workers = mem_zalloc(sizeof(*eng.workers) * nw);
	if (!eng.workers) {
		err = -ENOMEM;
		goto out;
	}
	eng.n_workers = nw;
	for (unsigned i = 0; i < nw; i++) {
		err = worker_setup(&eng.workers[i], i);
		if (err)
			goto out;
	}
	/* Workers take no signals: they belong to the main thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned i = 0; i < nw; i++) {
		int e = pthread_create(&eng.workers[i].thread, NULL, worker_main, &eng.workers[i]);
		if (e) {
			err = -e;
			break;
		}
		eng.workers[i].thread_started = 1;
		set_realtime(&eng.workers[i]);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		goto out;
	eng.up = 1;
	log_info(MOD, "%u workers, %u sessions each, ports %u-%u on %s", nw, eng.max_sessions,
	         eng.port_lo, eng.port_hi + 1u, eng.address);
	return 0;
out:
	log_err(MOD, "init failed: %s", strerror(-err));
	media_close();
	return err;
}

/* ---- control thread API ---- */

int media_event_fd(void)
{
	return eng.events ? mbox_fd(eng.events) : -1;
}

unsigned media_events_poll(struct media_event *ev, unsigned max)
{
	unsigned n = 0;
	if (!eng.events || !ev)
		return 0;
	mbox_drain_fd(eng.events);
	while (n < max && mbox_take(eng.events, &ev[n]) == 0)
		n++;
	if (n == max && max > 0) {
		/* More may be waiting: keep the fd readable for the next round. */
		uint64_t one = 1;
		ssize_t r = write(mbox_fd(eng.events), &one, sizeof(one));
		(void)r;
	}
	return n;
}

const char *media_advertise_address(void)
{
	return eng.advertise;
}

static struct media_worker *least_loaded(void)
{
	struct media_worker *best = &eng.workers[0];
	unsigned best_load = atomic_load(&best->load);
	for (unsigned i = 1; i < eng.n_workers; i++) {
		unsigned l = atomic_load(&eng.workers[i].load);
		if (l < best_load) {
			best = &eng.workers[i];
			best_load = l;
		}
	}
	return best;
}

static struct media_session *slot_alloc(struct media_worker *w)
{
	for (unsigned i = 0; i < w->n_sess; i++) {
		unsigned idx = (w->alloc_cursor + i) % w->n_sess;
		struct media_session *s = &w->sess[idx];
		if (atomic_load_explicit(&s->in_use, memory_order_acquire) == 0) {
			atomic_store_explicit(&s->in_use, 1, memory_order_relaxed);
			w->alloc_cursor = (idx + 1) % w->n_sess;
			return s;
		}
	}
	return NULL;
}

static int bind_one(uint16_t port, int *out)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int tos = IPTOS_DSCP_EF;
	setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos)); /* best effort */
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr = eng.bind_addr;
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

/* Binds the next free even/odd pair, searching from the cursor with wrap-around. */
static int bind_pair(int *rtp_fd, int *rtcp_fd, uint16_t *port)
{
	unsigned pairs = ((unsigned)eng.port_hi - eng.port_lo) / 2u + 1u;
	if (atomic_load(&pairs_used) >= pairs)
		return -EADDRINUSE;
	uint16_t p = eng.next_port;
	for (unsigned i = 0; i < pairs; i++) {
		uint16_t cur = p;
		int a = -1, b = -1;
		if (pair_test(cur)) {
			p = cur >= eng.port_hi ? eng.port_lo : (uint16_t)(cur + 2u);
			continue;
		}
		int err = bind_one(cur, &a);
		if (!err) {
			err = bind_one((uint16_t)(cur + 1u), &b);
			if (err)
				close(a);
		}
		p = cur >= eng.port_hi ? eng.port_lo : (uint16_t)(cur + 2u);
		if (!err) {
			eng.next_port = p;
			*rtp_fd = a;
			*rtcp_fd = b;
			*port = cur;
			pair_mark(cur, 1);
			return 0;
		}
		if (err != -EADDRINUSE && err != -EACCES)
			return err;
	}
	return -EADDRINUSE;
}

int media_session_create(uint64_t owner, struct media_session *pin_with, struct media_session **out,
                         uint16_t *local_port)
{
	if (!eng.up || !out)
		return -EINVAL;
	struct media_worker *w = pin_with ? pin_with->w : least_loaded();
	struct media_session *s = slot_alloc(w);
	if (!s)
		return -ENOSPC;
	int rtp_fd = -1, rtcp_fd = -1;
	uint16_t port = 0;
	int err = bind_pair(&rtp_fd, &rtcp_fd, &port);
	if (err) {
		atomic_store_explicit(&s->in_use, 0, memory_order_relaxed);
		return err;
	}
	s->owner = owner;
	s->rtp_fd = rtp_fd;
	s->rtcp_fd = rtcp_fd;
	s->port = port;
	memset(&s->ctl_tx, 0, sizeof(s->ctl_tx));
	memset(&s->ctl_rx, 0, sizeof(s->ctl_rx));
	s->ctl_dsp = s->ctl_te = s->ctl_dsp_te = s->ctl_rec = 0;
	s->ctl_codec = s->ctl_dsp_codec = MEDIA_CODEC_NONE;
	s->ctl_peer = NULL;
	CTR_SET(s->st.pkts_in, 0);
	CTR_SET(s->st.pkts_out, 0);
	CTR_SET(s->st.bytes_in, 0);
	CTR_SET(s->st.bytes_out, 0);
	CTR_SET(s->st.pkts_dropped, 0);
	CTR_SET(s->st.lost, 0);
	CTR_SET(s->st.jitter_ms, 0);
	CTR_SET(s->st.remote_lost, 0);
	CTR_SET(s->st.remote_jitter_ms, 0);
	CTR_SET(s->st.rtcp_in, 0);
	CTR_SET(s->st.rtcp_out, 0);
	CTR_SET(s->st.dtmf_events, 0);
	atomic_fetch_add(&w->load, 1);
	struct media_cmd c;
	cmd_init(&c, CMD_ADD, s);
	err = post_cmd(w, &c, 0);
	if (err) {
		close(rtp_fd);
		close(rtcp_fd);
		pair_mark(port, 0);
		s->rtp_fd = s->rtcp_fd = -1;
		atomic_fetch_sub(&w->load, 1);
		atomic_store_explicit(&s->in_use, 0, memory_order_relaxed);
		return err;
	}
	metric_add(eng.m_sessions, 1);
	*out = s;
	if (local_port)
		*local_port = port;
	return 0;
}

static int srtp_changed(const struct media_srtp_params *old, const struct media_srtp_params *nw)
{
	if (old->suite != nw->suite)
		return 1;
	return nw->suite != MEDIA_SRTP_NONE &&
	       memcmp(old->key, nw->key, media_srtp_key_len(nw->suite)) != 0;
}

static int params_valid(const struct media_stream_params *p)
{
	if (p->remote_rtp.sin_port && p->remote_rtp.sin_family != AF_INET)
		return 0;
	if (!p->rtcp_mux && p->remote_rtcp.sin_port && p->remote_rtcp.sin_family != AF_INET)
		return 0;
	if ((unsigned)p->codec >= MEDIA_CODEC_COUNT)
		return 0;
	if (p->pt_audio > 127 || p->pt_dtmf < -1 || p->pt_dtmf > 127 || p->pt_cn < -1 ||
	    p->pt_cn > 127)
		return 0;
	if (p->srtp_tx.suite != MEDIA_SRTP_NONE && media_srtp_key_len(p->srtp_tx.suite) == 0)
		return 0;
	if (p->srtp_rx.suite != MEDIA_SRTP_NONE && media_srtp_key_len(p->srtp_rx.suite) == 0)
		return 0;
	return 1;
}

static int is_g711(enum media_codec c)
{
	return c == MEDIA_CODEC_PCMU || c == MEDIA_CODEC_PCMA;
}

/* Whether a bridge of a and b needs audio processing rather than relay: different
 * codecs other than the two G.711 laws (converted in place), DTMF that must change form
 * (telephone-event on one leg only), or a leg that already is a dsp leg. */
static int need_dsp(const struct media_session *a, const struct media_session *b)
{
	if (a->ctl_dsp || b->ctl_dsp)
		return 1;
	if (a->ctl_codec == MEDIA_CODEC_NONE || b->ctl_codec == MEDIA_CODEC_NONE)
		return 0;
	if (a->ctl_codec != b->ctl_codec && !(is_g711(a->ctl_codec) && is_g711(b->ctl_codec)))
		return 1;
	return a->ctl_te != b->ctl_te;
}

/* Gives a dsp leg the codec part of its current codec when that changed. */
static int ctl_dsp_sync(struct media_session *s)
{
	if (!s->ctl_dsp || s->ctl_codec == MEDIA_CODEC_NONE ||
	    (s->ctl_codec == s->ctl_dsp_codec && s->ctl_te == s->ctl_dsp_te))
		return 0;
	struct media_cmd c;
	cmd_init(&c, CMD_DSP_CODEC, s);
	c.has_te = s->ctl_te;
	int err = media_dsp_codec_create(&c.dk, s->ctl_codec);
	if (err)
		return err;
	err = post_cmd(s->w, &c, 1);
	if (err) {
		media_dsp_codec_destroy(c.dk);
		return err;
	}
	s->ctl_dsp_codec = s->ctl_codec;
	s->ctl_dsp_te = s->ctl_te;
	return 0;
}

/* Makes s a dsp leg (once; it stays one). */
static int ctl_dsp_ensure(struct media_session *s)
{
	if (!s->ctl_dsp) {
		struct media_cmd c;
		cmd_init(&c, CMD_DSP, s);
		c.dsp = mem_zalloc(sizeof(*c.dsp));
		if (!c.dsp)
			return -ENOMEM;
		media_rfc4733_tx_init(&c.dsp->tx4733);
		int err = post_cmd(s->w, &c, 1);
		if (err) {
			mem_free(c.dsp);
			return err;
		}
		s->ctl_dsp = 1;
		s->ctl_dsp_codec = MEDIA_CODEC_NONE;
	}
	return ctl_dsp_sync(s);
}

/* Makes s and the leg it is bridged to dsp legs. */
static int ctl_dsp_pair(struct media_session *s)
{
	int err = ctl_dsp_ensure(s);
	if (!err && s->ctl_peer)
		err = ctl_dsp_ensure(s->ctl_peer);
	return err;
}

int media_session_update(struct media_session *s, const struct media_stream_params *p)
{
	struct media_cmd c;
	int err = 0;
	if (!s || !p || !params_valid(p))
		return -EINVAL;
	memset(&c, 0, sizeof(c));
	c.type = CMD_UPDATE;
	c.s = s;
	c.p = *p;
	c.new_rx = srtp_changed(&s->ctl_rx, &p->srtp_rx);
	c.new_tx = srtp_changed(&s->ctl_tx, &p->srtp_tx);
	if (c.new_rx && p->srtp_rx.suite != MEDIA_SRTP_NONE) {
		err = media_srtp_create(&c.rx, p->srtp_rx.suite, p->srtp_rx.key, 0);
		if (err)
			goto out;
	}
	if (c.new_tx && p->srtp_tx.suite != MEDIA_SRTP_NONE) {
		err = media_srtp_create(&c.tx, p->srtp_tx.suite, p->srtp_tx.key, 1);
		if (err)
			goto out;
	}
	explicit_bzero(c.p.srtp_rx.key, sizeof(c.p.srtp_rx.key));
	explicit_bzero(c.p.srtp_tx.key, sizeof(c.p.srtp_tx.key));
	err = post_cmd(s->w, &c, 0);
	if (err)
		goto out;
	if (c.new_rx)
		s->ctl_rx = p->srtp_rx;
	if (c.new_tx)
		s->ctl_tx = p->srtp_tx;
	s->ctl_codec = p->codec;
	s->ctl_te = p->pt_dtmf >= 0;
	if (s->ctl_dsp)
		return ctl_dsp_sync(s);
	if (s->ctl_peer && need_dsp(s, s->ctl_peer))
		return ctl_dsp_pair(s);
	return 0;
out:
	media_srtp_destroy(c.rx);
	media_srtp_destroy(c.tx);
	return err;
}

int media_session_bridge(struct media_session *a, struct media_session *b)
{
	if (!a || a == b || (b && b->w != a->w))
		return -EINVAL;
	if (b && need_dsp(a, b)) {
		int err = ctl_dsp_ensure(a);
		if (!err)
			err = ctl_dsp_ensure(b);
		if (err)
			return err;
	}
	struct media_cmd c;
	cmd_init(&c, CMD_BRIDGE, a);
	c.peer = b;
	int err = post_cmd(a->w, &c, 0);
	if (err)
		return err;
	if (a->ctl_peer && a->ctl_peer->ctl_peer == a)
		a->ctl_peer->ctl_peer = NULL;
	if (b && b->ctl_peer && b->ctl_peer->ctl_peer == b)
		b->ctl_peer->ctl_peer = NULL;
	a->ctl_peer = b;
	if (b)
		b->ctl_peer = a;
	return 0;
}

int media_session_tone(struct media_session *s, enum media_tone tone)
{
	if (!s || (unsigned)tone > MEDIA_TONE_RINGBACK_MX)
		return -EINVAL;
	if (tone != MEDIA_TONE_NONE && !is_g711(s->ctl_codec) && s->ctl_codec != MEDIA_CODEC_NONE) {
		int err = ctl_dsp_pair(s); /* tones of other codecs are encoded by the dsp */
		if (err)
			return err;
	}
	struct media_cmd c;
	cmd_init(&c, CMD_TONE, s);
	c.tone = tone;
	return post_cmd(s->w, &c, 0);
}

void media_session_stats(const struct media_session *s, struct media_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!s)
		return;
	out->pkts_in = atomic_load_explicit(&s->st.pkts_in, memory_order_relaxed);
	out->pkts_out = atomic_load_explicit(&s->st.pkts_out, memory_order_relaxed);
	out->bytes_in = atomic_load_explicit(&s->st.bytes_in, memory_order_relaxed);
	out->bytes_out = atomic_load_explicit(&s->st.bytes_out, memory_order_relaxed);
	out->pkts_dropped = atomic_load_explicit(&s->st.pkts_dropped, memory_order_relaxed);
	out->lost = atomic_load_explicit(&s->st.lost, memory_order_relaxed);
	out->jitter_ms = atomic_load_explicit(&s->st.jitter_ms, memory_order_relaxed);
	out->remote_lost = atomic_load_explicit(&s->st.remote_lost, memory_order_relaxed);
	out->remote_jitter_ms = atomic_load_explicit(&s->st.remote_jitter_ms, memory_order_relaxed);
	out->rtcp_in = atomic_load_explicit(&s->st.rtcp_in, memory_order_relaxed);
	out->rtcp_out = atomic_load_explicit(&s->st.rtcp_out, memory_order_relaxed);
	out->dtmf_events = atomic_load_explicit(&s->st.dtmf_events, memory_order_relaxed);
}

unsigned media_session_worker(const struct media_session *s)
{
	return s ? s->w->idx : 0;
}

unsigned media_worker_count(void)
{
	return eng.workers ? eng.n_workers : 0;
}

/* Posts CMD_GUEST and waits (at most CMD_RETRY_MS) for the worker's answer. */
static int guest_cmd(unsigned worker, int fd, media_guest_cb cb, void *arg)
{
	if (!eng.workers || worker >= eng.n_workers)
		return cb ? -EINVAL : 0;
	struct media_worker *w = &eng.workers[worker];
	if (!w->thread_started)
		return cb ? -EINVAL : 0;
	struct media_cmd c;
	memset(&c, 0, sizeof(c));
	c.type = CMD_GUEST;
	c.guest_cb = cb;
	c.guest_arg = arg;
	c.guest_fd = fd;
	atomic_store(&w->guest_ack, 0);
	int rc = post_cmd(w, &c, 1);
	if (rc)
		return rc;
	for (unsigned waited = 0; waited < CMD_RETRY_MS; waited++) {
		if ((rc = atomic_load(&w->guest_ack)))
			return rc > 0 ? 0 : rc;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	log_err(MOD, "worker %u: no answer to a guest %s in %u ms", worker,
	        cb ? "request" : "removal", CMD_RETRY_MS);
	return -ETIMEDOUT;
}

int media_worker_guest_add(unsigned worker, int fd, media_guest_cb cb, void *arg)
{
	if (!cb || fd < 0)
		return -EINVAL;
	if (eng.workers && worker < eng.n_workers && eng.workers[worker].guest_given)
		return -EBUSY;
	int rc = guest_cmd(worker, fd, cb, arg);
	if (!rc)
		eng.workers[worker].guest_given = 1;
	return rc;
}

int media_worker_guest_remove(unsigned worker)
{
	int rc = guest_cmd(worker, -1, NULL, NULL);
	if (!rc && eng.workers && worker < eng.n_workers)
		eng.workers[worker].guest_given = 0;
	return rc;
}

void media_session_destroy(struct media_session *s)
{
	if (!s)
		return;
	struct media_cmd c;
	explicit_bzero(&s->ctl_tx, sizeof(s->ctl_tx));
	explicit_bzero(&s->ctl_rx, sizeof(s->ctl_rx));
	if (s->ctl_peer && s->ctl_peer->ctl_peer == s)
		s->ctl_peer->ctl_peer = NULL;
	s->ctl_peer = NULL;
	memset(&c, 0, sizeof(c));
	c.type = CMD_DESTROY;
	c.s = s;
	if (post_cmd(s->w, &c, 1) != 0)
		log_err(MOD, "worker %u: command queue full, session %u leaked", s->w->idx, s->idx);
}

/* ---- control thread API: dsp features ---- */

static int post_dsp_cmd(struct media_session *s, struct media_cmd *c)
{
	int err = post_cmd(s->w, c, 1);
	if (err)
		cmd_discard(c);
	return err;
}

int media_session_dtmf(struct media_session *s, char digit, unsigned duration_ms)
{
	if (!s || !strchr("0123456789*#ABCD", digit) || !digit || duration_ms > 10000)
		return -EINVAL;
	int err = ctl_dsp_pair(s);
	if (err)
		return err;
	struct media_cmd c;
	cmd_init(&c, CMD_DTMF, s);
	c.digit = digit;
	c.dur_ms = duration_ms ? duration_ms : 100u;
	return post_dsp_cmd(s, &c);
}

int media_session_play(struct media_session *s, struct media_prompt *p, int loop, uint32_t id)
{
	if (!s)
		return -EINVAL;
	struct media_cmd c;
	cmd_init(&c, CMD_PLAY, s);
	c.loop = loop;
	c.id = id;
	if (p) {
		if (s->ctl_codec == MEDIA_CODEC_NONE)
			return -EINVAL;
		int err = ctl_dsp_pair(s);
		if (!err)
			err = media_prompt_prepare(p, s->ctl_codec);
		if (err)
			return err;
		c.prompt = media_prompt_ref(p);
	} else if (!s->ctl_dsp) {
		return 0;
	}
	return post_dsp_cmd(s, &c);
}

int media_session_record(struct media_session *s, const char *path)
{
	const struct media_codec_desc *cd = s ? media_codec_desc(s->ctl_codec) : NULL;
	if (!cd || !path)
		return -EINVAL;
	if (s->ctl_rec)
		return -EBUSY;
	int err = ctl_dsp_pair(s);
	if (err)
		return err;
	struct media_cmd c;
	cmd_init(&c, CMD_REC, s);
	err = media_recorder_create(&c.rec, path, cd->pcm_rate, s->owner);
	if (err)
		return err;
	err = post_dsp_cmd(s, &c);
	if (!err)
		s->ctl_rec = 1;
	return err;
}

int media_session_record_stop(struct media_session *s)
{
	if (!s || !s->ctl_rec)
		return -EINVAL;
	struct media_cmd c;
	cmd_init(&c, CMD_REC, s);
	s->ctl_rec = 0;
	return post_dsp_cmd(s, &c);
}

int media_session_amd(struct media_session *s)
{
	if (!s || s->ctl_codec == MEDIA_CODEC_NONE)
		return -EINVAL;
	int err = ctl_dsp_pair(s);
	if (err)
		return err;
	struct media_cmd c;
	cmd_init(&c, CMD_AMD, s);
	struct media_amd_config ac;
	media_amd_config_default(&ac);
	ac.end_wait_ms = 20000; /* a machine's greeting: MEDIA_EV_AMD_END follows */
	err = media_amd_create(&c.amd, &ac);
	if (err)
		return err;
	return post_dsp_cmd(s, &c);
}

int media_ai_attach(struct media_session *s, enum media_ai_format f, media_ai_notify_cb cb,
                    void *arg, struct media_ai_port **out)
{
	const struct media_codec_desc *cd = s ? media_codec_desc(s->ctl_codec) : NULL;
	if (!cd || !out || !media_ai_frame_bytes(f))
		return -EINVAL;
	if (f == MEDIA_AI_MULAW_8K && cd->pcm_rate != 8000u)
		return -EINVAL;
	int err = ctl_dsp_ensure(s);
	if (err)
		return err;
	if (s->ctl_peer) {
		s->ctl_peer->ctl_peer = NULL; /* the worker unbridges when it attaches */
		s->ctl_peer = NULL;
	}
	struct media_cmd c;
	cmd_init(&c, CMD_AI, s);
	err = media_ai_port_create(&c.ai, f, cd->pcm_rate, cb, arg);
	if (err)
		return err;
	struct media_ai_port *port = c.ai;
	media_ai_port_ref(port); /* the caller's reference, beside the worker's */
	err = post_dsp_cmd(s, &c);
	if (err) {
		media_ai_port_release(port);
		return err;
	}
	*out = port;
	return 0;
}

int media_ai_detach(struct media_session *s)
{
	if (!s || !s->ctl_dsp)
		return -EINVAL;
	struct media_cmd c;
	cmd_init(&c, CMD_AI, s);
	return post_dsp_cmd(s, &c);
}
