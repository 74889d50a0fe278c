/* Unit tests: the media engine on real loopback sockets (relay, SRTP, DTMF, timeouts,
 * tones, RTCP, latching) with a process-wide allocation counter around the relay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"
#include "media/media.h"
#include "media/media_int.h"
#include "tests/unit/media_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

#define WINDOW 32
#define MAGIC  0xa5a5a5a5u

static long live_before;

struct stream {
	uint32_t ssrc;
	uint16_t seq;
	uint32_t ts;
	uint32_t tag;
};

/* What the far end receiving from us has seen. */
struct check {
	int have;
	uint32_t ssrc;
	uint16_t last_seq;
	uint32_t last_ts;
	int seg_valid; /* out_ts - in_ts known for the current forwarded segment */
	uint32_t seg_off;
	unsigned n_tone;  /* tone frames seen */
	unsigned n_fwd;   /* forwarded packets seen */
	unsigned markers; /* forwarded packets with M set */
};

/* An RTP packet whose payload ends with MAGIC, the tag and the input timestamp. */
static size_t make_pkt(uint8_t *buf, struct stream *st, uint8_t pt, size_t plen)
{
	uint8_t payload[200];
	assert_true(plen >= 12 && plen <= sizeof(payload));
	memset(payload, 0x55, plen);
	if (plen == 16) { /* telephone-event shape: event 1, not ended */
		payload[0] = 1;
		payload[1] = 10;
		payload[2] = 0;
		payload[3] = 160;
	}
	media_put32(payload + plen - 12, MAGIC);
	media_put32(payload + plen - 8, st->tag);
	media_put32(payload + plen - 4, st->ts);
	struct media_rtp_hdr h;
	memset(&h, 0, sizeof(h));
	h.pt = pt;
	h.seq = st->seq;
	h.ts = st->ts;
	h.ssrc = st->ssrc;
	h.payload_len = (uint16_t)plen;
	int len = media_rtp_build(buf, 1500, &h, NULL, NULL, payload);
	assert_true(len > 0);
	st->seq++;
	st->ts += 160;
	st->tag++;
	return (size_t)len;
}

/* Continuity of what the far end sees: one SSRC, seq + 1 each time, ts moving forward,
 * and within a forwarded segment a constant ts offset. Returns 1 for a forwarded packet
 * (tag/in_ts filled), 0 for a locally generated one. */
static int check_pkt(struct check *ck, const uint8_t *buf, size_t len, uint32_t *tag)
{
	struct media_rtp_hdr h;
	assert_int_equal(media_rtp_parse(buf, len, &h), 0);
	if (ck->have) {
		assert_int_equal(h.ssrc, ck->ssrc);
		assert_int_equal(h.seq, (uint16_t)(ck->last_seq + 1u));
		assert_true((int32_t)(h.ts - ck->last_ts) >= 0);
	}
	const uint8_t *pl = buf + h.hdr_len;
	int fwd = h.payload_len >= 12 && media_get32(pl + h.payload_len - 12) == MAGIC;
	if (fwd) {
		uint32_t in_ts = media_get32(pl + h.payload_len - 4);
		*tag = media_get32(pl + h.payload_len - 8);
		if (!ck->seg_valid) {
			ck->seg_valid = 1;
			ck->seg_off = h.ts - in_ts;
			if (ck->have)
				assert_true(h.ts - ck->last_ts >= 160u);
		} else {
			assert_int_equal(h.ts - in_ts, ck->seg_off);
		}
		ck->n_fwd++;
		ck->markers += h.marker;
	} else {
		if (ck->have && ck->n_tone > 0 && !ck->seg_valid)
			assert_int_equal(h.ts - ck->last_ts, 160);
		ck->n_tone++;
		ck->seg_valid = 0; /* forwarded audio after this starts a new segment */
	}
	ck->have = 1;
	ck->ssrc = h.ssrc;
	ck->last_seq = h.seq;
	ck->last_ts = h.ts;
	return fwd;
}

struct relay_opts {
	uint8_t pt_in, pt_out;
	uint8_t pt_dtmf_in, pt_dtmf_out; /* every 100th packet is a telephone-event */
	struct media_srtp *protect;      /* far sender's SRTP, or NULL */
	struct media_srtp *unprotect;    /* far receiver's SRTP, or NULL */
};

/* Sends count packets from `from` to our port, windowed so nothing overflows, and
 * checks each one at `at`: order, PT mapping, continuity. */
static void relay(const struct far *from, uint16_t to_port, const struct far *at, struct stream *st,
                  struct check *ck, unsigned count, const struct relay_opts *o)
{
	uint8_t buf[2048];
	uint32_t first_tag = st->tag;
	unsigned sent = 0, got = 0;
	while (got < count) {
		while (sent < count && sent - got < WINDOW) {
			int dtmf = o->pt_dtmf_in && (st->tag % 100u) == 99u;
			size_t len =
			    make_pkt(buf, st, dtmf ? o->pt_dtmf_in : o->pt_in, dtmf ? 16 : 160);
			if (o->protect)
				assert_int_equal(media_srtp_protect(o->protect, buf, &len), 0);
			far_send(from, to_port, buf, len);
			sent++;
		}
		int r = far_recv_rtp(at, buf, sizeof(buf) - MEDIA_SLOT_TAILROOM, 2000);
		assert_true(r > 0);
		size_t len = (size_t)r;
		if (o->unprotect)
			assert_int_equal(media_srtp_unprotect(o->unprotect, buf, &len), 0);
		uint32_t tag = 0;
		if (!check_pkt(ck, buf, len, &tag))
			continue; /* a tone frame still in flight */
		assert_int_equal(tag, first_tag + got);
		int dtmf = o->pt_dtmf_in && (tag % 100u) == 99u;
		assert_int_equal(buf[1] & 0x7f, dtmf ? o->pt_dtmf_out : o->pt_out);
		got++;
	}
}

