/* Test guest: checks what padcell promised at boot (boot structure, memory map, command line, initrd,
 * ACPI, devices), prints one line per check, then ends the VM the way tg.case asks. */
#include <asm/bootparam.h>

#include "pattern.h"
#include "tg.h"
#include "vmm/x86/layout.h"
#include "vmm/x86/pvh.h"

#define BOOT_FLAG_MAGIC 0xaa55
#define HDRS_MAGIC      0x53726448 /* "HdrS" */
#define RFLAGS_IF       (1u << 9)
#define CR0_PE          0x1u
#define CR0_PG          0x80000000u
#define PAGE_SIZE       4096u
#define E820_TYPE_RAM   1
#define FOUR_GIB        0x100000000ULL

/* The Linux 64-bit boot protocol's segment selectors (boot.rst: __BOOT_CS, __BOOT_DS). */
#define LINUX_BOOT_CS 0x10
#define LINUX_BOOT_DS 0x18

static char cmdline_copy[LAYOUT_CMDLINE_MAX];

/* Length of the string at s, or max when no NUL comes within max bytes. */
static size_t bounded_strlen(const char *s, size_t max)
{
	size_t n = 0;
	while (n < max && s[n])
		n++;
	return n;
}

/* ---- command line ---------------------------------------------------------------------- */

/* Splits at spaces; values stay inside cmdline_copy, which parsing NUL-terminates in place. */
static void params_parse(char *s, struct tg_params *p)
{
	*p = (struct tg_params){ .kase = "" };
	while (*s) {
		while (*s == ' ')
			s++;
		char *tok = s;
		while (*s && *s != ' ')
			s++;
		if (*s)
			*s++ = '\0';
		char *eq = tok;
		while (*eq && *eq != '=')
			eq++;
		if (!*eq)
			continue;
		*eq = '\0';
		const char *val = eq + 1;
		size_t vlen = strlen(val);
		bool good = true;
		if (!strcmp(tok, "tg.mem"))
			good = tg_parse_u64(val, vlen, &p->mem);
		else if (!strcmp(tok, "tg.cpus")) {
			uint64_t v = 0;
			good = tg_parse_u64(val, vlen, &v) && v >= 1 && v <= 255;
			p->cpus = (unsigned)v;
		} else if (!strcmp(tok, "tg.initrd")) {
			good = tg_parse_u64(val, vlen, &p->initrd);
			p->has_initrd = good;
		} else if (!strcmp(tok, "tg.case")) {
			static const char *const known[] = { "reset", "poweroff", "panic", "tripfault", "smp",
							     "blk", "blk-hostile", "blk-fill", "vsock", "count",
							     "nethostile" };
			good = false;
			for (unsigned i = 0; i < sizeof(known) / sizeof(known[0]); i++)
				good |= !strcmp(val, known[i]);
			if (good)
				p->kase = val;
		}
		else if (!strcmp(tok, "tg.echo"))
			p->echo = val;
		else if (!strcmp(tok, "tg.blk"))
			good = tg_parse_u64(val, vlen, &p->blk_size);
		else if (!strcmp(tok, "tg.blkbench"))
			good = tg_parse_u64(val, vlen, &p->blk_bench_mib);
		else if (!strcmp(tok, "tg.blkfill"))
			good = tg_parse_u64(val, vlen, &p->blk_fill_mib);
		else if (!strcmp(tok, "tg.blkiops"))
			good = tg_parse_u64(val, vlen, &p->blk_iops);
		else if (!strcmp(tok, "tg.count"))
			good = tg_parse_u64(val, vlen, &p->count);
		else if (!strcmp(tok, "tg.fill"))
			good = tg_parse_u64(val, vlen, &p->fill);
		else if (!strcmp(tok, "tg.panicat"))
			good = tg_parse_u64(val, vlen, &p->panic_at);
		else if (!strcmp(tok, "tg.reread"))
			good = tg_parse_u64(val, vlen, &p->reread);
		else if (!strcmp(tok, "tg.spin"))
			good = tg_parse_u64(val, vlen, &p->spin);
		else if (!strcmp(tok, "tg.vsockcid"))
			good = tg_parse_u64(val, vlen, &p->vsock_cid);
		else if (!strcmp(tok, "tg.vsockecho"))
			good = tg_parse_u64(val, vlen, &p->vsock_echo) && p->vsock_echo <= 100;
		else if (!strcmp(tok, "virtio_mmio.device")) {
			/* <size>@<base>:<irq>, the way Linux reads it. */
			const char *at = val, *colon;
			while (*at && *at != '@')
				at++;
			for (colon = at; *colon && *colon != ':'; colon++)
				;
			uint64_t irq = 0;
			good = *at && *colon && p->nvirtio < sizeof(p->virtio_base) / sizeof(p->virtio_base[0]) &&
			       tg_parse_u64(at + 1, (size_t)(colon - at - 1), &p->virtio_base[p->nvirtio]) &&
			       tg_parse_u64(colon + 1, strlen(colon + 1), &irq) && irq < 24;
			if (good)
				p->virtio_irq[p->nvirtio++] = (unsigned)irq;
		}
		if (!good)
			tg_fail("cmdline", "cannot parse %s=%s", tok, val);
	}
}

