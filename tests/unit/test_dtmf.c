/* Unit tests: in-band DTMF detection and generation, RFC 4733 sending, and the relay
 * chains between them (RFC 4733 -> in-band -> RFC 4733 and back) through G.711. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/test_alloc.h"

#include "core/mem.h"
#include "media/codec_int.h"
#include "media/det_int.h"
#include "media/media_int.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---- */

#define DIGITS  "0123456789*#ABCD"
#define NDIGITS 16u
#define FRAME   160u
/* Durations after a full relay chain must be within this of what was sent. The detector
 * is exact to one 102-sample block (12.75 ms) per conversion; the chains below convert
 * once or twice, and measured errors stay within 11 ms per conversion. */
#define TOL_MS 20
#define PEAK0  22706.0 /* 0 dBm0 sine peak, as in media/g711.c */

struct rx_digit {
	char digit;
	unsigned ms;
};

/* The receiving side of an RFC 4733 stream as a relay sees it: each event is reported
 * once, at its first end packet; repeated end packets (same timestamp) are ignored. */
struct ev_rx {
	int have;
	uint32_t ts;
	int ended;
	unsigned packets;
};

static int ev_rx_packet(struct ev_rx *r, const uint8_t *payload, uint32_t ts, unsigned rate,
                        struct rx_digit *out)
{
	struct media_dtmf_event ev;
	assert_int_equal(media_rfc4733_parse(payload, 4, &ev), 0);
	assert_int_equal(ev.volume, MEDIA_RFC4733_VOLUME);
	r->packets++;
	if (!r->have || ts != r->ts) {
		r->have = 1;
		r->ts = ts;
		r->ended = 0;
	}
	if (!ev.end || r->ended)
		return 0;
	r->ended = 1;
	out->digit = media_rfc4733_digit(ev.event);
	out->ms = (unsigned)ev.duration * 1000u / rate;
	return 1;
}

/* Pulls one tick from tx on a stream whose timestamp for this tick is now; checks the
 * invariants every packet must keep and hands the packet to r. */
static int tx_tick(struct media_rfc4733_tx *tx, uint32_t now, struct ev_rx *r, unsigned rate,
                   struct rx_digit *out)
{
	uint8_t pl[4];
	int marker = -1, is_new = -1;
	uint32_t off = 0;
	if (!media_rfc4733_tx_next(tx, pl, &marker, &off, &is_new))
		return 0;
	uint32_t ts = now - off;
	if (marker)
		assert_true(is_new);
	if (r->have)
		assert_int_equal(is_new, ts != r->ts);
	return ev_rx_packet(r, pl, ts, rate, out);
}

static void ulaw_roundtrip(int16_t *pcm, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		pcm[i] = media_g711_ulaw_decode(media_g711_ulaw_encode(pcm[i]));
}

static uint32_t lcg_state = 12345;

/* Deterministic uniform noise in [-amp, amp]. */
static int16_t noise(int amp)
{
	lcg_state = lcg_state * 1103515245u + 12345u;
	int v = (int)((lcg_state >> 16) & 0x7fff) - 16384;
	return (int16_t)(v * amp / 16384);
}

static void expect_digits(const struct rx_digit *d, unsigned n, unsigned want_ms, const char *where)
{
	char got[NDIGITS + 1] = {0};
	for (unsigned i = 0; i < n && i < NDIGITS; i++)
		got[i] = d[i].digit;
	print_message("%s: %u digits \"%s\", ms:", where, n, got);
	for (unsigned i = 0; i < n; i++)
		print_message(" %u", d[i].ms);
	print_message("\n");
	assert_int_equal(n, NDIGITS);
	assert_string_equal(got, DIGITS);
	for (unsigned i = 0; i < n; i++) {
		int err = (int)d[i].ms - (int)want_ms;
		if (err < -TOL_MS || err > TOL_MS)
			fail_msg("%s: digit %c lasted %u ms, sent %u ms", where, d[i].digit,
			         d[i].ms, want_ms);
	}
}

