/* Configuration loading: libconfig file -> validated, immutable struct conf snapshot. */
#include "conf/conf.h"

#include "core/clock.h"
#include "core/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <netdb.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef VACS_VERSION
#define VACS_VERSION "0.1"
#endif

/*
 * How it works. The file is parsed by libconfig into a tree; the tree is then walked
 * against a declarative schema (the `struct key` tables below): every setting of a
 * group must name a key of that group's table, or it is reported as unknown. Each key
 * says where its value goes (an offset into the struct being filled), its type, its
 * range or allowed values, and its default. Defaults are applied first, then the
 * values present in the file overwrite them, then cross-checks run (trunk names,
 * routes to trunks, port clashes). Every problem is collected with its line and key
 * path, sorted by line and written into the caller's buffer.
 *
 * Invariants of a loaded struct conf: every char * is non-NULL ("" when unset), every
 * array has exactly the count its n_ field says, routes point into the same
 * snapshot's trunks array. All memory comes from core/mem.h, so an allocation
 * failure anywhere ends the load with -ENOMEM and frees everything.
 */

#define LD_MAX_MSGS 64

struct ld_msg {
	unsigned line;
	unsigned seq;
	char text[384];
};

/* Loader state for one conf_load() call. */
struct ld {
	const char *path;
	struct conf *c;
	config_t *cfg;
	struct ld_msg *msgs; /* LD_MAX_MSGS slots */
	unsigned n_msgs;
	unsigned dropped; /* problems beyond LD_MAX_MSGS */
	int oom;          /* an allocation failed: the load ends with -ENOMEM */
};

enum key_type {
	KT_END = 0,
	KT_STR,     /* char *; .names restricts the values, .check validates */
	KT_UINT,    /* unsigned, .min-.max */
	KT_U16,     /* uint16_t, .min-.max */
	KT_BOOL,    /* int 0/1 */
	KT_ENUM,    /* enum stored as int, value names in .names (index = value) */
	KT_GROUP,   /* nested group; .sub keys use the same base struct */
	KT_STRLIST, /* char ** + size_t count at .n_off; .names restricts (case-insensitive),
	             * .check validates each element */
	KT_FN,      /* parsed by .fn; .fn(ld, NULL, base) sets the default */
};

struct key;
typedef void (*key_parse_cb)(struct ld *ld, const config_setting_t *s, void *base);
typedef void (*key_free_cb)(void *base);
typedef const char *(*key_check_cb)(const char *v);

struct key {
	const char *name;
	enum key_type type;
	size_t off;
	long long min, max;
	const char *const *names;
	const char *def_str;
	long long def_int;
	const char *const *def_list;
	size_t n_off;
	const struct key *sub;
	key_parse_cb fn;
	key_free_cb free;
	key_check_cb check;
	int required;
};

/* ---------------------------------------------------------------- messages */

/* Writes the key path of s ("trunks.[1].srtp") into buf. */
static void key_path(const config_setting_t *s, char *buf, size_t len)
{
	const config_setting_t *chain[32];
	int n = 0;
	for (; s && !config_setting_is_root(s) && n < 32; s = config_setting_parent(s))
		chain[n++] = s;
	size_t pos = 0;
	buf[0] = '\0';
	for (int i = n - 1; i >= 0 && pos < len; i--) {
		const char *name = config_setting_name(chain[i]);
		int w;
		if (name)
			w = snprintf(buf + pos, len - pos, "%s%s", pos ? "." : "", name);
		else
			w = snprintf(buf + pos, len - pos, "%s[%d]", pos ? "." : "",
			             config_setting_index(chain[i]));
		if (w < 0)
			break;
		pos += (size_t)w;
	}
}

/* Records one problem at setting s; `member` (may be NULL) is appended to the key path
 * for keys that are missing, so the message names them. */
static void __attribute__((format(printf, 4, 5)))
ld_report(struct ld *ld, const config_setting_t *s, const char *member, const char *fmt, ...)
{
	if (ld->n_msgs >= LD_MAX_MSGS) {
		ld->dropped++;
		return;
	}
	struct ld_msg *m = &ld->msgs[ld->n_msgs];
	m->seq = ld->n_msgs++;
	m->line = s ? config_setting_source_line(s) : 0;
	const char *file = s ? config_setting_source_file(s) : NULL;
	if (!file)
		file = ld->path;

	char path[192];
	key_path(s, path, sizeof(path));
	if (member) {
		size_t pl = strlen(path);
		snprintf(path + pl, sizeof(path) - pl, "%s%s", pl ? "." : "", member);
	}
	int pos;
	if (m->line)
		pos = snprintf(m->text, sizeof(m->text), "%s:%u: %s: ", file, m->line, path);
	else
		pos = snprintf(m->text, sizeof(m->text), "%s: %s: ", file, path);
	if (pos < 0 || (size_t)pos >= sizeof(m->text))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->text + pos, sizeof(m->text) - (size_t)pos, fmt, ap);
	va_end(ap);
}

static int msg_cmp(const void *a, const void *b)
{
	const struct ld_msg *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

static void ld_write_msgs(struct ld *ld, char *err, size_t errlen)
{
	if (!err || !errlen)
		return;
	qsort(ld->msgs, ld->n_msgs, sizeof(ld->msgs[0]), msg_cmp);
	size_t pos = 0;
	err[0] = '\0';
	for (unsigned i = 0; i < ld->n_msgs && pos < errlen; i++) {
		int w = snprintf(err + pos, errlen - pos, "%s\n", ld->msgs[i].text);
		if (w < 0)
			return;
		pos += (size_t)w;
	}
	if (ld->dropped && pos < errlen)
		snprintf(err + pos, errlen - pos, "%s: ... and %u more problems\n", ld->path,
		         ld->dropped);
}

/* ---------------------------------------------------------------- helpers */

static char *ld_dup(struct ld *ld, const char *s)
{
	char *d = mem_strdup(s);
	if (!d)
		ld->oom = 1;
	return d;
}

/* Replaces *dst with a copy of v; on failure *dst is kept and oom is flagged. */
static void set_str(struct ld *ld, char **dst, const char *v)
{
	char *d = ld_dup(ld, v);
	if (!d)
		return;
	mem_free(*dst);
	*dst = d;
}

static void free_strlist(char **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		mem_free(list[i]);
	mem_free(list);
}

static int is_int(const config_setting_t *s)
{
	int t = config_setting_type(s);
	return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

static int name_index(const char *const *names, const char *v, int nocase)
{
	for (int i = 0; names[i]; i++) {
		if ((nocase ? strcasecmp(names[i], v) : strcmp(names[i], v)) == 0)
			return i;
	}
	return -1;
}

/* "a, b, c" for messages. */
static void names_list(const char *const *names, char *buf, size_t len)
{
	size_t pos = 0;
	buf[0] = '\0';
	for (int i = 0; names[i] && pos < len; i++) {
		int w = snprintf(buf + pos, len - pos, "%s%s", i ? ", " : "", names[i]);
		if (w < 0)
			return;
		pos += (size_t)w;
	}
}

static void *at(void *base, size_t off)
{
	return (char *)base + off;
}

/* ---------------------------------------------------------------- value checks */

static int ipv4_parse(const char *v, uint32_t *addr)
{
	struct in_addr a;
	if (inet_pton(AF_INET, v, &a) != 1)
		return -EINVAL;
	*addr = ntohl(a.s_addr);
	return 0;
}

static const char *chk_ipv4(const char *v)
{
	uint32_t a;
	return ipv4_parse(v, &a) ? "must be an IPv4 address (a.b.c.d)" : NULL;
}

static int valid_hostname(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 253 || v[0] == '.' || v[0] == '-')
		return 0;
	for (const char *p = v; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return 0;
	}
	return 1;
}

static const char *chk_host(const char *v)
{
	return valid_hostname(v) ? NULL : "must be an IPv4 address or a host name";
}

static const char *chk_host_or_empty(const char *v)
{
	return v[0] == '\0' ? NULL : chk_host(v);
}

static const char *chk_digits(const char *v)
{
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '9')
			return "must contain digits only";
	}
	return NULL;
}

static const char *chk_country_code(const char *v)
{
	if (chk_digits(v) || strlen(v) > 3 || v[0] == '0')
		return "must be a country calling code of 1-3 digits (\"52\") or empty";
	return NULL;
}

static const char *chk_dial_prefix(const char *v)
{
	if (strlen(v) > 15)
		return "must be at most 15 characters";
	for (const char *p = v; *p; p++) {
		if (!((*p >= '0' && *p <= '9') || *p == '*' || *p == '#'))
			return "must contain only digits, * and #";
	}
	return NULL;
}

static const char *chk_name(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 63)
		return "must be 1-63 characters of A-Z a-z 0-9 _ . -";
	for (const char *p = v; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
			return "must be 1-63 characters of A-Z a-z 0-9 _ . -";
	}
	return NULL;
}

/* Text that ends up in a SIP header: printable ASCII, no quote or backslash. */
static const char *chk_header_text(const char *v)
{
	for (const char *p = v; *p; p++) {
		if (*p < 0x20 || *p > 0x7e || *p == '"' || *p == '\\')
			return "must be printable ASCII without quotes or backslashes";
	}
	return NULL;
}

/* An HTTP header name as lib/ws servers match it: lowercase token characters. */
static const char *chk_header_name(const char *v)
{
	if (!v[0] || strlen(v) > 63)
		return "must be a header name of 1-63 characters";
	for (const char *p = v; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_'))
			return "must be a lowercase header name (a-z 0-9 - _)";
	}
	return NULL;
}

/* The dashboard's base URL as agents' phones reach it ("" = none). */
static const char *chk_public_url(const char *v)
{
	if (!v[0])
		return NULL;
	if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
		return "must start with http:// or https://";
	if (v[strlen(v) - 1] == '/')
		return "must be a base URL without a trailing slash";
	for (const char *p = v; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '<' || *p == '>')
			return "must be a URL without spaces, quotes or angle brackets";
	return NULL;
}

/* A queue's number on its trunk: a DN or hunt pilot, or an E.164 number with +. */
static const char *chk_queue_number(const char *v)
{
	const char *d = v[0] == '+' ? v + 1 : v;
	if (!d[0] || strlen(d) > 20 || chk_digits(d))
		return "must be 1-20 digits, optionally after a +";
	return NULL;
}

/* A caller ID to present: an E.164 number with +, or digits ("" = none). */
static const char *chk_caller_id(const char *v)
{
	const char *d = v[0] == '+' ? v + 1 : v;
	if (!v[0])
		return NULL;
	if (strlen(d) < 3 || strlen(d) > 15 || chk_digits(d))
		return "must be a phone number: 3-15 digits, optionally after a +";
	return NULL;
}

static const char *chk_nonempty_header_text(const char *v)
{
	return v[0] ? chk_header_text(v) : "must not be empty";
}

/* The text a caller's key press becomes for the assistant: one %c for the digit and no
 * other conversion ("" = keys are not passed on). */
static const char *chk_dtmf_text(const char *v)
{
	unsigned digits = 0;
	for (const char *p = v; *p; p++) {
		if (*p != '%')
			continue;
		if (p[1] == 'c')
			digits++;
		else if (p[1] != '%')
			return "only %c (the key) and %% may follow a %";
		p++;
	}
	if (v[0] && digits != 1)
		return "must contain %c (the key) exactly once, or be empty";
	if (strlen(v) > 200)
		return "must be at most 200 characters";
	return NULL;
}

