/* The VAPI AI leg: the sip thread's API, call objects and their references, the events. */
#include "vapi/vapi.h"
#include "vapi/vapi_int.h"

#include "core/log.h"
#include "core/mbox.h"
#include "core/mem.h"
#include "core/metric.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Threads (vapi.h): the functions of vapi.h run on the sip thread (vapi_ai_notify on any);
 * rest.c is the io thread, ws.c the ai thread. A call goes: vapi_call_create posts it to
 * the io thread (POST /call) -> the io thread resolves the WebSocket host and posts
 * AI_CONNECT -> the ai thread opens the socket and moves audio. vapi_call_end only sets
 * the call's `ended` flag and wakes both threads: they finish with the call on their own
 * (cancel the transfer; end-call and close the socket), so it can never fail or block.
 */

#define EVENTS_CAP 4096u
#define IO_CAP     1024u

struct vapi_global vapi_g;

const char *const vapi_msg_type_names[VAPI_MT_COUNT] = {
    [VAPI_MT_STATUS] = "status-update",
    [VAPI_MT_SPEECH] = "speech-update",
    [VAPI_MT_INTERRUPTED] = "user-interrupted",
    [VAPI_MT_TRANSCRIPT] = "transcript",
    [VAPI_MT_TOOL_CALLS] = "tool-calls",
    [VAPI_MT_CONVERSATION] = "conversation-update",
    [VAPI_MT_MODEL_OUTPUT] = "model-output",
    [VAPI_MT_HANG] = "hang",
    [VAPI_MT_VOICE_INPUT] = "voice-input",
    [VAPI_MT_TRANSFER] = "transfer-update",
    [VAPI_MT_FUNCTION_CALL] = "function-call",
    [VAPI_MT_END_REPORT] = "end-of-call-report",
    [VAPI_MT_OTHER] = "other",
};

/* ---- call objects ---- */

void vapi_call_ref(struct vapi_call *c)
{
	atomic_fetch_add(&c->refs, 1);
}

void vapi_call_unref(struct vapi_call *c)
{
	if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	/* Normally the ai thread released the port; vapi_close may leave it here. */
	media_ai_port_release(c->port);
	vapi_txt_free_all(c->txq);
	mem_free(c->rx);
	mem_free(c->ended_reason);
	mem_free(c->name);
	mem_free(c->body);
	mem_free(c->resp);
	mem_free(c->vapi_id);
	mem_free(c->ws_address);
	mem_free(c->ws_host);
	mem_free(c->ws_path);
	if (vapi_g.m_active)
		metric_add(vapi_g.m_active, (uint64_t)-1);
	c->magic = 0;
	mem_free(c);
}

struct vapi_txt *vapi_txt_new(const char *s, size_t len)
{
	struct vapi_txt *t = mem_alloc(sizeof(*t) + VAPI_PRE + len + 1);
	if (!t)
		return NULL;
	t->next = NULL;
	t->len = len;
	memcpy(t->buf + VAPI_PRE, s, len);
	t->buf[VAPI_PRE + len] = '\0';
	return t;
}

void vapi_txt_free_all(struct vapi_txt *t)
{
	while (t) {
		struct vapi_txt *n = t->next;
		mem_free(t);
		t = n;
	}
}

/* ---- events ---- */

static int must_deliver(enum vapi_event_type t)
{
	return t == VAPI_EV_CONNECTED || t == VAPI_EV_FAILED || t == VAPI_EV_ENDED;
}

static void evmsg_discard(struct vapi_evmsg *m)
{
	vapi_event_free(&m->ev);
	vapi_call_unref(m->call);
}

void vapi_ovf_flush(struct vapi_ovf *ovf, int discard)
{
	while (ovf->head) {
		struct vapi_ovf_node *n = ovf->head;
		if (discard)
			evmsg_discard((struct vapi_evmsg *)(void *)n->msg);
		else if (mbox_post(vapi_g.events, n->msg) != 0)
			return;
		ovf->head = n->next;
		if (!ovf->head)
			ovf->tail = NULL;
		mem_free(n);
	}
}

