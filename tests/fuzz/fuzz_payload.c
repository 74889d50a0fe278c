/* libFuzzer harness for RTP payloads as the media workers decode them: every codec's
 * decode (our length checks in front of spandsp, libopus and bcg729) and concealment with
 * the payload as the "next" packet (Opus FEC). The first byte picks the codec.
 *   clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined -I. \
 *         tests/fuzz/fuzz_payload.c build/libvacs.a $(pkg-config --libs ...) -o fuzz_payload */
#include "media/codec_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct media_coder *coders[MEDIA_CODEC_COUNT];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum media_codec c = (enum media_codec)(1u + data[0] % (MEDIA_CODEC_COUNT - 1u));
	if (!coders[c] && media_coder_create(&coders[c], c, NULL) != 0)
		abort();
	/* A copy of exactly the payload, so a sanitizer sees any read past the end. */
	size_t n = size - 1;
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, n);
	int16_t pcm[3 * MEDIA_PCM_FRAME_MAX];
	int rc = media_coder_decode(coders[c], buf, n, pcm, sizeof(pcm) / sizeof(pcm[0]));
	/* Decoded audio fits in 60 ms; anything else is refused with a reason code. */
	if (rc > (int)(3 * media_coder_frame_samples(coders[c])) ||
	    (rc <= 0 && rc != -EBADMSG && rc != -ENOSPC))
		abort();
	rc = media_coder_conceal(coders[c], n ? buf : NULL, n, pcm);
	if (rc != (int)media_coder_frame_samples(coders[c]))
		abort();
	free(buf);
	return 0;
}