/* An http:// or https:// URL without a trailing slash. */
static const char *chk_http_url(const char *v)
{
	if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
		return "must start with https:// (or http:// for a local test peer)";
	size_t n = strlen(v);
	if (n < 9 || v[n - 1] == '/')
		return "must be a base URL without a trailing slash";
	if (strpbrk(v, " \t\r\n\"<>"))
		return "must not contain spaces, quotes or angle brackets";
	return NULL;
}

/* A file the daemon can read ("" = none). Its content is checked when it is loaded. */
static const char *chk_readable(const char *v)
{
	static _Thread_local char why[160];
	if (!v[0] || access(v, R_OK) == 0)
		return NULL;
	snprintf(why, sizeof(why), "cannot read \"%.100s\": %s", v, strerror(errno));
	return why;
}

static const char *chk_nonempty(const char *v)
{
	return v[0] ? NULL : "must not be empty";
}

/* ---------------------------------------------------------------- schema engine */

static void apply_defaults(struct ld *ld, const struct key *keys, void *base)
{
	for (const struct key *k = keys; k->type != KT_END; k++) {
		void *p = at(base, k->off);
		switch (k->type) {
		case KT_STR:
			set_str(ld, p, k->def_str ? k->def_str : "");
			break;
		case KT_UINT:
			*(unsigned *)p = (unsigned)k->def_int;
			break;
		case KT_U16:
			*(uint16_t *)p = (uint16_t)k->def_int;
			break;
		case KT_BOOL:
		case KT_ENUM:
			*(int *)p = (int)k->def_int;
			break;
		case KT_GROUP:
			apply_defaults(ld, k->sub, base);
			break;
		case KT_STRLIST: {
			size_t n = 0;
			while (k->def_list && k->def_list[n])
				n++;
			char **list = mem_zalloc((n ? n : 1) * sizeof(char *));
			if (!list) {
				ld->oom = 1;
				break;
			}
			size_t i;
			for (i = 0; i < n; i++) {
				list[i] = ld_dup(ld, k->def_list[i]);
				if (!list[i])
					break;
			}
			if (i < n) {
				free_strlist(list, i);
				break;
			}
			free_strlist(*(char ***)p, *(size_t *)at(base, k->n_off));
			*(char ***)p = list;
			*(size_t *)at(base, k->n_off) = n;
			break;
		}
		case KT_FN:
			k->fn(ld, NULL, base);
			break;
		case KT_END:
			break;
		}
	}
}

static void schema_free(const struct key *keys, void *base)
{
	for (const struct key *k = keys; k->type != KT_END; k++) {
		void *p = at(base, k->off);
		switch (k->type) {
		case KT_STR:
			mem_free(*(char **)p);
			*(char **)p = NULL;
			break;
		case KT_GROUP:
			schema_free(k->sub, base);
			break;
		case KT_STRLIST:
			free_strlist(*(char ***)p, *(size_t *)at(base, k->n_off));
			*(char ***)p = NULL;
			*(size_t *)at(base, k->n_off) = 0;
			break;
		case KT_FN:
			if (k->free)
				k->free(base);
			break;
		default:
			break;
		}
	}
}

static void parse_group(struct ld *ld, const config_setting_t *g, const struct key *keys,
                        void *base);

static void parse_strlist(struct ld *ld, const config_setting_t *s, const struct key *k, void *base)
{
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
		ld_report(ld, s, NULL, "must be a list of strings [ \"...\", ... ]");
		return;
	}
	int n = config_setting_length(s);
	if (n == 0) {
		ld_report(ld, s, NULL, "must not be empty");
		return;
	}
	char **list = mem_zalloc((size_t)n * sizeof(char *));
	if (!list) {
		ld->oom = 1;
		return;
	}
	int ok = 1;
	for (int i = 0; i < n && !ld->oom; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v = config_setting_get_string(e);
		if (!v) {
			ld_report(ld, e, NULL, "must be a string");
			ok = 0;
			continue;
		}
		if (k->names) {
			int idx = name_index(k->names, v, 1);
			if (idx < 0) {
				char names[256];
				names_list(k->names, names, sizeof(names));
				ld_report(ld, e, NULL, "\"%s\" is not one of %s", v, names);
				ok = 0;
				continue;
			}
			v = k->names[idx]; /* canonical spelling */
		}
		const char *bad = k->check ? k->check(v) : NULL;
		if (bad) {
			ld_report(ld, e, NULL, "%s", bad);
			ok = 0;
			continue;
		}
		for (int j = 0; j < i; j++) {
			if (list[j] && strcasecmp(list[j], v) == 0) {
				ld_report(ld, e, NULL, "\"%s\" is listed twice", v);
				ok = 0;
			}
		}
		list[i] = ld_dup(ld, v);
	}
	if (!ok || ld->oom) {
		free_strlist(list, (size_t)n);
		return;
	}
	free_strlist(*(char ***)at(base, k->off), *(size_t *)at(base, k->n_off));
	*(char ***)at(base, k->off) = list;
	*(size_t *)at(base, k->n_off) = (size_t)n;
}

static void parse_value(struct ld *ld, const config_setting_t *s, const struct key *k, void *base)
{
	void *p = at(base, k->off);
	char names[256];
	switch (k->type) {
	case KT_STR: {
		const char *v = config_setting_get_string(s);
		if (!v) {
			ld_report(ld, s, NULL, "must be a string");
			return;
		}
		if (k->names && name_index(k->names, v, 0) < 0) {
			names_list(k->names, names, sizeof(names));
			ld_report(ld, s, NULL, "must be one of %s", names);
			return;
		}
		const char *why = k->check ? k->check(v) : NULL;
		if (why) {
			ld_report(ld, s, NULL, "%s", why);
			return;
		}
		set_str(ld, p, v);
		return;
	}
	case KT_UINT:
	case KT_U16: {
		long long v = is_int(s) ? config_setting_get_int64(s) : 0;
		if (!is_int(s) || v < k->min || v > k->max) {
			ld_report(ld, s, NULL, "must be an integer %lld-%lld", k->min, k->max);
			return;
		}
		if (k->type == KT_UINT)
			*(unsigned *)p = (unsigned)v;
		else
			*(uint16_t *)p = (uint16_t)v;
		return;
	}
	case KT_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
			ld_report(ld, s, NULL, "must be true or false");
			return;
		}
		*(int *)p = config_setting_get_bool(s) ? 1 : 0;
		return;
	case KT_ENUM: {
		const char *v = config_setting_get_string(s);
		int idx = v ? name_index(k->names, v, 0) : -1;
		if (idx < 0) {
			names_list(k->names, names, sizeof(names));
			ld_report(ld, s, NULL, "must be one of %s", names);
			return;
		}
		*(int *)p = idx;
		return;
	}
	case KT_GROUP:
		parse_group(ld, s, k->sub, base);
		return;
	case KT_STRLIST:
		parse_strlist(ld, s, k, base);
		return;
	case KT_FN:
		k->fn(ld, s, base);
		return;
	case KT_END:
		return;
	}
}

/* Walks group g: every member must be a key of `keys`; required keys must be present. */
static void parse_group(struct ld *ld, const config_setting_t *g, const struct key *keys,
                        void *base)
{
	if (!config_setting_is_group(g)) {
		ld_report(ld, g, NULL, "must be a group { ... }");
		return;
	}
	int n = config_setting_length(g);
	for (int i = 0; i < n && !ld->oom; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct key *k = keys;
		while (k->type != KT_END && strcmp(k->name, name) != 0)
			k++;
		if (k->type == KT_END) {
			ld_report(ld, s, NULL, "unknown key");
			continue;
		}
		parse_value(ld, s, k, base);
	}
	for (const struct key *k = keys; k->type != KT_END; k++) {
		if (k->required && !config_setting_get_member(g, k->name))
			ld_report(ld, g, k->name, "required key is missing");
	}
}

/* Checks that s is a list of groups (an empty [] is accepted too). */
static int is_group_list(struct ld *ld, const config_setting_t *s)
{
	int t = config_setting_type(s);
	if (t == CONFIG_TYPE_LIST || (t == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0))
		return 1;
	ld_report(ld, s, NULL, "must be a list of groups ( { ... }, { ... } )");
	return 0;
}

/* ---------------------------------------------------------------- enum names */

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const format_names[] = {"text", "json", NULL};
static const char *const transport_names[] = {"udp", "tcp", "tls", NULL};
static const char *const trunk_type_names[] = {"carrier", "cucm", NULL};
static const char *const srtp_names[] = {"off", "optional", "mandatory", NULL};
static const char *const egress_names[] = {"plus_e164", "e164", "national", NULL};
static const char *const unknown_names[] = {"reject", "drop", NULL};
static const char *const tls_verify_names[] = {"none", "servers", "all", NULL};
static const char *const codec_names[] = {"PCMU", "PCMA", "G722", "G729", NULL};
static const char *const suite_names[] = {"AEAD_AES_256_GCM", "AEAD_AES_128_GCM",
                                          "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32",
                                          NULL};
static const char *const default_codecs[] = {"PCMU", "PCMA", NULL};

_Static_assert(sizeof(enum conf_transport) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum conf_egress_format) == sizeof(int), "enums are stored as int");

/* ---------------------------------------------------------------- trunk parts */

#define NODE(f) offsetof(struct conf_node, f)
static const struct key node_keys[] = {
    {.name = "host", .type = KT_STR, .off = NODE(host), .check = chk_host, .required = 1},
    /* 0 until the trunk's transport is known: then 5060, or 5061 for tls */
    {.name = "port", .type = KT_U16, .off = NODE(port), .min = 1, .max = 65535},
    {.name = "priority",
     .type = KT_UINT,
     .off = NODE(priority),
     .min = 0,
     .max = 65535,
     .def_int = 1},
    {.type = KT_END},
};
#undef NODE

static void free_nodes(void *base)
{
	struct conf_trunk *t = base;
	for (size_t i = 0; i < t->n_nodes; i++)
		schema_free(node_keys, &t->nodes[i]);
	mem_free(t->nodes);
	t->nodes = NULL;
	t->n_nodes = 0;
}

/* Called for each element of a list of groups once its keys are parsed. */
typedef void (*elem_finish_cb)(struct ld *ld, const config_setting_t *es, void *elems, int i);

/* Parses "( { ... }, { ... } )": one zeroed element of elem_size per group, defaults
 * applied, keys parsed, then finish(). *out gets the array (owned by the caller's
 * struct), the count is returned; 0 on an empty or invalid list or out of memory. */
static size_t parse_group_array(struct ld *ld, const config_setting_t *s, const struct key *keys,
                                size_t elem_size, void **out, elem_finish_cb finish)
{
	*out = NULL;
	if (!s || !is_group_list(ld, s))
		return 0;
	int n = config_setting_length(s);
	if (n == 0)
		return 0;
	unsigned char *arr = mem_zalloc((size_t)n * elem_size);
	if (!arr) {
		ld->oom = 1;
		return 0;
	}
	*out = arr;
	for (int i = 0; i < n && !ld->oom; i++) {
		const config_setting_t *es = config_setting_get_elem(s, (unsigned)i);
		void *e = arr + (size_t)i * elem_size;
		apply_defaults(ld, keys, e);
		if (ld->oom)
			break;
		if (!config_setting_is_group(es)) {
			ld_report(ld, es, NULL, "must be a group { ... }");
			continue;
		}
		parse_group(ld, es, keys, e);
		if (!ld->oom && finish)
			finish(ld, es, arr, i);
	}
	return (size_t)n;
}

