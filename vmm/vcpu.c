/* vCPUs: register state for the boot entry, the run loop and the exit table. */
#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/x86/layout.h"
#include "vmm/vm.h"
#include "vmm/jail/jail.h"

#define KICK_SIGNAL SIGUSR1

int vcpu_kick_signal(void)
{
	return KICK_SIGNAL;
}

#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL
#define CR0_NE 0x20ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

/* Architectural MSR numbers (Intel SDM vol. 4; the kernel keeps its list private). */
#define MSR_IA32_TSC            0x00000010
#define MSR_IA32_SYSENTER_CS    0x00000174
#define MSR_IA32_SYSENTER_ESP   0x00000175
#define MSR_IA32_SYSENTER_EIP   0x00000176
#define MSR_IA32_MISC_ENABLE    0x000001a0
#define MSR_MTRR_DEF_TYPE       0x000002ff
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MISC_ENABLE_FAST_STRING 0x1

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static struct kvm_segment seg_flat(uint16_t sel, uint8_t type, bool code64, bool db)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = db, .s = 1, .l = code64, .g = 1,
	};
}

static int vcpu_set_sregs(struct vcpu *v, const struct boot_result *boot)
{
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	struct kvm_segment data = seg_flat(BOOT_GDT_DATA, 0x3, false, true);
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.tr = (struct kvm_segment){ .selector = BOOT_GDT_TSS, .limit = 0xffff, .type = 0xb, .present = 1 };
	s.ldt = (struct kvm_segment){ .type = 0x2, .present = 1, .limit = 0xffff };
	s.gdt.base = LAYOUT_GDT_ADDR;
	s.gdt.limit = 5 * 8 - 1;
	s.idt.base = 0;
	s.idt.limit = 0;
	if (boot->pvh) {
		/* PVH: 32-bit protected mode, paging off (Xen's HVM direct-boot ABI). */
		s.cs = seg_flat(BOOT_GDT_CODE32, 0xb, false, true);
		s.cr0 = CR0_PE | CR0_ET;
		s.cr4 = 0;
		s.efer = 0;
	} else {
		/* Linux 64-bit boot protocol: long mode with our identity map. */
		s.cs = seg_flat(BOOT_GDT_CODE64, 0xb, true, false);
		s.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
		s.cr3 = LAYOUT_PML4_ADDR;
		s.cr4 = CR4_PAE;
		s.efer = EFER_LME | EFER_LMA;
	}
	return ioctl(v->fd, KVM_SET_SREGS, &s) < 0 ? -errno : 0;
}

static int vcpu_set_regs(struct vcpu *v, const struct boot_result *boot)
{
	struct kvm_regs r = { .rflags = 0x2, .rip = boot->entry };
	if (boot->pvh) {
		r.rbx = boot->boot_info;
	} else {
		r.rsi = boot->boot_info;
		r.rsp = r.rbp = LAYOUT_BOOT_STACK_TOP;
	}
	return ioctl(v->fd, KVM_SET_REGS, &r) < 0 ? -errno : 0;
}

/* MSR values a firmware would leave behind; MTRRs enabled with write-back default. */
static int vcpu_set_msrs(struct vcpu *v)
{
	static const struct { uint32_t index; uint64_t value; } boot_msrs[] = {
		{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 }, { MSR_IA32_SYSENTER_EIP, 0 },
		{ MSR_STAR, 0 }, { MSR_CSTAR, 0 }, { MSR_LSTAR, 0 }, { MSR_KERNEL_GS_BASE, 0 },
		{ MSR_SYSCALL_MASK, 0 }, { MSR_IA32_TSC, 0 },
		{ MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING },
		{ MSR_MTRR_DEF_TYPE, (1u << 11) | 0x6 },
	};
	enum { N = sizeof(boot_msrs) / sizeof(boot_msrs[0]) };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[N];
	} m;
	/*
	 * One ioctl for all of them.  KVM stops at the first MSR it refuses and returns
	 * how many it set; a host lacking one (PVM lacks some) still gets the rest.
	 */
	unsigned from = 0;
	while (from < N) {
		memset(&m, 0, sizeof(m));
		m.hdr.nmsrs = N - from;
		for (unsigned i = from; i < N; i++) {
			m.e[i - from].index = boot_msrs[i].index;
			m.e[i - from].data = boot_msrs[i].value;
		}
		int done = ioctl(v->fd, KVM_SET_MSRS, &m);
		if (done < 0)
			return -errno;
		from += (unsigned)done;
		if (from < N) {
			if (v->vm->verbose)
				fprintf(stderr, "padcell: vcpu%u: MSR 0x%x not settable here, left as KVM has it\n",
					v->index, boot_msrs[from].index);
			from++;
		}
	}
	return 0;
}

