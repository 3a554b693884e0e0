/* Snapshots: a paused VM's memory and machine state written to files atomically, and VMs restored from them. */
#include "vmm/snapshot.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/snapshot_io.h"
#include "vmm/vm.h"
#include "vmm/x86/snapshot_x86.h"

static uint64_t now_ns(int clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- saving ------------------------------------------------------------------------------------ */

static int devices_save(struct vm *vm, struct snap_enc *e, const char *state_path, char *err, size_t errlen)
{
	struct serial_state ser;
	serial_save(&vm->serial, &ser);
	snap_enc_add(e, SNAP_SEC_SERIAL, 0, &ser, sizeof(ser));
	struct i8042_state kbd;
	i8042_save(&vm->i8042, &kbd);
	snap_enc_add(e, SNAP_SEC_I8042, 0, &kbd, sizeof(kbd));
	struct acpi_pm_state pm;
	acpi_pm_save(&vm->acpi_pm, &pm);
	snap_enc_add(e, SNAP_SEC_ACPI_PM, 0, &pm, sizeof(pm));
	uint32_t pvp = pvpanic_save(&vm->pvpanic);
	snap_enc_add(e, SNAP_SEC_PVPANIC, 0, &pvp, sizeof(pvp));

	char base[256];
	snap_base_of(state_path, base, sizeof(base));
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct vm_virtio *d = &vm->virtio[i];
		if (d->blk) {
			struct snap_disk *sd = calloc(1, sizeof(*sd));
			if (!sd)
				return errorf(err, errlen, -ENOMEM, "out of memory");
			const struct blk_disk *disk = d->blk->disk;
			sd->size = disk->size;
			sd->ro = disk->ro;
			sd->scratch = disk->scratch;
			snprintf(sd->id, sizeof(sd->id), "%s", disk->id);
			if (disk->scratch)
				snprintf(sd->path, sizeof(sd->path), "%s.disk%u", base, i);
			else
				snprintf(sd->path, sizeof(sd->path), "%s", disk->path);
			snap_enc_add(e, SNAP_SEC_DISK, i, sd, sizeof(*sd));
			free(sd);
			struct virtio_blk_state bs;
			virtio_blk_save(d->blk, &bs);
			snap_enc_add(e, SNAP_SEC_BLK, i, &bs, sizeof(bs));
		} else if (d->vsock) {
			struct virtio_vsock_state vs;
			virtio_vsock_save(d->vsock, &vs);
			snap_enc_add(e, SNAP_SEC_VSOCK, i, &vs, sizeof(vs));
		}
	}
	return 0;
}

