/* Playout buffer for AI audio: lock-free byte ring from the ai thread, 20 ms frames on the worker
 * tick. */
#include "media/buf_int.h"

#include "core/mem.h"
#include "media/media_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

/*
 * Positions. The producer (ai thread) and the consumer (media worker) share a byte ring with
 * 64-bit free-running positions: wpos (published by the producer) and rpos (published by
 * the consumer); byte p lives at ring[p % cap]. The consumer alone moves rpos: by playing,
 * by dropping the oldest bytes when more than `bound` are queued (overrun), and by applying
 * a flush. The producer refuses bytes only when wpos - rpos would exceed cap (the consumer
 * is stalled); cap = bound + 25 %.
 *
 * Samples. With 2 bytes per sample the stream is a byte stream: byte p of the stream starts
 * a sample when p is even. The consumer only moves rpos to even positions. The producer keeps
 * wpos congruent to the stream position (refused bytes included) by dropping the first byte
 * of the next write when an odd number of bytes was refused.
 *
 * Flush. The producer stores flush_pos (its write position, rounded up to a sample) and then
 * bumps flush_seq (release). The consumer reads flush_seq first (acquire), so the flush_pos
 * it then sees is at least that flush's, and wpos (loaded after) is at least flush_pos - 1.
 *
 * Marks. A ring of MEDIA_PLAYOUT_MARKS entries: the producer fills entries at mark_head and
 * publishes it (release); entries in [mark_tail, mark_head) belong to the consumer, which
 * may write their status. A mark records the write position and the flush count at the time
 * it was made, so a flush drops exactly the marks made before it.
 *
 * Target depth (producer side, published as target_us). For a chunk whose first byte has
 * stream position m (in µs of audio) arriving at time a, its lateness is L = a - m. A frame
 * plays in time if L of every later chunk is at most L_start + delay, where L_start is the
 * lateness of the chunk that (re)started play; restarts happen at chunk boundaries. So the
 * delay needed is the largest RISE of L: max over j of (L_j - min L_i over earlier i). This
 * is kept over the last 2 s of audio (20 buckets of 100 ms of stream time, each with min, max
 * and internal rise of L), so it forgets a spike once 2 s of newer audio have arrived, but a
 * pause between turns does not erase what was learned. Chunks arriving within 2 ms of the
 * previous one are part of the same burst and are not recorded (no restart can fall between
 * them). A rise larger than the ceiling between consecutive bursts is a new talk spurt (the
 * AI was silent): the time base is shifted so it does not count. Early audio (a sentence
 * sent faster than real time) only lowers L and never needs buffering, so it does not raise
 * the target.
 * Why not RFC 3550 smoothing: its J is a mean deviation over packets, here chunks are of any
 * size (79 B to 3 s), so per-chunk weighting is meaningless; J would need a guessed multiple
 * (3 x J over-buffers regular 46 ms pairs and under-buffers a rare spike); and it counts early
 * arrivals as jitter. The windowed rise measures directly what would have avoided an
 * underrun in the last 2 s.
 * target = rise + 20 ms (a frame must be whole at the tick) + 5 ms, clamped to
 * [floor, ceiling]; before 500 ms of audio has been seen it is at least initial_ms.
 *
 * Underrun. A partial frame is played with a linear fade over its last 3 ms, then silence;
 * play resumes (after the target wait) with a 3 ms fade-in. The first start and the start
 * after a flush do not fade in (the audio begins there). An underrun is counted when audio
 * resumes within 1 s of running dry; running dry for longer is the end of an utterance.
 */

#define CACHE_LINE    64
#define FRAME_US      20000
#define MARGIN_US     5000
#define BURST_US      2000
#define BUCKETS       20
#define BUCKET_US     100000
#define WARMUP_US     500000
#define RESUME_GAP_US 1000000
#define FADE_MS       3

enum { MARK_PENDING = 0 };
enum { ST_WAIT = 0, ST_PLAY = 1 };

struct po_mark {
	uint64_t pos; /* write position when made */
	uint32_t id;
	uint32_t flush_seq; /* flushes requested before it was made */
	uint32_t status;    /* MARK_PENDING or a media_playout_mark_status */
};

