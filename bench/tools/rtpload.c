/* rtpload: loopback G.711 RTP load generator and sink that measures a relay's loss and latency. */
/*
 * Usage:
 *   rtpload --calls N (--table FILE | --rtpengine HOST:PORT | --direct) [options]
 *
 * Each call has two generator endpoints: "a" (the caller, on the relay's leg A) and "b"
 * (the callee, on leg B). Direction fwd sends from a's socket to the relay's leg-A port
 * and expects the packet on b's socket (what the relay sends out of leg B); direction rev
 * sends from b's socket to the relay's leg-B port and expects it on a's socket. Every
 * stream is PCMU: 12-byte RTP header + 160-byte payload every 20 ms (50 pps). The payload
 * starts with a magic, the stream id, a sequence number and the CLOCK_REALTIME send time;
 * the receive time is the kernel's SO_TIMESTAMPNS stamp, so the one-way latency does not
 * include the generator's own wake-up delay. Streams are spread evenly over the 20 ms
 * period (not sent in bursts), on a 1 ms tick.
 *
 * Call sources:
 *   --table FILE       one line per call: "A_PORT B_PORT RELAY_A_PORT RELAY_B_PORT"
 *                      (ports of the generator's sockets and of the relay's two legs)
 *   --rtpengine H:P    sets the calls up itself with ng offer/answer (bencode over UDP);
 *                      generator ports come from --a-base/--b-base/--socks
 *   --direct           no relay: a sends straight to b (measures the generator alone)
 * Options:
 *   --a-base P --b-base P  first generator port of each side (default 20000 / 24000);
 *                      calls get the next even ports, skipping ports already in use
 *   --socks K          sockets per side: call i shares the ports of call i mod K; 0 = one
 *                      per call (default 0). K = 1 shares one socket per side, so sends
 *                      and receives batch (sendmmsg/recvmmsg) across calls.
 *   --relay ADDR       relay address (default 127.0.0.1)
 *   --bind ADDR        generator address of both sides (default 127.0.0.1); --bind-a ADDR,
 *                      --bind-b ADDR set one side (a and b ports must differ either way)
 *   --dirs fwd|both    (default both)
 *   --warmup S --duration S --drain-ms MS  (defaults 2, 20, 500)
 *   --pid PID          relay process: its CPU time (utime+stime, /proc/PID/stat) is read
 *                      at the start and end of the measurement window
 *   --table-out FILE   writes the call table used (with --rtpengine)
 *   --prefix STR       prefix of the JSON figure names (e.g. "rtpengine_1000_")
 * Output: one flat JSON object on stdout. Figures (window = the --duration after
 * --warmup; loss counts packets sent in the window, latency packets received from it):
 *   streams, pps_offered, sent, received, lost, loss_pct, reordered, misdelivered,
 *   lat_p50_us, lat_p99_us, lat_p999_us, lat_max_us, lat_mean_us,
 *   fwd_pkts (received during the window), relay_cpu_s, relay_cpu_pct, cpu_us_per_pkt,
 *   gen_cpu_s, tx_lag_max_us, host_busy_pct (whole machine, all cores = 100),
 *   host_softirq_s (softirq time: on loopback mostly the UDP receive path, charged to
 *   whichever task ran it: the sender, or ksoftirqd), ksoftirqd_cpu_s (the part run by
 *   the ksoftirqd threads, charged to neither relay nor generator), host_other_cpu_s
 *   (CPU spent on anything but the relay, the generator and ksoftirqd: other processes;
 *   approximate, /proc/stat is tick-sampled while per-process times are not).
 * Exit: 0 when the run completed (even with loss), 1 on setup errors, 2 on usage.
 */
#include "bench_cpu.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define PTIME_NS      20000000ull
#define PAYLOAD_LEN   160u
#define RTP_HDR       12u
#define PKT_LEN       (RTP_HDR + PAYLOAD_LEN)
#define MAGIC         0x52544c44u /* "RTLD" */
#define BATCH         64u
#define TICK_NS       1000000ull
#define HIST_FINE     10000u /* 1 us buckets up to 10 ms */
#define HIST_COARSE   10000u /* 1 ms buckets up to 10 s */
#define NG_TIMEOUT_MS 1000

