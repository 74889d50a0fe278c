/* REFER received on a bridged call: blind transfer, Replaces (join two calls or pass it on). */
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
#include <strings.h>

#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/url.h>

/*
 * Everything here runs on the sip thread. The referrer is an answered leg bridged to the
 * "other" party (a <-> b, or the customer <-> x after a warm transfer). vacsd answers
 * 202, NOTIFYs "100 Trying" and calls the Refer-To target on slot t through the
 * referrer's trunk. When the target answers, the other party is bridged to it and the
 * two legs swap slots: the target takes the referrer's slot (so the rest of call.c
 * sees an ordinary bridged call) and the referrer moves to slot t, is NOTIFYed "200 OK"
 * (subscription terminated) and gets a BYE once the NOTIFY is answered. A failure
 * NOTIFYs the final status and leaves the bridge as it was. A referrer that hangs up
 * after the 202 leaves the other party on hold (the queue's music when the call came
 * through a warm transfer, else silence) until the target answers or fails; on failure
 * the other party is released with a Reason.
 *
 * Replaces naming one of our own dialogs (in another call) joins internally: the other
 * party of the replaced leg moves into the referrer's slot of this call and is bridged
 * to our other party (re-INVITEd to a new media port when the two sit on different
 * media workers); the referrer and the replaced leg are released. Replaces naming a
 * dialog we do not know goes to the target in the INVITE.
 */

enum rf_phase {
	RF_CALLING = 1, /* the target is being called (or the join re-INVITE is out) */
	RF_DONE,        /* decided; waiting for the final NOTIFY's answer */
};

#define PLAY_REFER_MOH 4u

struct b2b_refer {
	struct b2b_leg *referrer; /* where the referrer's leg is now (its slot, or t) */
	struct b2b_leg *other;    /* the party that talked to the referrer */
	char event[64];           /* Event of the implicit subscription ("refer;id=2") */
	const char *kind;         /* "blind" or "attended" */
	char target[256];         /* the Refer-To URI without its headers */
	char joined[96];          /* attended, internal: the Call-ID of the joined call */
	enum rf_phase phase;
	int ok;            /* the target answered, or the join was made */
	int referrer_gone; /* BYE or end of the referrer's dialog */
	int moh;           /* the other party hears music on hold */
	int notified;      /* the final NOTIFY went out */
	int recorded;      /* the call record entry was written */
	char side;         /* the referrer's slot when the REFER came */
	uint64_t t_recv, t_answer, t_end;
};

static void metric_result(const char *result)
{
	char name[96];
	snprintf(name, sizeof(name), "vacs_refers_total{result=\"%s\"}", result);
	metric_inc(metric_get(METRIC_COUNTER, name, "REFERs received on calls, by outcome"));
}

static json_t *iso(uint64_t ms)
{
	char ts[40];
	if (!ms)
		return json_null();
	clock_format_iso(ms, ts, sizeof(ts));
	return json_string(ts);
}

/* One "refers" entry of the call record. */
static void entry_add(struct b2b_call *call, const char *target, const char *kind, char side,
                      const char *result, int code, uint64_t t_recv, uint64_t t_answer,
                      uint64_t t_end, const char *joined)
{
	if (!call->refers && !(call->refers = json_array()))
		return;
	char s[2] = {side, '\0'};
	json_t *o = json_object();
	json_object_set_new(o, "target", json_string(target));
	json_object_set_new(o, "kind", json_string(kind));
	json_object_set_new(o, "from_side", json_string(s));
	json_object_set_new(o, "result", json_string(result));
	json_object_set_new(o, "sip_code", json_integer(code));
	json_object_set_new(o, "received", iso(t_recv));
	json_object_set_new(o, "answered", iso(t_answer));
	json_object_set_new(o, "ended", iso(t_end));
	json_object_set_new(o, "joined_call",
	                    joined && joined[0] ? json_string(joined) : json_null());
	json_array_append_new(call->refers, o);
	metric_result(result);
}

