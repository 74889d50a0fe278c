/* The call model: two SIP legs bridged through anchored media, and every signalling flow between
 * them. */
#include "b2bua/live.h"
#include "b2bua/b2bua_int.h"

#include "b2bua/number.h"
#include "conf/conf.h"
#include "control/api_util.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"
#include "core/strbuf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/sip_extra.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>

#define SDP_TYPE "application/sdp"

static struct b2b_leg *other_leg(struct b2b_leg *leg)
{
	return leg->side == 'a' ? &leg->call->b : &leg->call->a;
}

struct b2b_leg *b2b_call_customer(struct b2b_call *call)
{
	return call->outbound ? &call->b : &call->a;
}

struct b2b_call *b2b_call_by_id(const char *id)
{
	for (struct b2b_call *c = b2b_g.calls; c; c = c->next)
		if (strcmp(c->id, id) == 0)
			return c;
	return NULL;
}

struct b2b_leg *b2b_leg_peer(struct b2b_leg *leg)
{
	struct b2b_call *c = leg->call;
	struct b2b_leg *cust = b2b_call_customer(c);
	if (leg->side == 't')
		return NULL;
	if (leg->side == 'x')
		return cust;
	if (leg == cust && b2b_xfer_bridged(c))
		return &c->x;
	return other_leg(leg);
}

int b2b_leg_answered(const struct b2b_leg *leg)
{
	return leg->state == LEG_ANSWERED || leg->state == LEG_UP;
}

void b2b_call_set_end(struct b2b_call *call, char side, int code, const char *why)
{
	if (call->end_reason[0])
		return;
	call->hangup_side = side;
	if (code && !call->answer_ms)
		call->sip_code = code;
	snprintf(call->end_reason, sizeof(call->end_reason), "%s", why);
}

/* ---- media glue ---- */

static void ai_start(struct b2b_call *call);
static void ai_dtmf(struct b2b_call *call, char digit);
static void ai_lead_answered(struct b2b_call *call);
static void fb_queue_failed(struct b2b_call *call, int status, const char *phrase);
static void fb_play_done(struct b2b_call *call);
static void ai_keep_line(struct b2b_call *call, const char *role, const char *text);

/* The AI leg's fallback, in order: apology prompt, then the queue, else let go. */
enum fb_state {
	FB_NONE = 0,
	FB_PROMPT, /* the apology is playing to the customer */
	FB_QUEUE,  /* the customer is being moved to the agent queue (leg b) */
	FB_DONE,   /* released (BYE sent), or bridged to the queue */
};
#define PLAY_FALLBACK 1u /* media_session_play id of the apology */
#define PLAY_AMD      2u /* media_session_play id of the message for a machine */

static const char *amd_name(int verdict)
{
	switch (verdict) {
	case MEDIA_AMD_HUMAN:
		return "human";
	case MEDIA_AMD_MACHINE:
		return "machine";
	default:
		return "unsure";
	}
}

static uint8_t remote_pt_of(const struct b2b_sdp *sdp, enum media_codec c)
{
	for (unsigned i = 0; i < sdp->n_codecs; i++) {
		if (b2b_sdp_codec_of(&sdp->codecs[i]) == c)
			return sdp->codecs[i].pt;
	}
	return b2b_codec_static_pt(c);
}

/* Pushes what we know of this leg's far end to its media session. `live` = media may
 * flow (the leg is answered, or early media was sent). */
void b2b_leg_media_apply(struct b2b_leg *leg, int live)
{
	if (!leg->ms)
		return;
	struct media_stream_params p;
	memset(&p, 0, sizeof(p));
	p.pt_dtmf = -1;
	p.pt_cn = -1;
	p.codec = leg->codec;
	p.pt_audio = b2b_codec_static_pt(leg->codec);
	if (leg->have_remote) {
		const struct b2b_sdp *r = leg->remote;
		p.remote_rtp.sin_family = AF_INET;
		p.remote_rtp.sin_addr.s_addr = r->addr_be;
		p.remote_rtp.sin_port = htons(r->port);
		p.remote_rtcp = p.remote_rtp;
		p.remote_rtcp.sin_port =
		    htons(r->rtcp_port ? r->rtcp_port : (uint16_t)(r->port + 1));
		int they_recv = (r->dir == B2B_DIR_SENDRECV || r->dir == B2B_DIR_RECVONLY) &&
		                r->addr_be != 0 && r->port != 0;
		int they_send = r->dir == B2B_DIR_SENDRECV || r->dir == B2B_DIR_SENDONLY;
		p.send = live && they_recv;
		p.recv = live && they_send;
		p.pt_audio = remote_pt_of(r, leg->codec);
		p.pt_cn = r->pt_cn;
		p.pt_dtmf = leg->pt_dtmf;
		if (leg->secure) {
			p.srtp_tx.suite = leg->suite;
			memcpy(p.srtp_tx.key, leg->key, sizeof(leg->key));
			for (unsigned i = 0; i < r->n_crypto; i++) {
				if (r->crypto[i].suite == leg->suite) {
					p.srtp_rx.suite = leg->suite;
					memcpy(p.srtp_rx.key, r->crypto[i].key,
					       sizeof(p.srtp_rx.key));
					break;
				}
			}
		}
	}
	p.latch = leg->trunk->latch;
	media_session_update(leg->ms, &p);
}

int b2b_leg_media_create(struct b2b_leg *leg, struct media_session *pin)
{
	int rc = media_session_create(leg->id, pin, &leg->ms, &leg->local_port);
	if (rc)
		log_err("call", "leg %c: no media port: %s", leg->side, strerror(-rc));
	return rc;
}

/* ---- SDP we send ---- */

static int trunk_allows_codec(const struct conf_trunk *t, enum media_codec c)
{
	for (size_t i = 0; i < t->n_codecs; i++) {
		if (b2b_codec_parse(t->codecs[i]) == c)
			return 1;
	}
	return 0;
}

static int trunk_allows_suite(const struct conf_trunk *t, enum media_srtp_suite s)
{
	if (!t->n_srtp_suites)
		return 1;
	for (size_t i = 0; i < t->n_srtp_suites; i++) {
		if (media_srtp_suite_parse(t->srtp_suites[i]) == s)
			return 1;
	}
	return 0;
}

static char *sdp_render(struct b2b_leg *leg, const struct b2b_sdp_local *l)
{
	struct strbuf sb;
	str_init(&sb);
	if (b2b_sdp_build(l, &sb)) {
		str_deinit(&sb);
		return NULL;
	}
	(void)leg;
	return str_steal(&sb);
}

static void local_base(struct b2b_leg *leg, struct b2b_sdp_local *l)
{
	memset(l, 0, sizeof(*l));
	l->addr = media_advertise_address();
	l->port = leg->local_port;
	if (!leg->sess_id)
		leg->sess_id = (clock_wall_ms() << 8) ^ leg->id;
	l->sess_id = leg->sess_id;
	l->version = ++leg->sdp_version;
	l->dir = B2B_DIR_SENDRECV;
}

/* A full offer on this leg: `prefer` first, then the trunk's other codecs (only those in
 * `only_mask`, a bit per enum media_codec, when it is not 0); SRTP as the trunk says;
 * fresh keys. Caller frees. */
char *b2b_leg_offer(struct b2b_leg *leg, enum media_codec prefer, unsigned only_mask)
{
	const struct conf_trunk *t = leg->trunk;
	struct b2b_sdp_local l;
	local_base(leg, &l);
	/* The other leg's codec first, when this trunk takes it: no transcoding then. */
	if (prefer != MEDIA_CODEC_NONE && trunk_allows_codec(t, prefer))
		l.codecs[l.n_codecs++] = prefer;
	for (size_t i = 0; i < t->n_codecs && l.n_codecs < 4; i++) {
		enum media_codec c = b2b_codec_parse(t->codecs[i]);
		if (c != MEDIA_CODEC_NONE && c != prefer && (!only_mask || (only_mask & (1u << c))))
			l.codecs[l.n_codecs++] = c;
	}
	if (!l.n_codecs)
		l.codecs[l.n_codecs++] = MEDIA_CODEC_PCMU;
	l.pt_dtmf = (int)t->dtmf_pt;
	leg->pt_dtmf = l.pt_dtmf;
	leg->n_offer_suites = 0;
	/* An established SRTP leg is re-offered SRTP (never fall back to RTP/AVP). */
	if (t->srtp == CONF_SRTP_MANDATORY || leg->secure) {
		l.secure = 1;
		for (size_t i = 0; i < t->n_srtp_suites && leg->n_offer_suites < 4; i++) {
			enum media_srtp_suite s = media_srtp_suite_parse(t->srtp_suites[i]);
			if (s == MEDIA_SRTP_NONE)
				continue;
			unsigned k = leg->n_offer_suites++;
			leg->offer_suites[k] = s;
			media_srtp_keygen(s, leg->offer_keys[k]);
			l.suites[k] = s;
			l.keys[k] = leg->offer_keys[k];
		}
		l.n_suites = leg->n_offer_suites;
	}
	leg->offer_pending = 1;
	return sdp_render(leg, &l);
}

/* Bit mask (1 << enum media_codec) of the codecs an SDP lists. */
static unsigned sdp_codec_mask(const struct b2b_sdp *sdp)
{
	unsigned m = 0;
	for (unsigned i = 0; i < sdp->n_codecs; i++)
		m |= 1u << b2b_sdp_codec_of(&sdp->codecs[i]);
	return m & ~1u;
}

/* Takes an answer to our offer on this leg. 0 or -EPROTO (no usable codec/crypto). */
int b2b_leg_take_answer(struct b2b_leg *leg, const struct b2b_sdp *ans)
{
	enum media_codec codec = MEDIA_CODEC_NONE;
	for (unsigned i = 0; i < ans->n_codecs && codec == MEDIA_CODEC_NONE; i++)
		codec = b2b_sdp_codec_of(&ans->codecs[i]);
	if (codec == MEDIA_CODEC_NONE || ans->port == 0)
		return -EPROTO;
	leg->codec = codec;
	leg->secure = 0;
	if (ans->secure) {
		int found = 0;
		for (unsigned i = 0; i < ans->n_crypto && !found; i++) {
			unsigned tag = ans->crypto[i].tag;
			if (tag >= 1 && tag <= leg->n_offer_suites &&
			    leg->offer_suites[tag - 1] == ans->crypto[i].suite) {
				leg->secure = 1;
				leg->suite = ans->crypto[i].suite;
				memcpy(leg->key, leg->offer_keys[tag - 1], sizeof(leg->key));
				found = 1;
			}
		}
		if (!found)
			return -EPROTO;
	} else if (leg->trunk->srtp == CONF_SRTP_MANDATORY) {
		return -EPROTO;
	}
	if (b2b_leg_keep_remote(leg, ans))
		return -ENOMEM;
	leg->offer_pending = 0;
	return 0;
}

/* Decides how we answer an offer on this leg: codec (optionally forced), telephone-event
 * PT (the offerer's), crypto. 0, -ENOTSUP (no common codec), -EACCES (SRTP policy). */
static int leg_accept_offer(struct b2b_leg *leg, const struct b2b_sdp *offer,
                            enum media_codec force)
{
	const struct conf_trunk *t = leg->trunk;
	enum media_codec codec = MEDIA_CODEC_NONE;
	for (unsigned i = 0; i < offer->n_codecs && codec == MEDIA_CODEC_NONE; i++) {
		enum media_codec c = b2b_sdp_codec_of(&offer->codecs[i]);
		if (c == MEDIA_CODEC_NONE || !trunk_allows_codec(t, c))
			continue;
		if (force != MEDIA_CODEC_NONE && c != force)
			continue;
		codec = c;
	}
	if (codec == MEDIA_CODEC_NONE)
		return -ENOTSUP;
	int secure = 0;
	enum media_srtp_suite suite = MEDIA_SRTP_NONE;
	unsigned tag = 0;
	if (offer->secure) {
		for (unsigned i = 0; i < offer->n_crypto && !secure; i++) {
			if (trunk_allows_suite(t, offer->crypto[i].suite)) {
				secure = 1;
				suite = offer->crypto[i].suite;
				tag = offer->crypto[i].tag;
			}
		}
		if (!secure)
			return -EACCES;
	} else if (t->srtp == CONF_SRTP_MANDATORY) {
		return -EACCES;
	}
	leg->codec = codec;
	leg->pt_dtmf = offer->pt_dtmf;
	/* New keys for every answer (re-INVITEs re-key). */
	if (secure)
		media_srtp_keygen(suite, leg->key);
	leg->secure = secure;
	leg->suite = suite;
	leg->crypto_tag = tag;
	return b2b_leg_keep_remote(leg, offer);
}

int b2b_leg_keep_remote(struct b2b_leg *leg, const struct b2b_sdp *sdp)
{
	if (!leg->remote && !(leg->remote = mem_alloc(sizeof(*leg->remote))))
		return -ENOMEM;
	if (leg->remote != sdp)
		*leg->remote = *sdp;
	leg->have_remote = 1;
	return 0;
}

void b2b_leg_drop_remote(struct b2b_leg *leg)
{
	mem_free(leg->remote);
	leg->remote = NULL;
	leg->have_remote = 0;
}

