/* Media of inbound WhatsApp messages: the worker fetches each image, audio, video,
 * document or sticker from the Graph API (the media id -> its URL -> the bytes), checks
 * size and SHA-256, and keeps the file under <spool.dir>/wa-media/ (migration 012). */
#include "wa/wa_int.h"

#include "core/mem.h"
#include "core/metric.h"
#include "core/strbuf.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MOD "wa"

#define MEDIA_ROUND    4u /* messages per round: the worker also sends */
#define MEDIA_ROUND_S  "4"
#define META_MAX       (64u * 1024u) /* the media id's JSON answer */
#define MEDIA_ATTEMPTS 3             /* transient failures before giving up */
#define MEDIA_TIMEOUT  (60L * 1000L) /* ms, one download */
#define MEDIA_DIR      "wa-media"

/* Why a fetch failed: final (the media will never come: 404, too big, wrong hash) or
 * transient (network, 5xx, 429: tried again later). */
enum { FETCH_OK = 0, FETCH_FINAL = 1, FETCH_AGAIN = 2 };

#define MEDIA_RESCAN_S 10 /* pending media looked for at least this often (retries) */

static struct {
	CURL *curl;
	char dir[512];
	int kicked;    /* new media stored since the last round */
	time_t next_s; /* the next look without a kick */
	struct metric *m_stored, *m_failed, *m_retry;
} md;

/* One download in progress: the bytes go to the file and the digest as they come. */
struct dl {
	FILE *f;
	EVP_MD_CTX *ctx;
	uint64_t n, cap;
	int too_big, io_err;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct dl *d = arg;
	size_t n = size * nmemb;
	if (d->n + n > d->cap) {
		d->too_big = 1;
		return 0;
	}
	if (fwrite(data, 1, n, d->f) != n || EVP_DigestUpdate(d->ctx, data, n) != 1) {
		d->io_err = 1;
		return 0;
	}
	d->n += n;
	return n;
}

int wa_media_digest(const char *s, unsigned char out[32])
{
	size_t len = strlen(s);
	if (len == 64) {
		for (size_t i = 0; i < 32; i++) {
			unsigned v;
			if (sscanf(s + 2 * i, "%2x", &v) != 1)
				return -EINVAL;
			out[i] = (unsigned char)v;
		}
		return 0;
	}
	if (len != 44)
		return -EINVAL;
	unsigned char buf[48];
	if (EVP_DecodeBlock(buf, (const unsigned char *)s, 44) != 33 || s[43] != '=')
		return -EINVAL; /* 44 chars with one '=' pad: 32 bytes (+1 counted by OpenSSL) */
	memcpy(out, buf, 32);
	return 0;
}

const char *wa_media_ext(const char *mime)
{
	static const char *const map[][2] = {
	    {"audio/ogg", ".ogg"},  {"audio/mpeg", ".mp3"},      {"audio/mp4", ".m4a"},
	    {"audio/aac", ".aac"},  {"audio/amr", ".amr"},       {"image/jpeg", ".jpg"},
	    {"image/png", ".png"},  {"image/webp", ".webp"},     {"video/mp4", ".mp4"},
	    {"video/3gpp", ".3gp"}, {"application/pdf", ".pdf"}, {"text/plain", ".txt"},
	};
	for (size_t i = 0; mime && i < sizeof(map) / sizeof(map[0]); i++)
		if (strncmp(mime, map[i][0], strlen(map[i][0])) == 0)
			return map[i][1];
	return ".bin";
}

