/* Unit tests: WAV parsing and loading, prompts and the call recorder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/mem.h"
#include "core/metric.h"
#include "media/codec_int.h"
#include "media/media_int.h"
#include "media/wav_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long live_before;
static char tmpdir[64];

static int leak_setup(void **state)
{
	(void)state;
	mem_fail_after(-1);
	live_before = mem_live_blocks();
	return 0;
}

static int leak_teardown(void **state)
{
	(void)state;
	mem_fail_after(-1);
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

/* Metrics are registered once here, so the first use inside a test allocates nothing. */
static int group_setup(void **state)
{
	(void)state;
	metric_get(METRIC_COUNTER, "vacs_media_wav_rejected_total", "");
	metric_get(METRIC_COUNTER, "vacs_media_recorder_dropped_frames_total", "");
	metric_get(METRIC_COUNTER, "vacs_media_recorder_errors_total", "");
	metric_get(METRIC_COUNTER, "vacs_media_recordings_total", "");
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_wav.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	metric_registry_close();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void tmp_path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* ---- Building WAV files in memory ---- */

struct wb {
	uint8_t b[200000];
	size_t n;
};

static void wb_bytes(struct wb *w, const void *p, size_t len)
{
	assert_true(w->n + len <= sizeof(w->b));
	memcpy(w->b + w->n, p, len);
	w->n += len;
}

static void wb_le16(struct wb *w, unsigned v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	wb_bytes(w, b, 2);
}

static void wb_le32(struct wb *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	wb_bytes(w, b, 4);
}

static void wb_riff(struct wb *w)
{
	w->n = 0;
	wb_bytes(w, "RIFF", 4);
	wb_le32(w, 0); /* patched by wb_done */
	wb_bytes(w, "WAVE", 4);
}

static void wb_done(struct wb *w)
{
	uint32_t v = (uint32_t)(w->n - 8);
	w->b[4] = (uint8_t)v;
	w->b[5] = (uint8_t)(v >> 8);
	w->b[6] = (uint8_t)(v >> 16);
	w->b[7] = (uint8_t)(v >> 24);
}

/* A chunk with its size field, the body and the pad byte an odd size needs. */
static void wb_chunk(struct wb *w, const char *id, const void *body, size_t len)
{
	wb_bytes(w, id, 4);
	wb_le32(w, (uint32_t)len);
	wb_bytes(w, body, len);
	if (len & 1)
		wb_bytes(w, "", 1);
}

static void wb_fmt(struct wb *w, unsigned tag, unsigned ch, uint32_t rate, unsigned bits,
                   unsigned align)
{
	wb_bytes(w, "fmt ", 4);
	wb_le32(w, 16);
	wb_le16(w, tag);
	wb_le16(w, ch);
	wb_le32(w, rate);
	wb_le32(w, rate * align);
	wb_le16(w, align);
	wb_le16(w, bits);
}

static void wb_fmt_ext(struct wb *w, unsigned sub, unsigned ch, uint32_t rate, unsigned bits)
{
	static const uint8_t tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
	                                 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
	unsigned align = ch * bits / 8;
	wb_bytes(w, "fmt ", 4);
	wb_le32(w, 40);
	wb_le16(w, 0xFFFE);
	wb_le16(w, ch);
	wb_le32(w, rate);
	wb_le32(w, rate * align);
	wb_le16(w, align);
	wb_le16(w, bits);
	wb_le16(w, 22);
	wb_le16(w, bits);
	wb_le32(w, ch == 2 ? 3u : 4u);
	wb_le16(w, sub);
	wb_bytes(w, tail, sizeof(tail));
}

/* A whole file: fmt then data with `frames` blocks of pseudo-random bytes. */
static void wb_simple(struct wb *w, unsigned tag, unsigned ch, uint32_t rate, unsigned bits,
                      size_t frames)
{
	static uint8_t data[65536];
	unsigned align = ch * bits / 8;
	for (size_t i = 0; i < frames * align; i++)
		data[i] = (uint8_t)(i * 37u + 11u);
	wb_riff(w);
	wb_fmt(w, tag, ch, rate, bits, align);
	wb_chunk(w, "data", data, frames * align);
	wb_done(w);
}

/* Parses from a heap copy of exactly len bytes, so ASan sees any read past the end. */
static int parse_exact(const uint8_t *buf, size_t len, struct media_wav_info *info,
                       const char **why)
{
	uint8_t *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, buf, len);
	int rc = media_wav_parse(copy, len, info, why);
	free(copy);
	return rc;
}

/* ---- Signal measurements ---- */

static double freq_of(const int16_t *x, size_t n, size_t stride, unsigned rate)
{
	unsigned crossings = 0;
	for (size_t i = 1; i < n; i++)
		crossings += (x[(i - 1) * stride] < 0) != (x[i * stride] < 0);
	return crossings / 2.0 / ((double)n / rate);
}

static double rms_of(const int16_t *x, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	return sqrt(s / (double)n);
}

/* ---- Parsing ---- */

