/* Unit tests: RTP/RTCP/RFC 4733 parsers and RFC 3550 receive statistics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/mem.h"
#include "media/media_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static long live_before;

static int leak_setup(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	return 0;
}

static int leak_teardown(void **state)
{
	(void)state;
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

static void test_rtp_build_parse_basic(void **state)
{
	(void)state;
	uint8_t payload[160], buf[256];
	for (unsigned i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)i;
	struct media_rtp_hdr h;
	memset(&h, 0, sizeof(h));
	h.marker = 1;
	h.pt = 0;
	h.seq = 0xfffe;
	h.ts = 0x89abcdef;
	h.ssrc = 0x01020304;
	h.payload_len = 160;
	int len = media_rtp_build(buf, sizeof(buf), &h, NULL, NULL, payload);
	assert_int_equal(len, 172);
	assert_int_equal(buf[0], 0x80);
	assert_int_equal(buf[1], 0x80);

	struct media_rtp_hdr p;
	assert_int_equal(media_rtp_parse(buf, (size_t)len, &p), 0);
	assert_int_equal(p.marker, 1);
	assert_int_equal(p.pt, 0);
	assert_int_equal(p.seq, 0xfffe);
	assert_int_equal(p.ts, 0x89abcdef);
	assert_int_equal(p.ssrc, 0x01020304);
	assert_int_equal(p.cc, 0);
	assert_int_equal(p.has_ext, 0);
	assert_int_equal(p.hdr_len, 12);
	assert_int_equal(p.payload_len, 160);
	assert_int_equal(p.pad_len, 0);
	assert_memory_equal(buf + p.hdr_len, payload, 160);

	/* Too small for the output buffer. */
	assert_int_equal(media_rtp_build(buf, 100, &h, NULL, NULL, payload), -ENOSPC);
}

