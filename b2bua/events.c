/* Call-life observer that turns calls into event notifications (control/notify.h). */
#include "b2bua/b2bua.h"

#include "control/notify.h"

#include "core/clock.h"

#include <jansson.h>

static const char *const names[] = {
    [B2B_LIFE_STARTED] = "call.started",
    [B2B_LIFE_ANSWERED] = "call.answered",
    [B2B_LIFE_TRANSFERRED] = "transfer.completed",
    [B2B_LIFE_ENDED] = "call.ended",
};

/* Sip thread: copies what the event needs; notify_emit only queues it. */
static void on_life(void *arg, const struct b2b_life_ev *ev)
{
	(void)arg;
	if ((unsigned)ev->what >= sizeof(names) / sizeof(names[0]))
		return;
	char at[40];
	clock_format_iso(ev->ts_ms, at, sizeof(at));
	json_t *d = json_object();
	json_object_set_new(d, "call_id", json_string(ev->call_id ? ev->call_id : ""));
	json_object_set_new(d, "direction", json_string(ev->direction ? ev->direction : ""));
	json_object_set_new(d, "caller", json_string(ev->caller ? ev->caller : ""));
	json_object_set_new(d, "called", json_string(ev->called ? ev->called : ""));
	if (ev->lead_id && ev->lead_id[0])
		json_object_set_new(d, "lead_id", json_string(ev->lead_id));
	if (ev->ref && ev->ref[0])
		json_object_set_new(d, "ref", json_string(ev->ref));
	if (ev->what == B2B_LIFE_TRANSFERRED)
		json_object_set_new(d, "agent", json_string(ev->agent ? ev->agent : ""));
	json_object_set_new(d, "at", json_string(at));
	if (ev->what == B2B_LIFE_ENDED && ev->cdr)
		json_object_set_new(d, "cdr", json_deep_copy(ev->cdr));
	notify_emit(names[ev->what], d); /* a drop is counted and logged there */
}

int b2b_events_init(void)
{
	return b2b_life_watch(on_life, NULL);
}
