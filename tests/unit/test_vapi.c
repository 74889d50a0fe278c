/* Unit tests: the VAPI AI leg against a fake VAPI in this process (HTTP and WebSocket on
 * plain loopback sockets): the POST /call request, audio both ways through a real media
 * session, barge-in, text messages to events, REST and socket failures, and every way a
 * call ends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/mem.h"
#include "core/metric.h"
#include "media/media.h"
#include "media/media_int.h"
#include "vapi/vapi.h"
#include "vapi/vapi_int.h"
#include "tests/unit/media_test.h"

#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>

/* ---- the fake VAPI: POST /call and the call's WebSocket on one port ---- */

#define FK_TEXTS 32
#define FK_BIN   4096

struct fake {
	int lfd;
	uint16_t port;
	pthread_t thr;
	int running;
	atomic_int stop;
	pthread_mutex_t mu;    /* everything below, except where noted */
	pthread_mutex_t tx_mu; /* ws_fd swaps and writes to it */
	/* what POST /call answers */
	int status;
	char answer[80 * 1024];
	unsigned delay_ms;
	int upgrade_status; /* 101, or a refusal such as 403 */
	int mute_close;     /* never answer the client's close frame */
	/* what was seen */
	int posts, http_aborted, upgrades;
	char post_head[4096], post_body[8192], ws_head[4096];
	int ws_fd, ws_poll, ws_eof, close_code;
	unsigned char rbuf[1 << 16]; /* server thread only */
	size_t rlen;
	int n_bin, n_bin_bad, n_want, n_unmasked,
	    n_rsv; /* client frames without a mask, with RSV bits */
	size_t bin_size;
	uint64_t bin_us[FK_BIN];
	uint8_t want[640];
	size_t want_len;
	int n_text;
	char texts[FK_TEXTS][1024];
};

static struct fake fk;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int get_int(const int *field)
{
	pthread_mutex_lock(&fk.mu);
	int v = *field;
	pthread_mutex_unlock(&fk.mu);
	return v;
}

/* Waits until *field >= v (or timeout); returns the last value seen. */
static int wait_int(const int *field, int v, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int got;
	while ((got = get_int(field)) < v && now_ms() < end)
		sleep_ms(5);
	return got;
}

/* Copies src into dst (cap bytes), cut short when longer. */
static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void ws_accept_key(const char *key, char *out)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	char buf[256];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	snprintf(buf, sizeof(buf), "%s%s", key, guid);
	assert_int_equal(EVP_Digest(buf, strlen(buf), md, &mdlen, EVP_sha1(), NULL), 1);
	EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