void vapi_event_post(struct vapi_ovf *ovf, struct vapi_call *c, enum vapi_event_type type,
                     int status, const char *id, const char *text, const char *text2)
{
	if (atomic_load(&c->ended))
		return; /* the sip thread no longer wants this call's events */
	struct vapi_evmsg m;
	memset(&m, 0, sizeof(m));
	m.ev.type = type;
	m.ev.owner = c->owner;
	m.ev.status = status;
	m.ev.id = id ? mem_strdup(id) : NULL;
	m.ev.text = text ? mem_strdup(text) : NULL;
	m.ev.text2 = text2 ? mem_strdup(text2) : NULL;
	vapi_call_ref(c);
	m.call = c;
	vapi_ovf_flush(ovf, 0);
	if (!ovf->head && mbox_post(vapi_g.events, &m) == 0)
		return;
	if (must_deliver(type)) {
		struct vapi_ovf_node *n = mem_alloc(sizeof(*n) + sizeof(m));
		if (n) {
			n->next = NULL;
			memcpy(n->msg, &m, sizeof(m));
			if (ovf->tail)
				ovf->tail->next = n;
			else
				ovf->head = n;
			ovf->tail = n;
			return;
		}
	}
	metric_inc(vapi_g.m_dropped);
	if (log_ratelimit_ok(&ovf->rl))
		log_err("vapi", "%s: event %d dropped: the sip thread is not reading its events",
		        c->name, (int)type);
	evmsg_discard(&m);
}

int vapi_event_fd(void)
{
	return vapi_g.events ? mbox_fd(vapi_g.events) : -1;
}

unsigned vapi_events_poll(struct vapi_event *ev, unsigned max)
{
	if (!vapi_g.events)
		return 0;
	mbox_drain_fd(vapi_g.events);
	unsigned n = 0;
	struct vapi_evmsg m;
	while (n < max && mbox_take(vapi_g.events, &m) == 0) {
		if (atomic_load(&m.call->ended))
			vapi_event_free(&m.ev);
		else
			ev[n++] = m.ev;
		vapi_call_unref(m.call);
	}
	if (n && n == max) {
		/* More may wait: keep the fd readable for the next round. */
		uint64_t one = 1;
		ssize_t w = write(mbox_fd(vapi_g.events), &one, sizeof(one));
		(void)w;
	}
	return n;
}

void vapi_event_free(struct vapi_event *ev)
{
	if (!ev)
		return;
	mem_free(ev->id);
	mem_free(ev->text);
	mem_free(ev->text2);
	ev->id = ev->text = ev->text2 = NULL;
}

/* ---- init / close ---- */

static char *dup_or_null(const char *s)
{
	return s && s[0] ? mem_strdup(s) : NULL;
}

static int metrics_get(void)
{
	static const char calls_help[] = "VAPI calls by outcome of their setup";
	static const char frames_help[] = "Binary WebSocket frames to and from VAPI";
	static const char msgs_help[] = "Text messages from VAPI, by type";
	struct vapi_global *g = &vapi_g;
	g->m_connected =
	    metric_get(METRIC_COUNTER, "vacs_vapi_calls_total{result=\"connected\"}", calls_help);
	g->m_failed =
	    metric_get(METRIC_COUNTER, "vacs_vapi_calls_total{result=\"failed\"}", calls_help);
	g->m_up = metric_get(METRIC_COUNTER, "vacs_vapi_ws_frames_total{dir=\"up\"}", frames_help);
	g->m_down =
	    metric_get(METRIC_COUNTER, "vacs_vapi_ws_frames_total{dir=\"down\"}", frames_help);
	g->m_active = metric_get(METRIC_GAUGE, "vacs_vapi_active_calls",
	                         "VAPI calls created and not yet finished");
	g->m_malformed =
	    metric_get(METRIC_COUNTER, "vacs_vapi_messages_total{result=\"malformed\"}", msgs_help);
	g->m_too_large =
	    metric_get(METRIC_COUNTER, "vacs_vapi_messages_total{result=\"too_large\"}", msgs_help);
	g->m_dropped = metric_get(METRIC_COUNTER, "vacs_vapi_events_dropped_total",
	                          "VAPI events dropped because the sip thread fell behind");
	static const uint64_t lat_us[] = {50,  100,  200,  300,  400,  500,  600,   700,   800,
	                                  900, 1000, 1500, 2000, 3000, 5000, 10000, 20000, 50000};
	g->m_up_latency = metric_hist_get(
	    "vacs_vapi_up_latency_us",
	    "Upstream added latency: the kernel's receive time of an RTP packet to its frame "
	    "handed to the VAPI socket, microseconds",
	    lat_us, sizeof(lat_us) / sizeof(lat_us[0]));
	int ok = g->m_connected && g->m_failed && g->m_up && g->m_down && g->m_active &&
	         g->m_malformed && g->m_too_large && g->m_dropped && g->m_up_latency;
	for (int i = 0; i < VAPI_MT_COUNT; i++) {
		char name[96];
		snprintf(name, sizeof(name), "vacs_vapi_messages_total{type=\"%s\"}",
		         vapi_msg_type_names[i]);
		g->m_type[i] = metric_get(METRIC_COUNTER, name, msgs_help);
		ok = ok && g->m_type[i];
	}
	return ok ? 0 : -ENOMEM;
}

