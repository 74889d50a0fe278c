/* The call record routes of the /v1 API (GET /v1/calls, GET /v1/calls/{id}). */
#ifndef VACS_CONTROL_API_CALLS_H
#define VACS_CONTROL_API_CALLS_H

/* Registers the routes with the HTTP server. Main thread, before ctl_init. They answer
 * 503 store_unavailable while PostgreSQL is off or down. 0 or -errno. */
int api_calls_init(void);

#endif