/* Value of header `name` (with ':') in a request head, copied into out. */
static int header_value(const char *head, const char *name, char *out, size_t cap)
{
	const char *p = strcasestr(head, name);
	if (!p)
		return -1;
	p += strlen(name);
	while (*p == ' ')
		p++;
	size_t n = strcspn(p, "\r\n");
	if (n >= cap)
		n = cap - 1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

static void fake_http(struct fake *f, int fd, char *head, size_t hlen, size_t have)
{
	char cl[32] = "0";
	header_value(head, "\r\nContent-Length:", cl, sizeof(cl));
	size_t blen = (size_t)strtoul(cl, NULL, 10), got = have - hlen;
	char body[8192];
	if (blen >= sizeof(body))
		blen = sizeof(body) - 1;
	memcpy(body, head + hlen, got < blen ? got : blen);
	while (got < blen) {
		ssize_t n = recv(fd, body + got, blen - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	body[blen] = '\0';
	head[hlen] = '\0';
	pthread_mutex_lock(&f->mu);
	f->posts++;
	copy_str(f->post_head, sizeof(f->post_head), head);
	copy_str(f->post_body, sizeof(f->post_body), body);
	unsigned delay = f->delay_ms;
	pthread_mutex_unlock(&f->mu);
	for (unsigned t = 0; t < delay && !atomic_load(&f->stop); t += 10) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		char c;
		if (poll(&p, 1, 10) == 1 && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) {
			pthread_mutex_lock(&f->mu);
			f->http_aborted = 1;
			pthread_mutex_unlock(&f->mu);
			close(fd);
			return;
		}
	}
	char out[256];
	pthread_mutex_lock(&f->mu);
	size_t alen = strlen(f->answer);
	int n = snprintf(out, sizeof(out),
	                 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
	                 "%zu\r\nConnection: close\r\n\r\n",
	                 f->status, alen);
	if (send_all(fd, out, (size_t)n) == 0)
		send_all(fd, f->answer, alen);
	pthread_mutex_unlock(&f->mu);
	close(fd);
}

static void fake_upgrade(struct fake *f, int fd, char *head, size_t hlen)
{
	head[hlen] = '\0';
	char key[128] = "", out[512];
	header_value(head, "\r\nSec-WebSocket-Key:", key, sizeof(key));
	pthread_mutex_lock(&f->mu);
	f->upgrades++;
	copy_str(f->ws_head, sizeof(f->ws_head), head);
	int st = f->upgrade_status;
	pthread_mutex_unlock(&f->mu);
	if (st != 101) {
		int n = snprintf(
		    out, sizeof(out),
		    "HTTP/1.1 %d Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", st);
		send_all(fd, out, (size_t)n);
		close(fd);
		return;
	}
	char acc[64];
	ws_accept_key(key, acc);
	int n = snprintf(out, sizeof(out),
	                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
	                 "Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
	                 acc);
	/* The fd is the test's to write on before the client can see the 101. */
	pthread_mutex_lock(&f->tx_mu);
	send_all(fd, out, (size_t)n);
	pthread_mutex_lock(&f->mu);
	if (f->ws_fd >= 0)
		close(f->ws_fd);
	f->ws_fd = fd;
	f->ws_poll = 1;
	f->ws_eof = 0;
	f->close_code = -1;
	f->rlen = 0;
	pthread_mutex_unlock(&f->mu);
	pthread_mutex_unlock(&f->tx_mu);
}

static void fake_accept(struct fake *f)
{
	int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char head[16384];
	size_t have = 0;
	char *end = NULL;
	while (!end && have < sizeof(head) - 1) {
		ssize_t n = recv(fd, head + have, sizeof(head) - 1 - have, 0);
		if (n <= 0)
			break;
		have += (size_t)n;
		head[have] = '\0';
		end = strstr(head, "\r\n\r\n");
	}
	if (!end) {
		close(fd);
		return;
	}
	size_t hlen = (size_t)(end + 4 - head);
	tv.tv_sec = 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (strncmp(head, "POST ", 5) == 0)
		fake_http(f, fd, head, hlen, have);
	else if (strncmp(head, "GET ", 4) == 0 && strcasestr(head, "\r\nUpgrade: websocket"))
		fake_upgrade(f, fd, head, hlen);
	else
		close(fd);
}

/* A frame from the server (never masked). */
static void fake_frame_fd(int fd, int fin, int op, const void *data, size_t len)
{
	uint8_t h[10];
	size_t n = 0;
	h[n++] = (uint8_t)((fin ? 0x80 : 0) | op);
	if (len < 126) {
		h[n++] = (uint8_t)len;
	} else if (len < 65536) {
		h[n++] = 126;
		h[n++] = (uint8_t)(len >> 8);
		h[n++] = (uint8_t)len;
	} else {
		h[n++] = 127;
		for (int i = 7; i >= 0; i--)
			h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
	}
	if (send_all(fd, h, n) == 0 && len)
		send_all(fd, data, len);
}

static void fake_on_frame(struct fake *f, int op, uint8_t *p, size_t len)
{
	if (op == 2) {
		if (f->n_bin < FK_BIN)
			f->bin_us[f->n_bin] = now_us();
		f->n_bin++;
		if (len != f->bin_size)
			f->n_bin_bad++;
		if (f->want_len && len == f->want_len && memcmp(p, f->want, len) == 0)
			f->n_want++;
	} else if (op == 1) {
		if (f->n_text < FK_TEXTS) {
			size_t n = len < 1023 ? len : 1023;
			memcpy(f->texts[f->n_text], p, n);
			f->texts[f->n_text][n] = '\0';
		}
		f->n_text++;
	} else if (op == 8) {
		f->close_code = len >= 2 ? (p[0] << 8 | p[1]) : 1005;
		if (!f->mute_close)
			f->ws_poll = 0; /* answered below; no more reading */
	}
}

static void fake_ws_read(struct fake *f)
{
	ssize_t r = recv(f->ws_fd, f->rbuf + f->rlen, sizeof(f->rbuf) - f->rlen, MSG_DONTWAIT);
	if (r == 0 || (r < 0 && errno != EAGAIN)) {
		pthread_mutex_lock(&f->mu);
		f->ws_eof = 1;
		f->ws_poll = 0;
		pthread_mutex_unlock(&f->mu);
		return;
	}
	if (r < 0)
		return;
	f->rlen += (size_t)r;
	for (;;) {
		uint8_t *b = f->rbuf;
		if (f->rlen < 2)
			break;
		size_t len = b[1] & 0x7f, h = 2;
		if (len == 126) {
			if (f->rlen < 4)
				break;
			len = (size_t)b[2] << 8 | b[3];
			h = 4;
		} else if (len == 127) {
			if (f->rlen < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | b[2 + i];
			h = 10;
		}
		int masked = b[1] & 0x80, op = b[0] & 0x0f;
		size_t mh = h + (masked ? 4u : 0u);
		if (f->rlen < mh + len)
			break;
		uint8_t *p = b + mh;
		if (masked)
			for (size_t i = 0; i < len; i++)
				p[i] ^= b[h + (i & 3)];
		pthread_mutex_lock(&f->mu);
		if (!masked) /* RFC 6455 5.1: a client masks every frame */
			f->n_unmasked++;
		if (b[0] & 0x70)
			f->n_rsv++;
		fake_on_frame(f, op, p, len);
		pthread_mutex_unlock(&f->mu);
		if (op == 8 && f->mute_close) {
			/* keep reading: the client must drop the connection itself */
		} else if (op == 8) {
			pthread_mutex_lock(&f->tx_mu);
			fake_frame_fd(f->ws_fd, 1, 8, p, len < 2 ? len : 2);
			shutdown(f->ws_fd, SHUT_WR);
			pthread_mutex_unlock(&f->tx_mu);
		} else if (op == 9) {
			pthread_mutex_lock(&f->tx_mu);
			fake_frame_fd(f->ws_fd, 1, 10, p, len);
			pthread_mutex_unlock(&f->tx_mu);
		}
		memmove(b, b + mh + len, f->rlen - mh - len);
		f->rlen -= mh + len;
		if (op == 8 && !f->mute_close)
			break;
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	while (!atomic_load(&f->stop)) {
		pthread_mutex_lock(&f->mu);
		int wfd = f->ws_poll ? f->ws_fd : -1;
		pthread_mutex_unlock(&f->mu);
		struct pollfd p[2] = {{.fd = f->lfd, .events = POLLIN},
		                      {.fd = wfd, .events = POLLIN}};
		if (poll(p, wfd >= 0 ? 2 : 1, 10) <= 0)
			continue;
		if (p[0].revents & POLLIN)
			fake_accept(f);
		if (wfd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
			fake_ws_read(f);
	}
	return NULL;
}

static void fake_start(void)
{
	memset(&fk, 0, sizeof(fk));
	pthread_mutex_init(&fk.mu, NULL);
	pthread_mutex_init(&fk.tx_mu, NULL);
	fk.ws_fd = -1;
	fk.close_code = -1;
	fk.upgrade_status = 101;
	fk.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fk.lfd >= 0);
	struct sockaddr_in sa = addr_of(0);
	assert_int_equal(bind(fk.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fk.lfd, 16), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(fk.lfd, (struct sockaddr *)&sa, &sl), 0);
	fk.port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&fk.thr, NULL, fake_main, &fk), 0);
	fk.running = 1;
}

static void fake_stop(void)
{
	if (!fk.running)
		return;
	atomic_store(&fk.stop, 1);
	pthread_join(fk.thr, NULL);
	if (fk.ws_fd >= 0)
		close(fk.ws_fd);
	close(fk.lfd);
	pthread_mutex_destroy(&fk.mu);
	pthread_mutex_destroy(&fk.tx_mu);
	fk.running = 0;
}

/* POST /call answers 201 with a websocketCallUrl on this server (path and query). */
static void fake_answer_call(const char *id)
{
	pthread_mutex_lock(&fk.mu);
	fk.status = 201;
	snprintf(fk.answer, sizeof(fk.answer),
	         "{\"id\":\"%s\",\"type\":\"vapi.websocketCall\",\"status\":\"queued\","
	         "\"transport\":{\"provider\":\"vapi.websocket\",\"websocketCallUrl\":"
	         "\"ws://127.0.0.1:%u/%s/transport?token=abc\"}}",
	         id, fk.port, id);
	pthread_mutex_unlock(&fk.mu);
}

static void fake_answer(int status, const char *body)
{
	pthread_mutex_lock(&fk.mu);
	fk.status = status;
	snprintf(fk.answer, sizeof(fk.answer), "%s", body);
	pthread_mutex_unlock(&fk.mu);
}

static void fake_send(int fin, int op, const void *data, size_t len)
{
	pthread_mutex_lock(&fk.tx_mu);
	if (fk.ws_fd >= 0)
		fake_frame_fd(fk.ws_fd, fin, op, data, len);
	pthread_mutex_unlock(&fk.tx_mu);
}

static void fake_text(const char *s)
{
	fake_send(1, 1, s, strlen(s));
}

/* Copy of the i-th text frame the client sent. */
static void fake_text_at(int i, char *out, size_t cap)
{
	pthread_mutex_lock(&fk.mu);
	snprintf(out, cap, "%s", i < FK_TEXTS ? fk.texts[i] : "");
	pthread_mutex_unlock(&fk.mu);
}

/* ---- the module under test ---- */

static long live_before;

/* Hosted runs (test names ending in _hosted): media starts first and the first ai context
 * runs on media worker 0 (vapi_config.on_media_workers); the second, with no worker of
 * its own, keeps a thread. */
static int hosted;
static unsigned coalesce_us; /* media.coalesce_us of the _coalesced runs */

static int leak_setup(void **state)
{
	(void)state;
	live_before = mem_live_blocks();
	return 0;
}

static int leak_teardown(void **state)
{
	(void)state;
	vapi_close();
	fake_stop();
	media_close();
	metric_registry_close();
	hosted = 0;
	coalesce_us = 0;
	assert_int_equal(mem_live_blocks(), live_before);
	return 0;
}

static void up_media(void);

static void up_vapi_url(const char *url, size_t max_message, unsigned timeout_ms)
{
	if (hosted && !media_worker_count())
		up_media();
	struct vapi_config vc;
	memset(&vc, 0, sizeof(vc));
	vc.api_url = url;
	vc.api_key = "test-key";
	vc.user_agent = "vacs-test/1";
	vc.connect_timeout_ms = timeout_ms;
	vc.max_message = max_message;
	vc.ai_threads = 2; /* the calls here use the first; the second starts and stops */
	vc.on_media_workers = hosted;
	assert_int_equal(vapi_init(&vc), 0);
}

static void up_vapi(size_t max_message)
{
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/", fk.port); /* trailing '/' is dropped */
	up_vapi_url(url, max_message, 2000);
}

static void up_media(void)
{
	if (media_worker_count())
		return; /* hosted: already up */
	struct media_config cfg;
	pick_ports(16);
	memset(&cfg, 0, sizeof(cfg));
	cfg.address = LOCALHOST;
	cfg.port_min = port_base;
	cfg.port_max = (uint16_t)(port_base + 15u);
	cfg.workers = 1;
	cfg.max_sessions = 16;
	cfg.coalesce_us = coalesce_us;
	assert_int_equal(media_init(&cfg), 0);
}

static int next_event(struct vapi_event *ev, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (vapi_events_poll(ev, 1) == 1)
			return 1;
		uint64_t t = now_ms();
		if (t >= end)
			return 0;
		struct pollfd pfd = {.fd = vapi_event_fd(), .events = POLLIN};
		poll(&pfd, 1, (int)(end - t));
	}
}

/* Takes the next event and checks its type and owner; the caller frees it. */
static void expect_event(struct vapi_event *ev, enum vapi_event_type type, uint64_t owner)
{
	assert_int_equal(next_event(ev, 3000), 1);
	if (ev->type != type)
		fail_msg("event %d (%s / %s), expected %d", ev->type, ev->text ? ev->text : "-",
		         ev->text2 ? ev->text2 : "-", type);
	assert_int_equal(ev->owner, owner);
}

static void expect_no_event(int ms)
{
	struct vapi_event ev;
	if (next_event(&ev, ms)) {
		fail_msg("unexpected event %d (%s)", ev.type, ev.text ? ev.text : "-");
	}
}

static int64_t metric_of(const char *name)
{
	return metric_lookup(name);
}

/* Waits until the metric equals v (or timeout); returns the last value. */
static int64_t wait_metric(const char *name, int64_t v, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int64_t got;
	while ((got = metric_of(name)) != v && now_ms() < end)
		sleep_ms(5);
	return got;
}

static struct vapi_call *create(uint64_t owner, enum media_ai_format fmt)
{
	struct vapi_call_params p;
	memset(&p, 0, sizeof(p));
	p.owner = owner;
	p.name = "call-x";
	p.assistant_id = "asst-1";
	p.variables_json = "{\"caller\":\"+5215512345678\"}";
	p.max_duration_s = 1800;
	p.format = fmt;
	struct vapi_call *c = NULL;
	assert_int_equal(vapi_call_create(&p, &c), 0);
	assert_non_null(c);
	return c;
}

/* A call up to VAPI_EV_CONNECTED, with its port given before the socket is up. */
static struct vapi_call *call_up(uint64_t owner, enum media_ai_format fmt,
                                 struct media_ai_port *port)
{
	int before = get_int(&fk.upgrades);
	struct vapi_call *c = create(owner, fmt);
	if (port)
		assert_int_equal(vapi_call_connect(c, port), 0);
	struct vapi_event ev;
	expect_event(&ev, VAPI_EV_CONNECTED, owner);
	vapi_event_free(&ev);
	assert_int_equal(get_int(&fk.upgrades), before + 1);
	return c;
}

/* A caller on a PCMU (or G.722) leg whose AI port is handed to vapi. */
struct caller {
	struct far f;
	struct media_session *s;
	uint16_t port;
	struct media_ai_port *ai;
	uint16_t seq;
	uint32_t ts;
};

static void caller_open(struct caller *cl, enum media_codec codec, uint8_t pt,
                        enum media_ai_format fmt)
{
	memset(cl, 0, sizeof(*cl));
	far_open(&cl->f);
	assert_int_equal(media_session_create(9, NULL, &cl->s, &cl->port), 0);
	struct media_stream_params sp = leg(&cl->f, codec, pt, -1, -1);
	assert_int_equal(media_session_update(cl->s, &sp), 0);
	assert_int_equal(media_ai_attach(cl->s, fmt, vapi_ai_notify, NULL, &cl->ai), 0);
}

static void caller_close(struct caller *cl)
{
	media_session_destroy(cl->s);
	far_close(&cl->f);
}

static void caller_send(struct caller *cl, uint8_t pt, const uint8_t *pl, size_t len,
                        uint32_t ts_step)
{
	struct media_rtp_hdr h;
	uint8_t pkt[1600];
	memset(&h, 0, sizeof(h));
	h.pt = pt;
	h.seq = cl->seq++;
	h.ts = cl->ts;
	h.ssrc = 0x4242;
	h.payload_len = (uint16_t)len;
	cl->ts += ts_step;
	int n = media_rtp_build(pkt, sizeof(pkt), &h, NULL, NULL, pl);
	assert_true(n > 0);
	far_send(&cl->f, cl->port, pkt, (size_t)n);
}

/* Appends the payloads of the RTP packets waiting at the far end to buf. */
static size_t caller_collect(struct caller *cl, uint8_t *buf, size_t have, size_t cap)
{
	uint8_t pkt[2048];
	int r;
	while ((r = far_recv(&cl->f, pkt, sizeof(pkt), 0)) > 0) {
		if (media_is_rtcp(pkt, (size_t)r))
			continue;
		struct media_rtp_hdr h;
		if (media_rtp_parse(pkt, (size_t)r, &h) != 0)
			continue;
		if (have + h.payload_len <= cap) {
			memcpy(buf + have, pkt + h.hdr_len, h.payload_len);
			have += h.payload_len;
		}
	}
	return have;
}

/* Median gap between upstream frames first..last-1 at the fake, in microseconds. */
static uint64_t median_gap_us(int first, int last)
{
	static uint64_t gaps[FK_BIN];
	int n = 0;
	pthread_mutex_lock(&fk.mu);
	for (int i = first + 1; i < last && i < FK_BIN; i++)
		gaps[n++] = fk.bin_us[i] - fk.bin_us[i - 1];
	pthread_mutex_unlock(&fk.mu);
	for (int i = 1; i < n; i++) /* insertion sort, n is small */
		for (int j = i; j > 0 && gaps[j] < gaps[j - 1]; j--) {
			uint64_t t = gaps[j];
			gaps[j] = gaps[j - 1];
			gaps[j - 1] = t;
		}
	return n ? gaps[n / 2] : 0;
}

/* ---- tests ---- */

/* POST /call carries what VAPI needs (both audio formats, assistantId or a transient
 * assistant, variables, max duration, auth and User-Agent); the socket opens at the
 * returned URL (path and query kept) with the same headers; CONNECTED names VAPI's id. */
static void test_vapi_create_posts_call(void **state)
{
	(void)state;
	fake_start();
	fake_answer_call("call-111");
	up_vapi(0);
	struct vapi_call *c = call_up(1, MEDIA_AI_MULAW_8K, NULL);
	char head[4096], body[8192];
	pthread_mutex_lock(&fk.mu);
	snprintf(head, sizeof(head), "%s", fk.post_head);
	snprintf(body, sizeof(body), "%s", fk.post_body);
	pthread_mutex_unlock(&fk.mu);
	assert_true(strncmp(head, "POST /call HTTP/1.1\r\n", 21) == 0);
	assert_non_null(strcasestr(head, "\r\nAuthorization: Bearer test-key\r\n"));
	assert_non_null(strcasestr(head, "\r\nUser-Agent: vacs-test/1\r\n"));
	assert_non_null(strcasestr(head, "\r\nContent-Type: application/json\r\n"));
	json_error_t err;
	json_t *j = json_loads(body, 0, &err);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "assistantId")), "asst-1");
	assert_null(json_object_get(j, "assistant"));
	assert_string_equal(json_string_value(json_object_get(j, "name")), "call-x");
	json_t *ov = json_object_get(j, "assistantOverrides");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(ov, "variableValues"), "caller")),
	    "+5215512345678");
	assert_int_equal(json_integer_value(json_object_get(ov, "maxDurationSeconds")), 1800);
	json_t *tr = json_object_get(j, "transport");
	assert_string_equal(json_string_value(json_object_get(tr, "provider")), "vapi.websocket");
	json_t *af = json_object_get(tr, "audioFormat");
	assert_string_equal(json_string_value(json_object_get(af, "format")), "mulaw");
	assert_string_equal(json_string_value(json_object_get(af, "container")), "raw");
	assert_int_equal(json_integer_value(json_object_get(af, "sampleRate")), 8000);
	json_decref(j);
	pthread_mutex_lock(&fk.mu);
	snprintf(head, sizeof(head), "%s", fk.ws_head);
	pthread_mutex_unlock(&fk.mu);
	assert_true(strncmp(head, "GET /call-111/transport?token=abc HTTP/1.1\r\n", 44) == 0);
	assert_non_null(strcasestr(head, "\r\nAuthorization: Bearer test-key\r\n"));
	assert_non_null(strcasestr(head, "\r\nUser-Agent: vacs-test/1\r\n"));
	vapi_call_end(c);

	/* PCM with a transient assistant, no variables, VAPI's default duration. */
	fake_answer_call("call-222");
	struct vapi_call_params p;
	memset(&p, 0, sizeof(p));
	p.owner = 2;
	p.assistant_json = "{\"firstMessage\":\"Hola\",\"model\":{\"provider\":\"openai\"}}";
	p.format = MEDIA_AI_PCM16_16K;
	assert_int_equal(vapi_call_create(&p, &c), 0);
	struct vapi_event ev;
	expect_event(&ev, VAPI_EV_CONNECTED, 2);
	assert_string_equal(ev.id, "call-222");
	vapi_event_free(&ev);
	pthread_mutex_lock(&fk.mu);
	snprintf(body, sizeof(body), "%s", fk.post_body);
	pthread_mutex_unlock(&fk.mu);
	j = json_loads(body, 0, &err);
	assert_non_null(j);
	assert_null(json_object_get(j, "assistantId"));
	assert_null(json_object_get(j, "assistantOverrides"));
	assert_null(json_object_get(j, "name"));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(j, "assistant"), "firstMessage")),
	    "Hola");
	af = json_object_get(json_object_get(j, "transport"), "audioFormat");
	assert_string_equal(json_string_value(json_object_get(af, "format")), "pcm_s16le");
	assert_int_equal(json_integer_value(json_object_get(af, "sampleRate")), 16000);
	json_decref(j);
	vapi_call_end(c);
	assert_int_equal(metric_of("vacs_vapi_calls_total{result=\"connected\"}"), 2);

	/* Bad input is refused at once. */
	p.assistant_json = "{not json";
	assert_int_equal(vapi_call_create(&p, &c), -EINVAL);
	p.assistant_json = NULL;
	assert_int_equal(vapi_call_create(&p, &c), -EINVAL);
	p.assistant_id = "a";
	p.variables_json = "[1]";
	assert_int_equal(vapi_call_create(&p, &c), -EINVAL);
}

