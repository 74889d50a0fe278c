/* aiload: the phone side of AI calls for bench-ai: G.711 RTP (optionally SRTP) in, and what comes
 * back measured. */
/*
 * Usage:
 *   aiload --calls N --table FILE [options]
 *
 * One RTP stream per call, from the generator's socket (the port the SIP offer named) to
 * vacsd's port for the call (from its SDP answer): 12-byte RTP header + 160-byte G.711
 * payload every 20 ms (50 pps), the calls spread evenly over the 20 ms period on a 1 ms
 * tick. The PCMU payload starts with a tag the VAPI emulator reads from the WebSocket
 * frame vacsd makes of it (µ-law to `mulaw` is byte pass-through): magic "RTLD", the
 * stream id, the packet count and the CLOCK_REALTIME send time (ns); the rest is µ-law
 * silence. With --codec pcma the payload is A-law silence and nothing is tagged (vacsd
 * decodes and resamples it). With --srtp KEY every packet is protected with SDES
 * AES_CM_128_HMAC_SHA1_80 and that master key (base64 of 30 bytes, the key of the offer),
 * using vacsd's own SRTP code (media/srtp.c).
 *
 * Downstream: vacsd sends each call one packet per 20 ms (the assistant's audio, or
 * silence). The generator counts them per call (RTP headers are in the clear under SRTP:
 * nothing is decrypted), the sequence gaps (loss) and the pacing: the deviation of each
 * inter-arrival time from 20 ms, using the kernel's receive stamps (SO_TIMESTAMPNS).
 *
 * Table: one line per call, "LOCAL_PORT VACSD_PORT" (more fields are ignored).
 * Options:
 *   --bind ADDR (127.0.0.2) --relay ADDR (127.0.0.1) --codec pcmu|pcma (pcmu)
 *   --srtp KEY_BASE64   protect with AES_CM_128_HMAC_SHA1_80
 *   --warmup S --duration S (3, 20)
 *   --pid PID           vacsd: utime+stime (/proc/PID/stat, all threads) over the window
 *   --emu-pid PID       the emulator: SIGUSR1 at the window's start, SIGUSR2 at its end
 *                       (+ 300 ms for frames in flight), and its CPU time over the window
 *   --prefix STR        prefix of the figure names
 * Output: one flat JSON object on stdout: calls, window_s, up_sent_pkts,
 *   down_received_pkts, down_expected_pkts, down_lost_pkts, down_late_pkts (inter-arrival
 *   over 40 ms), down_jitter_p50_us/p99_us/p999_us/max_us (|inter-arrival - 20 ms|),
 *   vacsd_cpu_s, vacsd_cores (CPU s / window s), calls_per_core, emu_cpu_s, gen_cpu_s,
 *   tx_lag_max_us, host_busy_pct.
 * Exit: 0 when the run completed (even with loss), 1 on setup errors, 2 on usage.
 */
#include "bench_cpu.h"
#include "core/mem.h"
#include "media/media_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
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

#define PTIME_NS    20000000ull
#define PAYLOAD_LEN 160u
#define RTP_HDR     12u
#define MAGIC       0x52544c44u /* "RTLD" */
#define TICK_NS     1000000ull
#define HIST_FINE   20000u /* 1 us bins up to 20 ms */
#define HIST_COARSE 10000u /* 1 ms bins up to 10 s */
#define BATCH       32u

struct call {
	uint16_t port, vport;
	int fd;
	struct sockaddr_in dst;
	struct media_srtp *srtp;
	uint16_t seq;
	uint32_t ts, ssrc, count;
	/* downstream */
	int seen;
	uint32_t rx_ssrc;
	uint32_t max_ext; /* extended highest seq */
	uint64_t last_rx_ns;
	uint64_t rx_w, first_ext_w, last_ext_w;
	int have_w;
};

static struct {
	unsigned calls;
	const char *table, *prefix, *srtp_b64;
	int pcma;
	struct in_addr bind, relay;
	double warmup_s, duration_s;
	long pid, emu_pid;
} opt = {.warmup_s = 3, .duration_s = 20, .pid = -1, .emu_pid = -1, .prefix = ""};