static void parse_nodes(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf_trunk *t = base;
	if (!s || !is_group_list(ld, s))
		return;
	if (config_setting_length(s) == 0) {
		ld_report(ld, s, NULL, "must list at least one node");
		return;
	}
	free_nodes(t);
	void *arr;
	t->n_nodes = parse_group_array(ld, s, node_keys, sizeof(*t->nodes), &arr, NULL);
	t->nodes = arr;
}

static int acl_append(struct ld *ld, struct conf_trunk *t, struct conf_cidr e)
{
	struct conf_cidr *a = mem_realloc(t->acl, (t->n_acl + 1) * sizeof(*a));
	if (!a) {
		ld->oom = 1;
		return -ENOMEM;
	}
	a[t->n_acl++] = e;
	t->acl = a;
	return 0;
}

static uint32_t prefix_mask(unsigned bits)
{
	return bits == 0 ? 0 : 0xffffffffu << (32 - bits);
}

/* "a.b.c.d", "a.b.c.d/n", either followed by ":port". NULL or the reason it is bad. */
static const char *cidr_parse(const char *v, struct conf_cidr *out)
{
	static const char bad[] = "must be \"a.b.c.d\" or \"a.b.c.d/n\", optionally with \":port\"";
	char buf[40];
	if (strlen(v) >= sizeof(buf))
		return bad;
	strcpy(buf, v);
	unsigned bits = 32;
	long port = 0;
	char *colon = strchr(buf, ':');
	if (colon) {
		*colon = '\0';
		char *end;
		if (!colon[1] || chk_digits(colon + 1))
			return bad;
		port = strtol(colon + 1, &end, 10);
		if (port < 1 || port > 65535)
			return "port must be 1-65535";
	}
	char *slash = strchr(buf, '/');
	if (slash) {
		*slash = '\0';
		if (!slash[1] || strlen(slash + 1) > 2 || chk_digits(slash + 1))
			return bad;
		bits = (unsigned)atoi(slash + 1);
		if (bits > 32)
			return "prefix length must be 0-32";
	}
	uint32_t addr;
	if (ipv4_parse(buf, &addr))
		return bad;
	uint32_t mask = prefix_mask(bits);
	if (addr & ~mask)
		return "has host bits set after the prefix length";
	out->addr = addr;
	out->mask = mask;
	out->port = (uint16_t)port;
	return NULL;
}

static void free_acl(void *base)
{
	struct conf_trunk *t = base;
	mem_free(t->acl);
	t->acl = NULL;
	t->n_acl = 0;
}

/* ACL entries from the file come first; node addresses are appended by trunk_finish. */
static void parse_acl(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf_trunk *t = base;
	if (!s)
		return;
	int ty = config_setting_type(s);
	if (ty != CONFIG_TYPE_ARRAY && ty != CONFIG_TYPE_LIST) {
		ld_report(ld, s, NULL, "must be a list of strings [ \"a.b.c.d/n\", ... ]");
		return;
	}
	int n = config_setting_length(s);
	for (int i = 0; i < n && !ld->oom; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v = config_setting_get_string(e);
		struct conf_cidr c;
		const char *why = v ? cidr_parse(v, &c) : "must be a string";
		if (why) {
			ld_report(ld, e, NULL, "%s", why);
			continue;
		}
		acl_append(ld, t, c);
	}
}

static int env_name_ok(const char *v)
{
	if (!v[0] || (v[0] >= '0' && v[0] <= '9'))
		return 0;
	for (const char *p = v; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_'))
			return 0;
	}
	return 1;
}

static void free_password(void *base)
{
	struct conf_trunk *t = base;
	mem_free(t->auth.password);
	t->auth.password = NULL;
}

/* KEY_env = "NAME": the secret is read from the environment, never from the file. */
static void read_env_secret(struct ld *ld, const config_setting_t *s, char **dst)
{
	if (!s) {
		set_str(ld, dst, "");
		return;
	}
	const char *v = config_setting_get_string(s);
	if (!v) {
		ld_report(ld, s, NULL, "must be a string (the name of an environment variable)");
		return;
	}
	if (!v[0])
		return; /* no password */
	if (!env_name_ok(v)) {
		ld_report(ld, s, NULL, "\"%s\" is not an environment variable name", v);
		return;
	}
	const char *secret = getenv(v);
	if (!secret) {
		ld_report(ld, s, NULL, "environment variable %s is not set", v);
		return;
	}
	if (!secret[0]) {
		ld_report(ld, s, NULL, "environment variable %s is empty", v);
		return;
	}
	set_str(ld, dst, secret);
}

static void parse_password_env(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf_trunk *t = base;
	read_env_secret(ld, s, &t->auth.password);
}

static void reject_password(struct ld *ld, const config_setting_t *s, void *base)
{
	(void)base;
	if (s)
		ld_report(ld, s, NULL,
		          "passwords are not allowed in the file: put it in an environment "
		          "variable and name that variable with password_env");
}

#define TR(f) offsetof(struct conf_trunk, f)
static const struct key register_keys[] = {
    {.name = "enable", .type = KT_BOOL, .off = TR(register_enable)},
    {.name = "expires",
     .type = KT_UINT,
     .off = TR(register_expires_s),
     .min = 60,
     .max = 86400,
     .def_int = 300},
    {.type = KT_END},
};

static const struct key auth_keys[] = {
    {.name = "user", .type = KT_STR, .off = TR(auth.user), .check = chk_header_text},
    {.name = "password_env", .type = KT_FN, .fn = parse_password_env, .free = free_password},
    {.name = "password", .type = KT_FN, .fn = reject_password},
    {.name = "realm", .type = KT_STR, .off = TR(auth.realm), .check = chk_header_text},
    {.type = KT_END},
};

static const struct key numbering_keys[] = {
    {.name = "country_code",
     .type = KT_STR,
     .off = TR(numbering.country_code),
     .check = chk_country_code},
    {.name = "national_prefix",
     .type = KT_STR,
     .off = TR(numbering.national_prefix),
     .check = chk_dial_prefix},
    {.name = "international_prefix",
     .type = KT_STR,
     .off = TR(numbering.international_prefix),
     .check = chk_dial_prefix,
     .def_str = "00"},
    {.name = "national_length",
     .type = KT_UINT,
     .off = TR(numbering.national_length),
     .min = 0,
     .max = 15},
    {.name = "egress",
     .type = KT_ENUM,
     .off = TR(numbering.egress),
     .names = egress_names,
     .def_int = CONF_EGRESS_PLUS_E164},
    {.name = "strip_prefix",
     .type = KT_STR,
     .off = TR(numbering.strip_prefix),
     .check = chk_dial_prefix},
    {.type = KT_END},
};

static const struct key trunk_keys[] = {
    {.name = "name", .type = KT_STR, .off = TR(name), .check = chk_name, .required = 1},
    {.name = "type",
     .type = KT_ENUM,
     .off = TR(type),
     .names = trunk_type_names,
     .def_int = CONF_TRUNK_CARRIER},
    {.name = "transport",
     .type = KT_ENUM,
     .off = TR(transport),
     .names = transport_names,
     .def_int = CONF_TP_UDP},
    {.name = "nodes", .type = KT_FN, .fn = parse_nodes, .free = free_nodes, .required = 1},
    {.name = "acl", .type = KT_FN, .fn = parse_acl, .free = free_acl},
    {.name = "domain", .type = KT_STR, .off = TR(domain), .check = chk_host_or_empty},
    {.name = "register", .type = KT_GROUP, .sub = register_keys},
    {.name = "auth", .type = KT_GROUP, .sub = auth_keys},
    {.name = "numbering", .type = KT_GROUP, .sub = numbering_keys},
    {.name = "srtp",
     .type = KT_ENUM,
     .off = TR(srtp),
     .names = srtp_names,
     .def_int = CONF_SRTP_OFF},
    {.name = "srtp_suites",
     .type = KT_STRLIST,
     .off = TR(srtp_suites),
     .n_off = TR(n_srtp_suites),
     .names = suite_names,
     .def_list = suite_names},
    {.name = "codecs",
     .type = KT_STRLIST,
     .off = TR(codecs),
     .n_off = TR(n_codecs),
     .names = codec_names,
     .def_list = default_codecs},
    {.name = "dtmf_pt", .type = KT_UINT, .off = TR(dtmf_pt), .min = 96, .max = 127, .def_int = 101},
    /* carrier defaults here; trunk_finish applies the cucm ones when the key is absent */
    {.name = "session_expires", .type = KT_UINT, .off = TR(session_expires_s), .max = 86400},
    {.name = "min_se",
     .type = KT_UINT,
     .off = TR(min_se_s),
     .min = 90,
     .max = 86400,
     .def_int = 90},
    {.name = "rel100", .type = KT_BOOL, .off = TR(rel100), .def_int = 1},
    {.name = "options_interval", .type = KT_UINT, .off = TR(options_interval_s), .max = 3600},
    {.name = "invite_timeout",
     .type = KT_UINT,
     .off = TR(invite_timeout_s),
     .min = 1,
     .max = 600,
     .def_int = 120},
    {.name = "max_calls", .type = KT_UINT, .off = TR(max_calls), .max = 1000000},
    {.name = "latch", .type = KT_BOOL, .off = TR(latch)},
    {.type = KT_END},
};
#undef TR

/* Adds the node's IPv4 addresses (resolved now when it is a name) to the trunk's ACL. */
static void node_resolve(struct ld *ld, const config_setting_t *ns, struct conf_trunk *t,
                         const struct conf_node *node)
{
	/* UDP peers send from their listening port; TCP/TLS ones from any port. */
	uint16_t port = t->transport == CONF_TP_UDP ? node->port : 0;
	struct conf_cidr e = {.mask = 0xffffffffu, .port = port};
	if (ipv4_parse(node->host, &e.addr) == 0) {
		acl_append(ld, t, e);
		return;
	}
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(node->host, NULL, &hints, &res);
	const config_setting_t *hs = ns ? config_setting_get_member(ns, "host") : NULL;
	if (rc != 0) {
		ld_report(ld, hs ? hs : ns, NULL, "cannot resolve \"%s\": %s", node->host,
		          gai_strerror(rc));
		return;
	}
	for (const struct addrinfo *ai = res; ai && !ld->oom; ai = ai->ai_next) {
		const struct sockaddr_in *sin =
		    (const struct sockaddr_in *)(const void *)ai->ai_addr;
		e.addr = ntohl(sin->sin_addr.s_addr);
		int seen = 0;
		for (size_t i = 0; i < t->n_acl; i++)
			seen |= t->acl[i].addr == e.addr && t->acl[i].mask == e.mask &&
			        t->acl[i].port == e.port;
		if (!seen)
			acl_append(ld, t, e);
	}
	freeaddrinfo(res);
}

