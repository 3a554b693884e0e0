/* x86 machine state in snapshots: vCPU registers, MSRs and CPUID (checked against the host), irqchip, PIT, kvmclock. */
#ifndef PADCELL_SNAPSHOT_X86_H
#define PADCELL_SNAPSHOT_X86_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/snapshot_fmt.h"

struct vm;
struct vcpu;

/* The MSRs KVM_GET_MSR_INDEX_LIST names; free idx when done. */
struct x86_msr_list {
	uint32_t n;
	uint32_t *idx;
};
int x86_msr_list_get(int kvm_fd, struct x86_msr_list *l);

/* One vCPU's sections (index = vCPU): registers, FPU/XSAVE, XCRS, MSRs, LAPIC, events, CPUID.  0 or -errno with err. */
int x86_vcpu_save(struct vm *vm, struct vcpu *v, const struct x86_msr_list *ml, struct snap_enc *e, char *err,
		  size_t errlen);
/* The machine's KVM state: PIC master and slave, I/O APIC, PIT and kvmclock. */
int x86_machine_save(struct vm *vm, struct snap_enc *e, char *err, size_t errlen);
/* For the header: a crc32 of KVM's supported CPUID, and the vCPUs' TSC kHz (0 unknown). */
uint32_t x86_cpuid_crc(const struct vm *vm);
uint32_t x86_tsc_khz(const struct vm *vm);

/* -EINVAL with err when this host's KVM lacks a capability the snapshot needs restoring with. */
int x86_restore_check(struct vm *vm, const struct snap_view *sv, char *err, size_t errlen);
/* The irqchip and PIT; before the devices, which re-drive their interrupt lines into them. */
int x86_machine_load(struct vm *vm, const struct snap_view *sv, char *err, size_t errlen);
/* One created vCPU's state, its CPUID first (-EINVAL when the host lacks a feature the guest may use). */
int x86_vcpu_load(struct vm *vm, struct vcpu *v, const struct snap_view *sv, uint32_t tsc_khz, char *err,
		  size_t errlen);
/*
 * From now on the VM's CPUID is the snapshot's (vCPU 0's entries; the per-vCPU fields are
 * patched again for each), so snapshotting this VM again saves what its vCPUs really have.
 */
int x86_cpuid_adopt(struct vm *vm, const struct snap_view *sv, char *err, size_t errlen);
/* kvmclock continues from the snapshot's time: the guest sees no jump in its monotonic clock. */
int x86_clock_load(struct vm *vm, const struct snap_view *sv, char *err, size_t errlen);

#endif