struct stream {
	uint32_t ssrc;
	uint16_t seq;
	uint32_t rtp_ts;
	uint32_t count; /* packets sent so far (payload sequence) */
	uint32_t last_rx;
	int tx_sock;
	int rx_sock;
	struct sockaddr_in dst;
	uint64_t sent_w, recv_w;
	int seen;
};

struct sock {
	int fd;
	uint16_t port;
	struct in_addr addr;
};

struct call {
	uint16_t a_port, b_port, ra_port, rb_port;
};

static struct {
	unsigned calls, dirs, socks;
	uint16_t a_base, b_base;
	const char *table, *rtpengine, *table_out, *prefix;
	int direct;
	struct in_addr relay, bind_a, bind_b;
	double warmup_s, duration_s;
	unsigned drain_ms;
	long pid;
} opt = {.dirs = 2,
         .a_base = 20000,
         .b_base = 24000,
         .warmup_s = 2,
         .duration_s = 20,
         .drain_ms = 500,
         .pid = -1,
         .prefix = ""};

static struct call *calls;
static struct stream *streams;
static unsigned n_streams;
static struct sock *socks;
static unsigned n_socks;
static int port_sock[65536];
static uint64_t hist_fine[HIST_FINE], hist_coarse[HIST_COARSE], hist_over;
static uint64_t lat_sum_us, lat_n, lat_max_us;
static uint64_t reordered, misdelivered, bad_pkts, fwd_pkts;
static uint64_t win_start_rt, win_end_rt; /* CLOCK_REALTIME ns bounds of the window */
static volatile sig_atomic_t stop_flag;

static uint64_t now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: rtpload --calls N (--table FILE | --rtpengine HOST:PORT | --direct)\n"
	        "  [--a-base P] [--b-base P] [--socks K] [--relay ADDR] [--bind ADDR]\n"
	        "  [--bind-a ADDR] [--bind-b ADDR]\n"
	        "  [--dirs fwd|both] [--warmup S] [--duration S] [--drain-ms MS] [--pid PID]\n"
	        "  [--table-out FILE] [--prefix STR]\n");
	exit(2);
}

/* Whole-machine CPU time from /proc/stat, in USER_HZ ticks: busy (everything but idle
 * and iowait), softirq, and the total. */
struct host_cpu {
	unsigned long long busy, softirq, total;
};

static void host_cpu_read(struct host_cpu *h)
{
	unsigned long long v[10] = {0};
	memset(h, 0, sizeof *h);
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
	           &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
		for (int i = 0; i < 8; i++) /* guest time is already in user */
			h->total += v[i];
		h->busy = h->total - v[3] - v[4];
		h->softirq = v[6];
	}
	fclose(f);
}

/* CPU time of the ksoftirqd threads (the kernel moves softirq work, here mostly the
 * loopback UDP receive path, to them under load; it is then charged to no process). */
static long ksoftirqd_pids[64];
static unsigned n_ksoftirqd;

static void ksoftirqd_find(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) && n_ksoftirqd < 64) {
		char path[300], comm[64] = "";
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof comm, f) && !strncmp(comm, "ksoftirqd/", 10))
			ksoftirqd_pids[n_ksoftirqd++] = atol(e->d_name);
		fclose(f);
	}
	closedir(d);
}

static double ksoftirqd_cpu_s(void)
{
	double t = 0;
	for (unsigned i = 0; i < n_ksoftirqd; i++) {
		double v = bench_proc_cpu_s(ksoftirqd_pids[i]);
		if (v > 0)
			t += v;
	}
	return t;
}

/* utime+stime of a process in seconds, -1 when unreadable. */
static int sock_open(uint16_t port, struct in_addr addr, int quiet)
{
	if (port_sock[port] >= 0) /* one side per port number: the table is keyed by port */
		return socks[port_sock[port]].addr.s_addr == addr.s_addr ? port_sock[port]
		                                                         : -EADDRINUSE;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = addr};
	int one = 1, big = 8 << 20;
	setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
	if (opt.socks != 0 && opt.socks < 16) {
		/* shared sockets carry many calls: give them room (FORCE needs root) */
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		if (!quiet)
			fprintf(stderr, "rtpload: bind %s:%u: %s\n", inet_ntoa(addr), port,
			        strerror(e));
		close(fd);
		return -e;
	}
	socks[n_socks].fd = fd;
	socks[n_socks].port = port;
	socks[n_socks].addr = addr;
	port_sock[port] = (int)n_socks;
	return (int)n_socks++;
}