static void trunk_finish(struct ld *ld, const config_setting_t *ts, struct conf_trunk *t)
{
	if (ld->oom)
		return;
	if (t->type == CONF_TRUNK_CUCM) {
		static const struct {
			const char *key;
			size_t off;
			unsigned v;
		} cucm[] = {
		    {"session_expires", offsetof(struct conf_trunk, session_expires_s), 1800},
		    {"min_se", offsetof(struct conf_trunk, min_se_s), 1800},
		    {"options_interval", offsetof(struct conf_trunk, options_interval_s), 30},
		    {"invite_timeout", offsetof(struct conf_trunk, invite_timeout_s), 30},
		};
		for (size_t i = 0; i < sizeof(cucm) / sizeof(cucm[0]); i++) {
			if (!config_setting_get_member(ts, cucm[i].key))
				*(unsigned *)at(t, cucm[i].off) = cucm[i].v;
		}
	}
	const config_setting_t *se = config_setting_get_member(ts, "session_expires");
	if (t->session_expires_s && t->session_expires_s < t->min_se_s)
		ld_report(ld, se ? se : ts, se ? NULL : "session_expires",
		          "must be 0 (off) or at least min_se (%u)", t->min_se_s);

	if (t->register_enable && (!t->auth.user[0] || !t->auth.password[0])) {
		const config_setting_t *rs = config_setting_get_member(ts, "register");
		const config_setting_t *es = rs ? config_setting_get_member(rs, "enable") : NULL;
		ld_report(ld, es ? es : ts, es ? NULL : "register.enable",
		          "registration needs auth.user and auth.password_env");
	}
	if (t->numbering.egress == CONF_EGRESS_NATIONAL && !t->numbering.country_code[0]) {
		const config_setting_t *ns = config_setting_get_member(ts, "numbering");
		const config_setting_t *es = ns ? config_setting_get_member(ns, "egress") : NULL;
		ld_report(ld, es ? es : ts, es ? NULL : "numbering.egress",
		          "national needs numbering.country_code");
	}

	const config_setting_t *nl = config_setting_get_member(ts, "nodes");
	for (size_t i = 0; i < t->n_nodes && !ld->oom; i++) {
		struct conf_node *node = &t->nodes[i];
		if (node->port == 0)
			node->port = t->transport == CONF_TP_TLS ? 5061 : 5060;
		if (!node->host[0])
			continue; /* missing host already reported */
		node_resolve(ld, nl ? config_setting_get_elem(nl, (unsigned)i) : ts, t, node);
	}
}

static void free_trunks(void *base)
{
	struct conf *c = base;
	for (size_t i = 0; i < c->n_trunks; i++)
		schema_free(trunk_keys, &c->trunks[i]);
	mem_free(c->trunks);
	c->trunks = NULL;
	c->n_trunks = 0;
}

static void trunk_elem_finish(struct ld *ld, const config_setting_t *ts, void *elems, int i)
{
	struct conf_trunk *trunks = elems, *t = &trunks[i];
	trunk_finish(ld, ts, t);
	if (ld->oom)
		return;
	const config_setting_t *ns = config_setting_get_member(ts, "name");
	if (strcmp(t->name, "ai") == 0)
		ld_report(ld, ns, NULL, "\"ai\" is reserved (routes use to = \"ai\")");
	for (int j = 0; j < i && t->name[0]; j++) {
		if (strcmp(trunks[j].name, t->name) == 0) {
			const config_setting_t *o =
			    config_setting_get_elem(config_setting_parent(ts), (unsigned)j);
			ld_report(ld, ns, NULL, "duplicate trunk name \"%s\" (first at line %u)",
			          t->name, config_setting_source_line(o));
			break;
		}
	}
}

static void parse_trunks(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf *c = base;
	void *arr;
	c->n_trunks =
	    parse_group_array(ld, s, trunk_keys, sizeof(*c->trunks), &arr, trunk_elem_finish);
	c->trunks = arr;
}

/* ---------------------------------------------------------------- routes */

#define RT(f) offsetof(struct conf_route, f)
static const struct key route_keys[] = {
    {.name = "name", .type = KT_STR, .off = RT(name), .check = chk_name, .required = 1},
    {.name = "from", .type = KT_STR, .off = RT(from), .check = chk_nonempty, .required = 1},
    {.name = "match", .type = KT_STR, .off = RT(match), .check = chk_nonempty, .required = 1},
    {.name = "caller_match", .type = KT_STR, .off = RT(caller_match)},
    {.name = "to", .type = KT_STR, .off = RT(to), .check = chk_nonempty, .required = 1},
    {.name = "rewrite", .type = KT_STR, .off = RT(rewrite)},
    {.name = "record", .type = KT_BOOL, .off = RT(record)},
    {.name = "record_notice", .type = KT_STR, .off = RT(record_notice), .check = chk_readable},
    {.name = "amd", .type = KT_BOOL, .off = RT(amd)},
    {.name = "assistant", .type = KT_STR, .off = RT(assistant), .check = chk_header_text},
    {.name = "fallback_prompt", .type = KT_STR, .off = RT(fallback.prompt), .check = chk_readable},
    {.name = "fallback_to", .type = KT_STR, .off = RT(fallback.to)},
    {.name = "fallback_number", .type = KT_STR, .off = RT(fallback.number), .check = chk_digits},
    {.name = "fallback_callback", .type = KT_BOOL, .off = RT(fallback.callback)},
    {.type = KT_END},
};
#undef RT

static void regex_free(void *re)
{
	if (re) {
		regfree(re);
		mem_free(re);
	}
}

static void free_routes(void *base)
{
	struct conf *c = base;
	for (size_t i = 0; i < c->n_routes; i++) {
		schema_free(route_keys, &c->routes[i]);
		regex_free(c->routes[i].regex);
		regex_free(c->routes[i].caller_regex);
	}
	mem_free(c->routes);
	c->routes = NULL;
	c->n_routes = 0;
}

/* Compiles pattern into a new regex_t; reports at s on error. NULL on error. */
static void *regex_compile(struct ld *ld, const config_setting_t *s, const char *pattern, int flags)
{
	regex_t *re = mem_alloc(sizeof(*re));
	if (!re) {
		ld->oom = 1;
		return NULL;
	}
	int rc = regcomp(re, pattern, REG_EXTENDED | flags);
	if (rc != 0) {
		char why[160];
		regerror(rc, re, why, sizeof(why));
		ld_report(ld, s, NULL, "bad regular expression \"%s\": %s", pattern, why);
		mem_free(re);
		return NULL;
	}
	return re;
}

/* Checks the \N references of rewrite against the groups of match. */
static void check_rewrite(struct ld *ld, const config_setting_t *s, const char *rw, size_t nsub)
{
	for (const char *p = rw; *p; p++) {
		if (*p != '\\')
			continue;
		p++;
		if (*p == '\\')
			continue;
		if (*p < '0' || *p > '9') {
			ld_report(ld, s, NULL, "\\ must be followed by a digit 0-9 (or \\\\)");
			return;
		}
		if ((size_t)(*p - '0') > nsub) {
			ld_report(ld, s, NULL,
			          "\\%c refers to a group that match does not have (%zu)", *p,
			          nsub);
			return;
		}
	}
}

static void route_elem_finish(struct ld *ld, const config_setting_t *rs, void *elems, int i)
{
	struct conf_route *routes = elems, *r = &routes[i];
	const config_setting_t *ms = config_setting_get_member(rs, "match");
	if (r->match[0]) {
		r->regex = regex_compile(ld, ms, r->match, 0);
		const config_setting_t *ws = config_setting_get_member(rs, "rewrite");
		if (r->regex && ws)
			check_rewrite(ld, ws, r->rewrite, ((regex_t *)r->regex)->re_nsub);
	}
	if (r->caller_match[0])
		r->caller_regex = regex_compile(ld, config_setting_get_member(rs, "caller_match"),
		                                r->caller_match, REG_NOSUB);
	const config_setting_t *nms = config_setting_get_member(rs, "name");
	for (int j = 0; j < i && r->name[0]; j++) {
		if (strcmp(routes[j].name, r->name) == 0) {
			ld_report(ld, nms, NULL, "duplicate route name \"%s\"", r->name);
			break;
		}
	}
}

static void parse_routes(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf *c = base;
	void *arr;
	c->n_routes =
	    parse_group_array(ld, s, route_keys, sizeof(*c->routes), &arr, route_elem_finish);
	c->routes = arr;
}

/* A fallback's trunk and number go together; the trunk must exist. */
static void fallback_resolve(struct ld *ld, const struct conf *c, const config_setting_t *gs,
                             struct conf_ai_fallback *f)
{
	if (!f->to[0] && !f->number[0])
		return;
	if (!f->to[0] || !f->number[0]) {
		ld_report(
		    ld, gs, f->to[0] ? "fallback_number" : "fallback_to",
		    "fallback_to and fallback_number go together (the queue's trunk and number)");
		return;
	}
	f->to_trunk = conf_trunk_find(c, f->to);
	if (!f->to_trunk)
		ld_report(ld, config_setting_get_member(gs, "fallback_to"), NULL,
		          "no trunk named \"%s\"", f->to);
}

/* Routes may come before trunks in the file: they are resolved once everything is read. */
static void routes_resolve(struct ld *ld, struct conf *c)
{
	const config_setting_t *list = config_lookup(ld->cfg, "routes");
	for (size_t i = 0; i < c->n_routes && list; i++) {
		struct conf_route *r = &c->routes[i];
		const config_setting_t *rs = config_setting_get_elem(list, (unsigned)i);
		if (!rs || !config_setting_is_group(rs))
			continue;
		if (r->from[0] && !conf_trunk_find(c, r->from))
			ld_report(ld, config_setting_get_member(rs, "from"), NULL,
			          "no trunk named \"%s\"", r->from);
		if (strcmp(r->to, "ai") == 0) {
			r->target_type = CONF_ROUTE_AI;
		} else if (r->to[0]) {
			r->target_type = CONF_ROUTE_TRUNK;
			r->to_trunk = conf_trunk_find(c, r->to);
			if (!r->to_trunk)
				ld_report(ld, config_setting_get_member(rs, "to"), NULL,
				          "no trunk named \"%s\" (name a trunk, or \"ai\")", r->to);
		}
		fallback_resolve(ld, c, rs, &r->fallback);
		if (r->target_type != CONF_ROUTE_AI &&
		    (r->fallback.prompt[0] || r->fallback.to[0] || r->fallback.callback))
			ld_report(ld, rs, "fallback_prompt",
			          "the fallback keys are for routes to \"ai\" only");
	}
	if (c->outbound.trunk[0]) {
		const config_setting_t *os = config_lookup(ld->cfg, "outbound");
		c->outbound.to_trunk = conf_trunk_find(c, c->outbound.trunk);
		if (!c->outbound.to_trunk)
			ld_report(ld, os ? config_setting_get_member(os, "trunk") : NULL, NULL,
			          "no trunk named \"%s\"", c->outbound.trunk);
	}
}

/* ---------------------------------------------------------------- queues */

static const char *const whisper_names[] = {"none", "prompt", "ai", NULL};
static const char *const day_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", NULL};

static int day_of(const char *p)
{
	for (int d = 0; d < 7; d++)
		if (strncmp(p, day_names[d], 3) == 0)
			return d;
	return -1;
}

/* "Mon-Fri 09:00-19:00", "Sat 10:00-14:00", "Sun-Sat 00:00-24:00": days, then a time span
 * in quarter hours. Fills open[][] when given. NULL or the reason it is wrong. */
