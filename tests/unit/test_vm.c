/* The KVM-free parts of the VM handle: per-vCPU CPUID topology and the first-stop-wins rule. */
#include <criterion/criterion.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/vm.h"

/* A CPUID table shaped like KVM_GET_SUPPORTED_CPUID's, filled with host-like junk. */
static struct kvm_cpuid2 *fake_cpuid(void)
{
	static const struct { uint32_t fn, idx; } leaves[] = {
		{ 0, 0 }, { 1, 0 }, { 4, 0 }, { 4, 1 }, { 4, 2 }, { 4, 3 }, { 4, 4 },
		{ 0xb, 0 }, { 0xb, 1 }, { 0xb, 2 }, { 0x1f, 0 }, { 0x1f, 1 }, { 0x1f, 2 },
		{ 0x80000008, 0 },
	};
	size_t n = sizeof(leaves) / sizeof(leaves[0]);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
	c->nent = n;
	for (size_t i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		e->function = leaves[i].fn;
		e->index = leaves[i].idx;
		e->eax = e->ebx = e->ecx = e->edx = 0xdeadbeef; /* the host's values */
		if (e->function == 1) {
			e->eax = 0x000806f8;
			e->ebx = 0x12340800 | 0x00ff0000; /* brand 0x00, clflush 8, host APIC ID 0x12 */
			e->ecx = 0x7ffafbff;
			e->edx = 0xbfebfbff;
		}
		if (e->function == 4)
			e->eax = e->index < 4 ? (0x3c000000 | 0x01c00000 | (e->index + 1)) : 0; /* type != 0 */
		if (e->function == 0x80000008)
			e->ecx = 0x0000f0ff | 0x00010000;
	}
	return c;
}

static struct kvm_cpuid_entry2 *leaf(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	cr_assert_fail("leaf 0x%x.%u missing", fn, idx);
	return NULL;
}

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

static void check_topology(unsigned index, unsigned ncpus)
{
	struct kvm_cpuid2 *c = fake_cpuid();
	cpuid_patch_for_vcpu(c, index, ncpus);

	struct kvm_cpuid_entry2 *l1 = leaf(c, 1, 0);
	cr_assert_eq(l1->ebx >> 24, index, "leaf 1: initial APIC ID");
	cr_assert_eq((l1->ebx >> 16) & 0xff, ncpus, "leaf 1: logical processor count");
	cr_assert_eq(l1->ebx & 0xffff, 0x0800, "leaf 1: brand/clflush kept");
	cr_assert_eq(!!(l1->edx & (1u << 28)), ncpus > 1, "leaf 1: HTT only with more than one CPU");
	cr_assert(l1->ecx & (1u << 31), "leaf 1: hypervisor bit");
	cr_assert_eq(l1->eax, 0x000806f8, "leaf 1: signature untouched");

	for (uint32_t s = 0; s < 4; s++) {
		uint32_t eax = leaf(c, 4, s)->eax;
		cr_assert_eq(eax & 0x1f, s + 1, "leaf 4.%u: cache type kept", s);
		cr_assert_eq((eax >> 14) & 0xfff, 0, "leaf 4.%u: one thread per cache", s);
		unsigned cores = (eax >> 26) + 1;
		if (ncpus <= 64)
			cr_assert_geq(cores, ncpus, "leaf 4.%u: cores per package", s);
	}
	cr_assert_eq(leaf(c, 4, 4)->eax, 0, "leaf 4: the terminating subleaf stays empty");

	uint32_t fns[] = { 0xb, 0x1f };
	for (int f = 0; f < 2; f++) {
		struct kvm_cpuid_entry2 *smt = leaf(c, fns[f], 0), *core = leaf(c, fns[f], 1), *end = leaf(c, fns[f], 2);
		cr_assert_eq(smt->edx, index, "0x%x: x2APIC ID", fns[f]);
		cr_assert_eq(core->edx, index);
		cr_assert_eq(end->edx, index);
		cr_assert_eq(smt->eax & 0x1f, 0, "SMT level: no thread bits");
		cr_assert_eq(smt->ebx & 0xffff, 1, "SMT level: one thread");
		cr_assert_eq((smt->ecx >> 8) & 0xff, 1, "SMT level type");
		cr_assert_eq(smt->ecx & 0xff, 0);
		cr_assert_eq(core->eax & 0x1f, bits_for(ncpus), "core level: APIC ID shift");
		cr_assert_eq(core->ebx & 0xffff, ncpus, "core level: logical processors");
		cr_assert_eq((core->ecx >> 8) & 0xff, 2, "core level type");
		cr_assert_eq(core->ecx & 0xff, 1);
		cr_assert_eq((end->ecx >> 8) & 0xff, 0, "level 2 is invalid: the enumeration ends");
		cr_assert_eq(end->ecx & 0xff, 2);
		cr_assert_eq(end->ebx, 0);
	}

	uint32_t ecx = leaf(c, 0x80000008, 0)->ecx;
	cr_assert_eq((ecx & 0xff) + 1, ncpus, "0x80000008: NC + 1 = cores");
	cr_assert_eq((ecx >> 12) & 0xf, bits_for(ncpus), "0x80000008: ApicIdCoreIdSize");
	cr_assert_eq(ecx & 0xffff0000, 0x00010000, "0x80000008: other fields kept");
	free(c);
}

