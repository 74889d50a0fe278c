/* The lead routes of the /v1 API (import into a campaign as JSON or CSV, create, list,
 * read, update, delete) and the do-not-call list (/v1/dnc). */
#include "control/api_campaigns_int.h"
#include "control/api_util.h"
#include "control/control.h"

#include "core/mem.h"
#include "core/strbuf.h"
#include "db/db.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * An import is checked row by row on the http thread (types, lengths, unknown fields);
 * the campaign is then read (its country reads national numbers), and on the db thread the
 * numbers are normalised and the good rows written by ONE statement (one transaction):
 * INSERT ... SELECT FROM jsonb_to_recordset($2) ON CONFLICT (campaign_id, phone_e164)
 * DO NOTHING, joined with do_not_call so listed numbers arrive with status "dnc".
 */

#define IMPORT_MAX_ROWS     100000
#define IMPORT_MAX_REJECTED 1000 /* listed in the answer; rejected_total counts them all */
#define CSV_MAX_COLUMNS     64
#define ATTR_MAX            (16u * 1024u)

/* Statuses a lead is still waiting in (wa/ sets contacted, qualified, withdrawn, declined): a
 * number put on the do-not-call list moves these to "dnc" (the others keep their history). */
#define PENDING "('new', 'contacted', 'engaged', 'qualified', 'queued', 'called')"

static const char *const lead_statuses[] = {
    "new",       "contacted",      "engaged",     "qualified", "queued",
    "withdrawn", "declined",       "called",      "connected", "transferred",
    "converted", "not_interested", "unreachable", "dnc",       NULL};

#define LEAD_OBJ                                                                                   \
	"json_build_object('id', l.id, 'campaign_id', l.campaign_id, 'phone', l.phone_e164,"       \
	" 'name', l.name, 'email', l.email, 'language', l.locale, 'timezone', l.timezone,"         \
	" 'external_id', l.external_id, 'source', l.source, 'status', l.status, 'consent_call',"   \
	" l.consent_call, 'do_not_call', l.do_not_call, 'attributes', l.attributes,"               \
	" 'created_at', " API_ISO("l.created_at") ", 'updated_at', " API_ISO("l.updated_at") ")"

#define DNC_OBJ                                                                                    \
	"json_build_object('phone', d.phone_e164, 'reason', d.reason, 'created_at', " API_ISO(     \
	    "d.created_at") ")"

static const struct api_col lead_cols[] = {
    {"id", "text"},          {"campaign_id", "text"},
    {"phone_e164", "text"},  {"name", "text"},
    {"email", "text"},       {"locale", "text"},
    {"timezone", "text"},    {"external_id", "text"},
    {"attributes", "jsonb"}, {"consent_call", "boolean"},
    {"status", "text"},      {NULL, NULL},
};

/* The recordset of an import or a create, typed for jsonb_to_recordset. */
#define LEAD_RECORD                                                                                \
	"r(id text, campaign_id text, phone_e164 text, name text, email text, locale text,"        \
	" timezone text, external_id text, attributes jsonb, consent_call boolean)"

enum lead_mode {
	LEAD_IMPORT, /* a row of an import: phone required */
	LEAD_CREATE, /* POST /v1/leads: + id, campaign_id */
	LEAD_PATCH,  /* PATCH: nothing required; + status, campaign_id */
};

static void put_str(json_t *clean, const char *col, json_t *j, const char *name, int rc,
                    const char *s)
{
	if (rc > 0)
		json_object_set_new(clean, col, json_string(s));
	else if (api_is_null(j, name))
		json_object_set_new(clean, col, json_null());
}