static void drain_events(void)
{
	struct vapi_evmsg m;
	while (vapi_g.events && mbox_take(vapi_g.events, &m) == 0)
		evmsg_discard(&m);
}

static void teardown(void)
{
	vapi_io_stop();
	vapi_ai_stop();
	vapi_ovf_flush(&vapi_g.io_ovf, 1);
	drain_events();
	mbox_destroy(vapi_g.events);
	mbox_destroy(vapi_g.io_cmd);
	mem_free(vapi_g.api_url);
	mem_free(vapi_g.api_key);
	mem_free(vapi_g.user_agent);
	mem_free(vapi_g.ca_file);
	mem_free(vapi_g.auth);
	memset(&vapi_g, 0, sizeof(vapi_g));
}

int vapi_init(const struct vapi_config *cfg)
{
	int rc;
	if (!cfg || !cfg->api_url || !cfg->api_url[0] || !cfg->api_key || !cfg->api_key[0])
		return -EINVAL;
	if (vapi_g.up)
		return -EALREADY;
	if (sodium_init() < 0) /* the masking keys of upstream frames (frame.c) */
		return -EIO;
	memset(&vapi_g, 0, sizeof(vapi_g));
	struct vapi_global *g = &vapi_g;
	g->api_url = mem_strdup(cfg->api_url);
	g->api_key = mem_strdup(cfg->api_key);
	g->user_agent = mem_strdup(cfg->user_agent && cfg->user_agent[0] ? cfg->user_agent
	                                                                 : "VACS/" VACS_VERSION);
	g->ca_file = dup_or_null(cfg->ca_file);
	size_t alen = strlen(cfg->api_key) + sizeof("Bearer ");
	g->auth = mem_alloc(alen);
	if (!g->api_url || !g->api_key || !g->user_agent || !g->auth ||
	    (cfg->ca_file && cfg->ca_file[0] && !g->ca_file)) {
		rc = -ENOMEM;
		goto fail;
	}
	snprintf(g->auth, alen, "Bearer %s", cfg->api_key);
	size_t ul = strlen(g->api_url);
	while (ul && g->api_url[ul - 1] == '/')
		g->api_url[--ul] = '\0';
	g->timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 5000u;
	g->max_message = cfg->max_message ? cfg->max_message : 256u * 1024u;
	g->ai_hosted = cfg->on_media_workers != 0;
	if ((rc = metrics_get()))
		goto fail;
	if ((rc = mbox_create(&g->events, sizeof(struct vapi_evmsg), EVENTS_CAP)) ||
	    (rc = mbox_create(&g->io_cmd, sizeof(struct vapi_call *), IO_CAP)))
		goto fail;
	if ((rc = vapi_ai_start(cfg->ai_threads)))
		goto fail;
	if ((rc = vapi_io_start()))
		goto fail;
	g->up = 1;
	log_info("vapi", "VAPI at %s (timeout %u ms)", g->api_url, g->timeout_ms);
	return 0;
fail:
	teardown();
	return rc;
}

