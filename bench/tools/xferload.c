/* xferload: the media of bench-transfer: the lead's and the agent's RTP, and when the agent's
 * audio first reaches the lead. */
/*
 * Usage:
 *   xferload --lead-log FILE --agent-log FILE [options]
 *
 * Follows two SIPp <log> files as they grow (bench/sipp/xfer-lead-uac.xml and
 * xfer-agent-uas.xml):
 *   lead:  "A KEY PORT VPORT"          the lead's call is up: our port, vacsd's port
 *          "E KEY"                     the lead's call ended
 *   agent: "I KEY PORT VPORT S US"     the agent's INVITE arrived (gettimeofday S.US)
 *          "X KEY"                     the agent's call ended
 * KEY is the caller's number (digits), the same on both sides: it pairs the lead with its
 * agent. For each call the lead sends PCMU (12-byte RTP header + 160 bytes) every 20 ms
 * from --lead-bind:PORT to vacsd's port; the agent sends from --agent-bind:PORT to vacsd's
 * consult leg port as soon as its INVITE is seen, every --probe-ms (20) until its first
 * packet has reached the lead (the bridge is up), then every 20 ms. Every payload carries
 * a tag: magic "XFAG" (agent) or "XFLD" (lead), the key (u64), a packet count (u32) and
 * the CLOCK_REALTIME send time (u64 ns), little-endian; the rest is a constant byte. vacsd
 * relays PCMU to PCMU without touching the payload, so the lead sees exactly which of the
 * agent's packets was the first to cross the bridge. Arrival times are the kernel's
 * receive stamps (SO_TIMESTAMPNS, CLOCK_REALTIME): the same clock as SIPp's gettimeofday
 * and the VAPI emulator's epoch ms.
 *
 * Options:
 *   --lead-bind ADDR (127.0.0.2) --agent-bind ADDR (127.0.0.3) --relay ADDR (127.0.0.1)
 *   --probe-ms N (20)  --max-s N (600: stops by itself after that)  --out FILE (stdout)
 * Runs until SIGTERM/SIGINT or --max-s, then writes one line per call seen:
 *   KEY LEAD_UP_NS AGENT_SEEN_NS AGENT_INVITE_NS PROBE_START_NS FIRST_RX_NS FIRST_SEQ
 *   FIRST_SEND_NS AGENT_PKTS_AT_LEAD LEAD_PKTS_AT_AGENT OTHER_PKTS_AT_LEAD FIRST_AT_AGENT_NS
 *   AGENT_LAT_MEAN_NS
 * (0 where a time is unknown): AGENT_SEEN_NS is when this tool read the "I" line,
 * AGENT_INVITE_NS the time SIPp logged in it, FIRST_RX_NS the arrival at the lead of the
 * first agent packet, FIRST_SEQ/FIRST_SEND_NS that packet's count and send time,
 * FIRST_AT_AGENT_NS the arrival at the agent of the first lead packet, AGENT_LAT_MEAN_NS the
 * mean agent -> lead latency of all the agent's packets that reached the lead. Each stream
 * starts at a random phase of its 20 ms clock.
 * Exit: 0, 1 on setup errors, 2 on usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define PTIME_NS    20000000ull
#define PAYLOAD_LEN 160u
#define RTP_HDR     12u
#define TAG_LEN     24u
#define MAGIC_AGENT 0x47414658u /* "XFAG" */
#define MAGIC_LEAD  0x444c4658u /* "XFLD" */
#define MAX_CALLS   20000u
#define LINE_MAX_B  512u

enum role { LEAD, AGENT };

struct stream {
	int fd; /* -1: not open or ended */
	struct sockaddr_in dst;
	uint16_t seq;
	uint32_t ts, ssrc, count;
	uint64_t next_ns;
};

struct call {
	uint64_t key;
	struct stream s[2]; /* LEAD, AGENT */
	uint64_t lead_up_ns, agent_seen_ns, agent_invite_ns, probe_start_ns;
	uint64_t first_rx_ns, first_send_ns, first_at_agent_ns;
	uint32_t first_seq;
	uint64_t agent_pkts_at_lead, lead_pkts_at_agent, other_pkts_at_lead;
	uint64_t agent_lat_sum_ns; /* agent send -> lead arrival, all agent packets */
};

