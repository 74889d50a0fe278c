/* Private to media/: the fixed-memory buffers of the AI audio path (frame ring, playout, jitter).
 */
#ifndef VACS_MEDIA_BUF_INT_H
#define VACS_MEDIA_BUF_INT_H

#include <stddef.h>
#include <stdint.h>

/* All three are created and destroyed on the control thread (the only place they allocate,
 * through core/mem.h). Every other call is on the hot path: it never allocates, locks,
 * blocks or logs. */

/* ---- media_fring: upstream frames, media worker -> ai thread (media/fring.c) ----
 *
 * Single-producer single-consumer ring of fixed-size frames. When full the NEWEST frame is
 * dropped (the one being pushed) and counted: the ai thread is stalled and what is queued
 * already is older audio that must go first. */

struct media_fring;

struct media_fring_stats {
	uint64_t pushed;  /* frames accepted */
	uint64_t dropped; /* frames refused because the ring was full */
};

/* frame_bytes 1..MEDIA_FRING_FRAME_MAX; n_frames a power of two, 2..65536. The caller owns
 * *out. 0, -EINVAL or -ENOMEM. Control thread. */
#define MEDIA_FRING_FRAME_MAX 8192u
int media_fring_create(struct media_fring **out, size_t frame_bytes, unsigned n_frames);
/* NULL accepted. Both ends must have stopped using it. */
void media_fring_destroy(struct media_fring *r);
/* Producer (one thread): copies frame_bytes from frame and keeps `stamp` with it (the
 * AI port's: when the frame's packet arrived). 0, or -ENOBUFS when full (frame dropped
 * and counted in `dropped`). */
int media_fring_push(struct media_fring *r, const uint8_t *frame, uint64_t stamp);
/* Consumer (one thread): copies the oldest frame into frame (frame_bytes) and its stamp
 * into *stamp (NULL: not wanted). 1 when a frame was taken, 0 when empty. */
int media_fring_pop(struct media_fring *r, uint8_t *frame, uint64_t *stamp);
/* Frames queued now (a snapshot). Any thread. */
unsigned media_fring_count(const struct media_fring *r);
size_t media_fring_frame_bytes(const struct media_fring *r);
/* Counters; any thread. */
void media_fring_stats(const struct media_fring *r, struct media_fring_stats *st);

/* ---- media_playout: downstream audio, ai thread -> media worker (media/playout.c) ----
 *
 * Bytes from the AI arrive in chunks of any size and timing; the worker takes exactly one
 * 20 ms frame per tick. Producer = the ai thread (write/flush/mark), consumer = the media
 * worker (read). Both pass CLOCK_MONOTONIC microseconds (clock_now_us()).
 *
 * Formats: bytes_per_sample 1 = G.711 µ-law 8 kHz (frame 160 B, silence 0xFF),
 * 2 = s16le 16 kHz (frame 640 B, silence 0).
 *
 * Depth: after it was empty (start, underrun, flush) the consumer plays silence until
 * target_ms have passed since the first new audio arrived, or the buffer holds ceiling_ms;
 * then it plays continuously. target_ms = (input lateness spread over the last 2 s of audio)
 * + 20 ms + 5 ms, clamped to [floor_ms, ceiling_ms]; see playout.c for the estimator. */

struct media_playout;

struct media_playout_opts {
	unsigned bound_ms;   /* most audio kept; older audio is dropped (overrun). 0 = 20000 */
	unsigned floor_ms;   /* smallest target. 0 = 20 */
	unsigned ceiling_ms; /* largest target; also starts playing at once. 0 = 300 */
	unsigned initial_ms; /* target until 500 ms of audio has been seen. 0 = 80 */
};

enum media_playout_res {
	MEDIA_PLAYOUT_SILENCE = 0, /* the frame is all silence */
	MEDIA_PLAYOUT_AUDIO = 1,   /* the frame holds audio (maybe followed by silence) */
};

enum media_playout_mark_status {
	MEDIA_PLAYOUT_MARK_PLAYED = 1,  /* the last byte written before the mark was played */
	MEDIA_PLAYOUT_MARK_FLUSHED = 2, /* it was dropped: flush, or overrun of the bound */
};

struct media_playout_mark_ev {
	uint32_t id;
	enum media_playout_mark_status status;
};