int snapshot_create(struct vm *vm, const char *state_path, const char *mem_path, char *err, size_t errlen)
{
	if (!vm_is_paused(vm))
		return errorf(err, errlen, -EBUSY, "the VM is running: pause it first");
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	struct snap_files *files = calloc(1, sizeof(*files));
	struct snap_enc e = { 0 };
	struct x86_msr_list ml = { 0 };
	int fd = -1, rc;
	char dir[4096];
	if (!files) {
		rc = errorf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}

	struct snap_header h = { .mem_size = vm->mem.size, .mem_file_size = vm->mem.size + SNAP_DATA_TRAILER,
				 .ncpus = vm->ncpus, .host_cpuid_crc = x86_cpuid_crc(vm),
				 .created_ns = now_ns(CLOCK_REALTIME) };
	if (getrandom(h.id, sizeof(h.id), 0) != sizeof(h.id)) {
		rc = errorf(err, errlen, -errno, "getrandom: %s", strerror(errno));
		goto out;
	}
	h.tsc_khz = x86_tsc_khz(vm);

	/* The machine state, in memory first: it is small, and a failure here writes nothing. */
	if ((rc = x86_msr_list_get(vm->kvm_fd, &ml))) {
		errorf(err, errlen, rc, "KVM_GET_MSR_INDEX_LIST failed: %s", strerror(-rc));
		goto out;
	}
	snap_enc_init(&e, &h);
	for (unsigned i = 0; i < vm->ncpus; i++)
		if ((rc = x86_vcpu_save(vm, &vm->vcpus[i], &ml, &e, err, errlen)))
			goto out;
	if ((rc = x86_machine_save(vm, &e, err, errlen)) ||
	    (rc = devices_save(vm, &e, state_path, err, errlen)))
		goto out;
	if ((rc = snap_enc_finish(&e))) {
		errorf(err, errlen, rc, "out of memory");
		goto out;
	}
	uint64_t t_state = now_ns(CLOCK_MONOTONIC);

	/* Memory. */
	if ((fd = snap_files_create(files, mem_path, mem_path, err, errlen)) < 0) {
		rc = fd;
		goto out;
	}
	if (ftruncate(fd, (off_t)vm->mem.size) < 0 ||
	    (errno = -snap_write_mem(fd, &vm->mem)) != 0 ||
	    (errno = -snap_data_finish(fd, h.id, vm->mem.size)) != 0) {
		rc = errorf(err, errlen, -errno, "cannot write the memory file '%s': %s", mem_path, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	uint64_t t_mem = now_ns(CLOCK_MONOTONIC);

	/* Scratch disks: their contents are the guest's; a copy goes beside the state file. */
	snap_dir_of(state_path, dir, sizeof(dir));
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct vm_virtio *d = &vm->virtio[i];
		if (!d->blk || !d->blk->disk->scratch)
			continue;
		/* The name devices_save recorded: "<state file's name>.disk<slot>", beside it. */
		char name[4400], base[256];
		snap_base_of(state_path, base, sizeof(base));
		snprintf(name, sizeof(name), "%s/%s.disk%u", dir, base, i);
		if ((fd = snap_files_create(files, name, state_path, err, errlen)) < 0) {
			rc = fd;
			goto out;
		}
		uint64_t size = d->blk->disk->size;
		if (ftruncate(fd, (off_t)size) < 0 || (errno = -snap_copy_sparse(fd, d->blk->disk->fd, size)) != 0 ||
		    (errno = -snap_data_finish(fd, h.id, size)) != 0) {
			rc = errorf(err, errlen, -errno, "cannot copy the scratch disk: %s", strerror(errno));
			goto out;
		}
		close(fd);
		fd = -1;
	}

	/* The state file, last. */
	if ((fd = snap_files_create(files, state_path, state_path, err, errlen)) < 0) {
		rc = fd;
		goto out;
	}
	if ((errno = -snap_pwrite_all(fd, e.buf, e.len, 0)) != 0 || fsync(fd) < 0) {
		rc = errorf(err, errlen, -errno, "cannot write the state file '%s': %s", state_path, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	if ((rc = snap_files_commit(files, mem_path, err, errlen)))
		goto out;
	if (vm->verbose)
		fprintf(stderr, "padcell: snapshot written in %.1f ms (state %zu bytes %.1f ms, memory %.1f ms, rest %.1f ms)\n",
			(now_ns(CLOCK_MONOTONIC) - t0) / 1e6, e.len, (t_state - t0) / 1e6, (t_mem - t_state) / 1e6,
			(now_ns(CLOCK_MONOTONIC) - t_mem) / 1e6);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (files)
		snap_files_abort(files);
	free(files);
	snap_enc_free(&e);
	free(ml.idx);
	return rc;
}

/* ---- restoring --------------------------------------------------------------------------------- */

/* The snapshot's disks, reopened: --drive images by path, scratch disks as private copies. */
static int disks_restore(const struct snap_view *sv, const char *state_path, struct blk_disk *disks, unsigned *n,
			 char *err, size_t errlen)
{
	char dir[4096], why[256];
	snap_dir_of(state_path, dir, sizeof(dir));
	*n = 0;
	int rc = 0;
	const struct snap_disk *sd;
	while (!rc && (sd = snap_find(sv, SNAP_SEC_DISK, *n, NULL))) {
		struct blk_disk *d = &disks[*n];
		if (sd->scratch) {
			char path[8200];
			snprintf(path, sizeof(path), "%s/%s", dir, sd->path);
			int src = snap_data_open(path, "scratch-disk copy", sv->hdr->id, sd->size, err, errlen);
			if (src < 0)
				return src;
			rc = blk_disk_scratch(d, sd->size, why, sizeof(why));
			if (rc)
				errorf(err, errlen, rc, "scratch disk: %s", why);
			else if ((rc = snap_copy_sparse(d->fd, src, sd->size)))
				errorf(err, errlen, rc, "cannot copy the scratch disk '%s': %s", path, strerror(-rc));
			else
				snprintf(d->id, sizeof(d->id), "%.20s", sd->id);
			close(src);
		} else {
			rc = blk_disk_open(d, sd->path, sd->ro, sd->id, why, sizeof(why));
			if (rc)
				rc = errorf(err, errlen, -EINVAL, "the snapshot's disk '%s': %s", sd->path, why);
			else if (d->size != sd->size)
				rc = errorf(err, errlen, -EINVAL, "the snapshot's disk '%s' was %llu bytes, now %llu",
					    sd->path, (unsigned long long)sd->size, (unsigned long long)d->size);
		}
		if (rc) {
			blk_disk_close(d);
			break;
		}
		(*n)++;
	}
	if (rc)
		while (*n)
			blk_disk_close(&disks[--*n]);
	return rc;
}

/* Devices after the irqchip: the UART re-drives its interrupt line into it. */
static int devices_load(struct vm *vm, const struct snap_view *sv, char *err, size_t errlen)
{
	if (serial_load(&vm->serial, snap_find(sv, SNAP_SEC_SERIAL, 0, NULL)))
		return errorf(err, errlen, -EINVAL, "corrupt: serial state");
	i8042_load(&vm->i8042, snap_find(sv, SNAP_SEC_I8042, 0, NULL));
	acpi_pm_load(&vm->acpi_pm, snap_find(sv, SNAP_SEC_ACPI_PM, 0, NULL));
	uint32_t pvp;
	memcpy(&pvp, snap_find(sv, SNAP_SEC_PVPANIC, 0, NULL), sizeof(pvp));
	pvpanic_load(&vm->pvpanic, pvp);
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct vm_virtio *d = &vm->virtio[i];
		if (d->blk && virtio_blk_load(d->blk, snap_find(sv, SNAP_SEC_BLK, i, NULL)))
			return errorf(err, errlen, -EINVAL, "the snapshot's virtio-blk device %u does not fit its disk", i);
		if (d->vsock && virtio_vsock_load(d->vsock, snap_find(sv, SNAP_SEC_VSOCK, i, NULL)))
			return errorf(err, errlen, -EINVAL, "corrupt: virtio-vsock state");
	}
	return 0;
}


int vm_restore(struct vm *vm, const struct vm_config *cfg, const char *state_path, const char *mem_path,
	       char *err, size_t errlen)
{
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	uint8_t *buf = NULL;
	size_t len = 0;
	struct snap_view sv = { 0 };
	struct blk_disk *disks = NULL;
	struct vm_config c = *cfg;
	c.disks = NULL; /* the snapshot's, not the caller's */
	c.ndisks = 0;
	int mem_fd = -1;
	bool made = false;
	char why[256];
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;

	int rc = snap_state_read(state_path, &buf, &len, err, errlen);
	if (rc)
		return rc;
	if ((rc = snap_decode(buf, len, &sv, why, sizeof(why))) || (rc = snap_check_machine(&sv, why, sizeof(why)))) {
		errorf(err, errlen, rc, "state file '%s': %s", state_path, why);
		goto fail;
	}
	const struct snap_header *h = sv.hdr;
	mem_fd = snap_data_open(mem_path, "memory file", h->id, h->mem_size, err, errlen);
	if (mem_fd < 0) {
		rc = mem_fd;
		goto fail;
	}
	uint64_t t_read = now_ns(CLOCK_MONOTONIC);
	bool has_vsock = false;
	for (unsigned i = 0; i < sv.nsec; i++)
		has_vsock |= sv.sec[i].type == SNAP_SEC_VSOCK;
	if (has_vsock != (cfg->vsock_path != NULL)) {
		rc = errorf(err, errlen, -EINVAL, has_vsock ? "the snapshot's VM has a vsock device: give --vsock PATH"
							    : "the snapshot's VM has no vsock device: leave out --vsock");
		goto fail;
	}
	disks = calloc(LAYOUT_VIRTIO_MAX, sizeof(*disks));
	if (!disks) {
		rc = errorf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = disks_restore(&sv, state_path, disks, &c.ndisks, err, errlen)))
		goto fail;
	c.disks = disks;
	if (has_vsock)
		c.vsock_cid = ((const struct virtio_vsock_state *)snap_find(&sv, SNAP_SEC_VSOCK, c.ndisks, NULL))->guest_cid;
	uint64_t t_disks = now_ns(CLOCK_MONOTONIC);

	c.mem_size = h->mem_size;
	c.ncpus = h->ncpus;
	c.mem_fd = mem_fd;
	c.mem_from_file = true;
	if ((rc = vm_create(vm, &c, err, errlen)))
		goto fail;
	made = true;
	vm->own_disks = disks;
	vm->own_ndisks = c.ndisks;
	disks = NULL;
	c.ndisks = 0;
	close(mem_fd);
	mem_fd = -1;
	uint64_t t_vm = now_ns(CLOCK_MONOTONIC);

	if ((rc = x86_restore_check(vm, &sv, err, errlen)) || (rc = x86_machine_load(vm, &sv, err, errlen)) ||
	    (rc = devices_load(vm, &sv, err, errlen)))
		goto fail;
	for (unsigned i = 0; i < h->ncpus; i++) {
		if ((rc = vcpu_create(vm, &vm->vcpus[i], i, err, errlen)) ||
		    (rc = x86_vcpu_load(vm, &vm->vcpus[i], &sv, h->tsc_khz, err, errlen)))
			goto fail;
	}
	if ((rc = x86_cpuid_adopt(vm, &sv, err, errlen)))
		goto fail;
	uint64_t t_vcpus = now_ns(CLOCK_MONOTONIC);
	if ((rc = x86_clock_load(vm, &sv, err, errlen)))
		goto fail;
	/* Connections did not survive: the guest hears so and drops its own; listeners stay. */
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct vm_virtio *d = &vm->virtio[i];
		if (d->vsock)
			virtio_vsock_transport_reset(d->vsock);
		/* Kicks the snapshot's device thread never saw: a spurious look at a queue is harmless. */
		struct virtio_mmio *t = d->blk ? &d->blk->t : &d->vsock->t;
		for (unsigned q = 0; q < t->nqueues; q++)
			virtio_mmio_queue_notify(t, q);
	}
	if (vm->verbose)
		fprintf(stderr,
			"padcell: restored %u vCPU(s), %llu MiB in %.3f ms (state %.3f, disks %.3f, VM %.3f, vCPUs and devices %.3f, clock %.3f)\n",
			h->ncpus, (unsigned long long)(h->mem_size >> 20), (now_ns(CLOCK_MONOTONIC) - t0) / 1e6,
			(t_read - t0) / 1e6, (t_disks - t_read) / 1e6, (t_vm - t_disks) / 1e6, (t_vcpus - t_vm) / 1e6,
			(now_ns(CLOCK_MONOTONIC) - t_vcpus) / 1e6);
	snap_view_free(&sv);
	free(buf);
	return 0;

fail:
	if (made)
		vm_destroy(vm);
	if (mem_fd >= 0)
		close(mem_fd);
	while (disks && c.ndisks)
		blk_disk_close(&disks[--c.ndisks]);
	free(disks);
	snap_view_free(&sv);
	free(buf);
	return rc;
}
