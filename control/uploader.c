/* The recordings uploader: follows recordings.jsonl on the out thread, PUTs each closed
 * file to S3 with SigV4, then records it (recordings row, s3-uploaded.jsonl). */
#include "control/uploader.h"

#include "control/outbound.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/metric.h"
#include "core/strbuf.h"

#include "db/db.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Durability: recordings.jsonl (written by the sip thread, fsync'd) is the list of files
 * to upload; s3-uploaded.jsonl (written here, fsync'd) the list of those done. At start
 * the second is loaded and the first read from its beginning, so a file whose upload or
 * row did not complete before a stop is uploaded again: the same key and bytes, so the PUT
 * is idempotent and the row an upsert. A file is done once its object exists and, with
 * PostgreSQL, its row is committed.
 */

struct job {
	struct job *next;
	char *call_id, *path, *closed, *key, *url;
	char sha256[65];
	long long size;
	unsigned attempt;
	unsigned db_tries;
	struct ctl_out *r;
};

static struct {
	int on;
	struct ctl_s3_config cfg;
	char *endpoint, *region, *bucket, *access_key, *secret_key, *spool_dir, *sigv4;
	char **done; /* "call_id\npath", out thread */
	size_t n_done, cap_done;
	struct job *jobs; /* started and not finished */
	size_t n_jobs;
	off_t offset; /* of recordings.jsonl read so far */
	struct metric *m_ok, *m_failed, *m_errors, *m_retries, *m_bytes, *m_pending;
} up;

char *ctl_s3_key(const char *call_id, const char *path, const char *closed)
{
	if (!call_id || !path || !closed || strlen(closed) < 10 || closed[4] != '-' ||
	    closed[7] != '-')
		return NULL;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (closed[i] < '0' || closed[i] > '9'))
			return NULL;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (!base[0] || !call_id[0])
		return NULL;
	struct strbuf sb;
	str_init(&sb);
	str_printf(&sb, "recordings/%.4s/%.2s/%.2s/", closed, closed + 5, closed + 8);
	size_t start = sb.len;
	str_puts(&sb, call_id);
	str_puts(&sb, "/");
	size_t mid = sb.len;
	str_puts(&sb, base);
	if (sb.oom) {
		str_deinit(&sb);
		return NULL;
	}
	for (size_t i = start; i < sb.len; i++) {
		char c = sb.p[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
		         (i == mid - 1 && c == '/');
		if (!ok)
			sb.p[i] = '_';
	}
	/* "." and ".." segments would be normalised away by the client or the server. */
	if (sb.p[start] == '.')
		sb.p[start] = '_';
	if (sb.p[mid] == '.')
		sb.p[mid] = '_';
	return str_steal(&sb);
}

/* ---- the done set: "call_id\npath" strings in an open-addressing hash table ---- */

/* FNV-1a of a (alen bytes), '\n', b: the key "call_id\npath" without building it. */
static uint64_t fnv1a(const char *a, size_t alen, const char *b)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < alen; i++)
		h = (h ^ (unsigned char)a[i]) * 1099511628211ull;
	h = (h ^ '\n') * 1099511628211ull;
	for (const char *p = b; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h;
}

static int key_is(const char *k, const char *call_id, const char *path)
{
	size_t a = strlen(call_id);
	return strncmp(k, call_id, a) == 0 && k[a] == '\n' && strcmp(k + a + 1, path) == 0;
}

static int is_done(const char *call_id, const char *path)
{
	if (!up.cap_done)
		return 0;
	size_t mask = up.cap_done - 1;
	for (size_t i = fnv1a(call_id, strlen(call_id), path) & mask; up.done[i];
	     i = (i + 1) & mask)
		if (key_is(up.done[i], call_id, path))
			return 1;
	return 0;
}

static void done_put(char **tab, size_t cap, char *k)
{
	const char *nl = strchr(k, '\n');
	size_t mask = cap - 1, i;
	for (i = fnv1a(k, (size_t)(nl - k), nl + 1) & mask; tab[i]; i = (i + 1) & mask) {
	}
	tab[i] = k;
}

