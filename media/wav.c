/* WAV files: a bounds-checked RIFF/WAVE parser and a loader to mono PCM at a chosen rate. */
#include "media/wav_int.h"

#include "core/mem.h"
#include "core/metric.h"
#include "media/codec_int.h"
#include "media/media_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAVE_FORMAT_PCM        0x0001u
#define WAVE_FORMAT_ALAW       0x0006u
#define WAVE_FORMAT_MULAW      0x0007u
#define WAVE_FORMAT_EXTENSIBLE 0xFFFEu

/* Resampler quality for files: load time, not the packet path, so a good filter. */
#define LOAD_QUALITY 7
/* Input samples fed to the resampler per call. */
#define LOAD_CHUNK 4096u

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int fail(const char **why, int err, const char *reason)
{
	if (why)
		*why = reason;
	return err;
}

static const char *tag_reason(unsigned tag)
{
	switch (tag) {
	case 0x0000:
		return "unsupported format tag 0 (unknown)";
	case 0x0002:
		return "unsupported format tag 2 (MS ADPCM)";
	case 0x0003:
		return "unsupported format tag 3 (IEEE float)";
	case 0x0011:
		return "unsupported format tag 17 (IMA ADPCM)";
	case 0x0031:
		return "unsupported format tag 49 (GSM 6.10)";
	case 0x0050:
		return "unsupported format tag 80 (MPEG)";
	case 0x0055:
		return "unsupported format tag 85 (MP3)";
	case 0x0161:
		return "unsupported format tag 353 (WMA)";
	default:
		return "unsupported format tag (only PCM, A-law and u-law)";
	}
}

static const char *channels_reason(unsigned ch)
{
	static const char *const r[] = {
	    "0 channels",
	    NULL,
	    NULL,
	    "3 channels (only mono or stereo)",
	    "4 channels (only mono or stereo)",
	    "5 channels (only mono or stereo)",
	    "6 channels (only mono or stereo)",
	    "7 channels (only mono or stereo)",
	    "8 channels (only mono or stereo)",
	};
	if (ch < sizeof(r) / sizeof(r[0]) && r[ch])
		return r[ch];
	return "more than 2 channels (only mono or stereo)";
}

static const char *bits_reason(unsigned bits)
{
	switch (bits) {
	case 0:
		return "0 bits per sample";
	case 24:
		return "24-bit samples (only 8- or 16-bit PCM)";
	case 32:
		return "32-bit samples (only 8- or 16-bit PCM)";
	default:
		return "unsupported bits per sample (only 8- or 16-bit PCM)";
	}
}

/* The 14 bytes after the format code in a KSDATAFORMAT_SUBTYPE_* GUID. */
static const uint8_t ks_guid_tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                         0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