static int vcpu_set_fpu(struct vcpu *v)
{
	struct kvm_fpu f = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	return ioctl(v->fd, KVM_SET_FPU, &f) < 0 ? -errno : 0;
}

/* Virtual-wire mode as a BIOS leaves it: LINT0 delivers ExtINT, LINT1 delivers NMI. */
static int vcpu_set_lapic(struct vcpu *v)
{
	struct kvm_lapic_state l;
	if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0)
		return -errno;
	uint32_t lvt0, lvt1;
	memcpy(&lvt0, &l.regs[APIC_LVT0], 4);
	memcpy(&lvt1, &l.regs[APIC_LVT1], 4);
	lvt0 = (lvt0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
	lvt1 = (lvt1 & ~0x700u) | (APIC_MODE_NMI << 8);
	memcpy(&l.regs[APIC_LVT0], &lvt0, 4);
	memcpy(&l.regs[APIC_LVT1], &lvt1, 4);
	return ioctl(v->fd, KVM_SET_LAPIC, &l) < 0 ? -errno : 0;
}

int vcpu_create(struct vm *vm, struct vcpu *v, unsigned index, char *err, size_t errlen)
{
	v->vm = vm;
	v->index = index;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, index);
	if (v->fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "cannot create vCPU %u (KVM_CREATE_VCPU): %s", index, strerror(-rc));
		return rc;
	}
	v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		int rc = -errno;
		v->run = NULL;
		snprintf(err, errlen, "cannot create vCPU %u (mmap of kvm_run): %s", index, strerror(-rc));
		return rc;
	}
	return 0;
}

int vcpu_init(struct vm *vm, struct vcpu *v, unsigned index, const struct boot_result *boot,
	      char *err, size_t errlen)
{
	const char *what;
	int rc = vcpu_create(vm, v, index, err, errlen);
	if (rc)
		return rc;

	size_t csize = sizeof(*vm->cpuid) + vm->cpuid->nent * sizeof(vm->cpuid->entries[0]);
	struct kvm_cpuid2 *c = malloc(csize);
	if (!c) {
		rc = -ENOMEM;
		what = "CPUID";
		goto fail;
	}
	memcpy(c, vm->cpuid, csize);
	cpuid_patch_for_vcpu(c, index, vm->ncpus);
	rc = ioctl(v->fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	free(c);
	what = "KVM_SET_CPUID2";
	if (rc)
		goto fail;

	what = "MSRs";
	if ((rc = vcpu_set_msrs(v)))
		goto fail;
	what = "FPU";
	if ((rc = vcpu_set_fpu(v)))
		goto fail;
	what = "LAPIC";
	if ((rc = vcpu_set_lapic(v)))
		goto fail;
	/* Application processors wait for INIT/SIPI from the boot CPU (KVM's default). */
	if (index == 0) {
		what = "SREGS";
		if ((rc = vcpu_set_sregs(v, boot)))
			goto fail;
		what = "REGS";
		if ((rc = vcpu_set_regs(v, boot)))
			goto fail;
	}
	return 0;
fail:
	snprintf(err, errlen, "cannot set up vCPU %u (%s): %s", index, what, strerror(-rc));
	return rc;
}

/* ---- exits ---------------------------------------------------------------------------- */

enum vcpu_action { VCPU_CONTINUE, VCPU_STOP };
typedef enum vcpu_action (*exit_handler)(struct vcpu *v);

static uint64_t vcpu_rip(struct vcpu *v)
{
	struct kvm_regs r;
	return ioctl(v->fd, KVM_GET_REGS, &r) < 0 ? 0 : r.rip;
}

static enum vcpu_action exit_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t size = run->io.size, count = run->io.count;
	uint64_t off = run->io.data_offset;
	if ((size != 1 && size != 2 && size != 4) || off > (uint64_t)v->vm->run_size ||
	    (uint64_t)size * count > (uint64_t)v->vm->run_size - off) {
		vm_request_stop(v->vm, VM_STOP_HOST_ERROR, "KVM reported a malformed I/O exit");
		return VCPU_STOP;
	}
	uint8_t *data = (uint8_t *)run + off;
	for (uint32_t i = 0; i < count; i++, data += size) {
		if (run->io.direction == KVM_EXIT_IO_OUT)
			bus_write(&v->vm->pio, run->io.port, data, size);
		else
			bus_read(&v->vm->pio, run->io.port, data, size);
	}
	return VCPU_CONTINUE;
}

