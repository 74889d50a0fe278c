/* Private sharing inside media/: RTP/RTCP/RFC 4733 wire formats, SRTP, G.711, tones. */
#ifndef VACS_MEDIA_MEDIA_INT_H
#define VACS_MEDIA_MEDIA_INT_H

#include "media/media.h"

#include <stddef.h>
#include <stdint.h>

/* Narrowband audio only for now: every codec here runs at 8 kHz, 20 ms frames. */
#define MEDIA_CLOCK_RATE    8000u
#define MEDIA_FRAME_SAMPLES 160u

/* Packet slots: headroom in front, room behind for the SRTP/SRTCP trailer
 * (tag + MKI + SRTCP index), so protect/unprotect work in place. */
#define MEDIA_SLOT_SIZE     2048u
#define MEDIA_SLOT_HEADROOM 64u
#define MEDIA_SLOT_TAILROOM 160u
#define MEDIA_SLOT_MAX_PKT  (MEDIA_SLOT_SIZE - MEDIA_SLOT_HEADROOM - MEDIA_SLOT_TAILROOM)

/* ---- Byte order helpers (network order, unaligned) ---- */

static inline uint16_t media_get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}
static inline uint32_t media_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void media_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void media_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- RTP (RFC 3550 §5.1) ---- */

#define MEDIA_RTP_HDR_MIN 12u

/* A parsed (or to-be-written) RTP header. Offsets/lengths are in bytes. */
struct media_rtp_hdr {
	uint8_t marker;
	uint8_t pt;
	uint16_t seq;
	uint32_t ts;
	uint32_t ssrc;
	uint8_t cc;           /* CSRC count (0-15) */
	uint8_t has_ext;      /* X bit */
	uint16_t ext_profile; /* "defined by profile" field of the extension */
	uint16_t ext_len;     /* extension data bytes (multiple of 4), without its 4-byte head */
	uint16_t hdr_len;     /* fixed header + CSRCs + extension */
	uint16_t payload_len; /* payload bytes, without padding */
	uint8_t pad_len;      /* padding bytes including the count byte (0 = no P bit) */
};

/* Validates and parses an RTP packet: version 2, CSRCs, extension and padding inside len.
 * 0, or -EBADMSG for anything malformed. Never reads beyond buf[len - 1]. */
int media_rtp_parse(const uint8_t *buf, size_t len, struct media_rtp_hdr *h);
/* CSRC number i of a packet that media_rtp_parse accepted. */
uint32_t media_rtp_csrc(const uint8_t *buf, unsigned i);
/* Writes a whole packet: header from h (cc, has_ext, ext_profile, ext_len, payload_len,
 * pad_len are used), csrc[cc], ext[ext_len], payload[payload_len], then padding.
 * Returns the packet length, or -ENOSPC / -EINVAL. */
int media_rtp_build(uint8_t *buf, size_t cap, const struct media_rtp_hdr *h, const uint32_t *csrc,
                    const uint8_t *ext, const uint8_t *payload);

/* RFC 5761 §4: a packet on a muxed port is RTCP when its second byte is 192-223. */
static inline int media_is_rtcp(const uint8_t *buf, size_t len)
{
	return len >= 8 && buf[1] >= 192 && buf[1] <= 223;
}

/* ---- RFC 3550 receive statistics (Appendix A.1, A.3, A.8) ---- */

struct media_rtp_rxstats {
	uint32_t ssrc;
	uint16_t max_seq;
	uint32_t cycles; /* sequence wraps, shifted left by 16 */
	uint32_t base_seq;
	uint32_t bad_seq;
	uint32_t received; /* packets accepted for this source */
	uint32_t expected_prior, received_prior;
	uint32_t transit;   /* last relative transit time, timestamp units */
	uint32_t jitter_q4; /* interarrival jitter, timestamp units * 16 */
	int have_transit;
};

/* Starts statistics for a new source whose first packet has seq. */
void media_rtp_rx_init(struct media_rtp_rxstats *s, uint32_t ssrc, uint16_t seq);
/* Accounts one packet (call for the first one too). Returns 1 when accepted, 0 when it
 * was a large jump (kept as a candidate restart, A.1). */
