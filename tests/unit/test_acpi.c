/* ACPI tables as the guest's OS sees them: found from the RSDP, parsed by spec offsets. */
#include <criterion/criterion.h>
#include <string.h>

#include "vmm/x86/acpi.h"
#include "vmm/x86/layout.h"
#include "vmm/mem.h"

static struct guest_mem m;
static void setup(void) { cr_assert_eq(gmem_init(&m, 64 << 20), 0); }
static void teardown(void) { gmem_destroy(&m); }
TestSuite(acpi, .init = setup, .fini = teardown);

/* Field offsets from the ACPI 6 specification (FADT table 5-34, MADT 5-43). */
#define HDR_LEN            36
#define FADT_FIRMWARE_CTRL 36
#define FADT_DSDT          40
#define FADT_SCI_INT       46
#define FADT_SMI_CMD       48
#define FADT_PM1A_EVT_BLK  56
#define FADT_PM1A_CNT_BLK  64
#define FADT_PM_TMR_BLK    76
#define FADT_PM1_EVT_LEN   88
#define FADT_PM1_CNT_LEN   89
#define FADT_FLAGS         112
#define FADT_X_FIRMWARE_CTRL 132
#define FADT_X_DSDT        140
#define FADT_X_PM1A_EVT    148
#define FADT_X_PM1A_CNT    172
#define FADT_SLEEP_CONTROL 244
#define FADT_SLEEP_STATUS  256
#define FADT_HW_REDUCED    (1u << 20)
#define GAS_SYSTEM_IO      1

static uint8_t rd8(const uint8_t *p, size_t off) { return p[off]; }
static uint16_t rd16(const uint8_t *p, size_t off) { uint16_t v; memcpy(&v, p + off, 2); return v; }
static uint32_t rd32(const uint8_t *p, size_t off) { uint32_t v; memcpy(&v, p + off, 4); return v; }
static uint64_t rd64(const uint8_t *p, size_t off) { uint64_t v; memcpy(&v, p + off, 8); return v; }

/* A table at gpa: inside the ACPI area, right signature, checksum summing to zero. */
static const uint8_t *table(uint64_t gpa, const char *sig)
{
	const uint8_t *h = gmem_ptr(&m, gpa, HDR_LEN);
	cr_assert_not_null(h, "%s at 0x%llx not in RAM", sig, (unsigned long long)gpa);
	cr_assert_arr_eq(h, sig, 4, "signature at 0x%llx", (unsigned long long)gpa);
	uint32_t len = rd32(h, 4);
	cr_assert_geq(len, HDR_LEN, "%s length", sig);
	cr_assert_geq(gpa, LAYOUT_ACPI_START, "%s below the ACPI area", sig);
	cr_assert_leq(gpa + len, LAYOUT_ACPI_END, "%s past the ACPI area", sig);
	cr_assert_eq(acpi_checksum(h, len), 0, "%s checksum", sig);
	return h;
}

struct tables {
	const uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt;
};

static struct tables find_tables(uint64_t rsdp_gpa)
{
	struct tables t = { 0 };
	t.rsdp = gmem_ptr(&m, rsdp_gpa, 36);
	cr_assert_not_null(t.rsdp);
	cr_assert_arr_eq(t.rsdp, "RSD PTR ", 8);
	cr_assert_eq(rsdp_gpa % 16, 0, "RSDP on a 16-byte boundary");
	cr_assert(rsdp_gpa >= 0xe0000 && rsdp_gpa < 0x100000, "RSDP in the BIOS area the OS scans");
	cr_assert_eq(acpi_checksum(t.rsdp, 20), 0, "RSDP 20-byte checksum");
	cr_assert_eq(rd8(t.rsdp, 15), 2, "RSDP revision 2");
	cr_assert_eq(rd32(t.rsdp, 20), 36, "RSDP length");
	cr_assert_eq(acpi_checksum(t.rsdp, 36), 0, "RSDP extended checksum");

	t.xsdt = table(rd64(t.rsdp, 24), "XSDT");
	uint32_t n = (rd32(t.xsdt, 4) - HDR_LEN) / 8;
	cr_assert_eq(n, 2, "XSDT entries");
	for (uint32_t i = 0; i < n; i++) {
		uint64_t at = rd64(t.xsdt, HDR_LEN + 8 * i);
		const uint8_t *h = gmem_ptr(&m, at, 4);
		cr_assert_not_null(h);
		if (!memcmp(h, "FACP", 4))
			t.fadt = table(at, "FACP");
		else if (!memcmp(h, "APIC", 4))
			t.madt = table(at, "APIC");
		else
			cr_assert_fail("unexpected table %.4s in the XSDT", (const char *)h);
	}
	cr_assert_not_null(t.fadt, "XSDT lists FACP");
	cr_assert_not_null(t.madt, "XSDT lists APIC");
	t.dsdt = table(rd64(t.fadt, FADT_X_DSDT), "DSDT");
	return t;
}

