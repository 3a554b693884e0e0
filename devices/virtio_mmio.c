/* Virtio MMIO register file: 32-bit registers below 0x100, the device's config space above. */
#include "devices/virtio_mmio.h"

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <errno.h>
#include <string.h>

#define VIRTIO_MMIO_MAGIC   0x74726976 /* "virt" */
#define VIRTIO_MMIO_VENDOR  0x50414443 /* "PADC" */

uint64_t virtio_mmio_transport_features(void)
{
	return (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
	       (1ULL << VIRTIO_RING_F_EVENT_IDX);
}

void virtio_mmio_init(struct virtio_mmio *t, const struct guest_mem *mem, const struct dev_host *host,
		      unsigned irq, uint32_t device_id, uint64_t device_features, unsigned nqueues,
		      const void *config, uint32_t config_len, const struct virtio_dev_ops *ops, void *opaque)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	t->mem = mem;
	t->host = host;
	t->irq = irq;
	t->device_id = device_id;
	t->device_features = device_features | virtio_mmio_transport_features();
	t->nqueues = nqueues > VIRTIO_MMIO_MAX_QUEUES ? VIRTIO_MMIO_MAX_QUEUES : nqueues;
	t->config = config;
	t->config_len = config_len;
	t->ops = ops;
	t->opaque = opaque;
	for (unsigned i = 0; i < t->nqueues; i++)
		t->queues[i].num = VIRTQ_MAX_SIZE;
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
	pthread_mutex_destroy(&t->lock);
}

void virtio_mmio_interrupt(struct virtio_mmio *t, uint32_t bits)
{
	t->interrupt_status |= bits;
	if (!t->host)
		return;
	/* Virtio-mmio interrupts are edges on an ISA line: notify_irq is an irqfd write when it can be. */
	if (t->host->notify_irq) {
		t->host->notify_irq(t->host->ctx, t->irq);
	} else if (t->host->set_irq) {
		t->host->set_irq(t->host->ctx, t->irq, 1);
		t->host->set_irq(t->host->ctx, t->irq, 0);
	}
}

void virtio_mmio_needs_reset(struct virtio_mmio *t)
{
	if (t->status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	t->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	if (t->status & VIRTIO_CONFIG_S_DRIVER_OK)
		virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_CONFIG);
}

void virtio_mmio_config_changed(struct virtio_mmio *t)
{
	t->config_generation++;
	if (t->status & VIRTIO_CONFIG_S_DRIVER_OK)
		virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_CONFIG);
}

struct virtq *virtio_mmio_queue(struct virtio_mmio *t, unsigned q)
{
	if (q >= t->nqueues || !t->queues[q].ready)
		return NULL;
	if ((t->status & (VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET)) != VIRTIO_CONFIG_S_DRIVER_OK)
		return NULL;
	return &t->queues[q];
}

static void notify_locked(struct virtio_mmio *t, unsigned q)
{
	if (virtio_mmio_queue(t, q) && t->ops && t->ops->queue_notify)
		t->ops->queue_notify(t->opaque, q);
}

