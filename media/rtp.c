/* RTP/RTCP/RFC 4733 wire formats and RFC 3550 receive statistics (pure, no I/O). */
#include "media/media_int.h"

#include <errno.h>
#include <string.h>

#define RTP_SEQ_MOD  (1u << 16)
#define MAX_DROPOUT  3000u
#define MAX_MISORDER 100u

int media_rtp_parse(const uint8_t *buf, size_t len, struct media_rtp_hdr *h)
{
	if (len < MEDIA_RTP_HDR_MIN || len > 0xffff)
		return -EBADMSG;
	if ((buf[0] >> 6) != 2)
		return -EBADMSG;
	unsigned cc = buf[0] & 0x0f;
	size_t hl = MEDIA_RTP_HDR_MIN + 4u * cc;
	if (hl > len)
		return -EBADMSG;
	h->has_ext = (buf[0] >> 4) & 1;
	h->ext_profile = 0;
	h->ext_len = 0;
	if (h->has_ext) {
		if (hl + 4 > len)
			return -EBADMSG;
		h->ext_profile = media_get16(buf + hl);
		size_t el = 4u * media_get16(buf + hl + 2);
		hl += 4;
		if (hl + el > len)
			return -EBADMSG;
		h->ext_len = (uint16_t)el;
		hl += el;
	}
	size_t pad = 0;
	if (buf[0] & 0x20) {
		pad = buf[len - 1];
		/* The count includes itself, so 0 is invalid; it must fit after the header. */
		if (pad == 0 || pad > len - hl)
			return -EBADMSG;
	}
	h->cc = (uint8_t)cc;
	h->marker = buf[1] >> 7;
	h->pt = buf[1] & 0x7f;
	h->seq = media_get16(buf + 2);
	h->ts = media_get32(buf + 4);
	h->ssrc = media_get32(buf + 8);
	h->hdr_len = (uint16_t)hl;
	h->pad_len = (uint8_t)pad;
	h->payload_len = (uint16_t)(len - hl - pad);
	return 0;
}

uint32_t media_rtp_csrc(const uint8_t *buf, unsigned i)
{
	return media_get32(buf + MEDIA_RTP_HDR_MIN + 4u * i);
}

int media_rtp_build(uint8_t *buf, size_t cap, const struct media_rtp_hdr *h, const uint32_t *csrc,
                    const uint8_t *ext, const uint8_t *payload)
{
	if (h->cc > 15 || h->pt > 127 || (h->ext_len & 3) != 0)
		return -EINVAL;
	size_t hl = MEDIA_RTP_HDR_MIN + 4u * h->cc + (h->has_ext ? 4u + h->ext_len : 0u);
	size_t total = hl + h->payload_len + h->pad_len;
	if (total > cap || total > 0xffff)
		return -ENOSPC;
	buf[0] = (uint8_t)(0x80 | (h->pad_len ? 0x20 : 0) | (h->has_ext ? 0x10 : 0) | h->cc);
	buf[1] = (uint8_t)((h->marker ? 0x80 : 0) | h->pt);
	media_put16(buf + 2, h->seq);
	media_put32(buf + 4, h->ts);
	media_put32(buf + 8, h->ssrc);
	uint8_t *p = buf + MEDIA_RTP_HDR_MIN;
	for (unsigned i = 0; i < h->cc; i++, p += 4)
		media_put32(p, csrc[i]);
	if (h->has_ext) {
		media_put16(p, h->ext_profile);
		media_put16(p + 2, (uint16_t)(h->ext_len / 4));
		p += 4;
		if (h->ext_len)
			memcpy(p, ext, h->ext_len);
		p += h->ext_len;
	}
	if (h->payload_len)
		memcpy(p, payload, h->payload_len);
	p += h->payload_len;
	if (h->pad_len) {
		memset(p, 0, h->pad_len - 1u);
		p[h->pad_len - 1u] = h->pad_len;
	}
	return (int)total;
}

/* ---- RFC 3550 Appendix A.1 / A.3 / A.8 ---- */

void media_rtp_rx_init(struct media_rtp_rxstats *s, uint32_t ssrc, uint16_t seq)
{
	memset(s, 0, sizeof(*s));
	s->ssrc = ssrc;
	s->base_seq = seq;
	s->max_seq = seq;
	s->bad_seq = RTP_SEQ_MOD + 1; /* so seq == bad_seq is false */
}

