/* x86-64 boot: parse and place the kernel, then build the structures its entry point reads. */
#include "vmm/x86/boot_x86_64.h"

#include <asm/e820.h>
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmm/x86/acpi.h"
#include "vmm/err.h"
#include "vmm/x86/layout.h"
#include "vmm/x86/pvh.h"

#define SETUP_HDR_OFFSET   0x1f1
#define BOOT_FLAG_MAGIC    0xaa55
#define HDRS_MAGIC         0x53726448 /* "HdrS" */
#define MIN_BOOT_PROTOCOL  0x020c     /* 2.12: xloadflags, the 64-bit entry is declared */
#define ELF_INITRD_MAX     0x7fffffffULL
#define PAGE_SIZE          4096ULL

/* Range [off, off+len) lies within a buffer of `size` bytes. */
static bool in_file(uint64_t off, uint64_t len, size_t size)
{
	return off <= size && len <= size - off;
}

/*
 * Reads one PT_NOTE segment: XEN_ELFNOTE_PHYS32_ENTRY gives the PVH entry; any note named "Linux"
 * (LINUX_ELFNOTE_BUILD_SALT is in every vmlinux since 4.18) says the kernel is Linux.
 */
static int elf_scan_notes(const uint8_t *data, size_t size, const Elf64_Phdr *ph, struct kernel_image *k)
{
	uint64_t off = ph->p_offset, end = ph->p_offset + ph->p_filesz;
	if (!in_file(ph->p_offset, ph->p_filesz, size))
		return -1;
	while (off + sizeof(Elf64_Nhdr) <= end) {
		Elf64_Nhdr n;
		memcpy(&n, data + off, sizeof(n));
		uint64_t name_off = off + sizeof(n);
		uint64_t desc_off = name_off + ((n.n_namesz + 3ULL) & ~3ULL);
		uint64_t next = desc_off + ((n.n_descsz + 3ULL) & ~3ULL);
		if (next > end || next <= off)
			return -1;
		if (n.n_type == PVH_ELFNOTE_PHYS32_ENTRY && n.n_namesz == 4 &&
		    memcmp(data + name_off, "Xen", 4) == 0) {
			/* Linux emits a pointer-sized value, other guests 32 bits. */
			if (n.n_descsz != 4 && n.n_descsz != 8)
				return -1;
			uint64_t v = 0;
			memcpy(&v, data + desc_off, n.n_descsz);
			if (v >= (1ULL << 32))
				return -1;
			k->has_pvh = true;
			k->pvh_entry = v;
		} else if (n.n_namesz == 6 && memcmp(data + name_off, "Linux", 6) == 0) {
			k->is_linux = true;
		}
		off = next;
	}
	return 0;
}