static void test_wav_parse_pcm16_mono_and_stereo(void **state)
{
	(void)state;
	struct wb *w = malloc(sizeof(*w));
	struct media_wav_info info;
	const char *why = NULL;
	int16_t pcm[100];

	wb_riff(w);
	wb_fmt(w, 1, 1, 8000, 16, 2);
	int16_t s[100];
	for (unsigned i = 0; i < 100; i++)
		s[i] = (int16_t)(i * 300 - 15000);
	uint8_t le[200];
	for (unsigned i = 0; i < 100; i++) {
		le[2 * i] = (uint8_t)s[i];
		le[2 * i + 1] = (uint8_t)((uint16_t)s[i] >> 8);
	}
	wb_chunk(w, "data", le, sizeof(le));
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.format, MEDIA_WAV_PCM16);
	assert_int_equal(info.format_tag, 1);
	assert_int_equal(info.channels, 1);
	assert_int_equal(info.rate, 8000);
	assert_int_equal(info.bits, 16);
	assert_int_equal(info.block_align, 2);
	assert_int_equal(info.data_off, 44);
	assert_int_equal(info.data_len, 200);
	assert_int_equal(info.frames, 100);
	assert_int_equal(info.data_to_eof, 0);
	media_wav_decode_mono(w->b, &info, pcm);
	assert_memory_equal(pcm, s, sizeof(s));

	/* Stereo: the mono mix is the average of the two sides. */
	wb_riff(w);
	wb_fmt(w, 1, 2, 16000, 16, 4);
	uint8_t st[8] = {0x10, 0x27, 0x30, 0xF8,
	                 0xF0, 0xD8, 0xF0, 0xD8}; /* 10000,-2000,-10000 x2 */
	wb_chunk(w, "data", st, sizeof(st));
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.channels, 2);
	assert_int_equal(info.rate, 16000);
	assert_int_equal(info.frames, 2);
	media_wav_decode_mono(w->b, &info, pcm);
	assert_int_equal(pcm[0], 4000);
	assert_int_equal(pcm[1], -10000);
	free(w);
}

static void test_wav_parse_pcm8_ulaw_alaw(void **state)
{
	(void)state;
	struct wb *w = malloc(sizeof(*w));
	struct media_wav_info info;
	const char *why = NULL;
	int16_t pcm[64];
	uint8_t d[64];
	for (unsigned i = 0; i < sizeof(d); i++)
		d[i] = (uint8_t)(i * 4);

	wb_riff(w);
	wb_fmt(w, 1, 1, 11025, 8, 1);
	wb_chunk(w, "data", d, sizeof(d));
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.format, MEDIA_WAV_PCM8);
	assert_int_equal(info.rate, 11025);
	assert_int_equal(info.frames, 64);
	media_wav_decode_mono(w->b, &info, pcm);
	assert_int_equal(pcm[0], -32768); /* 0 */
	assert_int_equal(pcm[32], 0);     /* 128 = silence */
	assert_int_equal(pcm[63], (252 - 128) * 256);

	wb_riff(w);
	wb_fmt(w, 7, 1, 8000, 8, 1);
	wb_chunk(w, "data", d, sizeof(d));
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.format, MEDIA_WAV_ULAW);
	media_wav_decode_mono(w->b, &info, pcm);
	for (unsigned i = 0; i < sizeof(d); i++)
		assert_int_equal(pcm[i], media_g711_ulaw_decode(d[i]));

	wb_riff(w);
	wb_fmt(w, 6, 2, 8000, 8, 2);
	wb_chunk(w, "data", d, sizeof(d));
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.format, MEDIA_WAV_ALAW);
	assert_int_equal(info.channels, 2);
	assert_int_equal(info.frames, 32);
	media_wav_decode_mono(w->b, &info, pcm);
	assert_int_equal(pcm[5],
	                 (media_g711_alaw_decode(d[10]) + media_g711_alaw_decode(d[11])) >> 1);
	free(w);
}

static void test_wav_parse_extensible(void **state)
{
	(void)state;
	struct wb *w = malloc(sizeof(*w));
	struct media_wav_info info;
	const char *why = NULL;
	uint8_t d[40] = {0};

	wb_riff(w);
	wb_fmt_ext(w, 1, 2, 48000, 16);
	wb_chunk(w, "data", d, sizeof(d));
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.format, MEDIA_WAV_PCM16);
	assert_int_equal(info.format_tag, 0xFFFE);
	assert_int_equal(info.rate, 48000);
	assert_int_equal(info.frames, 10);

	wb_riff(w);
	wb_fmt_ext(w, 6, 1, 8000, 8);
	wb_chunk(w, "data", d, sizeof(d));
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.format, MEDIA_WAV_ALAW);
	assert_int_equal(info.frames, 40);

	/* IEEE float as a subformat is refused like the plain tag. */
	wb_riff(w);
	wb_fmt_ext(w, 3, 1, 8000, 16);
	wb_chunk(w, "data", d, sizeof(d));
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), -ENOTSUP);
	assert_non_null(strstr(why, "subformat"));
	free(w);
}

static void test_wav_parse_odd_and_unknown_chunks(void **state)
{
	(void)state;
	struct wb *w = malloc(sizeof(*w));
	struct media_wav_info info;
	const char *why = NULL;
	uint8_t d[101];
	for (unsigned i = 0; i < sizeof(d); i++)
		d[i] = (uint8_t)i;

	/* LIST of odd size (padded) before fmt, fact between, odd data, padded, cue after. */
	wb_riff(w);
	wb_chunk(w, "LIST", "INFOx", 5);
	wb_fmt(w, 1, 1, 22050, 8, 1);
	wb_chunk(w, "fact", "\x65\0\0\0", 4);
	wb_chunk(w, "JUNK", "abc", 3);
	size_t data_at = w->n + 8;
	wb_chunk(w, "data", d, sizeof(d));
	wb_chunk(w, "cue ", "0123456789ab", 12);
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.data_off, data_at);
	assert_int_equal(info.data_len, 101);
	assert_int_equal(info.frames, 101);
	assert_int_equal(w->b[info.data_off + 100], 100);

	/* The pad byte after the final odd data chunk may be missing. */
	wb_riff(w);
	wb_fmt(w, 1, 1, 8000, 8, 1);
	wb_chunk(w, "data", d, sizeof(d));
	w->n--;
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.frames, 101);

	/* A truncated tag after the audio is ignored. */
	wb_riff(w);
	wb_fmt(w, 1, 1, 8000, 8, 1);
	wb_chunk(w, "data", d, 100);
	wb_bytes(w, "id3 \xff\xff\0\0abc", 11);
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.frames, 100);

	/* A trailing partial block is dropped. */
	wb_riff(w);
	wb_fmt(w, 1, 2, 8000, 16, 4);
	wb_chunk(w, "data", d, 42);
	wb_done(w);
	assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
	assert_int_equal(info.frames, 10);
	assert_int_equal(info.data_len, 40);
	free(w);
}