/* Checks a lead object into clean (keyed by column; the phone as given, normalised later). */
static int lead_check(json_t *j, enum lead_mode mode, json_t *clean, struct api_err *e)
{
	static const char *const k_import[] = {"phone",      "name",         "email",
	                                       "language",   "timezone",     "external_id",
	                                       "attributes", "consent_call", NULL};
	static const char *const k_create[] = {
	    "id",       "campaign_id", "phone",      "name",         "email", "language",
	    "timezone", "external_id", "attributes", "consent_call", NULL};
	static const char *const k_patch[] = {
	    "campaign_id", "phone",      "name",         "email",  "language", "timezone",
	    "external_id", "attributes", "consent_call", "status", NULL};
	const char *s;
	int rc, b;
	if (api_known_fields(j,
	                     mode == LEAD_IMPORT   ? k_import
	                     : mode == LEAD_CREATE ? k_create
	                                           : k_patch,
	                     NULL, e))
		return -1;
	if ((rc = api_get_str(j, "id", NULL, 0, 1, 64, &s, e)) < 0)
		return -1;
	if (rc && !api_id_ok(s))
		return api_fail(e, 400, "invalid_field", "id",
		                "id must be 1 to 64 characters among A-Z a-z 0-9 _ . : -");
	put_str(clean, "id", j, "id", rc, s);
	if ((rc = api_get_str(j, "campaign_id", NULL, API_NULLABLE, 1, 64, &s, e)) < 0)
		return -1;
	if (rc && !api_id_ok(s))
		return api_fail(e, 400, "invalid_field", "campaign_id", "campaign_id is not an id");
	put_str(clean, "campaign_id", j, "campaign_id", rc, s);
	rc = api_get_str(j, "phone", NULL, mode == LEAD_PATCH ? 0 : API_REQUIRED, 1, 64, &s, e);
	if (rc < 0)
		return -1;
	if (rc)
		json_object_set_new(clean, "phone_e164", json_string(s));
	if ((rc = api_get_str(j, "name", NULL, API_NULLABLE, 1, 200, &s, e)) < 0)
		return -1;
	put_str(clean, "name", j, "name", rc, s);
	if ((rc = api_get_str(j, "email", NULL, API_NULLABLE, 3, 254, &s, e)) < 0)
		return -1;
	if (rc && (!strchr(s, '@') || strpbrk(s, " \t\r\n<>")))
		return api_fail(e, 400, "invalid_field", "email",
		                "email \"%.60s\" is not an address", s);
	put_str(clean, "email", j, "email", rc, s);
	if ((rc = api_get_str(j, "language", NULL, API_NULLABLE, 2, 35, &s, e)) < 0)
		return -1;
	if (rc && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
	              strlen(s))
		return api_fail(e, 400, "invalid_field", "language",
		                "language must be a language tag (\"es\", \"es-MX\")");
	put_str(clean, "locale", j, "language", rc, s);
	if ((rc = api_get_str(j, "timezone", NULL, API_NULLABLE, 1, 64, &s, e)) < 0)
		return -1;
	if (rc && !api_tz_ok(s))
		return api_fail(
		    e, 400, "invalid_field", "timezone",
		    "timezone must be an IANA time zone name (\"America/Mexico_City\")");
	put_str(clean, "timezone", j, "timezone", rc, s);
	if ((rc = api_get_str(j, "external_id", NULL, API_NULLABLE, 1, 128, &s, e)) < 0)
		return -1;
	put_str(clean, "external_id", j, "external_id", rc, s);
	json_t *attr = json_object_get(j, "attributes");
	if (attr) {
		char *dump = json_is_object(attr) ? json_dumps(attr, JSON_COMPACT) : NULL;
		size_t n = dump ? strlen(dump) : 0;
		free(dump);
		if (!json_is_object(attr) || n > ATTR_MAX)
			return api_fail(e, 400, "invalid_field", "attributes",
			                "attributes must be a JSON object of at most 16 KiB");
		json_object_set(clean, "attributes", attr);
	}
	if ((rc = api_get_bool(j, "consent_call", NULL, API_NULLABLE, &b, e)) < 0)
		return -1;
	if (rc)
		json_object_set_new(clean, "consent_call", json_boolean(b));
	else if (api_is_null(j, "consent_call"))
		json_object_set_new(clean, "consent_call", json_null());
	if ((rc = api_get_enum(j, "status", NULL, 0, lead_statuses, &s, e)) < 0)
		return -1;
	put_str(clean, "status", j, "status", rc, s);
	return 0;
}

/* ---- import ---- */

struct import {
	uint64_t token;
	char campaign[72];
	char country[3];    /* ?country=, "" = the campaign's */
	const char *source; /* "csv", "api" */
	int single;         /* POST /v1/leads: answer the lead, 409 on a duplicate */
	json_t *items;      /* clean rows, each with "_row" (1-based) */
	json_t *rejected;   /* [{row, field, message}] */
	long n_rejected;
	long duplicates; /* within the file */
};

static void import_free(struct import *im)
{
	if (!im)
		return;
	json_decref(im->items);
	json_decref(im->rejected);
	mem_free(im);
}

static void reject(struct import *im, long row, const struct api_err *e)
{
	im->n_rejected++;
	if (json_array_size(im->rejected) >= IMPORT_MAX_REJECTED)
		return;
	json_array_append_new(im->rejected,
	                      json_pack("{s:I, s:o, s:s}", "row", (json_int_t)row, "field",
	                                e->field[0] ? json_string(e->field) : json_null(),
	                                "message", e->message));
}

/* Checks one input row (an object) and keeps it, or rejects it. */
static void import_row(struct import *im, long row, json_t *obj)
{
	struct api_err e;
	json_t *clean = json_object();
	if (!json_is_object(obj)) {
		api_fail(&e, 400, "invalid_field", NULL, "a lead must be a JSON object");
		reject(im, row, &e);
	} else if (lead_check(obj, LEAD_IMPORT, clean, &e)) {
		reject(im, row, &e);
	} else {
		json_object_set_new(clean, "_row", json_integer(row));
		json_array_append(im->items, clean);
	}
	json_decref(clean);
}

/* One CSV record at *pp (RFC 4180: quoted fields, "" inside quotes, CRLF or LF). Returns
 * the fields as a JSON array (a field that is not UTF-8 is null), or NULL at the end. Sets
 * *bad on an unterminated quote or text after a closing quote (the rest of the line is
 * skipped). */
static json_t *csv_record(const char **pp, const char *end, int *bad)
{
	const char *p = *pp;
	*bad = 0;
	if (p >= end)
		return NULL;
	json_t *rec = json_array();
	struct strbuf f;
	str_init(&f);
	for (;;) {
		str_reset(&f);
		str_append(&f, "", 0);
		if (p < end && *p == '"') {
			p++;
			for (;;) {
				if (p >= end) {
					*bad = 1;
					break;
				}
				if (*p == '"' && p + 1 < end && p[1] == '"') {
					str_append(&f, "\"", 1);
					p += 2;
				} else if (*p == '"') {
					p++;
					break;
				} else {
					str_append(&f, p++, 1);
				}
			}
			if (p < end && *p != ',' && *p != '\r' && *p != '\n') {
				*bad = 1;
				while (p < end && *p != '\n')
					p++;
			}
		} else {
			const char *s = p;
			while (p < end && *p != ',' && *p != '\r' && *p != '\n')
				p++;
			str_append(&f, s, (size_t)(p - s));
		}
		json_t *v = json_stringn(f.p ? f.p : "", f.len);
		json_array_append_new(rec, v ? v : json_null());
		if (p < end && *p == ',') {
			p++;
			continue;
		}
		if (p < end && *p == '\r')
			p++;
		if (p < end && *p == '\n')
			p++;
		break;
	}
	str_deinit(&f);
	*pp = p;
	return rec;
}