static int elf_parse(const uint8_t *data, size_t size, struct kernel_image *k, char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	if (size < sizeof(eh))
		return errorf(err, errlen, -ENOEXEC, "truncated ELF header");
	memcpy(&eh, data, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return errorf(err, errlen, -ENOEXEC, "not a 64-bit little-endian ELF");
	if (eh.e_machine != EM_X86_64)
		return errorf(err, errlen, -ENOEXEC, "ELF is not for x86-64 (e_machine %u)", eh.e_machine);
	if (eh.e_type != ET_EXEC)
		return errorf(err, errlen, -ENOEXEC, "ELF is not an executable (e_type %u)", eh.e_type);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64 ||
	    !in_file(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), size))
		return errorf(err, errlen, -ENOEXEC, "ELF program headers missing or truncated");

	k->kind = KERNEL_ELF;
	k->load_start = UINT64_MAX;
	k->load_end = 0;
	k->initrd_addr_max = ELF_INITRD_MAX;
	unsigned loads = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, data + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type == PT_NOTE) {
			if (elf_scan_notes(data, size, &ph, k))
				return errorf(err, errlen, -ENOEXEC, "malformed ELF note segment");
			continue;
		}
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (!in_file(ph.p_offset, ph.p_filesz, size))
			return errorf(err, errlen, -ENOEXEC, "truncated ELF: segment %u extends past end of file", i);
		if (ph.p_filesz > ph.p_memsz || ph.p_paddr + ph.p_memsz < ph.p_paddr)
			return errorf(err, errlen, -ENOEXEC, "ELF segment %u has impossible sizes", i);
		if (ph.p_paddr < LAYOUT_HIMEM_START || ph.p_paddr + ph.p_memsz > LAYOUT_MMIO_GAP_START)
			return errorf(err, errlen, -ENOEXEC,
				    "ELF segment %u at 0x%llx-0x%llx is outside 1 MiB..3 GiB", i,
				    (unsigned long long)ph.p_paddr,
				    (unsigned long long)(ph.p_paddr + ph.p_memsz));
		if (ph.p_paddr < k->load_start)
			k->load_start = ph.p_paddr;
		if (ph.p_paddr + ph.p_memsz > k->load_end)
			k->load_end = ph.p_paddr + ph.p_memsz;
		loads++;
	}
	if (!loads)
		return errorf(err, errlen, -ENOEXEC, "ELF has no loadable segments");
	k->entry64 = eh.e_entry;
	if (k->entry64 < k->load_start || k->entry64 >= k->load_end)
		return errorf(err, errlen, -ENOEXEC, "ELF entry point 0x%llx is outside its segments",
			    (unsigned long long)k->entry64);
	if (k->has_pvh && (k->pvh_entry < k->load_start || k->pvh_entry >= k->load_end))
		return errorf(err, errlen, -ENOEXEC, "PVH entry 0x%llx is outside the ELF segments",
			    (unsigned long long)k->pvh_entry);
	return 0;
}

static int bzimage_parse(const uint8_t *data, size_t size, struct kernel_image *k, char *err, size_t errlen)
{
	struct setup_header h;
	if (size < SETUP_HDR_OFFSET + sizeof(h))
		return errorf(err, errlen, -ENOEXEC, "truncated bzImage: no room for the setup header");
	memcpy(&h, data + SETUP_HDR_OFFSET, sizeof(h));
	if (h.boot_flag != BOOT_FLAG_MAGIC || h.header != HDRS_MAGIC)
		return errorf(err, errlen, -ENOEXEC, "not a kernel image (no ELF magic, no bzImage 'HdrS' header)");
	if (h.version < MIN_BOOT_PROTOCOL)
		return errorf(err, errlen, -ENOEXEC, "boot protocol %u.%02u is too old (need 2.12 or later)",
			    h.version >> 8, h.version & 0xff);
	if (!(h.loadflags & LOADED_HIGH))
		return errorf(err, errlen, -ENOEXEC, "bzImage is not loadable high (zImage is unsupported)");
	if (!(h.xloadflags & XLF_KERNEL_64))
		return errorf(err, errlen, -ENOEXEC, "bzImage has no 64-bit entry point (a 32-bit kernel?)");

	unsigned sects = h.setup_sects ? h.setup_sects : 4;
	size_t setup = (size_t)(sects + 1) * 512;
	uint64_t pm = (uint64_t)h.syssize * 16;
	if (setup >= size || pm == 0 || !in_file(setup, pm, size))
		return errorf(err, errlen, -ENOEXEC, "truncated bzImage: header promises %llu bytes, file has %zu",
			    (unsigned long long)(setup + pm), size);
	if (pm <= 0x200)
		return errorf(err, errlen, -ENOEXEC,
			      "truncated bzImage: a %llu-byte protected-mode part has no 64-bit entry at +0x200",
			      (unsigned long long)pm);

	/* Relocatable kernels go to their preferred address rounded up to their
	 * alignment; others move themselves there, so loading at it is always right. */
	uint64_t align = h.kernel_alignment;
	uint64_t load = h.pref_address ? h.pref_address : LAYOUT_HIMEM_START;
	if (load >= LAYOUT_MMIO_GAP_START)
		return errorf(err, errlen, -ENOEXEC, "bzImage wants to load at 0x%llx, outside 1 MiB..3 GiB",
			    (unsigned long long)load);
	if (h.relocatable_kernel) {
		if (align == 0 || (align & (align - 1)))
			return errorf(err, errlen, -ENOEXEC, "bzImage kernel_alignment 0x%llx is not a power of two",
				    (unsigned long long)align);
		load = (load + align - 1) & ~(align - 1);
	}
	uint64_t need = h.init_size > pm ? h.init_size : pm;
	if (load < LAYOUT_HIMEM_START || load >= LAYOUT_MMIO_GAP_START || need > LAYOUT_MMIO_GAP_START - load)
		return errorf(err, errlen, -ENOEXEC, "bzImage wants to load at 0x%llx, outside 1 MiB..3 GiB",
			    (unsigned long long)load);

	k->kind = KERNEL_BZIMAGE;
	k->is_linux = true; /* the format is Linux's own boot protocol */
	k->hdr = h;
	k->setup_size = setup;
	k->pm_size = pm;
	k->load_start = load;
	k->load_end = load + need;
	k->entry64 = load + 0x200; /* startup_64 sits 512 bytes into the protected-mode image */
	k->initrd_addr_max = h.initrd_addr_max ? h.initrd_addr_max : ELF_INITRD_MAX;
	return 0;
}

