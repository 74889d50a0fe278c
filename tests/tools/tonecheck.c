/* tonecheck: asserts that a 16-bit PCM WAV holds a given tone (or silence); used by interop tests.
 */
/*
 * Usage:
 *   tonecheck FILE [--freq HZ] [--tol HZ] [--min-rms N] [--skip-ms MS] [--max-ms MS]
 *                  [--voice-rms N] [--min-voiced-ms MS] [--min-purity F] [--channel N]
 *   tonecheck FILE --silent [--max-rms N] [--skip-ms MS]
 *
 * Reads RIFF/WAVE (PCM or WAVE_FORMAT_EXTENSIBLE, 16 bit, 1..8 channels, any rate; chunks
 * are walked properly, and a data chunk whose size was never patched (a recorder killed
 * before it closed the file) is taken to run to the end of the file). Channels are
 * averaged unless --channel picks one (0-based).
 *
 * The audio after --skip-ms (and before --max-ms, counted from the start of the file) is
 * cut into 20 ms frames; frames whose RMS reaches --voice-rms (default 200) are "voiced".
 * Over the voiced frames it measures:
 *   rms     the RMS level (full scale 32767)
 *   freq    the dominant frequency by Goertzel scan: coarse (5 Hz steps over 50 Hz ..
 *           rate/2 - 50 Hz, power averaged over 50 ms blocks), then fine (0.25 Hz steps
 *           within 12 Hz of the coarse peak, 500 ms blocks); at most 4 s of voiced audio
 *   zc_freq the zero-crossing estimate, printed as a cross-check (equal to freq for a
 *           clean tone; far from it for noise or several tones)
 *   purity  the share of the voiced energy that the tone at `freq` explains (0..1); a
 *           clean sine through G.711 gives > 0.95, noise or broken SRTP far less
 * and prints one line:
 *   freq=1000.0 rms=5882 duration_ms=3980 voiced_ms=3980 purity=1.00 zc_freq=999.9
 *   rms_all=5882 rate=8000 channels=1 first_voiced_ms=0                 (one line)
 * duration_ms is the length analysed (after skip), voiced_ms the voiced part of it,
 * rms_all the RMS over everything analysed (what --silent checks), first_voiced_ms where
 * the first voiced frame starts, from the start of the file (-1 when none).
 *
 * Exit: 0 when the check passes, 1 when it fails, 2 on usage or file errors.
 * A tone check passes when voiced_ms >= --min-voiced-ms (default 500), |freq - want| <=
 * --tol (default 30), rms >= --min-rms (default 1000) and purity >= --min-purity
 * (default 0.5). Without --freq, only the level and voiced-length checks apply.
 * --silent passes when the RMS over everything analysed is below --max-rms (default 300).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_MS 20u

struct wav {
	unsigned rate;     /* samples per second per channel */
	unsigned channels; /* 1..8 */
	int16_t *pcm;      /* interleaved, host order */
	size_t n_frames;   /* samples per channel */
};

struct opts {
	const char *path;
	double freq; /* 0 = no frequency check */
	double tol;
	double min_rms;
	double max_rms;
	double voice_rms;
	double min_purity;
	unsigned skip_ms;
	unsigned max_ms; /* 0 = to the end */
	unsigned min_voiced_ms;
	int channel; /* -1 = average */
	int silent;
};

static uint32_t rd_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t rd_le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Reads the whole file into *buf (caller frees). 0 or -errno. */
static int slurp(const char *path, unsigned char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b = NULL;
	size_t cap = 0, n = 0;
	int err = 0;

	if (!f)
		return -errno;
	for (;;) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 65536;
			unsigned char *nb = realloc(b, ncap);
			if (!nb) {
				err = -ENOMEM;
				goto out;
			}
			b = nb;
			cap = ncap;
		}
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			if (ferror(f))
				err = -EIO;
			break;
		}
	}
out:
	fclose(f);
	if (err) {
		free(b);
		return err;
	}
	*buf = b;
	*len = n;
	return 0;
}

