/* Unit tests: codecs, resampling chains, loss concealment, and no allocation per frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/test_alloc.h"

#include "core/mem.h"
#include "media/codec_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Counting every heap call of the process ---- */

/* ---- Test signal and its analysis ---- */

#define TONE_HZ  1000.0
#define TONE_AMP 10362.0 /* peak -10 dBFS */
#define TONE_RMS (TONE_AMP / M_SQRT2)

/* n samples of the test tone at rate, continuing from sample number start. */
static void tone(unsigned rate, unsigned long start, int16_t *out, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		out[i] =
		    (int16_t)lrint(TONE_AMP * sin(2 * M_PI * TONE_HZ * (double)(start + i) / rate));
}

/* Least-squares fit of a*cos + b*sin at f (x has its mean removed): the fitted sine's
 * energy. */
static double sine_energy(const double *x, size_t n, unsigned rate, double f)
{
	double cc = 0, ss = 0, cs = 0, xc = 0, xs = 0;
	double w = 2 * M_PI * f / rate;
	for (size_t i = 0; i < n; i++) {
		double c = cos(w * (double)i), s = sin(w * (double)i);
		cc += c * c;
		ss += s * s;
		cs += c * s;
		xc += x[i] * c;
		xs += x[i] * s;
	}
	double det = cc * ss - cs * cs;
	double a = (xc * ss - xs * cs) / det, b = (xs * cc - xc * cs) / det;
	return a * xc + b * xs;
}

struct tone_fit {
	double freq;     /* Hz of the best-fitting sine */
	double level_db; /* RMS of the signal relative to the input tone's RMS */
	double snr_db;   /* fitted sine energy over the residual energy */
};

/* Measures a tone near TONE_HZ in x: coarse 1 Hz scan over +-100 Hz, then a ternary search
 * of the fitted energy to 1 mHz. */
static struct tone_fit tone_fit(const int16_t *pcm, size_t n, unsigned rate)
{
	double *x = malloc(n * sizeof(*x)), mean = 0, total = 0;
	assert_non_null(x);
	for (size_t i = 0; i < n; i++)
		mean += pcm[i];
	mean /= (double)n;
	for (size_t i = 0; i < n; i++) {
		x[i] = pcm[i] - mean;
		total += x[i] * x[i];
	}
	double best = TONE_HZ - 100, best_e = -1;
	for (double f = TONE_HZ - 100; f <= TONE_HZ + 100; f += 1) {
		double e = sine_energy(x, n, rate, f);
		if (e > best_e) {
			best_e = e;
			best = f;
		}
	}
	double lo = best - 1, hi = best + 1;
	while (hi - lo > 1e-3) {
		double m1 = lo + (hi - lo) / 3, m2 = hi - (hi - lo) / 3;
		if (sine_energy(x, n, rate, m1) < sine_energy(x, n, rate, m2))
			lo = m1;
		else
			hi = m2;
	}
	struct tone_fit t;
	t.freq = (lo + hi) / 2;
	double e = sine_energy(x, n, rate, t.freq);
	t.level_db = 10 * log10(total / (double)n / (TONE_RMS * TONE_RMS));
	t.snr_db = 10 * log10(e / fmax(total - e, 1e-9));
	free(x);
	return t;
}

/* ---- Resampler framing ---- */

/* codec_int.h: one 20 ms frame in gives exactly one 20 ms frame out, from the first frame
 * on (the filter's delay shows as leading zeros, not as a short first frame). */
static void test_codec_resampler_whole_frames(void **state)
{
	(void)state;
	static const unsigned rates[] = {8000, 16000, 24000, 48000};
	int16_t in[MEDIA_PCM_FRAME_MAX], out[2 * MEDIA_PCM_FRAME_MAX];
	for (size_t a = 0; a < 4; a++) {
		for (size_t b = 0; b < 4; b++) {
			struct media_resampler *r;
			assert_int_equal(media_resampler_create(&r, rates[a], rates[b], -1), 0);
			for (unsigned f = 0; f < 3; f++) {
				tone(rates[a], (unsigned long)f * rates[a] / 50, in, rates[a] / 50);
				unsigned got =
				    media_resample(r, in, rates[a] / 50, out, sizeof(out) / 2);
				if (got != rates[b] / 50)
					print_message("# %u -> %u Hz, frame %u: %u samples out\n",
					              rates[a], rates[b], f, got);
				assert_int_equal(got, rates[b] / 50);
			}
			media_resampler_destroy(r);
		}
	}
}

