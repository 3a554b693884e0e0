/* VM lifecycle: KVM setup, memory slots, devices on the buses, vCPU threads. */
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/x86/layout.h"
#include "vmm/jail/jail.h"

/* Real-mode helpers Intel VMX needs somewhere in guest-physical space; inside the MMIO gap. */
#define KVM_TSS_ADDR          0xfffbd000ULL
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL

/* A restored VM's memory file shorter than its RAM: the guest lost pages (it was truncated). */
static bool vm_mem_file_lost(struct vm *vm)
{
	struct stat st;
	return vm->mem_file[0] && vm->mem.from_file && vm->mem.file_fd >= 0 && fstat(vm->mem.file_fd, &st) == 0 &&
	       (uint64_t)st.st_size < vm->mem.size;
}

void vm_request_stop(struct vm *vm, enum vm_status why, const char *fmt, ...)
{
	/*
	 * A guest whose RAM file was truncated reads zeros where its page tables were and crashes
	 * (triple fault), or KVM_RUN fails: that is the host's doing, and the message names the file.
	 */
	if ((why == VM_STOP_CRASH || why == VM_STOP_HOST_ERROR) && vm_mem_file_lost(vm)) {
		int running = VM_RUNNING;
		if (atomic_compare_exchange_strong(&vm->status, &running, VM_STOP_HOST_ERROR)) {
			memcpy(vm->stop_detail, vm->mem_fault_detail, sizeof(vm->stop_detail));
			fmt = NULL;
			goto wake;
		}
		return;
	}
	int expected = VM_RUNNING;
	if (!atomic_compare_exchange_strong(&vm->status, &expected, why))
		return;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(vm->stop_detail, sizeof(vm->stop_detail), fmt, ap);
		va_end(ap);
	}
wake:;
	uint64_t one = 1;
	if (write(vm->stop_efd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow with one write per VM; nothing to do. */
	}
	/* Parked vCPUs wake up and leave their loops: a paused VM can always be stopped. */
	if (vm->pause_sync) {
		pthread_mutex_lock(&vm->pause_lock);
		pthread_cond_broadcast(&vm->pause_cond);
		pthread_mutex_unlock(&vm->pause_lock);
	}
}

int vm_irq_line(struct vm *vm, unsigned irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };
	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

static void devhost_set_irq(void *ctx, unsigned irq, int level)
{
	vm_irq_line(ctx, irq, level);
}

/* Virtio interrupts are edges: one irqfd write, or a pulse on the line without one. */
static void devhost_notify_irq(void *ctx, unsigned irq)
{
	struct vm *vm = ctx;
	uint64_t one = 1;
	if (irq < sizeof(vm->irqfd_by_gsi) / sizeof(vm->irqfd_by_gsi[0]) && vm->irqfd_by_gsi[irq] >= 0 &&
	    write(vm->irqfd_by_gsi[irq], &one, sizeof(one)) == sizeof(one))
		return;
	vm_irq_line(vm, irq, 1);
	vm_irq_line(vm, irq, 0);
}

static void devhost_event(void *ctx, enum dev_event ev)
{
	struct vm *vm = ctx;
	switch (ev) {
	case DEV_EVENT_POWEROFF:
		vm_request_stop(vm, VM_STOP_POWEROFF, "guest powered off");
		break;
	case DEV_EVENT_RESET:
		vm_request_stop(vm, VM_STOP_REBOOT, "guest requested a reset");
		break;
	case DEV_EVENT_PANIC:
		vm_request_stop(vm, VM_STOP_PANIC, "guest kernel panicked (pvpanic)");
		break;
	}
}

int vm_pio_add(struct vm *vm, uint64_t base, unsigned irq, dev_create_fn *create, const void *params,
	       char *err, size_t errlen)
{
	if (vm->ndevices >= VM_MAX_DEVICES)
		return errorf(err, errlen, -ENOSPC, "cannot register devices: %s", strerror(ENOSPC));
	struct device *d = &vm->devices[vm->ndevices];
	*d = (struct device){ .base = base, .irq = irq, .kick_fd = -1, .irqfd = -1 };
	int rc = create(d, &vm->mem, &vm->devhost, params);
	if (rc)
		return errorf(err, errlen, rc, "cannot register devices: %s", strerror(-rc));
	vm->ndevices++;
	rc = bus_register(&vm->pio, base, d->len, d->bus_ops, d->bus_opaque, d->ops->name);
	if (!rc && d->ops->start)
		rc = d->ops->start(d);
	if (rc)
		return errorf(err, errlen, rc, "cannot register devices: %s", strerror(-rc));
	return 0;
}

