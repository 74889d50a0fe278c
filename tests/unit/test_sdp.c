/* Unit tests for the SDP glue: parsing offers/answers the way CUCM and carriers send them, and our
 * SDP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "b2bua/b2bua_int.h"
#include "core/mem.h"
#include "core/strbuf.h"

#include <string.h>

static long live_at_start;

static int setup(void **state)
{
	(void)state;
	live_at_start = mem_live_blocks();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(mem_live_blocks(), live_at_start);
	return 0;
}

static const char cucm_offer[] =
    "v=0\r\n"
    "o=CiscoSystemsCCM-SIP 2000 1 IN IP4 10.1.1.10\r\n"
    "s=SIP Call\r\n"
    "c=IN IP4 10.1.1.20\r\n"
    "t=0 0\r\n"
    "m=audio 24580 RTP/SAVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=ptime:20\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=crypto:1 AEAD_AES_256_GCM inline:"
    "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ=\r\n"
    "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^31\r\n"
    "a=crypto:3 F8_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj\r\n"
    "a=sendrecv\r\n"
    "m=video 0 RTP/AVP 126\r\n";

static void test_sdp_parses_cucm_srtp_offer(void **state)
{
	(void)state;
	struct b2b_sdp s;
	const char *why;
	assert_int_equal(b2b_sdp_parse(cucm_offer, strlen(cucm_offer), &s, &why), 0);
	assert_string_equal(s.addr, "10.1.1.20");
	assert_int_equal(s.port, 24580);
	assert_true(s.secure);
	assert_int_equal(s.dir, B2B_DIR_SENDRECV);
	assert_int_equal(s.n_codecs, 2);
	assert_int_equal(b2b_sdp_codec_of(&s.codecs[0]), MEDIA_CODEC_PCMU);
	assert_int_equal(b2b_sdp_codec_of(&s.codecs[1]), MEDIA_CODEC_PCMA);
	assert_int_equal(s.pt_dtmf, 101);
	assert_int_equal(s.ptime, 20);
	/* F8 is unknown to us and skipped; the other two keep their tags. */
	assert_int_equal(s.n_crypto, 2);
	assert_int_equal(s.crypto[0].tag, 1);
	assert_int_equal(s.crypto[0].suite, MEDIA_SRTP_AEAD_AES_256_GCM);
	assert_int_equal(s.crypto[1].tag, 2);
	assert_int_equal(s.crypto[1].suite, MEDIA_SRTP_AES_CM_128_HMAC_SHA1_32);
	assert_memory_equal(s.crypto[0].key, "12345678901234567890123456789012345678901234", 44);
	assert_int_equal(s.n_other, 1);
	assert_string_equal(s.other_media[0], "video 0 RTP/AVP");
}

static void test_sdp_hold_forms(void **state)
{
	(void)state;
	const char *sendonly =
	    "v=0\r\no=x 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";
	const char *session_inactive =
	    "v=0\r\no=x 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\n"
	    "t=0 0\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\n";
	const char *zero = "v=0\r\no=x 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
	                   "m=audio 4000 RTP/AVP 8\r\n";
	struct b2b_sdp s;
	const char *why;
	assert_int_equal(b2b_sdp_parse(sendonly, strlen(sendonly), &s, &why), 0);
	assert_int_equal(s.dir, B2B_DIR_SENDONLY);
	assert_int_equal(b2b_sdp_parse(session_inactive, strlen(session_inactive), &s, &why), 0);
	assert_int_equal(s.dir, B2B_DIR_INACTIVE);
	assert_int_equal(b2b_sdp_parse(zero, strlen(zero), &s, &why), 0);
	assert_int_equal(s.addr_be, 0);
	assert_int_equal(b2b_sdp_codec_of(&s.codecs[0]), MEDIA_CODEC_PCMA);
	assert_int_equal(s.pt_dtmf, -1);
}

