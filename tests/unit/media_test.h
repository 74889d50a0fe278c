/* Test helpers shared by the media engine tests: a process-wide allocation counter
 * (libc entry points interposed), far-end UDP sockets on loopback, event waits, port
 * ranges. Include after <cmocka.h>; for test binaries only. */
#ifndef VACS_TESTS_UNIT_MEDIA_TEST_H
#define VACS_TESTS_UNIT_MEDIA_TEST_H

#include "media/media.h"
#include "media/media_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TEST_CUSTOM_LEAK /* the media tests close the engine in their teardown */
#include "tests/unit/test_alloc.h"

#define LOCALHOST "127.0.0.1"

static uint16_t port_base;

struct far {
	int fd;
	uint16_t port;
};

static inline uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void sleep_ms(unsigned ms)
{
	struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
	nanosleep(&ts, NULL);
}

static inline struct sockaddr_in addr_of(uint16_t port)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sa;
}

static inline void far_open(struct far *f)
{
	f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(f->fd >= 0);
	struct sockaddr_in sa = addr_of(0);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &sl), 0);
	f->port = ntohs(sa.sin_port);
	int sz = 1 << 20;
	setsockopt(f->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

static inline void far_close(struct far *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

static inline void far_send(const struct far *f, uint16_t to_port, const uint8_t *buf, size_t len)
{
	struct sockaddr_in sa = addr_of(to_port);
	ssize_t r = sendto(f->fd, buf, len, 0, (struct sockaddr *)&sa, sizeof(sa));
	assert_int_equal(r, (ssize_t)len);
}

/* One datagram within timeout_ms, or -1. */
static inline int far_recv(const struct far *f, uint8_t *buf, size_t cap, int timeout_ms)
{
	struct pollfd pfd = {.fd = f->fd, .events = POLLIN};
	if (poll(&pfd, 1, timeout_ms) != 1)
		return -1;
	ssize_t r = recv(f->fd, buf, cap, MSG_DONTWAIT);
	return r < 0 ? -1 : (int)r;
}

/* Next RTP (not RTCP) datagram within timeout_ms, or -1. */
static inline int far_recv_rtp(const struct far *f, uint8_t *buf, size_t cap, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		uint64_t t = now_ms();
		if (t >= end)
			return -1;
		int r = far_recv(f, buf, cap, (int)(end - t));
		if (r > 0 && !media_is_rtcp(buf, (size_t)r))
			return r;
	}
}

static inline void far_drain(const struct far *f)
{
	uint8_t buf[2048];
	while (far_recv(f, buf, sizeof(buf), 0) > 0)
		;
}

static inline struct media_stream_params leg(const struct far *f, enum media_codec codec,
                                             uint8_t pt_audio, int pt_dtmf, int pt_cn)
{
	struct media_stream_params p;
	memset(&p, 0, sizeof(p));
	if (f)
		p.remote_rtp = addr_of(f->port);
	p.send = 1;
	p.recv = 1;
	p.codec = codec;
	p.pt_audio = pt_audio;
	p.pt_dtmf = pt_dtmf;
	p.pt_cn = pt_cn;
	return p;
}

static inline int wait_event(struct media_event *ev, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (media_events_poll(ev, 1) == 1)
			return 1;
		uint64_t t = now_ms();
		if (t >= end)
			return 0;
		struct pollfd pfd = {.fd = media_event_fd(), .events = POLLIN};
		poll(&pfd, 1, (int)(end - t));
	}
}

/* Picks port_base so that [port_base, port_base + nports) is free right now: this machine
 * runs other RTP software, so a range derived from the pid alone may be taken. Below the
 * kernel's ephemeral range, so our own far-end sockets cannot land in it. */
static inline void pick_ports(unsigned nports)
{
	unsigned start = 10000u + ((unsigned)getpid() * 64u) % 22000u;
	for (unsigned attempt = 0; attempt < 1000; attempt++) {
		unsigned base = 10000u + ((start - 10000u + attempt * 64u) % 22000u);
		int fds[64], ok = 1;
		unsigned n = 0;
		for (; n < nports && ok; n++) {
			fds[n] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
			struct sockaddr_in sa = addr_of((uint16_t)(base + n));
			if (fds[n] < 0 || bind(fds[n], (struct sockaddr *)&sa, sizeof(sa)) != 0)
				ok = 0;
		}
		for (unsigned i = 0; i < n; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		if (ok) {
			port_base = (uint16_t)base;
			return;
		}
	}
	fail_msg("no free port range");
}

#endif
