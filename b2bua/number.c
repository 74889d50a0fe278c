/* Number handling: E.164 normalisation per trunk, egress formatting, route selection. */
#include "b2bua/number.h"

#include "conf/conf.h"

#include <errno.h>
#include <regex.h>
#include <string.h>

/*
 * A number is normalised once, where it enters (called and calling numbers of an
 * incoming INVITE, under the rules of the trunk it came from); routes match on the
 * normalised form; the number leaves in the format of the target trunk (egress).
 * Nothing here allocates: the caller owns every buffer.
 */

#define E164_MIN_DIGITS 7  /* shortest real international numbers (+683 xxxx) */
#define E164_MAX_DIGITS 15 /* ITU-T E.164 */
#define DIAL_MAX        64 /* longest dial string accepted (digits, * and #) */

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Visual separators people and PBXs put in numbers. */
static int is_sep(char c)
{
	return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '\t';
}

/* Characters of a SIP user part that is a name ("anonymous", "alice.smith"). */
static int is_name_char(char c)
{
	return is_alpha(c) || is_digit(c) || (c && strchr("-_.!~*'()&=+$", c));
}

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++) {
		if (!is_digit(*s))
			return 0;
	}
	return 1;
}

static int starts_with(const char *s, const char *prefix)
{
	return prefix[0] && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* out = a b (either may be ""). 0, or -EINVAL when it does not fit. */
static int put2(char *out, size_t outlen, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la + lb + 1 > outlen)
		return -EINVAL;
	memcpy(out, a, la);
	memcpy(out + la, b, lb);
	out[la + lb] = '\0';
	return 0;
}

/* out = "+" cc nsn when the digit count is plausible for E.164. 1 written, 0 not
 * plausible, -EINVAL no room. */
static int emit_e164(char *out, size_t outlen, const char *cc, const char *nsn)
{
	size_t digits = strlen(cc) + strlen(nsn);
	if (digits < E164_MIN_DIGITS || digits > E164_MAX_DIGITS || (cc[0] ? cc[0] : nsn[0]) == '0')
		return 0;
	if (digits + 2 > outlen)
		return -EINVAL;
	out[0] = '+';
	put2(out + 1, outlen - 1, cc, nsn);
	return 1;
}

/* Tries to read the digit string d as an E.164 number under the trunk's rules. */
static int to_e164(const struct conf_numbering *n, const char *d, char *out, size_t outlen)
{
	const char *cc = n->country_code ? n->country_code : "";
	const char *ip = n->international_prefix ? n->international_prefix : "";
	const char *np = n->national_prefix ? n->national_prefix : "";
	size_t len = strlen(d);
	int r;

	/* The international prefix is checked first: "00" starts with a national "0". */
	if (starts_with(d, ip)) {
		r = emit_e164(out, outlen, "", d + strlen(ip));
		if (r)
			return r;
	}
	if (!cc[0])
		return 0;
	if (starts_with(d, np)) {
		const char *nsn = d + strlen(np);
		if (!n->national_length || strlen(nsn) == n->national_length) {
			r = emit_e164(out, outlen, cc, nsn);
			if (r)
				return r;
		}
	}
	/* A bare NSN; it never starts with the trunk prefix ("0207946001" is not one). */
	if (n->national_length && len == n->national_length && !starts_with(d, np))
		return emit_e164(out, outlen, cc, d);
	/* E.164 without its "+": the trunk sends what our egress "e164" format produces. */
	if (n->national_length && len == strlen(cc) + n->national_length && starts_with(d, cc))
		return emit_e164(out, outlen, "", d);
	return 0;
}

int b2b_number_normalise(const struct conf_numbering *n, const char *in, char *out, size_t outlen)
{
	if (!n || !in || !out || !outlen || !in[0])
		return -EINVAL;

	/* A name, not a number: copied as it is. */
	if (is_alpha(in[0])) {
		for (const char *p = in; *p; p++) {
			if (!is_name_char(*p))
				return -EINVAL;
		}
		return put2(out, outlen, in, "");
	}

	char d[DIAL_MAX + 1];
	size_t len = 0;
	int plus = 0, star = 0;
	for (const char *p = in; *p; p++) {
		if (is_sep(*p))
			continue;
		if (*p == '+') {
			if (len || plus)
				return -EINVAL;
			plus = 1;
			continue;
		}
		if (!is_digit(*p) && *p != '*' && *p != '#')
			return -EINVAL;
		if (len >= DIAL_MAX)
			return -EINVAL;
		star |= !is_digit(*p);
		d[len++] = *p;
	}
	d[len] = '\0';
	if (!len)
		return -EINVAL;

	if (plus) {
		if (star)
			return -EINVAL;
		int r = emit_e164(out, outlen, "", d);
		return r ? r : -EINVAL;
	}
	if (!star) {
		/* A dial prefix (CUCM's "9") first; an extension that merely starts with
		 * it ("9001") is not E.164 once stripped and is then read unstripped. */
		const char *sp = n->strip_prefix ? n->strip_prefix : "";
		if (starts_with(d, sp) && len > strlen(sp)) {
			int r = to_e164(n, d + strlen(sp), out, outlen);
			if (r)
				return r;
		}
		int r = to_e164(n, d, out, outlen);
		if (r)
			return r;
	}
	return put2(out, outlen, d, "");
}

