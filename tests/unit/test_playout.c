/* Unit tests: AI playout buffer (re-framing, adaptive depth, flush, marks, fades) and frame ring.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/test_alloc.h"

#include "core/clock.h"
#include "core/mem.h"
#include "media/buf_int.h"
#include "media/media_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- test signal: every sample tells its stream position ----
 * s16: sample i = 2000 + i % 28000 (always loud and positive, +1 per sample).
 * µ-law: sample i = a pseudo-random pick among codes louder than 2000, so any gap or
 * duplicate changes the bytes. Neither is ever silence, and a faded sample stays non-silent
 * (the fade gain never reaches 0), so the audio part of a frame is exactly its non-silent
 * prefix. */

static uint8_t loud_codes[256];
static unsigned n_loud;

static void loud_init(void)
{
	if (n_loud)
		return;
	for (unsigned c = 0; c < 256; c++) {
		int v = media_g711_ulaw_decode((uint8_t)c);
		if (v >= 2000 || v <= -2000)
			loud_codes[n_loud++] = (uint8_t)c;
	}
}

static int32_t pat_sample(unsigned bps, uint64_t i)
{
	if (bps == 2)
		return (int32_t)(2000 + i % 28000);
	uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull;
	return loud_codes[(h >> 40) % n_loud];
}

/* Fills n bytes of the stream starting at byte position pos. */
static void pat_fill(unsigned bps, uint64_t pos, uint8_t *buf, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		uint64_t p = pos + k;
		if (bps == 1) {
			buf[k] = (uint8_t)pat_sample(1, p);
		} else {
			uint16_t v = (uint16_t)pat_sample(2, p / 2);
			buf[k] = (uint8_t)(p % 2 ? v >> 8 : v);
		}
	}
}

static int32_t frame_sample(unsigned bps, const uint8_t *f, unsigned i)
{
	if (bps == 1)
		return f[i];
	return (int16_t)(uint16_t)(f[2 * i] | (unsigned)f[2 * i + 1] << 8);
}

static int32_t to_linear(unsigned bps, int32_t s)
{
	return bps == 1 ? media_g711_ulaw_decode((uint8_t)s) : s;
}

/* Follows the output stream: checks each frame continues exactly where the last one ended.
 * Fades are accepted only where the buffer may apply them (first 3 ms after a gap, last
 * 3 ms before silence), and only in strict == 0 mode. */
struct chk {
	unsigned bps, fb, ns, fade;
	uint64_t pos; /* next expected stream byte */
	int after_gap;
	int strict;
	int started;
	uint64_t audio_bytes;
	unsigned audio_frames, silence_frames, partial_frames;
	unsigned silence_inside; /* silence frames between audio frames */
	unsigned pending_silence;
	int bad; /* first failure, for reporting from threads */
};

static void chk_init(struct chk *c, unsigned bps, int strict)
{
	memset(c, 0, sizeof(*c));
	c->bps = bps;
	c->fb = bps == 1 ? 160 : 640;
	c->ns = bps == 1 ? 160 : 320;
	c->fade = bps == 1 ? 24 : 48;
	c->strict = strict;
}

/* Returns 0 when the frame is consistent, else a code naming what went wrong. */
static int chk_frame(struct chk *c, enum media_playout_res res, const uint8_t *f)
{
	uint8_t sil = c->bps == 1 ? 0xff : 0;
	if (res == MEDIA_PLAYOUT_SILENCE) {
		for (unsigned k = 0; k < c->fb; k++)
			if (f[k] != sil)
				return 1;
		c->silence_frames++;
		if (c->started) {
			c->after_gap = 1;
			c->pending_silence++;
		}
		return 0;
	}
	unsigned n_audio = 0;
	for (unsigned i = 0; i < c->ns; i++)
		if (to_linear(c->bps, frame_sample(c->bps, f, i)) != 0)
			n_audio = i + 1;
	if (n_audio == 0)
		return 2;
	for (unsigned i = 0; i < n_audio; i++) {
		int32_t got = frame_sample(c->bps, f, i);
		int32_t exp = pat_sample(c->bps, c->pos / c->bps + i);
		if (got == exp)
			continue;
		int faded_in = c->after_gap && i < c->fade;
		int faded_out = n_audio < c->ns && i + c->fade >= n_audio;
		if (c->strict || !(faded_in || faded_out))
			return 3;
		int32_t lg = to_linear(c->bps, got), le = to_linear(c->bps, exp);
		if ((lg > 0) != (le > 0) || abs(lg) > abs(le))
			return 4;
	}
	if (n_audio < c->ns) {
		if (c->strict)
			return 5;
		c->partial_frames++;
	}
	if (c->started)
		c->silence_inside += c->pending_silence;
	c->pending_silence = 0;
	c->started = 1;
	c->after_gap = n_audio < c->ns;
	c->pos += (uint64_t)n_audio * c->bps;
	c->audio_bytes += (uint64_t)n_audio * c->bps;
	c->audio_frames++;
	return 0;
}

/* Small deterministic generator. */
static uint32_t rnd_state = 1;
static uint32_t rnd(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return rnd_state >> 8;
}
/* Uniform in [-a, a]. */
static int64_t rnd_pm(int64_t a)
{
	return (int64_t)(rnd() % (uint32_t)(2 * a + 1)) - a;
}

