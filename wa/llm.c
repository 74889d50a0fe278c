/* Discovery's optional LLM engine: an OpenAI-compatible chat-completions call asking for
 * a JSON object with the same fields as the rules engine. Any failure falls back. */
#include "wa/wa_int.h"

#include "core/strbuf.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define LLM_MAX_ANSWER (256u * 1024u)

static const char system_prompt[] =
    "You read one WhatsApp message from a travel lead and answer with a JSON object only: "
    "{\"lang\":\"es\"|\"en\", \"switch_lang\":\"es\"|\"en\"|null, \"withdraw\":bool, "
    "\"consent\":\"call_now\"|\"call_later\"|\"call_tomorrow\"|\"no_calls\"|null, "
    "\"destination\":string|null, \"dates\":string|null, \"party_size\":integer|null, "
    "\"phone\":string|null (E.164)}. withdraw is true when the person asks not to be called "
    "or to stop. Use null for anything the message does not say.";

static void put(char *dst, size_t len, const json_t *v)
{
	if (json_is_string(v))
		snprintf(dst, len, "%s", json_string_value(v));
}

int wa_llm_parse(const char *content, struct wa_extract *x)
{
	json_t *o = json_loads(content, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return -EINVAL;
	}
	memset(x, 0, sizeof(*x));
	const char *lang = json_string_value(json_object_get(o, "lang"));
	const char *sw = json_string_value(json_object_get(o, "switch_lang"));
	const char *c = json_string_value(json_object_get(o, "consent"));
	const json_t *party = json_object_get(o, "party_size");
	const json_t *wd = json_object_get(o, "withdraw");
	int rc = 0;
	if ((lang && strcmp(lang, "es") && strcmp(lang, "en")) ||
	    (sw && strcmp(sw, "es") && strcmp(sw, "en")) || (wd && !json_is_boolean(wd)) ||
	    (c && strcmp(c, "call_now") && strcmp(c, "call_later") && strcmp(c, "call_tomorrow") &&
	     strcmp(c, "no_calls")) ||
	    (!json_is_null(party) && party &&
	     (!json_is_integer(party) || json_integer_value(party) < 1 ||
	      json_integer_value(party) > 99)))
		rc = -EINVAL;
	if (rc == 0) {
		put(x->lang, sizeof(x->lang), json_object_get(o, "lang"));
		put(x->switch_lang, sizeof(x->switch_lang), json_object_get(o, "switch_lang"));
		put(x->consent, sizeof(x->consent), json_object_get(o, "consent"));
		put(x->destination, sizeof(x->destination), json_object_get(o, "destination"));
		put(x->dates, sizeof(x->dates), json_object_get(o, "dates"));
		const char *ph = json_string_value(json_object_get(o, "phone"));
		if (ph && ph[0] == '+' && strlen(ph) >= 9 && strlen(ph) <= 16)
			snprintf(x->phone, sizeof(x->phone), "%s", ph);
		x->withdraw = json_is_true(wd);
		x->party = json_is_integer(party) ? (int)json_integer_value(party) : 0;
	}
	json_decref(o);
	return rc;
}

int wa_llm_extract(const struct wa_llm *llm, const char *text, const char *asking,
                   struct wa_extract *x)
{
	if (!llm || !llm->url || !llm->url[0])
		return -ENOTSUP;
	char ctx[96];
	snprintf(ctx, sizeof(ctx), "The last question asked was: %s.", asking ? asking : "none");
	json_t *req = json_pack("{s:s, s:{s:s}, s:f, s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}]}",
	                        "model", llm->model ? llm->model : "", "response_format", "type",
	                        "json_object", "temperature", 0.0, "messages", "role", "system",
	                        "content", system_prompt, "role", "system", "content", ctx, "role",
	                        "user", "content", text ? text : "");
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body)
		return -ENOMEM;
	struct strbuf sb;
	str_init(&sb);
	int rc = -EIO;
	CURL *h = curl_easy_init();
	struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
	char auth[512];
	if (llm->key && llm->key[0]) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", llm->key);
		hd = curl_slist_append(hd, auth);
	}
	long code = 0;
	struct wa_answer ans = {&sb, LLM_MAX_ANSWER};
	if (h && hd) {
		curl_easy_setopt(h, CURLOPT_URL, llm->url);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
		                 (long)(llm->timeout_ms ? llm->timeout_ms : 5000));
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, wa_curl_answer);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &ans);
		CURLcode cc = curl_easy_perform(h);
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : cc != CURLE_OK ? -EIO : 0;
	}
	if (rc == 0 && code / 100 != 2)
		rc = -EIO;
	if (rc == 0) {
		json_t *a = json_loadb(sb.p ? sb.p : "", sb.len, 0, NULL);
		const char *content = json_string_value(json_object_get(
		    json_object_get(json_array_get(json_object_get(a, "choices"), 0), "message"),
		    "content"));
		rc = content ? wa_llm_parse(content, x) : -EINVAL;
		json_decref(a);
	}
	curl_slist_free_all(hd);
	if (h)
		curl_easy_cleanup(h);
	str_deinit(&sb);
	free(body);
	return rc;
}
