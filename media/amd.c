/* Answering-machine detection on the first seconds of an answered leg (8 kHz PCM). */
#include "media/det_int.h"

#include "core/mem.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* The analysis runs on 20 ms frames; a caller's chunks are cut and joined to fit. */
#define AMD_FRAME    160u
#define AMD_FRAME_MS 20u
#define AMD_RATE     8000.0

/* Silence threshold, per frame: the configured one, lowered for a quiet talker to
 * PEAK_RANGE_DB under the loudest frame so far (the same speech is cut into the same
 * words at any level), and raised to FLOOR_MARGIN_DB over the noise floor, the quietest
 * frame of the last FLOOR_WIN frames (a noisy line is not taken for speech), but never
 * above MAX_THR_DBFS (then speech would be lost: a line that loud is "voice"). */
#define PEAK_RANGE_DB   30.0
#define FLOOR_MARGIN_DB 6.0
#define FLOOR_WIN       50u
#define MAX_THR_DBFS    (-30.0)
/* Once speech was heard, a voiced run shorter than this is a click: it does not break
 * the silence that follows a greeting. Before, only a word (min_word_ms) does. */
#define CLICK_MS 40u

/* Beep: a frame is tonal when one sinusoid carries at least this share of its energy
 * (a beep in white noise gives SNR / (SNR + 1): 0.8 is a 6 dB SNR). Speech does not
 * hold one frequency for beep_min_ms: on the test set, under every noise and level
 * condition tried, no human case gave a beep even with the share lowered to 0.3. */
#define BEEP_MIN_SHARE 0.8
#define BEEP_SEARCH_HZ 30.0
#define BEEP_STEP_HZ   5.0
/* Consecutive beep frames must agree on the frequency within this (Hz). */
#define BEEP_MAX_DRIFT_HZ 15.0
/* A beep must stand this far above the silence threshold. */
#define BEEP_MIN_OVER_DB 6.0

enum amd_state { IN_SILENCE, IN_WORD };

struct media_amd {
	struct media_amd_config c;
	int16_t buf[AMD_FRAME]; /* partial frame carried between calls */
	unsigned buf_n;
	double dc_x1, dc_y1;    /* DC blocker state */
	double floor_db;        /* noise floor estimate, dBFS */
	double peak_db;         /* loudest frame so far, dBFS */
	double hist[FLOOR_WIN]; /* dBFS of the last frames, ring */
	unsigned hist_i, hist_n;
	int done;
	int tail;         /* after a MACHINE verdict: waiting for the greeting's end */
	unsigned tail_ms; /* analysed since the verdict */
	unsigned ms;      /* analysed */
	enum amd_state state;
	int in_initial_silence, in_greeting;
	unsigned silence_ms, voice_run_ms, voice_total_ms, words;
	unsigned beep_frames;
	double beep_hz;
};

void media_amd_config_default(struct media_amd_config *c)
{
	memset(c, 0, sizeof(*c));
	c->initial_silence_ms = 2500;
	c->greeting_ms = 1500;
	c->after_greeting_silence_ms = 800;
	c->total_analysis_ms = 5000;
	c->min_word_ms = 100;
	c->between_words_silence_ms = 50;
	c->maximum_words = 4;
	c->maximum_word_ms = 5000;
	c->silence_threshold_dbfs = -42;
	c->beep_min_ms = 150;
	c->beep_min_hz = 400;
	c->beep_max_hz = 2100;
	c->end_silence_ms = 1200;
}

int media_amd_create(struct media_amd **out, const struct media_amd_config *c)
{
	struct media_amd_config def;
	if (!c) {
		media_amd_config_default(&def);
		c = &def;
	}
	if (!c->initial_silence_ms || !c->greeting_ms || !c->after_greeting_silence_ms ||
	    !c->total_analysis_ms || !c->min_word_ms || !c->between_words_silence_ms ||
	    !c->maximum_words || !c->maximum_word_ms ||
	    (c->beep_min_ms && (c->beep_min_hz >= c->beep_max_hz || c->beep_max_hz >= 4000)))
		return -EINVAL;
	struct media_amd *a = mem_zalloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->c = *c;
	a->peak_db = -120;
	a->state = IN_SILENCE;
	a->in_initial_silence = 1;
	*out = a;
	return 0;
}

