/*
 * In-process KVM tests (after Linux's KVM selftests, x86/state_test.c): the library boots the
 * test guest (tg.case=count) on this host's /dev/kvm, pauses it at a known line of its console,
 * snapshots it, restores the snapshot into a second VM in the same process, compares the vCPU
 * registers and guest RAM of the two, then runs both and checks they print the same count.
 * Every wait is for an event (console output, a stopped vCPU); time limits are hang guards only.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/launch.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

/* Only a hang guard: how long any one awaited event may take on a loaded machine. */
#define HANG_GUARD_S 120

/* The guest counts far beyond what a test waits for, so it is always mid-count when paused. */
#define COUNT_STEPS "100000000"

/* ---- the guest's console: a pipe drained by a thread into a buffer -------------------------- */

/*
 * The vCPU writes each console byte to the pipe; the thread keeps the pipe empty, so a vCPU
 * never blocks on a full pipe (which would also block vm_pause).  Reads happen under the lock,
 * so console_drain() after vm_pause() leaves exactly the guest's output so far in buf.
 */
struct console {
	int rfd, wfd;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t grew;
	char *buf;
	size_t len, cap;
	bool eof;
};

/* Reads what the pipe holds into c->buf; the lock is held.  False at end of file. */
static bool console_read_locked(struct console *c)
{
	for (;;) {
		if (c->cap - c->len < 4096) {
			c->cap = c->cap ? c->cap * 2 : 1 << 16;
			c->buf = realloc(c->buf, c->cap + 1);
			cr_assert_not_null(c->buf);
		}
		ssize_t n = read(c->rfd, c->buf + c->len, c->cap - c->len);
		if (n > 0) {
			c->len += (size_t)n;
			c->buf[c->len] = '\0';
			continue;
		}
		if (n == 0)
			return false;
		return errno == EAGAIN || errno == EINTR;
	}
}

static void *console_thread(void *arg)
{
	struct console *c = arg;
	for (;;) {
		struct pollfd p = { .fd = c->rfd, .events = POLLIN };
		if (poll(&p, 1, -1) < 0)
			continue;
		pthread_mutex_lock(&c->lock);
		bool open = console_read_locked(c);
		c->eof = !open;
		pthread_cond_broadcast(&c->grew);
		pthread_mutex_unlock(&c->lock);
		if (!open)
			return NULL;
	}
}

static void console_open(struct console *c)
{
	memset(c, 0, sizeof(*c));
	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	c->rfd = p[0];
	c->wfd = p[1];
	cr_assert_eq(fcntl(c->rfd, F_SETFL, O_NONBLOCK), 0); /* the write end, the vCPU's, blocks */
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->grew, NULL);
	cr_assert_eq(pthread_create(&c->thread, NULL, console_thread, c), 0);
}

/* After the VM that wrote to it is gone: the thread sees end of file. */
static void console_close(struct console *c)
{
	close(c->wfd);
	pthread_join(c->thread, NULL);
	close(c->rfd);
	free(c->buf);
}

/* Everything written so far is in c->buf (the writer has stopped: the VM is paused). */
static void console_drain(struct console *c)
{
	pthread_mutex_lock(&c->lock);
	console_read_locked(c);
	pthread_mutex_unlock(&c->lock);
}

/* Waits until buf, from offset `from` on, contains `s`; returns the offset just past it. */
static size_t console_wait(struct console *c, size_t from, const char *s, struct vm *vm)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HANG_GUARD_S;
	pthread_mutex_lock(&c->lock);
	const char *hit;
	while (!(hit = c->buf && c->len >= from ? strstr(c->buf + from, s) : NULL)) {
		cr_assert_not(c->eof, "console closed before '%s'", s);
		cr_assert_eq(vm_status(vm), VM_RUNNING, "the VM stopped (%s) before printing '%s'; console:\n%s",
			     vm->stop_detail, s, c->buf ? c->buf : "");
		int rc = pthread_cond_timedwait(&c->grew, &c->lock, &until);
		cr_assert_neq(rc, ETIMEDOUT, "hang guard: no '%s' on the console in %d s; it printed:\n%.2000s", s,
			      HANG_GUARD_S, c->buf ? c->buf : "");
	}
	size_t end = (size_t)(hit - c->buf) + strlen(s);
	pthread_mutex_unlock(&c->lock);
	return end;
}