int kernel_parse(const uint8_t *data, size_t size, struct kernel_image *k, char *err, size_t errlen)
{
	memset(k, 0, sizeof(*k));
	k->data = data;
	k->size = size;
	if (size == 0)
		return errorf(err, errlen, -ENOEXEC, "file is empty");
	if (size >= SELFMAG && memcmp(data, ELFMAG, SELFMAG) == 0)
		return elf_parse(data, size, k, err, errlen);
	return bzimage_parse(data, size, k, err, errlen);
}

unsigned boot_e820(const struct guest_mem *m, struct boot_e820_entry *out, unsigned max)
{
	struct boot_e820_entry e[4];
	unsigned n = 0;
	e[n++] = (struct boot_e820_entry){ 0, LAYOUT_EBDA_START, E820_RAM };
	/* EBDA, VGA hole, option ROMs and the ACPI tables: reserved, like a PC BIOS does. */
	e[n++] = (struct boot_e820_entry){ LAYOUT_EBDA_START, LAYOUT_HIMEM_START - LAYOUT_EBDA_START,
					   E820_RESERVED };
	e[n++] = (struct boot_e820_entry){ LAYOUT_HIMEM_START, gmem_low_end(m) - LAYOUT_HIMEM_START, E820_RAM };
	if (gmem_high_size(m))
		e[n++] = (struct boot_e820_entry){ LAYOUT_MMIO_GAP_END, gmem_high_size(m), E820_RAM };
	if (n > max)
		n = max;
	memcpy(out, e, n * sizeof(e[0]));
	return n;
}

/* GDT: null, 32-bit code (PVH), 64-bit code, data, TSS — the selectors in boot_x86_64.h. */
static void boot_write_gdt(const struct guest_mem *m)
{
	static const uint64_t gdt[] = {
		0,
		0x00cf9b000000ffffULL, /* 0x08: code, 32-bit, 4 GiB flat */
		0x00af9b000000ffffULL, /* 0x10: code, 64-bit             */
		0x00cf93000000ffffULL, /* 0x18: data, 4 GiB flat          */
		0x00808b0000000000ULL, /* 0x20: busy TSS, required by VMX */
	};
	gmem_write(m, LAYOUT_GDT_ADDR, gdt, sizeof(gdt));
}