static const char *hours_parse(const char *v, uint8_t open[7][24 * 4])
{
	static const char bad[] =
	    "must be \"Day[-Day] HH:MM-HH:MM\" with days Mon..Sun and quarter hours, e.g. "
	    "\"Mon-Fri 09:00-19:00\"";
	int d0 = day_of(v), d1 = d0;
	const char *p = v + 3;
	if (d0 < 0)
		return bad;
	if (*p == '-') {
		d1 = day_of(p + 1);
		p += 4;
	}
	unsigned h0, m0, h1, m1;
	int n = 0;
	if (d1 < 0 || sscanf(p, " %2u:%2u-%2u:%2u%n", &h0, &m0, &h1, &m1, &n) != 4 || p[n] ||
	    m0 % 15 || m1 % 15 || m0 > 45 || m1 > 45 || h0 * 60 + m0 >= h1 * 60 + m1 ||
	    h1 * 60 + m1 > 24 * 60)
		return bad;
	for (int d = d0;; d = (d + 1) % 7) {
		for (unsigned q = (h0 * 60 + m0) / 15; open && q < (h1 * 60 + m1) / 15; q++)
			open[d][q] = 1;
		if (d == d1)
			break;
	}
	return NULL;
}

static const char *chk_hours(const char *v)
{
	return hours_parse(v, NULL);
}

static const char *chk_queue_number_or_empty(const char *v)
{
	return v[0] ? chk_queue_number(v) : NULL;
}

/* utc_offset: minutes east of UTC (-360 for Mexico City), -840..840. */
static void parse_utc_offset(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf_queue *q = base;
	if (!s) {
		q->utc_offset_min = 0;
		return;
	}
	int t = config_setting_type(s);
	long long v = t == CONFIG_TYPE_INT     ? config_setting_get_int(s)
	              : t == CONFIG_TYPE_INT64 ? config_setting_get_int64(s)
	                                       : 100000;
	if (v < -840 || v > 840)
		ld_report(ld, s, NULL, "must be minutes east of UTC, -840..840 (-360 = UTC-6)");
	else
		q->utc_offset_min = (int)v;
}

int conf_queue_open(const struct conf_queue *q, uint64_t unix_s)
{
	if (!q->n_hours)
		return 1;
	int64_t local = (int64_t)unix_s + (int64_t)q->utc_offset_min * 60;
	int64_t days = local >= 0 ? local / 86400 : (local - 86399) / 86400;
	int wday = (int)(((days % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
	int qh = (int)((local - days * 86400) / 900);
	return q->open[wday][qh];
}
static const char *const accept_names[] = {"answer", "dtmf", NULL};

#define QU(f) offsetof(struct conf_queue, f)
static const struct key queue_keys[] = {
    {.name = "name", .type = KT_STR, .off = QU(name), .check = chk_name, .required = 1},
    {.name = "trunk", .type = KT_STR, .off = QU(trunk), .check = chk_nonempty, .required = 1},
    {.name = "number", .type = KT_STR, .off = QU(number), .check = chk_queue_number, .required = 1},
    {.name = "ring_timeout",
     .type = KT_UINT,
     .off = QU(ring_timeout_s),
     .min = 5,
     .max = 300,
     .def_int = 25},
    {.name = "whisper",
     .type = KT_ENUM,
     .off = QU(whisper),
     .names = whisper_names,
     .def_int = CONF_WHISPER_NONE},
    {.name = "whisper_prompt", .type = KT_STR, .off = QU(whisper_prompt), .check = chk_readable},
    {.name = "accept",
     .type = KT_ENUM,
     .off = QU(accept),
     .names = accept_names,
     .def_int = CONF_ACCEPT_ANSWER},
    {.name = "accept_timeout",
     .type = KT_UINT,
     .off = QU(accept_timeout_s),
     .min = 2,
     .max = 120,
     .def_int = 15},
    {.name = "moh", .type = KT_STR, .off = QU(moh), .check = chk_readable},
    {.name = "hours",
     .type = KT_STRLIST,
     .off = QU(hours),
     .n_off = QU(n_hours),
     .check = chk_hours},
    {.name = "utc_offset", .type = KT_FN, .fn = parse_utc_offset},
    {.name = "after_hours_trunk", .type = KT_STR, .off = QU(after_hours_trunk)},
    {.name = "after_hours_number",
     .type = KT_STR,
     .off = QU(after_hours_number),
     .check = chk_queue_number_or_empty},
    {.type = KT_END},
};
#undef QU

static void queue_elem_finish(struct ld *ld, const config_setting_t *qs, void *elems, int i)
{
	struct conf_queue *q = &((struct conf_queue *)elems)[i];
	for (size_t h = 0; h < q->n_hours; h++)
		hours_parse(q->hours[h], q->open);
	if (q->n_hours && !q->after_hours_number[0])
		ld_report(
		    ld, qs, "after_hours_number",
		    "hours need an after-hours target (after_hours_trunk and after_hours_number)");
	if (q->whisper == CONF_WHISPER_PROMPT && !q->whisper_prompt[0])
		ld_report(ld, qs, "whisper_prompt", "whisper = \"prompt\" needs whisper_prompt");
	for (int j = 0; j < i && q->name[0]; j++) {
		if (strcmp(((struct conf_queue *)elems)[j].name, q->name) == 0) {
			ld_report(ld, config_setting_get_member(qs, "name"), NULL,
			          "duplicate queue name \"%s\"", q->name);
			break;
		}
	}
}

static void free_queues(void *base)
{
	struct conf *c = base;
	for (size_t i = 0; i < c->n_queues; i++)
		schema_free(queue_keys, &c->queues[i]);
	mem_free(c->queues);
	c->queues = NULL;
	c->n_queues = 0;
}

static void parse_queues(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf *c = base;
	void *arr;
	c->n_queues =
	    parse_group_array(ld, s, queue_keys, sizeof(*c->queues), &arr, queue_elem_finish);
	c->queues = arr;
}

static void queues_resolve(struct ld *ld, struct conf *c)
{
	const config_setting_t *list = config_lookup(ld->cfg, "queues");
	for (size_t i = 0; i < c->n_queues && list; i++) {
		struct conf_queue *q = &c->queues[i];
		const config_setting_t *qs = config_setting_get_elem(list, (unsigned)i);
		q->to_trunk = conf_trunk_find(c, q->trunk);
		if (!q->to_trunk)
			ld_report(ld, qs ? config_setting_get_member(qs, "trunk") : list, NULL,
			          "no trunk named \"%s\"", q->trunk);
		const char *ah = q->after_hours_trunk[0] ? q->after_hours_trunk : q->trunk;
		if (q->after_hours_number[0]) {
			q->after_hours_to = conf_trunk_find(c, ah);
			if (!q->after_hours_to && q->after_hours_trunk[0])
				ld_report(ld,
				          qs ? config_setting_get_member(qs, "after_hours_trunk")
				             : list,
				          NULL, "no trunk named \"%s\"", ah);
		}
	}
}

const struct conf_queue *conf_queue_find(const struct conf *c, const char *name)
{
	if (!c || !c->n_queues)
		return NULL;
	if (!name || !name[0])
		return &c->queues[0];
	for (size_t i = 0; i < c->n_queues; i++)
		if (strcmp(c->queues[i].name, name) == 0)
			return &c->queues[i];
	return NULL;
}

/* ---------------------------------------------------------------- top level */

#define CF(f) offsetof(struct conf, f)
static const struct key log_keys[] = {
    {.name = "level",
     .type = KT_STR,
     .off = CF(log.level),
     .names = level_names,
     .def_str = "info"},
    {.name = "format",
     .type = KT_STR,
     .off = CF(log.format),
     .names = format_names,
     .def_str = "text"},
    {.name = "file", .type = KT_STR, .off = CF(log.file)},
    {.type = KT_END},
};

static const struct key sip_keys[] = {
    {.name = "address",
     .type = KT_STR,
     .off = CF(sip.address),
     .check = chk_ipv4,
     .def_str = "0.0.0.0"},
    {.name = "advertise", .type = KT_STR, .off = CF(sip.advertise), .check = chk_host_or_empty},
    {.name = "port", .type = KT_U16, .off = CF(sip.port), .min = 1, .max = 65535, .def_int = 5060},
    {.name = "tls_port", .type = KT_U16, .off = CF(sip.tls_port), .min = 0, .max = 65535},
    {.name = "tls_cert_dir", .type = KT_STR, .off = CF(sip.tls_cert_dir)},
    {.name = "tls_verify",
     .type = KT_ENUM,
     .off = CF(sip.tls_verify),
     .names = tls_verify_names,
     .def_int = CONF_TLS_VERIFY_SERVERS},
    {.name = "user_agent",
     .type = KT_STR,
     .off = CF(sip.user_agent),
     .check = chk_nonempty_header_text,
     .def_str = "VACS/" VACS_VERSION},
    {.name = "udp_mtu",
     .type = KT_UINT,
     .off = CF(sip.udp_mtu),
     .min = 576,
     .max = 65535,
     .def_int = 65535},
    {.name = "drain_retry_after",
     .type = KT_UINT,
     .off = CF(sip.drain_retry_after_s),
     .max = 3600,
     .def_int = 30},
    {.name = "unknown_source",
     .type = KT_ENUM,
     .off = CF(sip.unknown_source),
     .names = unknown_names,
     .def_int = CONF_UNKNOWN_REJECT},
    {.name = "max_headers",
     .type = KT_UINT,
     .off = CF(sip.max_headers),
     .min = 8,
     .max = 4096,
     .def_int = 256},
    {.name = "max_cps", .type = KT_UINT, .off = CF(sip.max_cps), .min = 0, .max = 100000},
    {.type = KT_END},
};

static const struct key media_keys[] = {
    {.name = "address",
     .type = KT_STR,
     .off = CF(media.address),
     .check = chk_ipv4,
     .def_str = "0.0.0.0"},
    {.name = "advertise", .type = KT_STR, .off = CF(media.advertise), .check = chk_host_or_empty},
    {.name = "port_min",
     .type = KT_U16,
     .off = CF(media.port_min),
     .min = 1024,
     .max = 65535,
     .def_int = 20000},
    {.name = "port_max",
     .type = KT_U16,
     .off = CF(media.port_max),
     .min = 1024,
     .max = 65535,
     .def_int = 29999},
    {.name = "workers", .type = KT_UINT, .off = CF(media.workers), .max = 256},
    {.name = "rtp_timeout",
     .type = KT_UINT,
     .off = CF(media.rtp_timeout_s),
     .max = 86400,
     .def_int = 60},
    {.name = "hold_timeout", .type = KT_UINT, .off = CF(media.hold_timeout_s), .max = 86400},
    {.name = "max_sessions",
     .type = KT_UINT,
     .off = CF(media.max_sessions),
     .min = 1,
     .max = 1000000,
     .def_int = 2048},
    {.name = "realtime_priority", .type = KT_UINT, .off = CF(media.realtime_priority), .max = 99},
    {.name = "coalesce_us", .type = KT_UINT, .off = CF(media.coalesce_us), .max = 1000},
    {.type = KT_END},
};

static void parse_api_key_env(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf *c = base;
	read_env_secret(ld, s, &c->http.api_key);
}

static void free_api_key(void *base)
{
	struct conf *c = base;
	mem_free(c->http.api_key);
	c->http.api_key = NULL;
}

static void parse_hook_secret_env(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf *c = base;
	read_env_secret(ld, s, &c->vapi.webhook.secret);
}

static void free_hook_secret(void *base)
{
	struct conf *c = base;
	mem_free(c->vapi.webhook.secret);
	c->vapi.webhook.secret = NULL;
}

/* "key", "secret", "api_key" in the file: secrets come from the environment only. */
static void reject_in_file(struct ld *ld, const config_setting_t *s, void *base)
{
	(void)base;
	if (s)
		ld_report(ld, s, NULL,
		          "secrets (API keys) are not allowed in the file: put it in an "
		          "environment variable "
		          "and name that variable with %s_env",
		          config_setting_name(s));
}

static const struct key http_keys[] = {
    {.name = "address",
     .type = KT_STR,
     .off = CF(http.address),
     .check = chk_ipv4,
     .def_str = "127.0.0.1"},
    {.name = "port", .type = KT_U16, .off = CF(http.port), .min = 0, .max = 65535},
    {.name = "api_key_env", .type = KT_FN, .fn = parse_api_key_env, .free = free_api_key},
    {.name = "api_key", .type = KT_FN, .fn = reject_in_file},
    {.name = "public_url", .type = KT_STR, .off = CF(http.public_url), .check = chk_public_url},
    {.name = "web_dir", .type = KT_STR, .off = CF(http.web_dir), .def_str = "web/dist"},
    {.type = KT_END},
};

static const struct key outbound_keys[] = {
    {.name = "trunk", .type = KT_STR, .off = CF(outbound.trunk)},
    {.name = "caller_id", .type = KT_STR, .off = CF(outbound.caller_id), .check = chk_caller_id},
    {.name = "assistant", .type = KT_STR, .off = CF(outbound.assistant), .check = chk_header_text},
    {.name = "ring_timeout",
     .type = KT_UINT,
     .off = CF(outbound.ring_timeout_s),
     .min = 5,
     .max = 300,
     .def_int = 45},
    {.name = "amd", .type = KT_BOOL, .off = CF(outbound.amd)},
    {.name = "record", .type = KT_BOOL, .off = CF(outbound.record)},
    {.name = "fallback_prompt",
     .type = KT_STR,
     .off = CF(outbound.fallback.prompt),
     .check = chk_readable},
    {.name = "fallback_callback", .type = KT_BOOL, .off = CF(outbound.fallback.callback)},
    {.type = KT_END},
};

static const struct key spool_keys[] = {
    {.name = "dir",
     .type = KT_STR,
     .off = CF(spool.dir),
     .check = chk_nonempty,
     .def_str = "/var/spool/vacs"},
    {.type = KT_END},
};

/* A store's connection string: the variable named by s, if set. Unlike a secret, an
 * unset or empty variable is not an error: that store is off (vacsd says so at start). */
static void read_env_optional(struct ld *ld, const config_setting_t *s, char **name, char **dst)
{
	const char *v = s ? config_setting_get_string(s) : "";
	if (!v) {
		ld_report(ld, s, NULL, "must be a string (the name of an environment variable)");
		return;
	}
	if (v[0] && !env_name_ok(v)) {
		ld_report(ld, s, NULL, "\"%s\" is not an environment variable name", v);
		return;
	}
	const char *val = v[0] ? getenv(v) : NULL;
	set_str(ld, name, v);
	set_str(ld, dst, val ? val : "");
}

static void parse_postgres_env(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf *c = base;
	read_env_optional(ld, s, &c->store.postgres_env, &c->store.postgres);
}

static void free_postgres(void *base)
{
	struct conf *c = base;
	mem_free(c->store.postgres_env);
	mem_free(c->store.postgres);
	c->store.postgres_env = c->store.postgres = NULL;
}

static void parse_redis_env(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf *c = base;
	read_env_optional(ld, s, &c->store.redis_env, &c->store.redis);
}

static void free_redis(void *base)
{
	struct conf *c = base;
	mem_free(c->store.redis_env);
	mem_free(c->store.redis);
	c->store.redis_env = c->store.redis = NULL;
}

static const struct key store_keys[] = {
    {.name = "postgres_env", .type = KT_FN, .fn = parse_postgres_env, .free = free_postgres},
    {.name = "postgres", .type = KT_FN, .fn = reject_in_file},
    {.name = "redis_env", .type = KT_FN, .fn = parse_redis_env, .free = free_redis},
    {.name = "redis", .type = KT_FN, .fn = reject_in_file},
    {.name = "backoff_min_ms",
     .type = KT_UINT,
     .off = CF(store.backoff_min_ms),
     .min = 10,
     .max = 60000,
     .def_int = 200},
    {.name = "backoff_max_ms",
     .type = KT_UINT,
     .off = CF(store.backoff_max_ms),
     .min = 10,
     .max = 600000,
     .def_int = 10000},
    {.type = KT_END},
};

static const struct key dialer_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .off = CF(dialer.enabled), .def_int = 1},
    {.name = "node_id", .type = KT_STR, .off = CF(dialer.node_id), .def_str = ""},
    {.name = "redis_prefix", .type = KT_STR, .off = CF(dialer.redis_prefix), .def_str = "vacs:"},
    {.name = "max_calls",
     .type = KT_UINT,
     .off = CF(dialer.max_calls),
     .min = 1,
     .max = 500,
     .def_int = 10},
    {.name = "tick_ms",
     .type = KT_UINT,
     .off = CF(dialer.tick_ms),
     .min = 20,
     .max = 5000,
     .def_int = 200},
    {.name = "lease_s",
     .type = KT_UINT,
     .off = CF(dialer.lease_s),
     .min = 3,
     .max = 3600,
     .def_int = 30},
    {.name = "reclaim_s",
     .type = KT_UINT,
     .off = CF(dialer.reclaim_s),
     .min = 2,
     .max = 3600,
     .def_int = 30},
    {.name = "unanswered_hold_s",
     .type = KT_UINT,
     .off = CF(dialer.unanswered_hold_s),
     .max = 3600,
     .def_int = 10},
    {.name = "sweep_s",
     .type = KT_UINT,
     .off = CF(dialer.sweep_s),
     .min = 2,
     .max = 86400,
     .def_int = 60},
    {.type = KT_END},
};

/* ---- notify and s3 (control/notify.c, control/uploader.c) ---- */

static const struct key notify_keys[] = {
    {.name = "attempts",
     .type = KT_UINT,
     .off = CF(notify.attempts),
     .min = 1,
     .max = 20,
     .def_int = 6},
    {.name = "backoff_ms",
     .type = KT_UINT,
     .off = CF(notify.backoff_ms),
     .min = 10,
     .max = 600000,
     .def_int = 1000},
    {.name = "backoff_max_ms",
     .type = KT_UINT,
     .off = CF(notify.backoff_max_ms),
     .min = 10,
     .max = 3600000,
     .def_int = 300000},
    {.name = "timeout_ms",
     .type = KT_UINT,
     .off = CF(notify.timeout_ms),
     .min = 100,
     .max = 120000,
     .def_int = 10000},
    {.name = "queue",
     .type = KT_UINT,
     .off = CF(notify.queue),
     .min = 1,
     .max = 1000000,
     .def_int = 10000},
    {.name = "refresh_ms",
     .type = KT_UINT,
     .off = CF(notify.refresh_ms),
     .min = 100,
     .max = 600000,
     .def_int = 5000},
    {.name = "allow_private", .type = KT_BOOL, .off = CF(notify.allow_private)},
    {.type = KT_END},
};

static const char *chk_s3_endpoint(const char *v)
{
	return v[0] && v[strlen(v) - 1] == '/' ? "must not end with a slash" : chk_public_url(v);
}

/* S3 bucket names: 3-63 of lowercase letters, digits, '.', '-' (AWS's rules, simplified). */
static const char *chk_bucket(const char *v)
{
	size_t n = strlen(v);
	if (!n)
		return NULL;
	if (n < 3 || n > 63)
		return "must be 3 to 63 characters";
	for (const char *p = v; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '-'))
			return "may hold lowercase letters, digits, '.' and '-' only";
	return NULL;
}