int media_rtp_rx_seq(struct media_rtp_rxstats *s, uint16_t seq)
{
	uint16_t udelta = (uint16_t)(seq - s->max_seq);

	if (udelta < MAX_DROPOUT) {
		/* In order, with permissible gap. */
		if (seq < s->max_seq)
			s->cycles += RTP_SEQ_MOD;
		s->max_seq = seq;
	} else if (udelta <= RTP_SEQ_MOD - MAX_MISORDER) {
		/* A very large jump: two sequential packets mean the source restarted. */
		if (seq == s->bad_seq) {
			uint32_t ssrc = s->ssrc;
			media_rtp_rx_init(s, ssrc, seq);
		} else {
			s->bad_seq = (seq + 1u) & (RTP_SEQ_MOD - 1);
			return 0;
		}
	}
	/* else: duplicate or reordered packet, counted as received. */
	s->received++;
	return 1;
}

void media_rtp_rx_jitter(struct media_rtp_rxstats *s, uint32_t rtp_ts, uint32_t arrival)
{
	uint32_t transit = arrival - rtp_ts;
	if (!s->have_transit) {
		s->have_transit = 1;
		s->transit = transit;
		return;
	}
	int32_t d = (int32_t)(transit - s->transit);
	s->transit = transit;
	uint32_t ad = d < 0 ? (uint32_t)0 - (uint32_t)d : (uint32_t)d;
	/* J += (|D| - J) / 16, kept scaled by 16 (A.8). */
	s->jitter_q4 += ad - ((s->jitter_q4 + 8u) >> 4);
}

uint32_t media_rtp_rx_ext_max(const struct media_rtp_rxstats *s)
{
	return s->cycles + s->max_seq;
}

int32_t media_rtp_rx_lost(const struct media_rtp_rxstats *s)
{
	uint32_t expected = media_rtp_rx_ext_max(s) - s->base_seq + 1u;
	return (int32_t)(expected - s->received);
}

uint32_t media_rtp_rx_jitter_ts(const struct media_rtp_rxstats *s)
{
	return s->jitter_q4 >> 4;
}

uint8_t media_rtp_rx_fraction(struct media_rtp_rxstats *s)
{
	uint32_t expected = media_rtp_rx_ext_max(s) - s->base_seq + 1u;
	uint32_t exp_int = expected - s->expected_prior;
	uint32_t rec_int = s->received - s->received_prior;
	s->expected_prior = expected;
	s->received_prior = s->received;
	int32_t lost_int = (int32_t)(exp_int - rec_int);
	if (exp_int == 0 || lost_int <= 0)
		return 0;
	uint64_t f = ((uint64_t)(uint32_t)lost_int << 8) / exp_int;
	return f > 255 ? 255 : (uint8_t)f;
}

/* ---- RTCP ---- */

