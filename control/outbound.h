/* Outbound HTTP of the control plane (event notifications, S3 uploads): one `out` thread
 * running libcurl's multi interface, with delayed work for retries and periodic ticks. */
#ifndef VACS_CONTROL_OUTBOUND_H
#define VACS_CONTROL_OUTBOUND_H

#include <stddef.h>

/*
 * Everything here except ctl_out_run, ctl_out_tick and ctl_out_init/close runs on the out
 * thread: other threads hand work over with ctl_out_run (a bounded mailbox), and the work
 * builds requests and sends them. A request's done callback runs on the out thread too; it
 * owns the request and either destroys it or sends it again (after ctl_out_later for a
 * backoff). Nothing on this thread blocks except reading a local file (a sha256 before an
 * upload); name resolution is curl's (threaded resolver when built with it).
 *
 * vapi/ has its own io thread for POST /call: its transfers are tied to the vapi call's
 * life (cancelled when the call ends); this client serves fire-and-retry deliveries.
 */

struct ctl_out; /* one HTTP request; opaque */

typedef void (*ctl_out_fn)(void *arg);
/* A request finished: status is the HTTP status (0 when there was no answer), err 0 or
 * -errno (-ETIMEDOUT, -ECONNREFUSED, -EACCES for an address refused by the private-address
 * guard, -EIO other transport errors, -ECANCELED at shutdown), text a short reason
 * ("HTTP 500", curl's error text). The callback owns r. */
typedef void (*ctl_out_done_cb)(void *arg, struct ctl_out *r, long status, int err,
                                const char *text);

/* Starts the out thread (mailbox of queue_len work items, 0 = 4096). Main thread, once. */
int ctl_out_init(unsigned queue_len);
/* Stops and joins it. Before the thread exits, work still in the mailbox and delayed work
 * run at once with ctl_out_stopping() == 1, and requests in flight are cancelled (done
 * callbacks get -ECANCELED): owners free what they hold. Main thread; safe if never
 * started. */
void ctl_out_close(void);
/* 1 while ctl_out_close is tearing down (callbacks should free, not retry). Out thread. */
int ctl_out_stopping(void);

/* Runs fn(arg) on the out thread soon. Any thread. 0, or -EAGAIN (mailbox full: fn will
 * not run; the caller counts the drop), -ENOTCONN (not started). */
int ctl_out_run(ctl_out_fn fn, void *arg);
/* Runs fn(arg) every period_ms on the out thread (first run right after start). Main
 * thread, before ctl_out_init. 0 or -ENOSPC (8 ticks at most). */
int ctl_out_tick(ctl_out_fn fn, void *arg, unsigned period_ms);
/* Runs fn(arg) on the out thread after delay_ms. Out thread only. 0 or -ENOMEM.
 * At shutdown pending ones run at once with ctl_out_stopping() == 1. */
int ctl_out_later(ctl_out_fn fn, void *arg, unsigned delay_ms);

/* A request to url with method ("POST", "PUT", "GET", "HEAD"; GET and HEAD send no
 * body). NULL on OOM. Out thread. */
struct ctl_out *ctl_out_create(const char *method, const char *url);
/* Destroys it (NULL accepted); must not be in flight. */
void ctl_out_destroy(struct ctl_out *r);
/* Adds a header line "Name: value". 0 or -ENOMEM. */
int ctl_out_header(struct ctl_out *r, const char *line);
/* Drops every header added so far (to sign again before a retry). */
void ctl_out_headers_clear(struct ctl_out *r);
/* The body: takes ownership of body (mem_alloc'd). */
void ctl_out_body(struct ctl_out *r, char *body, size_t len);
/* The body is the file at path (copied), opened at each send. */
int ctl_out_file(struct ctl_out *r, const char *path);
/* AWS SigV4 signing (CURLOPT_AWS_SIGV4 "aws:amz:<region>:<service>"), strings copied. */
int ctl_out_sigv4(struct ctl_out *r, const char *spec, const char *access_key,
                  const char *secret_key);
/* Whole-request timeout (connect included), ms; default 10000. */
void ctl_out_timeout(struct ctl_out *r, unsigned ms);
/* Refuse to connect to loopback, private, link-local and unique-local addresses (checked on
 * the address actually connected to, so DNS names cannot get round it). */
void ctl_out_public_only(struct ctl_out *r, int on);
/* The answer's body of the last send (at most 64 KiB kept), "" when none. */
const char *ctl_out_response(const struct ctl_out *r, size_t *len);

/* Sends r; cb(arg, ...) runs once when it finishes. Out thread. 0, or -errno with cb not
 * run (-ESHUTDOWN while stopping, -ENOMEM, -EIO); the caller still owns r. */
int ctl_out_send(struct ctl_out *r, ctl_out_done_cb cb, void *arg);

/* Requests in flight (gauge source). Any thread. */
unsigned ctl_out_in_flight(void);

#endif