static void refer_entry(struct b2b_call *call, const char *result, int code)
{
	struct b2b_refer *r = call->refer;
	if (r->recorded)
		return;
	r->recorded = 1;
	r->t_end = clock_wall_ms();
	entry_add(call, r->target, r->kind, r->side, result, code, r->t_recv, r->t_answer, r->t_end,
	          r->joined);
}

void b2b_refer_free(struct b2b_call *call)
{
	if (call->refer && !call->refer->recorded)
		refer_entry(call, "abandoned", 0);
	mem_free(call->refer);
	call->refer = NULL;
}

int b2b_refer_active(const struct b2b_call *call)
{
	return call->refer && call->refer->phase == RF_CALLING;
}

void b2b_refer_record(struct b2b_call *call, json_t *cdr)
{
	if (call->refer && !call->refer->recorded)
		refer_entry(call, "abandoned", 0);
	json_object_set_new(cdr, "refers", call->refers ? json_incref(call->refers) : json_array());
}

void b2b_refer_reject_ood(nua_handle_t *nh)
{
	b2b_count_reject("refer_out_of_dialog");
	log_info("refer", "REFER outside a dialog refused (403)");
	nua_respond(nh, 403, "Out-Of-Dialog REFER Not Allowed", NUTAG_WITH_THIS(b2b_g.nua),
	            TAG_END());
}

/* Answers the REFER with an error and keeps it in the record. With `event` the REFER is
 * accepted and the error goes in its only NOTIFY instead: sofia (and RFC 5057) end the
 * whole dialog on some final answers to a mid-dialog request (416 among them), and a
 * malformed transfer request must not cost the call. */
static void refuse(struct b2b_leg *leg, int code, const char *phrase, const char *target,
                   const char *event)
{
	char detail[320];
	b2b_count_reject("refer");
	log_info("refer", "REFER on leg %c refused: %d %s", leg->side, code, phrase);
	if (event) {
		char frag[128];
		snprintf(frag, sizeof(frag), "SIP/2.0 %d %s\r\n", code, phrase);
		nua_respond(leg->nh, SIP_202_ACCEPTED, NUTAG_WITH_THIS(b2b_g.nua), LEG_CONTACT(leg),
		            TAG_END());
		nua_notify(leg->nh, SIPTAG_EVENT_STR(event),
		           SIPTAG_CONTENT_TYPE_STR("message/sipfrag;version=2.0"),
		           SIPTAG_PAYLOAD_STR(frag), NUTAG_SUBSTATE(nua_substate_terminated),
		           LEG_CONTACT(leg), TAG_END());
	} else {
		nua_respond(leg->nh, code, phrase, NUTAG_WITH_THIS(b2b_g.nua), TAG_END());
	}
	snprintf(detail, sizeof(detail), "%d %s", code, phrase);
	b2b_call_step(leg->call, "refer.rejected", detail);
	uint64_t now = clock_wall_ms();
	entry_add(leg->call, target ? target : "", "blind", leg->side, "rejected", code, now, 0,
	          now, NULL);
}

/* NOTIFY of the implicit subscription: the sipfrag of `code phrase`; `final` ends it. */
static void notify(struct b2b_refer *r, int code, const char *phrase, int final)
{
	struct b2b_leg *l = r->referrer;
	if (r->notified || !l->nh || l->state != LEG_UP)
		return;
	char frag[128];
	snprintf(frag, sizeof(frag), "SIP/2.0 %d %s\r\n", code, phrase ? phrase : "");
	nua_notify(l->nh, SIPTAG_EVENT_STR(r->event),
	           SIPTAG_CONTENT_TYPE_STR("message/sipfrag;version=2.0"), SIPTAG_PAYLOAD_STR(frag),
	           NUTAG_SUBSTATE(final ? nua_substate_terminated : nua_substate_active),
	           LEG_CONTACT(l), TAG_END());
	r->notified = final;
}

