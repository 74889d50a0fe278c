/* Unit tests: SDES suites, key generation and SRTP/SRTCP round trips through libsrtp2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/mem.h"
#include "media/media_int.h"

#include <errno.h>
#include <string.h>

static long live_before;

static int leak_setup(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	return media_srtp_lib_init();
}

static int leak_teardown(void **state)
{
	(void)state;
	media_srtp_lib_close();
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
	struct srtp_ctx_t_ *tx = NULL, *rx = NULL;
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
	struct srtp_ctx_t_ *bad = NULL;
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

static void test_srtp_rejects_bad_suite(void **state)
{
	(void)state;
	uint8_t key[MEDIA_SRTP_MAX_KEY] = {0};
	struct srtp_ctx_t_ *c = NULL;
	assert_int_equal(media_srtp_create(&c, MEDIA_SRTP_NONE, key, 1), -EINVAL);
	assert_int_equal(media_srtp_create(&c, (enum media_srtp_suite)99, key, 1), -EINVAL);
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
	};
	return cmocka_run_group_tests_name("srtp", tests, NULL, NULL);
}