/* Identity map of 0..4 GiB with 2 MiB pages: covers the kernel, boot_params and command line. */
static void boot_write_page_tables(const struct guest_mem *m)
{
	uint64_t *pml4 = gmem_ptr(m, LAYOUT_PML4_ADDR, PAGE_SIZE);
	uint64_t *pdpt = gmem_ptr(m, LAYOUT_PDPT_ADDR, PAGE_SIZE);
	uint64_t *pd = gmem_ptr(m, LAYOUT_PD_ADDR, 4 * PAGE_SIZE);
	pml4[0] = LAYOUT_PDPT_ADDR | 0x03; /* present, writable */
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (LAYOUT_PD_ADDR + i * PAGE_SIZE) | 0x03;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
}

static void boot_copy_kernel(const struct guest_mem *m, const struct kernel_image *k)
{
	if (k->kind == KERNEL_BZIMAGE) {
		gmem_write(m, k->load_start, k->data + k->setup_size, k->pm_size);
		return;
	}
	Elf64_Ehdr eh;
	memcpy(&eh, k->data, sizeof(eh));
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, k->data + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		/* Memory is fresh and zeroed, so the bss needs no clearing. */
		if (ph.p_filesz)
			gmem_write(m, ph.p_paddr, k->data + ph.p_offset, ph.p_filesz);
	}
}

static void boot_write_zero_page(const struct guest_mem *m, const struct kernel_image *k,
				 uint64_t cmdline_len, uint64_t initrd, uint64_t initrd_size,
				 uint64_t rsdp)
{
	struct boot_params *bp = gmem_ptr(m, LAYOUT_ZERO_PAGE_ADDR, sizeof(*bp));
	memset(bp, 0, sizeof(*bp));
	if (k->kind == KERNEL_BZIMAGE) {
		/* The header extends to the offset given by the jump at 0x200. */
		size_t hdr_end = 0x202 + k->data[0x201];
		size_t n = hdr_end - SETUP_HDR_OFFSET;
		if (n > sizeof(bp->hdr))
			n = sizeof(bp->hdr);
		memcpy(&bp->hdr, k->data + SETUP_HDR_OFFSET, n);
		bp->hdr.code32_start = (uint32_t)k->load_start;
	} else {
		bp->hdr.boot_flag = BOOT_FLAG_MAGIC;
		bp->hdr.header = HDRS_MAGIC;
		bp->hdr.kernel_alignment = 0x1000000;
	}
	bp->hdr.type_of_loader = 0xff; /* undefined loader: nothing to report */
	bp->hdr.vid_mode = 0xffff;     /* "normal" */
	bp->hdr.cmd_line_ptr = LAYOUT_CMDLINE_ADDR;
	bp->hdr.cmdline_size = (uint32_t)cmdline_len;
	bp->hdr.ramdisk_image = (uint32_t)initrd;
	bp->hdr.ramdisk_size = (uint32_t)initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(initrd >> 32);
	bp->ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
	bp->acpi_rsdp_addr = rsdp;
	bp->e820_entries = (uint8_t)boot_e820(m, bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE);
}

static void boot_write_start_info(const struct guest_mem *m, uint64_t initrd, uint64_t initrd_size,
				  uint64_t rsdp)
{
	struct boot_e820_entry e[8];
	unsigned n = boot_e820(m, e, 8);
	struct hvm_memmap_table_entry *mm =
		gmem_ptr(m, LAYOUT_PVH_MEMMAP_ADDR, n * sizeof(struct hvm_memmap_table_entry));
	for (unsigned i = 0; i < n; i++)
		mm[i] = (struct hvm_memmap_table_entry){ e[i].addr, e[i].size, e[i].type, 0 };

	struct hvm_start_info *si = gmem_ptr(m, LAYOUT_PVH_INFO_ADDR, sizeof(*si));
	*si = (struct hvm_start_info){
		.magic = PVH_START_MAGIC,
		.version = 1,
		.cmdline_paddr = LAYOUT_CMDLINE_ADDR,
		.rsdp_paddr = rsdp,
		.memmap_paddr = LAYOUT_PVH_MEMMAP_ADDR,
		.memmap_entries = n,
	};
	if (initrd_size) {
		struct hvm_modlist_entry *mod = gmem_ptr(m, LAYOUT_PVH_MODLIST_ADDR, sizeof(*mod));
		*mod = (struct hvm_modlist_entry){ .paddr = initrd, .size = initrd_size };
		si->nr_modules = 1;
		si->modlist_paddr = LAYOUT_PVH_MODLIST_ADDR;
	}
}