/* ---- VMs ------------------------------------------------------------------------------------- */

static void require_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		cr_skip_test("/dev/kvm cannot be opened (%s): no in-process KVM tests on this host", strerror(errno));
	close(fd);
}

/* build/guest/testguest.elf, beside build/tests/kvm-inproc, unless $GUEST names it. */
static const char *guest_path(void)
{
	static char path[4096];
	const char *env = getenv("GUEST");
	if (env)
		return env;
	char self[4000];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	snprintf(path, sizeof(path), "%s/../guest/testguest.elf", self);
	cr_assert_eq(access(path, R_OK), 0, "%s is not built (make testguest)", path);
	return path;
}

/* Boots the count guest through launch_boot(), like `padcell boot` does, and starts it. */
static void boot_count(struct launch *l, struct console *con, enum boot_entry entry, unsigned ncpus)
{
	static char cmdline[128];
	snprintf(cmdline, sizeof(cmdline), "tg.case=count tg.count=" COUNT_STEPS " tg.spin=100 tg.cpus=%u", ncpus);
	struct boot_opts o = { .kernel = guest_path(), .cmdline = cmdline, .mem = 64ULL << 20, .cpus = ncpus,
			       .entry = entry };
	char err[512];
	console_open(con);
	cr_assert_eq(launch_boot(l, &o, con->wfd, err, sizeof(err)), 0, "launch_boot: %s", err);
	cr_assert_eq(l->br.pvh, entry == BOOT_ENTRY_PVH, "the entry asked for");
	cr_assert_eq(vm_start(&l->vm), 0, "vm_start: %s", l->vm.stop_detail);
}

static void vm_pause_ok(struct vm *vm)
{
	char err[512];
	cr_assert_eq(vm_pause(vm, err, sizeof(err)), 0, "vm_pause: %s", err);
	cr_assert(vm_is_paused(vm));
}

/* Ends a started VM the way padcell does after its event loop: stop, kick, join. */
static void vm_stop_and_join(struct vm *vm)
{
	vm_request_stop(vm, VM_STOP_SIGNAL, "the test is done");
	vm_kick_all(vm);
	vm_join(vm);
}

/* A fresh directory for one snapshot; its files are removed by snap_dir_remove(). */
struct snap_dir {
	char dir[64], state[96], mem[96];
};

static void snap_dir_make(struct snap_dir *d)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/padcell-inproc-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(d->state, sizeof(d->state), "%s/state", d->dir);
	snprintf(d->mem, sizeof(d->mem), "%s/mem", d->dir);
}