static void test_sdp_rejects_bad_input(void **state)
{
	(void)state;
	struct b2b_sdp s;
	const char *why = NULL;
	const char *bad_c = "v=0\r\no=x 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 999.1.1\r\nt=0 0\r\n"
	                    "m=audio 4000 RTP/AVP 0\r\n";
	assert_int_equal(b2b_sdp_parse(bad_c, strlen(bad_c), &s, &why), -EINVAL);
	assert_non_null(why);
	const char *no_audio =
	    "v=0\r\no=x 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=video 4000 RTP/AVP 96\r\n";
	assert_int_equal(b2b_sdp_parse(no_audio, strlen(no_audio), &s, &why), -EINVAL);
	assert_string_equal(why, "no audio stream");
	const char *garbage = "this is not SDP at all\r\n";
	assert_int_equal(b2b_sdp_parse(garbage, strlen(garbage), &s, &why), -EINVAL);
	const char *truncated = "v=0\r\no=x 1 2 IN IP4";
	assert_int_equal(b2b_sdp_parse(truncated, strlen(truncated), &s, &why), -EINVAL);
	const char *bad_key =
	    "v=0\r\no=x 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=\r\n";
	assert_int_equal(b2b_sdp_parse(bad_key, strlen(bad_key), &s, &why), 0);
	assert_int_equal(s.n_crypto, 0); /* a key of the wrong length is not usable */
}

static void test_sdp_rejects_malformed_mline_before_sofia(void **state)
{
	(void)state;
	/* These m= lines make sofia's parser try multi-gigabyte allocations (one took a
	 * minute of CPU): they must be refused before it sees them. */
	const char *bad[] = {
	    "v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=audio 4000TP /RSAVP 0\r\n",
	    "v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=audio 4000 XX inlinAAAAAAAA==\r\n",
	    "v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=audio 4000 RTP/AVP\r\n",
	};
	struct b2b_sdp s;
	const char *why = NULL;
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(b2b_sdp_parse(bad[i], strlen(bad[i]), &s, &why), -EINVAL);
		assert_string_equal(why, "malformed m= line");
	}
	const char *ok =
	    "v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=audio 4000/2 RTP/AVP 0 8 18 96 97 98 101\nm=application 9 UDP/BFCP *\r\n";
	assert_int_equal(b2b_sdp_parse(ok, strlen(ok), &s, &why), 0);
}

static void test_sdp_only_unknown_codecs(void **state)
{
	(void)state;
	/* GSM and Opus are not negotiated on SIP legs; G.729 and G.722 (8000 in the rtpmap
	 * although it samples at 16 kHz) are. A G.722 rtpmap at 16000 is someone else's. */
	const char *sdp = "v=0\r\no=x 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	                  "m=audio 4000 RTP/AVP 3 96 18 9 97\r\na=rtpmap:3 GSM/8000\r\n"
	                  "a=rtpmap:96 opus/48000/2\r\na=rtpmap:18 G729/8000\r\n"
	                  "a=fmtp:18 annexb=no\r\na=rtpmap:9 G722/8000\r\n"
	                  "a=rtpmap:97 G722/16000\r\n";
	struct b2b_sdp s;
	const char *why;
	assert_int_equal(b2b_sdp_parse(sdp, strlen(sdp), &s, &why), 0);
	assert_int_equal(s.n_codecs, 5);
	static const enum media_codec want[] = {MEDIA_CODEC_NONE, MEDIA_CODEC_NONE,
	                                        MEDIA_CODEC_G729, MEDIA_CODEC_G722,
	                                        MEDIA_CODEC_NONE};
	for (unsigned i = 0; i < s.n_codecs; i++)
		assert_int_equal(b2b_sdp_codec_of(&s.codecs[i]), want[i]);
	assert_string_equal(b2b_codec_name(MEDIA_CODEC_G729), "G729");
	assert_int_equal(b2b_codec_static_pt(MEDIA_CODEC_G722), 9);
}

