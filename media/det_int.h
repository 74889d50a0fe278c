/* Private to media/: DTMF (in-band detection and generation, RFC 4733 sending) and
 * answering-machine detection. Implemented in media/dtmf.c and media/amd.c. */
#ifndef VACS_MEDIA_DET_INT_H
#define VACS_MEDIA_DET_INT_H

#include "media/media.h"

#include <stdint.h>

/* ---- DTMF common ---- */

#define MEDIA_DTMF_MIN_MS    40u    /* shorter requests are lengthened to this (Q.24 minimum) */
#define MEDIA_DTMF_MAX_MS    10000u /* longer requests are cut to this */
#define MEDIA_DTMF_GAP_MS    60u    /* silence the in-band generator puts after every digit */
#define MEDIA_DTMF_QUEUE     16u    /* digits a generator or RFC 4733 sender can hold */
#define MEDIA_DTMF_LEVEL     (-10)  /* dBm0 of each of the two tones the generator writes */
#define MEDIA_RFC4733_VOLUME 10u    /* -dBm0 put in the volume field of what we send */

/* The RFC 4733 event code of a DTMF character ('0'-'9', '*', '#', 'A'-'D', 'a'-'d'),
 * or -EINVAL. The inverse of media_rfc4733_digit (media_int.h). */
int media_dtmf_event_code(char digit);

/* ---- In-band DTMF detection (spandsp dtmf_rx), 8 kHz PCM ---- */

/* A digit whose tone has ended. */
struct media_dtmf_digit {
	char digit;           /* '0'-'9', '*', '#', 'A'-'D' */
	unsigned duration_ms; /* measured tone length: decisions come every 102 samples
	                       * (12.75 ms); measured -11..+7 ms off, centred on 0 */
	int level_dbm0;       /* power of the block that confirmed it, as spandsp reports it */
};

struct media_dtmf_det; /* opaque */

/* Creates a detector (spandsp defaults: Q.24 timing, 8 dB normal / 4 dB reverse twist;
 * each tone must reach -36 dBm0, so -25 dBm0 digits pass with 11 dB to spare).
 * Allocates; setup time, any thread. The caller owns *out. 0 or -ENOMEM. */
int media_dtmf_det_create(struct media_dtmf_det **out);
/* NULL accepted. */
void media_dtmf_det_destroy(struct media_dtmf_det *d);
/* Feeds n samples of 8 kHz PCM (any n; no frame alignment needed). Writes the digits
 * whose tone ENDED inside this chunk to out[0..max-1], oldest first, and returns how
 * many; digits beyond max are dropped and counted (media_dtmf_det_lost). A tone still
 * sounding is reported by the call in which it stops. One thread at a time per detector;
 * never allocates, locks or logs. */
unsigned media_dtmf_det_feed(struct media_dtmf_det *d, const int16_t *pcm8k, unsigned n,
                             struct media_dtmf_digit *out, unsigned max);
/* The digit whose tone is sounding now (confirmed, not ended yet), or '\0'. Lets a relay
 * mute the tone or start signalling it before it ends. */
char media_dtmf_det_current(const struct media_dtmf_det *d);
/* Digits dropped because out was full. */
unsigned media_dtmf_det_lost(const struct media_dtmf_det *d);

/* ---- In-band DTMF generation, 8 or 16 kHz PCM ---- */

struct media_dtmf_gen; /* opaque */

/* Creates an idle generator. Allocates; setup time. The caller owns *out. 0 or -ENOMEM. */
int media_dtmf_gen_create(struct media_dtmf_gen **out);
/* NULL accepted. */
void media_dtmf_gen_destroy(struct media_dtmf_gen *g);
/* Queues a digit of duration_ms (clamped into [MEDIA_DTMF_MIN_MS, MEDIA_DTMF_MAX_MS]).
 * Every digit is followed by MEDIA_DTMF_GAP_MS of silence, so queued digits come out as a
 * dialable sequence. 0, -EINVAL (not a DTMF character) or -ENOSPC (queue full). Same
 * thread as media_dtmf_gen_fill; never allocates. */
int media_dtmf_gen_start(struct media_dtmf_gen *g, char digit, unsigned duration_ms);
/* While a digit or its trailing gap is active, overwrites pcm (n samples at rate 8000 or
 * 16000) with the tone pair (each tone at MEDIA_DTMF_LEVEL dBm0, 1 ms ramps) or silence;
 * samples after the queue runs empty are left as they were. Time runs only while fill is
 * called. Returns 1 when it wrote anything, 0 when idle, -EINVAL for another rate. Never
 * allocates, locks or logs. */
int media_dtmf_gen_fill(struct media_dtmf_gen *g, int16_t *pcm, unsigned n, unsigned rate);
/* 1 while a digit or gap is playing or queued. */
int media_dtmf_gen_busy(const struct media_dtmf_gen *g);

/* ---- RFC 4733 telephone-event sending ---- */

/* One sender per outgoing stream, embedded in its owner. Members are private to dtmf.c;
 * initialise with media_rfc4733_tx_init. */
struct media_rfc4733_tx {
	struct {
		uint8_t event;
		uint32_t units; /* whole event, timestamp units */
		uint32_t frame; /* timestamp units in 20 ms */
	} q[MEDIA_DTMF_QUEUE];
	unsigned head, count;
	int active; /* an event is being sent */
	uint8_t event;
	uint32_t units, frame;
	uint32_t tick;     /* 20 ms ticks sent for this event */
	uint32_t seg_base; /* timestamp units before the current segment (§2.5.1.3) */
	unsigned end_sent; /* end packets sent (3 in all) */
	int new_segment;   /* next packet starts a new segment */
};

