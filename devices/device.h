/* The one lifecycle every device has: what the VM calls on each in its loops, without asking its kind. */
#ifndef PADCELL_DEVICE_H
#define PADCELL_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/bus.h"
#include "devices/devhost.h"
#include "devices/ratelimit.h"
#include "vmm/mem.h"

struct device;
struct virtio_mmio;
struct policy_view;

/*
 * What a device's save hooks write into; the snapshot code implements it, so devices never see
 * the VM or the state file.  Sections are padcell's state-file sections (vmm/snapshot_fmt.h).
 */
struct dev_snap_out {
	void (*add)(struct dev_snap_out *o, uint32_t type, uint32_t index, const void *data, size_t len);
	/*
	 * Asks for the first `size` bytes of fd to be copied, sparsely and with the snapshot's
	 * trailer, into the file `name` beside the state file.  fd must stay open until the
	 * snapshot is written.  0 or -errno.
	 */
	int (*add_file)(struct dev_snap_out *o, const char *name, int fd, uint64_t size);
	/* Names a host file the device has open (a drive), which the snapshot must not overwrite. */
	void (*uses_file)(struct dev_snap_out *o, int fd);
	const char *state_base; /* the state file's name without its directory */
	void *ctx;
};

/* What a device's load hooks read from: a checked state file and the data files beside it. */
struct dev_snap_in {
	/* The section (type, index): its data and length, or NULL. */
	const void *(*find)(const struct dev_snap_in *in, uint32_t type, uint32_t index, uint64_t *len);
	/*
	 * Opens the data file at path and checks it holds `size` bytes of this snapshot: an fd, or
	 * -errno with err saying what is wrong (`what` names the file there).
	 */
	int (*open_file)(const struct dev_snap_in *in, const char *path, const char *what, uint64_t size, char *err,
			 size_t errlen);
	/* Copies the data extents of the first `size` bytes of src into dst (holes stay holes).  0 or -errno. */
	int (*copy_file)(int dst, int src, uint64_t size);
	const char *dir; /* the state file's directory */
	void *ctx;
};

/*
 * A device kind's ops (bhyve's pci_devemu; Firecracker's per-device persist).  Every hook but
 * save/load may be NULL; each takes the device instance, whose `dev` is the device's own struct.
 */
struct dev_ops {
	const char *name;
	/* Its threads, once it is on its bus and wired up; stopped again by destroy. */
	int (*start)(struct device *d);
	/* Stop touching guest memory, no request in flight; the queue state stays.  Resume undoes it. */
	void (*pause)(struct device *d);
	int (*resume)(struct device *d);

	/* Its state: state_size bytes in section snap_section, index d->index (fixed layout). */
	uint32_t snap_section;
	size_t state_size;
	void (*save)(struct device *d, void *state);
	/* -EINVAL with err set when the state does not fit this device or does not check out. */
	int (*load)(struct device *d, const void *state, char *err, size_t errlen);
	/* What the state stands on, saved just before it (virtio-blk: its disk, a scratch disk's copy). */
	int (*save_backing)(struct device *d, struct dev_snap_out *o, char *err, size_t errlen);
	/* The VM was restored and its vCPUs are about to run (virtio: look at every queue again). */
	void (*restored)(struct device *d);

	/*
	 * A live change of its rate limiters (the API's PATCH /drives/{id}, /network-interfaces/{id}).
	 * cls names the kind of resource ("drive", "net"), id the one the client named, p[0..np-1]
	 * the changes (a drive has one limiter; a NIC two, rx then tx).  -ENOENT when this device is
	 * not that resource; -EINVAL with err set when the change does not fit it; else 0.
	 */
	int (*set_rate)(struct device *d, const char *cls, const char *id, const struct ratelimit_patch *p, unsigned np,
			char *err, size_t errlen);

	/*
	 * The egress policy of a NIC (the API's PUT and GET /network/policy).  set_policy checks
	 * every rule and puts the whole set in place, or changes nothing (-EINVAL, err naming the
	 * bad rule); get_policy fills v (policy_view_free() it).  Devices without these are not NICs.
	 */
	int (*set_policy)(struct device *d, const char *const *rules, size_t n, bool open, char *err, size_t errlen);
	int (*get_policy)(struct device *d, struct policy_view *v);

	/* Stops its threads and releases everything its create function made. */
	void (*destroy)(struct device *d);
};

/*
 * One device in a VM.  The monitor fills index, base and irq before the device's create
 * function runs; that function fills the rest.
 */
struct device {
	const struct dev_ops *ops;
	void *dev;
	unsigned index;             /* its sections' index in a snapshot: the virtio slot, else 0 */
	uint64_t base, len;         /* its bus window */
	unsigned irq;
	const struct bus_ops *bus_ops;
	void *bus_opaque;
	/* virtio-mmio devices only: */
	struct virtio_mmio *virtio;
	int kick_fd;                /* eventfd its thread sleeps on; the monitor makes it the QueueNotify ioeventfd */
	bool kick_datamatch;        /* signal it only for QueueNotify == 0 (one queue), not for any value */
	/* the monitor's: */
	bool ioeventfd;             /* KVM signals kick_fd (else a vCPU exit does) */
	int irqfd;                  /* written to raise irq; -1: KVM_IRQ_LINE instead */
};

/* Makes a device of one kind in d (index, base, irq already set); params are that kind's.  0 or -errno. */
typedef int dev_create_fn(struct device *d, const struct guest_mem *mem, const struct dev_host *host,
			  const void *params);

#endif