/* A PCMU caller through a real media session: exactly one 160-byte frame per 20 ms
 * upstream carrying the caller's bytes, one WebSocket message each; VAPI's audio, sent
 * in odd-sized and fragmented bursts well ahead of real time, reaches the caller's RTP
 * byte for byte with nothing dropped (the socket is paused, not the buffer overrun);
 * nothing is allocated while audio flows. */
static void test_vapi_audio_both_ways(void **state)
{
	(void)state;
	fake_start();
	fake_answer_call("call-audio");
	up_vapi(0);
	up_media();
	struct caller cl;
	caller_open(&cl, MEDIA_CODEC_PCMU, 0, MEDIA_AI_MULAW_8K);
	pthread_mutex_lock(&fk.mu);
	fk.bin_size = 160;
	fk.want_len = 160;
	for (unsigned i = 0; i < 160; i++)
		fk.want[i] = (uint8_t)(0x10 + i % 0x60);
	pthread_mutex_unlock(&fk.mu);
	struct vapi_call *c = call_up(3, MEDIA_AI_MULAW_8K, cl.ai);

	/* Phase A: 1.2 s of caller audio up, 20 ms chunks down, in step. */
	static uint8_t down[24000], heard[64000];
	uint32_t x = 12345;
	for (size_t i = 0; i < sizeof(down); i++) {
		x = x * 1103515245u + 12345u;
		down[i] = (uint8_t)(x >> 16);
		if (down[i] == 0x7f || down[i] == 0xff)
			down[i] = 0x7e; /* the two mu-law zeros are not byte-stable */
	}
	size_t n_heard = 0;
	int bin0 = get_int(&fk.n_bin);
	unsigned long allocs0 = 0;
	uint64_t total0 = 0;
	uint64_t start = now_ms();
	for (unsigned t = 0; t < 60; t++) {
		if (t == 20) {
			allocs0 = alloc_count();
			total0 = mem_total_allocs();
		}
		caller_send(&cl, 0, fk.want, 160, 160);
		uint8_t chunk[160];
		memset(chunk, 0x55, sizeof(chunk));
		fake_send(1, 2, chunk, sizeof(chunk));
		while (now_ms() < start + (t + 1u) * 20u) {
			n_heard = caller_collect(&cl, heard, 0, sizeof(heard)); /* discarded */
			sleep_ms(2);
		}
	}
	unsigned long allocs1 = alloc_count();
	uint64_t total1 = mem_total_allocs();
	int bin1 = get_int(&fk.n_bin);
	assert_int_equal(get_int(&fk.n_bin_bad), 0);
	assert_int_equal(get_int(&fk.n_unmasked), 0);
	assert_int_equal(get_int(&fk.n_rsv), 0);
	assert_true(bin1 - bin0 >= 50 && bin1 - bin0 <= 70);
	assert_true(get_int(&fk.n_want) >= 40);
	uint64_t med = median_gap_us(bin0 + 5, bin1);
	print_message("upstream: %d frames in 1.2 s, median gap %.2f ms; allocations %lu\n",
	              bin1 - bin0, (double)med / 1000.0, allocs1 - allocs0);
	assert_true(med >= 15000 && med <= 25000);
	assert_int_equal(total1, total0);
	assert_int_equal(allocs1, allocs0);

	/* Phase B: 3 s of audio in one burst: odd chunks, and one message in 3 fragments. */
	size_t pos = 0;
	static const size_t sizes[] = {79, 1000, 4000, 333, 2888, 1700};
	for (unsigned k = 0; pos < sizeof(down); k++) {
		size_t n = sizes[k % 6];
		if (n > sizeof(down) - pos)
			n = sizeof(down) - pos;
		if (k == 3) {
			fake_send(0, 2, down + pos, 100);
			fake_send(0, 0, down + pos + 100, 100);
			fake_send(1, 0, down + pos + 200, n - 200);
		} else {
			fake_send(1, 2, down + pos, n);
		}
		pos += n;
	}
	n_heard = 0;
	start = now_ms();
	for (unsigned t = 0; now_ms() < start + 3800; t++) {
		caller_send(&cl, 0, fk.want, 160, 160);
		while (now_ms() < start + (t + 1u) * 20u) {
			n_heard = caller_collect(&cl, heard, n_heard, sizeof(heard));
			sleep_ms(2);
		}
	}
	n_heard = caller_collect(&cl, heard, n_heard, sizeof(heard));
	uint8_t *at = memmem(heard, n_heard, down, 160);
	assert_non_null(at);
	size_t off = (size_t)(at - heard), same = 0;
	while (same < sizeof(down) && off + same < n_heard && heard[off + same] == down[same])
		same++;
	assert_int_equal(same, sizeof(down));
	struct media_ai_stats st;
	media_ai_stats(cl.ai, &st);
	print_message("downstream: %zu of %zu burst bytes in order at the caller, overrun %llu\n",
	              same, sizeof(down), (unsigned long long)st.overrun_bytes);
	assert_int_equal(st.overrun_bytes, 0);
	assert_true(metric_of("vacs_vapi_ws_frames_total{dir=\"up\"}") >= bin1);
	assert_true(metric_of("vacs_vapi_ws_frames_total{dir=\"down\"}") >= 60 + 10);
	vapi_call_end(c);
	caller_close(&cl);
}

