/* DTMF: in-band detection (spandsp dtmf_rx), in-band generation and RFC 4733 sending. */
#include "media/det_int.h"
#include "media/media_int.h"

#include "core/mem.h"

#include <errno.h>
#include <math.h>
#include <spandsp.h>
#include <string.h>

/* 0 dBm0 as the peak of a sine in 16-bit PCM (the convention of g711.c). */
#define DBM0_PEAK 22706.0

/* The frequencies of the keypad: rows (low group) and columns (high group). */
static const double dtmf_row_hz[4] = {697.0, 770.0, 852.0, 941.0};
static const double dtmf_col_hz[4] = {1209.0, 1336.0, 1477.0, 1633.0};

int media_dtmf_event_code(char digit)
{
	static const char keys[] = "0123456789*#ABCD";
	if (digit >= 'a' && digit <= 'd')
		digit = (char)(digit - 'a' + 'A');
	for (int i = 0; i < 16; i++)
		if (keys[i] == digit)
			return i;
	return -EINVAL;
}

/* Row and column (0-3) of an RFC 4733 event code 0-15. */
static void event_tones(uint8_t event, unsigned *row, unsigned *col)
{
	/* Keypad positions: 1 2 3 A / 4 5 6 B / 7 8 9 C / * 0 # D */
	static const uint8_t pos[16] = {
	    13,                            /* 0 */
	    0,  1, 2,  4,  5, 6, 8, 9, 10, /* 1-9 */
	    12,                            /* * */
	    14,                            /* # */
	    3,  7, 11, 15,                 /* A-D */
	};
	*row = pos[event] >> 2;
	*col = pos[event] & 3;
}

static unsigned clamp_ms(unsigned ms)
{
	if (ms < MEDIA_DTMF_MIN_MS)
		return MEDIA_DTMF_MIN_MS;
	return ms > MEDIA_DTMF_MAX_MS ? MEDIA_DTMF_MAX_MS : ms;
}

/* ---- Detection ---- */

/* spandsp's dtmf_rx decides once per block of this many samples (dtmf.c, 0.0.x). Feeding
 * it pieces that end on block boundaries tells us the sample at which each decision was
 * made, which is what the durations are measured from. */
#define RX_BLOCK 102u
/* The digit starts when two blocks in a row hold it and ends when two blocks in a row do
 * not; a block partly covered by the tone counts as a hit at its start more often than
 * at its end, so raw on-to-off spans come out short. Adding this many samples centres the
 * error: over every alignment of tone to blocks, 40-320 ms digits through G.711, the mean
 * error is within +-1 ms and single digits are -11..+7 ms off. */
#define RX_BIAS_SAMPLES 72u

struct media_dtmf_det {
	dtmf_rx_state_t *rx;
	uint64_t pos;       /* samples fed so far */
	uint64_t block_end; /* sample position at which the current piece ends */
	char cur;           /* digit sounding, or 0 */
	int cur_level;
	uint64_t cur_start; /* sample position at which cur was confirmed */
	/* Where the callback puts ended digits during one feed call. */
	struct media_dtmf_digit *out;
	unsigned max, n;
	unsigned lost;
};

/* spandsp realtime callback: code is the digit now confirmed, or 0 when the tone went. */
static void det_report(void *user, int code, int level, int delay)
{
	struct media_dtmf_det *d = user;
	(void)delay;
	if (d->cur) {
		if (d->n < d->max) {
			uint64_t samples = d->block_end - d->cur_start + RX_BIAS_SAMPLES;
			struct media_dtmf_digit *o = &d->out[d->n++];
			o->digit = d->cur;
			o->duration_ms = (unsigned)(samples / 8u);
			o->level_dbm0 = d->cur_level;
		} else {
			d->lost++;
		}
		d->cur = 0;
	}
	if (code > 0 && code < 128) {
		d->cur = (char)code;
		d->cur_level = level;
		d->cur_start = d->block_end;
	}
}

