/* Unit tests: SDES suites, key generation, SRTP/SRTCP round trips, and interop with
 * libsrtp2 (both directions, every suite), allocation-free transforms, per-packet cost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define TEST_CUSTOM_LEAK /* libsrtp2 is set up and shut down around each test */
#include "tests/unit/test_alloc.h"

#include "core/mem.h"
#include "media/media_int.h"

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <srtp2/srtp.h>

static long live_before;

static int leak_setup(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	return srtp_init() == srtp_err_status_ok ? 0 : -1;
}

static int leak_teardown(void **state)
{
	(void)state;
	srtp_shutdown();
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

static const enum media_srtp_suite all_suites[] = {
    MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80,
    MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32,
    MEDIA_SRTP_AEAD_AES_128_GCM,
    MEDIA_SRTP_AEAD_AES_256_GCM,
};

static size_t rtp_tag(enum media_srtp_suite s)
{
	switch (s) {
	case MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32:
		return 4;
	case MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80:
		return 10;
	default:
		return 16;
	}
}

static size_t rtcp_trailer(enum media_srtp_suite s)
{
	/* E flag + 31-bit index, then the tag: 80-bit HMAC for both AES-CM suites. */
	return 4 + (s == MEDIA_SRTP_AEAD_AES_128_GCM || s == MEDIA_SRTP_AEAD_AES_256_GCM ? 16 : 10);
}

static size_t make_rtp(uint8_t *buf, uint16_t seq, uint32_t ssrc)
{
	uint8_t payload[160];
	for (unsigned i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7 + seq);
	struct media_rtp_hdr h;
	memset(&h, 0, sizeof(h));
	h.seq = seq;
	h.ts = 160u * seq;
	h.ssrc = ssrc;
	h.payload_len = sizeof(payload);
	return (size_t)media_rtp_build(buf, MEDIA_SLOT_MAX_PKT, &h, NULL, NULL, payload);
}

static void test_srtp_suite_names(void **state)
{
	(void)state;
	for (unsigned i = 0; i < 4; i++) {
		const char *n = media_srtp_suite_name(all_suites[i]);
		assert_non_null(n);
		assert_int_equal(media_srtp_suite_parse(n), all_suites[i]);
	}
	assert_string_equal(media_srtp_suite_name(MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32),
	                    "AES_CM_128_HMAC_SHA1_32");
	assert_null(media_srtp_suite_name(MEDIA_SRTP_NONE));
	assert_int_equal(media_srtp_suite_parse("F8_128_HMAC_SHA1_80"), MEDIA_SRTP_NONE);
	assert_int_equal(media_srtp_suite_parse(NULL), MEDIA_SRTP_NONE);
	assert_int_equal(media_srtp_key_len(MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80), 30);
	assert_int_equal(media_srtp_key_len(MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32), 30);
	assert_int_equal(media_srtp_key_len(MEDIA_SRTP_AEAD_AES_128_GCM), 28);
	assert_int_equal(media_srtp_key_len(MEDIA_SRTP_AEAD_AES_256_GCM), 44);
	assert_int_equal(media_srtp_key_len(MEDIA_SRTP_NONE), 0);
}

static void test_srtp_keygen_random(void **state)
{
	(void)state;
	uint8_t a[MEDIA_SRTP_MAX_KEY], b[MEDIA_SRTP_MAX_KEY], zero[MEDIA_SRTP_MAX_KEY];
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	memset(zero, 0, sizeof(zero));
	assert_int_equal(media_srtp_keygen(MEDIA_SRTP_AEAD_AES_256_GCM, a), 0);
	assert_int_equal(media_srtp_keygen(MEDIA_SRTP_AEAD_AES_256_GCM, b), 0);
	assert_memory_not_equal(a, b, 44);
	assert_memory_not_equal(a, zero, 44);
	/* Only key_len bytes are written. */
	assert_memory_equal(a + 44, zero, 2);
	assert_int_equal(media_srtp_keygen(MEDIA_SRTP_NONE, a), -EINVAL);
}

static void roundtrip(enum media_srtp_suite suite)
{
	uint8_t key[MEDIA_SRTP_MAX_KEY];
	struct media_srtp *tx = NULL, *rx = NULL;
	assert_int_equal(media_srtp_keygen(suite, key), 0);
	assert_int_equal(media_srtp_create(&tx, suite, key, 1), 0);
	assert_int_equal(media_srtp_create(&rx, suite, key, 0), 0);

	uint8_t buf[MEDIA_SLOT_MAX_PKT + MEDIA_SLOT_TAILROOM], plain[MEDIA_SLOT_MAX_PKT];
	for (uint16_t seq = 100; seq < 120; seq++) {
		size_t len = make_rtp(buf, seq, 0xabcdef01);
		size_t plen = len;
		memcpy(plain, buf, len);
		assert_int_equal(media_srtp_protect(tx, buf, &len), 0);
		assert_int_equal(len, plen + rtp_tag(suite));
		assert_memory_equal(buf, plain, 12); /* header stays clear */
		assert_memory_not_equal(buf + 12, plain + 12, 160);
		if (seq == 110) {
			/* Tampering anywhere (header, payload or tag) fails authentication. */
			size_t spots[3] = {2, 40, len - 1};
			for (unsigned i = 0; i < 3; i++) {
				uint8_t t[sizeof(buf)];
				size_t tl = len;
				memcpy(t, buf, len);
				t[spots[i]] ^= 0x01;
				assert_int_equal(media_srtp_unprotect(rx, t, &tl), -EBADMSG);
			}
		}
		assert_int_equal(media_srtp_unprotect(rx, buf, &len), 0);
		assert_int_equal(len, plen);
		assert_memory_equal(buf, plain, plen);
		if (seq == 111) {
			/* A replay of an accepted packet is refused. */
			size_t rl = plen;
			memcpy(buf, plain, plen);
			assert_int_equal(media_srtp_protect(tx, buf, &rl), 0);
			assert_int_equal(media_srtp_unprotect(rx, buf, &rl), -EALREADY);
		}
	}

	/* RTCP: an SR compound. */
	struct media_rtcp_sr sr = {1, 2, 3, 4, 5};
	struct media_rtcp_report rb = {9, 0, 1, 2, 3, 4, 5};
	for (unsigned i = 0; i < 3; i++) {
		int r = media_rtcp_build(buf, MEDIA_SLOT_MAX_PKT, 0xabcdef01, &sr, &rb, "vacs", 4);
		assert_true(r > 0);
		size_t len = (size_t)r, plen = len;
		memcpy(plain, buf, len);
		assert_int_equal(media_srtp_protect_rtcp(tx, buf, &len), 0);
		assert_int_equal(len, plen + rtcp_trailer(suite));
		if (i == 1) {
			uint8_t t[sizeof(buf)];
			size_t tl = len;
			memcpy(t, buf, len);
			t[20] ^= 0x80;
			assert_int_equal(media_srtp_unprotect_rtcp(rx, t, &tl), -EBADMSG);
		}
		assert_int_equal(media_srtp_unprotect_rtcp(rx, buf, &len), 0);
		assert_int_equal(len, plen);
		assert_memory_equal(buf, plain, plen);
		struct media_rtcp_info info;
		assert_int_equal(media_rtcp_parse(buf, len, &info), 0);
		assert_int_equal(info.sender_ssrc, 0xabcdef01);
	}

	/* The wrong key never authenticates. */
	uint8_t other[MEDIA_SRTP_MAX_KEY];
	struct media_srtp *bad = NULL;
	assert_int_equal(media_srtp_keygen(suite, other), 0);
	assert_int_equal(media_srtp_create(&bad, suite, other, 0), 0);
	size_t len = make_rtp(buf, 500, 0xabcdef01);
	assert_int_equal(media_srtp_protect(tx, buf, &len), 0);
	assert_int_equal(media_srtp_unprotect(bad, buf, &len), -EBADMSG);

	media_srtp_destroy(bad);
	media_srtp_destroy(tx);
	media_srtp_destroy(rx);
	media_srtp_destroy(NULL);
}

static void test_srtp_aes_cm_128_sha1_80_roundtrip(void **state)
{
	(void)state;
	roundtrip(MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80);
}

static void test_srtp_aes_cm_128_sha1_32_roundtrip(void **state)
{
	(void)state;
	/* 4-byte RTP tag, but 10-byte SRTCP tag (RFC 4568): checked inside. */
	roundtrip(MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32);
}

static void test_srtp_aead_aes_128_gcm_roundtrip(void **state)
{
	(void)state;
	roundtrip(MEDIA_SRTP_AEAD_AES_128_GCM);
}

static void test_srtp_aead_aes_256_gcm_roundtrip(void **state)
{
	(void)state;
	roundtrip(MEDIA_SRTP_AEAD_AES_256_GCM);
}

/* ---- Interop with libsrtp2 ---- */

#define BUFSZ (MEDIA_SLOT_MAX_PKT + MEDIA_SLOT_TAILROOM)

static srtp_t lib_create(enum media_srtp_suite s, const uint8_t *key, int outbound,
                         int rtcp_auth_only)
{
	srtp_policy_t pol;
	unsigned char k[SRTP_MAX_KEY_LEN];
	srtp_t ctx = NULL;

	memset(&pol, 0, sizeof(pol));
	switch (s) {
	case MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80:
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtcp);
		break;
	case MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32:
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&pol.rtp);
		srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtcp);
		break;
	case MEDIA_SRTP_AEAD_AES_128_GCM:
		srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol.rtp);
		srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol.rtcp);
		break;
	default:
		srtp_crypto_policy_set_aes_gcm_256_16_auth(&pol.rtp);
		srtp_crypto_policy_set_aes_gcm_256_16_auth(&pol.rtcp);
		break;
	}
	if (rtcp_auth_only)
		pol.rtcp.sec_serv = sec_serv_auth;
	memset(k, 0, sizeof(k));
	memcpy(k, key, media_srtp_key_len(s));
	pol.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
	pol.key = k;
	pol.allow_repeat_tx = 1;
	assert_int_equal(srtp_create(&ctx, &pol), srtp_err_status_ok);
	return ctx;
}