/* Parses a RIFF/WAVE image. 0, or -EINVAL with a message in err. */
static int wav_parse(const unsigned char *b, size_t len, struct wav *w, char *err, size_t errlen)
{
	size_t off = 12;
	int have_fmt = 0;
	unsigned bits = 0, fmt_tag = 0;

	memset(w, 0, sizeof(*w));
	if (len < 12 || memcmp(b, "RIFF", 4) != 0 || memcmp(b + 8, "WAVE", 4) != 0) {
		snprintf(err, errlen, "not a RIFF/WAVE file");
		return -EINVAL;
	}
	while (off + 8 <= len) {
		const unsigned char *id = b + off;
		size_t csize = rd_le32(b + off + 4);
		size_t body = off + 8;
		size_t avail = len - body;

		if (memcmp(id, "fmt ", 4) == 0) {
			if (csize < 16 || csize > avail) {
				snprintf(err, errlen, "fmt chunk too short");
				return -EINVAL;
			}
			fmt_tag = rd_le16(b + body);
			w->channels = rd_le16(b + body + 2);
			w->rate = rd_le32(b + body + 4);
			bits = rd_le16(b + body + 14);
			if (fmt_tag == 0xFFFE && csize >= 40)
				fmt_tag =
				    rd_le16(b + body + 24); /* SubFormat GUID starts with the tag */
			have_fmt = 1;
		} else if (memcmp(id, "data", 4) == 0) {
			if (!have_fmt) {
				snprintf(err, errlen, "data chunk before fmt chunk");
				return -EINVAL;
			}
			/* A recorder that died leaves 0 or 0xffffffff here: take the rest. */
			if (csize == 0 || csize > avail)
				csize = avail;
			if (fmt_tag != 1 || bits != 16) {
				snprintf(err, errlen,
				         "unsupported format tag %u, %u bits (need 16-bit PCM)",
				         fmt_tag, bits);
				return -EINVAL;
			}
			if (w->channels < 1 || w->channels > 8 || w->rate < 1000 ||
			    w->rate > 192000) {
				snprintf(err, errlen, "unsupported %u channels at %u Hz",
				         w->channels, w->rate);
				return -EINVAL;
			}
			w->n_frames = csize / (2u * w->channels);
			w->pcm = malloc(w->n_frames * w->channels * sizeof(int16_t) + 1);
			if (!w->pcm) {
				snprintf(err, errlen, "out of memory");
				return -ENOMEM;
			}
			for (size_t i = 0; i < w->n_frames * w->channels; i++)
				w->pcm[i] = (int16_t)rd_le16(b + body + 2 * i);
			return 0;
		}
		off = body + csize + (csize & 1); /* chunks are padded to even sizes */
	}
	snprintf(err, errlen, have_fmt ? "no data chunk" : "no fmt chunk");
	return -EINVAL;
}

/* Power of frequency f in x[0..n) (Goertzel), as the mean-square of the matching sine. */
static double goertzel_ms(const double *x, size_t n, double rate, double f)
{
	double w = 2.0 * M_PI * f / rate;
	double c = 2.0 * cos(w);
	double s1 = 0, s2 = 0;

	for (size_t i = 0; i < n; i++) {
		double s0 = x[i] + c * s1 - s2;
		s2 = s1;
		s1 = s0;
	}
	double re = s1 - s2 * cos(w);
	double im = s2 * sin(w);
	/* A sine of amplitude A gives |X| = A n / 2 and mean square A^2 / 2. */
	return 2.0 * (re * re + im * im) / ((double)n * (double)n);
}

/* Average tone mean-square at f over consecutive blocks of `blk` samples. */
static double scan_blocks(const double *x, size_t n, size_t blk, double rate, double f)
{
	double sum = 0;
	size_t nb = 0;

	if (blk > n)
		blk = n;
	for (size_t o = 0; blk && o + blk <= n; o += blk, nb++)
		sum += goertzel_ms(x + o, blk, rate, f);
	return nb ? sum / (double)nb : 0;
}

