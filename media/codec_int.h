/* Private to media/: the codec table, per-leg coder state (encoder, decoder, loss
 * concealment) and speexdsp resampling. Implemented in media/codec.c and media/resample.c. */
#ifndef VACS_MEDIA_CODEC_INT_H
#define VACS_MEDIA_CODEC_INT_H

#include "media/media.h"

#include <stddef.h>
#include <stdint.h>

/* Most PCM samples one 20 ms frame can hold inside VACS (48 kHz). */
#define MEDIA_PCM_FRAME_MAX 960u
/* Most bytes one encoded 20 ms frame of any codec here takes (Opus at 510 kbit/s: 1275). */
#define MEDIA_CODED_FRAME_MAX 1500u

/* Static description of one codec. */
struct media_codec_desc {
	enum media_codec codec;
	const char *name;      /* SDP encoding name: "PCMU", "PCMA", "G722", "opus", "G729" */
	unsigned rtp_clock;    /* RTP clock in SDP: 8000 (G.722 too), 48000 for opus */
	unsigned sdp_channels; /* channels in the rtpmap (2 for opus/48000/2), 1 otherwise */
	int static_pt;         /* 0, 8, 9, 18, or -1 for a dynamic PT */
	unsigned pcm_rate;     /* default sampling rate of the PCM side: 8000 or 16000 */
	unsigned frame_bytes;  /* bytes per 20 ms for constant-rate codecs, 0 when variable */
};

/* The description of c, or NULL for MEDIA_CODEC_NONE and out-of-range values. */
const struct media_codec_desc *media_codec_desc(enum media_codec c);
/* The codec of an SDP encoding name (case-insensitive), MEDIA_CODEC_NONE if unknown. */
enum media_codec media_codec_by_name(const char *name);
/* RTP timestamp units in 20 ms for c (160, or 960 for opus); 0 for NONE. */
unsigned media_codec_ts_per_frame(enum media_codec c);

struct media_coder_opts {
	unsigned pcm_rate;      /* 0 = the codec's pcm_rate; opus takes 8000/16000/24000/48000 */
	int opus_complexity;    /* 0-10; negative = 5 */
	unsigned opus_bitrate;  /* bit/s, 0 = 32000 */
	int opus_fec;           /* in-band FEC on (the decoder always uses FEC when it can) */
	unsigned opus_loss_pct; /* expected loss given to the encoder, 0-100 */
};

/* Encoder, decoder and loss concealment of one codec for one leg. Opaque. Created and
 * destroyed on the control thread (setup time: this is where it allocates); used by one
 * worker thread at a time; encode/decode/conceal never allocate, lock or log. */
struct media_coder;

/* o may be NULL for defaults. 0, -EINVAL (NONE or a bad option), -ENOMEM, -EIO (library). */
int media_coder_create(struct media_coder **out, enum media_codec c,
                       const struct media_coder_opts *o);
/* NULL accepted. */
void media_coder_destroy(struct media_coder *k);
enum media_codec media_coder_codec(const struct media_coder *k);
/* Sampling rate of the PCM side and samples in one 20 ms frame of it. */
unsigned media_coder_pcm_rate(const struct media_coder *k);
unsigned media_coder_frame_samples(const struct media_coder *k);
/* Encodes exactly one 20 ms frame (frame_samples samples). Returns the payload length or
 * -ENOSPC (cap too small) / -EIO. */
int media_coder_encode(struct media_coder *k, const int16_t *pcm, uint8_t *out, size_t cap);
/* Decodes one RTP payload (any whole number of codec frames up to 60 ms). Writes at most
 * cap samples; returns the sample count or -EBADMSG (malformed) / -ENOSPC. Feeds the
 * concealment history. */
int media_coder_decode(struct media_coder *k, const uint8_t *in, size_t len, int16_t *pcm,
                       size_t cap);
/* Makes up one lost 20 ms frame: Opus recovers it from the in-band FEC of `next` (the
 * payload that followed the loss) when given and present, else its PLC; G.711/G.722 use
 * spandsp's PLC on the decoded history; G.729 its frame-erasure path. Returns
 * frame_samples. */
int media_coder_conceal(struct media_coder *k, const uint8_t *next, size_t next_len, int16_t *pcm);

/* ---- Resampling (speexdsp), media/resample.c ---- */

struct media_resampler; /* one direction of one stream, opaque */

/* Rates from {8000, 16000, 24000, 48000} (others accepted for file conversion). quality
 * 0-10 (speexdsp; 3 = VOIP, the default when negative). Control thread. 0, -EINVAL, -ENOMEM. */
int media_resampler_create(struct media_resampler **out, unsigned in_rate, unsigned out_rate,
                           int quality);
void media_resampler_destroy(struct media_resampler *r);
/* Converts in_n samples; writes at most out_cap; returns samples written. With rates from
 * the set above and in_n one 20 ms frame, exactly one 20 ms frame comes out. Never allocates. */
unsigned media_resample(struct media_resampler *r, const int16_t *in, unsigned in_n, int16_t *out,
                        unsigned out_cap);
/* Input-to-output delay the filter adds, in output samples. */
unsigned media_resampler_delay(const struct media_resampler *r);
/* Forgets the samples held in the filter (a stream restarts). */
void media_resampler_reset(struct media_resampler *r);

#endif
