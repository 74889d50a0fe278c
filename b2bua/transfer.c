/* The warm transfer from the assistant to a human agent: hold the customer, call the
 * agent queue with context, whisper, accept, bridge; or go back to the assistant. */
#include "b2bua/b2bua_int.h"

#include "b2bua/number.h"
#include "conf/conf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"
#include "core/strbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>

/*
 * Everything here runs on the sip thread. The customer (leg a of an inbound call, b of
 * an outbound one) stays answered throughout; the agent is leg x, a UAC leg on the
 * queue's trunk, pinned to the customer's media worker so the two can be bridged.
 *
 * Two things run in parallel from the trigger on:
 *   the hand-off: the assistant's last sentence is let finish (speech-update stopped,
 *     then a playout mark), then the assistant is muted and the customer hears music on
 *     hold; upstream audio keeps flowing to VAPI so it does not time out;
 *   the consult: INVITE to the queue with the context headers; on answer the whisper
 *     (a prompt, the assistant's voice speaking the summary, or nothing), then the accept
 *     (answering, or the agent's key 1; 2 declines).
 * Accepted: MOH stops, the assistant's leg ends (end-call), customer and agent are
 * bridged, the recording goes on. Anything else before that goes back to the assistant
 * (unmute, add-message with the reason) or, when the assistant's leg is gone, to the
 * route's fallback.
 */

enum xf_state {
	XF_RINGING = 1, /* INVITE out */
	XF_WHISPER,     /* the agent answered and hears the whisper */
	XF_ACCEPT,      /* waiting for the agent's key */
	XF_BRIDGED,     /* done: customer and agent talk */
	XF_FAILED,      /* back to the assistant */
	XF_CANCELLED,   /* the customer left */
};

enum ho_state {
	HO_GRACE = 1, /* the assistant is quiet: a short wait for the hand-off sentence */
	HO_SPEECH,    /* the assistant speaks: wait for speech-update stopped */
	HO_MARK,      /* wait until what it said has played */
	HO_DONE,      /* muted, music on hold */
};

#define PLAY_MOH       2u
#define PLAY_WHISPER   3u
#define MARK_HANDOFF   0x58460001u
#define MARK_WHISPER   0x58460002u
#define HO_GRACE_MS    1500u /* a hand-off sentence starts within this after the tool call */
#define HO_BOUND_MS    8000u /* the customer hears music on hold by then whatever happens */
#define WHISPER_MAX_MS 20000u
#define SUMMARY_MAX    512u /* encoded bytes in X-VACS-Summary */
#define REASON_MAX     160u

struct b2b_xfer {
	const struct conf_queue *q;
	const struct conf_trunk *trunk; /* the queue's, or its after-hours target's */
	const char *number;
	int after_hours;
	enum xf_state state;
	enum ho_state ho;
	int ai_whisper_speaking; /* whisper = ai: the assistant started speaking to the agent */
	char source[16];
	char reason[REASON_MAX];
	char summary[1024];
	char why[128];   /* how it ended when it did not bridge */
	char agent[256]; /* who answered (PAI, else To) */
	uint64_t t_start, t_invite, t_answer, t_accept, t_bridge, t_end, t_hold;
	su_timer_t *leg_timer; /* ring, whisper or accept bound */
	su_timer_t *ho_timer;  /* hand-off grace and bound */
	unsigned node, n_nodes, node_order[16];
};

static void xf_fail(struct b2b_call *call, const char *why);
static void xf_accept_phase(struct b2b_call *call);

static uint64_t now_ms(void)
{
	return clock_wall_ms();
}

int b2b_xfer_active(const struct b2b_call *call)
{
	return call->xfer && call->xfer->state >= XF_RINGING && call->xfer->state <= XF_ACCEPT;
}

int b2b_xfer_bridged(const struct b2b_call *call)
{
	return call->xfer && call->xfer->state == XF_BRIDGED;
}

static void leg_timer_set(struct b2b_call *call, unsigned ms, su_timer_f fn)
{
	struct b2b_xfer *xf = call->xfer;
	b2b_timer_drop(&xf->leg_timer);
	xf->leg_timer = su_timer_create(su_root_task(b2b_g.root), ms);
	if (xf->leg_timer)
		su_timer_set(xf->leg_timer, fn, (su_timer_arg_t *)call);
}

/* Header text: printable ASCII kept (but % " \ < >), the rest percent-encoded; cut at
 * max bytes on a character boundary. */