/* kind 0: plain; 1: two CSRCs; 2: a header extension; 3: CSRCs, extension and padding. */
static size_t make_rtp_kind(uint8_t *buf, uint16_t seq, uint32_t ssrc, unsigned kind)
{
	uint8_t payload[160], ext[8] = {0x10, 0xaa, 0x21, 0xbb, 0xcc, 0, 0, 0};
	uint32_t csrc[2] = {0x01020304, 0x05060708};
	for (unsigned i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 13 + seq);
	struct media_rtp_hdr h;
	memset(&h, 0, sizeof(h));
	h.pt = 0;
	h.seq = seq;
	h.ts = 160u * seq;
	h.ssrc = ssrc;
	h.payload_len = sizeof(payload);
	if (kind & 1)
		h.cc = 2;
	if (kind & 2) {
		h.has_ext = 1;
		h.ext_profile = 0xbede;
		h.ext_len = sizeof(ext);
	}
	if (kind == 3)
		h.pad_len = 4;
	int r = media_rtp_build(buf, MEDIA_SLOT_MAX_PKT, &h, csrc, ext, payload);
	assert_true(r > 0);
	return (size_t)r;
}

static size_t make_rtcp(uint8_t *buf, uint32_t ssrc, uint32_t n)
{
	struct media_rtcp_sr sr = {n, 2, 3, 4, 5};
	struct media_rtcp_report rb = {9, 0, 1, 2, 3, 4, 5};
	int r = media_rtcp_build(buf, MEDIA_SLOT_MAX_PKT, ssrc, &sr, &rb, "vacs-interop", 12);
	assert_true(r > 0);
	return (size_t)r;
}