struct po_bucket {
	uint64_t id; /* stream time / BUCKET_US + 1; 0 = unused */
	int64_t min_l, max_l, rise;
};

struct media_playout {
	/* constant after create */
	uint8_t *ring;
	uint64_t cap;   /* bytes */
	uint64_t bound; /* bytes */
	uint64_t ceiling_bytes;
	unsigned bps;         /* bytes per sample */
	unsigned frame_bytes; /* 160 or 640 */
	unsigned bytes_per_ms;
	unsigned fade_samples;
	uint8_t silence;
	int64_t floor_us, ceiling_us, initial_us;

	char pad0[CACHE_LINE];
	/* producer (ai thread) */
	_Atomic uint64_t wpos;
	_Atomic uint64_t last_write_us;
	_Atomic uint64_t flush_pos;
	_Atomic uint32_t flush_seq;
	_Atomic uint32_t mark_head;
	_Atomic uint32_t target_us;
	_Atomic uint64_t refused_bytes;
	_Atomic uint64_t flushes;
	uint64_t p_w;         /* == wpos */
	uint64_t p_stream;    /* stream bytes offered, refused ones included */
	uint32_t p_flush_seq; /* == flush_seq */
	uint32_t p_mark_head; /* == mark_head */
	/* estimator */
	int e_have_last, e_have_prev;
	uint64_t e_last_us;
	int64_t e_prev_l;
	int64_t e_offset;
	uint64_t e_cur_id;
	struct po_bucket e_b[BUCKETS];

	char pad1[CACHE_LINE];
	/* consumer (media worker) */
	_Atomic uint64_t rpos;
	_Atomic uint32_t mark_tail;
	_Atomic uint32_t depth_us;
	_Atomic uint64_t frames_audio;
	_Atomic uint64_t frames_silence;
	_Atomic uint64_t underruns;
	_Atomic uint64_t overrun_bytes;
	uint64_t c_r;         /* == rpos */
	uint32_t c_flush_seq; /* flushes applied */
	uint32_t c_mark_tail; /* == mark_tail */
	int c_state;
	int c_have_first;
	uint64_t c_first_us; /* first arrival since empty */
	int c_dry;           /* ran dry while playing, not resumed yet */
	uint64_t c_dry_us;
	int c_fade_in;

	char pad2[CACHE_LINE];
	struct po_mark marks[MEDIA_PLAYOUT_MARKS];
};

/* ---- helpers ---- */

/* A counter with one writer: plain load + store, no locked read-modify-write. */
static inline void add_u64(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
	                      memory_order_relaxed);
}

static inline uint64_t align_up(uint64_t v, unsigned a)
{
	return (v + a - 1) / a * a;
}

static void ring_put(struct media_playout *p, uint64_t pos, const uint8_t *src, size_t n)
{
	size_t off = (size_t)(pos % p->cap);
	size_t first = n < p->cap - off ? n : (size_t)(p->cap - off);
	memcpy(p->ring + off, src, first);
	if (n > first)
		memcpy(p->ring, src + first, n - first);
}

static void ring_get(const struct media_playout *p, uint64_t pos, uint8_t *dst, size_t n)
{
	size_t off = (size_t)(pos % p->cap);
	size_t first = n < p->cap - off ? n : (size_t)(p->cap - off);
	memcpy(dst, p->ring + off, first);
	if (n > first)
		memcpy(dst + first, p->ring, n - first);
}

static inline int32_t sample_get(const struct media_playout *p, const uint8_t *b, unsigned i)
{
	if (p->bps == 1)
		return media_g711_ulaw_decode(b[i]);
	return (int16_t)(uint16_t)(b[2 * i] | (unsigned)b[2 * i + 1] << 8);
}

static inline void sample_set(const struct media_playout *p, uint8_t *b, unsigned i, int32_t v)
{
	if (p->bps == 1) {
		b[i] = media_g711_ulaw_encode((int16_t)v);
		return;
	}
	uint16_t u = (uint16_t)(int16_t)v;
	b[2 * i] = (uint8_t)u;
	b[2 * i + 1] = (uint8_t)(u >> 8);
}