static void hdr_encode(const char *in, char *out, size_t max)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p; p++) {
		int keep = *p >= 0x20 && *p < 0x7f && *p != '%' && *p != '"' && *p != '\\' &&
		           *p != '<' && *p != '>';
		size_t need = keep ? 1 : 3;
		if (o + need + 1 > max)
			break;
		if (keep)
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, max - o, "%%%02X", *p);
	}
	out[o] = '\0';
}

/* ---- the hand-off: music on hold for the customer ---- */

static void hold_on(struct b2b_call *call)
{
	struct b2b_xfer *xf = call->xfer;
	if (xf->ho == HO_DONE)
		return;
	xf->ho = HO_DONE;
	xf->t_hold = now_ms();
	b2b_timer_drop(&xf->ho_timer);
	if (call->ai)
		vapi_call_control(call->ai, "mute-assistant");
	struct b2b_leg *cust = b2b_call_customer(call);
	struct media_prompt *moh = xf->q->moh[0] ? b2b_prompt_find(xf->q->moh) : NULL;
	if (moh && cust->ms)
		media_session_play(cust->ms, moh, 1, PLAY_MOH);
	b2b_call_step(call, "transfer.hold", moh ? "music on hold" : "silence");
	log_info("xfer", "customer on hold%s, %llu ms after the tool call",
	         moh ? " with music" : "", (unsigned long long)(xf->t_hold - xf->t_start));
}

static void hold_off(struct b2b_call *call)
{
	struct b2b_leg *cust = b2b_call_customer(call);
	if (call->xfer->ho == HO_DONE && cust->ms)
		media_session_play(cust->ms, NULL, 0, PLAY_MOH);
}

/* The assistant's last words are sent: hold once they have played. */
static void handoff_mark(struct b2b_call *call)
{
	struct b2b_xfer *xf = call->xfer;
	if (call->ai && call->ai_on == b2b_call_customer(call) &&
	    vapi_call_mark(call->ai, MARK_HANDOFF) == 0) {
		xf->ho = HO_MARK;
		return;
	}
	hold_on(call);
}

static void on_ho_timer(su_root_magic_t *m, su_timer_t *t, su_timer_arg_t *arg)
{
	(void)m;
	(void)t;
	struct b2b_call *call = (struct b2b_call *)arg;
	struct b2b_xfer *xf = call->xfer;
	b2b_timer_drop(&xf->ho_timer);
	log_set_call(call->id);
	if (xf->ho == HO_GRACE) {
		/* No hand-off sentence came: hold now, with a last bound for the mark. */
		handoff_mark(call);
		if (xf->ho == HO_MARK) {
			xf->ho_timer = su_timer_create(su_root_task(b2b_g.root), 1500);
			if (xf->ho_timer)
				su_timer_set(xf->ho_timer, on_ho_timer, (su_timer_arg_t *)call);
		}
	} else {
		hold_on(call); /* the bound */
	}
	log_set_call(NULL);
}

void b2b_xfer_speech(struct b2b_call *call, int started)
{
	struct b2b_xfer *xf = call->xfer;
	if (!xf)
		return;
	if (xf->state == XF_WHISPER && xf->q->whisper == CONF_WHISPER_AI) {
		/* The assistant speaks the summary to the agent. */
		if (started)
			xf->ai_whisper_speaking = 1;
		else if (xf->ai_whisper_speaking && call->ai)
			vapi_call_mark(call->ai, MARK_WHISPER);
		return;
	}
	if (xf->state > XF_ACCEPT)
		return;
	if (started && xf->ho == HO_GRACE)
		xf->ho = HO_SPEECH;
	else if (!started && xf->ho == HO_SPEECH)
		handoff_mark(call);
}

/* ---- the consult leg ---- */

void b2b_xfer_context(const struct b2b_call *call, struct strbuf *hdr)
{
	const struct b2b_xfer *xf = call->xfer;
	str_printf(hdr, "X-VACS-Call-Id: %s\r\n", call->id);
	if (call->lead_id[0])
		str_printf(hdr, "X-VACS-Lead-Id: %s\r\n", call->lead_id);
	if (xf) {
		char summary[SUMMARY_MAX + 1], reason[REASON_MAX + 1];
		hdr_encode(xf->summary, summary, sizeof(summary));
		hdr_encode(xf->reason, reason, sizeof(reason));
		str_printf(hdr, "X-VACS-Queue: %s\r\n", xf->q->name);
		if (reason[0])
			str_printf(hdr, "X-VACS-Reason: %s\r\n", reason);
		if (summary[0])
			str_printf(hdr, "X-VACS-Summary: %s\r\n", summary);
	}
	const char *pub = call->conf->http.public_url;
	if (pub && pub[0])
		str_printf(hdr, "Call-Info: <%s/calls/%s>;purpose=info\r\n", pub, call->id);
}