static int lib_unprotect(srtp_t c, uint8_t *buf, size_t *len, int rtcp)
{
	int l = (int)*len;
	srtp_err_status_t st = rtcp ? srtp_unprotect_rtcp(c, buf, &l) : srtp_unprotect(c, buf, &l);
	*len = (size_t)l;
	return (int)st;
}

static void lib_protect(srtp_t c, uint8_t *buf, size_t *len, int rtcp)
{
	int l = (int)*len;
	srtp_err_status_t st = rtcp ? srtp_protect_rtcp(c, buf, &l) : srtp_protect(c, buf, &l);
	assert_int_equal(st, srtp_err_status_ok);
	*len = (size_t)l;
}

struct interop {
	enum media_srtp_suite suite;
	struct media_srtp *our_tx, *our_rx;
	srtp_t lib_rx;  /* takes what our_tx protects */
	srtp_t lib_tx;  /* what our_rx takes */
	srtp_t twin_tx; /* same key as our_tx: must produce the same bytes */
};

/* One RTP packet each way; checks the tag size, identical output to libsrtp's, and
 * (when `extra`) tampering and replay on both receivers. */
static void interop_rtp(struct interop *t, uint16_t seq, uint32_t ssrc, unsigned kind, int extra)
{
	uint8_t plain[BUFSZ], a[BUFSZ], b[BUFSZ];
	size_t plen = make_rtp_kind(plain, seq, ssrc, kind), alen = plen, blen = plen;

	/* Ours -> libsrtp2. */
	memcpy(a, plain, plen);
	memcpy(b, plain, plen);
	assert_int_equal(media_srtp_protect(t->our_tx, a, &alen), 0);
	assert_int_equal(alen, plen + rtp_tag(t->suite));
	lib_protect(t->twin_tx, b, &blen, 0);
	assert_int_equal(blen, alen);
	assert_memory_equal(a, b, alen);
	if (extra) {
		uint8_t c[BUFSZ];
		size_t clen = alen;
		memcpy(c, a, alen);
		c[alen / 2] ^= 0x04;
		assert_int_equal(lib_unprotect(t->lib_rx, c, &clen, 0), srtp_err_status_auth_fail);
	}
	memcpy(b, a, alen);
	blen = alen;
	assert_int_equal(lib_unprotect(t->lib_rx, a, &alen, 0), srtp_err_status_ok);
	assert_int_equal(alen, plen);
	assert_memory_equal(a, plain, plen);
	if (extra)
		assert_int_equal(lib_unprotect(t->lib_rx, b, &blen, 0),
		                 srtp_err_status_replay_fail);

	/* libsrtp2 -> ours. */
	memcpy(a, plain, plen);
	alen = plen;
	lib_protect(t->lib_tx, a, &alen, 0);
	if (extra) {
		/* PT, timestamp, SSRC, payload, tag. (A changed seq may hit the replay check
		 * first: -EALREADY, as in libsrtp2.) */
		size_t spots[5] = {1, 5, 9, alen / 2, alen - 1};
		for (unsigned i = 0; i < 5; i++) {
			uint8_t c[BUFSZ];
			size_t clen = alen;
			memcpy(c, a, alen);
			c[spots[i]] ^= 0x01;
			assert_int_equal(media_srtp_unprotect(t->our_rx, c, &clen), -EBADMSG);
		}
	}
	memcpy(b, a, alen);
	blen = alen;
	assert_int_equal(media_srtp_unprotect(t->our_rx, a, &alen), 0);
	assert_int_equal(alen, plen);
	assert_memory_equal(a, plain, plen);
	if (extra)
		assert_int_equal(media_srtp_unprotect(t->our_rx, b, &blen), -EALREADY);
}