static int done_add(const char *call_id, const char *path)
{
	if (is_done(call_id, path))
		return 0;
	if (2 * (up.n_done + 1) > up.cap_done) { /* load factor at most 1/2 */
		size_t cap = up.cap_done ? 2 * up.cap_done : 256;
		char **tab = mem_zalloc(cap * sizeof(*tab));
		if (!tab)
			return -ENOMEM;
		for (size_t i = 0; i < up.cap_done; i++)
			if (up.done[i])
				done_put(tab, cap, up.done[i]);
		mem_free(up.done);
		up.done = tab;
		up.cap_done = cap;
	}
	size_t a = strlen(call_id), b = strlen(path);
	char *k = mem_alloc(a + b + 2);
	if (!k)
		return -ENOMEM;
	memcpy(k, call_id, a);
	k[a] = '\n';
	memcpy(k + a + 1, path, b + 1);
	done_put(up.done, up.cap_done, k);
	up.n_done++;
	return 0;
}

static int is_started(const char *call_id, const char *path)
{
	for (struct job *j = up.jobs; j; j = j->next)
		if (strcmp(j->call_id, call_id) == 0 && strcmp(j->path, path) == 0)
			return 1;
	return 0;
}

static void load_done(void)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/s3-uploaded.jsonl", up.spool_dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		json_t *o = json_loads(line, 0, NULL);
		const char *c = json_string_value(json_object_get(o, "call_id"));
		const char *p = json_string_value(json_object_get(o, "path"));
		if (c && p)
			done_add(c, p);
		json_decref(o);
	}
	free(line);
	fclose(f);
}

/* ---- jobs ---- */

static void job_free(struct job *j)
{
	struct job **pp = &up.jobs;
	while (*pp && *pp != j)
		pp = &(*pp)->next;
	if (*pp)
		*pp = j->next;
	ctl_out_destroy(j->r);
	mem_free(j->call_id);
	mem_free(j->path);
	mem_free(j->closed);
	mem_free(j->key);
	mem_free(j->url);
	mem_free(j);
	metric_set(up.m_pending, (int64_t)--up.n_jobs);
}

static int file_sha256(const char *path, char out[65], long long *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int rc = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
	long long total = 0;
	char buf[65536];
	while (!rc) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		total += n;
		if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
			rc = -EIO;
	}
	unsigned char md[32];
	unsigned len = 0;
	if (!rc && EVP_DigestFinal_ex(ctx, md, &len) != 1)
		rc = -EIO;
	EVP_MD_CTX_free(ctx);
	close(fd);
	if (rc)
		return rc;
	for (unsigned i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
	*size = total;
	return 0;
}

static void put_start(void *arg);

static unsigned backoff(unsigned n)
{
	unsigned d = up.cfg.backoff_ms;
	for (unsigned i = 1; i < n && d < up.cfg.backoff_max_ms; i++)
		d *= 2;
	return d > up.cfg.backoff_max_ms ? up.cfg.backoff_max_ms : d;
}

/* The object and its row exist: remember it, drop the file if asked. */
static void job_done(void *arg)
{
	struct job *j = arg;
	char path[1024];
	snprintf(path, sizeof(path), "%s/s3-uploaded.jsonl", up.spool_dir);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "call_id", j->call_id, "path",
	                      j->path, "bucket", up.bucket, "key", j->key, "sha256", j->sha256,
	                      "bytes", (json_int_t)j->size);
	char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0 || !line || dprintf(fd, "%s\n", line) < 0 || fsync(fd) < 0)
		log_err("s3",
		        "cannot append to %s: %s (the file will be uploaded again at the next "
		        "start)",
		        path, line ? strerror(errno) : "no memory");
	if (fd >= 0)
		close(fd);
	free(line);
	done_add(j->call_id, j->path);
	metric_inc(up.m_ok);
	metric_add(up.m_bytes, (uint64_t)j->size);
	log_info("s3", "%s uploaded to s3://%s/%s (%lld bytes, sha256 %s)", j->path, up.bucket,
	         j->key, j->size, j->sha256);
	if (up.cfg.delete_after_upload && unlink(j->path) < 0)
		log_warn("s3", "cannot remove %s after its upload: %s", j->path, strerror(errno));
	job_free(j);
}

static void row_write(void *arg);

static void row_retry(void *arg)
{
	struct job *j = arg;
	if (ctl_out_stopping()) {
		job_free(j);
		return;
	}
	row_write(j);
}

static void on_row_back(void *arg)
{
	struct job *j = arg;
	if (ctl_out_stopping()) {
		job_free(j);
		return;
	}
	unsigned d = backoff(++j->db_tries);
	if (ctl_out_later(row_retry, j, d))
		job_free(j);
}