/* ---- boot structure -------------------------------------------------------------------- */

/* The GDT register as entry.S saved it; the loader's GDT itself is still in place. */
struct gdt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/* Descriptor bits (SDM vol. 3, 3.4.5). */
#define DESC_P    (1ULL << 47)
#define DESC_S    (1ULL << 44)
#define DESC_CODE (1ULL << 43)
#define DESC_L    (1ULL << 53)
#define DESC_DB   (1ULL << 54)
#define DESC_G    (1ULL << 55)

static uint64_t desc_base(uint64_t d)
{
	return ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
}

static uint64_t desc_limit(uint64_t d)
{
	uint64_t lim = (d & 0xffff) | ((d >> 32) & 0xf0000);
	return (d & DESC_G) ? (lim << 12) | 0xfff : lim;
}

/* Checks the loader's code and data descriptors: flat, present, the right kind. */
static const char *check_descriptors(const struct gdt_ptr *g, uint64_t cs, uint64_t ds, bool code64)
{
	if (cs < 8 || ds < 8 || (cs | 7) > g->limit || (ds | 7) > g->limit)
		return "selector outside the GDT";
	const uint64_t *gdt = (const uint64_t *)g->base;
	uint64_t c = gdt[cs >> 3], d = gdt[ds >> 3];
	if (!(c & DESC_P) || !(c & DESC_S) || !(c & DESC_CODE))
		return "CS descriptor is not a present code segment";
	if (code64 ? !(c & DESC_L) : ((c & DESC_L) || !(c & DESC_DB)))
		return code64 ? "CS descriptor is not 64-bit" : "CS descriptor is not 32-bit";
	if (!code64 && (desc_base(c) || desc_limit(c) != 0xffffffff))
		return "CS descriptor is not flat 4 GiB";
	if (!(d & DESC_P) || !(d & DESC_S) || (d & DESC_CODE))
		return "DS descriptor is not a present data segment";
	if (desc_base(d) || desc_limit(d) != 0xffffffff)
		return "DS descriptor is not flat 4 GiB";
	return NULL;
}

