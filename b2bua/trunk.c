/* Trunks at run time: registration, OPTIONS probing of nodes, node order for failover, digest. */
#include "b2bua/live.h"
#include "b2bua/b2bua_int.h"

#include "conf/conf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>

static const char *transport_param(enum conf_transport tp)
{
	switch (tp) {
	case CONF_TP_TCP:
		return ";transport=tcp";
	case CONF_TP_TLS:
		return ";transport=tls";
	default:
		return "";
	}
}

int b2b_trunk_uri(const struct conf_trunk *t, unsigned node, const char *user, char *out,
                  size_t len)
{
	if (node >= t->n_nodes)
		return -EINVAL;
	const struct conf_node *n = &t->nodes[node];
	int w = snprintf(out, len, "sip:%s%s%s:%u%s", user ? user : "", user ? "@" : "", n->host,
	                 n->port, transport_param(t->transport));
	return w < 0 || (size_t)w >= len ? -EINVAL : 0;
}

struct b2b_trunk_rt *b2b_trunk_rt(const struct conf_trunk *t)
{
	for (size_t i = 0; i < b2b_g.n_trunks; i++) {
		if (b2b_g.trunks[i].t == t)
			return &b2b_g.trunks[i];
	}
	return NULL;
}

unsigned b2b_trunk_node_order(const struct conf_trunk *t, unsigned *order, unsigned max)
{
	struct b2b_trunk_rt *rt = b2b_trunk_rt(t);
	unsigned n = 0;
	for (int pass = 0; pass < 2; pass++) {
		/* Insertion by priority, up nodes first, then nodes marked down (last resort). */
		unsigned start = n;
		for (unsigned i = 0; i < t->n_nodes && i < B2B_MAX_NODES && n < max; i++) {
			int up = rt ? rt->nodes[i].up : 1;
			if ((pass == 0) != (up != 0))
				continue;
			unsigned j = n++;
			while (j > start &&
			       t->nodes[order[j - 1]].priority > t->nodes[i].priority) {
				order[j] = order[j - 1];
				j--;
			}
			order[j] = i;
		}
	}
	return n;
}

static void set_node_up(struct b2b_trunk_rt *rt, unsigned i, int up, const char *why)
{
	struct b2b_node_rt *n = &rt->nodes[i];
	if (n->up != up) {
		log_info("trunk", "%s node %s:%u is %s (%s)", rt->t->name, rt->t->nodes[i].host,
		         rt->t->nodes[i].port, up ? "up" : "down", why);
		b2b_live_trunk(rt->t->name, rt->t->nodes[i].host, up ? "up" : "down");
	}
	n->up = up;
	metric_set(n->m_up, up);
}

void b2b_trunk_node_failed(const struct conf_trunk *t, unsigned node)
{
	struct b2b_trunk_rt *rt = b2b_trunk_rt(t);
	if (rt && node < B2B_MAX_NODES && t->options_interval_s)
		set_node_up(rt, node, 0, "call attempt failed");
}

int b2b_trunk_authenticate(const struct conf_trunk *t, nua_handle_t *nh, const sip_t *sip)
{
	if (!t->auth.user || !t->auth.user[0] || !t->auth.password)
		return 0;
	const msg_auth_t *au =
	    sip->sip_www_authenticate ? sip->sip_www_authenticate : sip->sip_proxy_authenticate;
	if (!au || !au->au_scheme)
		return 0;
	const char *realm = msg_params_find(au->au_params, "realm=");
	if (!realm)
		return 0;
	char r[128];
	snprintf(r, sizeof(r), "%s", realm);
	size_t rl = strlen(r);
	if (rl >= 2 && r[0] == '"' && r[rl - 1] == '"') {
		memmove(r, r + 1, rl - 2);
		r[rl - 2] = '\0';
	}
	/* Only the carrier's own realm gets its credentials. */
	if (t->auth.realm && t->auth.realm[0] && strcmp(r, t->auth.realm) != 0) {
		log_warn("trunk", "%s: challenge for realm \"%s\" ignored (configured \"%s\")",
		         t->name, r, t->auth.realm);
		return 0;
	}
	char cred[512];
	snprintf(cred, sizeof(cred), "%s:\"%s\":%s:%s", au->au_scheme, r, t->auth.user,
	         t->auth.password);
	nua_authenticate(nh, NUTAG_AUTH(cred), TAG_END());
	return 1;
}

