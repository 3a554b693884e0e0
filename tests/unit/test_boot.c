/* boot_load into real guest memory: zero page, start_info, e820, initrd, ACPI pointer, GDT, page tables. */
#include <criterion/criterion.h>
#include <asm/bootparam.h>
#include <asm/e820.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/images.h"
#include "vmm/x86/boot_x86_64.h"
#include "vmm/x86/layout.h"
#include "vmm/mem.h"
#include "vmm/x86/pvh.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static struct guest_mem m;
static char err[256];
static uint8_t kcode[4096];
static uint8_t *initrd;
static const size_t initrd_size = 300 * 1024 + 123; /* not a page multiple */
static const char *cmdline = "console=ttyS0 root=/dev/vda padcell.test=1";

static void fill(void)
{
	for (size_t i = 0; i < sizeof(kcode); i++)
		kcode[i] = (uint8_t)(i ^ 0x5a);
	initrd = malloc(initrd_size);
	for (size_t i = 0; i < initrd_size; i++)
		initrd[i] = (uint8_t)(i * 13 + 1);
}

static void setup_64m(void) { fill(); cr_assert_eq(gmem_init(&m, 64 * MiB), 0); }
static void setup_3g5(void) { fill(); cr_assert_eq(gmem_init(&m, 3 * GiB + 512 * MiB), 0); }
static void teardown(void) { gmem_destroy(&m); free(initrd); }

TestSuite(boot, .init = setup_64m, .fini = teardown);
TestSuite(boot_big, .init = setup_3g5, .fini = teardown);

static uint8_t *elf_kernel(unsigned pvh_descsz, size_t *n)
{
	struct elf_spec s = { .code = kcode, .code_len = sizeof(kcode), .bss = 2 * MiB,
			      .entry = 0x100040, .pvh_descsz = pvh_descsz, .pvh_entry = 0x100080 };
	return img_elf(&s, n);
}

static int load(const uint8_t *k, size_t ksize, enum boot_entry entry, bool with_initrd, struct boot_result *r)
{
	struct boot_config c = {
		.entry = entry, .kernel = k, .kernel_size = ksize,
		.initrd = with_initrd ? initrd : NULL, .initrd_size = with_initrd ? initrd_size : 0,
		.cmdline = cmdline, .ncpus = 2,
	};
	err[0] = '\0';
	memset(r, 0, sizeof(*r));
	return boot_load(&m, &c, r, err, sizeof(err));
}

static const struct boot_params *zero_page(void)
{
	const struct boot_params *bp = gmem_ptr(&m, LAYOUT_ZERO_PAGE_ADDR, sizeof(*bp));
	cr_assert_not_null(bp);
	return bp;
}

/* The e820 map padcell promises, straight from layout.h. */
static unsigned expected_e820(struct boot_e820_entry *e)
{
	uint64_t low = m.size < LAYOUT_MMIO_GAP_START ? m.size : LAYOUT_MMIO_GAP_START;
	unsigned n = 0;
	e[n++] = (struct boot_e820_entry){ 0, LAYOUT_EBDA_START, E820_RAM };
	e[n++] = (struct boot_e820_entry){ LAYOUT_EBDA_START, LAYOUT_HIMEM_START - LAYOUT_EBDA_START,
					   E820_RESERVED };
	e[n++] = (struct boot_e820_entry){ LAYOUT_HIMEM_START, low - LAYOUT_HIMEM_START, E820_RAM };
	if (m.size > low)
		e[n++] = (struct boot_e820_entry){ LAYOUT_MMIO_GAP_END, m.size - low, E820_RAM };
	return n;
}

static void check_e820(const struct boot_e820_entry *got, unsigned n)
{
	struct boot_e820_entry want[4];
	unsigned nw = expected_e820(want);
	cr_assert_eq(n, nw, "e820 entries");
	for (unsigned i = 0; i < n; i++) {
		cr_assert_eq(got[i].addr, want[i].addr, "e820[%u].addr", i);
		cr_assert_eq(got[i].size, want[i].size, "e820[%u].size", i);
		cr_assert_eq(got[i].type, want[i].type, "e820[%u].type", i);
	}
	/* Every RAM entry is backed by guest memory, end to end. */
	for (unsigned i = 0; i < n; i++)
		if (got[i].type == E820_RAM)
			cr_assert_not_null(gmem_ptr(&m, got[i].addr, got[i].size), "e820[%u] not RAM", i);
}