/* A G.722 caller: VAPI gets 640-byte 16 kHz PCM frames, 20 ms apart. */
static void test_vapi_pcm16_frames(void **state)
{
	(void)state;
	fake_start();
	fake_answer_call("call-pcm");
	up_vapi(0);
	up_media();
	struct caller cl;
	caller_open(&cl, MEDIA_CODEC_G722, 9, MEDIA_AI_PCM16_16K);
	pthread_mutex_lock(&fk.mu);
	fk.bin_size = 640;
	pthread_mutex_unlock(&fk.mu);
	struct vapi_call *c = call_up(4, MEDIA_AI_PCM16_16K, cl.ai);
	int b0 = get_int(&fk.n_bin);
	sleep_ms(600);
	int b1 = get_int(&fk.n_bin);
	assert_true(b1 - b0 >= 22 && b1 - b0 <= 38);
	assert_int_equal(get_int(&fk.n_bin_bad), 0);
	assert_int_equal(get_int(&fk.n_unmasked), 0);
	uint64_t med = median_gap_us(b0 + 2, b1);
	assert_true(med >= 15000 && med <= 25000);
	vapi_call_end(c);
	caller_close(&cl);
}

static void wait_queued(struct media_ai_port *p, unsigned ms)
{
	uint64_t end = now_ms() + 1000;
	while (media_ai_queued_ms(p) < ms && now_ms() < end)
		sleep_ms(5);
	if (media_ai_queued_ms(p) < ms)
		fail_msg("queued %u ms, wanted %u", media_ai_queued_ms(p), ms);
}