struct follow {
	const char *path;
	int fd;
	char buf[LINE_MAX_B];
	size_t len;
};

static struct call *calls;
static unsigned n_calls;
static volatile sig_atomic_t stop;
static struct in_addr a_lead, a_agent, a_relay;
static uint64_t probe_ns = PTIME_NS;
static int epfd;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static struct call *find(uint64_t key, int create)
{
	for (unsigned i = 0; i < n_calls; i++)
		if (calls[i].key == key)
			return &calls[i];
	if (!create || n_calls >= MAX_CALLS)
		return NULL;
	struct call *c = &calls[n_calls++];
	memset(c, 0, sizeof(*c));
	c->key = key;
	c->s[LEAD].fd = -1;
	c->s[AGENT].fd = -1;
	return c;
}

/* Opens the stream's socket on ADDR:PORT, sending to the relay's VPORT. */
static int stream_open(struct call *c, enum role r, struct in_addr addr, unsigned port,
                       unsigned vport)
{
	struct stream *s = &c->s[r];
	if (s->fd >= 0 || !port || port > 65535 || !vport || vport > 65535)
		return -1;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
	struct sockaddr_in sa = {
	    .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = addr};
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "xferload: bind %s:%u: %s\n", inet_ntoa(addr), port,
		        strerror(errno));
		close(fd);
		return -1;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)(c - calls) << 1) | r};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		close(fd);
		return -1;
	}
	s->fd = fd;
	s->dst = (struct sockaddr_in){
	    .sin_family = AF_INET, .sin_port = htons((uint16_t)vport), .sin_addr = a_relay};
	s->seq = (uint16_t)rand();
	s->ts = (uint32_t)rand();
	s->ssrc = (uint32_t)rand() ^ (uint32_t)c->key ^ (r ? 0x5a5a5a5au : 0);
	s->count = 0;
	/* a random phase: where the 200 OK falls in the agent's 20 ms packet clock varies */
	s->next_ns = now_ns() + (uint64_t)(rand() % 20000) * 1000ull;
	return 0;
}

static void stream_close(struct call *c, enum role r)
{
	struct stream *s = &c->s[r];
	if (s->fd < 0)
		return;
	epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static void stream_send(struct call *c, enum role r, uint64_t now)
{
	struct stream *s = &c->s[r];
	uint8_t pkt[RTP_HDR + PAYLOAD_LEN];
	pkt[0] = 0x80;
	pkt[1] = 0; /* PCMU */
	uint16_t seq = htons(s->seq);
	uint32_t ts = htonl(s->ts), ssrc = htonl(s->ssrc);
	memcpy(pkt + 2, &seq, 2);
	memcpy(pkt + 4, &ts, 4);
	memcpy(pkt + 8, &ssrc, 4);
	uint8_t *p = pkt + RTP_HDR;
	memset(p, r == AGENT ? 0x55 : 0xd5, PAYLOAD_LEN);
	put32(p, r == AGENT ? MAGIC_AGENT : MAGIC_LEAD);
	put64(p + 4, c->key);
	put32(p + 12, s->count);
	put64(p + 16, now);
	if (sendto(s->fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&s->dst, sizeof(s->dst)) < 0 &&
	    errno != EAGAIN && errno != ECONNREFUSED)
		fprintf(stderr, "xferload: sendto: %s\n", strerror(errno));
	s->seq++;
	s->ts += 160;
	s->count++;
}

static void send_due(uint64_t now)
{
	for (unsigned i = 0; i < n_calls; i++) {
		struct call *c = &calls[i];
		for (int r = LEAD; r <= AGENT; r++) {
			struct stream *s = &c->s[r];
			if (s->fd < 0)
				continue;
			uint64_t period = (r == AGENT && !c->first_rx_ns) ? probe_ns : PTIME_NS;
			if (now > s->next_ns + 100000000ull)
				s->next_ns = now; /* fell far behind: no burst */
			while (s->next_ns <= now) {
				stream_send(c, (enum role)r, now);
				s->next_ns += period;
			}
		}
	}
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void receive(struct call *c, enum role r)
{
	uint8_t buf[2048];
	char cbuf[256];
	for (int n = 0; n < 64; n++) {
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr mh = {.msg_iov = &iov,
		                    .msg_iovlen = 1,
		                    .msg_control = cbuf,
		                    .msg_controllen = sizeof(cbuf)};
		ssize_t len = recvmsg(c->s[r].fd, &mh, 0);
		if (len < 0)
			return;
		uint64_t at = 0;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPNS) {
				struct timespec ts;
				memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
				at = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
			}
		}
		if (!at)
			at = now_ns();
		if (len < (ssize_t)RTP_HDR || (buf[0] >> 6) != 2)
			continue;
		size_t off = RTP_HDR + 4u * (buf[0] & 0x0f);
		if ((buf[0] & 0x10) && (size_t)len >= off + 4)
			off += 4 + 4u * (((size_t)buf[off + 2] << 8) | buf[off + 3]);
		if ((buf[1] & 0x7f) != 0 || (size_t)len < off + TAG_LEN) {
			if (r == LEAD)
				c->other_pkts_at_lead++;
			continue;
		}
		const uint8_t *p = buf + off;
		uint32_t magic = get32(p);
		int ours = get64(p + 4) == c->key;
		if (r == LEAD && magic == MAGIC_AGENT && ours) {
			if (!c->first_rx_ns) {
				c->first_rx_ns = at;
				c->first_seq = get32(p + 12);
				c->first_send_ns = get64(p + 16);
			}
			c->agent_pkts_at_lead++;
			uint64_t sent = get64(p + 16);
			c->agent_lat_sum_ns += at > sent ? at - sent : 0;
		} else if (r == AGENT && magic == MAGIC_LEAD && ours) {
			if (!c->first_at_agent_ns)
				c->first_at_agent_ns = at;
			c->lead_pkts_at_agent++;
		} else if (r == LEAD) {
			c->other_pkts_at_lead++;
		}
	}
}