/* Writes two tones (dBm0 each; < -100 leaves one out) into pcm, time origin at start. */
static void two_tones(int16_t *pcm, unsigned n, unsigned start, unsigned rate, double f1,
                      double db1, double f2, double db2)
{
	double a1 = db1 < -100 ? 0 : PEAK0 * pow(10, db1 / 20);
	double a2 = db2 < -100 ? 0 : PEAK0 * pow(10, db2 / 20);
	for (unsigned i = 0; i < n; i++) {
		double t = (double)(start + i) / rate;
		pcm[i] = (int16_t)lrint(a1 * sin(2 * M_PI * f1 * t) + a2 * sin(2 * M_PI * f2 * t));
	}
}

/* Level in dBm0 of the component at f (Goertzel over the whole buffer). */
static double tone_dbm0(const int16_t *pcm, unsigned n, unsigned rate, double f)
{
	double c = 2 * cos(2 * M_PI * f / rate), s1 = 0, s2 = 0;
	for (unsigned i = 0; i < n; i++) {
		double s = pcm[i] + c * s1 - s2;
		s2 = s1;
		s1 = s;
	}
	double power = s1 * s1 + s2 * s2 - c * s1 * s2;
	double amp = 2 * sqrt(power) / n;
	return 20 * log10(amp / PEAK0);
}

/* ---- RFC 4733 sending ---- */

static void test_dtmf_event_codes(void **state)
{
	(void)state;
	for (int i = 0; i < 16; i++) {
		assert_int_equal(media_dtmf_event_code(DIGITS[i]), i);
		assert_int_equal(media_rfc4733_digit((uint8_t)i), DIGITS[i]);
	}
	assert_int_equal(media_dtmf_event_code('a'), 12);
	assert_int_equal(media_dtmf_event_code('d'), 15);
	assert_int_equal(media_dtmf_event_code('E'), -EINVAL);
	assert_int_equal(media_dtmf_event_code('x'), -EINVAL);
	assert_int_equal(media_dtmf_event_code('\0'), -EINVAL);
}

static void test_dtmf_rfc4733_packet_sequence(void **state)
{
	(void)state;
	struct media_rfc4733_tx tx;
	media_rfc4733_tx_init(&tx);
	uint8_t pl[4];
	int marker, is_new;
	uint32_t off;
	assert_int_equal(media_rfc4733_tx_next(&tx, pl, &marker, &off, &is_new), 0);
	assert_false(media_rfc4733_tx_busy(&tx));

	/* '5' for 100 ms then '#' for 40 ms, 8 kHz clock. */
	assert_int_equal(media_rfc4733_tx_start(&tx, '5', 100, 8000), 0);
	assert_int_equal(media_rfc4733_tx_start(&tx, '#', 40, 8000), 0);
	assert_true(media_rfc4733_tx_busy(&tx));
	static const struct {
		uint8_t event, end, marker, is_new;
		uint16_t dur;
		uint32_t off;
	} want[] = {
	    {5, 0, 1, 1, 160, 0},    {5, 0, 0, 0, 320, 160},  {5, 0, 0, 0, 480, 320},
	    {5, 0, 0, 0, 640, 480},  {5, 1, 0, 0, 800, 640},  {5, 1, 0, 0, 800, 800},
	    {5, 1, 0, 0, 800, 960},  {11, 0, 1, 1, 160, 0},   {11, 1, 0, 0, 320, 160},
	    {11, 1, 0, 0, 320, 320}, {11, 1, 0, 0, 320, 480},
	};
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(media_rfc4733_tx_next(&tx, pl, &marker, &off, &is_new), 1);
		struct media_dtmf_event ev;
		assert_int_equal(media_rfc4733_parse(pl, 4, &ev), 0);
		assert_int_equal(ev.event, want[i].event);
		assert_int_equal(ev.end, want[i].end);
		assert_int_equal(ev.volume, MEDIA_RFC4733_VOLUME);
		assert_int_equal(ev.duration, want[i].dur);
		assert_int_equal(marker, want[i].marker);
		assert_int_equal(is_new, want[i].is_new);
		assert_int_equal(off, want[i].off);
	}
	assert_int_equal(media_rfc4733_tx_next(&tx, pl, &marker, &off, &is_new), 0);
	assert_false(media_rfc4733_tx_busy(&tx));
}

/* An event longer than the 16-bit duration field is cut into segments (RFC 4733
 * §2.5.1.3): a 2 s digit on a 48 kHz clock is 96000 units. */