static void test_wav_parse_streaming_sizes(void **state)
{
	(void)state;
	struct wb *w = malloc(sizeof(*w));
	struct media_wav_info info;
	const char *why = NULL;
	uint8_t d[320] = {0};
	static const uint32_t sizes[2] = {0, 0xFFFFFFFFu};

	for (unsigned k = 0; k < 2; k++) {
		wb_riff(w);
		wb_fmt(w, 1, 1, 8000, 16, 2);
		wb_bytes(w, "data", 4);
		wb_le32(w, sizes[k]);
		wb_bytes(w, d, sizeof(d));
		wb_bytes(w, d, 1); /* half a sample at the end: dropped */
		/* The RIFF size of such a writer is garbage too. */
		assert_int_equal(parse_exact(w->b, w->n, &info, &why), 0);
		assert_int_equal(info.data_to_eof, 1);
		assert_int_equal(info.data_len, 320);
		assert_int_equal(info.frames, 160);
	}
	free(w);
}

struct reject_case {
	const char *name;
	int err;
	const char *needle;
};

/* Builds reject case i into w; returns 0 when there is no case i. */
static int build_reject(unsigned i, struct wb *w, struct reject_case *rc)
{
	uint8_t d[64] = {0};
	static const struct reject_case cases[] = {
	    {"empty", -EBADMSG, "empty"},
	    {"short header", -EBADMSG, "RIFF header"},
	    {"not RIFF", -EBADMSG, "not a RIFF"},
	    {"not WAVE", -EBADMSG, "not a WAVE"},
	    {"missing fmt", -EBADMSG, "fmt chunk missing"},
	    {"missing data", -EBADMSG, "data chunk missing"},
	    {"fmt too short", -EBADMSG, "fmt chunk too short"},
	    {"format 85", -ENOTSUP, "85 (MP3)"},
	    {"format 3", -ENOTSUP, "float"},
	    {"0 channels", -EBADMSG, "0 channels"},
	    {"3 channels", -ENOTSUP, "3 channels"},
	    {"rate 0", -EBADMSG, "sample rate 0"},
	    {"rate 4000", -ENOTSUP, "sample rate below"},
	    {"rate 96000", -ENOTSUP, "sample rate above"},
	    {"bits 24", -ENOTSUP, "24-bit"},
	    {"data beyond end", -EBADMSG, "data chunk extends beyond"},
	    {"block align", -EBADMSG, "block align"},
	    {"fmt beyond end", -EBADMSG, "fmt chunk extends beyond"},
	    {"chunk beyond end", -EBADMSG, "chunk extends beyond"},
	    {"two fmt", -EBADMSG, "more than one fmt"},
	    {"ulaw 16 bit", -EBADMSG, "8-bit"},
	    {"extensible short", -EBADMSG, "extensible fmt chunk too short"},
	    {"RIFX", -ENOTSUP, "big-endian"},
	};
	if (i >= sizeof(cases) / sizeof(cases[0]))
		return 0;
	*rc = cases[i];
	wb_riff(w);
	switch (i) {
	case 0:
		w->n = 0;
		break;
	case 1:
		w->n = 8;
		break;
	case 2:
		wb_simple(w, 1, 1, 8000, 16, 10);
		memcpy(w->b, "RIFG", 4);
		break;
	case 3:
		wb_simple(w, 1, 1, 8000, 16, 10);
		memcpy(w->b + 8, "AVI ", 4);
		break;
	case 4:
		wb_chunk(w, "data", d, 20);
		break;
	case 5:
		wb_fmt(w, 1, 1, 8000, 16, 2);
		wb_chunk(w, "LIST", d, 8);
		break;
	case 6:
		wb_chunk(w, "fmt ", "\1\0\1\0\x40\x1f\0\0\x80\x3e\0\0\2\0", 14);
		wb_chunk(w, "data", d, 20);
		break;
	case 7:
		wb_simple(w, 85, 1, 8000, 16, 10);
		break;
	case 8:
		wb_simple(w, 3, 1, 8000, 32, 10);
		break;
	case 9:
		wb_fmt(w, 1, 0, 8000, 16, 0);
		wb_chunk(w, "data", d, 20);
		break;
	case 10:
		wb_simple(w, 1, 3, 8000, 16, 10);
		break;
	case 11:
		wb_simple(w, 1, 1, 0, 16, 10);
		break;
	case 12:
		wb_simple(w, 1, 1, 4000, 16, 10);
		break;
	case 13:
		wb_simple(w, 1, 1, 96000, 16, 10);
		break;
	case 14:
		wb_simple(w, 1, 1, 8000, 24, 10);
		break;
	case 15:
		wb_fmt(w, 1, 1, 8000, 16, 2);
		wb_bytes(w, "data", 4);
		wb_le32(w, 400); /* 400 promised, 20 there */
		wb_bytes(w, d, 20);
		break;
	case 16:
		wb_fmt(w, 1, 2, 8000, 16, 2);
		wb_chunk(w, "data", d, 20);
		break;
	case 17:
		wb_bytes(w, "fmt ", 4);
		wb_le32(w, 16);
		wb_bytes(w, d, 10);
		break;
	case 18:
		wb_bytes(w, "LIST", 4);
		wb_le32(w, 1000);
		wb_bytes(w, d, 10);
		break;
	case 19:
		wb_fmt(w, 1, 1, 8000, 16, 2);
		wb_fmt(w, 1, 1, 8000, 16, 2);
		wb_chunk(w, "data", d, 20);
		break;
	case 20:
		wb_simple(w, 7, 1, 8000, 16, 10);
		break;
	case 21:
		wb_fmt(w, 0xFFFE, 1, 8000, 16, 2);
		wb_chunk(w, "data", d, 20);
		break;
	case 22:
		wb_simple(w, 1, 1, 8000, 16, 10);
		memcpy(w->b, "RIFX", 4);
		break;
	}
	if (i >= 4 && i != 22 && i != 2 && i != 3)
		wb_done(w);
	return 1;
}

