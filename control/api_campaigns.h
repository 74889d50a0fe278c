/* The campaign routes of the /v1 API: campaigns, leads (with CSV/JSON import),
 * the do-not-call list and the funnel statistics, all over PostgreSQL. */
#ifndef VACS_CONTROL_API_CAMPAIGNS_H
#define VACS_CONTROL_API_CAMPAIGNS_H

#include <stddef.h>

struct conf_numbering;

/* The number normaliser the routes use for lead and do-not-call numbers (vacsd passes
 * b2b_number_normalise: control/ does not link the call engine's code by name). Returns
 * 1 when out is E.164, 0 when copied unchanged, -EINVAL on bad input. */
typedef int (*api_number_fn)(const struct conf_numbering *n, const char *in, char *out,
                             size_t outlen);

/* Registers POST/GET/PATCH/DELETE /v1/campaigns..., /v1/leads..., /v1/dnc..., and
 * GET /v1/stats with the HTTP server. Main thread, before ctl_init. They answer 503
 * store_unavailable while PostgreSQL is off or down. 0 or -errno. */
int api_campaigns_init(api_number_fn normalise);

#endif