static void boot_from_linux64(const struct tg_entry_state *st, struct tg_boot *b)
{
	struct gdt_ptr st_gdt;
	memcpy(&st_gdt, st->gdtr, sizeof(st_gdt));
	const char *why;
	const struct boot_params *bp = (const struct boot_params *)st->info;
	if (!st->info || st->info >= FOUR_GIB) {
		tg_fail("boot", "boot_params pointer unusable");
		return;
	}
	if (bp->hdr.boot_flag != BOOT_FLAG_MAGIC || bp->hdr.header != HDRS_MAGIC)
		tg_fail("boot", "boot_params signature: boot_flag 0x%x header 0x%x", bp->hdr.boot_flag,
			bp->hdr.header);
	else if (bp->hdr.type_of_loader != 0xff)
		tg_fail("boot", "type_of_loader 0x%x, expected 0xff", bp->hdr.type_of_loader);
	else
		tg_ok("boot", "boot_params at 0x%lx: boot_flag 0xaa55, HdrS, loader 0xff", st->info);

	/* boot.rst: 64-bit entry with interrupts off, __BOOT_CS and __BOOT_DS, paging on. */
	if (st->cs != LINUX_BOOT_CS || st->ds != LINUX_BOOT_DS || st->es != LINUX_BOOT_DS ||
	    st->ss != LINUX_BOOT_DS)
		tg_fail("entry", "selectors cs 0x%lx ds 0x%lx es 0x%lx ss 0x%lx, expected 0x10/0x18", st->cs,
			st->ds, st->es, st->ss);
	else if (st->flags & RFLAGS_IF)
		tg_fail("entry", "interrupts enabled at entry (rflags 0x%lx)", st->flags);
	else if (st->sp != LAYOUT_BOOT_STACK_TOP)
		tg_fail("entry", "rsp 0x%lx, expected 0x%x", st->sp, LAYOUT_BOOT_STACK_TOP);
	else if ((why = check_descriptors(&st_gdt, st->cs, st->ds, true)))
		tg_fail("entry", "GDT at 0x%lx: %s", st_gdt.base, why);
	else
		tg_ok("entry", "long mode, cs 0x10, ds/es/ss 0x18 (flat, GDT at 0x%lx), IF=0, rsp 0x%lx", st_gdt.base,
		      st->sp);

	b->cmdline_addr = bp->hdr.cmd_line_ptr | ((uint64_t)bp->ext_cmd_line_ptr << 32);
	b->initrd_addr = bp->hdr.ramdisk_image | ((uint64_t)bp->ext_ramdisk_image << 32);
	b->initrd_size = bp->hdr.ramdisk_size | ((uint64_t)bp->ext_ramdisk_size << 32);
	b->has_initrd = b->initrd_addr || b->initrd_size;
	b->rsdp = bp->acpi_rsdp_addr;
	unsigned n = bp->e820_entries;
	if (n > E820_MAX_ENTRIES_ZEROPAGE) {
		tg_fail("memmap", "e820_entries %u exceeds the zero page's %u", n, E820_MAX_ENTRIES_ZEROPAGE);
		n = E820_MAX_ENTRIES_ZEROPAGE;
	}
	for (unsigned i = 0; i < n && i < TG_MAX_RANGES; i++)
		b->map[b->nmap++] = (struct tg_mem_range){ bp->e820_table[i].addr, bp->e820_table[i].size,
							   bp->e820_table[i].type };
	size_t clen = b->cmdline_addr ? bounded_strlen((const char *)b->cmdline_addr, LAYOUT_CMDLINE_MAX) : 0;
	if (b->cmdline_addr && bp->hdr.cmdline_size && bp->hdr.cmdline_size != clen)
		tg_fail("cmdline", "hdr.cmdline_size %u but the string is %lu bytes", bp->hdr.cmdline_size,
			(unsigned long)clen);
}

