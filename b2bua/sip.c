/* The sip thread: sofia-sip nua stack setup, event dispatch, OPTIONS, signals, reload, drain. */
#include "b2bua/live.h"
#include "b2bua/b2bua_int.h"

#include "b2bua/b2bua.h"
#include "conf/conf.h"
#include "control/control.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_extra.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_log.h>
#include <sofia-sip/tport_tag.h>

struct b2b_global b2b_g;

static volatile sig_atomic_t want_stop, want_reload;

/* sofia's log objects (exported by the library, not declared in its headers). */
extern su_log_t nta_log[], tport_log[], nua_log[];

/* Formats nta uses when it drops or answers a malformed message itself (400, 413, 505,
 * bad Via, garbage); matched by text so nothing is formatted for the rest. */
static const char *const malformed_fmts[] = {
    "nta: %s (%u) is %s\n",
    "nta: %s (%u) %s\n",
    "nta: bad version %s for %s (%u)\n",
    "nta_agent: received garbage from ",
};

static void sofia_log(void *stream, char const *fmt, va_list ap)
{
	static struct log_ratelimit rl;
	const char *src = stream;
	for (size_t i = 0; i < sizeof(malformed_fmts) / sizeof(malformed_fmts[0]); i++) {
		if (strncmp(fmt, malformed_fmts[i], strlen(malformed_fmts[i])) != 0)
			continue;
		char line[512];
		va_list aq;
		va_copy(aq, ap);
		vsnprintf(line, sizeof(line), fmt, aq);
		va_end(aq);
		line[strcspn(line, "\n")] = '\0';
		/* "nta: %s (%u) %s" also says where a good request goes. */
		if (i == 1 && !strstr(line, "sanity check") && !strstr(line, "invalid Via"))
			break;
		metric_inc(metric_get(METRIC_COUNTER, "vacs_sip_malformed_total",
		                      "Malformed SIP messages answered or dropped by the stack"));
		b2b_count_reject("malformed");
		if (log_ratelimit_ok(&rl))
			log_warn("sip", "malformed message: %s", line);
		return;
	}
	/* nta runs at level 5 only for the formats above; its other lines are debug, as is
	 * nua's note of the usages a dialog keeps ("handle with session and events ..."). */
	int debug = strcmp(src, "nta") == 0 || strncmp(fmt, "nua(%p): handle with", 20) == 0;
	if (debug && !log_enabled(LOG_DEBUG))
		return;
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	if (line[0])
		log_msg(debug ? LOG_DEBUG : LOG_WARN, "sofia", "%s: %s", src, line);
}

#define ALLOW_METHODS "INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, REFER"

uint64_t b2b_now_ms(void)
{
	return clock_now_us() / 1000u;
}

void b2b_count_reject(const char *reason)
{
	char name[128];
	snprintf(name, sizeof(name), "vacs_sip_rejected_total{reason=\"%s\"}", reason);
	metric_inc(metric_get(METRIC_COUNTER, name, "SIP requests rejected, by reason"));
}

void b2b_stop(void)
{
	want_stop++;
	uint64_t one = 1;
	if (b2b_g.sig_fd > 0) {
		ssize_t w = write(b2b_g.sig_fd, &one, sizeof(one));
		(void)w;
	}
}

void b2b_reload(void)
{
	want_reload = 1;
	uint64_t one = 1;
	if (b2b_g.sig_fd > 0) {
		ssize_t w = write(b2b_g.sig_fd, &one, sizeof(one));
		(void)w;
	}
}

static void start_shutdown(void)
{
	if (b2b_g.shutdown_sent)
		return;
	b2b_g.shutdown_sent = 1;
	b2b_silence_expire(0, 1);
	/* An unanswered OPTIONS probe would hold nua_shutdown for its whole timeout. */
	b2b_trunks_stop_probes();
	log_info("sip", "shutting down the SIP stack");
	nua_shutdown(b2b_g.nua);
}