/* Barge-in: user-interrupted, and speech-update from the user, drop what was queued
 * for the caller before the event reaches the sip thread; the assistant's speech-update
 * does not. */
static void test_vapi_user_interrupted_flushes(void **state)
{
	(void)state;
	fake_start();
	fake_answer_call("call-barge");
	up_vapi(0);
	up_media();
	struct caller cl;
	caller_open(&cl, MEDIA_CODEC_PCMU, 0, MEDIA_AI_MULAW_8K);
	struct vapi_call *c = call_up(5, MEDIA_AI_MULAW_8K, cl.ai);
	static uint8_t talk[9600];
	memset(talk, 0x33, sizeof(talk));
	struct vapi_event ev;

	fake_send(1, 2, talk, sizeof(talk)); /* 1.2 s */
	wait_queued(cl.ai, 600); /* the ai thread stops reading at 700 ms (ws.c PAUSE_MS) */
	fake_text("{\"type\":\"user-interrupted\",\"turnId\":\"t1\"}");
	expect_event(&ev, VAPI_EV_INTERRUPTED, 5);
	assert_int_equal(media_ai_queued_ms(cl.ai), 0);
	vapi_event_free(&ev);
	/* VAPI's next answer comes later than the worker's next tick, which applies the
	 * flush and frees the ring (until then the dropped audio still takes room). */
	sleep_ms(60);

	fake_send(1, 2, talk, sizeof(talk));
	wait_queued(cl.ai, 600);
	fake_text(
	    "{\"type\":\"speech-update\",\"role\":\"user\",\"status\":\"started\",\"turn\":2}");
	expect_event(&ev, VAPI_EV_SPEECH, 5);
	assert_int_equal(media_ai_queued_ms(cl.ai), 0);
	assert_string_equal(ev.text, "user");
	assert_int_equal(ev.status, 1);
	vapi_event_free(&ev);
	sleep_ms(60);

	fake_send(1, 2, talk, 3200);
	wait_queued(cl.ai, 200);
	fake_text("{\"type\":\"speech-update\",\"role\":\"assistant\",\"status\":\"stopped\"}");
	expect_event(&ev, VAPI_EV_SPEECH, 5);
	assert_string_equal(ev.text, "assistant");
	assert_int_equal(ev.status, 0);
	assert_true(media_ai_queued_ms(cl.ai) > 0);
	vapi_event_free(&ev);
	assert_int_equal(metric_of("vacs_vapi_messages_total{type=\"speech-update\"}"), 2);
	vapi_call_end(c);
	caller_close(&cl);
}

/* Text frames become events in order: status, final transcripts only, each tool call of
 * a tool-calls message (arguments as a string or an object); malformed JSON, a missing
 * type and unknown types are counted and ignored without hurting the call; a message in
 * fragments is reassembled; one over max_message closes the socket with 1009. */
