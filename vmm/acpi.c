/* ACPI table construction: CPUs in the MADT, power-off through PM1a, pvpanic in the DSDT. */
#include "vmm/acpi.h"

#include <errno.h>
#include <string.h>

#include "vmm/layout.h"

/*
 * Why ACPI rather than an MP table: Linux can only power off and find pvpanic
 * through ACPI.  Why not hardware-reduced ACPI: with HW_REDUCED set, Linux drops
 * the legacy PIC, and with it the identity map of ISA IRQs 0-15 onto I/O APIC
 * pins; devices that name a raw IRQ (the 8250 at IRQ 4, virtio-mmio devices
 * given on the kernel command line) then fail to get their interrupt unless
 * every one of them is described in AML.  So the tables describe a minimal
 * fixed-hardware platform instead: a PM1a event block and control block (six
 * I/O ports, devices/acpi_pm.c), no SMI command port (so the OS finds ACPI
 * already enabled), no PM timer, no GPEs, and an SCI that is never raised.
 * Poweroff is the PM1a_CNT write of SLP_TYP(\_S5) | SLP_EN.
 * The kernel has no userspace header for these tables, so the few we emit are
 * declared here with their sizes pinned.
 */

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
	char signature[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum;
	uint8_t reserved[3];
} __attribute__((packed));

struct acpi_gas {
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_width;
	uint64_t address;
} __attribute__((packed));

struct acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk;
	uint32_t pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
	uint8_t gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk, x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
	struct acpi_gas sleep_control;
	struct acpi_gas sleep_status;
	uint64_t hypervisor_id;
} __attribute__((packed));

struct acpi_facs {
	char signature[4];
	uint32_t length;
	uint32_t hardware_signature;
	uint32_t firmware_waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_firmware_waking_vector;
	uint8_t version;
	uint8_t reserved[3];
	uint32_t ospm_flags;
	uint8_t reserved2[24];
} __attribute__((packed));

struct acpi_madt {
	struct acpi_header h;
	uint32_t lapic_address;
	uint32_t flags;
} __attribute__((packed));

struct madt_lapic {
	uint8_t type, length, processor_uid, apic_id;
	uint32_t flags;
} __attribute__((packed));

struct madt_ioapic {
	uint8_t type, length, id, reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));

struct madt_lapic_nmi {
	uint8_t type, length, processor_uid;
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));

_Static_assert(sizeof(struct acpi_header) == 36, "ACPI header");
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP v2");
_Static_assert(sizeof(struct acpi_gas) == 12, "generic address structure");
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT revision 6");
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS");
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT");
_Static_assert(sizeof(struct madt_lapic) == 8, "MADT local APIC");
_Static_assert(sizeof(struct madt_ioapic) == 12, "MADT I/O APIC");
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT local APIC NMI");

#define FADT_F_WBINVD           (1u << 0)  /* WBINVD works (required since ACPI 2) */
#define FADT_F_PWR_BUTTON       (1u << 4)  /* no fixed power button               */
#define FADT_F_SLP_BUTTON       (1u << 5)  /* no fixed sleep button               */
#define MADT_F_PCAT_COMPAT      (1u << 0)  /* dual 8259s present (KVM's irqchip)  */
#define BOOT_ARCH_VGA_NOT_PRESENT (1u << 2)
#define BOOT_ARCH_NO_CMOS_RTC     (1u << 5)
#define GAS_SYSTEM_IO           1
#define MADT_TYPE_LAPIC         0
#define MADT_TYPE_IOAPIC        1
#define MADT_TYPE_LAPIC_NMI     4

/* The DSDT AML, compiled from vmm/dsdt.asl by iasl and linked in (vmm/dsdt_blob.S). */
extern const uint8_t padcell_dsdt_aml[];
extern const uint8_t padcell_dsdt_aml_end[];

uint8_t acpi_checksum(const void *p, uint64_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;
	for (uint64_t i = 0; i < len; i++)
		sum += b[i];
	return sum;
}

static void acpi_header_init(struct acpi_header *h, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, "PADCEL", 6);
	memcpy(h->oem_table_id, "PADCELL ", 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, "PDCL", 4);
	h->creator_revision = 1;
}

static void acpi_seal(struct acpi_header *h)
{
	h->checksum = 0;
	h->checksum = (uint8_t)-acpi_checksum(h, h->length);
}

/* Hands out 16-byte-aligned space in the ACPI area, or NULL when it is exhausted. */
struct acpi_cursor {
	const struct guest_mem *m;
	uint64_t next;
};

static void *acpi_alloc(struct acpi_cursor *c, uint64_t len, uint64_t *gpa)
{
	uint64_t at = (c->next + 15) & ~15ULL;
	if (at + len > LAYOUT_ACPI_END)
		return NULL;
	void *p = gmem_ptr(c->m, at, len);
	if (!p)
		return NULL;
	memset(p, 0, len);
	c->next = at + len;
	*gpa = at;
	return p;
}

static struct acpi_gas io_reg(uint16_t port, uint8_t bits)
{
	return (struct acpi_gas){ GAS_SYSTEM_IO, bits, 0, bits == 32 ? 3 : bits == 16 ? 2 : 1, port };
}

