/* The media engine: RTP/RTCP/SRTP endpoints on worker threads, relay between legs. */
#ifndef VACS_MEDIA_MEDIA_H
#define VACS_MEDIA_MEDIA_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * Threads: media_init/media_close and every media_session_* call are made from ONE
 * control thread (the sip thread). Each session is pinned to one worker thread for its
 * life; the control thread's calls are turned into commands posted to that worker, so
 * they return at once and take effect in order, within one worker tick at most.
 * Events (timeouts, DTMF digits) come back through media_event_fd()/media_events_poll().
 */

struct media_config {
	const char *address;        /* local IPv4 address to bind RTP on, e.g. "127.0.0.1" */
	const char *advertise;      /* address written in SDP (NULL = address) */
	uint16_t port_min;          /* even, inclusive */
	uint16_t port_max;          /* inclusive */
	unsigned workers;           /* media worker threads (0 = number of CPUs) */
	unsigned realtime_priority; /* SCHED_FIFO priority of the workers, 1-99 (0 = off) */
	unsigned coalesce_us;       /* least time between a worker's wake-ups (0 = off) */
	unsigned rtp_timeout_ms;    /* no RTP on an active stream for this long -> event */
	unsigned hold_timeout_ms;   /* same for a stream on hold (0 = never) */
	unsigned max_sessions;      /* sessions per worker, preallocated */
};

enum media_codec {
	MEDIA_CODEC_NONE = 0,
	MEDIA_CODEC_PCMU, /* static PT 0, 8 kHz */
	MEDIA_CODEC_PCMA, /* static PT 8, 8 kHz */
	MEDIA_CODEC_G722, /* static PT 9, 16 kHz audio on an 8 kHz RTP clock (RFC 3551 4.5.2) */
	MEDIA_CODEC_OPUS, /* dynamic PT, opus/48000/2 in SDP (RFC 7587); 16 kHz inside VACS */
	MEDIA_CODEC_G729, /* static PT 18, 8 kHz, Annex A (bcg729), annexb=no */
	MEDIA_CODEC_COUNT
};

enum media_srtp_suite {
	MEDIA_SRTP_NONE = 0,
	MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80,
	MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32, /* RTCP tag stays 80 bits (RFC 4568) */
	MEDIA_SRTP_AEAD_AES_128_GCM,
	MEDIA_SRTP_AEAD_AES_256_GCM,
};
#define MEDIA_SRTP_MAX_KEY 46 /* key + salt bytes, AES-256-GCM = 44 */

/* SDES name <-> suite ("AES_CM_128_HMAC_SHA1_80" ...). Unknown -> MEDIA_SRTP_NONE. */
enum media_srtp_suite media_srtp_suite_parse(const char *name);
const char *media_srtp_suite_name(enum media_srtp_suite s);
/* Master key + salt length in bytes for the suite (30, 30, 28, 44), 0 for NONE. */
size_t media_srtp_key_len(enum media_srtp_suite s);
/* Fills key with key_len(s) random bytes. 0 or -errno. Any thread. */
int media_srtp_keygen(enum media_srtp_suite s, uint8_t *key);

struct media_srtp_params {
	enum media_srtp_suite suite; /* NONE = plain RTP */
	uint8_t key[MEDIA_SRTP_MAX_KEY];
};

/* What one leg's far end negotiated; applied as a whole by media_session_update(). */
struct media_stream_params {
	struct sockaddr_in remote_rtp;  /* sin_port 0 = unknown yet (nothing is sent) */
	struct sockaddr_in remote_rtcp; /* ignored when rtcp_mux */
	int rtcp_mux;
	int send;               /* we may send to the far end (it is not sendonly/inactive) */
	int recv;               /* the far end sends to us (it is not recvonly/inactive) */
	int latch;              /* adopt the source address of the first valid packet (NAT) */
	enum media_codec codec; /* the audio codec on this leg */
	uint8_t pt_audio;       /* PT of that codec on this leg */
	int pt_dtmf;            /* telephone-event PT on this leg, -1 = none */
	int pt_cn;              /* comfort-noise PT on this leg, -1 = none */
	struct media_srtp_params srtp_tx; /* our key: protects what we send */
	struct media_srtp_params srtp_rx; /* the far end's key: unprotects what we get */
};

