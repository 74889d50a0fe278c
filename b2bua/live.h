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
/* A trunk changed: a node (host) went "up" or "down", or (node NULL) its registration is
 * "registered", "unregistered" or "registration_failed". Posted as trunk.status
 * {trunk, node, state, ts_ms}. Sip thread. */
void b2b_live_trunk(const char *trunk, const char *node, const char *state);
/* Every 5 s: the media figures (loss, jitter, both directions) of each call's legs, kept
 * for GET /v1/live and posted as call.quality {call_id, legs: {a, b, x}, ts_ms}. Sip thread
 * (its tick). */
void b2b_live_quality(uint64_t now_ms);

#endif
