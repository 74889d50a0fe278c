/* Call-progress tones by table: ringback cadences of the US and Mexico at 8 and 16 kHz. */
#include "media/media_int.h"

#include <math.h>

/* A tone is a sum of up to two frequencies whose common period is a whole number of
 * samples at 8 kHz (and so at 16 kHz), played on/off with a cadence. One period of each
 * is tabulated per rate when the program starts. */
struct tone_def {
	double f1, f2;      /* Hz; f2 0 = single */
	double amp;         /* peak per frequency, 16-bit (0 dBm0 = 22706) */
	unsigned period_ms; /* common period of f1 and f2 */
	unsigned on_ms, cycle_ms;
};

static const struct tone_def tones[] = {
    /* ANSI T1.401 audible ringing: 440 + 480 Hz at -19 dBm0 each, 2 s on, 4 s off. The
     * common period is 25 ms (40 Hz). */
    [MEDIA_TONE_RINGBACK] = {440.0, 480.0, 2540.0, 25, 2000, 6000},
    /* Mexico (ITU-T E.180 supplement 2, as used by Telmex): 425 Hz, 1 s on, 4 s off;
     * 17 cycles of 425 Hz take exactly 40 ms. -13 dBm0. */
    [MEDIA_TONE_RINGBACK_MX] = {425.0, 0.0, 5070.0, 40, 1000, 5000},
};
#define N_TONES        (sizeof(tones) / sizeof(tones[0]))
#define MAX_PERIOD_16K 640u /* 40 ms at 16 kHz */

static int16_t table[N_TONES][2][MAX_PERIOD_16K];

__attribute__((constructor)) static void tone_tables_init(void)
{
	for (unsigned t = 1; t < N_TONES; t++) {
		for (unsigned r = 0; r < 2; r++) {
			unsigned rate = r ? 16000u : 8000u;
			unsigned n = tones[t].period_ms * rate / 1000u;
			for (unsigned i = 0; i < n; i++) {
				double x = (double)i / rate;
				double v = tones[t].amp * sin(2.0 * M_PI * tones[t].f1 * x);
				if (tones[t].f2 > 0.0)
					v += tones[t].amp * sin(2.0 * M_PI * tones[t].f2 * x);
				table[t][r][i] = (int16_t)lrint(v);
			}
		}
	}
}

enum media_tone media_ringback_for_country(unsigned country_code)
{
	return country_code == 52 ? MEDIA_TONE_RINGBACK_MX : MEDIA_TONE_RINGBACK;
}

void media_tone_pcm(enum media_tone tone, unsigned rate, uint32_t pos, int16_t *out, size_t n)
{
	if ((unsigned)tone == 0 || (unsigned)tone >= N_TONES || (rate != 8000 && rate != 16000)) {
		for (size_t i = 0; i < n; i++)
			out[i] = 0;
		return;
	}
	const struct tone_def *d = &tones[tone];
	const int16_t *tab = table[tone][rate == 16000];
	uint32_t per_ms = rate / 1000u;
	uint32_t period = d->period_ms * per_ms, cycle = d->cycle_ms * per_ms,
	         on = d->on_ms * per_ms;
	for (size_t i = 0; i < n; i++, pos++) {
		uint32_t in_cycle = pos % cycle;
		out[i] = in_cycle < on ? tab[in_cycle % period] : 0;
	}
}

void media_tone_frame(enum media_tone tone, enum media_codec c, uint32_t pos, uint8_t *out,
                      size_t n)
{
	int16_t pcm[MEDIA_FRAME_SAMPLES];
	while (n) {
		size_t k = n < MEDIA_FRAME_SAMPLES ? n : MEDIA_FRAME_SAMPLES;
		media_tone_pcm(tone, 8000, pos, pcm, k);
		media_g711_encode(c, pcm, out, k);
		out += k;
		pos += (uint32_t)k;
		n -= k;
	}
}