/* ---- virtual-time simulation: chunks at given arrival times, a read every 20 ms ---- */

struct sim_chunk {
	uint64_t t_us;
	size_t len;
};

#define SIM_MAX_CHUNKS 20000
static struct sim_chunk sim_ch[SIM_MAX_CHUNKS];
static uint8_t sim_buf[200000];

struct sim_res {
	struct media_playout_stats st;
	struct chk c;
	uint64_t written;
	unsigned ticks;
	uint64_t first_audio_us;
	int err;
};

#define TICK_PHASE_US 7000

static void sim_run(unsigned bps, unsigned n_ch, uint64_t end_us, struct sim_res *r)
{
	struct media_playout *p = NULL;
	assert_int_equal(media_playout_create(&p, bps, NULL), 0);
	memset(r, 0, sizeof(*r));
	chk_init(&r->c, bps, 1);
	uint8_t frame[640];
	unsigned ci = 0;
	for (uint64_t t = TICK_PHASE_US; t < end_us; t += 20000) {
		while (ci < n_ch && sim_ch[ci].t_us <= t) {
			assert_true(sim_ch[ci].len <= sizeof(sim_buf));
			pat_fill(bps, r->written, sim_buf, sim_ch[ci].len);
			assert_int_equal(
			    media_playout_write(p, sim_buf, sim_ch[ci].len, sim_ch[ci].t_us), 0);
			r->written += sim_ch[ci].len;
			ci++;
		}
		memset(frame, 0x55, sizeof(frame));
		enum media_playout_res res = media_playout_read(p, frame, t, NULL, 0, NULL);
		r->ticks++;
		int e = chk_frame(&r->c, res, frame);
		if (e && !r->err)
			r->err = e;
		if (res == MEDIA_PLAYOUT_AUDIO && !r->first_audio_us)
			r->first_audio_us = t;
	}
	media_playout_stats(p, &r->st);
	media_playout_destroy(p);
}

static unsigned sched_bursty_pairs(unsigned bps, unsigned pairs)
{
	size_t half = 46 * (bps == 1 ? 8 : 32); /* 46 ms: 368 B µ-law, 1472 B s16 */
	unsigned n = 0;
	for (unsigned k = 0; k < pairs; k++) {
		uint64_t t = (uint64_t)(100000 + 92000 * (int64_t)k + rnd_pm(10000));
		sim_ch[n++] = (struct sim_chunk){t, half};
		sim_ch[n++] = (struct sim_chunk){t, half};
	}
	return n;
}

static unsigned sched_smooth(unsigned bps, unsigned frames)
{
	unsigned n = 0;
	for (unsigned k = 0; k < frames; k++) {
		uint64_t t = (uint64_t)(100000 + 20000 * (int64_t)k + rnd_pm(1000));
		sim_ch[n++] = (struct sim_chunk){t, bps == 1 ? 160 : 640};
	}
	return n;
}

/* Chunks of random odd sizes (79 B among them), each arriving 0..10 ms after its media
 * time. Returns the count; *total gets the bytes. */
static unsigned sched_odd(unsigned bps, uint64_t total_target, uint64_t *total)
{
	unsigned n = 0;
	uint64_t pos = 0, last_t = 0;
	unsigned bytes_per_ms = bps == 1 ? 8 : 32;
	while (pos < total_target && n < SIM_MAX_CHUNKS) {
		size_t len = n % 5 == 0 ? 79 : 1 + rnd() % (bps == 1 ? 400 : 1500);
		uint64_t t = 100000 + pos * 1000 / bytes_per_ms + rnd() % 10001;
		if (t < last_t)
			t = last_t;
		last_t = t;
		sim_ch[n++] = (struct sim_chunk){t, len};
		pos += len;
	}
	*total = pos;
	return n;
}

static void check_clean_run(const struct sim_res *r, uint64_t written)
{
	assert_int_equal(r->err, 0);
	assert_int_equal(r->written, written);
	/* everything came out, in order, byte-exact, with no gap after the start */
	assert_int_equal(r->c.audio_bytes, written);
	assert_int_equal(r->c.silence_inside, 0);
	assert_int_equal(r->st.underruns, 0);
	assert_int_equal(r->st.frames_audio + r->st.frames_silence, r->ticks);
	assert_int_equal(r->st.overrun_bytes, 0);
	assert_int_equal(r->st.refused_bytes, 0);
}

static void test_playout_bursty_pairs_both_formats(void **state)
{
	(void)state;
	loud_init();
	for (unsigned bps = 1; bps <= 2; bps++) {
		rnd_state = 42 + bps;
		unsigned pairs = 150; /* ~13.8 s; a multiple of 5 pairs is whole frames */
		unsigned n = sched_bursty_pairs(bps, pairs);
		uint64_t total = (uint64_t)pairs * 2 * 46 * (bps == 1 ? 8 : 32);
		struct sim_res r;
		sim_run(bps, n, 100000 + 92000ull * pairs + 1000000, &r);
		check_clean_run(&r, total);
		assert_int_equal(r.c.audio_frames * r.c.fb, total);
		/* the target grew above the smooth-input value to cover the bursts' jitter */
		print_message("bursty bps=%u target=%u ms\n", bps, r.st.target_ms);
		assert_true(r.st.target_ms >= 35);
		assert_true(r.st.target_ms <= 80);
	}
}

