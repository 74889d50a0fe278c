/* The control plane's HTTP server (libwebsockets, own thread): health, readiness, metrics. */
#ifndef VACS_CONTROL_CONTROL_H
#define VACS_CONTROL_CONTROL_H

#include <stdint.h>

struct ctl_config {
	const char *address; /* bind address, e.g. "127.0.0.1" */
	uint16_t port;       /* 0 = HTTP server off */
};

/* Starts the http thread. 0 or -errno (e.g. -EADDRINUSE). Called once by main. */
int ctl_init(const struct ctl_config *cfg);
/* Stops and joins the http thread. */
void ctl_close(void);

/* Readiness shown by /readyz: 1 = taking calls, 0 = draining or not ready.
 * `why` is a short static reason ("draining"). Any thread. */
void ctl_set_ready(int ready, const char *why);

/* The port actually bound (useful when cfg->port asked for an ephemeral one), 0 if off. */
uint16_t ctl_bound_port(void);

#endif