static void test_dtmf_rfc4733_long_event_segments(void **state)
{
	(void)state;
	struct media_rfc4733_tx tx;
	media_rfc4733_tx_init(&tx);
	assert_int_equal(media_rfc4733_tx_start(&tx, '0', 2000, 48000), 0);
	uint8_t pl[4];
	int marker, is_new;
	uint32_t off, now = 0x7fffff00u;
	uint32_t ts[4];
	unsigned segs = 0, packets = 0, ends = 0, markers = 0;
	uint16_t last_dur = 0;
	for (; media_rfc4733_tx_next(&tx, pl, &marker, &off, &is_new); now += 960, packets++) {
		struct media_dtmf_event ev;
		assert_int_equal(media_rfc4733_parse(pl, 4, &ev), 0);
		if (is_new) {
			assert_true(segs < 4);
			ts[segs++] = now - off;
		} else {
			assert_int_equal(now - off, ts[segs - 1]);
			assert_true(ev.duration >= last_dur);
		}
		markers += (unsigned)marker;
		ends += ev.end;
		last_dur = ev.duration;
	}
	assert_int_equal(segs, 2);
	assert_int_equal(markers, 1);
	assert_int_equal(ts[1] - ts[0], 0xffffu);
	assert_int_equal(ends, 3);
	assert_int_equal(last_dur, 96000 - 0xffff);
	assert_int_equal(packets, 100 + 2);
}

static void test_dtmf_rfc4733_rejects(void **state)
{
	(void)state;
	struct media_rfc4733_tx tx;
	media_rfc4733_tx_init(&tx);
	assert_int_equal(media_rfc4733_tx_start(&tx, 'E', 100, 8000), -EINVAL);
	assert_int_equal(media_rfc4733_tx_start(&tx, '1', 100, 0), -EINVAL);
	assert_int_equal(media_rfc4733_tx_start(&tx, '1', 100, 8001), -EINVAL);
	assert_int_equal(media_rfc4733_tx_start(&tx, '1', 100, 96000), -EINVAL);
	assert_false(media_rfc4733_tx_busy(&tx));
	/* Too short a digit is lengthened to 40 ms (320 units). */
	assert_int_equal(media_rfc4733_tx_start(&tx, '1', 5, 8000), 0);
	for (unsigned i = 1; i < MEDIA_DTMF_QUEUE; i++)
		assert_int_equal(media_rfc4733_tx_start(&tx, '2', 100, 16000), 0);
	assert_int_equal(media_rfc4733_tx_start(&tx, '3', 100, 8000), -ENOSPC);
	uint8_t pl[4];
	int marker, is_new;
	uint32_t off;
	struct media_dtmf_event ev;
	do {
		assert_int_equal(media_rfc4733_tx_next(&tx, pl, &marker, &off, &is_new), 1);
		assert_int_equal(media_rfc4733_parse(pl, 4, &ev), 0);
	} while (!ev.end);
	assert_int_equal(ev.duration, 320);
}

/* ---- In-band generation ---- */

