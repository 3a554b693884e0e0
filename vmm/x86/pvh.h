/* The PVH boot ABI (Xen's hvm_start_info), shared by padcell and the test guest. */
#ifndef PADCELL_PVH_H
#define PADCELL_PVH_H

/*
 * Linux does not export these structures to userspace, so they are declared here once,
 * following xen/include/public/arch-x86/hvm/start_info.h (version 1 of the ABI), and
 * their sizes are pinned at compile time.  The entry point is the ELF note
 * XEN_ELFNOTE_PHYS32_ENTRY; the guest starts in 32-bit protected mode, paging off,
 * with %ebx holding the physical address of struct hvm_start_info.
 */
#include <stdint.h>

#define PVH_ELFNOTE_PHYS32_ENTRY 18
#define PVH_START_MAGIC          0x336ec578u
#define PVH_MEMMAP_TYPE_RAM      1
#define PVH_MEMMAP_TYPE_RESERVED 2
#define PVH_MEMMAP_TYPE_ACPI     3

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info is 56 bytes");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry is 32 bytes");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry is 24 bytes");

#endif