/* Our answer text for the offer accepted on this leg; `dir` from the offer's direction. */
static char *leg_make_answer(struct b2b_leg *leg)
{
	struct b2b_sdp_local l;
	local_base(leg, &l);
	l.codecs[0] = leg->codec;
	l.n_codecs = 1;
	l.pt_dtmf = leg->pt_dtmf;
	static const struct b2b_sdp none; /* no remote SDP: answer as to a hold */
	const struct b2b_sdp *r = leg->remote ? leg->remote : &none;
	switch (r->addr_be == 0 ? B2B_DIR_SENDONLY : r->dir) {
	case B2B_DIR_SENDONLY:
		l.dir = B2B_DIR_RECVONLY;
		break;
	case B2B_DIR_RECVONLY:
		l.dir = B2B_DIR_SENDONLY;
		break;
	case B2B_DIR_INACTIVE:
		l.dir = B2B_DIR_INACTIVE;
		break;
	default:
		l.dir = B2B_DIR_SENDRECV;
	}
	if (leg->secure) {
		l.secure = 1;
		l.suites[0] = leg->suite;
		l.keys[0] = leg->key;
		l.n_suites = 1;
		l.crypto_tag = leg->crypto_tag;
	}
	l.answer_to = r;
	return sdp_render(leg, &l);
}

int b2b_sip_sdp(const sip_t *sip, struct b2b_sdp *out, const char **why)
{
	if (!sip || !sip->sip_payload || !sip->sip_payload->pl_len)
		return 1; /* no SDP */
	return b2b_sdp_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len, out, why) ? -1
	                                                                                    : 0;
}

/* On TLS nua would put a sips: Contact, which a peer that called a sip: URI (or that we
 * call with a sip: URI) may refuse to use; name the TLS transport explicitly instead. */
void b2b_leg_set_contact(struct b2b_leg *leg, int tls)
{
	leg->contact[0] = '\0';
	if (tls && b2b_g.conf->sip.tls_port)
		snprintf(leg->contact, sizeof(leg->contact), "<sip:%s:%u;transport=tls>",
		         b2b_g.our_host, b2b_g.conf->sip.tls_port);
}

/* ---- identity ---- */

static void url_user(const url_t *u, char *out, size_t len)
{
	snprintf(out, len, "%s", u && u->url_user ? u->url_user : "");
}

static void copy_display(const char *d, char *out, size_t len)
{
	out[0] = '\0';
	if (!d)
		return;
	size_t n = strlen(d);
	if (n >= 2 && d[0] == '"' && d[n - 1] == '"') {
		d++;
		n -= 2;
	}
	if (n >= len)
		n = len - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = (d[i] == '"' || d[i] == '\\' || d[i] == '\r' || d[i] == '\n') ? ' ' : d[i];
	out[n] = '\0';
}

/* Caller number and display name: PAI, then RPID, then From. */
static void caller_of(const sip_t *sip, char *num, size_t nlen, char *disp, size_t dlen)
{
	const sip_p_asserted_identity_t *pai = sip_p_asserted_identity(sip);
	const sip_remote_party_id_t *rpid = sip_remote_party_id(sip);
	if (pai && pai->paid_url->url_user) {
		url_user(pai->paid_url, num, nlen);
		copy_display(pai->paid_display, disp, dlen);
	} else if (rpid && rpid->rpid_url->url_user) {
		url_user(rpid->rpid_url, num, nlen);
		copy_display(rpid->rpid_display, disp, dlen);
	} else {
		url_user(sip->sip_from ? sip->sip_from->a_url : NULL, num, nlen);
		copy_display(sip->sip_from ? sip->sip_from->a_display : NULL, disp, dlen);
	}
	if (!disp[0] && sip->sip_from)
		copy_display(sip->sip_from->a_display, disp, dlen);
}

static int privacy_id(const sip_t *sip)
{
	const sip_remote_party_id_t *rpid = sip_remote_party_id(sip);
	if (rpid) {
		const char *pv = msg_params_find(rpid->rpid_params, "privacy=");
		if (pv && (strcasecmp(pv, "full") == 0 || strcasecmp(pv, "uri") == 0))
			return 1;
	}
	if (!sip->sip_privacy)
		return 0;
	for (const msg_param_t *v = sip->sip_privacy->priv_values; v && *v; v++) {
		if (strcasecmp(*v, "id") == 0 || strcasecmp(*v, "user") == 0 ||
		    strcasecmp(*v, "header") == 0)
			return 1;
	}
	return 0;
}

static char *diversion_of(const sip_t *sip)
{
	struct strbuf sb;
	str_init(&sb);
	for (const sip_unknown_t *u = sip->sip_unknown; u; u = u->un_next) {
		if (u->un_name && u->un_value && strcasecmp(u->un_name, "Diversion") == 0)
			str_printf(&sb, "Diversion: %s\r\n", u->un_value);
	}
	return sb.len ? str_steal(&sb) : (str_deinit(&sb), NULL);
}

/* Identity of a far end as a P-Asserted-Identity value, from a response or request. */
static void identity_of(const sip_t *sip, char *out, size_t len)
{
	const sip_p_asserted_identity_t *pai = sip_p_asserted_identity(sip);
	const sip_remote_party_id_t *rpid = sip_remote_party_id(sip);
	char num[64] = "", disp[64] = "";
	if (pai && pai->paid_url->url_user) {
		url_user(pai->paid_url, num, sizeof(num));
		copy_display(pai->paid_display, disp, sizeof(disp));
	} else if (rpid && rpid->rpid_url->url_user) {
		url_user(rpid->rpid_url, num, sizeof(num));
		copy_display(rpid->rpid_display, disp, sizeof(disp));
	} else {
		return;
	}
	for (char *p = num; *p; p++) {
		if (!(*p == '+' || (*p >= '0' && *p <= '9') || *p == '*' || *p == '#'))
			return; /* not a number: keep nothing */
	}
	snprintf(out, len, "%s%s%s<sip:%s@%s>", disp[0] ? "\"" : "", disp, disp[0] ? "\" " : "",
	         num, b2b_g.our_host);
}

/* ---- call lifetime ---- */

static void cdr_leg(json_t *legs, struct b2b_leg *leg)
{
	struct media_stats st;
	memset(&st, 0, sizeof(st));
	if (leg->ms)
		media_session_stats(leg->ms, &st);
	if (st.lost > 0)
		metric_add(
		    metric_get(METRIC_COUNTER, "vacs_media_lost_packets_total",
		               "RTP packets lost toward vacsd (sequence gaps), per ended leg"),
		    (uint64_t)st.lost);
	json_t *o = json_object();
	char side[2] = {leg->side, '\0'};
	json_object_set_new(o, "side", json_string(side));
	json_object_set_new(o, "trunk", json_string(leg->trunk ? leg->trunk->name : ""));
	json_object_set_new(o, "codec", json_string(b2b_codec_name(leg->codec)));
	json_object_set_new(o, "srtp",
	                    json_string(leg->secure ? media_srtp_suite_name(leg->suite) : "none"));
	json_object_set_new(o, "remote", json_string(leg->have_remote ? leg->remote->addr : ""));
	json_object_set_new(o, "remote_port",
	                    json_integer(leg->have_remote ? leg->remote->port : 0));
	json_object_set_new(o, "local_port", json_integer(leg->local_port));
	json_object_set_new(o, "final_status", json_integer(leg->final_status));
	json_object_set_new(o, "pkts_in", json_integer((json_int_t)st.pkts_in));
	json_object_set_new(o, "pkts_out", json_integer((json_int_t)st.pkts_out));
	json_object_set_new(o, "bytes_in", json_integer((json_int_t)st.bytes_in));
	json_object_set_new(o, "bytes_out", json_integer((json_int_t)st.bytes_out));
	json_object_set_new(o, "dropped", json_integer((json_int_t)st.pkts_dropped));
	json_object_set_new(o, "lost", json_integer(st.lost));
	json_object_set_new(o, "jitter_ms", json_integer(st.jitter_ms));
	json_object_set_new(o, "remote_lost", json_integer(st.remote_lost));
	json_object_set_new(o, "remote_jitter_ms", json_integer(st.remote_jitter_ms));
	json_object_set_new(o, "rtcp_in", json_integer(st.rtcp_in));
	json_object_set_new(o, "rtcp_out", json_integer(st.rtcp_out));
	json_object_set_new(o, "dtmf_events", json_integer(st.dtmf_events));
	json_array_append_new(legs, o);
}

static void write_cdr(struct b2b_call *c)
{
	char ts[3][32];
	clock_format_iso(c->start_ms, ts[0], sizeof(ts[0]));
	clock_format_iso(c->answer_ms, ts[1], sizeof(ts[1]));
	clock_format_iso(c->end_ms, ts[2], sizeof(ts[2]));
	json_t *o = json_object();
	json_object_set_new(o, "call_id", json_string(c->id));
	json_object_set_new(o, "direction", json_string(c->outbound ? "outbound" : "inbound"));
	if (c->outbound) {
		json_object_set_new(o, "lead_id", json_string(c->lead_id));
		json_object_set_new(o, "ref", json_string(c->ref));
	}
	json_object_set_new(o, "from_trunk", json_string(c->a.trunk ? c->a.trunk->name : ""));
	json_object_set_new(o, "to_trunk", json_string(c->b.trunk ? c->b.trunk->name : ""));
	json_object_set_new(o, "route", json_string(c->route ? c->route : ""));
	json_object_set_new(o, "caller", json_string(c->caller));
	json_object_set_new(o, "caller_e164", json_string(c->caller_e164));
	json_object_set_new(o, "caller_name", json_string(c->caller_display));
	json_object_set_new(o, "called", json_string(c->called));
	json_object_set_new(o, "called_e164", json_string(c->called_e164));
	json_object_set_new(o, "target", json_string(c->target));
	json_object_set_new(o, "privacy", json_boolean(c->privacy_id));
	json_object_set_new(o, "start", json_string(ts[0]));
	json_object_set_new(o, "answer", c->answer_ms ? json_string(ts[1]) : json_null());
	json_object_set_new(o, "end", json_string(ts[2]));
	json_object_set_new(o, "ring_ms",
	                    json_integer(c->ring_ms ? (json_int_t)(c->ring_ms - c->start_ms) : -1));
	json_object_set_new(
	    o, "duration_ms",
	    json_integer(c->answer_ms ? (json_int_t)(c->end_ms - c->answer_ms) : 0));
	json_object_set_new(o, "sip_code", json_integer(c->sip_code));
	json_object_set_new(o, "end_reason", json_string(c->end_reason));
	char hs[2] = {c->hangup_side ? c->hangup_side : 'n', '\0'};
	json_object_set_new(o, "hangup_side", json_string(hs[0] == 'n' ? "vacsd" : hs));
	json_object_set_new(o, "dtmf_digits", json_integer(c->dtmf_digits));
	json_object_set_new(o, "recording",
	                    c->recording[0] ? json_string(c->recording) : json_null());
	if (c->ai_id[0] || c->ai_end[0]) {
		json_t *ai = json_object();
		json_object_set_new(ai, "vapi_call_id", json_string(c->ai_id));
		json_object_set_new(ai, "format", json_string(media_ai_format_name(c->ai_format)));
		json_object_set_new(ai, "ended_reason", json_string(c->ai_end));
		json_object_set_new(ai, "transcripts", json_integer(c->transcripts));
		json_object_set_new(ai, "transcript",
		                    c->ai_lines ? json_incref(c->ai_lines) : json_array());
		/* From the answer to the assistant's first speech: what the customer waits. */
		json_object_set_new(ai, "answer_to_speech_ms",
		                    c->ai_speech_ms && c->answer_ms &&
		                            c->ai_speech_ms >= c->answer_ms
		                        ? json_integer((json_int_t)(c->ai_speech_ms - c->answer_ms))
		                        : json_null());
		json_object_set_new(ai, "summary",
		                    c->ai_summary ? json_string(c->ai_summary) : json_null());
		json_object_set_new(ai, "cost",
		                    c->ai_cost >= 0 ? json_real(c->ai_cost) : json_null());
		json_object_set_new(ai, "fallback",
		                    c->fb_why[0] ? json_string(c->fb_why) : json_null());
		json_object_set_new(o, "ai", ai);
	} else {
		json_object_set_new(o, "ai", json_null());
	}
	if (c->amd_verdict) {
		json_t *amd = json_object();
		json_object_set_new(amd, "verdict", json_string(amd_name(c->amd_verdict)));
		json_object_set_new(amd, "ms", json_integer(c->amd_ms));
		json_object_set_new(amd, "reason", json_string(c->amd_why ? c->amd_why : ""));
		json_object_set_new(o, "amd", amd);
	} else {
		json_object_set_new(o, "amd", json_null());
	}
	json_t *legs = json_array();
	if (c->a.trunk)
		cdr_leg(legs, &c->a);
	if (c->b.trunk)
		cdr_leg(legs, &c->b);
	if (c->x.trunk)
		cdr_leg(legs, &c->x);
	if (c->t.trunk)
		cdr_leg(legs, &c->t);
	b2b_xfer_record(c, o);
	b2b_refer_record(c, o);
	json_object_set_new(o, "legs", legs);
	char *line = json_dumps(o, JSON_COMPACT);
	b2b_life_emit(c, B2B_LIFE_ENDED, NULL, o);
	b2b_store_put(DB_REC_CALL, o); /* steals o */
	if (!line)
		return;
	size_t n = strlen(line);
	line[n] = '\n'; /* json_dumps leaves room for the NUL; replace it, write n + 1 */
	if (b2b_g.cdr_fd >= 0 && write(b2b_g.cdr_fd, line, n + 1) != (ssize_t)(n + 1))
		log_err("cdr", "write failed: %s", strerror(errno));
	line[n] = '\0';
	free(line);
}

void b2b_timer_drop(su_timer_t **t)
{
	if (*t) {
		su_timer_destroy(*t);
		*t = NULL;
	}
}

static void stop_timer(struct b2b_leg *leg)
{
	b2b_timer_drop(&leg->invite_timer);
}

static void leg_deinit(struct b2b_leg *leg)
{
	b2b_timer_drop(&leg->invite_timer);
	b2b_timer_drop(&leg->refresh_timer);
	media_session_destroy(leg->ms);
	leg->ms = NULL;
	b2b_leg_drop_remote(leg);
}