static void media_up(unsigned workers, unsigned rtp_timeout_ms, unsigned hold_timeout_ms,
                     unsigned nports)
{
	struct media_config cfg;
	if (nports != 6) /* the port test picks its own range before squatting */
		pick_ports(nports);
	memset(&cfg, 0, sizeof(cfg));
	cfg.address = LOCALHOST;
	cfg.port_min = port_base;
	cfg.port_max = (uint16_t)(port_base + nports - 1u);
	cfg.workers = workers;
	cfg.rtp_timeout_ms = rtp_timeout_ms;
	cfg.hold_timeout_ms = hold_timeout_ms;
	cfg.max_sessions = 64;
	assert_int_equal(media_init(&cfg), 0);
	assert_true(media_event_fd() >= 0);
	assert_string_equal(media_advertise_address(), LOCALHOST);
}

static void media_down(void)
{
	media_close();
	metric_registry_close();
}

static int leak_setup(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	return 0;
}

static int leak_teardown(void **state)
{
	(void)state;
	/* After a failed assertion the test did not get to clean up. */
	media_close();
	metric_registry_close();
	media_set_rtcp_interval_ms(0);
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

/* Polls a session's stats until pred holds (bounded). */
#define WAIT_STATS(s, st, pred)                                                                    \
	do {                                                                                       \
		uint64_t end_ = now_ms() + 2000u;                                                  \
		for (;;) {                                                                         \
			media_session_stats((s), &(st));                                           \
			if ((pred) || now_ms() >= end_)                                            \
				break;                                                             \
			sleep_ms(5);                                                               \
		}                                                                                  \
		assert_true(pred);                                                                 \
	} while (0)

/* ---- tests ---- */

static void test_media_g711_tables(void **state)
{
	(void)state;
	for (unsigned c = 0; c < 256; c++) {
		if (c != 0x7f) /* µ-law "negative zero" encodes back as 0xff */
			assert_int_equal(media_g711_ulaw_encode(media_g711_ulaw_decode((uint8_t)c)),
			                 c);
		assert_int_equal(media_g711_alaw_encode(media_g711_alaw_decode((uint8_t)c)), c);
	}
	assert_int_equal(media_g711_ulaw_encode(0), 0xff);
	assert_int_equal(media_g711_alaw_encode(0), 0xd5);
	assert_int_equal(media_g711_ulaw_decode(0x00), -32124);
	assert_int_equal(media_g711_ulaw_decode(0x80), 32124);
	assert_int_equal(media_g711_alaw_decode(0xaa), 32256);
	/* A full-scale sine survives each law with G.711-class SNR (> 35 dB). */
	int16_t pcm[800], back[800];
	uint8_t enc[800];
	for (enum media_codec c = MEDIA_CODEC_PCMU; c <= MEDIA_CODEC_PCMA; c++) {
		double sig = 0, err = 0;
		for (unsigned i = 0; i < 800; i++)
			pcm[i] = (int16_t)lrint(20000.0 * sin(2 * M_PI * 1004.0 * i / 8000.0));
		media_g711_encode(c, pcm, enc, 800);
		media_g711_decode(c, enc, back, 800);
		for (unsigned i = 0; i < 800; i++) {
			sig += (double)pcm[i] * pcm[i];
			err += ((double)pcm[i] - back[i]) * ((double)pcm[i] - back[i]);
		}
		assert_true(10 * log10(sig / err) > 35.0);
	}
	/* Law conversion keeps the sound. */
	uint8_t u = media_g711_ulaw_encode(1000);
	uint8_t buf[1] = {u};
	media_g711_transcode(MEDIA_CODEC_PCMU, MEDIA_CODEC_PCMA, buf, 1);
	assert_true(abs(media_g711_alaw_decode(buf[0]) - media_g711_ulaw_decode(u)) <= 32);
}

static void test_media_port_allocation(void **state)
{
	(void)state;
	/* Three pairs: base, base+2, base+4. base+2 is taken by someone else. */
	pick_ports(6);
	struct far squat;
	squat.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = addr_of((uint16_t)(port_base + 2u));
	assert_int_equal(bind(squat.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	media_up(2, 0, 0, 6);

	struct media_session *s1, *s2, *s3, *s4;
	uint16_t p1, p2, p3;
	assert_int_equal(media_session_create(1, NULL, &s1, &p1), 0);
	assert_int_equal(p1, port_base);
	assert_int_equal(media_session_create(2, s1, &s2, &p2), 0);
	assert_int_equal(p2, port_base + 4);
	assert_int_equal(media_session_create(3, NULL, &s3, &p3), -EADDRINUSE);
	/* Bridging needs one worker: s4 lands on the other, less loaded worker. */
	far_close(&squat);
	assert_int_equal(media_session_create(4, NULL, &s4, &p3), 0);
	assert_int_equal(p3, port_base + 2); /* wrapped around */
	assert_int_equal(media_session_bridge(s1, s4), -EINVAL);
	assert_int_equal(media_session_bridge(s1, s1), -EINVAL);
	assert_int_equal(media_session_bridge(s1, s2), 0);
	assert_int_equal(metric_lookup("vacs_media_sessions"), 3);

	/* The port comes back once the worker closed it. */
	media_session_destroy(s2);
	int err = -1;
	uint64_t end = now_ms() + 2000;
	while (err != 0 && now_ms() < end) {
		err = media_session_create(5, s1, &s3, &p3);
		if (err)
			sleep_ms(2);
	}
	assert_int_equal(err, 0);
	assert_int_equal(p3, port_base + 4);
	media_session_destroy(s3);
	media_session_destroy(s4);
	media_session_destroy(s1);
	media_session_destroy(NULL);
	end = now_ms() + 2000;
	while (metric_lookup("vacs_media_sessions") != 0 && now_ms() < end)
		sleep_ms(2);
	assert_int_equal(metric_lookup("vacs_media_sessions"), 0);
	media_down();
}

static void test_media_relay_10k_no_alloc(void **state)
{
	(void)state;
	media_up(2, 0, 0, 16);
	struct far fa, fb;
	far_open(&fa);
	far_open(&fb);
	struct media_session *a, *b;
	uint16_t pa, pb;
	assert_int_equal(media_session_create(100, NULL, &a, &pa), 0);
	assert_int_equal(media_session_create(200, a, &b, &pb), 0);
	struct media_stream_params lpa = leg(&fa, MEDIA_CODEC_PCMU, 0, 101, 13);
	struct media_stream_params lpb = leg(&fb, MEDIA_CODEC_PCMU, 0, 96, -1);
	assert_int_equal(media_session_update(a, &lpa), 0);
	assert_int_equal(media_session_update(b, &lpb), 0);
	assert_int_equal(media_session_bridge(a, b), 0);

	struct stream st = {0x11223344, 60000, 123456, 0};
	struct check ck;
	memset(&ck, 0, sizeof(ck));
	struct relay_opts o = {.pt_in = 0, .pt_out = 0, .pt_dtmf_in = 101, .pt_dtmf_out = 96};

	/* Warm-up, then every allocation in the process is counted. */
	relay(&fa, pa, &fb, &st, &ck, 500, &o);
	unsigned long before = alloc_count();
	relay(&fa, pa, &fb, &st, &ck, 10000, &o);
	unsigned long after = alloc_count();
	print_message("# allocations while relaying 10000 packets: %lu\n", after - before);
	assert_int_equal(after - before, 0);
	assert_int_equal(ck.markers, 1); /* only the first packet started a segment */

	/* A new phone after a re-INVITE: new SSRC, seq and ts; the output stays continuous. */
	struct stream st2 = {0xdeadbeef, 7, 999, st.tag};
	ck.seg_valid = 0;
	sleep_ms(40);
	relay(&fa, pa, &fb, &st2, &ck, 200, &o);
	assert_int_equal(ck.markers, 2);
	assert_true(ck.seg_off != 0);

	struct media_stats sa, sb;
	media_session_stats(a, &sa);
	media_session_stats(b, &sb);
	assert_int_equal(sa.pkts_in, 10700);
	assert_int_equal(sb.pkts_out, 10700);
	assert_true(sb.bytes_out > 10000u * 172u);
	assert_int_equal(sa.pkts_dropped, 0);
	assert_int_equal(sa.lost, 0);

	/* Drops: CN (B has none), unknown PT, malformed; none reaches far-B. */
	uint8_t buf[2048];
	for (unsigned i = 0; i < 3; i++) {
		size_t len = make_pkt(buf, &st2, 13, 20);
		far_send(&fa, pa, buf, len);
	}
	for (unsigned i = 0; i < 2; i++) {
		size_t len = make_pkt(buf, &st2, 18, 20);
		far_send(&fa, pa, buf, len);
	}
	memset(buf, 0x41, 40); /* version 1 */
	far_send(&fa, pa, buf, 40);
	far_send(&fa, pa, buf, 5);
	WAIT_STATS(a, sa, sa.pkts_dropped == 7);
	assert_int_equal(far_recv_rtp(&fb, buf, sizeof(buf), 100), -1);
	uint64_t end = now_ms() + 1000;
	while (metric_lookup("vacs_media_dropped_total{reason=\"unknown_pt\"}") < 5 &&
	       now_ms() < end)
		sleep_ms(5);
	assert_int_equal(metric_lookup("vacs_media_dropped_total{reason=\"unknown_pt\"}"), 5);
	assert_int_equal(metric_lookup("vacs_media_dropped_total{reason=\"malformed\"}"), 2);
	assert_true(metric_lookup("vacs_media_packets_total{dir=\"out\"}") >= 10700);

	/* The reverse direction works too (B -> A). */
	struct stream rs = {0x5555, 1, 1, 0};
	struct check rck;
	memset(&rck, 0, sizeof(rck));
	struct relay_opts ro = {.pt_in = 0, .pt_out = 0};
	relay(&fb, pb, &fa, &rs, &rck, 300, &ro);

	/* Destroying A while far-B still sends: B drops (no peer), nothing crashes. */
	media_session_destroy(a);
	sleep_ms(30);
	media_session_stats(b, &sb);
	uint64_t d0 = sb.pkts_dropped;
	for (unsigned i = 0; i < 5; i++) {
		size_t len = make_pkt(buf, &rs, 0, 160);
		far_send(&fb, pb, buf, len);
	}
	WAIT_STATS(b, sb, sb.pkts_dropped == d0 + 5);
	media_session_destroy(b);
	far_close(&fa);
	far_close(&fb);
	media_down();
}

/* SRTP on one leg: the far end of that leg speaks SRTP, the other plain RTP. */
static void srtp_one_leg(enum media_srtp_suite suite, int on_a)
{
	media_up(1, 0, 0, 16);
	struct far fa, fb;
	far_open(&fa);
	far_open(&fb);
	struct media_session *a, *b;
	uint16_t pa, pb;
	assert_int_equal(media_session_create(1, NULL, &a, &pa), 0);
	assert_int_equal(media_session_create(2, a, &b, &pb), 0);
	struct media_stream_params lpa = leg(&fa, MEDIA_CODEC_PCMU, 0, 101, -1);
	struct media_stream_params lpb = leg(&fb, MEDIA_CODEC_PCMU, 0, 101, -1);
	struct media_stream_params *sl = on_a ? &lpa : &lpb;
	sl->srtp_rx.suite = suite; /* the far end's key: it protects with it */
	sl->srtp_tx.suite = suite; /* our key: the far end unprotects with it */
	assert_int_equal(media_srtp_keygen(suite, sl->srtp_rx.key), 0);
	assert_int_equal(media_srtp_keygen(suite, sl->srtp_tx.key), 0);
	assert_int_equal(media_session_update(a, &lpa), 0);
	assert_int_equal(media_session_update(b, &lpb), 0);
	assert_int_equal(media_session_bridge(a, b), 0);

	struct media_srtp *far_tx = NULL, *far_rx = NULL;
	assert_int_equal(media_srtp_create(&far_tx, suite, sl->srtp_rx.key, 1), 0);
	assert_int_equal(media_srtp_create(&far_rx, suite, sl->srtp_tx.key, 0), 0);

	const struct far *sfar = on_a ? &fa : &fb, *pfar = on_a ? &fb : &fa;
	uint16_t sport = on_a ? pa : pb, pport = on_a ? pb : pa;
	struct media_session *ss = on_a ? a : b;

	/* SRTP side -> plain side. */
	struct stream st = {0xabc, 10, 1000, 0};
	struct check ck;
	memset(&ck, 0, sizeof(ck));
	struct relay_opts o = {
	    .pt_in = 0, .pt_out = 0, .pt_dtmf_in = 101, .pt_dtmf_out = 101, .protect = far_tx};
	relay(sfar, sport, pfar, &st, &ck, 300, &o);

	/* Plain side -> SRTP side: the far end must authenticate and decrypt. */
	struct stream rs = {0xdef, 20, 2000, 0};
	struct check rck;
	memset(&rck, 0, sizeof(rck));
	struct relay_opts ro = {.pt_in = 0, .pt_out = 0, .unprotect = far_rx};
	relay(pfar, pport, sfar, &rs, &rck, 300, &ro);

	/* Tampered or plain packets on the SRTP leg are dropped and counted. */
	struct media_stats stt;
	media_session_stats(ss, &stt);
	uint64_t d0 = stt.pkts_dropped;
	uint8_t buf[2048];
	struct stream bad = st; /* dropped packets must not open a gap in st */
	for (unsigned i = 0; i < 4; i++) {
		size_t len = make_pkt(buf, &bad, 0, 160);
		assert_int_equal(media_srtp_protect(far_tx, buf, &len), 0);
		buf[30] ^= 0x10;
		far_send(sfar, sport, buf, len);
	}
	size_t len = make_pkt(buf, &bad, 0, 160);
	far_send(sfar, sport, buf, len); /* no tag at all */
	WAIT_STATS(ss, stt, stt.pkts_dropped == d0 + 5);
	assert_int_equal(far_recv_rtp(pfar, buf, sizeof(buf), 100), -1);
	uint64_t end = now_ms() + 1000;
	while (metric_lookup("vacs_media_dropped_total{reason=\"srtp_auth\"}") < 5 &&
	       now_ms() < end)
		sleep_ms(5);
	assert_int_equal(metric_lookup("vacs_media_dropped_total{reason=\"srtp_auth\"}"), 5);

	/* Same keys again (a re-INVITE without rekey) keep the contexts: still flows. */
	assert_int_equal(media_session_update(ss, sl), 0);
	relay(sfar, sport, pfar, &st, &ck, 50, &o);

	/* Nothing allocates per SRTP packet: 10,000 each way, the relay unprotecting in one
	 * direction and protecting in the other (the test side does the opposite). */
	unsigned long before = alloc_count();
	relay(sfar, sport, pfar, &st, &ck, 10000, &o);
	relay(pfar, pport, sfar, &rs, &rck, 10000, &ro);
	unsigned long allocs = alloc_count() - before;
	print_message("# %s: allocations while relaying 2 x 10000 SRTP packets: %lu\n",
	              media_srtp_suite_name(suite), allocs);
	assert_int_equal(allocs, 0);

	media_srtp_destroy(far_tx);
	media_srtp_destroy(far_rx);
	media_session_destroy(a);
	media_session_destroy(b);
	far_close(&fa);
	far_close(&fb);
	media_down();
}

static void test_media_srtp_leg_a_only(void **state)
{
	(void)state;
	srtp_one_leg(MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80, 1);
}

static void test_media_srtp_leg_b_only(void **state)
{
	(void)state;
	srtp_one_leg(MEDIA_SRTP_AEAD_AES_256_GCM, 0);
}

static void test_media_srtp_both_legs_and_rekey(void **state)
{
	(void)state;
	media_up(1, 0, 0, 16);
	struct far fa, fb;
	far_open(&fa);
	far_open(&fb);
	struct media_session *a, *b;
	uint16_t pa, pb;
	assert_int_equal(media_session_create(1, NULL, &a, &pa), 0);
	assert_int_equal(media_session_create(2, a, &b, &pb), 0);
	struct media_stream_params lpa = leg(&fa, MEDIA_CODEC_PCMU, 0, -1, -1);
	struct media_stream_params lpb = leg(&fb, MEDIA_CODEC_PCMU, 0, -1, -1);
	lpa.srtp_rx.suite = lpa.srtp_tx.suite = MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32;
	lpb.srtp_rx.suite = lpb.srtp_tx.suite = MEDIA_SRTP_AEAD_AES_128_GCM;
	media_srtp_keygen(lpa.srtp_rx.suite, lpa.srtp_rx.key);
	media_srtp_keygen(lpa.srtp_tx.suite, lpa.srtp_tx.key);
	media_srtp_keygen(lpb.srtp_rx.suite, lpb.srtp_rx.key);
	media_srtp_keygen(lpb.srtp_tx.suite, lpb.srtp_tx.key);
	assert_int_equal(media_session_update(a, &lpa), 0);
	assert_int_equal(media_session_update(b, &lpb), 0);
	assert_int_equal(media_session_bridge(a, b), 0);

	struct media_srtp *a_tx, *b_rx;
	assert_int_equal(media_srtp_create(&a_tx, lpa.srtp_rx.suite, lpa.srtp_rx.key, 1), 0);
	assert_int_equal(media_srtp_create(&b_rx, lpb.srtp_tx.suite, lpb.srtp_tx.key, 0), 0);
	struct stream st = {0x77, 1, 1, 0};
	struct check ck;
	memset(&ck, 0, sizeof(ck));
	struct relay_opts o = {.pt_in = 0, .pt_out = 0, .protect = a_tx, .unprotect = b_rx};
	relay(&fa, pa, &fb, &st, &ck, 300, &o);

	/* Far-A rekeys (new crypto line in a re-INVITE). */
	media_srtp_destroy(a_tx);
	media_srtp_keygen(lpa.srtp_rx.suite, lpa.srtp_rx.key);
	assert_int_equal(media_session_update(a, &lpa), 0);
	assert_int_equal(media_srtp_create(&a_tx, lpa.srtp_rx.suite, lpa.srtp_rx.key, 1), 0);
	o.protect = a_tx;
	sleep_ms(30); /* the update is a command: let it land before the new key is used */
	relay(&fa, pa, &fb, &st, &ck, 300, &o);

	media_srtp_destroy(a_tx);
	media_srtp_destroy(b_rx);
	media_session_destroy(b);
	media_session_destroy(a);
	far_close(&fa);
	far_close(&fb);
	media_down();
}

static void send_event(const struct far *f, uint16_t port, struct stream *st, uint8_t event,
                       uint16_t duration, int end)
{
	uint8_t buf[64], pl[4] = {event, (uint8_t)((end ? 0x80 : 0) | 10), (uint8_t)(duration >> 8),
	                          (uint8_t)duration};
	struct media_rtp_hdr h;
	memset(&h, 0, sizeof(h));
	h.pt = 101;
	h.seq = st->seq++;
	h.ts = st->ts; /* the event's start: constant over the event */
	h.ssrc = st->ssrc;
	h.payload_len = 4;
	int len = media_rtp_build(buf, sizeof(buf), &h, NULL, NULL, pl);
	far_send(f, port, buf, (size_t)len);
}

static void test_media_dtmf_event(void **state)
{
	(void)state;
	media_up(1, 0, 0, 16);
	struct far fa;
	far_open(&fa);
	struct media_session *a;
	uint16_t pa;
	assert_int_equal(media_session_create(0x1234567890ull, NULL, &a, &pa), 0);
	struct media_stream_params lpa = leg(&fa, MEDIA_CODEC_PCMU, 0, 101, -1);
	assert_int_equal(media_session_update(a, &lpa), 0);
	sleep_ms(20);

	struct stream st = {0x99, 100, 8000, 0};
	for (uint16_t d = 160; d <= 640; d += 160)
		send_event(&fa, pa, &st, 5, d, 0);
	for (unsigned i = 0; i < 3; i++) /* the end packet, sent three times */
		send_event(&fa, pa, &st, 5, 800, 1);

	struct media_event ev;
	assert_int_equal(wait_event(&ev, 2000), 1);
	assert_int_equal(ev.type, MEDIA_EV_DTMF);
	assert_int_equal(ev.owner, 0x1234567890ull);
	assert_int_equal(ev.digit, '5');
	assert_int_equal(ev.duration_ms, 100);
	assert_int_equal(wait_event(&ev, 150), 0); /* no duplicate */

	st.ts += 2000;
	send_event(&fa, pa, &st, 11, 400, 1);
	send_event(&fa, pa, &st, 11, 400, 1);
	assert_int_equal(wait_event(&ev, 2000), 1);
	assert_int_equal(ev.digit, '#');
	assert_int_equal(ev.duration_ms, 50);
	assert_int_equal(wait_event(&ev, 100), 0);

	struct media_stats s;
	WAIT_STATS(a, s, s.dtmf_events == 2);
	media_session_destroy(a);
	far_close(&fa);
	media_down();
}

static void test_media_rtp_timeout(void **state)
{
	(void)state;
	media_up(1, 150, 0, 16);
	struct far fa;
	far_open(&fa);
	struct media_session *a, *h;
	uint16_t pa, ph;
	assert_int_equal(media_session_create(77, NULL, &a, &pa), 0);
	assert_int_equal(media_session_create(78, NULL, &h, &ph), 0);
	struct media_stream_params lpa = leg(&fa, MEDIA_CODEC_PCMU, 0, -1, -1);
	assert_int_equal(media_session_update(a, &lpa), 0);
	struct media_stream_params lph = leg(&fa, MEDIA_CODEC_PCMU, 0, -1, -1);
	lph.recv = 0; /* on hold, hold_timeout_ms 0: never times out */
	assert_int_equal(media_session_update(h, &lph), 0);

	struct stream st = {0x42, 1, 1, 0};
	uint8_t buf[256];
	for (unsigned i = 0; i < 5; i++) {
		size_t len = make_pkt(buf, &st, 0, 160);
		far_send(&fa, pa, buf, len);
		sleep_ms(20);
	}
	uint64_t t0 = now_ms();
	struct media_event ev;
	assert_int_equal(wait_event(&ev, 2000), 1);
	assert_int_equal(ev.type, MEDIA_EV_TIMEOUT);
	assert_int_equal(ev.owner, 77);
	assert_true(now_ms() - t0 >= 100);
	assert_int_equal(wait_event(&ev, 400), 0); /* once */

	/* Traffic resumes, then stops again: one more event. */
	size_t len = make_pkt(buf, &st, 0, 160);
	far_send(&fa, pa, buf, len);
	assert_int_equal(wait_event(&ev, 2000), 1);
	assert_int_equal(ev.type, MEDIA_EV_TIMEOUT);
	assert_int_equal(ev.owner, 77);

	media_session_destroy(a);
	media_session_destroy(h);
	far_close(&fa);
	media_down();
}

static double goertzel(const int16_t *x, size_t n, double f)
{
	double k = 2.0 * cos(2.0 * M_PI * f / 8000.0), s1 = 0, s2 = 0;
	for (size_t i = 0; i < n; i++) {
		double s = x[i] + k * s1 - s2;
		s2 = s1;
		s1 = s;
	}
	return s1 * s1 + s2 * s2 - k * s1 * s2;
}

static void test_media_ringback_tone(void **state)
{
	(void)state;
	media_up(1, 0, 0, 16);
	struct far fu, fa;
	far_open(&fu);
	far_open(&fa);
	struct media_session *u, *al;
	uint16_t pu, pal;
	assert_int_equal(media_session_create(1, NULL, &u, &pu), 0);
	assert_int_equal(media_session_create(2, NULL, &al, &pal), 0);
	struct media_stream_params lu = leg(&fu, MEDIA_CODEC_PCMU, 0, -1, -1);
	struct media_stream_params la = leg(&fa, MEDIA_CODEC_PCMA, 8, -1, -1);
	assert_int_equal(media_session_update(u, &lu), 0);
	assert_int_equal(media_session_update(al, &la), 0);
	assert_int_equal(media_session_tone(u, MEDIA_TONE_RINGBACK), 0);
	assert_int_equal(media_session_tone(al, MEDIA_TONE_RINGBACK), 0);

	const struct far *fars[2] = {&fu, &fa};
	const enum media_codec codecs[2] = {MEDIA_CODEC_PCMU, MEDIA_CODEC_PCMA};
	static int16_t pcm[2][8000 * 2];
	unsigned n[2] = {0, 0}, frames[2] = {0, 0};
	struct check ck[2];
	memset(ck, 0, sizeof(ck));
	uint8_t buf[2048];
	/* One second of the "on" part (the cadence is 2 s on, 4 s off). */
	uint64_t start = 0, end = now_ms() + 3000;
	while (now_ms() < end) {
		for (unsigned k = 0; k < 2; k++) {
			int r = far_recv_rtp(fars[k], buf, sizeof(buf), 5);
			if (r <= 0)
				continue;
			if (!start) {
				start = now_ms();
				end = start + 1000;
			}
			struct media_rtp_hdr h;
			uint32_t tag;
			assert_int_equal(check_pkt(&ck[k], buf, (size_t)r, &tag), 0);
			assert_int_equal(media_rtp_parse(buf, (size_t)r, &h), 0);
			assert_int_equal(h.pt, k == 0 ? 0 : 8);
			assert_int_equal(h.payload_len, 160);
			assert_int_equal(h.marker, frames[k] == 0);
			if (n[k] + 160 <= 8000 * 2) {
				media_g711_decode(codecs[k], buf + h.hdr_len, pcm[k] + n[k], 160);
				n[k] += 160;
			}
			frames[k]++;
		}
	}
	for (unsigned k = 0; k < 2; k++) {
		print_message("# ringback %s: %u frames in 1 s\n", k ? "PCMA" : "PCMU", frames[k]);
		assert_true(frames[k] >= 45 && frames[k] <= 56);
		double e440 = goertzel(pcm[k], n[k], 440), e480 = goertzel(pcm[k], n[k], 480);
		double e1000 = goertzel(pcm[k], n[k], 1000), e350 = goertzel(pcm[k], n[k], 350);
		double e620 = goertzel(pcm[k], n[k], 620);
		assert_true(e440 > 1000.0 * e1000);
		assert_true(e480 > 1000.0 * e1000);
		assert_true(e440 > 100.0 * e350);
		assert_true(e480 > 100.0 * e620);
	}
	struct media_stats s;
	media_session_stats(u, &s);
	assert_true(s.pkts_out >= 45);

	/* Tone off: the stream stops. */
	assert_int_equal(media_session_tone(u, MEDIA_TONE_NONE), 0);
	sleep_ms(60);
	far_drain(&fu);
	assert_int_equal(far_recv_rtp(&fu, buf, sizeof(buf), 100), -1);

	media_session_destroy(u);
	media_session_destroy(al);
	far_close(&fu);
	far_close(&fa);
	media_down();
}

static void test_media_tone_continuity(void **state)
{
	(void)state;
	media_up(1, 0, 0, 16);
	struct far fa, fb;
	far_open(&fa);
	far_open(&fb);
	struct media_session *a, *b;
	uint16_t pa, pb;
	assert_int_equal(media_session_create(1, NULL, &a, &pa), 0);
	assert_int_equal(media_session_create(2, a, &b, &pb), 0);
	struct media_stream_params lpa = leg(&fa, MEDIA_CODEC_PCMU, 0, -1, -1);
	struct media_stream_params lpb = leg(&fb, MEDIA_CODEC_PCMU, 0, -1, -1);
	assert_int_equal(media_session_update(a, &lpa), 0);
	assert_int_equal(media_session_update(b, &lpb), 0);
	assert_int_equal(media_session_bridge(a, b), 0);

	struct stream st = {0x1, 500, 5000, 0};
	struct check ck;
	memset(&ck, 0, sizeof(ck));
	struct relay_opts o = {.pt_in = 0, .pt_out = 0};
	relay(&fa, pa, &fb, &st, &ck, 100, &o);

	/* Ringback toward B: forwarded audio is held back while it plays. */
	assert_int_equal(media_session_tone(b, MEDIA_TONE_RINGBACK), 0);
	uint8_t buf[2048];
	unsigned tone = 0;
	uint64_t end = now_ms() + 300;
	while (now_ms() < end) {
		size_t len = make_pkt(buf, &st, 0, 160);
		far_send(&fa, pa, buf, len);
		int r;
		while ((r = far_recv_rtp(&fb, buf, sizeof(buf), 10)) > 0) {
			uint32_t tag;
			if (check_pkt(&ck, buf, (size_t)r, &tag) == 0)
				tone++;
			else
				assert_int_equal(tone, 0); /* only before the tone started */
		}
	}
	assert_true(tone >= 10);

	/* Tone off: forwarding resumes with seq + 1 and a later timestamp. */
	assert_int_equal(media_session_tone(b, MEDIA_TONE_NONE), 0);
	sleep_ms(30);
	unsigned markers = ck.markers;
	relay(&fa, pa, &fb, &st, &ck, 100, &o);
	assert_int_equal(ck.markers, markers + 1);

	media_session_destroy(a);
	media_session_destroy(b);
	far_close(&fa);
	far_close(&fb);
	media_down();
}

static void test_media_transcode_pcmu_pcma(void **state)
{
	(void)state;
	media_up(1, 0, 0, 16);
	struct far fa, fb;
	far_open(&fa);
	far_open(&fb);
	struct media_session *a, *b;
	uint16_t pa, pb;
	assert_int_equal(media_session_create(1, NULL, &a, &pa), 0);
	assert_int_equal(media_session_create(2, a, &b, &pb), 0);
	struct media_stream_params lpa = leg(&fa, MEDIA_CODEC_PCMU, 0, -1, -1);
	struct media_stream_params lpb = leg(&fb, MEDIA_CODEC_PCMA, 8, -1, -1);
	assert_int_equal(media_session_update(a, &lpa), 0);
	assert_int_equal(media_session_update(b, &lpb), 0);
	assert_int_equal(media_session_bridge(a, b), 0);

	uint8_t pl[160], buf[2048];
	for (unsigned i = 0; i < 160; i++)
		pl[i] = (uint8_t)(i + 40);
	for (uint16_t seq = 0; seq < 20; seq++) {
		struct media_rtp_hdr h;
		memset(&h, 0, sizeof(h));
		h.seq = seq;
		h.ts = 160u * seq;
		h.ssrc = 3;
		h.payload_len = 160;
		int len = media_rtp_build(buf, sizeof(buf), &h, NULL, NULL, pl);
		far_send(&fa, pa, buf, (size_t)len);
		int r = far_recv_rtp(&fb, buf, sizeof(buf), 2000);
		assert_int_equal(r, 172);
		assert_int_equal(media_rtp_parse(buf, (size_t)r, &h), 0);
		assert_int_equal(h.pt, 8);
		for (unsigned i = 0; i < 160; i++) {
			int16_t want = media_g711_ulaw_decode(pl[i]);
			int16_t got = media_g711_alaw_decode(buf[12 + i]);
			assert_true(abs(want - got) <= abs(want) / 16 + 16);
		}
	}
	media_session_destroy(a);
	media_session_destroy(b);
	far_close(&fa);
	far_close(&fb);
	media_down();
}

static void test_media_rtcp_reports(void **state)
{
	(void)state;
	media_set_rtcp_interval_ms(150);
	media_up(1, 0, 0, 16);
	struct far fa, fa_rtcp, fb;
	far_open(&fa);
	far_open(&fa_rtcp);
	far_open(&fb);
	struct media_session *a, *b;
	uint16_t pa, pb;
	assert_int_equal(media_session_create(1, NULL, &a, &pa), 0);
	assert_int_equal(media_session_create(2, a, &b, &pb), 0);
	struct media_stream_params lpa = leg(&fa, MEDIA_CODEC_PCMU, 0, -1, -1);
	lpa.remote_rtcp = addr_of(fa_rtcp.port);
	struct media_stream_params lpb = leg(&fb, MEDIA_CODEC_PCMU, 0, -1, -1);
	lpb.rtcp_mux = 1;
	assert_int_equal(media_session_update(a, &lpa), 0);
	assert_int_equal(media_session_update(b, &lpb), 0);
	assert_int_equal(media_session_bridge(a, b), 0);

	struct stream st = {0x5150, 40, 4000, 0};
	struct check ck;
	memset(&ck, 0, sizeof(ck));
	struct relay_opts o = {.pt_in = 0, .pt_out = 0};
	relay(&fa, pa, &fb, &st, &ck, 50, &o);
	uint16_t last_in_seq = (uint16_t)(st.seq - 1u);

	/* Far-B reports on B's stream, muxed on B's RTP port. */
	uint8_t buf[2048];
	struct media_rtcp_report rb = {ck.ssrc, 20, 7, 1234, 80, 0, 0};
	int len = media_rtcp_build(buf, sizeof(buf), 0xfb, NULL, &rb, "far-b", 5);
	far_send(&fb, pb, buf, (size_t)len);
	struct media_stats s;
	WAIT_STATS(b, s, s.remote_lost == 7 && s.remote_jitter_ms == 10 && s.rtcp_in == 1);
	/* RTCP is terminated: far-A's RTP socket got nothing. */
	assert_int_equal(far_recv(&fa, buf, sizeof(buf), 50), -1);

	/* B sends SRs (it sent RTP) on the muxed port. */
	struct media_rtcp_info info;
	int got_sr = 0;
	uint64_t end = now_ms() + 2000;
	while (!got_sr && now_ms() < end) {
		int r = far_recv(&fb, buf, sizeof(buf), 100);
		if (r > 0 && media_is_rtcp(buf, (size_t)r)) {
			assert_int_equal(media_rtcp_parse(buf, (size_t)r, &info), 0);
			if (info.has_sr) {
				assert_int_equal(info.sender_ssrc, ck.ssrc);
				assert_true(info.sr.pkt_count <= 50);
				/* An SR sent during the relay covers fewer packets. */
				got_sr = info.sr.pkt_count == 50;
				if (got_sr)
					assert_int_equal(info.sr.octet_count, 50 * 160);
			}
		}
	}
	assert_true(got_sr);

	/* A receives only: it sends RRs about far-A's stream to far-A's RTCP port. */
	int got_rr = 0;
	end = now_ms() + 2000;
	while (!got_rr && now_ms() < end) {
		int r = far_recv(&fa_rtcp, buf, sizeof(buf), 100);
		if (r <= 0)
			continue;
		assert_int_equal(media_rtcp_parse(buf, (size_t)r, &info), 0);
		assert_int_equal(info.has_sr, 0);
		assert_int_equal(info.has_rr, 1);
		assert_int_equal(info.n_reports, 1);
		assert_int_equal(info.reports[0].ssrc, 0x5150);
		assert_int_equal(info.reports[0].cum_lost, 0);
		got_rr = info.reports[0].ext_max_seq == last_in_seq;
	}
	assert_true(got_rr);
	WAIT_STATS(a, s, s.rtcp_out >= 1);

	media_session_destroy(a);
	media_session_destroy(b);
	far_close(&fa);
	far_close(&fa_rtcp);
	far_close(&fb);
	media_down();
}

static void test_media_latch(void **state)
{
	(void)state;
	media_up(1, 0, 0, 16);
	struct far fa, fa2, fb;
	far_open(&fa);
	far_open(&fa2);
	far_open(&fb);
	struct media_session *a, *b;
	uint16_t pa, pb;
	assert_int_equal(media_session_create(1, NULL, &a, &pa), 0);
	assert_int_equal(media_session_create(2, a, &b, &pb), 0);
	struct media_stream_params lpa = leg(NULL, MEDIA_CODEC_PCMU, 0, -1, -1);
	lpa.latch = 1; /* address unknown (behind NAT) */
	struct media_stream_params lpb = leg(&fb, MEDIA_CODEC_PCMU, 0, -1, -1);
	assert_int_equal(media_session_update(a, &lpa), 0);
	assert_int_equal(media_session_update(b, &lpb), 0);
	assert_int_equal(media_session_bridge(a, b), 0);

	/* Nothing to send to yet: dropped. */
	uint8_t buf[2048];
	struct stream bs = {0xb, 1, 1, 0};
	size_t len = make_pkt(buf, &bs, 0, 160);
	far_send(&fb, pb, buf, len);
	struct media_stats s;
	WAIT_STATS(b, s, s.pkts_dropped == 1);

	/* Far-A speaks first: A latches onto it. */
	struct stream as = {0xa, 1, 1, 0};
	struct check ck;
	memset(&ck, 0, sizeof(ck));
	struct relay_opts o = {.pt_in = 0, .pt_out = 0};
	relay(&fa, pa, &fb, &as, &ck, 10, &o);
	struct check rck;
	memset(&rck, 0, sizeof(rck));
	relay(&fb, pb, &fa, &bs, &rck, 10, &o);

	/* Far-A moves (new NAT binding): A follows. */
	relay(&fa2, pa, &fb, &as, &ck, 10, &o);
	relay(&fb, pb, &fa2, &bs, &rck, 10, &o);
	assert_int_equal(far_recv(&fa, buf, sizeof(buf), 50), -1);

	media_session_destroy(a);
	media_session_destroy(b);
	far_close(&fa);
	far_close(&fa2);
	far_close(&fb);
	media_down();
}

#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

int main(void)
{
	/* TAP lines must not interleave with log lines on a shared output. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct log_config lc = {.level = LOG_WARN, .format = LOG_FMT_TEXT, .path = NULL};
	log_init(&lc);
	const struct CMUnitTest tests[] = {
	    T(test_media_g711_tables),
	    T(test_media_port_allocation),
	    T(test_media_relay_10k_no_alloc),
	    T(test_media_srtp_leg_a_only),
	    T(test_media_srtp_leg_b_only),
	    T(test_media_srtp_both_legs_and_rekey),
	    T(test_media_dtmf_event),
	    T(test_media_rtp_timeout),
	    T(test_media_ringback_tone),
	    T(test_media_tone_continuity),
	    T(test_media_transcode_pcmu_pcma),
	    T(test_media_rtcp_reports),
	    T(test_media_latch),
	};
	return cmocka_run_group_tests_name("media", tests, NULL, NULL);
}