static void snap_dir_remove(struct snap_dir *d)
{
	DIR *dh = opendir(d->dir);
	if (!dh)
		return;
	struct dirent *e;
	char p[512];
	while ((e = readdir(dh)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", d->dir, e->d_name);
			unlink(p);
		}
	closedir(dh);
	rmdir(d->dir);
}

static void restore_ok(struct vm *vm, struct console *con, const struct snap_dir *d)
{
	char err[512];
	console_open(con);
	struct vm_config cfg = { .console_out = con->wfd, .vsock_listen_fd = -1 };
	cr_assert_eq(vm_restore(vm, &cfg, d->state, d->mem, err, sizeof(err)), 0, "vm_restore: %s", err);
}

/* ---- comparing two VMs -------------------------------------------------------------------- */

static void compare_vcpus(struct vm *a, struct vm *b)
{
	cr_assert_eq(a->ncpus, b->ncpus, "vCPU count");
	for (unsigned i = 0; i < a->ncpus; i++) {
		int fa = a->vcpus[i].fd, fb = b->vcpus[i].fd;
		struct kvm_regs ra, rb;
		cr_assert_eq(ioctl(fa, KVM_GET_REGS, &ra), 0);
		cr_assert_eq(ioctl(fb, KVM_GET_REGS, &rb), 0);
		cr_assert_eq(ra.rip, rb.rip, "vCPU %u: RIP 0x%llx, restored 0x%llx", i, ra.rip, rb.rip);
		cr_assert_eq(ra.rsp, rb.rsp, "vCPU %u: RSP", i);
		cr_assert_eq(ra.rflags, rb.rflags, "vCPU %u: RFLAGS 0x%llx, restored 0x%llx", i, ra.rflags, rb.rflags);
		cr_assert_eq(memcmp(&ra, &rb, sizeof(ra)), 0, "vCPU %u: general registers differ", i);

		struct kvm_sregs sa, sb;
		cr_assert_eq(ioctl(fa, KVM_GET_SREGS, &sa), 0);
		cr_assert_eq(ioctl(fb, KVM_GET_SREGS, &sb), 0);
		cr_assert_eq(sa.cr0, sb.cr0, "vCPU %u: CR0", i);
		cr_assert_eq(sa.cr3, sb.cr3, "vCPU %u: CR3", i);
		cr_assert_eq(sa.cr4, sb.cr4, "vCPU %u: CR4", i);
		cr_assert_eq(sa.efer, sb.efer, "vCPU %u: EFER", i);
		cr_assert_eq(sa.apic_base, sb.apic_base, "vCPU %u: APIC base", i);
		cr_assert_eq(memcmp(&sa.cs, &sb.cs, sizeof(sa.cs)), 0, "vCPU %u: CS", i);
		cr_assert_eq(memcmp(&sa.gdt, &sb.gdt, sizeof(sa.gdt)), 0, "vCPU %u: GDTR", i);
		cr_assert_eq(memcmp(&sa, &sb, sizeof(sa)), 0, "vCPU %u: special registers differ", i);

		struct kvm_mp_state ma, mb;
		cr_assert_eq(ioctl(fa, KVM_GET_MP_STATE, &ma), 0);
		cr_assert_eq(ioctl(fb, KVM_GET_MP_STATE, &mb), 0);
		cr_assert_eq(ma.mp_state, mb.mp_state, "vCPU %u: MP state %u, restored %u", i, ma.mp_state, mb.mp_state);
	}
}

/* The count guest writes count n to word 0 of page n % 64 at 16 MiB (guest/testguest/count.c). */
#define COUNT_AREA  (16ULL << 20)
#define COUNT_PAGES 64

static uint64_t guest_count_max(const struct guest_mem *m)
{
	uint64_t max = 0;
	for (unsigned i = 0; i < COUNT_PAGES; i++) {
		uint64_t v;
		cr_assert_eq(gmem_read(m, COUNT_AREA + i * 4096ULL, &v, sizeof(v)), 0);
		if (v > max)
			max = v;
	}
	return max;
}

static void compare_memory(const struct guest_mem *a, const struct guest_mem *b)
{
	cr_assert_eq(a->size, b->size, "RAM size");
	cr_assert_eq(a->low_size, b->low_size);
	for (uint64_t off = 0; off < a->size; off += 4096)
		if (memcmp(a->host + off, b->host + off, 4096))
			cr_assert_fail("guest RAM differs at guest-physical 0x%llx (host offset)", (unsigned long long)off);
}

/* The last complete "COUNT n" line in buf[0, len); 0 if none. */
static uint64_t last_count(const char *buf, size_t len)
{
	uint64_t n = 0;
	const char *p = buf, *end = buf + len, *nl;
	for (; p < end && (nl = memchr(p, '\n', (size_t)(end - p))); p = nl + 1) {
		unsigned long v;
		if (sscanf(p, "COUNT %lu", &v) == 1)
			n = v;
	}
	return n;
}

/* From the first COUNT line on, every line is the next COUNT, up to and including "COUNT last". */
static void assert_counts_consecutive(const char *buf, uint64_t last)
{
	const char *p = strstr(buf, "COUNT 1\r\n");
	cr_assert_not_null(p, "no 'COUNT 1' line");
	for (uint64_t want = 1; want <= last; want++) {
		unsigned long v;
		cr_assert_eq(sscanf(p, "COUNT %lu", &v), 1, "line for count %llu: '%.40s'", (unsigned long long)want, p);
		cr_assert_eq(v, want, "count %lu where %llu was due", v, (unsigned long long)want);
		p = strchr(p, '\n');
		cr_assert_not_null(p);
		p++;
	}
}

/*
 * The whole round trip for one entry and vCPU count: boot, wait for COUNT 40, pause, snapshot,
 * restore into a second VM, compare, then run both and compare their next 100 counts.
 */
static void round_trip(enum boot_entry entry, unsigned ncpus)
{
	require_kvm();
	static struct launch l;
	static struct vm r;
	struct console ca, cb;
	struct snap_dir d;
	char err[512];

	boot_count(&l, &ca, entry, ncpus);
	console_wait(&ca, 0, "COUNT 40\r\n", &l.vm);
	vm_pause_ok(&l.vm);
	console_drain(&ca);
	size_t before = ca.len;
	uint64_t k = last_count(ca.buf, before);
	cr_assert_geq(k, 40);
	/* The memory holds the count the console shows (or the next one, written before printing). */
	uint64_t in_mem = guest_count_max(&l.vm.mem);
	cr_assert(in_mem == k || in_mem == k + 1, "guest memory holds count %llu, the console says %llu",
		  (unsigned long long)in_mem, (unsigned long long)k);

	snap_dir_make(&d);
	cr_assert_eq(snapshot_create(&l.vm, d.state, d.mem, err, sizeof(err)), 0, "snapshot_create: %s", err);
	cr_assert(vm_is_paused(&l.vm), "a snapshot leaves the VM paused");
	console_drain(&ca);
	cr_assert_eq(ca.len, before, "the guest printed while paused");

	restore_ok(&r, &cb, &d);
	compare_vcpus(&l.vm, &r);
	compare_memory(&l.vm.mem, &r.mem);
	cr_assert_eq(guest_count_max(&r.mem), in_mem);

	/* Both go on from the same state: the same bytes, and the count continues without a gap. */
	cr_assert_eq(vm_resume(&l.vm, err, sizeof(err)), 0, "vm_resume: %s", err);
	cr_assert_eq(vm_start(&r), 0, "vm_start of the restored VM: %s", r.stop_detail);
	char upto[32];
	snprintf(upto, sizeof(upto), "COUNT %llu\r\n", (unsigned long long)k + 100);
	size_t end_a = console_wait(&ca, before, upto, &l.vm);
	size_t end_b = console_wait(&cb, 0, upto, &r);
	vm_stop_and_join(&l.vm);
	vm_stop_and_join(&r);
	console_drain(&ca);
	console_drain(&cb);

	cr_assert_eq(end_a - before, end_b, "the restored VM printed %zu bytes up to '%s', the original %zu", end_b,
		     "COUNT k+100", end_a - before);
	cr_assert_eq(memcmp(ca.buf + before, cb.buf, end_b), 0,
		     "the restored VM's output differs from the original's after the snapshot:\n%.300s\n--\n%.300s",
		     ca.buf + before, cb.buf);
	/* The original's run before the snapshot plus the restored run: one unbroken count. */
	char *joined = malloc(before + end_b + 1);
	memcpy(joined, ca.buf, before);
	memcpy(joined + before, cb.buf, end_b);
	joined[before + end_b] = '\0';
	assert_counts_consecutive(joined, k + 100);
	free(joined);

	vm_destroy(&r);
	launch_teardown(&l);
	console_close(&ca);
	console_close(&cb);
	snap_dir_remove(&d);
}

TestSuite(inproc, .timeout = 2 * HANG_GUARD_S);

Test(inproc, linux64_1cpu_snapshot_restore_compare) { round_trip(BOOT_ENTRY_LINUX64, 1); }
Test(inproc, linux64_2cpu_snapshot_restore_compare) { round_trip(BOOT_ENTRY_LINUX64, 2); }
Test(inproc, pvh_1cpu_snapshot_restore_compare) { round_trip(BOOT_ENTRY_PVH, 1); }
Test(inproc, pvh_2cpu_snapshot_restore_compare) { round_trip(BOOT_ENTRY_PVH, 2); }

/* ---- snapshots that must not restore -------------------------------------------------------- */

static unsigned open_fds(void)
{
	unsigned n = 0;
	DIR *dh = opendir("/proc/self/fd");
	cr_assert_not_null(dh);
	while (readdir(dh))
		n++;
	closedir(dh);
	return n;
}

/* A good snapshot of a counting guest in d (the VM is gone again). */
static void good_snapshot(struct snap_dir *d)
{
	static struct launch l;
	struct console c;
	char err[512];
	boot_count(&l, &c, BOOT_ENTRY_LINUX64, 1);
	console_wait(&c, 0, "COUNT 5\r\n", &l.vm);
	vm_pause_ok(&l.vm);
	snap_dir_make(d);
	cr_assert_eq(snapshot_create(&l.vm, d->state, d->mem, err, sizeof(err)), 0, "snapshot_create: %s", err);
	vm_stop_and_join(&l.vm);
	launch_teardown(&l);
	console_close(&c);
}

static void copy_file(const char *from, const char *to, off_t size)
{
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(in >= 0 && out >= 0);
	static char buf[1 << 16];
	off_t done = 0;
	ssize_t n;
	while (done < size && (n = read(in, buf, sizeof(buf))) > 0) {
		if (n > size - done)
			n = (ssize_t)(size - done);
		cr_assert_eq(write(out, buf, (size_t)n), n);
		done += n;
	}
	close(in);
	close(out);
}

/* vm_restore must refuse state+mem with -EINVAL, say `why`, and leave nothing open. */
static void assert_refused(const char *state, const char *mem, const char *why)
{
	static struct vm vm;
	struct vm_config cfg = { .console_out = -1, .vsock_listen_fd = -1 };
	char err[512] = "";
	unsigned fds = open_fds();
	int rc = vm_restore(&vm, &cfg, state, mem, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "restore of %s + %s: %d (%s), not -EINVAL", state, mem, rc, err);
	cr_assert(strstr(err, why), "restore of %s + %s said '%s', not '%s'", state, mem, err, why);
	cr_assert_eq(open_fds(), fds, "a refused restore left descriptors open");
}

Test(inproc, corrupt_state_is_refused)
{
	require_kvm();
	struct snap_dir d;
	good_snapshot(&d);
	struct stat st;
	cr_assert_eq(stat(d.state, &st), 0);
	char bad[160];

	/* One flipped byte in the middle of the machine state: the checksum catches it. */
	snprintf(bad, sizeof(bad), "%s/flipped", d.dir);
	copy_file(d.state, bad, st.st_size);
	int fd = open(bad, O_RDWR);
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, st.st_size / 2), 1);
	b ^= 0x55;
	cr_assert_eq(pwrite(fd, &b, 1, st.st_size / 2), 1);
	close(fd);
	assert_refused(bad, d.mem, "checksum mismatch");

	/* Cut short. */
	snprintf(bad, sizeof(bad), "%s/short", d.dir);
	copy_file(d.state, bad, st.st_size / 3);
	assert_refused(bad, d.mem, "truncated");

	/* And the untouched files still restore (the refusals above were about the damage). */
	static struct vm vm;
	struct console c;
	restore_ok(&vm, &c, &d);
	vm_destroy(&vm);
	console_close(&c);
	snap_dir_remove(&d);
}

