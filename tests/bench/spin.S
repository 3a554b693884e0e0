/*
 * Benchmark guest: entered through PVH (32-bit protected mode), prints one byte on COM1
 * and then spins without exits, so a harness can look at the monitor while the VM runs.
 */
	.section .note.Xen, "a"
	.balign 4
	.long 4              /* namesz: "Xen\0" */
	.long 4              /* descsz */
	.long 18             /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_entry

	.text
	.code32
	.globl pvh_entry
pvh_entry:
	mov $0x3f8, %dx
	mov $'R', %al
	out %al, %dx
	mov $'\n', %al
	out %al, %dx
1:	pause
	jmp 1b