static void interop_rtcp(struct interop *t, uint32_t ssrc, uint32_t n, uint32_t want_index)
{
	uint8_t plain[BUFSZ], a[BUFSZ], b[BUFSZ];
	size_t plen = make_rtcp(plain, ssrc, n), alen = plen, blen;

	/* Ours -> libsrtp2: E set, index counts from 0 per SSRC, 80-bit or GCM tag. */
	memcpy(a, plain, plen);
	assert_int_equal(media_srtp_protect_rtcp(t->our_tx, a, &alen), 0);
	assert_int_equal(alen, plen + rtcp_trailer(t->suite));
	size_t at = rtp_tag(t->suite) == 16 ? alen - 4 : plen;
	assert_int_equal(media_get32(a + at), 0x80000000u | want_index);
	assert_memory_not_equal(a + 8, plain + 8, plen - 8);
	uint8_t c[BUFSZ];
	size_t clen = alen;
	memcpy(c, a, alen);
	c[12] ^= 0x20;
	assert_int_equal(lib_unprotect(t->lib_rx, c, &clen, 1), srtp_err_status_auth_fail);
	memcpy(b, a, alen);
	blen = alen;
	assert_int_equal(lib_unprotect(t->lib_rx, a, &alen, 1), srtp_err_status_ok);
	assert_int_equal(alen, plen);
	assert_memory_equal(a, plain, plen);
	assert_int_equal(lib_unprotect(t->lib_rx, b, &blen, 1), srtp_err_status_replay_fail);

	/* libsrtp2 -> ours. */
	memcpy(a, plain, plen);
	alen = plen;
	lib_protect(t->lib_tx, a, &alen, 1);
	assert_int_equal(alen, plen + rtcp_trailer(t->suite));
	/* PT, payload, last tag byte, the E|index word (GCM: tag, then E|index). */
	int gcm = rtp_tag(t->suite) == 16;
	size_t spots[4] = {1, 12, gcm ? alen - 5 : alen - 1, gcm ? alen - 4 : alen - 14};
	for (unsigned i = 0; i < 4; i++) {
		clen = alen;
		memcpy(c, a, alen);
		c[spots[i]] ^= 0x01;
		assert_int_equal(media_srtp_unprotect_rtcp(t->our_rx, c, &clen), -EBADMSG);
	}
	memcpy(b, a, alen);
	blen = alen;
	assert_int_equal(media_srtp_unprotect_rtcp(t->our_rx, a, &alen), 0);
	assert_int_equal(alen, plen);
	assert_memory_equal(a, plain, plen);
	assert_int_equal(media_srtp_unprotect_rtcp(t->our_rx, b, &blen), -EALREADY);
}

