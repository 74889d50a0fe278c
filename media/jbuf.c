/* Inbound RTP jitter buffer of a caller leg: fixed slots, reordering, loss, adaptive hold. */
#include "media/buf_int.h"

#include "core/mem.h"

#include <errno.h>
#include <string.h>

/*
 * Sequence numbers are extended to 32 bits (starting at 2^16 + seq so a reordered packet
 * just before the first one stays positive) and timestamps to 64 bits (2^32 + ts), each
 * relative to the highest packet seen. A packet with extended seq e lives in slot
 * e % nslots, so the buffer covers the window (max - nslots, max]; a newer packet pushes
 * older ones out ("full: drop oldest").
 *
 * Play clock: base_us/base_ts are set when a packet is released after a hold (start, restart,
 * pause); then play(ts) = base_us + (ts - base_ts) / rate, and the expected packet (or the
 * missing one) is due when play(ts) < now + LOOKAHEAD. The look-ahead of 3/4 of a frame makes
 * a tick that is a few ms early or late see the same packet, and lets 10/30/60 ms packets be
 * fetched when the caller's FIFO runs short (see buf_int.h).
 *
 * Pause: when the expected packet is due, missing, and nothing later is buffered, get says
 * EMPTY and the stream is idle (DTX, a burst loss, or a stall). When the next packet arrives
 * with its slot on the play clock still at least target ahead, play continues on that clock;
 * when it is late for its slot it is held like a new start (so the delay grows to the
 * target after a stall). Missing packets whose slot is over by then are skipped silently.
 *
 * Target: floor + 3 x J, J the RFC 3550 A.8 interarrival jitter (in µs), at most the ceiling.
 * J is a smoothed mean deviation of transit differences; 3 x J covers nearly all arrivals of
 * normally distributed delay, and a rarer late packet is concealed instead (LOST) or dropped
 * as -EALREADY when it arrives.
 *
 * Latency trim: every SHRINK_WINDOW released packets, if each of them waited at least
 * target + 20 ms + one packet after arriving, whole packets of that excess are dropped (the
 * buffer has more delay than the jitter needs, e.g. after a burst that followed a stall).
 */

#define FRAME_US      20000
#define LOOKAHEAD_US  15000
#define MAX_DROPOUT   3000
#define MAX_MISORDER  100
#define MAX_PTIME_US  120000
#define SHRINK_WINDOW 50

struct jb_slot {
	uint32_t ext; /* extended seq; valid when used */
	int used;
	uint64_t ts; /* extended ts */
	uint64_t arrival_us;
	size_t len;
	uint8_t *data;
};

struct media_jbuf {
	unsigned rate;
	unsigned nslots;
	size_t max_payload;
	int64_t floor_us, ceiling_us;
	struct jb_slot *slots;
	uint8_t *store; /* nslots * max_payload */
	uint8_t *out;   /* copy of the released payload */
	uint8_t *out_next;

	/* a far-jumped packet kept aside: the stream restarts if the next one follows it */
	int have_cand;
	uint16_t cand_seq;
	uint32_t cand_ts;
	uint64_t cand_arrival;
	size_t cand_len;
	uint8_t *cand;

	int started;
	uint32_t max_ext;
	uint64_t max_ts;
	unsigned count;
	int released;      /* next_ext/next_ts are valid */
	uint32_t next_ext; /* expected next */
	uint64_t next_ts;
	int holding; /* waiting for the target before releasing */
	uint64_t hold_since_us;
	int resync; /* release the oldest packet now and re-anchor (after an overflow) */
	int idle;
	uint64_t base_us, base_ts;
	uint32_t ptime_ts;  /* last packet duration seen */
	int last_rel_valid; /* last_rel_ts is the packet just before next_ext */
	uint64_t last_rel_ts;

	int have_transit;
	int64_t last_transit_us;
	int64_t jitter_q4; /* µs * 16 */

	unsigned win_n;
	int64_t win_min_wait;

	struct media_jbuf_stats st;
};

static int64_t ts_to_us(const struct media_jbuf *j, int64_t d)
{
	return d * 1000000 / (int64_t)j->rate;
}