struct media_prompt *b2b_xfer_moh(const struct b2b_call *call)
{
	const struct b2b_xfer *xf = call->xfer;
	return xf && xf->q->moh[0] ? b2b_prompt_find(xf->q->moh) : NULL;
}

static void xf_invite(struct b2b_call *call)
{
	struct b2b_xfer *xf = call->xfer;
	struct b2b_leg *x = &call->x, *cust = b2b_call_customer(call);
	const struct conf_trunk *t = xf->trunk;
	unsigned node = xf->node_order[xf->node];
	char ruri[256], from[300], num[64] = "";
	b2b_trunk_uri(t, node, xf->number, ruri, sizeof(ruri));
	/* The agent's phone shows the customer's number. */
	const char *lead = call->outbound ? call->called_e164 : call->caller_e164;
	if (b2b_number_egress(&t->numbering, lead, num, sizeof(num)))
		snprintf(num, sizeof(num), "%s", lead);
	snprintf(from, sizeof(from), "<sip:%s@%s>", num[0] ? num : "anonymous", b2b_g.our_host);

	struct strbuf hdr;
	str_init(&hdr);
	b2b_xfer_context(call, &hdr);
	if (num[0])
		str_printf(&hdr, "P-Asserted-Identity: <sip:%s@%s>\r\n", num, b2b_g.our_host);

	x->trunk = t;
	x->final_status = 0;
	int rc = hdr.oom ? -ENOMEM : b2b_leg_invite(x, ruri, from, cust->codec, &hdr, 0);
	str_deinit(&hdr);
	if (rc) {
		xf_fail(call, "cannot build the INVITE to the queue");
		return;
	}
	if (!xf->t_invite)
		xf->t_invite = now_ms();
	b2b_call_step(call, "transfer.invite", ruri);
	log_info("xfer", "INVITE %s via %s (queue %s), %llu ms after the tool call", ruri, t->name,
	         xf->q->name, (unsigned long long)(now_ms() - xf->t_start));
}

static void on_ring_timeout(su_root_magic_t *m, su_timer_t *t, su_timer_arg_t *arg)
{
	(void)m;
	(void)t;
	struct b2b_call *call = (struct b2b_call *)arg;
	b2b_timer_drop(&call->xfer->leg_timer);
	log_set_call(call->id);
	if (call->xfer->state == XF_RINGING)
		xf_fail(call, "no agent answered in time");
	else if (call->xfer->state == XF_ACCEPT)
		xf_fail(call, "the agent did not accept in time");
	else if (call->xfer->state == XF_WHISPER)
		xf_accept_phase(call); /* a whisper that never ended */
	log_set_call(NULL);
}