static void interop(enum media_srtp_suite suite)
{
	uint8_t k1[MEDIA_SRTP_MAX_KEY], k2[MEDIA_SRTP_MAX_KEY];
	struct interop t;
	memset(&t, 0, sizeof(t));
	t.suite = suite;
	assert_int_equal(media_srtp_keygen(suite, k1), 0);
	assert_int_equal(media_srtp_keygen(suite, k2), 0);
	assert_int_equal(media_srtp_create(&t.our_tx, suite, k1, 1), 0);
	assert_int_equal(media_srtp_create(&t.our_rx, suite, k2, 0), 0);
	t.lib_rx = lib_create(suite, k1, 0, 0);
	t.twin_tx = lib_create(suite, k1, 1, 0);
	t.lib_tx = lib_create(suite, k2, 1, 0);

	/* SSRC A across the ROC rollover, every header shape; SSRC B; A again (its ROC kept). */
	const uint32_t A = 0x11223344, B = 0xcafef00d;
	unsigned n = 0;
	for (uint32_t s = 65520; s < 65536 + 16; s++, n++)
		interop_rtp(&t, (uint16_t)s, A, n % 4, s == 65535 || s == 65536 || n % 7 == 0);
	for (uint16_t s = 3000; s < 3010; s++, n++)
		interop_rtp(&t, s, B, n % 4, s == 3000);
	for (uint16_t s = 16; s < 24; s++, n++)
		interop_rtp(&t, s, A, n % 4, s == 20);

	for (uint32_t i = 0; i < 3; i++) {
		interop_rtcp(&t, A, i, i);
		interop_rtcp(&t, B, i, i);
	}

	/* Reordering across a rollover: libsrtp2 sends in order, we get it shuffled; then the
	 * other way round. Every packet arrives, each exactly once. */
	const uint32_t C = 0x0badc0de;
	static const uint16_t seqs[6] = {65533, 65534, 65535, 0, 1, 2};
	static const unsigned order[6] = {0, 3, 2, 4, 1, 5};
	uint8_t pk[6][BUFSZ], plain[6][BUFSZ];
	size_t pl[6], plen[6];
	for (unsigned i = 0; i < 6; i++) {
		plen[i] = pl[i] = make_rtp_kind(plain[i], seqs[i], C, i % 4);
		memcpy(pk[i], plain[i], pl[i]);
		lib_protect(t.lib_tx, pk[i], &pl[i], 0);
	}
	for (unsigned j = 0; j < 6; j++) {
		unsigned i = order[j];
		assert_int_equal(media_srtp_unprotect(t.our_rx, pk[i], &pl[i]), 0);
		assert_memory_equal(pk[i], plain[i], plen[i]);
	}
	for (unsigned i = 0; i < 6; i++) {
		pl[i] = plen[i];
		memcpy(pk[i], plain[i], pl[i]);
		assert_int_equal(media_srtp_protect(t.our_tx, pk[i], &pl[i]), 0);
	}
	for (unsigned j = 0; j < 6; j++) {
		unsigned i = order[j];
		assert_int_equal(lib_unprotect(t.lib_rx, pk[i], &pl[i], 0), srtp_err_status_ok);
		assert_memory_equal(pk[i], plain[i], plen[i]);
	}

	/* A packet further behind than the replay window is refused. */
	const uint32_t D = 0x00d00d00;
	uint8_t old[BUFSZ], cur[BUFSZ];
	size_t old_len = make_rtp_kind(old, 5000, D, 0), cur_len = make_rtp_kind(cur, 5200, D, 0);
	lib_protect(t.lib_tx, old, &old_len, 0);
	lib_protect(t.lib_tx, cur, &cur_len, 0);
	assert_int_equal(media_srtp_unprotect(t.our_rx, cur, &cur_len), 0);
	assert_int_equal(media_srtp_unprotect(t.our_rx, old, &old_len), -EALREADY);

	/* SRTCP without the E bit (authentication only) from libsrtp2 is taken as is. A new
	 * libsrtp context restarts the index, so a new SSRC (B's indices would be replays). */
	srtp_t auth_only = lib_create(suite, k2, 1, 1);
	uint8_t rc[BUFSZ], rplain[BUFSZ];
	size_t rplen = make_rtcp(rplain, 0xe0e0e0e0, 77), rlen = rplen;
	memcpy(rc, rplain, rplen);
	lib_protect(auth_only, rc, &rlen, 1);
	assert_memory_equal(rc + 8, rplain + 8, rplen - 8); /* not encrypted */
	size_t eat = rtp_tag(suite) == 16 ? rlen - 4 : rplen;
	assert_int_equal(rc[eat] & 0x80, 0);
	uint8_t rt[BUFSZ];
	size_t rtl = rlen;
	memcpy(rt, rc, rlen);
	rt[20] ^= 1;
	assert_int_equal(media_srtp_unprotect_rtcp(t.our_rx, rt, &rtl), -EBADMSG);
	assert_int_equal(media_srtp_unprotect_rtcp(t.our_rx, rc, &rlen), 0);
	assert_int_equal(rlen, rplen);
	assert_memory_equal(rc, rplain, rplen);
	srtp_dealloc(auth_only);

	srtp_dealloc(t.lib_rx);
	srtp_dealloc(t.lib_tx);
	srtp_dealloc(t.twin_tx);
	media_srtp_destroy(t.our_tx);
	media_srtp_destroy(t.our_rx);
}

