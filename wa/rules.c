/* Discovery: the rules engine (keywords per language from an editable JSON file) and the
 * conversation state machine both engines share. */
#include "wa/wa_int.h"

#include "core/mem.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct wa_rules {
	json_t *root;
	char default_lang[3];
};

static const char *const langs[] = {"es", "en"};
#define N_LANGS 2
static const char *const consent_ids[4] = {"call_now", "call_later", "call_tomorrow", "no_calls"};

/* ---------------------------------------------------------------- text */

/* Lowercase ASCII copy of UTF-8 text with Latin accents dropped ("Cancún" -> "cancun");
 * other non-ASCII bytes become spaces. '\'' is dropped ("don't" -> "dont"). */
static void fold(const char *in, char *out, size_t len)
{
	static const char map[64] =
	    "aaaaaaaceeeeiiiidnooooo ouuuuy  aaaaaaaceeeeiiiidnooooo ouuuuy y";
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)in;
	while (*p && o + 1 < len) {
		if (*p < 0x80) {
			if (*p != '\'')
				out[o++] = (char)tolower(*p);
			p++;
		} else if (*p == 0xC3 && p[1] >= 0x80 && p[1] < 0xC0) {
			out[o++] = map[p[1] - 0x80];
			p += 2;
		} else {
			out[o++] = ' ';
			p++;
			while (*p >= 0x80 && *p < 0xC0)
				p++;
		}
	}
	out[o] = '\0';
}

static int is_word(char c)
{
	return isalnum((unsigned char)c);
}

/* Where the folded keyword occurs as whole words in folded text, or NULL. */
static const char *find_word(const char *text, const char *kw)
{
	size_t n = strlen(kw);
	if (!n)
		return NULL;
	for (const char *p = strstr(text, kw); p; p = strstr(p + 1, kw)) {
		if ((p == text || !is_word(p[-1])) && !is_word(p[n]))
			return p;
	}
	return NULL;
}

static const json_t *lang_obj(const struct wa_rules *r, const char *lang)
{
	return json_object_get(json_object_get(r->root, "languages"), lang);
}

/* The first keyword of list `key` in lang found in folded text; its position in *at. */
static const char *match_list(const json_t *list, const char *text, const char **at)
{
	size_t i;
	const json_t *v;
	char kw[128];
	json_array_foreach(list, i, v)
	{
		fold(json_string_value(v), kw, sizeof(kw));
		const char *p = find_word(text, kw);
		if (p) {
			if (at)
				*at = p;
			return json_string_value(v);
		}
	}
	return NULL;
}

static unsigned count_hits(const json_t *list, const char *text)
{
	size_t i;
	const json_t *v;
	unsigned n = 0;
	char kw[128];
	json_array_foreach(list, i, v)
	{
		fold(json_string_value(v), kw, sizeof(kw));
		n += find_word(text, kw) != NULL;
	}
	return n;
}

/* ---------------------------------------------------------------- loading */

static int check_lang(const json_t *l, const char *name, char *why, size_t whylen)
{
	static const char *const lists[] = {
	    "detect",     "switch", "withdraw",       "destinations", "destination_markers",
	    "stop_words", "months", "relative_dates", "party_words",  NULL};
	static const char *const prompts[] = {
	    "greeting",    "ask_destination", "ask_dates", "ask_party",
	    "ask_consent", "consent_button",  "ask_phone", "confirm",
	    "declined",    "withdrawn",       NULL};
	if (!json_is_object(l)) {
		snprintf(why, whylen, "languages.%s: missing (an object)", name);
		return -EINVAL;
	}
	for (int i = 0; lists[i]; i++) {
		const json_t *a = json_object_get(l, lists[i]);
		size_t k;
		const json_t *v;
		if (!json_is_array(a)) {
			snprintf(why, whylen, "languages.%s.%s: must be an array of strings", name,
			         lists[i]);
			return -EINVAL;
		}
		json_array_foreach(a, k, v)
		{
			if (!json_is_string(v) || !json_string_length(v)) {
				snprintf(why, whylen,
				         "languages.%s.%s[%zu]: must be a non-empty string", name,
				         lists[i], k);
				return -EINVAL;
			}
		}
	}
	const json_t *p = json_object_get(l, "prompts");
	for (int i = 0; prompts[i]; i++) {
		if (!json_is_string(json_object_get(p, prompts[i]))) {
			snprintf(why, whylen, "languages.%s.prompts.%s: must be a string", name,
			         prompts[i]);
			return -EINVAL;
		}
	}
	for (int i = 0; i < 4; i++) {
		const json_t *c = json_object_get(json_object_get(l, "consent"), consent_ids[i]);
		const json_t *o = json_object_get(json_object_get(p, "options"), consent_ids[i]);
		/* list rows take 24 bytes; no_calls is also a reply button (20) */
		size_t max = i == 3 ? 20 : 24;
		if (!json_is_array(c) || !json_is_string(o) || !json_string_length(o) ||
		    json_string_length(o) > max) {
			snprintf(why, whylen,
			         "languages.%s: consent.%s (array) and prompts.options.%s (string "
			         "of 1 to "
			         "%zu bytes) are required",
			         name, consent_ids[i], consent_ids[i], max);
			return -EINVAL;
		}
	}
	if (!json_is_object(json_object_get(l, "numbers"))) {
		snprintf(why, whylen, "languages.%s.numbers: must be an object", name);
		return -EINVAL;
	}
	return 0;
}