/* Exchanges what two slots hold; each slot keeps its name and call. */
static void leg_swap(struct b2b_leg *p, struct b2b_leg *q)
{
	struct b2b_leg tmp = *p;
	*p = *q;
	*q = tmp;
	char side = p->side;
	p->side = q->side;
	q->side = side;
	struct b2b_call *c = p->call;
	p->call = q->call;
	q->call = c;
	b2b_leg_rebind(p);
	b2b_leg_rebind(q);
}

/* Empties slot t for a new target (a previous one's media session goes). */
static void slot_reset(struct b2b_leg *t)
{
	struct b2b_call *c = t->call;
	b2b_timer_drop(&t->invite_timer);
	b2b_timer_drop(&t->refresh_timer);
	media_session_destroy(t->ms);
	b2b_leg_drop_remote(t);
	memset(t, 0, sizeof(*t));
	t->call = c;
	t->side = 't';
	t->id = ++b2b_g.next_leg_id;
	t->pt_dtmf = -1;
}

/* ---- outcomes ---- */

static void refer_fail(struct b2b_call *call, int code, const char *phrase)
{
	struct b2b_refer *r = call->refer;
	char detail[300];
	r->phase = RF_DONE;
	b2b_timer_drop(&call->t.invite_timer);
	notify(r, code, phrase, 1);
	refer_entry(call, code == 487 ? "cancelled" : "failed", code);
	snprintf(detail, sizeof(detail), "%d %s", code, phrase ? phrase : "");
	b2b_call_step(call, "refer.failed", detail);
	log_warn("refer", "transfer to %s failed: %d %s", r->target, code, phrase ? phrase : "");
	if (r->referrer_gone) {
		/* Nobody to go back to: the other party is let go, saying why. */
		char reason[160];
		snprintf(reason, sizeof(reason), "SIP;cause=%d;text=\"Transfer failed\"", code);
		if (r->moh && r->other->ms)
			media_session_play(r->other->ms, NULL, 0, PLAY_REFER_MOH);
		b2b_call_set_end(call, 'n', code, "transfer target failed");
		b2b_leg_bye(r->other, reason);
	}
	if (!r->notified)
		b2b_refer_free(call);
}

/* The target answered: the other party talks to it; the target takes the referrer's slot. */
static void target_answered(struct b2b_call *call, const sip_t *sip)
{
	struct b2b_refer *r = call->refer;
	struct b2b_leg *t = &call->t;
	struct b2b_sdp ans;
	const char *why = NULL;
	b2b_timer_drop(&t->invite_timer);
	nua_ack(t->nh, LEG_CONTACT(t), TAG_END()); /* nua's auto-ACK is off */
	t->state = LEG_UP;
	t->final_status = 200;
	if (b2b_sip_sdp(sip, &ans, &why) != 0 || b2b_leg_take_answer(t, &ans) != 0) {
		b2b_count_reject("bad_sdp");
		b2b_leg_bye(t, "SIP;cause=488;text=\"Unusable SDP answer\"");
		refer_fail(call, 488, "Not Acceptable Here");
		return;
	}
	b2b_leg_media_apply(t, 1);
	struct b2b_leg *other = r->other;
	if (r->moh)
		media_session_play(other->ms, NULL, 0, PLAY_REFER_MOH);
	int rc = media_session_bridge(other->ms, t->ms);
	if (rc)
		log_err("refer", "cannot bridge leg %c to the target: %s", other->side,
		        strerror(-rc));
	r->t_answer = clock_wall_ms();
	r->ok = 1;
	r->phase = RF_DONE;
	struct b2b_leg *slot = r->referrer;
	leg_swap(slot, t);
	r->referrer = t;
	b2b_leg_session_timers(slot, sip, 1);
	notify(r, 200, "OK", 1);
	refer_entry(call, "transferred", 200);
	b2b_call_step(call, "refer.completed", r->target);
	log_info("refer", "leg %c bridged to %s (slot %c), %llu ms after the REFER", other->side,
	         r->target, slot->side, (unsigned long long)(r->t_answer - r->t_recv));
	if (!r->notified) {
		/* No NOTIFY to wait for (the referrer is leaving): release it now. */
		b2b_leg_bye(t, "SIP;cause=200;text=\"Call transferred\"");
		b2b_refer_free(call);
	}
}