Test(inproc, memory_of_the_wrong_size_or_snapshot_is_refused)
{
	require_kvm();
	struct snap_dir a, b;
	good_snapshot(&a);
	good_snapshot(&b);
	assert_refused(a.state, b.mem, "belongs to another snapshot");
	char shortmem[160];
	snprintf(shortmem, sizeof(shortmem), "%s/mem-short", a.dir);
	struct stat st;
	cr_assert_eq(stat(a.mem, &st), 0);
	copy_file(a.mem, shortmem, st.st_size);
	cr_assert_eq(truncate(shortmem, st.st_size - 4096), 0);
	assert_refused(a.state, shortmem, "the snapshot needs");
	snap_dir_remove(&a);
	snap_dir_remove(&b);
}

/* ---- a console nobody reads ------------------------------------------------------------------ */

/*
 * The guest's console is a pipe whose reader never reads: once it is full, the UART keeps
 * output in its bounded ring and then drops the oldest, and the vCPU never blocks in write()
 * (it used to, holding the UART lock, so pause, stop and console input hung behind it).
 */
Test(inproc, console_nobody_reads_never_blocks_pause_or_stop)
{
	require_kvm();
	static struct launch l;
	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0); /* both ends blocking, as `padcell boot | less` has it */
	static char cmdline[128];
	snprintf(cmdline, sizeof(cmdline), "tg.case=count tg.count=" COUNT_STEPS " tg.spin=1 tg.cpus=1");
	struct boot_opts o = { .kernel = guest_path(), .cmdline = cmdline, .mem = 64ULL << 20, .cpus = 1,
			       .entry = BOOT_ENTRY_LINUX64 };
	char err[512];
	cr_assert_eq(launch_boot(&l, &o, p[1], err, sizeof(err)), 0, "launch_boot: %s", err);
	cr_assert_eq(vm_start(&l.vm), 0, "vm_start: %s", l.vm.stop_detail);
	/* Wait (an event, not a time) until the pipe and the ring are full and bytes are dropped. */
	for (unsigned i = 0; serial_out_dropped(l.vm.console) == 0; i++) {
		cr_assert_lt(i, HANG_GUARD_S * 100u, "hang guard: the guest's output was never dropped");
		cr_assert_eq(vm_status(&l.vm), VM_RUNNING, "the VM stopped: %s", l.vm.stop_detail);
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	cr_assert_leq(l.vm.console->out_len, SERIAL_OUT_BUF);
	vm_pause_ok(&l.vm);
	cr_assert_eq(serial_input(l.vm.console, (const uint8_t *)"x", 1), 1, "console input while output is stuck");
	cr_assert_eq(vm_resume(&l.vm, err, sizeof(err)), 0, "vm_resume: %s", err);
	uint64_t dropped = serial_out_dropped(l.vm.console);
	for (unsigned i = 0; serial_out_dropped(l.vm.console) == dropped; i++) {
		cr_assert_lt(i, HANG_GUARD_S * 100u, "hang guard: the resumed guest printed nothing");
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	vm_stop_and_join(&l.vm);
	/* The pipe's own flags were left alone: padcell wrote through a copy of its own. */
	cr_assert_eq(fcntl(p[1], F_GETFL) & O_NONBLOCK, 0);
	launch_teardown(&l);
	close(p[0]);
	close(p[1]);
}

/* ---- a snapshot's files are compared by inode, not by spelling ----------------------------- */

static unsigned dir_entries(const char *dir)
{
	unsigned n = 0;
	DIR *dh = opendir(dir);
	cr_assert_not_null(dh);
	struct dirent *e;
	while ((e = readdir(dh)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(dh);
	return n;
}

static void assert_snapshot_refused(struct vm *vm, const char *state, const char *mem, const char *why)
{
	char err[512] = "";
	int rc = snapshot_create(vm, state, mem, err, sizeof(err));
	cr_assert_eq(rc, -EINVAL, "snapshot to %s + %s: %d (%s), not -EINVAL", state, mem, rc, err);
	cr_assert(strstr(err, why), "snapshot to %s + %s said '%s', not '%s'", state, mem, err, why);
}

Test(inproc, snapshot_paths_compared_by_inode_and_special_files_refused)
{
	require_kvm();
	static struct launch l;
	struct console con;
	struct snap_dir d;
	snap_dir_make(&d);
	char drive[128], alias[160], copy[160], fifo[128], err[512];
	snprintf(drive, sizeof(drive), "%s/disk.img", d.dir);
	int fd = open(drive, O_RDWR | O_CREAT | O_EXCL, 0600);
	static uint8_t pattern[1 << 16];
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 7);
	cr_assert_eq(write(fd, pattern, sizeof(pattern)), (ssize_t)sizeof(pattern));
	close(fd);
	snprintf(fifo, sizeof(fifo), "%s/fifo", d.dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);

	static char cmdline[128];
	snprintf(cmdline, sizeof(cmdline), "tg.case=count tg.count=" COUNT_STEPS " tg.spin=100 tg.cpus=1");
	struct boot_opts o = { .kernel = guest_path(), .cmdline = cmdline, .mem = 64ULL << 20, .cpus = 1,
			       .entry = BOOT_ENTRY_LINUX64, .ndrives = 1, .scratch = 1 << 20 };
	o.drives[0] = (struct drive_opt){ .path = drive };
	console_open(&con);
	cr_assert_eq(launch_boot(&l, &o, con.wfd, err, sizeof(err)), 0, "launch_boot: %s", err);
	cr_assert_eq(vm_start(&l.vm), 0, "vm_start: %s", l.vm.stop_detail);
	console_wait(&con, 0, "COUNT 5\r\n", &l.vm);
	vm_pause_ok(&l.vm);

	/* The state file in another spelling, existing or not yet. */
	snprintf(alias, sizeof(alias), "%s//./state", d.dir);
	assert_snapshot_refused(&l.vm, d.state, alias, "the same file");
	/* The scratch disk's copy (slot 1: the drive is slot 0). */
	snprintf(copy, sizeof(copy), "%s/./state.disk1", d.dir);
	assert_snapshot_refused(&l.vm, d.state, copy, "scratch-disk copy");
	/* The VM's own drive, as memory or as state, in another spelling. */
	snprintf(alias, sizeof(alias), "%s//disk.img", d.dir);
	assert_snapshot_refused(&l.vm, d.state, alias, "the VM's own drives");
	assert_snapshot_refused(&l.vm, alias, d.mem, "the VM's own drives");
	/* A FIFO as either file. */
	assert_snapshot_refused(&l.vm, d.state, fifo, "FIFO");
	assert_snapshot_refused(&l.vm, fifo, d.mem, "FIFO");
	cr_assert_eq(dir_entries(d.dir), 2, "a refused snapshot left files behind");
	fd = open(drive, O_RDONLY);
	static uint8_t back[sizeof(pattern)];
	cr_assert_eq(read(fd, back, sizeof(back)), (ssize_t)sizeof(back));
	close(fd);
	cr_assert_eq(memcmp(back, pattern, sizeof(back)), 0, "the drive was overwritten");

	/* The right names still work, and a FIFO as the memory file of a restore is refused at once. */
	cr_assert_eq(snapshot_create(&l.vm, d.state, d.mem, err, sizeof(err)), 0, "snapshot_create: %s", err);
	vm_stop_and_join(&l.vm);
	launch_teardown(&l);
	console_close(&con);
	assert_refused(d.state, fifo, "FIFO");
	assert_refused(fifo, d.mem, "FIFO");
	snap_dir_remove(&d);
}

/* ---- a memory file truncated under a running clone ---------------------------------------- */

/*
 * The restored VM's RAM is its memory file, mapped copy-on-write: truncating the file takes the
 * pages it has not copied.  A touch from padcell (here the test thread, as a device would) gets
 * SIGBUS, and a vCPU gets EFAULT from KVM_RUN: either way the VM stops with a host error naming
 * the file (exit code 1), and the process lives on.
 */
Test(inproc, truncated_memory_file_stops_the_vm_with_a_clear_error)
{
	require_kvm();
	struct snap_dir d;
	good_snapshot(&d);
	static struct vm vm;
	struct console c;
	restore_ok(&vm, &c, &d);
	cr_assert_eq(vm_start(&vm), 0, "vm_start: %s", vm.stop_detail);
	console_wait(&c, 0, "COUNT", &vm);
	cr_assert_eq(truncate(d.mem, 0), 0);
	uint64_t v = 0;
	gmem_read(&vm.mem, 48ULL << 20, &v, sizeof(v)); /* never touched by the guest: from the file */
	for (unsigned i = 0; vm_status(&vm) == VM_RUNNING; i++) {
		cr_assert_lt(i, HANG_GUARD_S * 100u, "hang guard: the VM ran on over a truncated memory file");
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	cr_assert_eq(vm_status(&vm), VM_STOP_HOST_ERROR, "stopped as %d: %s", vm_status(&vm), vm.stop_detail);
	cr_assert(strstr(vm.stop_detail, d.mem) && strstr(vm.stop_detail, "truncated"), "%s", vm.stop_detail);
	cr_assert_eq(launch_exit_code(&vm), 1);
	vm_kick_all(&vm);
	vm_join(&vm);
	vm_destroy(&vm);
	console_close(&c);
	snap_dir_remove(&d);
}

/* ---- a writable drive comes back only as the file it was (issue 11, class 6) ------------------- */

/*
 * A snapshot of a VM with a writable drive: restored as it is; after the image was replaced by a
 * copy under the same name (another inode) refused, naming the way out; restored again with that
 * copy named by the user (restore --drive 0=PATH), and the restored VM runs on.
 */
Test(inproc, a_writable_drive_is_reopened_only_as_the_same_file)
{
	require_kvm();
	static struct launch l;
	struct console con;
	struct snap_dir d;
	snap_dir_make(&d);
	char drive[128], copy[160], err[512];
	snprintf(drive, sizeof(drive), "%s/disk.img", d.dir);
	int fd = open(drive, O_RDWR | O_CREAT | O_EXCL, 0600);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	static char cmdline[128];
	snprintf(cmdline, sizeof(cmdline), "tg.case=count tg.count=" COUNT_STEPS " tg.spin=100 tg.cpus=1");
	struct boot_opts o = { .kernel = guest_path(), .cmdline = cmdline, .mem = 64ULL << 20, .cpus = 1,
			       .entry = BOOT_ENTRY_LINUX64, .ndrives = 1 };
	o.drives[0] = (struct drive_opt){ .path = drive };
	console_open(&con);
	cr_assert_eq(launch_boot(&l, &o, con.wfd, err, sizeof(err)), 0, "launch_boot: %s", err);
	cr_assert_eq(vm_start(&l.vm), 0, "vm_start: %s", l.vm.stop_detail);
	console_wait(&con, 0, "COUNT 5\r\n", &l.vm);
	vm_pause_ok(&l.vm);
	cr_assert_eq(snapshot_create(&l.vm, d.state, d.mem, err, sizeof(err)), 0, "snapshot_create: %s", err);
	vm_stop_and_join(&l.vm);
	launch_teardown(&l);
	console_close(&con);

	/* the same file: restored */
	static struct vm vm;
	struct console c;
	restore_ok(&vm, &c, &d);
	vm_destroy(&vm);
	console_close(&c);

	/* a copy in its place: refused, in one line that names --drive */
	snprintf(copy, sizeof(copy), "%s/disk.copy", d.dir);
	copy_file(drive, copy, 1 << 20);
	cr_assert_eq(rename(copy, drive), 0);
	assert_refused(d.state, d.mem, "is not the file the snapshot was taken with");
	assert_refused(d.state, d.mem, "restore --drive 0=");

	/* named by the user: restored, and it runs */
	const char *drives[LAYOUT_VIRTIO_MAX] = { [0] = drive };
	console_open(&c);
	struct vm_config cfg = { .console_out = c.wfd, .vsock_listen_fd = -1, .restore_drives = drives };
	cr_assert_eq(vm_restore(&vm, &cfg, d.state, d.mem, err, sizeof(err)), 0, "vm_restore: %s", err);
	cr_assert_eq(vm_start(&vm), 0, "vm_start: %s", vm.stop_detail);
	console_wait(&c, 0, "COUNT", &vm);
	vm_stop_and_join(&vm);
	vm_destroy(&vm);
	console_close(&c);
	snap_dir_remove(&d);
}