int acpi_build(const struct guest_mem *m, unsigned ncpus, uint64_t *rsdp_gpa)
{
	if (ncpus == 0 || ncpus > ACPI_MAX_CPUS)
		return -EINVAL;
	struct acpi_cursor c = { m, LAYOUT_ACPI_START };
	uint64_t rsdp_at = 0, xsdt_at = 0, fadt_at = 0, dsdt_at = 0, madt_at = 0, facs_at = 0;

	struct acpi_rsdp *rsdp = acpi_alloc(&c, sizeof(*rsdp), &rsdp_at);
	uint64_t xsdt_len = sizeof(struct acpi_header) + 2 * sizeof(uint64_t);
	struct acpi_header *xsdt = acpi_alloc(&c, xsdt_len, &xsdt_at);
	struct acpi_fadt *fadt = acpi_alloc(&c, sizeof(*fadt), &fadt_at);
	c.next = (c.next + 63) & ~63ULL; /* the FACS must be 64-byte aligned */
	struct acpi_facs *facs = acpi_alloc(&c, sizeof(*facs), &facs_at);
	uint64_t dsdt_len = (uint64_t)(padcell_dsdt_aml_end - padcell_dsdt_aml);
	uint8_t *dsdt = acpi_alloc(&c, dsdt_len, &dsdt_at);
	uint64_t madt_len = sizeof(struct acpi_madt) + ncpus * sizeof(struct madt_lapic) +
			    sizeof(struct madt_ioapic) + sizeof(struct madt_lapic_nmi);
	uint8_t *madt = acpi_alloc(&c, madt_len, &madt_at);
	if (!rsdp || !xsdt || !fadt || !facs || !dsdt || !madt)
		return -ENOSPC;

	memcpy(dsdt, padcell_dsdt_aml, dsdt_len);

	memcpy(facs->signature, "FACS", 4);
	facs->length = sizeof(*facs);
	facs->version = 2;

	acpi_header_init(&fadt->h, "FACP", sizeof(*fadt), 6);
	fadt->minor_version = 5;
	fadt->flags = FADT_F_WBINVD | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON;
	/* No 8042 flag: the guest's i8042 driver stays away (faster boot); the reset
	 * pulse through port 0x64 still works because the kernel writes it directly. */
	fadt->iapc_boot_arch = BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_NO_CMOS_RTC;
	fadt->sci_int = LAYOUT_ACPI_SCI_IRQ;
	fadt->firmware_ctrl = (uint32_t)facs_at;
	fadt->x_firmware_ctrl = facs_at;
	fadt->dsdt = (uint32_t)dsdt_at;
	fadt->x_dsdt = dsdt_at;
	fadt->pm1a_evt_blk = LAYOUT_ACPI_PM1_EVT;
	fadt->pm1_evt_len = 4;
	fadt->x_pm1a_evt_blk = io_reg(LAYOUT_ACPI_PM1_EVT, 32);
	fadt->pm1a_cnt_blk = LAYOUT_ACPI_PM1_CNT;
	fadt->pm1_cnt_len = 2;
	fadt->x_pm1a_cnt_blk = io_reg(LAYOUT_ACPI_PM1_CNT, 16);
	memcpy(&fadt->hypervisor_id, "PADCELL ", 8);
	acpi_seal(&fadt->h);

	struct acpi_madt *mh = (struct acpi_madt *)madt;
	acpi_header_init(&mh->h, "APIC", (uint32_t)madt_len, 5);
	mh->lapic_address = (uint32_t)LAYOUT_LAPIC_ADDR;
	mh->flags = MADT_F_PCAT_COMPAT;
	uint8_t *p = madt + sizeof(*mh);
	for (unsigned i = 0; i < ncpus; i++) {
		struct madt_lapic l = { MADT_TYPE_LAPIC, sizeof(l), (uint8_t)i, (uint8_t)i, 1 /* enabled */ };
		memcpy(p, &l, sizeof(l));
		p += sizeof(l);
	}
	/* The I/O APIC's ID follows the CPUs' so the two never collide. */
	struct madt_ioapic io = { MADT_TYPE_IOAPIC, sizeof(io), (uint8_t)ncpus, 0,
				  (uint32_t)LAYOUT_IOAPIC_ADDR, 0 };
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	struct madt_lapic_nmi nmi = { MADT_TYPE_LAPIC_NMI, sizeof(nmi), 0xff, 0, 1 /* LINT1 */ };
	memcpy(p, &nmi, sizeof(nmi));
	acpi_seal(&mh->h);

	acpi_header_init(xsdt, "XSDT", (uint32_t)xsdt_len, 1);
	uint64_t entries[2] = { fadt_at, madt_at };
	memcpy((uint8_t *)xsdt + sizeof(*xsdt), entries, sizeof(entries));
	acpi_seal(xsdt);

	memcpy(rsdp->signature, "RSD PTR ", 8);
	memcpy(rsdp->oem_id, "PADCEL", 6);
	rsdp->revision = 2;
	rsdp->length = sizeof(*rsdp);
	rsdp->xsdt_address = xsdt_at;
	rsdp->checksum = (uint8_t)-acpi_checksum(rsdp, 20);
	rsdp->extended_checksum = (uint8_t)-acpi_checksum(rsdp, sizeof(*rsdp));

	*rsdp_gpa = rsdp_at;
	return 0;
}