static void check_gas_io(const uint8_t *gas, uint16_t port, uint8_t bits, const char *what)
{
	cr_assert_eq(rd8(gas, 0), GAS_SYSTEM_IO, "%s: system I/O space", what);
	cr_assert_eq(rd8(gas, 1), bits, "%s: bit width", what);
	cr_assert_eq(rd64(gas, 4), port, "%s: port", what);
}

static void check_fadt(const uint8_t *f)
{
	cr_assert_eq(rd32(f, 4), 276, "FADT revision 6 length");
	cr_assert_eq(rd8(f, 8), 6, "FADT revision");
	/* Since f8573e0 the platform is fixed-hardware with PM1a blocks, deliberately not HW_REDUCED. */
	cr_assert_eq(rd32(f, FADT_FLAGS) & FADT_HW_REDUCED, 0, "HW_REDUCED must be clear with PM1a blocks");
	cr_assert_eq(rd32(f, FADT_PM1A_EVT_BLK), LAYOUT_ACPI_PM1_EVT);
	cr_assert_eq(rd8(f, FADT_PM1_EVT_LEN), 4);
	cr_assert_eq(rd32(f, FADT_PM1A_CNT_BLK), LAYOUT_ACPI_PM1_CNT);
	cr_assert_eq(rd8(f, FADT_PM1_CNT_LEN), 2);
	check_gas_io(f + FADT_X_PM1A_EVT, LAYOUT_ACPI_PM1_EVT, 32, "X_PM1a_EVT_BLK");
	check_gas_io(f + FADT_X_PM1A_CNT, LAYOUT_ACPI_PM1_CNT, 16, "X_PM1a_CNT_BLK");
	cr_assert_eq(rd32(f, FADT_SMI_CMD), 0, "no SMI command port: ACPI mode is already on");
	cr_assert_eq(rd16(f, FADT_SCI_INT), LAYOUT_ACPI_SCI_IRQ);
	cr_assert_eq(rd32(f, FADT_PM_TMR_BLK), 0);
	/* Sleep registers are for hardware-reduced platforms only. */
	cr_assert_eq(rd64(f, FADT_SLEEP_CONTROL + 4), 0, "no sleep control register");
	cr_assert_eq(rd64(f, FADT_SLEEP_STATUS + 4), 0, "no sleep status register");
	cr_assert_eq(rd32(f, FADT_DSDT), rd64(f, FADT_X_DSDT), "DSDT and X_DSDT agree");

	/* A fixed-hardware platform needs a FACS. */
	uint64_t facs = rd64(f, FADT_X_FIRMWARE_CTRL);
	cr_assert_neq(facs, 0);
	cr_assert_eq(rd32(f, FADT_FIRMWARE_CTRL), facs);
	cr_assert_eq(facs % 64, 0, "FACS 64-byte aligned");
	const uint8_t *fc = gmem_ptr(&m, facs, 64);
	cr_assert_arr_eq(fc, "FACS", 4);
	cr_assert_geq(rd32(fc, 4), 64);
}

/*
 * The AML must agree with layout.h: Name(_S5, Package(){ S5_TYPE, ... }) and the
 * pvpanic device's I/O port.  Both are written by hand in vmm/x86/dsdt.asl.
 */
static void check_dsdt(const uint8_t *d)
{
	uint32_t len = rd32(d, 4);
	cr_assert_gt(len, HDR_LEN, "DSDT has AML");
	cr_assert_geq(rd8(d, 8), 2, "DSDT revision 2: 64-bit integers");

	const uint8_t *s5 = memmem(d, len, "_S5_", 4);
	cr_assert_not_null(s5, "DSDT declares \\_S5");
	cr_assert_eq(s5[-1], 0x08, "_S5_ is a Name()");
	cr_assert_eq(s5[4], 0x12, "_S5 is a Package");
	/* PackageOp PkgLength NumElements, then the first element: SLP_TYP for PM1a. */
	const uint8_t *el = s5 + 7;
	unsigned typ = el[0] == 0x0a ? el[1] : el[0] == 0x00 ? 0 : el[0] == 0x01 ? 1 : 0xff;
	cr_assert_eq(typ, LAYOUT_ACPI_S5_TYPE, "\\_S5 SLP_TYP matches LAYOUT_ACPI_S5_TYPE");

	cr_assert_not_null(memmem(d, len, "QEMU0001", 8), "DSDT declares pvpanic");
	/* Small I/O port descriptor: 0x47, decode16, min, max, align, length 1. */
	const uint8_t io[] = { 0x47, 0x01, LAYOUT_PVPANIC_PORT & 0xff, LAYOUT_PVPANIC_PORT >> 8,
			       LAYOUT_PVPANIC_PORT & 0xff, LAYOUT_PVPANIC_PORT >> 8 };
	cr_assert_not_null(memmem(d, len, io, sizeof(io)), "pvpanic _CRS names LAYOUT_PVPANIC_PORT");
}