static void on_target_timeout(su_root_magic_t *m, su_timer_t *tm, su_timer_arg_t *arg)
{
	(void)m;
	(void)tm;
	struct b2b_call *call = (struct b2b_call *)arg;
	b2b_timer_drop(&call->t.invite_timer);
	if (!b2b_refer_active(call))
		return;
	log_set_call(call->id);
	call->t.final_status = 408;
	b2b_leg_bye(&call->t, "SIP;cause=408;text=\"No answer\"");
	refer_fail(call, 408, "Request Timeout");
	log_set_call(NULL);
}

/* The referrer hung up after the 202: the other party waits on hold for the target. */
static void referrer_left(struct b2b_call *call)
{
	struct b2b_refer *r = call->refer;
	if (r->referrer_gone)
		return;
	r->referrer_gone = 1;
	if (r->phase != RF_CALLING)
		return;
	struct b2b_leg *o = r->other;
	media_session_bridge(o->ms, NULL);
	struct media_prompt *moh = b2b_xfer_moh(call);
	r->moh = moh && media_session_play(o->ms, moh, 1, PLAY_REFER_MOH) == 0;
	b2b_call_step(call, "refer.referrer_left", r->moh ? "music on hold" : "silence");
	log_info("refer", "the referrer hung up: leg %c on hold until %s answers", o->side,
	         r->target);
}

/* ---- calling the target ---- */

/* The node of trunk t the Refer-To URL names, or -1: a REFER never sends us elsewhere. */
static int node_of_url(const struct conf_trunk *t, const url_t *u)
{
	if (!u->url_host)
		return -1;
	unsigned port = u->url_port ? (unsigned)atoi(u->url_port) : 0;
	int host_only = -1;
	for (size_t i = 0; i < t->n_nodes; i++) {
		if (strcasecmp(t->nodes[i].host, u->url_host) != 0)
			continue;
		if (port == t->nodes[i].port)
			return (int)i;
		if (host_only < 0)
			host_only = (int)i;
	}
	return host_only;
}

static int start_target(struct b2b_call *call, const url_t *u, const char *user,
                        const char *referred_by, const char *replaces)
{
	struct b2b_refer *r = call->refer;
	struct b2b_leg *t = &call->t, *other = r->other;
	const struct conf_trunk *tr = r->referrer->trunk;
	slot_reset(t);
	t->trunk = tr;
	if (b2b_leg_media_create(t, other->ms))
		return -ENOMEM;
	unsigned order[16];
	unsigned n = b2b_trunk_node_order(tr, order, 16);
	int named = node_of_url(tr, u);
	if (!n)
		return -ENOENT;
	unsigned node = named >= 0 ? (unsigned)named : order[0];
	char ruri[256], from[300], num[64] = "";
	if (b2b_trunk_uri(tr, node, user, ruri, sizeof(ruri)))
		return -EINVAL;
	/* The target sees who is being transferred to it. */
	const char *who = other == &call->a ? call->caller_e164 : call->called_e164;
	if (b2b_number_egress(&tr->numbering, who, num, sizeof(num)))
		snprintf(num, sizeof(num), "%s", who);
	int privacy = other == &call->a && call->privacy_id;
	if (privacy)
		snprintf(from, sizeof(from), "\"Anonymous\" <sip:anonymous@anonymous.invalid>");
	else
		snprintf(from, sizeof(from), "<sip:%s@%s>", num[0] ? num : "anonymous",
		         b2b_g.our_host);
	struct strbuf hdr;
	str_init(&hdr);
	str_printf(&hdr, "Referred-By: %s\r\n", referred_by);
	if (replaces)
		str_printf(&hdr, "Replaces: %s\r\n", replaces);
	b2b_xfer_context(call, &hdr);
	if (num[0])
		str_printf(&hdr, "P-Asserted-Identity: <sip:%s@%s>\r\n", num, b2b_g.our_host);
	int rc = hdr.oom ? -ENOMEM : b2b_leg_invite(t, ruri, from, other->codec, &hdr, privacy);
	str_deinit(&hdr);
	if (rc)
		return rc;
	if (tr->invite_timeout_s) {
		t->invite_timer =
		    su_timer_create(su_root_task(b2b_g.root), tr->invite_timeout_s * 1000);
		if (t->invite_timer)
			su_timer_set(t->invite_timer, on_target_timeout, (su_timer_arg_t *)call);
	}
	b2b_call_step(call, "refer.invite", ruri);
	log_info("refer", "INVITE %s via %s for the REFER of leg %c", ruri, tr->name,
	         r->referrer->side);
	return 0;
}