int wa_rules_load(const char *path, struct wa_rules **out, char *why, size_t whylen)
{
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je);
	if (!root) {
		snprintf(why, whylen, "%s:%d: %s", path, je.line, je.text);
		return -EINVAL;
	}
	int rc = 0;
	for (int i = 0; rc == 0 && i < N_LANGS; i++) {
		char w[256];
		rc = check_lang(json_object_get(json_object_get(root, "languages"), langs[i]),
		                langs[i], w, sizeof(w));
		if (rc)
			snprintf(why, whylen, "%s: %s", path, w);
	}
	struct wa_rules *r = rc ? NULL : mem_zalloc(sizeof(*r));
	if (!rc && !r)
		rc = -ENOMEM;
	if (rc) {
		json_decref(root);
		return rc;
	}
	r->root = root;
	const char *d = json_string_value(json_object_get(root, "default_lang"));
	snprintf(r->default_lang, sizeof(r->default_lang), "%s",
	         d && (strcmp(d, "en") == 0 || strcmp(d, "es") == 0) ? d : "es");
	*out = r;
	return 0;
}

void wa_rules_destroy(struct wa_rules *r)
{
	if (!r)
		return;
	json_decref(r->root);
	mem_free(r);
}

/* ---------------------------------------------------------------- extraction */

static void copy(char *dst, size_t len, const char *s, size_t n)
{
	if (n >= len)
		n = len - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
	while (n && (dst[n - 1] == ' ' || dst[n - 1] == '.' || dst[n - 1] == ','))
		dst[--n] = '\0';
}

/* A number in words or digits (1..99) at p; its length in *n. 0 = none. */
static int number_at(const json_t *l, const char *p, size_t *n)
{
	if (isdigit((unsigned char)*p)) {
		char *end;
		long v = strtol(p, &end, 10);
		*n = (size_t)(end - p);
		return v > 0 && v < 100 && !is_word(*end) ? (int)v : 0;
	}
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)json_object_get(l, "numbers"), k, v)
	{
		size_t kl = strlen(k);
		if (strncmp(p, k, kl) == 0 && !is_word(p[kl]) && json_is_integer(v)) {
			*n = kl;
			return (int)json_integer_value(v);
		}
	}
	return 0;
}

static int party_of(const json_t *l, const char *t, int asking)
{
	/* A number right before or after a party word ("4 personas", "somos 4", "two adults"). */
	size_t i;
	const json_t *w;
	char kw[64];
	json_array_foreach(json_object_get(l, "party_words"), i, w)
	{
		fold(json_string_value(w), kw, sizeof(kw));
		for (const char *p = find_word(t, kw); p; p = find_word(p + 1, kw)) {
			size_t n;
			const char *q = p + strlen(kw);
			while (*q == ' ')
				q++;
			int v = number_at(l, q, &n);
			if (v)
				return v;
			/* the word before */
			const char *e = p;
			while (e > t && e[-1] == ' ')
				e--;
			const char *s = e;
			while (s > t && is_word(s[-1]))
				s--;
			if (s < e && (v = number_at(l, s, &n)) != 0 && s + n == e)
				return v;
		}
	}
	if (!asking)
		return 0;
	for (const char *p = t; *p; p++) {
		size_t n;
		if ((p == t || !is_word(p[-1])) && number_at(l, p, &n))
			return number_at(l, p, &n);
	}
	return 0;
}