static void boot_from_pvh(const struct tg_entry_state *st, struct tg_boot *b)
{
	struct gdt_ptr st_gdt;
	memcpy(&st_gdt, st->gdtr, sizeof(st_gdt));
	const char *why;
	const struct hvm_start_info *si = (const struct hvm_start_info *)st->info;
	if (!st->info) {
		tg_fail("boot", "EBX is 0: no hvm_start_info");
		return;
	}
	if (si->magic != PVH_START_MAGIC) {
		tg_fail("boot", "hvm_start_info magic 0x%x, expected 0x%x", si->magic, PVH_START_MAGIC);
		return;
	}
	tg_ok("boot", "hvm_start_info at 0x%lx: magic 0x%x, version %u", st->info, si->magic, si->version);

	/* PVH: 32-bit protected mode, paging off, interrupts off. */
	if (!(st->cr0 & CR0_PE) || (st->cr0 & CR0_PG))
		tg_fail("entry", "cr0 0x%lx: expected protected mode without paging", st->cr0);
	else if (st->flags & RFLAGS_IF)
		tg_fail("entry", "interrupts enabled at entry (eflags 0x%lx)", st->flags);
	else if ((why = check_descriptors(&st_gdt, st->cs, st->ds, false)))
		tg_fail("entry", "GDT at 0x%lx: %s", st_gdt.base, why);
	else
		tg_ok("entry", "32-bit protected mode, paging off, IF=0, cs 0x%lx ds 0x%lx flat", st->cs, st->ds);

	b->cmdline_addr = si->cmdline_paddr;
	b->rsdp = si->rsdp_paddr;
	if (si->nr_modules) {
		const struct hvm_modlist_entry *mod = (const struct hvm_modlist_entry *)si->modlist_paddr;
		if (si->nr_modules != 1)
			tg_fail("initrd", "%u modules, expected at most 1", si->nr_modules);
		if (!si->modlist_paddr)
			tg_fail("initrd", "nr_modules %u but modlist_paddr is 0", si->nr_modules);
		else {
			b->modlist_addr = si->modlist_paddr;
			b->has_initrd = true;
			b->initrd_addr = mod->paddr;
			b->initrd_size = mod->size;
		}
	}
	if (!si->memmap_paddr || !si->memmap_entries) {
		tg_fail("memmap", "hvm_start_info has no memory map");
		return;
	}
	b->memmap_addr = si->memmap_paddr;
	const struct hvm_memmap_table_entry *mm = (const struct hvm_memmap_table_entry *)si->memmap_paddr;
	for (unsigned i = 0; i < si->memmap_entries && i < TG_MAX_RANGES; i++)
		b->map[b->nmap++] = (struct tg_mem_range){ mm[i].addr, mm[i].size, mm[i].type };
}

/* Where vmm/x86/layout.h says padcell puts each boot structure: a moved structure is a contract change. */
static void check_layout(const struct tg_entry_state *st, const struct tg_boot *b)
{
	bool pvh = st->proto == TG_PROTO_PVH;
	uint64_t want_info = pvh ? LAYOUT_PVH_INFO_ADDR : LAYOUT_ZERO_PAGE_ADDR;
	if (st->info != want_info)
		tg_fail("layout", "%s at 0x%lx, layout.h says 0x%lx", pvh ? "hvm_start_info" : "boot_params", st->info,
			want_info);
	else if (b->cmdline_addr != LAYOUT_CMDLINE_ADDR)
		tg_fail("layout", "command line at 0x%lx, layout.h says 0x%x", b->cmdline_addr, LAYOUT_CMDLINE_ADDR);
	else if (b->rsdp < LAYOUT_ACPI_START || b->rsdp >= LAYOUT_ACPI_END)
		tg_fail("layout", "RSDP at 0x%lx, outside the ACPI area [0x%x, 0x%x)", b->rsdp, LAYOUT_ACPI_START,
			LAYOUT_ACPI_END);
	else if (pvh && b->memmap_addr != LAYOUT_PVH_MEMMAP_ADDR)
		tg_fail("layout", "PVH memory map at 0x%lx, layout.h says 0x%x", b->memmap_addr, LAYOUT_PVH_MEMMAP_ADDR);
	else if (pvh && b->has_initrd && b->modlist_addr != LAYOUT_PVH_MODLIST_ADDR)
		tg_fail("layout", "PVH module list at 0x%lx, layout.h says 0x%x", b->modlist_addr,
			LAYOUT_PVH_MODLIST_ADDR);
	else
		tg_ok("layout", "boot structure 0x%lx, command line 0x%lx, RSDP 0x%lx as vmm/x86/layout.h places them",
		      st->info, b->cmdline_addr, b->rsdp);
}

