/* vacsctl: command-line client of vacsd's HTTP server, and an offline config checker. */
#include "conf/conf.h"
#include "core/mem.h"

#include <errno.h>
#include <jansson.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef VACS_VERSION
#define VACS_VERSION "0.1"
#endif

#define DEFAULT_URL  "http://127.0.0.1:8080"
#define MAX_RESPONSE (64u << 20)

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: vacsctl [--url URL] [--timeout SECONDS] COMMAND\n"
	        "\n"
	        "commands:\n"
	        "  health              GET /healthz: is vacsd alive\n"
	        "  ready               GET /readyz: is vacsd taking calls (prints why not)\n"
	        "  metrics             GET /metrics: Prometheus text format\n"
	        "  call NUMBER [--from N] [--assistant ID] [--lead ID] [--ref R] [--var K=V]...\n"
	        "                      POST /v1/calls: an outbound AI call to NUMBER now; the\n"
	        "                      API key is read from $VACS_API_KEY; prints the call\n"
	        "                      as JSON ({\"id\":...})\n"
	        "  check-config FILE   load and validate a vacsd configuration file, print each\n"
	        "                      problem (file:line: key: what) or \"ok\"; the environment\n"
	        "                      variables named by password_env must be set\n"
	        "\n"
	        "options:\n"
	        "  --url URL           vacsd's HTTP server (default $VACS_URL, else %s)\n"
	        "  --timeout SECONDS   give up after this long (default 10)\n"
	        "  -h, --help          this text\n"
	        "  --version           print the version\n"
	        "\n"
	        "The answer's body is printed on stdout.\n"
	        "\n"
	        "exit status:\n"
	        "  0  success: a 2xx answer, or the configuration is valid\n"
	        "  1  failure: a non-2xx answer, vacsd unreachable or timed out, or the\n"
	        "     configuration is invalid\n"
	        "  2  usage error\n",
	        DEFAULT_URL);
}

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

/* METHOD base+path over HTTP/1.0, with a JSON body and a bearer key when given; prints
 * the answer's body on stdout. Returns the exit status. */