static void test_srtp_interop_aes_cm_128_sha1_80(void **state)
{
	(void)state;
	interop(MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80);
}

static void test_srtp_interop_aes_cm_128_sha1_32(void **state)
{
	(void)state;
	interop(MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32);
}

static void test_srtp_interop_aead_aes_128_gcm(void **state)
{
	(void)state;
	interop(MEDIA_SRTP_AEAD_AES_128_GCM);
}

static void test_srtp_interop_aead_aes_256_gcm(void **state)
{
	(void)state;
	interop(MEDIA_SRTP_AEAD_AES_256_GCM);
}

/* The stream table is fixed: a fifth SSRC replaces the least recently used one. The four
 * kept still refuse replays; the evicted one starts over (its old packets look new). */
static void test_srtp_ssrc_table(void **state)
{
	(void)state;
	const enum media_srtp_suite s = MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80;
	uint8_t key[MEDIA_SRTP_MAX_KEY], pk[MEDIA_SRTP_STREAMS + 1][BUFSZ], t[BUFSZ];
	size_t pl[MEDIA_SRTP_STREAMS + 1];
	struct media_srtp *tx, *rx;
	assert_int_equal(media_srtp_keygen(s, key), 0);
	assert_int_equal(media_srtp_create(&tx, s, key, 1), 0);
	assert_int_equal(media_srtp_create(&rx, s, key, 0), 0);
	for (unsigned i = 0; i <= MEDIA_SRTP_STREAMS; i++) {
		pl[i] = make_rtp_kind(pk[i], (uint16_t)(100 + i), 1000 + i, 0);
		assert_int_equal(media_srtp_protect(tx, pk[i], &pl[i]), 0);
		size_t l = pl[i];
		memcpy(t, pk[i], l);
		assert_int_equal(media_srtp_unprotect(rx, t, &l), 0);
	}
	for (unsigned i = 1; i <= MEDIA_SRTP_STREAMS; i++) {
		size_t l = pl[i];
		memcpy(t, pk[i], l);
		assert_int_equal(media_srtp_unprotect(rx, t, &l), -EALREADY);
	}
	size_t l = pl[0];
	memcpy(t, pk[0], l);
	assert_int_equal(media_srtp_unprotect(rx, t, &l), 0);
	/* Wrong direction and malformed input are refused, never crash. */
	l = pl[1];
	assert_int_equal(media_srtp_unprotect(tx, pk[1], &l), -EINVAL);
	assert_int_equal(media_srtp_protect(rx, pk[1], &l), -EINVAL);
	uint8_t junk[64];
	memset(junk, 0x90, sizeof(junk)); /* V=2, X set, CSRCs past the end */
	for (size_t n = 0; n <= sizeof(junk); n++) {
		l = n;
		assert_int_equal(media_srtp_unprotect(rx, junk, &l), -EBADMSG);
		l = n;
		assert_true(media_srtp_unprotect_rtcp(rx, junk, &l) == -EBADMSG);
	}
	media_srtp_destroy(tx);
	media_srtp_destroy(rx);
}

