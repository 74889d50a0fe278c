/* The WhatsApp webhook: signature check over the raw bytes and the envelope parser. */
#include "wa/wa_int.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int wa_sig_check(const char *secret, const char *body, size_t len, const char *header)
{
	unsigned char want[32], got[32];
	unsigned wl = 0;
	if (!secret || !secret[0])
		return -EINVAL;
	if (!header || strncmp(header, "sha256=", 7) != 0 || strlen(header + 7) != 64)
		return -ENOENT;
	const char *hex = header + 7;
	for (int i = 0; i < 32; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -ENOENT;
		got[i] = (unsigned char)(hi << 4 | lo);
	}
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len, want,
	          &wl) ||
	    wl != sizeof(want))
		return -EACCES;
	return CRYPTO_memcmp(want, got, sizeof(want)) == 0 ? 0 : -EACCES;
}

void wa_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned ml = 0;
	static const char digits[] = "0123456789abcdef";
	EVP_Digest(data, len, md, &ml, EVP_sha256(), NULL);
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[64] = '\0';
}

static const char *sget(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);
	return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

/* "1749416383" (messages, statuses) or 1731705721 (user_preferences) -> seconds; 0 bad. */
static json_int_t ts_of(const json_t *v)
{
	if (json_is_integer(v))
		return json_integer_value(v) > 0 ? json_integer_value(v) : 0;
	if (!json_is_string(v))
		return 0;
	char *end;
	long long t = strtoll(json_string_value(v), &end, 10);
	return *end || t <= 0 ? 0 : (json_int_t)t;
}

static void set_str(json_t *o, const char *k, const char *v)
{
	json_object_set_new(o, k, v ? json_string(v) : json_null());
}

static int add_event(json_t *events, const char *kind, const char *wa_id, const json_t *payload)
{
	json_t *e = json_object();
	if (!e)
		return -ENOMEM;
	json_object_set_new(e, "kind", json_string(kind));
	set_str(e, "wa_id", wa_id);
	json_object_set(e, "payload", (json_t *)payload);
	return json_array_append_new(events, e) ? -ENOMEM : 0;
}

/* The profile name and business-scoped id of `from` in value.contacts[]. */
static void contact_of(const json_t *contacts, const char *from, const char *user_id,
                       const char **name, const char **uid)
{
	size_t i;
	const json_t *c;
	*name = NULL;
	*uid = user_id;
	json_array_foreach(contacts, i, c)
	{
		const char *w = sget(c, "wa_id"), *u = sget(c, "user_id");
		if ((from && w && strcmp(w, from) == 0) ||
		    (user_id && u && strcmp(u, user_id) == 0) || json_array_size(contacts) == 1) {
			*name = sget(json_object_get(c, "profile"), "name");
			if (!*uid)
				*uid = u;
			return;
		}
	}
}

/* The text of a message for discovery and the body column, and the reply id. */
static void body_of(const json_t *m, const char *type, const char **body, const char **reply_id,
                    char *buf, size_t len)
{
	const json_t *t = json_object_get(m, type);
	*body = *reply_id = NULL;
	if (strcmp(type, "text") == 0) {
		*body = sget(t, "body");
	} else if (strcmp(type, "interactive") == 0) {
		const char *it = sget(t, "type");
		const json_t *r = it ? json_object_get(t, it) : NULL;
		*body = sget(r, "title");
		*reply_id = sget(r, "id");
	} else if (strcmp(type, "button") == 0) {
		*body = sget(t, "text");
		*reply_id = sget(t, "payload");
	} else if (strcmp(type, "location") == 0) {
		const json_t *la = json_object_get(t, "latitude"),
		             *lo = json_object_get(t, "longitude");
		if (json_is_number(la) && json_is_number(lo)) {
			snprintf(buf, len, "%.6f,%.6f%s%s", json_number_value(la),
			         json_number_value(lo), sget(t, "name") ? " " : "",
			         sget(t, "name") ? sget(t, "name") : "");
			*body = buf;
		}
	} else if (strcmp(type, "reaction") == 0) {
		*body = sget(t, "emoji");
		*reply_id = sget(t, "message_id");
	} else if (strcmp(type, "system") == 0) {
		*body = sget(t, "body");
	} else if (strcmp(type, "unsupported") == 0) {
		*body = sget(t, "type");
	} else if (json_is_object(t)) {
		*body = sget(t, "caption"); /* image, video, document, audio, sticker */
	}
}