int b2b_xfer_start(struct b2b_call *call, const char *queue, const char *reason,
                   const char *summary, const char *source, const char **why)
{
	struct b2b_leg *cust = b2b_call_customer(call);
	if (!call->ai || !b2b_leg_answered(cust) || call->fb_state) {
		*why = "The call has no assistant to transfer from right now.";
		return 409;
	}
	if (call->xfer && (b2b_xfer_active(call) || b2b_xfer_bridged(call))) {
		*why = "A transfer is already in progress.";
		return 409;
	}
	if (call->x.nh) {
		*why = "The previous transfer attempt is still ending: try again in a moment.";
		return 409;
	}
	if (b2b_refer_active(call)) {
		*why = "The call is being transferred by the PBX (REFER).";
		return 409;
	}
	const struct conf_queue *q = conf_queue_find(call->conf, queue);
	if (!q) {
		*why = call->conf->n_queues ? "No agent queue has that name."
		                            : "No agent queue is configured.";
		return 404;
	}
	b2b_xfer_free(call);
	struct b2b_xfer *xf = mem_zalloc(sizeof(*xf));
	if (!xf) {
		*why = "Out of memory.";
		return 503;
	}
	call->xfer = xf;
	xf->q = q;
	xf->trunk = q->to_trunk;
	xf->number = q->number;
	if (!conf_queue_open(q, (uint64_t)time(NULL)) && q->after_hours_to) {
		xf->after_hours = 1;
		xf->trunk = q->after_hours_to;
		xf->number = q->after_hours_number;
	}
	xf->state = XF_RINGING;
	xf->t_start = now_ms();
	snprintf(xf->source, sizeof(xf->source), "%s", source ? source : "");
	snprintf(xf->reason, sizeof(xf->reason), "%s", reason ? reason : "");
	snprintf(xf->summary, sizeof(xf->summary), "%s", summary ? summary : "");
	metric_inc(metric_get(METRIC_COUNTER, "vacs_transfers_total{result=\"started\"}",
	                      "Warm transfers to agents"));
	char detail[300];
	snprintf(detail, sizeof(detail), "queue %s%s, %s: %s", q->name,
	         xf->after_hours ? " (after hours)" : "", xf->source, xf->reason);
	b2b_call_step(call, "transfer.requested", detail);
	log_info("xfer", "transfer to queue %s%s (%s): %s", q->name,
	         xf->after_hours ? ", closed: the after-hours number" : "", xf->source,
	         xf->reason[0] ? xf->reason : "no reason given");

	/* The consult starts at once; the hold waits for the assistant's last words. */
	struct b2b_leg *x = &call->x;
	b2b_leg_drop_remote(x);
	x->codec = MEDIA_CODEC_NONE;
	x->secure = 0;
	x->sdp_version = 0;
	x->sess_id = 0;
	x->early_answered = 0;
	x->trunk = xf->trunk;
	if (!x->ms && b2b_leg_media_create(x, cust->ms)) {
		xf_fail(call, "no media port for the agent leg");
		return 0;
	}
	xf->n_nodes = b2b_trunk_node_order(xf->trunk, xf->node_order, 16);
	xf->ho = call->ai_speaking ? HO_SPEECH : HO_GRACE;
	xf->ho_timer = su_timer_create(su_root_task(b2b_g.root),
	                               xf->ho == HO_GRACE ? HO_GRACE_MS : HO_BOUND_MS);
	if (xf->ho_timer)
		su_timer_set(xf->ho_timer, on_ho_timer, (su_timer_arg_t *)call);
	if (!xf->n_nodes) {
		xf_fail(call, "the queue's trunk has no nodes");
		return 0;
	}
	leg_timer_set(call, q->ring_timeout_s * 1000u, on_ring_timeout);
	xf_invite(call);
	return 0;
}

/* The customer goes back to the assistant (or to the route's fallback without one). */
static void xf_fail(struct b2b_call *call, const char *why)
{
	struct b2b_xfer *xf = call->xfer;
	if (xf->state >= XF_BRIDGED)
		return;
	xf->state = XF_FAILED;
	xf->t_end = now_ms();
	snprintf(xf->why, sizeof(xf->why), "%s", why);
	b2b_timer_drop(&xf->leg_timer);
	b2b_timer_drop(&xf->ho_timer);
	metric_inc(metric_get(METRIC_COUNTER, "vacs_transfers_total{result=\"failed\"}",
	                      "Warm transfers to agents"));
	b2b_call_step(call, "transfer.failed", why);
	log_warn("xfer", "transfer to queue %s failed: %s", xf->q->name, why);
	b2b_leg_bye(&call->x, "SIP;cause=487;text=\"Transfer abandoned\"");
	struct b2b_leg *cust = b2b_call_customer(call);
	hold_off(call);
	if (!call->ai) {
		b2b_ai_fail(call, 0, "the transfer failed and the assistant is gone");
		return;
	}
	if (call->ai_on != cust)
		b2b_ai_move(call, cust);
	vapi_call_control(call->ai, "unmute-assistant");
	char text[320];
	snprintf(text, sizeof(text),
	         "The transfer to an agent failed: %s. Tell the customer no agent is free right "
	         "now and offer a callback.",
	         why);
	vapi_call_add_message(call->ai, "system", text, 1);
}