static void on_row(void *arg, int rc, json_t *rows)
{
	struct job *j = arg;
	json_decref(rows);
	if (rc && rc != -ECANCELED)
		log_warn("s3", "recordings row for %s not written: %s; retrying", j->key,
		         strerror(-rc));
	/* Back to the out thread. When it has stopped (db_close runs after ctl_out_close),
	 * nothing else touches the jobs: free it here; the next start uploads it again. */
	for (int i = 0; i < 200; i++) {
		int e = ctl_out_run(rc ? on_row_back : job_done, j);
		if (e == 0)
			return;
		if (e == -ENOTCONN) {
			job_free(j);
			return;
		}
		usleep(10000); /* the mailbox is full: the out thread is busy for a moment */
	}
	log_err("s3", "%s: the out thread's queue stays full; uploaded again at the next start",
	        j->key);
}

static void row_write(void *arg)
{
	struct job *j = arg;
	if (!up.cfg.use_db) {
		job_done(j);
		return;
	}
	char size[24];
	snprintf(size, sizeof(size), "%lld", j->size);
	const char *p[] = {j->call_id, j->path, size, j->closed, up.bucket, j->key, j->sha256};
	static const char sql[] =
	    "INSERT INTO recordings (call_id, path, bytes, result, closed_at, s3_bucket, s3_key,"
	    " uploaded_at, sha256) VALUES ($1, $2, $3::bigint, 0, $4::timestamptz, $5, $6, now(),"
	    " $7) ON CONFLICT (call_id, path) DO UPDATE SET bytes = EXCLUDED.bytes, s3_bucket ="
	    " EXCLUDED.s3_bucket, s3_key = EXCLUDED.s3_key, uploaded_at = EXCLUDED.uploaded_at,"
	    " sha256 = EXCLUDED.sha256, upload_error = NULL";
	int rc = db_query(sql, p, 7, on_row, j);
	if (rc)
		on_row_back(j);
}

/* "<Code>X</Code>" of an S3 error answer, else "". */
static void s3_code(const char *body, char *out, size_t len)
{
	const char *a = strstr(body, "<Code>"), *b = a ? strstr(a, "</Code>") : NULL;
	out[0] = '\0';
	if (a && b && (size_t)(b - a - 6) < len)
		snprintf(out, len, ": %.*s", (int)(b - a - 6), a + 6);
}

static void on_put(void *arg, struct ctl_out *r, long status, int err, const char *text)
{
	struct job *j = arg;
	if (err == -ECANCELED || ctl_out_stopping()) {
		job_free(j);
		return;
	}
	if (!err && status >= 200 && status < 300) {
		ctl_out_destroy(r);
		j->r = NULL;
		row_write(j);
		return;
	}
	char code[96];
	s3_code(ctl_out_response(r, NULL), code, sizeof(code));
	metric_inc(up.m_errors);
	if (j->attempt >= up.cfg.attempts) {
		metric_inc(up.m_failed);
		log_err("s3",
		        "upload of %s to s3://%s/%s failed %u times (last: %s%s); it is tried "
		        "again at the next start",
		        j->path, up.bucket, j->key, j->attempt, text, code);
		job_free(j);
		return;
	}
	unsigned d = backoff(j->attempt);
	metric_inc(up.m_retries);
	log_warn("s3", "upload of %s (attempt %u/%u) failed: %s%s; next in %u ms", j->path,
	         j->attempt, up.cfg.attempts, text, code, d);
	if (ctl_out_later(put_start, j, d))
		job_free(j);
}

static void put_start(void *arg)
{
	struct job *j = arg;
	if (ctl_out_stopping()) {
		job_free(j);
		return;
	}
	j->attempt++;
	if (!j->r) {
		char h[128];
		const char *dot = strrchr(j->path, '.');
		j->r = ctl_out_create("PUT", j->url);
		snprintf(h, sizeof(h), "x-amz-content-sha256: %s", j->sha256);
		if (!j->r || ctl_out_header(j->r, h) ||
		    ctl_out_header(j->r, dot && strcmp(dot, ".wav") == 0
		                             ? "Content-Type: audio/wav"
		                             : "Content-Type: "
		                               "application/octet-stream") ||
		    ctl_out_header(j->r, "Expect:") || ctl_out_file(j->r, j->path) ||
		    ctl_out_sigv4(j->r, up.sigv4, up.access_key, up.secret_key)) {
			log_err("s3", "%s: out of memory", j->path);
			job_free(j);
			return;
		}
		ctl_out_timeout(j->r, up.cfg.timeout_ms);
	}
	int rc = ctl_out_send(j->r, on_put, j);
	if (rc) {
		if (rc != -ESHUTDOWN)
			log_err("s3", "cannot upload %s: %s", j->path, strerror(-rc));
		job_free(j);
	}
}

