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
	const char *address;      /* local IPv4 address to bind RTP on, e.g. "127.0.0.1" */
	const char *advertise;    /* address written in SDP (NULL = address) */
	uint16_t port_min;        /* even, inclusive */
	uint16_t port_max;        /* inclusive */
	unsigned workers;         /* media worker threads (0 = number of CPUs) */
	unsigned rtp_timeout_ms;  /* no RTP on an active stream for this long -> event */
	unsigned hold_timeout_ms; /* same for a stream on hold (0 = never) */
	unsigned max_sessions;    /* sessions per worker, preallocated */
};

enum media_codec {
	MEDIA_CODEC_NONE = 0,
	MEDIA_CODEC_PCMU, /* static PT 0 */
	MEDIA_CODEC_PCMA, /* static PT 8 */
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
	MEDIA_TONE_RINGBACK, /* 440+480 Hz, 2 s on / 4 s off */
};

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
	MEDIA_EV_DTMF,        /* an RFC 4733 event ended */
};

struct media_event {
	enum media_event_type type;
	uint64_t owner; /* the owner id given to media_session_create */
	char digit;     /* '0'-'9', '*', '#', 'A'-'D' */
	uint16_t duration_ms;
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

#endif