struct media_playout_stats {
	uint64_t frames_audio;   /* frames returned as AUDIO */
	uint64_t frames_silence; /* frames returned as SILENCE */
	uint64_t underruns;      /* ran dry while playing and audio resumed within 1 s */
	uint64_t overrun_bytes;  /* oldest bytes dropped to keep within bound_ms */
	uint64_t refused_bytes;  /* bytes the producer could not store (ring full: stalled) */
	uint64_t flushes;        /* media_playout_flush calls */
	uint32_t target_ms;      /* current target depth */
	uint32_t depth_ms;       /* audio buffered after the last read */
};

/* bytes_per_sample 1 or 2 (see above); o NULL for defaults. Allocates the byte ring
 * (bound_ms + 25 %) and the mark ring. The caller owns *out. 0, -EINVAL or -ENOMEM.
 * Control thread. */
int media_playout_create(struct media_playout **out, unsigned bytes_per_sample,
                         const struct media_playout_opts *o);
/* NULL accepted. Both ends must have stopped using it. */
void media_playout_destroy(struct media_playout *p);
/* Bytes of one 20 ms frame (160 or 640). */
size_t media_playout_frame_bytes(const struct media_playout *p);

/* Producer: appends len bytes (copied) that arrived at now_us. 0, or -ENOBUFS when the ring
 * is physically full (the consumer is stalled): the bytes that do not fit are refused and
 * counted. With 2 bytes per sample, odd chunk sizes are fine (bytes form one stream). */
int media_playout_write(struct media_playout *p, const uint8_t *data, size_t len, uint64_t now_us);
/* Producer: everything written so far is dropped; the consumer applies it at its next read,
 * whose frame is silence. Pending marks complete as FLUSHED. Audio written afterwards plays
 * after the usual target wait. */
void media_playout_flush(struct media_playout *p);
/* Producer: asks to be told (through media_playout_read) when all audio written so far has
 * left; with nothing pending it completes at the next read as PLAYED. 0, or -ENOBUFS when
 * MEDIA_PLAYOUT_MARKS marks are already pending. */
#define MEDIA_PLAYOUT_MARKS 64u
int media_playout_mark(struct media_playout *p, uint32_t id);

/* Consumer: writes exactly one frame (frame_bytes) into frame and returns what it is.
 * Marks completed by this read are written to marks[0..*n_marks) in the order they were
 * made; a mark completes at the read whose frame carries its last byte. When more than
 * max_marks complete, the rest come with the next reads. marks may be NULL when max_marks
 * is 0; n_marks may be NULL. */
enum media_playout_res media_playout_read(struct media_playout *p, uint8_t *frame, uint64_t now_us,
                                          struct media_playout_mark_ev *marks, unsigned max_marks,
                                          unsigned *n_marks);
/* Counters; any thread. */
/* Audio written and not yet played (nor flushed), in ms, from the positions: up to date
 * for the producer, unlike depth_ms which the consumer sets at each read. Any thread. */
unsigned media_playout_queued_ms(const struct media_playout *p);
void media_playout_stats(const struct media_playout *p, struct media_playout_stats *st);

/* ---- media_jbuf: inbound RTP jitter buffer of a caller leg (media/jbuf.c) ----
 *
 * One media worker thread only (no atomics). Packets are copied into fixed slots and put
 * back in sequence order; the worker calls media_jbuf_get once per 20 ms tick (more often
 * when packets are shorter than 20 ms, see below).
 *
 * Timing: after a (re)start the first packet is held until now >= its arrival + target_ms;
 * its release anchors a play clock, and every later packet (or missing one) is due when its
 * RTP timestamp on that clock falls before now + 15 ms (3/4 of the frame being built).
 * target_ms = floor_ms + 3 x (RFC 3550 interarrival jitter), at most ceiling_ms.
 * Loss: a missing packet whose slot has come while a later packet is buffered is LOST at
 * that tick. With floor_ms >= 20 the next packet has arrived by then; with a smaller floor
 * (or a burst longer than the delay) the slot shows as EMPTY and is skipped silently.
 * Pause (DTX, burst loss, stall): when nothing is buffered at a slot, get says EMPTY. The
 * next packet keeps the play clock if its slot still leaves it at least target_ms, else it is
 * held like a new start. A late packet (its slot already gone) returns -EALREADY.
 * Latency trim: when all of 50 released packets waited more than target + 20 ms + one packet
 * after arriving, whole packets of that excess are dropped (latency toward the AI matters
 * more than a few ms of audio, e.g. after a stall).
 *
 * Packet durations: the duration of a packet is the timestamp step to the next sequence
 * number (else the last one seen, initially 20 ms). Packets of 10/30/60 ms work when the
 * caller keeps its decoded audio in a FIFO and, at each tick, calls get while the FIFO
 * holds less than 20 ms and get returns PACKET or LOST. */