void vapi_close(void)
{
	if (!vapi_g.up)
		return;
	while (vapi_g.sip_calls)
		vapi_call_end(vapi_g.sip_calls);
	teardown();
}

/* ---- calls ---- */

static int set_json_text(json_t *obj, const char *key, const char *text)
{
	json_error_t err;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
	if (!json_is_object(v)) {
		log_warn("vapi", "%s is not a JSON object: %s", key, v ? "wrong type" : err.text);
		json_decref(v);
		return -EINVAL;
	}
	return json_object_set_new(obj, key, v) ? -ENOMEM : 0;
}

/* The POST /call body (reference vapi.md 1.1). Heap string in *out. */
static int build_body(const struct vapi_call_params *p, char **out)
{
	int rc = 0;
	json_t *root = json_object(), *ov = json_object(), *tr = json_object(), *af = json_object();
	if (!root || !ov || !tr || !af) {
		rc = -ENOMEM;
		goto out;
	}
	if (p->assistant_id && p->assistant_id[0])
		rc = json_object_set_new(root, "assistantId", json_string(p->assistant_id))
		         ? -ENOMEM
		         : 0;
	else
		rc = set_json_text(root, "assistant", p->assistant_json);
	if (!rc && p->variables_json && p->variables_json[0])
		rc = set_json_text(ov, "variableValues", p->variables_json);
	if (rc)
		goto out;
	if (p->max_duration_s &&
	    json_object_set_new(ov, "maxDurationSeconds", json_integer(p->max_duration_s)))
		rc = -ENOMEM;
	if (json_object_size(ov)) {
		rc = json_object_set(root, "assistantOverrides", ov) ? -ENOMEM : rc;
	}
	if (p->name && p->name[0] && json_object_set_new(root, "name", json_string(p->name)))
		rc = -ENOMEM;
	int pcm = p->format == MEDIA_AI_PCM16_16K;
	if (json_object_set_new(af, "format", json_string(media_ai_format_name(p->format))) ||
	    json_object_set_new(af, "container", json_string("raw")) ||
	    json_object_set_new(af, "sampleRate", json_integer(pcm ? 16000 : 8000)) ||
	    json_object_set_new(tr, "provider", json_string("vapi.websocket")) ||
	    json_object_set(tr, "audioFormat", af) || json_object_set(root, "transport", tr))
		rc = -ENOMEM;
	if (rc)
		goto out;
	char *s = json_dumps(root, JSON_COMPACT);
	*out = s ? mem_strdup(s) : NULL;
	free(s);
	if (!*out)
		rc = -ENOMEM;
out:
	json_decref(root);
	json_decref(ov);
	json_decref(tr);
	json_decref(af);
	return rc;
}

int vapi_call_create(const struct vapi_call_params *p, struct vapi_call **out)
{
	if (!vapi_g.up)
		return -ENODEV;
	if (!p || !out || !media_ai_frame_bytes(p->format) ||
	    (!(p->assistant_id && p->assistant_id[0]) &&
	     !(p->assistant_json && p->assistant_json[0])))
		return -EINVAL;
	struct vapi_call *c = mem_zalloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->magic = VAPI_CALL_MAGIC;
	atomic_init(&c->refs, 1);
	atomic_init(&c->ended, 0);
	c->owner = p->owner;
	c->format = p->format;
	c->deferred = p->defer_connect != 0;
	c->ai = vapi_ai_pick(p->affinity);
	atomic_init(&c->gate, c->deferred ? VAPI_GATE_IDLE : VAPI_GATE_WANTED);
	metric_add(vapi_g.m_active, 1);
	c->name = mem_strdup(p->name && p->name[0] ? p->name : "-");
	int rc = c->name ? build_body(p, &c->body) : -ENOMEM;
	if (!rc) {
		vapi_call_ref(c);
		if (mbox_post(vapi_g.io_cmd, &c) != 0) {
			vapi_call_unref(c);
			rc = -EAGAIN;
		}
	}
	if (rc) {
		vapi_call_unref(c);
		return rc;
	}
	c->sip_next = vapi_g.sip_calls;
	if (c->sip_next)
		c->sip_next->sip_prev = c;
	vapi_g.sip_calls = c;
	*out = c;
	return 0;
}