/* "1795843598.000000" (SIPp prints its variables as doubles) */
static uint64_t parse_us(const char *s_str, const char *us_str)
{
	double s = strtod(s_str, NULL), us = strtod(us_str, NULL);
	if (s <= 0)
		return 0;
	return (uint64_t)s * 1000000000ull + (uint64_t)us * 1000ull;
}

static void on_line(int agent, char *line, uint64_t now)
{
	char *f[8] = {0};
	int n = 0;
	for (char *save = NULL, *t = strtok_r(line, " \t\r", &save); t && n < 8;
	     t = strtok_r(NULL, " \t\r", &save))
		f[n++] = t;
	if (n < 2)
		return;
	uint64_t key = strtoull(f[1], NULL, 10);
	if (!key)
		return;
	if (!agent && strcmp(f[0], "A") == 0 && n >= 4) {
		struct call *c = find(key, 1);
		if (!c)
			return;
		if (stream_open(c, LEAD, a_lead, (unsigned)atoi(f[2]), (unsigned)atoi(f[3])) == 0)
			c->lead_up_ns = now;
	} else if (agent && strcmp(f[0], "I") == 0 && n >= 6) {
		struct call *c = find(key, 1);
		if (!c)
			return;
		c->agent_seen_ns = now;
		c->agent_invite_ns = parse_us(f[4], f[5]);
		if (stream_open(c, AGENT, a_agent, (unsigned)atoi(f[2]), (unsigned)atoi(f[3])) == 0)
			c->probe_start_ns = now;
	} else if (strcmp(f[0], agent ? "X" : "E") == 0) {
		struct call *c = find(key, 0);
		if (c)
			stream_close(c, agent ? AGENT : LEAD);
	}
}