static int64_t target_us(const struct media_jbuf *j)
{
	int64_t t = j->floor_us + 3 * (j->jitter_q4 / 16);
	return t > j->ceiling_us ? j->ceiling_us : t;
}

int media_jbuf_create(struct media_jbuf **out, unsigned clock_rate, const struct media_jbuf_opts *o)
{
	struct media_jbuf_opts d = {0};
	if (o)
		d = *o;
	if (!d.slots)
		d.slots = 32;
	if (!d.max_payload)
		d.max_payload = 1500;
	if (!d.ceiling_ms)
		d.ceiling_ms = 100;
	if (!d.floor_ms)
		d.floor_ms = 20;
	else if (d.floor_ms == MEDIA_JBUF_NO_FLOOR)
		d.floor_ms = 0;
	if (!out || clock_rate < 1000 || clock_rate > 192000 || d.slots < 2 || d.slots > 1024 ||
	    d.max_payload > 65536 || d.floor_ms > d.ceiling_ms || d.ceiling_ms > 10000)
		return -EINVAL;

	int err = -ENOMEM;
	struct media_jbuf *j = mem_zalloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->rate = clock_rate;
	j->nslots = d.slots;
	j->max_payload = d.max_payload;
	j->floor_us = (int64_t)d.floor_ms * 1000;
	j->ceiling_us = (int64_t)d.ceiling_ms * 1000;
	j->ptime_ts = clock_rate / 50;
	j->slots = mem_zalloc(sizeof(*j->slots) * d.slots);
	if (!j->slots)
		goto out;
	/* payload store + out + out_next + cand, one block */
	j->store = mem_alloc((size_t)(d.slots + 3) * d.max_payload);
	if (!j->store)
		goto out;
	for (unsigned i = 0; i < d.slots; i++)
		j->slots[i].data = j->store + (size_t)i * d.max_payload;
	j->out = j->store + (size_t)d.slots * d.max_payload;
	j->out_next = j->out + d.max_payload;
	j->cand = j->out_next + d.max_payload;
	*out = j;
	return 0;
out:
	media_jbuf_destroy(j);
	return err;
}

void media_jbuf_destroy(struct media_jbuf *j)
{
	if (!j)
		return;
	mem_free(j->store);
	mem_free(j->slots);
	mem_free(j);
}

static void clear_slots(struct media_jbuf *j)
{
	for (unsigned i = 0; i < j->nslots; i++)
		j->slots[i].used = 0;
	j->count = 0;
}

static void stream_start(struct media_jbuf *j, uint16_t seq, uint32_t ts, uint64_t now_us)
{
	clear_slots(j);
	j->started = 1;
	j->max_ext = 0x10000u + seq;
	j->max_ts = 0x100000000ull + ts;
	j->released = 0;
	j->holding = 1;
	j->hold_since_us = now_us;
	j->resync = 0;
	j->idle = 0;
	j->have_transit = 0;
	j->win_n = 0;
}

void media_jbuf_reset(struct media_jbuf *j)
{
	clear_slots(j);
	j->started = 0;
	j->have_cand = 0;
	j->st.restarts++;
}

static struct jb_slot *find(struct media_jbuf *j, uint32_t ext)
{
	struct jb_slot *s = &j->slots[ext % j->nslots];
	return s->used && s->ext == ext ? s : NULL;
}

/* Smallest stored extended seq >= from (the buffer is not empty). */
static struct jb_slot *oldest(struct media_jbuf *j, uint32_t from)
{
	for (uint32_t e = from; e <= j->max_ext; e++) {
		struct jb_slot *s = find(j, e);
		if (s)
			return s;
	}
	return NULL;
}

static void drop_slot(struct media_jbuf *j, struct jb_slot *s)
{
	s->used = 0;
	j->count--;
}

/* Duration of a stored packet: the ts step to the next seq if stored, else the last seen. */
static uint32_t duration(struct media_jbuf *j, const struct jb_slot *s)
{
	const struct jb_slot *n = find(j, s->ext + 1);
	if (n && n->ts > s->ts && ts_to_us(j, (int64_t)(n->ts - s->ts)) <= MAX_PTIME_US)
		return (uint32_t)(n->ts - s->ts);
	return j->ptime_ts;
}