/* ---- memory map ------------------------------------------------------------------------ */

bool tg_in_ram(const struct tg_boot *b, uint64_t addr, uint64_t len)
{
	for (unsigned i = 0; i < b->nmap; i++) {
		const struct tg_mem_range *r = &b->map[i];
		if (r->type == E820_TYPE_RAM && addr >= r->addr && addr + len >= addr &&
		    addr + len <= r->addr + r->size)
			return true;
	}
	return false;
}

bool tg_touches_ram(const struct tg_boot *b, uint64_t addr, uint64_t len)
{
	for (unsigned i = 0; i < b->nmap; i++) {
		const struct tg_mem_range *r = &b->map[i];
		if (r->type == E820_TYPE_RAM && addr < r->addr + r->size && r->addr < addr + len)
			return true;
	}
	return false;
}

/* Returns whether the map is well-formed enough to probe its RAM ranges. */
static bool check_memmap(const struct tg_boot *b, const struct tg_params *p)
{
	if (!b->nmap) {
		tg_fail("memmap", "empty memory map");
		return false;
	}
	bool shape_ok = true;
	for (unsigned i = 0; i < b->nmap; i++) {
		const struct tg_mem_range *r = &b->map[i];
		tg_printf("  map %u: [0x%lx, 0x%lx) type %u\n", i, r->addr, r->addr + r->size, r->type);
		if (r->size == 0 || r->addr + r->size < r->addr) {
			tg_fail("memmap", "entry %u is empty or wraps", i);
			shape_ok = false;
		} else if (i && r->addr < b->map[i - 1].addr + b->map[i - 1].size) {
			tg_fail("memmap", "entry %u overlaps or is out of order with entry %u", i, i - 1);
			shape_ok = false;
		}
	}
	if (!shape_ok)
		return false;
	if (!p->mem) {
		tg_ok("memmap", "%u entries, sorted, no overlap (no tg.mem to compare with)", b->nmap);
		return true;
	}

	/* RAM as padcell lays it out: below the EBDA, 1 MiB up to the 3 GiB gap, the rest above 4 GiB. */
	struct tg_mem_range want[3];
	unsigned nwant = 0;
	uint64_t low_end = p->mem < LAYOUT_MMIO_GAP_START ? p->mem : LAYOUT_MMIO_GAP_START;
	want[nwant++] = (struct tg_mem_range){ 0, LAYOUT_EBDA_START, E820_TYPE_RAM };
	want[nwant++] = (struct tg_mem_range){ LAYOUT_HIMEM_START, low_end - LAYOUT_HIMEM_START, E820_TYPE_RAM };
	if (p->mem > LAYOUT_MMIO_GAP_START)
		want[nwant++] = (struct tg_mem_range){ LAYOUT_MMIO_GAP_END, p->mem - LAYOUT_MMIO_GAP_START,
						       E820_TYPE_RAM };

	/* Adjacent RAM entries count as one range. */
	struct tg_mem_range got[TG_MAX_RANGES];
	unsigned ngot = 0;
	for (unsigned i = 0; i < b->nmap; i++) {
		const struct tg_mem_range *r = &b->map[i];
		if (r->type != E820_TYPE_RAM)
			continue;
		if (ngot && got[ngot - 1].addr + got[ngot - 1].size == r->addr)
			got[ngot - 1].size += r->size;
		else
			got[ngot++] = *r;
	}
	bool same = ngot == nwant;
	for (unsigned i = 0; same && i < nwant; i++)
		same = got[i].addr == want[i].addr && got[i].size == want[i].size;
	if (!same) {
		tg_fail("memmap", "RAM ranges differ from the layout for tg.mem=0x%lx (%u ranges, want %u)",
			p->mem, ngot, nwant);
		for (unsigned i = 0; i < nwant; i++)
			tg_printf("  want RAM [0x%lx, 0x%lx)\n", want[i].addr, want[i].addr + want[i].size);
		return true;
	}
	tg_ok("memmap", "%u entries; RAM is exactly the layout for %lu MiB", b->nmap, p->mem >> 20);
	return true;
}

