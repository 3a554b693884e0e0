/* The one place that says which devices a VM has, in boot order, and how a snapshot's are made again. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/pvpanic.h"
#include "devices/serial.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "devices/virtio_vsock.h"
#include "vmm/err.h"
#include "vmm/vm.h"

/*
 * A new device kind is its own file in devices/ (its dev_ops and create function) and one line
 * here.  The order is the order of their state in a snapshot, and of the virtio-mmio slots the
 * command line announces: disks first (/dev/vda is slot 0), then vsock, then the NIC.
 */
int vm_devices_add(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen)
{
	unsigned nvirtio = cfg->ndisks + (cfg->vsock_path ? 1 : 0) + (cfg->net ? 1 : 0);
	if (nvirtio > LAYOUT_VIRTIO_MAX)
		return errorf(err, errlen, -EINVAL, "too many virtio devices (%u, at most %u)", nvirtio, LAYOUT_VIRTIO_MAX);
	const struct serial_params com1 = { .out_fd = cfg->console_out };
	int rc;
	if ((rc = vm_pio_add(vm, LAYOUT_COM1_PORT, LAYOUT_COM1_IRQ, serial_create, &com1, err, errlen)))
		return rc;
	vm->console = vm->devices[vm->ndevices - 1].dev;
	if ((rc = vm_pio_add(vm, LAYOUT_I8042_DATA_PORT, 0, i8042_create, NULL, err, errlen)) ||
	    (rc = vm_pio_add(vm, LAYOUT_ACPI_PM1_EVT, 0, acpi_pm_create, NULL, err, errlen)) ||
	    (rc = vm_pio_add(vm, LAYOUT_PVPANIC_PORT, 0, pvpanic_create, NULL, err, errlen)))
		return rc;

	for (unsigned i = 0; i < cfg->ndisks; i++)
		if ((rc = vm_virtio_add(vm, virtio_blk_create, &cfg->disks[i], err, errlen)))
			return rc;
	const struct vsock_params vsock = { .path = cfg->vsock_path, .listen_fd = cfg->vsock_listen_fd,
					    .guest_cid = cfg->vsock_cid };
	if (cfg->vsock_path && (rc = vm_virtio_add(vm, virtio_vsock_create, &vsock, err, errlen)))
		return rc;
	if (cfg->net && (rc = vm_virtio_add(vm, virtio_net_create, cfg->net, err, errlen)))
		return rc;
	return 0;
}

int vm_devices_config_restore(const struct dev_snap_in *in, struct vm_config *cfg, struct blk_disk *disks,
			      char *err, size_t errlen)
{
	/* The snapshot format keeps disks in slots 0..n-1 and the vsock device, if any, right after. */
	unsigned ndisks = virtio_blk_disk_count(in);
	uint32_t cid;
	bool has_vsock = virtio_vsock_cid_restore(in, ndisks, &cid) == 0;
	if (has_vsock != (cfg->vsock_path != NULL))
		return errorf(err, errlen, -EINVAL, has_vsock ? "the snapshot's VM has a vsock device: give --vsock PATH"
							      : "the snapshot's VM has no vsock device: leave out --vsock");
	/* A snapshot's NIC comes back with a fresh stack and the policy given now (none given: deny all). */
	static const struct net_params deny_all = { .log_fd = -1 };
	bool has_net = virtio_net_in_snapshot(in, ndisks + (has_vsock ? 1 : 0));
	if (!has_net && cfg->net)
		return errorf(err, errlen, -EINVAL, "the snapshot's VM has no network device: leave out --net, --allow and the other network flags (--net-rate-rx, ...)");
	if (has_net && !cfg->net)
		cfg->net = &deny_all;
	cfg->ndisks = 0;
	for (unsigned i = ndisks; cfg->drive_rates && i < LAYOUT_VIRTIO_MAX; i++)
		if (cfg->drive_rates[i])
			return errorf(err, errlen, -EINVAL, "--drive-rate %u=...: the snapshot's VM has no disk %u (%u disk%s)", i,
				      i, ndisks, ndisks == 1 ? "" : "s");
	for (unsigned i = ndisks; cfg->restore_drives && i < LAYOUT_VIRTIO_MAX; i++)
		if (cfg->restore_drives[i])
			return errorf(err, errlen, -EINVAL, "--drive %u=%s: the snapshot's VM has no disk %u (%u disk%s)", i,
				      cfg->restore_drives[i], i, ndisks, ndisks == 1 ? "" : "s");
	for (unsigned i = 0; i < ndisks; i++) {
		int rc = virtio_blk_disk_restore(in, i, cfg->restore_drives ? cfg->restore_drives[i] : NULL, &disks[i], err,
						 errlen);
		if (rc) {
			while (i)
				blk_disk_close(&disks[--i]);
			return rc;
		}
		/* Limiter state is not in a snapshot: the limits given now apply, starting full. */
		if (cfg->drive_rates && cfg->drive_rates[i])
			disks[i].rate = *cfg->drive_rates[i];
	}
	cfg->disks = disks;
	cfg->ndisks = ndisks;
	if (has_vsock)
		cfg->vsock_cid = cid;
	return 0;
}

int vm_set_rate(struct vm *vm, const char *cls, const char *id, const struct ratelimit_patch *p, unsigned np,
		char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->ndevices; i++) {
		struct device *d = &vm->devices[i];
		if (!d->ops->set_rate)
			continue;
		int rc = d->ops->set_rate(d, cls, id, p, np, err, errlen);
		if (rc != -ENOENT)
			return rc;
	}
	if (!strcmp(cls, "drive"))
		return errorf(err, errlen, -ENOENT, "no drive '%s' (name one by its index from 0, its vdX name or its id)", id);
	return errorf(err, errlen, -ENOENT, "no network interface '%s' (the VM's NIC, if it has one, is eth0)", id);
}

/* The NIC, if the VM has one: the device with the policy hooks. */
static struct device *vm_nic(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ndevices; i++)
		if (vm->devices[i].ops->set_policy && vm->devices[i].ops->get_policy)
			return &vm->devices[i];
	return NULL;
}

#define NO_NIC "this VM has no network interface: start it with --net, --allow or --allow-internet to have one"

int vm_set_policy(struct vm *vm, const char *const *rules, size_t n, bool open, char *err, size_t errlen)
{
	struct device *d = vm_nic(vm);
	if (!d)
		return errorf(err, errlen, -ENOENT, NO_NIC);
	return d->ops->set_policy(d, rules, n, open, err, errlen);
}

int vm_get_policy(struct vm *vm, struct policy_view *v, char *err, size_t errlen)
{
	struct device *d = vm_nic(vm);
	if (!d)
		return errorf(err, errlen, -ENOENT, NO_NIC);
	int rc = d->ops->get_policy(d, v);
	return rc ? errorf(err, errlen, rc, "out of memory") : 0;
}