/* Empties tx. */
void media_rfc4733_tx_init(struct media_rfc4733_tx *tx);
/* Queues a digit of duration_ms (clamped into [MEDIA_DTMF_MIN_MS, MEDIA_DTMF_MAX_MS]) at
 * the stream's telephone-event clock_rate (8000-48000, a multiple of 50). 0, -EINVAL or
 * -ENOSPC (queue full). Never allocates. */
int media_rfc4733_tx_start(struct media_rfc4733_tx *tx, char digit, unsigned duration_ms,
                           unsigned clock_rate);
/* Call once per 20 ms of the stream. Returns 0 when there is nothing to send, else 1 with
 * payload[4] to send in a packet with the M bit set to *marker and RTP timestamp equal to
 * the stream's timestamp for this 20 ms tick minus *ts_offset_out (that is the event's
 * start: 0 on its first packet, growing after). *is_new_event is 1 when the timestamp
 * differs from the previous packet's (a new event, or a new segment of an event longer
 * than 0xFFFF units, which has no marker). Sequence per event: a first packet with the
 * marker and duration of one tick, one update per tick with growing duration, then the
 * end packet (E bit, final duration) three times (§2.5.1.4); the next queued digit
 * starts on the following tick. Volume MEDIA_RFC4733_VOLUME. Never allocates. */
int media_rfc4733_tx_next(struct media_rfc4733_tx *tx, uint8_t payload[4], int *marker,
                          uint32_t *ts_offset_out, int *is_new_event);
/* 1 while an event is being sent or queued. */
int media_rfc4733_tx_busy(const struct media_rfc4733_tx *tx);

/* ---- Answering-machine detection, 8 kHz PCM ---- */

/* Tunables, in the style of Asterisk app_amd (defaults in brackets,
 * media_amd_config_default). Durations in ms of analysed audio. The logic is app_amd's:
 * words are runs of speech frames split by short silences; a long greeting, many words
 * or a long initial silence mean a machine, a short greeting followed by silence a
 * human. Added: the beep detector, and a silence threshold that adapts to the line. */
struct media_amd_config {
	unsigned initial_silence_ms;        /* [2500] no speech this long: MACHINE */
	unsigned greeting_ms;               /* [1500] speech adding up to this: MACHINE */
	unsigned after_greeting_silence_ms; /* [800] silence this long after speech: HUMAN */
	unsigned total_analysis_ms;         /* [5000] no verdict by then: UNSURE */
	unsigned min_word_ms;               /* [100] speech this long makes a word */
	unsigned between_words_silence_ms;  /* [50] silence this long ends a word */
	unsigned maximum_words;             /* [4] this many words: MACHINE (Asterisk has 3;
	                                     * "Hello, who is this?" can be 4 on a noisy line
	                                     * and was the commonest human error at 3) */
	unsigned maximum_word_ms;           /* [5000] one word this long: MACHINE */
	int silence_threshold_dbfs;         /* [-42] frames below this RMS are silence. The
	                                     * threshold follows the call: down to 30 dB under
	                                     * its loudest frame for a quiet talker, up to 6 dB
	                                     * over the quietest frame of the last second on a
	                                     * noisy line (at most -30 dBFS) */
	unsigned beep_min_ms;               /* [150] one steady tone this long: MACHINE at
	                                     * once ("beep"); 0 disables the beep detector */
	unsigned beep_min_hz, beep_max_hz;  /* [400, 2100] band of answering-machine beeps */
	unsigned end_wait_ms;               /* [0 = off] after a MACHINE verdict other than
	                                     * "beep", go on listening for the greeting's end:
	                                     * a beep, end_silence_ms of silence, or this long;
	                                     * media_amd_feed then returns 2 (reason "beep",
	                                     * "silence" or "timeout") */
	unsigned end_silence_ms;            /* [1200] silence that ends a greeting */
};

struct media_amd_result {
	enum media_amd_verdict verdict; /* media.h: HUMAN, MACHINE or UNSURE */
	unsigned ms;                    /* audio analysed when the verdict was reached */
	const char *reason; /* static string: "long greeting", "initial silence", "beep",
	                     * "human: short greeting then silence", "max words",
	                     * "long word", "too long" */
};

struct media_amd; /* opaque */

/* Fills c with the defaults above. */
void media_amd_config_default(struct media_amd_config *c);
/* Creates a detector for the start of one answered leg; c NULL means defaults (copied).
 * Allocates; setup time, any thread. The caller owns *out. 0, -EINVAL (a zero duration
 * where one is needed, or an empty beep band) or -ENOMEM. */
int media_amd_create(struct media_amd **out, const struct media_amd_config *c);
/* NULL accepted. */
void media_amd_destroy(struct media_amd *a);
/* Feeds n samples of 8 kHz PCM (any n; analysed in 20 ms frames). Returns 1 exactly once,
 * when the verdict is reached, with *r filled; 0 before and after (audio after the verdict
 * is ignored). One thread at a time; never allocates, locks or logs. */
/* Returns 1 with the verdict, 2 with the end of a machine's greeting (end_wait_ms), else
 * 0. */
int media_amd_feed(struct media_amd *a, const int16_t *pcm, unsigned n, struct media_amd_result *r);

#endif