void *vapi_call_notify_arg(const struct vapi_call *c)
{
	return c ? c->ai : NULL;
}

int vapi_call_connect(struct vapi_call *c, struct media_ai_port *port)
{
	if (!c || !port)
		return -EINVAL;
	if (c->port_given)
		return -EBUSY;
	int rc = vapi_ai_post(VAPI_AI_PORT, c, port);
	if (rc)
		return rc;
	c->port_given = 1;
	/* The call was created before the port came: open the socket now. The port is the
	 * ai thread's from here on; if the connect cannot be posted, the caller's connect
	 * deadline ends the leg. */
	if (c->deferred && atomic_exchange(&c->gate, VAPI_GATE_WANTED) == VAPI_GATE_CREATED &&
	    vapi_ai_post(VAPI_AI_CONNECT, c, NULL))
		log_err("vapi", "%s: the ai thread is overloaded: WebSocket not opened", c->name);
	return 0;
}

int vapi_call_move(struct vapi_call *c, struct media_ai_port *port)
{
	if (!c || !port)
		return -EINVAL;
	if (!c->port_given)
		return vapi_call_connect(c, port);
	return vapi_ai_post(VAPI_AI_PORT, c, port);
}

int vapi_call_mark(struct vapi_call *c, uint32_t id)
{
	if (!c)
		return -EINVAL;
	return vapi_ai_post(VAPI_AI_MARK, c, (void *)(uintptr_t)id);
}

/* Sends j (consumed) as one text frame once the socket is up. NULL j: json_pack refused
 * the input (a string that is not UTF-8) or ran out of memory. */
static int post_json(struct vapi_call *c, json_t *j)
{
	if (!j)
		return -EINVAL;
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	struct vapi_txt *t = vapi_txt_new(s, strlen(s));
	free(s);
	if (!t)
		return -ENOMEM;
	int rc = vapi_ai_post(VAPI_AI_TEXT, c, t);
	if (rc)
		mem_free(t);
	return rc;
}

int vapi_call_say(struct vapi_call *c, const char *text, int end_call_after)
{
	if (!c || !text)
		return -EINVAL;
	return post_json(c, json_pack("{s:s, s:s, s:b}", "type", "say", "content", text,
	                              "endCallAfterSpoken", end_call_after ? 1 : 0));
}

int vapi_call_add_message(struct vapi_call *c, const char *role, const char *content,
                          int trigger_response)
{
	static const char *const roles[] = {"system", "user", "assistant", "tool", "function"};
	if (!c || !role || !content)
		return -EINVAL;
	int ok = 0;
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		ok |= strcmp(role, roles[i]) == 0;
	if (!ok)
		return -EINVAL;
	return post_json(c, json_pack("{s:s, s:{s:s, s:s}, s:b}", "type", "add-message", "message",
	                              "role", role, "content", content, "triggerResponseEnabled",
	                              trigger_response ? 1 : 0));
}

int vapi_call_control(struct vapi_call *c, const char *control)
{
	static const char *const controls[] = {"mute-assistant", "unmute-assistant",
	                                       "mute-customer", "unmute-customer",
	                                       "say-first-message"};
	if (!c || !control)
		return -EINVAL;
	int ok = 0;
	for (size_t i = 0; i < sizeof(controls) / sizeof(controls[0]); i++)
		ok |= strcmp(control, controls[i]) == 0;
	if (!ok)
		return -EINVAL;
	return post_json(c, json_pack("{s:s, s:s}", "type", "control", "control", control));
}

void vapi_call_end(struct vapi_call *c)
{
	if (!c || atomic_exchange(&c->ended, 1))
		return;
	if (c->sip_prev)
		c->sip_prev->sip_next = c->sip_next;
	else
		vapi_g.sip_calls = c->sip_next;
	if (c->sip_next)
		c->sip_next->sip_prev = c->sip_prev;
	c->sip_prev = c->sip_next = NULL;
	vapi_io_wake();
	vapi_ai_wake(c->ai);
	vapi_call_unref(c);
}