/* Accepted: customer and agent talk; the assistant's leg ends. */
static void xf_complete(struct b2b_call *call)
{
	struct b2b_xfer *xf = call->xfer;
	struct b2b_leg *cust = b2b_call_customer(call);
	xf->state = XF_BRIDGED;
	xf->t_bridge = now_ms();
	b2b_timer_drop(&xf->leg_timer);
	b2b_timer_drop(&xf->ho_timer);
	xf->ho = HO_DONE;
	media_session_play(cust->ms, NULL, 0, PLAY_MOH);
	b2b_ai_drop(call);
	media_session_bridge(cust->ms, call->x.ms);
	metric_inc(metric_get(METRIC_COUNTER, "vacs_transfers_total{result=\"bridged\"}",
	                      "Warm transfers to agents"));
	b2b_call_step(call, "transfer.bridged", xf->agent);
	b2b_life_emit(call, B2B_LIFE_TRANSFERRED, xf->agent, NULL);
	log_info("xfer", "customer bridged to the agent %s, %llu ms after the tool call",
	         xf->agent[0] ? xf->agent : "?", (unsigned long long)(xf->t_bridge - xf->t_start));
}

static void xf_accept_phase(struct b2b_call *call)
{
	struct b2b_xfer *xf = call->xfer;
	if (xf->state != XF_WHISPER)
		return;
	if (xf->q->whisper == CONF_WHISPER_AI && call->ai) {
		/* The assistant goes back to the customer's leg, muted, until the bridge. */
		vapi_call_control(call->ai, "mute-assistant");
		b2b_ai_move(call, b2b_call_customer(call));
	}
	if (xf->q->accept == CONF_ACCEPT_ANSWER) {
		xf->t_accept = now_ms();
		b2b_call_step(call, "transfer.accepted", "answered");
		xf_complete(call);
		return;
	}
	xf->state = XF_ACCEPT;
	leg_timer_set(call, xf->q->accept_timeout_s * 1000u, on_ring_timeout);
	log_info("xfer", "waiting for the agent's key (1 accepts, 2 declines)");
}

static void xf_whisper(struct b2b_call *call)
{
	struct b2b_xfer *xf = call->xfer;
	static const char *const modes[] = {"none", "prompt", "ai"};
	xf->state = XF_WHISPER;
	b2b_call_step(call, "transfer.whisper", modes[xf->q->whisper]);
	leg_timer_set(call, WHISPER_MAX_MS, on_ring_timeout);
	switch (xf->q->whisper) {
	case CONF_WHISPER_PROMPT: {
		struct media_prompt *p = b2b_prompt_find(xf->q->whisper_prompt);
		if (p && media_session_play(call->x.ms, p, 0, PLAY_WHISPER) == 0)
			return;
		break;
	}
	case CONF_WHISPER_AI:
		if (call->ai && b2b_ai_move(call, &call->x) == 0) {
			/* The agent hears the assistant's voice speak the summary. */
			char text[1100];
			snprintf(text, sizeof(text), "%s",
			         xf->summary[0] ? xf->summary : "A customer is waiting for you.");
			xf->ai_whisper_speaking = 0;
			vapi_call_control(call->ai, "unmute-assistant");
			vapi_call_say(call->ai, text, 0);
			return;
		}
		break;
	case CONF_WHISPER_NONE:
		break;
	}
	xf_accept_phase(call);
}