static const char *chk_region(const char *v)
{
	if (!v[0] || strlen(v) > 32)
		return "must be 1 to 32 characters";
	for (const char *p = v; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return "may hold lowercase letters, digits and '-' only";
	return NULL;
}

static void parse_s3_access(struct ld *ld, const config_setting_t *s, void *base)
{
	read_env_secret(ld, s, &((struct conf *)base)->s3.access_key);
}

static void parse_s3_secret(struct ld *ld, const config_setting_t *s, void *base)
{
	read_env_secret(ld, s, &((struct conf *)base)->s3.secret_key);
}

static void free_s3_keys(void *base)
{
	struct conf *c = base;
	mem_free(c->s3.access_key);
	mem_free(c->s3.secret_key);
	c->s3.access_key = c->s3.secret_key = NULL;
}

static const struct key s3_keys[] = {
    {.name = "endpoint", .type = KT_STR, .off = CF(s3.endpoint), .check = chk_s3_endpoint},
    {.name = "region",
     .type = KT_STR,
     .off = CF(s3.region),
     .check = chk_region,
     .def_str = "us-east-1"},
    {.name = "bucket", .type = KT_STR, .off = CF(s3.bucket), .check = chk_bucket},
    {.name = "access_key_env", .type = KT_FN, .fn = parse_s3_access, .free = free_s3_keys},
    {.name = "secret_key_env", .type = KT_FN, .fn = parse_s3_secret},
    {.name = "access_key", .type = KT_FN, .fn = reject_in_file},
    {.name = "secret_key", .type = KT_FN, .fn = reject_in_file},
    {.name = "path_style", .type = KT_BOOL, .off = CF(s3.path_style)},
    {.name = "delete_after_upload", .type = KT_BOOL, .off = CF(s3.delete_after_upload)},
    {.name = "attempts",
     .type = KT_UINT,
     .off = CF(s3.attempts),
     .min = 1,
     .max = 100,
     .def_int = 8},
    {.name = "backoff_ms",
     .type = KT_UINT,
     .off = CF(s3.backoff_ms),
     .min = 10,
     .max = 600000,
     .def_int = 1000},
    {.name = "backoff_max_ms",
     .type = KT_UINT,
     .off = CF(s3.backoff_max_ms),
     .min = 10,
     .max = 3600000,
     .def_int = 300000},
    {.name = "timeout",
     .type = KT_UINT,
     .off = CF(s3.timeout_s),
     .min = 1,
     .max = 3600,
     .def_int = 300},
    {.type = KT_END},
};

static const config_setting_t *where(struct ld *ld, const char *group, const char *key, char *mbuf,
                                     size_t mlen, const char **member);

/* Cross-key rules of the notify and s3 groups. */
static void notify_s3_finish(struct ld *ld, struct conf *c)
{
	const char *m;
	char mb[64];
	const config_setting_t *s;
	if (c->notify.backoff_ms > c->notify.backoff_max_ms) {
		s = where(ld, "notify", "backoff_ms", mb, sizeof(mb), &m);
		ld_report(ld, s, m, "must not be above notify.backoff_max_ms (%u)",
		          c->notify.backoff_max_ms);
	}
	if (c->s3.backoff_ms > c->s3.backoff_max_ms) {
		s = where(ld, "s3", "backoff_ms", mb, sizeof(mb), &m);
		ld_report(ld, s, m, "must not be above s3.backoff_max_ms (%u)",
		          c->s3.backoff_max_ms);
	}
	if (c->s3.bucket && c->s3.bucket[0]) {
		if (!c->s3.access_key || !c->s3.access_key[0]) {
			s = where(ld, "s3", "access_key_env", mb, sizeof(mb), &m);
			ld_report(ld, s, m, "is required when s3.bucket is set");
		}
		if (!c->s3.secret_key || !c->s3.secret_key[0]) {
			s = where(ld, "s3", "secret_key_env", mb, sizeof(mb), &m);
			ld_report(ld, s, m, "is required when s3.bucket is set");
		}
	}
}

static void parse_vapi_key_env(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf *c = base;
	read_env_secret(ld, s, &c->vapi.api_key);
}

static void free_vapi_key(void *base)
{
	struct conf *c = base;
	mem_free(c->vapi.api_key);
	c->vapi.api_key = NULL;
}

static const char *const hook_auth_names[] = {"none", "bearer", "hmac", NULL};
static const char *const hmac_alg_names[] = {"sha256", "sha512", "sha1", NULL};
static const char *const sig_enc_names[] = {"hex", "base64", NULL};

static const struct key vapi_webhook_keys[] = {
    {.name = "auth",
     .type = KT_ENUM,
     .off = CF(vapi.webhook.auth),
     .names = hook_auth_names,
     .def_int = 1},
    {.name = "secret_env", .type = KT_FN, .fn = parse_hook_secret_env, .free = free_hook_secret},
    {.name = "secret", .type = KT_FN, .fn = reject_in_file},
    {.name = "header",
     .type = KT_STR,
     .off = CF(vapi.webhook.header),
     .check = chk_header_name,
     .def_str = "authorization"},
    {.name = "bearer_prefix", .type = KT_BOOL, .off = CF(vapi.webhook.bearer_prefix), .def_int = 1},
    {.name = "algorithm",
     .type = KT_STR,
     .off = CF(vapi.webhook.algorithm),
     .names = hmac_alg_names,
     .def_str = "sha256"},
    {.name = "signature_header",
     .type = KT_STR,
     .off = CF(vapi.webhook.signature_header),
     .check = chk_header_name,
     .def_str = "x-signature"},
    {.name = "timestamp_header",
     .type = KT_STR,
     .off = CF(vapi.webhook.timestamp_header),
     .check = chk_header_name,
     .def_str = "x-timestamp"},
    {.name = "signature_prefix",
     .type = KT_STR,
     .off = CF(vapi.webhook.signature_prefix),
     .check = chk_header_text},
    {.name = "include_timestamp",
     .type = KT_BOOL,
     .off = CF(vapi.webhook.include_timestamp),
     .def_int = 1},
    {.name = "signature_encoding",
     .type = KT_ENUM,
     .off = CF(vapi.webhook.base64),
     .names = sig_enc_names,
     .def_int = 0},
    {.name = "max_skew",
     .type = KT_UINT,
     .off = CF(vapi.webhook.max_skew_s),
     .min = 1,
     .max = 86400,
     .def_int = 300},
    {.name = "max_body",
     .type = KT_UINT,
     .off = CF(vapi.webhook.max_body),
     .min = 1024,
     .max = 64u << 20,
     .def_int = 4u << 20},
    {.name = "answer_timeout",
     .type = KT_UINT,
     .off = CF(vapi.webhook.answer_timeout_ms),
     .min = 100,
     .max = 300000,
     .def_int = 5000},
    {.type = KT_END},
};

static const struct key vapi_keys[] = {
    {.name = "api_url",
     .type = KT_STR,
     .off = CF(vapi.api_url),
     .check = chk_http_url,
     .def_str = "https://api.vapi.ai"},
    {.name = "key_env", .type = KT_FN, .fn = parse_vapi_key_env, .free = free_vapi_key},
    {.name = "key", .type = KT_FN, .fn = reject_in_file},
    {.name = "assistant_id",
     .type = KT_STR,
     .off = CF(vapi.assistant_id),
     .check = chk_header_text},
    {.name = "connect_timeout",
     .type = KT_UINT,
     .off = CF(vapi.connect_timeout_ms),
     .min = 500,
     .max = 60000,
     .def_int = 5000},
    {.name = "max_duration",
     .type = KT_UINT,
     .off = CF(vapi.max_duration_s),
     .min = 10,
     .max = 43200,
     .def_int = 3600},
    {.name = "ca_file", .type = KT_STR, .off = CF(vapi.ca_file), .check = chk_readable},
    {.name = "dtmf_text",
     .type = KT_STR,
     .off = CF(vapi.dtmf_text),
     .check = chk_dtmf_text,
     .def_str = "The caller pressed the %c key on the phone keypad."},
    {.name = "webhook", .type = KT_GROUP, .sub = vapi_webhook_keys},
    {.type = KT_END},
};

/* ---- whatsapp (wa/, docs/whatsapp.md) ---- */

static void parse_wa_secret_env(struct ld *ld, const config_setting_t *s, void *base)
{
	struct conf *c = base;
	const char *v = s ? config_setting_get_string(s) : NULL;
	set_str(ld, &c->whatsapp.app_secret_env, v ? v : "");
	read_env_secret(ld, s, &c->whatsapp.app_secret);
}

static void free_wa_secret(void *base)
{
	struct conf *c = base;
	mem_free(c->whatsapp.app_secret_env);
	mem_free(c->whatsapp.app_secret);
	c->whatsapp.app_secret_env = c->whatsapp.app_secret = NULL;
}

static void parse_wa_verify_env(struct ld *ld, const config_setting_t *s, void *base)
{
	read_env_secret(ld, s, &((struct conf *)base)->whatsapp.verify_token);
}

static void free_wa_verify(void *base)
{
	struct conf *c = base;
	mem_free(c->whatsapp.verify_token);
	c->whatsapp.verify_token = NULL;
}

static void parse_wa_access_env(struct ld *ld, const config_setting_t *s, void *base)
{
	read_env_secret(ld, s, &((struct conf *)base)->whatsapp.access_token);
}

static void free_wa_access(void *base)
{
	struct conf *c = base;
	mem_free(c->whatsapp.access_token);
	c->whatsapp.access_token = NULL;
}

static void parse_wa_llm_env(struct ld *ld, const config_setting_t *s, void *base)
{
	read_env_secret(ld, s, &((struct conf *)base)->whatsapp.llm_key);
}

static void free_wa_llm(void *base)
{
	struct conf *c = base;
	mem_free(c->whatsapp.llm_key);
	c->whatsapp.llm_key = NULL;
}

/* "HH:MM" -> minutes, at most max_h:00, or -1. */
static int hhmm(const char *v, int max_h)
{
	return clock_hhmm(v, max_h * 60);
}

static const char *chk_wa_hours(const char *v)
{
	char a[6], b[6];
	if (strlen(v) != 11 || v[5] != '-')
		return "must be \"HH:MM-HH:MM\" (e.g. \"09:00-20:00\")";
	memcpy(a, v, 5);
	a[5] = '\0';
	memcpy(b, v + 6, 5);
	b[5] = '\0';
	int s = hhmm(a, 24), e = hhmm(b, 24);
	if (s < 0 || e < 0)
		return "must be \"HH:MM-HH:MM\" (e.g. \"09:00-20:00\")";
	return s < e ? NULL : "the start must be before the end";
}

static const char *chk_utc_offset(const char *v)
{
	return (v[0] == '+' || v[0] == '-') && hhmm(v + 1, 14) >= 0
	           ? NULL
	           : "must be \"+HH:MM\" or \"-HH:MM\" (e.g. \"-06:00\")";
}

static const char *chk_url_or_empty(const char *v)
{
	return v[0] ? chk_http_url(v) : NULL;
}

static const char *chk_wa_template(const char *v)
{
	return strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(v) && strlen(v) <= 512
	           ? NULL
	           : "must be a WhatsApp template name (a-z, 0-9, _; at most 512)";
}

static const char *chk_wa_text(const char *v)
{
	return strlen(v) <= 1000 ? NULL : "must be at most 1000 bytes";
}

/* whatsapp.followup.<outcome> = { text = "..."; template = "..."; } (wa/followup.c) */
#define WA_FOLLOWUP_KEYS(i)                                                                        \
	{                                                                                          \
		{.name = "text",                                                                   \
		 .type = KT_STR,                                                                   \
		 .off = CF(whatsapp.followup[i].text),                                             \
		 .check = chk_wa_text},                                                            \
		    {.name = "template",                                                           \
		     .type = KT_STR,                                                               \
		     .off = CF(whatsapp.followup[i].template_name),                                \
		     .check = chk_wa_template},                                                    \
		    {.type = KT_END},                                                              \
	}
static const struct key wa_fu_answered[] = WA_FOLLOWUP_KEYS(0);
static const struct key wa_fu_transferred[] = WA_FOLLOWUP_KEYS(1);
static const struct key wa_fu_no_answer[] = WA_FOLLOWUP_KEYS(2);
static const struct key wa_fu_machine[] = WA_FOLLOWUP_KEYS(3);
static const struct key wa_followup_keys[] = {
    {.name = "answered", .type = KT_GROUP, .sub = wa_fu_answered},
    {.name = "transferred", .type = KT_GROUP, .sub = wa_fu_transferred},
    {.name = "no_answer", .type = KT_GROUP, .sub = wa_fu_no_answer},
    {.name = "machine", .type = KT_GROUP, .sub = wa_fu_machine},
    {.type = KT_END},
};

static const struct key whatsapp_keys[] = {
    {.name = "app_secret_env", .type = KT_FN, .fn = parse_wa_secret_env, .free = free_wa_secret},
    {.name = "verify_token_env", .type = KT_FN, .fn = parse_wa_verify_env, .free = free_wa_verify},
    {.name = "access_token_env", .type = KT_FN, .fn = parse_wa_access_env, .free = free_wa_access},
    {.name = "app_secret", .type = KT_FN, .fn = reject_in_file},
    {.name = "verify_token", .type = KT_FN, .fn = reject_in_file},
    {.name = "access_token", .type = KT_FN, .fn = reject_in_file},
    {.name = "graph_url",
     .type = KT_STR,
     .off = CF(whatsapp.graph_url),
     .check = chk_http_url,
     .def_str = "https://graph.facebook.com/v25.0"},
    {.name = "phone_number_id",
     .type = KT_STR,
     .off = CF(whatsapp.phone_number_id),
     .check = chk_digits},
    {.name = "rules_file",
     .type = KT_STR,
     .off = CF(whatsapp.rules_file),
     .check = chk_readable,
     .def_str = "/etc/vacs/discovery-rules.json"},
    {.name = "campaign_id", .type = KT_STR, .off = CF(whatsapp.campaign_id)},
    {.name = "template", .type = KT_STR, .off = CF(whatsapp.template_name)},
    {.name = "template_lang_es",
     .type = KT_STR,
     .off = CF(whatsapp.template_lang_es),
     .check = chk_nonempty,
     .def_str = "es_MX"},
    {.name = "template_lang_en",
     .type = KT_STR,
     .off = CF(whatsapp.template_lang_en),
     .check = chk_nonempty,
     .def_str = "en_US"},
    {.name = "max_age",
     .type = KT_UINT,
     .off = CF(whatsapp.max_age_s),
     .min = 60,
     .max = 7 * 86400,
     .def_int = 86400},
    {.name = "pair_interval_ms",
     .type = KT_UINT,
     .off = CF(whatsapp.pair_interval_ms),
     .min = 1,
     .max = 600000,
     .def_int = 6000},
    {.name = "rate_per_s",
     .type = KT_UINT,
     .off = CF(whatsapp.rate_per_s),
     .min = 1,
     .max = 1000,
     .def_int = 80},
    {.name = "send_timeout_ms",
     .type = KT_UINT,
     .off = CF(whatsapp.send_timeout_ms),
     .min = 100,
     .max = 60000,
     .def_int = 10000},
    {.name = "calling_hours",
     .type = KT_STR,
     .off = CF(whatsapp.calling_hours),
     .check = chk_wa_hours,
     .def_str = "09:00-20:00"},
    {.name = "utc_offset",
     .type = KT_STR,
     .off = CF(whatsapp.utc_offset),
     .check = chk_utc_offset,
     .def_str = "+00:00"},
    {.name = "llm_url", .type = KT_STR, .off = CF(whatsapp.llm_url), .check = chk_url_or_empty},
    {.name = "llm_model", .type = KT_STR, .off = CF(whatsapp.llm_model)},
    {.name = "llm_key_env", .type = KT_FN, .fn = parse_wa_llm_env, .free = free_wa_llm},
    {.name = "llm_key", .type = KT_FN, .fn = reject_in_file},
    {.name = "llm_timeout_ms",
     .type = KT_UINT,
     .off = CF(whatsapp.llm_timeout_ms),
     .min = 100,
     .max = 60000,
     .def_int = 5000},
    {.name = "media_max_bytes", /* wa/media.c; Meta's largest media (documents): 100 MB */
     .type = KT_UINT,
     .off = CF(whatsapp.media_max_bytes),
     .min = 0,
     .max = 100u * 1024u * 1024u,
     .def_int = 16 * 1024 * 1024},
    {.name = "inbox_retention_days",
     .type = KT_UINT,
     .off = CF(whatsapp.inbox_retention_days),
     .min = 0,
     .max = 3650,
     .def_int = 30},
    {.name = "followup", .type = KT_GROUP, .sub = wa_followup_keys},
    {.type = KT_END},
};

/* The parsed forms of calling_hours and utc_offset (checked above). */
static void wa_derive(struct conf *c)
{
	const char *h = c->whatsapp.calling_hours, *o = c->whatsapp.utc_offset;
	if (h && strlen(h) == 11) {
		char a[6] = {h[0], h[1], h[2], h[3], h[4], 0},
		     b[6] = {h[6], h[7], h[8], h[9], h[10], 0};
		c->whatsapp.hours_start_min = (unsigned)hhmm(a, 24);
		c->whatsapp.hours_end_min = (unsigned)hhmm(b, 24);
	}
	if (o && (o[0] == '+' || o[0] == '-') && hhmm(o + 1, 14) >= 0)
		c->whatsapp.utc_offset_min = (o[0] == '-' ? -1 : 1) * hhmm(o + 1, 14);
}

static const struct key top_keys[] = {
    {.name = "log", .type = KT_GROUP, .sub = log_keys},
    {.name = "sip", .type = KT_GROUP, .sub = sip_keys},
    {.name = "media", .type = KT_GROUP, .sub = media_keys},
    {.name = "http", .type = KT_GROUP, .sub = http_keys},
    {.name = "spool", .type = KT_GROUP, .sub = spool_keys},
    {.name = "store", .type = KT_GROUP, .sub = store_keys},
    {.name = "dialer", .type = KT_GROUP, .sub = dialer_keys},
    {.name = "vapi", .type = KT_GROUP, .sub = vapi_keys},
    {.name = "whatsapp", .type = KT_GROUP, .sub = whatsapp_keys},
    {.name = "notify", .type = KT_GROUP, .sub = notify_keys},
    {.name = "s3", .type = KT_GROUP, .sub = s3_keys},
    {.name = "outbound", .type = KT_GROUP, .sub = outbound_keys},
    {.name = "trunks", .type = KT_FN, .fn = parse_trunks, .free = free_trunks},
    {.name = "routes", .type = KT_FN, .fn = parse_routes, .free = free_routes},
    {.name = "queues", .type = KT_FN, .fn = parse_queues, .free = free_queues},
    {.type = KT_END},
};
#undef CF

/* Where to report a problem with "group.key": the setting, else its group (the key is
 * then named through *member), else the root. mbuf holds the name in the last case. */
static const config_setting_t *where(struct ld *ld, const char *group, const char *key, char *mbuf,
                                     size_t mlen, const char **member)
{
	snprintf(mbuf, mlen, "%s.%s", group, key);
	const config_setting_t *s = config_lookup(ld->cfg, mbuf);
	*member = NULL;
	if (s)
		return s;
	*member = key;
	s = config_lookup(ld->cfg, group);
	if (s)
		return s;
	*member = mbuf;
	return config_root_setting(ld->cfg);
}

static void conf_finish(struct ld *ld, struct conf *c)
{
	const char *m;
	char mb[64];
	const config_setting_t *s;
	if (ld->oom)
		return;
	routes_resolve(ld, c);
	queues_resolve(ld, c);
	wa_derive(c);
	notify_s3_finish(ld, c);
	if (c->vapi.webhook.auth == 0) {
		s = where(ld, "vapi.webhook", "auth", mb, sizeof(mb), &m);
		ld_report(ld, s, m, "webhooks must be authenticated: bearer or hmac");
	}
	if (c->store.backoff_min_ms > c->store.backoff_max_ms) {
		s = where(ld, "store", "backoff_min_ms", mb, sizeof(mb), &m);
		ld_report(ld, s, m, "must not be above store.backoff_max_ms (%u)",
		          c->store.backoff_max_ms);
	}
	if (c->media.port_min > c->media.port_max) {
		s = where(ld, "media", "port_min", mb, sizeof(mb), &m);
		ld_report(ld, s, m, "must not be above media.port_max (%u)", c->media.port_max);
	}
	if (c->sip.tls_port && c->sip.tls_port == c->sip.port) {
		s = where(ld, "sip", "tls_port", mb, sizeof(mb), &m);
		ld_report(ld, s, m, "must differ from sip.port");
	}
	if (c->http.port && (c->http.port == c->sip.port || c->http.port == c->sip.tls_port)) {
		s = where(ld, "http", "port", mb, sizeof(mb), &m);
		ld_report(ld, s, m, "must differ from sip.port and sip.tls_port");
	}
	if (c->sip.port >= c->media.port_min && c->sip.port <= c->media.port_max) {
		s = where(ld, "media", "port_min", mb, sizeof(mb), &m);
		ld_report(ld, s, m, "the media port range %u-%u includes sip.port %u",
		          c->media.port_min, c->media.port_max, c->sip.port);
	}
	const config_setting_t *list = config_lookup(ld->cfg, "trunks");
	for (size_t i = 0; i < c->n_trunks && list; i++) {
		if (c->trunks[i].transport != CONF_TP_TLS || c->sip.tls_port)
			continue;
		const config_setting_t *ts = config_setting_get_elem(list, (unsigned)i);
		ld_report(ld, ts ? config_setting_get_member(ts, "transport") : list, NULL,
		          "tls needs sip.tls_port");
	}
}

static void conf_free(struct conf *c)
{
	if (!c)
		return;
	schema_free(top_keys, c);
	mem_free(c->path);
	mem_free(c);
}

int conf_load(const char *path, struct conf **out, char *err, size_t errlen)
{
	struct ld ld = {.path = path};
	struct conf *c = NULL;
	config_t cfg;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!path || !out)
		return -EINVAL;
	FILE *f = fopen(path, "r");
	if (!f) {
		rc = -errno;
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open: %s\n", path, strerror(-rc));
		return rc;
	}
	fclose(f);

	config_init(&cfg);
	ld.cfg = &cfg;
	/* @include "x.conf" is relative to the main file's folder. */
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash) {
		slash[slash == dir] = '\0';
		config_set_include_dir(&cfg, dir);
	}

	ld.msgs = mem_zalloc(LD_MAX_MSGS * sizeof(*ld.msgs));
	if (!ld.msgs) {
		rc = -ENOMEM;
		goto out;
	}
	if (!config_read_file(&cfg, path)) {
		const char *file = config_error_file(&cfg);
		if (err && errlen)
			snprintf(err, errlen, "%s:%d: %s\n", file ? file : path,
			         config_error_line(&cfg), config_error_text(&cfg));
		rc = config_error_type(&cfg) == CONFIG_ERR_FILE_IO ? -EIO : -EINVAL;
		goto out;
	}

	c = mem_zalloc(sizeof(*c));
	if (!c) {
		rc = -ENOMEM;
		goto out;
	}
	c->refs = 1;
	ld.c = c;
	c->path = ld_dup(&ld, path);
	if (!ld.oom)
		apply_defaults(&ld, top_keys, c);
	if (!ld.oom)
		parse_group(&ld, config_root_setting(&cfg), top_keys, c);
	conf_finish(&ld, c);

	if (ld.oom)
		rc = -ENOMEM;
	else if (ld.n_msgs || ld.dropped)
		rc = -EINVAL;
	else
		rc = 0;
	if (rc == -EINVAL)
		ld_write_msgs(&ld, err, errlen);
