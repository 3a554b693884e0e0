/* Hand-built split rings in a real guest_mem, for the virtqueue, transport and virtio-blk tests. */
#ifndef PADCELL_TEST_VRING_H
#define PADCELL_TEST_VRING_H

#include <linux/virtio_ring.h>
#include <string.h>

#include "devices/virtq.h"
#include "vmm/mem.h"

#define TV_MEM     (16ULL << 20)
#define TV_DESC    0x10000ULL
#define TV_AVAIL   0x11000ULL
#define TV_USED    0x12000ULL
#define TV_BUF     0x100000ULL /* data buffers from here */

/* The driver's side of one queue. */
struct tv {
	struct guest_mem *m;
	uint16_t num;
	uint16_t avail_idx;
};

static inline void tv_desc(struct tv *t, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };
	gmem_write(t->m, TV_DESC + 16ULL * i, &d, sizeof(d));
}

/* An entry of an indirect table at `table`. */
static inline void tv_idesc(struct tv *t, uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
			    uint16_t next)
{
	struct vring_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };
	gmem_write(t->m, table + 16ULL * i, &d, sizeof(d));
}

/* Makes head available and publishes the new avail index. */
static inline void tv_avail(struct tv *t, uint16_t head)
{
	gmem_write(t->m, TV_AVAIL + 4 + 2ULL * (t->avail_idx % t->num), &head, 2);
	t->avail_idx++;
	gmem_write(t->m, TV_AVAIL + 2, &t->avail_idx, 2);
}

static inline uint16_t tv_used_idx(struct tv *t)
{
	uint16_t v;
	gmem_read(t->m, TV_USED + 2, &v, 2);
	return __atomic_load_n(&v, __ATOMIC_ACQUIRE);
}

static inline struct vring_used_elem tv_used_elem(struct tv *t, uint16_t slot)
{
	struct vring_used_elem e;
	gmem_read(t->m, TV_USED + 4 + 8ULL * (slot % t->num), &e, sizeof(e));
	return e;
}

/* Configures q the way a transport would, for tests that skip the transport. */
static inline int tv_enable(struct tv *t, struct virtq *q, bool event_idx)
{
	virtq_reset(q);
	q->num = t->num;
	q->desc_gpa = TV_DESC;
	q->avail_gpa = TV_AVAIL;
	q->used_gpa = TV_USED;
	return virtq_enable(q, t->m, event_idx);
}

#endif