/* Gains never reach 0 (the fade ends one step above silence): (k)/(f+1), k = 1..f. */
static void fade_in(const struct media_playout *p, uint8_t *b, unsigned ns)
{
	unsigned f = ns < p->fade_samples ? ns : p->fade_samples;
	for (unsigned i = 0; i < f; i++)
		sample_set(p, b, i, sample_get(p, b, i) * (int32_t)(i + 1) / (int32_t)(f + 1));
}

static void fade_out(const struct media_playout *p, uint8_t *b, unsigned ns)
{
	unsigned f = ns < p->fade_samples ? ns : p->fade_samples;
	for (unsigned i = 0; i < f; i++) {
		unsigned k = ns - f + i;
		sample_set(p, b, k, sample_get(p, b, k) * (int32_t)(f - i) / (int32_t)(f + 1));
	}
}

/* ---- create/destroy ---- */

int media_playout_create(struct media_playout **out, unsigned bytes_per_sample,
                         const struct media_playout_opts *o)
{
	struct media_playout_opts d = {0};
	if (o)
		d = *o;
	if (!d.bound_ms)
		d.bound_ms = 20000;
	if (!d.floor_ms)
		d.floor_ms = 20;
	if (!d.ceiling_ms)
		d.ceiling_ms = 300;
	if (!d.initial_ms)
		d.initial_ms = 80;
	if (!out || (bytes_per_sample != 1 && bytes_per_sample != 2) || d.floor_ms > d.ceiling_ms ||
	    d.ceiling_ms > d.bound_ms || d.bound_ms > 600000)
		return -EINVAL;
	if (d.initial_ms > d.ceiling_ms)
		d.initial_ms = d.ceiling_ms;

	struct media_playout *p = mem_zalloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->bps = bytes_per_sample;
	p->bytes_per_ms = bytes_per_sample == 1 ? 8 : 32;
	p->frame_bytes = 20 * p->bytes_per_ms;
	p->fade_samples = FADE_MS * (bytes_per_sample == 1 ? 8 : 16);
	p->silence = bytes_per_sample == 1 ? 0xff : 0;
	p->bound = (uint64_t)d.bound_ms * p->bytes_per_ms;
	p->cap = p->bound + align_up(p->bound / 4, p->frame_bytes);
	p->ceiling_bytes = (uint64_t)d.ceiling_ms * p->bytes_per_ms;
	p->floor_us = (int64_t)d.floor_ms * 1000;
	p->ceiling_us = (int64_t)d.ceiling_ms * 1000;
	p->initial_us = (int64_t)d.initial_ms * 1000;
	p->ring = mem_alloc((size_t)p->cap);
	if (!p->ring) {
		mem_free(p);
		return -ENOMEM;
	}
	atomic_init(&p->wpos, 0);
	atomic_init(&p->last_write_us, 0);
	atomic_init(&p->flush_pos, 0);
	atomic_init(&p->flush_seq, 0);
	atomic_init(&p->mark_head, 0);
	atomic_init(&p->target_us, (uint32_t)p->initial_us);
	atomic_init(&p->refused_bytes, 0);
	atomic_init(&p->flushes, 0);
	atomic_init(&p->rpos, 0);
	atomic_init(&p->mark_tail, 0);
	atomic_init(&p->depth_us, 0);
	atomic_init(&p->frames_audio, 0);
	atomic_init(&p->frames_silence, 0);
	atomic_init(&p->underruns, 0);
	atomic_init(&p->overrun_bytes, 0);
	p->c_state = ST_WAIT;
	*out = p;
	return 0;
}

void media_playout_destroy(struct media_playout *p)
{
	if (!p)
		return;
	mem_free(p->ring);
	mem_free(p);
}

size_t media_playout_frame_bytes(const struct media_playout *p)
{
	return p->frame_bytes;
}

/* ---- producer ---- */

