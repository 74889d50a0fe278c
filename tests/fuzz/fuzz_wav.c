/* libFuzzer harness for the WAV parser and the PCM decoding that follows it.
 * Real fuzzing (wav.c and the G.711 tables instrumented too):
 *   clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined -I. \
 *         tests/fuzz/fuzz_wav.c build/libvacs.a $(pkg-config --libs speexdsp ...) -o fuzz_wav
 *   ./fuzz_wav tests/fuzz/corpus/wav */
#include "media/wav_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly `size` bytes, so a sanitizer sees any read past the end. */
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);

	struct media_wav_info info;
	const char *why = NULL;
	int rc = media_wav_parse(buf, size, &info, &why);
	if (rc != 0) {
		/* Every refusal is one of the two errors, with a reason. */
		if ((rc != -EBADMSG && rc != -ENOTSUP) || !why || !why[0])
			abort();
		free(buf);
		return 0;
	}
	/* Accepted: the description is consistent and the audio lies inside the input. */
	if (info.channels < 1 || info.channels > 2 || info.rate < MEDIA_WAV_RATE_MIN ||
	    info.rate > MEDIA_WAV_RATE_MAX || (info.bits != 8 && info.bits != 16) ||
	    info.block_align != info.channels * info.bits / 8 ||
	    info.data_len != info.frames * info.block_align || info.data_off > size ||
	    info.data_len > size - info.data_off)
		abort();
	if (info.format == MEDIA_WAV_PCM16 ? info.bits != 16 : info.bits != 8)
		abort();
	int16_t *pcm = malloc(info.frames ? info.frames * sizeof(*pcm) : 1);
	if (pcm) {
		media_wav_decode_mono(buf, &info, pcm);
		free(pcm);
	}
	free(buf);
	return 0;
}