static int http_do(const struct url *u, const char *method, const char *path, const char *body_out,
                   const char *key, int timeout_s)
{
	int fd = dial(u, timeout_s);
	if (fd < 0)
		return EXIT_FAIL;
	size_t blen = body_out ? strlen(body_out) : 0;
	size_t cap = 1600 + blen + (key ? strlen(key) : 0);
	char *req = mem_alloc(cap);
	if (!req) {
		close(fd);
		return EXIT_FAIL;
	}
	int n = snprintf(req, cap,
	                 "%s %s%s HTTP/1.0\r\nHost: %s\r\nUser-Agent: vacsctl/%s\r\n"
	                 "Accept: */*\r\n%s%s%s",
	                 method, u->base, path, u->host_hdr, VACS_VERSION,
	                 key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "");
	if (body_out)
		n += snprintf(req + n, cap - (size_t)n,
		              "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		              blen, body_out);
	else
		n += snprintf(req + n, cap - (size_t)n, "\r\n");
	for (int off = 0; off < n;) {
		ssize_t w = send(fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
		if (w < 0) {
			fprintf(stderr, "vacsctl: send: %s\n", strerror(errno));
			close(fd);
			mem_free(req);
			return EXIT_FAIL;
		}
		off += (int)w;
	}
	mem_free(req);

	char *buf = NULL;
	size_t len = 0;
	cap = 0;
	int rc = EXIT_FAIL;
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
		ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
		if (r < 0) {
			fprintf(stderr, "vacsctl: receive: %s\n",
			        strerror(errno == EAGAIN ? ETIMEDOUT : errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (!buf) {
		fprintf(stderr, "vacsctl: empty answer from %s\n", u->host_hdr);
		goto out;
	}
	buf[len] = '\0';
	int status = 0;
	char *body = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1 || !body) {
		fprintf(stderr, "vacsctl: not an HTTP answer from %s\n", u->host_hdr);
		goto out;
	}
	body += 4;
	fwrite(body, 1, len - (size_t)(body - buf), stdout);
	fflush(stdout);
	if (status >= 200 && status <= 299) {
		rc = EXIT_OK;
	} else {
		char *eol = strstr(buf, "\r\n");
		fprintf(stderr, "vacsctl: %.*s\n", (int)(eol - buf), buf);
	}
out:
	mem_free(buf);
	close(fd);
	return rc;
}

/* vacsctl call NUMBER [options]: POST /v1/calls. */
static int cmd_call(const struct url *u, int argc, char **argv, int timeout_s)
{
	static const struct option opts[] = {
	    {"from", required_argument, NULL, 'f'}, {"assistant", required_argument, NULL, 'a'},
	    {"lead", required_argument, NULL, 'l'}, {"ref", required_argument, NULL, 'r'},
	    {"var", required_argument, NULL, 'v'},  {NULL, 0, NULL, 0},
	};
	json_t *o = json_object(), *vars = json_object();
	int c, rc = EXIT_USAGE;
	optind = 0; /* GNU getopt: 0 re-initialises its state after the first scan */
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *k = c == 'f'   ? "from"
		                : c == 'a' ? "assistant_id"
		                : c == 'l' ? "lead_id"
		                : c == 'r' ? "ref"
		                           : NULL;
		if (k) {
			json_object_set_new(o, k, json_string(optarg));
		} else if (c == 'v' && strchr(optarg, '=') && optarg[0] != '=') {
			char *eq = strchr(optarg, '=');
			*eq = '\0';
			json_object_set_new(vars, optarg, json_string(eq + 1));
		} else {
			fprintf(stderr, "usage: vacsctl call NUMBER [--from N] [--assistant ID] "
			                "[--lead ID] [--ref R] [--var KEY=VALUE]...\n");
			goto out;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "vacsctl: call needs exactly one NUMBER\n");
		goto out;
	}
	const char *key = getenv("VACS_API_KEY");
	if (!key || !key[0]) {
		fprintf(stderr, "vacsctl: set VACS_API_KEY to an API key of vacsd\n");
		goto out;
	}
	json_object_set_new(o, "to", json_string(argv[optind]));
	if (json_object_size(vars))
		json_object_set(o, "variables", vars);
	char *body = json_dumps(o, JSON_COMPACT);
	rc = body ? http_do(u, "POST", "/v1/calls", body, key, timeout_s) : EXIT_FAIL;
	free(body);
out:
	json_decref(vars);
	json_decref(o);
	return rc;
}

static int check_config(const char *path)
{
	char err[16384];
	struct conf *c = NULL;
	int rc = conf_load(path, &c, err, sizeof(err));
	if (rc) {
		fputs(err, stderr);
		if (!err[0])
			fprintf(stderr, "%s: %s\n", path, strerror(-rc));
		return EXIT_FAIL;
	}
	conf_unref(c);
	printf("ok\n");
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"url", required_argument, NULL, 'u'},
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	const char *url = getenv("VACS_URL");
	int timeout_s = 10;
	int c;
	if (!url || !url[0])
		url = DEFAULT_URL;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 't': {
			char *end;
			long t = strtol(optarg, &end, 10);
			if (*end || t < 1 || t > 3600) {
				fprintf(stderr, "vacsctl: --timeout must be 1-3600 seconds\n");
				return EXIT_USAGE;
			}
			timeout_s = (int)t;
			break;
		}
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("vacsctl %s\n", VACS_VERSION);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[optind];
	int nargs = argc - optind - 1;

	if (strcmp(cmd, "check-config") == 0) {
		if (nargs != 1) {
			fprintf(stderr, "usage: vacsctl check-config FILE\n");
			return EXIT_USAGE;
		}
		return check_config(argv[optind + 1]);
	}

	static const struct {
		const char *cmd, *path;
	} gets[] = {{"health", "/healthz"}, {"ready", "/readyz"}, {"metrics", "/metrics"}};
	for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
		if (strcmp(cmd, gets[i].cmd) != 0)
			continue;
		if (nargs != 0) {
			fprintf(stderr, "usage: vacsctl [--url URL] %s\n", cmd);
			return EXIT_USAGE;
		}
		struct url u;
		if (url_parse(url, &u)) {
			fprintf(stderr,
			        "vacsctl: bad URL \"%s\" (want http://host[:port][/path])\n", url);
			return EXIT_USAGE;
		}
		return http_do(&u, "GET", gets[i].path, NULL, NULL, timeout_s);
	}
	if (strcmp(cmd, "call") == 0) {
		struct url u;
		if (url_parse(url, &u)) {
			fprintf(stderr,
			        "vacsctl: bad URL \"%s\" (want http://host[:port][/path])\n", url);
			return EXIT_USAGE;
		}
		return cmd_call(&u, argc - optind, argv + optind, timeout_s);
	}
	fprintf(stderr, "vacsctl: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