static void learn_ptime(struct media_jbuf *j, const struct jb_slot *a, const struct jb_slot *b)
{
	if (a && b && b->ts > a->ts && ts_to_us(j, (int64_t)(b->ts - a->ts)) <= MAX_PTIME_US)
		j->ptime_ts = (uint32_t)(b->ts - a->ts);
}

/* Time (CLOCK_MONOTONIC µs) at which audio with extended timestamp ts is due. */
static int64_t play_us(const struct media_jbuf *j, uint64_t ts)
{
	return (int64_t)j->base_us + ts_to_us(j, (int64_t)(ts - j->base_ts));
}

static int store(struct media_jbuf *j, uint16_t seq, uint32_t ts, const uint8_t *payload,
                 size_t len, uint64_t now_us)
{
	int16_t delta = (int16_t)(uint16_t)(seq - (uint16_t)j->max_ext);
	uint32_t ext = j->max_ext + (uint32_t)(int32_t)delta;
	uint64_t ext_ts = j->max_ts + (uint64_t)(int64_t)(int32_t)(ts - (uint32_t)j->max_ts);

	if ((j->released && ext < j->next_ext) || find(j, ext)) {
		j->st.duplicates++;
		return -EALREADY;
	}
	if (ext > j->max_ext) {
		/* the window moves: packets that fall out of it are dropped (ext >= 2^16) */
		uint32_t low = ext - j->nslots + 1, dropped_ahead = 0;
		for (unsigned i = 0; i < j->nslots; i++) {
			struct jb_slot *s = &j->slots[i];
			if (s->used && s->ext < low) {
				if (j->released && s->ext >= j->next_ext)
					dropped_ahead++;
				drop_slot(j, s);
				j->st.dropped++;
			}
		}
		if (j->released && j->next_ext < low) {
			j->st.skipped += low - j->next_ext - dropped_ahead;
			j->next_ext = low;
			j->resync = 1;
			j->last_rel_valid = 0;
		}
		j->max_ext = ext;
		j->max_ts = ext_ts;
	} else if (j->max_ext - ext >= j->nslots) {
		j->st.duplicates++; /* too old for the window */
		return -EALREADY;
	}

	struct jb_slot *s = &j->slots[ext % j->nslots];
	s->used = 1;
	s->ext = ext;
	s->ts = ext_ts;
	s->arrival_us = now_us;
	s->len = len;
	if (len)
		memcpy(s->data, payload, len);
	j->count++;
	j->st.received++;
	learn_ptime(j, find(j, ext - 1), s);
	learn_ptime(j, s, find(j, ext + 1));
	if (j->released && j->last_rel_valid && ext == j->next_ext && ext_ts > j->last_rel_ts &&
	    ts_to_us(j, (int64_t)(ext_ts - j->last_rel_ts)) <= MAX_PTIME_US)
		j->ptime_ts =
		    (uint32_t)(ext_ts - j->last_rel_ts); /* long packets: never side by side */

	/* RFC 3550 A.8, in µs */
	int64_t transit = (int64_t)now_us - ts_to_us(j, (int64_t)ext_ts);
	if (j->have_transit) {
		int64_t d = transit - j->last_transit_us;
		if (d < 0)
			d = -d;
		j->jitter_q4 += d - (j->jitter_q4 + 8) / 16;
	}
	j->have_transit = 1;
	j->last_transit_us = transit;

	if (j->idle) {
		/* first packet after a pause (DTX, a burst loss, a stall): if its slot on the play
		 * clock leaves it at least the target, play on that clock (nothing changes for the
		 * caller); if it is late (or absurdly early), hold it like a new start */
		j->idle = 0;
		int64_t ahead = play_us(j, ext_ts) - (int64_t)now_us;
		int64_t t = target_us(j);
		if (ahead < t || ahead > t + j->ceiling_us + FRAME_US) {
			j->holding = 1;
			j->hold_since_us = now_us;
		}
	}
	return 0;
}