static void test_wav_parse_rejects(void **state)
{
	(void)state;
	struct wb *w = malloc(sizeof(*w));
	struct reject_case rc;
	for (unsigned i = 0; build_reject(i, w, &rc); i++) {
		struct media_wav_info info;
		const char *why = NULL;
		int r = parse_exact(w->b, w->n, &info, &why);
		if (r != rc.err || !why || !strstr(why, rc.needle))
			fail_msg("case '%s': got %d '%s', want %d with '%s'", rc.name, r,
			         why ? why : "(null)", rc.err, rc.needle);
	}
	free(w);
}

/* Every prefix of a valid file: an error, or a result that lies inside the prefix. */
static void test_wav_parse_every_truncation(void **state)
{
	(void)state;
	struct wb *w = malloc(sizeof(*w));
	wb_riff(w);
	wb_chunk(w, "LIST", "INFOx", 5);
	wb_fmt_ext(w, 1, 2, 16000, 16);
	uint8_t d[64] = {1, 2, 3};
	wb_chunk(w, "data", d, sizeof(d));
	wb_chunk(w, "cue ", "x", 1);
	wb_done(w);
	for (size_t len = 0; len <= w->n; len++) {
		struct media_wav_info info;
		const char *why = NULL;
		int r = parse_exact(w->b, len, &info, &why);
		if (r == 0) {
			assert_true(info.data_off + info.data_len <= len);
			assert_int_equal(info.data_len % 4, 0);
		} else {
			assert_true(r == -EBADMSG || r == -ENOTSUP);
			assert_non_null(why);
		}
	}
	free(w);
}

/* ---- Loading ---- */

/* Writes a 44.1 kHz stereo 1 kHz sine of 1 s (half scale) the way sox does, or with sox. */
static void make_tone_file(const char *path)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
	         "sox -n -r 44100 -c 2 -b 16 '%s' synth 1 sine 1000 vol 0.5 2>/dev/null", path);
	if (system(cmd) == 0)
		return;
	struct wb *w = malloc(sizeof(*w));
	wb_riff(w);
	wb_fmt(w, 1, 2, 44100, 16, 4);
	wb_bytes(w, "data", 4);
	wb_le32(w, 44100 * 4);
	for (unsigned i = 0; i < 44100; i++) {
		int16_t v = (int16_t)lrint(16383 * sin(2 * M_PI * 1000 * i / 44100.0));
		wb_le16(w, (uint16_t)v);
		wb_le16(w, (uint16_t)v);
	}
	wb_done(w);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(w->b, 1, w->n, f), w->n);
	fclose(f);
	free(w);
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	fclose(f);
}

static void test_wav_load_resamples_tone(void **state)
{
	(void)state;
	char path[128];
	tmp_path(path, sizeof(path), "tone44k.wav");
	make_tone_file(path);
	char err[256] = "";

	int16_t *ref;
	size_t nref;
	assert_int_equal(media_wav_load(path, 44100, &ref, &nref, err, sizeof(err)), 0);
	assert_int_equal(nref, 44100);
	double ref_rms = rms_of(ref + 441, nref - 882);
	assert_true(ref_rms > 10000);

	static const unsigned rates[2] = {8000, 16000};
	for (unsigned k = 0; k < 2; k++) {
		int16_t *pcm;
		size_t n;
		assert_int_equal(media_wav_load(path, rates[k], &pcm, &n, err, sizeof(err)), 0);
		/* 1 s of audio: the right length within one 20 ms frame. */
		assert_true(labs((long)n - (long)rates[k]) <= (long)rates[k] / 50);
		/* Skip 10 ms at each end, then: still 1 kHz, the same level. */
		size_t skip = rates[k] / 100;
		double f = freq_of(pcm + skip, n - 2 * skip, 1, rates[k]);
		assert_true(fabs(f - 1000.0) < 10.0);
		double db = 20 * log10(rms_of(pcm + skip, n - 2 * skip) / ref_rms);
		assert_true(fabs(db) < 1.0);
		/* The tail was flushed: the last 5 ms still carry the tone. */
		size_t last = rates[k] / 200;
		double tail = rms_of(pcm + n - last, last) / ref_rms;
		print_message("%u Hz: %zu samples, %.2f Hz, %+.3f dB, last 5 ms at %.2f\n",
		              rates[k], n, f, db, tail);
		assert_true(tail > 0.7);
		mem_free(pcm);
	}
	mem_free(ref);

	int16_t *pcm[2];
	size_t n[2];
	assert_int_equal(media_wav_load_rates(path, 2, rates, pcm, n, err, sizeof(err)), 0);
	assert_int_equal(n[0], 8000);
	assert_int_equal(n[1], 16000);
	mem_free(pcm[0]);
	mem_free(pcm[1]);
}

