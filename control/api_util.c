/* Helpers for the /v1 routes: body checks naming the field at fault, query parameters,
 * JSON answers, store errors. */
#include "control/api_util.h"
#include "control/control.h"

#include "core/mem.h"
#include "core/strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int api_fail(struct api_err *e, unsigned status, const char *code, const char *field,
             const char *fmt, ...)
{
	va_list ap;
	e->status = status;
	e->code = code;
	snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -1;
}

json_t *api_body_object(struct ctl_request *rq, struct api_err *e)
{
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	json_error_t jerr;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (json_is_object(j))
		return j;
	if (j)
		api_fail(e, 400, "invalid_json", NULL, "the body must be a JSON object");
	else
		api_fail(e, 400, "invalid_json", NULL, "the body is not JSON: %s (line %d)",
		         jerr.text, jerr.line);
	json_decref(j);
	return NULL;
}

int api_known_fields(json_t *o, const char *const *known, const char *prefix, struct api_err *e)
{
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		size_t i = 0;
		while (known[i] && strcmp(known[i], key) != 0)
			i++;
		if (!known[i]) {
			char f[64];
			snprintf(f, sizeof(f), "%s%.48s", prefix ? prefix : "", key);
			return api_fail(e, 400, "unknown_field", f, "unknown field \"%s\"", f);
		}
	}
	return 0;
}

/* The member, or NULL when absent (or null and nullable). -1 in *rc on missing. */
static json_t *member(json_t *o, const char *name, const char *field, unsigned flags, int *rc,
                      struct api_err *e)
{
	json_t *v = json_object_get(o, name);
	*rc = 0;
	if (v && json_is_null(v) && (flags & API_NULLABLE))
		v = NULL;
	if (!v && (flags & API_REQUIRED))
		*rc = api_fail(e, 400, "missing_field", field, "%s is required", field);
	return v;
}

int api_get_str(json_t *o, const char *name, const char *field, unsigned flags, size_t min_len,
                size_t max_len, const char **out, struct api_err *e)
{
	int rc;
	field = field ? field : name;
	json_t *v = member(o, name, field, flags, &rc, e);
	if (!v)
		return rc;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return api_fail(e, 400, "invalid_field", field, "%s must be a string", field);
	size_t n = json_string_length(v);
	if (n < min_len || n > max_len) {
		if (min_len)
			return api_fail(e, 400, "invalid_field", field,
			                "%s must be a string of %zu to %zu characters", field,
			                min_len, max_len);
		return api_fail(e, 400, "invalid_field", field,
		                "%s must be a string of at most %zu characters", field, max_len);
	}
	*out = json_string_value(v);
	return 1;
}

int api_get_int(json_t *o, const char *name, const char *field, unsigned flags, long long min,
                long long max, long long *out, struct api_err *e)
{
	int rc;
	field = field ? field : name;
	json_t *v = member(o, name, field, flags, &rc, e);
	if (!v)
		return rc;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return api_fail(e, 400, "invalid_field", field,
		                "%s must be an integer from %lld to %lld", field, min, max);
	*out = json_integer_value(v);
	return 1;
}

int api_get_num(json_t *o, const char *name, const char *field, unsigned flags, double min,
                int min_open, double max, double *out, struct api_err *e)
{
	int rc;
	field = field ? field : name;
	json_t *v = member(o, name, field, flags, &rc, e);
	if (!v)
		return rc;
	double d = json_is_number(v) ? json_number_value(v) : NAN;
	if (!json_is_number(v) || !isfinite(d) || (min_open ? d <= min : d < min) || d > max)
		return api_fail(e, 400, "invalid_field", field,
		                "%s must be a number %s %g and <= %g", field,
		                min_open ? ">" : ">=", min, max);
	*out = d;
	return 1;
}

int api_get_bool(json_t *o, const char *name, const char *field, unsigned flags, int *out,
                 struct api_err *e)
{
	int rc;
	field = field ? field : name;
	json_t *v = member(o, name, field, flags, &rc, e);
	if (!v)
		return rc;
	if (!json_is_boolean(v))
		return api_fail(e, 400, "invalid_field", field, "%s must be true or false", field);
	*out = json_is_true(v);
	return 1;
}

int api_get_enum(json_t *o, const char *name, const char *field, unsigned flags,
                 const char *const *allowed, const char **out, struct api_err *e)
{
	const char *s;
	field = field ? field : name;
	int rc = api_get_str(o, name, field, flags, 0, 64, &s, e);
	if (rc <= 0 && !(rc < 0 && strcmp(e->code, "invalid_field") == 0))
		return rc;
	for (size_t i = 0; rc > 0 && allowed[i]; i++) {
		if (strcmp(allowed[i], s) == 0) {
			*out = allowed[i];
			return 1;
		}
	}
	char list[160] = "";
	size_t pos = 0;
	for (size_t i = 0; allowed[i] && pos < sizeof(list); i++)
		pos += (size_t)snprintf(list + pos, sizeof(list) - pos, "%s\"%s\"", i ? ", " : "",
		                        allowed[i]);
	return api_fail(e, 400, "invalid_field", field, "%s must be one of %s", field, list);
}

int api_is_null(json_t *o, const char *name)
{
	return json_is_null(json_object_get(o, name));
}

int api_query(struct ctl_request *rq, const char *name, char *out, size_t outlen, const char **val,
              struct api_err *e)
{
	char buf[2048];
	const char *s = ctl_req_query(rq, name, buf, sizeof(buf));
	*val = NULL;
	if (!s)
		return 0;
	size_t n = strlen(s);
	if (n >= outlen)
		return api_fail(e, 400, "invalid_field", name, "%s is longer than %zu characters",
		                name, outlen - 1);
	memcpy(out, s, n + 1);
	*val = out;
	return 0;
}