static int parse_num(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: tonecheck FILE [--freq HZ] [--tol HZ] [--min-rms N] [--skip-ms MS]\n"
	        "                      [--max-ms MS] [--voice-rms N] [--min-voiced-ms MS]\n"
	        "                      [--min-purity F] [--channel N]\n"
	        "       tonecheck FILE --silent [--max-rms N] [--skip-ms MS]\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){.tol = 30,
	                   .min_rms = 1000,
	                   .max_rms = 300,
	                   .voice_rms = 200,
	                   .min_purity = 0.5,
	                   .min_voiced_ms = 500,
	                   .channel = -1};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		double v = 0;

		if (strcmp(a, "--silent") == 0) {
			o->silent = 1;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			return -EINVAL;
		if (a[0] != '-' || a[1] != '-') {
			if (o->path)
				return -EINVAL;
			o->path = a;
			continue;
		}
		if (i + 1 >= argc || parse_num(argv[i + 1], &v) != 0 || v < 0) {
			fprintf(stderr, "tonecheck: %s needs a non-negative number\n", a);
			return -EINVAL;
		}
		i++;
		if (strcmp(a, "--freq") == 0)
			o->freq = v;
		else if (strcmp(a, "--tol") == 0)
			o->tol = v;
		else if (strcmp(a, "--min-rms") == 0)
			o->min_rms = v;
		else if (strcmp(a, "--max-rms") == 0)
			o->max_rms = v;
		else if (strcmp(a, "--voice-rms") == 0)
			o->voice_rms = v;
		else if (strcmp(a, "--min-purity") == 0)
			o->min_purity = v;
		else if (strcmp(a, "--skip-ms") == 0)
			o->skip_ms = (unsigned)v;
		else if (strcmp(a, "--max-ms") == 0)
			o->max_ms = (unsigned)v;
		else if (strcmp(a, "--min-voiced-ms") == 0)
			o->min_voiced_ms = (unsigned)v;
		else if (strcmp(a, "--channel") == 0)
			o->channel = (int)v;
		else {
			fprintf(stderr, "tonecheck: unknown option %s\n", a);
			return -EINVAL;
		}
	}
	return o->path ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct wav w = {0};
	unsigned char *file = NULL;
	size_t flen = 0;
	double *x = NULL; /* voiced samples, concatenated */
	char err[160];
	int rc = 2;

	if (parse_args(argc, argv, &o) != 0) {
		usage();
		return 2;
	}
	int e = slurp(o.path, &file, &flen);
	if (e) {
		fprintf(stderr, "tonecheck: %s: %s\n", o.path, strerror(-e));
		return 2;
	}
	if (wav_parse(file, flen, &w, err, sizeof(err)) != 0) {
		fprintf(stderr, "tonecheck: %s: %s\n", o.path, err);
		goto out;
	}
	if (o.channel >= (int)w.channels) {
		fprintf(stderr, "tonecheck: %s has %u channel(s)\n", o.path, w.channels);
		goto out;
	}

	size_t start = (size_t)((uint64_t)o.skip_ms * w.rate / 1000);
	size_t end = w.n_frames;
	if (o.max_ms) {
		size_t lim = (size_t)((uint64_t)o.max_ms * w.rate / 1000);
		if (lim < end)
			end = lim;
	}
	if (start > end)
		start = end;
	size_t frame = w.rate * FRAME_MS / 1000;
	x = malloc((end - start + 1) * sizeof(double));
	if (!x) {
		fprintf(stderr, "tonecheck: out of memory\n");
		goto out;
	}

	/* Mono signal, voiced-frame selection, whole-span and voiced energy. */
	size_t nx = 0, zc = 0;
	int sign = 0; /* sign of the last non-zero voiced sample, for zero crossings */
	double all_sq = 0, voiced_sq = 0;
	long first_voiced = -1; /* sample index of the first voiced frame */
	for (size_t f0 = start; f0 + frame <= end; f0 += frame) {
		double fsq = 0;
		double *dst = x + nx;
		for (size_t i = 0; i < frame; i++) {
			const int16_t *s = w.pcm + (f0 + i) * w.channels;
			double v;
			if (o.channel >= 0) {
				v = s[o.channel];
			} else {
				v = 0;
				for (unsigned c = 0; c < w.channels; c++)
					v += s[c];
				v /= w.channels;
			}
			dst[i] = v;
			fsq += v * v;
		}
		all_sq += fsq;
		if (sqrt(fsq / (double)frame) >= o.voice_rms) {
			/* Remove the frame's DC so crossings count the tone, not an offset. */
			double mean = 0;
			for (size_t i = 0; i < frame; i++)
				mean += dst[i];
			mean /= (double)frame;
			for (size_t i = 0; i < frame; i++)
				dst[i] -= mean;
			/* Samples exactly 0 (a 1 kHz sine at 8 kHz hits 0 every 4th
			 * sample) keep the previous sign, so they are not counted twice;
			 * the sign carries over between consecutive voiced frames. */
			for (size_t i = 0; i < frame; i++) {
				int sg = dst[i] > 0.5 ? 1 : dst[i] < -0.5 ? -1 : 0;
				if (sg && sign && sg != sign)
					zc++;
				if (sg)
					sign = sg;
			}
			voiced_sq += fsq;
			nx += frame;
			if (first_voiced < 0)
				first_voiced = (long)f0;
		} else {
			sign = 0;
		}
	}
	size_t analysed = end > start ? (end - start) / frame * frame : 0;
	double dur_ms = (double)analysed * 1000.0 / w.rate;
	double voiced_ms = (double)nx * 1000.0 / w.rate;
	double rms_all = analysed ? sqrt(all_sq / (double)analysed) : 0;
	double rms = nx ? sqrt(voiced_sq / (double)nx) : 0;
	double zc_freq = nx ? (double)zc / 2.0 / ((double)nx / w.rate) : 0;

	/* Goertzel: coarse scan on 50 ms blocks, then fine on 500 ms blocks. */
	double freq = 0, purity = 0;
	if (nx >= frame) {
		double rate = w.rate;
		size_t cblk = w.rate / 20, fblk = w.rate / 2;
		size_t n_use = nx;
		if (n_use > (size_t)w.rate * 4)
			n_use = (size_t)w.rate * 4; /* 4 s is plenty for the estimate */
		double best = -1, bf = 0;
		for (double f = 50; f <= rate / 2 - 50; f += 5) {
			double p = scan_blocks(x, n_use, cblk, rate, f);
			if (p > best) {
				best = p;
				bf = f;
			}
		}
		best = -1;
		for (double f = bf - 12; f <= bf + 12; f += 0.25) {
			double p = scan_blocks(x, n_use, fblk, rate, f);
			if (p > best) {
				best = p;
				freq = f;
			}
		}
		double ms = 0;
		for (size_t i = 0; i < n_use; i++)
			ms += x[i] * x[i];
		ms /= (double)n_use;
		purity = ms > 0 ? best / ms : 0;
		if (purity > 1)
			purity = 1;
	}

	printf("freq=%.1f rms=%.0f duration_ms=%.0f voiced_ms=%.0f purity=%.2f zc_freq=%.1f "
	       "rms_all=%.0f rate=%u channels=%u first_voiced_ms=%.0f\n",
	       freq, rms, dur_ms, voiced_ms, purity, zc_freq, rms_all, w.rate, w.channels,
	       first_voiced < 0 ? -1.0 : (double)first_voiced * 1000.0 / w.rate);

	if (o.silent) {
		if (rms_all < o.max_rms) {
			rc = 0;
		} else {
			printf("FAIL: rms %.0f >= %.0f (expected silence)\n", rms_all, o.max_rms);
			rc = 1;
		}
		goto out;
	}
	rc = 0;
	if (voiced_ms < o.min_voiced_ms) {
		printf("FAIL: only %.0f ms voiced (< %u ms at rms >= %.0f)\n", voiced_ms,
		       o.min_voiced_ms, o.voice_rms);
		rc = 1;
	}
	if (rms < o.min_rms) {
		printf("FAIL: rms %.0f < %.0f\n", rms, o.min_rms);
		rc = 1;
	}
	if (o.freq > 0 && fabs(freq - o.freq) > o.tol) {
		printf("FAIL: freq %.1f not within %.0f of %.0f Hz\n", freq, o.tol, o.freq);
		rc = 1;
	}
	if (o.freq > 0 && purity < o.min_purity) {
		printf("FAIL: purity %.2f < %.2f (not a clean tone)\n", purity, o.min_purity);
		rc = 1;
	}
out:
	free(x);
	free(w.pcm);
	free(file);
	return rc;
}