static void test_dtmf_gen_level_timing(void **state)
{
	(void)state;
	struct media_dtmf_gen *g = NULL;
	assert_int_equal(media_dtmf_gen_create(&g), 0);
	int16_t buf[320];
	assert_int_equal(media_dtmf_gen_fill(g, buf, FRAME, 44100), -EINVAL);
	assert_int_equal(media_dtmf_gen_start(g, 'X', 100), -EINVAL);

	for (unsigned rate = 8000; rate <= 16000; rate += 8000) {
		/* '9' = 852 + 1477 Hz for 200 ms; the audio is a steady 0x7abc pattern (above any
		 * tone sample) that the generator must replace during the digit and its gap and
		 * leave alone after. */
		unsigned fs = rate / 50, total = 0;
		int first_tone = -1, last_tone = -1, first_untouched = -1;
		int16_t audio[16000 * 4 / 10];
		assert_int_equal(media_dtmf_gen_start(g, '9', 200), 0);
		assert_true(media_dtmf_gen_busy(g));
		for (unsigned f = 0; f < 20; f++) {
			for (unsigned i = 0; i < fs; i++)
				buf[i] = 0x7abc;
			int r = media_dtmf_gen_fill(g, buf, fs, rate);
			assert_int_equal(r, f < 13 ? 1 : 0); /* 200 + 60 ms = 13 frames */
			for (unsigned i = 0; i < fs; i++, total++) {
				if (buf[i] == 0x7abc) {
					if (first_untouched < 0)
						first_untouched = (int)total;
				} else {
					/* Nothing written after the generator went idle. */
					assert_int_equal(first_untouched, -1);
					if (buf[i] != 0) {
						if (first_tone < 0)
							first_tone = (int)total;
						last_tone = (int)total;
					}
				}
				if (total < sizeof(audio) / sizeof(audio[0]))
					audio[total] = buf[i];
			}
		}
		assert_false(media_dtmf_gen_busy(g));
		/* 200 ms of tone (1 ms ramps), then 60 ms of written silence, then the audio
		 * is left alone. */
		assert_in_range(first_tone, 0, (int)rate / 1000);
		assert_in_range(last_tone, (int)(rate / 5 - rate / 1000), (int)(rate / 5) - 1);
		assert_int_equal(first_untouched, (int)(rate * 260 / 1000));
		/* Each tone at -10 dBm0, measured over the steady middle 160 ms. */
		const int16_t *mid = audio + rate / 50;
		double lo = tone_dbm0(mid, rate * 160 / 1000, rate, 852);
		double hi = tone_dbm0(mid, rate * 160 / 1000, rate, 1477);
		print_message("rate %u: 852 Hz %.2f dBm0, 1477 Hz %.2f dBm0\n", rate, lo, hi);
		assert_true(fabs(lo - MEDIA_DTMF_LEVEL) < 0.3);
		assert_true(fabs(hi - MEDIA_DTMF_LEVEL) < 0.3);
	}

	/* The queue holds MEDIA_DTMF_QUEUE digits. */
	for (unsigned i = 0; i < MEDIA_DTMF_QUEUE; i++)
		assert_int_equal(media_dtmf_gen_start(g, '1', 40), 0);
	assert_int_equal(media_dtmf_gen_start(g, '1', 40), -ENOSPC);
	media_dtmf_gen_destroy(g);
	media_dtmf_gen_destroy(NULL);
}

/* ---- Relay chains ---- */

/* RFC 4733 in -> in-band out (through µ-law) -> detected -> RFC 4733 out, 8 kHz: what a
 * bridge between a telephone-event leg and one without does, in both directions. */
static void test_dtmf_chain_rfc4733_inband_rfc4733(void **state)
{
	(void)state;
	const unsigned ms = 100;
	struct media_rfc4733_tx tx1, tx2;
	struct media_dtmf_gen *g = NULL;
	struct media_dtmf_det *d = NULL;
	media_rfc4733_tx_init(&tx1);
	media_rfc4733_tx_init(&tx2);
	assert_int_equal(media_dtmf_gen_create(&g), 0);
	assert_int_equal(media_dtmf_det_create(&d), 0);
	for (unsigned i = 0; i < NDIGITS; i++)
		assert_int_equal(media_rfc4733_tx_start(&tx1, DIGITS[i], ms, 8000), 0);

	struct ev_rx r1 = {0}, r2 = {0};
	struct rx_digit relayed[NDIGITS], inband[NDIGITS], fin[NDIGITS];
	unsigned n_relayed = 0, n_inband = 0, n_fin = 0;
	for (unsigned tick = 0; tick < 1000; tick++) {
		uint32_t now = 0xfffff000u + tick * FRAME; /* wraps on the way */
		struct rx_digit x;
		if (tx_tick(&tx1, now, &r1, 8000, &x)) {
			assert_true(n_relayed < NDIGITS);
			relayed[n_relayed++] = x;
			assert_int_equal(media_dtmf_gen_start(g, x.digit, x.ms), 0);
		}
		int16_t pcm[FRAME];
		for (unsigned i = 0; i < FRAME; i++)
			pcm[i] = noise(30); /* a quiet line, about -60 dBm0 */
		media_dtmf_gen_fill(g, pcm, FRAME, 8000);
		ulaw_roundtrip(pcm, FRAME);
		struct media_dtmf_digit got[4];
		unsigned k = media_dtmf_det_feed(d, pcm, FRAME, got, 4);
		for (unsigned j = 0; j < k; j++) {
			assert_true(n_inband < NDIGITS);
			inband[n_inband].digit = got[j].digit;
			inband[n_inband++].ms = got[j].duration_ms;
			assert_int_equal(
			    media_rfc4733_tx_start(&tx2, got[j].digit, got[j].duration_ms, 8000),
			    0);
		}
		if (tx_tick(&tx2, now + 12345, &r2, 8000, &x)) {
			assert_true(n_fin < NDIGITS);
			fin[n_fin++] = x;
		}
	}
	assert_false(media_rfc4733_tx_busy(&tx1) || media_rfc4733_tx_busy(&tx2));
	assert_false(media_dtmf_gen_busy(g));
	expect_digits(relayed, n_relayed, ms, "rfc4733 in");
	expect_digits(inband, n_inband, ms, "in-band");
	expect_digits(fin, n_fin, ms, "rfc4733 out");
	assert_int_equal(media_dtmf_det_lost(d), 0);
	media_dtmf_gen_destroy(g);
	media_dtmf_det_destroy(d);
}