Test(cpuid, one_cpu) { check_topology(0, 1); }
Test(cpuid, two_cpus) { check_topology(0, 2); check_topology(1, 2); }
Test(cpuid, five_cpus) { check_topology(4, 5); }
Test(cpuid, sixty_four_cpus) { check_topology(63, 64); }
Test(cpuid, max_cpus) { check_topology(0, 254); check_topology(253, 254); }

/*
 * Regression (found by this test, fixed in 92fa704), vmm/x86/cpuid.c cpuid_patch_for_vcpu(), case 4:
 * EAX[31:26] ("addressable core IDs in the package - 1") is six bits, and
 * `((ncpus - 1) & 0x3f) << 26` wrapped for more than 64 vCPUs: 100 vCPUs read as 36
 * cores, 65 as 1, contradicting leaves 0xb/0x1f.
 */
Test(cpuid, regression_leaf4_core_field_saturates)
{
	struct kvm_cpuid2 *c = fake_cpuid();
	cpuid_patch_for_vcpu(c, 0, 100);
	unsigned cores = (leaf(c, 4, 0)->eax >> 26) + 1;
	cr_assert_eq(cores, 64, "leaf 4 reports %u cores per package for 100 vCPUs", cores);
	free(c);
	c = fake_cpuid();
	cpuid_patch_for_vcpu(c, 0, 65);
	cr_assert_eq((leaf(c, 4, 0)->eax >> 26) + 1, 64, "65 vCPUs");
	free(c);
}

/* ---- vm_request_stop ---- */

Test(vm_stop, first_caller_wins)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	vm->stop_efd = eventfd(0, EFD_NONBLOCK);
	cr_assert_geq(vm->stop_efd, 0);
	cr_assert_eq(vm_status(vm), VM_RUNNING);
	vm_request_stop(vm, VM_STOP_PANIC, "guest kernel panicked (%s)", "pvpanic");
	cr_assert_eq(vm_status(vm), VM_STOP_PANIC);
	cr_assert_str_eq(vm->stop_detail, "guest kernel panicked (pvpanic)");
	uint64_t v = 0;
	cr_assert_eq(read(vm->stop_efd, &v, sizeof(v)), sizeof(v), "the event loop is woken");
	cr_assert_eq(v, 1);

	vm_request_stop(vm, VM_STOP_POWEROFF, "guest powered off");
	cr_assert_eq(vm_status(vm), VM_STOP_PANIC, "a later stop does not overwrite the first");
	cr_assert_str_eq(vm->stop_detail, "guest kernel panicked (pvpanic)");
	cr_assert_lt(read(vm->stop_efd, &v, sizeof(v)), 0, "and does not wake the loop again");
	close(vm->stop_efd);
	free(vm);
}

Test(vm_stop, detail_is_bounded)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	vm->stop_efd = eventfd(0, EFD_NONBLOCK);
	char longmsg[1000];
	memset(longmsg, 'x', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	vm_request_stop(vm, VM_STOP_CRASH, "%s", longmsg);
	cr_assert_eq(strlen(vm->stop_detail), sizeof(vm->stop_detail) - 1);
	close(vm->stop_efd);
	free(vm);
}
