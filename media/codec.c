/* Codec table and per-leg coders: G.711, G.722 (spandsp), Opus, G.729 (bcg729), with PLC. */
#include "media/codec_int.h"

#include "core/mem.h"
#include "media/media_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <bcg729/decoder.h>
#include <bcg729/encoder.h>
#include <opus.h>
/* The G.722 states are embedded in struct media_coder, so their layout must be visible. */
#define SPANDSP_EXPOSE_INTERNAL_STRUCTURES
#include <spandsp.h>

static const struct media_codec_desc codecs[MEDIA_CODEC_COUNT] = {
    [MEDIA_CODEC_PCMU] = {MEDIA_CODEC_PCMU, "PCMU", 8000, 1, 0, 8000, 160},
    [MEDIA_CODEC_PCMA] = {MEDIA_CODEC_PCMA, "PCMA", 8000, 1, 8, 8000, 160},
    /* RFC 3551 4.5.2: the RTP clock says 8000 for G.722 although it samples at 16 kHz. */
    [MEDIA_CODEC_G722] = {MEDIA_CODEC_G722, "G722", 8000, 1, 9, 16000, 160},
    [MEDIA_CODEC_OPUS] = {MEDIA_CODEC_OPUS, "opus", 48000, 2, -1, 16000, 0},
    /* Two 10-byte frames per 20 ms; a 2-byte SID frame may end a payload (RFC 3551 4.5.6). */
    [MEDIA_CODEC_G729] = {MEDIA_CODEC_G729, "G729", 8000, 1, 18, 8000, 20},
};

#define G722_BITRATE       64000
#define G729_FRAME_BYTES   10u
#define G729_FRAME_SAMPLES 80u
#define G729_SID_BYTES     2u

/* Loss concealment for 16 kHz audio (G.722). spandsp's plc is written for 8 kHz: at 16 kHz
 * its pitch search (40-120 samples) misses voices under 133 Hz and its fade-out ends after
 * 25 ms. This is the same method with 16 kHz constants: the pitch period is found by AMDF
 * over the last 20 ms of history (66-200 Hz), the last period is repeated, fading linearly
 * to silence over 50 ms; the first quarter period of real audio after a loss is
 * cross-faded from the continued synthetic signal. */
#define PLC16_PITCH_MIN 80u  /* samples: 200 Hz */
#define PLC16_PITCH_MAX 240u /* samples: 66.7 Hz */
#define PLC16_SPAN      320u /* samples compared per candidate period: 20 ms */
#define PLC16_HIST      (PLC16_SPAN + PLC16_PITCH_MAX)
#define PLC16_FADE      800u /* samples: 50 ms to silence */

struct plc16 {
	int16_t hist[PLC16_HIST]; /* last samples played, oldest first */
	unsigned pitch;           /* period being repeated, samples */
	unsigned pos;             /* next sample of the period to play */
	unsigned missing;         /* samples made up since the last real audio */
};

struct media_coder {
	const struct media_codec_desc *desc;
	unsigned pcm_rate;      /* Hz */
	unsigned frame_samples; /* PCM samples per 20 ms */
	union {
		plc_state_t g711_plc;
		struct {
			g722_encode_state_t enc;
			g722_decode_state_t dec;
			struct plc16 plc;
		} g722;
		struct {
			OpusEncoder *enc; /* mem_alloc'd, opus_encoder_get_size bytes */
			OpusDecoder *dec;
		} opus;
		struct {
			bcg729EncoderChannelContextStruct *enc; /* bcg729 mallocs these itself */
			bcg729DecoderChannelContextStruct *dec;
		} g729;
	} u;
};

const struct media_codec_desc *media_codec_desc(enum media_codec c)
{
	if (c <= MEDIA_CODEC_NONE || c >= MEDIA_CODEC_COUNT)
		return NULL;
	return &codecs[c];
}

enum media_codec media_codec_by_name(const char *name)
{
	for (int c = MEDIA_CODEC_NONE + 1; name && c < MEDIA_CODEC_COUNT; c++)
		if (!strcasecmp(name, codecs[c].name))
			return (enum media_codec)c;
	return MEDIA_CODEC_NONE;
}

unsigned media_codec_ts_per_frame(enum media_codec c)
{
	const struct media_codec_desc *d = media_codec_desc(c);
	return d ? d->rtp_clock / 50 : 0;
}

/* ---- 16 kHz concealment ---- */

