/* Number handling inside b2bua/: E.164 normalisation per trunk and route selection. */
#ifndef VACS_B2BUA_NUMBER_H
#define VACS_B2BUA_NUMBER_H

#include <stddef.h>

struct conf;
struct conf_numbering;
struct conf_route;

/* Normalises a dialled or presented number to "+<E.164 digits>" under the trunk's rules:
 * visual separators (space - . ( )) dropped, a leading strip_prefix removed, "+" kept,
 * international_prefix -> "+", national_prefix + NSN -> "+" country_code NSN, a bare NSN
 * of national_length digits -> "+" country_code NSN. Numbers that cannot be made E.164
 * (short extensions, letters) are copied unchanged, without "+".
 * Returns 1 when the result is E.164, 0 when copied unchanged, -EINVAL on bad input
 * (NULL, empty, too long for out). */
int b2b_number_normalise(const struct conf_numbering *n, const char *in, char *out, size_t outlen);

/* Formats an E.164 number ("+...") as the trunk sends it (egress format).
 * Non-E.164 input is copied unchanged. 0 or -EINVAL. */
int b2b_number_egress(const struct conf_numbering *n, const char *e164, char *out, size_t outlen);

/* Picks the first route for a call arriving on trunk `from` whose match accepts the
 * normalised called number (and caller_match the caller, when set). Writes the called
 * number after the route's rewrite into target. Returns the route or NULL. */
const struct conf_route *b2b_route_find(const struct conf *c, const char *from, const char *called,
                                        const char *caller, char *target, size_t tlen);

/* The first route to "ai" (from any trunk) whose match takes `called` (as given, or
 * without its '+'), for VAPI's assistant-request. NULL when none. */
const struct conf_route *b2b_route_find_ai(const struct conf *c, const char *called,
                                           const char *caller);

#endif