static void trim_lower(char *s)
{
	size_t n = strlen(s), a = 0;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	while (s[a] == ' ' || s[a] == '\t')
		a++;
	memmove(s, s + a, n - a + 1);
	for (char *p = s; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
}

/* Reads a CSV body into im (rows checked). 0, or -1 with e (the header is wrong). */
static int import_csv(struct import *im, const char *body, size_t len, struct api_err *e)
{
	static const char *const known[] = {"phone", "name",        "language", "timezone",
	                                    "email", "external_id", NULL};
	const char *p = body, *end = body + len;
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3; /* a UTF-8 byte order mark, as spreadsheets write */
	int bad;
	json_t *hdr = csv_record(&p, end, &bad);
	char names[CSV_MAX_COLUMNS][65];
	size_t ncol = json_array_size(hdr), phone_col = SIZE_MAX;
	if (!hdr || bad || ncol > CSV_MAX_COLUMNS) {
		json_decref(hdr);
		return api_fail(e, 400, "invalid_field", "header",
		                "the first CSV line must name the columns (phone, name, language, "
		                "timezone, email, external_id, others as attributes; at most 64)");
	}
	for (size_t i = 0; i < ncol; i++) {
		const char *s = json_string_value(json_array_get(hdr, i));
		snprintf(names[i], sizeof(names[i]), "%s", s ? s : "");
		trim_lower(names[i]);
		if (!names[i][0] || (s && strlen(s) > 64)) {
			json_decref(hdr);
			return api_fail(e, 400, "invalid_field", "header",
			                "CSV column %zu has no name (or one over 64 characters)",
			                i + 1);
		}
		for (size_t k = 0; k < i; k++) {
			if (strcmp(names[k], names[i]) == 0) {
				json_decref(hdr);
				return api_fail(e, 400, "invalid_field", names[i],
				                "CSV column \"%s\" appears twice", names[i]);
			}
		}
		if (strcmp(names[i], "phone") == 0)
			phone_col = i;
	}
	json_decref(hdr);
	if (phone_col == SIZE_MAX)
		return api_fail(e, 400, "missing_field", "phone",
		                "the CSV header must have a \"phone\" column");
	long row = 0;
	json_t *rec;
	while ((rec = csv_record(&p, end, &bad))) {
		size_t n = json_array_size(rec);
		if (n == 1 && !bad && json_string_length(json_array_get(rec, 0)) == 0) {
			json_decref(rec); /* a blank line */
			continue;
		}
		struct api_err re;
		row++;
		if (row > IMPORT_MAX_ROWS) {
			json_decref(rec);
			return api_fail(e, 413, "too_large", NULL, "at most %d leads per import",
			                IMPORT_MAX_ROWS);
		}
		if (bad || n != ncol) {
			if (bad)
				api_fail(
				    &re, 400, "invalid_field", NULL,
				    "malformed CSV: a quote is not closed, or text follows one");
			else
				api_fail(&re, 400, "invalid_field", NULL,
				         "the row has %zu fields, the header %zu", n, ncol);
			reject(im, row, &re);
			json_decref(rec);
			continue;
		}
		json_t *obj = json_object(), *attr = json_object();
		int utf8 = 1;
		for (size_t i = 0; i < n; i++) {
			json_t *v = json_array_get(rec, i);
			if (json_is_null(v)) {
				api_fail(&re, 400, "invalid_field", names[i],
				         "%s is not UTF-8 text", names[i]);
				utf8 = 0;
				break;
			}
			if (!json_string_length(v))
				continue; /* empty = not given */
			size_t k = 0;
			while (known[k] && strcmp(known[k], names[i]) != 0)
				k++;
			json_object_set(known[k] ? obj : attr, names[i], v);
		}
		if (json_object_size(attr))
			json_object_set(obj, "attributes", attr);
		if (!utf8)
			reject(im, row, &re);
		else
			import_row(im, row, obj);
		json_decref(attr);
		json_decref(obj);
		json_decref(rec);
	}
	return 0;
}

/* Reads a JSON body ([...] or {"leads": [...]}) into im. 0, or -1 with e. */
static int import_json(struct import *im, const char *body, size_t len, struct api_err *e)
{
	static const char *const known[] = {"leads", NULL};
	json_error_t jerr;
	json_t *j = json_loadb(body, len, 0, &jerr), *arr = j;
	if (!j)
		return api_fail(e, 400, "invalid_json", NULL, "the body is not JSON: %s (line %d)",
		                jerr.text, jerr.line);
	if (json_is_object(j)) {
		if (api_known_fields(j, known, NULL, e)) {
			json_decref(j);
			return -1;
		}
		arr = json_object_get(j, "leads");
		if (!arr) {
			json_decref(j);
			return api_fail(e, 400, "missing_field", "leads", "leads is required");
		}
	}
	if (!json_is_array(arr)) {
		int obj = json_is_object(j);
		json_decref(j);
		return api_fail(e, 400, obj ? "invalid_field" : "invalid_json",
		                obj ? "leads" : NULL,
		                "the body must be an array of leads or {\"leads\": [...]}");
	}
	if (json_array_size(arr) > IMPORT_MAX_ROWS) {
		json_decref(j);
		return api_fail(e, 413, "too_large", NULL, "at most %d leads per import",
		                IMPORT_MAX_ROWS);
	}
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) import_row(im, (long)i + 1, v);
	json_decref(j);
	return 0;
}

static int cmp_row(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "row"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "row"));
	return x < y ? -1 : x > y;
}

