/* Private to media/: WAV parsing and loading, prompts (announcements, music on hold) and the
 * per-call stereo recorder. Implemented in media/wav.c, media/prompt.c, media/recorder.c. */
#ifndef VACS_MEDIA_WAV_INT_H
#define VACS_MEDIA_WAV_INT_H

#include "media/media.h"

#include <stddef.h>
#include <stdint.h>

/* ---- WAV files, media/wav.c ---- */

/* Largest file media_wav_load reads. */
#define MEDIA_WAV_MAX_FILE (64u * 1024u * 1024u)
/* Sampling rates accepted in a file, inclusive. */
#define MEDIA_WAV_RATE_MIN 8000u
#define MEDIA_WAV_RATE_MAX 48000u

enum media_wav_format {
	MEDIA_WAV_PCM16 = 1, /* signed 16-bit little endian */
	MEDIA_WAV_PCM8,      /* unsigned 8-bit, 128 = silence */
	MEDIA_WAV_ULAW,      /* G.711 µ-law, 8 bits */
	MEDIA_WAV_ALAW,      /* G.711 A-law, 8 bits */
};

/* What media_wav_parse found. Offsets and lengths are in bytes of the parsed buffer. */
struct media_wav_info {
	enum media_wav_format format;
	unsigned format_tag;  /* as written: 1, 6, 7 or 0xFFFE (WAVE_FORMAT_EXTENSIBLE) */
	unsigned channels;    /* 1 or 2 */
	unsigned rate;        /* samples per second per channel */
	unsigned bits;        /* container bits per sample: 8 or 16 */
	unsigned block_align; /* bytes per sample frame: channels * bits / 8 */
	size_t data_off;      /* first byte of the sample data */
	size_t data_len;      /* sample data bytes, a whole number of blocks */
	size_t frames;        /* data_len / block_align */
	int data_to_eof;      /* the data size was 0 or 0xFFFFFFFF (streaming writer): the
	                       * data was taken to the end of the buffer */
};

/*
 * Validates a RIFF/WAVE file in memory and describes its audio. Chunks are walked with
 * their sizes checked against len, odd sizes skip the pad byte, unknown chunks (LIST, fact,
 * cue, ...) are skipped. Accepted: PCM 8-bit unsigned or 16-bit, µ-law (tag 7), A-law
 * (tag 6), also as WAVE_FORMAT_EXTENSIBLE with one of these subformats; 1 or 2 channels;
 * MEDIA_WAV_RATE_MIN..MAX Hz. The data chunk must lie inside the buffer (a missing final pad
 * byte is tolerated); a data size of 0 or 0xFFFFFFFF (a writer that could not seek back)
 * takes the rest of the buffer; a trailing partial block is ignored. After fmt and data are
 * found, a trailing chunk that runs past the end is ignored. The RIFF size field and the
 * byte rate are not trusted (often wrong) and not checked.
 * Returns 0, or -EBADMSG (malformed) / -ENOTSUP (valid but not a kind we play) with *why
 * set to a short static English reason (why may be NULL). Never reads outside buf[0..len).
 * Pure: any thread.
 */
int media_wav_parse(const uint8_t *buf, size_t len, struct media_wav_info *out, const char **why);

/* Decodes the parsed audio of buf to mono 16-bit at the file's rate (channels averaged):
 * writes info->frames samples to pcm. info must come from media_wav_parse(buf, ...). */
void media_wav_decode_mono(const uint8_t *buf, const struct media_wav_info *info, int16_t *pcm);

/*
 * Reads a WAV file (at most MEDIA_WAV_MAX_FILE bytes) and converts it to mono 16-bit at
 * `rate` (8000..48000) with the speexdsp resampler, the filter tail flushed so the end is
 * not cut: *n = round(frames * rate / file rate). The caller owns *pcm (mem_free).
 * On failure err (may be NULL) gets "<path>: <reason>" and the file is counted in
 * vacs_media_wav_rejected_total when its content was refused.
 * Returns 0, -EINVAL (rate), -errno of open/read, -EFBIG, -EBADMSG / -ENOTSUP (content,
 * including an empty data chunk), -ENOMEM. Control thread (reads a file, allocates).
 */
int media_wav_load(const char *path, unsigned rate, int16_t **pcm, size_t *n, char *err,
                   size_t errlen);

/* Same for several rates at once from one read of the file: pcm[i]/n[i] at rates[i].
 * On failure nothing is returned in pcm[]. */
int media_wav_load_rates(const char *path, unsigned count, const unsigned *rates, int16_t **pcm,
                         size_t *n, char *err, size_t errlen);

/* ---- Prompts: announcements and music on hold, media/prompt.c ---- */