/* Largest rise of lateness over the buckets, oldest to newest. */
static int64_t est_rise(const struct media_playout *p)
{
	int64_t rise = 0, run_min = 0;
	int have_min = 0;
	for (unsigned k = BUCKETS; k-- > 0;) {
		if (p->e_cur_id < k + 1)
			continue;
		uint64_t id = p->e_cur_id - k;
		const struct po_bucket *b = &p->e_b[id % BUCKETS];
		if (b->id != id)
			continue;
		if (b->rise > rise)
			rise = b->rise;
		if (have_min && b->max_l - run_min > rise)
			rise = b->max_l - run_min;
		if (!have_min || b->min_l < run_min)
			run_min = b->min_l;
		have_min = 1;
	}
	return rise;
}

static void est_update(struct media_playout *p, uint64_t now_us, uint64_t stream_pos)
{
	if (p->e_have_last && now_us >= p->e_last_us && now_us - p->e_last_us <= BURST_US) {
		p->e_last_us = now_us; /* same burst */
		return;
	}
	p->e_have_last = 1;
	p->e_last_us = now_us;

	uint64_t m_us = stream_pos * 1000 / p->bytes_per_ms;
	int64_t l = (int64_t)now_us - (int64_t)m_us - p->e_offset;
	if (p->e_have_prev && l - p->e_prev_l > p->ceiling_us) {
		/* new talk spurt: the AI was silent; shift the base so the pause is not jitter */
		p->e_offset += l - p->e_prev_l;
		l = p->e_prev_l;
	}
	p->e_have_prev = 1;
	p->e_prev_l = l;

	uint64_t id = m_us / BUCKET_US + 1;
	if (id > p->e_cur_id)
		p->e_cur_id = id;
	struct po_bucket *b = &p->e_b[id % BUCKETS];
	if (b->id != id) {
		b->id = id;
		b->min_l = b->max_l = l;
		b->rise = 0;
	} else {
		if (l - b->min_l > b->rise)
			b->rise = l - b->min_l;
		if (l < b->min_l)
			b->min_l = l;
		if (l > b->max_l)
			b->max_l = l;
	}

	int64_t t = est_rise(p) + FRAME_US + MARGIN_US;
	if (t < p->floor_us)
		t = p->floor_us;
	if (m_us < WARMUP_US && t < p->initial_us)
		t = p->initial_us;
	if (t > p->ceiling_us)
		t = p->ceiling_us;
	atomic_store_explicit(&p->target_us, (uint32_t)t, memory_order_relaxed);
}

int media_playout_write(struct media_playout *p, const uint8_t *data, size_t len, uint64_t now_us)
{
	if (len == 0)
		return 0;
	est_update(p, now_us, p->p_stream);

	uint64_t w = p->p_w;
	/* realign to the stream after an odd number of refused bytes (2 bytes per sample) */
	size_t skip = (size_t)((p->bps - (p->p_stream - w) % p->bps) % p->bps);
	p->p_stream += len;
	if (skip > len)
		skip = len;
	data += skip;
	len -= skip;

	/* acquire: the consumer is done with the bytes before rpos */
	uint64_t r = atomic_load_explicit(&p->rpos, memory_order_acquire);
	uint64_t used = w > r ? w - r : 0;
	size_t n = len;
	if (used + n > p->cap)
		n = (size_t)(p->cap - used);
	if (n)
		ring_put(p, w, data, n);
	size_t refused = skip + (len - n);
	if (refused)
		add_u64(&p->refused_bytes, refused);
	if (n) {
		w += n;
		p->p_w = w;
		atomic_store_explicit(&p->last_write_us, now_us, memory_order_relaxed);
		/* release: the bytes (and last_write_us) are visible before the new wpos */
		atomic_store_explicit(&p->wpos, w, memory_order_release);
	}
	return len - n ? -ENOBUFS : 0;
}

void media_playout_flush(struct media_playout *p)
{
	atomic_store_explicit(&p->flush_pos, align_up(p->p_w, p->bps), memory_order_relaxed);
	p->p_flush_seq++;
	/* release: flush_pos, and every write and mark made before, come with it */
	atomic_store_explicit(&p->flush_seq, p->p_flush_seq, memory_order_release);
	add_u64(&p->flushes, 1);
}