/* The rejected rows in row order. */
static json_t *rejected_sorted(struct import *im)
{
	size_t n = json_array_size(im->rejected);
	json_t **v = n ? mem_alloc(n * sizeof(*v)) : NULL;
	json_t *out = json_array();
	for (size_t i = 0; v && i < n; i++)
		v[i] = json_array_get(im->rejected, i);
	if (v)
		qsort(v, n, sizeof(*v), cmp_row);
	for (size_t i = 0; v && i < n; i++)
		json_array_append(out, v[i]);
	mem_free(v);
	return out;
}

static void on_import_done(void *arg, int rc, json_t *rows)
{
	struct import *im = arg;
	json_t *row = json_array_get(rows, 0);
	if (rc) {
		api_reply_store(im->token, rc);
	} else {
		long valid = (long)json_array_size(im->items);
		json_int_t imported = json_integer_value(json_object_get(row, "imported"));
		json_t *o =
		    json_pack("{s:I, s:I, s:I, s:o, s:I}", "imported", imported, "duplicates",
		              (json_int_t)(im->duplicates + valid - imported), "dnc",
		              json_integer_value(json_object_get(row, "dnc")), "rejected",
		              rejected_sorted(im), "rejected_total", (json_int_t)im->n_rejected);
		api_reply_json(im->token, 200, o);
	}
	json_decref(rows);
	import_free(im);
}

static void on_single_done(void *arg, int rc, json_t *rows)
{
	struct import *im = arg;
	json_t *row = json_array_get(rows, 0);
	json_t *obj = json_object_get(row, "obj");
	if (rc) {
		api_reply_store(im->token, rc);
	} else if (json_is_object(obj)) {
		api_reply_json(im->token, 201, json_incref(obj));
	} else {
		const char *dup = json_string_value(json_object_get(row, "existing"));
		char msg[160];
		if (dup)
			snprintf(msg, sizeof(msg), "lead %s of this campaign has this phone", dup);
		else
			snprintf(msg, sizeof(msg), "a lead with this id exists");
		ctl_reply_error(im->token, 409, "conflict", msg, dup ? "phone" : "id");
	}
	json_decref(rows);
	import_free(im);
}

/* Normalises the kept rows' numbers (db thread or http thread) and writes them. */
static void import_write(struct import *im, const char *country)
{
	json_t *seen = json_object(), *out = json_array();
	size_t i;
	json_t *it;
	json_array_foreach(im->items, i, it)
	{
		char e164[24];
		struct api_err e;
		long row = (long)json_integer_value(json_object_get(it, "_row"));
		const char *raw = json_string_value(json_object_get(it, "phone_e164"));
		if (raw && api_phone(raw, country && country[0] ? country : NULL, "phone", e164,
		                     sizeof(e164), &e)) {
			reject(im, row, &e);
			continue;
		}
		if (raw)
			json_object_set_new(it, "phone_e164", json_string(e164));
		if (!im->single && json_object_get(seen, e164)) {
			im->duplicates++;
			continue;
		}
		json_object_set_new(seen, e164, json_true());
		json_object_del(it, "_row");
		if (im->single && im->campaign[0])
			json_object_set_new(it, "campaign_id", json_string(im->campaign));
		json_array_append(out, it);
	}
	json_decref(seen);
	json_decref(im->items);
	im->items = out;
	if (im->single && json_array_size(out) == 0) {
		/* the number was refused */
		json_t *r = json_array_get(im->rejected, 0);
		ctl_reply_error(im->token, 400, "invalid_field",
		                json_string_value(json_object_get(r, "message")), "phone");
		import_free(im);
		return;
	}
	if (!im->single && json_array_size(out) == 0) {
		json_t *z = json_pack("[{s:i, s:i}]", "imported", 0, "dnc", 0);
		on_import_done(im, 0, z);
		return;
	}
	char *rows = json_dumps(im->single ? json_array_get(out, 0) : out, JSON_COMPACT);
	if (!rows) {
		ctl_reply_error(im->token, 500, "internal", "out of memory", NULL);
		import_free(im);
		return;
	}
	int rc;
	if (im->single) {
		const char *params[1] = {rows};
		rc = db_query(
		    "WITH s AS (SELECT * FROM jsonb_to_record($1::jsonb) AS " LEAD_RECORD "),"
		    " ins AS (INSERT INTO leads AS l (id, campaign_id, phone_e164, name, email, "
		    "locale,"
		    " timezone, external_id, attributes, consent_call, source, status, do_not_call)"
		    " SELECT coalesce(s.id, gen_random_uuid()::text), s.campaign_id, s.phone_e164,"
		    " s.name, s.email, s.locale, s.timezone, s.external_id, coalesce(s.attributes,"
		    " '{}'), s.consent_call, 'api', CASE WHEN d.phone_e164 IS NULL THEN 'new' ELSE"
		    " 'dnc' END, d.phone_e164 IS NOT NULL FROM s LEFT JOIN do_not_call d ON"
		    " d.phone_e164 = s.phone_e164 ON CONFLICT DO NOTHING RETURNING *)"
		    " SELECT (SELECT " LEAD_OBJ " FROM ins l) AS obj, (SELECT x.id FROM leads x, s"
		    " WHERE x.campaign_id = s.campaign_id AND x.phone_e164 = s.phone_e164) AS "
		    "existing",
		    params, 1, on_single_done, im);
	} else {
		const char *params[3] = {im->campaign, rows, im->source};
		rc = db_query(
		    "WITH s AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS " LEAD_RECORD "),"
		    /* A WhatsApp lead of that number in no campaign yet joins this one (its
		     * conversation stays with it) instead of a second lead (docs/whatsapp.md). */
		    " wa AS (UPDATE leads l SET campaign_id = $1, name = coalesce(l.name, s.name),"
		    " email = coalesce(l.email, s.email), locale = coalesce(l.locale, s.locale),"
		    " timezone = coalesce(l.timezone, s.timezone), external_id ="
		    " coalesce(l.external_id, s.external_id), attributes = coalesce(s.attributes,"
		    " '{}') || l.attributes, consent_call = coalesce(l.consent_call,"
		    " s.consent_call), updated_at = now() FROM s WHERE l.wa_id IS NOT NULL"
		    " AND l.campaign_id IS NULL AND l.phone_e164 = s.phone_e164 AND NOT EXISTS"
		    " (SELECT 1 FROM leads y WHERE y.campaign_id = $1 AND y.phone_e164 ="
		    " s.phone_e164) RETURNING l.id),"
		    " ins AS (INSERT INTO leads (campaign_id, phone_e164, name, email, locale,"
		    " timezone, external_id, attributes, consent_call, source, status, do_not_call)"
		    " SELECT $1, s.phone_e164, s.name, s.email, s.locale, s.timezone, "
		    "s.external_id,"
		    " coalesce(s.attributes, '{}'), s.consent_call, $3, CASE WHEN d.phone_e164 IS "
		    "NULL"
		    " THEN 'new' ELSE 'dnc' END, d.phone_e164 IS NOT NULL FROM s LEFT JOIN"
		    " do_not_call d ON d.phone_e164 = s.phone_e164 WHERE NOT EXISTS (SELECT 1"
		    " FROM leads w WHERE w.wa_id IS NOT NULL AND w.campaign_id IS NULL AND"
		    " w.phone_e164 = s.phone_e164)"
		    " ON CONFLICT (campaign_id, phone_e164) WHERE campaign_id IS NOT NULL DO "
		    "NOTHING"
		    " RETURNING status)"
		    " SELECT count(*) + (SELECT count(*) FROM wa) AS imported,"
		    " count(*) FILTER (WHERE status = 'dnc') AS dnc FROM ins",
		    params, 3, on_import_done, im);
	}
	free(rows);
	if (rc) {
		api_reply_store(im->token, rc);
		import_free(im);
	}
}

