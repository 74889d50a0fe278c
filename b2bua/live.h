/* The dashboard's live feed (b2bua/live.c): call life and transcript lines to the event
 * stream, and GET /v1/live. */
#ifndef VACS_B2BUA_LIVE_H
#define VACS_B2BUA_LIVE_H

#include <stdint.h>

/* Watches call life (b2b_life_watch) and registers GET /v1/live (read scope). Main thread,
 * before ctl_init and b2b_init. 0 or -errno. */
int b2b_live_init(void);
/* A final transcript line of the assistant's leg: kept with the live call (the last few)
 * and posted as the stream event call.transcript. Sip thread (any thread is safe). */
void b2b_live_transcript(const char *call_id, const char *role, const char *text, uint64_t ts_ms);

#endif
