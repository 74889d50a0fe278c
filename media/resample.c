/* Sample-rate conversion for one stream direction, on speexdsp's resampler. */
#include "media/codec_int.h"

#include "core/mem.h"

#include <errno.h>
#include <speex/speex_resampler.h>

struct media_resampler {
	SpeexResamplerState *st;
	unsigned in_rate, out_rate;
};

int media_resampler_create(struct media_resampler **out, unsigned in_rate, unsigned out_rate,
                           int quality)
{
	if (!in_rate || !out_rate || in_rate > 192000 || out_rate > 192000 || quality > 10)
		return -EINVAL;
	if (quality < 0)
		quality = SPEEX_RESAMPLER_QUALITY_VOIP;
	struct media_resampler *r = mem_zalloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	int err = 0;
	r->st = speex_resampler_init(1, in_rate, out_rate, quality, &err);
	if (!r->st) {
		mem_free(r);
		return err == RESAMPLER_ERR_ALLOC_FAILED ? -ENOMEM : -EINVAL;
	}
	/* No speex_resampler_skip_zeros(): with it the first call returns fewer samples
	 * (136 of 160 for 16 -> 8 kHz); without it every 20 ms in gives exactly 20 ms out,
	 * the filter's delay (media_resampler_delay) leading as zeros. */
	r->in_rate = in_rate;
	r->out_rate = out_rate;
	*out = r;
	return 0;
}

void media_resampler_destroy(struct media_resampler *r)
{
	if (!r)
		return;
	speex_resampler_destroy(r->st);
	mem_free(r);
}

unsigned media_resample(struct media_resampler *r, const int16_t *in, unsigned in_n, int16_t *out,
                        unsigned out_cap)
{
	spx_uint32_t ilen = in_n, olen = out_cap;
	speex_resampler_process_int(r->st, 0, in, &ilen, out, &olen);
	return olen;
}

unsigned media_resampler_delay(const struct media_resampler *r)
{
	return (unsigned)speex_resampler_get_output_latency(r->st);
}

void media_resampler_reset(struct media_resampler *r)
{
	speex_resampler_reset_mem(r->st);
}