/* The campaign's row arrived (db thread): its country reads national numbers. */
static void on_campaign_rows(void *arg, int rc, json_t *rows)
{
	struct import *im = arg;
	json_t *row = json_array_get(rows, 0);
	if (rc) {
		api_reply_store(im->token, rc);
		import_free(im);
	} else if (!row) {
		char msg[120];
		snprintf(msg, sizeof(msg), "no campaign %s", im->campaign);
		ctl_reply_error(im->token, 404, "not_found", msg,
		                im->single ? "campaign_id" : "id");
		import_free(im);
	} else {
		const char *cc = json_string_value(json_object_get(row, "country"));
		import_write(im, im->country[0] ? im->country : cc);
	}
	json_decref(rows);
}

static struct import *import_new(uint64_t token)
{
	struct import *im = mem_zalloc(sizeof(*im));
	if (im) {
		im->token = token;
		im->items = json_array();
		im->rejected = json_array();
	}
	if (!im || !im->items || !im->rejected) {
		import_free(im);
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
		return NULL;
	}
	return im;
}

/* ?country= into im->country (upper case). 0 or -1 with e. */
static int query_country(struct ctl_request *rq, char *out, struct api_err *e)
{
	char buf[16];
	const char *c;
	out[0] = '\0';
	if (api_query(rq, "country", buf, sizeof(buf), &c, e))
		return -1;
	if (!c)
		return 0;
	char up[3] = {0};
	for (size_t i = 0; i < 2 && c[i]; i++)
		up[i] = (char)(c[i] >= 'a' && c[i] <= 'z' ? c[i] - 32 : c[i]);
	if (strlen(c) != 2 || !api_country_ok(up))
		return api_fail(e, 400, "invalid_field", "country", "country must be one of %s",
		                api_country_list());
	memcpy(out, up, 3);
	return 0;
}

/* Reads the campaign, then writes (on_campaign_rows). */
static void import_start(struct import *im)
{
	const char *params[1] = {im->campaign};
	int rc = db_query("SELECT country FROM campaigns WHERE id = $1", params, 1,
	                  on_campaign_rows, im);
	if (rc) {
		api_reply_store(im->token, rc);
		import_free(im);
	}
}

void api_leads_import(struct ctl_request *rq, const char *campaign_id)
{
	static const char *const known[] = {"country", NULL};
	uint64_t token = ctl_req_token(rq);
	struct api_err e;
	char ct[128];
	size_t len;
	const char *body = ctl_req_body(rq, &len);
	struct import *im = import_new(token);
	if (!im)
		return;
	snprintf(im->campaign, sizeof(im->campaign), "%s", campaign_id);
	if (api_query_known(rq, known, &e) || query_country(rq, im->country, &e))
		goto fail;
	if (!ctl_req_header(rq, "content-type", ct, sizeof(ct)))
		ct[0] = '\0';
	trim_lower(ct);
	char *semi = strchr(ct, ';');
	if (semi)
		*semi = '\0';
	trim_lower(ct);
	if (strcmp(ct, "text/csv") == 0) {
		im->source = "csv";
		if (import_csv(im, body, len, &e))
			goto fail;
	} else if (strcmp(ct, "application/json") == 0) {
		im->source = "api";
		if (import_json(im, body, len, &e))
			goto fail;
	} else {
		api_fail(&e, 415, "unsupported_media_type", NULL,
		         "send the leads as application/json or text/csv");
		goto fail;
	}
	import_start(im);
	return;
fail:
	api_reply_err(token, &e);
	import_free(im);
}

/* ---- POST /v1/leads ---- */