static void test_rtp_csrc_extension_padding(void **state)
{
	(void)state;
	uint8_t buf[256], payload[20], ext[8] = {0x10, 0xaa, 0, 0, 0x22, 0xbb, 0xcc, 0};
	uint32_t csrc[3] = {0x11111111, 0x22222222, 0x33333333};
	memset(payload, 0x5a, sizeof(payload));
	struct media_rtp_hdr h;
	memset(&h, 0, sizeof(h));
	h.pt = 101;
	h.seq = 7;
	h.ts = 8;
	h.ssrc = 9;
	h.cc = 3;
	h.has_ext = 1;
	h.ext_profile = 0xbede;
	h.ext_len = sizeof(ext);
	h.payload_len = sizeof(payload);
	h.pad_len = 4;
	int len = media_rtp_build(buf, sizeof(buf), &h, csrc, ext, payload);
	assert_int_equal(len, 12 + 12 + 4 + 8 + 20 + 4);
	assert_int_equal(buf[0], 0x80 | 0x20 | 0x10 | 3);
	assert_int_equal(buf[len - 1], 4);

	struct media_rtp_hdr p;
	assert_int_equal(media_rtp_parse(buf, (size_t)len, &p), 0);
	assert_int_equal(p.cc, 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(media_rtp_csrc(buf, i), csrc[i]);
	assert_int_equal(p.has_ext, 1);
	assert_int_equal(p.ext_profile, 0xbede);
	assert_int_equal(p.ext_len, 8);
	assert_memory_equal(buf + 12 + 12 + 4, ext, 8);
	assert_int_equal(p.hdr_len, 12 + 12 + 4 + 8);
	assert_int_equal(p.pad_len, 4);
	assert_int_equal(p.payload_len, 20);
	assert_memory_equal(buf + p.hdr_len, payload, 20);

	/* Extension with zero-length data is valid. */
	h.ext_len = 0;
	h.pad_len = 0;
	len = media_rtp_build(buf, sizeof(buf), &h, csrc, NULL, payload);
	assert_int_equal(media_rtp_parse(buf, (size_t)len, &p), 0);
	assert_int_equal(p.hdr_len, 12 + 12 + 4);
	assert_int_equal(p.payload_len, 20);

	/* Padding only, no payload (allowed: a keep-alive). */
	memset(&h, 0, sizeof(h));
	h.pad_len = 8;
	len = media_rtp_build(buf, sizeof(buf), &h, NULL, NULL, NULL);
	assert_int_equal(len, 20);
	assert_int_equal(media_rtp_parse(buf, (size_t)len, &p), 0);
	assert_int_equal(p.payload_len, 0);
	assert_int_equal(p.pad_len, 8);
}

static void test_rtp_truncated_rejected(void **state)
{
	(void)state;
	uint8_t buf[256], payload[4] = {1, 2, 3, 4}, ext[4] = {0};
	uint32_t csrc[2] = {1, 2};
	struct media_rtp_hdr h, p;
	memset(&h, 0, sizeof(h));
	h.cc = 2;
	h.has_ext = 1;
	h.ext_len = 4;
	h.payload_len = 4;
	int len = media_rtp_build(buf, sizeof(buf), &h, csrc, ext, payload);
	assert_true(len > 0);
	unsigned hdr = 12 + 8 + 4 + 4;
	/* Any cut inside the header (fixed, CSRCs or extension) is rejected. */
	for (unsigned l = 0; l < hdr; l++)
		assert_int_equal(media_rtp_parse(buf, l, &p), -EBADMSG);
	assert_int_equal(media_rtp_parse(buf, hdr, &p), 0);
	assert_int_equal(p.payload_len, 0);

	/* Extension length pointing past the end. */
	buf[12 + 8 + 3] = 50;
	assert_int_equal(media_rtp_parse(buf, (size_t)len, &p), -EBADMSG);
}

static void test_rtp_garbage_rejected(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct media_rtp_hdr p;
	memset(buf, 0, sizeof(buf));

	buf[0] = 0x40; /* version 1 */
	assert_int_equal(media_rtp_parse(buf, 40, &p), -EBADMSG);
	buf[0] = 0xc0; /* version 3 */
	assert_int_equal(media_rtp_parse(buf, 40, &p), -EBADMSG);
	buf[0] = 0x8f; /* 15 CSRCs = 72 bytes, only 40 */
	assert_int_equal(media_rtp_parse(buf, 40, &p), -EBADMSG);
	buf[0] = 0xa0; /* padding with count 0 */
	buf[39] = 0;
	assert_int_equal(media_rtp_parse(buf, 40, &p), -EBADMSG);
	buf[39] = 29; /* padding larger than what follows the header */
	assert_int_equal(media_rtp_parse(buf, 40, &p), -EBADMSG);
	buf[39] = 28; /* exactly everything after the header */
	assert_int_equal(media_rtp_parse(buf, 40, &p), 0);
	assert_int_equal(p.payload_len, 0);
	assert_int_equal(media_rtp_parse(NULL, 0, &p), -EBADMSG);

	/* Random input never crashes, and what is accepted is self-consistent. */
	srand(1234);
	for (unsigned iter = 0; iter < 200000; iter++) {
		size_t len = (size_t)(rand() % (int)sizeof(buf));
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand();
		if (len && (iter & 1))
			buf[0] = (uint8_t)(0x80 | (buf[0] & 0x3f));
		if (media_rtp_parse(buf, len, &p) == 0) {
			assert_true(len >= 12);
			assert_int_equal((size_t)p.hdr_len + p.payload_len + p.pad_len, len);
		}
	}
}

static void test_rtp_rtcp_sr_compound(void **state)
{
	(void)state;
	uint8_t buf[256];
	struct media_rtcp_sr sr = {0x11223344, 0x55667788, 1000, 50, 8000};
	struct media_rtcp_report rb = {0xcafebabe, 64, -3, 0x10005, 123, 0xabcdef01, 0x20000};
	int len = media_rtcp_build(buf, sizeof(buf), 0x01020304, &sr, &rb, "vacs-1", 6);
	assert_true(len > 0);
	assert_int_equal(len % 4, 0);
	assert_int_equal(buf[1], MEDIA_RTCP_SR);
	assert_int_equal(media_is_rtcp(buf, (size_t)len), 1);

	struct media_rtcp_info info;
	assert_int_equal(media_rtcp_parse(buf, (size_t)len, &info), 0);
	assert_int_equal(info.n_packets, 2); /* SR + SDES */
	assert_int_equal(info.has_sr, 1);
	assert_int_equal(info.sender_ssrc, 0x01020304);
	assert_int_equal(info.sr.ntp_sec, 0x11223344);
	assert_int_equal(info.sr.ntp_frac, 0x55667788);
	assert_int_equal(info.sr.rtp_ts, 1000);
	assert_int_equal(info.sr.pkt_count, 50);
	assert_int_equal(info.sr.octet_count, 8000);
	assert_int_equal(info.n_reports, 1);
	assert_int_equal(info.reports[0].ssrc, 0xcafebabe);
	assert_int_equal(info.reports[0].fraction, 64);
	assert_int_equal(info.reports[0].cum_lost, -3);
	assert_int_equal(info.reports[0].ext_max_seq, 0x10005);
	assert_int_equal(info.reports[0].jitter, 123);
	assert_int_equal(info.reports[0].lsr, 0xabcdef01);
	assert_int_equal(info.reports[0].dlsr, 0x20000);

	/* Truncation: only cuts at a packet boundary leave a valid compound. */
	size_t first = 28 + 24;
	for (size_t l = 0; l < (size_t)len; l++) {
		int r = media_rtcp_parse(buf, l, &info);
		if (l == first) {
			assert_int_equal(r, 0);
			assert_int_equal(info.n_packets, 1);
		} else {
			assert_int_equal(r, -EBADMSG);
		}
	}
	/* A length field that overruns. */
	buf[3] = 40;
	assert_int_equal(media_rtcp_parse(buf, (size_t)len, &info), -EBADMSG);
}

static void test_rtp_rtcp_rr_bye_padding(void **state)
{
	(void)state;
	uint8_t buf[256];
	struct media_rtcp_report rb = {7, 0, 7, 100, 80, 0, 0};
	int len = media_rtcp_build(buf, sizeof(buf), 42, NULL, &rb, "x", 1);
	assert_true(len > 0);
	assert_int_equal(buf[1], MEDIA_RTCP_RR);
	/* Append a BYE with padding (the last packet may be padded). */
	uint8_t *b = buf + len;
	b[0] = 0x80 | 0x20 | 1;
	b[1] = MEDIA_RTCP_BYE;
	b[2] = 0;
	b[3] = 2; /* 12 bytes: header, ssrc, 4 bytes padding */
	media_put32(b + 4, 42);
	b[8] = b[9] = b[10] = 0;
	b[11] = 4;
	len += 12;
	struct media_rtcp_info info;
	assert_int_equal(media_rtcp_parse(buf, (size_t)len, &info), 0);
	assert_int_equal(info.n_packets, 3);
	assert_int_equal(info.has_rr, 1);
	assert_int_equal(info.has_sr, 0);
	assert_int_equal(info.has_bye, 1);
	assert_int_equal(info.sender_ssrc, 42);
	assert_int_equal(info.n_reports, 1);
	assert_int_equal(info.reports[0].cum_lost, 7);
	assert_int_equal(info.reports[0].jitter, 80);

	/* Padding on a packet that is not the last is invalid. */
	buf[0] |= 0x20;
	assert_int_equal(media_rtcp_parse(buf, (size_t)len, &info), -EBADMSG);
	buf[0] &= (uint8_t)~0x20;
	/* Report count larger than the packet. */
	buf[0] = 0x80 | 3;
	assert_int_equal(media_rtcp_parse(buf, (size_t)len, &info), -EBADMSG);
	buf[0] = 0x81;
	/* An RTP packet is not RTCP. */
	uint8_t rtp[12] = {0x80, 0, 0, 1};
	assert_int_equal(media_rtcp_parse(rtp, sizeof(rtp), &info), -EBADMSG);
	assert_int_equal(media_is_rtcp(rtp, sizeof(rtp)), 0);
	/* Cumulative loss saturates to 24 bits when built. */
	rb.cum_lost = 0x7fffffff;
	len = media_rtcp_build(buf, sizeof(buf), 42, NULL, &rb, "x", 1);
	assert_int_equal(media_rtcp_parse(buf, (size_t)len, &info), 0);
	assert_int_equal(info.reports[0].cum_lost, 0x7fffff);
	/* Too small a buffer. */
	assert_int_equal(media_rtcp_build(buf, 20, 42, NULL, &rb, "x", 1), -ENOSPC);
}

static void test_rtp_loss_with_gap_and_reorder(void **state)
{
	(void)state;
	/* 65530..65535, 0..2, (3 and 4 lost), 6, 5 (reordered), 7..9: wraps once. */
	static const uint16_t seqs[] = {65530, 65531, 65532, 65533, 65534, 65535, 0,
	                                1,     2,     6,     5,     7,     8,     9};
	struct media_rtp_rxstats s;
	media_rtp_rx_init(&s, 0x1234, seqs[0]);
	for (unsigned i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++)
		assert_int_equal(media_rtp_rx_seq(&s, seqs[i]), 1);
	assert_int_equal(media_rtp_rx_ext_max(&s), 65536u + 9u);
	assert_int_equal(media_rtp_rx_lost(&s), 2);
	/* 2 lost of 16 expected = 32/256. */
	assert_int_equal(media_rtp_rx_fraction(&s), 32);
	/* A duplicate counts as received (RFC 3550: loss may go down). */
	media_rtp_rx_seq(&s, 9);
	assert_int_equal(media_rtp_rx_lost(&s), 1);
	assert_int_equal(media_rtp_rx_fraction(&s), 0);
	/* Interval with 1 of 4 lost. */
	media_rtp_rx_seq(&s, 10);
	media_rtp_rx_seq(&s, 12);
	media_rtp_rx_seq(&s, 13);
	assert_int_equal(media_rtp_rx_fraction(&s), 64);

	/* A big jump is held as a candidate; the next in sequence confirms a restart. */
	assert_int_equal(media_rtp_rx_seq(&s, 30000), 0);
	assert_int_equal(media_rtp_rx_seq(&s, 30001), 1);
	assert_int_equal(media_rtp_rx_ext_max(&s), 30001);
	assert_int_equal(media_rtp_rx_lost(&s), 0);
}

static void test_rtp_jitter_matches_rfc3550(void **state)
{
	(void)state;
	struct media_rtp_rxstats s;
	media_rtp_rx_init(&s, 1, 0);
	/* Constant transit: zero jitter. */
	for (uint32_t i = 0; i < 50; i++)
		media_rtp_rx_jitter(&s, 1000 + i * 160, 777777 + i * 160);
	assert_int_equal(media_rtp_rx_jitter_ts(&s), 0);

	/* Varying delay: compare with the floating-point formula J += (|D| - J) / 16. */
	media_rtp_rx_init(&s, 1, 0);
	double j = 0;
	int32_t prev_transit = 0;
	srand(7);
	for (uint32_t i = 0; i < 500; i++) {
		uint32_t delay = (uint32_t)(rand() % 400); /* up to 50 ms */
		uint32_t ts = 0xfffff000u + i * 160;       /* wraps */
		uint32_t arrival = 5000 + i * 160 + delay;
		media_rtp_rx_jitter(&s, ts, arrival);
		int32_t transit = (int32_t)(arrival - ts);
		if (i > 0) {
			double d = fabs((double)(transit - prev_transit));
			j += (d - j) / 16.0;
		}
		prev_transit = transit;
	}
	double got = media_rtp_rx_jitter_ts(&s);
	assert_true(fabs(got - j) <= 2.0);
	assert_true(got > 50); /* uniform 0-400 gives a mean |D| near 133 */
}

static void test_rtp_rfc4733_event(void **state)
{
	(void)state;
	struct media_dtmf_event ev;
	uint8_t p[4] = {11, 0x80 | 10, 0x03, 0x20};
	assert_int_equal(media_rfc4733_parse(p, 4, &ev), 0);
	assert_int_equal(ev.event, 11);
	assert_int_equal(ev.end, 1);
	assert_int_equal(ev.volume, 10);
	assert_int_equal(ev.duration, 800);
	assert_int_equal(media_rfc4733_digit(ev.event), '#');
	p[1] = 0x40 | 63; /* R bit, not end */
	assert_int_equal(media_rfc4733_parse(p, 4, &ev), 0);
	assert_int_equal(ev.end, 0);
	assert_int_equal(ev.volume, 63);
	assert_int_equal(media_rfc4733_parse(p, 3, &ev), -EBADMSG);
	assert_int_equal(media_rfc4733_digit(0), '0');
	assert_int_equal(media_rfc4733_digit(9), '9');
	assert_int_equal(media_rfc4733_digit(10), '*');
	assert_int_equal(media_rfc4733_digit(12), 'A');
	assert_int_equal(media_rfc4733_digit(15), 'D');
	assert_int_equal(media_rfc4733_digit(16), '\0');
}

#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_rtp_build_parse_basic),
	    T(test_rtp_csrc_extension_padding),
	    T(test_rtp_truncated_rejected),
	    T(test_rtp_garbage_rejected),
	    T(test_rtp_rtcp_sr_compound),
	    T(test_rtp_rtcp_rr_bye_padding),
	    T(test_rtp_loss_with_gap_and_reorder),
	    T(test_rtp_jitter_matches_rfc3550),
	    T(test_rtp_rfc4733_event),
	};
	return cmocka_run_group_tests_name("rtp", tests, NULL, NULL);
}