/* ---- Chains ---- */

struct chain {
	const char *name;
	unsigned rate;      /* PCM rate at both ends */
	enum media_codec c; /* encode + decode at `rate` first, or NONE */
	unsigned mid_rate;  /* then resample rate -> mid_rate -> rate, or 0 */
	int recode;         /* then encode + decode with c again (a second coder) */
	double min_snr_db;  /* floor asserted; why each one is what it is: see chains[] */
};

struct chain_run {
	struct media_coder *k1, *k2;
	struct media_resampler *up, *down;
};

static void chain_open(const struct chain *c, struct chain_run *r)
{
	memset(r, 0, sizeof(*r));
	struct media_coder_opts o = {.pcm_rate = c->rate, .opus_complexity = -1};
	if (c->c != MEDIA_CODEC_NONE)
		assert_int_equal(media_coder_create(&r->k1, c->c, &o), 0);
	if (c->recode)
		assert_int_equal(media_coder_create(&r->k2, c->c, &o), 0);
	if (c->mid_rate) {
		assert_int_equal(media_resampler_create(&r->up, c->rate, c->mid_rate, -1), 0);
		assert_int_equal(media_resampler_create(&r->down, c->mid_rate, c->rate, -1), 0);
	}
}

static void chain_close(struct chain_run *r)
{
	media_coder_destroy(r->k1);
	media_coder_destroy(r->k2);
	media_resampler_destroy(r->up);
	media_resampler_destroy(r->down);
}

static void codec_pass(struct media_coder *k, int16_t *pcm, unsigned n)
{
	uint8_t pay[MEDIA_CODED_FRAME_MAX];
	int len = media_coder_encode(k, pcm, pay, sizeof(pay));
	assert_true(len > 0);
	assert_int_equal(media_coder_decode(k, pay, (size_t)len, pcm, n), (int)n);
}

/* One 20 ms frame through the chain, in place. */
static void chain_frame(const struct chain *c, struct chain_run *r, int16_t *pcm)
{
	unsigned n = c->rate / 50;
	if (r->k1)
		codec_pass(r->k1, pcm, n);
	if (r->up) {
		int16_t mid[MEDIA_PCM_FRAME_MAX];
		unsigned m = c->mid_rate / 50;
		assert_int_equal(media_resample(r->up, pcm, n, mid, m), m);
		assert_int_equal(media_resample(r->down, mid, m, pcm, n), n);
	}
	if (r->k2)
		codec_pass(r->k2, pcm, n);
}

/* SNR floors, a few dB under what was measured (in brackets; gcc 12, opus 1.3.1, spandsp
 * 0.0.6, bcg729 1.1.1, speexdsp 1.2.1), so a real regression fails and library rounding
 * does not:
 *  - G.711 is 8-bit log quantisation: [PCMU 44.1, PCMA 41.4 dB] for this -10 dBFS tone.
 *  - G.722 at 64 kbit/s, sub-band ADPCM: [47.7 dB].
 *  - Opus at 32 kbit/s is perceptual: a pure tone is easy for it [16k 49.5, 48k 45.1 dB],
 *    but its bit allocation may change between library versions: 10 dB of margin.
 *  - G.729 is a vocoder (CELP): it keeps pitch and spectral envelope rather than the
 *    waveform, so the SNR is low [26.9 dB]; frequency and level still hold [-0.53 dB].
 *  - speexdsp at quality 3 (VoIP) round trips are near the 16-bit floor [85.6-86.5 dB].
 *  - PCMU -> 16 kHz -> PCMU, the path of a PSTN leg through the AI side, must stay over
 *    30 dB; [44.1 dB]: the resampling round trip is accurate enough that the second
 *    µ-law encoding lands on the same codes as the first. */
