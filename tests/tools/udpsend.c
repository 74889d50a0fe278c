/* udpsend: sends files as single UDP datagrams from a chosen source address (malformed-SIP tests).
 */
/*
 * Usage: udpsend [-s SRC_IP[:PORT]] [-w WAIT_MS] DST_IP:PORT FILE...
 *
 * Each FILE ("-" = stdin) is sent as exactly one datagram, unchanged, so a test can aim
 * truncated or oversized SIP at a daemon from the address its ACL admits (bash's /dev/udp
 * cannot pick the source address). With -w, answers arriving within WAIT_MS after the
 * last send are printed to stdout, one "<<< N bytes" header then the text, so the test
 * log shows what the daemon said (e.g. "SIP/2.0 400 Bad Request").
 * Exit: 0 when every datagram was sent, 1 on a send error, 2 on usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_DGRAM 65507u

static int parse_addr(const char *s, struct sockaddr_in *sa, int need_port)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	size_t hl = colon ? (size_t)(colon - s) : strlen(s);

	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -EINVAL;
	if (colon) {
		long p = strtol(colon + 1, NULL, 10);
		if (p < 0 || p > 65535)
			return -EINVAL;
		sa->sin_port = htons((uint16_t)p);
	} else if (need_port) {
		return -EINVAL;
	}
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads at most MAX_DGRAM bytes of a file. Returns the length or -errno. */
static long read_dgram(const char *path, unsigned char *buf)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t n;

	if (!f)
		return -errno;
	n = fread(buf, 1, MAX_DGRAM, f);
	if (f != stdin)
		fclose(f);
	return (long)n;
}

int main(int argc, char **argv)
{
	struct sockaddr_in src, dst;
	int have_src = 0, opt, rc = 0;
	long wait_ms = 0;
	static unsigned char buf[MAX_DGRAM + 1];

	while ((opt = getopt(argc, argv, "s:w:")) != -1) {
		switch (opt) {
		case 's':
			if (parse_addr(optarg, &src, 0) != 0) {
				fprintf(stderr, "udpsend: bad source %s\n", optarg);
				return 2;
			}
			have_src = 1;
			break;
		case 'w':
			wait_ms = atol(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (optind + 2 > argc)
		goto usage;
	if (parse_addr(argv[optind], &dst, 1) != 0) {
		fprintf(stderr, "udpsend: bad destination %s\n", argv[optind]);
		return 2;
	}
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("udpsend: socket");
		return 1;
	}
	if (have_src && bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
		perror("udpsend: bind");
		close(fd);
		return 1;
	}
	for (int i = optind + 1; i < argc; i++) {
		long n = read_dgram(argv[i], buf);
		if (n < 0) {
			fprintf(stderr, "udpsend: %s: %s\n", argv[i], strerror((int)-n));
			rc = 1;
			continue;
		}
		if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&dst, sizeof(dst)) != n) {
			fprintf(stderr, "udpsend: send %s (%ld bytes): %s\n", argv[i], n,
			        strerror(errno));
			rc = 1;
		}
	}
	long long deadline = now_ms() + wait_ms;
	while (wait_ms > 0) {
		long long left = deadline - now_ms();
		if (left <= 0)
			break;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, (int)left) <= 0)
			break;
		ssize_t n = recv(fd, buf, MAX_DGRAM, 0);
		if (n < 0)
			break;
		buf[n] = '\0';
		printf("<<< %zd bytes\n%s\n", n, (char *)buf);
	}
	fflush(stdout);
	close(fd);
	return rc;
usage:
	fprintf(stderr, "usage: udpsend [-s SRC_IP[:PORT]] [-w WAIT_MS] DST_IP:PORT FILE...\n");
	return 2;
}
