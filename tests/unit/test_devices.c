/* i8042, pvpanic and ACPI PM1a on a fake bus, each with a fake host recording events. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "devices/acpi_pm.h"
#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/pvpanic.h"
#include "tests/unit/fake_host.h"
#include "vmm/x86/layout.h"

static struct fake_host fh;
static struct bus b;

static uint8_t in8(uint64_t port)
{
	uint8_t v = 0;
	cr_assert(bus_read(&b, port, &v, 1), "port 0x%llx unclaimed", (unsigned long long)port);
	return v;
}

static void out8(uint64_t port, uint8_t v) { cr_assert(bus_write(&b, port, &v, 1)); }

static uint16_t in16(uint64_t port)
{
	uint16_t v = 0;
	cr_assert(bus_read(&b, port, &v, 2));
	return v;
}

static void out16(uint64_t port, uint16_t v) { cr_assert(bus_write(&b, port, &v, 2)); }

/* ---- i8042 ---- */

#define KBD_DATA LAYOUT_I8042_DATA_PORT
#define KBD_CMD  LAYOUT_I8042_CMD_PORT
#define ST_OBF   0x01

static struct i8042 kbd;

static void kbd_setup(void)
{
	fake_host_init(&fh);
	bus_init(&b);
	i8042_init(&kbd, &fh.host);
	cr_assert_eq(bus_register(&b, KBD_DATA, I8042_RANGE_LEN, &i8042_ops, &kbd, "i8042"), 0);
}

static void kbd_teardown(void) { i8042_destroy(&kbd); }

TestSuite(i8042, .init = kbd_setup, .fini = kbd_teardown);

Test(i8042, status_at_reset)
{
	uint8_t st = in8(KBD_CMD);
	cr_assert_eq(st & ST_OBF, 0, "nothing to read");
	cr_assert(st & 0x04, "system flag: self-test passed");
	cr_assert_eq(fh.nevents, 0);
}

Test(i8042, self_test)
{
	out8(KBD_CMD, 0xaa);
	cr_assert(in8(KBD_CMD) & ST_OBF);
	cr_assert(in8(KBD_CMD) & 0x08, "last write went to the command port");
	cr_assert_eq(in8(KBD_DATA), 0x55);
	cr_assert_eq(in8(KBD_CMD) & ST_OBF, 0, "reading data empties the output buffer");
	out8(KBD_CMD, 0xab);
	cr_assert_eq(in8(KBD_DATA), 0x00, "keyboard interface test passes");
	cr_assert_eq(fh.nevents, 0);
}

Test(i8042, command_byte_read_write)
{
	out8(KBD_CMD, 0x20);
	cr_assert_eq(in8(KBD_DATA), 0x45, "reset command byte");
	out8(KBD_CMD, 0x60);
	out8(KBD_DATA, 0x61);
	cr_assert_eq(in8(KBD_CMD) & 0x08, 0, "last write went to the data port");
	out8(KBD_CMD, 0x20);
	cr_assert_eq(in8(KBD_DATA), 0x61);
	out8(KBD_CMD, 0xad); /* disable keyboard: command byte bit 4 */
	out8(KBD_CMD, 0x20);
	cr_assert_eq(in8(KBD_DATA), 0x71);
	cr_assert_eq(fh.nevents, 0);
}

Test(i8042, pulse_fe_resets)
{
	out8(KBD_CMD, 0xfe);
	cr_assert_eq(fh.nevents, 1);
	cr_assert_eq(fh.events[0], DEV_EVENT_RESET);
}

Test(i8042, write_output_port_reset_line)
{
	out8(KBD_CMD, 0xd1);
	out8(KBD_DATA, 0x03); /* reset high, A20 on */
	cr_assert_eq(fh.nevents, 0, "bit 0 set: no reset");
	out8(KBD_CMD, 0xd0);
	cr_assert_eq(in8(KBD_DATA), 0x03, "output port reads back");
	out8(KBD_CMD, 0xd1);
	out8(KBD_DATA, 0x02); /* reset line driven low */
	cr_assert_eq(fh.nevents, 1);
	cr_assert_eq(fh.events[0], DEV_EVENT_RESET);
}

Test(i8042, other_pulses_do_not_reset)
{
	const uint8_t harmless[] = { 0xff, 0xfd, 0xfb, 0xf7, 0xf1, 0xad, 0xae, 0xa7, 0xa8, 0x20, 0xaa };
	for (size_t i = 0; i < sizeof(harmless); i++) {
		out8(KBD_CMD, harmless[i]);
		cr_assert_eq(fh.nevents, 0, "command 0x%02x reset the guest", harmless[i]);
		in8(KBD_DATA);
	}
	out8(KBD_CMD, 0xf0); /* pulses all four lines, the reset line among them */
	cr_assert_eq(fh.nevents, 1);
}

Test(i8042, keyboard_command_is_acked)
{
	out8(KBD_DATA, 0xf4); /* enable scanning, to the keyboard itself */
	cr_assert(in8(KBD_CMD) & ST_OBF);
	cr_assert_eq(in8(KBD_DATA), 0xfa);
	cr_assert_eq(fh.nevents, 0);
}

/*
 * Regression (found by this test, fixed in 1fbbd57): a command written to port 0x64
 * while the controller still waits for the data byte of 0xd1 (or 0x60/0xd4) must
 * start the new command and drop the wait, as the 8042 does.  The model kept
 * pending_cmd, so the next byte for the keyboard (0xf4, "enable scanning") was taken
 * as the output-port value, whose bit 0 is clear: the guest was reset.
 */