static void parse_block(const uint8_t *p, struct media_rtcp_report *r)
{
	r->ssrc = media_get32(p);
	r->fraction = p[4];
	uint32_t cl = (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
	r->cum_lost = (cl & 0x800000u) ? (int32_t)(cl | 0xff000000u) : (int32_t)cl;
	r->ext_max_seq = media_get32(p + 8);
	r->jitter = media_get32(p + 12);
	r->lsr = media_get32(p + 16);
	r->dlsr = media_get32(p + 20);
}

int media_rtcp_parse(const uint8_t *buf, size_t len, struct media_rtcp_info *info)
{
	memset(info, 0, offsetof(struct media_rtcp_info, reports));
	if (len < 4 || (len & 3) != 0)
		return -EBADMSG;
	size_t off = 0;
	while (off < len) {
		const uint8_t *p = buf + off;
		if (len - off < 4)
			return -EBADMSG;
		if ((p[0] >> 6) != 2 || p[1] < 192 || p[1] > 223)
			return -EBADMSG;
		size_t plen = 4u * ((size_t)media_get16(p + 2) + 1u);
		if (plen > len - off)
			return -EBADMSG;
		size_t body = plen; /* bytes of this packet that are not padding */
		if (p[0] & 0x20) {
			/* Only the last packet of a compound may be padded. */
			if (off + plen != len)
				return -EBADMSG;
			unsigned pad = p[plen - 1];
			if (pad == 0 || pad > plen - 4)
				return -EBADMSG;
			body = plen - pad;
		}
		unsigned rc = p[0] & 0x1f;
		uint8_t pt = p[1];
		if (pt == MEDIA_RTCP_SR || pt == MEDIA_RTCP_RR) {
			size_t fixed = pt == MEDIA_RTCP_SR ? 28u : 8u;
			if (body < fixed + 24u * rc)
				return -EBADMSG;
			if (!info->has_sr && !info->has_rr)
				info->sender_ssrc = media_get32(p + 4);
			if (pt == MEDIA_RTCP_SR) {
				if (!info->has_sr) {
					info->sr.ntp_sec = media_get32(p + 8);
					info->sr.ntp_frac = media_get32(p + 12);
					info->sr.rtp_ts = media_get32(p + 16);
					info->sr.pkt_count = media_get32(p + 20);
					info->sr.octet_count = media_get32(p + 24);
				}
				info->has_sr = 1;
			} else {
				info->has_rr = 1;
			}
			for (unsigned i = 0; i < rc; i++) {
				if (info->n_reports == MEDIA_RTCP_MAX_REPORTS)
					break;
				parse_block(p + fixed + 24u * i, &info->reports[info->n_reports++]);
			}
		} else if (pt == MEDIA_RTCP_BYE) {
			if (body < 4u + 4u * rc)
				return -EBADMSG;
			info->has_bye = 1;
		}
		info->n_packets++;
		off += plen;
	}
	return 0;
}

int media_rtcp_build(uint8_t *buf, size_t cap, uint32_t ssrc, const struct media_rtcp_sr *sr,
                     const struct media_rtcp_report *rb, const char *cname, size_t cname_len)
{
	if (cname_len > 255)
		return -EINVAL;
	size_t first = (sr ? 28u : 8u) + (rb ? 24u : 0u);
	size_t chunk = (4u + 2u + cname_len + 1u + 3u) & ~(size_t)3u; /* ssrc, item, end, pad */
	size_t sdes = 4u + chunk;
	if (first + sdes > cap)
		return -ENOSPC;
	uint8_t *p = buf;
	p[0] = (uint8_t)(0x80 | (rb ? 1 : 0));
	p[1] = sr ? MEDIA_RTCP_SR : MEDIA_RTCP_RR;
	media_put16(p + 2, (uint16_t)(first / 4 - 1));
	media_put32(p + 4, ssrc);
	p += 8;
	if (sr) {
		media_put32(p, sr->ntp_sec);
		media_put32(p + 4, sr->ntp_frac);
		media_put32(p + 8, sr->rtp_ts);
		media_put32(p + 12, sr->pkt_count);
		media_put32(p + 16, sr->octet_count);
		p += 20;
	}
	if (rb) {
		media_put32(p, rb->ssrc);
		p[4] = rb->fraction;
		int32_t cl = rb->cum_lost;
		if (cl > 0x7fffff)
			cl = 0x7fffff;
		if (cl < -0x800000)
			cl = -0x800000;
		uint32_t ucl = (uint32_t)cl & 0xffffffu;
		p[5] = (uint8_t)(ucl >> 16);
		p[6] = (uint8_t)(ucl >> 8);
		p[7] = (uint8_t)ucl;
		media_put32(p + 8, rb->ext_max_seq);
		media_put32(p + 12, rb->jitter);
		media_put32(p + 16, rb->lsr);
		media_put32(p + 20, rb->dlsr);
		p += 24;
	}
	p[0] = 0x81; /* one chunk */
	p[1] = MEDIA_RTCP_SDES;
	media_put16(p + 2, (uint16_t)(sdes / 4 - 1));
	media_put32(p + 4, ssrc);
	p[8] = 1; /* CNAME */
	p[9] = (uint8_t)cname_len;
	if (cname_len)
		memcpy(p + 10, cname, cname_len);
	memset(p + 10 + cname_len, 0, chunk - 6u - cname_len); /* end of items + pad */
	return (int)(first + sdes);
}

/* ---- RFC 4733 ---- */

int media_rfc4733_parse(const uint8_t *payload, size_t len, struct media_dtmf_event *ev)
{
	if (len < 4)
		return -EBADMSG;
	ev->event = payload[0];
	ev->end = payload[1] >> 7;
	ev->volume = payload[1] & 0x3f;
	ev->duration = media_get16(payload + 2);
	return 0;
}

char media_rfc4733_digit(uint8_t event)
{
	static const char digits[16] = "0123456789*#ABCD";
	return event < 16 ? digits[event] : '\0';
}
