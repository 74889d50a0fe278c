/* Bounded multi-producer mailbox with an eventfd wake-up (control path, not packet path). */
#include "core/mbox.h"

#include "core/mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct mbox {
	pthread_mutex_t lock;
	size_t msg_size;
	unsigned capacity;
	unsigned head; /* next to take */
	unsigned count;
	int efd;
	unsigned char *slots;
};

int mbox_create(struct mbox **out, size_t msg_size, unsigned capacity)
{
	struct mbox *mb = mem_zalloc(sizeof(*mb));
	if (!mb)
		return -ENOMEM;
	mb->slots = mem_alloc(msg_size * capacity);
	if (!mb->slots) {
		mem_free(mb);
		return -ENOMEM;
	}
	mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (mb->efd < 0) {
		int err = -errno;
		mem_free(mb->slots);
		mem_free(mb);
		return err;
	}
	pthread_mutex_init(&mb->lock, NULL);
	mb->msg_size = msg_size;
	mb->capacity = capacity;
	*out = mb;
	return 0;
}

void mbox_destroy(struct mbox *mb)
{
	if (!mb)
		return;
	close(mb->efd);
	pthread_mutex_destroy(&mb->lock);
	mem_free(mb->slots);
	mem_free(mb);
}

int mbox_post(struct mbox *mb, const void *msg)
{
	pthread_mutex_lock(&mb->lock);
	if (mb->count == mb->capacity) {
		pthread_mutex_unlock(&mb->lock);
		return -EAGAIN;
	}
	unsigned idx = (mb->head + mb->count) % mb->capacity;
	memcpy(mb->slots + (size_t)idx * mb->msg_size, msg, mb->msg_size);
	mb->count++;
	pthread_mutex_unlock(&mb->lock);
	uint64_t one = 1;
	ssize_t w = write(mb->efd, &one, sizeof(one));
	(void)w;
	return 0;
}

int mbox_take(struct mbox *mb, void *msg)
{
	pthread_mutex_lock(&mb->lock);
	if (mb->count == 0) {
		pthread_mutex_unlock(&mb->lock);
		return -EAGAIN;
	}
	memcpy(msg, mb->slots + (size_t)mb->head * mb->msg_size, mb->msg_size);
	mb->head = (mb->head + 1) % mb->capacity;
	mb->count--;
	pthread_mutex_unlock(&mb->lock);
	return 0;
}

int mbox_fd(const struct mbox *mb)
{
	return mb->efd;
}

void mbox_drain_fd(struct mbox *mb)
{
	uint64_t v;
	ssize_t r = read(mb->efd, &v, sizeof(v));
	(void)r;
}
