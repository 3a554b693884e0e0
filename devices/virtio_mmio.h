/* Virtio 1.x MMIO transport (version 2): the register file, feature negotiation and queue setup. */
#ifndef PADCELL_VIRTIO_MMIO_H
#define PADCELL_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdint.h>

#include "devices/bus.h"
#include "devices/devhost.h"
#include "devices/virtq.h"
#include "vmm/mem.h"

#define VIRTIO_MMIO_RANGE_LEN   0x1000 /* one page per device: registers, then config space */
#define VIRTIO_MMIO_MAX_QUEUES  3 /* virtio-vsock: rx, tx, event */

/*
 * What a device model plugs into the transport.  Every callback runs with the
 * transport's lock held; the device's own threads take the same lock (t->lock) before
 * touching queues or status.
 */
struct virtio_dev_ops {
	/*
	 * The driver kicked queue q through the register file (a QueueNotify exit, or DRIVER_OK
	 * after kicks that came too early); q is ready and DRIVER_OK is set.  Kicks through a
	 * KVM ioeventfd go straight to the device's own thread instead.
	 */
	void (*queue_notify)(void *opaque, unsigned q);
	/* The driver reset the device: stop touching the queues before returning. */
	void (*reset)(void *opaque);
};

struct virtio_mmio {
	pthread_mutex_t lock;
	const struct virtio_dev_ops *ops;
	void *opaque;
	const struct guest_mem *mem;
	const struct dev_host *host;
	unsigned irq;

	uint32_t device_id;
	uint64_t device_features;  /* offered: the device's own plus the transport's */
	uint64_t driver_features;  /* accepted by the driver                          */
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint32_t status;
	uint32_t interrupt_status;
	uint32_t config_generation;
	const void *config;        /* device-owned config space, read-only to the driver */
	uint32_t config_len;

	unsigned nqueues;
	struct virtq queues[VIRTIO_MMIO_MAX_QUEUES];
	uint64_t resets;           /* bumped by every reset: work begun before it is dropped */
};

/* Snapshot state of a transport (fixed layout): registers, negotiated features and the queues. */
struct virtio_mmio_state {
	uint32_t device_id, nqueues;
	uint64_t device_features, driver_features;
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint32_t status, interrupt_status, config_generation;
	struct virtq_state queues[VIRTIO_MMIO_MAX_QUEUES];
};
_Static_assert(sizeof(struct virtio_mmio_state) == 48 + 40 * VIRTIO_MMIO_MAX_QUEUES, "virtio_mmio_state layout");
/* Takes the lock. */
void virtio_mmio_save(struct virtio_mmio *t, struct virtio_mmio_state *st);
/*
 * Takes the lock.  -EINVAL when st is for another kind of device, other offered features or
 * another queue count, or a queue does not check out; then t is reset.
 */
int virtio_mmio_load(struct virtio_mmio *t, const struct virtio_mmio_state *st);

/* Feature bits every padcell device offers: VERSION_1, INDIRECT_DESC and EVENT_IDX. */
uint64_t virtio_mmio_transport_features(void);

void virtio_mmio_init(struct virtio_mmio *t, const struct guest_mem *mem, const struct dev_host *host,
		      unsigned irq, uint32_t device_id, uint64_t device_features, unsigned nqueues,
		      const void *config, uint32_t config_len, const struct virtio_dev_ops *ops, void *opaque);
void virtio_mmio_destroy(struct virtio_mmio *t);

extern const struct bus_ops virtio_mmio_ops;

/* A kick of queue q from outside the register file (tests, a monitor's own notifier).  Takes the lock. */
void virtio_mmio_queue_notify(struct virtio_mmio *t, unsigned q);

/* Every queue kicked once (after a restore: kicks the saved device thread never saw; a spurious look is harmless). */
void virtio_mmio_notify_all(struct virtio_mmio *t);

/* With t->lock held: queue q if the device may use it now (DRIVER_OK, no NEEDS_RESET, ready), else NULL. */
struct virtq *virtio_mmio_queue(struct virtio_mmio *t, unsigned q);
/* With t->lock held: set InterruptStatus bits and raise the device's interrupt. */
void virtio_mmio_interrupt(struct virtio_mmio *t, uint32_t bits);
/* With t->lock held: the guest broke a queue; set DEVICE_NEEDS_RESET and tell the driver. */
void virtio_mmio_needs_reset(struct virtio_mmio *t);
/* With t->lock held: config space changed; bump ConfigGeneration and tell the driver. */
void virtio_mmio_config_changed(struct virtio_mmio *t);

#endif