int media_jbuf_put(struct media_jbuf *j, uint16_t seq, uint32_t ts, const uint8_t *payload,
                   size_t len, uint64_t now_us)
{
	if (len > j->max_payload)
		return -EMSGSIZE;
	if (!j->started) {
		stream_start(j, seq, ts, now_us);
		return store(j, seq, ts, payload, len, now_us);
	}
	int16_t delta = (int16_t)(uint16_t)(seq - (uint16_t)j->max_ext);
	if (delta >= MAX_DROPOUT || delta < -MAX_MISORDER) {
		if (j->have_cand && seq == (uint16_t)(j->cand_seq + 1)) {
			/* two in a row: the stream restarted (new SSRC, sender reset) */
			j->st.dropped += j->count;
			j->st.restarts++;
			j->have_cand = 0;
			stream_start(j, j->cand_seq, j->cand_ts, j->cand_arrival);
			store(j, j->cand_seq, j->cand_ts, j->cand, j->cand_len, j->cand_arrival);
			return store(j, seq, ts, payload, len, now_us);
		}
		j->have_cand = 1;
		j->cand_seq = seq;
		j->cand_ts = ts;
		j->cand_arrival = now_us;
		j->cand_len = len;
		if (len)
			memcpy(j->cand, payload, len);
		return -EAGAIN;
	}
	j->have_cand = 0;
	return store(j, seq, ts, payload, len, now_us);
}

/* Releases the oldest stored packet now and anchors the play clock on it. */
static void anchor_oldest(struct media_jbuf *j, uint64_t now_us)
{
	struct jb_slot *s = oldest(j, j->released ? j->next_ext : j->max_ext - j->nslots + 1);
	if (j->released && s->ext > j->next_ext)
		j->st.skipped += s->ext - j->next_ext;
	j->next_ext = s->ext;
	j->next_ts = s->ts;
	j->base_us = now_us;
	j->base_ts = s->ts;
	j->released = 1;
	j->holding = 0;
	j->resync = 0;
	j->last_rel_valid = 0;
}

/* Duration of the missing expected packet: the timestamp span to the next stored packet
 * shared by the missing ones, else the last packet duration seen. Needs count > 0. */
static uint32_t missing_dur(struct media_jbuf *j)
{
	struct jb_slot *n = oldest(j, j->next_ext + 1);
	uint32_t gap = n->ext - j->next_ext;
	if (n->ts > j->next_ts) {
		uint64_t d = (n->ts - j->next_ts) / gap;
		if (d > 0 && ts_to_us(j, (int64_t)d) <= MAX_PTIME_US)
			return (uint32_t)d;
	}
	return j->ptime_ts;
}

/* Latency trim, see the top of the file. */
static void shrink_check(struct media_jbuf *j, int64_t waited_us)
{
	if (j->win_n == 0 || waited_us < j->win_min_wait)
		j->win_min_wait = waited_us;
	if (++j->win_n < SHRINK_WINDOW)
		return;
	j->win_n = 0;
	int64_t ptime_us = ts_to_us(j, j->ptime_ts);
	int64_t excess = j->win_min_wait - target_us(j) - FRAME_US;
	while (excess >= ptime_us && ptime_us > 0) {
		struct jb_slot *s = find(j, j->next_ext);
		if (!s || j->count < 2)
			break;
		uint32_t dur = duration(j, s);
		drop_slot(j, s);
		j->st.dropped++;
		j->next_ext++;
		j->next_ts = s->ts + dur;
		j->last_rel_ts = s->ts;
		j->base_us -= (uint64_t)ts_to_us(j, dur);
		excess -= ts_to_us(j, dur);
	}
}

/* Hands out stored packet s, the expected one. */
static enum media_jbuf_res release(struct media_jbuf *j, struct jb_slot *s, uint64_t now_us,
                                   struct media_jbuf_frame *f)
{
	uint32_t dur = duration(j, s);
	memcpy(j->out, s->data, s->len);
	f->payload = j->out;
	f->len = s->len;
	f->seq = (uint16_t)s->ext;
	f->ts = (uint32_t)s->ts;
	f->dur_ts = dur;
	int64_t waited = (int64_t)now_us - (int64_t)s->arrival_us;
	drop_slot(j, s);
	j->next_ext++;
	j->next_ts = s->ts + dur;
	j->last_rel_valid = 1;
	j->last_rel_ts = s->ts;
	j->st.packets++;
	shrink_check(j, waited);
	return MEDIA_JBUF_PACKET;
}