int media_dtmf_det_create(struct media_dtmf_det **out)
{
	struct media_dtmf_det *d = mem_zalloc(sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->rx = dtmf_rx_init(NULL, NULL, NULL);
	if (!d->rx) {
		mem_free(d);
		return -ENOMEM;
	}
	/* No dial-tone filter (it costs, and the legs carry no dial tone); default twists (8 dB
	 * normal, 4 dB reverse); each tone must reach -36 dBm0 (measured: -36 dBm0 per tone
	 * is the edge, -38 is never taken): 11 dB below the -25 dBm0 we promise to hear. */
	dtmf_rx_parms(d->rx, 0, -1, -1, -36);
	dtmf_rx_set_realtime_callback(d->rx, det_report, d);
	*out = d;
	return 0;
}

void media_dtmf_det_destroy(struct media_dtmf_det *d)
{
	if (!d)
		return;
	dtmf_rx_free(d->rx);
	mem_free(d);
}

unsigned media_dtmf_det_feed(struct media_dtmf_det *d, const int16_t *pcm8k, unsigned n,
                             struct media_dtmf_digit *out, unsigned max)
{
	d->out = out;
	d->max = out ? max : 0;
	d->n = 0;
	while (n) {
		unsigned piece = RX_BLOCK - (unsigned)(d->pos % RX_BLOCK);
		if (piece > n)
			piece = n;
		d->block_end = d->pos + piece;
		dtmf_rx(d->rx, pcm8k, (int)piece);
		d->pos += piece;
		pcm8k += piece;
		n -= piece;
	}
	d->out = NULL;
	return d->n;
}

char media_dtmf_det_current(const struct media_dtmf_det *d)
{
	return d->cur;
}

unsigned media_dtmf_det_lost(const struct media_dtmf_det *d)
{
	return d->lost;
}

/* ---- In-band generation ---- */

/* Time inside the generator runs in ticks of 1/48000 s: a whole number per sample at
 * 8 and 16 kHz, so the rate may change between calls without disturbing the timing. */
#define GEN_TICK_HZ  48000u
#define GEN_RAMP_MS  1u
#define GEN_TICKS_MS (GEN_TICK_HZ / 1000u)

struct media_dtmf_gen {
	struct {
		uint8_t event;
		unsigned ms;
	} q[MEDIA_DTMF_QUEUE];
	unsigned head, count;
	int state;         /* 0 idle, 1 tone, 2 gap */
	double f_lo, f_hi; /* Hz of the digit playing */
	uint32_t tick;     /* ticks into the tone or gap */
	uint32_t length;   /* ticks of the tone or gap */
};

int media_dtmf_gen_create(struct media_dtmf_gen **out)
{
	struct media_dtmf_gen *g = mem_zalloc(sizeof(*g));
	if (!g)
		return -ENOMEM;
	*out = g;
	return 0;
}

void media_dtmf_gen_destroy(struct media_dtmf_gen *g)
{
	mem_free(g);
}

int media_dtmf_gen_start(struct media_dtmf_gen *g, char digit, unsigned duration_ms)
{
	int ev = media_dtmf_event_code(digit);
	if (ev < 0)
		return ev;
	if (g->count == MEDIA_DTMF_QUEUE)
		return -ENOSPC;
	unsigned i = (g->head + g->count) % MEDIA_DTMF_QUEUE;
	g->q[i].event = (uint8_t)ev;
	g->q[i].ms = clamp_ms(duration_ms);
	g->count++;
	return 0;
}

int media_dtmf_gen_busy(const struct media_dtmf_gen *g)
{
	return g->state != 0 || g->count != 0;
}

/* Moves to the next state once the current one has run out: tone -> gap -> next digit. */
static void gen_advance(struct media_dtmf_gen *g)
{
	if (g->state == 1) {
		g->state = 2;
		g->tick = 0;
		g->length = MEDIA_DTMF_GAP_MS * GEN_TICKS_MS;
		return;
	}
	if (!g->count) {
		g->state = 0;
		return;
	}
	unsigned row, col;
	event_tones(g->q[g->head].event, &row, &col);
	g->f_lo = dtmf_row_hz[row];
	g->f_hi = dtmf_col_hz[col];
	g->length = g->q[g->head].ms * GEN_TICKS_MS;
	g->head = (g->head + 1) % MEDIA_DTMF_QUEUE;
	g->count--;
	g->state = 1;
	g->tick = 0;
}

/* Writes n tone samples starting at g->tick, 1 ms ramps at both ends against clicks.
 * Each tone is a rotating phasor started from the exact phase of this call, so there is
 * no drift however long the digit is, and only six trigonometric calls per call. */
static void gen_tone(struct media_dtmf_gen *g, int16_t *pcm, unsigned n, unsigned step)
{
	const double amp = DBM0_PEAK * pow(10.0, MEDIA_DTMF_LEVEL / 20.0);
	const double t0 = (double)g->tick / GEN_TICK_HZ, dt = (double)step / GEN_TICK_HZ;
	double lo_re = cos(2 * M_PI * g->f_lo * t0), lo_im = sin(2 * M_PI * g->f_lo * t0);
	double hi_re = cos(2 * M_PI * g->f_hi * t0), hi_im = sin(2 * M_PI * g->f_hi * t0);
	const double lo_c = cos(2 * M_PI * g->f_lo * dt), lo_s = sin(2 * M_PI * g->f_lo * dt);
	const double hi_c = cos(2 * M_PI * g->f_hi * dt), hi_s = sin(2 * M_PI * g->f_hi * dt);
	const uint32_t ramp = GEN_RAMP_MS * GEN_TICKS_MS;
	uint32_t tick = g->tick;
	for (unsigned i = 0; i < n; i++, tick += step) {
		double gain = 1.0;
		if (tick < ramp)
			gain = (double)tick / ramp;
		else if (g->length - tick < ramp)
			gain = (double)(g->length - tick) / ramp;
		pcm[i] = (int16_t)lrint(amp * gain * (lo_im + hi_im));
		double re = lo_re * lo_c - lo_im * lo_s;
		lo_im = lo_re * lo_s + lo_im * lo_c;
		lo_re = re;
		re = hi_re * hi_c - hi_im * hi_s;
		hi_im = hi_re * hi_s + hi_im * hi_c;
		hi_re = re;
	}
}

int media_dtmf_gen_fill(struct media_dtmf_gen *g, int16_t *pcm, unsigned n, unsigned rate)
{
	if (rate != 8000 && rate != 16000)
		return -EINVAL;
	const unsigned step = GEN_TICK_HZ / rate;
	int wrote = 0;
	if (!g->state)
		gen_advance(g);
	while (n && g->state) {
		uint32_t left = (g->length - g->tick + step - 1) / step; /* samples */
		unsigned k = left < n ? (unsigned)left : n;
		if (g->state == 1)
			gen_tone(g, pcm, k, step);
		else
			memset(pcm, 0, k * sizeof(*pcm));
		wrote = 1;
		g->tick += k * step;
		pcm += k;
		n -= k;
		if (g->tick >= g->length)
			gen_advance(g);
	}
	return wrote;
}

/* ---- RFC 4733 sending ---- */

#define RFC4733_END_COPIES 3u
#define RFC4733_MAX_DUR    0xffffu

void media_rfc4733_tx_init(struct media_rfc4733_tx *tx)
{
	memset(tx, 0, sizeof(*tx));
}

int media_rfc4733_tx_start(struct media_rfc4733_tx *tx, char digit, unsigned duration_ms,
                           unsigned clock_rate)
{
	int ev = media_dtmf_event_code(digit);
	if (ev < 0 || clock_rate < 8000 || clock_rate > 48000 || clock_rate % 50)
		return -EINVAL;
	if (tx->count == MEDIA_DTMF_QUEUE)
		return -ENOSPC;
	unsigned i = (tx->head + tx->count) % MEDIA_DTMF_QUEUE;
	tx->q[i].event = (uint8_t)ev;
	tx->q[i].units = (uint32_t)((uint64_t)clamp_ms(duration_ms) * clock_rate / 1000u);
	tx->q[i].frame = clock_rate / 50u;
	tx->count++;
	return 0;
}

int media_rfc4733_tx_busy(const struct media_rfc4733_tx *tx)
{
	return tx->active || tx->count;
}

int media_rfc4733_tx_next(struct media_rfc4733_tx *tx, uint8_t payload[4], int *marker,
                          uint32_t *ts_offset_out, int *is_new_event)
{
	int first = 0;
	if (!tx->active) {
		if (!tx->count)
			return 0;
		tx->event = tx->q[tx->head].event;
		tx->units = tx->q[tx->head].units;
		tx->frame = tx->q[tx->head].frame;
		tx->head = (tx->head + 1) % MEDIA_DTMF_QUEUE;
		tx->count--;
		tx->active = 1;
		tx->tick = 0;
		tx->seg_base = 0;
		tx->end_sent = 0;
		tx->new_segment = 0;
		first = 1;
	}
	/* Units the event has lasted by the end of this tick. */
	uint64_t elapsed = (uint64_t)(tx->tick + 1) * tx->frame;
	int end = 0;
	if (elapsed >= tx->units) {
		elapsed = tx->units;
		end = 1;
	}
	uint64_t dur = elapsed - tx->seg_base;
	*marker = first;
	*is_new_event = first || tx->new_segment;
	*ts_offset_out = tx->tick * tx->frame - tx->seg_base;
	tx->new_segment = 0;
	if (dur > RFC4733_MAX_DUR) {
		/* §2.5.1.3: close this segment at the largest duration; the next one starts
		 * 0xFFFF units later with its own timestamp and no marker. */
		dur = RFC4733_MAX_DUR;
		end = 0;
		tx->seg_base += RFC4733_MAX_DUR;
		tx->new_segment = 1;
	}
	payload[0] = tx->event;
	payload[1] = (uint8_t)((end ? 0x80u : 0u) | MEDIA_RFC4733_VOLUME);
	media_put16(payload + 2, (uint16_t)dur);
	tx->tick++;
	if (end && ++tx->end_sent == RFC4733_END_COPIES)
		tx->active = 0;
	return 1;
}
