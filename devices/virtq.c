/* Split virtqueue walking: the guest writes these rings, so every index, address and length is checked. */
#include "devices/virtq.h"

#include <sys/uio.h>

#include <errno.h>
#include <linux/virtio_ring.h>
#include <string.h>

_Static_assert(sizeof(struct vring_desc) == 16, "split descriptor is 16 bytes");
_Static_assert(sizeof(struct vring_used_elem) == 8, "used element is 8 bytes");

const char *virtq_strerror(enum virtq_err e)
{
	switch (e) {
	case VIRTQ_OK: return "ok";
	case VIRTQ_E_HEAD: return "avail ring names a descriptor outside the table";
	case VIRTQ_E_NEXT: return "descriptor's next index is outside the table";
	case VIRTQ_E_LOOP: return "chain longer than the queue (descriptor loop?)";
	case VIRTQ_E_ADDR: return "buffer outside guest RAM";
	case VIRTQ_E_ZERO_LEN: return "zero-length buffer";
	case VIRTQ_E_OVERFLOW: return "chain longer than 4 GiB";
	case VIRTQ_E_ORDER: return "device-readable buffer after a device-writable one";
	case VIRTQ_E_INDIRECT: return "bad indirect table (length, NEXT flag or nesting)";
	case VIRTQ_E_AVAIL_IDX: return "avail index runs more than a queue ahead";
	}
	return "unknown";
}

/*
 * The one place a guest address becomes a host pointer for the queues: rings, indirect
 * tables and buffers all come through here (gmem_ptr refuses wraps, holes and len 0).
 */
static void *virtq_map(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	return gmem_ptr(m, gpa, len);
}

void virtq_reset(struct virtq *q)
{
	*q = (struct virtq){ 0 };
}

int virtq_enable(struct virtq *q, const struct guest_mem *m, bool event_idx)
{
	unsigned n = q->num;
	if (n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
		return -EINVAL;
	/* Virtio 1.2 2.7: descriptor table 16-aligned, avail ring 2, used ring 4. */
	if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
		return -EINVAL;
	/* The event fields sit one past each ring; map them whether or not EVENT_IDX is used. */
	q->desc = virtq_map(m, q->desc_gpa, 16ULL * n);
	q->avail = virtq_map(m, q->avail_gpa, 4 + 2ULL * n + 2);
	q->used = virtq_map(m, q->used_gpa, 4 + 8ULL * n + 2);
	if (!q->desc || !q->avail || !q->used) {
		q->desc = NULL;
		q->avail = NULL;
		q->used = NULL;
		return -EFAULT;
	}
	q->event_idx = event_idx;
	q->last_avail = q->used_idx = q->signalled_used = 0;
	q->ready = true;
	return 0;
}

void virtq_save(const struct virtq *q, struct virtq_state *st)
{
	*st = (struct virtq_state){
		.num = q->num, .last_avail = q->last_avail, .used_idx = q->used_idx,
		.signalled_used = q->signalled_used, .ready = q->ready, .event_idx = q->event_idx,
		.desc_gpa = q->desc_gpa, .avail_gpa = q->avail_gpa, .used_gpa = q->used_gpa,
	};
}

int virtq_load(struct virtq *q, const struct guest_mem *m, const struct virtq_state *st)
{
	if (st->ready > 1 || st->event_idx > 1 || st->num > VIRTQ_MAX_SIZE)
		return -EINVAL;
	virtq_reset(q);
	q->num = st->num;
	q->desc_gpa = st->desc_gpa;
	q->avail_gpa = st->avail_gpa;
	q->used_gpa = st->used_gpa;
	q->event_idx = st->event_idx;
	if (st->ready) {
		int rc = virtq_enable(q, m, st->event_idx);
		if (rc) {
			virtq_reset(q);
			return rc;
		}
	}
	q->last_avail = st->last_avail;
	q->used_idx = st->used_idx;
	q->signalled_used = st->signalled_used;
	return 0;
}

/* The guest may rewrite a descriptor while we look: read each one exactly once. */
static struct vring_desc desc_load(const struct vring_desc *table, unsigned i)
{
	struct vring_desc d;
	memcpy(&d, (const void *)&table[i], sizeof(d));
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	return d;
}

static int chain_add(struct virtq *q, struct virtq_chain *c, const struct guest_mem *m,
		     const struct vring_desc *d)
{
	if (d->len == 0)
		return -VIRTQ_E_ZERO_LEN;
	bool writable = d->flags & VRING_DESC_F_WRITE;
	if (!writable && c->nseg > c->nread)
		return -VIRTQ_E_ORDER;
	if (c->nseg >= q->num)
		return -VIRTQ_E_LOOP;
	uint8_t *p = virtq_map(m, d->addr, d->len);
	if (!p)
		return -VIRTQ_E_ADDR;
	if (c->read_len + c->write_len + d->len > UINT32_MAX)
		return -VIRTQ_E_OVERFLOW;
	c->seg[c->nseg++] = (struct virtq_seg){ p, d->len, writable };
	if (writable) {
		c->write_len += d->len;
	} else {
		c->nread++;
		c->read_len += d->len;
	}
	return 0;
}

/* Walks one chain from `head`: direct descriptors, then at most one indirect table at its end. */
static int chain_walk(struct virtq *q, const struct guest_mem *m, struct virtq_chain *c, uint16_t head)
{
	const struct vring_desc *table = q->desc;
	unsigned table_len = q->num, idx = head;
	bool indirect = false;
	for (;;) {
		struct vring_desc d = desc_load(table, idx);
		if (d.flags & VRING_DESC_F_INDIRECT) {
			/* Virtio 1.2 2.7.5.3.1: no NEXT beside INDIRECT, no table inside a table. */
			if (indirect || (d.flags & VRING_DESC_F_NEXT))
				return -VIRTQ_E_INDIRECT;
			if (d.len == 0 || d.len % sizeof(struct vring_desc) ||
			    d.len / sizeof(struct vring_desc) > q->num)
				return -VIRTQ_E_INDIRECT;
			table = virtq_map(m, d.addr, d.len);
			if (!table)
				return -VIRTQ_E_ADDR;
			table_len = d.len / sizeof(struct vring_desc);
			idx = 0;
			indirect = true;
			continue;
		}
		/* Every step adds a segment, and chain_add stops at q->num: loops end here. */
		int rc = chain_add(q, c, m, &d);
		if (rc)
			return rc;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 1;
		if (d.next >= table_len)
			return -VIRTQ_E_NEXT;
		idx = d.next;
	}
}

int virtq_pop(struct virtq *q, const struct guest_mem *m, struct virtq_chain *c)
{
	if (!q->ready)
		return 0;
	uint16_t avail_idx = __atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE);
	if (avail_idx == q->last_avail) {
		if (!q->event_idx)
			return 0;
		/* Ask for a kick at the next buffer, then look again: it may have come meanwhile. */
		__atomic_store_n((uint16_t *)&q->used->ring[q->num], q->last_avail, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		avail_idx = __atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE);
		if (avail_idx == q->last_avail)
			return 0;
	}
	if ((uint16_t)(avail_idx - q->last_avail) > q->num)
		return -VIRTQ_E_AVAIL_IDX;
	uint16_t head = __atomic_load_n(&q->avail->ring[q->last_avail & (q->num - 1)], __ATOMIC_RELAXED);
	q->last_avail++;
	c->head = head;
	c->nseg = c->nread = 0;
	c->read_len = c->write_len = 0;
	if (head >= q->num)
		return -VIRTQ_E_HEAD;
	return chain_walk(q, m, c, head);
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e = &q->used->ring[q->used_idx & (q->num - 1)];
	__atomic_store_n(&e->id, head, __ATOMIC_RELAXED);
	__atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
	q->used_idx++;
	__atomic_store_n(&q->used->idx, q->used_idx, __ATOMIC_RELEASE);
}