void media_amd_destroy(struct media_amd *a)
{
	mem_free(a);
}

static int verdict(struct media_amd *a, struct media_amd_result *r, enum media_amd_verdict v,
                   const char *why)
{
	if (a->tail) { /* the end of the greeting */
		a->tail = 0;
		a->done = 1;
		r->verdict = MEDIA_AMD_MACHINE;
		r->ms = a->ms;
		r->reason = why;
		return 2;
	}
	if (v == MEDIA_AMD_MACHINE && a->c.end_wait_ms && strcmp(why, "beep") != 0) {
		a->tail = 1; /* go on: the greeting's end follows */
		a->tail_ms = 0;
		a->silence_ms = 0;
		a->beep_frames = 0;
	} else {
		a->done = 1;
	}
	r->verdict = v;
	r->ms = a->ms;
	r->reason = why;
	return 1;
}

/* Share of the frame's energy that the sinusoid at hz carries (Goertzel): 1 for a pure
 * tone on that frequency, about 1 - 1/SNR with white noise, far less for speech. */
static double tone_share(const double *y, double hz, double energy)
{
	const double k = 2 * cos(2 * M_PI * hz / AMD_RATE);
	double s1 = 0, s2 = 0;
	for (unsigned n = 0; n < AMD_FRAME; n++) {
		double s = y[n] + k * s1 - s2;
		s2 = s1;
		s1 = s;
	}
	return 2 * (s1 * s1 + s2 * s2 - k * s1 * s2) / (AMD_FRAME * energy);
}

/* 1 when the frame y (DC removed, energy = sum of squares) is one steady tone in the beep
 * band, for long enough together with the frames before it. */
static int beep_frame(struct media_amd *a, const double *y, double energy)
{
	/* Frequency: Pisarenko's estimate from the lag-1 and lag-2 autocorrelations, which
	 * white noise leaves alone (for one sinusoid r2 / r1 = cos 2w / cos w), then the
	 * Goertzel peak near it. */
	double r1 = 0, r2 = 0;
	for (unsigned n = 0; n + 2 < AMD_FRAME; n++) {
		r1 += y[n] * y[n + 1];
		r2 += y[n] * y[n + 2];
	}
	r1 += y[AMD_FRAME - 2] * y[AMD_FRAME - 1];
	double c = fabs(r1) > 1e-9 * energy ? (r2 + sqrt(r2 * r2 + 8 * r1 * r1)) / (4 * r1) : 0;
	double hz = 0, share = 0;
	if (c > -1 && c < 1) {
		double est = acos(c) * AMD_RATE / (2 * M_PI);
		if (est + BEEP_SEARCH_HZ >= a->c.beep_min_hz &&
		    est - BEEP_SEARCH_HZ <= a->c.beep_max_hz) {
			for (double f = est - BEEP_SEARCH_HZ; f <= est + BEEP_SEARCH_HZ;
			     f += BEEP_STEP_HZ) {
				double sh = tone_share(y, f, energy);
				if (sh > share) {
					share = sh;
					hz = f;
				}
			}
		}
	}
	if (share < BEEP_MIN_SHARE || hz < a->c.beep_min_hz || hz > a->c.beep_max_hz) {
		a->beep_frames = 0;
		return 0;
	}
	if (a->beep_frames && fabs(hz - a->beep_hz) > BEEP_MAX_DRIFT_HZ)
		a->beep_frames = 0;
	a->beep_frames++;
	a->beep_hz = hz;
	return a->beep_frames * AMD_FRAME_MS >= a->c.beep_min_ms;
}

