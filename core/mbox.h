/* Mailboxes between threads: fixed-size messages on a bounded queue, woken by eventfd. */
#ifndef VACS_CORE_MBOX_H
#define VACS_CORE_MBOX_H

#include <stddef.h>

struct mbox;

/* Creates a mailbox of `capacity` messages of `msg_size` bytes each. 0 or -errno. */
int mbox_create(struct mbox **out, size_t msg_size, unsigned capacity);
/* Destroys it (NULL accepted). No thread may use it afterwards. */
void mbox_destroy(struct mbox *mb);
/* Copies one message in and wakes the reader. Any thread. -EAGAIN when full. */
int mbox_post(struct mbox *mb, const void *msg);
/* Takes one message out into msg. 0, or -EAGAIN when empty. Reader thread only. */
int mbox_take(struct mbox *mb, void *msg);
/* The eventfd to poll for readability; the reader calls mbox_drain_fd() when woken. */
int mbox_fd(const struct mbox *mb);
void mbox_drain_fd(struct mbox *mb);

#endif
