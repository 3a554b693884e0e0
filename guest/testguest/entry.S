/*
 * Test guest entry points.  tg_entry64 is the ELF entry for the Linux 64-bit boot
 * protocol (long mode, RSI = boot_params); tg_entry_pvh is named by the PVH note
 * (32-bit protected mode, paging off, EBX = hvm_start_info) and climbs to long mode
 * on page tables of its own.  Both record the state they were entered with, clear
 * the bss, switch to the guest's stack and call tg_main.
 */
#include "vmm/x86/layout.h"

#define TG_PROTO_LINUX64 1
#define TG_PROTO_PVH     2

/* Offsets in struct tg_entry_state (tg.h). */
#define ST_PROTO 0
#define ST_INFO  8
#define ST_SP    16
#define ST_FLAGS 24
#define ST_CR0   32
#define ST_CS    40
#define ST_DS    48
#define ST_ES    56
#define ST_SS    64
#define ST_GDTR  72

/* Our GDT uses the selectors padcell's does. */
#define SEL_CODE32 0x08
#define SEL_CODE64 0x10
#define SEL_DATA   0x18

#define CR0_PE  0x00000001
#define CR0_PG  0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100

	.section .note.Xen, "a"
	.balign 4
	.long 4                 /* namesz: "Xen\0"            */
	.long 4                 /* descsz: 32-bit entry address */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY   */
	.asciz "Xen"
	.long tg_entry_pvh

	.data
	.balign 8
	.globl tg_entry_state
tg_entry_state:
	.fill 11, 8, 0

	.balign 8
	.globl tg_gdt
tg_gdt:
	.quad 0
	.quad 0x00cf9b000000ffff /* 0x08: code, 32-bit, flat */
	.quad 0x00af9b000000ffff /* 0x10: code, 64-bit       */
	.quad 0x00cf93000000ffff /* 0x18: data, flat         */
tg_gdt_end:
	.globl tg_gdt_ptr
tg_gdt_ptr:
	.word tg_gdt_end - tg_gdt - 1
	.long tg_gdt

	.text
	.code64
	.globl tg_entry64
tg_entry64:
	/* Record first: the checks compare these with the boot protocol. */
	mov %rsi, tg_entry_state+ST_INFO(%rip)
	mov %rsp, tg_entry_state+ST_SP(%rip)
	mov %cr0, %rax
	mov %rax, tg_entry_state+ST_CR0(%rip)
	mov %cs, %eax
	mov %rax, tg_entry_state+ST_CS(%rip)
	mov %ds, %eax
	mov %rax, tg_entry_state+ST_DS(%rip)
	mov %es, %eax
	mov %rax, tg_entry_state+ST_ES(%rip)
	mov %ss, %eax
	mov %rax, tg_entry_state+ST_SS(%rip)
	sgdt tg_entry_state+ST_GDTR(%rip)
	pushfq                  /* on the loader's stack, which it promised */
	pop %rax
	mov %rax, tg_entry_state+ST_FLAGS(%rip)
	movq $TG_PROTO_LINUX64, tg_entry_state+ST_PROTO(%rip)

	lea tg_stack_top(%rip), %rsp
	cld
	lea __bss_start(%rip), %rdi
	lea __bss_end(%rip), %rcx
	sub %rdi, %rcx
	shr $3, %rcx
	xor %eax, %eax
	rep stosq
	call tg_main
1:	pause
	jmp 1b

	.code32
	.globl tg_entry_pvh
tg_entry_pvh:
	mov %ebx, tg_entry_state+ST_INFO
	mov %esp, tg_entry_state+ST_SP
	mov %cr0, %eax
	mov %eax, tg_entry_state+ST_CR0
	mov %cs, %eax
	mov %eax, tg_entry_state+ST_CS
	mov %ds, %eax
	mov %eax, tg_entry_state+ST_DS
	mov %es, %eax
	mov %eax, tg_entry_state+ST_ES
	mov %ss, %eax
	mov %eax, tg_entry_state+ST_SS
	sgdt tg_entry_state+ST_GDTR
	/* PVH gives no stack: use ours (it is in the bss, cleared below; nothing lives there yet). */
	mov $tg_stack_top, %esp
	pushfl
	pop %eax
	mov %eax, tg_entry_state+ST_FLAGS
	movl $TG_PROTO_PVH, tg_entry_state+ST_PROTO

	cld
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	shr $2, %ecx
	xor %eax, %eax
	rep stosl

	/* Identity map of 0..4 GiB with 2 MiB pages: PML4[0] -> PDPT[0..3] -> 4 PDs. */
	mov $tg_pdpt, %eax
	or $0x3, %eax           /* present, writable */
	mov %eax, tg_pml4
	xor %ecx, %ecx
1:	mov %ecx, %eax          /* PDPT[i] = PD page i */
	shl $12, %eax
	add $tg_pd, %eax
	or $0x3, %eax
	mov %eax, tg_pdpt(,%ecx,8)
	inc %ecx
	cmp $4, %ecx
	jne 1b
	xor %ecx, %ecx
2:	mov %ecx, %eax
	shl $21, %eax
	or $0x83, %eax          /* present, writable, 2 MiB page */
	mov %eax, tg_pd(,%ecx,8)
	inc %ecx
	cmp $2048, %ecx
	jne 2b

	lgdt tg_gdt_ptr
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4
	mov $tg_pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $(CR0_PG | CR0_PE), %eax
	mov %eax, %cr0
	ljmp $SEL_CODE64, $pvh_long

	.code64
pvh_long:
	mov $SEL_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	mov $tg_stack_top, %esp  /* zero-extends into %rsp */
	call tg_main
1:	pause
	jmp 1b

/*
 * PML4 and PDPT come zeroed from the file (only a few entries are filled in).  The PDs,
 * the window PD and the stacks live in .noclear, past the bss, which is never cleared:
 * on PVM every cleared word costs about 2 us of emulation, and these are fully written
 * (PDs) or need no initial value (stacks, window).
 */
	.data
	.balign 4096
	.globl tg_pml4
tg_pml4:
	.fill 512, 8, 0
tg_pdpt:
	.fill 512, 8, 0

	.section .noclear, "aw", @nobits
	.balign 4096
tg_pd:
	.skip 4 * 4096
	.globl tg_window_pd
tg_window_pd:
	.skip 4096
	.balign 16
tg_stack:
	.skip 16384
	.globl tg_stack_top
tg_stack_top:
