/* vacsctl: command-line client of vacsd's HTTP API: main, the command table, the HTTP client
 * and the output helpers every command file shares (vacsctl.h). */
#include "control/vacsctl/vacsctl.h"

#include "core/mem.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef VACS_VERSION
#define VACS_VERSION "0.1"
#endif

#define DEFAULT_URL  "http://127.0.0.1:8080"
#define MAX_RESPONSE (64u << 20)
#define MAX_CMDS     128

static struct {
	const struct vacsctl_cmd *cmd[MAX_CMDS];
	size_t n;
} table;

void vacsctl_register(const struct vacsctl_cmd *cmds, size_t n)
{
	for (size_t i = 0; i < n && table.n < MAX_CMDS; i++)
		table.cmd[table.n++] = &cmds[i];
}

/* By name; the subcommands of one name keep their order. */
static int cmd_order(const void *a, const void *b)
{
	const struct vacsctl_cmd *x = *(const struct vacsctl_cmd *const *)a;
	const struct vacsctl_cmd *y = *(const struct vacsctl_cmd *const *)b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x < y ? -1 : x > y);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vacsctl [--url URL] [--timeout SECONDS] [--json] [--idempotency-key K]\n"
	           "               COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < table.n; i++) {
		const struct vacsctl_cmd *c = table.cmd[i];
		char head[160];
		snprintf(head, sizeof(head), "%s%s%s%s%s", c->name, c->sub ? " " : "",
		         c->sub ? c->sub : "", c->synopsis[0] ? " " : "", c->synopsis);
		fprintf(f, "  %s\n", head);
		for (const char *h = c->help; *h;) {
			const char *nl = strchr(h, '\n');
			int n = nl ? (int)(nl - h) : (int)strlen(h);
			fprintf(f, "      %.*s\n", n, h);
			h += n + (nl != NULL);
		}
	}
	fprintf(f,
	        "\noptions:\n"
	        "  --url URL           vacsd's HTTP server (default $VACS_URL, else %s)\n"
	        "  --timeout SECONDS   give up after this long (default 10)\n"
	        "  --json              print vacsd's JSON answer as it is (else tables); may also\n"
	        "                      follow the command\n"
	        "  --idempotency-key K send Idempotency-Key: K with a POST: a repeat gets the\n"
	        "                      first answer instead of doing it twice\n"
	        "  -h, --help          this text\n"
	        "  --version           print the version\n"
	        "\n"
	        "The /v1 commands send the API key in $VACS_API_KEY (Authorization: Bearer).\n"
	        "\n"
	        "exit status:\n"
	        "  0  success: a 2xx answer, or the configuration is valid\n"
	        "  1  failure: another answer, vacsd unreachable or timed out, or the\n"
	        "     configuration is invalid\n"
	        "  2  usage error (also: $VACS_API_KEY not set)\n"
	        "  3  refused: 401 (no key, unknown or revoked key) or 403 (scope missing)\n"
	        "  4  not found: 404\n",
	        DEFAULT_URL);
}

/* ---- HTTP ------------------------------------------------------------------------------ */

struct url {
	char host[256];
	char port[8];
	char base[512]; /* path prefix without the trailing '/' ("" at the root) */
	char host_hdr[300];
};

/* http://host[:port][/base]; host may be a name, an IPv4 address or [IPv6]. */
static int url_parse(const char *s, struct url *u)
{
	memset(u, 0, sizeof(*u));
	if (strncmp(s, "http://", 7) != 0)
		return -EINVAL;
	s += 7;
	const char *path = strchr(s, '/');
	size_t hp_len = path ? (size_t)(path - s) : strlen(s);
	char hp[256];
	if (hp_len == 0 || hp_len >= sizeof(hp))
		return -EINVAL;
	memcpy(hp, s, hp_len);
	hp[hp_len] = '\0';
	snprintf(u->host_hdr, sizeof(u->host_hdr), "%s", hp);

	char *port = NULL;
	if (hp[0] == '[') {
		char *close = strchr(hp, ']');
		if (!close)
			return -EINVAL;
		*close = '\0';
		snprintf(u->host, sizeof(u->host), "%s", hp + 1);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1])
			return -EINVAL;
	} else {
		port = strchr(hp, ':');
		if (port)
			*port++ = '\0';
		snprintf(u->host, sizeof(u->host), "%s", hp);
	}
	if (!u->host[0])
		return -EINVAL;
	if (port) {
		char *end;
		long p = strtol(port, &end, 10);
		if (!*port || *end || p < 1 || p > 65535)
			return -EINVAL;
	}
	snprintf(u->port, sizeof(u->port), "%s", port ? port : "80");
	if (path) {
		size_t bl = strlen(path);
		while (bl && path[bl - 1] == '/')
			bl--;
		if (bl >= sizeof(u->base))
			return -EINVAL;
		memcpy(u->base, path, bl);
		u->base[bl] = '\0';
	}
	return 0;
}

