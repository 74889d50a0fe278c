/* SDP glue: sofia's parser in, our own printer out (we own every SDP we send). */
#include "b2bua/b2bua_int.h"

#include "core/strbuf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/base64.h>
#include <sofia-sip/sdp.h>
#include <sofia-sip/su_alloc.h>

const char *b2b_codec_name(enum media_codec c)
{
	switch (c) {
	case MEDIA_CODEC_PCMU:
		return "PCMU";
	case MEDIA_CODEC_PCMA:
		return "PCMA";
	case MEDIA_CODEC_G722:
		return "G722";
	case MEDIA_CODEC_G729:
		return "G729";
	default:
		return "none";
	}
}

/* Codecs with a static payload type (RFC 3551) that SIP legs negotiate. Opus (dynamic
 * PT, 48 kHz clock) is handled by the media engine but not offered on SIP trunks yet. */
enum media_codec b2b_codec_parse(const char *name)
{
	if (strcasecmp(name, "PCMU") == 0)
		return MEDIA_CODEC_PCMU;
	if (strcasecmp(name, "PCMA") == 0)
		return MEDIA_CODEC_PCMA;
	if (strcasecmp(name, "G722") == 0)
		return MEDIA_CODEC_G722;
	if (strcasecmp(name, "G729") == 0)
		return MEDIA_CODEC_G729;
	return MEDIA_CODEC_NONE;
}

uint8_t b2b_codec_static_pt(enum media_codec c)
{
	switch (c) {
	case MEDIA_CODEC_PCMA:
		return 8;
	case MEDIA_CODEC_G722:
		return 9;
	case MEDIA_CODEC_G729:
		return 18;
	default:
		return 0;
	}
}

enum media_codec b2b_sdp_codec_of(const struct b2b_sdp_codec *c)
{
	/* G.722's RTP clock is 8000 although it samples at 16 kHz (RFC 3551 4.5.2). */
	if (c->rate != 8000)
		return MEDIA_CODEC_NONE;
	return b2b_codec_parse(c->name);
}

static const sdp_attribute_t *attr_find(const sdp_attribute_t *a, const char *name)
{
	for (; a; a = a->a_next) {
		if (a->a_name && strcasecmp(a->a_name, name) == 0)
			return a;
	}
	return NULL;
}

static int dir_from_attrs(const sdp_attribute_t *a, enum b2b_dir *dir)
{
	if (attr_find(a, "sendrecv"))
		*dir = B2B_DIR_SENDRECV;
	else if (attr_find(a, "sendonly"))
		*dir = B2B_DIR_SENDONLY;
	else if (attr_find(a, "recvonly"))
		*dir = B2B_DIR_RECVONLY;
	else if (attr_find(a, "inactive"))
		*dir = B2B_DIR_INACTIVE;
	else
		return 0;
	return 1;
}

/* "1 AES_CM_128_HMAC_SHA1_80 inline:KEY[|lifetime][|mki:len] [params]" */
static int parse_crypto(const char *v, struct b2b_sdp_crypto *c)
{
	char suite[48], keyparam[128];
	unsigned tag;
	if (sscanf(v, "%u %47s %127s", &tag, suite, keyparam) != 3)
		return -EINVAL;
	c->suite = media_srtp_suite_parse(suite);
	if (c->suite == MEDIA_SRTP_NONE)
		return -ENOTSUP;
	if (strncasecmp(keyparam, "inline:", 7) != 0)
		return -EINVAL;
	char *k = keyparam + 7;
	char *bar = strchr(k, '|');
	if (bar)
		*bar = '\0';
	size_t want = media_srtp_key_len(c->suite);
	uint8_t buf[64];
	isize_t n = base64_d((char *)buf, sizeof(buf), k);
	if (n < 0 || (size_t)n != want)
		return -EINVAL;
	memcpy(c->key, buf, want);
	c->tag = tag;
	return 0;
}

/* RFC 4566 token characters (what sofia's parser accepts in a format); '/' only in proto.
 * sofia loops allocating forever on any other character in a non-RTP format list. */
static int is_tok(char c, int slash)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("-.!%*_+`'~", c)) || (slash && c == '/');
}