static void test_wav_load_errors_name_path_and_reason(void **state)
{
	(void)state;
	char path[128], err[256];
	int16_t *pcm = NULL;
	size_t n;
	int64_t rejected = metric_lookup("vacs_media_wav_rejected_total");

	tmp_path(path, sizeof(path), "missing.wav");
	assert_int_equal(media_wav_load(path, 8000, &pcm, &n, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "No such file"));

	tmp_path(path, sizeof(path), "mp3.wav");
	struct wb *w = malloc(sizeof(*w));
	wb_simple(w, 85, 1, 8000, 16, 10);
	write_file(path, w->b, w->n);
	assert_int_equal(media_wav_load(path, 8000, &pcm, &n, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "85 (MP3)"));

	tmp_path(path, sizeof(path), "empty-data.wav");
	wb_simple(w, 1, 1, 8000, 16, 0);
	write_file(path, w->b, w->n);
	assert_int_equal(media_wav_load(path, 8000, &pcm, &n, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "empty"));

	/* Too big: a sparse file, refused before reading. */
	tmp_path(path, sizeof(path), "huge.wav");
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)MEDIA_WAV_MAX_FILE + 1), 0);
	close(fd);
	assert_int_equal(media_wav_load(path, 8000, &pcm, &n, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "64 MB"));
	unlink(path);

	/* A directory is not a file. */
	assert_int_equal(media_wav_load(tmpdir, 8000, &pcm, &n, err, sizeof(err)), -EINVAL);

	tmp_path(path, sizeof(path), "ok.wav");
	wb_simple(w, 1, 1, 8000, 16, 100);
	write_file(path, w->b, w->n);
	assert_int_equal(media_wav_load(path, 4000, &pcm, &n, err, sizeof(err)), -EINVAL);
	assert_int_equal(media_wav_load(path, 8000, &pcm, &n, NULL, 0), 0);
	assert_int_equal(n, 100);
	mem_free(pcm);

	assert_int_equal(metric_lookup("vacs_media_wav_rejected_total"), rejected + 3);
	free(w);
}

static void test_wav_load_fault_injection(void **state)
{
	(void)state;
	char path[128], err[256];
	tmp_path(path, sizeof(path), "tone44k.wav");
	make_tone_file(path);
	static const unsigned rates[2] = {8000, 16000};
	int16_t *pcm[2];
	size_t n[2];
	int rc = -ENOMEM;
	for (long i = 0; rc == -ENOMEM && i < 50; i++) {
		long live = mem_live_blocks();
		mem_fail_after(i);
		rc = media_wav_load_rates(path, 2, rates, pcm, n, err, sizeof(err));
		mem_fail_after(-1);
		if (rc == -ENOMEM) {
			assert_int_equal(mem_live_blocks(), live);
			assert_non_null(strstr(err, "out of memory"));
		}
	}
	assert_int_equal(rc, 0);
	mem_free(pcm[0]);
	mem_free(pcm[1]);
}

/* ---- Prompts ---- */

/* 1.01 s of 8 kHz mono 1 kHz tone, so the last 20 ms frame is half filled. */
static void make_prompt_file(const char *path)
{
	struct wb *w = malloc(sizeof(*w));
	wb_riff(w);
	wb_fmt(w, 1, 1, 8000, 16, 2);
	wb_bytes(w, "data", 4);
	wb_le32(w, 8080 * 2);
	for (unsigned i = 0; i < 8080; i++)
		wb_le16(w,
		        (uint16_t)(int16_t)lrint(8000 * sin(2 * M_PI * 1000 * i / 8000.0 + 0.3)));
	wb_done(w);
	write_file(path, w->b, w->n);
	free(w);
}