static void check_rsdp(uint64_t rsdp)
{
	const uint8_t *p = gmem_ptr(&m, rsdp, 36);
	cr_assert_not_null(p);
	cr_assert_arr_eq(p, "RSD PTR ", 8);
	uint8_t sum = 0;
	for (int i = 0; i < 20; i++)
		sum += p[i];
	cr_assert_eq(sum, 0, "RSDP 20-byte checksum");
	for (int i = 20; i < 36; i++)
		sum += p[i];
	cr_assert_eq(sum, 0, "RSDP extended checksum");
}

static void check_initrd(uint64_t gpa, uint64_t limit, uint64_t kernel_end)
{
	cr_assert_neq(gpa, 0);
	cr_assert_eq(gpa & 0xfff, 0, "initrd page-aligned");
	cr_assert_geq(gpa, kernel_end, "initrd overlaps the kernel");
	cr_assert_leq(gpa + initrd_size - 1, limit, "initrd above initrd_addr_max");
	const uint8_t *p = gmem_ptr(&m, gpa, initrd_size);
	cr_assert_not_null(p, "initrd not inside RAM");
	cr_assert_eq(memcmp(p, initrd, initrd_size), 0, "initrd bytes");
}

static void check_cpu_tables(void)
{
	const uint64_t *pml4 = gmem_ptr(&m, LAYOUT_PML4_ADDR, 4096);
	const uint64_t *pdpt = gmem_ptr(&m, LAYOUT_PDPT_ADDR, 4096);
	const uint64_t *pd = gmem_ptr(&m, LAYOUT_PD_ADDR, 4 * 4096);
	cr_assert_eq(pml4[0] & ~0xfffULL, LAYOUT_PDPT_ADDR);
	cr_assert_eq(pml4[0] & 3, 3, "present, writable");
	for (unsigned i = 1; i < 512; i++)
		cr_assert_eq(pml4[i], 0);
	for (unsigned i = 0; i < 4; i++) {
		cr_assert_eq(pdpt[i] & ~0xfffULL, LAYOUT_PD_ADDR + i * 4096ULL, "PDPT[%u]", i);
		cr_assert_eq(pdpt[i] & 3, 3);
	}
	for (unsigned i = 0; i < 4 * 512; i++)
		cr_assert_eq(pd[i], ((uint64_t)i << 21) | 0x83, "PD[%u]", i);

	const uint64_t *gdt = gmem_ptr(&m, LAYOUT_GDT_ADDR, 5 * 8);
	uint64_t code = gdt[BOOT_GDT_CODE64 / 8], data = gdt[BOOT_GDT_DATA / 8];
	cr_assert_eq(BOOT_GDT_CODE64, 0x10);
	cr_assert_eq(BOOT_GDT_DATA, 0x18);
	cr_assert(code & (1ULL << 47), "code present");
	cr_assert(code & (1ULL << 44), "code: S (code/data)");
	cr_assert(code & (1ULL << 43), "code: executable");
	cr_assert(code & (1ULL << 53), "code: L, 64-bit");
	cr_assert_eq(code & (1ULL << 54), 0, "code: D must be 0 with L");
	cr_assert(data & (1ULL << 47), "data present");
	cr_assert(data & (1ULL << 44), "data: S");
	cr_assert_eq(data & (1ULL << 43), 0, "data: not executable");
	cr_assert(data & (1ULL << 41), "data: writable");
	uint64_t code32 = gdt[BOOT_GDT_CODE32 / 8];
	cr_assert(code32 & (1ULL << 54), "0x08: 32-bit code for PVH");
	cr_assert_eq(code32 & (1ULL << 53), 0);
}