static void dates_of(const json_t *l, const char *t, const char *orig_folded, int asking, char *out,
                     size_t len)
{
	const char *at = NULL;
	const char *m = match_list(json_object_get(l, "relative_dates"), t, &at);
	if (m) {
		char f[128];
		fold(m, f, sizeof(f));
		copy(out, len, at, strlen(f));
		return;
	}
	m = match_list(json_object_get(l, "months"), t, &at);
	if (m) {
		/* back to a day number ("del 10 al 15 de julio", "10-15 july"), at most 24 bytes */
		const char *s = at;
		for (const char *p = at; p > t && at - p < 24; p--) {
			if (isdigit((unsigned char)p[-1]))
				s = p - 1;
		}
		while (s > t && isdigit((unsigned char)s[-1]))
			s--;
		const char *e = at + strlen(m);
		/* forward: "july 10-15", "julio 2027" */
		while (*e == ' ' || isdigit((unsigned char)*e) || *e == '-')
			e++;
		copy(out, len, s, (size_t)(e - s));
		return;
	}
	/* dd/mm or dd/mm/yyyy */
	for (const char *p = t; *p; p++) {
		if (isdigit((unsigned char)*p) && (p == t || !is_word(p[-1]))) {
			const char *q = p;
			while (isdigit((unsigned char)*q))
				q++;
			if (*q == '/' && isdigit((unsigned char)q[1]) && q - p <= 2) {
				const char *e = q + 1;
				while (isdigit((unsigned char)*e) || *e == '/')
					e++;
				copy(out, len, p, (size_t)(e - p));
				return;
			}
		}
	}
	if (asking)
		copy(out, len, orig_folded, strlen(orig_folded));
}

static void destination_of(const json_t *l, const char *t, const char *orig, int asking, char *out,
                           size_t len)
{
	size_t i;
	const json_t *v;
	char kw[128];
	json_array_foreach(json_object_get(l, "destinations"), i, v)
	{
		fold(json_string_value(v), kw, sizeof(kw));
		if (find_word(t, kw)) {
			copy(out, len, json_string_value(v), strlen(json_string_value(v)));
			return;
		}
	}
	if (!asking)
		return;
	/* After a marker ("ir a X", "trip to X"): up to 3 words that are not stop words. */
	json_array_foreach(json_object_get(l, "destination_markers"), i, v)
	{
		fold(json_string_value(v), kw, sizeof(kw));
		const char *p = find_word(t, kw);
		if (!p)
			continue;
		const char *s = p + strlen(kw);
		while (*s == ' ')
			s++;
		const char *e = s;
		for (int words = 0; words < 3 && is_word(*e) && !isdigit((unsigned char)*e);
		     words++) {
			const char *we = e;
			while (is_word(*we))
				we++;
			char w[32];
			copy(w, sizeof(w), e, (size_t)(we - e));
			size_t k;
			const json_t *sw;
			int stop = 0;
			json_array_foreach(json_object_get(l, "stop_words"), k, sw)
			{
				stop |= strcmp(json_string_value(sw), w) == 0;
			}
			if (stop)
				break;
			e = we;
			if (*e == ' ')
				e++;
		}
		if (e > s) {
			/* Take the original spelling (same byte offsets only for ASCII text). */
			size_t off = (size_t)(s - t), n = (size_t)(e - s);
			if (strlen(orig) == strlen(t))
				copy(out, len, orig + off, n);
			else
				copy(out, len, s, n);
			return;
		}
	}
	/* A short answer to "where to?" is the destination. */
	unsigned words = 0;
	for (const char *p = t; *p; p++)
		words += is_word(*p) && !is_word(p[1]);
	if (words && words <= 4)
		copy(out, len, orig, strlen(orig));
}

static void phone_of(const char *text, char *out, size_t len)
{
	char d[24];
	size_t n = 0;
	for (const char *p = text; *p; p++) {
		if (isdigit((unsigned char)*p)) {
			if (n < sizeof(d) - 1)
				d[n++] = *p;
		} else if (!strchr("+ -().", *p) && n) {
			break;
		}
	}
	d[n] = '\0';
	if (n >= 8 && n <= 15 && len > n + 1) {
		out[0] = '+';
		memcpy(out + 1, d, n + 1);
	}
}

