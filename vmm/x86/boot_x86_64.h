/* x86-64 kernel loading: vmlinux ELF, bzImage and PVH, plus everything the entry expects. */
#ifndef PADCELL_BOOT_X86_64_H
#define PADCELL_BOOT_X86_64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <asm/bootparam.h>

#include "vmm/mem.h"

enum boot_entry {
	BOOT_ENTRY_AUTO,    /* PVH when the ELF carries the note, else the 64-bit Linux entry */
	BOOT_ENTRY_LINUX64, /* 64-bit boot protocol: long mode, RSI = boot_params              */
	BOOT_ENTRY_PVH,     /* PVH: 32-bit protected mode, EBX = hvm_start_info                */
};

enum kernel_kind { KERNEL_ELF, KERNEL_BZIMAGE };

/* A kernel image that passed every header check, not yet placed in guest memory. */
struct kernel_image {
	enum kernel_kind kind;
	const uint8_t *data;
	size_t size;
	uint64_t load_start, load_end; /* guest-physical extent once loaded        */
	uint64_t entry64;              /* 64-bit entry (ELF e_entry, bzImage +0x200) */
	bool has_pvh;
	uint64_t pvh_entry;            /* 32-bit PVH entry from the ELF note        */
	bool is_linux;                 /* a bzImage, or an ELF with a "Linux" note    */
	/* bzImage only: */
	struct setup_header hdr;
	size_t setup_size;             /* real-mode part in the file, skipped         */
	size_t pm_size;                /* protected-mode part copied to load_start    */
	uint64_t initrd_addr_max;      /* highest byte the initrd may occupy          */
};

struct boot_config {
	enum boot_entry entry;
	const uint8_t *kernel;
	size_t kernel_size;
	const uint8_t *initrd; /* NULL for none */
	size_t initrd_size;
	const char *cmdline;
	unsigned ncpus;
};

/* What the vCPUs start with. */
struct boot_result {
	bool pvh;
	uint64_t entry;      /* RIP (or EIP for PVH)                */
	uint64_t boot_info;  /* RSI (boot_params) or EBX (start_info) */
	uint64_t initrd_gpa; /* 0 without initrd                     */
	uint64_t rsdp_gpa;
};

/*
 * Validates a kernel image.  Returns 0, or -EINVAL/-ENOEXEC with a one-line reason
 * in err (what is wrong with the file, for the user).
 */
int kernel_parse(const uint8_t *data, size_t size, struct kernel_image *k, char *err, size_t errlen);

/*
 * Loads kernel, initrd and command line, writes boot_params or hvm_start_info, the
 * e820 map, ACPI tables, GDT and identity page tables.  Guest memory must be zeroed.
 */
int boot_load(const struct guest_mem *m, const struct boot_config *c, struct boot_result *r,
	      char *err, size_t errlen);

/* The e820 map for this memory size (RAM and the reserved legacy area).  Returns the count. */
unsigned boot_e820(const struct guest_mem *m, struct boot_e820_entry *out, unsigned max);

/* GDT selectors padcell sets up (the Linux boot protocol fixes 0x10 and 0x18). */
#define BOOT_GDT_CODE32 0x08
#define BOOT_GDT_CODE64 0x10
#define BOOT_GDT_DATA   0x18
#define BOOT_GDT_TSS    0x20

#endif