/* Checks the fmt chunk body (len >= 16, inside the buffer) and fills out's format fields. */
static int parse_fmt(const uint8_t *f, size_t len, struct media_wav_info *out, const char **why)
{
	unsigned tag = le16(f);
	unsigned ch = le16(f + 2);
	uint32_t rate = le32(f + 4);
	unsigned align = le16(f + 12);
	unsigned bits = le16(f + 14);
	unsigned code = tag;

	out->format_tag = tag;
	if (tag == WAVE_FORMAT_EXTENSIBLE) {
		/* WAVEFORMATEXTENSIBLE: cbSize(2) validBits(2) channelMask(4) SubFormat(16). */
		if (len < 40 || le16(f + 16) < 22)
			return fail(why, -EBADMSG, "extensible fmt chunk too short");
		if (memcmp(f + 26, ks_guid_tail, sizeof(ks_guid_tail)) != 0)
			return fail(why, -ENOTSUP,
			            "unsupported extensible subformat (not a KS GUID)");
		code = le16(f + 24);
		unsigned valid = le16(f + 18);
		if (valid > bits)
			return fail(why, -EBADMSG, "extensible valid bits exceed the sample size");
	}
	if (code != WAVE_FORMAT_PCM && code != WAVE_FORMAT_ALAW && code != WAVE_FORMAT_MULAW)
		return fail(why, -ENOTSUP,
		            tag == WAVE_FORMAT_EXTENSIBLE
		                ? "unsupported extensible subformat (only PCM, A-law and u-law)"
		                : tag_reason(tag));
	if (ch == 0)
		return fail(why, -EBADMSG, channels_reason(ch));
	if (ch > 2)
		return fail(why, -ENOTSUP, channels_reason(ch));
	if (rate == 0)
		return fail(why, -EBADMSG, "sample rate 0");
	if (rate < MEDIA_WAV_RATE_MIN)
		return fail(why, -ENOTSUP, "sample rate below 8000 Hz");
	if (rate > MEDIA_WAV_RATE_MAX)
		return fail(why, -ENOTSUP, "sample rate above 48000 Hz");
	if (code == WAVE_FORMAT_PCM) {
		if (bits == 0)
			return fail(why, -EBADMSG, bits_reason(bits));
		if (bits != 8 && bits != 16)
			return fail(why, -ENOTSUP, bits_reason(bits));
		out->format = bits == 8 ? MEDIA_WAV_PCM8 : MEDIA_WAV_PCM16;
	} else {
		if (bits != 8)
			return fail(why, -EBADMSG, "A-law/u-law samples must be 8-bit");
		out->format = code == WAVE_FORMAT_ALAW ? MEDIA_WAV_ALAW : MEDIA_WAV_ULAW;
	}
	if (align != ch * (bits / 8))
		return fail(why, -EBADMSG, "block align does not match channels and bits");
	out->channels = ch;
	out->rate = rate;
	out->bits = bits;
	out->block_align = align;
	return 0;
}

int media_wav_parse(const uint8_t *buf, size_t len, struct media_wav_info *out, const char **why)
{
	struct media_wav_info info;
	memset(&info, 0, sizeof(info));
	if (len == 0)
		return fail(why, -EBADMSG, "empty file");
	if (len < 12)
		return fail(why, -EBADMSG, "shorter than a RIFF header");
	if (memcmp(buf, "RIFX", 4) == 0)
		return fail(why, -ENOTSUP, "big-endian RIFX file");
	if (memcmp(buf, "RF64", 4) == 0)
		return fail(why, -ENOTSUP, "RF64 file");
	if (memcmp(buf, "RIFF", 4) != 0)
		return fail(why, -EBADMSG, "not a RIFF file");
	if (memcmp(buf + 8, "WAVE", 4) != 0)
		return fail(why, -EBADMSG, "not a WAVE file (RIFF form type is not WAVE)");

	int have_fmt = 0, have_data = 0;
	size_t off = 12;
	while (len - off >= 8) {
		const uint8_t *id = buf + off;
		uint32_t sz = le32(buf + off + 4);
		size_t body = off + 8;
		size_t avail = len - body;
		if (memcmp(id, "fmt ", 4) == 0) {
			if (have_fmt)
				return fail(why, -EBADMSG, "more than one fmt chunk");
			if (sz < 16)
				return fail(why, -EBADMSG, "fmt chunk too short");
			if (sz > avail)
				return fail(why, -EBADMSG,
				            "fmt chunk extends beyond the end of the file");
			int err = parse_fmt(buf + body, sz, &info, why);
			if (err)
				return err;
			have_fmt = 1;
		} else if (memcmp(id, "data", 4) == 0) {
			if (have_data)
				return fail(why, -EBADMSG, "more than one data chunk");
			have_data = 1;
			info.data_off = body;
			if (sz == 0 || sz == 0xFFFFFFFFu) {
				/* A streaming writer that could not seek back to fill in
				 * the size: the audio runs to the end of the file. */
				info.data_len = avail;
				info.data_to_eof = 1;
				break;
			}
			if (sz > avail)
				return fail(why, -EBADMSG,
				            "data chunk extends beyond the end of the file");
			info.data_len = sz;
		} else if (sz > avail) {
			/* Junk or a truncated tag after the audio is harmless. */
			if (have_fmt && have_data)
				break;
			return fail(why, -EBADMSG, "chunk extends beyond the end of the file");
		}
		/* sz <= avail here, so this cannot overflow; an odd size has a pad byte,
		 * which may be missing at the very end. */
		off = body + sz + (sz & 1u);
		if (off >= len)
			break;
	}
	if (!have_fmt)
		return fail(why, -EBADMSG, "fmt chunk missing");
	if (!have_data)
		return fail(why, -EBADMSG, "data chunk missing");
	info.data_len -= info.data_len % info.block_align;
	info.frames = info.data_len / info.block_align;
	*out = info;
	return 0;
}