/* ---- attended transfer between two of our calls ---- */

/* The other party of leg l2 (in another call) joins `other` of this call in the referrer's
 * slot; the referrer and l2 are released. */
static void join_calls(struct b2b_call *call, struct b2b_leg *l2)
{
	struct b2b_refer *r = call->refer;
	struct b2b_call *call2 = l2->call;
	struct b2b_leg *o2 = b2b_leg_peer(l2), *other = r->other;
	struct b2b_leg *slot = r->referrer;
	snprintf(r->joined, sizeof(r->joined), "%s", call2->id);
	slot_reset(&call->t);
	leg_swap(slot, &call->t); /* the referrer waits in t for its BYE */
	r->referrer = &call->t;
	leg_swap(slot, o2); /* the joined party moves into this call */
	o2->state = LEG_GONE;
	media_session_bridge(other->ms, NULL);
	if (media_session_worker(slot->ms) == media_session_worker(other->ms)) {
		media_session_bridge(other->ms, slot->ms);
	} else {
		/* Bridged sessions share a worker: the joined party gets a new media port
		 * next to ours, by re-INVITE; call.c bridges on its answer. */
		struct media_session *ms = NULL;
		uint16_t port = 0;
		char *sdp = NULL;
		if (media_session_create(slot->id, other->ms, &ms, &port) == 0) {
			media_session_destroy(slot->ms);
			slot->ms = ms;
			slot->local_port = port;
			sdp = b2b_leg_offer(slot, slot->codec, 0);
		}
		if (!sdp) {
			log_err("refer", "cannot move the joined party's media");
			b2b_call_hangup(call, 503, "no media for the joined party");
			return;
		}
		slot->reoffer = 1;
		nua_invite(slot->nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"),
		           SIPTAG_PAYLOAD_STR(sdp), LEG_CONTACT(slot), TAG_END());
		mem_free(sdp);
	}
	char detail[200];
	snprintf(detail, sizeof(detail), "joined to call %s", call->id);
	b2b_call_set_end(call2, 'n', 0, "replaced (REFER with Replaces)");
	b2b_call_step(call2, "refer.replaced", detail);
	b2b_leg_bye(l2, "SIP;cause=200;text=\"Replaced\"");
	r->ok = 1;
	r->phase = RF_DONE;
	r->t_answer = clock_wall_ms();
	notify(r, 200, "OK", 1);
	refer_entry(call, "joined", 200);
	b2b_call_step(call, "refer.joined", call2->id);
	log_info("refer", "attended transfer: leg %c joined to the party of call %s (slot %c)",
	         other->side, call2->id, slot->side);
	if (!r->notified) {
		b2b_leg_bye(&call->t, "SIP;cause=200;text=\"Call transferred\"");
		b2b_refer_free(call);
	}
	b2b_call_maybe_finish(call2);
}