static int one_message(const json_t *m, const json_t *contacts, json_t *out)
{
	const char *id = sget(m, "id"), *type = sget(m, "type"), *from = sget(m, "from");
	const char *user_id = sget(m, "from_user_id");
	if (!user_id)
		user_id = sget(m, "user_id");
	json_int_t ts = ts_of(json_object_get(m, "timestamp"));
	if (!id || !type || (!from && !user_id))
		return add_event(json_object_get(out, "events"), "invalid", from, m);
	const char *name, *uid, *body, *reply_id;
	char buf[160];
	contact_of(contacts, from, user_id, &name, &uid);
	body_of(m, type, &body, &reply_id, buf, sizeof(buf));
	json_t *r = json_object();
	if (!r)
		return -ENOMEM;
	set_str(r, "wamid", id);
	set_str(r, "from", from);
	set_str(r, "user_id", uid);
	set_str(r, "name", name);
	set_str(r, "type", type);
	set_str(r, "body", body);
	set_str(r, "reply_id", reply_id);
	json_object_set_new(r, "ts", ts ? json_integer(ts) : json_null());
	json_object_set(r, "payload", (json_t *)m);
	const json_t *ref = json_object_get(m, "referral");
	json_object_set(r, "referral", json_is_object(ref) ? (json_t *)ref : json_null());
	if (json_array_append_new(json_object_get(out, "messages"), r))
		return -ENOMEM;
	if (strcmp(type, "system") == 0 || json_is_array(json_object_get(m, "errors")))
		return add_event(json_object_get(out, "events"), type, from, m);
	return 0;
}

static int one_status(const json_t *s, json_t *out)
{
	const char *id = sget(s, "id"), *st = sget(s, "status");
	if (!id || !st)
		return add_event(json_object_get(out, "events"), "invalid", NULL, s);
	json_t *r = json_object();
	if (!r)
		return -ENOMEM;
	json_int_t ts = ts_of(json_object_get(s, "timestamp"));
	const json_t *err = json_array_get(json_object_get(s, "errors"), 0);
	const json_t *code = json_object_get(err, "code");
	set_str(r, "id", id);
	set_str(r, "status", st);
	json_object_set_new(r, "ts", ts ? json_integer(ts) : json_null());
	set_str(r, "recipient_id", sget(s, "recipient_id"));
	json_object_set_new(r, "error_code",
	                    json_is_integer(code) ? json_integer(json_integer_value(code))
	                                          : json_null());
	json_object_set(r, "payload", (json_t *)s);
	return json_array_append_new(json_object_get(out, "statuses"), r) ? -ENOMEM : 0;
}

static int one_value(const char *field, const json_t *v, json_t *out)
{
	size_t i;
	const json_t *x;
	int rc = 0;
	if (!json_is_object(v))
		return add_event(json_object_get(out, "events"), "invalid", NULL, v);
	if (strcmp(field, "messages") != 0 && strcmp(field, "user_preferences") != 0)
		return add_event(json_object_get(out, "events"), field, NULL, v);
	const json_t *contacts = json_object_get(v, "contacts");
	json_array_foreach(json_object_get(v, "messages"), i, x)
	{
		if (rc == 0)
			rc = one_message(x, contacts, out);
	}
	json_array_foreach(json_object_get(v, "statuses"), i, x)
	{
		if (rc == 0)
			rc = one_status(x, out);
	}
	json_array_foreach(json_object_get(v, "errors"), i, x)
	{
		if (rc == 0)
			rc = add_event(json_object_get(out, "events"), "error", NULL, x);
	}
	json_array_foreach(json_object_get(v, "user_preferences"), i, x)
	{
		const char *w = sget(x, "wa_id"), *val = sget(x, "value");
		if (rc == 0)
			rc = add_event(json_object_get(out, "events"), "user_preferences", w, x);
		if (rc == 0 && w && val &&
		    strcmp(sget(x, "category") ? sget(x, "category") : "", "marketing_messages") ==
		        0) {
			json_t *p = json_pack("{s:s, s:s}", "wa_id", w, "value", val);
			rc = !p || json_array_append_new(json_object_get(out, "prefs"), p) ? -ENOMEM
			                                                                   : 0;
		}
	}
	return rc;
}

int wa_parse(const json_t *root, json_t **out, char *why, size_t whylen)
{
	const char *obj = sget(root, "object");
	const json_t *entry = json_object_get(root, "entry");
	if (!json_is_object(root) || !obj || strcmp(obj, "whatsapp_business_account") != 0 ||
	    !json_is_array(entry)) {
		snprintf(why, whylen, "not a WhatsApp Business Account webhook (object, entry[])");
		return -EINVAL;
	}
	json_t *o =
	    json_pack("{s:[], s:[], s:[], s:[]}", "messages", "statuses", "events", "prefs");
	if (!o)
		return -ENOMEM;
	size_t i, j;
	const json_t *e, *c;
	int rc = 0;
	json_array_foreach(entry, i, e)
	{
		const json_t *changes = json_object_get(e, "changes");
		if (!json_is_array(changes)) {
			rc = add_event(json_object_get(o, "events"), "invalid", NULL, e);
			continue;
		}
		json_array_foreach(changes, j, c)
		{
			const char *field = sget(c, "field");
			if (rc == 0)
				rc = one_value(field ? field : "", json_object_get(c, "value"), o);
		}
	}
	if (rc < 0) {
		json_decref(o);
		snprintf(why, whylen, "out of memory");
		return rc;
	}
	*out = o;
	return 0;
}