static void test_prompt_prepare_codecs(void **state)
{
	(void)state;
	char path[128], err[256];
	tmp_path(path, sizeof(path), "prompt.wav");
	make_prompt_file(path);
	struct media_prompt *p;
	assert_int_equal(media_prompt_load(path, &p, err, sizeof(err)), 0);
	assert_int_equal(media_prompt_ms(p), 1010);
	size_t n8, n16;
	const int16_t *pcm8 = media_prompt_pcm(p, 8000, &n8);
	const int16_t *pcm16 = media_prompt_pcm(p, 16000, &n16);
	assert_non_null(pcm8);
	assert_non_null(pcm16);
	assert_int_equal(n8, 8080);
	assert_int_equal(n16, 16160);
	assert_null(media_prompt_pcm(p, 44100, &n8));
	double f16 = freq_of(pcm16 + 160, n16 - 320, 1, 16000);
	assert_true(fabs(f16 - 1000) < 10);

	/* Not prepared yet. */
	const uint8_t *data;
	size_t len;
	assert_int_equal(media_prompt_frames(p, MEDIA_CODEC_PCMU), 0);
	assert_int_equal(media_prompt_frame(p, MEDIA_CODEC_PCMU, 0, &data, &len), -EINVAL);
	assert_int_equal(media_prompt_prepare(p, MEDIA_CODEC_NONE), -EINVAL);

	static const enum media_codec codecs[] = {MEDIA_CODEC_PCMU, MEDIA_CODEC_PCMA,
	                                          MEDIA_CODEC_G722, MEDIA_CODEC_OPUS,
	                                          MEDIA_CODEC_G729};
	unsigned want = (1010 + 19) / 20;
	for (unsigned k = 0; k < sizeof(codecs) / sizeof(codecs[0]); k++) {
		enum media_codec c = codecs[k];
		assert_int_equal(media_prompt_prepare(p, c), 0);
		uint64_t allocs = mem_total_allocs();
		assert_int_equal(media_prompt_prepare(p, c), 0); /* cached */
		assert_int_equal(media_prompt_frames(p, c), want);
		for (unsigned i = 0; i < want; i++) {
			assert_int_equal(media_prompt_frame(p, c, i, &data, &len), 0);
			assert_true(len > 0 && len <= MEDIA_CODED_FRAME_MAX);
			const struct media_codec_desc *d = media_codec_desc(c);
			if (d->frame_bytes)
				assert_int_equal(len, d->frame_bytes);
		}
		assert_int_equal(media_prompt_frame(p, c, want, &data, &len), -ENOENT);
		assert_int_equal(mem_total_allocs(), allocs);

		/* What a far end decodes is the tone, and the padded end is silence. */
		struct media_coder *k2;
		assert_int_equal(media_coder_create(&k2, c, NULL), 0);
		unsigned rate = media_coder_pcm_rate(k2);
		size_t fs = media_coder_frame_samples(k2);
		int16_t *out = malloc(want * fs * sizeof(int16_t));
		for (unsigned i = 0; i < want; i++) {
			assert_int_equal(media_prompt_frame(p, c, i, &data, &len), 0);
			assert_int_equal(media_coder_decode(k2, data, len, out + i * fs, fs),
			                 (int)fs);
		}
		double f = freq_of(out + fs * 5, fs * 40, 1, rate);
		if (fabs(f - 1000) > 15)
			fail_msg("codec %d: %.1f Hz", c, f);
		media_coder_destroy(k2);
		if (c == MEDIA_CODEC_PCMU) {
			assert_int_equal(media_prompt_frame(p, c, want - 1, &data, &len), 0);
			for (unsigned i = 80; i < 160; i++)
				assert_int_equal(media_g711_ulaw_decode(data[i]), 0);
			for (unsigned i = 0; i < 8000; i++)
				assert_true(abs(out[i] - pcm8[i]) <= abs(pcm8[i]) / 16 + 8);
		}
		free(out);
	}
	media_prompt_unref(p);
	media_prompt_unref(NULL);

	assert_int_equal(media_prompt_load("/nonexistent/x.wav", &p, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/x.wav"));
}

struct prompt_reader {
	struct media_prompt *p;
	unsigned long bytes;
};

static void *prompt_reader_main(void *arg)
{
	struct prompt_reader *r = arg;
	for (unsigned round = 0; round < 200; round++) {
		struct media_prompt *mine = media_prompt_ref(r->p);
		const uint8_t *data;
		size_t len;
		for (unsigned i = 0;
		     media_prompt_frame(mine, MEDIA_CODEC_PCMA, i, &data, &len) == 0; i++)
			r->bytes += len;
		media_prompt_unref(mine);
	}
	media_prompt_unref(r->p); /* the reference handed to this thread */
	return NULL;
}

static void test_prompt_refcount_threads(void **state)
{
	(void)state;
	char path[128], err[256];
	tmp_path(path, sizeof(path), "prompt.wav");
	make_prompt_file(path);
	struct media_prompt *p;
	assert_int_equal(media_prompt_load(path, &p, err, sizeof(err)), 0);
	assert_int_equal(media_prompt_prepare(p, MEDIA_CODEC_PCMA), 0);
	pthread_t th[4];
	struct prompt_reader rd[4];
	for (unsigned i = 0; i < 4; i++) {
		rd[i].p = media_prompt_ref(p);
		rd[i].bytes = 0;
		assert_int_equal(pthread_create(&th[i], NULL, prompt_reader_main, &rd[i]), 0);
	}
	/* The control thread lets go while the workers still play it. */
	media_prompt_unref(p);
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(rd[i].bytes, 200ul * 51 * 160);
	}
	/* The leak check in teardown proves the last unref freed it. */
}

static void test_prompt_fault_injection(void **state)
{
	(void)state;
	char path[128], err[256];
	tmp_path(path, sizeof(path), "prompt.wav");
	make_prompt_file(path);
	int rc = -ENOMEM;
	for (long i = 0; rc == -ENOMEM && i < 50; i++) {
		long live = mem_live_blocks();
		struct media_prompt *p = NULL;
		mem_fail_after(i);
		rc = media_prompt_load(path, &p, err, sizeof(err));
		if (rc == 0)
			rc = media_prompt_prepare(p, MEDIA_CODEC_G722);
		mem_fail_after(-1);
		if (rc == -ENOMEM) {
			/* A failed prepare leaves the prompt usable and unprepared. */
			if (p) {
				assert_int_equal(media_prompt_frames(p, MEDIA_CODEC_G722), 0);
				media_prompt_unref(p);
			}
			assert_int_equal(mem_live_blocks(), live);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(media_prompt_frames(p, MEDIA_CODEC_G722), 51);
			media_prompt_unref(p);
		}
	}
	assert_int_equal(rc, 0);
}

/* ---- Recorder ---- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned calls;
	uint64_t owner;
	int result;
	uint64_t bytes;
} done = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void on_done(uint64_t owner, int result, uint64_t bytes, void *arg)
{
	assert_ptr_equal(arg, &done);
	pthread_mutex_lock(&done.lock);
	done.calls++;
	done.owner = owner;
	done.result = result;
	done.bytes = bytes;
	pthread_cond_broadcast(&done.cond);
	pthread_mutex_unlock(&done.lock);
}

static void done_reset(void)
{
	pthread_mutex_lock(&done.lock);
	done.calls = 0;
	done.result = 1;
	done.bytes = 0;
	done.owner = 0;
	pthread_mutex_unlock(&done.lock);
}

/* Waits (at most 10 s) for `calls` done callbacks; returns how many came. */
static unsigned done_wait(unsigned calls)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&done.lock);
	while (done.calls < calls) {
		if (pthread_cond_timedwait(&done.cond, &done.lock, &until) != 0)
			break;
	}
	unsigned got = done.calls;
	pthread_mutex_unlock(&done.lock);
	return got;
}

struct pusher {
	struct media_recorder *r;
	unsigned rate;
	unsigned frames;
	int pace;                 /* back off while the ring is half full (a polite test) */
	atomic_int finished_push; /* set when all pushes returned */
	uint64_t allocs_before, allocs_after;
};