void virtq_push_many(struct virtq *q, const struct vring_used_elem *e, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct vring_used_elem *u = &q->used->ring[(uint16_t)(q->used_idx + i) & (q->num - 1)];
		__atomic_store_n(&u->id, e[i].id, __ATOMIC_RELAXED);
		__atomic_store_n(&u->len, e[i].len, __ATOMIC_RELAXED);
	}
	q->used_idx = (uint16_t)(q->used_idx + n);
	__atomic_store_n(&q->used->idx, q->used_idx, __ATOMIC_RELEASE);
}

bool virtq_should_interrupt(struct virtq *q)
{
	if (!q->ready)
		return false;
	/* Our used->idx store must be visible before we read the driver's suppression fields. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t old = q->signalled_used, new = q->used_idx;
	q->signalled_used = new;
	if (old == new)
		return false;
	if (q->event_idx) {
		uint16_t used_event = __atomic_load_n(&q->avail->ring[q->num], __ATOMIC_RELAXED);
		return vring_need_event(used_event, new, old);
	}
	return !(__atomic_load_n(&q->avail->flags, __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT);
}

static uint64_t chain_copy(const struct virtq_chain *c, bool writable, uint64_t off, uint8_t *buf, uint64_t len,
			   bool to_guest)
{
	uint64_t done = 0;
	unsigned first = writable ? c->nread : 0, end = writable ? c->nseg : c->nread;
	for (unsigned i = first; i < end && done < len; i++) {
		const struct virtq_seg *s = &c->seg[i];
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		uint64_t n = s->len - off;
		if (n > len - done)
			n = len - done;
		if (to_guest)
			memcpy(s->host + off, buf + done, n);
		else
			memcpy(buf + done, s->host + off, n);
		done += n;
		off = 0;
	}
	return done;
}

uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len)
{
	return chain_copy(c, false, off, dst, len, false);
}

uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src, uint64_t len)
{
	return chain_copy(c, true, off, (uint8_t *)src, len, true);
}

uint64_t virtq_chain_iov(const struct virtq_chain *c, bool writable, uint64_t skip, uint64_t len,
			 struct iovec *iov, unsigned *niov)
{
	unsigned first = writable ? c->nread : 0, end = writable ? c->nseg : c->nread, n = 0;
	uint64_t left = len;
	for (unsigned i = first; i < end && left; i++) {
		const struct virtq_seg *seg = &c->seg[i];
		if (skip >= seg->len) {
			skip -= seg->len;
			continue;
		}
		uint64_t take = seg->len - skip;
		if (take > left)
			take = left;
		iov[n++] = (struct iovec){ seg->host + skip, take };
		left -= take;
		skip = 0;
	}
	*niov = n;
	return len - left;
}

void virtq_unpop(struct virtq *q)
{
	q->last_avail--;
}

uint16_t virtq_avail_idx(const struct virtq *q)
{
	return __atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE);
}
