/* bctl: line-oriented bridge to baresip's ctrl_tcp netstring protocol, for test scripts. */
/*
 * Usage: bctl [-T] [-c CONNECT_TIMEOUT_MS] [-w LINGER_MS] HOST:PORT
 *
 * Connects to baresip's ctrl_tcp (retrying until CONNECT_TIMEOUT_MS, default 5000, since
 * baresip may still be starting). Each line read on stdin becomes one command:
 *   - a line starting with '{' is sent as is (a JSON object);
 *   - otherwise "COMMAND [PARAMS]" is sent as
 *     {"command":"COMMAND","params":"PARAMS","token":"N"} (N counts from 1).
 * Each netstring received (responses and events, both JSON) is written to stdout as one
 * line, flushed at once; with -T the line is prefixed with the wall-clock time as
 * "SECONDS.MILLIS " so scripts can build timelines.
 *
 * ctrl_tcp in baresip 1.0.0 serves ONE connection at a time: a second connection replaces
 * the first, which then stops getting events. So a test keeps one bctl per phone running
 * for the whole phone's life, feeding it from a FIFO and logging its output.
 *
 * After stdin reaches EOF, bctl keeps reading for LINGER_MS (default: until baresip
 * closes the connection; -w 0 exits at once). Exit: 0 normally, 1 when the connection
 * fails or is lost before stdin ended, 2 on usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_NETSTRING (1u << 20)

static int stamp;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Appends s to out as a JSON string body (without quotes). Returns the new length. */
static size_t json_escape(char *out, size_t cap, size_t len, const char *s)
{
	for (; *s && len + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[len++] = '\\';
			out[len++] = (char)c;
		} else if (c < 0x20) {
			len += (size_t)snprintf(out + len, cap - len, "\\u%04x", c);
		} else {
			out[len++] = (char)c;
		}
	}
	out[len] = '\0';
	return len;
}

/* Frames one stdin line as a netstring command and sends it. */
static int send_line(int fd, char *line, unsigned *token)
{
	static char json[8192];
	char hdr[32];
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n == 0)
		return 0;
	if (line[0] == '{') {
		if (n >= sizeof(json))
			return -EMSGSIZE;
		memcpy(json, line, n + 1);
	} else {
		char *params = strchr(line, ' ');
		size_t len;
		if (params)
			*params++ = '\0';
		len = (size_t)snprintf(json, sizeof(json), "{\"command\":\"");
		len = json_escape(json, sizeof(json), len, line);
		len += (size_t)snprintf(json + len, sizeof(json) - len, "\",\"params\":\"");
		len = json_escape(json, sizeof(json), len, params ? params : "");
		len += (size_t)snprintf(json + len, sizeof(json) - len, "\",\"token\":\"%u\"}",
		                        ++*token);
		if (len >= sizeof(json) - 1)
			return -EMSGSIZE;
	}
	snprintf(hdr, sizeof(hdr), "%zu:", strlen(json));
	int e = write_all(fd, hdr, strlen(hdr));
	if (!e)
		e = write_all(fd, json, strlen(json));
	if (!e)
		e = write_all(fd, ",", 1);
	return e;
}

/* Consumes complete netstrings at the head of buf; returns bytes used or -EPROTO. */
static long drain_netstrings(char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		size_t i = off, n = 0;
		while (i < len && buf[i] >= '0' && buf[i] <= '9' && i - off < 8)
			n = n * 10 + (size_t)(buf[i++] - '0');
		if (i == len)
			break; /* length not complete yet */
		if (buf[i] != ':' || i == off || n > MAX_NETSTRING)
			return -EPROTO;
		if (i + 1 + n + 1 > len)
			break; /* body not complete yet */
		if (buf[i + 1 + n] != ',')
			return -EPROTO;
		if (stamp) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			printf("%lld.%03ld ", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
		}
		/* One line per message: newlines inside would break line-based readers. */
		for (size_t k = 0; k < n; k++) {
			char c = buf[i + 1 + k];
			putchar(c == '\n' || c == '\r' ? ' ' : c);
		}
		putchar('\n');
		fflush(stdout);
		off = i + 1 + n + 1;
	}
	return (long)off;
}