enum media_tone {
	MEDIA_TONE_NONE = 0,
	MEDIA_TONE_RINGBACK,    /* US (ANSI T1.401): 440+480 Hz, 2 s on / 4 s off */
	MEDIA_TONE_RINGBACK_MX, /* Mexico (ITU-T E.180 suppl. 2): 425 Hz, 1 s on / 4 s off */
};
/* The ringback of a country calling code (1 -> US, 52 -> MX; others US). */
enum media_tone media_ringback_for_country(unsigned country_code);

/* Quality figures of one leg, read at any time from the control thread. */
struct media_stats {
	uint64_t pkts_in, pkts_out, bytes_in, bytes_out;
	uint64_t pkts_dropped; /* bad SRTP auth, unknown PT, no peer, pool empty */
	uint32_t lost;         /* RFC 3550 cumulative loss seen on receive */
	uint32_t jitter_ms;    /* RFC 3550 interarrival jitter on receive */
	uint32_t remote_lost;  /* from the far end's RTCP receiver report */
	uint32_t remote_jitter_ms;
	uint32_t rtcp_in, rtcp_out;
	uint32_t dtmf_events;
};

enum media_event_type {
	MEDIA_EV_TIMEOUT = 1, /* no RTP for the configured time */
	MEDIA_EV_DTMF,        /* a digit ended: RFC 4733 event, or in-band tone (inband = 1) */
	MEDIA_EV_MARK,        /* AI audio queued before media_ai_mark(id) was played (or flushed) */
	MEDIA_EV_PLAY_DONE,   /* a prompt played with media_session_play(id) ended or stopped */
	MEDIA_EV_AMD,         /* answering-machine verdict */
	MEDIA_EV_RECORDING,   /* a recording was closed and synced (result, bytes) */
	MEDIA_EV_AMD_END,     /* after a MACHINE verdict not on a beep: the greeting ended
	                       * (why "beep", "silence" after it, or "timeout" at 20 s) */
};

enum media_amd_verdict { MEDIA_AMD_HUMAN = 1, MEDIA_AMD_MACHINE, MEDIA_AMD_UNSURE };

struct media_event {
	enum media_event_type type;
	uint64_t owner; /* the owner id given to media_session_create */
	char digit;     /* DTMF: '0'-'9', '*', '#', 'A'-'D' */
	uint8_t inband; /* DTMF: detected in the audio rather than from RFC 4733 */
	uint16_t duration_ms;
	uint32_t id;     /* MARK, PLAY_DONE: the caller's id */
	int32_t result;  /* MARK: 1 played, 0 flushed; PLAY_DONE: 1 ended, 0 stopped;
	                  * RECORDING: 0 or -errno; AMD: enum media_amd_verdict */
	uint32_t ms;     /* AMD: audio analysed before the verdict */
	uint64_t bytes;  /* RECORDING: audio bytes written */
	const char *why; /* AMD: static reason text ("long greeting", "beep", ...) */
};

struct media_session; /* opaque, owned by the worker after creation */

/* Starts the workers. 0 or -errno. */
int media_init(const struct media_config *cfg);
/* Stops the workers and frees every session left. */
void media_close(void);

/* Readable when events are waiting; the control thread then calls media_events_poll. */
int media_event_fd(void);
/* Takes up to max events; returns the number taken. */
unsigned media_events_poll(struct media_event *ev, unsigned max);

/* Creates a session bound to a fresh even/odd port pair from the range.
 * `pin_with` NULL picks the least loaded worker; otherwise the new session goes on the
 * same worker as pin_with (legs that are bridged must share a worker).
 * `owner` is echoed in events. *out and *local_port set on success. 0 or -errno
 * (-EADDRINUSE when the range is exhausted). */
int media_session_create(uint64_t owner, struct media_session *pin_with, struct media_session **out,
                         uint16_t *local_port);
/* The worker the session is pinned to, 0 .. media_worker_count() - 1 (a paired thread,
 * such as an AI thread, can be chosen by it). Control thread. */
unsigned media_session_worker(const struct media_session *s);
/* Worker threads started by media_init (0 before). */
unsigned media_worker_count(void);
/* A guest: work of another module run on a media worker's own thread, so that it needs
 * neither a thread of its own nor a hand-off between threads (the AI legs' WebSocket
 * contexts, vapi/ws.c: a frame goes to VAPI from the wake-up that received its packet).
 * The worker watches fd (EPOLLIN, level-triggered) and runs cb(arg, 1) when it is
 * readable, after that wake-up's packets and their AI notifications, and cb(arg, 0)
 * after every 1 ms tick. cb must not block. */