Test(i8042, regression_new_command_cancels_pending_parameter)
{
	out8(KBD_CMD, 0xd1); /* write output port: parameter follows ... */
	out8(KBD_CMD, 0xaa); /* ... but a new command comes instead      */
	cr_assert_eq(in8(KBD_DATA), 0x55);
	out8(KBD_DATA, 0xf4); /* a keyboard command, not an output-port value */
	cr_assert_eq(fh.nevents, 0, "keyboard byte after an abandoned 0xd1 reset the guest");
	cr_assert_eq(in8(KBD_DATA), 0xfa, "the keyboard byte was not acknowledged");
}

/* ---- pvpanic ---- */

static struct pvpanic pvp;

static void pvp_setup(void)
{
	fake_host_init(&fh);
	bus_init(&b);
	pvpanic_init(&pvp, &fh.host);
	cr_assert_eq(bus_register(&b, LAYOUT_PVPANIC_PORT, 1, &pvpanic_ops, &pvp, "pvpanic"), 0);
}

TestSuite(pvpanic, .init = pvp_setup);

Test(pvpanic, read_advertises_features)
{
	cr_assert_eq(in8(LAYOUT_PVPANIC_PORT), 0x03, "PANICKED | CRASH_LOADED");
}

Test(pvpanic, panicked_raises_event)
{
	out8(LAYOUT_PVPANIC_PORT, 1);
	cr_assert_eq(fh.nevents, 1);
	cr_assert_eq(fh.events[0], DEV_EVENT_PANIC);
}

Test(pvpanic, crash_loaded_is_no_event)
{
	out8(LAYOUT_PVPANIC_PORT, 2);
	cr_assert_eq(fh.nevents, 0);
	cr_assert_eq(pvp.crash_loaded, 1);
	out8(LAYOUT_PVPANIC_PORT, 0);
	cr_assert_eq(fh.nevents, 0);
}

/* ---- ACPI PM1a ---- */

#define PM1_STS LAYOUT_ACPI_PM1_EVT
#define PM1_EN  (LAYOUT_ACPI_PM1_EVT + 2)
#define PM1_CNT LAYOUT_ACPI_PM1_CNT
#define SLP_EN  (1u << 13)
#define SLP_TYP(t) ((unsigned)(t) << 10)

static struct acpi_pm pm;

static void pm_setup(void)
{
	fake_host_init(&fh);
	bus_init(&b);
	acpi_pm_init(&pm, &fh.host);
	cr_assert_eq(bus_register(&b, LAYOUT_ACPI_PM1_EVT, LAYOUT_ACPI_PM_LEN, &acpi_pm_ops, &pm, "pm"), 0);
}

static void pm_teardown(void) { acpi_pm_destroy(&pm); }

TestSuite(acpi_pm, .init = pm_setup, .fini = pm_teardown);

Test(acpi_pm, layout_is_consistent)
{
	cr_assert_eq(LAYOUT_ACPI_PM1_CNT, LAYOUT_ACPI_PM1_EVT + 4, "control block follows the 4-byte event block");
	cr_assert_eq(LAYOUT_ACPI_S5_TYPE, 5);
}

Test(acpi_pm, s5_word_write_powers_off)
{
	out16(PM1_CNT, SLP_EN | SLP_TYP(LAYOUT_ACPI_S5_TYPE)); /* 0x3400, what Linux writes */
	cr_assert_eq(fh.nevents, 1);
	cr_assert_eq(fh.events[0], DEV_EVENT_POWEROFF);
}

Test(acpi_pm, s5_byte_0x34_to_high_byte_powers_off)
{
	out8(PM1_CNT + 1, 0x34);
	cr_assert_eq(fh.nevents, 1);
	cr_assert_eq(fh.events[0], DEV_EVENT_POWEROFF);
}

Test(acpi_pm, slp_en_with_other_type_does_nothing)
{
	for (unsigned t = 0; t < 8; t++) {
		if (t == LAYOUT_ACPI_S5_TYPE)
			continue;
		out16(PM1_CNT, SLP_EN | SLP_TYP(t));
		cr_assert_eq(fh.nevents, 0, "SLP_TYP %u", t);
	}
}

Test(acpi_pm, s5_type_without_slp_en_does_nothing)
{
	out16(PM1_CNT, SLP_TYP(LAYOUT_ACPI_S5_TYPE));
	cr_assert_eq(fh.nevents, 0);
	out8(PM1_CNT + 1, 0x14);
	cr_assert_eq(fh.nevents, 0);
}

Test(acpi_pm, event_block_write_is_not_poweroff)
{
	/* 0x34 to the first port was the old hardware-reduced sleep control; now it is PM1a_STS. */
	out8(PM1_STS, 0x34);
	out8(PM1_STS + 1, 0x34);
	out16(PM1_EN, 0x3400);
	cr_assert_eq(fh.nevents, 0);
}

Test(acpi_pm, control_reads)
{
	cr_assert_eq(in16(PM1_CNT) & 1, 1, "SCI_EN: ACPI mode is always on");
	out16(PM1_CNT, SLP_TYP(3));
	uint16_t v = in16(PM1_CNT);
	cr_assert_eq(v & SLP_EN, 0, "SLP_EN reads as zero");
	cr_assert_eq(v & SLP_TYP(7), SLP_TYP(3));
	cr_assert_eq(v & 1, 1, "SCI_EN cannot be cleared");
	out16(PM1_EN, 0x0121);
	cr_assert_eq(in16(PM1_EN), 0x0121);
	cr_assert_eq(in16(PM1_STS), 0);
}