static void test_playout_smooth_input_small_target(void **state)
{
	(void)state;
	loud_init();
	for (unsigned bps = 1; bps <= 2; bps++) {
		rnd_state = 7 + bps;
		unsigned n = sched_smooth(bps, 500);
		struct sim_res r;
		sim_run(bps, n, 100000 + 20000ull * 500 + 500000, &r);
		check_clean_run(&r, 500ull * (bps == 1 ? 160 : 640));
		print_message("smooth bps=%u target=%u ms\n", bps, r.st.target_ms);
		assert_true(r.st.target_ms <= 30);
		assert_true(r.st.target_ms >= 20);
	}
}

static void test_playout_odd_chunk_sizes(void **state)
{
	(void)state;
	loud_init();
	for (unsigned bps = 1; bps <= 2; bps++) {
		rnd_state = 99 + bps;
		uint64_t total;
		unsigned n = sched_odd(bps, 10ull * 1000 * (bps == 1 ? 8 : 32), &total);
		/* round the stream to whole frames so the last frame is not partial */
		size_t fb = bps == 1 ? 160 : 640;
		sim_ch[n] = (struct sim_chunk){sim_ch[n - 1].t_us, fb - total % fb};
		n++;
		total += fb - total % fb;
		struct sim_res r;
		sim_run(bps, n, 100000 + total * 1000 / (bps == 1 ? 8 : 32) + 1000000, &r);
		check_clean_run(&r, total);
		print_message("odd bps=%u target=%u ms\n", bps, r.st.target_ms);
		assert_true(r.st.target_ms <= 40);
	}
}

static void test_playout_sentence_at_once(void **state)
{
	(void)state;
	loud_init();
	for (unsigned bps = 1; bps <= 2; bps++) {
		uint64_t total = 3000ull * (bps == 1 ? 8 : 32); /* 3 s */
		sim_ch[0] = (struct sim_chunk){100000, (size_t)total};
		struct sim_res r;
		sim_run(bps, 1, 4000000, &r);
		check_clean_run(&r, total);
		/* more than the ceiling is buffered: no waiting, play at the next tick */
		assert_int_equal(r.first_audio_us, 107000); /* first tick after the arrival */
		assert_int_equal(r.c.audio_frames, 150);
	}
}

static void test_playout_flush_next_frame_silent(void **state)
{
	(void)state;
	loud_init();
	struct media_playout *p = NULL;
	assert_int_equal(media_playout_create(&p, 1, NULL), 0);
	uint8_t buf[8200], frame[160];
	struct media_playout_mark_ev ev[8];
	unsigned n_ev;
	struct chk c;
	chk_init(&c, 1, 1);

	pat_fill(1, 0, buf, 8000);
	assert_int_equal(media_playout_write(p, buf, 8000, 0), 0); /* 1 s: > ceiling, plays now */
	assert_int_equal(media_playout_mark(p, 1), 0);
	uint64_t t = 0;
	for (int k = 0; k < 5; k++, t += 20000) {
		enum media_playout_res res = media_playout_read(p, frame, t, ev, 8, &n_ev);
		assert_int_equal(res, MEDIA_PLAYOUT_AUDIO);
		assert_int_equal(chk_frame(&c, res, frame), 0);
		assert_int_equal(n_ev, 0);
	}
	pat_fill(1, 8000, buf, 200);
	assert_int_equal(media_playout_write(p, buf, 200, t), 0);
	assert_int_equal(media_playout_mark(p, 2), 0);
	media_playout_flush(p);                        /* barge-in */
	assert_int_equal(media_playout_mark(p, 3), 0); /* nothing pending after the flush */

	enum media_playout_res res = media_playout_read(p, frame, t, ev, 8, &n_ev);
	t += 20000;
	assert_int_equal(res, MEDIA_PLAYOUT_SILENCE);
	for (unsigned k = 0; k < 160; k++)
		assert_int_equal(frame[k], 0xff);
	assert_int_equal(n_ev, 3);
	assert_int_equal(ev[0].id, 1);
	assert_int_equal(ev[0].status, MEDIA_PLAYOUT_MARK_FLUSHED);
	assert_int_equal(ev[1].id, 2);
	assert_int_equal(ev[1].status, MEDIA_PLAYOUT_MARK_FLUSHED);
	assert_int_equal(ev[2].id, 3);
	assert_int_equal(ev[2].status, MEDIA_PLAYOUT_MARK_PLAYED);

	/* new audio after the flush plays after the target wait, from its first byte */
	pat_fill(1, 8200, buf, 1600);
	assert_int_equal(media_playout_write(p, buf, 1600, t), 0);
	uint64_t written_at = t;
	c.pos = 8200;
	c.after_gap = 0;
	int played = 0;
	uint64_t first_audio = 0;
	for (int k = 0; k < 30; k++, t += 20000) {
		res = media_playout_read(p, frame, t, NULL, 0, NULL);
		assert_int_equal(chk_frame(&c, res, frame), 0);
		if (res == MEDIA_PLAYOUT_AUDIO) {
			if (!played)
				first_audio = t;
			played++;
		}
	}
	assert_int_equal(played, 10);
	assert_int_equal(c.pos, 9800);
	struct media_playout_stats st;
	media_playout_stats(p, &st);
	assert_true(first_audio - written_at >= (uint64_t)st.target_ms * 1000);
	assert_true(first_audio - written_at < (uint64_t)st.target_ms * 1000 + 20000);
	assert_int_equal(st.flushes, 1);
	assert_int_equal(st.underruns, 0);

	/* a flush while still waiting for the initial fill drops that audio too */
	assert_int_equal(media_playout_write(p, buf, 100, t), 0);
	media_playout_flush(p);
	for (int k = 0; k < 20; k++, t += 20000)
		assert_int_equal(media_playout_read(p, frame, t, NULL, 0, NULL),
		                 MEDIA_PLAYOUT_SILENCE);
	media_playout_destroy(p);
}