/* One 20 ms frame through the Asterisk-style state machine plus the beep detector. */
static int amd_frame(struct media_amd *a, const int16_t *pcm, struct media_amd_result *r)
{
	const struct media_amd_config *c = &a->c;
	double y[AMD_FRAME], sum = 0;
	for (unsigned i = 0; i < AMD_FRAME; i++) {
		double x = pcm[i];
		a->dc_y1 = x - a->dc_x1 + 0.995 * a->dc_y1;
		a->dc_x1 = x;
		y[i] = a->dc_y1;
		sum += y[i] * y[i];
	}
	a->ms += AMD_FRAME_MS;
	/* Frame RMS in dBFS (-120 for digital silence), then the threshold for it. */
	double db = 10 * log10(sum / AMD_FRAME / (32768.0 * 32768.0) + 1e-12);
	a->hist[a->hist_i] = db;
	a->hist_i = (a->hist_i + 1) % FLOOR_WIN;
	if (a->hist_n < FLOOR_WIN)
		a->hist_n++;
	a->floor_db = db;
	for (unsigned i = 0; i < a->hist_n; i++)
		if (a->hist[i] < a->floor_db)
			a->floor_db = a->hist[i];
	if (db > a->peak_db)
		a->peak_db = db;
	double thr = c->silence_threshold_dbfs;
	if (a->peak_db - PEAK_RANGE_DB < thr)
		thr = a->peak_db - PEAK_RANGE_DB;
	if (a->floor_db + FLOOR_MARGIN_DB > thr)
		thr = a->floor_db + FLOOR_MARGIN_DB;
	if (thr > MAX_THR_DBFS)
		thr = MAX_THR_DBFS;

	if (c->beep_min_ms && db >= thr + BEEP_MIN_OVER_DB && beep_frame(a, y, sum))
		return verdict(a, r, MEDIA_AMD_MACHINE, "beep");
	if (db < thr + BEEP_MIN_OVER_DB)
		a->beep_frames = 0;
	if (a->tail) {
		a->tail_ms += AMD_FRAME_MS;
		a->silence_ms = db < thr ? a->silence_ms + AMD_FRAME_MS : 0;
		if (a->silence_ms >= c->end_silence_ms)
			return verdict(a, r, MEDIA_AMD_MACHINE, "silence");
		if (a->tail_ms >= c->end_wait_ms)
			return verdict(a, r, MEDIA_AMD_MACHINE, "timeout");
		return 0;
	}

	if (db < thr) {
		a->silence_ms += AMD_FRAME_MS;
		if (a->silence_ms >= c->between_words_silence_ms) {
			a->state = IN_SILENCE;
			a->voice_run_ms = 0;
		}
		if (a->in_initial_silence && a->silence_ms >= c->initial_silence_ms)
			return verdict(a, r, MEDIA_AMD_MACHINE, "initial silence");
		if (a->in_greeting && a->silence_ms >= c->after_greeting_silence_ms)
			return verdict(a, r, MEDIA_AMD_HUMAN, "human: short greeting then silence");
	} else {
		a->voice_run_ms += AMD_FRAME_MS;
		a->voice_total_ms += AMD_FRAME_MS;
		if (a->voice_run_ms >= c->min_word_ms && a->state == IN_SILENCE) {
			a->words++;
			a->state = IN_WORD;
		}
		if (a->voice_run_ms >= c->maximum_word_ms)
			return verdict(a, r, MEDIA_AMD_MACHINE, "long word");
		if (a->words >= c->maximum_words)
			return verdict(a, r, MEDIA_AMD_MACHINE, "max words");
		if (a->in_greeting && a->voice_total_ms >= c->greeting_ms)
			return verdict(a, r, MEDIA_AMD_MACHINE, "long greeting");
		if (a->voice_run_ms >= (a->in_greeting ? CLICK_MS : c->min_word_ms))
			a->silence_ms = 0;
		if (a->voice_run_ms >= c->min_word_ms && !a->in_greeting) {
			a->in_initial_silence = 0;
			a->in_greeting = 1;
		}
	}
	if (a->ms >= c->total_analysis_ms)
		return verdict(a, r, MEDIA_AMD_UNSURE, "too long");
	return 0;
}

int media_amd_feed(struct media_amd *a, const int16_t *pcm, unsigned n, struct media_amd_result *r)
{
	while (n && !a->done) {
		int rc;
		if (!a->buf_n && n >= AMD_FRAME) {
			rc = amd_frame(a, pcm, r);
			if (rc)
				return rc;
			pcm += AMD_FRAME;
			n -= AMD_FRAME;
			continue;
		}
		unsigned k = AMD_FRAME - a->buf_n;
		if (k > n)
			k = n;
		memcpy(a->buf + a->buf_n, pcm, k * sizeof(*pcm));
		a->buf_n += k;
		pcm += k;
		n -= k;
		if (a->buf_n == AMD_FRAME) {
			a->buf_n = 0;
			rc = amd_frame(a, a->buf, r);
			if (rc)
				return rc;
		}
	}
	return 0;
}