static unsigned plc16_pitch(const int16_t *h)
{
	const int16_t *cur = h + PLC16_HIST - PLC16_SPAN;
	unsigned best = PLC16_PITCH_MIN;
	long best_sum = -1;
	for (unsigned lag = PLC16_PITCH_MIN; lag <= PLC16_PITCH_MAX; lag++) {
		long sum = 0;
		for (unsigned i = 0; i < PLC16_SPAN; i++)
			sum += labs((long)cur[i] - cur[(long)i - (long)lag]);
		if (best_sum < 0 || sum < best_sum) {
			best_sum = sum;
			best = lag;
		}
	}
	return best;
}

/* Next synthetic sample: the repeated period at the current gain. */
static int16_t plc16_next(struct plc16 *p)
{
	int16_t s = p->hist[PLC16_HIST - p->pitch + p->pos];
	p->pos = (p->pos + 1) % p->pitch;
	if (p->missing >= PLC16_FADE)
		return 0;
	return (int16_t)((long)s * (long)(PLC16_FADE - p->missing) / (long)PLC16_FADE);
}

static void plc16_fillin(struct plc16 *p, int16_t *pcm, unsigned n)
{
	if (!p->missing) {
		p->pitch = plc16_pitch(p->hist);
		p->pos = 0;
	}
	for (unsigned i = 0; i < n; i++, p->missing++)
		pcm[i] = plc16_next(p);
	/* The history keeps the real audio: a longer loss repeats the same period. */
}

static void plc16_rx(struct plc16 *p, int16_t *pcm, unsigned n)
{
	if (p->missing) {
		unsigned ramp = p->pitch / 4;
		for (unsigned i = 0; i < ramp && i < n; i++) {
			long syn = plc16_next(p);
			pcm[i] = (int16_t)((syn * (long)(ramp - i) + (long)pcm[i] * (long)i) /
			                   (long)ramp);
		}
		p->missing = 0;
	}
	if (n >= PLC16_HIST) {
		memcpy(p->hist, pcm + n - PLC16_HIST, sizeof(p->hist));
	} else {
		memmove(p->hist, p->hist + n, (PLC16_HIST - n) * sizeof(int16_t));
		memcpy(p->hist + PLC16_HIST - n, pcm, n * sizeof(int16_t));
	}
}

/* spandsp 0.0.6's plc_fillin() first rotates the history ring to start at index 0 with a
 * memcpy between overlapping ranges (undefined behaviour, caught by ASan). Rotating it here
 * beforehand makes that step a no-op. */
static void g711_plc_fillin(plc_state_t *p, int16_t *pcm, int n)
{
	if (p->buf_ptr > 0 && p->buf_ptr < PLC_HISTORY_LEN) {
		int16_t tmp[PLC_HISTORY_LEN];
		size_t head = (size_t)(PLC_HISTORY_LEN - p->buf_ptr);
		memcpy(tmp, p->history + p->buf_ptr, head * sizeof(int16_t));
		memcpy(tmp + head, p->history, (size_t)p->buf_ptr * sizeof(int16_t));
		memcpy(p->history, tmp, sizeof(tmp));
	}
	p->buf_ptr = 0;
	plc_fillin(p, pcm, n);
}

/* ---- Coder lifecycle ---- */

static int opus_setup(struct media_coder *k, const struct media_coder_opts *o)
{
	int complexity = o->opus_complexity < 0 ? 5 : o->opus_complexity;
	unsigned bitrate = o->opus_bitrate ? o->opus_bitrate : 32000;
	if (complexity > 10 || bitrate < 6000 || bitrate > 510000 || o->opus_loss_pct > 100)
		return -EINVAL;
	k->u.opus.enc = mem_alloc((size_t)opus_encoder_get_size(1));
	k->u.opus.dec = mem_alloc((size_t)opus_decoder_get_size(1));
	if (!k->u.opus.enc || !k->u.opus.dec)
		return -ENOMEM;
	OpusEncoder *e = k->u.opus.enc;
	if (opus_encoder_init(e, (opus_int32)k->pcm_rate, 1, OPUS_APPLICATION_VOIP) != OPUS_OK ||
	    opus_decoder_init(k->u.opus.dec, (opus_int32)k->pcm_rate, 1) != OPUS_OK ||
	    opus_encoder_ctl(e, OPUS_SET_COMPLEXITY(complexity)) != OPUS_OK ||
	    opus_encoder_ctl(e, OPUS_SET_BITRATE((opus_int32)bitrate)) != OPUS_OK ||
	    opus_encoder_ctl(e, OPUS_SET_INBAND_FEC(o->opus_fec ? 1 : 0)) != OPUS_OK ||
	    opus_encoder_ctl(e, OPUS_SET_PACKET_LOSS_PERC((int)o->opus_loss_pct)) != OPUS_OK)
		return -EIO;
	return 0;
}