static char *object_url(const char *key)
{
	struct strbuf sb;
	str_init(&sb);
	if (up.cfg.path_style) {
		str_printf(&sb, "%s/%s/%s", up.endpoint, up.bucket, key);
	} else {
		const char *host = strstr(up.endpoint, "://");
		host = host ? host + 3 : up.endpoint;
		str_printf(&sb, "%.*s%s.%s/%s", (int)(host - up.endpoint), up.endpoint, up.bucket,
		           host, key);
	}
	return sb.oom ? (str_deinit(&sb), NULL) : str_steal(&sb);
}

/* RFC 3986 encoding of SigV4: unreserved characters as they are, '/' kept when slash. */
static void uri_encode(struct strbuf *sb, const char *s, int slash)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~' || (slash && c == '/'))
			str_append(sb, (const char *)&c, 1);
		else
			str_printf(sb, "%%%02X", c);
	}
}

static void hex(const unsigned char *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int hmac256(const void *k, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned int len = 32;
	return HMAC(EVP_sha256(), k, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len)
	           ? 0
	           : -EIO;
}

char *ctl_s3_presign_url(const char *endpoint, int path_style, const char *region,
                         const char *access_key, const char *secret_key, const char *bucket,
                         const char *key, long long now, unsigned expires_s)
{
	if (!endpoint || !region || !access_key || !secret_key || !bucket || !bucket[0] || !key ||
	    !key[0] || !expires_s || expires_s > 604800)
		return NULL;
	const char *sep = strstr(endpoint, "://");
	const char *host = sep ? sep + 3 : endpoint;
	size_t hlen = strcspn(host, "/");
	time_t t = (time_t)now;
	struct tm tm;
	char amz[17], day[9], buf[256];
	if (!hlen || !gmtime_r(&t, &tm) || !strftime(amz, sizeof(amz), "%Y%m%dT%H%M%SZ", &tm))
		return NULL;
	memcpy(day, amz, 8);
	day[8] = '\0';

	struct strbuf uri, q, creq, url;
	char *ret = NULL;
	str_init(&uri);
	str_init(&q);
	str_init(&creq);
	str_init(&url);
	str_puts(&uri, "/");
	if (path_style) {
		uri_encode(&uri, bucket, 0);
		str_puts(&uri, "/");
	}
	uri_encode(&uri, key, 1);
	/* The query in canonical order (the names sorted), the signature appended last. */
	str_puts(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
	snprintf(buf, sizeof(buf), "%s/%s/%s/s3/aws4_request", access_key, day, region);
	uri_encode(&q, buf, 0);
	str_printf(&q, "&X-Amz-Date=%s&X-Amz-Expires=%u&X-Amz-SignedHeaders=host", amz, expires_s);
	str_printf(&creq, "GET\n%s\n%s\nhost:", uri.p ? uri.p : "", q.p ? q.p : "");
	if (!path_style) {
		str_puts(&creq, bucket);
		str_puts(&creq, ".");
	}
	str_printf(&creq, "%.*s\n\nhost\nUNSIGNED-PAYLOAD", (int)hlen, host);
	if (uri.oom || q.oom || creq.oom)
		goto out;

	unsigned char d[32], k[32];
	char dh[65], sig[65];
	SHA256((const unsigned char *)creq.p, creq.len, d);
	hex(d, 32, dh);
	char *sts = NULL;
	struct strbuf s;
	str_init(&s);
	str_printf(&s, "AWS4-HMAC-SHA256\n%s\n%s/%s/s3/aws4_request\n%s", amz, day, region, dh);
	str_printf(&url, "AWS4%s", secret_key);
	sts = s.oom ? NULL : s.p;
	if (!sts || url.oom || hmac256(url.p, url.len, day, k) || hmac256(k, 32, region, k) ||
	    hmac256(k, 32, "s3", k) || hmac256(k, 32, "aws4_request", k) ||
	    hmac256(k, 32, sts, d)) {
		str_deinit(&s);
		goto out;
	}
	str_deinit(&s);
	hex(d, 32, sig);
	OPENSSL_cleanse(k, sizeof(k));
	str_reset(&url);
	if (path_style)
		str_printf(&url, "%s%s?%s&X-Amz-Signature=%s", endpoint, uri.p, q.p, sig);
	else
		str_printf(&url, "%.*s%s.%s%s?%s&X-Amz-Signature=%s", (int)(host - endpoint),
		           endpoint, bucket, host, uri.p, q.p, sig);
	if (!url.oom)
		ret = str_steal(&url);
out:
	str_deinit(&uri);
	str_deinit(&q);
	str_deinit(&creq);
	str_deinit(&url);
	return ret;
}

const char *ctl_s3_bucket(void)
{
	return up.on ? up.bucket : NULL;
}

char *ctl_s3_bucket_url(void)
{
	return up.on ? object_url("") : NULL;
}

/* SHA-256 of an empty payload, as SigV4 wants it for a request without a body. */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct ctl_out *ctl_s3_head_bucket(void)
{
	char *url = ctl_s3_bucket_url();
	struct ctl_out *r = url ? ctl_out_create("HEAD", url) : NULL;
	mem_free(url);
	if (r && (ctl_out_header(r, "x-amz-content-sha256: " EMPTY_SHA256) ||
	          ctl_out_sigv4(r, up.sigv4, up.access_key, up.secret_key))) {
		ctl_out_destroy(r);
		r = NULL;
	}
	return r;
}

char *ctl_s3_presign(const char *bucket, const char *key, unsigned expires_s)
{
	if (!up.endpoint)
		return NULL;
	return ctl_s3_presign_url(up.endpoint, up.cfg.path_style, up.region, up.access_key,
	                          up.secret_key, bucket, key, (long long)time(NULL), expires_s);
}

static void line_take(const char *line)
{
	json_t *o = json_loads(line, 0, NULL);
	const char *c = json_string_value(json_object_get(o, "call_id"));
	const char *p = json_string_value(json_object_get(o, "path"));
	const char *closed = json_string_value(json_object_get(o, "closed"));
	json_int_t result = json_integer_value(json_object_get(o, "result"));
	struct job *j = NULL;
	if (!c || !p || !closed) {
		log_warn("s3", "recordings.jsonl: a line without call_id, path or closed: skipped");
		goto out;
	}
	if (result != 0 || is_done(c, p) || is_started(c, p))
		goto out;
	j = mem_zalloc(sizeof(*j));
	if (!j)
		goto out;
	j->call_id = mem_strdup(c);
	j->path = mem_strdup(p);
	j->closed = mem_strdup(closed);
	j->key = ctl_s3_key(c, p, closed);
	j->url = j->key ? object_url(j->key) : NULL;
	metric_set(up.m_pending, (int64_t)++up.n_jobs);
	j->next = up.jobs;
	up.jobs = j;
	if (!j->call_id || !j->path || !j->closed || !j->key || !j->url) {
		log_err("s3", "%s: cannot name its object (closed \"%s\")", p, closed);
		job_free(j);
		goto out;
	}
	int rc = file_sha256(p, j->sha256, &j->size);
	if (rc) {
		log_warn("s3", "%s: %s: not uploaded", p, strerror(-rc));
		job_free(j);
		goto out;
	}
	put_start(j);
out:
	json_decref(o);
}

/* The tick: new complete lines of recordings.jsonl. */
static void scan(void *arg)
{
	(void)arg;
	if (ctl_out_stopping())
		return;
	char path[1024];
	snprintf(path, sizeof(path), "%s/recordings.jsonl", up.spool_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size == up.offset) {
		close(fd);
		return;
	}
	if (st.st_size < up.offset)
		up.offset = 0; /* replaced by a shorter file */
	size_t n = (size_t)(st.st_size - up.offset);
	char *buf = mem_alloc(n + 1);
	ssize_t got = buf ? pread(fd, buf, n, up.offset) : -1;
	close(fd);
	if (got <= 0) {
		mem_free(buf);
		return;
	}
	buf[got] = '\0';
	char *p = buf, *nl;
	while ((nl = strchr(p, '\n'))) {
		*nl = '\0';
		if (nl > p)
			line_take(p);
		up.offset += (off_t)(nl - p + 1);
		p = nl + 1;
	}
	mem_free(buf);
}

int ctl_s3_init(const struct ctl_s3_config *cfg)
{
	if (!cfg->bucket || !cfg->bucket[0])
		return 0;
	if (!cfg->access_key || !cfg->access_key[0] || !cfg->secret_key || !cfg->secret_key[0] ||
	    !cfg->region || !cfg->region[0] || !cfg->spool_dir)
		return -EINVAL;
	up.cfg = *cfg;
	if (!up.cfg.attempts)
		up.cfg.attempts = 8;
	if (!up.cfg.backoff_ms)
		up.cfg.backoff_ms = 1000;
	if (up.cfg.backoff_max_ms < up.cfg.backoff_ms)
		up.cfg.backoff_max_ms = up.cfg.backoff_ms;
	if (!up.cfg.timeout_ms)
		up.cfg.timeout_ms = 300000;
	struct strbuf sb;
	str_init(&sb);
	if (cfg->endpoint && cfg->endpoint[0]) {
		str_puts(&sb, cfg->endpoint);
		while (sb.len && sb.p[sb.len - 1] == '/')
			sb.p[--sb.len] = '\0';
	} else {
		str_printf(&sb, "https://s3.%s.amazonaws.com", cfg->region);
	}
	up.endpoint = str_steal(&sb);
	str_printf(&sb, "aws:amz:%s:s3", cfg->region);
	up.sigv4 = str_steal(&sb);
	up.region = mem_strdup(cfg->region);
	up.bucket = mem_strdup(cfg->bucket);
	up.access_key = mem_strdup(cfg->access_key);
	up.secret_key = mem_strdup(cfg->secret_key);
	up.spool_dir = mem_strdup(cfg->spool_dir);
	up.m_ok = metric_get(METRIC_COUNTER, "vacs_s3_uploads_total{result=\"ok\"}",
	                     "Recordings uploaded to S3, by result");
	up.m_failed = metric_get(METRIC_COUNTER, "vacs_s3_uploads_total{result=\"failed\"}",
	                         "Recordings uploaded to S3, by result");
	up.m_errors = metric_get(METRIC_COUNTER, "vacs_s3_upload_errors_total",
	                         "S3 PUT attempts that failed (any cause)");
	up.m_retries = metric_get(METRIC_COUNTER, "vacs_s3_upload_retries_total",
	                          "S3 PUT attempts retried after a failure");
	up.m_bytes = metric_get(METRIC_COUNTER, "vacs_s3_upload_bytes_total",
	                        "Bytes of recordings uploaded to S3");
	up.m_pending = metric_get(METRIC_GAUGE, "vacs_s3_uploads_pending",
	                          "Recordings being uploaded or waiting for a retry");
	if (!up.endpoint || !up.sigv4 || !up.region || !up.bucket || !up.access_key ||
	    !up.secret_key || !up.spool_dir || !up.m_ok || !up.m_failed || !up.m_errors ||
	    !up.m_retries || !up.m_bytes || !up.m_pending) {
		ctl_s3_close();
		return -ENOMEM;
	}
	load_done();
	up.offset = 0;
	int rc = ctl_out_tick(scan, NULL, up.cfg.scan_ms ? up.cfg.scan_ms : 1000);
	if (rc) {
		ctl_s3_close();
		return rc;
	}
	up.on = 1;
	log_info("s3", "recordings go to %s (bucket %s, %s-style)%s", up.endpoint, up.bucket,
	         up.cfg.path_style ? "path" : "virtual-host",
	         up.cfg.delete_after_upload ? "; local files removed once uploaded" : "");
	return 0;
}

void ctl_s3_close(void)
{
	while (up.jobs)
		job_free(up.jobs);
	for (size_t i = 0; i < up.cap_done; i++)
		mem_free(up.done[i]);
	mem_free(up.done);
	mem_free(up.endpoint);
	mem_free(up.sigv4);
	mem_free(up.region);
	mem_free(up.bucket);
	mem_free(up.access_key);
	mem_free(up.secret_key);
	mem_free(up.spool_dir);
	memset(&up, 0, sizeof(up));
}
