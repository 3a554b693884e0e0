/* CPUID for each vCPU: what KVM supports, with APIC IDs and a flat topology filled in. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/vm.h"

struct kvm_cpuid2 *cpuid_supported(int kvm_fd)
{
	for (unsigned n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return NULL;
		c->nent = n;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		free(c);
		if (errno != E2BIG)
			return NULL;
	}
	return NULL;
}

/* Bits needed to number n things (the APIC-ID field width of a topology level). */
static unsigned id_bits(unsigned n)
{
	unsigned b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

/*
 * The topology is one package of `ncpus` cores, one thread each, APIC ID = vCPU
 * index.  Linux reads it from leaf 1 (initial APIC ID, logical count), leaf 4
 * (cores per package, Intel), leaves 0xb/0x1f (x2APIC levels) and 0x80000008
 * (core count, AMD); left as KVM reports them they would describe the host.
 */
void cpuid_patch_for_vcpu(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus)
{
	unsigned core_bits = id_bits(ncpus);
	for (unsigned i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x0000ffff) | (index << 24) | ((ncpus & 0xff) << 16);
			if (ncpus > 1)
				e->edx |= 1u << 28; /* HTT: the logical count field is valid */
			else
				e->edx &= ~(1u << 28);
			e->ecx |= 1u << 31;         /* running under a hypervisor */
			break;
		case 4:
			/* EAX[31:26]: cores per package - 1, a 6-bit field that saturates at 64;
			 * EAX[25:14]: threads sharing this cache - 1 (none: one thread per core). */
			if (e->eax & 0x1f) {
				unsigned cores = ncpus > 64 ? 64 : ncpus;
				e->eax &= 0x00003fff;
				e->eax |= (cores - 1) << 26;
			}
			break;
		case 0xb:
		case 0x1f:
			e->edx = index; /* x2APIC ID */
			if (e->index == 0) {          /* SMT level: one thread per core */
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {   /* core level */
				e->eax = core_bits;
				e->ebx = ncpus;
				e->ecx = (2u << 8) | 1;
			} else {                      /* no further levels */
				e->eax = 0;
				e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0x80000008:
			e->ecx = (e->ecx & ~0xf0ffu) | (core_bits << 12) | ((ncpus - 1) & 0xff);
			break;
		default:
			break;
		}
	}
}