static struct call *calls;
static uint64_t hist_fine[HIST_FINE], hist_coarse[HIST_COARSE], hist_n, hist_max;
static uint64_t down_late, sent_w, bad_pkts;
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
	fprintf(stderr, "usage: aiload --calls N --table FILE [--bind ADDR] [--relay ADDR]\n"
	                "  [--codec pcmu|pcma] [--srtp KEY_B64] [--warmup S] [--duration S]\n"
	                "  [--pid PID] [--emu-pid PID] [--prefix STR]\n");
	exit(2);
}

static void host_cpu(unsigned long long *busy, unsigned long long *total)
{
	unsigned long long v[8] = {0};
	*busy = *total = 0;
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
	           &v[4], &v[5], &v[6], &v[7]) == 8) {
		for (int i = 0; i < 8; i++)
			*total += v[i];
		*busy = *total - v[3] - v[4];
	}
	fclose(f);
}

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes base64 into out (at most cap bytes); the length, or -1. */
static int b64_decode(const char *s, uint8_t *out, size_t cap)
{
	unsigned acc = 0, bits = 0;
	size_t n = 0;
	for (; *s && *s != '='; s++) {
		int v = b64_val(*s);
		if (v < 0)
			return -1;
		acc = acc << 6 | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= cap)
				return -1;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	return (int)n;
}

static void hist_add(uint64_t us)
{
	if (us < HIST_FINE)
		hist_fine[us]++;
	else if (us / 1000 < HIST_COARSE)
		hist_coarse[us / 1000]++;
	if (us > hist_max)
		hist_max = us;
	hist_n++;
}

static double hist_pct(double p)
{
	if (!hist_n)
		return -1;
	uint64_t want = (uint64_t)(p * (double)hist_n), acc = 0;
	if (want >= hist_n)
		want = hist_n - 1;
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
	return (double)hist_max;
}

static void send_one(unsigned i, uint64_t t_rt, int in_window)
{
	struct call *c = &calls[i];
	uint8_t buf[RTP_HDR + PAYLOAD_LEN + MEDIA_SLOT_TAILROOM];
	buf[0] = 0x80;
	buf[1] = (uint8_t)((c->count == 0 ? 0x80 : 0) | (opt.pcma ? 8 : 0));
	media_put16(buf + 2, c->seq);
	media_put32(buf + 4, c->ts);
	media_put32(buf + 8, c->ssrc);
	uint8_t *p = buf + RTP_HDR;
	memset(p, opt.pcma ? 0xd5 : 0xff, PAYLOAD_LEN); /* silence */
	if (!opt.pcma) {
		uint32_t magic = MAGIC;
		memcpy(p, &magic, 4);
		memcpy(p + 4, &i, 4);
		memcpy(p + 8, &c->count, 4);
		memcpy(p + 12, &t_rt, 8);
	}
	size_t len = RTP_HDR + PAYLOAD_LEN;
	c->seq++;
	c->ts += PAYLOAD_LEN;
	c->count++;
	if (c->srtp && media_srtp_protect(c->srtp, buf, &len) != 0)
		return;
	if (sendto(c->fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&c->dst, sizeof c->dst) ==
	        (ssize_t)len &&
	    in_window)
		sent_w++;
}

static uint8_t rx_buf[BATCH][2048];
static char rx_ctl[BATCH][CMSG_SPACE(sizeof(struct timespec))];
static struct mmsghdr rx_msg[BATCH];
static struct iovec rx_iov[BATCH];