int api_query_int(struct ctl_request *rq, const char *name, long long min, long long max,
                  long long def, long long *out, struct api_err *e)
{
	char buf[32];
	const char *s;
	*out = def;
	if (api_query(rq, name, buf, sizeof(buf), &s, e))
		return -1;
	if (!s)
		return 0;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return api_fail(e, 400, "invalid_field", name,
		                "%s must be an integer from %lld to %lld", name, min, max);
	*out = v;
	return 0;
}

int api_query_known(struct ctl_request *rq, const char *const *known, struct api_err *e)
{
	char bad[2048];
	const char *name = ctl_req_query_unknown(rq, known, bad, sizeof(bad));
	if (!name)
		return 0;
	return api_fail(e, 400, "unknown_field", name, "unknown query parameter %.60s", name);
}

int api_iso_time_ok(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *p = strptime(s, "%Y-%m-%d", &tm);
	if (!p || tm.tm_year < 70 || tm.tm_year > 1100)
		return 0;
	if (!*p)
		return 1;
	if (*p != 'T' && *p != ' ')
		return 0;
	p = strptime(p + 1, "%H:%M:%S", &tm);
	if (!p)
		return 0;
	if (*p == '.') {
		p++;
		int digits = 0;
		while (*p >= '0' && *p <= '9' && digits < 9)
			p++, digits++;
		if (!digits)
			return 0;
	}
	if (*p == 'Z')
		return p[1] == '\0';
	if (*p == '+' || *p == '-') {
		int hh, mm, n = 0;
		return sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) == 2 && p[1 + n] == '\0' &&
		       hh < 24 && mm < 60;
	}
	return *p == '\0';
}

#define ZONEINFO "/usr/share/zoneinfo/"

int api_tz_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (!n || n > 64 || s[0] == '/' || s[n - 1] == '/')
		return 0;
	for (const char *p = s; *p; p++) {
		int part_start = p == s || p[-1] == '/';
		if (*p == '/' && part_start)
			return 0; /* "//" */
		if (part_start && (*p == '.' || *p == '-'))
			return 0; /* "..", ".x", "-x" */
		if (!(*p == '/' || *p == '_' || *p == '+' || *p == '-' ||
		      (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= 'A' && *p <= 'Z')))
			return 0;
	}
	char path[sizeof(ZONEINFO) + 64];
	snprintf(path, sizeof(path), ZONEINFO "%s", s);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ELOOP) /* "UTC" and friends are often symlinks: follow once */
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct stat st;
	char magic[4];
	int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && read(fd, magic, 4) == 4 &&
	         memcmp(magic, "TZif", 4) == 0;
	close(fd);
	return ok;
}

int api_id_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (!n || n > 64)
		return 0;
	for (const char *p = s; *p; p++) {
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == '.' || *p == ':' || *p == '-'))
			return 0;
	}
	return 1;
}

void api_reply_err(uint64_t token, const struct api_err *e)
{
	ctl_reply_error(token, e->status ? e->status : 400, e->code ? e->code : "invalid_field",
	                e->message, e->field[0] ? e->field : NULL);
}

char *api_json_body(json_t *o, size_t *len)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	char *body = s ? mem_strdup(s) : NULL;
	free(s);
	*len = body ? strlen(body) : 0;
	return body;
}

void api_reply_json_hdrs(uint64_t token, unsigned code, const char *hdrs, json_t *o)
{
	size_t len;
	char *body = api_json_body(o, &len);
	if (!body) {
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
		return;
	}
	ctl_reply_hdrs(token, code, NULL, hdrs, body, len);
}

void api_reply_json(uint64_t token, unsigned code, json_t *o)
{
	api_reply_json_hdrs(token, code, NULL, o);
}

void api_reply_store(uint64_t token, int rc)
{
	if (rc == -ENOTCONN)
		ctl_reply_error(
		    token, 503, "store_unavailable",
		    "PostgreSQL, which holds this data, is not reachable now: try again "
		    "later",
		    NULL);
	else if (rc == -EAGAIN)
		ctl_reply_error(token, 503, "busy", "the store is overloaded: try again", NULL);
	else
		ctl_reply_error(token, 500, "internal", "the query failed (see the vacsd log)",
		                NULL);
}

static void col_expr(struct strbuf *sb, const struct api_col *c, int param)
{
	if (strcmp(c->type, "jsonb") == 0)
		str_printf(sb, "($%d::jsonb->'%s')", param, c->name);
	else if (strcmp(c->type, "text") == 0)
		str_printf(sb, "($%d::jsonb->>'%s')", param, c->name);
	else
		str_printf(sb, "($%d::jsonb->>'%s')::%s", param, c->name, c->type);
}

int api_sql_cols(struct strbuf *sb, const struct api_col *cols, json_t *clean, int param,
                 int update)
{
	int n = 0;
	if (!update) {
		str_puts(sb, "(");
		for (const struct api_col *c = cols; c->name; c++) {
			if (json_object_get(clean, c->name))
				str_printf(sb, "%s%s", n++ ? ", " : "", c->name);
		}
		str_puts(sb, ") SELECT ");
	}
	n = 0;
	for (const struct api_col *c = cols; c->name; c++) {
		if (!json_object_get(clean, c->name))
			continue;
		str_puts(sb, n++ ? ", " : "");
		if (update)
			str_printf(sb, "%s = ", c->name);
		col_expr(sb, c, param);
	}
	return sb->oom ? -ENOMEM : n;
}