static void *pusher_main(void *arg)
{
	struct pusher *pu = arg;
	unsigned fs = pu->rate / 50;
	int16_t l[320], rr[320];
	uint64_t t = 0;
	pu->allocs_before = mem_total_allocs();
	for (unsigned f = 0; f < pu->frames; f++) {
		for (unsigned i = 0; i < fs; i++, t++) {
			double s = (double)t / pu->rate;
			l[i] = (int16_t)lrint(10000 * sin(2 * M_PI * 1000 * s + 0.3));
			rr[i] = (int16_t)lrint(10000 * sin(2 * M_PI * 400 * s + 0.3));
		}
		while (pu->pace && media_recorder_backlog(pu->r) > MEDIA_RECORDER_RING_FRAMES / 2)
			usleep(1000);
		media_recorder_push(pu->r, l, rr, fs);
	}
	pu->allocs_after = mem_total_allocs();
	atomic_store(&pu->finished_push, 1);
	return NULL;
}

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc((size_t)sz + 1);
	assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
	fclose(f);
	*len = (size_t)sz;
	return b;
}

static void test_recorder_stereo_tones(void **state)
{
	(void)state;
	static const unsigned rates[2] = {8000, 16000};
	assert_int_equal(media_recorder_init(on_done, &done), 0);
	assert_int_equal(media_recorder_init(on_done, &done), -EALREADY);
	for (unsigned k = 0; k < 2; k++) {
		char path[128];
		snprintf(path, sizeof(path), "%s/rec%u.wav", tmpdir, rates[k]);
		done_reset();
		struct media_recorder *r;
		assert_int_equal(media_recorder_create(&r, path, rates[k], 42 + k), 0);
		struct pusher pu = {.r = r, .rate = rates[k], .frames = 500, .pace = 1};
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, pusher_main, &pu), 0);
		pthread_join(th, NULL);
		assert_int_equal(media_recorder_dropped(r), 0);
		media_recorder_finish(r);
		assert_int_equal(done_wait(1), 1);
		assert_int_equal(done.owner, 42 + k);
		assert_int_equal(done.result, 0);
		uint64_t fs = rates[k] / 50;
		assert_int_equal(done.bytes, 500 * fs * 4);

		size_t len;
		uint8_t *b = read_all(path, &len);
		struct media_wav_info info;
		const char *why = NULL;
		assert_int_equal(media_wav_parse(b, len, &info, &why), 0);
		assert_int_equal(info.channels, 2);
		assert_int_equal(info.rate, rates[k]);
		assert_int_equal(info.format, MEDIA_WAV_PCM16);
		assert_int_equal(info.frames, 500 * fs);
		assert_int_equal(info.data_to_eof, 0); /* sizes patched */
		assert_int_equal(len, 44 + 500 * fs * 4);
		uint32_t riff = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 |
		                (uint32_t)b[7] << 24;
		assert_int_equal(riff, len - 8);
		const int16_t *s = (const int16_t *)(const void *)(b + info.data_off);
		double fl = freq_of(s, info.frames, 2, rates[k]);
		double fr = freq_of(s + 1, info.frames, 2, rates[k]);
		if (fabs(fl - 1000) > 5 || fabs(fr - 400) > 5)
			fail_msg("left %.1f Hz, right %.1f Hz", fl, fr);
		free(b);
	}
	media_recorder_close();
}

static void test_recorder_overflow_drops_without_blocking(void **state)
{
	(void)state;
	char path[128];
	tmp_path(path, sizeof(path), "overflow.wav");
	done_reset();
	assert_int_equal(media_recorder_init(on_done, &done), 0);
	int64_t m_before = metric_lookup("vacs_media_recorder_dropped_frames_total");
	struct media_recorder *r;
	assert_int_equal(media_recorder_create(&r, path, 8000, 7), 0);
	media_recorder_test_stall(1); /* a disk that does not keep up */
	struct pusher pu = {.r = r, .rate = 8000, .frames = 300, .pace = 0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, pusher_main, &pu), 0);
	/* The pusher must finish on its own while the writer is stuck (bounded wait). */
	for (unsigned i = 0; i < 5000 && !atomic_load(&pu.finished_push); i++)
		usleep(1000);
	assert_true(atomic_load(&pu.finished_push));
	pthread_join(th, NULL);
	assert_int_equal(media_recorder_dropped(r), 300 - MEDIA_RECORDER_RING_FRAMES);
	assert_int_equal(media_recorder_backlog(r), MEDIA_RECORDER_RING_FRAMES);
	assert_int_equal(metric_lookup("vacs_media_recorder_dropped_frames_total"),
	                 m_before + 300 - MEDIA_RECORDER_RING_FRAMES);
	media_recorder_test_stall(0);
	media_recorder_finish(r);
	assert_int_equal(done_wait(1), 1);
	assert_int_equal(done.result, 0);
	assert_int_equal(done.bytes, MEDIA_RECORDER_RING_FRAMES * 160 * 4);
	media_recorder_close();
}

static void test_recorder_create_errors(void **state)
{
	(void)state;
	char path[128];
	struct media_recorder *r = NULL;
	done_reset();
	tmp_path(path, sizeof(path), "exists.wav");
	write_file(path, "keep", 4);
	assert_int_equal(media_recorder_create(&r, path, 8000, 1), -EINVAL); /* no init */
	assert_int_equal(media_recorder_init(on_done, &done), 0);
	assert_int_equal(media_recorder_create(&r, path, 8000, 1), -EEXIST);
	size_t len;
	uint8_t *b = read_all(path, &len);
	assert_int_equal(len, 4); /* untouched */
	free(b);
	tmp_path(path, sizeof(path), "no/such/dir.wav");
	assert_int_equal(media_recorder_create(&r, path, 8000, 2), -ENOENT);
	tmp_path(path, sizeof(path), "rate.wav");
	assert_int_equal(media_recorder_create(&r, path, 44100, 3), -EINVAL);
	assert_null(r);
	assert_int_equal(access(path, F_OK), -1);
	media_recorder_close();
	assert_int_equal(done.calls, 0); /* errors come back from create, not through done_cb */

	/* Every allocation failing in turn: -ENOMEM, nothing left behind. */
	assert_int_equal(media_recorder_init(on_done, &done), 0);
	tmp_path(path, sizeof(path), "fault.wav");
	int rc = -ENOMEM;
	for (long i = 0; rc == -ENOMEM && i < 20; i++) {
		long live = mem_live_blocks();
		mem_fail_after(i);
		rc = media_recorder_create(&r, path, 8000, 4);
		mem_fail_after(-1);
		if (rc == -ENOMEM) {
			assert_int_equal(mem_live_blocks(), live);
			assert_int_equal(access(path, F_OK), -1);
		}
	}
	assert_int_equal(rc, 0);
	media_recorder_finish(r);
	assert_int_equal(done_wait(1), 1);
	assert_int_equal(done.bytes, 0);
	media_recorder_close();
}