int boot_load(const struct guest_mem *m, const struct boot_config *c, struct boot_result *r,
	      char *err, size_t errlen)
{
	struct kernel_image k;
	int rc = kernel_parse(c->kernel, c->kernel_size, &k, err, errlen);
	if (rc)
		return rc;

	bool pvh;
	switch (c->entry) {
	case BOOT_ENTRY_PVH:
		if (!k.has_pvh)
			return errorf(err, errlen, -ENOEXEC, "kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
		pvh = true;
		break;
	case BOOT_ENTRY_LINUX64:
		pvh = false;
		break;
	default:
		pvh = k.has_pvh;
		break;
	}

	size_t cmdlen = strlen(c->cmdline);
	uint64_t cmdmax = LAYOUT_CMDLINE_MAX - 1;
	if (k.kind == KERNEL_BZIMAGE && k.hdr.cmdline_size && k.hdr.cmdline_size < cmdmax)
		cmdmax = k.hdr.cmdline_size;
	if (cmdlen > cmdmax)
		return errorf(err, errlen, -E2BIG, "kernel command line is %zu bytes; this kernel accepts at most %llu",
			    cmdlen, (unsigned long long)cmdmax);

	uint64_t low_end = gmem_low_end(m);
	if (k.load_end > low_end)
		return errorf(err, errlen, -ENOMEM,
			    "guest memory too small: the kernel needs %llu MiB, --mem gives %llu MiB",
			    (unsigned long long)((k.load_end + (1 << 20) - 1) >> 20),
			    (unsigned long long)(m->size >> 20));

	uint64_t initrd = 0;
	if (c->initrd && c->initrd_size) {
		/* Highest page-aligned spot below both the RAM end and the kernel's limit. */
		uint64_t top = low_end;
		if (k.initrd_addr_max + 1 < top)
			top = k.initrd_addr_max + 1;
		uint64_t kernel_end = (k.load_end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
		if (c->initrd_size > top || ((top - c->initrd_size) & ~(PAGE_SIZE - 1)) < kernel_end)
			return errorf(err, errlen, -ENOMEM,
				    "guest memory too small: kernel and initrd need %llu MiB, --mem gives %llu MiB",
				    (unsigned long long)((kernel_end + c->initrd_size + (2 << 20) - 1) >> 20),
				    (unsigned long long)(m->size >> 20));
		initrd = (top - c->initrd_size) & ~(PAGE_SIZE - 1);
	}

	boot_copy_kernel(m, &k);
	if (initrd)
		gmem_write(m, initrd, c->initrd, c->initrd_size);
	gmem_write(m, LAYOUT_CMDLINE_ADDR, c->cmdline, cmdlen + 1);

	uint64_t rsdp = 0;
	rc = acpi_build(m, c->ncpus, &rsdp);
	if (rc)
		return errorf(err, errlen, rc, "cannot build ACPI tables for %u vCPUs", c->ncpus);

	boot_write_gdt(m);
	boot_write_page_tables(m);
	uint64_t isize = initrd ? c->initrd_size : 0;
	if (pvh) {
		boot_write_start_info(m, initrd, isize, rsdp);
		r->entry = k.pvh_entry;
		r->boot_info = LAYOUT_PVH_INFO_ADDR;
	} else {
		boot_write_zero_page(m, &k, cmdlen, initrd, isize, rsdp);
		r->entry = k.entry64;
		r->boot_info = LAYOUT_ZERO_PAGE_ADDR;
	}
	r->pvh = pvh;
	r->initrd_gpa = initrd;
	r->rsdp_gpa = rsdp;
	return 0;
}