static const struct chain chains[] = {
    {"PCMU", 8000, MEDIA_CODEC_PCMU, 0, 0, 40},
    {"PCMA", 8000, MEDIA_CODEC_PCMA, 0, 0, 38},
    {"G722", 16000, MEDIA_CODEC_G722, 0, 0, 44},
    {"Opus@16k", 16000, MEDIA_CODEC_OPUS, 0, 0, 40},
    {"Opus@48k", 48000, MEDIA_CODEC_OPUS, 0, 0, 35},
    {"G729", 8000, MEDIA_CODEC_G729, 0, 0, 20},
    {"8k->16k->8k", 8000, MEDIA_CODEC_NONE, 16000, 0, 75},
    {"8k->24k->8k", 8000, MEDIA_CODEC_NONE, 24000, 0, 75},
    {"8k->48k->8k", 8000, MEDIA_CODEC_NONE, 48000, 0, 75},
    {"16k->48k->16k", 16000, MEDIA_CODEC_NONE, 48000, 0, 75},
    {"PCMU<->16k<->PCMU", 8000, MEDIA_CODEC_PCMU, 16000, 1, 40},
};

#define CHAIN_FRAMES      35u /* 700 ms: 100 ms of warm-up skipped, 600 ms analysed */
#define CHAIN_SKIP_FRAMES 5u

static void test_codec_tone_chains(void **state)
{
	(void)state;
	for (size_t ci = 0; ci < sizeof(chains) / sizeof(chains[0]); ci++) {
		const struct chain *c = &chains[ci];
		unsigned n = c->rate / 50;
		int16_t *out = malloc(CHAIN_FRAMES * n * sizeof(*out));
		assert_non_null(out);
		struct chain_run r;
		chain_open(c, &r);
		for (unsigned f = 0; f < CHAIN_FRAMES; f++) {
			int16_t *pcm = out + f * n;
			tone(c->rate, (unsigned long)f * n, pcm, n);
			chain_frame(c, &r, pcm);
		}
		chain_close(&r);
		struct tone_fit t = tone_fit(out + CHAIN_SKIP_FRAMES * n,
		                             (CHAIN_FRAMES - CHAIN_SKIP_FRAMES) * n, c->rate);
		free(out);
		print_message("# chain %s: freq %.2f Hz level %.2f dB SNR %.1f dB\n", c->name,
		              t.freq, t.level_db, t.snr_db);
		assert_true(fabs(t.freq - TONE_HZ) < TONE_HZ / 100);
		assert_true(fabs(t.level_db) < 1.0);
		assert_true(t.snr_db >= c->min_snr_db);
	}
}

/* ---- Loss concealment ---- */

#define LOSS_FRAMES 40u
#define LOST_FRAME  20u

/* Largest sample-to-sample step in x[0..n). */
static int max_step(const int16_t *x, unsigned n)
{
	int m = 0;
	for (unsigned i = 1; i < n; i++)
		m = abs(x[i] - x[i - 1]) > m ? abs(x[i] - x[i - 1]) : m;
	return m;
}

static double rms(const int16_t *x, unsigned n)
{
	double e = 0;
	for (unsigned i = 0; i < n; i++)
		e += (double)x[i] * x[i];
	return sqrt(e / n);
}

/* SNR of x against the reference ref, dB. */
static double snr_vs(const int16_t *x, const int16_t *ref, unsigned n)
{
	double s = 0, e = 0;
	for (unsigned i = 0; i < n; i++) {
		s += (double)ref[i] * ref[i];
		e += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
	}
	return 10 * log10(s / fmax(e, 1e-9));
}

/* Encodes LOSS_FRAMES of tone with enc; decodes them all with `ref`, and with `k` all but
 * LOST_FRAME, which k conceals (from the next payload when use_next). */
static void run_loss(struct media_coder *enc, struct media_coder *ref, struct media_coder *k,
                     int use_next, int16_t *out_ref, int16_t *out)
{
	unsigned n = media_coder_frame_samples(k), rate = media_coder_pcm_rate(k);
	static uint8_t pay[LOSS_FRAMES][MEDIA_CODED_FRAME_MAX];
	int len[LOSS_FRAMES];
	for (unsigned f = 0; f < LOSS_FRAMES; f++) {
		int16_t pcm[MEDIA_PCM_FRAME_MAX];
		tone(rate, (unsigned long)f * n, pcm, n);
		len[f] = media_coder_encode(enc, pcm, pay[f], sizeof(pay[f]));
		assert_true(len[f] > 0);
	}
	for (unsigned f = 0; f < LOSS_FRAMES; f++) {
		int16_t *o = out + f * n;
		assert_int_equal(
		    media_coder_decode(ref, pay[f], (size_t)len[f], out_ref + f * n, n), (int)n);
		if (f != LOST_FRAME)
			assert_int_equal(media_coder_decode(k, pay[f], (size_t)len[f], o, n),
			                 (int)n);
		else if (use_next)
			assert_int_equal(media_coder_conceal(k, pay[f + 1], (size_t)len[f + 1], o),
			                 (int)n);
		else
			assert_int_equal(media_coder_conceal(k, NULL, 0, o), (int)n);
	}
}