Test(boot, elf_linux64_zero_page)
{
	size_t n;
	uint8_t *k = elf_kernel(0, &n);
	struct boot_result r;
	cr_assert_eq(load(k, n, BOOT_ENTRY_AUTO, true, &r), 0, "%s", err);
	cr_assert_not(r.pvh);
	cr_assert_eq(r.entry, 0x100040);
	cr_assert_eq(r.boot_info, LAYOUT_ZERO_PAGE_ADDR);

	const struct boot_params *bp = zero_page();
	cr_assert_eq(bp->hdr.boot_flag, 0xaa55);
	cr_assert_eq(bp->hdr.header, 0x53726448);
	cr_assert_eq(bp->hdr.type_of_loader, 0xff);
	cr_assert_eq(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE_ADDR);
	const char *cl = gmem_ptr(&m, bp->hdr.cmd_line_ptr, strlen(cmdline) + 1);
	cr_assert_str_eq(cl, cmdline);

	uint64_t rd = bp->hdr.ramdisk_image | ((uint64_t)bp->ext_ramdisk_image << 32);
	cr_assert_eq(rd, r.initrd_gpa);
	cr_assert_eq(bp->hdr.ramdisk_size, initrd_size);
	check_initrd(rd, 0x7fffffff, 0x100000 + sizeof(kcode) + 2 * MiB);

	cr_assert_eq(bp->acpi_rsdp_addr, r.rsdp_gpa);
	check_rsdp(bp->acpi_rsdp_addr);
	check_e820(bp->e820_table, bp->e820_entries);

	cr_assert_eq(memcmp(gmem_ptr(&m, 0x100000, sizeof(kcode)), kcode, sizeof(kcode)), 0, "kernel bytes at 1 MiB");
	check_cpu_tables();
	free(k);
}

Test(boot, no_initrd)
{
	size_t n;
	uint8_t *k = elf_kernel(0, &n);
	struct boot_result r;
	cr_assert_eq(load(k, n, BOOT_ENTRY_LINUX64, false, &r), 0, "%s", err);
	cr_assert_eq(r.initrd_gpa, 0);
	cr_assert_eq(zero_page()->hdr.ramdisk_image, 0);
	cr_assert_eq(zero_page()->hdr.ramdisk_size, 0);
	free(k);
}

Test(boot, bzimage_setup_header_copied)
{
	struct bz_spec s = img_bz_default();
	size_t n;
	uint8_t *k = img_bzimage(&s, &n);
	struct boot_result r;
	cr_assert_eq(load(k, n, BOOT_ENTRY_AUTO, true, &r), 0, "%s", err);
	cr_assert_not(r.pvh);
	cr_assert_eq(r.entry, 16 * MiB + 0x200);

	const struct boot_params *bp = zero_page();
	cr_assert_eq(bp->hdr.boot_flag, 0xaa55);
	cr_assert_eq(bp->hdr.header, 0x53726448);
	cr_assert_eq(bp->hdr.version, 0x020f, "setup header copied from the image");
	cr_assert_eq(bp->hdr.init_size, s.init_size);
	cr_assert_eq(bp->hdr.pref_address, s.pref_address);
	cr_assert_eq(bp->hdr.xloadflags, s.xloadflags);
	cr_assert_eq(bp->hdr.code32_start, 16 * MiB, "code32_start = load address");
	cr_assert_eq(bp->hdr.type_of_loader, 0xff);
	cr_assert_str_eq((const char *)gmem_ptr(&m, bp->hdr.cmd_line_ptr, strlen(cmdline) + 1), cmdline);

	const uint8_t *kern = gmem_ptr(&m, 16 * MiB, s.pm_len);
	for (size_t i = 0; i < s.pm_len; i++)
		cr_assert_eq(kern[i], img_bz_pm_byte(i), "protected-mode byte %zu at load address", i);
	cr_assert_eq(*(const uint8_t *)gmem_ptr(&m, 16 * MiB + s.pm_len, 1), 0, "nothing copied past pm_len");

	uint64_t rd = bp->hdr.ramdisk_image;
	check_initrd(rd, s.initrd_addr_max, 16 * MiB + s.init_size);
	check_e820(bp->e820_table, bp->e820_entries);
	check_rsdp(bp->acpi_rsdp_addr);
	free(k);
}

Test(boot, bzimage_initrd_respects_initrd_addr_max)
{
	struct bz_spec s = img_bz_default();
	s.initrd_addr_max = 40 * MiB - 1;
	size_t n;
	uint8_t *k = img_bzimage(&s, &n);
	struct boot_result r;
	cr_assert_eq(load(k, n, BOOT_ENTRY_AUTO, true, &r), 0, "%s", err);
	check_initrd(r.initrd_gpa, s.initrd_addr_max, 20 * MiB);
	free(k);
}

Test(boot, bzimage_cmdline_size_limit)
{
	struct bz_spec s = img_bz_default();
	s.cmdline_size = 16;
	size_t n;
	uint8_t *k = img_bzimage(&s, &n);
	struct boot_result r;
	cr_assert_neq(load(k, n, BOOT_ENTRY_AUTO, false, &r), 0, "cmdline longer than the kernel's cmdline_size");
	cr_assert_neq(err[0], '\0');
	free(k);
}