int media_playout_mark(struct media_playout *p, uint32_t id)
{
	uint32_t head = p->p_mark_head;
	uint32_t tail = atomic_load_explicit(&p->mark_tail, memory_order_acquire);
	if (head - tail >= MEDIA_PLAYOUT_MARKS)
		return -ENOBUFS;
	struct po_mark *m = &p->marks[head % MEDIA_PLAYOUT_MARKS];
	m->pos = p->p_w;
	m->id = id;
	m->flush_seq = p->p_flush_seq;
	m->status = MARK_PENDING;
	p->p_mark_head = head + 1;
	atomic_store_explicit(&p->mark_head, head + 1, memory_order_release);
	return 0;
}

/* ---- consumer ---- */

/* Pending marks after position `from` become FLUSHED: for a flush (by_flush), those made
 * before flush number fseq; for an overrun, those whose position is at most `to`. */
static void marks_drop(struct media_playout *p, uint64_t from, uint64_t to, int by_flush,
                       uint32_t fseq)
{
	uint32_t head = atomic_load_explicit(&p->mark_head, memory_order_acquire);
	for (uint32_t t = p->c_mark_tail; t != head; t++) {
		struct po_mark *m = &p->marks[t % MEDIA_PLAYOUT_MARKS];
		if (m->status != MARK_PENDING || m->pos <= from)
			continue;
		if (by_flush ? (int32_t)(m->flush_seq - fseq) < 0 : m->pos <= to)
			m->status = MEDIA_PLAYOUT_MARK_FLUSHED;
	}
}

static unsigned marks_deliver(struct media_playout *p, struct media_playout_mark_ev *ev,
                              unsigned max)
{
	uint32_t head = atomic_load_explicit(&p->mark_head, memory_order_acquire);
	uint32_t t = p->c_mark_tail;
	unsigned n = 0;
	while (t != head && n < max) {
		struct po_mark *m = &p->marks[t % MEDIA_PLAYOUT_MARKS];
		if (m->status == MARK_PENDING) {
			if (m->pos > p->c_r)
				break;
			m->status = MEDIA_PLAYOUT_MARK_PLAYED;
		}
		ev[n].id = m->id;
		ev[n].status = (enum media_playout_mark_status)m->status;
		n++;
		t++;
	}
	if (t != p->c_mark_tail) {
		p->c_mark_tail = t;
		/* release: we are done with the entries before t */
		atomic_store_explicit(&p->mark_tail, t, memory_order_release);
	}
	return n;
}

static void go_wait(struct media_playout *p)
{
	p->c_state = ST_WAIT;
	p->c_have_first = 0;
}