static void test_codec_loss_concealment(void **state)
{
	(void)state;
	static const enum media_codec codecs[] = {MEDIA_CODEC_PCMU, MEDIA_CODEC_PCMA,
	                                          MEDIA_CODEC_G722, MEDIA_CODEC_OPUS,
	                                          MEDIA_CODEC_G729};
	for (size_t i = 0; i < sizeof(codecs) / sizeof(codecs[0]); i++) {
		struct media_coder *enc, *ref, *k;
		assert_int_equal(media_coder_create(&enc, codecs[i], NULL), 0);
		assert_int_equal(media_coder_create(&ref, codecs[i], NULL), 0);
		assert_int_equal(media_coder_create(&k, codecs[i], NULL), 0);
		unsigned n = media_coder_frame_samples(k);
		int16_t *out = calloc(2 * LOSS_FRAMES * n, sizeof(*out)),
		        *out_ref = out + LOSS_FRAMES * n;
		assert_non_null(out);
		run_loss(enc, ref, k, 0, out_ref, out);
		const int16_t *lost = out + LOST_FRAME * n;
		double level = rms(lost, n) / rms(out + (LOST_FRAME - 5) * n, 5 * n);
		int good_step = max_step(out + (LOST_FRAME - 10) * n, 10 * n);
		int loss_step = max_step(lost - n / 4, n + n / 2);
		print_message("# loss %s: concealed level %.2f, largest step %d (good) %d (loss)\n",
		              media_codec_desc(codecs[i])->name, level, good_step, loss_step);
		/* Not silence: the PLCs fade out over 50 ms, the first 20 ms keeps ~0.75-0.8 of the
		 * level. No click: the largest step between samples around and inside the made-up
		 * frame stays near the tone's own (measured 0.93-1.10 of it; a phase jump would
		 * give up to 2.6). */
		assert_true(level > 0.5);
		assert_true(loss_step < good_step * 5 / 4);
		free(out);
		media_coder_destroy(enc);
		media_coder_destroy(ref);
		media_coder_destroy(k);
	}
}

static void test_codec_opus_fec_recovers_lost_frame(void **state)
{
	(void)state;
	struct media_coder_opts o = {.opus_complexity = -1, .opus_fec = 1, .opus_loss_pct = 10};
	struct media_coder *enc, *ref, *k_fec, *k_plc;
	assert_int_equal(media_coder_create(&enc, MEDIA_CODEC_OPUS, &o), 0);
	assert_int_equal(media_coder_create(&ref, MEDIA_CODEC_OPUS, &o), 0);
	assert_int_equal(media_coder_create(&k_fec, MEDIA_CODEC_OPUS, &o), 0);
	assert_int_equal(media_coder_create(&k_plc, MEDIA_CODEC_OPUS, &o), 0);
	unsigned n = media_coder_frame_samples(enc);
	int16_t *buf = calloc(4 * LOSS_FRAMES * n, sizeof(*buf));
	assert_non_null(buf);
	int16_t *out_ref = buf, *out_fec = buf + LOSS_FRAMES * n,
	        *out_plc = buf + 2 * LOSS_FRAMES * n, *scratch = buf + 3 * LOSS_FRAMES * n;
	run_loss(enc, ref, k_fec, 1, out_ref, out_fec);
	/* The same stream again (fresh encoder and reference), this time concealed by PLC. */
	media_coder_destroy(enc);
	media_coder_destroy(ref);
	assert_int_equal(media_coder_create(&enc, MEDIA_CODEC_OPUS, &o), 0);
	assert_int_equal(media_coder_create(&ref, MEDIA_CODEC_OPUS, &o), 0);
	run_loss(enc, ref, k_plc, 0, scratch, out_plc);
	assert_memory_equal(scratch, out_ref, LOSS_FRAMES * n * sizeof(*scratch));
	unsigned at = LOST_FRAME * n;
	double snr_fec = snr_vs(out_fec + at, out_ref + at, n),
	       snr_plc = snr_vs(out_plc + at, scratch + at, n);
	print_message("# opus loss: SNR vs loss-free %.1f dB with FEC, %.1f dB with PLC\n", snr_fec,
	              snr_plc);
	/* Measured 37.5 dB against 6.3 dB: the FEC copy is a real (lower-rate) coding of the frame.
	 */
	assert_true(snr_fec > snr_plc + 15);
	free(buf);
	media_coder_destroy(enc);
	media_coder_destroy(ref);
	media_coder_destroy(k_fec);
	media_coder_destroy(k_plc);
}