/* In-band at `rate` (16 kHz goes through the 16->8 kHz resampler the product uses) ->
 * detected -> RFC 4733 -> parsed -> in-band at 8 kHz through µ-law -> detected. */
static void chain_inband_rfc4733_inband(unsigned rate)
{
	const unsigned ms = 100, fs = rate / 50;
	struct media_dtmf_gen *g1 = NULL, *g2 = NULL;
	struct media_dtmf_det *d1 = NULL, *d2 = NULL;
	struct media_resampler *rs = NULL;
	struct media_rfc4733_tx tx;
	media_rfc4733_tx_init(&tx);
	assert_int_equal(media_dtmf_gen_create(&g1), 0);
	assert_int_equal(media_dtmf_gen_create(&g2), 0);
	assert_int_equal(media_dtmf_det_create(&d1), 0);
	assert_int_equal(media_dtmf_det_create(&d2), 0);
	if (rate != 8000)
		assert_int_equal(media_resampler_create(&rs, rate, 8000, -1), 0);
	for (unsigned i = 0; i < NDIGITS; i++)
		assert_int_equal(media_dtmf_gen_start(g1, DIGITS[i], ms), 0);

	struct ev_rx r = {0};
	struct rx_digit first[NDIGITS], relayed[NDIGITS], fin[NDIGITS];
	unsigned n_first = 0, n_relayed = 0, n_fin = 0;
	for (unsigned tick = 0; tick < 1000; tick++) {
		int16_t in[MEDIA_PCM_FRAME_MAX], pcm[FRAME];
		for (unsigned i = 0; i < fs; i++)
			in[i] = noise(30);
		media_dtmf_gen_fill(g1, in, fs, rate);
		/* The resampler may hand out a little less than a frame at first (its filter
		 * delay); the detector takes any count. */
		unsigned got_n = FRAME;
		if (rs)
			got_n = media_resample(rs, in, fs, pcm, FRAME);
		else
			memcpy(pcm, in, sizeof(pcm));
		assert_in_range(got_n, FRAME / 2, FRAME);
		ulaw_roundtrip(pcm, got_n);
		struct media_dtmf_digit got[4];
		unsigned k = media_dtmf_det_feed(d1, pcm, got_n, got, 4);
		for (unsigned j = 0; j < k; j++) {
			assert_true(n_first < NDIGITS);
			first[n_first].digit = got[j].digit;
			first[n_first++].ms = got[j].duration_ms;
			assert_int_equal(
			    media_rfc4733_tx_start(&tx, got[j].digit, got[j].duration_ms, 8000), 0);
		}
		struct rx_digit x;
		if (tx_tick(&tx, tick * FRAME, &r, 8000, &x)) {
			assert_true(n_relayed < NDIGITS);
			relayed[n_relayed++] = x;
			assert_int_equal(media_dtmf_gen_start(g2, x.digit, x.ms), 0);
		}
		for (unsigned i = 0; i < FRAME; i++)
			pcm[i] = noise(30);
		media_dtmf_gen_fill(g2, pcm, FRAME, 8000);
		ulaw_roundtrip(pcm, FRAME);
		k = media_dtmf_det_feed(d2, pcm, FRAME, got, 4);
		for (unsigned j = 0; j < k; j++) {
			assert_true(n_fin < NDIGITS);
			fin[n_fin].digit = got[j].digit;
			fin[n_fin++].ms = got[j].duration_ms;
		}
	}
	char where[64];
	snprintf(where, sizeof(where), "in-band %u Hz", rate);
	expect_digits(first, n_first, ms, where);
	expect_digits(relayed, n_relayed, ms, "rfc4733");
	expect_digits(fin, n_fin, ms, "in-band again");
	media_resampler_destroy(rs);
	media_dtmf_gen_destroy(g1);
	media_dtmf_gen_destroy(g2);
	media_dtmf_det_destroy(d1);
	media_dtmf_det_destroy(d2);
}

