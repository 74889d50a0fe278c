/* Private to media/: the per-leg audio processing (media/dsp.c) that media.c's workers
 * run on the tick for legs that are not plain relays. */
#ifndef VACS_MEDIA_DSP_INT_H
#define VACS_MEDIA_DSP_INT_H

#include "media/buf_int.h"
#include "media/codec_int.h"
#include "media/det_int.h"
#include "media/media_int.h"

#include <stddef.h>
#include <stdint.h>

struct media_prompt;
struct media_recorder;

#define MEDIA_DSP_AHEAD_MAX 2u

/* What depends on the leg's codec: replaced as a whole when a re-INVITE changes it.
 * Created on the control thread, then owned by the worker. */
struct media_dsp_codec {
	enum media_codec codec;
	unsigned rate;    /* PCM rate: 8000 or 16000 */
	unsigned fs;      /* samples per 20 ms at rate */
	unsigned ts_step; /* RTP timestamp units per 20 ms */
	struct media_coder *coder;
	struct media_jbuf *jb;
	/* rate <-> the other of 8/16 kHz. to_alt: AI upstream of a narrowband leg, or the
	 * detectors of a wideband leg; from_alt: AI downstream or a peer at the other rate. */
	struct media_resampler *to_alt, *from_alt;
	struct media_dtmf_det *det;
	struct media_dtmf_gen *gen;
};

int media_dsp_codec_create(struct media_dsp_codec **out, enum media_codec c);
void media_dsp_codec_destroy(struct media_dsp_codec *k);

/* The dsp state of one leg. Created by the control thread, owned by the worker. */
struct media_dsp {
	struct media_dsp_codec *k; /* NULL until the leg has a codec */
	int has_te;                /* the leg negotiated telephone-event */
	/* This tick's received frame, at k->rate. */
	int16_t rx[MEDIA_PCM_FRAME_MAX];
	int rx_audio;          /* rx holds received or concealed audio (else zeros) */
	const uint8_t *rx_raw; /* the payload it was decoded from, this tick only */
	size_t rx_raw_len;
	/* AI legs: frames that went up to the AI ring when their packets arrived, ahead of
	 * the ticks they stand for. A tick with rx_ahead > 0 takes one back and queues
	 * nothing (rx, rx_raw hold the last frame taken); one with 0 queues this tick's
	 * frame (packet, concealment or silence). So the AI gets one frame per tick over
	 * time, never more than MEDIA_DSP_AHEAD_MAX ahead: 2 lets a packet held back (two
	 * arrived in one tick, or the jitter buffer's start hold) catch up at the next
	 * arrival instead of keeping every later packet a tick late. */
	unsigned rx_ahead;
	uint32_t rx_ssrc; /* source the jitter buffer is numbering */
	int rx_have_ssrc;
	int16_t tx[MEDIA_PCM_FRAME_MAX];
	struct media_ai_port *ai;
	uint8_t ai_frame[640];
	struct media_prompt *prompt;
	unsigned prompt_frame;
	int loop;
	uint32_t play_id;
	struct media_recorder *rec;
	struct media_amd *amd;
	int amd_done;
	struct media_rfc4733_tx tx4733;
	uint64_t decode_errors, concealed;
};

/* What a tick produced that the worker turns into events or wake-ups. */
struct media_dsp_emit {
	int notify; /* a frame was queued for the AI thread */
	unsigned n_digits;
	struct media_dtmf_digit digits[4]; /* in-band digits that ended */
	unsigned n_marks;
	struct {
		uint32_t id;
		int played; /* 1 played, 0 flushed */
	} marks[4];
	int play_done;
	uint32_t play_id;
	int amd;
	int amd_verdict;
	uint32_t amd_ms;
	const char *amd_why;
	int amd_end; /* the machine's greeting ended (MEDIA_EV_AMD_END) */
	uint32_t amd_end_ms;
	const char *amd_end_why;
};

/* The packet a tx tick produced. */
struct media_dsp_tx {
	size_t len;
	int dtmf;        /* an RFC 4733 packet (PT = telephone-event) */
	int marker;      /* RFC 4733 marker (first packet of an event) */
	uint32_t ts_off; /* RFC 4733: the event segment began this many units ago */
};

/* AI port (the struct lives in dsp.c). */
/* leg_rate: the leg's PCM rate (16 kHz AI audio toward an 8 kHz leg is kept at 8 kHz). */
int media_ai_port_create(struct media_ai_port **out, enum media_ai_format f, unsigned leg_rate,
                         media_ai_notify_cb cb, void *arg);

/* One more reference (created with one). */
void media_ai_port_ref(struct media_ai_port *p);
/* The wake-up target given at attach. */
void media_ai_port_notify_target(const struct media_ai_port *p, media_ai_notify_cb *cb, void **arg);

/* Worker side. */
/* One received audio packet into the jitter buffer. On an AI leg the expected next
 * packet(s) also go up to the AI ring at once (see rx_ahead), stamped with rx_us (the
 * kernel's receive time, CLOCK_REALTIME us); returns 1 when a frame was queued (the AI
 * thread should be woken), else 0. */
int media_dsp_rx_packet(struct media_dsp *d, uint32_t ssrc, uint16_t seq, uint32_t ts,
                        const uint8_t *payload, size_t len, uint64_t now, uint64_t rx_us);
void media_dsp_reset_rx(struct media_dsp *d);
/* 1 when the leg's expected next packet is here, so that its rx stage can run now (a
 * bridged dsp leg's packet goes on at arrival, not at its tick). */
int media_dsp_rx_ready(struct media_dsp *d, uint64_t now);
void media_dsp_rx_tick(struct media_dsp *d, uint64_t now, struct media_dsp_emit *em);
/* Writes this tick's payload for the leg into out; returns 1 when there is a packet to
 * send (tx says which kind), 0 when the leg sends nothing this tick. em collects the
 * marks and prompt end of the tx side (call after rx_tick, same em). */
int media_dsp_tx_tick(struct media_dsp *d, const struct media_dsp *peer, enum media_tone tone,
                      uint32_t tone_pos, uint64_t now, uint8_t *out, size_t cap,
                      struct media_dsp_emit *em, struct media_dsp_tx *tx);
/* Frees everything, finishing a recording and releasing the AI port. Worker (at session
 * release) or control thread (a dsp never handed over). NULL accepted. */
void media_dsp_destroy(struct media_dsp *d);

#endif