void wa_rules_extract(const struct wa_rules *r, const char *text, const char *reply_id,
                      const char *asking, struct wa_extract *x)
{
	char t[2048];
	memset(x, 0, sizeof(*x));
	fold(text ? text : "", t, sizeof(t));
	asking = asking ? asking : "";
	/* Button and list replies carry our ids. */
	for (int i = 0; reply_id && i < 4; i++) {
		if (strcmp(reply_id, consent_ids[i]) == 0)
			snprintf(x->consent, sizeof(x->consent), "%s", consent_ids[i]);
	}
	unsigned best = 0;
	for (int i = 0; i < N_LANGS; i++) {
		const json_t *l = lang_obj(r, langs[i]);
		if (count_hits(json_object_get(l, "switch"), t))
			snprintf(x->switch_lang, sizeof(x->switch_lang), "%s", langs[i]);
		unsigned h = count_hits(json_object_get(l, "detect"), t);
		if (h > best) {
			best = h;
			snprintf(x->lang, sizeof(x->lang), "%s", langs[i]);
		}
		/* The title of our "no calls" option is a choice, not a withdrawal. */
		if (!x->consent[0] && match_list(json_object_get(l, "withdraw"), t, NULL))
			x->withdraw = 1;
	}
	/* Fields in the detected language, else in every language. */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < N_LANGS; i++) {
			if ((pass == 0) != (x->lang[0] && strcmp(x->lang, langs[i]) == 0))
				continue;
			const json_t *l = lang_obj(r, langs[i]);
			if (!x->consent[0] && strcmp(asking, "consent") == 0) {
				for (int k = 0; k < 4 && !x->consent[0]; k++) {
					if (match_list(
					        json_object_get(json_object_get(l, "consent"),
					                        consent_ids[k]),
					        t, NULL))
						snprintf(x->consent, sizeof(x->consent), "%s",
						         consent_ids[k]);
				}
			}
			if (!x->destination[0])
				destination_of(l, t, text ? text : "",
				               strcmp(asking, "destination") == 0, x->destination,
				               sizeof(x->destination));
			if (!x->dates[0])
				dates_of(l, t, text ? text : "", strcmp(asking, "dates") == 0,
				         x->dates, sizeof(x->dates));
			if (!x->party)
				x->party = party_of(l, t, strcmp(asking, "party") == 0);
		}
	}
	if (strcmp(asking, "phone") == 0)
		phone_of(text ? text : "", x->phone, sizeof(x->phone));
	/* A bare "english please" is a switch, not an answer. */
	if (x->switch_lang[0] && strcmp(asking, "destination") == 0 &&
	    (find_word(t, "english") || find_word(t, "ingles") || find_word(t, "espanol") ||
	     find_word(t, "spanish")))
		x->destination[0] = '\0';
}

/* ---------------------------------------------------------------- hours */

int64_t wa_hours_next(const struct wa_hours *h, int64_t t)
{
	int64_t off = (int64_t)h->utc_offset_min * 60;
	int64_t local = t + off;
	int64_t day = local - ((local % 86400) + 86400) % 86400;
	int64_t m = (local - day) / 60;
	if (h->start_min >= h->end_min)
		return t; /* no window configured: any time */
	if (m < h->start_min)
		return day + (int64_t)h->start_min * 60 - off;
	if (m >= h->end_min)
		return day + 86400 + (int64_t)h->start_min * 60 - off;
	return t;
}

/* ---------------------------------------------------------------- the conversation */

static const char *prompt(const struct wa_rules *r, const char *lang, const char *key)
{
	const char *s =
	    json_string_value(json_object_get(json_object_get(lang_obj(r, lang), "prompts"), key));
	return s ? s : "";
}

/* Appends prompt text with {name} and {when} replaced. */
static void say(char *buf, size_t len, const char *tmpl, const char *name, const char *when)
{
	size_t o = strlen(buf);
	if (o && o + 1 < len)
		buf[o++] = ' ';
	for (const char *p = tmpl; *p && o + 1 < len; p++) {
		const char *v = NULL;
		if (strncmp(p, "{name}", 6) == 0)
			v = name;
		else if (strncmp(p, "{when}", 6) == 0)
			v = when;
		if (v) {
			int w = snprintf(buf + o, len - o, "%s%s", v == name && v[0] ? " " : "", v);
			o = w > 0 && (size_t)w < len - o ? o + (size_t)w : len - 1;
			p += 5;
			continue;
		}
		buf[o++] = *p;
	}
	buf[o] = '\0';
}