static void test_dtmf_chain_inband8k_rfc4733_inband(void **state)
{
	(void)state;
	chain_inband_rfc4733_inband(8000);
}

static void test_dtmf_chain_inband16k_rfc4733_inband(void **state)
{
	(void)state;
	chain_inband_rfc4733_inband(16000);
}

/* ---- Detection ---- */

/* Runs the whole keypad, 100 ms digits with 100 ms pauses, through a detector, feeding
 * the audio in pieces of `chunk` samples. */
static unsigned detect_keypad(unsigned chunk, double db_lo, double db_hi, struct rx_digit *out)
{
	enum { N = NDIGITS * 1600 + 1600 };
	static int16_t pcm[N];
	static const double row[4] = {697, 770, 852, 941}, col[4] = {1209, 1336, 1477, 1633};
	static const char *keys = "123A456B789C*0#D";
	memset(pcm, 0, sizeof(pcm));
	for (unsigned i = 0; i < NDIGITS; i++) {
		unsigned p = (unsigned)(strchr(keys, DIGITS[i]) - keys);
		two_tones(pcm + 800 + i * 1600, 800, 0, 8000, row[p / 4], db_lo, col[p % 4], db_hi);
	}
	ulaw_roundtrip(pcm, N);
	struct media_dtmf_det *d = NULL;
	assert_int_equal(media_dtmf_det_create(&d), 0);
	unsigned n = 0;
	for (unsigned pos = 0; pos < N; pos += chunk) {
		unsigned len = N - pos < chunk ? N - pos : chunk;
		struct media_dtmf_digit got[4];
		unsigned k = media_dtmf_det_feed(d, pcm + pos, len, got, 4);
		for (unsigned j = 0; j < k && n < NDIGITS; j++) {
			out[n].digit = got[j].digit;
			out[n++].ms = got[j].duration_ms;
		}
	}
	assert_int_equal(media_dtmf_det_current(d), '\0');
	media_dtmf_det_destroy(d);
	return n;
}

static void test_dtmf_det_chunking_independent(void **state)
{
	(void)state;
	static const unsigned chunks[] = {1, 7, 101, 102, 160, 333, 4000};
	struct rx_digit ref[NDIGITS], got[NDIGITS];
	unsigned n_ref = detect_keypad(FRAME, -10, -10, ref);
	expect_digits(ref, n_ref, 100, "160-sample chunks");
	for (unsigned c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		unsigned n = detect_keypad(chunks[c], -10, -10, got);
		assert_int_equal(n, n_ref);
		for (unsigned i = 0; i < n; i++) {
			assert_int_equal(got[i].digit, ref[i].digit);
			assert_int_equal(got[i].ms, ref[i].ms);
		}
	}
}

static void test_dtmf_det_weak_digits(void **state)
{
	(void)state;
	struct rx_digit got[NDIGITS];
	/* -25 dBm0 per tone (Q.24 asks for reception down to about this level). */
	expect_digits(got, detect_keypad(FRAME, -25, -25, got), 100, "-25 dBm0");
	/* -45 dBm0 per tone is below the detector's -36 dBm0 per-tone threshold. */
	assert_int_equal(detect_keypad(FRAME, -45, -45, got), 0);
}

static void test_dtmf_det_twist(void **state)
{
	(void)state;
	struct rx_digit got[NDIGITS];
	/* High group 6 dB under the low group (normal twist; spandsp accepts 8 dB). */
	expect_digits(got, detect_keypad(FRAME, -8, -14, got), 100, "6 dB normal twist");
	/* High group 3 dB over the low group (reverse twist; accepted up to 4 dB). */
	expect_digits(got, detect_keypad(FRAME, -12, -9, got), 100, "3 dB reverse twist");
	/* 12 dB either way is not a digit. */
	assert_int_equal(detect_keypad(FRAME, -6, -18, got), 0);
	assert_int_equal(detect_keypad(FRAME, -18, -6, got), 0);
}