static void test_playout_marks_at_last_byte(void **state)
{
	(void)state;
	loud_init();
	struct media_playout *p = NULL;
	assert_int_equal(media_playout_create(&p, 1, NULL), 0);
	uint8_t buf[1200], frame[160];
	struct media_playout_mark_ev ev[4];
	unsigned n_ev;
	pat_fill(1, 0, buf, 1200);
	assert_int_equal(media_playout_write(p, buf, 800, 0), 0); /* 5 frames */
	assert_int_equal(media_playout_mark(p, 1), 0);
	assert_int_equal(media_playout_write(p, buf + 800, 400, 0), 0); /* 2.5 frames */
	assert_int_equal(media_playout_mark(p, 2), 0);

	/* initial target 80 ms: ticks 0..3 silent, audio frames at ticks 4..11 */
	int tick_of[3] = {-1, -1, -1};
	int first_audio = -1;
	for (int k = 0; k < 14; k++) {
		uint64_t now = (uint64_t)k * 20000 + 1000;
		if (k == 12)
			assert_int_equal(media_playout_mark(p, 3), 0); /* empty buffer */
		enum media_playout_res res = media_playout_read(p, frame, now, ev, 4, &n_ev);
		if (res == MEDIA_PLAYOUT_AUDIO && first_audio < 0)
			first_audio = k;
		for (unsigned i = 0; i < n_ev; i++) {
			assert_int_equal(ev[i].status, MEDIA_PLAYOUT_MARK_PLAYED);
			assert_true(ev[i].id >= 1 && ev[i].id <= 3);
			assert_int_equal(tick_of[ev[i].id - 1], -1);
			tick_of[ev[i].id - 1] = k;
		}
	}
	assert_int_equal(first_audio, 4);
	assert_int_equal(tick_of[0], 8);  /* the 5th audio frame carries byte 799 */
	assert_int_equal(tick_of[1], 11); /* the partial 8th carries byte 1199 */
	assert_int_equal(tick_of[2], 12); /* next read after a mark on an empty buffer */

	/* more completions than max_marks: the rest come with the next read, in order */
	assert_int_equal(media_playout_mark(p, 4), 0);
	assert_int_equal(media_playout_mark(p, 5), 0);
	media_playout_read(p, frame, 300000, ev, 1, &n_ev);
	assert_int_equal(n_ev, 1);
	assert_int_equal(ev[0].id, 4);
	media_playout_read(p, frame, 320000, ev, 1, &n_ev);
	assert_int_equal(n_ev, 1);
	assert_int_equal(ev[0].id, 5);

	/* the mark ring holds MEDIA_PLAYOUT_MARKS pending marks */
	assert_int_equal(media_playout_write(p, buf, 100, 340000), 0);
	for (unsigned i = 0; i < MEDIA_PLAYOUT_MARKS; i++)
		assert_int_equal(media_playout_mark(p, 100 + i), 0);
	assert_int_equal(media_playout_mark(p, 999), -ENOBUFS);
	media_playout_destroy(p);
}

/* Writes audio that ends at a sine peak, reads until it runs dry, checks the fade-out, then
 * resumes and checks the fade-in and the underrun count. */