int media_rtp_rx_seq(struct media_rtp_rxstats *s, uint16_t seq);
/* Updates the jitter with one packet's RTP timestamp and its arrival time, both in
 * timestamp units (A.8). */
void media_rtp_rx_jitter(struct media_rtp_rxstats *s, uint32_t rtp_ts, uint32_t arrival);
/* Extended highest sequence number received. */
uint32_t media_rtp_rx_ext_max(const struct media_rtp_rxstats *s);
/* Cumulative packets lost (expected - received); negative with duplicates. */
int32_t media_rtp_rx_lost(const struct media_rtp_rxstats *s);
/* Interarrival jitter in timestamp units. */
uint32_t media_rtp_rx_jitter_ts(const struct media_rtp_rxstats *s);
/* Fraction lost since the previous call, 8-bit fixed point (A.3); moves the priors. */
uint8_t media_rtp_rx_fraction(struct media_rtp_rxstats *s);

/* ---- RTCP (RFC 3550 §6.4) ---- */

#define MEDIA_RTCP_SR          200
#define MEDIA_RTCP_RR          201
#define MEDIA_RTCP_SDES        202
#define MEDIA_RTCP_BYE         203
#define MEDIA_RTCP_MAX_REPORTS 31

struct media_rtcp_report {
	uint32_t ssrc;    /* the source this block is about */
	uint8_t fraction; /* fraction lost, /256 */
	int32_t cum_lost; /* 24-bit signed, sign-extended */
	uint32_t ext_max_seq;
	uint32_t jitter; /* timestamp units */
	uint32_t lsr;    /* middle 32 bits of the last SR's NTP time */
	uint32_t dlsr;   /* delay since that SR, 1/65536 s */
};

struct media_rtcp_sr {
	uint32_t ntp_sec, ntp_frac;
	uint32_t rtp_ts;
	uint32_t pkt_count, octet_count;
};

/* What a compound RTCP packet said that we use. */
struct media_rtcp_info {
	unsigned n_packets; /* RTCP packets in the compound */
	int has_sr;
	int has_rr;
	int has_bye;
	uint32_t sender_ssrc; /* of the first SR or RR */
	struct media_rtcp_sr sr;
	unsigned n_reports; /* report blocks kept (at most MEDIA_RTCP_MAX_REPORTS) */
	struct media_rtcp_report reports[MEDIA_RTCP_MAX_REPORTS];
};

/* Validates a compound RTCP packet (every part version 2, PT 192-223, lengths add up
 * exactly, padding only on the last part) and collects SR/RR content.
 * 0 or -EBADMSG. */
int media_rtcp_parse(const uint8_t *buf, size_t len, struct media_rtcp_info *info);
/* Writes SR (sr != NULL) or RR from ssrc, with one report block (rb != NULL) and an SDES
 * CNAME chunk. Returns the compound length, or -ENOSPC. */
int media_rtcp_build(uint8_t *buf, size_t cap, uint32_t ssrc, const struct media_rtcp_sr *sr,
                     const struct media_rtcp_report *rb, const char *cname, size_t cname_len);

/* ---- RFC 4733 telephone events ---- */

struct media_dtmf_event {
	uint8_t event;     /* 0-9, 10 '*', 11 '#', 12-15 'A'-'D', others not DTMF */
	uint8_t end;       /* E bit */
	uint8_t volume;    /* -dBm0, 0-63 */
	uint16_t duration; /* timestamp units */
};

/* Parses the first event of a telephone-event payload. 0 or -EBADMSG. */
int media_rfc4733_parse(const uint8_t *payload, size_t len, struct media_dtmf_event *ev);
/* The DTMF character of an event code, or '\0' if it is not a DTMF digit. */
char media_rfc4733_digit(uint8_t event);

/* ---- SRTP/SRTCP (RFC 3711, RFC 7714) on OpenSSL libcrypto, media/srtp.c ---- */

/* SSRCs one context keeps state for (ROC, replay windows, SRTCP index). A further SSRC
 * takes the slot of the least recently used one: fixed size, nothing allocated per packet. */
#define MEDIA_SRTP_STREAMS 4

