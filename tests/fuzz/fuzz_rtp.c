/* libFuzzer harness for the RTP, RTCP and RFC 4733 parsers and the RFC 3550 statistics.
 * Real fuzzing (rtp.c instrumented too):
 *   clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined -I. \
 *         tests/fuzz/fuzz_rtp.c media/rtp.c -o fuzz_rtp && ./fuzz_rtp tests/fuzz/corpus/rtp */
#include "media/media_int.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_rtp(const uint8_t *data, size_t size)
{
	struct media_rtp_hdr h;
	if (media_rtp_parse(data, size, &h) != 0)
		return;
	/* Accepted: the parts must add up, and rebuilding gives the same bytes back
	 * (padding content aside, which the sender may fill freely). */
	if ((size_t)h.hdr_len + h.payload_len + h.pad_len != size)
		abort();
	uint32_t csrc[15];
	for (unsigned i = 0; i < h.cc; i++)
		csrc[i] = media_rtp_csrc(data, i);
	static uint8_t out[70000];
	const uint8_t *ext = h.has_ext ? data + MEDIA_RTP_HDR_MIN + 4u * h.cc + 4u : NULL;
	int len = media_rtp_build(out, sizeof(out), &h, csrc, ext, data + h.hdr_len);
	if (len < 0 || (size_t)len != size)
		abort();
	if (memcmp(out, data, size - h.pad_len) != 0 || out[size - 1] != data[size - 1])
		abort();

	struct media_dtmf_event ev;
	if (media_rfc4733_parse(data + h.hdr_len, h.payload_len, &ev) == 0)
		(void)media_rfc4733_digit(ev.event);
}

static void check_rtcp(const uint8_t *data, size_t size)
{
	struct media_rtcp_info info;
	if (media_rtcp_parse(data, size, &info) != 0)
		return;
	if (info.n_packets == 0 || info.n_reports > MEDIA_RTCP_MAX_REPORTS)
		abort();
	/* Whatever we parsed, we can write back in our own form and read again. */
	static uint8_t out[2048];
	int len =
	    media_rtcp_build(out, sizeof(out), info.sender_ssrc, info.has_sr ? &info.sr : NULL,
	                     info.n_reports ? &info.reports[0] : NULL, "fuzz", 4);
	if (len < 0)
		abort();
	struct media_rtcp_info again;
	if (media_rtcp_parse(out, (size_t)len, &again) != 0 ||
	    again.sender_ssrc != info.sender_ssrc)
		abort();
}

/* The input as a packet sequence: (seq, ts, arrival) triples through the statistics. */
static void check_stats(const uint8_t *data, size_t size)
{
	struct media_rtp_rxstats s;
	if (size < 10)
		return;
	media_rtp_rx_init(&s, 1, (uint16_t)(data[0] << 8 | data[1]));
	for (size_t off = 2; off + 8 <= size; off += 8) {
		uint16_t seq = (uint16_t)(data[off] << 8 | data[off + 1]);
		uint32_t ts = media_get32(data + off + 2);
		uint32_t arr = (uint32_t)data[off + 6] << 8 | data[off + 7];
		media_rtp_rx_seq(&s, seq);
		media_rtp_rx_jitter(&s, ts, arr * 160u);
		(void)media_rtp_rx_fraction(&s);
	}
	(void)media_rtp_rx_lost(&s);
	(void)media_rtp_rx_ext_max(&s);
	(void)media_rtp_rx_jitter_ts(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (media_is_rtcp(data, size))
		check_rtcp(data, size);
	else
		check_rtp(data, size);
	/* Both parsers see everything: neither may trust the demultiplexer. */
	check_rtcp(data, size);
	check_rtp(data, size);
	check_stats(data, size);
	return 0;
}