static void test_dtmf_det_out_full(void **state)
{
	(void)state;
	/* Three digits end inside one call that has room for one. */
	int16_t pcm[8000];
	memset(pcm, 0, sizeof(pcm));
	two_tones(pcm + 400, 800, 0, 8000, 697, -10, 1209, -10);
	two_tones(pcm + 2400, 800, 0, 8000, 770, -10, 1336, -10);
	two_tones(pcm + 4400, 800, 0, 8000, 852, -10, 1477, -10);
	struct media_dtmf_det *d = NULL;
	assert_int_equal(media_dtmf_det_create(&d), 0);
	struct media_dtmf_digit got[1];
	assert_int_equal(media_dtmf_det_feed(d, pcm, 8000, got, 1), 1);
	assert_int_equal(got[0].digit, '1');
	assert_int_equal(media_dtmf_det_lost(d), 2);
	assert_int_equal(media_dtmf_det_feed(d, pcm, 8000, NULL, 0), 0);
	assert_int_equal(media_dtmf_det_lost(d), 5);
	media_dtmf_det_destroy(d);
	media_dtmf_det_destroy(NULL);
}

static int16_t *read_raw(const char *path, unsigned *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	int16_t *p = malloc((size_t)len + 2);
	assert_non_null(p);
	*n = (unsigned)(fread(p, 1, (size_t)len, f) / 2);
	fclose(f);
	return p;
}

/* Counts digits the detector reports over pcm (as a fresh call would see it). */
static unsigned count_digits(const int16_t *pcm, unsigned n)
{
	struct media_dtmf_det *d = NULL;
	assert_int_equal(media_dtmf_det_create(&d), 0);
	unsigned found = 0;
	for (unsigned pos = 0; pos + FRAME <= n; pos += FRAME) {
		struct media_dtmf_digit got[4];
		unsigned k = media_dtmf_det_feed(d, pcm + pos, FRAME, got, 4);
		for (unsigned j = 0; j < k; j++)
			print_message("false digit '%c' (%u ms) at %.2f s\n", got[j].digit,
			              got[j].duration_ms, pos / 8000.0);
		found += k;
	}
	if (media_dtmf_det_current(d))
		found++;
	media_dtmf_det_destroy(d);
	return found;
}

/* Talk-off: speech (with spoken numbers, English and Spanish, several voices), a steady
 * 1 kHz tone and noise must not produce digits. */
static void test_dtmf_det_no_false_positives(void **state)
{
	(void)state;
	enum { SECS = 12, N = SECS * 8000 };
	int16_t *pcm = malloc(N * sizeof(*pcm));
	assert_non_null(pcm);

	two_tones(pcm, N, 0, 8000, 1000, -10, 0, -200);
	assert_int_equal(count_digits(pcm, N), 0);
	two_tones(pcm, N, 0, 8000, 1000, 0, 0, -200);
	assert_int_equal(count_digits(pcm, N), 0);
	for (unsigned i = 0; i < N; i++)
		pcm[i] = noise(8000);
	assert_int_equal(count_digits(pcm, N), 0);
	free(pcm);

	if (system("command -v espeak-ng >/dev/null && command -v sox >/dev/null") != 0)
		fail_msg("espeak-ng and sox are needed for the talk-off test (declared "
		         "dependencies: apt-get install espeak-ng sox)");
	char dir[] = "/tmp/vacs-dtmf-XXXXXX";
	assert_non_null(mkdtemp(dir));
	static const struct {
		const char *voice;
		int speed;
		const char *text;
	} talk[] = {
	    {"en-us", 160,
	     "Please call me back at five five five, one two three four. My account number "
	     "is nine eight seven six five four. The meeting is at three thirty, room two "
	     "oh one. Thank you, goodbye."},
	    {"en-us+f3", 190,
	     "Hi, this is Maria. Press one for sales, two for support, or zero for the "
	     "operator. Seven, eight, nine, star, pound."},
	    {"es", 150,
	     "Por favor marque uno, dos, tres. Mi número es cinco cinco cinco, cuatro cuatro "
	     "ocho nueve. Gracias, hasta luego."},
	    {"es-419+m3", 175,
	     "Bueno, sí, diga. Le llamo del banco, su clave es seis siete "
	     "ocho, almohadilla, asterisco."},
	};
	unsigned total_samples = 0;
	for (unsigned t = 0; t < sizeof(talk) / sizeof(talk[0]); t++) {
		char cmd[1024], path[128];
		snprintf(path, sizeof(path), "%s/talk%u.raw", dir, t);
		snprintf(cmd, sizeof(cmd),
		         "espeak-ng -v %s -s %d --stdout '%s' | sox -R -G -t wav - -t raw -r 8000 "
		         "-e signed-integer -b 16 -c 1 %s",
		         talk[t].voice, talk[t].speed, talk[t].text, path);
		assert_int_equal(system(cmd), 0);
		unsigned n = 0;
		int16_t *s = read_raw(path, &n);
		assert_non_null(s);
		assert_true(n > 8000);
		ulaw_roundtrip(s, n);
		assert_int_equal(count_digits(s, n), 0);
		total_samples += n;
		free(s);
		unlink(path);
	}
	rmdir(dir);
	print_message("talk-off: %.1f s of speech, %d s each of tone and noise: no digits\n",
	              total_samples / 8000.0, SECS);
	assert_true(total_samples >= 10 * 8000);
}

