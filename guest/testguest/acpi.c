/* ACPI checks: RSDP, XSDT, FADT (padcell's PM1a blocks), DSDT (\_S5) and MADT (one LAPIC per vCPU). */
#include "acpi.h"
#include "tg.h"
#include "vmm/x86/layout.h"

#define AML_NAME_OP    0x08
#define AML_PACKAGE_OP 0x12
#define AML_ZERO_OP    0x00
#define AML_ONE_OP     0x01
#define AML_BYTE_PREFIX 0x0a
#define PM1_CNT_SCI_EN 0x1

static uint8_t checksum(const void *p, uint64_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;
	while (len--)
		sum += *b++;
	return sum;
}

/*
 * Returns the table at addr once its signature and checksum hold and it lies outside
 * RAM (tables in RAM would be fair game for the OS's allocator), or NULL after a FAIL line.
 */
static const struct acpi_sdt *table_at(const struct tg_boot *b, uint64_t addr, const char sig[4], const char *check)
{
	if (!addr || addr + sizeof(struct acpi_sdt) > LAYOUT_MMIO_GAP_START) {
		tg_fail(check, "%.4s pointer 0x%lx is unusable", sig, addr);
		return NULL;
	}
	const struct acpi_sdt *t = (const struct acpi_sdt *)addr;
	if (memcmp(t->signature, sig, 4)) {
		tg_fail(check, "table at 0x%lx has signature %c%c%c%c, expected %.4s", addr, t->signature[0],
			t->signature[1], t->signature[2], t->signature[3], sig);
		return NULL;
	}
	if (t->length < sizeof(*t) || t->length > 0x100000 || addr + t->length > LAYOUT_MMIO_GAP_START) {
		tg_fail(check, "%.4s at 0x%lx has bad length %u", sig, addr, t->length);
		return NULL;
	}
	if (checksum(t, t->length)) {
		tg_fail(check, "%.4s at 0x%lx: checksum does not add up to 0", sig, addr);
		return NULL;
	}
	if (tg_touches_ram(b, addr, t->length)) {
		tg_fail(check, "%.4s at 0x%lx (%u bytes) lies in RAM", sig, addr, t->length);
		return NULL;
	}
	return t;
}

/* Finds \_S5's first package element (SLP_TYPa) in the DSDT's AML, or returns -1. */
static int dsdt_s5_type(const struct acpi_sdt *dsdt)
{
	const uint8_t *aml = (const uint8_t *)dsdt + sizeof(*dsdt);
	uint32_t n = dsdt->length - sizeof(*dsdt);
	for (uint32_t i = 1; i + 8 < n; i++) {
		if (memcmp(aml + i, "_S5_", 4))
			continue;
		if (aml[i - 1] != AML_NAME_OP && !(aml[i - 1] == '\\' && i >= 2 && aml[i - 2] == AML_NAME_OP))
			continue;
		uint32_t at = i + 4;
		if (aml[at++] != AML_PACKAGE_OP)
			return -1;
		at += 1 + (aml[at] >> 6); /* PkgLength: lead byte plus 0-3 more */
		at++;                     /* NumElements */
		if (at + 1 >= n)
			return -1;
		switch (aml[at]) {
		case AML_ZERO_OP: return 0;
		case AML_ONE_OP: return 1;
		case AML_BYTE_PREFIX: return aml[at + 1];
		default: return -1;
		}
	}
	return -1;
}

static bool contains(const struct acpi_sdt *t, const char *s)
{
	size_t len = strlen(s);
	const uint8_t *p = (const uint8_t *)t;
	for (uint32_t i = 0; i + len <= t->length; i++)
		if (!memcmp(p + i, s, len))
			return true;
	return false;
}

