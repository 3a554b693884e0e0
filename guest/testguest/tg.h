/* The test guest's internal interface: port I/O, console, checks and the state its entry code saved. */
#ifndef TG_H
#define TG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Which boot protocol brought us here; written by entry.S. */
#define TG_PROTO_LINUX64 1
#define TG_PROTO_PVH     2

/* Register state at the first instruction, before the guest touched anything (entry.S). */
struct tg_entry_state {
	uint64_t proto;
	uint64_t info;   /* RSI (boot_params) or EBX (hvm_start_info) */
	uint64_t sp;     /* RSP/ESP as the loader left it              */
	uint64_t flags;  /* RFLAGS/EFLAGS                              */
	uint64_t cr0;
	uint64_t cs, ds, es, ss;
	uint8_t gdtr[16]; /* SGDT at entry: limit, then base (32 bits under PVH) */
};
_Static_assert(sizeof(struct tg_entry_state) == 88, "entry.S writes these offsets");

extern struct tg_entry_state tg_entry_state;
extern char __image_start[], __image_end[];

/* Everything the checks learned from the command line. */
struct tg_params {
	uint64_t mem;      /* tg.mem, bytes; 0 = not given */
	unsigned cpus;     /* tg.cpus; 0 = not given       */
	bool has_initrd;   /* tg.initrd given              */
	uint64_t initrd;   /* tg.initrd, bytes             */
	const char *kase;  /* tg.case, "" = default        */
	const char *echo;  /* tg.echo or NULL              */
	uint64_t blk_size; /* tg.blk: bytes of the read-only pattern image (tg.case=blk) */
	uint64_t blk_fill_mib; /* tg.blkfill: MiB the blk-fill case writes to disk 0 */
	uint64_t blk_bench_mib, blk_iops; /* tg.blkbench, tg.blkiops: timed reads after the blk checks */
	uint64_t vsock_cid; /* tg.vsockcid: the cid= padcell was given (tg.case=vsock); 0 = not checked */
	uint64_t vsock_echo; /* tg.vsockecho: echo connections served one after another (tg.case=vsock); 0 = 1 */
	uint64_t count, spin; /* tg.count, tg.spin: steps and spin per step (tg.case=count); 0 = default */
	uint64_t fill;        /* tg.fill: MiB of memory at 32 MiB the count case fills first (a big snapshot) */
	uint64_t panic_at;    /* tg.panicat: the count case panics (pvpanic) after this step; 0 = never */
	uint64_t reread;      /* tg.reread: fill pages the count case reads back and checks per step; 0 = none */
	unsigned nvirtio;  /* virtio_mmio.device= entries padcell appended, in order */
	uint64_t virtio_base[8];
	unsigned virtio_irq[8];
};

/* One memory-map entry, whichever protocol delivered it. */
struct tg_mem_range {
	uint64_t addr, size;
	uint32_t type; /* e820 numbering: 1 RAM, 2 reserved, 3 ACPI, 4 NVS */
};

#define TG_MAX_RANGES 128

/* What main.c gathered from the boot structure, for the other checks. */
struct tg_boot {
	const char *cmdline;      /* guest-physical pointer                 */
	size_t cmdline_len;       /* bytes before its NUL (bounded)         */
	uint64_t cmdline_addr;
	struct tg_mem_range map[TG_MAX_RANGES];
	unsigned nmap;
	bool has_initrd;
	uint64_t initrd_addr, initrd_size;
	uint64_t rsdp;
	uint64_t memmap_addr, modlist_addr; /* PVH only */
};

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* lib.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
bool tg_parse_u64(const char *s, size_t len, uint64_t *out);

/* console.c: COM1, polled.  tg_printf knows %s (and %.Ns) %c %d %u %x and the l/ll forms. */
void tg_console_init(void);
void tg_putc(char c);
void tg_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Check bookkeeping: tg_ok/tg_fail print one line each; failures are counted. */
void tg_ok(const char *check, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tg_fail(const char *check, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
unsigned tg_failures(void);

/* Ends of the VM (exit.c).  Each has a fallback in case the monitor ignores the request. */
__attribute__((noreturn)) void tg_panic(void);
__attribute__((noreturn)) void tg_reset(void);
__attribute__((noreturn)) void tg_triple_fault(void);
__attribute__((noreturn)) void tg_poweroff(uint16_t pm1a_cnt, uint16_t slp_typ);

/* What the ACPI check learned, for poweroff and SMP start-up. */
struct tg_acpi_info {
	uint16_t pm1a_cnt; /* PM1a control port, 0 if unknown   */
	uint16_t slp_typ;  /* \_S5 SLP_TYPa                     */
	unsigned ncpus;    /* enabled local APICs in the MADT    */
	uint8_t apic_ids[256];
};

/* Check groups. */
void tg_check_acpi(const struct tg_boot *b, const struct tg_params *p, struct tg_acpi_info *ai);
void tg_check_serial(void);
void tg_check_i8042(void);
void tg_check_smp(const struct tg_boot *b, const struct tg_acpi_info *ai);
/* virtio.c: a polling virtio-blk driver (tg.case=blk and blk-hostile). */
void tg_check_blk(const struct tg_params *p);
void tg_check_blk_hostile(const struct tg_params *p);
void tg_check_blk_scratch(const struct tg_params *p);
void tg_check_blk_fill(const struct tg_params *p);
/* vsock.c: a polling virtio-vsock driver; connects to CID 2 port 5000, then echoes on port 1234. */
void tg_check_vsock(const struct tg_params *p);
/* net.c: tg.case=nethostile, a polling virtio-net driver sending hostile frames and chains, then real exchanges. */
void tg_check_net_hostile(const struct tg_params *p);
/* count.c: tg.case=count, counting for snapshot/restore tests. */
void tg_count(const struct tg_params *p);

/* True when [addr, addr+len) lies entirely in one RAM range of the map. */
bool tg_in_ram(const struct tg_boot *b, uint64_t addr, uint64_t len);
/* True when [addr, addr+len) touches any RAM range. */
bool tg_touches_ram(const struct tg_boot *b, uint64_t addr, uint64_t len);

#endif
