/* Snapshots: a paused VM's memory and machine state written to files atomically, and VMs restored from them. */
#include "vmm/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/vm.h"

#define PAGE 4096u

static uint64_t now_ns(int clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- files: temporary names, sparse data, atomic renames ---------------------------------------- */

/* The directory part of path ("." for a bare name), for temporary files beside it and fsync. */
static void dir_of(const char *path, char *out, size_t outlen)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", path);
	snprintf(out, outlen, "%s", dirname(tmp));
}

static void base_of(const char *path, char *out, size_t outlen)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", path);
	snprintf(out, outlen, "%s", basename(tmp));
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* A new file "<dir>/.<name>.tmp-XXXXXX" beside path; its name goes to tmp. */
static int tmp_create(const char *path, char *tmp, size_t tmplen)
{
	char dir[4096], base[256];
	dir_of(path, dir, sizeof(dir));
	base_of(path, base, sizeof(base));
	if ((size_t)snprintf(tmp, tmplen, "%s/.%s.tmp-XXXXXX", dir, base) >= tmplen)
		return -ENAMETOOLONG;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return fd;
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int pread_all(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	for (unsigned i = 0; i < PAGE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

/*
 * Which pages of an anonymous mapping were never touched: /proc/self/pagemap says "neither
 * present nor swapped", and such pages read as zeros.  Saves reading (and mapping the zero
 * page into) gigabytes a guest never used.  NULL when pagemap cannot be read: scan everything.
 */
static int pagemap_fd(void)
{
	return open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)

/* Whether byte off of file src lies in a hole; *cur caches the data extent around the last answer. */
static bool file_hole_at(int src, uint64_t off, uint64_t cur[2])
{
	if (off >= cur[1]) { /* offsets only grow: the cached extent answers until past its end */
		off_t data = lseek(src, (off_t)off, SEEK_DATA);
		if (data < 0) {
			/* ENXIO: only holes from here on; anything else: assume data, and look. */
			cur[0] = cur[1] = errno == ENXIO ? UINT64_MAX : off;
			return errno == ENXIO;
		}
		off_t hole = lseek(src, data, SEEK_HOLE);
		cur[0] = (uint64_t)data;
		cur[1] = hole < 0 ? (uint64_t)data + PAGE : (uint64_t)hole;
	}
	return off < cur[0];
}

/*
 * Writes guest memory into fd at 0: pages that are all zero are left as holes.  A page pagemap
 * reports untouched is zero without looking when the memory is anonymous, and when it is mapped
 * from a file (a restored VM) and the file has a hole there.
 */
static int write_sparse(int fd, const struct guest_mem *m)
{
	const uint8_t *host = m->host;
	uint64_t size = m->size, cur[2] = { 0, 0 };
	int pm = pagemap_fd();
	enum { BATCH = 512 };
	uint64_t ent[BATCH];
	uint64_t run_start = 0, run_len = 0;
	int rc = 0;
	for (uint64_t off = 0; off < size && !rc; off += (uint64_t)BATCH * PAGE) {
		uint64_t npages = (size - off) / PAGE < BATCH ? (size - off) / PAGE : BATCH;
		bool have_pm = false;
		if (pm >= 0) {
			uint64_t vpn = ((uintptr_t)host + off) / PAGE;
			have_pm = pread_all(pm, ent, npages * 8, (off_t)(vpn * 8)) == 0;
		}
		for (uint64_t i = 0; i < npages && !rc; i++) {
			uint64_t o = off + i * PAGE;
			bool untouched = have_pm && !(ent[i] & (PM_PRESENT | PM_SWAPPED));
			bool zero = (untouched && (!m->from_file || file_hole_at(m->file_fd, o, cur))) ||
				    page_is_zero(host + o);
			if (!zero && run_len && run_start + run_len == o && run_len < (8u << 20)) {
				run_len += PAGE;
				continue;
			}
			if (run_len)
				rc = pwrite_all(fd, host + run_start, run_len, (off_t)run_start);
			run_len = 0;
			if (!zero) {
				run_start = o;
				run_len = PAGE;
			}
		}
	}
	if (!rc && run_len)
		rc = pwrite_all(fd, host + run_start, run_len, (off_t)run_start);
	if (pm >= 0)
		close(pm);
	return rc;
}

/* Copies the data extents of the first `size` bytes of src into dst (holes stay holes). */
static int copy_sparse(int dst, int src, uint64_t size)
{
	off_t off = 0;
	while ((uint64_t)off < size) {
		off_t data = lseek(src, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			return -errno;
		if ((uint64_t)data >= size)
			break;
		off_t hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		if ((uint64_t)hole > size)
			hole = (off_t)size;
		off_t in = data, out = data;
		while (in < hole) {
			ssize_t n = copy_file_range(src, &in, dst, &out, (size_t)(hole - in), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
				/* No in-kernel copy between these files: through a buffer. */
				static __thread uint8_t buf[1 << 16];
				size_t want = (size_t)(hole - in) < sizeof(buf) ? (size_t)(hole - in) : sizeof(buf);
				int rc = pread_all(src, buf, want, in);
				if (!rc)
					rc = pwrite_all(dst, buf, want, out);
				if (rc)
					return rc;
				in += (off_t)want;
				out += (off_t)want;
				continue;
			}
			if (n < 0)
				return -errno;
			if (n == 0)
				return -EIO;
		}
		off = hole;
	}
	return 0;
}

/* ---- saving ------------------------------------------------------------------------------------ */

struct msr_list {
	uint32_t n;
	uint32_t *idx;
};

static int msr_list_get(int kvm_fd, struct msr_list *l)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	struct kvm_msr_list *full = calloc(1, sizeof(*full) + probe.nmsrs * sizeof(uint32_t));
	if (!full)
		return -ENOMEM;
	full->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, full) < 0) {
		int rc = -errno;
		free(full);
		return rc;
	}
	l->n = full->nmsrs;
	l->idx = malloc((l->n ? l->n : 1) * sizeof(uint32_t));
	if (!l->idx) {
		free(full);
		return -ENOMEM;
	}
	memcpy(l->idx, full->indices, l->n * sizeof(uint32_t));
	free(full);
	return 0;
}

/* Reads every listed MSR KVM will give; refused ones (a host without the feature) are left out. */
static int vcpu_msrs_get(struct vcpu *v, const struct msr_list *l, struct kvm_msr_entry **out, unsigned *nout)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + l->n * sizeof(struct kvm_msr_entry));
	struct kvm_msr_entry *res = calloc(l->n ? l->n : 1, sizeof(*res));
	if (!m || !res) {
		free(m);
		free(res);
		return -ENOMEM;
	}
	unsigned from = 0, n = 0;
	while (from < l->n) {
		m->nmsrs = l->n - from;
		for (unsigned i = from; i < l->n; i++)
			m->entries[i - from] = (struct kvm_msr_entry){ .index = l->idx[i] };
		int got = ioctl(v->fd, KVM_GET_MSRS, m);
		if (got < 0) {
			int rc = -errno;
			free(m);
			free(res);
			return rc;
		}
		memcpy(res + n, m->entries, (size_t)got * sizeof(*res));
		n += (unsigned)got;
		from += (unsigned)got + 1; /* skip the one KVM refused */
	}
	free(m);
	*out = res;
	*nout = n;
	return 0;
}