static void send_register(struct b2b_trunk_rt *rt)
{
	const struct conf_trunk *t = rt->t;
	char aor[256], registrar[256];
	const char *domain = t->domain && t->domain[0] ? t->domain : t->nodes[0].host;
	snprintf(aor, sizeof(aor), "<sip:%s@%s>", t->auth.user, domain);
	if (b2b_trunk_uri(t, 0, NULL, registrar, sizeof(registrar)))
		return;
	if (!rt->reg.nh) {
		rt->reg.nh = nua_handle(b2b_g.nua, &rt->reg, SIPTAG_TO_STR(aor),
		                        SIPTAG_FROM_STR(aor), TAG_END());
		if (!rt->reg.nh)
			return;
	}
	char expires[16];
	snprintf(expires, sizeof(expires), "%u", t->register_expires_s);
	rt->reg.auth_tries = 0;
	nua_register(rt->reg.nh, NUTAG_REGISTRAR(registrar), SIPTAG_EXPIRES_STR(expires),
	             NUTAG_M_USERNAME(t->auth.user),
	             NUTAG_OUTBOUND("no-options-keepalive, no-validate, no-natify"),
	             NUTAG_KEEPALIVE(0), TAG_END());
	log_info("trunk", "%s: REGISTER %s to %s (expires %s)", t->name, aor, registrar, expires);
}

static void send_probe(struct b2b_trunk_rt *rt, unsigned i)
{
	struct b2b_node_rt *n = &rt->nodes[i];
	char uri[256];
	if (b2b_trunk_uri(rt->t, i, NULL, uri, sizeof(uri)))
		return;
	if (n->probe.nh)
		nua_handle_destroy(n->probe.nh);
	n->probe.nh =
	    nua_handle(b2b_g.nua, &n->probe, NUTAG_URL(uri), SIPTAG_TO_STR(uri), TAG_END());
	if (!n->probe.nh)
		return;
	nua_options(n->probe.nh, TAG_END());
	n->probe_pending = 1;
}

void b2b_trunks_tick(uint64_t now_ms)
{
	if (b2b_g.draining)
		return;
	for (size_t k = 0; k < b2b_g.n_trunks; k++) {
		struct b2b_trunk_rt *rt = &b2b_g.trunks[k];
		const struct conf_trunk *t = rt->t;
		if (t->register_enable && !rt->registered && rt->reg_retry_ms &&
		    now_ms >= rt->reg_retry_ms) {
			rt->reg_retry_ms = 0;
			send_register(rt);
		}
		if (!t->options_interval_s)
			continue;
		for (unsigned i = 0; i < t->n_nodes && i < B2B_MAX_NODES; i++) {
			struct b2b_node_rt *n = &rt->nodes[i];
			if (now_ms < n->next_probe_ms)
				continue;
			if (n->probe_pending)
				set_node_up(rt, i, 0, "no answer to OPTIONS");
			n->next_probe_ms = now_ms + t->options_interval_s * 1000u;
			send_probe(rt, i);
		}
	}
}

