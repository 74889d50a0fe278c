/* vapi-emu audio helpers: G.711 mu-law, tone generation and tone analysis (Goertzel scan). */
#ifndef VAPI_EMU_AUDIO_H
#define VAPI_EMU_AUDIO_H

#include <stddef.h>
#include <stdint.h>

/* Standard G.711 mu-law (0xFF is digital silence). Pure functions, any thread. */
uint8_t emu_ulaw_encode(int16_t pcm);
int16_t emu_ulaw_decode(uint8_t u);

/* Result of emu_tone_analyse. */
struct emu_tone {
	double hz;     /* dominant frequency, 0 when no audio */
	double purity; /* share of the energy explained by the tone at hz (0..1) */
};

/* Finds the dominant frequency of x[0..n) (rate Hz): a coarse Goertzel scan in 10 Hz steps
 * over lo..hi Hz on 50 ms blocks, then 0.5 Hz steps within 10 Hz of the peak on blocks of
 * up to 500 ms. Bounded: O(n * 420). Any thread. */
void emu_tone_analyse(const int16_t *x, size_t n, int rate, double lo, double hi,
                      struct emu_tone *out);

#endif