/* GET url with the bearer token into sb (JSON) or d (bytes). *http = the status. */
static CURLcode get(const char *url, struct strbuf *sb, struct dl *d, long *http)
{
	char auth[1024];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", wa_g.cfg.access_token);
	struct curl_slist *hd = curl_slist_append(NULL, auth);
	if (!hd)
		return CURLE_OUT_OF_MEMORY;
	curl_easy_reset(md.curl);
	curl_easy_setopt(md.curl, CURLOPT_URL, url);
	curl_easy_setopt(md.curl, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(md.curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(md.curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(md.curl, CURLOPT_FOLLOWLOCATION, 1L); /* curl drops the token on */
	curl_easy_setopt(md.curl, CURLOPT_MAXREDIRS, 3L);      /* another host */
	curl_easy_setopt(md.curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	struct wa_answer ans = {sb, META_MAX};
	if (d) {
		curl_easy_setopt(md.curl, CURLOPT_TIMEOUT_MS, MEDIA_TIMEOUT);
		curl_easy_setopt(md.curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)d->cap);
		curl_easy_setopt(md.curl, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(md.curl, CURLOPT_WRITEDATA, d);
	} else {
		curl_easy_setopt(md.curl, CURLOPT_TIMEOUT_MS, (long)wa_g.cfg.send_timeout_ms);
		curl_easy_setopt(md.curl, CURLOPT_WRITEFUNCTION, wa_curl_answer);
		curl_easy_setopt(md.curl, CURLOPT_WRITEDATA, &ans);
	}
	CURLcode cc = curl_easy_perform(md.curl);
	*http = 0;
	curl_easy_getinfo(md.curl, CURLINFO_RESPONSE_CODE, http);
	curl_slist_free_all(hd);
	return cc;
}

static int transient_http(long http)
{
	return http == 0 || http == 429 || http >= 500;
}

/* What one media id resolves to (the Graph API answer). */
struct meta {
	char url[2048];
	char mime[128];
	char sha[96]; /* as given, "" = none */
	int64_t size; /* -1 = not given */
};

/* Step 1: GET {graph_url}/{media_id}. FETCH_*, why filled on failure. */
static int resolve(const char *media_id, struct meta *mt, char *why, size_t wl)
{
	char url[1024];
	if (snprintf(url, sizeof(url), "%s/%s", wa_g.cfg.graph_url, media_id) >= (int)sizeof(url)) {
		snprintf(why, wl, "media id too long");
		return FETCH_FINAL;
	}
	struct strbuf sb;
	str_init(&sb);
	long http;
	CURLcode cc = get(url, &sb, NULL, &http);
	json_t *a = cc == CURLE_OK ? json_loadb(sb.p ? sb.p : "", sb.len, 0, NULL) : NULL;
	str_deinit(&sb);
	int rc = FETCH_OK;
	const json_t *err = json_object_get(a, "error");
	if (cc != CURLE_OK) {
		snprintf(why, wl, "GET media %s: %s", media_id, curl_easy_strerror(cc));
		rc = FETCH_AGAIN;
	} else if (http / 100 != 2 || err) {
		const char *msg = json_string_value(json_object_get(err, "message"));
		snprintf(why, wl, "GET media %s: HTTP %ld, code %" JSON_INTEGER_FORMAT " %s",
		         media_id, http, json_integer_value(json_object_get(err, "code")),
		         msg ? msg : "");
		rc = transient_http(http) ? FETCH_AGAIN : FETCH_FINAL;
	} else if (!json_string_value(json_object_get(a, "url"))) {
		snprintf(why, wl, "GET media %s: the answer has no url", media_id);
		rc = FETCH_FINAL;
	} else {
		snprintf(mt->url, sizeof(mt->url), "%s",
		         json_string_value(json_object_get(a, "url")));
		const char *m = json_string_value(json_object_get(a, "mime_type"));
		if (m)
			snprintf(mt->mime, sizeof(mt->mime), "%s", m);
		const char *h = json_string_value(json_object_get(a, "sha256"));
		if (h && !mt->sha[0])
			snprintf(mt->sha, sizeof(mt->sha), "%s", h);
		const json_t *fs = json_object_get(a, "file_size"); /* a number or a string */
		if (json_is_integer(fs))
			mt->size = (int64_t)json_integer_value(fs);
		else if (json_string_value(fs))
			mt->size = strtoll(json_string_value(fs), NULL, 10);
	}
	json_decref(a);
	return rc;
}

/* Step 2: the bytes, into path (via path.part, fsync'd, renamed). */
static int download(const struct meta *mt, const char *path, const unsigned char want[32],
                    int check, char sha_hex[65], uint64_t *size, char *why, size_t wl)
{
	char part[720];
	snprintf(part, sizeof(part), "%s.part", path);
	struct dl d = {.cap = wa_g.cfg.media_max_bytes};
	d.f = fopen(part, "wb");
	d.ctx = EVP_MD_CTX_new();
	if (!d.f || !d.ctx || EVP_DigestInit_ex(d.ctx, EVP_sha256(), NULL) != 1) {
		snprintf(why, wl, "cannot write %.300s: %s", part,
		         d.f ? "no digest" : strerror(errno));
		if (d.f)
			fclose(d.f);
		EVP_MD_CTX_free(d.ctx);
		unlink(part);
		return FETCH_AGAIN;
	}
	long http;
	CURLcode cc = get(mt->url, NULL, &d, &http);
	unsigned char got[32];
	unsigned gl = 0;
	EVP_DigestFinal_ex(d.ctx, got, &gl);
	EVP_MD_CTX_free(d.ctx);
	int rc = FETCH_OK;
	if (fflush(d.f) != 0 || fsync(fileno(d.f)) != 0)
		d.io_err = 1;
	fclose(d.f);
	if (d.too_big || cc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(why, wl, "too big: more than media_max_bytes (%u)",
		         wa_g.cfg.media_max_bytes);
		rc = FETCH_FINAL;
	} else if (d.io_err) {
		snprintf(why, wl, "cannot write %.300s: %s", part, strerror(errno));
		rc = FETCH_AGAIN;
	} else if (cc != CURLE_OK) {
		snprintf(why, wl, "download: %s", curl_easy_strerror(cc));
		rc = FETCH_AGAIN;
	} else if (http / 100 != 2) {
		snprintf(why, wl, "download: HTTP %ld", http);
		rc = transient_http(http) ? FETCH_AGAIN : FETCH_FINAL;
	}
	for (unsigned i = 0; i < 32; i++)
		snprintf(sha_hex + 2 * i, 3, "%02x", got[i]);
	if (rc == FETCH_OK && check && memcmp(got, want, 32) != 0) {
		snprintf(why, wl, "sha256 mismatch: Meta says %s, the bytes are %s", mt->sha,
		         sha_hex);
		rc = FETCH_FINAL;
	}
	if (rc == FETCH_OK && rename(part, path) != 0) {
		snprintf(why, wl, "rename to %.300s: %s", path, strerror(errno));
		rc = FETCH_AGAIN;
	}
	if (rc != FETCH_OK)
		unlink(part);
	*size = d.n;
	return rc;
}

static const char STORED_SQL[] =
    "UPDATE whatsapp_messages SET media_status = 'stored', media_path = $2, media_mime = $3,"
    " media_size = $4::bigint, media_sha256 = $5, media_error = NULL,"
    " media_attempts = media_attempts + 1, media_retry_at = NULL WHERE id = $1::bigint";
/* A final failure, or the last of MEDIA_ATTEMPTS transient ones: failed; else tried again
 * after 30 s, 60 s, ... */
static const char FAILED_SQL[] =
    "UPDATE whatsapp_messages SET media_status = CASE WHEN $3::boolean OR media_attempts + 1"
    " >= $4::integer THEN 'failed' ELSE 'pending' END, media_error = $2,"
    " media_attempts = media_attempts + 1,"
    " media_retry_at = now() + interval '30 seconds' * power(2, media_attempts)"
    " WHERE id = $1::bigint RETURNING media_status";

/* One message's media. 0, or -errno when PostgreSQL could not be told (stop the round). */
static int fetch_one(const json_t *r)
{
	const char *id = json_string_value(json_object_get(r, "id"));
	const char *wamid = json_string_value(json_object_get(r, "wamid"));
	const char *mid = json_string_value(json_object_get(r, "media_id"));
	const char *type = json_string_value(json_object_get(r, "type"));
	const json_t *obj = json_object_get(json_object_get(r, "payload"), type ? type : "");
	struct meta mt = {.size = -1};
	char why[600] = "", path[700] = "", sha_hex[65] = "";
	uint64_t size = 0;
	const char *h = json_string_value(json_object_get(obj, "sha256"));
	if (h) /* the webhook's hash first: it came signed with the message */
		snprintf(mt.sha, sizeof(mt.sha), "%s", h);
	int rc = resolve(mid, &mt, why, sizeof(why));
	if (!mt.mime[0] && json_string_value(json_object_get(obj, "mime_type")))
		snprintf(mt.mime, sizeof(mt.mime), "%s",
		         json_string_value(json_object_get(obj, "mime_type")));
	unsigned char want[32];
	int check = 0;
	if (rc == FETCH_OK && mt.sha[0]) {
		if (wa_media_digest(mt.sha, want) < 0) {
			snprintf(why, sizeof(why), "sha256 %.64s is neither hex nor base64",
			         mt.sha);
			rc = FETCH_FINAL;
		}
		check = 1;
	}
	if (rc == FETCH_OK && mt.size > (int64_t)wa_g.cfg.media_max_bytes) {
		snprintf(why, sizeof(why), "too big: file_size %" PRId64 " > media_max_bytes (%u)",
		         mt.size, wa_g.cfg.media_max_bytes);
		rc = FETCH_FINAL;
	}
	if (rc == FETCH_OK) {
		char name[160];
		size_t k = 0;
		for (const char *p = mid; *p && k < 120; p++, k++)
			name[k] = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'
			              ? *p
			              : '_';
		name[k] = '\0';
		if (snprintf(path, sizeof(path), "%s/%s%s", md.dir, name, wa_media_ext(mt.mime)) >=
		    (int)sizeof(path)) {
			snprintf(why, sizeof(why), "the media path is too long");
			rc = FETCH_FINAL;
		} else {
			rc = download(&mt, path, want, check, sha_hex, &size, why, sizeof(why));
		}
	}
	int qrc;
	if (rc == FETCH_OK) {
		char sz[24];
		snprintf(sz, sizeof(sz), "%" PRIu64, size);
		const char *p[] = {id, path, mt.mime[0] ? mt.mime : NULL, sz, sha_hex};
		qrc = wa_sql(STORED_SQL, p, 5, NULL);
		metric_inc(md.m_stored);
		log_info(MOD, "message %s: media %s stored: %s (%s, %" PRIu64 " bytes)", wamid, mid,
		         path, mt.mime[0] ? mt.mime : "?", size);
	} else {
		char att[8];
		snprintf(att, sizeof(att), "%d", MEDIA_ATTEMPTS);
		const char *p[] = {id, why, rc == FETCH_FINAL ? "true" : "false", att};
		json_t *rows = NULL;
		qrc = wa_sql(FAILED_SQL, p, 4, &rows);
		const char *st =
		    json_string_value(json_object_get(json_array_get(rows, 0), "media_status"));
		int failed = st && strcmp(st, "failed") == 0;
		metric_inc(failed ? md.m_failed : md.m_retry);
		if (failed)
			log_err(MOD, "message %s: media %s not fetched: %s", wamid, mid, why);
		else
			log_warn(MOD, "message %s: media %s not fetched yet (will retry): %s",
			         wamid, mid, why);
		json_decref(rows);
	}
	return qrc < 0 ? qrc : 0;
}

void wa_media_round(void)
{
	static const char sql[] =
	    "SELECT id::text AS id, wamid, media_id, type, payload FROM whatsapp_messages"
	    " WHERE media_status = 'pending' AND (media_retry_at IS NULL OR media_retry_at <="
	    " now()) ORDER BY id LIMIT " MEDIA_ROUND_S;
	time_t now = time(NULL);
	if (!md.curl || (!md.kicked && now < md.next_s))
		return;
	json_t *rows = NULL;
	if (wa_sql(sql, NULL, 0, &rows) < 0)
		return;
	md.kicked = 0;
	md.next_s = now + MEDIA_RESCAN_S;
	size_t i;
	const json_t *r;
	json_array_foreach(rows, i, r)
	{
		if (wa_g.stop || fetch_one(r) < 0)
			break;
	}
	if (json_array_size(rows) == MEDIA_ROUND) {
		md.kicked = 1; /* more waiting: come back after the sends */
		wa_wake();
	}
	json_decref(rows);
}

int wa_media_init(void)
{
	const struct wa_config *c = &wa_g.cfg;
	if (!c->media_max_bytes || !c->access_token || !c->access_token[0] || !c->spool_dir ||
	    !c->spool_dir[0])
		return 0;
	if (snprintf(md.dir, sizeof(md.dir), "%s/" MEDIA_DIR, c->spool_dir) >= (int)sizeof(md.dir))
		return -ENAMETOOLONG;
	if (mkdir(md.dir, 0750) < 0 && errno != EEXIST) {
		int rc = -errno;
		log_err(MOD, "media directory %s: %s", md.dir, strerror(errno));
		return rc;
	}
	md.curl = curl_easy_init();
	if (!md.curl)
		return -ENOMEM;
	static const char h[] = "inbound WhatsApp media fetched, by result";
	md.m_stored = metric_get(METRIC_COUNTER, "vacs_wa_media_total{result=\"stored\"}", h);
	md.m_failed = metric_get(METRIC_COUNTER, "vacs_wa_media_total{result=\"failed\"}", h);
	md.m_retry = metric_get(METRIC_COUNTER, "vacs_wa_media_total{result=\"retry\"}", h);
	return 0;
}

void wa_media_kick(const char *type)
{
	static const char *const kinds[] = {"image", "audio", "video", "document", "sticker"};
	for (size_t i = 0; type && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(type, kinds[i]) == 0)
			md.kicked = 1;
}

int wa_media_on(void)
{
	return md.curl != NULL;
}

void wa_media_close(void)
{
	if (md.curl)
		curl_easy_cleanup(md.curl);
	md.curl = NULL;
}