static void test_playout_underrun_fades(void **state)
{
	(void)state;
	for (unsigned bps = 1; bps <= 2; bps++) {
		struct media_playout *p = NULL;
		assert_int_equal(media_playout_create(&p, bps, NULL), 0);
		unsigned rate = bps == 1 ? 8000 : 16000, fb = bps == 1 ? 160 : 640;
		/* 200 Hz, amplitude 10000; the cut falls on a peak (quarter period) */
		unsigned period = rate / 200, ns = 13 * period + period / 4;
		static uint8_t buf[2 * 4000];
		for (unsigned i = 0; i < 2 * ns; i++) {
			int16_t v = (int16_t)lrint(10000.0 * sin(2.0 * M_PI * 200.0 * i / rate));
			if (bps == 1) {
				buf[i] = media_g711_ulaw_encode(v);
			} else {
				buf[2 * i] = (uint8_t)(uint16_t)v;
				buf[2 * i + 1] = (uint8_t)((uint16_t)v >> 8);
			}
		}
		assert_int_equal(media_playout_write(p, buf, (size_t)ns * bps, 0), 0);
		uint8_t frame[640];
		int32_t prev = 0, max_jump = 0;
		uint64_t t = 0;
		int saw_partial = 0;
		for (int k = 0; k < 20 && !saw_partial; k++, t += 20000) {
			enum media_playout_res res = media_playout_read(p, frame, t, NULL, 0, NULL);
			if (res != MEDIA_PLAYOUT_AUDIO)
				continue;
			unsigned last = 0;
			for (unsigned i = 0; i < fb / bps; i++) {
				int32_t v = to_linear(bps, frame_sample(bps, frame, i));
				if (abs(v - prev) > max_jump)
					max_jump = abs(v - prev);
				prev = v;
				if (v != 0)
					last = i;
			}
			if (last + 1 < fb / bps) {
				saw_partial = 1;
				int32_t lv = to_linear(bps, frame_sample(bps, frame, last));
				assert_true(abs(lv) <= 600); /* faded to near zero */
			}
		}
		assert_true(saw_partial);
		/* natural slope of the sine is < 1600 per sample at 8 kHz; without the fade the
		 * step into silence would be ~10000 */
		assert_true(max_jump < 2500);
		struct media_playout_stats st;
		media_playout_stats(p, &st);
		assert_int_equal(st.underruns, 0); /* not counted until audio resumes */

		/* resume 100 ms later: counted as an underrun, starts with a fade-in */
		assert_int_equal(media_playout_write(p, buf, (size_t)ns * bps, t + 100000), 0);
		int resumed = 0;
		for (int k = 0; k < 30 && !resumed; k++, t += 20000) {
			if (media_playout_read(p, frame, t + 100000, NULL, 0, NULL) !=
			    MEDIA_PLAYOUT_AUDIO)
				continue;
			resumed = 1;
			/* the sine restarts at 0 anyway: check samples 1..fade are scaled down */
			unsigned f = bps == 1 ? 24 : 48;
			int32_t s_mid = to_linear(bps, frame_sample(bps, frame, f / 2));
			int32_t ref =
			    (int32_t)lrint(10000.0 * sin(2.0 * M_PI * 200.0 * (f / 2) / rate));
			assert_true(abs(s_mid) < abs(ref) * 3 / 4);
			int32_t s_after = to_linear(bps, frame_sample(bps, frame, f + 2));
			int32_t ref2 =
			    (int32_t)lrint(10000.0 * sin(2.0 * M_PI * 200.0 * (f + 2) / rate));
			assert_true(abs(s_after - ref2) <= 400); /* µ-law quantisation */
		}
		assert_true(resumed);
		media_playout_stats(p, &st);
		assert_int_equal(st.underruns, 1);
		media_playout_destroy(p);
	}
}

static void test_playout_overrun_keeps_newest(void **state)
{
	(void)state;
	loud_init();
	struct media_playout_opts o = {.bound_ms = 1000};
	struct media_playout *p = NULL;
	assert_int_equal(media_playout_create(&p, 1, &o), 0);
	static uint8_t buf[12000];
	uint8_t frame[160];
	struct media_playout_mark_ev ev[4];
	unsigned n_ev;
	pat_fill(1, 0, buf, 9600);
	assert_int_equal(media_playout_write(p, buf, 800, 0), 0);
	assert_int_equal(media_playout_mark(p, 1), 0); /* its audio will be dropped */
	assert_int_equal(media_playout_write(p, buf + 800, 4000, 0), 0);
	assert_int_equal(media_playout_mark(p, 2), 0); /* its last byte will play */
	assert_int_equal(media_playout_write(p, buf + 4800, 4800, 0), 0);
	enum media_playout_res res = media_playout_read(p, frame, 0, ev, 4, &n_ev);
	assert_int_equal(res, MEDIA_PLAYOUT_AUDIO);
	assert_int_equal(n_ev, 1);
	assert_int_equal(ev[0].id, 1);
	assert_int_equal(ev[0].status, MEDIA_PLAYOUT_MARK_FLUSHED);
	struct chk c;
	chk_init(&c, 1, 1);
	c.pos = 1600; /* 9600 written, bound 8000: the oldest 1600 bytes went */
	assert_int_equal(chk_frame(&c, res, frame), 0);
	struct media_playout_stats st;
	media_playout_stats(p, &st);
	assert_int_equal(st.overrun_bytes, 1600);
	assert_int_equal(st.refused_bytes, 0);
	assert_int_equal(st.depth_ms, (9600 - 1760) / 8);
	for (int k = 1; k < 50; k++) {
		res = media_playout_read(p, frame, (uint64_t)k * 20000, ev, 4, &n_ev);
		assert_int_equal(chk_frame(&c, res, frame), 0);
		/* 4800 - 1600 = 3200 bytes = 20 frames up to mark 2 */
		assert_int_equal(n_ev, k == 19 ? 1 : 0);
		if (k == 19) {
			assert_int_equal(ev[0].id, 2);
			assert_int_equal(ev[0].status, MEDIA_PLAYOUT_MARK_PLAYED);
		}
	}
	assert_int_equal(c.pos, 9600);

	/* a stalled consumer: the ring (bound + 25 % rounded to frames: 10080 B) fills and the
	 * producer refuses what does not fit */
	struct media_playout *q = NULL;
	assert_int_equal(media_playout_create(&q, 1, &o), 0);
	assert_int_equal(media_playout_write(q, buf, 10080, 0), 0);
	assert_int_equal(media_playout_write(q, buf, 100, 0), -ENOBUFS);
	media_playout_stats(q, &st);
	assert_int_equal(st.refused_bytes, 100);
	media_playout_read(q, frame, 0, NULL, 0, NULL);
	media_playout_stats(q, &st);
	assert_int_equal(st.overrun_bytes, 2080);
	assert_int_equal(st.depth_ms, 1000 - 20);
	media_playout_destroy(q);
	media_playout_destroy(p);
}