/* ---- Table, options, malformed input ---- */

static void test_codec_table(void **state)
{
	(void)state;
	assert_null(media_codec_desc(MEDIA_CODEC_NONE));
	assert_null(media_codec_desc(MEDIA_CODEC_COUNT));
	const struct media_codec_desc *g722 = media_codec_desc(MEDIA_CODEC_G722);
	assert_string_equal(g722->name, "G722");
	assert_int_equal(g722->static_pt, 9);
	assert_int_equal(g722->rtp_clock, 8000);
	assert_int_equal(g722->pcm_rate, 16000);
	assert_int_equal(media_codec_desc(MEDIA_CODEC_OPUS)->static_pt, -1);
	assert_int_equal(media_codec_desc(MEDIA_CODEC_OPUS)->sdp_channels, 2);
	assert_int_equal(media_codec_desc(MEDIA_CODEC_G729)->frame_bytes, 20);
	assert_int_equal(media_codec_by_name("pcmu"), MEDIA_CODEC_PCMU);
	assert_int_equal(media_codec_by_name("OPUS"), MEDIA_CODEC_OPUS);
	assert_int_equal(media_codec_by_name("g729"), MEDIA_CODEC_G729);
	assert_int_equal(media_codec_by_name("G7221"), MEDIA_CODEC_NONE);
	assert_int_equal(media_codec_by_name(NULL), MEDIA_CODEC_NONE);
	assert_int_equal(media_codec_ts_per_frame(MEDIA_CODEC_G722), 160);
	assert_int_equal(media_codec_ts_per_frame(MEDIA_CODEC_OPUS), 960);
	assert_int_equal(media_codec_ts_per_frame(MEDIA_CODEC_NONE), 0);
}

static void test_codec_bad_options_rejected(void **state)
{
	(void)state;
	struct media_coder *k = NULL;
	struct media_coder_opts o = {.opus_complexity = -1};
	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_NONE, NULL), -EINVAL);
	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_COUNT, NULL), -EINVAL);
	o.pcm_rate = 44100;
	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_OPUS, &o), -EINVAL);
	o.pcm_rate = 16000;
	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_PCMU, &o), -EINVAL);
	o.pcm_rate = 0;
	o.opus_complexity = 11;
	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_OPUS, &o), -EINVAL);
	o.opus_complexity = 5;
	o.opus_loss_pct = 101;
	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_OPUS, &o), -EINVAL);
	assert_null(k);
	media_coder_destroy(NULL);

	o.opus_loss_pct = 0;
	o.pcm_rate = 24000;
	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_OPUS, &o), 0);
	assert_int_equal(media_coder_codec(k), MEDIA_CODEC_OPUS);
	assert_int_equal(media_coder_pcm_rate(k), 24000);
	assert_int_equal(media_coder_frame_samples(k), 480);
	media_coder_destroy(k);
	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_G722, NULL), 0);
	assert_int_equal(media_coder_frame_samples(k), 320);
	media_coder_destroy(k);
}