static int connect_retry(const char *host, unsigned port, int timeout_ms)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	long long deadline = now_ms() + timeout_ms;

	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "bctl: %s: not an IPv4 address\n", host);
		return -EINVAL;
	}
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		int e = errno;
		close(fd);
		if (now_ms() >= deadline) {
			fprintf(stderr, "bctl: connect %s:%u: %s\n", host, port, strerror(e));
			return -e;
		}
		usleep(50 * 1000);
	}
}

int main(int argc, char **argv)
{
	int connect_ms = 5000;
	long linger_ms = -1;
	int opt;
	static char rbuf[MAX_NETSTRING + 64];
	size_t rlen = 0;
	char line[8192];
	size_t llen = 0;
	unsigned token = 0;
	int stdin_open = 1;
	long long stdin_closed_at = 0;

	while ((opt = getopt(argc, argv, "Tc:w:")) != -1) {
		switch (opt) {
		case 'T':
			stamp = 1;
			break;
		case 'c':
			connect_ms = atoi(optarg);
			break;
		case 'w':
			linger_ms = atol(optarg);
			break;
		default:
			fprintf(stderr,
			        "usage: bctl [-T] [-c CONNECT_MS] [-w LINGER_MS] HOST:PORT\n");
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "usage: bctl [-T] [-c CONNECT_MS] [-w LINGER_MS] HOST:PORT\n");
		return 2;
	}
	char host[64];
	const char *colon = strrchr(argv[optind], ':');
	if (!colon || (size_t)(colon - argv[optind]) >= sizeof(host)) {
		fprintf(stderr, "bctl: expected HOST:PORT\n");
		return 2;
	}
	memcpy(host, argv[optind], (size_t)(colon - argv[optind]));
	host[colon - argv[optind]] = '\0';
	unsigned port = (unsigned)atoi(colon + 1);
	signal(SIGPIPE, SIG_IGN);

	int fd = connect_retry(host, port, connect_ms);
	if (fd < 0)
		return 1;

	for (;;) {
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
		                      {.fd = stdin_open ? 0 : -1, .events = POLLIN}};
		int wait_ms = -1;
		if (!stdin_open && linger_ms >= 0) {
			long long left = stdin_closed_at + linger_ms - now_ms();
			if (left <= 0)
				break;
			wait_ms = (int)left;
		}
		int r = poll(p, 2, wait_ms);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			perror("bctl: poll");
			return 1;
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(fd, rbuf + rlen, sizeof(rbuf) - rlen);
			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				return stdin_open ? 1 : 0; /* baresip went away */
			}
			rlen += (size_t)n;
			long used = drain_netstrings(rbuf, rlen);
			if (used < 0) {
				fprintf(stderr, "bctl: bad netstring from baresip\n");
				return 1;
			}
			memmove(rbuf, rbuf + used, rlen - (size_t)used);
			rlen -= (size_t)used;
		}
		if (stdin_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = read(0, line + llen, sizeof(line) - 1 - llen);
			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				stdin_open = 0;
				stdin_closed_at = now_ms();
				if (llen) {
					line[llen] = '\0';
					send_line(fd, line, &token);
					llen = 0;
				}
				continue;
			}
			llen += (size_t)n;
			line[llen] = '\0';
			for (;;) {
				char *nl = memchr(line, '\n', llen);
				if (!nl)
					break;
				size_t one = (size_t)(nl - line) + 1;
				char cmd[sizeof(line)];
				memcpy(cmd, line, one);
				cmd[one] = '\0';
				if (send_line(fd, cmd, &token) != 0) {
					fprintf(stderr, "bctl: send failed\n");
					return 1;
				}
				memmove(line, line + one, llen - one);
				llen -= one;
			}
			if (llen == sizeof(line) - 1) {
				fprintf(stderr, "bctl: input line too long\n");
				return 1;
			}
		}
	}
	close(fd);
	return 0;
}