static void do_reload(void)
{
	char err[4096];
	struct conf *nc = NULL;
	int rc = conf_load(b2b_g.conf->path, &nc, err, sizeof(err));
	if (!rc && (rc = b2b_notices_load(nc, err, sizeof(err))) != 0)
		conf_unref(nc);
	if (rc) {
		log_err("conf", "reload of %s failed, keeping the running configuration:\n%s",
		        b2b_g.conf->path, err);
		metric_inc(metric_get(METRIC_COUNTER, "vacs_config_reloads_total{result=\"error\"}",
		                      "Configuration reloads"));
		return;
	}
	b2b_trunks_stop(1);
	struct conf *old = b2b_g.conf;
	b2b_g.conf = nc;
	conf_unref(old); /* calls in progress keep their own reference */
	b2b_trunks_start();
	metric_inc(metric_get(METRIC_COUNTER, "vacs_config_reloads_total{result=\"ok\"}",
	                      "Configuration reloads"));
	log_info("conf", "reloaded %s: %zu trunks, %zu routes; %u calls keep their configuration",
	         nc->path, nc->n_trunks, nc->n_routes, b2b_g.n_calls);
}

static void begin_drain(void)
{
	if (!b2b_g.draining) {
		b2b_g.draining = 1;
		b2b_g.drain_deadline_ms = b2b_now_ms() + 300000u;
		ctl_set_ready(0, "draining");
		log_info("sip", "draining: %u calls in progress; new calls and OPTIONS get 503",
		         b2b_g.n_calls);
	} else {
		log_info("sip", "second stop request: hanging up %u calls", b2b_g.n_calls);
		b2b_calls_hangup_all("shutdown");
	}
}

void b2b_drain_start(const char *who)
{
	if (b2b_g.draining)
		return;
	log_info("sip", "drain asked by %s", who);
	begin_drain();
}

static int on_signal(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
	(void)magic;
	(void)w;
	(void)arg;
	uint64_t v;
	ssize_t r = read(b2b_g.sig_fd, &v, sizeof(v));
	(void)r;
	if (want_reload) {
		want_reload = 0;
		do_reload();
	}
	if (want_stop) {
		int n = want_stop;
		want_stop = 0;
		for (int i = 0; i < n; i++)
			begin_drain();
	}
	return 0;
}

static int on_media(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
	(void)magic;
	(void)w;
	(void)arg;
	b2b_call_media_events();
	return 0;
}

/* vacs_calls_by_state: setting up (not answered), with the assistant, in a warm
 * transfer (consult, whisper), bridged to a person (an agent or a PBX extension). */
static void calls_by_state(void)
{
	static struct metric *m[4];
	static const char *const names[4] = {
	    "vacs_calls_by_state{state=\"setup\"}", "vacs_calls_by_state{state=\"ai\"}",
	    "vacs_calls_by_state{state=\"transfer\"}", "vacs_calls_by_state{state=\"bridged\"}"};
	int64_t n[4] = {0, 0, 0, 0};
	for (const struct b2b_call *c = b2b_g.calls; c; c = c->next) {
		if (!c->answer_ms)
			n[0]++;
		else if (b2b_xfer_active(c))
			n[2]++;
		else if (c->ai)
			n[1]++;
		else
			n[3]++;
	}
	for (int i = 0; i < 4; i++) {
		if (!m[i])
			m[i] = metric_get(METRIC_GAUGE, names[i], "Calls in progress by state");
		metric_set(m[i], n[i]);
	}
}

static void on_tick(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
	(void)magic;
	(void)t;
	(void)arg;
	uint64_t now = b2b_now_ms();
	b2b_trunks_tick(now);
	b2b_live_quality(now);
	b2b_silence_expire(now, 0);
	if (b2b_g.draining && !b2b_g.shutdown_sent) {
		if (b2b_g.n_calls && now > b2b_g.drain_deadline_ms)
			b2b_calls_hangup_all("drain timeout");
		/* nua_shutdown also unregisters the registration trunks. */
		if (b2b_g.n_calls == 0)
			start_shutdown();
	}
	metric_set(metric_get(METRIC_GAUGE, "vacs_calls_active", "Calls in progress"),
	           b2b_g.n_calls);
	calls_by_state();
}