static int16_t sample_at(const uint8_t *p, enum media_wav_format f)
{
	switch (f) {
	case MEDIA_WAV_PCM16:
		return (int16_t)le16(p);
	case MEDIA_WAV_PCM8:
		return (int16_t)(((int)p[0] - 128) * 256);
	case MEDIA_WAV_ULAW:
		return media_g711_ulaw_decode(p[0]);
	case MEDIA_WAV_ALAW:
		return media_g711_alaw_decode(p[0]);
	}
	return 0;
}

void media_wav_decode_mono(const uint8_t *buf, const struct media_wav_info *info, int16_t *pcm)
{
	const uint8_t *p = buf + info->data_off;
	unsigned step = info->bits / 8;
	for (size_t i = 0; i < info->frames; i++, p += info->block_align) {
		if (info->channels == 1) {
			pcm[i] = sample_at(p, info->format);
		} else {
			int sum = sample_at(p, info->format) + sample_at(p + step, info->format);
			/* Arithmetic shift rounds toward -inf: symmetric enough for audio. */
			pcm[i] = (int16_t)(sum >> 1);
		}
	}
}

static struct metric *rejected_metric(void)
{
	return metric_get(METRIC_COUNTER, "vacs_media_wav_rejected_total",
	                  "WAV files refused as malformed or unsupported");
}

static void set_err(char *err, size_t errlen, const char *path, const char *reason)
{
	if (err && errlen)
		snprintf(err, errlen, "%s: %s", path, reason);
}

/* Reads the whole file into a new buffer. */
static int read_file(const char *path, uint8_t **out, size_t *outlen, const char **why)
{
	int err = 0;
	uint8_t *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		*why = strerror(errno);
		return err;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		err = -errno;
		*why = strerror(errno);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err = -EINVAL;
		*why = "not a regular file";
		goto out;
	}
	if (st.st_size > (off_t)MEDIA_WAV_MAX_FILE) {
		err = -EFBIG;
		*why = "file larger than 64 MB";
		goto out;
	}
	size_t size = (size_t)st.st_size;
	buf = mem_alloc(size ? size : 1);
	if (!buf) {
		err = -ENOMEM;
		*why = "out of memory";
		goto out;
	}
	size_t got = 0;
	while (got < size) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = -errno;
			*why = strerror(errno);
			goto out;
		}
		if (r == 0)
			break; /* shrank meanwhile: parse what is there */
		got += (size_t)r;
	}
	*out = buf;
	*outlen = got;
	buf = NULL;
out:
	mem_free(buf);
	close(fd);
	return err;
}