static void test_codec_malformed_payloads_rejected(void **state)
{
	(void)state;
	int16_t pcm[4 * MEDIA_PCM_FRAME_MAX];
	uint8_t pay[MEDIA_CODED_FRAME_MAX];
	memset(pay, 0x55, sizeof(pay));
	struct media_coder *k;
	for (int c = MEDIA_CODEC_NONE + 1; c < MEDIA_CODEC_COUNT; c++) {
		assert_int_equal(media_coder_create(&k, (enum media_codec)c, NULL), 0);
		assert_int_equal(media_coder_decode(k, pay, 0, pcm, 960), -EBADMSG);
		assert_int_equal(media_coder_decode(k, NULL, 0, pcm, 960), -EBADMSG);
		memset(pcm, 0, sizeof(pcm));
		assert_int_equal(media_coder_encode(k, pcm, pay, 0), -ENOSPC);
		/* Whatever random bytes hold, the answer is a sample count or an error; a malformed
		 * `next` given to conceal falls back to plain concealment. */
		srand(7);
		for (int i = 0; i < 1000; i++) {
			size_t n = (size_t)(rand() % 600) + 1;
			for (size_t j = 0; j < n; j++)
				pay[j] = (uint8_t)rand();
			int r = media_coder_decode(k, pay, n, pcm, 960);
			assert_true(r == -EBADMSG || r == -ENOSPC || (r > 0 && r <= 960));
			assert_int_equal(media_coder_conceal(k, pay, n, pcm),
			                 (int)media_coder_frame_samples(k));
		}
		media_coder_destroy(k);
	}

	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_G729, NULL), 0);
	assert_int_equal(media_coder_decode(k, pay, 7, pcm, 960), -EBADMSG);
	assert_int_equal(media_coder_decode(k, pay, 11, pcm, 960), -EBADMSG);
	assert_int_equal(media_coder_decode(k, pay, 19, pcm, 960), -EBADMSG);
	assert_int_equal(media_coder_decode(k, pay, 70, pcm, 960), -EBADMSG); /* 70 ms */
	assert_int_equal(media_coder_decode(k, pay, 20, pcm, 159), -ENOSPC);
	assert_int_equal(media_coder_encode(k, pcm, pay, 19), -ENOSPC);
	assert_int_equal(media_coder_decode(k, pay, 20, pcm, 160), 160);
	assert_int_equal(media_coder_decode(k, pay, 2, pcm, 960), 80);   /* SID alone */
	assert_int_equal(media_coder_decode(k, pay, 22, pcm, 960), 240); /* 2 frames + SID */
	media_coder_destroy(k);

	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_G722, NULL), 0);
	assert_int_equal(media_coder_decode(k, pay, 481, pcm, 4 * MEDIA_PCM_FRAME_MAX), -EBADMSG);
	assert_int_equal(media_coder_decode(k, pay, 161, pcm, 320), -ENOSPC);
	assert_int_equal(media_coder_decode(k, pay, 480, pcm, 960), 960);
	media_coder_destroy(k);

	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_PCMA, NULL), 0);
	assert_int_equal(media_coder_decode(k, pay, 481, pcm, 4 * MEDIA_PCM_FRAME_MAX), -EBADMSG);
	assert_int_equal(media_coder_decode(k, pay, 161, pcm, 160), -ENOSPC);
	assert_int_equal(media_coder_encode(k, pcm, pay, 159), -ENOSPC);
	media_coder_destroy(k);

	assert_int_equal(media_coder_create(&k, MEDIA_CODEC_OPUS, NULL), 0);
	/* TOC code 3 (arbitrary frame count) without its count byte; a count of 0 frames; code
	 * 1 (two equal frames) with an odd length; 120 ms of 20 ms frames (more than 60 ms). */
	static const uint8_t no_count[] = {0xfb}, zero_frames[] = {0xfb, 0x00},
	                     odd_pair[] = {0x79, 1, 2, 3}, six_frames[] = {0x7b, 0x06, 0, 0, 0};
	assert_int_equal(media_coder_decode(k, no_count, sizeof(no_count), pcm, 960), -EBADMSG);
	assert_int_equal(media_coder_decode(k, zero_frames, sizeof(zero_frames), pcm, 960),
	                 -EBADMSG);
	assert_int_equal(media_coder_decode(k, odd_pair, sizeof(odd_pair), pcm, 960), -EBADMSG);
	assert_int_equal(media_coder_decode(k, six_frames, sizeof(six_frames), pcm, 4 * 960),
	                 -EBADMSG);
	/* A good 20 ms packet does not fit in 10 ms of room. */
	int16_t frame[320] = {0};
	int len = media_coder_encode(k, frame, pay, sizeof(pay));
	assert_true(len > 0);
	assert_int_equal(media_coder_decode(k, pay, (size_t)len, pcm, 160), -ENOSPC);
	assert_int_equal(media_coder_decode(k, pay, (size_t)len, pcm, 320), 320);
	media_coder_destroy(k);
}

/* ---- Allocation ---- */