static void test_recorder_close_finishes_open_recordings(void **state)
{
	(void)state;
	char path[128];
	tmp_path(path, sizeof(path), "open-at-close.wav");
	done_reset();
	assert_int_equal(media_recorder_init(on_done, &done), 0);
	struct media_recorder *r;
	assert_int_equal(media_recorder_create(&r, path, 16000, 9), 0);
	int16_t one[320];
	for (unsigned i = 0; i < 320; i++)
		one[i] = (int16_t)(i * 10);
	for (unsigned i = 0; i < 10; i++)
		media_recorder_push(r, i & 1 ? one : NULL, one, 320);
	media_recorder_close();
	assert_int_equal(done.calls, 1);
	assert_int_equal(done.owner, 9);
	assert_int_equal(done.result, 0);
	assert_int_equal(done.bytes, 10 * 320 * 4);
	size_t len;
	uint8_t *b = read_all(path, &len);
	struct media_wav_info info;
	const char *why;
	assert_int_equal(media_wav_parse(b, len, &info, &why), 0);
	assert_int_equal(info.frames, 3200);
	assert_int_equal(info.data_to_eof, 0);
	const int16_t *s = (const int16_t *)(const void *)(b + info.data_off);
	assert_int_equal(s[2 * 5], 0);      /* frame 0: left silent */
	assert_int_equal(s[2 * 5 + 1], 50); /* right */
	assert_int_equal(s[2 * 325], 50);   /* frame 1: left */
	free(b);
}

static void test_recorder_pushes_allocate_nothing(void **state)
{
	(void)state;
	char path[128];
	tmp_path(path, sizeof(path), "many.wav");
	done_reset();
	assert_int_equal(media_recorder_init(on_done, &done), 0);
	struct media_recorder *r;
	assert_int_equal(media_recorder_create(&r, path, 8000, 5), 0);
	struct pusher pu = {.r = r, .rate = 8000, .frames = 10000, .pace = 1};
	pusher_main(&pu); /* this thread is the worker */
	assert_int_equal(pu.allocs_after, pu.allocs_before);
	assert_int_equal(media_recorder_dropped(r), 0);
	media_recorder_finish(r);
	assert_int_equal(done_wait(1), 1);
	assert_int_equal(done.result, 0);
	assert_int_equal(done.bytes, 10000ull * 160 * 4);
	media_recorder_close();
	unlink(path);
}

/* A full disk (here: a file size limit) ends the recording with the errno; the file that is
 * there stays readable and the rest is dropped and counted. */
static void test_recorder_write_error_reported(void **state)
{
	(void)state;
	char path[128];
	tmp_path(path, sizeof(path), "full.wav");
	done_reset();
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(media_recorder_init(on_done, &done), 0);
	struct media_recorder *r;
	assert_int_equal(media_recorder_create(&r, path, 8000, 11), 0);
	lim = old;
	lim.rlim_cur = 100001; /* odd on purpose: a half-written sample at the end */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	struct pusher pu = {.r = r, .rate = 8000, .frames = 250, .pace = 1};
	pusher_main(&pu);
	for (unsigned i = 0; i < 5000 && media_recorder_backlog(r); i++)
		usleep(1000);
	uint64_t dropped = media_recorder_dropped(r);
	media_recorder_finish(r);
	assert_int_equal(done_wait(1), 1);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_sig);
	media_recorder_close();
	assert_int_equal(done.result, -EFBIG);
	assert_int_equal(done.bytes, 100001 - 44);
	/* 250 frames of 640 bytes: 156 whole ones fit, the rest was dropped and counted. */
	assert_int_equal(dropped, 250 - (100001 - 44) / 640);
	size_t len;
	uint8_t *b = read_all(path, &len);
	struct media_wav_info info;
	const char *why;
	assert_int_equal(media_wav_parse(b, len, &info, &why), 0);
	assert_int_equal(info.data_to_eof, 0);
	assert_int_equal(info.frames, (100001 - 44) / 4);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)
	    T(test_wav_parse_pcm16_mono_and_stereo),
	    T(test_wav_parse_pcm8_ulaw_alaw),
	    T(test_wav_parse_extensible),
	    T(test_wav_parse_odd_and_unknown_chunks),
	    T(test_wav_parse_streaming_sizes),
	    T(test_wav_parse_rejects),
	    T(test_wav_parse_every_truncation),
	    T(test_wav_load_resamples_tone),
	    T(test_wav_load_errors_name_path_and_reason),
	    T(test_wav_load_fault_injection),
	    T(test_prompt_prepare_codecs),
	    T(test_prompt_refcount_threads),
	    T(test_prompt_fault_injection),
	    T(test_recorder_stereo_tones),
	    T(test_recorder_overflow_drops_without_blocking),
	    T(test_recorder_create_errors),
	    T(test_recorder_close_finishes_open_recordings),
	    T(test_recorder_pushes_allocate_nothing),
	    T(test_recorder_write_error_reported),
#undef T
	};
	return cmocka_run_group_tests_name("wav", tests, group_setup, group_teardown);
}