static void call_finish(struct b2b_call *call)
{
	call->end_ms = clock_wall_ms();
	if (!call->end_reason[0])
		b2b_call_set_end(call, 'n', 0, "ended");
	b2b_ai_drop(call);
	b2b_timer_drop(&call->ring_timer);
	if (call->ai_id[0] || call->ai_end[0] || call->xfer)
		b2b_call_step(call, "call.ended", call->end_reason);
	write_cdr(call);
	log_info("call", "ended: %s (code %d, side %c), %llu ms talk", call->end_reason,
	         call->sip_code, call->hangup_side ? call->hangup_side : 'n',
	         (unsigned long long)(call->answer_ms ? call->end_ms - call->answer_ms : 0));
	leg_deinit(&call->a);
	leg_deinit(&call->b);
	leg_deinit(&call->x);
	leg_deinit(&call->t);
	b2b_xfer_free(call);
	b2b_refer_free(call);
	json_decref(call->refers);
	struct b2b_trunk_rt *rt = b2b_trunk_rt(call->counted);
	if (rt && rt->active_calls)
		rt->active_calls--;
	if (call->prev)
		call->prev->next = call->next;
	else
		b2b_g.calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	b2b_g.n_calls--;
	metric_inc(metric_get(METRIC_COUNTER, "vacs_calls_ended_total", "Calls ended"));
	mem_free(call->diversion);
	mem_free(call->variables);
	mem_free(call->ai_summary);
	json_decref(call->ai_lines);
	conf_unref(call->conf);
	mem_free(call);
}

void b2b_call_maybe_finish(struct b2b_call *call)
{
	if (!call->a.nh && !call->b.nh && !call->x.nh && !call->t.nh)
		call_finish(call);
}