Test(boot, pvh_start_info)
{
	size_t n;
	uint8_t *k = elf_kernel(4, &n);
	struct boot_result r;
	cr_assert_eq(load(k, n, BOOT_ENTRY_AUTO, true, &r), 0, "%s", err);
	cr_assert(r.pvh, "auto picks PVH when the note is there");
	cr_assert_eq(r.entry, 0x100080, "entry = pvh_entry");
	cr_assert_eq(r.boot_info, LAYOUT_PVH_INFO_ADDR);

	const struct hvm_start_info *si = gmem_ptr(&m, LAYOUT_PVH_INFO_ADDR, sizeof(*si));
	cr_assert_eq(si->magic, 0x336ec578);
	cr_assert_geq(si->version, 1);
	cr_assert_str_eq((const char *)gmem_ptr(&m, si->cmdline_paddr, strlen(cmdline) + 1), cmdline);
	cr_assert_eq(si->rsdp_paddr, r.rsdp_gpa);
	check_rsdp(si->rsdp_paddr);

	struct boot_e820_entry want[4];
	unsigned nw = expected_e820(want);
	cr_assert_eq(si->memmap_entries, nw);
	const struct hvm_memmap_table_entry *mm =
		gmem_ptr(&m, si->memmap_paddr, nw * sizeof(*mm));
	cr_assert_not_null(mm);
	for (unsigned i = 0; i < nw; i++) {
		cr_assert_eq(mm[i].addr, want[i].addr, "memmap[%u]", i);
		cr_assert_eq(mm[i].size, want[i].size, "memmap[%u]", i);
		cr_assert_eq(mm[i].type, want[i].type, "memmap[%u]", i);
	}

	cr_assert_eq(si->nr_modules, 1);
	const struct hvm_modlist_entry *mod = gmem_ptr(&m, si->modlist_paddr, sizeof(*mod));
	cr_assert_not_null(mod);
	cr_assert_eq(mod->paddr, r.initrd_gpa);
	cr_assert_eq(mod->size, initrd_size);
	check_initrd(mod->paddr, 0x7fffffff, 0x100000 + sizeof(kcode) + 2 * MiB);
	check_cpu_tables();
	free(k);
}

Test(boot, pvh_without_initrd_has_no_modules)
{
	size_t n;
	uint8_t *k = elf_kernel(8, &n);
	struct boot_result r;
	cr_assert_eq(load(k, n, BOOT_ENTRY_PVH, false, &r), 0, "%s", err);
	const struct hvm_start_info *si = gmem_ptr(&m, LAYOUT_PVH_INFO_ADDR, sizeof(*si));
	cr_assert_eq(si->nr_modules, 0);
	free(k);
}

Test(boot, linux64_forced_on_pvh_kernel)
{
	size_t n;
	uint8_t *k = elf_kernel(4, &n);
	struct boot_result r;
	cr_assert_eq(load(k, n, BOOT_ENTRY_LINUX64, true, &r), 0, "%s", err);
	cr_assert_not(r.pvh);
	cr_assert_eq(r.entry, 0x100040);
	cr_assert_eq(zero_page()->hdr.boot_flag, 0xaa55);
	free(k);
}

Test(boot, pvh_requested_without_note)
{
	size_t n;
	uint8_t *k = elf_kernel(0, &n);
	struct boot_result r;
	cr_assert_neq(load(k, n, BOOT_ENTRY_PVH, false, &r), 0);
	cr_assert(strstr(err, "PVH") != NULL, "message: %s", err);
	free(k);
}