void vm_devices_destroy(struct vm *vm)
{
	jail_abort(); /* device threads held at the jail's gate go on, to stop */
	while (vm->ndevices) {
		struct device *d = &vm->devices[--vm->ndevices];
		d->ops->destroy(d);
		if (d->irqfd >= 0)
			close(d->irqfd);
		*d = (struct device){ .kick_fd = -1, .irqfd = -1 };
	}
	vm->nvirtio = 0;
	vm->console = NULL;
	for (unsigned i = 0; i < sizeof(vm->irqfd_by_gsi) / sizeof(vm->irqfd_by_gsi[0]); i++)
		vm->irqfd_by_gsi[i] = -1;
}

static int vm_set_memslot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)host,
	};
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

static void vm_guard_mem_file(struct vm *vm, const char *path);

int vm_create(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen)
{
	int rc;
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	vm->ncpus = cfg->ncpus;
	vm->verbose = cfg->verbose;
	atomic_init(&vm->status, VM_RUNNING);
	atomic_init(&vm->pause_req, false);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	vm->pause_sync = true;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			return errorf(err, errlen, rc, "/dev/kvm does not exist: KVM is not available on this host (see `padcell check`)");
		return errorf(err, errlen, rc, "cannot open /dev/kvm: %s (see `padcell check`)", strerror(-rc));
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		rc = errorf(err, errlen, -ENOTSUP, "/dev/kvm speaks an unknown KVM API version");
		goto err_kvm;
	}
	static const struct { int cap; const char *name; } required[] = {
		{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
		{ KVM_CAP_USER_MEMORY, "user memory slots" },
		{ KVM_CAP_PIT2, "in-kernel PIT" },
		{ KVM_CAP_IMMEDIATE_EXIT, "immediate exit" },
		{ KVM_CAP_EXT_CPUID, "extended CPUID" },
	};
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required[i].cap) <= 0) {
			rc = errorf(err, errlen, -ENOTSUP, "KVM lacks a required capability: %s", required[i].name);
			goto err_kvm;
		}
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size < (int)sizeof(struct kvm_run)) {
		rc = errorf(err, errlen, -ENOTSUP, "KVM_GET_VCPU_MMAP_SIZE failed");
		goto err_kvm;
	}
	vm->cpuid = cpuid_supported(vm->kvm_fd);
	if (!vm->cpuid) {
		rc = errorf(err, errlen, -ENOTSUP, "KVM_GET_SUPPORTED_CPUID failed");
		goto err_kvm;
	}

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		rc = errorf(err, errlen, -errno, "KVM_CREATE_VM failed: %s", strerror(errno));
		goto err_cpuid;
	}
	/*
	 * Memory slots go in before the irqchip and PIT: once those have registered
	 * their I/O buses, installing the first slot waits out an SRCU grace period
	 * (measured: 6-8 ms instead of 0.1 ms), which would dominate start-up.
	 */
	rc = cfg->mem_from_file ? gmem_init_file(&vm->mem, cfg->mem_size, cfg->mem_fd) : gmem_init(&vm->mem, cfg->mem_size);
	if (rc) {
		errorf(err, errlen, rc, "cannot allocate %llu MiB of guest memory: %s",
		       (unsigned long long)(cfg->mem_size >> 20), strerror(-rc));
		goto err_vm;
	}
	if (cfg->mem_from_file)
		vm_guard_mem_file(vm, cfg->mem_path ? cfg->mem_path : "(the snapshot's)");
	rc = vm_set_memslot(vm, 0, 0, vm->mem.low_size, vm->mem.host);
	if (!rc && gmem_high_size(&vm->mem))
		rc = vm_set_memslot(vm, 1, LAYOUT_MMIO_GAP_END, gmem_high_size(&vm->mem),
				    vm->mem.host + vm->mem.low_size);
	if (rc) {
		errorf(err, errlen, rc, "KVM_SET_USER_MEMORY_REGION failed: %s", strerror(-rc));
		goto err_mem;
	}

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ KVM_IDENTITY_MAP_ADDR }) < 0) {
		rc = errorf(err, errlen, -errno, "cannot place KVM's real-mode TSS: %s", strerror(errno));
		goto err_mem;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		rc = errorf(err, errlen, -errno, "KVM_CREATE_IRQCHIP failed: %s", strerror(errno));
		goto err_mem;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		rc = errorf(err, errlen, -errno, "KVM_CREATE_PIT2 failed: %s", strerror(errno));
		goto err_mem;
	}

	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0) {
		rc = errorf(err, errlen, -errno, "eventfd: %s", strerror(errno));
		goto err_mem;
	}
	vm->devhost = (struct dev_host){ .set_irq = devhost_set_irq, .event = devhost_event, .ctx = vm,
					 .notify_irq = devhost_notify_irq };
	bus_init(&vm->pio);
	bus_init(&vm->mmio);
	for (unsigned i = 0; i < sizeof(vm->irqfd_by_gsi) / sizeof(vm->irqfd_by_gsi[0]); i++)
		vm->irqfd_by_gsi[i] = -1;
	rc = vm_devices_add(vm, cfg, err, errlen);
	if (rc)
		goto err_devices;
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		rc = errorf(err, errlen, -ENOMEM, "out of memory");
		goto err_devices;
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		vm->vcpus[i].fd = -1;
	return 0;