/* Runs encode, decode and conceal (every 10th frame) of `frames` frames through k. */
static void coder_frames(struct media_coder *k, unsigned frames)
{
	unsigned n = media_coder_frame_samples(k);
	int16_t pcm[MEDIA_PCM_FRAME_MAX], out[MEDIA_PCM_FRAME_MAX];
	uint8_t pay[MEDIA_CODED_FRAME_MAX];
	for (unsigned f = 0; f < frames; f++) {
		tone(media_coder_pcm_rate(k), (unsigned long)f * n, pcm, n);
		int len = media_coder_encode(k, pcm, pay, sizeof(pay));
		assert_true(len > 0);
		if (f % 10 == 9)
			media_coder_conceal(k, pay, (size_t)len, out);
		else
			assert_int_equal(media_coder_decode(k, pay, (size_t)len, out, n), (int)n);
	}
}

static void test_codec_no_allocation_per_frame(void **state)
{
	(void)state;
	struct media_coder_opts fec = {.opus_complexity = -1, .opus_fec = 1, .opus_loss_pct = 10};
	struct media_coder *k[MEDIA_CODEC_COUNT + 1] = {NULL};
	for (int c = MEDIA_CODEC_NONE + 1; c < MEDIA_CODEC_COUNT; c++)
		assert_int_equal(media_coder_create(&k[c], (enum media_codec)c,
		                                    c == MEDIA_CODEC_OPUS ? &fec : NULL),
		                 0);
	fec.pcm_rate = 48000;
	assert_int_equal(media_coder_create(&k[MEDIA_CODEC_COUNT], MEDIA_CODEC_OPUS, &fec), 0);
	struct media_resampler *up, *down;
	assert_int_equal(media_resampler_create(&up, 8000, 16000, -1), 0);
	assert_int_equal(media_resampler_create(&down, 16000, 8000, -1), 0);

	uint64_t total = mem_total_allocs();
	long live = mem_live_blocks();
	/* The counter must see a heap call, or this test could not fail. */
	unsigned long before = alloc_count();
	void *volatile probe = malloc(16);
	free(probe);
	unsigned long sanity = alloc_count() - before;
	before = alloc_count();
	for (int c = MEDIA_CODEC_NONE + 1; c <= MEDIA_CODEC_COUNT; c++)
		coder_frames(k[c], 10000);
	int16_t pcm[160], mid[320];
	for (unsigned f = 0; f < 10000; f++) {
		tone(8000, (unsigned long)f * 160, pcm, 160);
		media_resample(up, pcm, 160, mid, 320);
		media_resample(down, mid, 320, pcm, 160);
	}
	unsigned long calls = alloc_count() - before;

	assert_int_equal(sanity, 1);
	assert_int_equal(calls, 0);
	assert_true(mem_total_allocs() == total);
	assert_int_equal(mem_live_blocks(), live);
	for (int c = MEDIA_CODEC_NONE + 1; c <= MEDIA_CODEC_COUNT; c++)
		media_coder_destroy(k[c]);
	media_resampler_destroy(up);
	media_resampler_destroy(down);
}

/* Every allocation of setup fails in turn: -ENOMEM, nothing left behind. */
static void test_codec_create_fault_injection(void **state)
{
	(void)state;
	for (int c = MEDIA_CODEC_NONE + 1; c <= MEDIA_CODEC_COUNT; c++) {
		long live = mem_live_blocks(), n;
		int rc = -ENOMEM;
		for (n = 0; rc == -ENOMEM; n++) {
			mem_fail_after(n);
			if (c < MEDIA_CODEC_COUNT) {
				struct media_coder *k = NULL;
				rc = media_coder_create(&k, (enum media_codec)c, NULL);
				media_coder_destroy(k);
			} else {
				struct media_resampler *r = NULL;
				rc = media_resampler_create(&r, 8000, 48000, -1);
				media_resampler_destroy(r);
			}
			mem_fail_after(-1);
			assert_int_equal(mem_live_blocks(), live);
		}
		assert_int_equal(rc, 0);
		/* Opus keeps its encoder and decoder in our memory: 3 blocks, 3 failures. */
		assert_true(n - 1 >= (c == MEDIA_CODEC_OPUS ? 3 : 1));
	}
}

#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_codec_table),
	    T(test_codec_bad_options_rejected),
	    T(test_codec_malformed_payloads_rejected),
	    T(test_codec_resampler_whole_frames),
	    T(test_codec_tone_chains),
	    T(test_codec_loss_concealment),
	    T(test_codec_opus_fec_recovers_lost_frame),
	    T(test_codec_no_allocation_per_frame),
	    T(test_codec_create_fault_injection),
	};
	return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