/* Source address of the request being handled now (host order), 0 if unknown. */
static uint32_t request_source(uint16_t *port)
{
	msg_t *msg = nua_current_request(b2b_g.nua);
	su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
	*port = 0;
	if (!ai || !ai->ai_addr || ai->ai_family != AF_INET)
		return 0;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)ai->ai_addr;
	*port = ntohs(sin->sin_port);
	return ntohl(sin->sin_addr.s_addr);
}

static void on_options(nua_handle_t *nh, const sip_t *sip)
{
	(void)sip;
	uint16_t port;
	uint32_t src = request_source(&port);
	if (!conf_trunk_by_source(b2b_g.conf, src, port)) {
		b2b_count_reject("acl");
		nua_respond(nh, SIP_403_FORBIDDEN, NUTAG_WITH_THIS(b2b_g.nua), TAG_END());
	} else if (b2b_g.draining) {
		char ra[16];
		snprintf(ra, sizeof(ra), "%u", b2b_g.conf->sip.drain_retry_after_s);
		nua_respond(nh, SIP_503_SERVICE_UNAVAILABLE, NUTAG_WITH_THIS(b2b_g.nua),
		            SIPTAG_RETRY_AFTER_STR(ra), TAG_END());
	} else {
		nua_respond(nh, SIP_200_OK, NUTAG_WITH_THIS(b2b_g.nua),
		            SIPTAG_ALLOW_STR(ALLOW_METHODS), SIPTAG_ACCEPT_STR("application/sdp"),
		            SIPTAG_SUPPORTED_STR("timer, 100rel"), TAG_END());
	}
	nua_handle_destroy(nh);
}

static void nua_callback(nua_event_t event, int status, char const *phrase, nua_t *nua,
                         nua_magic_t *magic, nua_handle_t *nh, nua_hmagic_t *leg, sip_t const *sip,
                         tagi_t tags[])
{
	(void)nua;
	(void)magic;
	if (leg && leg->call)
		log_set_call(leg->call->id);
	else if (sip && sip->sip_call_id)
		log_set_call(sip->sip_call_id->i_id);

	switch (event) {
	case nua_i_invite:
		if (!leg)
			b2b_call_new_invite(nh, sip);
		else
			b2b_call_event(event, status, phrase, leg, sip, tags);
		break;
	case nua_i_options:
		on_options(nh, sip);
		break;
	case nua_i_refer: /* answered by us (NUTAG_APPL_METHOD): see refer.c */
		if (leg && leg->call) {
			b2b_call_event(event, status, phrase, leg, sip, tags);
		} else {
			b2b_refer_reject_ood(nh);
			if (!leg)
				nua_handle_destroy(nh);
		}
		break;
	case nua_r_shutdown:
		if (status >= 200)
			su_root_break(b2b_g.root);
		break;
	case nua_r_register:
	case nua_r_unregister:
	case nua_r_options:
		if (leg && (leg->side == 'r' || leg->side == 'o'))
			b2b_trunk_event(event, status, phrase, leg, sip);
		else if (nh && !leg)
			nua_handle_destroy(nh);
		break;
	case nua_i_error:
		log_warn("sip", "nua error %d %s", status, phrase ? phrase : "");
		break;
	default:
		if (leg && leg->call) {
			b2b_call_event(event, status, phrase, leg, sip, tags);
		} else if (leg && (leg->side == 'r' || leg->side == 'o')) {
			/* state changes of trunk handles: nothing to do */
		} else if (nh && !leg && event == nua_i_state) {
			/* A rejected INVITE's handle goes once its transaction is over. */
			int cs = -1;
			tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
			if (cs == nua_callstate_terminated)
				nua_handle_destroy(nh);
		} else if (nh && !leg && event < nua_r_set_params && event != nua_i_active &&
		           event != nua_i_terminated) {
			/* An incoming request nobody handles: nua answered it; drop the handle. */
			nua_handle_destroy(nh);
		}
		break;
	}
	log_set_call(NULL);
}

static int open_cdr(void)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/cdr.jsonl", b2b_g.conf->spool.dir);
	b2b_g.cdr_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (b2b_g.cdr_fd < 0) {
		int err = -errno;
		log_err("cdr", "cannot open %s: %s", path, strerror(errno));
		return err;
	}
	return 0;
}

static int on_vapi(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
	(void)magic;
	(void)w;
	(void)arg;
	b2b_call_vapi_events();
	return 0;
}