err_devices:
	vm_devices_destroy(vm);
	close(vm->stop_efd);
err_mem:
	gmem_destroy(&vm->mem);
err_vm:
	close(vm->vm_fd);
err_cpuid:
	free(vm->cpuid);
err_kvm:
	close(vm->kvm_fd);
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	vm->cpuid = NULL;
	pthread_mutex_destroy(&vm->pause_lock);
	pthread_cond_destroy(&vm->pause_cond);
	vm->pause_sync = false;
	return rc;
}

int vm_setup_vcpus(struct vm *vm, const struct boot_result *boot, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		int rc = vcpu_init(vm, &vm->vcpus[i], i, boot, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

static void kick_handler(int sig)
{
	(void)sig; /* only here so the signal interrupts KVM_RUN instead of killing us */
}

int vm_start(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	sigemptyset(&sa.sa_mask);
	sigaction(vcpu_kick_signal(), &sa, NULL);
	/*
	 * vCPU threads need little stack.  A small one also keeps a host with
	 * transparent huge pages set to "always" from backing each 8 MiB default
	 * stack with a 2 MiB page (measured: +2 MiB resident per thread).
	 */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VM_THREAD_STACK);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		int rc = pthread_create(&vm->vcpus[i].thread, &attr, vcpu_thread, &vm->vcpus[i]);
		if (rc) {
			vm_request_stop(vm, VM_STOP_HOST_ERROR, "cannot start vCPU thread: %s", strerror(rc));
			pthread_attr_destroy(&attr);
			return -rc;
		}
		vm->vcpus[i].started = true;
	}
	pthread_attr_destroy(&attr);
	return 0;
}

/*
 * A memory file truncated under a restored VM: its pages are gone, and a touch from padcell (a
 * device reading a ring, a snapshot reading RAM) raises SIGBUS.  The handler, process-wide as
 * signal handlers are, maps a zero page over the faulting page so the access completes, and
 * stops the VM with a host error naming the file; the guest never runs on.  Faults outside guest
 * RAM keep the default action.  One guarded VM per process (padcell runs one VM per process).
 */
static struct vm *_Atomic sigbus_vm;

static void vm_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	struct vm *vm = atomic_load(&sigbus_vm);
	uint8_t *a = si->si_addr;
	if (!vm || !vm->mem.host || a < vm->mem.host || a >= vm->mem.host + vm->mem.size) {
		signal(sig, SIG_DFL); /* not ours: the retried access dies as it would have */
		return;
	}
	void *page = (void *)((uintptr_t)a & ~(uintptr_t)4095);
	mmap(page, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	int expected = VM_RUNNING;
	if (atomic_compare_exchange_strong(&vm->status, &expected, VM_STOP_HOST_ERROR)) {
		memcpy(vm->stop_detail, vm->mem_fault_detail, sizeof(vm->stop_detail));
		uint64_t one = 1;
		if (write(vm->stop_efd, &one, sizeof(one)) < 0) {
			/* nothing to do in a handler */
		}
	}
}

static void vm_guard_mem_file(struct vm *vm, const char *path)
{
	snprintf(vm->mem_file, sizeof(vm->mem_file), "%s", path);
	snprintf(vm->mem_fault_detail, sizeof(vm->mem_fault_detail),
		 "the memory file '%.80s' was truncated or replaced under the VM: its pages are gone", path);
	struct sigaction sa = { .sa_sigaction = vm_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };
	sigemptyset(&sa.sa_mask);
	atomic_store(&sigbus_vm, vm);
	sigaction(SIGBUS, &sa, NULL);
}