/* s16: refusing an odd number of bytes must not shift the stream by half a sample. */
static void test_playout_s16_odd_refusal_stays_aligned(void **state)
{
	(void)state;
	struct media_playout_opts o = {.bound_ms = 1000};
	struct media_playout *p = NULL;
	assert_int_equal(media_playout_create(&p, 2, &o), 0);
	static uint8_t buf[56001];
	pat_fill(2, 0, buf, 50001);
	/* the ring holds 40320 bytes: 9681 bytes (an odd count) are refused */
	assert_int_equal(media_playout_write(p, buf, 50001, 0), -ENOBUFS);
	uint8_t frame[640];
	media_playout_read(p, frame, 0, NULL, 0, NULL); /* drops down to the bound */
	int32_t prev = frame_sample(2, frame, 319);
	for (int k = 0; k < 2; k++) {
		media_playout_read(p, frame, 0, NULL, 0, NULL);
		assert_int_equal(frame_sample(2, frame, 0), prev + 1);
		prev = frame_sample(2, frame, 319);
	}
	/* 30080 bytes queued now; 1920 more stay within the bound */
	pat_fill(2, 50001, buf, 1920);
	assert_int_equal(media_playout_write(p, buf, 1920, 0), 0);
	/* every sample that comes out is a whole pattern sample (a half-sample shift would
	 * swap bytes), increasing by one, with one jump over the refused bytes: from sample
	 * 20159 (last stored) to 25001 (the first whole one after stream byte 50001) */
	unsigned jumps = 0, samples = 0;
	for (int k = 1; k < 70; k++) {
		if (media_playout_read(p, frame, (uint64_t)k * 20000, NULL, 0, NULL) !=
		    MEDIA_PLAYOUT_AUDIO)
			break;
		if (frame_sample(2, frame, 319) == 0)
			break; /* the partial last frame is faded */
		for (unsigned i = 0; i < 320; i++) {
			int32_t v = frame_sample(2, frame, i);
			samples++;
			if (v != prev + 1) {
				assert_int_equal(prev, 2000 + 20159);
				assert_int_equal(v, 2000 + 25001);
				jumps++;
			}
			prev = v;
		}
	}
	assert_int_equal(jumps, 1);
	assert_int_equal(samples, 49 * 320);
	media_playout_destroy(p);
}

static void test_playout_create_args_and_oom(void **state)
{
	(void)state;
	struct media_playout *p = NULL;
	assert_int_equal(media_playout_create(&p, 3, NULL), -EINVAL);
	assert_int_equal(media_playout_create(NULL, 1, NULL), -EINVAL);
	struct media_playout_opts o = {.floor_ms = 400, .ceiling_ms = 300};
	assert_int_equal(media_playout_create(&p, 1, &o), -EINVAL);
	assert_null(p);
	for (long n = 0; n < 2; n++) {
		mem_fail_after(n);
		assert_int_equal(media_playout_create(&p, 2, NULL), -ENOMEM);
		assert_null(p);
	}
	mem_fail_after(-1);
	assert_int_equal(media_playout_create(&p, 2, NULL), 0);
	assert_int_equal(media_playout_frame_bytes(p), 640);
	media_playout_destroy(p);
	media_playout_destroy(NULL);

	struct media_fring *r = NULL;
	assert_int_equal(media_fring_create(&r, 160, 12), -EINVAL);
	assert_int_equal(media_fring_create(&r, 0, 16), -EINVAL);
	mem_fail_after(0);
	assert_int_equal(media_fring_create(&r, 160, 16), -ENOMEM);
	mem_fail_after(-1);
	assert_null(r);
	media_fring_destroy(NULL);
}

static void test_playout_no_alloc_10000_frames(void **state)
{
	(void)state;
	loud_init();
	struct media_playout *p = NULL;
	assert_int_equal(media_playout_create(&p, 2, NULL), 0);
	static uint8_t buf[4000];
	uint8_t frame[640];
	struct media_playout_mark_ev ev[4];
	unsigned n_ev;
	uint64_t pos = 0, t = 0;
	rnd_state = 5;
	uint64_t allocs = mem_total_allocs();
	for (unsigned k = 0; k < 10000; k++, t += 20000) {
		size_t len = 1 + rnd() % 1400;
		pat_fill(2, pos, buf, len);
		media_playout_write(p, buf, len, t);
		pos += len;
		if (k % 10 == 0)
			media_playout_mark(p, k);
		if (k % 997 == 0)
			media_playout_flush(p);
		media_playout_read(p, frame, t, ev, 4, &n_ev);
	}
	assert_int_equal(mem_total_allocs(), allocs);
	media_playout_destroy(p);
}

/* ---- frame ring ---- */