typedef void (*media_guest_cb)(void *arg, int readable);
/* Gives worker its guest (one per worker) and returns once the worker took it. Control
 * thread, after media_init. 0, -EINVAL (no such worker), -EBUSY (it has one), -ETIMEDOUT
 * (the worker did not answer in 2 s), or epoll's error for fd. */
int media_worker_guest_add(unsigned worker, int fd, media_guest_cb cb, void *arg);
/* Takes the guest away; once this returns, cb is not running and never runs again (also
 * when it fails to reach the worker: -ETIMEDOUT, and the guest may still run). Control
 * thread. 0 also when the worker has no guest or is not running. */
int media_worker_guest_remove(unsigned worker);
/* Applies the far end's parameters (copied). SSRC/seq/timestamp stay continuous. */
int media_session_update(struct media_session *s, const struct media_stream_params *p);
/* Relays packets between a and b (both ways). NULL b unbridges a. */
int media_session_bridge(struct media_session *a, struct media_session *b);
/* Plays a locally generated tone toward this leg's far end (NONE stops it). */
int media_session_tone(struct media_session *s, enum media_tone tone);
/* Copies the current statistics. */
void media_session_stats(const struct media_session *s, struct media_stats *out);
/* Stops and frees the session (unbridging its peer). NULL accepted. The pointer is
 * dead on return. */
void media_session_destroy(struct media_session *s);

/* Address to put in SDP c= lines. */
const char *media_advertise_address(void);

/* Sends a DTMF digit toward this leg's far end: RFC 4733 when the leg negotiated
 * telephone-event, else an in-band tone in the audio. Digits queue. 0 or -EINVAL. */
int media_session_dtmf(struct media_session *s, char digit, unsigned duration_ms);

/* ---- Prompts: announcements and music on hold (WAV files) ---- */

struct media_prompt; /* immutable audio, shared (refcounted) */

/* Loads a WAV file (PCM 8/16-bit, mu-law or A-law, mono or stereo, 8-48 kHz) and
 * converts it to every rate VACS uses; encoding per codec is done on first use by the
 * control thread, never on the packet path. On error returns -errno and writes a reason
 * naming the file into err. Control thread. The caller owns one reference. */
int media_prompt_load(const char *path, struct media_prompt **out, char *err, size_t errlen);
struct media_prompt *media_prompt_ref(struct media_prompt *p);
/* NULL accepted. Any thread. */
void media_prompt_unref(struct media_prompt *p);
/* Length in ms. */
unsigned media_prompt_ms(const struct media_prompt *p);

/* Plays p toward this leg's far end, once or looped, instead of whatever the leg was
 * sending (bridged audio, AI audio, tones), which resumes at the end. NULL p stops the
 * current prompt. The session takes its own reference. MEDIA_EV_PLAY_DONE(id) follows
 * when a once-played prompt ended (result 1) or any prompt was stopped (result 0).
 * 0 or -errno (-ENOMEM). Control thread. */
int media_session_play(struct media_session *s, struct media_prompt *p, int loop, uint32_t id);

/* ---- Recording ---- */

/* Records this leg to a new stereo 16-bit WAV at path (left: what the far end sent us,
 * right: what we sent to it), at 8 or 16 kHz following the leg's codec. Written by a
 * writer thread off the packet path; MEDIA_EV_RECORDING follows once the file is closed
 * and synced (after media_session_record_stop or destroy). 0, -EEXIST, -EBUSY (already
 * recording), -errno. Control thread. */
int media_session_record(struct media_session *s, const char *path);
int media_session_record_stop(struct media_session *s);

/* ---- Answering-machine detection ---- */

/* Starts AMD on the audio this leg receives from now (call it on answer). One
 * MEDIA_EV_AMD event follows with the verdict and the ms it took; after a MACHINE verdict
 * whose why is not "beep", one MEDIA_EV_AMD_END when the greeting ended. Control
 * thread. */
int media_session_amd(struct media_session *s);

/* ---- The AI leg: 20 ms frames up, any-size chunks down ---- */

enum media_ai_format {
	MEDIA_AI_NONE = 0,
	MEDIA_AI_MULAW_8K,  /* G.711 mu-law bytes, 160 per 20 ms, silence 0xFF */
	MEDIA_AI_PCM16_16K, /* signed 16-bit little-endian, 640 bytes per 20 ms, silence 0 */
};