out:
	if (rc == -ENOMEM && err && errlen)
		snprintf(err, errlen, "%s: out of memory\n", path);
	config_destroy(&cfg);
	mem_free(ld.msgs);
	if (rc) {
		conf_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

struct conf *conf_ref(struct conf *c)
{
	if (c)
		c->refs++;
	return c;
}

void conf_unref(struct conf *c)
{
	if (!c || --c->refs > 0)
		return;
	conf_free(c);
}

const struct conf_trunk *conf_trunk_find(const struct conf *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_trunks; i++) {
		if (c->trunks[i].name && strcmp(c->trunks[i].name, name) == 0)
			return &c->trunks[i];
	}
	return NULL;
}

static unsigned mask_bits(uint32_t mask)
{
	return (unsigned)__builtin_popcount(mask);
}

/* The most specific entry wins: longer prefix first, then an entry with a port over one
 * without; on a tie the trunk listed first. So a node at 127.0.0.1:5080 and another
 * trunk's node at 127.0.0.1:5070 are told apart on one host. */
const struct conf_trunk *conf_trunk_by_source(const struct conf *c, uint32_t addr, uint16_t port)
{
	const struct conf_trunk *best = NULL;
	int best_score = -1;
	if (!c)
		return NULL;
	for (size_t i = 0; i < c->n_trunks; i++) {
		const struct conf_trunk *t = &c->trunks[i];
		for (size_t j = 0; j < t->n_acl; j++) {
			const struct conf_cidr *e = &t->acl[j];
			if ((addr & e->mask) != e->addr || (e->port && e->port != port))
				continue;
			int score = (int)mask_bits(e->mask) * 2 + (e->port ? 1 : 0);
			if (score > best_score) {
				best_score = score;
				best = t;
			}
		}
	}
	return best;
}