static void test_vapi_messages_to_events(void **state)
{
	(void)state;
	fake_start();
	fake_answer_call("call-msg");
	up_vapi(4096);
	struct vapi_call *c = call_up(6, MEDIA_AI_MULAW_8K, NULL);
	struct vapi_event ev;
	fake_text("{\"type\":\"status-update\",\"status\":\"in-progress\"}");
	fake_text("{not json");
	fake_text("[1,2]");
	fake_text("{\"notype\":1}");
	fake_text("{\"type\":5}");
	fake_text("{\"type\":\"weird-new-thing\",\"x\":1}");
	fake_text("{\"type\":\"conversation-update\",\"messages\":[]}");
	fake_text("{\"type\":\"transcript\",\"role\":\"user\",\"transcriptType\":\"partial\","
	          "\"transcript\":\"ho\"}");
	fake_text("{\"type\":\"transcript\",\"role\":\"user\",\"transcriptType\":\"final\","
	          "\"transcript\":\"hola, quiero un agente\"}");
	fake_text(
	    "{\"type\":\"tool-calls\",\"toolCallList\":["
	    "{\"id\":\"tc1\",\"type\":\"function\",\"function\":{\"name\":\"transfer_to_agent\","
	    "\"arguments\":\"{\\\"queue\\\":\\\"sales\\\"}\"}},"
	    "{\"id\":\"tc2\",\"type\":\"function\",\"function\":{\"name\":\"lookup\","
	    "\"arguments\":{\"n\":7}}},"
	    "{\"id\":\"tc3\",\"name\":\"flat\",\"parameters\":{\"a\":\"b\"}},"
	    "5]}");
	static const char frag[] = "{\"type\":\"status-update\",\"status\":\"forwarding\"}";
	fake_send(0, 1, frag, 10);
	fake_send(0, 0, frag + 10, 10);
	fake_send(1, 0, frag + 20, strlen(frag) - 20);

	expect_event(&ev, VAPI_EV_STATUS, 6);
	assert_string_equal(ev.text, "in-progress");
	vapi_event_free(&ev);
	expect_event(&ev, VAPI_EV_TRANSCRIPT, 6);
	assert_string_equal(ev.text, "user");
	assert_string_equal(ev.text2, "hola, quiero un agente");
	vapi_event_free(&ev);
	expect_event(&ev, VAPI_EV_TOOL_CALL, 6);
	assert_string_equal(ev.id, "tc1");
	assert_string_equal(ev.text, "transfer_to_agent");
	json_t *a = json_loads(ev.text2, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(a, "queue")), "sales");
	json_decref(a);
	vapi_event_free(&ev);
	expect_event(&ev, VAPI_EV_TOOL_CALL, 6);
	assert_string_equal(ev.id, "tc2");
	assert_string_equal(ev.text, "lookup");
	a = json_loads(ev.text2, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(a, "n")), 7);
	json_decref(a);
	vapi_event_free(&ev);
	expect_event(&ev, VAPI_EV_TOOL_CALL, 6);
	assert_string_equal(ev.id, "tc3");
	assert_string_equal(ev.text, "flat");
	assert_string_equal(ev.text2, "{\"a\":\"b\"}");
	vapi_event_free(&ev);
	expect_event(&ev, VAPI_EV_STATUS, 6);
	assert_string_equal(ev.text, "forwarding");
	vapi_event_free(&ev);
	assert_int_equal(metric_of("vacs_vapi_messages_total{result=\"malformed\"}"), 5);
	assert_int_equal(metric_of("vacs_vapi_messages_total{type=\"other\"}"), 1);
	assert_int_equal(metric_of("vacs_vapi_messages_total{type=\"transcript\"}"), 2);
	assert_int_equal(metric_of("vacs_vapi_messages_total{type=\"conversation-update\"}"), 1);
	assert_int_equal(metric_of("vacs_vapi_messages_total{type=\"status-update\"}"), 2);

	/* Over max_message (4096 here): closed with 1009, one ENDED. */
	static char big[5000];
	memset(big, 'x', sizeof(big));
	memcpy(big, "{\"type\":\"model-output\",\"output\":\"", 33);
	memcpy(big + sizeof(big) - 2, "\"}", 2);
	fake_send(1, 1, big, sizeof(big));
	expect_event(&ev, VAPI_EV_ENDED, 6);
	assert_string_equal(ev.text, "socket-closed (code 1009)");
	vapi_event_free(&ev);
	assert_int_equal(wait_int(&fk.close_code, 1009, 1000), 1009);
	assert_int_equal(metric_of("vacs_vapi_messages_total{result=\"too_large\"}"), 1);
	expect_no_event(200);
	vapi_call_end(c);
}

/* REST failures: VAPI's message (a string, or an array joined), a raw body cut short,
 * an answer without the socket URL, and nobody listening; each one FAILED, no socket. */
static void test_vapi_rest_errors(void **state)
{
	(void)state;
	fake_start();
	up_vapi(0);
	struct vapi_event ev;
	struct vapi_call *c;

	fake_answer(400, "{\"message\":[\"assistantId must be a UUID\",\"name must be shorter\"],"
	                 "\"error\":\"Bad Request\",\"statusCode\":400}");
	c = create(10, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 10);
	assert_int_equal(ev.status, 400);
	assert_string_equal(ev.text, "assistantId must be a UUID; name must be shorter");
	vapi_event_free(&ev);
	vapi_call_end(c);

	fake_answer(401, "{\"message\":\"Invalid Key. Hot tip, you may be using the private key "
	                 "instead of the public key, or vice versa.\",\"error\":\"Unauthorized\","
	                 "\"statusCode\":401}");
	c = create(11, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 11);
	assert_int_equal(ev.status, 401);
	assert_string_equal(ev.text, "Invalid Key. Hot tip, you may be using the private key "
	                             "instead of the public key, or vice versa.");
	vapi_event_free(&ev);
	vapi_call_end(c);

	char raw[1200];
	memset(raw, 'e', sizeof(raw) - 1);
	raw[sizeof(raw) - 1] = '\0';
	memcpy(raw, "error code: 1010 ", 17);
	fake_answer(403, raw);
	c = create(12, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 12);
	assert_int_equal(ev.status, 403);
	assert_true(strncmp(ev.text, "error code: 1010 ", 17) == 0);
	assert_true(strlen(ev.text) >= 200 && strlen(ev.text) <= 320);
	vapi_event_free(&ev);
	vapi_call_end(c);

	fake_answer(201, "{\"id\":\"x\",\"transport\":{\"provider\":\"vapi.websocket\"}}");
	c = create(13, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 13);
	assert_int_equal(ev.status, 201);
	assert_non_null(strstr(ev.text, "websocketCallUrl"));
	vapi_event_free(&ev);
	vapi_call_end(c);
	/* An answer over 64 KiB is refused whole. */
	pthread_mutex_lock(&fk.mu);
	fk.status = 201;
	memset(fk.answer, ' ', 70 * 1024);
	fk.answer[70 * 1024] = '\0';
	pthread_mutex_unlock(&fk.mu);
	c = create(15, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 15);
	assert_non_null(strstr(ev.text, "64 KiB"));
	vapi_event_free(&ev);
	vapi_call_end(c);
	assert_int_equal(get_int(&fk.upgrades), 0);
	assert_int_equal(get_int(&fk.posts), 5);
	vapi_close();

	/* No answer within connect_timeout (300 ms here): FAILED, status 0. */
	fake_answer_call("slow");
	pthread_mutex_lock(&fk.mu);
	fk.delay_ms = 1500;
	pthread_mutex_unlock(&fk.mu);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", fk.port);
	up_vapi_url(url, 0, 300);
	uint64_t t0 = now_ms();
	c = create(16, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 16);
	assert_true(now_ms() - t0 < 1200);
	assert_int_equal(ev.status, 0);
	assert_non_null(strstr(ev.text, "timed out"));
	vapi_event_free(&ev);
	vapi_call_end(c);
	vapi_close();

	/* Nobody listening on the API port. */
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = addr_of(0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
	close(s);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(sa.sin_port));
	up_vapi_url(url, 0, 2000);
	c = create(14, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 14);
	assert_int_equal(ev.status, 0);
	assert_true(ev.text && ev.text[0]);
	vapi_event_free(&ev);
	vapi_call_end(c);
	assert_int_equal(metric_of("vacs_vapi_calls_total{result=\"failed\"}"), 7);
}

/* Socket failures after the call was created: nobody at the URL, the upgrade refused,
 * a URL that is not ws://. Each gives FAILED with status 0 (no HTTP status of POST). */