/* protect + unprotect of 172-byte RTP packets (12 + 160 PCMU) and SRTCP, good and bad,
 * allocate nothing once the contexts exist. */
static void test_srtp_no_alloc_per_packet(void **state)
{
	(void)state;
	for (unsigned si = 0; si < 4; si++) {
		enum media_srtp_suite s = all_suites[si];
		uint8_t key[MEDIA_SRTP_MAX_KEY], buf[BUFSZ], copy[BUFSZ];
		struct media_srtp *tx, *rx;
		assert_int_equal(media_srtp_keygen(s, key), 0);
		assert_int_equal(media_srtp_create(&tx, s, key, 1), 0);
		assert_int_equal(media_srtp_create(&rx, s, key, 0), 0);
		size_t len = make_rtp(buf, 1, 42);
		assert_int_equal(media_srtp_protect(tx, buf, &len), 0);
		assert_int_equal(media_srtp_unprotect(rx, buf, &len), 0);
		unsigned long before = alloc_count();
		for (unsigned i = 0; i < 2000; i++) {
			len = make_rtp(buf, (uint16_t)(65000u + i), 42 + i % 3);
			assert_int_equal(media_srtp_protect(tx, buf, &len), 0);
			memcpy(copy, buf, len);
			size_t clen = len;
			assert_int_equal(media_srtp_unprotect(rx, buf, &len), 0);
			assert_int_equal(media_srtp_unprotect(rx, copy, &clen), -EALREADY);
			copy[len / 2] ^= 1;
			copy[3] ^= 0x40;
			assert_int_equal(media_srtp_unprotect(rx, copy, &clen), -EBADMSG);
			if (i % 10 == 0) {
				len = make_rtcp(buf, 42, i);
				assert_int_equal(media_srtp_protect_rtcp(tx, buf, &len), 0);
				memcpy(copy, buf, len);
				clen = len;
				copy[9] ^= 1;
				assert_int_equal(media_srtp_unprotect_rtcp(rx, copy, &clen),
				                 -EBADMSG);
				assert_int_equal(media_srtp_unprotect_rtcp(rx, buf, &len), 0);
			}
		}
		assert_int_equal(alloc_count() - before, 0);
		media_srtp_destroy(tx);
		media_srtp_destroy(rx);
	}
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Measures, prints, asserts nothing about speed: protect + unprotect of one 172-byte
 * packet, libsrtp2 (as built by the distribution) against ours. */
static void test_srtp_cost_per_packet(void **state)
{
	(void)state;
	enum { N = 20000 };
	for (unsigned si = 0; si < 4; si++) {
		enum media_srtp_suite s = all_suites[si];
		uint8_t key[MEDIA_SRTP_MAX_KEY], buf[BUFSZ];
		assert_int_equal(media_srtp_keygen(s, key), 0);
		srtp_t ltx = lib_create(s, key, 1, 0), lrx = lib_create(s, key, 0, 0);
		struct media_srtp *tx, *rx;
		assert_int_equal(media_srtp_create(&tx, s, key, 1), 0);
		assert_int_equal(media_srtp_create(&rx, s, key, 0), 0);

		unsigned long a0 = alloc_count();
		double t0 = now_us();
		for (unsigned i = 0; i < N; i++) {
			size_t len = make_rtp(buf, (uint16_t)i, 7);
			lib_protect(ltx, buf, &len, 0);
			assert_int_equal(lib_unprotect(lrx, buf, &len, 0), srtp_err_status_ok);
		}
		double t1 = now_us();
		unsigned long a1 = alloc_count();
		for (unsigned i = 0; i < N; i++) {
			size_t len = make_rtp(buf, (uint16_t)i, 7);
			assert_int_equal(media_srtp_protect(tx, buf, &len), 0);
			assert_int_equal(media_srtp_unprotect(rx, buf, &len), 0);
		}
		double t2 = now_us();
		unsigned long a2 = alloc_count();
#ifndef SANITIZED
		print_message("# %-24s protect+unprotect 172 B: libsrtp2 %.2f us (%.1f mallocs), "
		              "ours %.2f us (%.1f mallocs)\n",
		              media_srtp_suite_name(s), (t1 - t0) / N, (double)(a1 - a0) / N,
		              (t2 - t1) / N, (double)(a2 - a1) / N);
#else
		(void)a0, (void)a1, (void)a2; /* only the project's own allocations are visible */
		print_message("# %-24s protect+unprotect 172 B: libsrtp2 %.2f us, ours %.2f us "
		              "(sanitizer build)\n",
		              media_srtp_suite_name(s), (t1 - t0) / N, (t2 - t1) / N);
#endif
		srtp_dealloc(ltx);
		srtp_dealloc(lrx);
		media_srtp_destroy(tx);
		media_srtp_destroy(rx);
	}
}

static void test_srtp_rejects_bad_suite(void **state)
{
	(void)state;
	uint8_t key[MEDIA_SRTP_MAX_KEY] = {0};
	struct media_srtp *c = NULL;
	assert_int_equal(media_srtp_create(&c, MEDIA_SRTP_NONE, key, 1), -EINVAL);
	assert_int_equal(media_srtp_create(&c, (enum media_srtp_suite)99, key, 1), -EINVAL);
	/* The context itself comes from the counted allocator: a failure there is clean. */
	mem_fail_after(0);
	assert_int_equal(media_srtp_create(&c, MEDIA_SRTP_AEAD_AES_128_GCM, key, 1), -ENOMEM);
	mem_fail_after(-1);
	assert_null(c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_srtp_suite_names),
	    T(test_srtp_keygen_random),
	    T(test_srtp_aes_cm_128_sha1_80_roundtrip),
	    T(test_srtp_aes_cm_128_sha1_32_roundtrip),
	    T(test_srtp_aead_aes_128_gcm_roundtrip),
	    T(test_srtp_aead_aes_256_gcm_roundtrip),
	    T(test_srtp_rejects_bad_suite),
	    T(test_srtp_interop_aes_cm_128_sha1_80),
	    T(test_srtp_interop_aes_cm_128_sha1_32),
	    T(test_srtp_interop_aead_aes_128_gcm),
	    T(test_srtp_interop_aead_aes_256_gcm),
	    T(test_srtp_ssrc_table),
	    T(test_srtp_no_alloc_per_packet),
	    T(test_srtp_cost_per_packet),
	};
	return cmocka_run_group_tests_name("srtp", tests, NULL, NULL);
}