static int on_api(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
	(void)magic;
	(void)w;
	(void)arg;
	b2b_api_poll();
	return 0;
}

int b2b_init(struct conf *cfg, int vapi_up)
{
	int rc = 0;
	memset(&b2b_g, 0, sizeof(b2b_g));
	b2b_g.sig_fd = -1;
	b2b_g.cdr_fd = -1;
	b2b_g.conf = conf_ref(cfg);
	snprintf(b2b_g.our_host, sizeof(b2b_g.our_host), "%s",
	         cfg->sip.advertise && cfg->sip.advertise[0] ? cfg->sip.advertise
	                                                     : cfg->sip.address);
	if ((rc = open_cdr()))
		return rc;
	char err[512];
	if ((rc = b2b_notices_load(cfg, err, sizeof(err)))) {
		log_err("conf", "%s", err);
		return rc;
	}

	su_init();
	su_home_init(b2b_g.home);
	su_log_redirect(nta_log, sofia_log, (void *)"nta");
	su_log_redirect(tport_log, sofia_log, (void *)"tport");
	su_log_redirect(nua_log, sofia_log, (void *)"nua");
	su_log_redirect(su_log_default, sofia_log, (void *)"su");
	su_log_set_level(nta_log, 5);
	su_log_set_level(tport_log, 3);
	su_log_set_level(nua_log, 3);
	su_log_set_level(su_log_default, 3);
	b2b_g.root = su_root_create(NULL);
	if (!b2b_g.root)
		return -ENOMEM;
	su_root_threading(b2b_g.root, 0);

	/* Parse P-Asserted-Identity and Remote-Party-ID (must precede nua_create). */
	msg_mclass_t *mc = sip_extend_mclass(NULL);
	b2b_g.mclass = mc;
	if (mc)
		sip_update_default_mclass(mc);

	char url[128], sips_url[128];
	snprintf(url, sizeof(url), "sip:%s:%u", cfg->sip.address, cfg->sip.port);
	snprintf(sips_url, sizeof(sips_url), "sips:%s:%u", cfg->sip.address, cfg->sip.tls_port);
	int tls = cfg->sip.tls_port != 0;
	/* servers: the certificate of every TLS peer vacsd connects to (carrier SBCs, CUCM)
	 * must chain to cafile.pem; all: peers connecting to vacsd must present one too. */
	int verify = cfg->sip.tls_verify == CONF_TLS_VERIFY_ALL       ? TPTLS_VERIFY_ALL
	             : cfg->sip.tls_verify == CONF_TLS_VERIFY_SERVERS ? TPTLS_VERIFY_OUT
	                                                              : TPTLS_VERIFY_NONE;
	if (tls && verify != TPTLS_VERIFY_NONE) {
		char ca[4096];
		snprintf(ca, sizeof(ca), "%s/cafile.pem",
		         cfg->sip.tls_cert_dir && cfg->sip.tls_cert_dir[0] ? cfg->sip.tls_cert_dir
		                                                           : ".");
		if (access(ca, R_OK) != 0)
			log_warn(
			    "sip",
			    "sip.tls_verify = %s but %s cannot be read (%s): TLS peers will fail "
			    "verification",
			    cfg->sip.tls_verify == CONF_TLS_VERIFY_ALL ? "all" : "servers", ca,
			    strerror(errno));
	}

	b2b_g.nua = nua_create(
	    b2b_g.root, nua_callback, NULL, NUTAG_URL(url), TAG_IF(tls, NUTAG_SIPS_URL(sips_url)),
	    TAG_IF(tls && cfg->sip.tls_cert_dir && cfg->sip.tls_cert_dir[0],
	           NUTAG_CERTIFICATE_DIR(cfg->sip.tls_cert_dir)),
	    TAG_IF(tls, TPTAG_TLS_VERIFY_POLICY(verify)), NTATAG_UDP_MTU(cfg->sip.udp_mtu),
	    NTATAG_SERVER_RPORT(1), NTATAG_CLIENT_RPORT(1), TAG_END());
	if (!b2b_g.nua) {
		log_err("sip", "cannot listen on %s%s%s (address in use or not local?)", url,
		        tls ? " / " : "", tls ? sips_url : "");
		return -EADDRINUSE;
	}
	nua_set_params(b2b_g.nua, NUTAG_MEDIA_ENABLE(0), NUTAG_AUTOANSWER(0), NUTAG_AUTOALERT(0),
	               NUTAG_ENABLEMESSAGE(0), NUTAG_ENABLEINVITE(1), NUTAG_APPL_METHOD("OPTIONS"),
	               NUTAG_APPL_METHOD("REFER"),
	               NUTAG_OUTBOUND("no-options-keepalive, no-validate, no-natify"),
	               NUTAG_KEEPALIVE(0), NUTAG_SESSION_TIMER(0), NUTAG_MIN_SE(90),
	               NUTAG_UPDATE_REFRESH(0), NUTAG_SESSION_REFRESHER(nua_remote_refresher),
	               NUTAG_AUTOACK(0), /* we ACK: a refresh 200 may carry an offer */
	               SIPTAG_ALLOW_STR(ALLOW_METHODS), SIPTAG_SUPPORTED_STR("timer, 100rel"),
	               SIPTAG_USER_AGENT_STR(cfg->sip.user_agent), NUTAG_ONLY183_100REL(1),
	               TAG_END());

	b2b_g.sig_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b2b_g.sig_fd < 0)
		return -errno;
	su_wait_create(b2b_g.sig_wait, b2b_g.sig_fd, SU_WAIT_IN);
	su_root_register(b2b_g.root, b2b_g.sig_wait, on_signal, NULL, 0);
	su_wait_create(b2b_g.media_wait, media_event_fd(), SU_WAIT_IN);
	su_root_register(b2b_g.root, b2b_g.media_wait, on_media, NULL, 0);
	b2b_g.vapi_up = vapi_up;
	if (vapi_up) {
		su_wait_create(b2b_g.vapi_wait, vapi_event_fd(), SU_WAIT_IN);
		su_root_register(b2b_g.root, b2b_g.vapi_wait, on_vapi, NULL, 0);
	}
	if (b2b_api_fd() >= 0) {
		su_wait_create(b2b_g.api_wait, b2b_api_fd(), SU_WAIT_IN);
		su_root_register(b2b_g.root, b2b_g.api_wait, on_api, NULL, 0);
		b2b_g.api_registered = 1;
	}

	b2b_g.tick = su_timer_create(su_root_task(b2b_g.root), 200);
	su_timer_set_for_ever(b2b_g.tick, on_tick, NULL);

	if ((rc = b2b_trunks_start()))
		return rc;
	ctl_set_ready(1, "ready");
	log_info("sip", "listening on %s (udp, tcp)%s%s", url, tls ? ", " : "",
	         tls ? sips_url : "");
	log_info("main", "vacsd ready");
	return 0;
}