static void on_create(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const known[] = {"country", NULL};
	uint64_t token = ctl_req_token(rq);
	struct api_err e;
	struct import *im = import_new(token);
	if (!im)
		return;
	im->single = 1;
	im->source = "api";
	json_t *j = api_body_object(rq, &e);
	json_t *clean = json_object();
	if (!j || api_query_known(rq, known, &e) || query_country(rq, im->country, &e) ||
	    lead_check(j, LEAD_CREATE, clean, &e)) {
		api_reply_err(token, &e);
		import_free(im);
		goto out;
	}
	const char *camp = json_string_value(json_object_get(clean, "campaign_id"));
	snprintf(im->campaign, sizeof(im->campaign), "%s", camp ? camp : "");
	json_object_set_new(clean, "_row", json_integer(1));
	json_array_append(im->items, clean);
	if (camp)
		import_start(im);
	else
		import_write(im, im->country);
out:
	json_decref(clean);
	json_decref(j);
}

/* ---- GET /v1/leads, GET/PATCH/DELETE /v1/leads/{id} ---- */

static void on_list(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const known[] = {"limit",   "after",  "campaign_id", "status", "phone",
	                                    "country", "source", "ad_id",       NULL};
	uint64_t token = ctl_req_token(rq);
	struct api_err e;
	char us[24], id[72], v[5][72], country[3], e164[24];
	struct api_q *q = api_q_new(token, "leads", "lead");
	if (!q)
		return;
	const char *camp = NULL, *status = NULL, *phone = NULL, *source = NULL, *ad = NULL;
	if (api_query(rq, "campaign_id", v[0], sizeof(v[0]), &camp, &e) ||
	    api_query(rq, "status", v[1], sizeof(v[1]), &status, &e) ||
	    api_query(rq, "phone", v[2], sizeof(v[2]), &phone, &e) ||
	    api_query(rq, "source", v[3], sizeof(v[3]), &source, &e) ||
	    api_query(rq, "ad_id", v[4], sizeof(v[4]), &ad, &e) || api_query_known(rq, known, &e) ||
	    api_q_page(rq, q, us, sizeof(us), id, sizeof(id), &e) ||
	    query_country(rq, country, &e) ||
	    (camp && !api_id_ok(camp) &&
	     api_fail(&e, 400, "invalid_field", "campaign_id", "campaign_id is not an id")) ||
	    (status &&
	     (!status[0] || strlen(status) > 32 ||
	      strspn(status, "abcdefghijklmnopqrstuvwxyz_") != strlen(status)) &&
	     api_fail(&e, 400, "invalid_field", "status", "status is not a lead status")) ||
	    (source && !source[0] &&
	     api_fail(&e, 400, "invalid_field", "source", "source must not be empty")) ||
	    (ad && !ad[0] &&
	     api_fail(&e, 400, "invalid_field", "ad_id", "ad_id must not be empty")) ||
	    (phone &&
	     api_phone(phone, country[0] ? country : NULL, "phone", e164, sizeof(e164), &e))) {
		api_reply_err(token, &e);
		mem_free(q);
		return;
	}
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", q->limit + 1);
	const char *params[8] = {
	    camp,   status, phone ? e164 : NULL, us[0] ? us : NULL, us[0] ? id : NULL, lim,
	    source, ad};
	api_q_run(
	    q,
	    "SELECT " LEAD_OBJ " AS obj, " API_CURSOR_US(
	        "l.created_at") " AS cur_us,"
	                        " l.id AS cur_id FROM leads l WHERE ($1::text IS NULL OR "
	                        "l.campaign_id = $1)"
	                        " AND ($2::text IS NULL OR l.status = $2) AND ($3::text IS NULL OR"
	                        " l.phone_e164 = $3) AND ($4::bigint IS NULL OR (l.created_at, "
	                        "l.id) <"
	                        " (timestamptz 'epoch' + $4::bigint * interval '1 microsecond', "
	                        "$5::text))"
	                        " AND ($7::text IS NULL OR l.source = $7) AND ($8::text IS NULL OR"
	                        " l.attributes->'referral'->>'source_id' = $8)"
	                        " ORDER BY l.created_at DESC, l.id DESC LIMIT $6::int",
	    params, 8, api_q_list_cb);
}

static int lead_path(struct ctl_request *rq, char *id, size_t idlen)
{
	const char *rest;
	if (api_path_id(rq, "/v1/leads/", "lead", id, idlen, &rest))
		return -1;
	if (rest[0]) {
		ctl_reply_error(ctl_req_token(rq), 404, "not_found", "no such resource", NULL);
		return -1;
	}
	return 0;
}

static void on_get(struct ctl_request *rq, void *arg)
{
	(void)arg;
	char id[72];
	if (lead_path(rq, id, sizeof(id)))
		return;
	struct api_q *q = api_q_new(ctl_req_token(rq), NULL, "lead");
	if (!q)
		return;
	snprintf(q->id, sizeof(q->id), "%s", id);
	const char *params[1] = {id};
	api_q_run(q, "SELECT " LEAD_OBJ " AS obj FROM leads l WHERE l.id = $1", params, 1,
	          api_q_one_cb);
}

static void on_patch_rows(void *arg, int rc, json_t *rows)
{
	struct api_q *q = arg;
	json_t *row = json_array_get(rows, 0);
	if (!rc && json_is_true(json_object_get(row, "found")) &&
	    !json_is_object(json_object_get(row, "obj"))) {
		if (!json_is_true(json_object_get(row, "campaign_ok")))
			ctl_reply_error(q->token, 404, "not_found", "campaign_id names no campaign",
			                "campaign_id");
		else
			ctl_reply_error(q->token, 409, "conflict",
			                "another lead of that campaign has this phone", "phone");
		json_decref(rows);
		mem_free(q);
		return;
	}
	api_q_one_cb(arg, rc, rows);
}