static void test_sdp_build_offer_and_reparse(void **state)
{
	(void)state;
	uint8_t k1[MEDIA_SRTP_MAX_KEY], k2[MEDIA_SRTP_MAX_KEY];
	memset(k1, 0x11, sizeof(k1));
	memset(k2, 0x22, sizeof(k2));
	struct b2b_sdp_local l = {
	    .addr = "127.0.0.1",
	    .port = 20000,
	    .sess_id = 42,
	    .version = 3,
	    .dir = B2B_DIR_SENDRECV,
	    .secure = 1,
	    .codecs = {MEDIA_CODEC_PCMA, MEDIA_CODEC_PCMU},
	    .n_codecs = 2,
	    .pt_dtmf = 96,
	    .suites = {MEDIA_SRTP_AEAD_AES_128_GCM, MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80},
	    .keys = {k1, k2},
	    .n_suites = 2,
	};
	struct strbuf sb;
	str_init(&sb);
	assert_int_equal(b2b_sdp_build(&l, &sb), 0);
	assert_non_null(strstr(sb.p, "o=VACS 42 3 IN IP4 127.0.0.1\r\n"));
	assert_non_null(strstr(sb.p, "m=audio 20000 RTP/SAVP 8 0 96\r\n"));
	assert_non_null(strstr(sb.p, "a=rtpmap:96 telephone-event/8000\r\n"));
	assert_non_null(strstr(sb.p, "a=fmtp:96 0-16\r\n"));
	assert_null(strstr(sb.p, "kpml"));
	struct b2b_sdp s;
	const char *why;
	assert_int_equal(b2b_sdp_parse(sb.p, sb.len, &s, &why), 0);
	assert_int_equal(s.port, 20000);
	assert_int_equal(s.pt_dtmf, 96);
	assert_int_equal(s.n_crypto, 2);
	assert_int_equal(s.crypto[0].suite, MEDIA_SRTP_AEAD_AES_128_GCM);
	assert_memory_equal(s.crypto[0].key, k1, 28);
	assert_int_equal(s.crypto[1].suite, MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80);
	assert_memory_equal(s.crypto[1].key, k2, 30);
	str_deinit(&sb);
}

static void test_sdp_answer_keeps_mline_order(void **state)
{
	(void)state;
	const char *offer =
	    "v=0\r\no=x 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
	    "m=video 5000 RTP/AVP 96\r\nm=audio 4000 RTP/AVP 0 101\r\n"
	    "a=rtpmap:101 telephone-event/8000\r\nm=application 6000 UDP/BFCP *\r\n";
	struct b2b_sdp s;
	const char *why;
	assert_int_equal(b2b_sdp_parse(offer, strlen(offer), &s, &why), 0);
	assert_int_equal(s.audio_index, 1);
	struct b2b_sdp_local l = {.addr = "127.0.0.1",
	                          .port = 20002,
	                          .sess_id = 1,
	                          .version = 1,
	                          .dir = B2B_DIR_RECVONLY,
	                          .codecs = {MEDIA_CODEC_PCMU},
	                          .n_codecs = 1,
	                          .pt_dtmf = 101,
	                          .answer_to = &s};
	struct strbuf sb;
	str_init(&sb);
	assert_int_equal(b2b_sdp_build(&l, &sb), 0);
	const char *v = strstr(sb.p, "m=video 0 RTP/AVP");
	const char *a = strstr(sb.p, "m=audio 20002 RTP/AVP 0 101");
	const char *b = strstr(sb.p, "m=application 0 UDP/BFCP");
	assert_non_null(v);
	assert_non_null(a);
	assert_non_null(b);
	assert_true(v < a && a < b);
	assert_non_null(strstr(sb.p, "a=recvonly\r\n"));
	str_deinit(&sb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_sdp_parses_cucm_srtp_offer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sdp_hold_forms, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sdp_rejects_bad_input, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sdp_only_unknown_codecs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sdp_rejects_malformed_mline_before_sofia, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_sdp_build_offer_and_reparse, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sdp_answer_keeps_mline_order, setup, teardown),
	};
	return cmocka_run_group_tests_name("sdp", tests, NULL, NULL);
}