/* ---- RAM probes ---------------------------------------------------------------------------- */

#define PAGE_2M      (2ULL << 20)
#define WINDOW_VA    (511ULL << 30) /* PML4[0], PDPT[511]: far above anything identity-mapped */
#define PTE_PRESENT_RW 0x3ULL
#define PTE_LARGE    0x80ULL

extern uint64_t tg_window_pd[512]; /* entry.S: uncleared, only entry 0 is ever used */

/*
 * Maps the 2 MiB page holding phys at WINDOW_VA and returns a pointer to phys there.
 * The identity map stops at 4 GiB, and RAM above it is only reachable this way.  The
 * page tables are whichever CR3 points at: padcell's (linux64) or our own (PVH).
 */
static volatile uint64_t *window_map(uint64_t phys)
{
	uint64_t cr3;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	uint64_t *pml4 = (uint64_t *)(cr3 & ~0xfffULL);
	uint64_t *pdpt = (uint64_t *)(pml4[0] & 0x000ffffffffff000ULL);
	pdpt[511] = (uint64_t)tg_window_pd | PTE_PRESENT_RW;
	tg_window_pd[0] = (phys & ~(PAGE_2M - 1)) | PTE_PRESENT_RW | PTE_LARGE;
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory"); /* flush the old window */
	return (volatile uint64_t *)(WINDOW_VA + (phys & (PAGE_2M - 1)));
}

/* Writes two values to a RAM word and reads each back, then restores it. */
static bool ram_word_ok(uint64_t phys)
{
	volatile uint64_t *w = window_map(phys);
	uint64_t old = *w;
	*w = 0x5a5aa5a5c3c33c3cULL;
	bool ok = *w == 0x5a5aa5a5c3c33c3cULL;
	*w = ~0x5a5aa5a5c3c33c3cULL;
	ok = ok && *w == ~0x5a5aa5a5c3c33c3cULL;
	*w = old;
	return ok;
}

/* The first and last word of every RAM range must behave as memory (backed, not MMIO). */
static void check_ram(const struct tg_boot *b)
{
	uint64_t image = (uint64_t)__image_start, image_end = (uint64_t)__image_end;
	unsigned probes = 0;
	for (unsigned i = 0; i < b->nmap; i++) {
		const struct tg_mem_range *r = &b->map[i];
		if (r->type != E820_TYPE_RAM || r->size < 16)
			continue;
		uint64_t at[2] = { r->addr, (r->addr + r->size - 8) & ~7ULL };
		for (unsigned k = 0; k < 2; k++) {
			if (at[k] + 8 > image && at[k] < image_end)
				continue; /* never scribble on our own code */
			if (!ram_word_ok(at[k])) {
				tg_fail("ram", "word at 0x%lx (RAM range %u) does not hold what was written", at[k], i);
				return;
			}
			probes++;
		}
	}
	tg_ok("ram", "%u probes at the ends of the RAM ranges hold written values", probes);
}

/* ---- command line ------------------------------------------------------------------------ */

static void check_cmdline(const struct tg_boot *b, const struct tg_params *p)
{
	if (p->echo && *p->echo)
		tg_ok("cmdline", "%lu bytes at 0x%lx, tg.echo=%s", (unsigned long)b->cmdline_len,
		      b->cmdline_addr, p->echo);
	else if (p->echo)
		tg_fail("cmdline", "tg.echo is empty");
	else
		tg_ok("cmdline", "%lu bytes at 0x%lx (no tg.echo)", (unsigned long)b->cmdline_len,
		      b->cmdline_addr);
}