static void receive(unsigned i, int in_window)
{
	struct call *c = &calls[i];
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
		int r = recvmmsg(c->fd, rx_msg, BATCH, MSG_DONTWAIT, NULL);
		if (r <= 0)
			return;
		for (int k = 0; k < r; k++) {
			const uint8_t *b = rx_buf[k];
			size_t len = rx_msg[k].msg_len;
			if (len < RTP_HDR || (b[0] & 0xc0) != 0x80 || media_is_rtcp(b, len)) {
				if (len < RTP_HDR || (b[0] & 0xc0) != 0x80)
					bad_pkts++;
				continue; /* RTCP (rtcp-mux) is not counted */
			}
			uint64_t t = 0;
			for (struct cmsghdr *cm = CMSG_FIRSTHDR(&rx_msg[k].msg_hdr); cm;
			     cm = CMSG_NXTHDR(&rx_msg[k].msg_hdr, cm)) {
				if (cm->cmsg_level == SOL_SOCKET &&
				    cm->cmsg_type == SCM_TIMESTAMPNS) {
					struct timespec ts;
					memcpy(&ts, CMSG_DATA(cm), sizeof ts);
					t = (uint64_t)ts.tv_sec * 1000000000ull +
					    (uint64_t)ts.tv_nsec;
				}
			}
			if (!t)
				t = now_ns(CLOCK_REALTIME);
			uint16_t seq = media_get16(b + 2);
			uint32_t ssrc = media_get32(b + 8);
			if (!c->seen || ssrc != c->rx_ssrc) {
				c->seen = 1;
				c->rx_ssrc = ssrc;
				c->max_ext = 0x10000u + seq;
				c->last_rx_ns = t;
				c->have_w = 0;
				continue;
			}
			int16_t d = (int16_t)(uint16_t)(seq - (uint16_t)c->max_ext);
			uint32_t ext = c->max_ext + (uint32_t)(int32_t)d;
			if (d > 0) {
				if (in_window && d == 1) {
					/* pacing: consecutive packets only */
					uint64_t ia = t > c->last_rx_ns ? t - c->last_rx_ns : 0;
					uint64_t dev =
					    ia > PTIME_NS ? ia - PTIME_NS : PTIME_NS - ia;
					hist_add(dev / 1000);
					if (ia > 2 * PTIME_NS)
						down_late++;
				}
				c->max_ext = ext;
				c->last_rx_ns = t;
			}
			if (in_window) {
				if (!c->have_w) {
					c->have_w = 1;
					c->first_ext_w = ext;
					c->last_ext_w = ext;
				}
				if (ext > c->last_ext_w)
					c->last_ext_w = ext;
				if (ext < c->first_ext_w)
					c->first_ext_w = ext;
				c->rx_w++;
			}
		}
		if ((unsigned)r < BATCH)
			return;
	}
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
	inet_pton(AF_INET, "127.0.0.2", &opt.bind);
	inet_pton(AF_INET, "127.0.0.1", &opt.relay);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--calls"))
			opt.calls = (unsigned)arg_num(v);
		else if (!strcmp(a, "--table"))
			opt.table = v;
		else if (!strcmp(a, "--prefix"))
			opt.prefix = v;
		else if (!strcmp(a, "--srtp"))
			opt.srtp_b64 = v;
		else if (!strcmp(a, "--warmup"))
			opt.warmup_s = arg_num(v);
		else if (!strcmp(a, "--duration"))
			opt.duration_s = arg_num(v);
		else if (!strcmp(a, "--pid"))
			opt.pid = (long)arg_num(v);
		else if (!strcmp(a, "--emu-pid"))
			opt.emu_pid = (long)arg_num(v);
		else if (!strcmp(a, "--codec")) {
			if (!strcmp(v, "pcma"))
				opt.pcma = 1;
			else if (strcmp(v, "pcmu"))
				usage();
		} else if (!strcmp(a, "--bind")) {
			if (inet_pton(AF_INET, v, &opt.bind) != 1)
				usage();
		} else if (!strcmp(a, "--relay")) {
			if (inet_pton(AF_INET, v, &opt.relay) != 1)
				usage();
		} else
			usage();
	}
	if (!opt.calls || opt.calls > 20000 || !opt.table || opt.duration_s <= 0 ||
	    opt.warmup_s < 0)
		usage();
}

static int load_table(void)
{
	FILE *f = fopen(opt.table, "r");
	if (!f) {
		fprintf(stderr, "aiload: %s: %s\n", opt.table, strerror(errno));
		return -1;
	}
	char line[512];
	unsigned n = 0;
	while (n < opt.calls && fgets(line, sizeof line, f)) {
		unsigned a, b;
		if (line[0] == '#' || sscanf(line, "%u %u", &a, &b) != 2)
			continue;
		if (!a || !b || a > 65535 || b > 65535) {
			fprintf(stderr, "aiload: %s: bad line: %s", opt.table, line);
			fclose(f);
			return -1;
		}
		calls[n].port = (uint16_t)a;
		calls[n].vport = (uint16_t)b;
		n++;
	}
	fclose(f);
	if (n < opt.calls) {
		fprintf(stderr, "aiload: %s: %u calls listed, %u wanted\n", opt.table, n,
		        opt.calls);
		return -1;
	}
	return 0;
}