static void follow_poll(struct follow *fl, int agent)
{
	if (fl->fd < 0) {
		fl->fd = open(fl->path, O_RDONLY | O_CLOEXEC);
		if (fl->fd < 0)
			return;
	}
	for (;;) {
		ssize_t n = read(fl->fd, fl->buf + fl->len, sizeof(fl->buf) - 1 - fl->len);
		if (n <= 0)
			return;
		fl->len += (size_t)n;
		uint64_t now = now_ns();
		size_t start = 0;
		for (size_t i = 0; i < fl->len; i++) {
			if (fl->buf[i] != '\n')
				continue;
			fl->buf[i] = 0;
			on_line(agent, fl->buf + start, now);
			start = i + 1;
		}
		if (start == 0 && fl->len == sizeof(fl->buf) - 1)
			start = fl->len; /* an over-long line: dropped */
		memmove(fl->buf, fl->buf + start, fl->len - start);
		fl->len -= start;
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: xferload --lead-log FILE --agent-log FILE [--lead-bind A] "
	                "[--agent-bind A] [--relay A] [--probe-ms N] [--max-s N] [--out FILE]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct follow lead = {.fd = -1}, agent = {.fd = -1};
	const char *out = NULL;
	unsigned max_s = 600, pms = 20;
	inet_pton(AF_INET, "127.0.0.2", &a_lead);
	inet_pton(AF_INET, "127.0.0.3", &a_agent);
	inet_pton(AF_INET, "127.0.0.1", &a_relay);
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			return usage();
		i++;
		if (strcmp(o, "--lead-log") == 0)
			lead.path = v;
		else if (strcmp(o, "--agent-log") == 0)
			agent.path = v;
		else if (strcmp(o, "--lead-bind") == 0 && inet_pton(AF_INET, v, &a_lead) == 1)
			;
		else if (strcmp(o, "--agent-bind") == 0 && inet_pton(AF_INET, v, &a_agent) == 1)
			;
		else if (strcmp(o, "--relay") == 0 && inet_pton(AF_INET, v, &a_relay) == 1)
			;
		else if (strcmp(o, "--probe-ms") == 0)
			pms = (unsigned)atoi(v);
		else if (strcmp(o, "--max-s") == 0)
			max_s = (unsigned)atoi(v);
		else if (strcmp(o, "--out") == 0)
			out = v;
		else
			return usage();
	}
	if (!lead.path || !agent.path || pms < 1 || pms > 20 || max_s < 1)
		return usage();
	probe_ns = pms * 1000000ull;
	calls = calloc(MAX_CALLS, sizeof(*calls));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (!calls || epfd < 0 || tfd < 0) {
		perror("xferload: setup");
		return 1;
	}
	struct itimerspec its = {.it_interval = {0, 1000000}, .it_value = {0, 1000000}};
	timerfd_settime(tfd, 0, &its, NULL);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
	epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	srand((unsigned)now_ns());

	uint64_t end = now_ns() + (uint64_t)max_s * 1000000000ull;
	struct epoll_event evs[64];
	while (!stop) {
		int n = epoll_wait(epfd, evs, 64, 100);
		uint64_t now = now_ns();
		if (now > end)
			break;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == UINT64_MAX) {
				uint64_t x;
				if (read(tfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
					perror("xferload: timerfd");
				continue;
			}
			struct call *c = &calls[evs[i].data.u64 >> 1];
			enum role r = (enum role)(evs[i].data.u64 & 1);
			if (c->s[r].fd >= 0)
				receive(c, r);
		}
		follow_poll(&lead, 0);
		follow_poll(&agent, 1);
		send_due(now_ns());
	}
	FILE *fo = out ? fopen(out, "w") : stdout;
	if (!fo) {
		perror("xferload: --out");
		return 1;
	}
	for (unsigned i = 0; i < n_calls; i++) {
		const struct call *c = &calls[i];
		fprintf(fo,
		        "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
		        " %" PRIu32 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
		        " %" PRIu64 "\n",
		        c->key, c->lead_up_ns, c->agent_seen_ns, c->agent_invite_ns,
		        c->probe_start_ns, c->first_rx_ns, c->first_seq, c->first_send_ns,
		        c->agent_pkts_at_lead, c->lead_pkts_at_agent, c->other_pkts_at_lead,
		        c->first_at_agent_ns,
		        c->agent_pkts_at_lead ? c->agent_lat_sum_ns / c->agent_pkts_at_lead : 0);
	}
	if (fo != stdout)
		fclose(fo);
	for (unsigned i = 0; i < n_calls; i++) {
		stream_close(&calls[i], LEAD);
		stream_close(&calls[i], AGENT);
	}
	return 0;
}