static enum vcpu_action exit_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len;
	if (len == 0 || len > sizeof(run->mmio.data))
		return VCPU_CONTINUE;
	if (run->mmio.is_write)
		bus_write(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
	else
		bus_read(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
	return VCPU_CONTINUE;
}

static enum vcpu_action exit_intr(struct vcpu *v)
{
	(void)v; /* a kick or a stray signal: the loop re-checks the VM status */
	return VCPU_CONTINUE;
}

static enum vcpu_action exit_shutdown(struct vcpu *v)
{
	vm_request_stop(v->vm, VM_STOP_CRASH, "vCPU %u triple fault (RIP 0x%llx)", v->index,
			(unsigned long long)vcpu_rip(v));
	return VCPU_STOP;
}

static enum vcpu_action exit_fail_entry(struct vcpu *v)
{
	vm_request_stop(v->vm, VM_STOP_CRASH, "vCPU %u failed VM entry (hardware reason 0x%llx)", v->index,
			(unsigned long long)v->run->fail_entry.hardware_entry_failure_reason);
	return VCPU_STOP;
}

static enum vcpu_action exit_internal_error(struct vcpu *v)
{
	vm_request_stop(v->vm, VM_STOP_CRASH, "vCPU %u KVM internal error (suberror %u, RIP 0x%llx)", v->index,
			v->run->internal.suberror, (unsigned long long)vcpu_rip(v));
	return VCPU_STOP;
}

static enum vcpu_action exit_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request_stop(v->vm, VM_STOP_POWEROFF, "guest powered off");
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request_stop(v->vm, VM_STOP_REBOOT, "guest requested a reset");
		break;
	case KVM_SYSTEM_EVENT_CRASH:
		vm_request_stop(v->vm, VM_STOP_PANIC, "guest reported a crash");
		break;
	default:
		vm_request_stop(v->vm, VM_STOP_CRASH, "vCPU %u unknown system event %u", v->index,
				v->run->system_event.type);
		break;
	}
	return VCPU_STOP;
}

/*
 * Parks the vCPU for vm_pause().  An I/O or MMIO exit is only finished (an IN's value in RAX,
 * RIP past the instruction) when KVM_RUN is entered again, so first re-enter with
 * immediate_exit set: KVM completes the instruction and returns EINTR without running the
 * guest.  Then the registers KVM reports are final, and the vCPU waits until resumed or stopped.
 */
static void vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (ioctl(v->fd, KVM_RUN, 0) == 0 && vm->verbose)
		fprintf(stderr, "padcell: vcpu%u: KVM_RUN ran despite immediate_exit (exit %u)\n", v->index,
			v->run->exit_reason);
	__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&vm->pause_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (atomic_load(&vm->pause_req) && vm_status(vm) == VM_RUNNING)
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->pause_lock);
}

static const exit_handler exit_handlers[] = {
	[KVM_EXIT_IO] = exit_io,
	[KVM_EXIT_MMIO] = exit_mmio,
	[KVM_EXIT_INTR] = exit_intr,
	[KVM_EXIT_SHUTDOWN] = exit_shutdown,
	[KVM_EXIT_FAIL_ENTRY] = exit_fail_entry,
	[KVM_EXIT_INTERNAL_ERROR] = exit_internal_error,
	[KVM_EXIT_SYSTEM_EVENT] = exit_system_event,
};

void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	jail_thread_begin(JAIL_VCPU, true); /* vCPUs start only once the process is confined */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (vm_status(vm) == VM_RUNNING) {
		if (atomic_load(&vm->pause_req)) {
			vcpu_park(v);
			continue;
		}
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				continue;
			}
			if (errno == EFAULT && vm->mem_file[0])
				/* KVM could not fault in guest RAM: the file it is mapped from lost pages. */
				vm_request_stop(vm, VM_STOP_HOST_ERROR,
						"the memory file '%.100s' was truncated or replaced under the VM: "
						"vCPU %u cannot run (KVM_RUN: %s)", vm->mem_file, v->index, strerror(EFAULT));
			else
				vm_request_stop(vm, VM_STOP_HOST_ERROR, "vCPU %u: KVM_RUN failed: %s", v->index,
						strerror(errno));
			break;
		}
		uint32_t reason = v->run->exit_reason;
		exit_handler h = reason < sizeof(exit_handlers) / sizeof(exit_handlers[0]) ? exit_handlers[reason]
											   : NULL;
		if (!h) {
			vm_request_stop(vm, VM_STOP_CRASH, "vCPU %u: unhandled KVM exit reason %u at RIP 0x%llx",
					v->index, reason, (unsigned long long)vcpu_rip(v));
			break;
		}
		if (h(v) == VCPU_STOP)
			break;
	}
	pthread_mutex_lock(&vm->pause_lock);
	vm->exited++;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	return NULL;
}
