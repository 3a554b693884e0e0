/* x86 machine state in snapshots: vCPU registers, MSRs and CPUID (checked against the host), irqchip, PIT, kvmclock. */
#include "vmm/x86/snapshot_x86.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/err.h"
#include "vmm/vm.h"

/* ---- saving ------------------------------------------------------------------------------------ */

int x86_msr_list_get(int kvm_fd, struct x86_msr_list *l)
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
static int vcpu_msrs_get(struct vcpu *v, const struct x86_msr_list *l, struct kvm_msr_entry **out, unsigned *nout)
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

int x86_vcpu_save(struct vm *vm, struct vcpu *v, const struct x86_msr_list *ml, struct snap_enc *e, char *err,
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

/* crc32 over KVM's supported CPUID: equal on hosts whose KVM offers guests the same CPU. */
uint32_t x86_cpuid_crc(const struct vm *vm)
{
	const struct kvm_cpuid2 *c = vm->cpuid;
	return c ? snap_crc32(0, c->entries, c->nent * sizeof(c->entries[0])) : 0;
}

uint32_t x86_tsc_khz(const struct vm *vm)
{
	if (!vm->ncpus || vm->vcpus[0].fd < 0)
		return 0;
	int khz = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
	return khz > 0 ? (uint32_t)khz : 0;
}

int x86_machine_save(struct vm *vm, struct snap_enc *e, char *err, size_t errlen)
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
	return 0;
}
#undef GET

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
int x86_vcpu_load(struct vm *vm, struct vcpu *v, const struct snap_view *sv, uint32_t tsc_khz, char *err,
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

int x86_restore_check(struct vm *vm, const struct snap_view *sv, char *err, size_t errlen)
{
	static const struct { int cap; const char *name; } caps[] = {
		{ KVM_CAP_VCPU_EVENTS, "vCPU events" }, { KVM_CAP_DEBUGREGS, "debug registers" },
		{ KVM_CAP_ADJUST_CLOCK, "clock setting" }, { KVM_CAP_MP_STATE, "MP state" },
	};
	for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
			return errorf(err, errlen, -EINVAL, "this host's KVM lacks a capability restoring needs: %s",
				      caps[i].name);
	for (unsigned i = 0; i < sv->hdr->ncpus; i++)
		if (snap_find(sv, SNAP_SEC_XCRS, i, NULL) && ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) <= 0)
			return errorf(err, errlen, -EINVAL, "this host's KVM lacks a capability restoring needs: XCRS");
	return 0;
}

int x86_machine_load(struct vm *vm, const struct snap_view *sv, char *err, size_t errlen)
{
	for (unsigned c = 0; c < 3; c++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, snap_find(sv, SNAP_SEC_IRQCHIP, c, NULL)) < 0)
			return errorf(err, errlen, -errno, "KVM_SET_IRQCHIP failed: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, snap_find(sv, SNAP_SEC_PIT2, 0, NULL)) < 0)
		return errorf(err, errlen, -errno, "KVM_SET_PIT2 failed: %s", strerror(errno));
	return 0;
}

int x86_cpuid_adopt(struct vm *vm, const struct snap_view *sv, char *err, size_t errlen)
{
	uint64_t clen;
	const void *c0 = snap_find(sv, SNAP_SEC_CPUID, 0, &clen);
	struct kvm_cpuid2 *own = malloc(sizeof(*own) + clen);
	if (!own)
		return errorf(err, errlen, -ENOMEM, "out of memory");
	own->nent = (uint32_t)(clen / sizeof(own->entries[0]));
	own->padding = 0;
	memcpy(own->entries, c0, clen);
	free(vm->cpuid);
	vm->cpuid = own;
	return 0;
}

int x86_clock_load(struct vm *vm, const struct snap_view *sv, char *err, size_t errlen)
{
	struct kvm_clock_data clock;
	memcpy(&clock, snap_find(sv, SNAP_SEC_CLOCK, 0, NULL), sizeof(clock));
	struct kvm_clock_data set = { .clock = clock.clock };
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &set) < 0)
		return errorf(err, errlen, -errno, "KVM_SET_CLOCK failed: %s", strerror(errno));
	return 0;
}