struct media_jbuf;

struct media_jbuf_opts {
	unsigned slots;       /* packets held, 2..1024. 0 = 32 */
	unsigned max_payload; /* bytes per packet. 0 = 1500 */
	unsigned floor_ms;    /* smallest target, 1..ceiling. 0 = 20; MEDIA_JBUF_NO_FLOOR = 0 ms */
	unsigned ceiling_ms;  /* largest target. 0 = 100 */
};
#define MEDIA_JBUF_NO_FLOOR 0xffffffffu

enum media_jbuf_res {
	MEDIA_JBUF_EMPTY = 0,  /* nothing to play now: send silence (hold, DTX, no RTP) */
	MEDIA_JBUF_PACKET = 1, /* f->payload is the next packet */
	MEDIA_JBUF_LOST = 2,   /* the expected packet is missing: conceal f->dur_ts */
};

struct media_jbuf_frame {
	const uint8_t *payload; /* PACKET: the payload, valid until the next get/reset */
	size_t len;
	uint16_t seq; /* PACKET: its seq; LOST: the missing seq */
	uint32_t ts;  /* PACKET: its RTP ts; LOST: the ts the missing packet would have */
	/* PACKET: timestamp step to the next packet, else the last step seen (20 ms before
	 * any: decode for the real length); LOST: the estimated length of the gap */
	uint32_t dur_ts;
	/* LOST: the packet right after the missing one (seq + 1) when it is here, for Opus
	 * in-band FEC; NULL otherwise. Valid until the next get/reset. */
	const uint8_t *next;
	size_t next_len;
};

struct media_jbuf_stats {
	uint64_t received;   /* packets stored */
	uint64_t duplicates; /* -EALREADY: duplicate, or older than what was played */
	uint64_t packets;    /* PACKET results (media_jbuf_get_next's included) */
	uint64_t early;      /* PACKET results of media_jbuf_get_next */
	uint64_t lost;       /* LOST results */
	uint64_t skipped;    /* missing packets passed over silently (after a pause/overflow) */
	uint64_t dropped;    /* stored packets discarded: buffer full, or latency trimmed */
	uint64_t restarts;   /* sequence restarts (big jump confirmed, or reset) */
	uint32_t jitter_us;  /* RFC 3550 interarrival jitter */
	uint32_t target_ms;  /* current hold target */
};

/* clock_rate: RTP clock of the payload (8000, 16000, 48000, ...). o NULL for defaults.
 * Allocates all slots. The caller owns *out. 0, -EINVAL or -ENOMEM. Control thread. */
int media_jbuf_create(struct media_jbuf **out, unsigned clock_rate,
                      const struct media_jbuf_opts *o);
/* NULL accepted. */
void media_jbuf_destroy(struct media_jbuf *j);
/* Forgets the stream (packets, sequence and timestamp state); keeps the jitter estimate
 * and counters. Call it when the SSRC changes. */
void media_jbuf_reset(struct media_jbuf *j);
/* Stores one packet (payload copied) that arrived at now_us. 0; -EALREADY for a duplicate
 * or a packet older than what was already played; -EAGAIN when seq jumped far (>= 3000
 * ahead or > 100 behind): it is kept aside and the stream restarts if the next packet
 * follows it; -EMSGSIZE when len > max_payload. Worker thread. */
int media_jbuf_put(struct media_jbuf *j, uint16_t seq, uint32_t ts, const uint8_t *payload,
                   size_t len, uint64_t now_us);
/* The next thing to play at now_us; fills *f. Worker thread. */
enum media_jbuf_res media_jbuf_get(struct media_jbuf *j, uint64_t now_us,
                                   struct media_jbuf_frame *f);
/* The expected next packet at once, whatever its time on the play clock: PACKET when it is
 * stored. A stream that would be held (start, restart, after a pause) is not: its oldest
 * packet is released now and the play clock anchored on it. EMPTY when the expected packet
 * is missing (media_jbuf_get decides about loss at its time). For the AI upstream, which
 * forwards a packet that arrived in order when it arrives: the AI side absorbs jitter
 * itself, a hold would only add latency. Worker thread. */
enum media_jbuf_res media_jbuf_get_next(struct media_jbuf *j, uint64_t now_us,
                                        struct media_jbuf_frame *f);
/* 1 when media_jbuf_get_next would give a packet now (nothing changes). Worker thread. */
int media_jbuf_next_ready(struct media_jbuf *j, uint64_t now_us);
void media_jbuf_stats(const struct media_jbuf *j, struct media_jbuf_stats *st);

#endif