/* Our leg that a Replaces value names (either tag order), or NULL. */
static struct b2b_leg *leg_by_replaces(su_home_t *home, const char *value)
{
	sip_replaces_t *rp = sip_replaces_make(home, value);
	if (!rp || !rp->rp_call_id || !rp->rp_to_tag || !rp->rp_from_tag)
		return NULL;
	nua_handle_t *nh = nua_handle_by_replaces(b2b_g.nua, rp);
	if (!nh) {
		/* Some PBXs name the tags from their own side. */
		const char *to = rp->rp_to_tag;
		char s[512];
		snprintf(s, sizeof(s), "%s;to-tag=%s;from-tag=%s", rp->rp_call_id, rp->rp_from_tag,
		         to);
		sip_replaces_t *sw = sip_replaces_make(home, s);
		nh = sw ? nua_handle_by_replaces(b2b_g.nua, sw) : NULL;
	}
	if (!nh)
		return NULL;
	struct b2b_leg *l = nua_handle_magic(nh);
	nua_handle_unref(nh);
	return l && l->call ? l : NULL;
}

/* ---- the REFER ---- */

static int is_refer_to(const char *name)
{
	return name && (strcasecmp(name, "Refer-To") == 0 || strcasecmp(name, "r") == 0);
}

/* Refer-To header fields in the request, parsed or not (sofia keeps one parsed and
 * files a repeated or broken one among the errors or unknown headers). */
static int refer_to_count(const sip_t *sip)
{
	int n = 0;
	for (const msg_header_t *h = (const msg_header_t *)sip->sip_request; h && n < 100;
	     h = h->sh_succ) {
		if (h->sh_class == sip_refer_to_class)
			n++;
		else if (h->sh_class == sip_error_class && is_refer_to(h->sh_error->er_name))
			n++;
		else if (h->sh_class == sip_unknown_class && is_refer_to(h->sh_unknown->un_name))
			n++;
	}
	return n;
}

/* A dial string we pass on: digits, letters and + * # . _ - only. */
static int user_ok(const char *u)
{
	if (!u || !u[0] || strlen(u) > 63)
		return 0;
	for (const char *p = u; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= 'A' && *p <= 'Z') || strchr("+*#._-", *p)))
			return 0;
	return 1;
}

/* The Replaces= value among the URL's headers, unescaped into out; 0 none, 1 found, -1 bad. */
static int replaces_of(const url_t *u, char *out, size_t len)
{
	const char *h = u->url_headers;
	while (h && *h) {
		size_t n = strcspn(h, "&");
		if (n > 9 && strncasecmp(h, "Replaces=", 9) == 0) {
			if (n - 9 >= len)
				return -1;
			memcpy(out, h + 9, n - 9);
			out[n - 9] = '\0';
			url_unescape(out, out);
			for (const char *p = out; *p; p++)
				if ((unsigned char)*p < 0x20 || *p == 0x7f)
					return -1;
			return out[0] ? 1 : -1;
		}
		h += n + (h[n] == '&');
	}
	return 0;
}