void b2b_leg_bye(struct b2b_leg *leg, const char *reason)
{
	if (!leg->nh || leg->state == LEG_ENDING || leg->state == LEG_GONE)
		return;
	switch (leg->state) {
	case LEG_UP:
	case LEG_ANSWERED:
		nua_bye(leg->nh, TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
		break;
	case LEG_CALLING:
	case LEG_EARLY:
		if (leg->side != 'a') /* b, x and t are ours (UAC) */
			nua_cancel(leg->nh, TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
		else
			nua_respond(leg->nh, 480, "Temporarily Unavailable",
			            TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
		break;
	default:
		nua_handle_destroy(leg->nh);
		leg->nh = NULL;
		leg->state = LEG_GONE;
		return;
	}
	leg->state = LEG_ENDING;
}

void b2b_call_hangup(struct b2b_call *call, int cause, const char *text)
{
	char reason[160];
	snprintf(reason, sizeof(reason), "SIP;cause=%d;text=\"%s\"", cause, text);
	b2b_call_set_end(call, 'n', cause, text);
	b2b_leg_bye(&call->a, reason);
	b2b_leg_bye(&call->b, reason);
	b2b_leg_bye(&call->t, reason);
	b2b_call_maybe_finish(call);
}

void b2b_calls_hangup_all(const char *why)
{
	struct b2b_call *c = b2b_g.calls;
	while (c) {
		struct b2b_call *next = c->next;
		b2b_call_hangup(c, 503, why);
		c = next;
	}
}

static void leg_ack(struct b2b_leg *leg, const sip_t *sip);
static void leg_refresh_method(struct b2b_leg *leg, const sip_t *sip);
static void leg_plan_refresh(struct b2b_leg *leg, const sip_t *sip, int uac);

/* ---- the outbound leg ---- */

static void on_invite_timeout(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg);

static void send_b_invite(struct b2b_call *call);

static void b_fail_over_or_fail(struct b2b_call *call, int status, const char *phrase)
{
	struct b2b_leg *b = &call->b;
	struct b2b_leg *a = &call->a;
	if (b->nh) {
		nua_handle_destroy(b->nh);
		b->nh = NULL;
	}
	stop_timer(b);
	int wanted = call->outbound ? !call->end_reason[0] : a->nh && a->state != LEG_ENDING;
	int retry = (status == 503 || status == 408 || status == 500) &&
	            b->node + 1 < call->n_nodes && wanted;
	if (retry) {
		b2b_trunk_node_failed(b->trunk, call->node_order[b->node]);
		b->node++;
		log_info("call", "%s node failed with %d %s; trying node %s:%u", b->trunk->name,
		         status, phrase, b->trunk->nodes[call->node_order[b->node]].host,
		         b->trunk->nodes[call->node_order[b->node]].port);
		send_b_invite(call);
		return;
	}
	b->state = LEG_GONE;
	b->final_status = status;
	if (call->fb_state == FB_QUEUE) {
		fb_queue_failed(call, status, phrase);
		return;
	}
	if (call->outbound)
		b2b_call_set_end(call, 'b', status, phrase ? phrase : "lead not reached");
	if (a->nh && (a->state == LEG_CALLING || a->state == LEG_EARLY)) {
		int code = status;
		if (code == 401 || code == 407)
			code = 403;
		if (code < 300 || code > 699)
			code = 500;
		b2b_call_set_end(call, 'b', status, phrase ? phrase : "callee failed");
		nua_respond(a->nh, code, phrase ? phrase : "Failed", LEG_CONTACT(a), TAG_END());
		a->state = LEG_ENDING;
	}
	b2b_call_maybe_finish(call);
}

int b2b_leg_invite(struct b2b_leg *leg, const char *ruri, const char *from, enum media_codec prefer,
                   struct strbuf *hdr, int privacy)
{
	const struct conf_trunk *t = leg->trunk;
	char to[300];
	snprintf(to, sizeof(to), "<%s>", ruri);
	if (hdr->len >= 2)
		hdr->p[hdr->len -= 2] =
		    '\0'; /* SIPTAG_HEADER_STR takes lines without the last CRLF */
	char *offer = b2b_leg_offer(leg, prefer, 0);
	leg->nh = offer ? nua_handle(b2b_g.nua, leg, NUTAG_URL(ruri), SIPTAG_TO_STR(to),
	                             SIPTAG_FROM_STR(from), TAG_END())
	                : NULL;
	if (!leg->nh) {
		mem_free(offer);
		return -ENOMEM;
	}
	leg->state = LEG_CALLING;
	leg->auth_tries = 0;
	b2b_leg_set_contact(leg, t->transport == CONF_TP_TLS);
	nua_invite(leg->nh, SIPTAG_CONTENT_TYPE_STR(SDP_TYPE), SIPTAG_PAYLOAD_STR(offer),
	           LEG_CONTACT(leg), TAG_IF(hdr->len, SIPTAG_HEADER_STR(hdr->p)),
	           TAG_IF(privacy, SIPTAG_PRIVACY_STR("id")),
	           NUTAG_SESSION_TIMER(t->session_expires_s), NUTAG_MIN_SE(t->min_se_s),
	           NUTAG_SESSION_REFRESHER(nua_remote_refresher), NUTAG_UPDATE_REFRESH(1),
	           SIPTAG_SUPPORTED_STR(t->rel100 ? "timer, 100rel" : "timer"), TAG_END());
	mem_free(offer);
	return 0;
}

static void send_b_invite(struct b2b_call *call)
{
	struct b2b_leg *b = &call->b;
	struct b2b_leg *a = &call->a;
	const struct conf_trunk *t = b->trunk;
	unsigned node = call->node_order[b->node];
	char ruri[256], from[300];
	b2b_trunk_uri(t, node, call->target, ruri, sizeof(ruri));

	char num[64];
	if (b2b_number_egress(&t->numbering,
	                      call->caller_e164[0] ? call->caller_e164 : call->caller, num,
	                      sizeof(num)))
		snprintf(num, sizeof(num), "%s", call->caller);
	/* "Display" prefix for From, PAI and RPID (empty when there is no name). */
	char disp[80] = "";
	if (call->caller_display[0])
		snprintf(disp, sizeof(disp), "\"%s\" ", call->caller_display);
	if (call->privacy_id)
		snprintf(from, sizeof(from), "\"Anonymous\" <sip:anonymous@anonymous.invalid>");
	else
		snprintf(from, sizeof(from), "%s<sip:%s@%s>", disp, num[0] ? num : "anonymous",
		         b2b_g.our_host);

	struct strbuf hdr;
	str_init(&hdr);
	if (num[0]) {
		str_printf(&hdr, "P-Asserted-Identity: %s<sip:%s@%s>\r\n", disp, num,
		           b2b_g.our_host);
		if (t->type == CONF_TRUNK_CUCM)
			str_printf(&hdr,
			           "Remote-Party-ID: "
			           "%s<sip:%s@%s>;party=calling;screen=yes;privacy=%s\r\n",
			           disp, num, b2b_g.our_host, call->privacy_id ? "full" : "off");
	}
	if (call->diversion)
		str_puts(&hdr, call->diversion);
	/* The caller's codec first, then the trunk's others: PCMU and PCMA legs are
	 * converted into each other, so a callee that takes only the other law still
	 * gets a call. */
	int rc = hdr.oom
	             ? -ENOMEM
	             : b2b_leg_invite(b, ruri, from, a->have_remote ? a->codec : MEDIA_CODEC_NONE,
	                              &hdr, call->privacy_id);
	str_deinit(&hdr);
	if (rc) {
		b_fail_over_or_fail(call, 500, "Internal Error");
		return;
	}
	log_info("call", "INVITE %s via trunk %s (node %u)", ruri, t->name, node);
	if (t->invite_timeout_s) {
		b->invite_timer =
		    su_timer_create(su_root_task(b2b_g.root), t->invite_timeout_s * 1000);
		if (b->invite_timer)
			su_timer_set(b->invite_timer, on_invite_timeout, b);
	}
}

static void on_invite_timeout(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
	(void)magic;
	(void)t;
	struct b2b_leg *b = arg;
	struct b2b_call *call = b->call;
	log_set_call(call->id);
	stop_timer(b);
	if (b->state != LEG_CALLING)
		return;
	log_warn("call", "no answer from %s within %u s", b->trunk->name,
	         b->trunk->invite_timeout_s);
	if (b->nh)
		nua_cancel(b->nh, TAG_END());
	b_fail_over_or_fail(call, 408, "Request Timeout");
	log_set_call(NULL);
}

/* ---- answering the caller ---- */

/* Before the caller gets our answer: use the callee's codec on both legs when the caller
 * offered it, so no conversion is needed. */
static void a_follow_codec(struct b2b_call *call)
{
	struct b2b_leg *a = &call->a, *b = &call->b;
	if (!a->have_remote || a->early_answered || a->codec == b->codec)
		return;
	if (sdp_codec_mask(a->remote) & (1u << b->codec) &&
	    trunk_allows_codec(a->trunk, b->codec)) {
		struct b2b_sdp offer = *a->remote;
		leg_accept_offer(a, &offer, b->codec);
	}
}

/* Sends a 18x to the caller: with our answer (early media / local ringback) when the
 * caller offered, else a plain 180. */
static void a_progress(struct b2b_call *call, int with_media, int ringback)
{
	struct b2b_leg *a = &call->a;
	if (!a->nh || (a->state != LEG_CALLING && a->state != LEG_EARLY))
		return;
	char ident[256] = "";
	if (call->b.peer_identity[0])
		snprintf(ident, sizeof(ident), "%s", call->b.peer_identity);
	if (with_media && a->have_remote) {
		char *sdp = a->early_answered ? NULL : leg_make_answer(a);
		if (!a->early_answered) {
			if (!sdp)
				return;
			nua_respond(a->nh, SIP_183_SESSION_PROGRESS, LEG_CONTACT(a),
			            SIPTAG_CONTENT_TYPE_STR(SDP_TYPE), SIPTAG_PAYLOAD_STR(sdp),
			            TAG_IF(ident[0], SIPTAG_P_ASSERTED_IDENTITY_STR(ident)),
			            TAG_END());
			a->early_answered = 1;
			a->state = LEG_EARLY;
			mem_free(sdp);
		}
		b2b_leg_media_apply(a, 1);
		/* The caller hears the ringback of the country its trunk is in. */
		const char *cc = a->trunk ? a->trunk->numbering.country_code : NULL;
		enum media_tone rb = media_ringback_for_country(cc ? (unsigned)atoi(cc) : 1u);
		media_session_tone(a->ms, ringback ? rb : MEDIA_TONE_NONE);
		return;
	}
	if (a->state == LEG_CALLING && !a->early_answered) {
		nua_respond(a->nh, SIP_180_RINGING, LEG_CONTACT(a),
		            TAG_IF(ident[0], SIPTAG_P_ASSERTED_IDENTITY_STR(ident)), TAG_END());
		a->state = LEG_EARLY;
	}
}

static void b_answered(struct b2b_call *call, const sip_t *sip)
{
	struct b2b_leg *a = &call->a, *b = &call->b;
	struct b2b_sdp ans;
	const char *why = NULL;
	int pr = b2b_sip_sdp(sip, &ans, &why);
	int early = b->state == LEG_EARLY && b->have_remote;
	b->state = LEG_UP;
	b->final_status = 200;
	stop_timer(b);
	leg_refresh_method(b, sip);
	leg_plan_refresh(b, sip, 1);
	/* A 200 without SDP is fine when the answer came in a (reliable) 18x. */
	if (pr > 0 && early && b->have_remote) {
		pr = 0;
		ans = *b->remote;
	}
	if (pr != 0 || b2b_leg_take_answer(b, &ans) != 0) {
		log_warn("call", "callee answered without a usable SDP answer (%s)",
		         pr > 0 ? "none"
		         : why  ? why
		                : "no common codec or crypto");
		b2b_count_reject("bad_sdp");
		b2b_call_set_end(call, 'b', 488, "callee answer unusable");
		b2b_leg_bye(b, "SIP;cause=488;text=\"Unusable SDP answer\"");
		if (a->nh && a->state != LEG_ENDING) {
			nua_respond(a->nh, SIP_488_NOT_ACCEPTABLE, TAG_END());
			a->state = LEG_ENDING;
		}
		return;
	}
	b2b_leg_media_apply(b, 1);
	if (call->fb_state == FB_QUEUE)
		call->fb_state = FB_DONE;
	if (call->fb_state == FB_DONE && b2b_leg_answered(a)) {
		/* The agent queue took a caller whose AI leg broke mid-call. */
		media_session_tone(a->ms, MEDIA_TONE_NONE);
		media_session_bridge(a->ms, b->ms);
		log_info("call", "fallback: caller bridged to %s %s", b->trunk->name, call->target);
		return;
	}
	call->answer_ms = clock_wall_ms();
	call->sip_code = 200;
	metric_inc(metric_get(METRIC_COUNTER, "vacs_calls_answered_total", "Calls answered"));
	b2b_life_emit(call, B2B_LIFE_ANSWERED, NULL, NULL);
	if (call->outbound) {
		ai_lead_answered(call);
		return;
	}
	if (!a->nh || a->state == LEG_ENDING)
		return;
	char ident[256] = "";
	identity_of(sip, ident, sizeof(ident));
	if (ident[0])
		snprintf(b->peer_identity, sizeof(b->peer_identity), "%s", ident);
	char *sdp = NULL;
	a_follow_codec(call);
	if (a->have_remote) {
		/* After a 183 the 200 repeats the same answer (same o= version): a caller that
		 * took it from the 183 ignores the copy (RFC 3261 13.2.1), one that did not
		 * PRACK an unreliable 183 needs it. */
		if (a->early_answered)
			a->sdp_version--;
		sdp = leg_make_answer(a);
	} else {
		sdp = b2b_leg_offer(a, b->codec, 1u << b->codec);
	}
	media_session_tone(a->ms, MEDIA_TONE_NONE);
	media_session_bridge(a->ms, b->ms);
	b2b_call_record_start(call);
	/* Who answered, a person or a machine: from the called party's first seconds. */
	if (call->route_cfg && call->route_cfg->amd && b->ms)
		media_session_amd(b->ms);
	const struct conf_trunk *t = a->trunk;
	nua_respond(a->nh, SIP_200_OK, LEG_CONTACT(a),
	            TAG_IF(sdp, SIPTAG_CONTENT_TYPE_STR(SDP_TYPE)),
	            TAG_IF(sdp, SIPTAG_PAYLOAD_STR(sdp)),
	            TAG_IF(b->peer_identity[0], SIPTAG_P_ASSERTED_IDENTITY_STR(b->peer_identity)),
	            TAG_IF(t->session_expires_s, NUTAG_SESSION_TIMER(t->session_expires_s)),
	            TAG_IF(t->session_expires_s, NUTAG_MIN_SE(t->min_se_s)), TAG_END());
	mem_free(sdp);
	a->state = LEG_ANSWERED;
	a->final_status = 200;
	if (a->have_remote)
		b2b_leg_media_apply(a, 1);
}

static void on_b_response(struct b2b_call *call, int status, const char *phrase, const sip_t *sip)
{
	struct b2b_leg *b = &call->b;
	if (b->state == LEG_ENDING || b->state == LEG_GONE) {
		if (status >= 200 && status < 300 && b->nh)
			nua_bye(b->nh, TAG_END()); /* answered after we gave up */
		return;
	}
	if (b->state == LEG_UP) { /* response to a re-INVITE of ours (refresh) */
		if (status >= 200)
			b->refresh_pending = 0;
		return;
	}
	if (status < 200) {
		if (status == 100)
			return;
		stop_timer(b);
		if (!call->ring_ms)
			call->ring_ms = clock_wall_ms();
		if (sip) {
			char ident[256] = "";
			identity_of(sip, ident, sizeof(ident));
			if (ident[0])
				snprintf(b->peer_identity, sizeof(b->peer_identity), "%s", ident);
		}
		struct b2b_sdp early;
		const char *why = NULL;
		if (b2b_sip_sdp(sip, &early, &why) == 0 && b2b_leg_take_answer(b, &early) == 0) {
			b->state = LEG_EARLY;
			b2b_leg_media_apply(b, 1);
			if (call->a.ms)
				media_session_bridge(call->a.ms, b->ms);
			a_follow_codec(call);
			a_progress(call, 1, 0);
		} else {
			/* No early media from the callee: ringback of our own for an early-offer
			 * caller, a plain 180 for a delayed-offer one. */
			a_progress(call, call->a.have_remote && !call->a.early_answered, 1);
		}
		/* Outbound: the VAPI call is created while the lead's phone rings. */
		if (call->outbound && !call->ai && !call->ai_end[0])
			ai_start(call);
		return;
	}
	if (status < 300) {
		b_answered(call, sip);
		return;
	}
	if ((status == 401 || status == 407) && sip && b->auth_tries < 2 &&
	    b2b_trunk_authenticate(b->trunk, b->nh, sip)) {
		b->auth_tries++;
		return;
	}
	b_fail_over_or_fail(call, status, phrase);
}

/* ---- requests on established legs ---- */

/* ACKs a 2xx to an INVITE of ours (nua's auto-ACK is off). A 2xx carrying an offer —
 * the answer to nua's SDP-less session-refresh re-INVITE — gets our answer in the ACK;
 * a 2xx to our own offer gets a plain ACK. */
static void leg_ack(struct b2b_leg *leg, const sip_t *sip)
{
	char *sdp = NULL;
	if (leg->refresh_pending) {
		leg->refresh_pending = 0; /* the answer repeats what we had */
	} else if (leg->state == LEG_UP && !leg->offer_pending) {
		struct b2b_sdp offer;
		const char *why = NULL;
		if (b2b_sip_sdp(sip, &offer, &why) == 0 &&
		    leg_accept_offer(leg, &offer, leg->codec) == 0) {
			sdp = leg_make_answer(leg);
			b2b_leg_media_apply(leg, 1);
		}
	}
	nua_ack(leg->nh, TAG_IF(sdp, SIPTAG_CONTENT_TYPE_STR(SDP_TYPE)),
	        TAG_IF(sdp, SIPTAG_PAYLOAD_STR(sdp)), LEG_CONTACT(leg), TAG_END());
	mem_free(sdp);
}

static int allows_update(const sip_t *sip)
{
	int update = 0;
	for (const msg_param_t *m = sip && sip->sip_allow ? sip->sip_allow->k_items : NULL; m && *m;
	     m++)
		update |= strcasecmp(*m, "UPDATE") == 0;
	return update;
}

/* Session refresh by UPDATE toward a peer that allows UPDATE; nua does it. */
static void leg_refresh_method(struct b2b_leg *leg, const sip_t *sip)
{
	nua_set_hparams(leg->nh, NUTAG_UPDATE_REFRESH(allows_update(sip)), TAG_END());
}

static void on_refresh_timer(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
	(void)magic;
	(void)t;
	struct b2b_leg *leg = arg;
	if (leg->state != LEG_UP || !leg->nh || leg->offer_pending || leg->refresh_pending)
		return;
	log_set_call(leg->call->id);
	/* RFC 4028 7.4: the refresh re-INVITE repeats our last SDP (same o= version). */
	leg->sdp_version--;
	char *sdp = leg_make_answer(leg);
	if (sdp) {
		leg->refresh_pending = 1;
		nua_invite(leg->nh, SIPTAG_CONTENT_TYPE_STR(SDP_TYPE), SIPTAG_PAYLOAD_STR(sdp),
		           LEG_CONTACT(leg), TAG_END());
		mem_free(sdp);
		log_debug("call", "leg %c: session refresh re-INVITE", leg->side);
	}
	log_set_call(NULL);
}

/* When this leg's negotiated refresher is us and the peer does not allow UPDATE, we
 * refresh with a re-INVITE carrying our SDP ourselves, before nua's own SDP-less one
 * (nua refreshes at interval/2 +- 5 s; ours goes 10 s earlier and resets nua's timer). */
static void leg_plan_refresh(struct b2b_leg *leg, const sip_t *sip, int uac)
{
	const sip_session_expires_t *x = sip ? sip->sip_session_expires : NULL;
	if (!x || !x->x_delta || allows_update(sip))
		return;
	const char *who = x->x_refresher ? x->x_refresher : (uac ? "uas" : "uac");
	if (strcasecmp(who, uac ? "uac" : "uas") != 0)
		return;
	unsigned period_ms = (unsigned)(x->x_delta / 2 > 15 ? x->x_delta / 2 - 10 : 5) * 1000u;
	leg->refresh_ms = period_ms;
	if (!leg->refresh_timer)
		leg->refresh_timer = su_timer_create(su_root_task(b2b_g.root), period_ms);
	if (leg->refresh_timer)
		su_timer_set_interval(leg->refresh_timer, on_refresh_timer, leg, period_ms);
}

void b2b_leg_session_timers(struct b2b_leg *leg, const sip_t *sip, int uac)
{
	leg_refresh_method(leg, sip);
	leg_plan_refresh(leg, sip, uac);
}

void b2b_leg_rebind(struct b2b_leg *leg)
{
	if (leg->nh)
		nua_handle_bind(leg->nh, leg);
	b2b_timer_drop(&leg->invite_timer); /* only unanswered legs have one */
	if (leg->refresh_timer) {
		b2b_timer_drop(&leg->refresh_timer);
		leg->refresh_timer = su_timer_create(su_root_task(b2b_g.root), leg->refresh_ms);
		if (leg->refresh_timer)
			su_timer_set_interval(leg->refresh_timer, on_refresh_timer, leg,
			                      leg->refresh_ms);
	}
}

/* The answer to our re-INVITE that moved this leg to a new media port (refer.c joins
 * two calls' parties on one media worker): the leg is re-pointed and bridged. */
static void on_reoffer_answer(struct b2b_leg *leg, int status, const sip_t *sip)
{
	struct b2b_sdp ans;
	const char *why = NULL;
	leg->reoffer = 0;
	struct b2b_leg *peer = b2b_leg_peer(leg);
	if (status >= 300 || b2b_sip_sdp(sip, &ans, &why) != 0 ||
	    b2b_leg_take_answer(leg, &ans) != 0) {
		log_warn("call", "leg %c: the re-INVITE to the joined party failed (%d)", leg->side,
		         status);
		b2b_call_hangup(leg->call, status >= 300 ? status : 488,
		                "joined party unreachable");
		return;
	}
	b2b_leg_media_apply(leg, 1);
	if (peer && peer->ms)
		media_session_bridge(leg->ms, peer->ms);
	log_info("call", "leg %c re-pointed to media port %u and bridged", leg->side,
	         leg->local_port);
}

static void on_reinvite(struct b2b_leg *leg, const sip_t *sip)
{
	struct b2b_sdp offer;
	const char *why = NULL;
	int pr = b2b_sip_sdp(sip, &offer, &why);
	char *sdp = NULL;
	if (pr < 0) {
		b2b_count_reject("bad_sdp");
		char w[128];
		snprintf(w, sizeof(w), "399 %s \"%s\"", b2b_g.our_host, why ? why : "bad SDP");
		nua_respond(leg->nh, SIP_488_NOT_ACCEPTABLE, SIPTAG_WARNING_STR(w), TAG_END());
		return;
	}
	if (pr > 0) {
		/* SDP-less re-INVITE: a fresh, complete sendrecv offer; the answer comes in
		 * the ACK (RFC 6337 5.1). */
		sdp = b2b_leg_offer(leg, leg->codec, 0);
	} else {
		int rc = leg_accept_offer(leg, &offer, leg->codec);
		/* Keep this leg's codec if offered; else the other G.711 law (the media
		 * workers convert between PCMU and PCMA legs). */
		if (rc == -ENOTSUP)
			rc = leg_accept_offer(leg, &offer, MEDIA_CODEC_NONE);
		if (rc) {
			b2b_count_reject(rc == -ENOTSUP ? "no_codec" : "srtp_policy");
			nua_respond(leg->nh, SIP_488_NOT_ACCEPTABLE, TAG_END());
			return;
		}
		leg->offer_pending = 0;
		sdp = leg_make_answer(leg);
		b2b_leg_media_apply(leg, 1);
	}
	if (!sdp) {
		nua_respond(leg->nh, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return;
	}
	nua_respond(leg->nh, SIP_200_OK, LEG_CONTACT(leg), SIPTAG_CONTENT_TYPE_STR(SDP_TYPE),
	            SIPTAG_PAYLOAD_STR(sdp), TAG_END());
	mem_free(sdp);
	log_info("call", "leg %c re-INVITE %s answered", leg->side,
	         pr > 0 ? "without SDP" : "with SDP");
}

static void on_ack(struct b2b_leg *leg, const sip_t *sip)
{
	if (leg->state == LEG_ANSWERED)
		leg->state = LEG_UP;
	if (!leg->offer_pending)
		return;
	struct b2b_sdp ans;
	const char *why = NULL;
	int pr = b2b_sip_sdp(sip, &ans, &why);
	if (pr != 0 || b2b_leg_take_answer(leg, &ans) != 0) {
		log_warn("call", "leg %c: ACK without a usable SDP answer (%s): ending the call",
		         leg->side,
		         pr > 0 ? "no SDP"
		         : why  ? why
		                : "no common codec or crypto");
		b2b_count_reject(pr > 0 ? "ack_without_sdp" : "bad_sdp");
		b2b_call_hangup(leg->call, 488, pr > 0 ? "No SDP in ACK" : "Unusable SDP in ACK");
		return;
	}
	b2b_leg_media_apply(leg, 1);
	struct b2b_leg *o = b2b_leg_peer(leg);
	if (o && o->ms)
		media_session_bridge(leg->ms, o->ms);
}

static void on_bye(struct b2b_leg *leg, const sip_t *sip)
{
	struct b2b_call *call = leg->call;
	char reason[200] = "";
	if (sip && sip->sip_reason) {
		char *r = sip_header_as_string(b2b_g.home, (const sip_header_t *)sip->sip_reason);
		if (r) {
			snprintf(reason, sizeof(reason), "%s", r);
			su_free(b2b_g.home, r);
		}
	}
	b2b_call_set_end(call, leg->side, 0,
	                 leg->side == 'a' ? "caller hung up"
	                 : call->outbound ? "lead hung up"
	                                  : "callee hung up");
	leg->state = LEG_ENDING;
	b2b_leg_bye(other_leg(leg), reason[0] ? reason : NULL);
	if (leg == b2b_call_customer(call))
		b2b_xfer_customer_gone(call);
}

static void on_terminated(struct b2b_leg *leg, int status, const char *phrase)
{
	struct b2b_call *call = leg->call;
	if (leg->nh) {
		nua_handle_destroy(leg->nh);
		leg->nh = NULL;
	}
	int was = leg->state;
	leg->state = LEG_GONE;
	stop_timer(leg);
	struct b2b_leg *o = other_leg(leg);
	if (was != LEG_ENDING)
		b2b_call_set_end(call, leg->side, status, phrase ? phrase : "leg terminated");
	if (leg == b2b_call_customer(call))
		b2b_xfer_customer_gone(call);
	if (was != LEG_ENDING && o->nh) {
		/* This leg ended on its own (session timer expiry, transport error, nua's
		 * BYE): carry the reason to the other side. */
		char reason[200];
		snprintf(reason, sizeof(reason), "SIP;cause=%d;text=\"%s\"",
		         status >= 300 ? status : 200, phrase ? phrase : "");
		b2b_leg_bye(o, reason);
	}
	b2b_call_maybe_finish(call);
}

void b2b_call_event(nua_event_t ev, int status, const char *phrase, struct b2b_leg *leg,
                    const sip_t *sip, tagi_t tags[])
{
	struct b2b_call *call = leg->call;
	/* A carrier may challenge in-dialog requests too (BYE, refresh re-INVITE, UPDATE):
	 * answered with the trunk's credentials, for its realm only. */
	if ((ev == nua_r_bye || ev == nua_r_update ||
	     (ev == nua_r_invite && leg->state != LEG_CALLING)) &&
	    (status == 401 || status == 407) && sip && leg->nh && leg->auth_tries < 4 &&
	    b2b_trunk_authenticate(leg->trunk, leg->nh, sip)) {
		leg->auth_tries++;
		return;
	}
	if ((call->refer || leg->side == 't') &&
	    b2b_refer_event(ev, status, phrase, leg, sip, tags))
		return;
	switch (ev) {
	case nua_i_refer:
		b2b_refer_request(leg, sip, tags);
		break;
	case nua_i_invite:
		on_reinvite(leg, sip);
		break;
	case nua_r_invite:
		if (status >= 200 && status < 300 && leg->nh)
			leg_ack(leg, sip);
		else if (status >= 300)
			leg->refresh_pending = 0;
		if (leg->reoffer && status >= 200)
			on_reoffer_answer(leg, status, sip);
		else if (leg->side == 'b')
			on_b_response(call, status, phrase, sip);
		else if (leg->side == 'x')
			b2b_xfer_response(call, status, phrase, sip);
		break;
	case nua_i_ack:
		on_ack(leg, sip);
		break;
	case nua_i_bye:
		if (leg->side == 'x')
			b2b_xfer_leg_bye(call);
		else
			on_bye(leg, sip);
		break;
	case nua_i_cancel:
		b2b_call_set_end(call, 'a', 487, "caller cancelled");
		leg->state = LEG_ENDING;
		b2b_leg_bye(&call->b, NULL);
		break;
	case nua_i_state: {
		int cs = -1;
		tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
		if (cs == nua_callstate_terminated && leg->side == 'x')
			b2b_xfer_leg_gone(call, status, phrase);
		else if (cs == nua_callstate_terminated)
			on_terminated(leg, status, phrase);
		break;
	}
	case nua_i_prack:
	case nua_i_update:
	case nua_i_info:
	case nua_r_bye:
	case nua_r_cancel:
	case nua_r_prack:
	case nua_i_active:
	case nua_i_terminated:
	case nua_r_update:
	default:
		break;
	}
}

/* ---- a new call ---- */

/* A call object with its two (idle) legs, holding the running configuration. */
static struct b2b_call *call_new(const char *id)
{
	struct b2b_call *call = mem_zalloc(sizeof(*call));
	if (!call)
		return NULL;
	call->conf = conf_ref(b2b_g.conf);
	snprintf(call->id, sizeof(call->id), "%s", id);
	call->start_ms = clock_wall_ms();
	call->a.call = call->b.call = call;
	call->a.side = 'a';
	call->b.side = 'b';
	call->x.call = call;
	call->x.side = 'x';
	call->t.call = call;
	call->t.side = 't';
	call->a.id = ++b2b_g.next_leg_id;
	call->b.id = ++b2b_g.next_leg_id;
	call->x.id = ++b2b_g.next_leg_id;
	call->t.id = ++b2b_g.next_leg_id;
	call->a.pt_dtmf = call->b.pt_dtmf = call->x.pt_dtmf = call->t.pt_dtmf = -1;
	call->ai_cost = -1;
	return call;
}

/* Puts the call on the sip thread's list and counts it on trunk t (its caller's, or the
 * one an outbound call goes out on). */
static void call_link(struct b2b_call *call, const struct conf_trunk *t)
{
	struct b2b_trunk_rt *rt = b2b_trunk_rt(t);
	call->counted = t;
	call->next = b2b_g.calls;
	if (b2b_g.calls)
		b2b_g.calls->prev = call;
	b2b_g.calls = call;
	b2b_g.n_calls++;
	if (rt)
		rt->active_calls++;
}

/* "Silence" for sources outside every ACL: no final answer at all. sofia 1.12 has
 * already sent its automatic 100 Trying and answers 480 when a handle is destroyed, so
 * the handle is kept until the sender's INVITE transaction has timed out (Timer B, 32 s)
 * and destroyed then. Past the ring's size the oldest handle goes early. */
#define SILENCE_SLOTS   1024
#define SILENCE_HOLD_MS 40000u
static struct {
	nua_handle_t *nh;
	uint64_t until_ms;
} silenced[SILENCE_SLOTS];
static unsigned silence_next;

void b2b_silence(nua_handle_t *nh)
{
	unsigned i = silence_next++ % SILENCE_SLOTS;
	if (silenced[i].nh)
		nua_handle_destroy(silenced[i].nh);
	silenced[i].nh = nh;
	silenced[i].until_ms = b2b_now_ms() + SILENCE_HOLD_MS;
}

void b2b_silence_expire(uint64_t now_ms, int all)
{
	for (unsigned i = 0; i < SILENCE_SLOTS; i++) {
		if (silenced[i].nh && (all || now_ms >= silenced[i].until_ms)) {
			nua_handle_destroy(silenced[i].nh);
			silenced[i].nh = NULL;
		}
	}
}

static unsigned count_headers(const sip_t *sip)
{
	unsigned n = 0;
	for (const msg_header_t *h = (const msg_header_t *)sip->sip_request; h && n < 100000;
	     h = h->sh_succ)
		n++;
	return n;
}

static void reject(nua_handle_t *nh, int code, const char *phrase, const char *reason,
                   const char *warning)
{
	b2b_count_reject(reason);
	log_info("call", "rejected with %d %s (%s)", code, phrase, reason);
	/* The handle goes when nua reports it terminated (the transaction must live on
	 * to absorb the ACK). */
	nua_respond(nh, code, phrase, TAG_IF(warning, SIPTAG_WARNING_STR(warning)), TAG_END());
}

/* Token bucket for new calls: max_cps tokens a second, at most one second's worth kept.
 * An overloaded sip thread answers late and the carrier retransmits, which makes it
 * worse; a 503 at once sheds the call cheaply. */
static int cps_admit(unsigned max_cps)
{
	static uint64_t last_us;
	static double tokens;
	if (!max_cps)
		return 1;
	uint64_t now = clock_now_us();
	if (!last_us)
		tokens = max_cps;
	else
		tokens += (double)(now - last_us) * max_cps / 1e6;
	last_us = now;
	if (tokens > max_cps)
		tokens = max_cps;
	if (tokens < 1.0)
		return 0;
	tokens -= 1.0;
	return 1;
}

void b2b_call_new_invite(nua_handle_t *nh, const sip_t *sip)
{
	const struct conf *cfg = b2b_g.conf;
	metric_inc(metric_get(METRIC_COUNTER, "vacs_sip_invites_total", "New INVITEs received"));
	if (count_headers(sip) > cfg->sip.max_headers) {
		reject(nh, 400, "Too Many Headers", "too_many_headers", NULL);
		return;
	}
	msg_t *msg = nua_current_request(b2b_g.nua);
	su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
	uint32_t src = 0;
	uint16_t sport = 0;
	if (ai && ai->ai_family == AF_INET) {
		const struct sockaddr_in *sin =
		    (const struct sockaddr_in *)(const void *)ai->ai_addr;
		src = ntohl(sin->sin_addr.s_addr);
		sport = ntohs(sin->sin_port);
	}
	const struct conf_trunk *from = conf_trunk_by_source(cfg, src, sport);
	if (!from) {
		if (cfg->sip.unknown_source == CONF_UNKNOWN_DROP) {
			b2b_count_reject("acl");
			b2b_silence(nh);
			return;
		}
		reject(nh, SIP_403_FORBIDDEN, "acl", NULL);
		return;
	}
	if (b2b_g.draining) {
		reject(nh, SIP_503_SERVICE_UNAVAILABLE, "draining", NULL);
		return;
	}
	if (!cps_admit(cfg->sip.max_cps)) {
		nua_respond(nh, SIP_503_SERVICE_UNAVAILABLE, SIPTAG_RETRY_AFTER_STR("1"),
		            TAG_END());
		b2b_count_reject("cps_limit");
		return;
	}
	struct b2b_trunk_rt *frt = b2b_trunk_rt(from);
	if (from->max_calls && frt && frt->active_calls >= from->max_calls) {
		reject(nh, 503, "Trunk Capacity Reached", "capacity", NULL);
		return;
	}
	/* Session-Expires below this trunk's Min-SE: 422 (RFC 4028). */
	if (sip->sip_session_expires && from->min_se_s &&
	    sip->sip_session_expires->x_delta < from->min_se_s && sip->sip_supported &&
	    sip_has_feature(sip->sip_supported, "timer")) {
		char mse[16];
		snprintf(mse, sizeof(mse), "%u", from->min_se_s);
		b2b_count_reject("session_interval");
		nua_respond(nh, SIP_422_SESSION_TIMER_TOO_SMALL, SIPTAG_MIN_SE_STR(mse), TAG_END());
		return;
	}
	struct b2b_sdp offer;
	const char *why = NULL;
	int pr = b2b_sip_sdp(sip, &offer, &why);
	if (pr < 0) {
		char w[128];
		snprintf(w, sizeof(w), "399 %s \"%s\"", b2b_g.our_host, why ? why : "bad SDP");
		reject(nh, SIP_400_BAD_REQUEST, "bad_sdp", w);
		return;
	}

	struct b2b_call *call = call_new(sip->sip_call_id ? sip->sip_call_id->i_id : "?");
	if (!call) {
		reject(nh, SIP_500_INTERNAL_SERVER_ERROR, "oom", NULL);
		return;
	}
	call->a.trunk = from;
	call->a.nh = nh;
	call->a.state = LEG_CALLING;
	nua_handle_bind(nh, &call->a);
	leg_refresh_method(&call->a, sip);
	leg_plan_refresh(&call->a, sip, 0);
	b2b_leg_set_contact(&call->a,
	                    sip->sip_via && sip->sip_via->v_protocol &&
	                        strcasecmp(sip->sip_via->v_protocol, "SIP/2.0/TLS") == 0 &&
	                        sip->sip_request->rq_url->url_type != url_sips);
	call_link(call, from);
	metric_inc(metric_get(METRIC_COUNTER, "vacs_calls_total", "Calls accepted for routing"));

	/* Numbers: the DID from the Request-URI (To for registration trunks), the caller
	 * from PAI > RPID > From. Both forms are kept for the record. */
	const url_t *ru = sip->sip_request->rq_url;
	if (ru && ru->url_user &&
	    !(from->register_enable && from->auth.user &&
	      strcmp(ru->url_user, from->auth.user) == 0))
		url_user(ru, call->called, sizeof(call->called));
	else
		url_user(sip->sip_to ? sip->sip_to->a_url : NULL, call->called,
		         sizeof(call->called));
	caller_of(sip, call->caller, sizeof(call->caller), call->caller_display,
	          sizeof(call->caller_display));
	call->privacy_id = privacy_id(sip);
	call->diversion = diversion_of(sip);
	if (b2b_number_normalise(&from->numbering, call->called, call->called_e164,
	                         sizeof(call->called_e164)) < 0)
		snprintf(call->called_e164, sizeof(call->called_e164), "%s", call->called);
	if (b2b_number_normalise(&from->numbering, call->caller, call->caller_e164,
	                         sizeof(call->caller_e164)) < 0)
		snprintf(call->caller_e164, sizeof(call->caller_e164), "%s", call->caller);

	log_info("call", "INVITE from trunk %s: %s (%s) -> %s (%s)%s", from->name, call->caller,
	         call->caller_e164, call->called, call->called_e164,
	         pr > 0 ? ", delayed offer" : "");
	b2b_life_emit(call, B2B_LIFE_STARTED, NULL, NULL);

	const struct conf_route *route =
	    b2b_route_find(cfg, from->name, call->called_e164, call->caller_e164, call->target,
	                   sizeof(call->target));
	int code = 0;
	const char *phrase = NULL, *reason = NULL;
	if (!route) {
		code = 404, phrase = "No Route", reason = "no_route";
	} else if (route->target_type == CONF_ROUTE_AI || !route->to_trunk) {
		if (!b2b_g.vapi_up)
			code = 503, phrase = "AI Leg Not Available", reason = "no_ai";
		else if (pr > 0) /* the AI's audio format follows the caller's codec */
			code = 488, phrase = "Not Acceptable Here", reason = "ai_delayed_offer";
	}
	if (!code) {
		call->route = route->name;
		call->route_cfg = route;
		call->fallback = &route->fallback;
		call->b.trunk = route->to_trunk;
		if (pr == 0) {
			int rc = leg_accept_offer(&call->a, &offer, MEDIA_CODEC_NONE);
			/* Prefer a codec the far trunk takes too (no conversion needed). */
			if (rc == 0 && call->b.trunk &&
			    !trunk_allows_codec(call->b.trunk, call->a.codec)) {
				for (unsigned i = 0; i < offer.n_codecs; i++) {
					enum media_codec c = b2b_sdp_codec_of(&offer.codecs[i]);
					if (c != MEDIA_CODEC_NONE &&
					    trunk_allows_codec(call->b.trunk, c) &&
					    trunk_allows_codec(call->a.trunk, c)) {
						rc = leg_accept_offer(&call->a, &offer, c);
						break;
					}
				}
			}
			if (rc == -ENOTSUP)
				code = 488, phrase = "Not Acceptable Here", reason = "no_codec";
			else if (rc)
				code = 488, phrase = "Not Acceptable Here", reason = "srtp_policy";
		}
	}
	int to_ai = route && !route->to_trunk;
	if (!code && (b2b_leg_media_create(&call->a, NULL) ||
	              (!to_ai && b2b_leg_media_create(&call->b, call->a.ms))))
		code = 503, phrase = "No Media Ports", reason = "media_ports";
	if (code) {
		b2b_count_reject(reason);
		b2b_call_set_end(call, 'n', code, reason);
		log_info("call", "rejected with %d %s (%s)", code, phrase, reason);
		nua_respond(nh, code, phrase, TAG_END());
		call->a.state = LEG_ENDING;
		return; /* nua_i_state terminated frees the call */
	}
	if (call->a.have_remote)
		b2b_leg_media_apply(&call->a, 0);
	if (to_ai) {
		/* The caller hears ringing until the assistant's socket is up, then 200. */
		nua_respond(nh, SIP_180_RINGING, LEG_CONTACT(&call->a), TAG_END());
		ai_start(call);
		return;
	}
	call->n_nodes = b2b_trunk_node_order(call->b.trunk, call->node_order, 16);
	if (!call->n_nodes) {
		b_fail_over_or_fail(call, 503, "No Trunk Nodes");
		return;
	}
	send_b_invite(call);
}

/* Outbound: AMD heard an answering machine (end = 0: the verdict, whose why is "beep"
 * when it came on the beep; end = 1: MEDIA_EV_AMD_END, the greeting is over); the
 * originator's amd_action acts. HANGUP ends the call at the verdict; MESSAGE waits for the
 * beep or the end of the greeting, stops the assistant and plays amd_prompt (a configured
 * prompt, else the WAV loaded now); the call ends when it has played (PLAY_AMD). */
static void amd_act(struct b2b_call *call, const char *why, int end)
{
	struct b2b_leg *b = &call->b;
	if (call->amd_action == B2B_AMD_AI || b->state >= LEG_ENDING || call->end_reason[0] ||
	    call->amd_acted)
		return;
	if (call->amd_action == B2B_AMD_MESSAGE && !end && (!why || strcmp(why, "beep") != 0)) {
		log_info("call", "answering machine: the message waits for the greeting's end");
		return;
	}
	call->amd_acted = 1;
	if (call->amd_action == B2B_AMD_HANGUP) {
		b2b_call_step(call, "amd.hangup", "");
		b2b_call_hangup(call, 16, "answering machine");
		return;
	}
	struct media_prompt *pr = call->amd_prompt[0] ? b2b_prompt_find(call->amd_prompt) : NULL;
	struct media_prompt *own = NULL;
	char err[200] = "no amd_prompt";
	if (!pr && call->amd_prompt[0] &&
	    media_prompt_load(call->amd_prompt, &own, err, sizeof(err)) == 0)
		pr = own;
	int rc = pr && b->ms ? 0 : -ENOENT;
	if (!rc) {
		b2b_ai_drop(call);
		rc = media_session_play(b->ms, pr, 0, PLAY_AMD);
	}
	media_prompt_unref(own);
	if (rc) {
		log_warn("call", "answering machine: cannot play the message (%s): hanging up",
		         pr ? strerror(-rc) : err);
		b2b_call_hangup(call, 16, "answering machine: no message to leave");
		return;
	}
	log_info("call", "answering machine: playing %s", call->amd_prompt);
	b2b_call_step(call, "amd.message", call->amd_prompt);
}

void b2b_call_media_events(void)
{
	struct media_event ev[32];
	unsigned n;
	while ((n = media_events_poll(ev, 32)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			struct b2b_call *c;
			struct b2b_leg *leg = NULL;
			if (ev[i].type == MEDIA_EV_RECORDING) {
				b2b_record_event(&ev[i]);
				continue;
			}
			for (c = b2b_g.calls; c && !leg; c = c->next) {
				if (c->a.id == ev[i].owner)
					leg = &c->a;
				else if (c->b.id == ev[i].owner)
					leg = &c->b;
				else if (c->x.id == ev[i].owner)
					leg = &c->x;
				else if (c->t.id == ev[i].owner)
					leg = &c->t;
			}
			if (!leg)
				continue;
			/* A leg that is leaving (a referrer after its BYE) no longer speaks for
			 * the call: its silence is not the call's. */
			if (ev[i].type == MEDIA_EV_TIMEOUT &&
			    (!leg->nh || leg->state >= LEG_ENDING))
				continue;
			log_set_call(leg->call->id);
			if (b2b_xfer_media_event(leg->call, leg, &ev[i])) {
				log_set_call(NULL);
				continue;
			}
			if (ev[i].type == MEDIA_EV_TIMEOUT) {
				log_warn("call", "no RTP from leg %c: releasing the call",
				         leg->side);
				metric_inc(metric_get(METRIC_COUNTER, "vacs_media_timeouts_total",
				                      "Calls released for lack of RTP"));
				b2b_call_hangup(leg->call, 408, "RTP timeout");
			} else if (ev[i].type == MEDIA_EV_AMD) {
				struct b2b_call *ac = leg->call;
				ac->amd_verdict = ev[i].result;
				ac->amd_ms = ev[i].ms;
				ac->amd_why = ev[i].why;
				log_info("call", "AMD: leg %c is %s after %u ms (%s)", leg->side,
				         amd_name(ev[i].result), ev[i].ms,
				         ev[i].why ? ev[i].why : "");
				if (ac->outbound && ev[i].result == MEDIA_AMD_MACHINE)
					amd_act(ac, ev[i].why, 0);
			} else if (ev[i].type == MEDIA_EV_AMD_END) {
				log_info("call", "AMD: the greeting ended (%s) after %u ms",
				         ev[i].why ? ev[i].why : "", ev[i].ms);
				if (leg->call->outbound)
					amd_act(leg->call, ev[i].why, 1);
			} else if (ev[i].type == MEDIA_EV_PLAY_DONE && ev[i].id == PLAY_AMD) {
				b2b_call_hangup(leg->call, 16, "answering machine: message left");
			} else if (ev[i].type == MEDIA_EV_PLAY_DONE && ev[i].id == PLAY_FALLBACK) {
				fb_play_done(leg->call);
			} else if (ev[i].type == MEDIA_EV_DTMF) {
				leg->call->dtmf_digits++;
				if (leg->call->ai && leg == b2b_call_customer(leg->call))
					ai_dtmf(leg->call, ev[i].digit);
				log_info("call", "DTMF '%c' (%u ms) from leg %c", ev[i].digit,
				         ev[i].duration_ms, leg->side);
			}
			log_set_call(NULL);
		}
	}
}

/* ---- the AI leg (VAPI) ---- */

void b2b_ai_drop(struct b2b_call *call)
{
	b2b_timer_drop(&call->ai_timer);
	if (call->ai) {
		vapi_call_end(call->ai); /* end-call on the socket, then close */
		call->ai = NULL;
	}
	/* The leg stops feeding the port: a prompt, a tone or a bridge is heard next. */
	if (call->ai_on && call->ai_on->ms)
		media_ai_detach(call->ai_on->ms);
	call->ai_on = NULL;
}

/* A callback job for a customer the AI could not serve (the data layer turns it into a
 * dialer job): spool/callbacks.jsonl. */
static void callback_job(struct b2b_call *call, const char *why)
{
	char ts[40];
	clock_format_iso(clock_wall_ms(), ts, sizeof(ts));
	json_t *o = json_object();
	json_object_set_new(o, "call_id", json_string(call->id));
	json_object_set_new(o, "number",
	                    json_string(call->outbound ? call->called_e164 : call->caller_e164));
	json_object_set_new(o, "name", json_string(call->caller_display));
	json_object_set_new(o, "route", json_string(call->route ? call->route : ""));
	json_object_set_new(o, "lead_id", json_string(call->lead_id));
	json_object_set_new(o, "reason", json_string(why));
	json_object_set_new(o, "created", json_string(ts));
	if (b2b_spool_append("callbacks.jsonl", o) == 0) {
		metric_inc(
		    metric_get(METRIC_COUNTER, "vacs_callback_jobs_total",
		               "Callback jobs written for customers the AI could not serve"));
		log_info("call", "callback job written (%s)", why);
		b2b_call_step(call, "fallback.callback", why);
	}
}

/* The end of a fallback that let the customer go: BYE (or a final answer before the
 * answer) with the reason, and the callback job when configured. */
static void fb_release(struct b2b_call *call)
{
	struct b2b_leg *c = b2b_call_customer(call);
	const char *reason = "Q.850;cause=41;text=\"AI leg failed\"";
	call->fb_state = FB_DONE;
	if (call->fallback && call->fallback->callback && (b2b_leg_answered(c) || !call->outbound))
		callback_job(call, call->fb_why);
	if (c->nh && (c->state == LEG_CALLING || c->state == LEG_EARLY) && c->side == 'a') {
		b2b_call_set_end(call, 'n', 503, "AI leg not available");
		nua_respond(c->nh, 503, "AI Leg Not Available", LEG_CONTACT(c),
		            SIPTAG_REASON_STR(reason), SIPTAG_RETRY_AFTER_STR("30"), TAG_END());
		c->state = LEG_ENDING;
	} else {
		b2b_call_set_end(call, 'n', 503,
		                 b2b_leg_answered(c) ? "AI leg failed" : "AI leg not available");
		b2b_leg_bye(c, reason);
		b2b_leg_bye(other_leg(c), reason);
	}
	b2b_call_maybe_finish(call);
}

/* Moves the caller (leg a, answered or not) to the fallback queue on leg b. */
static void fb_queue(struct b2b_call *call)
{
	const struct conf_ai_fallback *fb = call->fallback;
	struct b2b_leg *a = &call->a, *b = &call->b;
	call->fb_state = FB_QUEUE;
	b->trunk = fb->to_trunk;
	b->node = 0;
	snprintf(call->target, sizeof(call->target), "%s", fb->number);
	if (!b->ms && b2b_leg_media_create(b, a->ms)) {
		fb_release(call);
		return;
	}
	call->n_nodes = b2b_trunk_node_order(b->trunk, call->node_order, 16);
	if (!call->n_nodes) {
		fb_release(call);
		return;
	}
	/* An answered caller hears ringback while the queue rings. */
	if (b2b_leg_answered(a)) {
		const char *cc = a->trunk ? a->trunk->numbering.country_code : NULL;
		media_session_tone(a->ms, media_ringback_for_country(cc ? (unsigned)atoi(cc) : 1u));
	}
	log_info("call", "fallback: moving the caller to %s via %s", fb->number, fb->to);
	b2b_call_step(call, "fallback.queue", fb->number);
	send_b_invite(call);
}

static void fb_queue_failed(struct b2b_call *call, int status, const char *phrase)
{
	log_warn("call", "fallback queue failed with %d %s", status, phrase ? phrase : "");
	snprintf(call->fb_why, sizeof(call->fb_why), "queue failed: %d", status);
	fb_release(call);
}

/* The apology ended: on to the queue, or let the customer go. */
static void fb_play_done(struct b2b_call *call)
{
	if (call->fb_state != FB_PROMPT)
		return;
	if (call->fallback && call->fallback->to_trunk && !call->outbound)
		fb_queue(call);
	else
		fb_release(call);
}

/* Answers the inbound caller (leg a) with our SDP: the AI leg is up, or its apology
 * prompt is to be heard. */
static void answer_caller(struct b2b_call *call)
{
	struct b2b_leg *a = &call->a;
	const struct conf_trunk *t = a->trunk;
	char *sdp = leg_make_answer(a);
	nua_respond(a->nh, SIP_200_OK, LEG_CONTACT(a),
	            TAG_IF(sdp, SIPTAG_CONTENT_TYPE_STR(SDP_TYPE)),
	            TAG_IF(sdp, SIPTAG_PAYLOAD_STR(sdp)),
	            TAG_IF(t->session_expires_s, NUTAG_SESSION_TIMER(t->session_expires_s)),
	            TAG_IF(t->session_expires_s, NUTAG_MIN_SE(t->min_se_s)), TAG_END());
	mem_free(sdp);
	a->state = LEG_ANSWERED;
	a->final_status = 200;
	call->answer_ms = clock_wall_ms();
	call->sip_code = 200;
	b2b_life_emit(call, B2B_LIFE_ANSWERED, NULL, NULL);
	b2b_leg_media_apply(a, 1);
}

/* The AI leg could not be set up or broke. The configured fallback runs: the apology
 * prompt, then the agent queue, or a release with a callback job; without one the caller
 * gets 503 before the answer, a BYE after it. Never dead air, never a stuck call. */
void b2b_ai_fail(struct b2b_call *call, int status, const char *text)
{
	struct b2b_leg *c = b2b_call_customer(call);
	b2b_call_step(call, "ai.failed", text);
	log_warn("call", "AI leg failed%s%.0d: %s", status ? " with HTTP " : "", status, text);
	metric_inc(metric_get(METRIC_COUNTER, "vacs_ai_failures_total",
	                      "AI legs that could not be set up or broke"));
	snprintf(call->ai_end, sizeof(call->ai_end), "%s", text);
	b2b_ai_drop(call);
	if (call->fb_state != FB_NONE || b2b_xfer_ai_gone(call))
		return;
	snprintf(call->fb_why, sizeof(call->fb_why), "%s", text);
	const struct conf_ai_fallback *fb = call->fallback;
	/* An outbound lead still ringing is let go: no one to talk to when they answer. */
	if (call->outbound && !b2b_leg_answered(c)) {
		fb_release(call);
		return;
	}
	struct media_prompt *pr = fb && fb->prompt[0] ? b2b_prompt_find(fb->prompt) : NULL;
	if (pr && c->ms && (b2b_leg_answered(c) || (c->side == 'a' && c->have_remote))) {
		if (!b2b_leg_answered(c))
			answer_caller(call); /* to play the apology to a caller not answered yet */
		call->fb_state = FB_PROMPT;
		media_session_play(c->ms, pr, 0, PLAY_FALLBACK);
		log_info("call", "fallback: playing %s", fb->prompt);
		b2b_call_step(call, "fallback.prompt", fb->prompt);
		return;
	}
	if (fb && fb->to_trunk && !call->outbound) {
		fb_queue(call);
		return;
	}
	fb_release(call);
}

static void on_ai_timeout(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
	(void)magic;
	(void)t;
	struct b2b_call *call = (struct b2b_call *)arg;
	b2b_timer_drop(&call->ai_timer);
	log_set_call(call->id);
	b2b_ai_fail(call, 0, "connect timeout");
	log_set_call(NULL);
}

static void ai_arm_timer(struct b2b_call *call, unsigned ms)
{
	b2b_timer_drop(&call->ai_timer);
	call->ai_timer = su_timer_create(su_root_task(b2b_g.root), ms);
	if (call->ai_timer)
		su_timer_set(call->ai_timer, on_ai_timeout, (su_timer_arg_t *)call);
}

static void ai_start(struct b2b_call *call)
{
	const struct conf *cfg = call->conf;
	const struct conf_route *r = call->route_cfg;
	const char *assistant = call->assistant[0]                     ? call->assistant
	                        : r && r->assistant && r->assistant[0] ? r->assistant
	                                                               : cfg->vapi.assistant_id;
	if (!assistant || !assistant[0]) {
		b2b_ai_fail(call, 0,
		            "no assistant configured (vapi.assistant_id or the route's assistant)");
		return;
	}
	/* The lead's context for the assistant's prompt ({{caller}}, {{called}}, ...),
	 * with what the requester gave for an outbound call. */
	json_t *vars = NULL;
	if (call->variables) {
		vars = json_loads(call->variables, 0, NULL);
		if (!json_is_object(vars)) {
			json_decref(vars);
			vars = NULL;
		}
	}
	if (!vars)
		vars = json_object();
	json_object_set_new(vars, "caller", json_string(call->caller_e164));
	json_object_set_new(vars, "called", json_string(call->called_e164));
	json_object_set_new(vars, "callerName", json_string(call->caller_display));
	json_object_set_new(vars, "callId", json_string(call->id));
	json_object_set_new(vars, "direction",
	                    json_string(call->outbound ? "outbound" : "inbound"));
	if (call->lead_id[0])
		json_object_set_new(vars, "leadId", json_string(call->lead_id));
	char *vj = json_dumps(vars, JSON_COMPACT);
	json_decref(vars);
	struct b2b_leg *c = b2b_call_customer(call);
	struct vapi_call_params p;
	memset(&p, 0, sizeof(p));
	p.owner = c->id;
	p.name = call->id;
	p.assistant_id = assistant;
	p.variables_json = vj;
	p.max_duration_s = cfg->vapi.max_duration_s;
	/* Outbound, while ringing: the codec of the answer if it came early, else the one
	 * we offered first; re-created on answer if the lead's answer differs. */
	enum media_codec codec = c->codec;
	if (call->outbound && !c->have_remote && c->trunk && c->trunk->n_codecs)
		codec = b2b_codec_parse(c->trunk->codecs[0]); /* what we offered first */
	p.format = media_ai_format_for(codec);
	p.defer_connect = call->outbound;
	p.affinity = media_session_worker(c->ms);
	call->ai_format = p.format;
	int rc = vj ? vapi_call_create(&p, &call->ai) : -ENOMEM;
	free(vj);
	if (rc) {
		b2b_ai_fail(call, 0, strerror(-rc));
		return;
	}
	/* REST and WebSocket each have connect_timeout; both in a row for inbound. An
	 * outbound call arms its deadline on answer. */
	if (!call->outbound)
		ai_arm_timer(call, 2 * cfg->vapi.connect_timeout_ms);
	b2b_call_step(call, "ai.requested", assistant);
	log_info("call", "AI leg: creating the VAPI call (assistant %s, %s)", assistant,
	         media_ai_format_name(p.format));
}

/* Gives the AI leg its media: the customer's audio flows to the assistant. */
static int ai_attach(struct b2b_call *call)
{
	struct media_ai_port *port = NULL;
	int rc = media_ai_attach(b2b_call_customer(call)->ms, call->ai_format, vapi_ai_notify,
	                         vapi_call_notify_arg(call->ai), &port);
	if (!rc) {
		call->ai_on = b2b_call_customer(call);
		rc = vapi_call_connect(call->ai, port);
		if (rc)
			media_ai_port_release(port);
	}
	return rc;
}

int b2b_ai_move(struct b2b_call *call, struct b2b_leg *leg)
{
	if (!call->ai || !leg->ms || call->ai_on == leg)
		return call->ai ? 0 : -ENOENT;
	struct media_ai_port *port = NULL;
	int rc = media_ai_attach(leg->ms, call->ai_format, vapi_ai_notify,
	                         vapi_call_notify_arg(call->ai), &port);
	if (rc)
		return rc;
	rc = vapi_call_move(call->ai, port);
	if (rc) {
		media_ai_port_release(port);
		media_ai_detach(leg->ms);
		return rc;
	}
	if (call->ai_on && call->ai_on->ms)
		media_ai_detach(call->ai_on->ms);
	call->ai_on = leg;
	return 0;
}

/* Outbound: the lead answered. The VAPI call exists (created while ringing) or is on its
 * way: the socket opens now, so the assistant speaks as soon as the lead picks up. */
static void ai_lead_answered(struct b2b_call *call)
{
	struct b2b_leg *b = &call->b;
	b2b_call_record_start(call);
	if ((call->conf->outbound.amd || call->amd_action != B2B_AMD_AI) && b->ms)
		media_session_amd(b->ms);
	if (call->fb_state != FB_NONE)
		return;
	if (call->ai && media_ai_format_for(b->codec) != call->ai_format) {
		log_info("call", "the lead answered with %s: the AI leg is re-created for %s",
		         b2b_codec_name(b->codec),
		         media_ai_format_name(media_ai_format_for(b->codec)));
		b2b_ai_drop(call);
	}
	if (!call->ai) {
		ai_start(call);
		if (!call->ai)
			return;
	}
	ai_arm_timer(call, 2 * call->conf->vapi.connect_timeout_ms);
	if (ai_attach(call))
		b2b_ai_fail(call, 0, "cannot connect the media to the AI leg");
}

static void ai_connected(struct b2b_call *call, const char *id)
{
	struct b2b_leg *a = &call->a;
	b2b_timer_drop(&call->ai_timer);
	snprintf(call->ai_id, sizeof(call->ai_id), "%s", id ? id : "");
	b2b_call_step(call, "ai.connected", call->ai_id);
	if (call->outbound) {
		log_info("call", "AI leg up (VAPI call %s): %llu ms after the lead answered",
		         call->ai_id, (unsigned long long)(clock_wall_ms() - call->answer_ms));
		return;
	}
	if (!a->nh || (a->state != LEG_CALLING && a->state != LEG_EARLY)) {
		b2b_ai_drop(call);
		return;
	}
	if (ai_attach(call)) {
		b2b_ai_fail(call, 0, "cannot connect the media to the AI leg");
		return;
	}
	answer_caller(call);
	b2b_call_record_start(call);
	metric_inc(metric_get(METRIC_COUNTER, "vacs_calls_answered_total", "Calls answered"));
	log_info("call", "AI leg up (VAPI call %s): answered after %llu ms", call->ai_id,
	         (unsigned long long)(call->answer_ms - call->start_ms));
}

/* VAPI ended the call (status ended, the socket closed): the customer gets a BYE with
 * the reason. */
static void ai_ended(struct b2b_call *call, const char *why)
{
	struct b2b_leg *c = b2b_call_customer(call);
	snprintf(call->ai_end, sizeof(call->ai_end), "%s", why ? why : "ended");
	b2b_call_step(call, "ai.ended", call->ai_end);
	if (!b2b_leg_answered(c)) {
		b2b_ai_fail(call, 0, call->ai_end);
		return;
	}
	b2b_ai_drop(call);
	if (call->fb_state != FB_NONE || b2b_xfer_ai_gone(call))
		return;
	char reason[160];
	snprintf(reason, sizeof(reason), "Q.850;cause=16;text=\"%s\"", call->ai_end);
	b2b_call_set_end(call, call->outbound ? 'a' : 'b', 200, call->ai_end);
	b2b_leg_bye(c, reason);
	b2b_call_maybe_finish(call);
}

/* The socket has no DTMF channel (reference/vapi.md §1.4): a caller's key reaches the
 * assistant as text, per vapi.dtmf_text (checked at load: one %c, no other conversion). */
static void ai_dtmf(struct b2b_call *call, char digit)
{
	const char *fmt = call->conf->vapi.dtmf_text;
	if (!fmt || !fmt[0])
		return;
	char text[256];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(text, sizeof(text), fmt, digit);
#pragma GCC diagnostic pop
	vapi_call_add_message(call->ai, "user", text, 1);
}

/* A tool the assistant called (in-band, or by webhook). Returns the result text for the
 * assistant (static), or NULL with *err set when the tool is not ours or failed. */
static const char *ai_tool(struct b2b_call *call, const char *name, const char *args,
                           const char *id, const char **err)
{
	log_info("call", "assistant tool call %s (%s): %s", name, id && id[0] ? id : "-",
	         args ? args : "{}");
	*err = NULL;
	if (strcmp(name, "end_call") == 0) {
		metric_inc(metric_get(METRIC_COUNTER, "vacs_ai_tool_calls_total{tool=\"end_call\"}",
		                      "Tool calls from the assistant"));
		ai_ended(call, "assistant-ended-call");
		return "The call is being ended.";
	}
	if (strcmp(name, "transfer_to_agent") == 0) {
		metric_inc(metric_get(METRIC_COUNTER,
		                      "vacs_ai_tool_calls_total{tool=\"transfer_to_agent\"}",
		                      "Tool calls from the assistant"));
		json_t *j = json_loads(args ? args : "{}", 0, NULL);
		const char *q = json_string_value(json_object_get(j, "queue"));
		const char *r = json_string_value(json_object_get(j, "reason"));
		const char *sm = json_string_value(json_object_get(j, "summary"));
		const char *why = NULL;
		int rc = b2b_xfer_start(call, q, r, sm, "tool", &why);
		json_decref(j);
		if (rc) {
			*err = why;
			return NULL;
		}
		return "Transferring the customer to an agent now. Stay silent.";
	}
	metric_inc(metric_get(METRIC_COUNTER, "vacs_ai_tool_calls_total{tool=\"other\"}",
	                      "Tool calls from the assistant"));
	*err = "This tool is not available.";
	return NULL;
}

/* Final transcript lines are kept with the call for its record, up to a bound. */
#define AI_LINES_MAX_BYTES (32u * 1024u)
static void ai_keep_line(struct b2b_call *call, const char *role, const char *text)
{
	size_t n = (role ? strlen(role) : 0) + (text ? strlen(text) : 0);
	if (!text || call->ai_lines_bytes + n > AI_LINES_MAX_BYTES)
		return;
	if (!call->ai_lines && !(call->ai_lines = json_array()))
		return;
	json_t *o = json_object();
	uint64_t now = clock_wall_ms();
	json_object_set_new(o, "ms",
	                    json_integer((json_int_t)(call->answer_ms && now > call->answer_ms
	                                                  ? now - call->answer_ms
	                                                  : 0)));
	json_object_set_new(o, "role", json_string(role ? role : ""));
	json_object_set_new(o, "text", json_string(text));
	if (json_array_append_new(call->ai_lines, o) == 0)
		call->ai_lines_bytes += n;
}

static struct b2b_call *call_of_owner(uint64_t owner)
{
	for (struct b2b_call *c = b2b_g.calls; c; c = c->next)
		if (c->ai && b2b_call_customer(c)->id == owner)
			return c;
	return NULL;
}

void b2b_call_vapi_events(void)
{
	struct vapi_event ev[16];
	unsigned n;
	while ((n = vapi_events_poll(ev, 16)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			struct b2b_call *call = call_of_owner(ev[i].owner);
			if (!call) {
				vapi_event_free(&ev[i]);
				continue;
			}
			log_set_call(call->id);
			const char *err = NULL;
			switch (ev[i].type) {
			case VAPI_EV_CONNECTED:
				ai_connected(call, ev[i].id);
				break;
			case VAPI_EV_FAILED:
				b2b_ai_fail(call, ev[i].status, ev[i].text ? ev[i].text : "failed");
				break;
			case VAPI_EV_ENDED:
				if (ev[i].status == 1) /* dropped: the fallback, not a hang-up */
					b2b_ai_fail(call, 0,
					            ev[i].text ? ev[i].text : "socket dropped");
				else
					ai_ended(call, ev[i].text);
				break;
			case VAPI_EV_TRANSCRIPT:
				call->transcripts++;
				log_info("call", "transcript %s: %s", ev[i].text ? ev[i].text : "?",
				         ev[i].text2 ? ev[i].text2 : "");
				ai_keep_line(call, ev[i].text, ev[i].text2);
				b2b_live_transcript(call->id, ev[i].text, ev[i].text2,
				                    clock_wall_ms());
				break;
			case VAPI_EV_TOOL_CALL:
				/* In-band tools cannot be answered on the socket: failures are
				 * told to the assistant as a system message. */
				if (!ai_tool(call, ev[i].text ? ev[i].text : "", ev[i].text2,
				             ev[i].id, &err) &&
				    err && call->ai)
					vapi_call_add_message(call->ai, "system", err, 1);
				break;
			case VAPI_EV_STATUS:
				log_debug("call", "AI status %s", ev[i].text ? ev[i].text : "?");
				break;
			case VAPI_EV_SPEECH:
				if (ev[i].text && strcmp(ev[i].text, "assistant") == 0) {
					call->ai_speaking = ev[i].status == 1;
					b2b_xfer_speech(call, ev[i].status == 1);
				}
				if (!call->ai_speech_ms && ev[i].status == 1 && ev[i].text &&
				    strcmp(ev[i].text, "assistant") == 0 && call->answer_ms)
					call->ai_speech_ms = clock_wall_ms();
				break;
			case VAPI_EV_INTERRUPTED:
				break;
			}
			log_set_call(NULL);
			vapi_event_free(&ev[i]);
		}
	}
}

/* ---- the originate operation ---- */

static void on_ring_timeout(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
	(void)magic;
	(void)t;
	struct b2b_call *call = (struct b2b_call *)arg;
	b2b_timer_drop(&call->ring_timer);
	if (call->b.state != LEG_CALLING && call->b.state != LEG_EARLY)
		return;
	log_set_call(call->id);
	log_info("call", "the lead did not answer within %u s",
	         call->conf->outbound.ring_timeout_s);
	b2b_call_set_end(call, 'n', 480, "no answer");
	b2b_leg_bye(&call->b, "SIP;cause=480;text=\"No Answer\"");
	log_set_call(NULL);
}

/* A fresh call id for calls we originate: "vacs-" and 24 hex digits. */
static void new_call_id(char *out, size_t len)
{
	uint8_t r[12];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		uint64_t x = clock_wall_ms() ^ ((uint64_t)b2b_g.next_leg_id << 40);
		memcpy(r, &x, 8);
		memset(r + 8, 0x5a, 4);
	}
	size_t o = (size_t)snprintf(out, len, "vacs-");
	for (size_t i = 0; i < sizeof(r) && o + 2 < len; i++)
		o += (size_t)snprintf(out + o, len - o, "%02x", r[i]);
}

int b2b_originate(const struct b2b_orig *o, char *id, size_t idlen, const char **why,
                  const char **field)
{
	const struct conf *cfg = b2b_g.conf;
	const struct conf_trunk *t = cfg->outbound.to_trunk;
	*field = NULL;
	if (b2b_g.draining) {
		*why = "vacsd is draining: no new calls";
		return 503;
	}
	if (!t) {
		*why = "outbound calls are off: outbound.trunk is not configured";
		return 503;
	}
	if (!b2b_g.vapi_up) {
		*why = "the AI leg is not available: vapi.key_env is not set";
		return 503;
	}
	const char *assistant = o->assistant_id && o->assistant_id[0] ? o->assistant_id
	                        : cfg->outbound.assistant[0]          ? cfg->outbound.assistant
	                                                              : cfg->vapi.assistant_id;
	if (!assistant || !assistant[0]) {
		*why = "no assistant: give assistant_id or configure outbound.assistant";
		*field = "assistant_id";
		return 400;
	}
	const char *from = o->from && o->from[0] ? o->from : cfg->outbound.caller_id;
	if (!from || !from[0]) {
		*why = "no caller ID: give from or configure outbound.caller_id";
		*field = "from";
		return 400;
	}
	char to_e164[64], from_e164[64], egress[64];
	if (!o->to || !o->to[0] ||
	    b2b_number_normalise(&t->numbering, o->to, to_e164, sizeof(to_e164)) < 0 ||
	    b2b_number_egress(&t->numbering, to_e164, egress, sizeof(egress)) < 0) {
		*why = "not a phone number this trunk can dial";
		*field = "to";
		return 400;
	}
	if (b2b_number_normalise(&t->numbering, from, from_e164, sizeof(from_e164)) < 0) {
		*why = "not a phone number";
		*field = "from";
		return 400;
	}
	struct b2b_trunk_rt *rt = b2b_trunk_rt(t);
	if (t->max_calls && rt && rt->active_calls >= t->max_calls) {
		*why = "the outbound trunk is at its max_calls";
		return 429;
	}
	char cid[40];
	new_call_id(cid, sizeof(cid));
	struct b2b_call *call = call_new(cid);
	if (!call) {
		*why = "out of memory";
		return 503;
	}
	call->outbound = 1;
	call->fallback = &cfg->outbound.fallback;
	call->route = "outbound";
	call->b.trunk = t;
	snprintf(call->called, sizeof(call->called), "%s", o->to);
	snprintf(call->called_e164, sizeof(call->called_e164), "%s", to_e164);
	snprintf(call->target, sizeof(call->target), "%s", egress);
	snprintf(call->caller, sizeof(call->caller), "%s", from);
	snprintf(call->caller_e164, sizeof(call->caller_e164), "%s", from_e164);
	snprintf(call->assistant, sizeof(call->assistant), "%s", assistant);
	snprintf(call->lead_id, sizeof(call->lead_id), "%s", o->lead_id ? o->lead_id : "");
	snprintf(call->ref, sizeof(call->ref), "%s", o->ref ? o->ref : "");
	call->amd_action = o->amd_action;
	snprintf(call->amd_prompt, sizeof(call->amd_prompt), "%s",
	         o->amd_prompt ? o->amd_prompt : "");
	if (o->variables_json && !(call->variables = mem_strdup(o->variables_json))) {
		conf_unref(call->conf);
		mem_free(call);
		*why = "out of memory";
		return 503;
	}
	if (b2b_leg_media_create(&call->b, NULL)) {
		mem_free(call->variables);
		conf_unref(call->conf);
		mem_free(call);
		*why = "no media ports";
		return 503;
	}
	call_link(call, t);
	metric_inc(metric_get(METRIC_COUNTER, "vacs_calls_originated_total",
	                      "Outbound AI calls originated"));
	snprintf(id, idlen, "%s", call->id);
	log_set_call(call->id);
	log_info("call", "originate: %s (%s) from %s via %s, assistant %s", o->to, to_e164, from,
	         t->name, assistant);
	b2b_life_emit(call, B2B_LIFE_STARTED, NULL, NULL);
	call->ring_timer =
	    su_timer_create(su_root_task(b2b_g.root), cfg->outbound.ring_timeout_s * 1000u);
	if (call->ring_timer)
		su_timer_set(call->ring_timer, on_ring_timeout, (su_timer_arg_t *)call);
	call->n_nodes = b2b_trunk_node_order(t, call->node_order, 16);
	if (!call->n_nodes)
		b_fail_over_or_fail(call, 503, "No Trunk Nodes");
	else
		send_b_invite(call);
	log_set_call(NULL);
	return 0;
}

/* ---- server webhooks (vapi_hook_parse'd on the http thread) ---- */

static struct b2b_call *call_of_hook(const struct vapi_hook_msg *m)
{
	for (struct b2b_call *c = b2b_g.calls; c; c = c->next) {
		if (m->call_id && c->ai_id[0] && strcmp(c->ai_id, m->call_id) == 0)
			return c;
		if (m->call_name && strcmp(c->id, m->call_name) == 0 && (c->ai || c->ai_id[0]))
			return c;
	}
	return NULL;
}

/* assistant-request: the assistant of the route to "ai" that takes the number called. */
static char *hook_assistant(const struct vapi_hook_msg *m, size_t *len)
{
	const struct conf *cfg = b2b_g.conf;
	const char *num = m->phone_number ? m->phone_number : "";
	const struct conf_route *r = b2b_route_find_ai(cfg, num, m->customer_number);
	const char *a = r && r->assistant[0] ? r->assistant : r ? cfg->vapi.assistant_id : NULL;
	json_t *o = json_object();
	if (a && a[0]) {
		json_object_set_new(o, "assistantId", json_string(a));
		log_info("vapi", "assistant-request for %s: %s (route %s)", num, a, r->name);
	} else {
		json_object_set_new(o, "error",
		                    json_string("Sorry, this number is not available right now."));
		log_warn("vapi", "assistant-request for %s: no route to \"ai\" takes it",
		         num[0] ? num : "(no number)");
	}
	return api_json_body(o, len);
}

int b2b_call_hook(const struct vapi_hook_msg *m, char **answer, size_t *len)
{
	*answer = NULL;
	*len = 0;
	struct b2b_call *call = call_of_hook(m);
	if (call)
		log_set_call(call->id);
	int code = 200;
	switch (m->type) {
	case VAPI_HOOK_ASSISTANT_REQUEST:
		*answer = hook_assistant(m, len);
		break;
	case VAPI_HOOK_TOOL_CALLS: {
		struct vapi_hook_result res[16];
		unsigned n = m->n_tools < 16 ? m->n_tools : 16;
		for (unsigned i = 0; i < n; i++) {
			const struct vapi_hook_tool *t = &m->tools[i];
			res[i].id = t->id;
			res[i].name = t->name;
			res[i].error = NULL;
			res[i].result =
			    call ? ai_tool(call, t->name, t->arguments, t->id, &res[i].error)
			         : NULL;
			if (!call)
				res[i].error = "No call of this system has that id.";
		}
		*answer = vapi_hook_results_json(res, n, len);
		break;
	}
	case VAPI_HOOK_FUNCTION_CALL: {
		json_t *o = json_object();
		json_object_set_new(o, "result", json_string("This function is not available."));
		*answer = api_json_body(o, len);
		break;
	}
	case VAPI_HOOK_TRANSFER_DEST: {
		/* VAPI cannot transfer a websocket call (reference §4.4): vacsd does. */
		json_t *o = json_object();
		json_object_set_new(o, "error",
		                    json_string("Transfers are done with the "
		                                "transfer_to_agent tool."));
		*answer = api_json_body(o, len);
		break;
	}
	case VAPI_HOOK_STATUS:
		log_info("vapi", "webhook status-update %s%s%s", m->status ? m->status : "?",
		         m->ended_reason ? " " : "", m->ended_reason ? m->ended_reason : "");
		if (call && m->ended_reason && !call->ai_end[0])
			snprintf(call->ai_end, sizeof(call->ai_end), "%s", m->ended_reason);
		break;
	case VAPI_HOOK_END_REPORT: {
		/* Arrives after post-processing, usually after the call ended: kept with the
		 * call when it is still up, and always as a line for the data layer. */
		if (call) {
			if (m->summary && !call->ai_summary)
				call->ai_summary = mem_strdup(m->summary);
			if (m->has_cost)
				call->ai_cost = m->cost;
		}
		json_t *o = json_object();
		json_object_set_new(o, "vapi_call_id", json_string(m->call_id ? m->call_id : ""));
		json_object_set_new(o, "call_id", json_string(m->call_name ? m->call_name : ""));
		json_object_set_new(o, "ended_reason",
		                    json_string(m->ended_reason ? m->ended_reason : ""));
		json_object_set_new(o, "summary",
		                    m->summary ? json_string(m->summary) : json_null());
		json_object_set_new(o, "transcript",
		                    m->transcript ? json_string(m->transcript) : json_null());
		json_object_set_new(o, "recording_url",
		                    m->recording_url ? json_string(m->recording_url) : json_null());
		json_object_set_new(o, "cost", m->has_cost ? json_real(m->cost) : json_null());
		json_object_set_new(o, "started_at",
		                    m->started_at ? json_string(m->started_at) : json_null());
		json_object_set_new(o, "ended_at",
		                    m->ended_at ? json_string(m->ended_at) : json_null());
		if (b2b_spool_append("vapi-reports.jsonl", o))
			code = 503; /* not durable: VAPI may retry */
		log_info("vapi", "end-of-call-report for %s: %s", m->call_name ? m->call_name : "?",
		         m->ended_reason ? m->ended_reason : "");
		break;
	}
	case VAPI_HOOK_HANG:
		log_warn("vapi", "hang: the assistant is stalled (slow model, voice or tool)");
		metric_inc(metric_get(METRIC_COUNTER, "vacs_vapi_hangs_total",
		                      "VAPI hang notices: the assistant stalled"));
		break;
	case VAPI_HOOK_OTHER:
		break;
	}
	if (call)
		log_set_call(NULL);
	return code;
}
