/* Device checks by register behaviour: the 8250 UART at COM1 and the i8042 controller. */
#include <linux/serial_reg.h>

#include "tg.h"
#include "vmm/x86/layout.h"

#define COM1 LAYOUT_COM1_PORT
#define I8042_STATUS_OBF 0x01
#define I8042_CMD_READ_CMD_BYTE 0x20

/* Loopback with RTS and OUT2: the UART feeds them back as CTS and DCD (16550 datasheet). */
#define LOOP_MCR (UART_MCR_LOOP | UART_MCR_OUT2 | UART_MCR_RTS)
#define LOOP_MSR (UART_MSR_DCD | UART_MSR_CTS)

/* Nothing is printed while the UART is reconfigured; the verdict comes afterwards. */
void tg_check_serial(void)
{
	const char *why = NULL;
	unsigned got = 0;

	outb(COM1 + UART_SCR, 0xa5);
	uint8_t scr1 = inb(COM1 + UART_SCR);
	outb(COM1 + UART_SCR, 0x5a);
	uint8_t scr2 = inb(COM1 + UART_SCR);
	if (scr1 != 0xa5 || scr2 != 0x5a) {
		tg_fail("serial", "scratch register read back 0x%x/0x%x, wrote 0xa5/0x5a", scr1, scr2);
		return;
	}

	uint8_t lcr = inb(COM1 + UART_LCR);
	outb(COM1 + UART_LCR, lcr | UART_LCR_DLAB);
	uint8_t dll = inb(COM1 + UART_DLL), dlm = inb(COM1 + UART_DLM);
	outb(COM1 + UART_DLL, 0x0c); /* 9600 baud */
	outb(COM1 + UART_DLM, 0x00);
	uint8_t dll2 = inb(COM1 + UART_DLL), dlm2 = inb(COM1 + UART_DLM);
	outb(COM1 + UART_DLL, dll);
	outb(COM1 + UART_DLM, dlm);
	outb(COM1 + UART_LCR, lcr & ~UART_LCR_DLAB);
	if (dll2 != 0x0c || dlm2 != 0) {
		tg_fail("serial", "divisor latch read back 0x%x%02x, wrote 0x000c", dlm2, dll2);
		return;
	}

	uint8_t lsr = inb(COM1 + UART_LSR);
	if ((lsr & (UART_LSR_THRE | UART_LSR_TEMT)) != (UART_LSR_THRE | UART_LSR_TEMT)) {
		tg_fail("serial", "idle LSR 0x%x lacks THRE|TEMT", lsr);
		return;
	}
	uint8_t ier = inb(COM1 + UART_IER);
	uint8_t iir = inb(COM1 + UART_IIR);
	if (!(iir & UART_IIR_NO_INT) && !ier) {
		tg_fail("serial", "IIR 0x%x reports an interrupt with IER 0", iir);
		return;
	}
	if (!(iir & UART_IIR_NO_INT)) {
		tg_fail("serial", "IIR 0x%x reports an interrupt pending (IER 0x%x)", iir, ier);
		return;
	}

	uint8_t mcr = inb(COM1 + UART_MCR);
	outb(COM1 + UART_MCR, LOOP_MCR);
	uint8_t msr = inb(COM1 + UART_MSR);
	while (inb(COM1 + UART_LSR) & UART_LSR_DR) /* drain anything the host typed */
		(void)inb(COM1 + UART_RX);
	static const uint8_t probe[] = { 0x55, 0xaa, 0x00, 0xff };
	for (unsigned i = 0; i < sizeof(probe) && !why; i++) {
		outb(COM1 + UART_TX, probe[i]);
		unsigned spins = 0;
		while (!(inb(COM1 + UART_LSR) & UART_LSR_DR) && spins++ < 1000)
			cpu_relax();
		if (!(inb(COM1 + UART_LSR) & UART_LSR_DR)) {
			why = "loopback: LSR.DR never set";
			got = probe[i];
		} else if ((got = inb(COM1 + UART_RX)) != probe[i]) {
			why = "loopback: RBR returned a different byte";
			got = (got << 8) | probe[i];
		}
	}
	bool dr_after = inb(COM1 + UART_LSR) & UART_LSR_DR;
	outb(COM1 + UART_MCR, mcr);

	if (why) {
		tg_fail("serial", "%s (0x%x)", why, got);
		return;
	}
	if (dr_after) {
		tg_fail("serial", "loopback: LSR.DR still set after reading every byte");
		return;
	}
	if ((msr & 0xf0) != LOOP_MSR) {
		tg_fail("serial", "loopback with MCR 0x%x: MSR 0x%x, expected 0x%x in the top nibble", LOOP_MCR, msr,
			LOOP_MSR);
		return;
	}
	tg_ok("serial", "scratch, divisor latch, LSR 0x%x, IIR 0x%x, loopback of %u bytes, MSR 0x%x", lsr, iir,
	      (unsigned)sizeof(probe), msr);
}

void tg_check_i8042(void)
{
	uint8_t st = inb(LAYOUT_I8042_CMD_PORT);
	if (st == 0xff) {
		tg_fail("i8042", "status port reads 0xff: no controller");
		return;
	}
	while (inb(LAYOUT_I8042_CMD_PORT) & I8042_STATUS_OBF) /* stale output */
		(void)inb(LAYOUT_I8042_DATA_PORT);
	outb(LAYOUT_I8042_CMD_PORT, I8042_CMD_READ_CMD_BYTE);
	unsigned spins = 0;
	while (!(inb(LAYOUT_I8042_CMD_PORT) & I8042_STATUS_OBF) && spins++ < 1000)
		cpu_relax();
	if (!(inb(LAYOUT_I8042_CMD_PORT) & I8042_STATUS_OBF)) {
		tg_fail("i8042", "no answer to 'read command byte'");
		return;
	}
	uint8_t cmd = inb(LAYOUT_I8042_DATA_PORT);
	if (inb(LAYOUT_I8042_CMD_PORT) & I8042_STATUS_OBF) {
		tg_fail("i8042", "output buffer still full after reading it");
		return;
	}
	tg_ok("i8042", "status 0x%x, command byte 0x%x", st, cmd);
}