static void check_fadt(const struct tg_boot *b, const struct acpi_fadt *f, struct tg_acpi_info *ai)
{
	if (f->hdr.length < __builtin_offsetof(struct acpi_fadt, x_pm1a_evt_blk)) {
		tg_fail("fadt", "length %u: too short for X_DSDT (ACPI 2.0+)", f->hdr.length);
		return;
	}
	/* The contract (vmm/x86/layout.h): fixed-hardware ACPI, PM1a event and control blocks. */
	if (f->flags & ACPI_FADT_HW_REDUCED)
		tg_fail("fadt", "HW_REDUCED_ACPI is set; padcell describes fixed-hardware PM1a blocks");
	else if (f->pm1a_evt_blk != LAYOUT_ACPI_PM1_EVT || f->pm1_evt_len != 4)
		tg_fail("fadt", "PM1a_EVT_BLK 0x%x len %u, expected 0x%x len 4", f->pm1a_evt_blk, f->pm1_evt_len,
			LAYOUT_ACPI_PM1_EVT);
	else if (f->pm1a_cnt_blk != LAYOUT_ACPI_PM1_CNT || f->pm1_cnt_len != 2)
		tg_fail("fadt", "PM1a_CNT_BLK 0x%x len %u, expected 0x%x len 2", f->pm1a_cnt_blk, f->pm1_cnt_len,
			LAYOUT_ACPI_PM1_CNT);
	else if (f->x_pm1a_cnt_blk.address &&
		 (f->x_pm1a_cnt_blk.space_id != ACPI_GAS_SYSTEM_IO || f->x_pm1a_cnt_blk.address != LAYOUT_ACPI_PM1_CNT))
		tg_fail("fadt", "X_PM1a_CNT_BLK space %u address 0x%lx disagrees with PM1a_CNT_BLK",
			f->x_pm1a_cnt_blk.space_id, f->x_pm1a_cnt_blk.address);
	else if (f->x_pm1a_evt_blk.address &&
		 (f->x_pm1a_evt_blk.space_id != ACPI_GAS_SYSTEM_IO || f->x_pm1a_evt_blk.address != LAYOUT_ACPI_PM1_EVT))
		tg_fail("fadt", "X_PM1a_EVT_BLK space %u address 0x%lx disagrees with PM1a_EVT_BLK",
			f->x_pm1a_evt_blk.space_id, f->x_pm1a_evt_blk.address);
	else if (f->sci_int != LAYOUT_ACPI_SCI_IRQ)
		tg_fail("fadt", "SCI_INT %u, expected %u", f->sci_int, LAYOUT_ACPI_SCI_IRQ);
	else if (f->smi_cmd)
		tg_fail("fadt", "SMI_CMD 0x%x: padcell has no SMM, ACPI must start enabled", f->smi_cmd);
	else if (!(inw((uint16_t)f->pm1a_cnt_blk) & PM1_CNT_SCI_EN))
		tg_fail("fadt", "PM1a_CNT at 0x%x reads without SCI_EN: ACPI mode is off", f->pm1a_cnt_blk);
	else
		tg_ok("fadt", "rev %u, flags 0x%x, PM1a_EVT 0x%x/4, PM1a_CNT 0x%x/2 (SCI_EN set), SCI %u", f->hdr.revision,
		      f->flags, f->pm1a_evt_blk, f->pm1a_cnt_blk, f->sci_int);
	ai->pm1a_cnt = (uint16_t)f->pm1a_cnt_blk;

	uint64_t dsdt_addr = f->x_dsdt ? f->x_dsdt : f->dsdt;
	if (f->x_dsdt && f->dsdt && f->dsdt != f->x_dsdt)
		tg_fail("dsdt", "DSDT 0x%x and X_DSDT 0x%lx disagree", f->dsdt, f->x_dsdt);
	const struct acpi_sdt *dsdt = table_at(b, dsdt_addr, "DSDT", "dsdt");
	if (!dsdt)
		return;
	int s5 = dsdt_s5_type(dsdt);
	if (s5 != LAYOUT_ACPI_S5_TYPE)
		tg_fail("dsdt", "\\_S5 SLP_TYPa is %d, expected %d", s5, LAYOUT_ACPI_S5_TYPE);
	else if (!contains(dsdt, "QEMU0001"))
		tg_fail("dsdt", "no pvpanic device (_HID QEMU0001)");
	else
		tg_ok("dsdt", "at 0x%lx, %u bytes, \\_S5 = %d, pvpanic declared", dsdt_addr, dsdt->length, s5);
	if (s5 >= 0)
		ai->slp_typ = (uint16_t)s5;
}

static unsigned bsp_apic_id(void)
{
	uint32_t a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	return b >> 24;
}