/* A loaded announcement: PCM at 8 and 16 kHz converted at load time, plus encoded 20 ms
 * frames per codec built by media_prompt_prepare. Immutable once prepared for a codec;
 * shared by reference count (a worker may still play it while the control thread drops
 * it). Opaque. */
struct media_prompt;

/* Loads a WAV file (see media_wav_load) into a new prompt with one reference, owned by the
 * caller. 0 or the errors of media_wav_load (err gets "<path>: <reason>"). Control thread. */
int media_prompt_load(const char *path, struct media_prompt **out, char *err, size_t errlen);
/* Builds the encoded 20 ms frames of codec c once (cached; a second call is a no-op): the
 * PCM at the coder's rate, the last frame padded with silence. Allocates: control thread,
 * before the prompt is handed to a worker for c. 0, -EINVAL (codec), -ENOMEM, -EIO. */
int media_prompt_prepare(struct media_prompt *p, enum media_codec c);
/* Encoded frame i of codec c: *data (owned by the prompt, valid while a reference is
 * held) and *len. 0, -ENOENT when i is past the end, -EINVAL when c was not prepared.
 * Any thread; never allocates, locks or logs (the packet path). */
int media_prompt_frame(const struct media_prompt *p, enum media_codec c, unsigned i,
                       const uint8_t **data, size_t *len);
/* Frames prepared for codec c (ceil(ms / 20)), 0 when not prepared. Any thread. */
unsigned media_prompt_frames(const struct media_prompt *p, enum media_codec c);
/* Duration in milliseconds, rounded up. Any thread. */
unsigned media_prompt_ms(const struct media_prompt *p);
/* The PCM at rate 8000 or 16000 (owned by the prompt) and its sample count in *n;
 * NULL for other rates. Any thread. */
const int16_t *media_prompt_pcm(const struct media_prompt *p, unsigned rate, size_t *n);
/* Takes one more reference; returns p. Any thread. */
struct media_prompt *media_prompt_ref(struct media_prompt *p);
/* Drops one reference; the last frees the prompt. NULL accepted. Any thread (the last
 * unref frees: keep it off the packet path where possible). */
void media_prompt_unref(struct media_prompt *p);

/* ---- Call recorder, media/recorder.c ---- */

/* Frames of 20 ms each recording can queue between the worker and the writer thread. */
#define MEDIA_RECORDER_RING_FRAMES 128u
/* The writer thread looks at every recording at least this often. */
#define MEDIA_RECORDER_POLL_MS 100u

/* Result of one recording, called on the writer thread once the file is closed: result
 * 0 or -errno (the first write/fsync/close error; what came after it was dropped),
 * bytes = sample data bytes in the file. The recorder is freed right after. */
typedef void (*media_recorder_done_cb)(uint64_t owner, int result, uint64_t bytes, void *arg);

/* One recording: a stereo 16-bit WAV, left = caller, right = the other party. Opaque. */
struct media_recorder;

/* Starts the writer thread. Once, before any create; control thread. 0, -EALREADY,
 * -ENOMEM, -errno (eventfd, pthread_create). */
int media_recorder_init(media_recorder_done_cb done_cb, void *arg);
/* Finishes every recording still open (drains, patches, closes, done_cb), then stops the
 * writer thread. Call after the media workers stopped pushing: afterwards no recorder
 * pointer is valid. No-op when not initialised. Control thread. */
void media_recorder_close(void);
/* Creates the file at path (O_CREAT|O_EXCL, mode 0640) with a placeholder header, and the
 * ring. rate 8000 or 16000. The recorder belongs to the writer thread; the caller may push
 * to it until it calls media_recorder_finish. Errors are returned here, done_cb is not
 * called for them: -EINVAL (rate, not initialised), -EEXIST, -ENOENT and other open/write
 * errno, -ENOMEM. Control thread. */
int media_recorder_create(struct media_recorder **out, const char *path, unsigned rate,
                          uint64_t owner);
/* Queues n samples per side (any n; normally one 20 ms frame). NULL side = silence. When
 * the ring is full the frames are dropped and counted. One producer thread at a time (the
 * media worker); never blocks, allocates or locks. */
void media_recorder_push(struct media_recorder *r, const int16_t *left, const int16_t *right,
                         unsigned n);
/* No more pushes: the writer drains, patches the RIFF and data sizes, fsyncs, closes,
 * calls done_cb and frees r. Worker or control thread; never blocks. r is invalid after. */
void media_recorder_finish(struct media_recorder *r);
/* Frames dropped so far (ring full or after a write error). Valid until finish. */
uint64_t media_recorder_dropped(const struct media_recorder *r);
/* Frames queued and not yet written. Valid until finish. */
unsigned media_recorder_backlog(const struct media_recorder *r);
/* Test hook: while stalled the writer thread drains nothing (a slow disk). close unstalls. */
void media_recorder_test_stall(int on);

#endif