int b2b_number_egress(const struct conf_numbering *n, const char *e164, char *out, size_t outlen)
{
	if (!n || !e164 || !out || !outlen)
		return -EINVAL;
	if (e164[0] != '+' || !all_digits(e164 + 1))
		return put2(out, outlen, e164, "");
	const char *digits = e164 + 1;
	const char *cc = n->country_code ? n->country_code : "";
	switch (n->egress) {
	case CONF_EGRESS_PLUS_E164:
		return put2(out, outlen, e164, "");
	case CONF_EGRESS_E164:
		return put2(out, outlen, digits, "");
	case CONF_EGRESS_NATIONAL:
		if (starts_with(digits, cc))
			return put2(out, outlen, n->national_prefix ? n->national_prefix : "",
			            digits + strlen(cc));
		if (n->international_prefix && n->international_prefix[0])
			return put2(out, outlen, n->international_prefix, digits);
		return put2(out, outlen, e164, "");
	}
	return -EINVAL;
}

/* Expands rw with \0..\9 from m over s into out. 0 or -EINVAL when it does not fit. */
static int rewrite(const char *rw, const char *s, const regmatch_t *m, char *out, size_t outlen)
{
	size_t pos = 0;
	for (const char *p = rw; *p; p++) {
		const char *src = p;
		size_t n = 1;
		if (*p == '\\' && is_digit(p[1])) {
			const regmatch_t *g = &m[p[1] - '0'];
			p++;
			if (g->rm_so < 0)
				continue; /* group did not take part in the match */
			src = s + g->rm_so;
			n = (size_t)(g->rm_eo - g->rm_so);
		} else if (*p == '\\' && p[1] == '\\') {
			p++;
		}
		if (pos + n + 1 > outlen)
			return -EINVAL;
		memcpy(out + pos, src, n);
		pos += n;
	}
	out[pos] = '\0';
	return 0;
}

/* A route whose rewrite does not fit in target is not taken (NULL): a truncated number
 * must never be dialled. */
const struct conf_route *b2b_route_find(const struct conf *c, const char *from, const char *called,
                                        const char *caller, char *target, size_t tlen)
{
	if (!c || !from || !called)
		return NULL;
	for (size_t i = 0; i < c->n_routes; i++) {
		const struct conf_route *r = &c->routes[i];
		regmatch_t m[10];
		if (!r->regex || strcmp(r->from, from) != 0)
			continue;
		if (regexec(r->regex, called, 10, m, 0) != 0)
			continue;
		if (r->caller_regex &&
		    regexec(r->caller_regex, caller ? caller : "", 0, NULL, 0) != 0)
			continue;
		if (target && tlen) {
			int rc = r->rewrite && r->rewrite[0]
			             ? rewrite(r->rewrite, called, m, target, tlen)
			             : put2(target, tlen, called, "");
			if (rc)
				return NULL;
		}
		return r;
	}
	return NULL;
}

const struct conf_route *b2b_route_find_ai(const struct conf *c, const char *called,
                                           const char *caller)
{
	if (!c || !called || !called[0])
		return NULL;
	for (int pass = 0; pass < 2; pass++) {
		const char *num = pass && called[0] == '+' ? called + 1 : called;
		if (pass && num == called)
			break;
		for (size_t i = 0; i < c->n_routes; i++) {
			const struct conf_route *r = &c->routes[i];
			if (r->target_type != CONF_ROUTE_AI || !r->regex)
				continue;
			if (regexec(r->regex, num, 0, NULL, 0) != 0)
				continue;
			if (r->caller_regex &&
			    regexec(r->caller_regex, caller ? caller : "", 0, NULL, 0) != 0)
				continue;
			return r;
		}
	}
	return NULL;
}
