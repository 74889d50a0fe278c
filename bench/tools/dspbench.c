/* dspbench: CPU time per 20 ms tick of a whole AI leg in the media worker (media/dsp.c). */
/*
 * Usage:
 *   dspbench [--frames N] [--runs R] [--json FILE]
 *
 * Where codecbench times the codecs alone, this times what a media worker does for one
 * AI call per 20 ms, both ways, minus the sockets and SRTP (measured by the relay
 * benchmark and test_srtp): the caller's packet into the jitter buffer, the rx tick
 * (jitter buffer, decode, in-band DTMF detector, resampling, the frame into the AI
 * ring), the AI thread's side (take the frame, write one frame of reply audio into the
 * playout buffer), and the tx tick (playout, resampling, encode). One leg per codec, in
 * the AI format VACS picks for it (PCMU -> mulaw pass-through, others -> 16 kHz PCM).
 * Thread CPU clock, N ticks (default 3000) per run after 50 of warm-up, median of R runs
 * (default 9), in microseconds; ai_calls_per_core = 1e6 / (50 x tick us). heap_bytes:
 * what the leg's processing state holds on the heap (mallinfo2 before and after creating
 * it: our blocks and the libraries' alike; the media session slot itself is preallocated
 * per worker and not counted).
 * Links build/libvacs.a (make first). Exit: 0, 1 on setup errors, 2 on usage.
 */
#include "bench/tools/bench_cpu.h"
#include "core/mem.h"
#include "media/codec_int.h"
#include "media/dsp_int.h"
#include "media/media.h"
#include "media/media_int.h"

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WARMUP   50u
#define MAX_RUNS 101

struct leg {
	const char *name;
	enum media_codec codec;
};

static const struct leg legs[] = {
    {"pcmu_mulaw", MEDIA_CODEC_PCMU},  {"pcma_pcm16k", MEDIA_CODEC_PCMA},
    {"g722_pcm16k", MEDIA_CODEC_G722}, {"g729_pcm16k", MEDIA_CODEC_G729},
    {"opus_pcm16k", MEDIA_CODEC_OPUS},
};

/* Median µs per tick of one leg; negative on setup errors. *heap = bytes the leg's
 * processing state holds on the heap (codec part and AI port, libraries' included). */
