/* Prompts: announcements and music on hold, converted and encoded at load time, shared. */
#include "media/wav_int.h"

#include "core/mem.h"
#include "media/codec_int.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* 20 ms at 8 kHz: the prompt's frame grid, the same for every codec. */
#define PROMPT_FRAME_8K 160u

/* The encoded frames of one codec: this struct and off[] in one block, data in another. */
struct prompt_enc {
	unsigned frames;
	uint8_t *data;
	uint32_t off[]; /* frames + 1 entries: frame i is data[off[i] .. off[i + 1]) */
};

struct media_prompt {
	atomic_uint refs;
	int16_t *pcm8; /* 8 kHz mono, n8 samples */
	size_t n8;
	int16_t *pcm16; /* 16 kHz mono, n16 <= 2 * n8 samples */
	size_t n16;
	unsigned frames; /* ceil(n8 / 160) */
	/* Published once per codec with release order, read with acquire. */
	_Atomic(struct prompt_enc *) enc[MEDIA_CODEC_COUNT];
};

int media_prompt_load(const char *path, struct media_prompt **out, char *err, size_t errlen)
{
	static const unsigned rates[2] = {8000, 16000};
	int16_t *pcm[2];
	size_t n[2];
	struct media_prompt *p = mem_zalloc(sizeof(*p));
	if (!p) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	int rc = media_wav_load_rates(path, 2, rates, pcm, n, err, errlen);
	if (rc) {
		mem_free(p);
		return rc;
	}
	atomic_init(&p->refs, 1u);
	for (unsigned c = 0; c < MEDIA_CODEC_COUNT; c++)
		atomic_init(&p->enc[c], NULL);
	p->pcm8 = pcm[0];
	p->n8 = n[0];
	p->pcm16 = pcm[1];
	/* The two rates are rounded separately; keeping 16 kHz within twice the 8 kHz length
	 * gives every codec the same frame count. */
	p->n16 = n[1] < 2 * n[0] ? n[1] : 2 * n[0];
	p->frames = (unsigned)((p->n8 + PROMPT_FRAME_8K - 1) / PROMPT_FRAME_8K);
	*out = p;
	return 0;
}

static void enc_free(struct prompt_enc *e)
{
	if (!e)
		return;
	mem_free(e->data);
	mem_free(e);
}

int media_prompt_prepare(struct media_prompt *p, enum media_codec c)
{
	const struct media_codec_desc *d = media_codec_desc(c);
	if (!d)
		return -EINVAL;
	if (atomic_load_explicit(&p->enc[c], memory_order_acquire))
		return 0;

	struct media_coder *k = NULL;
	struct prompt_enc *e = NULL;
	int rc = media_coder_create(&k, c, NULL);
	if (rc)
		return rc;
	unsigned rate = media_coder_pcm_rate(k);
	unsigned fs = media_coder_frame_samples(k);
	const int16_t *pcm;
	size_t n;
	if (rate == 8000) {
		pcm = p->pcm8;
		n = p->n8;
	} else if (rate == 16000) {
		pcm = p->pcm16;
		n = p->n16;
	} else {
		rc = -EINVAL; /* the prompt holds 8 and 16 kHz only */
		goto out;
	}
	if (fs == 0 || fs > MEDIA_PCM_FRAME_MAX || fs != rate / 50u) {
		rc = -EINVAL;
		goto out;
	}
	e = mem_zalloc(sizeof(*e) + ((size_t)p->frames + 1) * sizeof(e->off[0]));
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	size_t cap = (size_t)p->frames * (d->frame_bytes ? d->frame_bytes : 128u);
	e->data = mem_alloc(cap ? cap : 1);
	if (!e->data) {
		rc = -ENOMEM;
		goto out;
	}
	int16_t frame[MEDIA_PCM_FRAME_MAX];
	uint8_t coded[MEDIA_CODED_FRAME_MAX];
	size_t used = 0;
	for (unsigned i = 0; i < p->frames; i++) {
		size_t at = (size_t)i * fs;
		size_t have = at < n ? n - at : 0;
		if (have > fs)
			have = fs;
		memcpy(frame, pcm + at, have * sizeof(frame[0]));
		memset(frame + have, 0, (fs - have) * sizeof(frame[0]));
		int len = media_coder_encode(k, frame, coded, sizeof(coded));
		if (len < 0) {
			rc = len;
			goto out;
		}
		if (used + (size_t)len > cap) {
			size_t ncap = cap * 2 + (size_t)len;
			uint8_t *nd = mem_realloc(e->data, ncap);
			if (!nd) {
				rc = -ENOMEM;
				goto out;
			}
			e->data = nd;
			cap = ncap;
		}
		e->off[i] = (uint32_t)used;
		memcpy(e->data + used, coded, (size_t)len);
		used += (size_t)len;
	}
	e->off[p->frames] = (uint32_t)used;
	e->frames = p->frames;
	struct prompt_enc *expected = NULL;
	if (atomic_compare_exchange_strong_explicit(&p->enc[c], &expected, e, memory_order_acq_rel,
	                                            memory_order_acquire))
		e = NULL; /* published; otherwise someone else was first */
out:
	enc_free(e);
	media_coder_destroy(k);
	return rc;
}

int media_prompt_frame(const struct media_prompt *p, enum media_codec c, unsigned i,
                       const uint8_t **data, size_t *len)
{
	if ((unsigned)c >= MEDIA_CODEC_COUNT)
		return -EINVAL;
	const struct prompt_enc *e = atomic_load_explicit(&p->enc[c], memory_order_acquire);
	if (!e)
		return -EINVAL;
	if (i >= e->frames)
		return -ENOENT;
	*data = e->data + e->off[i];
	*len = e->off[i + 1] - e->off[i];
	return 0;
}

unsigned media_prompt_frames(const struct media_prompt *p, enum media_codec c)
{
	if ((unsigned)c >= MEDIA_CODEC_COUNT)
		return 0;
	const struct prompt_enc *e = atomic_load_explicit(&p->enc[c], memory_order_acquire);
	return e ? e->frames : 0;
}

unsigned media_prompt_ms(const struct media_prompt *p)
{
	return (unsigned)((p->n8 + 7u) / 8u);
}

const int16_t *media_prompt_pcm(const struct media_prompt *p, unsigned rate, size_t *n)
{
	if (rate == 8000) {
		*n = p->n8;
		return p->pcm8;
	}
	if (rate == 16000) {
		*n = p->n16;
		return p->pcm16;
	}
	return NULL;
}

struct media_prompt *media_prompt_ref(struct media_prompt *p)
{
	atomic_fetch_add_explicit(&p->refs, 1u, memory_order_relaxed);
	return p;
}

void media_prompt_unref(struct media_prompt *p)
{
	if (!p)
		return;
	if (atomic_fetch_sub_explicit(&p->refs, 1u, memory_order_acq_rel) != 1u)
		return;
	for (unsigned c = 0; c < MEDIA_CODEC_COUNT; c++)
		enc_free(atomic_load_explicit(&p->enc[c], memory_order_relaxed));
	mem_free(p->pcm8);
	mem_free(p->pcm16);
	mem_free(p);
}