static void check_madt(const uint8_t *madt, unsigned ncpus)
{
	uint32_t len = rd32(madt, 4);
	cr_assert_eq(rd32(madt, 36), LAYOUT_LAPIC_ADDR, "local APIC address");
	unsigned lapics = 0, ioapics = 0;
	uint8_t seen[256] = { 0 };
	uint8_t ioapic_id = 0;
	uint32_t off = 44;
	while (off < len) {
		cr_assert_leq(off + 2, len);
		uint8_t type = madt[off], elen = madt[off + 1];
		cr_assert_geq(elen, 2, "MADT entry length at %u", off);
		cr_assert_leq(off + elen, len, "MADT entry past the table end");
		if (type == 0) {
			cr_assert_eq(elen, 8);
			uint8_t id = madt[off + 3];
			cr_assert_eq(rd32(madt, off + 4) & 1, 1, "LAPIC %u enabled", id);
			cr_assert_not(seen[id], "APIC ID %u twice", id);
			cr_assert_neq(id, 0xff, "0xff is broadcast");
			seen[id] = 1;
			lapics++;
		} else if (type == 1) {
			cr_assert_eq(elen, 12);
			ioapic_id = madt[off + 2];
			cr_assert_eq(rd32(madt, off + 4), LAYOUT_IOAPIC_ADDR);
			cr_assert_eq(rd32(madt, off + 8), 0, "GSI base 0");
			ioapics++;
		}
		off += elen;
	}
	cr_assert_eq(off, len, "entries end exactly at the table end");
	cr_assert_eq(lapics, ncpus, "one enabled LAPIC per vCPU");
	cr_assert_eq(ioapics, 1);
	cr_assert_not(seen[ioapic_id], "I/O APIC ID collides with a CPU's APIC ID");
}

static void check_all(unsigned ncpus)
{
	uint64_t rsdp = 0;
	cr_assert_eq(acpi_build(&m, ncpus, &rsdp), 0);
	struct tables t = find_tables(rsdp);
	check_fadt(t.fadt);
	check_dsdt(t.dsdt);
	check_madt(t.madt, ncpus);
}

Test(acpi, one_cpu) { check_all(1); }
Test(acpi, two_cpus) { check_all(2); }
Test(acpi, max_cpus) { check_all(ACPI_MAX_CPUS); cr_assert_eq(ACPI_MAX_CPUS, 254); }

Test(acpi, bad_cpu_counts)
{
	uint64_t rsdp = 0;
	cr_assert_neq(acpi_build(&m, 0, &rsdp), 0);
	cr_assert_neq(acpi_build(&m, 255, &rsdp), 0);
	cr_assert_neq(acpi_build(&m, 100000, &rsdp), 0);
}

Test(acpi, rebuild_is_deterministic)
{
	uint64_t a = 0, b = 0;
	cr_assert_eq(acpi_build(&m, 4, &a), 0);
	uint8_t first[0x20000];
	memcpy(first, gmem_ptr(&m, LAYOUT_ACPI_START, sizeof(first)), sizeof(first));
	cr_assert_eq(acpi_build(&m, 4, &b), 0);
	cr_assert_eq(a, b);
	cr_assert_eq(memcmp(first, gmem_ptr(&m, LAYOUT_ACPI_START, sizeof(first)), sizeof(first)), 0);
}

Test(acpi_checksum, sums_bytes)
{
	const uint8_t z[4] = { 0x10, 0xf0, 0x01, 0xff };
	cr_assert_eq(acpi_checksum(z, 2), 0);
	cr_assert_eq(acpi_checksum(z, 4), 0);
	cr_assert_eq(acpi_checksum(z, 3), 1);
	cr_assert_eq(acpi_checksum(z, 0), 0);
}