static double run_leg(enum media_codec c, unsigned frames, unsigned runs, size_t *heap)
{
	struct mallinfo2 m0 = mallinfo2();
	struct media_dsp *d = mem_zalloc(sizeof(*d));
	struct media_coder *enc = NULL;
	enum media_ai_format f = media_ai_format_for(c);
	int bad = !d || media_dsp_codec_create(&d->k, c) ||
	          media_ai_port_create(&d->ai, f, d->k->rate, NULL, NULL);
	struct mallinfo2 m1 = mallinfo2();
	*heap = m1.uordblks + m1.hblkhd - m0.uordblks - m0.hblkhd;
	if (bad || media_coder_create(&enc, c, NULL)) {
		media_dsp_destroy(d);
		media_coder_destroy(enc);
		return -1;
	}
	media_rfc4733_tx_init(&d->tx4733);
	/* One second of a voiced-like signal, pre-encoded: the caller's packets. */
	unsigned fs = media_coder_frame_samples(enc), rate = media_coder_pcm_rate(enc);
	static uint8_t pkt[50][MEDIA_CODED_FRAME_MAX];
	static int plen[50];
	int16_t pcm[MEDIA_PCM_FRAME_MAX];
	for (unsigned i = 0; i < 50; i++) {
		for (unsigned n = 0; n < fs; n++) {
			double t = (double)(i * fs + n) / rate;
			pcm[n] =
			    (int16_t)(6000.0 * sin(2 * M_PI * 120 * t) * (0.6 + 0.4 * sin(8 * t)) +
			              2000.0 * sin(2 * M_PI * 840 * t));
		}
		plen[i] = media_coder_encode(enc, pcm, pkt[i], MEDIA_CODED_FRAME_MAX);
	}
	/* One second of the AI's reply (a voiced-like signal too) in the AI format. */
	static uint8_t reply[50][640];
	uint8_t up[640], out[MEDIA_CODED_FRAME_MAX];
	for (unsigned i = 0; i < 50; i++) {
		unsigned ns = f == MEDIA_AI_MULAW_8K ? 160u : 320u, ar = ns * 50u;
		for (unsigned n = 0; n < ns; n++) {
			double t = (double)(i * ns + n) / ar;
			int16_t v =
			    (int16_t)(5000.0 * sin(2 * M_PI * 180 * t) * (0.6 + 0.4 * sin(6 * t)) +
			              1500.0 * sin(2 * M_PI * 1260 * t));
			if (f == MEDIA_AI_MULAW_8K) {
				media_g711_encode(MEDIA_CODEC_PCMU, &v, &reply[i][n], 1);
			} else {
				reply[i][2 * n] = (uint8_t)((uint16_t)v & 0xff);
				reply[i][2 * n + 1] = (uint8_t)((uint16_t)v >> 8);
			}
		}
	}
	unsigned fb = media_ai_frame_bytes(f), ts_step = media_codec_ts_per_frame(c);
	double per_run[MAX_RUNS];
	uint64_t now = 1000000;
	unsigned seq = 0;
	for (unsigned r = 0; r <= runs; r++) {
		unsigned n = r == 0 ? WARMUP : frames;
		double t0 = bench_cpu_us();
		for (unsigned i = 0; i < n; i++, seq++, now += 20000) {
			struct media_dsp_emit em;
			struct media_dsp_tx tx;
			media_dsp_rx_packet(d, 0x1234, (uint16_t)seq, seq * ts_step, pkt[seq % 50],
			                    (size_t)plen[seq % 50], now, 0);
			media_dsp_rx_tick(d, now, &em);
			while (media_ai_read(d->ai, up, NULL) == 1)
				;
			media_ai_write(d->ai, reply[seq % 50], fb);
			media_dsp_tx_tick(d, NULL, MEDIA_TONE_NONE, 0, now, out, sizeof(out), &em,
			                  &tx);
		}
		if (r > 0)
			per_run[r - 1] = (bench_cpu_us() - t0) / n;
	}
	double median = bench_median(per_run, runs);
	media_coder_destroy(enc);
	media_dsp_destroy(d);
	return median;
}

int main(int argc, char **argv)
{
	unsigned frames = 3000, runs = 9;
	const char *json = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--frames") && i + 1 < argc)
			frames = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			runs = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else {
			fprintf(stderr, "usage: dspbench [--frames N] [--runs R] [--json FILE]\n");
			return 2;
		}
	}
	if (!frames || !runs || runs > MAX_RUNS)
		return 2;
	FILE *jf = json ? fopen(json, "w") : NULL;
	if (json && !jf)
		return 1;
	printf("%-14s %-58s %10s %11s %9s\n", "leg", "one AI call, one 20 ms tick both ways",
	       "us/tick", "calls/core", "heap B");
	if (jf)
		fprintf(jf, "{");
	for (size_t i = 0; i < sizeof(legs) / sizeof(legs[0]); i++) {
		size_t heap = 0;
		double us = run_leg(legs[i].codec, frames, runs, &heap);
		if (us < 0) {
			fprintf(stderr, "dspbench: setup of %s failed\n", legs[i].name);
			return 1;
		}
		printf("%-14s %-58s %10.2f %11.0f %9zu\n", legs[i].name,
		       "jbuf+decode+DTMF det+resample+ring / playout+resample+encode", us,
		       1e6 / (50.0 * us), heap);
		if (jf)
			fprintf(jf,
			        "%s\"dsp_%s_tick_us\": %.3f, \"dsp_%s_ai_calls_per_core\": %.0f, "
			        "\"dsp_%s_heap_bytes\": %zu",
			        i ? ", " : "", legs[i].name, us, legs[i].name, 1e6 / (50.0 * us),
			        legs[i].name, heap);
	}
	if (jf) {
		fprintf(jf, "}\n");
		fclose(jf);
	}
	return 0;
}