enum media_playout_res media_playout_read(struct media_playout *p, uint8_t *frame, uint64_t now_us,
                                          struct media_playout_mark_ev *marks, unsigned max_marks,
                                          unsigned *n_marks)
{
	enum media_playout_res res = MEDIA_PLAYOUT_SILENCE;
	uint64_t r = p->c_r;
	int flushed = 0;

	/* 1. a flush requested since the last read */
	uint32_t fseq = atomic_load_explicit(&p->flush_seq, memory_order_acquire);
	if (fseq != p->c_flush_seq) {
		uint64_t fpos = atomic_load_explicit(&p->flush_pos, memory_order_relaxed);
		marks_drop(p, r, 0, 1, fseq);
		if (fpos > r)
			r = fpos;
		p->c_flush_seq = fseq;
		flushed = 1;
		go_wait(p);
		p->c_dry = 0;
		p->c_fade_in = 0;
	}

	uint64_t w = atomic_load_explicit(&p->wpos, memory_order_acquire);
	uint64_t avail = w > r ? w - r : 0;

	/* 2. keep only the newest `bound` bytes */
	if (avail > p->bound) {
		uint64_t nr = align_up(w - p->bound, p->bps);
		marks_drop(p, r, nr, 0, 0);
		add_u64(&p->overrun_bytes, nr - r);
		r = nr;
		avail = w - r;
	}

	/* 3. wait for the target after being empty */
	if (!flushed && p->c_state == ST_WAIT && avail >= p->bps) {
		if (!p->c_have_first) {
			/* the newest write is at or after the first one since empty */
			uint64_t lw = atomic_load_explicit(&p->last_write_us, memory_order_relaxed);
			p->c_first_us = lw < now_us ? lw : now_us;
			p->c_have_first = 1;
			if (p->c_dry && p->c_first_us <= p->c_dry_us + RESUME_GAP_US)
				add_u64(&p->underruns, 1); /* resumed soon: a gap, not the end */
			p->c_dry = 0;
		}
		uint64_t target = atomic_load_explicit(&p->target_us, memory_order_relaxed);
		if (now_us - p->c_first_us >= target || avail >= p->ceiling_bytes)
			p->c_state = ST_PLAY;
	}

	/* 4. the frame */
	if (!flushed && p->c_state == ST_PLAY) {
		if (avail >= p->frame_bytes) {
			ring_get(p, r, frame, p->frame_bytes);
			if (p->c_fade_in)
				fade_in(p, frame, p->frame_bytes / p->bps);
			p->c_fade_in = 0;
			r += p->frame_bytes;
			res = MEDIA_PLAYOUT_AUDIO;
		} else {
			size_t n = (size_t)(avail - avail % p->bps);
			if (n) {
				ring_get(p, r, frame, n);
				if (p->c_fade_in)
					fade_in(p, frame, (unsigned)(n / p->bps));
				fade_out(p, frame, (unsigned)(n / p->bps));
				r += n;
				res = MEDIA_PLAYOUT_AUDIO;
			}
			memset(frame + n, p->silence, p->frame_bytes - n);
			go_wait(p);
			p->c_dry = 1;
			p->c_dry_us = now_us;
			p->c_fade_in = 1;
		}
	} else {
		memset(frame, p->silence, p->frame_bytes);
	}

	/* 5. publish; release: we are done with the bytes before r */
	p->c_r = r;
	atomic_store_explicit(&p->rpos, r, memory_order_release);
	avail = w > r ? w - r : 0;
	atomic_store_explicit(&p->depth_us, (uint32_t)(avail * 1000 / p->bytes_per_ms),
	                      memory_order_relaxed);
	add_u64(res == MEDIA_PLAYOUT_AUDIO ? &p->frames_audio : &p->frames_silence, 1);

	unsigned n = marks && max_marks ? marks_deliver(p, marks, max_marks) : 0;
	if (n_marks)
		*n_marks = n;
	return res;
}

unsigned media_playout_queued_ms(const struct media_playout *cp)
{
	struct media_playout *p = (struct media_playout *)cp; /* atomic loads only */
	uint64_t w = atomic_load_explicit(&p->wpos, memory_order_relaxed);
	uint64_t r = atomic_load_explicit(&p->rpos, memory_order_relaxed);
	uint64_t f = atomic_load_explicit(&p->flush_pos, memory_order_relaxed);
	if (f > r)
		r = f; /* a flush not applied yet: that audio will never play */
	return w > r ? (unsigned)((w - r) / p->bytes_per_ms) : 0u;
}

void media_playout_stats(const struct media_playout *cp, struct media_playout_stats *st)
{
	struct media_playout *p = (struct media_playout *)cp; /* atomic loads only */
	st->frames_audio = atomic_load_explicit(&p->frames_audio, memory_order_relaxed);
	st->frames_silence = atomic_load_explicit(&p->frames_silence, memory_order_relaxed);
	st->underruns = atomic_load_explicit(&p->underruns, memory_order_relaxed);
	st->overrun_bytes = atomic_load_explicit(&p->overrun_bytes, memory_order_relaxed);
	st->refused_bytes = atomic_load_explicit(&p->refused_bytes, memory_order_relaxed);
	st->flushes = atomic_load_explicit(&p->flushes, memory_order_relaxed);
	st->target_ms = atomic_load_explicit(&p->target_us, memory_order_relaxed) / 1000;
	st->depth_ms = atomic_load_explicit(&p->depth_us, memory_order_relaxed) / 1000;
}
