/* Device state in snapshots: every device's sections through its dev_ops, and the data files devices ask for. */
#ifndef PADCELL_SNAPSHOT_DEV_H
#define PADCELL_SNAPSHOT_DEV_H

#include "devices/device.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/x86/layout.h"

struct vm;

/* What the devices wrote while saving: data files to copy beside the state file. */
struct snap_dev_out {
	struct dev_snap_out out;
	struct snap_enc *e;
	char base[256];
	struct {
		char name[4096];
		int fd;
		uint64_t size;
	} copies[LAYOUT_VIRTIO_MAX];
	unsigned ncopies;
	int used[LAYOUT_VIRTIO_MAX]; /* host files the devices have open (dev_snap_out.uses_file) */
	unsigned nused;
};

/* Every device's sections, in device order, into e; the data files they ask for into o->copies. */
int snap_devices_save(struct vm *vm, struct snap_dev_out *o, struct snap_enc *e, const char *state_path, char *err,
		      size_t errlen);

/* A checked state file as devices see it. */
struct snap_dev_in {
	struct dev_snap_in in;
	const struct snap_view *sv;
	char dir[4096];
};
void snap_dev_in_init(struct snap_dev_in *s, const struct snap_view *sv, const char *state_path);

/* Every device's state from the snapshot; after the irqchip, into which devices re-drive their lines. */
int snap_devices_load(struct vm *vm, const struct dev_snap_in *in, char *err, size_t errlen);
/* Every device's restored hook, the last step before the vCPUs run. */
void snap_devices_restored(struct vm *vm);

#endif