static void on_patch(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const known[] = {"country", NULL};
	uint64_t token = ctl_req_token(rq);
	char id[72], country[3], e164[24];
	if (lead_path(rq, id, sizeof(id)))
		return;
	struct api_err e;
	json_t *j = api_body_object(rq, &e);
	json_t *clean = json_object();
	struct strbuf sb;
	str_init(&sb);
	if (!j || api_query_known(rq, known, &e) || query_country(rq, country, &e) ||
	    lead_check(j, LEAD_PATCH, clean, &e)) {
		api_reply_err(token, &e);
		goto out;
	}
	const char *raw = json_string_value(json_object_get(clean, "phone_e164"));
	if (raw) {
		if (api_phone(raw, country[0] ? country : NULL, "phone", e164, sizeof(e164), &e)) {
			api_reply_err(token, &e);
			goto out;
		}
		json_object_set_new(clean, "phone_e164", json_string(e164));
	}
	str_puts(&sb, "WITH u AS (UPDATE leads l SET ");
	if (api_sql_cols(&sb, lead_cols, clean, 2, 1) > 0)
		str_puts(&sb, ", ");
	str_puts(&sb,
	         "updated_at = now() WHERE l.id = $1 AND (NOT ($2::jsonb ? 'campaign_id') OR"
	         " $2::jsonb->>'campaign_id' IS NULL OR EXISTS (SELECT 1 FROM campaigns WHERE id"
	         " = $2::jsonb->>'campaign_id')) AND NOT EXISTS (SELECT 1 FROM leads x WHERE"
	         " x.id <> l.id AND x.campaign_id = CASE WHEN $2::jsonb ? 'campaign_id' THEN"
	         " $2::jsonb->>'campaign_id' ELSE l.campaign_id END AND x.phone_e164 ="
	         " coalesce($2::jsonb->>'phone_e164', l.phone_e164)) RETURNING *)"
	         " SELECT (SELECT " LEAD_OBJ " FROM u l) AS obj, EXISTS (SELECT 1 FROM leads"
	         " WHERE id = $1) AS found, (NOT ($2::jsonb ? 'campaign_id') OR"
	         " $2::jsonb->>'campaign_id' IS NULL OR EXISTS (SELECT 1 FROM campaigns WHERE id"
	         " = $2::jsonb->>'campaign_id')) AS campaign_ok");
	char *cj = json_dumps(clean, JSON_COMPACT);
	struct api_q *q = cj && !sb.oom ? api_q_new(token, NULL, "lead") : NULL;
	if (q) {
		snprintf(q->id, sizeof(q->id), "%s", id);
		const char *params[2] = {id, cj};
		api_q_run(q, sb.p, params, 2, on_patch_rows);
	} else if (!cj || sb.oom) {
		ctl_reply_error(token, 500, "internal", "out of memory", NULL);
	}
	free(cj);
out:
	str_deinit(&sb);
	json_decref(clean);
	json_decref(j);
}

static void on_delete_rows(void *arg, int rc, json_t *rows)
{
	struct api_q *q = arg;
	if (rc) {
		api_reply_store(q->token, rc);
	} else if (json_integer_value(json_object_get(json_array_get(rows, 0), "n")) == 0) {
		char msg[120];
		snprintf(msg, sizeof(msg), "no %s %s", q->what, q->id);
		ctl_reply_error(q->token, 404, "not_found", msg, q->key);
	} else {
		ctl_reply(q->token, 204, NULL, NULL, 0);
	}
	json_decref(rows);
	mem_free(q);
}

static void on_delete(struct ctl_request *rq, void *arg)
{
	(void)arg;
	char id[72];
	if (lead_path(rq, id, sizeof(id)))
		return;
	struct api_q *q = api_q_new(ctl_req_token(rq), "id", "lead");
	if (!q)
		return;
	snprintf(q->id, sizeof(q->id), "%s", id);
	const char *params[1] = {id};
	api_q_run(q,
	          "WITH d AS (DELETE FROM leads WHERE id = $1 RETURNING 1) SELECT count(*) AS n"
	          " FROM d",
	          params, 1, on_delete_rows);
}

/* ---- /v1/dnc ---- */

static void on_dnc_add_rows(void *arg, int rc, json_t *rows)
{
	struct api_q *q = arg;
	json_t *row = json_array_get(rows, 0);
	if (!rc && row)
		q->ok_code = json_integer_value(json_object_get(row, "created")) ? 201 : 200;
	api_q_one_cb(arg, rc, rows);
}

static void on_dnc_add(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const known[] = {"phone", "reason", NULL};
	static const char *const qknown[] = {"country", NULL};
	uint64_t token = ctl_req_token(rq);
	struct api_err e;
	char country[3], e164[24];
	const char *phone, *reason = NULL;
	json_t *j = api_body_object(rq, &e);
	if (!j || api_query_known(rq, qknown, &e) || query_country(rq, country, &e) ||
	    api_known_fields(j, known, NULL, &e) ||
	    api_get_str(j, "phone", NULL, API_REQUIRED, 1, 64, &phone, &e) < 0 ||
	    api_get_str(j, "reason", NULL, API_NULLABLE, 0, 500, &reason, &e) < 0 ||
	    api_phone(phone, country[0] ? country : NULL, "phone", e164, sizeof(e164), &e)) {
		api_reply_err(token, &e);
		json_decref(j);
		return;
	}
	struct api_q *q = api_q_new(token, NULL, "number");
	if (q) {
		snprintf(q->id, sizeof(q->id), "%s", e164);
		const char *params[2] = {e164, reason};
		api_q_run(
		    q,
		    "WITH ins AS (INSERT INTO do_not_call (phone_e164, reason) VALUES ($1, $2)"
		    " ON CONFLICT (phone_e164) DO NOTHING RETURNING *),"
		    " l AS (UPDATE leads SET do_not_call = true, status = CASE WHEN status "
		    "IN " PENDING
		    " THEN 'dnc' ELSE status END, updated_at = now() WHERE phone_e164 = $1 AND (NOT"
		    " do_not_call OR status IN " PENDING ") RETURNING status),"
		    " j AS (UPDATE call_jobs SET status = 'cancelled', updated_at = now() WHERE"
		    " number = $1 AND status = 'queued' RETURNING 1)"
		    " SELECT (SELECT count(*) FROM ins) AS created, coalesce((SELECT " DNC_OBJ
		    " FROM ins d), (SELECT " DNC_OBJ " FROM do_not_call d WHERE d.phone_e164 ="
		    " $1))::jsonb || jsonb_build_object('leads_marked', (SELECT count(*) FROM l "
		    "WHERE"
		    " status = 'dnc'), 'jobs_cancelled', (SELECT count(*) FROM j)) AS obj",
		    params, 2, on_dnc_add_rows);
	}
	json_decref(j);
}