void b2b_refer_request(struct b2b_leg *leg, const sip_t *sip, tagi_t tags[])
{
	struct b2b_call *call = leg->call;
	const sip_refer_to_t *rt = sip->sip_refer_to;
	int count = refer_to_count(sip);
	su_home_t home[1] = {SU_HOME_INIT(home)};
	char target[256] = "", repl[512] = "", by[512] = "";
	if (rt) {
		url_t u = *rt->r_url;
		u.url_headers = NULL;
		char *s = url_as_string(home, &u);
		snprintf(target, sizeof(target), "%s", s ? s : "");
	}
	const sip_event_t *ev = NULL;
	tl_gets(tags, NUTAG_REFER_EVENT_REF(ev), TAG_END());
	char *evs = ev ? sip_header_as_string(home, (const sip_header_t *)ev) : NULL;
	const char *evname = evs ? evs : "refer";
	b2b_call_step(call, "refer.received", target);
	log_info("refer", "REFER on leg %c to %s", leg->side, target[0] ? target : "(none)");
	const url_t *u = rt ? rt->r_url : NULL;
	const char *user = !u ? NULL : u->url_type == url_tel ? u->url_host : u->url_user;
	struct b2b_leg *peer = b2b_leg_peer(leg), *l2 = NULL;
	int rp = u ? replaces_of(u, repl, sizeof(repl)) : 0;
	if (!rt && !count)
		refuse(leg, 400, "Missing Refer-To", NULL, NULL);
	else if (count > 1 || (rt && rt->r_next))
		refuse(leg, 400, "Multiple Refer-To", target, NULL);
	else if (!rt)
		refuse(leg, 400, "Bad Refer-To", NULL, NULL);
	else if (u->url_type != url_sip && u->url_type != url_sips && u->url_type != url_tel)
		refuse(leg, 416, "Unsupported URI Scheme In Refer-To", target, evname);
	else if (rp < 0)
		refuse(leg, 400, "Bad Replaces In Refer-To", target, NULL);
	else if (!user_ok(user))
		refuse(leg, 400, "Bad User In Refer-To", target, NULL);
	else if (b2b_refer_active(call) || b2b_xfer_active(call) || call->t.nh || leg->reoffer)
		refuse(leg, 491, "Transfer In Progress", target, NULL);
	else if (leg->state != LEG_UP)
		refuse(leg, 403, "Call Not Answered", target, NULL);
	else if (call->ai || !peer || !peer->nh || peer->state != LEG_UP || !peer->ms ||
	         peer->reoffer)
		refuse(leg, 403, "Not A Bridged Call", target, NULL);
	else if (rp > 0 && (l2 = leg_by_replaces(home, repl)) != NULL &&
	         (l2->call == call || l2->state != LEG_UP || l2->call->ai || l2->call->refer ||
	          b2b_xfer_active(l2->call) || !b2b_leg_peer(l2) || !b2b_leg_peer(l2)->nh ||
	          b2b_leg_peer(l2)->state != LEG_UP || !b2b_leg_peer(l2)->ms ||
	          b2b_leg_peer(l2)->reoffer))
		refuse(leg, 403, "Replaced Dialog Not Joinable", target, NULL);
	else
		goto accept;
	su_home_deinit(home);
	return;

accept:;
	b2b_refer_free(call); /* a finished one still waiting for its NOTIFY's answer */
	struct b2b_refer *r = mem_zalloc(sizeof(*r));
	if (!r) {
		refuse(leg, 500, "Out Of Memory", target, NULL);
		su_home_deinit(home);
		return;
	}
	call->refer = r;
	r->referrer = leg;
	r->other = peer;
	r->side = leg->side;
	r->kind = rp > 0 ? "attended" : "blind";
	r->phase = RF_CALLING;
	r->t_recv = clock_wall_ms();
	snprintf(r->target, sizeof(r->target), "%s", target);
	snprintf(r->event, sizeof(r->event), "%s", evname);
	/* Referred-By as sent, else the referrer's own address (RFC 3892). */
	const sip_header_t *byh =
	    sip->sip_referred_by ? (const sip_header_t *)sip->sip_referred_by : NULL;
	char *bys = byh ? sip_header_as_string(home, byh) : NULL;
	if (!bys && sip->sip_from) {
		char *fu = url_as_string(home, sip->sip_from->a_url);
		if (fu)
			snprintf(by, sizeof(by), "<%s>", fu);
	} else if (bys) {
		snprintf(by, sizeof(by), "%s", bys);
	}
	by[strcspn(by, "\r\n")] = '\0';

	nua_respond(leg->nh, SIP_202_ACCEPTED, NUTAG_WITH_THIS(b2b_g.nua), LEG_CONTACT(leg),
	            TAG_END());
	notify(r, 100, "Trying", 0);
	b2b_call_step(call, "refer.accepted", r->kind);
	if (l2) {
		join_calls(call, l2);
	} else {
		int rc =
		    start_target(call, u, user, by[0] ? by : "<sip:anonymous@anonymous.invalid>",
		                 rp > 0 ? repl : NULL);
		if (rc) {
			log_err("refer", "cannot call %s: %s", target, strerror(-rc));
			refer_fail(call, rc == -ENOENT ? 503 : 500,
			           rc == -ENOENT ? "Service Unavailable" : "Server Internal Error");
		}
	}
	su_home_deinit(home);
}

/* ---- events ---- */

