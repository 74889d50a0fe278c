/* libFuzzer harness for the SDP glue: parse anything, and rebuild an answer from what parsed. */
#include "b2bua/b2bua_int.h"
#include "core/strbuf.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct b2b_sdp s;
	const char *why;
	if (b2b_sdp_parse((const char *)data, size, &s, &why) != 0)
		return 0;
	uint8_t key[MEDIA_SRTP_MAX_KEY];
	memset(key, 7, sizeof(key));
	struct b2b_sdp_local l = {.addr = "127.0.0.1",
	                          .port = 20000,
	                          .sess_id = 1,
	                          .version = 1,
	                          .dir = B2B_DIR_SENDRECV,
	                          .codecs = {MEDIA_CODEC_PCMU},
	                          .n_codecs = 1,
	                          .pt_dtmf = s.pt_dtmf,
	                          .answer_to = &s};
	if (s.n_crypto) {
		l.secure = 1;
		l.suites[0] = s.crypto[0].suite;
		l.keys[0] = key;
		l.n_suites = 1;
		l.crypto_tag = s.crypto[0].tag;
	}
	struct strbuf sb;
	str_init(&sb);
	b2b_sdp_build(&l, &sb);
	struct b2b_sdp back;
	if (sb.p && b2b_sdp_parse(sb.p, sb.len, &back, &why) != 0)
		__builtin_trap(); /* what we build must parse */
	str_deinit(&sb);
	return 0;
}