static int dial(const struct url *u, int timeout_s)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(u->host, u->port, &hints, &res);
	if (rc) {
		fprintf(stderr, "vacsctl: %s: %s\n", u->host, gai_strerror(rc));
		return -1;
	}
	int fd = -1, err = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		struct timeval tv = {.tv_sec = timeout_s};
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* bounds connect() */
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "vacsctl: cannot connect to %s port %s: %s\n", u->host, u->port,
		        strerror(err == EINPROGRESS ? ETIMEDOUT : err));
	return fd;
}

void vacsctl_resp_free(struct vacsctl_resp *r)
{
	if (!r)
		return;
	mem_free(r->raw);
	memset(r, 0, sizeof(*r));
}

int vacsctl_http(const struct vacsctl *v, const char *method, const char *path, const char *body,
                 int with_key, struct vacsctl_resp *r)
{
	struct url u;
	const char *key = NULL;
	memset(r, 0, sizeof(*r));
	if (url_parse(v->url, &u)) {
		fprintf(stderr, "vacsctl: bad URL \"%s\" (want http://host[:port][/path])\n",
		        v->url);
		return VACSCTL_USAGE;
	}
	if (with_key) {
		key = getenv("VACS_API_KEY");
		if (!key || !key[0]) {
			fprintf(stderr, "vacsctl: set VACS_API_KEY to an API key of vacsd\n");
			return VACSCTL_USAGE;
		}
		if (strpbrk(key, "\r\n")) {
			fprintf(stderr, "vacsctl: VACS_API_KEY holds a line break\n");
			return VACSCTL_USAGE;
		}
	}
	const char *ik = strcmp(method, "POST") == 0 ? v->idempotency_key : NULL;
	int sends_length = !strcmp(method, "POST") || !strcmp(method, "PUT") ||
	                   !strcmp(method, "PATCH") || !strcmp(method, "DELETE") || body;
	int fd = dial(&u, v->timeout_s);
	if (fd < 0)
		return VACSCTL_FAIL;
	size_t blen = body ? strlen(body) : 0;
	size_t cap = 2048 + strlen(path) + blen + (key ? strlen(key) : 0) + (ik ? strlen(ik) : 0);
	char *req = mem_alloc(cap);
	int rc = VACSCTL_FAIL;
	char *buf = NULL;
	if (!req) {
		close(fd);
		return VACSCTL_FAIL;
	}
	int n = snprintf(req, cap,
	                 "%s %s%s HTTP/1.0\r\nHost: %s\r\nUser-Agent: vacsctl/%s\r\n"
	                 "Accept: application/json, */*\r\n%s%s%s%s%s%s",
	                 method, u.base, path, u.host_hdr, VACS_VERSION,
	                 key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "",
	                 ik ? "Idempotency-Key: " : "", ik ? ik : "", ik ? "\r\n" : "");
	if (sends_length)
		n += snprintf(req + n, cap - (size_t)n, "%s%s%sContent-Length: %zu\r\n\r\n%s",
		              body ? "Content-Type: " : "",
		              body ? (v->content_type ? v->content_type : "application/json") : "",
		              body ? "\r\n" : "", blen, body ? body : "");
	else
		n += snprintf(req + n, cap - (size_t)n, "\r\n");
	for (int off = 0; off < n;) {
		ssize_t w = send(fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
		if (w < 0) {
			fprintf(stderr, "vacsctl: send: %s\n", strerror(errno));
			goto out;
		}
		off += (int)w;
	}

	size_t len = 0;
	cap = 0;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			size_t ncap = cap ? cap * 2 : 16384;
			char *nb = ncap <= MAX_RESPONSE ? mem_realloc(buf, ncap) : NULL;
			if (!nb) {
				fprintf(stderr, "vacsctl: response too large\n");
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
		if (got < 0) {
			fprintf(stderr, "vacsctl: receive: %s\n",
			        strerror(errno == EAGAIN ? ETIMEDOUT : errno));
			goto out;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	if (!buf || !len) {
		fprintf(stderr, "vacsctl: empty answer from %s\n", u.host_hdr);
		goto out;
	}
	buf[len] = '\0';
	char *sep = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/%*d.%*d %d", &r->status) != 1 || !sep) {
		fprintf(stderr, "vacsctl: not an HTTP answer from %s\n", u.host_hdr);
		goto out;
	}
	*sep = '\0';
	r->raw = buf;
	r->head = buf;
	r->body = sep + 4;
	r->len = len - (size_t)(r->body - buf);
	buf = NULL;
	rc = 0;
out:
	if (key)
		explicit_bzero(req, strlen(req));
	mem_free(req);
	mem_free(buf);
	close(fd);
	return rc;
}

const char *vacsctl_resp_header(const struct vacsctl_resp *r, const char *name, char *buf,
                                size_t len)
{
	size_t nl = strlen(name);
	for (const char *p = r->head ? strstr(r->head, "\r\n") : NULL; p;
	     p = strstr(p + 2, "\r\n")) {
		const char *h = p + 2;
		if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
			h += nl + 1;
			while (*h == ' ')
				h++;
			const char *e = strstr(h, "\r\n");
			snprintf(buf, len, "%.*s", (int)(e ? (size_t)(e - h) : strlen(h)), h);
			return buf;
		}
	}
	return NULL;
}

int vacsctl_exit_for(int status)
{
	if (status >= 200 && status <= 299)
		return VACSCTL_OK;
	if (status == 401 || status == 403)
		return VACSCTL_DENIED;
	if (status == 404)
		return VACSCTL_NOT_FOUND;
	return VACSCTL_FAIL;
}

/* "vacsctl: 403 forbidden: message (field: f)" from the error body, else the status line. */
static void print_error(const struct vacsctl_resp *r)
{
	json_t *j = json_loadb(r->body, r->len, 0, NULL);
	json_t *e = json_object_get(j, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *field = json_string_value(json_object_get(e, "field"));
	if (code || msg) {
		fprintf(stderr, "vacsctl: %d %s: %s", r->status, code ? code : "error",
		        msg ? msg : "");
		if (field)
			fprintf(stderr, " (field: %s)", field);
		fputc('\n', stderr);
	} else {
		const char *eol = strstr(r->head, "\r\n");
		fprintf(stderr, "vacsctl: %.*s\n",
		        (int)(eol ? (size_t)(eol - r->head) : strlen(r->head)), r->head);
	}
	json_decref(j);
}

int vacsctl_api(const struct vacsctl *v, const char *method, const char *path, const json_t *body,
                void (*show)(const json_t *answer, const void *arg), const void *arg)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (body && !text)
		return VACSCTL_FAIL;
	int rc = vacsctl_api_text(v, method, path, text, show, arg);
	free(text);
	return rc;
}

int vacsctl_api_text(const struct vacsctl *v, const char *method, const char *path,
                     const char *text, void (*show)(const json_t *answer, const void *arg),
                     const void *arg)
{
	struct vacsctl_resp r;
	int rc = vacsctl_http(v, method, path, text, 1, &r);
	if (rc)
		return rc;
	rc = vacsctl_exit_for(r.status);
	char hv[16];
	if (rc == VACSCTL_OK && vacsctl_resp_header(&r, "Idempotent-Replayed", hv, sizeof(hv)))
		fprintf(stderr,
		        "vacsctl: replayed: vacsd had answered this Idempotency-Key before\n");
	if (v->json) {
		fwrite(r.body, 1, r.len, stdout);
		if (r.len && r.body[r.len - 1] != '\n')
			fputc('\n', stdout);
		fflush(stdout);
	}
	if (rc != VACSCTL_OK) {
		print_error(&r);
	} else if (!v->json && show) {
		json_t *j = r.len ? json_loadb(r.body, r.len, 0, NULL) : NULL;
		show(j, arg);
		json_decref(j);
	}
	vacsctl_resp_free(&r);
	return rc;
}

int vacsctl_escape(const char *seg, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)seg; *p; p++) {
		int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		            (*p >= '0' && *p <= '9') || strchr("-._~@+:", *p);
		if (o + (plain ? 1 : 3) + 1 > len)
			return -1;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	if (o + 1 > len)
		return -1;
	out[o] = '\0';
	return 0;
}