static void test_fring_order_and_full(void **state)
{
	(void)state;
	struct media_fring *r = NULL;
	assert_int_equal(media_fring_create(&r, 160, 16), 0);
	assert_int_equal(media_fring_frame_bytes(r), 160);
	uint8_t in[160], out[160];
	assert_int_equal(media_fring_pop(r, out, NULL), 0);
	for (unsigned i = 0; i < 20; i++) {
		memset(in, (int)i, sizeof(in));
		in[0] = (uint8_t)(i + 100);
		assert_int_equal(media_fring_push(r, in, 5000u + i), i < 16 ? 0 : -ENOBUFS);
	}
	assert_int_equal(media_fring_count(r), 16);
	struct media_fring_stats st;
	media_fring_stats(r, &st);
	assert_int_equal(st.pushed, 16);
	assert_int_equal(st.dropped, 4); /* the newest (16..19) were dropped */
	for (unsigned i = 0; i < 16; i++) {
		uint64_t stamp = 0;
		assert_int_equal(media_fring_pop(r, out, &stamp), 1);
		assert_int_equal(stamp, 5000u + i); /* each frame's stamp travels with it */
		assert_int_equal(out[0], i + 100);
		assert_int_equal(out[159], i);
	}
	assert_int_equal(media_fring_pop(r, out, NULL), 0);
	/* wraps many times without allocating */
	uint64_t allocs = mem_total_allocs();
	for (unsigned i = 0; i < 10000; i++) {
		in[0] = (uint8_t)i;
		assert_int_equal(media_fring_push(r, in, 0), 0);
		if (i % 3 == 0)
			assert_int_equal(media_fring_push(r, in, 0), 0);
		assert_int_equal(media_fring_pop(r, out, NULL), 1);
		if (i % 3 == 0)
			assert_int_equal(media_fring_pop(r, out, NULL), 1);
		assert_int_equal(out[0], (uint8_t)i);
	}
	assert_int_equal(mem_total_allocs(), allocs);
	media_fring_destroy(r);
}

/* ---- real threads: the ai thread writes, the worker reads (run under TSan too) ---- */

#define THR_TOTAL     (1200u * 1000u) /* bytes of s16: 37.5 s of audio */
#define THR_FLUSH_TAG 0x80000000u
#define THR_MAX_FLUSH 64

struct thr {
	struct media_playout *p;
	_Atomic uint64_t written;          /* relaxed: pacing only, no ordering */
	_Atomic uint64_t consumed;         /* relaxed */
	_Atomic int done;                  /* relaxed */
	uint64_t flush_pos[THR_MAX_FLUSH]; /* published to the consumer through the playout */
	uint32_t last_mark;                /* id of the final mark */
	int prod_err, cons_err;
	unsigned flushes, marks_seen, flushed_marks;
};

static void short_sleep(long ns)
{
	struct timespec ts = {0, ns};
	nanosleep(&ts, NULL);
}

static void *thr_producer(void *arg)
{
	struct thr *T = arg;
	static uint8_t buf[3000];
	uint64_t pos = 0;
	uint32_t id = 1, seed = 77;
	unsigned n = 0;
	while (pos < THR_TOTAL) {
		for (;;) {
			uint64_t done_upto =
			    atomic_load_explicit(&T->consumed, memory_order_relaxed);
			if (done_upto >= pos || pos - done_upto <= 64000)
				break;
			short_sleep(200000);
		}
		seed = seed * 1103515245u + 12345u;
		size_t len = 1 + (seed >> 8) % 3000;
		if (len > THR_TOTAL - pos)
			len = THR_TOTAL - pos;
		pat_fill(2, pos, buf, len);
		int e = media_playout_write(T->p, buf, len, clock_now_us());
		if (e)
			T->prod_err = e;
		pos += len;
		atomic_store_explicit(&T->written, pos, memory_order_relaxed);
		n++;
		if (n % 7 == 0 && media_playout_mark(T->p, id) == 0)
			id++;
		if (n % 97 == 0 && T->flushes < THR_MAX_FLUSH) {
			/* the mark is made before the flush: it completes (FLUSHED or PLAYED) no
			 * later than the read that applies the flush */
			T->flush_pos[T->flushes] = (pos + 1) / 2 * 2;
			if (media_playout_mark(T->p, THR_FLUSH_TAG | T->flushes) == 0) {
				media_playout_flush(T->p);
				T->flushes++;
			}
		}
		if (n % 3 == 0)
			short_sleep(100000);
	}
	while (media_playout_mark(T->p, id) != 0)
		short_sleep(1000000);
	T->last_mark = id;
	atomic_store_explicit(&T->done, 1, memory_order_release);
	return NULL;
}

