/* Snapshots: a paused VM's memory and machine state written to files atomically, and VMs restored from them. */
#include "vmm/snapshot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/jail/jail.h"
#include "vmm/snapshot_dev.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/snapshot_io.h"
#include "vmm/util.h"
#include "vmm/vm.h"
#include "vmm/x86/snapshot_x86.h"

static uint64_t now_ns(int clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- saving ------------------------------------------------------------------------------------ */

/*
 * The files a snapshot writes must be files of their own, compared by what they are, not how
 * they are spelt ("/d//s" is "/d/s"): the state and memory files are renamed into place last,
 * so two of them naming one file would leave one missing and the VM's drive overwritten by
 * guest RAM.  Refused (-EINVAL): state and memory the same file, either one a scratch-disk copy
 * this snapshot makes, or one of the VM's own drives; an existing file there that is not a
 * regular file (a FIFO, a device).
 */
static int snap_paths_check(const char *state_path, const char *mem_path, const struct snap_dev_out *devs,
			    char *err, size_t errlen)
{
	const char *paths[2] = { state_path, mem_path }, *what[2] = { "snapshot_path", "mem_file_path" };
	if (same_file_path(state_path, mem_path))
		return errorf(err, errlen, -EINVAL, "snapshot_path and mem_file_path are the same file ('%s', '%s')",
			      state_path, mem_path);
	char dir[4096];
	snap_dir_of(state_path, dir, sizeof(dir));
	for (unsigned p = 0; p < 2; p++) {
		struct stat st;
		if (jail_stat(paths[p], &st) == 0 && !S_ISREG(st.st_mode))
			return errorf(err, errlen, -EINVAL, "%s '%s' is %s, not a regular file", what[p], paths[p],
				      file_kind(st.st_mode));
		for (unsigned i = 0; i < devs->ncopies; i++) {
			char name[8200];
			snprintf(name, sizeof(name), "%s/%s", dir, devs->copies[i].name);
			if (same_file_path(paths[p], name))
				return errorf(err, errlen, -EINVAL, "%s '%s' is the scratch-disk copy this snapshot writes ('%s')",
					      what[p], paths[p], name);
		}
		for (unsigned i = 0; i < devs->nused; i++)
			if (path_is_fd(paths[p], devs->used[i]))
				return errorf(err, errlen, -EINVAL, "%s '%s' is one of the VM's own drives", what[p], paths[p]);
	}
	return 0;
}

int snapshot_create(struct vm *vm, const char *state_path, const char *mem_path, char *err, size_t errlen)
{
	if (!vm_is_paused(vm))
		return errorf(err, errlen, -EBUSY, "the VM is running: pause it first");
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	struct snap_files *files = calloc(1, sizeof(*files));
	struct snap_dev_out *devs = calloc(1, sizeof(*devs));
	struct snap_enc e = { 0 };
	struct x86_msr_list ml = { 0 };
	int fd = -1, rc;
	char dir[4096];
	if (!files || !devs) {
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
	    (rc = snap_devices_save(vm, devs, &e, state_path, err, errlen)) ||
	    (rc = snap_paths_check(state_path, mem_path, devs, err, errlen)))
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

	/* The data files devices asked for (a scratch disk's contents are the guest's), beside the state file. */
	snap_dir_of(state_path, dir, sizeof(dir));
	for (unsigned i = 0; i < devs->ncopies; i++) {
		char name[8200];
		snprintf(name, sizeof(name), "%s/%s", dir, devs->copies[i].name);
		if ((fd = snap_files_create(files, name, state_path, err, errlen)) < 0) {
			rc = fd;
			goto out;
		}
		uint64_t size = devs->copies[i].size;
		if (ftruncate(fd, (off_t)size) < 0 || (errno = -snap_copy_sparse(fd, devs->copies[i].fd, size)) != 0 ||
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
	free(devs);
	snap_enc_free(&e);
	free(ml.idx);
	return rc;
}

/* ---- restoring --------------------------------------------------------------------------------- */

int vm_restore(struct vm *vm, const struct vm_config *cfg, const char *state_path, const char *mem_path,
	       char *err, size_t errlen)
{
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	uint8_t *buf = NULL;
	size_t len = 0;
	struct snap_view sv = { 0 };
	struct snap_dev_in *in = NULL;
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
	in = calloc(1, sizeof(*in));
	disks = calloc(LAYOUT_VIRTIO_MAX, sizeof(*disks));
	if (!in || !disks) {
		rc = errorf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	snap_dev_in_init(in, &sv, state_path);
	/* The devices' configuration is the snapshot's: the same disks, the same vsock CID. */
	if ((rc = vm_devices_config_restore(&in->in, &c, disks, err, errlen)))
		goto fail;
	uint64_t t_disks = now_ns(CLOCK_MONOTONIC);

	c.mem_size = h->mem_size;
	c.ncpus = h->ncpus;
	c.mem_fd = mem_fd;
	c.mem_path = mem_path;
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
	    (rc = snap_devices_load(vm, &in->in, err, errlen)))
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
	snap_devices_restored(vm);
	if (vm->verbose)
		fprintf(stderr,
			"padcell: restored %u vCPU(s), %llu MiB in %.3f ms (state %.3f, disks %.3f, VM %.3f, vCPUs and devices %.3f, clock %.3f)\n",
			h->ncpus, (unsigned long long)(h->mem_size >> 20), (now_ns(CLOCK_MONOTONIC) - t0) / 1e6,
			(t_read - t0) / 1e6, (t_disks - t_read) / 1e6, (t_vm - t_disks) / 1e6, (t_vcpus - t_vm) / 1e6,
			(now_ns(CLOCK_MONOTONIC) - t_vcpus) / 1e6);
	free(in);
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
	free(in);
	snap_view_free(&sv);
	free(buf);
	return rc;
}
