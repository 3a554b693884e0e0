/* Constants shared by smp.c and trampoline.S. */
#ifndef TG_SMP_H
#define TG_SMP_H

/* Start-up page for application processors: below 1 MiB, clear of padcell's boot data
 * (vmm/x86/layout.h puts nothing between the command line page and the EBDA). */
#define TG_TRAMP_ADDR 0x30000

/* Application processors woken at most (more only cost time under emulation), and their stacks. */
#define TG_AP_MAX   16
#define TG_AP_STACK 2048

#endif
