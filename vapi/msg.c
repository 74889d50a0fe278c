/* Text frames from VAPI: flat JSON "client messages" turned into events and barge-in. */
#include "vapi/vapi_int.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/*
 * Runs on the ai thread, once per complete text message (reference vapi.md 1.5). Input
 * from the network: anything malformed is counted and logged at a rate limit, never
 * trusted. Barge-in (user-interrupted, or speech-update role user status started) flushes
 * the caller's playout here, before the event is posted, so the sip thread never sits on
 * the audio path.
 */

static struct log_ratelimit rl_malformed; /* ai thread only */

enum vapi_msg_type vapi_msg_type_of(const char *type)
{
	for (int i = 0; i < VAPI_MT_OTHER; i++)
		if (strcmp(type, vapi_msg_type_names[i]) == 0)
			return (enum vapi_msg_type)i;
	return VAPI_MT_OTHER;
}

static const char *str_of(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static void malformed(struct vapi_call *c, const char *why)
{
	metric_inc(vapi_g.m_malformed);
	if (log_ratelimit_ok(&rl_malformed))
		log_warn("vapi", "%s: text message from VAPI ignored: %s", c->name, why);
}

/* The arguments of a tool call as JSON text: a string that holds JSON is passed through,
 * any other string is JSON-quoted, an object or array is serialized, absent is "{}".
 * Heap string (malloc, from jansson) or NULL. */
static char *args_text(const json_t *args)
{
	if (!args)
		return NULL;
	if (json_is_string(args)) {
		const char *s = json_string_value(args);
		json_t *parsed = json_loads(s, JSON_DECODE_ANY, NULL);
		if (parsed) {
			json_decref(parsed);
			return strdup(s);
		}
	}
	return json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void tool_calls(struct vapi_call *c, const json_t *root)
{
	const json_t *list = json_object_get(root, "toolCallList");
	if (!json_is_array(list)) {
		malformed(c, "tool-calls without toolCallList");
		return;
	}
	size_t i;
	json_t *tc;
	json_array_foreach(list, i, tc)
	{
		if (!json_is_object(tc)) {
			malformed(c, "tool call is not an object");
			continue;
		}
		/* [OAS] ToolCall {id,type,function{name,arguments}}; the docs' flat shape
		 * {id,name,parameters} is accepted too. */
		const json_t *fn = json_object_get(tc, "function");
		const char *name = str_of(json_is_object(fn) ? fn : tc, "name");
		if (!name)
			name = str_of(tc, "name");
		const json_t *args = json_is_object(fn) ? json_object_get(fn, "arguments") : NULL;
		if (!args)
			args = json_object_get(tc, "arguments");
		if (!args)
			args = json_object_get(tc, "parameters");
		if (!name) {
			malformed(c, "tool call without a function name");
			continue;
		}
		char *a = args_text(args);
		vapi_ws_event(c, VAPI_EV_TOOL_CALL, 0, str_of(tc, "id"), name, a ? a : "{}");
		free(a);
	}
}

void vapi_msg_handle(struct vapi_call *c, const char *text, size_t len)
{
	json_error_t err;
	json_t *root = json_loadb(text, len, 0, &err);
	if (!root) {
		malformed(c, err.text);
		return;
	}
	const char *type = str_of(root, "type");
	if (!type) {
		malformed(c, "no string \"type\"");
		json_decref(root);
		return;
	}
	enum vapi_msg_type mt = vapi_msg_type_of(type);
	metric_inc(vapi_g.m_type[mt]);
	switch (mt) {
	case VAPI_MT_STATUS: {
		const char *status = str_of(root, "status");
		if (!status) {
			malformed(c, "status-update without status");
			break;
		}
		vapi_ws_event(c, VAPI_EV_STATUS, 0, NULL, status, NULL);
		if (strcmp(status, "ended") == 0)
			vapi_ws_remote_end(c, str_of(root, "endedReason"));
		break;
	}
	case VAPI_MT_SPEECH: {
		const char *role = str_of(root, "role"), *status = str_of(root, "status");
		if (!role || !status)
			break;
		int started = strcmp(status, "started") == 0;
		if (!started && strcmp(status, "stopped") != 0)
			break;
		if (started && strcmp(role, "user") == 0 && c->port)
			media_ai_flush(c->port); /* barge-in: at once, before anything else */
		vapi_ws_event(c, VAPI_EV_SPEECH, started, NULL, role, NULL);
		break;
	}
	case VAPI_MT_INTERRUPTED:
		if (c->port)
			media_ai_flush(c->port);
		vapi_ws_event(c, VAPI_EV_INTERRUPTED, 0, NULL, NULL, NULL);
		break;
	case VAPI_MT_TRANSCRIPT: {
		const char *tt = str_of(root, "transcriptType");
		const char *role = str_of(root, "role"), *tr = str_of(root, "transcript");
		if (tt && strcmp(tt, "final") == 0 && tr)
			vapi_ws_event(c, VAPI_EV_TRANSCRIPT, 0, NULL, role ? role : "", tr);
		break;
	}
	case VAPI_MT_TOOL_CALLS:
		tool_calls(c, root);
		break;
	case VAPI_MT_END_REPORT: {
		/* Not a documented socket message; its reason is kept for the close. */
		const char *why = str_of(root, "endedReason");
		if (why && !c->ended_reason)
			c->ended_reason = mem_strdup(why);
		break;
	}
	default:
		break; /* counted; nothing to do */
	}
	json_decref(root);
}