struct media_srtp; /* keys and per-SSRC state of one direction; opaque outside srtp.c */

/* Creates a context for one direction: outbound protects what we send, inbound checks what
 * we get; like libsrtp's ssrc_any_outbound/ssrc_any_inbound, every SSRC gets its own stream
 * state (an inbound one only once a packet of it authenticated). key holds
 * media_srtp_key_len(suite) bytes (master key then master salt), copied. Allocates; setup
 * time, any thread. The caller owns *out. 0 or -EINVAL/-ENOMEM/-EIO. */
int media_srtp_create(struct media_srtp **out, enum media_srtp_suite suite, const uint8_t *key,
                      int outbound);
/* NULL accepted. Wipes the keys. */
void media_srtp_destroy(struct media_srtp *ctx);
/* In-place transforms; one thread at a time per context (its worker). Never allocate,
 * lock or log. protect needs MEDIA_SLOT_TAILROOM writable bytes after *len; on failure of
 * an unprotect the buffer content is undefined. 0, -EBADMSG (malformed or authentication
 * failed), -EALREADY (replay, or a packet too far behind the window), -EINVAL (protect on
 * an inbound context or unprotect on an outbound one) or -EIO (crypto library failure,
 * SRTCP index exhausted). */
int media_srtp_protect(struct media_srtp *ctx, uint8_t *buf, size_t *len);
int media_srtp_unprotect(struct media_srtp *ctx, uint8_t *buf, size_t *len);
int media_srtp_protect_rtcp(struct media_srtp *ctx, uint8_t *buf, size_t *len);
int media_srtp_unprotect_rtcp(struct media_srtp *ctx, uint8_t *buf, size_t *len);

/* ---- G.711 (table driven; tables are filled before main runs) ---- */

extern uint8_t media_g711_ulaw_enc_tab[16384]; /* by 14-bit linear (pcm >> 2) */
extern uint8_t media_g711_alaw_enc_tab[8192];  /* by 13-bit linear (pcm >> 3) */
extern int16_t media_g711_ulaw_dec_tab[256];
extern int16_t media_g711_alaw_dec_tab[256];
extern uint8_t media_g711_ulaw_to_alaw_tab[256];
extern uint8_t media_g711_alaw_to_ulaw_tab[256];

static inline uint8_t media_g711_ulaw_encode(int16_t pcm)
{
	return media_g711_ulaw_enc_tab[(uint16_t)pcm >> 2];
}
static inline uint8_t media_g711_alaw_encode(int16_t pcm)
{
	return media_g711_alaw_enc_tab[(uint16_t)pcm >> 3];
}
static inline int16_t media_g711_ulaw_decode(uint8_t u)
{
	return media_g711_ulaw_dec_tab[u];
}
static inline int16_t media_g711_alaw_decode(uint8_t a)
{
	return media_g711_alaw_dec_tab[a];
}

/* Encodes/decodes n samples for PCMU or PCMA (anything else is treated as PCMU). */
void media_g711_encode(enum media_codec c, const int16_t *pcm, uint8_t *out, size_t n);
void media_g711_decode(enum media_codec c, const uint8_t *in, int16_t *pcm, size_t n);
/* Converts a payload in place between the two laws (no-op when from == to). */
void media_g711_transcode(enum media_codec from, enum media_codec to, uint8_t *buf, size_t n);

/* ---- Tones (media/tone.c) ---- */

/* Writes n samples of `tone` at `rate` (8000 or 16000) starting at sample position pos
 * (counted from the start of the tone, at that rate): the cadence's silence during the
 * off parts, zeros for NONE. */
void media_tone_pcm(enum media_tone tone, unsigned rate, uint32_t pos, int16_t *out, size_t n);
/* Same, G.711-encoded for codec c (PCMU or PCMA) at 8 kHz. */
void media_tone_frame(enum media_tone tone, enum media_codec c, uint32_t pos, uint8_t *out,
                      size_t n);

/* ---- Test hooks ---- */

/* Overrides the RTCP report interval (0 restores ~5 s). Call before media_init. */
void media_set_rtcp_interval_ms(unsigned ms);

#endif