static const char *fstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static void iso(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The call window a consent names: [start, end) in Unix seconds. */
static void window_of(const char *consent, int64_t now, const struct wa_hours *h, int64_t *start,
                      int64_t *end)
{
	int64_t off = (int64_t)h->utc_offset_min * 60;
	int64_t local = now + off;
	int64_t day = local - ((local % 86400) + 86400) % 86400 - off; /* local midnight, UTC */
	if (strcmp(consent, "call_later") == 0) {
		*start = now + 2 * 3600;
		*end = day + (int64_t)h->end_min * 60;
	} else if (strcmp(consent, "call_tomorrow") == 0) {
		*start = day + 86400 + (int64_t)h->start_min * 60;
		*end = day + 86400 + (int64_t)h->end_min * 60;
	} else {
		*start = now;
		*end = now + 3600;
	}
	*start = wa_hours_next(h, *start);
	if (*end <= *start)
		*end = *start + 3600;
}

int wa_disc_step(const struct wa_rules *r, json_t *res, const char *state,
                 const struct wa_extract *x, const char *text, const char *phone, const char *name,
                 int64_t now, const struct wa_hours *h, const char *engine, struct wa_step *out)
{
	memset(out, 0, sizeof(*out));
	json_t *f = json_object_get(res, "fields");
	if (!json_is_object(f)) {
		f = json_object();
		if (!f || json_object_set_new(res, "fields", f))
			return -ENOMEM;
	}
	/* Language: an explicit switch wins, else the first detection sticks. */
	const char *lang = fstr(res, "lang");
	int switched = 0;
	if (x->switch_lang[0] && strcmp(x->switch_lang, lang) != 0) {
		lang = x->switch_lang;
		switched = 1;
	} else if (!lang[0]) {
		lang = x->lang[0] ? x->lang : r->default_lang;
	}
	char lg[3];
	snprintf(lg, sizeof(lg), "%s", lang);
	json_object_set_new(res, "lang", json_string(lg));
	json_object_set_new(res, "engine", json_string(engine));
	if (x->destination[0])
		json_object_set_new(f, "destination", json_string(x->destination));
	if (x->dates[0])
		json_object_set_new(f, "dates", json_string(x->dates));
	if (x->party)
		json_object_set_new(f, "party_size", json_integer(x->party));
	if (x->phone[0]) {
		json_object_set_new(f, "phone", json_string(x->phone));
		snprintf(out->phone, sizeof(out->phone), "%s", x->phone);
	}
	const char *ph = x->phone[0] ? x->phone : phone ? phone : "";
	char ts[32];
	iso(now, ts, sizeof(ts));
	struct wa_reply *rp = &out->reply;
	name = name ? name : "";

	if (x->withdraw) {
		json_object_set_new(res, "consent", json_false());
		json_object_set_new(res, "consent_at", json_string(ts));
		json_object_set_new(res, "consent_text", json_string(text ? text : ""));
		json_object_set_new(res, "window", json_string("none"));
		json_object_set_new(res, "intent", json_string("withdrawn"));
		snprintf(out->state, sizeof(out->state), "withdrawn");
		out->withdraw = 1;
		rp->kind = 1;
		say(rp->text, sizeof(rp->text), prompt(r, lg, "withdrawn"), name, "");
		goto score;
	}
	if (x->consent[0]) {
		int yes = strcmp(x->consent, "no_calls") != 0;
		json_object_set_new(res, "consent", json_boolean(yes));
		json_object_set_new(res, "consent_at", json_string(ts));
		json_object_set_new(res, "consent_text", json_string(text ? text : x->consent));
		json_object_set_new(res, "window", json_string(yes ? x->consent : "none"));
		if (yes) {
			int64_t s, e;
			char b1[32], b2[32];
			window_of(x->consent, now, h, &s, &e);
			iso(s, b1, sizeof(b1));
			iso(e, b2, sizeof(b2));
			json_object_set_new(res, "window_start", json_string(b1));
			json_object_set_new(res, "window_end", json_string(b2));
			json_object_set_new(res, "due", json_integer(s));
		}
	}
	/* After the end of the conversation only a withdrawal or a new consent changes it. */
	if ((!strcmp(state, "qualified") || !strcmp(state, "withdrawn") ||
	     !strcmp(state, "declined")) &&
	    !x->consent[0] && !switched) {
		snprintf(out->state, sizeof(out->state), "%s", state);
		goto score;
	}
	if (!strcmp(state, "new"))
		say(rp->text, sizeof(rp->text), prompt(r, lg, "greeting"), name, "");
	rp->kind = 1;
	const json_t *consent = json_object_get(res, "consent");
	if (!json_object_get(f, "destination")) {
		snprintf(out->state, sizeof(out->state), "destination");
		say(rp->text, sizeof(rp->text), prompt(r, lg, "ask_destination"), name, "");
	} else if (!json_object_get(f, "dates")) {
		snprintf(out->state, sizeof(out->state), "dates");
		say(rp->text, sizeof(rp->text), prompt(r, lg, "ask_dates"), name, "");
	} else if (!json_object_get(f, "party_size")) {
		snprintf(out->state, sizeof(out->state), "party");
		say(rp->text, sizeof(rp->text), prompt(r, lg, "ask_party"), name, "");
	} else if (!json_is_boolean(consent)) {
		snprintf(out->state, sizeof(out->state), "consent");
		say(rp->text, sizeof(rp->text), prompt(r, lg, "ask_consent"), name, "");
		rp->kind = 2;
		rp->n_opts = 4;
		snprintf(rp->button, sizeof(rp->button), "%s", prompt(r, lg, "consent_button"));
		const json_t *o =
		    json_object_get(json_object_get(lang_obj(r, lg), "prompts"), "options");
		for (int i = 0; i < 4; i++) {
			snprintf(rp->opt_id[i], sizeof(rp->opt_id[i]), "%s", consent_ids[i]);
			snprintf(rp->opt_title[i], sizeof(rp->opt_title[i]), "%s",
			         fstr(o, consent_ids[i]));
		}
	} else if (json_is_false(consent)) {
		snprintf(out->state, sizeof(out->state), "declined");
		out->withdraw = 1; /* "no calls": nothing pending may stay */
		say(rp->text, sizeof(rp->text), prompt(r, lg, "declined"), name, "");
	} else if (!ph[0]) {
		snprintf(out->state, sizeof(out->state), "phone");
		say(rp->text, sizeof(rp->text), prompt(r, lg, "ask_phone"), name, "");
	} else {
		snprintf(out->state, sizeof(out->state), "qualified");
		const char *win = fstr(res, "window");
		const json_t *whens =
		    json_object_get(json_object_get(lang_obj(r, lg), "prompts"), "when");
		const char *when = fstr(whens, win[0] ? win : "call_now");
		say(rp->text, sizeof(rp->text), prompt(r, lg, "confirm"), name, when);
		/* One button to take it back: "no calls" declines and cancels the job. */
		rp->kind = 3;
		rp->n_opts = 1;
		snprintf(rp->opt_id[0], sizeof(rp->opt_id[0]), "no_calls");
		snprintf(
		    rp->opt_title[0], sizeof(rp->opt_title[0]), "%s",
		    fstr(json_object_get(json_object_get(lang_obj(r, lg), "prompts"), "options"),
		         "no_calls"));
		out->qualify = 1;
		json_int_t due = json_integer_value(json_object_get(res, "due"));
		out->due_s = due > 0 ? due : wa_hours_next(h, now);
		if (!json_object_get(f, "phone"))
			json_object_set_new(f, "phone", json_string(ph));
	}
score:;
	/* Score: 0.2 per trip field, 0.3 for consent, 0.1 for a phone number. */
	double score = 0.2 * (json_object_get(f, "destination") != NULL) +
	               0.2 * (json_object_get(f, "dates") != NULL) +
	               0.2 * (json_object_get(f, "party_size") != NULL) +
	               0.3 * json_is_true(json_object_get(res, "consent")) + 0.1 * (ph[0] != '\0');
	json_object_set_new(res, "score", json_real((double)(long)(score * 100 + 0.5) / 100));
	const char *intent = x->withdraw                                      ? "withdrawn"
	                     : json_is_true(json_object_get(res, "consent"))  ? "call_back"
	                     : json_is_false(json_object_get(res, "consent")) ? "no_call"
	                     : json_object_size(f)                            ? "travel_inquiry"
	                                                                      : "unknown";
	json_object_set_new(res, "intent", json_string(intent));
	json_object_set_new(res, "state", json_string(out->state));
	return 0;
}