/* ---- rtpengine ng client ---- */

static int ng_fd = -1;
static struct sockaddr_in ng_addr;
static unsigned ng_cookie;

static int ng_parse_addr(const char *s)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	ng_addr.sin_family = AF_INET;
	ng_addr.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &ng_addr.sin_addr) != 1)
		return -1;
	ng_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	return ng_fd < 0 ? -1 : 0;
}

/* Sends one bencoded dict body (without the outer d...e). Returns the reply's SDP audio
 * port when want_port, else 0; -1 on failure. */
static int ng_query(const char *body, const char *what, int want_port)
{
	static char msg[4096], rep[65536];
	char cookie[32];
	snprintf(cookie, sizeof cookie, "%u_%u", (unsigned)getpid(), ++ng_cookie);
	int len = snprintf(msg, sizeof msg, "%s d%se", cookie, body);
	if (len < 0 || (size_t)len >= sizeof msg)
		return -1;
	for (int attempt = 0; attempt < 3; attempt++) {
		if (sendto(ng_fd, msg, (size_t)len, 0, (struct sockaddr *)&ng_addr,
		           sizeof ng_addr) < 0)
			return -1;
		struct pollfd pfd = {.fd = ng_fd, .events = POLLIN};
		while (poll(&pfd, 1, NG_TIMEOUT_MS) > 0) {
			ssize_t n = recv(ng_fd, rep, sizeof rep - 1, 0);
			if (n <= 0)
				break;
			rep[n] = 0;
			size_t cl = strlen(cookie);
			if ((size_t)n <= cl || strncmp(rep, cookie, cl) != 0 || rep[cl] != ' ')
				continue; /* a late reply to an earlier attempt */
			if (!strstr(rep, "6:result2:ok")) {
				fprintf(stderr, "rtpload: ng %s failed: %s\n", what, rep + cl + 1);
				return -1;
			}
			if (!want_port)
				return 0;
			const char *m = strstr(rep, "m=audio ");
			if (!m) {
				fprintf(stderr, "rtpload: ng %s: no m=audio in reply\n", what);
				return -1;
			}
			return atoi(m + 8);
		}
	}
	fprintf(stderr, "rtpload: ng %s: no reply\n", what);
	return -1;
}

static int ng_sdp(char *out, size_t len, struct in_addr addr, uint16_t port)
{
	char a[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &addr, a, sizeof a);
	return snprintf(
	    out, len,
	    "v=0\r\no=- %u 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
	    "m=audio %u RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
	    port, a, a, port);
}

static int ng_setup(unsigned i, struct call *c)
{
	char sdp[512], body[2048], cid[32], ft[32], tt[32];
	snprintf(cid, sizeof cid, "rtpload-%u-%u", (unsigned)getpid(), i);
	snprintf(ft, sizeof ft, "ft%u", i);
	snprintf(tt, sizeof tt, "tt%u", i);
	int sl = ng_sdp(sdp, sizeof sdp, opt.bind_a, c->a_port);
	snprintf(body, sizeof body, "7:call-id%zu:%s7:command5:offer8:from-tag%zu:%s3:sdp%d:%s",
	         strlen(cid), cid, strlen(ft), ft, sl, sdp);
	int rb = ng_query(body, "offer", 1); /* the SDP rtpengine gives the callee: leg B port */
	if (rb <= 0)
		return -1;
	sl = ng_sdp(sdp, sizeof sdp, opt.bind_b, c->b_port);
	snprintf(body, sizeof body,
	         "7:call-id%zu:%s7:command6:answer8:from-tag%zu:%s3:sdp%d:%s6:to-tag%zu:%s",
	         strlen(cid), cid, strlen(ft), ft, sl, sdp, strlen(tt), tt);
	int ra = ng_query(body, "answer", 1); /* the SDP the caller gets: leg A port */
	if (ra <= 0)
		return -1;
	c->ra_port = (uint16_t)ra;
	c->rb_port = (uint16_t)rb;
	return 0;
}

static void ng_delete(unsigned i)
{
	char body[256], cid[32], ft[32];
	snprintf(cid, sizeof cid, "rtpload-%u-%u", (unsigned)getpid(), i);
	snprintf(ft, sizeof ft, "ft%u", i);
	snprintf(body, sizeof body, "7:call-id%zu:%s7:command6:delete8:from-tag%zu:%s", strlen(cid),
	         cid, strlen(ft), ft);
	(void)ng_query(body, "delete", 0);
}

