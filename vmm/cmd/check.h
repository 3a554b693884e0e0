/* `padcell check`: the preflight report. */
#ifndef PADCELL_CHECK_H
#define PADCELL_CHECK_H

#include <stdio.h>

/* Prints the report; returns 0 when this host can boot standard guest kernels. */
int check_run(FILE *out);

/* What kind of KVM this host has, from the CPU flags and the loaded modules (not /dev/kvm). */
enum host_kvm {
	HOST_KVM_HARDWARE, /* VT-x or AMD-V: a standard Linux guest boots */
	HOST_KVM_PVM,      /* kvm_pvm without VT-x/AMD-V: only tiny polling guests run (design notes 1) */
	HOST_KVM_UNKNOWN,  /* neither: no KVM at all, or one padcell does not know */
};
enum host_kvm host_kvm_kind(void);

#endif