static void check_madt(const struct acpi_madt *m, const struct tg_params *p, struct tg_acpi_info *ai)
{
	uint8_t seen[256 / 8] = { 0 };
	unsigned enabled = 0, bsp = bsp_apic_id();
	bool bsp_listed = false;
	const uint8_t *at = (const uint8_t *)(m + 1), *end = (const uint8_t *)m + m->hdr.length;
	while (at + sizeof(struct acpi_madt_entry) <= end) {
		const struct acpi_madt_entry *e = (const struct acpi_madt_entry *)at;
		if (e->length < 2 || at + e->length > end) {
			tg_fail("madt", "entry at offset %lu has bad length %u", (unsigned long)(at - (const uint8_t *)m),
				e->length);
			return;
		}
		uint32_t id = 0, flags = 0;
		bool cpu = false;
		if (e->type == ACPI_MADT_LAPIC && e->length >= sizeof(struct acpi_madt_lapic)) {
			const struct acpi_madt_lapic *l = (const struct acpi_madt_lapic *)e;
			id = l->apic_id, flags = l->flags, cpu = true;
		} else if (e->type == ACPI_MADT_X2APIC && e->length >= sizeof(struct acpi_madt_x2apic)) {
			const struct acpi_madt_x2apic *x = (const struct acpi_madt_x2apic *)e;
			id = x->x2apic_id, flags = x->flags, cpu = true;
		}
		if (cpu && (flags & ACPI_MADT_ENABLED)) {
			if (id > 255 || (seen[id / 8] & (1u << (id % 8)))) {
				tg_fail("madt", "APIC ID %u listed twice (or out of range)", id);
				return;
			}
			seen[id / 8] |= (uint8_t)(1u << (id % 8));
			ai->apic_ids[enabled++] = (uint8_t)id;
			ai->ncpus = enabled;
			bsp_listed |= id == bsp;
		}
		at += e->length;
	}
	if (m->lapic_address != (uint32_t)LAYOUT_LAPIC_ADDR)
		tg_fail("madt", "local APIC address 0x%x, expected 0x%lx", m->lapic_address,
			(uint64_t)LAYOUT_LAPIC_ADDR);
	else if (p->cpus && enabled != p->cpus)
		tg_fail("madt", "%u enabled local APICs, expected tg.cpus=%u", enabled, p->cpus);
	else if (!bsp_listed)
		tg_fail("madt", "this CPU's APIC ID %u is not listed", bsp);
	else
		tg_ok("madt", "%u enabled local APICs with distinct IDs (this CPU: %u)%s", enabled, bsp,
		      p->cpus ? "" : " (no tg.cpus to compare with)");
}

void tg_check_acpi(const struct tg_boot *b, const struct tg_params *p, struct tg_acpi_info *ai)
{
	if (!b->rsdp || b->rsdp + sizeof(struct acpi_rsdp) > LAYOUT_MMIO_GAP_START) {
		tg_fail("rsdp", "no usable RSDP address (0x%lx)", b->rsdp);
		return;
	}
	const struct acpi_rsdp *r = (const struct acpi_rsdp *)b->rsdp;
	if (memcmp(r->signature, "RSD PTR ", 8)) {
		tg_fail("rsdp", "no \"RSD PTR \" signature at 0x%lx", b->rsdp);
		return;
	}
	if (checksum(r, 20)) {
		tg_fail("rsdp", "checksum over the first 20 bytes is not 0");
		return;
	}
	if (r->revision < 2 || r->length < sizeof(*r) || checksum(r, r->length)) {
		tg_fail("rsdp", "revision %u length %u: not a valid ACPI 2.0 RSDP", r->revision, r->length);
		return;
	}
	if (tg_touches_ram(b, b->rsdp, r->length)) {
		tg_fail("rsdp", "at 0x%lx lies in RAM", b->rsdp);
		return;
	}
	tg_ok("rsdp", "at 0x%lx, revision %u, both checksums, XSDT 0x%lx", b->rsdp, r->revision, r->xsdt_address);

	const struct acpi_sdt *xsdt = table_at(b, r->xsdt_address, "XSDT", "xsdt");
	if (!xsdt)
		return;
	if (r->rsdt_address && !table_at(b, r->rsdt_address, "RSDT", "rsdt"))
		return;
	const struct acpi_fadt *fadt = NULL;
	const struct acpi_madt *madt = NULL;
	unsigned n = (xsdt->length - sizeof(*xsdt)) / 8;
	const uint8_t *ent = (const uint8_t *)(xsdt + 1);
	for (unsigned i = 0; i < n; i++) {
		uint64_t addr;
		memcpy(&addr, ent + 8 * i, 8);
		if (!addr || addr + sizeof(struct acpi_sdt) > LAYOUT_MMIO_GAP_START) {
			tg_fail("xsdt", "entry %u points at 0x%lx", i, addr);
			continue;
		}
		const struct acpi_sdt *t = (const struct acpi_sdt *)addr;
		if (!table_at(b, addr, t->signature, "xsdt"))
			continue;
		if (!memcmp(t->signature, "FACP", 4))
			fadt = (const struct acpi_fadt *)t;
		else if (!memcmp(t->signature, "APIC", 4))
			madt = (const struct acpi_madt *)t;
	}
	tg_ok("xsdt", "%u tables, each checksum ok", n);
	if (!fadt)
		tg_fail("fadt", "XSDT lists no FACP");
	else
		check_fadt(b, fadt, ai);
	if (!madt)
		tg_fail("madt", "XSDT lists no APIC table");
	else if (madt->hdr.length < sizeof(*madt))
		tg_fail("madt", "too short (%u bytes)", madt->hdr.length);
	else
		check_madt(madt, p, ai);
}