/*
 * The CPUID padcell gave the vCPU: vm->cpuid patched for it, as vcpu_init does.  Not
 * KVM_GET_CPUID2, which on PVM reports the host's CPUID rather than what was set.
 */
static int vcpu_cpuid_get(struct vm *vm, struct vcpu *v, struct kvm_cpuid2 **out)
{
	size_t size = sizeof(*vm->cpuid) + vm->cpuid->nent * sizeof(vm->cpuid->entries[0]);
	struct kvm_cpuid2 *c = malloc(size);
	if (!c)
		return -ENOMEM;
	memcpy(c, vm->cpuid, size);
	cpuid_patch_for_vcpu(c, v->index, vm->ncpus);
	*out = c;
	return 0;
}

/* Size of the XSAVE area KVM_GET_XSAVE(2) fills: 0 when KVM has no XSAVE state. */
static int xsave_size(int kvm_fd)
{
	int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (n > (int)sizeof(struct kvm_xsave))
		return n;
	return ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0 ? (int)sizeof(struct kvm_xsave) : 0;
}

#define GET(fd, req, arg, what)                                                                  \
	do {                                                                                     \
		if (ioctl(fd, req, arg) < 0)                                                     \
			return errorf(err, errlen, -errno, "%s failed: %s", what, strerror(errno));   \
	} while (0)