static void *thr_consumer(void *arg)
{
	struct thr *T = arg;
	struct chk c;
	chk_init(&c, 2, 0);
	uint8_t frame[640];
	struct media_playout_mark_ev ev[MEDIA_PLAYOUT_MARKS];
	unsigned n_ev;
	uint32_t last_plain = 0;
	unsigned tags = 0;
	for (;;) {
		uint64_t w = atomic_load_explicit(&T->written, memory_order_relaxed);
		int done = atomic_load_explicit(&T->done, memory_order_acquire);
		if (done && last_plain >= T->last_mark)
			break;
		if (!done && w < c.pos + 640) {
			/* between even and odd flushes pace on the producer; otherwise read ahead
			 * of it, which makes underruns (partial frames, fades, waits) */
			sched_yield();
			if (tags % 2 == 0)
				continue;
		}
		enum media_playout_res res =
		    media_playout_read(T->p, frame, clock_now_us(), ev, MEDIA_PLAYOUT_MARKS, &n_ev);
		int e = chk_frame(&c, res, frame);
		if (e && !T->cons_err) {
			T->cons_err = 100 + e;
			print_message("consumer: check %d at stream byte %llu\n", e,
			              (unsigned long long)c.pos);
		}
		for (unsigned i = 0; i < n_ev; i++) {
			T->marks_seen++;
			if (ev[i].id & THR_FLUSH_TAG) {
				/* everything after this comes from the flush position (or later, if
				 * this read played across it before it saw the flush) */
				uint64_t f = T->flush_pos[ev[i].id & ~THR_FLUSH_TAG];
				if (f > c.pos)
					c.pos = f;
				c.after_gap = 1;
				tags++;
				continue;
			}
			if (ev[i].status == MEDIA_PLAYOUT_MARK_FLUSHED)
				T->flushed_marks++;
			if (ev[i].id <= last_plain && !T->cons_err)
				T->cons_err = 200;
			last_plain = ev[i].id;
		}
		/* after a failure stop pacing the producer so the test ends */
		atomic_store_explicit(&T->consumed, T->cons_err ? UINT64_MAX / 2 : c.pos,
		                      memory_order_relaxed);
		if (res == MEDIA_PLAYOUT_SILENCE)
			short_sleep(100000);
	}
	return NULL;
}

static void test_playout_threads_producer_consumer(void **state)
{
	(void)state;
	loud_init();
	static struct thr T;
	memset(&T, 0, sizeof(T));
	atomic_init(&T.written, 0);
	atomic_init(&T.consumed, 0);
	atomic_init(&T.done, 0);
	assert_int_equal(media_playout_create(&T.p, 2, NULL), 0);
	pthread_t a, b;
	assert_int_equal(pthread_create(&b, NULL, thr_consumer, &T), 0);
	assert_int_equal(pthread_create(&a, NULL, thr_producer, &T), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	struct media_playout_stats st;
	media_playout_stats(T.p, &st);
	print_message("threads: frames %llu audio %llu silence %llu underruns %llu flushes %u\n",
	              (unsigned long long)(st.frames_audio + st.frames_silence),
	              (unsigned long long)st.frames_audio, (unsigned long long)st.frames_silence,
	              (unsigned long long)st.underruns, T.flushes);
	assert_int_equal(T.prod_err, 0);
	assert_int_equal(T.cons_err, 0);
	assert_true(T.flushes > 3);
	assert_int_equal(st.flushes, T.flushes);
	assert_int_equal(st.refused_bytes, 0);
	assert_int_equal(st.overrun_bytes, 0);
	assert_true(st.frames_audio > 1000);
	media_playout_destroy(T.p);
}

struct fthr {
	struct media_fring *r;
	int err;
	unsigned got;
};

static void *fring_consumer(void *arg)
{
	struct fthr *F = arg;
	uint8_t out[160];
	uint32_t expect = 0;
	while (expect < 200000) {
		if (!media_fring_pop(F->r, out, NULL)) {
			sched_yield();
			continue;
		}
		uint32_t v;
		memcpy(&v, out, 4);
		/* frames arrive in order; dropped ones leave gaps, never reorder or tear */
		if (v < expect || out[159] != (uint8_t)v)
			F->err = 1;
		expect = v + 1;
		F->got++;
	}
	return NULL;
}

static void test_fring_threads(void **state)
{
	(void)state;
	static struct fthr F;
	memset(&F, 0, sizeof(F));
	assert_int_equal(media_fring_create(&F.r, 160, 16), 0);
	pthread_t b;
	assert_int_equal(pthread_create(&b, NULL, fring_consumer, &F), 0);
	uint8_t in[160];
	for (uint32_t v = 0; v < 200000; v++) {
		memset(in, (uint8_t)v, sizeof(in));
		memcpy(in, &v, 4);
		if (v == 199999)
			while (media_fring_push(F.r, in, 0) != 0)
				sched_yield();
		else
			media_fring_push(F.r, in, 0);
	}
	pthread_join(b, NULL);
	struct media_fring_stats st;
	media_fring_stats(F.r, &st);
	assert_int_equal(F.err, 0);
	assert_int_equal(st.pushed, F.got);
	assert_int_equal(st.pushed + st.dropped >= 200000, 1);
	media_fring_destroy(F.r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_playout_bursty_pairs_both_formats, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_smooth_input_small_target, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_odd_chunk_sizes, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_sentence_at_once, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_flush_next_frame_silent, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_marks_at_last_byte, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_underrun_fades, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_overrun_keeps_newest, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_s16_odd_refusal_stays_aligned, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_create_args_and_oom, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_no_alloc_10000_frames, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_playout_threads_producer_consumer, leak_setup,
	                                    leak_teardown),
	    cmocka_unit_test_setup_teardown(test_fring_order_and_full, leak_setup, leak_teardown),
	    cmocka_unit_test_setup_teardown(test_fring_threads, leak_setup, leak_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