int b2b_run(void)
{
	su_root_run(b2b_g.root);
	return 0;
}

void b2b_close(void)
{
	b2b_trunks_stop(0);
	if (b2b_g.tick)
		su_timer_destroy(b2b_g.tick);
	if (b2b_g.nua)
		nua_destroy(b2b_g.nua);
	if (b2b_g.root) {
		su_root_unregister(b2b_g.root, b2b_g.sig_wait, on_signal, NULL);
		su_root_unregister(b2b_g.root, b2b_g.media_wait, on_media, NULL);
		if (b2b_g.vapi_up)
			su_root_unregister(b2b_g.root, b2b_g.vapi_wait, on_vapi, NULL);
		if (b2b_g.api_registered)
			su_root_unregister(b2b_g.root, b2b_g.api_wait, on_api, NULL);
		su_root_destroy(b2b_g.root);
	}
	mem_free(b2b_g.trunks);
	su_home_deinit(b2b_g.home);
	su_deinit();
	if (b2b_g.mclass)
		free(b2b_g.mclass);
	if (b2b_g.sig_fd >= 0)
		close(b2b_g.sig_fd);
	if (b2b_g.cdr_fd >= 0)
		close(b2b_g.cdr_fd);
	b2b_record_close();
	conf_unref(b2b_g.conf);
	memset(&b2b_g, 0, sizeof(b2b_g));
}