static int vcpu_save(struct vm *vm, struct vcpu *v, const struct msr_list *ml, struct snap_enc *e, char *err,
		     size_t errlen)
{
	unsigned i = v->index;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	GET(v->fd, KVM_GET_REGS, &regs, "KVM_GET_REGS");
	GET(v->fd, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	GET(v->fd, KVM_GET_FPU, &fpu, "KVM_GET_FPU");
	GET(v->fd, KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC");
	GET(v->fd, KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS");
	GET(v->fd, KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE");
	GET(v->fd, KVM_GET_DEBUGREGS, &dbg, "KVM_GET_DEBUGREGS");
	snap_enc_add(e, SNAP_SEC_REGS, i, &regs, sizeof(regs));
	snap_enc_add(e, SNAP_SEC_SREGS, i, &sregs, sizeof(sregs));
	snap_enc_add(e, SNAP_SEC_FPU, i, &fpu, sizeof(fpu));
	snap_enc_add(e, SNAP_SEC_LAPIC, i, &lapic, sizeof(lapic));
	snap_enc_add(e, SNAP_SEC_EVENTS, i, &events, sizeof(events));
	snap_enc_add(e, SNAP_SEC_MP_STATE, i, &mp, sizeof(mp));
	snap_enc_add(e, SNAP_SEC_DEBUGREGS, i, &dbg, sizeof(dbg));

	int xs = xsave_size(vm->kvm_fd);
	if (xs > 0) {
		void *buf = calloc(1, (size_t)xs);
		if (!buf)
			return errorf(err, errlen, -ENOMEM, "out of memory");
		int r = ioctl(v->fd, xs > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, buf);
		if (r == 0)
			snap_enc_add(e, SNAP_SEC_XSAVE, i, buf, (size_t)xs);
		free(buf);
		if (r < 0)
			return errorf(err, errlen, -errno, "KVM_GET_XSAVE failed: %s", strerror(errno));
	}
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0) {
		struct kvm_xcrs xcrs;
		GET(v->fd, KVM_GET_XCRS, &xcrs, "KVM_GET_XCRS");
		snap_enc_add(e, SNAP_SEC_XCRS, i, &xcrs, sizeof(xcrs));
	}
	struct kvm_msr_entry *msrs = NULL;
	unsigned nmsrs = 0;
	int rc = vcpu_msrs_get(v, ml, &msrs, &nmsrs);
	if (rc)
		return errorf(err, errlen, rc, "KVM_GET_MSRS failed: %s", strerror(-rc));
	snap_enc_add(e, SNAP_SEC_MSRS, i, msrs, nmsrs * sizeof(*msrs));
	free(msrs);
	struct kvm_cpuid2 *cpuid = NULL;
	if ((rc = vcpu_cpuid_get(vm, v, &cpuid)))
		return errorf(err, errlen, rc, "out of memory");
	snap_enc_add(e, SNAP_SEC_CPUID, i, cpuid->entries, cpuid->nent * sizeof(cpuid->entries[0]));
	free(cpuid);
	return 0;
}

static int machine_save(struct vm *vm, struct snap_enc *e, const char *state_path, char *err, size_t errlen)
{
	for (unsigned c = 0; c < 3; c++) {
		struct kvm_irqchip chip = { .chip_id = c };
		GET(vm->vm_fd, KVM_GET_IRQCHIP, &chip, "KVM_GET_IRQCHIP");
		snap_enc_add(e, SNAP_SEC_IRQCHIP, c, &chip, sizeof(chip));
	}
	struct kvm_pit_state2 pit;
	GET(vm->vm_fd, KVM_GET_PIT2, &pit, "KVM_GET_PIT2");
	snap_enc_add(e, SNAP_SEC_PIT2, 0, &pit, sizeof(pit));
	struct kvm_clock_data clock = { 0 };
	GET(vm->vm_fd, KVM_GET_CLOCK, &clock, "KVM_GET_CLOCK");
	snap_enc_add(e, SNAP_SEC_CLOCK, 0, &clock, sizeof(clock));

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
	base_of(state_path, base, sizeof(base));
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

/* crc32 over KVM's supported CPUID: equal on hosts whose KVM offers guests the same CPU. */
static uint32_t cpuid_crc(const struct kvm_cpuid2 *c)
{
	return c ? snap_crc32(0, c->entries, c->nent * sizeof(c->entries[0])) : 0;
}

/* A data file under a temporary name: `size` bytes from writer, then the trailer; fsync'ed. */
struct tmpfile {
	char tmp[4400];
	const char *final;
	bool made;
};

static int data_file_finish(int fd, const uint8_t id[SNAP_ID_BYTES], uint64_t size)
{
	uint8_t tr[SNAP_DATA_TRAILER];
	snap_trailer_make(tr, id, size);
	int rc = pwrite_all(fd, tr, sizeof(tr), (off_t)size);
	if (!rc && ftruncate(fd, (off_t)(size + SNAP_DATA_TRAILER)) < 0)
		rc = -errno;
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	return rc;
}

int snapshot_create(struct vm *vm, const char *state_path, const char *mem_path, char *err, size_t errlen)
{
	if (!vm_is_paused(vm))
		return errorf(err, errlen, -EBUSY, "the VM is running: pause it first");
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	struct tmpfile files[2 + LAYOUT_VIRTIO_MAX];
	unsigned nfiles = 0;
	struct snap_enc e = { 0 };
	struct msr_list ml = { 0 };
	int fd = -1, rc;
	char dir[4096];

	struct snap_header h = { .mem_size = vm->mem.size, .mem_file_size = vm->mem.size + SNAP_DATA_TRAILER,
				 .ncpus = vm->ncpus, .host_cpuid_crc = cpuid_crc(vm->cpuid),
				 .created_ns = now_ns(CLOCK_REALTIME) };
	if (getrandom(h.id, sizeof(h.id), 0) != sizeof(h.id))
		return errorf(err, errlen, -errno, "getrandom: %s", strerror(errno));
	if (vm->ncpus && vm->vcpus[0].fd >= 0) {
		int khz = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
		h.tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	}

	/* The machine state, in memory first: it is small, and a failure here writes nothing. */
	if ((rc = msr_list_get(vm->kvm_fd, &ml))) {
		errorf(err, errlen, rc, "KVM_GET_MSR_INDEX_LIST failed: %s", strerror(-rc));
		goto out;
	}
	snap_enc_init(&e, &h);
	for (unsigned i = 0; i < vm->ncpus; i++)
		if ((rc = vcpu_save(vm, &vm->vcpus[i], &ml, &e, err, errlen)))
			goto out;
	if ((rc = machine_save(vm, &e, state_path, err, errlen)))
		goto out;
	if ((rc = snap_enc_finish(&e))) {
		errorf(err, errlen, rc, "out of memory");
		goto out;
	}
	uint64_t t_state = now_ns(CLOCK_MONOTONIC);

	/* Memory. */
	struct tmpfile *mf = &files[nfiles];
	*mf = (struct tmpfile){ .final = mem_path };
	if ((fd = tmp_create(mem_path, mf->tmp, sizeof(mf->tmp))) < 0) {
		rc = errorf(err, errlen, fd, "cannot create a file beside '%s': %s", mem_path, strerror(-fd));
		goto out;
	}
	mf->made = true;
	nfiles++;
	if (ftruncate(fd, (off_t)vm->mem.size) < 0 ||
	    (errno = -write_sparse(fd, &vm->mem)) != 0 ||
	    (errno = -data_file_finish(fd, h.id, vm->mem.size)) != 0) {
		rc = errorf(err, errlen, -errno, "cannot write the memory file '%s': %s", mem_path, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	uint64_t t_mem = now_ns(CLOCK_MONOTONIC);

	/* Scratch disks: their contents are the guest's; a copy goes beside the state file. */
	dir_of(state_path, dir, sizeof(dir));
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct vm_virtio *d = &vm->virtio[i];
		if (!d->blk || !d->blk->disk->scratch)
			continue;
		/* The name machine_save recorded: "<state file's name>.disk<slot>", beside it. */
		char name[4400], base[256];
		base_of(state_path, base, sizeof(base));
		snprintf(name, sizeof(name), "%s/%s.disk%u", dir, base, i);
		struct tmpfile *df = &files[nfiles];
		*df = (struct tmpfile){ 0 };
		if ((fd = tmp_create(name, df->tmp, sizeof(df->tmp))) < 0) {
			rc = errorf(err, errlen, fd, "cannot create a file beside '%s': %s", state_path, strerror(-fd));
			goto out;
		}
		df->made = true;
		df->final = NULL;
		nfiles++;
		uint64_t size = d->blk->disk->size;
		if (ftruncate(fd, (off_t)size) < 0 || (errno = -copy_sparse(fd, d->blk->disk->fd, size)) != 0 ||
		    (errno = -data_file_finish(fd, h.id, size)) != 0) {
			rc = errorf(err, errlen, -errno, "cannot copy the scratch disk: %s", strerror(errno));
			goto out;
		}
		close(fd);
		fd = -1;
		df->final = strdup(name);
		if (!df->final) {
			rc = errorf(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
	}

	/* The state file. */
	struct tmpfile *sf = &files[nfiles];
	*sf = (struct tmpfile){ .final = state_path };
	if ((fd = tmp_create(state_path, sf->tmp, sizeof(sf->tmp))) < 0) {
		rc = errorf(err, errlen, fd, "cannot create a file beside '%s': %s", state_path, strerror(-fd));
		goto out;
	}
	sf->made = true;
	nfiles++;
	if ((errno = -pwrite_all(fd, e.buf, e.len, 0)) != 0 || fsync(fd) < 0) {
		rc = errorf(err, errlen, -errno, "cannot write the state file '%s': %s", state_path, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;

	/*
	 * Into place.  The old state goes first, so from here until the last rename there is no
	 * state file at all; the state, which makes a snapshot, comes last.  A kill or a full disk
	 * at any point leaves either no state file or a complete, matching set.
	 */
	if (unlink(state_path) < 0 && errno != ENOENT) {
		rc = errorf(err, errlen, -errno, "cannot replace '%s': %s", state_path, strerror(errno));
		goto out;
	}
	fsync_dir(dir);
	for (unsigned i = 0; i + 1 < nfiles; i++) {
		if (rename(files[i].tmp, files[i].final) < 0) {
			rc = errorf(err, errlen, -errno, "cannot rename into '%s': %s", files[i].final, strerror(errno));
			goto out;
		}
		files[i].made = false;
	}
	char mdir[4096];
	dir_of(mem_path, mdir, sizeof(mdir));
	fsync_dir(mdir);
	if (rename(sf->tmp, state_path) < 0) {
		rc = errorf(err, errlen, -errno, "cannot rename into '%s': %s", state_path, strerror(errno));
		goto out;
	}
	sf->made = false;
	if ((rc = fsync_dir(dir))) {
		errorf(err, errlen, rc, "cannot sync the directory of '%s': %s", state_path, strerror(-rc));
		goto out;
	}
	if (vm->verbose)
		fprintf(stderr, "padcell: snapshot written in %.1f ms (state %zu bytes %.1f ms, memory %.1f ms, rest %.1f ms)\n",
			(now_ns(CLOCK_MONOTONIC) - t0) / 1e6, e.len, (t_state - t0) / 1e6, (t_mem - t_state) / 1e6,
			(now_ns(CLOCK_MONOTONIC) - t_mem) / 1e6);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	for (unsigned i = 0; i < nfiles; i++) {
		if (files[i].made)
			unlink(files[i].tmp);
		if (files[i].final != mem_path && files[i].final != state_path)
			free((void *)files[i].final);
	}
	snap_enc_free(&e);
	free(ml.idx);
	return rc;
}

/* ---- restoring --------------------------------------------------------------------------------- */

/* Feature registers of the CPUID leaves that say what the guest may use. */
struct cpuid_feature {
	uint32_t function, index; /* index ~0u: any */
	uint8_t reg;              /* 0 eax, 1 ebx, 2 ecx, 3 edx */
	uint32_t ignore;          /* bits KVM or padcell set per vCPU or from the guest's own state */
	const char *name;
};

static const struct cpuid_feature cpuid_features[] = {
	/* OSXSAVE (ecx 27) follows the guest's CR4; hypervisor (ecx 31) and HTT (edx 28) are padcell's;
	 * APIC (edx 9) follows the guest's APIC base. */
	{ 1, ~0u, 2, (1u << 27) | (1u << 31), "1.ecx" },
	{ 1, ~0u, 3, (1u << 28) | (1u << 9), "1.edx" },
	{ 7, 0, 1, 0, "7.0.ebx" },
	{ 7, 0, 2, 1u << 4 /* OSPKE follows CR4 */, "7.0.ecx" },
	{ 7, 0, 3, 0, "7.0.edx" },
	{ 7, 1, 0, 0, "7.1.eax" },
	{ 0xd, 0, 0, 0, "0xd.0.eax (XCR0 components)" },
	{ 0xd, 1, 0, 0, "0xd.1.eax" },
	{ 0x80000001, ~0u, 2, 0, "0x80000001.ecx" },
	{ 0x80000001, ~0u, 3, 0, "0x80000001.edx" },
	{ 0x80000007, ~0u, 3, 0, "0x80000007.edx" },
};

static uint32_t cpuid_reg(const struct kvm_cpuid_entry2 *e, unsigned r)
{
	return r == 0 ? e->eax : r == 1 ? e->ebx : r == 2 ? e->ecx : e->edx;
}

static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid_entry2 *e, unsigned n, uint32_t fn,
						 uint32_t index)
{
	for (unsigned i = 0; i < n; i++)
		if (e[i].function == fn && (index == ~0u || e[i].index == index))
			return &e[i];
	return NULL;
}

/* The snapshot's guest must not find a CPU feature gone: same vendor, features a subset of the host's. */
static int cpuid_check(const struct kvm_cpuid2 *host, const struct kvm_cpuid_entry2 *snap, unsigned n, char *err,
		       size_t errlen)
{
	const struct kvm_cpuid_entry2 *sv = cpuid_find(snap, n, 0, ~0u), *hv = cpuid_find(host->entries, host->nent, 0, ~0u);
	if (sv && hv && (sv->ebx != hv->ebx || sv->ecx != hv->ecx || sv->edx != hv->edx)) {
		char a[13], b[13];
		memcpy(a, &sv->ebx, 4), memcpy(a + 4, &sv->edx, 4), memcpy(a + 8, &sv->ecx, 4), a[12] = 0;
		memcpy(b, &hv->ebx, 4), memcpy(b + 4, &hv->edx, 4), memcpy(b + 8, &hv->ecx, 4), b[12] = 0;
		return errorf(err, errlen, -EINVAL, "the snapshot was taken on a %s CPU; this host is %s", a, b);
	}
	for (unsigned i = 0; i < sizeof(cpuid_features) / sizeof(cpuid_features[0]); i++) {
		const struct cpuid_feature *f = &cpuid_features[i];
		const struct kvm_cpuid_entry2 *s = cpuid_find(snap, n, f->function, f->index);
		if (!s)
			continue;
		const struct kvm_cpuid_entry2 *h = cpuid_find(host->entries, host->nent, f->function, f->index);
		uint32_t missing = cpuid_reg(s, f->reg) & ~f->ignore & ~(h ? cpuid_reg(h, f->reg) : 0);
		if (missing)
			return errorf(err, errlen, -EINVAL,
				      "this host's KVM lacks CPU features the snapshot's guest may use (CPUID %s bits 0x%08x)",
				      f->name, missing);
	}
	return 0;
}

#define SET(fd, req, arg, what)                                                                  \
	do {                                                                                     \
		if (ioctl(fd, req, arg) < 0)                                                     \
			return errorf(err, errlen, -errno, "vCPU %u: %s failed: %s", v->index, what,   \
				      strerror(errno));                                              \
	} while (0)

/*
 * Order matters to KVM: CPUID before anything that depends on features; SREGS (with the APIC
 * base) before the LAPIC; MSRs after the LAPIC (the TSC deadline lives in it); events last.
 */
static int vcpu_load(struct vm *vm, struct vcpu *v, const struct snap_view *sv, uint32_t tsc_khz, char *err,
		     size_t errlen)
{
	unsigned i = v->index;
	uint64_t len;
	const struct kvm_cpuid_entry2 *ce = snap_find(sv, SNAP_SEC_CPUID, i, &len);
	unsigned n = (unsigned)(len / sizeof(*ce));
	int rc = cpuid_check(vm->cpuid, ce, n, err, errlen);
	if (rc)
		return rc;
	struct kvm_cpuid2 *c = malloc(sizeof(*c) + len);
	if (!c)
		return errorf(err, errlen, -ENOMEM, "out of memory");
	c->nent = n;
	c->padding = 0;
	memcpy(c->entries, ce, len);
	rc = ioctl(v->fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	free(c);
	if (rc)
		return errorf(err, errlen, rc, "vCPU %u: KVM_SET_CPUID2 failed: %s", i, strerror(-rc));
	if (tsc_khz) {
		int cur = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
		if (cur > 0 && (uint32_t)cur != tsc_khz && ioctl(v->fd, KVM_SET_TSC_KHZ, tsc_khz) < 0 && vm->verbose)
			fprintf(stderr, "padcell: vCPU %u: TSC runs at %d kHz here, %u kHz in the snapshot\n", i, cur,
				tsc_khz);
	}
	SET(v->fd, KVM_SET_MP_STATE, snap_find(sv, SNAP_SEC_MP_STATE, i, NULL), "KVM_SET_MP_STATE");
	SET(v->fd, KVM_SET_SREGS, snap_find(sv, SNAP_SEC_SREGS, i, NULL), "KVM_SET_SREGS");
	SET(v->fd, KVM_SET_REGS, snap_find(sv, SNAP_SEC_REGS, i, NULL), "KVM_SET_REGS");
	const void *xs = snap_find(sv, SNAP_SEC_XSAVE, i, &len);
	if (xs) {
		/* KVM_SET_XSAVE reads as much as the host's XSAVE area needs: never past what we have. */
		int need = xsave_size(vm->kvm_fd);
		if (need <= 0 || (uint64_t)need > len)
			return errorf(err, errlen, -EINVAL, "this host's KVM cannot take the snapshot's XSAVE state");
		void *buf = calloc(1, (size_t)need);
		if (!buf)
			return errorf(err, errlen, -ENOMEM, "out of memory");
		memcpy(buf, xs, (size_t)need);
		rc = ioctl(v->fd, KVM_SET_XSAVE, buf) < 0 ? -errno : 0;
		free(buf);
		if (rc)
			return errorf(err, errlen, rc, "vCPU %u: KVM_SET_XSAVE failed: %s", i, strerror(-rc));
	} else {
		SET(v->fd, KVM_SET_FPU, snap_find(sv, SNAP_SEC_FPU, i, NULL), "KVM_SET_FPU");
	}
	const void *xcrs = snap_find(sv, SNAP_SEC_XCRS, i, NULL);
	if (xcrs)
		SET(v->fd, KVM_SET_XCRS, xcrs, "KVM_SET_XCRS");
	SET(v->fd, KVM_SET_DEBUGREGS, snap_find(sv, SNAP_SEC_DEBUGREGS, i, NULL), "KVM_SET_DEBUGREGS");
	SET(v->fd, KVM_SET_LAPIC, snap_find(sv, SNAP_SEC_LAPIC, i, NULL), "KVM_SET_LAPIC");

	const struct kvm_msr_entry *me = snap_find(sv, SNAP_SEC_MSRS, i, &len);
	unsigned nm = (unsigned)(len / sizeof(*me));
	struct kvm_msrs *m = calloc(1, sizeof(*m) + len);
	if (!m)
		return errorf(err, errlen, -ENOMEM, "out of memory");
	unsigned from = 0;
	while (from < nm) {
		m->nmsrs = nm - from;
		memcpy(m->entries, me + from, (nm - from) * sizeof(*me));
		int done = ioctl(v->fd, KVM_SET_MSRS, m);
		if (done < 0) {
			rc = -errno;
			free(m);
			return errorf(err, errlen, rc, "vCPU %u: KVM_SET_MSRS failed: %s", i, strerror(-rc));
		}
		from += (unsigned)done;
		if (from < nm) {
			if (vm->verbose)
				fprintf(stderr, "padcell: vCPU %u: MSR 0x%x not settable here, left as KVM has it\n", i,
					me[from].index);
			from++;
		}
	}
	free(m);
	struct kvm_vcpu_events ev;
	memcpy(&ev, snap_find(sv, SNAP_SEC_EVENTS, i, NULL), sizeof(ev));
	/* Only the fields KVM_GET_VCPU_EVENTS said were valid. */
	ev.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW |
		    KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD;
	SET(v->fd, KVM_SET_VCPU_EVENTS, &ev, "KVM_SET_VCPU_EVENTS");
	return 0;
}
#undef SET

static int read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errorf(err, errlen, errno == ENOENT ? -EINVAL : -errno, "state file '%s': %s", path,
			      strerror(errno));
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = errorf(err, errlen, -errno, "state file '%s': %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = errorf(err, errlen, -EINVAL, "state file '%s': not a regular file", path);
	} else if (st.st_size > SNAP_MAX_SIZE) {
		rc = errorf(err, errlen, -EINVAL, "state file '%s': too large (%lld bytes) to be a padcell state file",
			    path, (long long)st.st_size);
	} else {
		*len = (size_t)st.st_size;
		*buf = malloc(*len ? *len : 1);
		if (!*buf)
			rc = errorf(err, errlen, -ENOMEM, "out of memory");
		else if ((rc = pread_all(fd, *buf, *len, 0)))
			rc = errorf(err, errlen, rc == -ENODATA ? -EINVAL : rc, "state file '%s': %s", path,
				    rc == -ENODATA ? "shrank while being read" : strerror(-rc));
		if (rc) {
			free(*buf);
			*buf = NULL;
		}
	}
	close(fd);
	return rc;
}

/* Opens a data file and checks it is `size` bytes of this snapshot's data plus its trailer. */
static int data_file_open(const char *path, const char *what, const uint8_t id[SNAP_ID_BYTES], uint64_t size,
			  char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errorf(err, errlen, errno == ENOENT ? -EINVAL : -errno, "%s '%s': %s", what, path,
			      strerror(errno));
	struct stat st;
	char why[160];
	uint8_t tr[SNAP_DATA_TRAILER];
	int rc;
	if (fstat(fd, &st) < 0) {
		rc = errorf(err, errlen, -errno, "%s '%s': %s", what, path, strerror(errno));
	} else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size + SNAP_DATA_TRAILER) {
		rc = errorf(err, errlen, -EINVAL, "%s '%s' is %lld bytes; the snapshot needs %llu", what, path,
			    (long long)st.st_size, (unsigned long long)(size + SNAP_DATA_TRAILER));
	} else if ((rc = pread_all(fd, tr, sizeof(tr), (off_t)size))) {
		rc = errorf(err, errlen, rc == -ENODATA ? -EINVAL : rc, "%s '%s': cannot read its trailer", what, path);
	} else if (snap_trailer_check(tr, id, size, why, sizeof(why))) {
		rc = errorf(err, errlen, -EINVAL, "%s '%s' %s", what, path, why);
	} else {
		return fd;
	}
	close(fd);
	return rc;
}

/* The snapshot's disks, reopened: --drive images by path, scratch disks as private copies. */
static int disks_restore(const struct snap_view *sv, const char *state_path, struct blk_disk *disks, unsigned *n,
			 char *err, size_t errlen)
{
	char dir[4096], why[256];
	dir_of(state_path, dir, sizeof(dir));
	*n = 0;
	int rc = 0;
	const struct snap_disk *sd;
	while (!rc && (sd = snap_find(sv, SNAP_SEC_DISK, *n, NULL))) {
		struct blk_disk *d = &disks[*n];
		if (sd->scratch) {
			char path[8200];
			snprintf(path, sizeof(path), "%s/%s", dir, sd->path);
			int src = data_file_open(path, "scratch-disk copy", sv->hdr->id, sd->size, err, errlen);
			if (src < 0)
				return src;
			rc = blk_disk_scratch(d, sd->size, why, sizeof(why));
			if (rc)
				errorf(err, errlen, rc, "scratch disk: %s", why);
			else if ((rc = copy_sparse(d->fd, src, sd->size)))
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

static int machine_load(struct vm *vm, const struct snap_view *sv, char *err, size_t errlen)
{
	for (unsigned c = 0; c < 3; c++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, snap_find(sv, SNAP_SEC_IRQCHIP, c, NULL)) < 0)
			return errorf(err, errlen, -errno, "KVM_SET_IRQCHIP failed: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, snap_find(sv, SNAP_SEC_PIT2, 0, NULL)) < 0)
		return errorf(err, errlen, -errno, "KVM_SET_PIT2 failed: %s", strerror(errno));
	/* Devices after the irqchip: the UART re-drives its interrupt line into it. */
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
	unsigned ndisks = 0;
	int mem_fd = -1;
	bool made = false;
	char why[256];
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;

	int rc = read_file(state_path, &buf, &len, err, errlen);
	if (rc)
		return rc;
	if ((rc = snap_decode(buf, len, &sv, why, sizeof(why))) || (rc = snap_check_machine(&sv, why, sizeof(why)))) {
		errorf(err, errlen, rc, "state file '%s': %s", state_path, why);
		goto fail;
	}
	const struct snap_header *h = sv.hdr;
	mem_fd = data_file_open(mem_path, "memory file", h->id, h->mem_size, err, errlen);
	if (mem_fd < 0) {
		rc = mem_fd;
		goto fail;
	}
	bool has_vsock = false;
	for (unsigned i = 0; i < sv.nsec; i++)
		has_vsock |= sv.sec[i].type == SNAP_SEC_VSOCK;
	if (has_vsock != (cfg->vsock_path != NULL)) {
		rc = errorf(err, errlen, -EINVAL, has_vsock ? "the snapshot's VM has a vsock device: give --vsock PATH"
							    : "the snapshot's VM has no vsock device: leave out --vsock");
		goto fail;
	}
	uint64_t t_read = now_ns(CLOCK_MONOTONIC);
	disks = calloc(LAYOUT_VIRTIO_MAX, sizeof(*disks));
	if (!disks) {
		rc = errorf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = disks_restore(&sv, state_path, disks, &ndisks, err, errlen)))
		goto fail;
	uint64_t t_disks = now_ns(CLOCK_MONOTONIC);

	struct vm_config c = *cfg;
	c.mem_size = h->mem_size;
	c.ncpus = h->ncpus;
	c.disks = disks;
	c.ndisks = ndisks;
	c.mem_fd = mem_fd;
	c.mem_from_file = true;
	if (has_vsock)
		c.vsock_cid = ((const struct virtio_vsock_state *)snap_find(&sv, SNAP_SEC_VSOCK, ndisks, NULL))->guest_cid;
	if ((rc = vm_create(vm, &c, err, errlen)))
		goto fail;
	made = true;
	vm->own_disks = disks;
	vm->own_ndisks = ndisks;
	disks = NULL;
	ndisks = 0;
	close(mem_fd);
	mem_fd = -1;
	uint64_t t_vm = now_ns(CLOCK_MONOTONIC);

	static const struct { int cap; const char *name; } caps[] = {
		{ KVM_CAP_VCPU_EVENTS, "vCPU events" }, { KVM_CAP_DEBUGREGS, "debug registers" },
		{ KVM_CAP_ADJUST_CLOCK, "clock setting" }, { KVM_CAP_MP_STATE, "MP state" },
	};
	for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
			rc = errorf(err, errlen, -EINVAL, "this host's KVM lacks a capability restoring needs: %s",
				    caps[i].name);
			goto fail;
		}
	}
	for (unsigned i = 0; i < h->ncpus; i++) {
		if (snap_find(&sv, SNAP_SEC_XCRS, i, NULL) && ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) <= 0) {
			rc = errorf(err, errlen, -EINVAL, "this host's KVM lacks a capability restoring needs: XCRS");
			goto fail;
		}
	}
	if ((rc = machine_load(vm, &sv, err, errlen)))
		goto fail;
	for (unsigned i = 0; i < h->ncpus; i++) {
		if ((rc = vcpu_create(vm, &vm->vcpus[i], i, err, errlen)) ||
		    (rc = vcpu_load(vm, &vm->vcpus[i], &sv, h->tsc_khz, err, errlen)))
			goto fail;
	}
	/*
	 * From now on the VM's CPUID is the snapshot's (vCPU 0's entries; the per-vCPU fields are
	 * patched again for each), so snapshotting this VM again saves what its vCPUs really have.
	 */
	uint64_t clen;
	const void *c0 = snap_find(&sv, SNAP_SEC_CPUID, 0, &clen);
	struct kvm_cpuid2 *own = malloc(sizeof(*own) + clen);
	if (!own) {
		rc = errorf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	own->nent = (uint32_t)(clen / sizeof(own->entries[0]));
	own->padding = 0;
	memcpy(own->entries, c0, clen);
	free(vm->cpuid);
	vm->cpuid = own;
	uint64_t t_vcpus = now_ns(CLOCK_MONOTONIC);
	/* kvmclock continues from the snapshot's time: the guest sees no jump in its monotonic clock. */
	struct kvm_clock_data clock;
	memcpy(&clock, snap_find(&sv, SNAP_SEC_CLOCK, 0, NULL), sizeof(clock));
	struct kvm_clock_data set = { .clock = clock.clock };
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &set) < 0) {
		rc = errorf(err, errlen, -errno, "KVM_SET_CLOCK failed: %s", strerror(errno));
		goto fail;
	}
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
	while (ndisks)
		blk_disk_close(&disks[--ndisks]);
	free(disks);
	snap_view_free(&sv);
	free(buf);
	return rc;
}