/* ---- initrd ------------------------------------------------------------------------------ */

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/*
 * The pattern repeats every 256 bytes, so after checking the first period byte by
 * byte, the rest of the image must equal itself shifted by one period: one
 * `repe cmpsq`.  On PVM hosts the guest runs under instruction emulation, where a
 * single string instruction is far cheaper than a loop of ordinary ones.
 */
static bool initrd_content_ok(const uint8_t *d, uint64_t size, uint64_t *bad)
{
	uint64_t head = size < TG_PATTERN_PERIOD ? size : TG_PATTERN_PERIOD;
	for (uint64_t i = 0; i < head; i++) {
		if (d[i] != tg_pattern_byte(i)) {
			*bad = i;
			return false;
		}
	}
	uint64_t words = (size - head) / 8;
	const uint8_t *a = d + TG_PATTERN_PERIOD, *b = d;
	if (words) {
		/* Stops after the first unequal pair, with both pointers past it. */
		__asm__ volatile("cld; repe cmpsq" : "+S"(a), "+D"(b), "+c"(words) : : "cc", "memory");
		if (((const uint64_t *)a)[-1] != ((const uint64_t *)b)[-1])
			a -= 8;
	}
	for (uint64_t i = (uint64_t)(a - d); i < size; i++) {
		if (d[i] != tg_pattern_byte(i)) {
			*bad = i;
			return false;
		}
	}
	return true;
}

static void check_initrd(const struct tg_entry_state *st, const struct tg_boot *b, const struct tg_params *p)
{
	if (!p->has_initrd) {
		if (b->has_initrd)
			tg_fail("initrd", "loader passed one (0x%lx, %lu bytes) but none was given", b->initrd_addr,
				b->initrd_size);
		else
			tg_ok("initrd", "none given, none passed");
		return;
	}
	if (!b->has_initrd) {
		tg_fail("initrd", "tg.initrd=%lu but the loader passed none", p->initrd);
		return;
	}
	uint64_t a = b->initrd_addr, n = b->initrd_size;
	uint64_t image = (uint64_t)__image_start, image_len = (uint64_t)(__image_end - __image_start);
	if (n != p->initrd)
		tg_fail("initrd", "size %lu, expected %lu", n, p->initrd);
	else if (a & (PAGE_SIZE - 1))
		tg_fail("initrd", "address 0x%lx is not page-aligned", a);
	else if (!tg_in_ram(b, a, n))
		tg_fail("initrd", "[0x%lx, 0x%lx) is not inside one RAM range", a, a + n);
	else if (overlaps(a, n, image, image_len))
		tg_fail("initrd", "[0x%lx, 0x%lx) overlaps the guest image", a, a + n);
	else if (overlaps(a, n, st->info, PAGE_SIZE) || overlaps(a, n, b->cmdline_addr, b->cmdline_len + 1) ||
		 overlaps(a, n, LAYOUT_GDT_ADDR, LAYOUT_CMDLINE_ADDR + LAYOUT_CMDLINE_MAX - LAYOUT_GDT_ADDR) ||
		 (b->rsdp && overlaps(a, n, b->rsdp, 36)))
		tg_fail("initrd", "[0x%lx, 0x%lx) overlaps the boot structures", a, a + n);
	else if (a + n > LAYOUT_MMIO_GAP_START)
		tg_fail("initrd", "[0x%lx, 0x%lx) is above 3 GiB", a, a + n);
	else {
		uint64_t bad = 0;
		if (!initrd_content_ok((const uint8_t *)a, n, &bad))
			tg_fail("initrd", "content differs from the pattern at byte %lu", bad);
		else
			tg_ok("initrd", "%lu bytes at 0x%lx, in RAM, clear of image and boot data, pattern ok", n, a);
	}
}