void b2b_xfer_response(struct b2b_call *call, int status, const char *phrase, const sip_t *sip)
{
	struct b2b_xfer *xf = call->xfer;
	struct b2b_leg *x = &call->x;
	if (!xf || x->state == LEG_ENDING || x->state == LEG_GONE || xf->state != XF_RINGING) {
		if (status >= 200 && status < 300 && x->nh && x->state != LEG_UP)
			nua_bye(x->nh, TAG_END()); /* answered after we gave up */
		return;
	}
	if (status < 200)
		return; /* ringing: the customer hears music on hold, not the agent's ringback */
	if (status < 300) {
		struct b2b_sdp ans;
		const char *why = NULL;
		x->state = LEG_UP;
		x->final_status = status;
		if (b2b_sip_sdp(sip, &ans, &why) != 0 || b2b_leg_take_answer(x, &ans) != 0) {
			xf_fail(call, "the agent's phone answered without usable SDP");
			return;
		}
		b2b_leg_media_apply(x, 1);
		xf->t_answer = now_ms();
		const char *who = NULL;
		char *s = NULL;
		if (sip && sip->sip_to)
			s = sip_header_as_string(b2b_g.home, (const sip_header_t *)sip->sip_to);
		who = s;
		snprintf(xf->agent, sizeof(xf->agent), "%s", who ? who : "");
		if (s)
			su_free(b2b_g.home, s);
		b2b_call_step(call, "transfer.answered", xf->agent);
		log_info("xfer", "the agent answered (%s) %llu ms after the INVITE", xf->agent,
		         (unsigned long long)(xf->t_answer - xf->t_invite));
		xf_whisper(call);
		return;
	}
	if ((status == 401 || status == 407) && sip && x->auth_tries < 2 &&
	    b2b_trunk_authenticate(x->trunk, x->nh, sip)) {
		x->auth_tries++;
		return;
	}
	x->final_status = status;
	if (x->nh) {
		nua_handle_destroy(x->nh);
		x->nh = NULL;
	}
	x->state = LEG_GONE;
	if ((status == 503 || status == 408 || status == 500) && xf->node + 1 < xf->n_nodes) {
		b2b_trunk_node_failed(x->trunk, xf->node_order[xf->node]);
		xf->node++;
		log_info("xfer", "queue node failed with %d: trying the next one", status);
		xf_invite(call);
		return;
	}
	char why[96];
	if (status == 486 || status == 600)
		snprintf(why, sizeof(why), "the agents are busy (%d)", status);
	else if (status == 480 || status == 408)
		snprintf(why, sizeof(why), "no agent answered (%d)", status);
	else if (status == 603)
		snprintf(why, sizeof(why), "the agent declined (603)");
	else if (status == 503 || status == 500)
		snprintf(why, sizeof(why), "the agent system is down (%d %s)", status,
		         phrase ? phrase : "");
	else
		snprintf(why, sizeof(why), "the queue refused the call (%d %s)", status,
		         phrase ? phrase : "");
	xf_fail(call, why);
	b2b_call_maybe_finish(call);
}

void b2b_xfer_leg_bye(struct b2b_call *call)
{
	struct b2b_xfer *xf = call->xfer;
	call->x.state = LEG_ENDING;
	if (!xf)
		return;
	if (xf->state == XF_BRIDGED) {
		b2b_call_set_end(call, 'x', 0, "agent hung up");
		b2b_leg_bye(b2b_call_customer(call), NULL);
		return;
	}
	if (b2b_xfer_active(call))
		xf_fail(call, xf->state == XF_WHISPER ? "the agent hung up during the whisper"
		                                      : "the agent hung up");
}

void b2b_xfer_leg_gone(struct b2b_call *call, int status, const char *phrase)
{
	struct b2b_leg *x = &call->x;
	int was = x->state;
	if (x->nh) {
		nua_handle_destroy(x->nh);
		x->nh = NULL;
	}
	x->state = LEG_GONE;
	if (call->xfer && b2b_xfer_active(call)) {
		char why[96];
		snprintf(why, sizeof(why), "the agent leg ended (%d %s)", status,
		         phrase ? phrase : "");
		xf_fail(call, why);
	} else if (b2b_xfer_bridged(call) && was != LEG_ENDING) {
		b2b_call_set_end(call, 'x', status, phrase ? phrase : "agent leg ended");
		b2b_leg_bye(b2b_call_customer(call), NULL);
	}
	b2b_call_maybe_finish(call);
}

void b2b_xfer_customer_gone(struct b2b_call *call)
{
	struct b2b_xfer *xf = call->xfer;
	if (!xf)
		return;
	if (b2b_xfer_active(call)) {
		xf->state = XF_CANCELLED;
		xf->t_end = now_ms();
		snprintf(xf->why, sizeof(xf->why), "the customer hung up during the consult");
		b2b_call_step(call, "transfer.cancelled", xf->why);
		b2b_timer_drop(&xf->leg_timer);
		b2b_timer_drop(&xf->ho_timer);
		log_info("xfer", "the customer hung up: the agent leg is ended");
	}
	b2b_leg_bye(&call->x, "SIP;cause=487;text=\"Caller hung up\"");
}

int b2b_xfer_ai_gone(struct b2b_call *call)
{
	struct b2b_xfer *xf = call->xfer;
	if (!xf)
		return 0;
	if (xf->state == XF_BRIDGED)
		return 1;
	if (!b2b_xfer_active(call))
		return 0;
	/* The consult goes on without the assistant. */
	log_info("xfer", "the assistant's leg ended during the consult: the transfer goes on");
	if (xf->ho != HO_DONE)
		hold_on(call);
	if (xf->state == XF_WHISPER && xf->q->whisper == CONF_WHISPER_AI)
		xf_accept_phase(call);
	return 1;
}