/* ---- output ----------------------------------------------------------------------------- */

const char *vacsctl_cell(const json_t *v, char *buf, size_t len)
{
	size_t i, o = 0;
	json_t *x;
	buf[0] = '\0';
	if (!v || json_is_null(v) || (json_is_array(v) && !json_array_size(v))) {
		snprintf(buf, len, "-");
	} else if (json_is_string(v)) {
		snprintf(buf, len, "%s", json_string_value(v));
	} else if (json_is_integer(v)) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	} else if (json_is_real(v)) {
		snprintf(buf, len, "%g", json_real_value(v));
	} else if (json_is_boolean(v)) {
		snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
	} else if (json_is_array(v) && len) {
		json_array_foreach(v, i, x)
		{
			char one[256];
			vacsctl_cell(x, one, sizeof(one));
			int n = snprintf(buf + o, len - o, "%s%s", i ? "," : "", one);
			if (n < 0 || (size_t)n >= len - o)
				break;
			o += (size_t)n;
		}
	} else {
		char *s = json_dumps(v, JSON_COMPACT);
		snprintf(buf, len, "%s", s ? s : "?");
		free(s);
	}
	/* one line per cell */
	for (char *p = buf; *p; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	}
	return buf;
}

/* Display width of a UTF-8 string (code points). */
static size_t width(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

void vacsctl_table(FILE *f, const json_t *rows, const struct vacsctl_col *cols, size_t n)
{
	size_t w[32] = {0}, i, c;
	json_t *row;
	char cell[1024];
	if (n > 32)
		n = 32;
	for (c = 0; c < n; c++)
		w[c] = width(cols[c].title);
	json_array_foreach(rows, i, row)
	{
		for (c = 0; c < n; c++) {
			size_t cw = width(
			    vacsctl_cell(json_object_get(row, cols[c].key), cell, sizeof(cell)));
			if (cw > w[c])
				w[c] = cw;
		}
	}
	for (c = 0; c < n; c++)
		fprintf(f, "%s%-*s", c ? "  " : "", c + 1 < n ? (int)w[c] : 0, cols[c].title);
	fputc('\n', f);
	json_array_foreach(rows, i, row)
	{
		for (c = 0; c < n; c++) {
			vacsctl_cell(json_object_get(row, cols[c].key), cell, sizeof(cell));
			size_t pad = c + 1 < n ? w[c] - width(cell) : 0;
			fprintf(f, "%s%s%*s", c ? "  " : "", cell, (int)pad, "");
		}
		fputc('\n', f);
	}
}

void vacsctl_fields(FILE *f, const json_t *obj, const struct vacsctl_col *cols, size_t n)
{
	size_t w = 0;
	char cell[4096];
	for (size_t c = 0; c < n; c++) {
		if (width(cols[c].title) > w)
			w = width(cols[c].title);
	}
	for (size_t c = 0; c < n; c++)
		fprintf(f, "%-*s  %s\n", (int)w + 1, cols[c].title,
		        vacsctl_cell(json_object_get(obj, cols[c].key), cell, sizeof(cell)));
}

/* ---- main ----------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"url", required_argument, NULL, 'u'},
	    {"timeout", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"idempotency-key", required_argument, NULL, 'i'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct vacsctl v = {.url = getenv("VACS_URL"), .timeout_s = 10};
	int c;
	if (!v.url || !v.url[0])
		v.url = DEFAULT_URL;
	qsort(table.cmd, table.n, sizeof(table.cmd[0]), cmd_order);
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			v.url = optarg;
			break;
		case 't': {
			char *end;
			long t = strtol(optarg, &end, 10);
			if (*end || t < 1 || t > 3600) {
				fprintf(stderr, "vacsctl: --timeout must be 1-3600 seconds\n");
				return VACSCTL_USAGE;
			}
			v.timeout_s = (int)t;
			break;
		}
		case 'j':
			v.json = 1;
			break;
		case 'i':
			if (!optarg[0] || strlen(optarg) > 255 || strpbrk(optarg, "\r\n")) {
				fprintf(stderr,
				        "vacsctl: --idempotency-key must be 1-255 characters\n");
				return VACSCTL_USAGE;
			}
			v.idempotency_key = optarg;
			break;
		case 'h':
			usage(stdout);
			return VACSCTL_OK;
		case 'V':
			printf("vacsctl %s\n", VACS_VERSION);
			return VACSCTL_OK;
		default:
			usage(stderr);
			return VACSCTL_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return VACSCTL_USAGE;
	}
	/* --json may also follow the command (before a "--"). */
	int n = 0;
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			while (i < argc)
				argv[optind + n++] = argv[i++];
			break;
		}
		if (strcmp(argv[i], "--json") == 0)
			v.json = 1;
		else
			argv[optind + n++] = argv[i];
	}
	argc = optind + n;
	char **args = argv + optind;
	int nargs = argc - optind;
	int known = 0;
	for (size_t i = 0; i < table.n; i++) {
		const struct vacsctl_cmd *cmd = table.cmd[i];
		if (strcmp(cmd->name, args[0]) != 0)
			continue;
		known = 1;
		if (!cmd->sub)
			return cmd->run(&v, nargs, args);
		if (nargs >= 2 && strcmp(cmd->sub, args[1]) == 0)
			return cmd->run(&v, nargs - 1, args + 1);
	}
	if (known) {
		fprintf(stderr, "vacsctl: %s needs one of:", args[0]);
		for (size_t i = 0; i < table.n; i++) {
			if (strcmp(table.cmd[i]->name, args[0]) == 0)
				fprintf(stderr, " %s", table.cmd[i]->sub);
		}
		fputc('\n', stderr);
		return VACSCTL_USAGE;
	}
	fprintf(stderr, "vacsctl: unknown command \"%s\"\n", args[0]);
	usage(stderr);
	return VACSCTL_USAGE;
}