/* ---- main -------------------------------------------------------------------------------- */

void tg_main(void);
void tg_main(void)
{
	const struct tg_entry_state *st = &tg_entry_state;
	static struct tg_boot b;
	struct tg_params p;

	tg_console_init();
	tg_printf("\ntestguest\n");
	tg_printf("boot: %s\n", st->proto == TG_PROTO_PVH ? "pvh" : "linux64");
	if (st->proto == TG_PROTO_PVH)
		boot_from_pvh(st, &b);
	else
		boot_from_linux64(st, &b);

	if (!b.cmdline_addr || b.cmdline_addr >= LAYOUT_MMIO_GAP_START) {
		tg_fail("cmdline", "no usable command line pointer (0x%lx)", b.cmdline_addr);
		b.cmdline = "";
	} else {
		b.cmdline = (const char *)b.cmdline_addr;
	}
	size_t clen = bounded_strlen(b.cmdline, sizeof(cmdline_copy));
	if (clen >= sizeof(cmdline_copy)) {
		tg_fail("cmdline", "no NUL within %u bytes, the most the layout allows", LAYOUT_CMDLINE_MAX);
		clen = sizeof(cmdline_copy) - 1;
	}
	b.cmdline_len = clen;
	memcpy(cmdline_copy, b.cmdline, clen);
	cmdline_copy[clen] = '\0';
	tg_printf("cmdline: \"%s\"\n", cmdline_copy);
	params_parse(cmdline_copy, &p);

	check_layout(st, &b);
	if (check_memmap(&b, &p))
		check_ram(&b);
	check_cmdline(&b, &p);
	check_initrd(st, &b, &p);
	static struct tg_acpi_info ai;
	tg_check_acpi(&b, &p, &ai);
	tg_check_serial();
	tg_check_i8042();
	if (!strcmp(p.kase, "smp"))
		tg_check_smp(&b, &ai);
	if (!strcmp(p.kase, "blk"))
		tg_check_blk(&p);
	if (!strcmp(p.kase, "blk-hostile"))
		tg_check_blk_hostile(&p);
	if (!strcmp(p.kase, "blk-fill"))
		tg_check_blk_fill(&p);
	if (!strcmp(p.kase, "vsock") && p.nvirtio >= 2)
		tg_check_blk_scratch(&p); /* a disk before the vsock device: write, read back, flush */
	if (!strcmp(p.kase, "vsock"))
		tg_check_vsock(&p);
	if (!strcmp(p.kase, "count"))
		tg_count(&p);
	if (!strcmp(p.kase, "nethostile"))
		tg_check_net_hostile(&p);

	if (tg_failures()) {
		tg_printf("FAIL %u checks failed\n", tg_failures());
		tg_panic();
	}
	tg_printf("SUCCESS\n");
	if (!strcmp(p.kase, "") || !strcmp(p.kase, "reset") || !strcmp(p.kase, "smp") || !strncmp(p.kase, "blk", 3) ||
	    !strcmp(p.kase, "vsock") || !strcmp(p.kase, "count") || !strcmp(p.kase, "nethostile"))
		tg_reset();
	if (!strcmp(p.kase, "poweroff")) {
		tg_printf("poweroff: PM1a_CNT 0x%x <- SLP_TYP %u | SLP_EN\n", ai.pm1a_cnt, ai.slp_typ);
		tg_poweroff(ai.pm1a_cnt, ai.slp_typ);
	}
	if (!strcmp(p.kase, "panic")) {
		tg_printf("panic: writing 1 to port 0x%x\n", LAYOUT_PVPANIC_PORT);
		tg_panic();
	}
	if (!strcmp(p.kase, "tripfault")) {
		tg_printf("tripfault: empty IDT, then ud2\n");
		tg_triple_fault();
	}
	tg_printf("FAIL unknown tg.case=%s\n", p.kase);
	tg_panic();
}