/* ---- Hot path ---- */

static void test_dtmf_no_alloc_per_frame(void **state)
{
	(void)state;
	struct media_dtmf_gen *g8 = NULL, *g16 = NULL;
	struct media_dtmf_det *d = NULL;
	struct media_rfc4733_tx tx;
	media_rfc4733_tx_init(&tx);
	assert_int_equal(media_dtmf_gen_create(&g8), 0);
	assert_int_equal(media_dtmf_gen_create(&g16), 0);
	assert_int_equal(media_dtmf_det_create(&d), 0);
	unsigned long allocs = alloc_count();
	uint64_t mem_allocs = mem_total_allocs();
	unsigned detected = 0, packets = 0;
	for (unsigned f = 0; f < 10000; f++) {
		int16_t pcm[FRAME], wide[2 * FRAME];
		if (f % 20 == 0) {
			assert_int_equal(media_dtmf_gen_start(g8, DIGITS[f / 20 % 16], 100), 0);
			assert_int_equal(media_dtmf_gen_start(g16, DIGITS[f / 20 % 16], 100), 0);
		}
		memset(pcm, 0, sizeof(pcm));
		memset(wide, 0, sizeof(wide));
		media_dtmf_gen_fill(g8, pcm, FRAME, 8000);
		media_dtmf_gen_fill(g16, wide, 2 * FRAME, 16000);
		ulaw_roundtrip(pcm, FRAME);
		struct media_dtmf_digit got[4];
		unsigned k = media_dtmf_det_feed(d, pcm, FRAME, got, 4);
		for (unsigned j = 0; j < k; j++)
			assert_int_equal(
			    media_rfc4733_tx_start(&tx, got[j].digit, got[j].duration_ms, 8000), 0);
		detected += k;
		uint8_t pl[4];
		int m, is_new;
		uint32_t off;
		packets += (unsigned)media_rfc4733_tx_next(&tx, pl, &m, &off, &is_new);
	}
	assert_int_equal(alloc_count(), allocs);
	assert_int_equal(mem_total_allocs(), mem_allocs);
	assert_int_equal(detected, 10000 / 20);
	assert_true(packets >= detected * 7);
	media_dtmf_gen_destroy(g8);
	media_dtmf_gen_destroy(g16);
	media_dtmf_det_destroy(d);
}

#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_dtmf_event_codes),
	    T(test_dtmf_rfc4733_packet_sequence),
	    T(test_dtmf_rfc4733_long_event_segments),
	    T(test_dtmf_rfc4733_rejects),
	    T(test_dtmf_gen_level_timing),
	    T(test_dtmf_chain_rfc4733_inband_rfc4733),
	    T(test_dtmf_chain_inband8k_rfc4733_inband),
	    T(test_dtmf_chain_inband16k_rfc4733_inband),
	    T(test_dtmf_det_chunking_independent),
	    T(test_dtmf_det_weak_digits),
	    T(test_dtmf_det_twist),
	    T(test_dtmf_det_out_full),
	    T(test_dtmf_det_no_false_positives),
	    T(test_dtmf_no_alloc_per_frame),
	};
	return cmocka_run_group_tests_name("dtmf", tests, NULL, NULL);
}