/* The AI audio format for a leg codec: PCMU -> mu-law byte pass-through; anything else
 * (PCMA, G.722, Opus, G.729) -> 16 kHz PCM. */
enum media_ai_format media_ai_format_for(enum media_codec leg_codec);
/* Bytes of one 20 ms frame of f (160 or 640), 0 for NONE. */
unsigned media_ai_frame_bytes(enum media_ai_format f);
/* VAPI's name of f: "mulaw" or "pcm_s16le". */
const char *media_ai_format_name(enum media_ai_format f);

/* Called by a media worker at most once per tick when frames were queued for an AI
 * thread (for lws_cancel_service). Must not block. */
typedef void (*media_ai_notify_cb)(void *arg);

struct media_ai_port; /* shared by the session's worker and one AI thread */

/* Connects this leg to an AI thread: from the next tick the worker pushes exactly one
 * frame of format f every 20 ms (silence when the far end sends nothing) and plays what
 * the AI thread writes, re-framed on the leg's clock. The leg is unbridged. The port has
 * two references: the worker's (dropped by media_ai_detach or session destroy) and the
 * caller's (dropped by media_ai_port_release, from the AI thread when it is done).
 * Control thread. 0, -EBUSY (already attached), -ENOMEM. */
int media_ai_attach(struct media_session *s, enum media_ai_format f, media_ai_notify_cb cb,
                    void *arg, struct media_ai_port **out);
/* Stops feeding the port; the leg sends silence until bridged or played to. */
int media_ai_detach(struct media_session *s);
/* Drops the AI thread's reference. NULL accepted. */
void media_ai_port_release(struct media_ai_port *p);

/* The ports of one AI thread that have upstream frames waiting, so that a wake-up costs
 * the AI thread the ports with frames rather than a visit of every call. The AI thread
 * owns one (zeroed storage that outlives every port given to it; members private) and
 * opts a port in with media_ai_port_set_ready. */
struct media_ai_ready {
	_Atomic(struct media_ai_port *) head; /* pushed by workers */
	struct media_ai_port *taken;          /* the AI thread's batch */
};
/* AI thread: from now on the worker queues p on r (r NULL: no more) when a frame follows
 * an empty ring, with `user` (the AI thread's own pointer for the port, read back by
 * media_ai_port_user). */
void media_ai_port_set_ready(struct media_ai_port *p, struct media_ai_ready *r, void *user);
void *media_ai_port_user(const struct media_ai_port *p);
/* AI thread: the next port queued on r, or NULL. The port comes with a reference (drop it
 * with media_ai_port_release once its frames were read); a frame queued after this call
 * queues the port again. */
struct media_ai_port *media_ai_ready_pop(struct media_ai_ready *r);

/* AI thread side; one thread per port. */
/* Takes the oldest upstream frame (media_ai_frame_bytes bytes). 1 taken, 0 none.
 * *rx_us (NULL: not wanted): when the kernel received the RTP packet the frame was made
 * from, CLOCK_REALTIME microseconds; 0 for a frame made on the worker's tick (loss, a
 * late packet, silence). */
int media_ai_read(struct media_ai_port *p, uint8_t *frame, uint64_t *rx_us);
/* Queues downstream audio of any length for playout (copied). 0, or -ENOBUFS when the
 * worker has stalled and the ring is full: what did not fit is dropped and counted. */
int media_ai_write(struct media_ai_port *p, const uint8_t *data, size_t len);
/* Audio queued toward the caller, in ms. What does not fit under the bound
 * (media_ai_bound_ms) is refused; an AI thread pauses reading its socket well before. */
unsigned media_ai_queued_ms(const struct media_ai_port *p);
/* Barge-in: drops everything queued toward the caller; the next frame out is silence.
 * Takes effect at the worker's next tick. */
void media_ai_flush(struct media_ai_port *p);
/* MEDIA_EV_MARK(id) once the audio written so far has been played (result 1) or
 * flushed (result 0). 0 or -ENOBUFS (too many marks pending). */
int media_ai_mark(struct media_ai_port *p, uint32_t id);

struct media_ai_stats {
	uint64_t up_frames, up_dropped; /* toward the AI; dropped: AI thread behind */
	uint64_t down_frames_audio, down_frames_silence;
	uint64_t underruns, overrun_bytes, flushes;
	uint32_t target_ms, depth_ms; /* playout target and current depth */
};
void media_ai_stats(const struct media_ai_port *p, struct media_ai_stats *out);

#endif
