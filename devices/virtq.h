/* Split virtqueues: popping descriptor chains and pushing used entries, every guest address checked. */
#ifndef PADCELL_VIRTQ_H
#define PADCELL_VIRTQ_H

#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/mem.h"

/* The largest queue padcell offers (QueueNumMax); also bounds every chain, indirect or not. */
#define VIRTQ_MAX_SIZE 256

/*
 * One queue's state.  The driver writes num and the three ring addresses through the
 * transport; virtq_enable() checks and translates them once (guest RAM never moves),
 * after which only indices are checked.  Not thread-safe: the transport's lock covers it.
 */
struct virtq {
	uint16_t num;            /* ring size, a power of two <= VIRTQ_MAX_SIZE */
	bool ready;
	bool event_idx;          /* VIRTIO_RING_F_EVENT_IDX negotiated */
	uint64_t desc_gpa, avail_gpa, used_gpa;

	struct vring_desc *desc; /* host views of the rings, valid while ready */
	struct vring_avail *avail;
	struct vring_used *used;

	uint16_t last_avail;     /* next avail ring slot the device consumes  */
	uint16_t used_idx;       /* next used ring slot the device fills      */
	uint16_t signalled_used; /* used_idx when the interrupt decision was last made */
};

/* One buffer of a chain, already translated: `host` is valid for `len` bytes. */
struct virtq_seg {
	uint8_t *host;
	uint32_t len;
	bool writable;           /* device-writable (VIRTQ_DESC_F_WRITE) */
};

/* A popped chain: readable segments first, then writable ones (the walk enforces it). */
struct virtq_chain {
	uint16_t head;
	unsigned nseg, nread;    /* segments, and how many of them are readable */
	uint64_t read_len, write_len;
	struct virtq_seg seg[VIRTQ_MAX_SIZE];
};

/* Why a chain was refused: the guest broke the ring, so the device needs a reset. */
enum virtq_err {
	VIRTQ_OK = 0,
	VIRTQ_E_HEAD,       /* avail ring names a descriptor >= num            */
	VIRTQ_E_NEXT,       /* next index out of the table                     */
	VIRTQ_E_LOOP,       /* more descriptors than the queue size: a loop    */
	VIRTQ_E_ADDR,       /* buffer not entirely inside guest RAM            */
	VIRTQ_E_ZERO_LEN,   /* zero-length buffer                              */
	VIRTQ_E_OVERFLOW,   /* chain totals more than 4 GiB                    */
	VIRTQ_E_ORDER,      /* a readable buffer after a writable one          */
	VIRTQ_E_INDIRECT,   /* bad indirect table: length, NEXT flag, nesting  */
	VIRTQ_E_AVAIL_IDX,  /* the driver claims more new buffers than num     */
};
const char *virtq_strerror(enum virtq_err e);

/* Snapshot state of one queue (fixed layout): what the driver set up and where the device is. */
struct virtq_state {
	uint16_t num, last_avail, used_idx, signalled_used;
	uint8_t ready, event_idx, pad[6];
	uint64_t desc_gpa, avail_gpa, used_gpa;
};
_Static_assert(sizeof(struct virtq_state) == 40, "virtq_state layout");
void virtq_save(const struct virtq *q, struct virtq_state *st);
/* Sets q from st; a ready queue is checked and translated as virtq_enable does.  -EINVAL/-EFAULT. */
int virtq_load(struct virtq *q, const struct guest_mem *m, const struct virtq_state *st);

/* Checks num (power of two, 1..VIRTQ_MAX_SIZE), alignment and that all three rings are RAM. */
int virtq_enable(struct virtq *q, const struct guest_mem *m, bool event_idx);
void virtq_reset(struct virtq *q);

/*
 * Pops the next available chain into c.  Returns 1 with c filled, 0 when the ring is
 * empty, or -(enum virtq_err) when the chain (or the ring) is malformed.  A malformed
 * chain is consumed (c->head names it when the head index itself was valid).  With
 * EVENT_IDX, an empty ring also publishes avail_event so the driver kicks again.
 */
int virtq_pop(struct virtq *q, const struct guest_mem *m, struct virtq_chain *c);

/*
 * Maps part of one direction of a popped chain (its readable or its writable
 * segments) as iovecs: `len` bytes starting `skip` bytes in.  Fills at most
 * VIRTQ_MAX_SIZE entries; returns how many bytes were mapped (less than len when
 * the chain is shorter) and the entry count in *niov.
 */
struct iovec;
uint64_t virtq_chain_iov(const struct virtq_chain *c, bool writable, uint64_t skip, uint64_t len,
			 struct iovec *iov, unsigned *niov);

/* The driver's avail idx as it is now (how many buffers it has ever made available). */
uint16_t virtq_avail_idx(const struct virtq *q);

/* Gives back the chain virtq_pop() returned last, untouched: the next pop returns it again. */
void virtq_unpop(struct virtq *q);

/* Puts (head, written bytes) on the used ring and publishes the new used index. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t len);
/* n chains at once: the driver sees the used index move past all of them together (a merged rx frame). */
void virtq_push_many(struct virtq *q, const struct vring_used_elem *e, unsigned n);

/* True when the driver wants an interrupt for what was pushed since the last call. */
bool virtq_should_interrupt(struct virtq *q);

/* Copy in/out of a chain's readable / writable stream starting at byte `off`.  Returns bytes copied. */
uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len);
uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src, uint64_t len);

#endif