int b2b_xfer_media_event(struct b2b_call *call, struct b2b_leg *leg, const struct media_event *ev)
{
	struct b2b_xfer *xf = call->xfer;
	if (!xf)
		return 0;
	switch (ev->type) {
	case MEDIA_EV_DTMF:
		if (leg != &call->x)
			return 0;
		if (xf->state == XF_ACCEPT && ev->digit == '1') {
			xf->t_accept = now_ms();
			b2b_call_step(call, "transfer.accepted", "key 1");
			log_info("xfer", "the agent accepted (key 1)");
			xf_complete(call);
		} else if (xf->state == XF_ACCEPT && ev->digit == '2') {
			xf_fail(call, "the agent declined");
		}
		return 1;
	case MEDIA_EV_PLAY_DONE:
		if (ev->id == PLAY_WHISPER) {
			if (ev->result == 1 && xf->state == XF_WHISPER)
				xf_accept_phase(call);
			return 1;
		}
		return ev->id == PLAY_MOH;
	case MEDIA_EV_MARK:
		if (ev->id == MARK_HANDOFF) {
			if (xf->ho == HO_MARK && xf->state <= XF_ACCEPT)
				hold_on(call);
			return 1;
		}
		if (ev->id == MARK_WHISPER) {
			xf_accept_phase(call);
			return 1;
		}
		return 0;
	default:
		return 0;
	}
}

static const char *state_name(const struct b2b_xfer *xf)
{
	switch (xf->state) {
	case XF_RINGING:
	case XF_WHISPER:
	case XF_ACCEPT:
		return "in progress";
	case XF_BRIDGED:
		return "bridged";
	case XF_FAILED:
		return "failed";
	case XF_CANCELLED:
		return "cancelled";
	}
	return "?";
}

static json_t *offset(uint64_t t, uint64_t t0)
{
	return t && t >= t0 ? json_integer((json_int_t)(t - t0)) : json_null();
}

void b2b_xfer_record(struct b2b_call *call, json_t *cdr)
{
	struct b2b_xfer *xf = call->xfer;
	if (!xf) {
		json_object_set_new(cdr, "transfer", json_null());
		return;
	}
	json_t *o = json_object();
	json_object_set_new(o, "queue", json_string(xf->q->name));
	json_object_set_new(o, "number", json_string(xf->number));
	json_object_set_new(o, "after_hours", json_boolean(xf->after_hours));
	json_object_set_new(o, "source", json_string(xf->source));
	json_object_set_new(o, "reason", json_string(xf->reason));
	json_object_set_new(o, "summary", json_string(xf->summary));
	json_object_set_new(o, "result", json_string(state_name(xf)));
	json_object_set_new(o, "why", xf->why[0] ? json_string(xf->why) : json_null());
	json_object_set_new(o, "agent", json_string(xf->agent));
	json_object_set_new(o, "agent_sip_code", json_integer(call->x.final_status));
	/* ms from the tool call to each step */
	json_object_set_new(o, "hold_ms", offset(xf->t_hold, xf->t_start));
	json_object_set_new(o, "invite_ms", offset(xf->t_invite, xf->t_start));
	json_object_set_new(o, "answer_ms", offset(xf->t_answer, xf->t_start));
	json_object_set_new(o, "accept_ms", offset(xf->t_accept, xf->t_start));
	json_object_set_new(o, "bridge_ms", offset(xf->t_bridge, xf->t_start));
	json_object_set_new(o, "end_ms", offset(xf->t_end, xf->t_start));
	/* The AI part and the human part of the call. */
	uint64_t end = call->end_ms ? call->end_ms : now_ms();
	json_object_set_new(o, "ai_part_ms",
	                    offset(xf->t_bridge ? xf->t_bridge : end, call->answer_ms));
	json_object_set_new(o, "human_part_ms",
	                    xf->t_bridge ? offset(end, xf->t_bridge) : json_integer(0));
	json_object_set_new(cdr, "transfer", o);
}

void b2b_xfer_free(struct b2b_call *call)
{
	struct b2b_xfer *xf = call->xfer;
	if (!xf)
		return;
	b2b_timer_drop(&xf->leg_timer);
	b2b_timer_drop(&xf->ho_timer);
	mem_free(xf);
	call->xfer = NULL;
}