static void on_dnc_list(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const known[] = {"limit", "after", "phone", "country", NULL};
	uint64_t token = ctl_req_token(rq);
	struct api_err e;
	char us[24], id[72], v[72], country[3], e164[24];
	struct api_q *q = api_q_new(token, "dnc", "number");
	if (!q)
		return;
	const char *phone = NULL;
	if (api_query(rq, "phone", v, sizeof(v), &phone, &e) || api_query_known(rq, known, &e) ||
	    api_q_page(rq, q, us, sizeof(us), id, sizeof(id), &e) ||
	    query_country(rq, country, &e) ||
	    (phone &&
	     api_phone(phone, country[0] ? country : NULL, "phone", e164, sizeof(e164), &e))) {
		api_reply_err(token, &e);
		mem_free(q);
		return;
	}
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", q->limit + 1);
	const char *params[4] = {phone ? e164 : NULL, us[0] ? us : NULL, us[0] ? id : NULL, lim};
	/* The cursor keeps the number without its '+' ('+' in a query string is a space). */
	api_q_run(
	    q,
	    "SELECT " DNC_OBJ " AS obj, " API_CURSOR_US(
	        "d.created_at") " AS cur_us,"
	                        " substr(d.phone_e164, 2) AS cur_id FROM do_not_call d WHERE "
	                        "($1::text IS NULL"
	                        " OR d.phone_e164 = $1) AND ($2::bigint IS NULL OR (d.created_at, "
	                        "d.phone_e164) <"
	                        " (timestamptz 'epoch' + $2::bigint * interval '1 microsecond', "
	                        "'+' || $3::text))"
	                        " ORDER BY d.created_at DESC, d.phone_e164 DESC LIMIT $4::int",
	    params, 4, api_q_list_cb);
}

static void on_dnc_delete(struct ctl_request *rq, void *arg)
{
	(void)arg;
	static const char *const known[] = {"country", NULL};
	uint64_t token = ctl_req_token(rq);
	struct api_err e;
	char country[3], e164[24];
	const char *phone = ctl_req_path(rq) + strlen("/v1/dnc/");
	if (api_query_known(rq, known, &e) || query_country(rq, country, &e)) {
		api_reply_err(token, &e);
		return;
	}
	if (!phone[0] || strlen(phone) > 64 ||
	    api_phone(phone, country[0] ? country : NULL, "phone", e164, sizeof(e164), &e)) {
		ctl_reply_error(token, 404, "not_found", "no such number on the do-not-call list",
		                "phone");
		return;
	}
	struct api_q *q = api_q_new(token, "phone", "number on the do-not-call list:");
	if (!q)
		return;
	snprintf(q->id, sizeof(q->id), "%s", e164);
	const char *params[1] = {e164};
	api_q_run(q,
	          "WITH d AS (DELETE FROM do_not_call WHERE phone_e164 = $1 RETURNING 1),"
	          " l AS (UPDATE leads SET do_not_call = false, status = CASE WHEN status = 'dnc'"
	          " THEN 'new' ELSE status END, updated_at = now() WHERE phone_e164 = $1 AND"
	          " EXISTS (SELECT 1 FROM d) RETURNING 1)"
	          " SELECT count(*) AS n FROM d",
	          params, 1, on_delete_rows);
}

/* ---- set-up ---- */

#define BODY_MAX (64u * 1024u)

int api_leads_init(void)
{
	static const struct {
		const char *method, *path;
		unsigned flags;
		size_t max_body;
		ctl_handler_fn fn;
	} routes[] = {
	    {"POST", "/v1/leads", CTL_SCOPE_CAMPAIGNS | CTL_IDEMPOTENT, BODY_MAX, on_create},
	    {"GET", "/v1/leads", CTL_SCOPE_READ, 0, on_list},
	    {"GET", "/v1/leads/", CTL_SCOPE_READ, 0, on_get},
	    {"PATCH", "/v1/leads/", CTL_SCOPE_CAMPAIGNS, BODY_MAX, on_patch},
	    {"DELETE", "/v1/leads/", CTL_SCOPE_CAMPAIGNS, 0, on_delete},
	    {"POST", "/v1/dnc", CTL_SCOPE_CAMPAIGNS | CTL_IDEMPOTENT, BODY_MAX, on_dnc_add},
	    {"GET", "/v1/dnc", CTL_SCOPE_READ, 0, on_dnc_list},
	    {"DELETE", "/v1/dnc/", CTL_SCOPE_CAMPAIGNS, 0, on_dnc_delete},
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		int rc = ctl_route_add(routes[i].method, routes[i].path, routes[i].flags,
		                       routes[i].max_body, 30000, routes[i].fn, NULL);
		if (rc)
			return rc;
	}
	return 0;
}