static void test_vapi_ws_connect_failures(void **state)
{
	(void)state;
	fake_start();
	up_vapi(0);
	struct vapi_event ev;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = addr_of(0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
	close(s);
	char body[256];
	snprintf(body, sizeof(body),
	         "{\"id\":\"c1\",\"transport\":{\"websocketCallUrl\":\"ws://127.0.0.1:%u/t\"}}",
	         ntohs(sa.sin_port));
	fake_answer(201, body);
	struct vapi_call *c = create(20, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 20);
	assert_int_equal(ev.status, 0);
	assert_non_null(strstr(ev.text, "WebSocket"));
	vapi_event_free(&ev);
	vapi_call_end(c);

	fake_answer_call("c2");
	pthread_mutex_lock(&fk.mu);
	fk.upgrade_status = 403;
	pthread_mutex_unlock(&fk.mu);
	c = create(21, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 21);
	assert_int_equal(ev.status, 0);
	assert_non_null(strstr(ev.text, "WebSocket"));
	vapi_event_free(&ev);
	vapi_call_end(c);
	assert_int_equal(get_int(&fk.upgrades), 1);

	fake_answer(201,
	            "{\"id\":\"c3\",\"transport\":{\"websocketCallUrl\":\"https://x.test/t\"}}");
	c = create(22, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 22);
	assert_non_null(strstr(ev.text, "ws://"));
	vapi_event_free(&ev);
	vapi_call_end(c);
	expect_no_event(100);
	vapi_close();

	/* A peer that takes the TCP connection and never answers the upgrade: FAILED once
	 * the connect timeout (300 ms here) has passed. */
	int mute = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sa = addr_of(0);
	sl = sizeof(sa);
	assert_int_equal(bind(mute, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(mute, 4), 0);
	assert_int_equal(getsockname(mute, (struct sockaddr *)&sa, &sl), 0);
	snprintf(body, sizeof(body),
	         "{\"id\":\"c4\",\"transport\":{\"websocketCallUrl\":\"ws://127.0.0.1:%u/t\"}}",
	         ntohs(sa.sin_port));
	fake_answer(201, body);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", fk.port);
	up_vapi_url(url, 0, 300);
	uint64_t t0 = now_ms();
	c = create(23, MEDIA_AI_MULAW_8K);
	expect_event(&ev, VAPI_EV_FAILED, 23);
	uint64_t took = now_ms() - t0;
	assert_true(took >= 250 && took < 2000);
	assert_non_null(strstr(ev.text, "timed out"));
	vapi_event_free(&ev);
	vapi_call_end(c);
	expect_no_event(100);
	close(mute);
}

/* Every way VAPI ends a call gives exactly one ENDED: status-update ended (its
 * endedReason; we then close 1000), a close frame (its code), a dropped TCP connection. */
static void test_vapi_server_close_ends_once(void **state)
{
	(void)state;
	fake_start();
	up_vapi(0);
	struct vapi_event ev;

	fake_answer_call("e1");
	struct vapi_call *c = call_up(30, MEDIA_AI_MULAW_8K, NULL);
	fake_text("{\"type\":\"status-update\",\"status\":\"ended\",\"endedReason\":"
	          "\"assistant-ended-call\"}");
	expect_event(&ev, VAPI_EV_STATUS, 30);
	assert_string_equal(ev.text, "ended");
	vapi_event_free(&ev);
	expect_event(&ev, VAPI_EV_ENDED, 30);
	assert_string_equal(ev.text, "assistant-ended-call");
	vapi_event_free(&ev);
	assert_int_equal(wait_int(&fk.close_code, 1000, 1500), 1000);
	expect_no_event(300);
	vapi_call_end(c);

	fake_answer_call("e2");
	c = call_up(31, MEDIA_AI_MULAW_8K, NULL);
	uint8_t code[2] = {0x03, 0xe9}; /* 1001 going away */
	fake_send(1, 8, code, 2);
	expect_event(&ev, VAPI_EV_ENDED, 31);
	assert_string_equal(ev.text, "socket-closed (code 1001)");
	vapi_event_free(&ev);
	expect_no_event(300);
	vapi_call_end(c);

	fake_answer_call("e3");
	c = call_up(32, MEDIA_AI_MULAW_8K, NULL);
	pthread_mutex_lock(&fk.tx_mu);
	shutdown(fk.ws_fd, SHUT_RDWR);
	pthread_mutex_unlock(&fk.tx_mu);
	expect_event(&ev, VAPI_EV_ENDED, 32);
	assert_string_equal(ev.text, "socket-closed");
	vapi_event_free(&ev);
	expect_no_event(300);
	vapi_call_end(c);
	assert_int_equal(wait_metric("vacs_vapi_active_calls", 0, 500), 0);
}

/* Messages asked for before the socket is up are sent once it is, in order and in
 * VAPI's shapes; bad ones are refused; vapi_call_end sends end-call, then closes 1000;
 * events already queued for the call are not delivered after vapi_call_end. */
static void test_vapi_end_sends_end_call(void **state)
{
	(void)state;
	fake_start();
	fake_answer_call("m1");
	up_vapi(0);
	struct vapi_call *c = create(40, MEDIA_AI_MULAW_8K);
	assert_int_equal(vapi_call_say(c, "Un momento, por favor", 0), 0);
	assert_int_equal(vapi_call_add_message(c, "system", "DTMF 5", 0), 0);
	assert_int_equal(vapi_call_control(c, "mute-customer"), 0);
	assert_int_equal(vapi_call_control(c, "explode"), -EINVAL);
	assert_int_equal(vapi_call_add_message(c, "robot", "x", 1), -EINVAL);
	struct vapi_event ev;
	expect_event(&ev, VAPI_EV_CONNECTED, 40);
	vapi_event_free(&ev);
	assert_int_equal(wait_int(&fk.n_text, 3, 1000), 3);
	char t[1024];
	json_t *j;
	fake_text_at(0, t, sizeof(t));
	j = json_loads(t, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "say");
	assert_string_equal(json_string_value(json_object_get(j, "content")),
	                    "Un momento, por favor");
	assert_true(json_is_false(json_object_get(j, "endCallAfterSpoken")));
	json_decref(j);
	fake_text_at(1, t, sizeof(t));
	j = json_loads(t, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "type")), "add-message");
	json_t *m = json_object_get(j, "message");
	assert_string_equal(json_string_value(json_object_get(m, "role")), "system");
	assert_string_equal(json_string_value(json_object_get(m, "content")), "DTMF 5");
	assert_true(json_is_false(json_object_get(j, "triggerResponseEnabled")));
	json_decref(j);
	fake_text_at(2, t, sizeof(t));
	assert_string_equal(t, "{\"type\":\"control\",\"control\":\"mute-customer\"}");

	/* An event waits in the mailbox; ending the call drops it. */
	fake_text("{\"type\":\"status-update\",\"status\":\"in-progress\"}");
	struct pollfd pfd = {.fd = vapi_event_fd(), .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 1000), 1);
	vapi_call_end(c);
	assert_int_equal(wait_int(&fk.n_text, 4, 1000), 4);
	fake_text_at(3, t, sizeof(t));
	assert_string_equal(t, "{\"type\":\"end-call\"}");
	assert_int_equal(wait_int(&fk.close_code, 1000, 1500), 1000);
	expect_no_event(300);
	assert_int_equal(wait_metric("vacs_vapi_active_calls", 0, 500), 0);

	/* A peer that never answers our close is dropped all the same (within the 1 s bound). */
	pthread_mutex_lock(&fk.mu);
	fk.mute_close = 1;
	pthread_mutex_unlock(&fk.mu);
	fake_answer_call("m3");
	c = call_up(42, MEDIA_AI_MULAW_8K, NULL);
	uint64_t t0 = now_ms();
	vapi_call_end(c);
	assert_int_equal(wait_int(&fk.close_code, 1000, 1500), 1000);
	assert_int_equal(wait_int(&fk.ws_eof, 1, 3000), 1);
	uint64_t took = now_ms() - t0;
	if (took > 2500)
		fail_msg("dropped after %llu ms", (unsigned long long)took);
	assert_int_equal(wait_metric("vacs_vapi_active_calls", 0, 500), 0);
	pthread_mutex_lock(&fk.mu);
	fk.mute_close = 0;
	pthread_mutex_unlock(&fk.mu);

	/* vapi_close ends a call the sip thread left open the same way. */
	fake_answer_call("m2");
	c = call_up(41, MEDIA_AI_MULAW_8K, NULL);
	(void)c;
	vapi_close();
	assert_int_equal(wait_int(&fk.n_text, 6, 1000), 6);
	fake_text_at(5, t, sizeof(t));
	assert_string_equal(t, "{\"type\":\"end-call\"}");
	assert_int_equal(get_int(&fk.close_code), 1000);
}