void b2b_trunk_event(nua_event_t ev, int status, const char *phrase, struct b2b_leg *leg,
                     const sip_t *sip)
{
	struct b2b_trunk_rt *rt = NULL;
	unsigned node = 0;
	for (size_t k = 0; k < b2b_g.n_trunks && !rt; k++) {
		if (&b2b_g.trunks[k].reg == leg)
			rt = &b2b_g.trunks[k];
		for (unsigned i = 0; i < B2B_MAX_NODES && !rt; i++) {
			if (&b2b_g.trunks[k].nodes[i].probe == leg) {
				rt = &b2b_g.trunks[k];
				node = i;
			}
		}
	}
	if (!rt)
		return;
	if (ev == nua_r_options) {
		if (status < 200)
			return;
		rt->nodes[node].probe_pending = 0;
		int down = status == 408 || status == 503;
		char why[64];
		snprintf(why, sizeof(why), "OPTIONS answered %d", status);
		set_node_up(rt, node, !down, why);
		return;
	}
	if (ev == nua_r_unregister) {
		if (status >= 200) {
			rt->registered = 0;
			log_info("trunk", "%s: unregistered (%d %s)", rt->t->name, status, phrase);
			b2b_live_trunk(rt->t->name, NULL, "unregistered");
		}
		return;
	}
	/* nua_r_register */
	if (status < 200)
		return;
	if ((status == 401 || status == 407) && sip && rt->reg.auth_tries < 2 &&
	    b2b_trunk_authenticate(rt->t, leg->nh, sip)) {
		rt->reg.auth_tries++;
		return;
	}
	char name[160];
	snprintf(name, sizeof(name), "vacs_trunk_registered{trunk=\"%s\"}", rt->t->name);
	struct metric *m =
	    metric_get(METRIC_GAUGE, name, "1 when the trunk's registration is active");
	if (status >= 200 && status < 300) {
		if (!rt->registered) {
			log_info("trunk", "%s: registered (%d %s)", rt->t->name, status, phrase);
			b2b_live_trunk(rt->t->name, NULL, "registered");
		}
		rt->registered = 1;
		rt->reg_failures = 0;
		rt->reg.auth_tries = 0;
		metric_set(m, 1);
		return;
	}
	rt->registered = 0;
	metric_set(m, 0);
	rt->reg_failures++;
	unsigned backoff = 30u * rt->reg_failures;
	if (backoff > 300)
		backoff = 300;
	rt->reg_retry_ms = b2b_now_ms() + backoff * 1000u;
	log_warn("trunk", "%s: registration failed: %d %s; retry in %u s", rt->t->name, status,
	         phrase, backoff);
	b2b_live_trunk(rt->t->name, NULL, "registration_failed");
	nua_handle_destroy(rt->reg.nh);
	rt->reg.nh = NULL;
}

int b2b_trunks_start(void)
{
	const struct conf *c = b2b_g.conf;
	b2b_g.trunks = mem_zalloc(sizeof(*b2b_g.trunks) * (c->n_trunks ? c->n_trunks : 1));
	if (!b2b_g.trunks)
		return -ENOMEM;
	b2b_g.n_trunks = c->n_trunks;
	for (size_t k = 0; k < c->n_trunks; k++) {
		struct b2b_trunk_rt *rt = &b2b_g.trunks[k];
		rt->t = &c->trunks[k];
		rt->reg.side = 'r';
		for (unsigned i = 0; i < B2B_MAX_NODES; i++) {
			rt->nodes[i].up = 1;
			rt->nodes[i].probe.side = 'o';
			if (i < rt->t->n_nodes) {
				char name[200];
				snprintf(name, sizeof(name),
				         "vacs_trunk_node_up{trunk=\"%s\",node=\"%s:%u\"}",
				         rt->t->name, rt->t->nodes[i].host, rt->t->nodes[i].port);
				rt->nodes[i].m_up = metric_get(
				    METRIC_GAUGE, name, "1 when the trunk node answers OPTIONS");
				metric_set(rt->nodes[i].m_up, 1);
			}
		}
		if (rt->t->register_enable)
			send_register(rt);
	}
	return 0;
}

void b2b_trunks_stop_probes(void)
{
	for (size_t k = 0; k < b2b_g.n_trunks; k++) {
		for (unsigned i = 0; i < B2B_MAX_NODES; i++) {
			struct b2b_node_rt *n = &b2b_g.trunks[k].nodes[i];
			if (n->probe.nh)
				nua_handle_destroy(n->probe.nh);
			n->probe.nh = NULL;
			n->probe_pending = 0;
		}
	}
}

void b2b_trunks_stop(int unregister)
{
	for (size_t k = 0; k < b2b_g.n_trunks; k++) {
		struct b2b_trunk_rt *rt = &b2b_g.trunks[k];
		if (rt->reg.nh) {
			/* The un-REGISTER's answer arrives on an unbound handle, which the
			 * dispatcher destroys. */
			nua_handle_bind(rt->reg.nh, NULL);
			if (unregister && rt->registered && b2b_g.nua)
				nua_unregister(rt->reg.nh, TAG_END());
			else
				nua_handle_destroy(rt->reg.nh);
			rt->reg.nh = NULL;
		}
	}
	b2b_trunks_stop_probes();
	mem_free(b2b_g.trunks);
	b2b_g.trunks = NULL;
	b2b_g.n_trunks = 0;
}
