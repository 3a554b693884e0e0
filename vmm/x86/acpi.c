/* ACPI table construction: CPUs in the MADT, power-off through PM1a, pvpanic in the DSDT. */
#include "vmm/x86/acpi.h"

#include <errno.h>
#include <string.h>

#include "vmm/x86/acpi_tables.h"
#include "vmm/x86/layout.h"

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



/* The DSDT AML, compiled from vmm/x86/dsdt.asl by iasl and linked in (vmm/x86/dsdt_blob.S). */
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

static void acpi_header_init(struct acpi_sdt *h, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, "PADCEL", 6);
	memcpy(h->oem_table_id, "PADCELL ", 8);
	h->oem_revision = 1;
	memcpy(&h->creator_id, "PDCL", 4);
	h->creator_revision = 1;
}

static void acpi_seal(struct acpi_sdt *h)
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
	return (struct acpi_gas){ ACPI_GAS_SYSTEM_IO, bits, 0, bits == 32 ? 3 : bits == 16 ? 2 : 1, port };
}

int acpi_build(const struct guest_mem *m, unsigned ncpus, uint64_t *rsdp_gpa)
{
	if (ncpus == 0 || ncpus > ACPI_MAX_CPUS)
		return -EINVAL;
	struct acpi_cursor c = { m, LAYOUT_ACPI_START };
	uint64_t rsdp_at = 0, xsdt_at = 0, fadt_at = 0, dsdt_at = 0, madt_at = 0, facs_at = 0;

	struct acpi_rsdp *rsdp = acpi_alloc(&c, sizeof(*rsdp), &rsdp_at);
	uint64_t xsdt_len = sizeof(struct acpi_sdt) + 2 * sizeof(uint64_t);
	struct acpi_sdt *xsdt = acpi_alloc(&c, xsdt_len, &xsdt_at);
	struct acpi_fadt *fadt = acpi_alloc(&c, sizeof(*fadt), &fadt_at);
	c.next = (c.next + 63) & ~63ULL; /* the FACS must be 64-byte aligned */
	struct acpi_facs *facs = acpi_alloc(&c, sizeof(*facs), &facs_at);
	uint64_t dsdt_len = (uint64_t)(padcell_dsdt_aml_end - padcell_dsdt_aml);
	uint8_t *dsdt = acpi_alloc(&c, dsdt_len, &dsdt_at);
	uint64_t madt_len = sizeof(struct acpi_madt) + ncpus * sizeof(struct acpi_madt_lapic) +
			    sizeof(struct acpi_madt_ioapic) + sizeof(struct acpi_madt_lapic_nmi);
	uint8_t *madt = acpi_alloc(&c, madt_len, &madt_at);
	if (!rsdp || !xsdt || !fadt || !facs || !dsdt || !madt)
		return -ENOSPC;

	memcpy(dsdt, padcell_dsdt_aml, dsdt_len);

	memcpy(facs->signature, "FACS", 4);
	facs->length = sizeof(*facs);
	facs->version = 2;

	acpi_header_init(&fadt->hdr, "FACP", sizeof(*fadt), 6);
	fadt->fadt_minor_version = 5;
	fadt->flags = ACPI_FADT_WBINVD | ACPI_FADT_PWR_BUTTON | ACPI_FADT_SLP_BUTTON;
	/* No 8042 flag: the guest's i8042 driver stays away (faster boot); the reset
	 * pulse through port 0x64 still works because the kernel writes it directly. */
	fadt->iapc_boot_arch = ACPI_BOOT_ARCH_VGA_NOT_PRESENT | ACPI_BOOT_ARCH_NO_CMOS_RTC;
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
	memcpy(&fadt->hypervisor_vendor_id, "PADCELL ", 8);
	acpi_seal(&fadt->hdr);

	struct acpi_madt *mh = (struct acpi_madt *)madt;
	acpi_header_init(&mh->hdr, "APIC", (uint32_t)madt_len, 5);
	mh->lapic_address = (uint32_t)LAYOUT_LAPIC_ADDR;
	mh->flags = ACPI_MADT_PCAT_COMPAT;
	uint8_t *p = madt + sizeof(*mh);
	for (unsigned i = 0; i < ncpus; i++) {
		struct acpi_madt_lapic l = { { ACPI_MADT_LAPIC, sizeof(l) }, (uint8_t)i, (uint8_t)i, ACPI_MADT_ENABLED };
		memcpy(p, &l, sizeof(l));
		p += sizeof(l);
	}
	/* The I/O APIC's ID follows the CPUs' so the two never collide. */
	struct acpi_madt_ioapic io = { { ACPI_MADT_IOAPIC, sizeof(io) }, (uint8_t)ncpus, 0,
				  (uint32_t)LAYOUT_IOAPIC_ADDR, 0 };
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	struct acpi_madt_lapic_nmi nmi = { { ACPI_MADT_LAPIC_NMI, sizeof(nmi) }, 0xff, 0, 1 /* LINT1 */ };
	memcpy(p, &nmi, sizeof(nmi));
	acpi_seal(&mh->hdr);

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
