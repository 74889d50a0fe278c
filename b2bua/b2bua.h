/* The B2BUA: sofia-sip glue, the call model, trunks and routing, owned by the sip thread. */
#ifndef VACS_B2BUA_B2BUA_H
#define VACS_B2BUA_B2BUA_H

struct conf;

/* Starts the SIP stack on the calling thread (the sip thread) with the given
 * configuration (a reference is taken); `vapi_up`: vapi_init succeeded, routes to "ai"
 * create VAPI calls (else they answer 503). 0 or -errno. */
int b2b_init(struct conf *cfg, int vapi_up);
/* Runs the sip thread's loop until b2b_stop(). */
int b2b_run(void);
/* Asks the loop to stop: drain (no new calls, 503 to OPTIONS), unregister, shut down.
 * Async-signal-safe. */
void b2b_stop(void);
/* Asks for a configuration reload (SIGHUP). Async-signal-safe. */
void b2b_reload(void);
void b2b_close(void);

/* The HTTP routes that act on calls (POST /v1/calls, POST /webhooks/vapi): registers
 * them with the control plane. Main thread, before ctl_init; the configuration's
 * http and vapi.webhook settings are copied (a reload does not change them). 0 or -errno. */
int b2b_api_init(const struct conf *cfg);
/* After ctl_close and b2b_close: frees what is left. */
void b2b_api_close(void);

#endif