/* Converts n_in mono samples at in_rate to exactly n_out samples at out_rate. */
static int convert(const int16_t *in, size_t n_in, unsigned in_rate, unsigned out_rate,
                   int16_t *out, size_t n_out)
{
	if (in_rate == out_rate) {
		size_t k = n_in < n_out ? n_in : n_out;
		memcpy(out, in, k * sizeof(*in));
		memset(out + k, 0, (n_out - k) * sizeof(*out));
		return 0;
	}
	struct media_resampler *rs;
	int err = media_resampler_create(&rs, in_rate, out_rate, LOAD_QUALITY);
	if (err)
		return err;
	/* Output of one chunk, with room for the filter's rounding. */
	unsigned chunk_out = (unsigned)((uint64_t)LOAD_CHUNK * out_rate / in_rate) + 16u;
	static const int16_t zeros[LOAD_CHUNK];
	int16_t *scratch = mem_alloc(chunk_out * sizeof(*scratch));
	if (!scratch) {
		media_resampler_destroy(rs);
		return -ENOMEM;
	}
	size_t done = 0, pos = 0;
	/* Zeros after the end push the filter's tail out; bounded in case of a surprise. */
	uint64_t tail = (uint64_t)(media_resampler_delay(rs) + 16u) * in_rate / out_rate + 64u;
	size_t tail_fed = 0;
	while (done < n_out) {
		const int16_t *src;
		unsigned k;
		if (pos < n_in) {
			size_t left = n_in - pos;
			k = left < LOAD_CHUNK ? (unsigned)left : LOAD_CHUNK;
			src = in + pos;
			pos += k;
		} else if (tail_fed < tail + LOAD_CHUNK) {
			k = LOAD_CHUNK / 4;
			src = zeros;
			tail_fed += k;
		} else {
			break;
		}
		unsigned got = media_resample(rs, src, k, scratch, chunk_out);
		size_t take = got < n_out - done ? got : n_out - done;
		memcpy(out + done, scratch, take * sizeof(*out));
		done += take;
	}
	if (done < n_out) /* cannot happen with a sane filter; never leave garbage */
		memset(out + done, 0, (n_out - done) * sizeof(*out));
	mem_free(scratch);
	media_resampler_destroy(rs);
	return 0;
}

int media_wav_load_rates(const char *path, unsigned count, const unsigned *rates, int16_t **pcm,
                         size_t *n, char *err, size_t errlen)
{
	const char *why = NULL;
	uint8_t *buf = NULL;
	int16_t *mono = NULL;
	int16_t *outs[4] = {NULL, NULL, NULL, NULL};
	size_t outn[4];
	size_t len = 0;
	int rc;

	if (count == 0 || count > 4) {
		set_err(err, errlen, path, "bad rate list");
		return -EINVAL;
	}
	for (unsigned i = 0; i < count; i++) {
		if (rates[i] < MEDIA_WAV_RATE_MIN || rates[i] > MEDIA_WAV_RATE_MAX) {
			set_err(err, errlen, path, "output rate outside 8000-48000 Hz");
			return -EINVAL;
		}
	}
	rc = read_file(path, &buf, &len, &why);
	if (rc) {
		if (rc == -EFBIG)
			metric_inc(rejected_metric());
		goto out;
	}
	struct media_wav_info info;
	rc = media_wav_parse(buf, len, &info, &why);
	if (rc == 0 && info.frames == 0) {
		rc = -EBADMSG;
		why = "data chunk is empty";
	}
	if (rc) {
		metric_inc(rejected_metric());
		goto out;
	}
	mono = mem_alloc(info.frames * sizeof(*mono));
	if (!mono) {
		rc = -ENOMEM;
		why = "out of memory";
		goto out;
	}
	media_wav_decode_mono(buf, &info, mono);
	mem_free(buf);
	buf = NULL;
	for (unsigned i = 0; i < count; i++) {
		uint64_t want = ((uint64_t)info.frames * rates[i] + info.rate / 2) / info.rate;
		outn[i] = (size_t)(want ? want : 1);
		outs[i] = mem_alloc(outn[i] * sizeof(int16_t));
		if (!outs[i]) {
			rc = -ENOMEM;
			why = "out of memory";
			goto out;
		}
		rc = convert(mono, info.frames, info.rate, rates[i], outs[i], outn[i]);
		if (rc) {
			why = rc == -ENOMEM ? "out of memory" : "resampler failed";
			goto out;
		}
	}
	for (unsigned i = 0; i < count; i++) {
		pcm[i] = outs[i];
		n[i] = outn[i];
		outs[i] = NULL;
	}
out:
	if (rc)
		set_err(err, errlen, path, why ? why : "error");
	for (unsigned i = 0; i < count; i++)
		mem_free(outs[i]);
	mem_free(mono);
	mem_free(buf);
	return rc;
}

int media_wav_load(const char *path, unsigned rate, int16_t **pcm, size_t *n, char *err,
                   size_t errlen)
{
	return media_wav_load_rates(path, 1, &rate, pcm, n, err, errlen);
}