enum media_jbuf_res media_jbuf_get_next(struct media_jbuf *j, uint64_t now_us,
                                        struct media_jbuf_frame *f)
{
	memset(f, 0, sizeof(*f));
	if (!j->started || j->count == 0)
		return MEDIA_JBUF_EMPTY;
	if (j->holding || j->resync)
		anchor_oldest(j, now_us); /* no hold: the caller wants it now */
	struct jb_slot *s = find(j, j->next_ext);
	if (!s || play_us(j, s->ts) - (int64_t)now_us > j->ceiling_us + FRAME_US)
		return MEDIA_JBUF_EMPTY; /* missing, or a timestamp jump: media_jbuf_get decides */
	enum media_jbuf_res r = release(j, s, now_us, f);
	j->st.early++;
	return r;
}

int media_jbuf_next_ready(struct media_jbuf *j, uint64_t now_us)
{
	if (!j->started || j->count == 0)
		return 0;
	if (j->holding || j->resync)
		return 1; /* get_next releases the oldest */
	struct jb_slot *s = find(j, j->next_ext);
	return s && play_us(j, s->ts) - (int64_t)now_us <= j->ceiling_us + FRAME_US;
}

enum media_jbuf_res media_jbuf_get(struct media_jbuf *j, uint64_t now_us,
                                   struct media_jbuf_frame *f)
{
	memset(f, 0, sizeof(*f));
	if (!j->started || j->count == 0) {
		if (j->started && j->released && !j->holding &&
		    play_us(j, j->next_ts) < (int64_t)(now_us + LOOKAHEAD_US))
			j->idle = 1; /* the expected packet is due and nothing is here */
		return MEDIA_JBUF_EMPTY;
	}
	if (j->holding) {
		if (now_us < j->hold_since_us + (uint64_t)target_us(j))
			return MEDIA_JBUF_EMPTY;
		anchor_oldest(j, now_us);
	} else if (j->resync) {
		anchor_oldest(j, now_us);
	}

	/* missing packets whose whole slot is already over (we said EMPTY then) are passed */
	struct jb_slot *s;
	for (;;) {
		s = find(j, j->next_ext);
		if (s)
			break;
		uint32_t dur = missing_dur(j);
		if (play_us(j, j->next_ts) + ts_to_us(j, dur) > (int64_t)now_us)
			break;
		j->st.skipped++;
		j->next_ext++;
		j->next_ts += dur;
		j->last_rel_valid = 0;
	}
	uint64_t ts = s ? s->ts : j->next_ts;
	int64_t due_in = play_us(j, ts) - (int64_t)now_us;
	if (s && due_in > j->ceiling_us + FRAME_US) {
		/* a timestamp discontinuity: never wait for it, play it now */
		j->base_us = now_us;
		j->base_ts = s->ts;
		due_in = 0;
	}
	if (due_in >= LOOKAHEAD_US)
		return MEDIA_JBUF_EMPTY; /* not due yet (timestamp gap, or early) */

	if (s)
		return release(j, s, now_us, f);

	/* missing, and a later packet is buffered: lost */
	struct jb_slot *n = oldest(j, j->next_ext + 1);
	uint32_t dur = missing_dur(j);
	f->seq = (uint16_t)j->next_ext;
	f->ts = (uint32_t)j->next_ts;
	f->dur_ts = dur;
	if (n->ext == j->next_ext + 1) {
		memcpy(j->out_next, n->data, n->len);
		f->next = j->out_next;
		f->next_len = n->len;
	}
	j->next_ext++;
	j->next_ts += dur;
	j->last_rel_valid = 0;
	j->st.lost++;
	return MEDIA_JBUF_LOST;
}

void media_jbuf_stats(const struct media_jbuf *j, struct media_jbuf_stats *st)
{
	*st = j->st;
	st->jitter_us = (uint32_t)(j->jitter_q4 / 16);
	st->target_ms = (uint32_t)(target_us(j) / 1000);
}
