/* vapi-emu audio helpers: G.711 mu-law, tone analysis by Goertzel scan. */
#include "emu_audio.h"

#include <math.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

uint8_t emu_ulaw_encode(int16_t pcm)
{
	int v = pcm, sign = 0, exp = 7, mant;

	if (v < 0) {
		v = -v;
		sign = 0x80;
	}
	if (v > 32635)
		v = 32635;
	v += 0x84;
	for (int m = 0x4000; (v & m) == 0 && exp > 0; m >>= 1)
		exp--;
	mant = (v >> (exp + 3)) & 0x0F;
	return (uint8_t) ~(sign | (exp << 4) | mant);
}

int16_t emu_ulaw_decode(uint8_t u)
{
	int t;

	u = (uint8_t)~u;
	t = ((u & 0x0F) << 3) + 0x84;
	t <<= (u & 0x70) >> 4;
	return (int16_t)((u & 0x80) ? (0x84 - t) : (t - 0x84));
}

/* Goertzel power of x[0..n) at f, scaled so that a full-block sine of amplitude A gives
 * its energy (n A^2 / 2). */
static double goertzel(const int16_t *x, size_t n, int rate, double f)
{
	double c = 2.0 * cos(2.0 * M_PI * f / rate), s1 = 0, s2 = 0;

	for (size_t i = 0; i < n; i++) {
		double s0 = x[i] + c * s1 - s2;
		s2 = s1;
		s1 = s0;
	}
	return (s1 * s1 + s2 * s2 - c * s1 * s2) * 2.0 / (double)n;
}

static double scan(const int16_t *x, size_t n, size_t blk, int rate, double f)
{
	double sum = 0;

	for (size_t o = 0; o + blk <= n; o += blk)
		sum += goertzel(x + o, blk, rate, f);
	return sum;
}

void emu_tone_analyse(const int16_t *x, size_t n, int rate, double lo, double hi,
                      struct emu_tone *out)
{
	size_t blk = (size_t)rate / 20, fblk = (size_t)rate / 2;
	double best = -1, best_f = 0, energy = 0;

	out->hz = 0;
	out->purity = 0;
	if (rate <= 0 || n < blk || blk == 0)
		return;
	for (double f = lo; f <= hi; f += 10) {
		double p = scan(x, n, blk, rate, f);
		if (p > best) {
			best = p;
			best_f = f;
		}
	}
	if (fblk > n)
		fblk = n;
	best = -1;
	double coarse = best_f;
	for (double f = coarse - 10; f <= coarse + 10; f += 0.5) {
		double p = scan(x, n, fblk, rate, f);
		if (p > best) {
			best = p;
			best_f = f;
		}
	}
	for (size_t i = 0; i < (n / fblk) * fblk; i++)
		energy += (double)x[i] * x[i];
	out->hz = best_f;
	out->purity = energy > 0 ? best / energy : 0;
	if (out->purity > 1)
		out->purity = 1;
}