/* ---- load ---- */

static void hist_add(uint64_t us)
{
	if (us < HIST_FINE)
		hist_fine[us]++;
	else if (us / 1000 < HIST_COARSE)
		hist_coarse[us / 1000]++;
	else
		hist_over++;
	lat_sum_us += us;
	lat_n++;
	if (us > lat_max_us)
		lat_max_us = us;
}

static double hist_pct(double p)
{
	if (!lat_n)
		return -1;
	uint64_t want = (uint64_t)(p * (double)lat_n);
	if (want >= lat_n)
		want = lat_n - 1;
	uint64_t acc = 0;
	for (unsigned i = 0; i < HIST_FINE; i++) {
		acc += hist_fine[i];
		if (acc > want)
			return i;
	}
	for (unsigned i = 0; i < HIST_COARSE; i++) {
		acc += hist_coarse[i];
		if (acc > want)
			return (double)i * 1000.0;
	}
	return (double)lat_max_us;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint8_t tx_buf[BATCH][PKT_LEN];
static struct mmsghdr tx_msg[BATCH];
static struct iovec tx_iov[BATCH];

static void build_packet(unsigned s, uint8_t *p, uint64_t t_rt)
{
	struct stream *st = &streams[s];
	p[0] = 0x80;
	p[1] = st->count == 0 ? 0x80 : 0x00; /* marker on the first packet, PT 0 */
	uint16_t seq = htons(st->seq);
	uint32_t ts = htonl(st->rtp_ts), ssrc = htonl(st->ssrc);
	memcpy(p + 2, &seq, 2);
	memcpy(p + 4, &ts, 4);
	memcpy(p + 8, &ssrc, 4);
	memset(p + RTP_HDR, 0xff, PAYLOAD_LEN); /* u-law silence */
	put_u32(p + RTP_HDR, MAGIC);
	put_u32(p + RTP_HDR + 4, s);
	put_u32(p + RTP_HDR + 8, st->count);
	memcpy(p + RTP_HDR + 12, &t_rt, 8);
	st->seq++;
	st->rtp_ts += PAYLOAD_LEN;
	st->count++;
	if (t_rt >= win_start_rt && t_rt < win_end_rt)
		st->sent_w++;
}

static int cmp_by_sock(const void *a, const void *b)
{
	int sa = streams[*(const unsigned *)a].tx_sock, sb = streams[*(const unsigned *)b].tx_sock;
	return (sa > sb) - (sa < sb);
}

/* Sends the due streams listed in `due`, batched per socket with sendmmsg. */
static void send_due(unsigned *due, unsigned n)
{
	if (n > 1 && opt.socks != 0)
		qsort(due, n, sizeof *due, cmp_by_sock);
	unsigned i = 0;
	while (i < n) {
		int sk = streams[due[i]].tx_sock;
		unsigned k = 0;
		uint64_t t_rt = now_ns(CLOCK_REALTIME);
		while (i < n && k < BATCH && streams[due[i]].tx_sock == sk) {
			build_packet(due[i], tx_buf[k], t_rt);
			tx_iov[k].iov_base = tx_buf[k];
			tx_iov[k].iov_len = PKT_LEN;
			memset(&tx_msg[k].msg_hdr, 0, sizeof tx_msg[k].msg_hdr);
			tx_msg[k].msg_hdr.msg_iov = &tx_iov[k];
			tx_msg[k].msg_hdr.msg_iovlen = 1;
			tx_msg[k].msg_hdr.msg_name = &streams[due[i]].dst;
			tx_msg[k].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
			k++;
			i++;
		}
		unsigned off = 0;
		while (off < k) {
			int r = sendmmsg(socks[sk].fd, tx_msg + off, k - off, 0);
			if (r <= 0) {
				if (r < 0 && errno == EINTR)
					continue;
				break; /* EAGAIN/ECONNREFUSED...: counted as lost */
			}
			off += (unsigned)r;
		}
	}
}

static uint8_t rx_buf[BATCH][2048];
static char rx_ctl[BATCH][CMSG_SPACE(sizeof(struct timespec))];
static struct mmsghdr rx_msg[BATCH];
static struct iovec rx_iov[BATCH];

static void receive_sock(int sk, int counting)
{
	for (;;) {
		for (unsigned k = 0; k < BATCH; k++) {
			rx_iov[k].iov_base = rx_buf[k];
			rx_iov[k].iov_len = sizeof rx_buf[k];
			memset(&rx_msg[k].msg_hdr, 0, sizeof rx_msg[k].msg_hdr);
			rx_msg[k].msg_hdr.msg_iov = &rx_iov[k];
			rx_msg[k].msg_hdr.msg_iovlen = 1;
			rx_msg[k].msg_hdr.msg_control = rx_ctl[k];
			rx_msg[k].msg_hdr.msg_controllen = sizeof rx_ctl[k];
		}
		int r = recvmmsg(socks[sk].fd, rx_msg, BATCH, MSG_DONTWAIT, NULL);
		if (r <= 0)
			return;
		uint64_t fallback = 0;
		for (int k = 0; k < r; k++) {
			const uint8_t *p = rx_buf[k];
			if (rx_msg[k].msg_len < PKT_LEN - PAYLOAD_LEN + 20 ||
			    get_u32(p + RTP_HDR) != MAGIC) {
				bad_pkts++;
				continue;
			}
			uint32_t s = get_u32(p + RTP_HDR + 4), cnt = get_u32(p + RTP_HDR + 8);
			if (s >= n_streams) {
				bad_pkts++;
				continue;
			}
			struct stream *st = &streams[s];
			if (st->rx_sock != sk)
				misdelivered++;
			if (st->seen && cnt <= st->last_rx)
				reordered++;
			else
				st->last_rx = cnt;
			st->seen = 1;
			uint64_t t_tx, t_rx = 0;
			memcpy(&t_tx, p + RTP_HDR + 12, 8);
			for (struct cmsghdr *c = CMSG_FIRSTHDR(&rx_msg[k].msg_hdr); c;
			     c = CMSG_NXTHDR(&rx_msg[k].msg_hdr, c)) {
				if (c->cmsg_level == SOL_SOCKET &&
				    c->cmsg_type == SCM_TIMESTAMPNS) {
					struct timespec ts;
					memcpy(&ts, CMSG_DATA(c), sizeof ts);
					t_rx = (uint64_t)ts.tv_sec * 1000000000ull +
					       (uint64_t)ts.tv_nsec;
				}
			}
			if (!t_rx) {
				if (!fallback)
					fallback = now_ns(CLOCK_REALTIME);
				t_rx = fallback;
			}
			if (counting)
				fwd_pkts++;
			if (t_tx >= win_start_rt && t_tx < win_end_rt) {
				st->recv_w++;
				hist_add(t_rx > t_tx ? (t_rx - t_tx) / 1000 : 0);
			}
		}
		if ((unsigned)r < BATCH)
			return;
	}
}

static int load_table(void)
{
	FILE *f = fopen(opt.table, "r");
	if (!f) {
		fprintf(stderr, "rtpload: %s: %s\n", opt.table, strerror(errno));
		return -1;
	}
	char line[256];
	unsigned n = 0;
	while (n < opt.calls && fgets(line, sizeof line, f)) {
		unsigned a, b, ra, rb;
		if (line[0] == '#' || sscanf(line, "%u %u %u %u", &a, &b, &ra, &rb) != 4)
			continue;
		if (!a || !b || !ra || !rb || a > 65535 || b > 65535 || ra > 65535 || rb > 65535) {
			fprintf(stderr, "rtpload: %s: bad line: %s", opt.table, line);
			fclose(f);
			return -1;
		}
		calls[n].a_port = (uint16_t)a;
		calls[n].b_port = (uint16_t)b;
		calls[n].ra_port = (uint16_t)ra;
		calls[n].rb_port = (uint16_t)rb;
		n++;
	}
	fclose(f);
	if (n < opt.calls) {
		fprintf(stderr, "rtpload: %s: %u calls listed, %u wanted\n", opt.table, n,
		        opt.calls);
		return -1;
	}
	return 0;
}

static double arg_num(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end)
		usage();
	return v;
}