int media_coder_create(struct media_coder **out, enum media_codec c,
                       const struct media_coder_opts *o)
{
	static const struct media_coder_opts defaults = {.opus_complexity = -1};
	const struct media_codec_desc *d = media_codec_desc(c);
	if (!d)
		return -EINVAL;
	if (!o)
		o = &defaults;
	unsigned rate = o->pcm_rate ? o->pcm_rate : d->pcm_rate;
	int opus_rate = rate == 8000 || rate == 16000 || rate == 24000 || rate == 48000;
	if (rate != d->pcm_rate && !(c == MEDIA_CODEC_OPUS && opus_rate))
		return -EINVAL;

	struct media_coder *k = mem_zalloc(sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->desc = d;
	k->pcm_rate = rate;
	k->frame_samples = rate / 50;
	int err = 0;
	switch (c) {
	case MEDIA_CODEC_PCMU:
	case MEDIA_CODEC_PCMA:
		plc_init(&k->u.g711_plc);
		break;
	case MEDIA_CODEC_G722:
		g722_encode_init(&k->u.g722.enc, G722_BITRATE, 0);
		g722_decode_init(&k->u.g722.dec, G722_BITRATE, 0);
		break;
	case MEDIA_CODEC_OPUS:
		err = opus_setup(k, o);
		break;
	case MEDIA_CODEC_G729:
		k->u.g729.enc = initBcg729EncoderChannel(0); /* no VAD: annexb=no */
		k->u.g729.dec = initBcg729DecoderChannel();
		if (!k->u.g729.enc || !k->u.g729.dec)
			err = -ENOMEM;
		break;
	default:
		err = -EINVAL;
		break;
	}
	if (err) {
		media_coder_destroy(k);
		return err;
	}
	*out = k;
	return 0;
}

void media_coder_destroy(struct media_coder *k)
{
	if (!k)
		return;
	switch (k->desc->codec) {
	case MEDIA_CODEC_OPUS:
		mem_free(k->u.opus.enc);
		mem_free(k->u.opus.dec);
		break;
	case MEDIA_CODEC_G729:
		if (k->u.g729.enc)
			closeBcg729EncoderChannel(k->u.g729.enc);
		if (k->u.g729.dec)
			closeBcg729DecoderChannel(k->u.g729.dec);
		break;
	default: /* G.711 and G.722 state lives inside k */
		break;
	}
	mem_free(k);
}

enum media_codec media_coder_codec(const struct media_coder *k)
{
	return k->desc->codec;
}

unsigned media_coder_pcm_rate(const struct media_coder *k)
{
	return k->pcm_rate;
}

unsigned media_coder_frame_samples(const struct media_coder *k)
{
	return k->frame_samples;
}

/* ---- Per-frame work: worker thread, no allocation ---- */

int media_coder_encode(struct media_coder *k, const int16_t *pcm, uint8_t *out, size_t cap)
{
	const unsigned n = k->frame_samples;
	switch (k->desc->codec) {
	case MEDIA_CODEC_PCMU:
	case MEDIA_CODEC_PCMA:
		if (cap < n)
			return -ENOSPC;
		media_g711_encode(k->desc->codec, pcm, out, n);
		return (int)n;
	case MEDIA_CODEC_G722:
		if (cap < n / 2)
			return -ENOSPC;
		return g722_encode(&k->u.g722.enc, out, pcm, (int)n);
	case MEDIA_CODEC_OPUS: {
		opus_int32 max =
		    (opus_int32)(cap > MEDIA_CODED_FRAME_MAX ? MEDIA_CODED_FRAME_MAX : cap);
		if (!max)
			return -ENOSPC;
		/* A small cap only lowers the bitrate of this frame (down to a 1-byte TOC). */
		opus_int32 r = opus_encode(k->u.opus.enc, pcm, (int)n, out, max);
		if (r == OPUS_BUFFER_TOO_SMALL)
			return -ENOSPC;
		return r < 0 ? -EIO : (int)r;
	}
	case MEDIA_CODEC_G729:
		if (cap < 2 * G729_FRAME_BYTES)
			return -ENOSPC;
		for (unsigned i = 0; i < 2; i++) {
			uint8_t len = 0;
			bcg729Encoder(k->u.g729.enc, pcm + i * G729_FRAME_SAMPLES,
			              out + i * G729_FRAME_BYTES, &len);
			if (len != G729_FRAME_BYTES)
				return -EIO;
		}
		return 2 * G729_FRAME_BYTES;
	default:
		return -EIO;
	}
}

static int decode_g729(struct media_coder *k, const uint8_t *in, size_t len, int16_t *pcm,
                       size_t cap)
{
	size_t frames = len / G729_FRAME_BYTES, rest = len % G729_FRAME_BYTES;
	if (rest != 0 && rest != G729_SID_BYTES)
		return -EBADMSG;
	size_t total = frames + (rest ? 1 : 0);
	if (total > 6) /* more than 60 ms */
		return -EBADMSG;
	if (total * G729_FRAME_SAMPLES > cap)
		return -ENOSPC;
	for (size_t i = 0; i < total; i++) {
		int sid = i == frames;
		bcg729Decoder(k->u.g729.dec, in + i * G729_FRAME_BYTES,
		              sid ? G729_SID_BYTES : G729_FRAME_BYTES, 0, (uint8_t)sid, 0,
		              pcm + i * G729_FRAME_SAMPLES);
	}
	return (int)(total * G729_FRAME_SAMPLES);
}

int media_coder_decode(struct media_coder *k, const uint8_t *in, size_t len, int16_t *pcm,
                       size_t cap)
{
	const size_t max_samples = 3 * (size_t)k->frame_samples; /* 60 ms */
	if (!in || !len)
		return -EBADMSG;
	switch (k->desc->codec) {
	case MEDIA_CODEC_PCMU:
	case MEDIA_CODEC_PCMA:
		if (len > max_samples)
			return -EBADMSG;
		if (len > cap)
			return -ENOSPC;
		media_g711_decode(k->desc->codec, in, pcm, len);
		plc_rx(&k->u.g711_plc, pcm, (int)len);
		return (int)len;
	case MEDIA_CODEC_G722: {
		if (2 * len > max_samples)
			return -EBADMSG;
		if (2 * len > cap)
			return -ENOSPC;
		int n = g722_decode(&k->u.g722.dec, pcm, in, (int)len);
		plc16_rx(&k->u.g722.plc, pcm, (unsigned)n);
		return n;
	}
	case MEDIA_CODEC_OPUS: {
		if (len > MEDIA_CODED_FRAME_MAX * 3)
			return -EBADMSG;
		int n = opus_packet_get_nb_samples(in, (opus_int32)len, (opus_int32)k->pcm_rate);
		if (n <= 0 || (size_t)n > max_samples)
			return -EBADMSG;
		if ((size_t)n > cap)
			return -ENOSPC;
		n = opus_decode(k->u.opus.dec, in, (opus_int32)len, pcm, n, 0);
		return n < 0 ? -EBADMSG : n;
	}
	case MEDIA_CODEC_G729:
		return decode_g729(k, in, len, pcm, cap);
	default:
		return -EBADMSG;
	}
}

int media_coder_conceal(struct media_coder *k, const uint8_t *next, size_t next_len, int16_t *pcm)
{
	const int n = (int)k->frame_samples;
	switch (k->desc->codec) {
	case MEDIA_CODEC_PCMU:
	case MEDIA_CODEC_PCMA:
		g711_plc_fillin(&k->u.g711_plc, pcm, n);
		break;
	case MEDIA_CODEC_G722:
		plc16_fillin(&k->u.g722.plc, pcm, (unsigned)n);
		break;
	case MEDIA_CODEC_OPUS: {
		int r = -1;
		/* Without in-band FEC in `next`, opus_decode(fec=1) runs its PLC instead. */
		if (next && next_len && next_len <= MEDIA_CODED_FRAME_MAX * 3)
			r = opus_decode(k->u.opus.dec, next, (opus_int32)next_len, pcm, n, 1);
		if (r != n)
			r = opus_decode(k->u.opus.dec, NULL, 0, pcm, n, 0);
		if (r != n)
			memset(pcm, 0, (size_t)n * sizeof(*pcm));
		break;
	}
	case MEDIA_CODEC_G729:
		for (int i = 0; i < n; i += (int)G729_FRAME_SAMPLES)
			bcg729Decoder(k->u.g729.dec, NULL, 0, 1, 0, 0, pcm + i);
		break;
	default:
		memset(pcm, 0, (size_t)n * sizeof(*pcm));
		break;
	}
	return n;
}