/* Events of slot t when it is not the target being called: a referrer being released. */
static int released_leg_event(nua_event_t ev, int status, struct b2b_leg *leg)
{
	struct b2b_call *call = leg->call;
	switch (ev) {
	case nua_r_invite:
		if (status >= 200 && status < 300 && leg->nh) { /* answered after we gave up */
			nua_ack(leg->nh, TAG_END());
			nua_bye(leg->nh, TAG_END());
		}
		return 1;
	case nua_i_bye:
		leg->state = LEG_ENDING;
		return 1;
	case nua_i_state:
		return 0; /* the caller looks at the call state */
	case nua_i_invite:
	case nua_i_ack:
	case nua_i_refer:
		return 0; /* answered as on any leg */
	default:
		(void)call;
		return 1;
	}
}

static void leg_gone(struct b2b_leg *leg)
{
	if (leg->nh) {
		nua_handle_destroy(leg->nh);
		leg->nh = NULL;
	}
	b2b_timer_drop(&leg->invite_timer);
	leg->state = LEG_GONE;
}

int b2b_refer_event(nua_event_t ev, int status, const char *phrase, struct b2b_leg *leg,
                    const sip_t *sip, tagi_t tags[])
{
	struct b2b_call *call = leg->call;
	struct b2b_refer *r = call->refer;
	int cs = -1;
	if (ev == nua_i_state)
		tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
	int ended = ev == nua_i_state && cs == nua_callstate_terminated;

	/* The final NOTIFY was answered: the referrer of a completed transfer goes. */
	if (r && leg == r->referrer && ev == nua_r_notify) {
		if (status >= 200 && r->phase == RF_DONE && r->notified) {
			if (r->ok)
				b2b_leg_bye(leg, "SIP;cause=200;text=\"Call transferred\"");
			b2b_refer_free(call);
		}
		return 1;
	}
	/* The target being called. */
	if (r && r->phase == RF_CALLING && leg == &call->t) {
		if (ev == nua_r_invite) {
			if (status < 200)
				return 1;
			if (status < 300) {
				target_answered(call, sip);
				return 1;
			}
			if ((status == 401 || status == 407) && sip && leg->auth_tries < 2 &&
			    b2b_trunk_authenticate(leg->trunk, leg->nh, sip)) {
				leg->auth_tries++;
				return 1;
			}
			leg->final_status = status;
			leg_gone(leg);
			refer_fail(call, status, phrase ? phrase : "Failed");
			b2b_call_maybe_finish(call);
			return 1;
		}
		if (ended) {
			leg_gone(leg);
			refer_fail(call, status >= 300 ? status : 500, phrase ? phrase : "Failed");
			b2b_call_maybe_finish(call);
		}
		return 1;
	}
	if (leg->side == 't') {
		if (released_leg_event(ev, status, leg))
			return 1;
		if (!ended)
			return 0;
		if (r && r->referrer == leg)
			b2b_refer_free(call);
		leg_gone(leg);
		b2b_call_maybe_finish(call);
		return 1;
	}
	if (!r)
		return 0;
	/* The referrer, still in its slot. */
	if (leg == r->referrer && (ev == nua_i_bye || ended)) {
		if (r->phase == RF_DONE) {
			b2b_refer_free(call); /* the transfer failed: an ordinary hang-up now */
			return 0;
		}
		if (ended)
			leg_gone(leg);
		else
			leg->state = LEG_ENDING;
		referrer_left(call);
		return 1;
	}
	/* The other party left while the target was being called. */
	if (leg == r->other && r->phase == RF_CALLING && (ev == nua_i_bye || ended)) {
		if (ev == nua_i_bye)
			leg->state = LEG_ENDING; /* no BYE of ours crosses its BYE */
		b2b_leg_bye(&call->t, "SIP;cause=487;text=\"Transferee hung up\"");
		refer_fail(call, 487, "Request Terminated");
		if (call->refer && call->refer->referrer_gone)
			b2b_refer_free(call);
		return 0;
	}
	return 0;
}