static void parse_args(int argc, char **argv)
{
	opt.relay.s_addr = htonl(INADDR_LOOPBACK);
	opt.bind_a.s_addr = htonl(INADDR_LOOPBACK);
	opt.bind_b.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--direct")) {
			opt.direct = 1;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--calls"))
			opt.calls = (unsigned)arg_num(v);
		else if (!strcmp(a, "--table"))
			opt.table = v;
		else if (!strcmp(a, "--rtpengine"))
			opt.rtpengine = v;
		else if (!strcmp(a, "--table-out"))
			opt.table_out = v;
		else if (!strcmp(a, "--prefix"))
			opt.prefix = v;
		else if (!strcmp(a, "--a-base"))
			opt.a_base = (uint16_t)arg_num(v);
		else if (!strcmp(a, "--b-base"))
			opt.b_base = (uint16_t)arg_num(v);
		else if (!strcmp(a, "--socks"))
			opt.socks = (unsigned)arg_num(v);
		else if (!strcmp(a, "--warmup"))
			opt.warmup_s = arg_num(v);
		else if (!strcmp(a, "--duration"))
			opt.duration_s = arg_num(v);
		else if (!strcmp(a, "--drain-ms"))
			opt.drain_ms = (unsigned)arg_num(v);
		else if (!strcmp(a, "--pid"))
			opt.pid = (long)arg_num(v);
		else if (!strcmp(a, "--dirs")) {
			if (!strcmp(v, "fwd"))
				opt.dirs = 1;
			else if (!strcmp(v, "both"))
				opt.dirs = 2;
			else
				usage();
		} else if (!strcmp(a, "--relay")) {
			if (inet_pton(AF_INET, v, &opt.relay) != 1)
				usage();
		} else if (!strcmp(a, "--bind")) {
			if (inet_pton(AF_INET, v, &opt.bind_a) != 1)
				usage();
			opt.bind_b = opt.bind_a;
		} else if (!strcmp(a, "--bind-a")) {
			if (inet_pton(AF_INET, v, &opt.bind_a) != 1)
				usage();
		} else if (!strcmp(a, "--bind-b")) {
			if (inet_pton(AF_INET, v, &opt.bind_b) != 1)
				usage();
		} else
			usage();
	}
	if (!opt.calls || opt.calls > 30000 || opt.duration_s <= 0 || opt.warmup_s < 0 ||
	    (!opt.table + !opt.rtpengine + !opt.direct) != 2)
		usage();
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl = {.rlim_cur = 4 * opt.calls + 64, .rlim_max = 4 * opt.calls + 64};
	struct rlimit cur;
	if (getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_cur < rl.rlim_cur) {
		if (cur.rlim_max < rl.rlim_max)
			rl.rlim_cur = rl.rlim_max = cur.rlim_max;
		else
			rl.rlim_max = cur.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	calls = calloc(opt.calls, sizeof *calls);
	n_streams = opt.calls * opt.dirs;
	streams = calloc(n_streams, sizeof *streams);
	socks = calloc(2 * opt.calls + 2, sizeof *socks);
	unsigned *due = calloc(n_streams, sizeof *due);
	if (!calls || !streams || !socks || !due)
		return 1;
	for (unsigned p = 0; p < 65536; p++)
		port_sock[p] = -1;

	if (opt.table) {
		if (load_table() < 0)
			return 1;
	} else {
		/* even ports from each base, skipping ports another process holds */
		unsigned pa = opt.a_base, pb = opt.b_base;
		for (unsigned i = 0; i < opt.calls; i++) {
			if (opt.socks && i >= opt.socks) {
				calls[i] = calls[i % opt.socks];
				continue;
			}
			while (pa < 65534 && sock_open((uint16_t)pa, opt.bind_a, 1) < 0)
				pa += 2;
			while (pb < 65534 &&
			       (pb == pa || sock_open((uint16_t)pb, opt.bind_b, 1) < 0))
				pb += 2;
			if (pa >= 65534 || pb >= 65534) {
				fprintf(stderr, "rtpload: no free ports left\n");
				return 1;
			}
			calls[i].a_port = (uint16_t)pa;
			calls[i].b_port = (uint16_t)pb;
			calls[i].ra_port = calls[i].b_port; /* --direct: a -> b, b -> a */
			calls[i].rb_port = calls[i].a_port;
			pa += 2;
			pb += 2;
		}
	}
	for (unsigned i = 0; i < opt.calls; i++) {
		if (sock_open(calls[i].a_port, opt.bind_a, 0) < 0 ||
		    sock_open(calls[i].b_port, opt.bind_b, 0) < 0)
			return 1;
	}
	if (opt.rtpengine) {
		if (ng_parse_addr(opt.rtpengine) < 0)
			usage();
		for (unsigned i = 0; i < opt.calls; i++) {
			if (ng_setup(i, &calls[i]) < 0) {
				fprintf(stderr, "rtpload: ng setup of call %u failed\n", i);
				return 1;
			}
		}
	}
	if (opt.table_out) {
		FILE *f = fopen(opt.table_out, "w");
		if (f) {
			for (unsigned i = 0; i < opt.calls; i++)
				fprintf(f, "%u %u %u %u\n", calls[i].a_port, calls[i].b_port,
				        calls[i].ra_port, calls[i].rb_port);
			fclose(f);
		}
	}

	/* streams: s = d * calls + i, so a tick's due list groups one side's sockets */
	for (unsigned s = 0; s < n_streams; s++) {
		unsigned i = s % opt.calls, d = s / opt.calls;
		struct stream *st = &streams[s];
		st->ssrc = 0x10000000u + s;
		st->seq = (uint16_t)(s * 7919u);
		st->rtp_ts = s * 160u;
		uint16_t from = d == 0 ? calls[i].a_port : calls[i].b_port;
		uint16_t to_relay = d == 0 ? calls[i].ra_port : calls[i].rb_port;
		uint16_t expect = d == 0 ? calls[i].b_port : calls[i].a_port;
		st->tx_sock = port_sock[from];
		st->rx_sock = port_sock[expect];
		st->dst.sin_family = AF_INET;
		st->dst.sin_addr = opt.relay;
		if (opt.direct)
			st->dst.sin_addr = d == 0 ? opt.bind_b : opt.bind_a;
		st->dst.sin_port = htons(to_relay);
	}

	int ep = epoll_create1(EPOLL_CLOEXEC);
	for (unsigned k = 0; k < n_socks; k++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = k};
		epoll_ctl(ep, EPOLL_CTL_ADD, socks[k].fd, &ev);
	}
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct itimerspec its = {.it_interval = {0, (long)TICK_NS}, .it_value = {0, (long)TICK_NS}};
	timerfd_settime(tfd, 0, &its, NULL);
	struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

	uint64_t t0 = now_ns(CLOCK_MONOTONIC) + 2 * TICK_NS;
	uint64_t t0_rt = now_ns(CLOCK_REALTIME) + 2 * TICK_NS;
	uint64_t win_start = t0 + (uint64_t)(opt.warmup_s * 1e9);
	uint64_t win_end = win_start + (uint64_t)(opt.duration_s * 1e9);
	uint64_t stop_send = win_end;
	uint64_t stop_all = stop_send + (uint64_t)opt.drain_ms * 1000000ull;
	win_start_rt = t0_rt + (win_start - t0);
	win_end_rt = t0_rt + (win_end - t0);

	unsigned cursor = 0;
	uint64_t period = 0, lag_max = 0;
	int in_window = 0, window_done = 0;
	double cpu0 = -1, cpu1 = -1;
	struct rusage ru0, ru1;
	struct host_cpu hc0 = {0}, hc1 = {0};
	double ksi0 = 0, ksi1 = 0;
	ksoftirqd_find();
	uint64_t wall0 = 0, wall1 = 0;
	struct epoll_event evs[256];

	while (!stop_flag) {
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		if (!in_window && !window_done && now >= win_start) {
			in_window = 1;
			if (opt.pid > 0)
				cpu0 = bench_proc_cpu_s(opt.pid);
			getrusage(RUSAGE_SELF, &ru0);
			host_cpu_read(&hc0);
			ksi0 = ksoftirqd_cpu_s();
			wall0 = now;
		}
		if (in_window && now >= win_end) {
			in_window = 0;
			window_done = 1;
			if (opt.pid > 0)
				cpu1 = bench_proc_cpu_s(opt.pid);
			getrusage(RUSAGE_SELF, &ru1);
			host_cpu_read(&hc1);
			ksi1 = ksoftirqd_cpu_s();
			wall1 = now;
		}
		if (now >= stop_all)
			break;
		unsigned n_due = 0;
		while (n_due < n_streams) {
			uint64_t due_t =
			    t0 + period * PTIME_NS + (uint64_t)cursor * PTIME_NS / n_streams;
			if (due_t > now || due_t >= stop_send)
				break;
			if (now - due_t > lag_max)
				lag_max = now - due_t;
			due[n_due++] = cursor;
			if (++cursor == n_streams) {
				cursor = 0;
				period++;
			}
		}
		if (n_due)
			send_due(due, n_due);
		int n = epoll_wait(ep, evs, 256, 50);
		for (int k = 0; k < n; k++) {
			if (evs[k].data.u32 == UINT32_MAX) {
				uint64_t exp;
				if (read(tfd, &exp, sizeof exp) < 0) {
					/* nothing to do: the tick only wakes us */
				}
				continue;
			}
			receive_sock((int)evs[k].data.u32, in_window);
		}
	}
	if (!window_done) {
		fprintf(stderr, "rtpload: interrupted\n");
		return 1;
	}
	if (opt.rtpengine)
		for (unsigned i = 0; i < opt.calls; i++)
			ng_delete(i);

	uint64_t sent = 0, recv = 0;
	for (unsigned s = 0; s < n_streams; s++) {
		sent += streams[s].sent_w;
		recv += streams[s].recv_w;
	}
	uint64_t lost = sent > recv ? sent - recv : 0;
	double win_s = (double)(wall1 - wall0) / 1e9;
	double gen_cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
	                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
	                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
	                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	const char *p = opt.prefix;
	printf(
	    "{\"%scalls\": %u, \"%sstreams\": %u, \"%spps_offered\": %.0f, \"%swindow_s\": %.3f, "
	    "\"%ssent_pkts\": %" PRIu64 ", \"%sreceived_pkts\": %" PRIu64
	    ", \"%slost_pkts\": %" PRIu64 ", \"%sloss_pct\": %.4f, \"%sreordered_pkts\": %" PRIu64
	    ", \"%smisdelivered_pkts\": %" PRIu64 ", \"%sbad_pkts\": %" PRIu64,
	    p, opt.calls, p, n_streams, p, (double)n_streams * 1e9 / (double)PTIME_NS, p, win_s, p,
	    sent, p, recv, p, lost, p, sent ? 100.0 * (double)lost / (double)sent : 0.0, p,
	    reordered, p, misdelivered, p, bad_pkts);
	printf(", \"%slat_p50_us\": %.0f, \"%slat_p99_us\": %.0f, \"%slat_p999_us\": %.0f, "
	       "\"%slat_max_us\": %" PRIu64 ", \"%slat_mean_us\": %.1f",
	       p, hist_pct(0.50), p, hist_pct(0.99), p, hist_pct(0.999), p, lat_max_us, p,
	       lat_n ? (double)lat_sum_us / (double)lat_n : -1.0);
	printf(", \"%sfwd_pkts\": %" PRIu64 ", \"%sfwd_pps\": %.0f", p, fwd_pkts, p,
	       win_s > 0 ? (double)fwd_pkts / win_s : 0.0);
	if (opt.pid > 0 && cpu0 >= 0 && cpu1 >= 0) {
		double cpu = cpu1 - cpu0;
		printf(", \"%srelay_cpu_s\": %.2f, \"%srelay_cpu_pct\": %.1f, "
		       "\"%scpu_us_per_pkt\": %.3f",
		       p, cpu, p, win_s > 0 ? 100.0 * cpu / win_s : 0.0, p,
		       fwd_pkts ? cpu * 1e6 / (double)fwd_pkts : -1.0);
	}
	double ht = (double)(hc1.total - hc0.total), hz = (double)sysconf(_SC_CLK_TCK);
	double busy_s = (double)(hc1.busy - hc0.busy) / hz;
	double relay_s = opt.pid > 0 && cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : 0;
	double sirq_s = (double)(hc1.softirq - hc0.softirq) / hz;
	printf(
	    ", \"%shost_busy_pct\": %.1f, \"%shost_softirq_s\": %.2f, \"%sksoftirqd_cpu_s\": %.2f, "
	    "\"%shost_other_cpu_s\": %.2f",
	    p, ht > 0 ? 100.0 * (double)(hc1.busy - hc0.busy) / ht : -1.0, p, sirq_s, p,
	    ksi1 - ksi0, p, ht > 0 ? busy_s - relay_s - gen_cpu - (ksi1 - ksi0) : -1.0);
	printf(", \"%sgen_cpu_s\": %.2f, \"%stx_lag_max_us\": %.0f}\n", p, gen_cpu, p,
	       (double)lag_max / 1e3);
	return 0;
}