void virtio_mmio_queue_notify(struct virtio_mmio *t, unsigned q)
{
	pthread_mutex_lock(&t->lock);
	notify_locked(t, q);
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio_notify_all(struct virtio_mmio *t)
{
	for (unsigned q = 0; q < t->nqueues; q++)
		virtio_mmio_queue_notify(t, q);
}

/* Writing 0 to Status: back to the state after power-on, queues included. */
static void device_reset(struct virtio_mmio *t)
{
	/* First, so a device thread that finishes a request while we wait drops it, and pops no more. */
	t->resets++;
	t->status = 0;
	if (t->ops && t->ops->reset)
		t->ops->reset(t->opaque);
	t->driver_features = 0;
	t->device_features_sel = t->driver_features_sel = t->queue_sel = 0;
	t->interrupt_status = 0;
	for (unsigned i = 0; i < t->nqueues; i++) {
		virtq_reset(&t->queues[i]);
		t->queues[i].num = VIRTQ_MAX_SIZE;
	}
}

/* FEATURES_OK is refused for a 1.0-less driver or one that accepted what we never offered. */
static bool features_acceptable(const struct virtio_mmio *t)
{
	if (!(t->driver_features & (1ULL << VIRTIO_F_VERSION_1)))
		return false;
	return !(t->driver_features & ~t->device_features);
}

static void status_write(struct virtio_mmio *t, uint32_t v)
{
	if (v == 0) {
		device_reset(t);
		return;
	}
	uint32_t old = t->status;
	/* The driver only ever adds bits (2.1.2); NEEDS_RESET is the device's to set. */
	v = (v & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
	if (old & ~v)
		return;
	uint32_t added = v & ~old;
	if (added & VIRTIO_CONFIG_S_FEATURES_OK) {
		bool ok = (v & VIRTIO_CONFIG_S_ACKNOWLEDGE) && (v & VIRTIO_CONFIG_S_DRIVER) && features_acceptable(t);
		if (!ok)
			v &= ~VIRTIO_CONFIG_S_FEATURES_OK; /* the driver reads it back and gives up */
	}
	if ((added & VIRTIO_CONFIG_S_DRIVER_OK) && !(v & VIRTIO_CONFIG_S_FEATURES_OK))
		v &= ~VIRTIO_CONFIG_S_DRIVER_OK;
	t->status = v;
	/* A kick that came before DRIVER_OK was ignored; look at the queues now. */
	if ((v & ~old) & VIRTIO_CONFIG_S_DRIVER_OK)
		for (unsigned q = 0; q < t->nqueues; q++)
			notify_locked(t, q);
}

static struct virtq *selected_queue(struct virtio_mmio *t)
{
	return t->queue_sel < t->nqueues ? &t->queues[t->queue_sel] : NULL;
}

static uint32_t reg_read(struct virtio_mmio *t, uint64_t off)
{
	struct virtq *q = selected_queue(t);
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE: return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION: return 2;
	case VIRTIO_MMIO_DEVICE_ID: return t->device_id;
	case VIRTIO_MMIO_VENDOR_ID: return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (t->device_features_sel > 1)
			return 0;
		return (uint32_t)(t->device_features >> (32 * t->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX: return q ? VIRTQ_MAX_SIZE : 0;
	case VIRTIO_MMIO_QUEUE_READY: return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS: return t->interrupt_status;
	case VIRTIO_MMIO_STATUS: return t->status;
	case VIRTIO_MMIO_QUEUE_DESC_LOW: return q ? (uint32_t)q->desc_gpa : 0;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH: return q ? (uint32_t)(q->desc_gpa >> 32) : 0;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW: return q ? (uint32_t)q->avail_gpa : 0;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH: return q ? (uint32_t)(q->avail_gpa >> 32) : 0;
	case VIRTIO_MMIO_QUEUE_USED_LOW: return q ? (uint32_t)q->used_gpa : 0;
	case VIRTIO_MMIO_QUEUE_USED_HIGH: return q ? (uint32_t)(q->used_gpa >> 32) : 0;
	case VIRTIO_MMIO_CONFIG_GENERATION: return t->config_generation;
	default: return 0; /* write-only and reserved registers read as 0 */
	}
}

static void set_half(uint64_t *v, bool high, uint32_t val)
{
	*v = high ? (*v & 0xffffffffULL) | ((uint64_t)val << 32) : (*v & ~0xffffffffULL) | val;
}

static void reg_write(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	struct virtq *q = selected_queue(t);
	/* Queue registers are frozen while the queue is live (2.7: driver MUST NOT change them). */
	struct virtq *qw = q && !q->ready ? q : NULL;
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: t->device_features_sel = v; break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (!(t->status & VIRTIO_CONFIG_S_FEATURES_OK) && t->driver_features_sel <= 1)
			set_half(&t->driver_features, t->driver_features_sel == 1, v);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: t->driver_features_sel = v; break;
	case VIRTIO_MMIO_QUEUE_SEL: t->queue_sel = v; break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (qw)
			qw->num = v > 0xffff ? 0 : (uint16_t)v; /* checked when the queue goes ready */
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (!q)
			break;
		if (!(v & 1)) {
			q->ready = false;
		} else if (!q->ready) {
			bool event_idx = t->driver_features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
			if (!(t->status & VIRTIO_CONFIG_S_FEATURES_OK) || virtq_enable(q, t->mem, event_idx))
				virtio_mmio_needs_reset(t);
		}
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY: notify_locked(t, v); break;
	case VIRTIO_MMIO_INTERRUPT_ACK: t->interrupt_status &= ~v; break;
	case VIRTIO_MMIO_STATUS: status_write(t, v); break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW: if (qw) set_half(&qw->desc_gpa, false, v); break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH: if (qw) set_half(&qw->desc_gpa, true, v); break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW: if (qw) set_half(&qw->avail_gpa, false, v); break;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH: if (qw) set_half(&qw->avail_gpa, true, v); break;
	case VIRTIO_MMIO_QUEUE_USED_LOW: if (qw) set_half(&qw->used_gpa, false, v); break;
	case VIRTIO_MMIO_QUEUE_USED_HIGH: if (qw) set_half(&qw->used_gpa, true, v); break;
	default: break; /* read-only, legacy (GUEST_PAGE_SIZE, QUEUE_PFN) and reserved: ignored */
	}
}

static void virtio_mmio_read(void *opaque, uint64_t off, void *data, uint32_t len)
{
	struct virtio_mmio *t = opaque;
	memset(data, 0, len);
	pthread_mutex_lock(&t->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint64_t c = off - VIRTIO_MMIO_CONFIG;
		if (c < t->config_len && len <= t->config_len - c)
			memcpy(data, (const uint8_t *)t->config + c, len);
	} else if (len == 4 && !(off & 3)) {
		uint32_t v = reg_read(t, off);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&t->lock);
}

static void virtio_mmio_write(void *opaque, uint64_t off, const void *data, uint32_t len)
{
	struct virtio_mmio *t = opaque;
	/* Config space is read-only here (no device offers CONFIG_WCE); registers are 32-bit only. */
	if (off >= VIRTIO_MMIO_CONFIG || len != 4 || (off & 3))
		return;
	uint32_t v;
	memcpy(&v, data, 4);
	pthread_mutex_lock(&t->lock);
	reg_write(t, off, v);
	pthread_mutex_unlock(&t->lock);
}

void virtio_mmio_save(struct virtio_mmio *t, struct virtio_mmio_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&t->lock);
	st->device_id = t->device_id;
	st->nqueues = t->nqueues;
	st->device_features = t->device_features;
	st->driver_features = t->driver_features;
	st->device_features_sel = t->device_features_sel;
	st->driver_features_sel = t->driver_features_sel;
	st->queue_sel = t->queue_sel;
	st->status = t->status;
	st->interrupt_status = t->interrupt_status;
	st->config_generation = t->config_generation;
	for (unsigned i = 0; i < t->nqueues; i++)
		virtq_save(&t->queues[i], &st->queues[i]);
	pthread_mutex_unlock(&t->lock);
}

int virtio_mmio_load(struct virtio_mmio *t, const struct virtio_mmio_state *st)
{
	if (st->device_id != t->device_id || st->nqueues != t->nqueues || st->device_features != t->device_features ||
	    (st->driver_features & ~st->device_features))
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	t->driver_features = st->driver_features;
	t->device_features_sel = st->device_features_sel;
	t->driver_features_sel = st->driver_features_sel;
	t->queue_sel = st->queue_sel;
	t->status = st->status;
	t->interrupt_status = st->interrupt_status;
	t->config_generation = st->config_generation;
	int rc = 0;
	for (unsigned i = 0; i < t->nqueues && !rc; i++)
		rc = virtq_load(&t->queues[i], t->mem, &st->queues[i]);
	if (rc) {
		device_reset(t);
		rc = -EINVAL;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

const struct bus_ops virtio_mmio_ops = { .read = virtio_mmio_read, .write = virtio_mmio_write };