/* "m=<media> <port>[/<count>] <proto> <fmt> ..." up to the end of the line. */
static int mline_ok(const char *p, size_t n)
{
	size_t i = 0, k;
	if (n < 2 || p[0] != 'm' || p[1] != '=')
		return 0;
	i = 2;
	for (k = i; i < n && ((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')); i++)
		;
	if (i == k || i >= n || p[i++] != ' ')
		return 0;
	for (k = i; i < n && p[i] >= '0' && p[i] <= '9'; i++)
		;
	if (i == k || i - k > 5)
		return 0;
	if (i < n && p[i] == '/') {
		for (k = ++i; i < n && p[i] >= '0' && p[i] <= '9'; i++)
			;
		if (i == k || i - k > 5)
			return 0;
	}
	unsigned fields = 0;
	while (i < n && p[i] == ' ') {
		i++;
		if (i < n && p[i] == '/')
			return 0; /* a proto or format never starts with '/' */
		for (k = i; i < n && is_tok(p[i], fields == 0); i++)
			;
		if (i == k)
			return 0;
		fields++;
	}
	if (i < n && p[i] == '\r')
		i++;
	return fields >= 2 && (i == n || p[i] == '\n');
}

int b2b_sdp_parse(const char *body, size_t len, struct b2b_sdp *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	out->pt_dtmf = -1;
	out->pt_cn = -1;
	out->dir = B2B_DIR_SENDRECV;
	*why = NULL;
	int rc = -EINVAL;
	/* Control characters (NUL included) are never valid in SDP, bytes above 0x7f only in
	 * free text (s=, i=), and m= lines must follow RFC 4566's grammar: sofia's parser
	 * mis-sizes allocations on some malformed m= lines (gigabytes, a minute of CPU). */
	int text_line = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)body[i];
		if (i == 0 || body[i - 1] == '\n') {
			/* Every line is "<letter>=..." (RFC 4566 5); an empty line is tolerated. */
			if (ch != '\r' && ch != '\n' &&
			    (ch < 'a' || ch > 'z' || i + 1 >= len || body[i + 1] != '=')) {
				*why = "malformed SDP line";
				return -EINVAL;
			}
			text_line = ch == 's' || ch == 'i';
			if (ch == 'm' && !mline_ok(body + i, len - i)) {
				*why = "malformed m= line";
				return -EINVAL;
			}
		}
		int bare_cr = ch == '\r' && (i + 1 == len || body[i + 1] != '\n');
		if ((ch < 0x20 && ch != '\r' && ch != '\n' && ch != '\t') || ch == 0x7f ||
		    (ch >= 0x80 && !text_line) || bare_cr) {
			*why = "invalid character in SDP";
			return -EINVAL;
		}
	}
	if (len > 16384) {
		*why = "SDP too large";
		return -EINVAL;
	}
	su_home_t *home = su_home_new(sizeof(su_home_t));
	if (!home) {
		*why = "out of memory";
		return -ENOMEM;
	}
	sdp_parser_t *p = sdp_parse(home, body, (issize_t)len, sdp_f_mode_manual);
	sdp_session_t *s = p ? sdp_session(p) : NULL;
	if (!s) {
		*why = "unparsable SDP";
		goto out;
	}
	const sdp_media_t *audio = NULL;
	unsigned idx = 0;
	for (const sdp_media_t *m = s->sdp_media; m; m = m->m_next, idx++) {
		if (!audio && m->m_type == sdp_media_audio && m->m_port != 0) {
			audio = m;
			out->audio_index = idx;
			continue;
		}
		/* Rejected in the answer with port 0, so each must fit to be echoed. */
		if (out->n_other == B2B_SDP_MAX_MLINES) {
			*why = "too many m= lines";
			goto out;
		}
		int w = snprintf(out->other_media[out->n_other], sizeof(out->other_media[0]),
		                 "%s 0 %s", m->m_type_name ? m->m_type_name : "unknown",
		                 m->m_proto_name ? m->m_proto_name : "RTP/AVP");
		if (w < 0 || (size_t)w >= sizeof(out->other_media[0])) {
			*why = "malformed m= line";
			goto out;
		}
		out->n_other++;
	}
	if (!audio) {
		*why = "no audio stream";
		goto out;
	}
	const sdp_connection_t *c = audio->m_connections ? audio->m_connections : s->sdp_connection;
	if (!c || !c->c_address || c->c_addrtype != sdp_addr_ip4) {
		*why = "bad c= line";
		goto out;
	}
	struct in_addr ia;
	if (inet_pton(AF_INET, c->c_address, &ia) != 1) {
		*why = "bad c= line";
		goto out;
	}
	snprintf(out->addr, sizeof(out->addr), "%s", c->c_address);
	out->addr_be = ia.s_addr;
	if (audio->m_port > 65535) {
		*why = "bad m= port";
		goto out;
	}
	out->port = (uint16_t)audio->m_port;
	if (audio->m_proto == sdp_proto_srtp)
		out->secure = 1;
	else if (audio->m_proto != sdp_proto_rtp) {
		*why = "unsupported transport";
		goto out;
	}
	enum b2b_dir dir = B2B_DIR_SENDRECV;
	if (!dir_from_attrs(audio->m_attributes, &dir))
		dir_from_attrs(s->sdp_attributes, &dir);
	out->dir = dir;

	for (const sdp_rtpmap_t *rm = audio->m_rtpmaps; rm; rm = rm->rm_next) {
		if (!rm->rm_encoding)
			continue;
		if (strcasecmp(rm->rm_encoding, "telephone-event") == 0) {
			if (rm->rm_rate == 8000 && out->pt_dtmf < 0)
				out->pt_dtmf = rm->rm_pt;
			continue;
		}
		if (strcasecmp(rm->rm_encoding, "CN") == 0) {
			if (rm->rm_rate == 8000 && out->pt_cn < 0)
				out->pt_cn = rm->rm_pt;
			continue;
		}
		if (out->n_codecs < B2B_SDP_MAX_CODECS) {
			struct b2b_sdp_codec *cd = &out->codecs[out->n_codecs++];
			cd->pt = rm->rm_pt;
			snprintf(cd->name, sizeof(cd->name), "%s", rm->rm_encoding);
			cd->rate = (unsigned)rm->rm_rate;
		}
	}
	for (const sdp_attribute_t *a = audio->m_attributes; a; a = a->a_next) {
		if (!a->a_name)
			continue;
		if (strcasecmp(a->a_name, "crypto") == 0 && a->a_value &&
		    out->n_crypto < B2B_SDP_MAX_CRYPTO) {
			if (parse_crypto(a->a_value, &out->crypto[out->n_crypto]) == 0)
				out->n_crypto++;
		} else if (strcasecmp(a->a_name, "rtcp-mux") == 0) {
			out->rtcp_mux = 1;
		} else if (strcasecmp(a->a_name, "rtcp") == 0 && a->a_value) {
			unsigned long v = strtoul(a->a_value, NULL, 10);
			if (v > 0 && v <= 65535)
				out->rtcp_port = (uint16_t)v;
		} else if (strcasecmp(a->a_name, "ptime") == 0 && a->a_value) {
			out->ptime = (unsigned)strtoul(a->a_value, NULL, 10);
		}
	}
	rc = 0;
out:
	if (p)
		sdp_parser_free(p);
	su_home_unref(home);
	return rc;
}

static const char *dir_attr(enum b2b_dir d)
{
	switch (d) {
	case B2B_DIR_SENDONLY:
		return "sendonly";
	case B2B_DIR_RECVONLY:
		return "recvonly";
	case B2B_DIR_INACTIVE:
		return "inactive";
	default:
		return "sendrecv";
	}
}

int b2b_sdp_build(const struct b2b_sdp_local *l, struct strbuf *sb)
{
	str_printf(sb, "v=0\r\no=VACS %llu %u IN IP4 %s\r\ns=VACS\r\nc=IN IP4 %s\r\nt=0 0\r\n",
	           (unsigned long long)l->sess_id, l->version, l->addr, l->addr);
	/* Rejected m-lines before the audio line keep their position. */
	const struct b2b_sdp *ans = l->answer_to;
	unsigned before = ans ? ans->audio_index : 0;
	unsigned n_other = ans ? ans->n_other : 0;
	for (unsigned i = 0; i < before && i < n_other; i++)
		str_printf(sb, "m=%s 0\r\n", ans->other_media[i]);

	str_printf(sb, "m=audio %u %s", l->port, l->secure ? "RTP/SAVP" : "RTP/AVP");
	for (unsigned i = 0; i < l->n_codecs; i++)
		str_printf(sb, " %u", b2b_codec_static_pt(l->codecs[i]));
	if (l->pt_dtmf >= 0)
		str_printf(sb, " %d", l->pt_dtmf);
	str_puts(sb, "\r\n");
	for (unsigned i = 0; i < l->n_codecs; i++)
		str_printf(sb, "a=rtpmap:%u %s/8000\r\n", b2b_codec_static_pt(l->codecs[i]),
		           b2b_codec_name(l->codecs[i]));
	for (unsigned i = 0; i < l->n_codecs; i++)
		if (l->codecs[i] == MEDIA_CODEC_G729) /* Annex A without B: no VAD/CNG frames */
			str_puts(sb, "a=fmtp:18 annexb=no\r\n");
	if (l->pt_dtmf >= 0)
		str_printf(sb, "a=rtpmap:%d telephone-event/8000\r\na=fmtp:%d 0-16\r\n", l->pt_dtmf,
		           l->pt_dtmf);
	str_puts(sb, "a=ptime:20\r\n");
	for (unsigned i = 0; l->secure && i < l->n_suites; i++) {
		char b64[96];
		size_t klen = media_srtp_key_len(l->suites[i]);
		base64_e(b64, sizeof(b64), (void *)(uintptr_t)l->keys[i], klen);
		str_printf(sb, "a=crypto:%u %s inline:%s\r\n",
		           l->crypto_tag ? l->crypto_tag : i + 1,
		           media_srtp_suite_name(l->suites[i]), b64);
	}
	str_printf(sb, "a=%s\r\n", dir_attr(l->dir));
	for (unsigned i = before; i < n_other; i++)
		str_printf(sb, "m=%s 0\r\n", ans->other_media[i]);
	return sb->oom ? -ENOMEM : 0;
}