void vm_kick_all(struct vm *vm)
{
	/* A stop that came from a signal handler could not wake parked vCPUs: do it here. */
	if (vm->pause_sync && vm_status(vm) != VM_RUNNING) {
		pthread_mutex_lock(&vm->pause_lock);
		pthread_cond_broadcast(&vm->pause_cond);
		pthread_mutex_unlock(&vm->pause_lock);
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (!v->started)
			continue;
		if (v->run)
			__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		pthread_kill(v->thread, vcpu_kick_signal());
	}
}

/* ---- pause and resume ----------------------------------------------------------------- */

/* Device threads stop with no request in flight; their queue state stays in the transports. */
static void vm_devices_pause(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ndevices; i++) {
		struct device *d = &vm->devices[i];
		if (d->ops->pause)
			d->ops->pause(d);
	}
}

static int vm_devices_resume(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ndevices; i++) {
		struct device *d = &vm->devices[i];
		int rc = d->ops->resume ? d->ops->resume(d) : 0;
		if (rc)
			return rc;
	}
	return 0;
}

static unsigned vm_threads_started(struct vm *vm)
{
	unsigned n = 0;
	for (unsigned i = 0; i < vm->ncpus; i++)
		n += vm->vcpus && vm->vcpus[i].started;
	return n;
}

int vm_pause(struct vm *vm, char *err, size_t errlen)
{
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->paused) {
		pthread_mutex_unlock(&vm->pause_lock);
		return 0;
	}
	if (vm_status(vm) != VM_RUNNING) {
		pthread_mutex_unlock(&vm->pause_lock);
		return errorf(err, errlen, -ESHUTDOWN, "the VM is shutting down");
	}
	atomic_store(&vm->pause_req, true);
	pthread_mutex_unlock(&vm->pause_lock);

	/* pause_req is visible before immediate_exit: a vCPU that clears the latter sees the former. */
	vm_kick_all(vm);
	unsigned started = vm_threads_started(vm);
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->parked + vm->exited < started && vm_status(vm) == VM_RUNNING)
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
	if (vm_status(vm) != VM_RUNNING) {
		atomic_store(&vm->pause_req, false);
		return errorf(err, errlen, -ESHUTDOWN, "the VM stopped while pausing: %s",
			      vm->stop_detail[0] ? vm->stop_detail : "stopped");
	}
	vm_devices_pause(vm);
	pthread_mutex_lock(&vm->pause_lock);
	vm->paused = true;
	pthread_mutex_unlock(&vm->pause_lock);
	if (vm->verbose)
		fprintf(stderr, "padcell: VM paused\n");
	return 0;
}

int vm_resume(struct vm *vm, char *err, size_t errlen)
{
	pthread_mutex_lock(&vm->pause_lock);
	bool paused = vm->paused;
	pthread_mutex_unlock(&vm->pause_lock);
	if (!paused)
		return 0;
	if (vm_status(vm) != VM_RUNNING)
		return errorf(err, errlen, -ESHUTDOWN, "the VM is shutting down");
	int rc = vm_devices_resume(vm);
	if (rc)
		return errorf(err, errlen, rc, "cannot restart the device threads: %s", strerror(-rc));
	pthread_mutex_lock(&vm->pause_lock);
	vm->paused = false;
	atomic_store(&vm->pause_req, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	if (vm->verbose)
		fprintf(stderr, "padcell: VM resumed\n");
	return 0;
}

bool vm_is_paused(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	bool p = vm->paused;
	pthread_mutex_unlock(&vm->pause_lock);
	return p;
}

void vm_join(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].started = false;
		}
	}
}

void vm_destroy(struct vm *vm)
{
	struct vm *self = vm;
	atomic_compare_exchange_strong(&sigbus_vm, &self, NULL);
	/* Device workers write guest memory: stop them before it goes. */
	vm_devices_destroy(vm);
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->ncpus; i++) {
			struct vcpu *v = &vm->vcpus[i];
			if (v->run)
				munmap(v->run, vm->run_size);
			if (v->fd >= 0)
				close(v->fd);
		}
		free(vm->vcpus);
		vm->vcpus = NULL;
	}
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	gmem_destroy(&vm->mem);
	/* After the devices: their workers did I/O on these. */
	while (vm->own_ndisks)
		blk_disk_close(&vm->own_disks[--vm->own_ndisks]);
	free(vm->own_disks);
	vm->own_disks = NULL;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm->cpuid);
	vm->cpuid = NULL;
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	if (vm->pause_sync) {
		pthread_mutex_destroy(&vm->pause_lock);
		pthread_cond_destroy(&vm->pause_cond);
		vm->pause_sync = false;
	}
}