static int setup_call(unsigned i, const uint8_t *key)
{
	struct call *c = &calls[i];
	c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	int one = 1;
	setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
	struct sockaddr_in sa = {
	    .sin_family = AF_INET, .sin_port = htons(c->port), .sin_addr = opt.bind};
	if (bind(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		fprintf(stderr, "aiload: bind %s:%u: %s\n", inet_ntoa(opt.bind), c->port,
		        strerror(errno));
		return -1;
	}
	c->dst.sin_family = AF_INET;
	c->dst.sin_addr = opt.relay;
	c->dst.sin_port = htons(c->vport);
	c->ssrc = 0x20000000u + i;
	c->seq = (uint16_t)(i * 7919u);
	c->ts = i * 160u;
	if (key && media_srtp_create(&c->srtp, MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80, key, 1) != 0) {
		fprintf(stderr, "aiload: SRTP context for call %u failed\n", i);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < opt.calls + 64u) {
		rl.rlim_cur = rl.rlim_max < opt.calls + 64u ? rl.rlim_max : opt.calls + 64u;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	calls = calloc(opt.calls, sizeof *calls);
	if (!calls || load_table() < 0)
		return 1;
	uint8_t key[64], *keyp = NULL;
	if (opt.srtp_b64) {
		if (b64_decode(opt.srtp_b64, key, sizeof key) !=
		    (int)media_srtp_key_len(MEDIA_SRTP_AES_CM_128_HMAC_SHA1_80)) {
			fprintf(stderr, "aiload: --srtp: not a base64 AES_CM_128 key + salt\n");
			return 2;
		}
		keyp = key;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	for (unsigned i = 0; i < opt.calls; i++) {
		if (setup_call(i, keyp) < 0)
			return 1;
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
		epoll_ctl(ep, EPOLL_CTL_ADD, calls[i].fd, &ev);
	}
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct itimerspec its = {.it_interval = {0, (long)TICK_NS}, .it_value = {0, (long)TICK_NS}};
	timerfd_settime(tfd, 0, &its, NULL);
	struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

	uint64_t t0 = now_ns(CLOCK_MONOTONIC) + 2 * TICK_NS;
	uint64_t win_start = t0 + (uint64_t)(opt.warmup_s * 1e9);
	uint64_t win_end = win_start + (uint64_t)(opt.duration_s * 1e9);
	uint64_t emu_dump = win_end + 300000000ull;
	uint64_t stop_at = emu_dump + 200000000ull;
	unsigned cursor = 0;
	uint64_t period = 0, lag_max = 0;
	int in_window = 0, window_done = 0, dumped = 0;
	double cpu0 = -1, cpu1 = -1, ecpu0 = -1, ecpu1 = -1;
	struct rusage ru0, ru1;
	unsigned long long hb0 = 0, ht0 = 0, hb1 = 0, ht1 = 0;
	uint64_t wall0 = 0, wall1 = 0;
	struct epoll_event evs[256];

	while (!stop_flag) {
		uint64_t now = now_ns(CLOCK_MONOTONIC);
		if (!in_window && !window_done && now >= win_start) {
			in_window = 1;
			if (opt.emu_pid > 0)
				kill((pid_t)opt.emu_pid, SIGUSR1);
			cpu0 = opt.pid > 0 ? bench_proc_cpu_s(opt.pid) : -1;
			ecpu0 = opt.emu_pid > 0 ? bench_proc_cpu_s(opt.emu_pid) : -1;
			getrusage(RUSAGE_SELF, &ru0);
			host_cpu(&hb0, &ht0);
			wall0 = now;
		}
		if (in_window && now >= win_end) {
			in_window = 0;
			window_done = 1;
			cpu1 = opt.pid > 0 ? bench_proc_cpu_s(opt.pid) : -1;
			ecpu1 = opt.emu_pid > 0 ? bench_proc_cpu_s(opt.emu_pid) : -1;
			getrusage(RUSAGE_SELF, &ru1);
			host_cpu(&hb1, &ht1);
			wall1 = now;
		}
		if (window_done && !dumped && now >= emu_dump) {
			dumped = 1;
			if (opt.emu_pid > 0)
				kill((pid_t)opt.emu_pid, SIGUSR2);
		}
		if (now >= stop_at)
			break;
		/* sending continues to the end, so the calls never see a gap */
		for (unsigned n = 0; n < opt.calls; n++) {
			uint64_t due =
			    t0 + period * PTIME_NS + (uint64_t)cursor * PTIME_NS / opt.calls;
			if (due > now)
				break;
			if (now - due > lag_max)
				lag_max = now - due;
			send_one(cursor, now_ns(CLOCK_REALTIME), in_window);
			if (++cursor == opt.calls) {
				cursor = 0;
				period++;
			}
		}
		int n = epoll_wait(ep, evs, 256, 50);
		for (int k = 0; k < n; k++) {
			if (evs[k].data.u32 == UINT32_MAX) {
				uint64_t exp;
				if (read(tfd, &exp, sizeof exp) < 0) {
					/* the tick only wakes us */
				}
				continue;
			}
			receive(evs[k].data.u32, in_window);
		}
	}
	if (!window_done) {
		fprintf(stderr, "aiload: interrupted\n");
		return 1;
	}
	double win_s = (double)(wall1 - wall0) / 1e9;
	uint64_t rx = 0, expected = 0;
	for (unsigned i = 0; i < opt.calls; i++) {
		rx += calls[i].rx_w;
		/* packets vacsd should have sent in the window: the first and last seen there
		 * bound it; a call that got nothing in the window counts every slot as lost */
		if (calls[i].have_w)
			expected += calls[i].last_ext_w - calls[i].first_ext_w + 1;
		else
			expected += (uint64_t)(win_s * 50.0);
	}
	uint64_t lost = expected > rx ? expected - rx : 0;
	double gen_cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
	                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
	                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
	                 (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	double vcpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
	double cores = vcpu >= 0 && win_s > 0 ? vcpu / win_s : -1;
	const char *p = opt.prefix;
	printf("{\"%scalls\": %u, \"%swindow_s\": %.3f, \"%sup_sent_pkts\": %" PRIu64
	       ", \"%sdown_received_pkts\": %" PRIu64 ", \"%sdown_expected_pkts\": %" PRIu64
	       ", \"%sdown_lost_pkts\": %" PRIu64 ", \"%sdown_late_pkts\": %" PRIu64
	       ", \"%sdown_bad_pkts\": %" PRIu64,
	       p, opt.calls, p, win_s, p, sent_w, p, rx, p, expected, p, lost, p, down_late, p,
	       bad_pkts);
	printf(", \"%sdown_jitter_p50_us\": %.0f, \"%sdown_jitter_p99_us\": %.0f, "
	       "\"%sdown_jitter_p999_us\": %.0f, \"%sdown_jitter_max_us\": %" PRIu64,
	       p, hist_pct(0.5), p, hist_pct(0.99), p, hist_pct(0.999), p, hist_max);
	printf(", \"%svacsd_cpu_s\": %.2f, \"%svacsd_cores\": %.4f, \"%scalls_per_core\": %.0f", p,
	       vcpu, p, cores, p, cores > 0 ? opt.calls / cores : -1.0);
	double ecpu = ecpu0 >= 0 && ecpu1 >= 0 ? ecpu1 - ecpu0 : 0;
	double busy_s = (double)(hb1 - hb0) / (double)sysconf(_SC_CLK_TCK);
	printf(", \"%semu_cpu_s\": %.2f, \"%sgen_cpu_s\": %.2f, \"%stx_lag_max_us\": %.0f, "
	       "\"%shost_busy_pct\": %.1f, \"%shost_other_cpu_s\": %.2f}\n",
	       p, ecpu, p, gen_cpu, p, (double)lag_max / 1e3, p,
	       ht1 > ht0 ? 100.0 * (double)(hb1 - hb0) / (double)(ht1 - ht0) : -1.0, p,
	       busy_s - (vcpu > 0 ? vcpu : 0) - ecpu - gen_cpu);
	for (unsigned i = 0; i < opt.calls; i++)
		media_srtp_destroy(calls[i].srtp);
	return 0;
}
