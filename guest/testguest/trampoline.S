/*
 * Application-processor start-up.  The SIPI starts an AP in real mode at
 * vector * 4 KiB with CS = vector << 8, IP = 0, so the BSP copies the code between
 * tg_tramp_start and tg_tramp_end to TG_TRAMP_ADDR (below 1 MiB) and patches
 * tg_tramp_cr3 in the copy.  The AP climbs real -> protected -> long mode on the
 * image's GDT and the BSP's page tables, then jumps into the image at tg_ap_entry64.
 */
#include "smp.h"

#define SEL_CODE32 0x08
#define SEL_CODE64 0x10
#define SEL_DATA   0x18
#define MSR_EFER   0xc0000080
#define EFER_LME   0x100
#define CR4_PAE    0x20
#define CR0_PE     0x1
#define CR0_PG     0x80000000

/* Where a trampoline label ends up once copied. */
#define TRAMP(sym) (TG_TRAMP_ADDR + ((sym) - tg_tramp_start))

	.text
	.code16
	.globl tg_tramp_start
tg_tramp_start:
	cli
	mov %cs, %ax
	mov %ax, %ds
	lgdtl tramp_gdt_ptr - tg_tramp_start
	mov %cr0, %eax
	or $CR0_PE, %eax
	mov %eax, %cr0
	ljmpl $SEL_CODE32, $TRAMP(tramp32)

	.code32
tramp32:
	mov $SEL_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4
	mov TRAMP(tg_tramp_cr3), %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $CR0_PG, %eax
	mov %eax, %cr0
	ljmp $SEL_CODE64, $TRAMP(tramp64)

	.code64
tramp64:
	mov $tg_ap_entry64, %eax /* the image is below 4 GiB: zero-extends */
	jmp *%rax

	.balign 4
tramp_gdt_ptr:
	.word 4 * 8 - 1         /* the image's GDT, entry.S */
	.long tg_gdt
	.globl tg_tramp_cr3
tg_tramp_cr3:
	.long 0
	.globl tg_tramp_end
tg_tramp_end:

/* In the image, at its link address: the stack the BSP picked for this AP, then C. */
tg_ap_entry64:
	mov $SEL_DATA, %eax
	mov %eax, %ss
	mov tg_ap_stack(%rip), %rsp
	call tg_ap_main
1:	cli
	hlt
	jmp 1b

	.data
	.balign 8
	.globl tg_ap_stack
tg_ap_stack:
	.quad 0

/* One stack per AP (TG_AP_MAX of TG_AP_STACK bytes), never cleared: see entry.S. */
	.section .noclear, "aw", @nobits
	.balign 16
	.globl tg_ap_stacks
tg_ap_stacks:
	.skip TG_AP_MAX * TG_AP_STACK