/* A call ended while POST /call is still waiting for its answer: the request is
 * abandoned (the server sees the connection go), no socket opens, no event comes. */
static void test_vapi_end_before_answer_cancels(void **state)
{
	(void)state;
	fake_start();
	fake_answer_call("late");
	pthread_mutex_lock(&fk.mu);
	fk.delay_ms = 3000;
	pthread_mutex_unlock(&fk.mu);
	up_vapi(0);
	struct vapi_call *c = create(50, MEDIA_AI_MULAW_8K);
	assert_int_equal(wait_int(&fk.posts, 1, 1000), 1);
	uint64_t t0 = now_ms();
	vapi_call_end(c);
	assert_int_equal(wait_int(&fk.http_aborted, 1, 1500), 1);
	assert_true(now_ms() - t0 < 1500);
	expect_no_event(200);
	assert_int_equal(get_int(&fk.upgrades), 0);
	assert_int_equal(wait_metric("vacs_vapi_active_calls", 0, 500), 0);
}

/* The URL parser keeps the query, brackets IPv6, applies default ports, refuses others. */
static void test_vapi_ws_url_parse(void **state)
{
	(void)state;
	char *h, *p;
	int port, tls;
	assert_int_equal(
	    vapi_ws_url_parse("wss://api.vapi.ai/7420f27a/transport?x=1&y=2", &h, &port, &p, &tls),
	    0);
	assert_string_equal(h, "api.vapi.ai");
	assert_string_equal(p, "/7420f27a/transport?x=1&y=2");
	assert_int_equal(port, 443);
	assert_int_equal(tls, 1);
	mem_free(h);
	mem_free(p);
	assert_int_equal(vapi_ws_url_parse("ws://[::1]:8080?q", &h, &port, &p, &tls), 0);
	assert_string_equal(h, "::1");
	assert_string_equal(p, "/?q");
	assert_int_equal(port, 8080);
	assert_int_equal(tls, 0);
	mem_free(h);
	mem_free(p);
	assert_int_equal(vapi_ws_url_parse("https://a/b", &h, &port, &p, &tls), -EINVAL);
	assert_int_equal(vapi_ws_url_parse("ws://a:0/b", &h, &port, &p, &tls), -EINVAL);
	assert_int_equal(vapi_ws_url_parse("ws://u@a/b", &h, &port, &p, &tls), -EINVAL);
	assert_int_equal(vapi_ws_url_parse("ws:///b", &h, &port, &p, &tls), -EINVAL);
}

/* Upstream frames built by vacsd (frame.c): the header of each length form, the mask bit,
 * a payload that unmasks to what went in, and a key that changes with every frame, also
 * across refills of the key pool and reseeds from the kernel. */
static void test_vapi_frame_binary(void **state)
{
	(void)state;
	static struct vapi_mask_rng r;
	vapi_mask_rng_init(&r);
	static const size_t lens[] = {0, 1, 125, 126, 160, 640, 65535, 65536, 70001};
	static const size_t hdrs[] = {6, 6, 6, 8, 8, 8, 8, 14, 14};
	static uint8_t in[70001], buf[70001 + VAPI_WS_HDR_MAX];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7 + 3);
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		size_t len = lens[k], h = vapi_ws_frame_hdr_len(len);
		assert_int_equal(h, hdrs[k]);
		memcpy(buf + h, in, len);
		assert_int_equal(vapi_ws_frame_binary(&r, buf, len), h + len);
		assert_int_equal(buf[0], 0x82); /* FIN, no RSV, binary */
		assert_int_equal(buf[1] & 0x80, 0x80);
		size_t got = buf[1] & 0x7f;
		if (got == 126)
			got = (size_t)buf[2] << 8 | buf[3];
		else if (got == 127) {
			got = 0;
			for (unsigned i = 0; i < 8; i++)
				got = got << 8 | buf[2 + i];
		}
		assert_int_equal(got, len);
		const uint8_t *key = buf + h - 4;
		size_t diff = 0;
		for (size_t i = 0; i < len; i++) {
			assert_int_equal(buf[h + i] ^ key[i & 3], in[i]);
			diff += buf[h + i] != in[i];
		}
		if (len >= 125)
			assert_true(diff > len / 2); /* masked, not sent in the clear */
	}
	/* 100 000 keys (about 780 refills, a dozen reseeds): no key repeats back to back,
	 * and the keys are spread (each byte value appears). */
	uint32_t prev = 0, seen[256] = {0};
	unsigned repeats = 0;
	for (unsigned n = 0; n < 100000; n++) {
		memset(buf + 8, 0, 160);
		vapi_ws_frame_binary(&r, buf, 160);
		uint32_t k;
		memcpy(&k, buf + 4, 4);
		repeats += k == prev;
		prev = k;
		seen[buf[4]]++;
		assert_memory_equal(buf + 8, buf + 4, 4); /* zeros masked = the key itself */
	}
	assert_int_equal(repeats, 0);
	for (unsigned v = 0; v < 256; v++)
		assert_true(seen[v] > 200 && seen[v] < 600);
}

#define T(f) cmocka_unit_test_setup_teardown(f, leak_setup, leak_teardown)

/* The same test with the ai context run by the media worker. */
#define HOSTED(f)                                                                                  \
	static void f##_hosted(void **state)                                                       \
	{                                                                                          \
		hosted = 1;                                                                        \
		f(state);                                                                          \
	}
HOSTED(test_vapi_audio_both_ways)
HOSTED(test_vapi_pcm16_frames)
HOSTED(test_vapi_user_interrupted_flushes)
HOSTED(test_vapi_messages_to_events)
HOSTED(test_vapi_ws_connect_failures)
HOSTED(test_vapi_server_close_ends_once)
HOSTED(test_vapi_end_sends_end_call)
HOSTED(test_vapi_end_before_answer_cancels)

/* Hosted, and the worker waking at most every 500 us (media.coalesce_us): the audio still
 * flows both ways, byte for byte, frames 20 ms apart. */
static void test_vapi_audio_both_ways_coalesced(void **state)
{
	coalesce_us = 500;
	test_vapi_audio_both_ways_hosted(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_vapi_create_posts_call),
	    T(test_vapi_audio_both_ways),
	    T(test_vapi_pcm16_frames),
	    T(test_vapi_user_interrupted_flushes),
	    T(test_vapi_messages_to_events),
	    T(test_vapi_rest_errors),
	    T(test_vapi_ws_connect_failures),
	    T(test_vapi_server_close_ends_once),
	    T(test_vapi_end_sends_end_call),
	    T(test_vapi_end_before_answer_cancels),
	    T(test_vapi_ws_url_parse),
	    T(test_vapi_frame_binary),
	    T(test_vapi_audio_both_ways_hosted),
	    T(test_vapi_pcm16_frames_hosted),
	    T(test_vapi_user_interrupted_flushes_hosted),
	    T(test_vapi_messages_to_events_hosted),
	    T(test_vapi_ws_connect_failures_hosted),
	    T(test_vapi_server_close_ends_once_hosted),
	    T(test_vapi_end_sends_end_call_hosted),
	    T(test_vapi_end_before_answer_cancels_hosted),
	    T(test_vapi_audio_both_ways_coalesced),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