Test(boot, cmdline_too_long)
{
	size_t n;
	uint8_t *k = elf_kernel(0, &n);
	char *longcl = malloc(LAYOUT_CMDLINE_MAX + 1);
	memset(longcl, 'a', LAYOUT_CMDLINE_MAX);
	longcl[LAYOUT_CMDLINE_MAX] = '\0';
	struct boot_config c = { .entry = BOOT_ENTRY_AUTO, .kernel = k, .kernel_size = n, .cmdline = longcl, .ncpus = 1 };
	struct boot_result r;
	err[0] = '\0';
	cr_assert_neq(boot_load(&m, &c, &r, err, sizeof(err)), 0);
	cr_assert_neq(err[0], '\0');
	longcl[LAYOUT_CMDLINE_MAX - 1] = '\0'; /* the longest that fits with its NUL */
	cr_assert_eq(boot_load(&m, &c, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(strlen(gmem_ptr(&m, LAYOUT_CMDLINE_ADDR, LAYOUT_CMDLINE_MAX)), LAYOUT_CMDLINE_MAX - 1);
	free(longcl);
	free(k);
}

Test(boot, memory_too_small)
{
	gmem_destroy(&m);
	cr_assert_eq(gmem_init(&m, 4 * MiB), 0);
	struct elf_spec fits = { .code = kcode, .code_len = sizeof(kcode), .bss = 2900 * 1024 };
	size_t n;
	uint8_t *k = img_elf(&fits, &n); /* ends at 1 MiB + 2904 KiB: 300 KiB of initrd no longer fit */
	struct boot_result r;
	cr_assert_eq(load(k, n, BOOT_ENTRY_AUTO, false, &r), 0, "kernel alone fits: %s", err);
	cr_assert_neq(load(k, n, BOOT_ENTRY_AUTO, true, &r), 0, "kernel + 300 KiB initrd in 4 MiB");
	cr_assert(strstr(err, "memory") != NULL, "message mentions memory: %s", err);
	free(k);

	struct elf_spec big = { .code = kcode, .code_len = sizeof(kcode), .bss = 8 * MiB };
	k = img_elf(&big, &n);
	cr_assert_neq(load(k, n, BOOT_ENTRY_AUTO, false, &r), 0, "kernel of 8 MiB in 4 MiB");
	cr_assert(strstr(err, "memory") != NULL, "message mentions memory: %s", err);
	free(k);
}

Test(boot, bad_cpu_count)
{
	size_t n;
	uint8_t *k = elf_kernel(0, &n);
	struct boot_config c = { .kernel = k, .kernel_size = n, .cmdline = "", .ncpus = 0 };
	struct boot_result r;
	err[0] = '\0';
	cr_assert_neq(boot_load(&m, &c, &r, err, sizeof(err)), 0);
	cr_assert_neq(err[0], '\0');
	free(k);
}

Test(boot, e820_helper_truncates_to_max)
{
	struct boot_e820_entry e[2];
	cr_assert_eq(boot_e820(&m, e, 2), 2);
	cr_assert_eq(e[0].addr, 0);
	cr_assert_eq(e[1].addr, LAYOUT_EBDA_START);
}

Test(boot_big, e820_and_initrd_with_high_ram)
{
	size_t n;
	uint8_t *k = elf_kernel(0, &n);
	struct boot_result r;
	cr_assert_eq(load(k, n, BOOT_ENTRY_AUTO, true, &r), 0, "%s", err);
	const struct boot_params *bp = zero_page();
	cr_assert_eq(bp->e820_entries, 4);
	check_e820(bp->e820_table, bp->e820_entries);
	cr_assert_eq(bp->e820_table[2].addr + bp->e820_table[2].size, 3 * GiB, "low RAM ends at the gap");
	cr_assert_eq(bp->e820_table[3].addr, 4 * GiB);
	cr_assert_eq(bp->e820_table[3].size, 512 * MiB);
	check_initrd(r.initrd_gpa, 0x7fffffff, 0x100000 + sizeof(kcode) + 2 * MiB);
	check_rsdp(r.rsdp_gpa);
	check_cpu_tables();
	free(k);
}

Test(boot_big, pvh_memmap_with_high_ram)
{
	size_t n;
	uint8_t *k = elf_kernel(4, &n);
	struct boot_result r;
	cr_assert_eq(load(k, n, BOOT_ENTRY_PVH, true, &r), 0, "%s", err);
	const struct hvm_start_info *si = gmem_ptr(&m, LAYOUT_PVH_INFO_ADDR, sizeof(*si));
	cr_assert_eq(si->memmap_entries, 4);
	const struct hvm_memmap_table_entry *mm = gmem_ptr(&m, si->memmap_paddr, 4 * sizeof(*mm));
	cr_assert_eq(mm[3].addr, 4 * GiB);
	cr_assert_eq(mm[3].size, 512 * MiB);
	cr_assert_eq(mm[3].type, PVH_MEMMAP_TYPE_RAM);
	free(k);
}
