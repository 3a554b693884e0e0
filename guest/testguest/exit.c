/* The ways the test guest ends its VM, each through the device the monitor watches. */
#include "tg.h"
#include "vmm/x86/layout.h"

#define I8042_PULSE_RESET 0xfe
#define PM1_CNT_SLP_EN    (1u << 13)
#define PM1_CNT_SLP_TYP_SHIFT 10

/*
 * A monitor stops the vCPU inside the port write that asks for the end, so the
 * code after each request only runs when the request was ignored (for example
 * under QEMU's microvm, which has no pvpanic or i8042): say so, then end the VM
 * the one way every x86 monitor notices, a triple fault.
 */
static __attribute__((noreturn)) void ignored(const char *what)
{
	for (unsigned i = 0; i < 1000; i++)
		cpu_relax();
	tg_printf("FAIL exit: %s was ignored, triple-faulting instead\n", what);
	tg_triple_fault();
}

void tg_triple_fault(void)
{
	/* With an empty IDT the #UD cannot be delivered: #GP, then #DF, then shutdown. */
	static const struct __attribute__((packed)) {
		uint16_t limit;
		uint64_t base;
	} empty_idt = { 0, 0 };
	__asm__ volatile("lidt %0" : : "m"(empty_idt));
	for (;;)
		__asm__ volatile("ud2");
}

void tg_panic(void)
{
	outb(LAYOUT_PVPANIC_PORT, 1); /* bit 0: guest panicked */
	ignored("pvpanic write");
}

void tg_reset(void)
{
	outb(LAYOUT_I8042_CMD_PORT, I8042_PULSE_RESET);
	ignored("i8042 reset pulse");
}

void tg_poweroff(uint16_t pm1a_cnt, uint16_t slp_typ)
{
	outw(pm1a_cnt, (uint16_t)((slp_typ << PM1_CNT_SLP_TYP_SHIFT) | PM1_CNT_SLP_EN));
	ignored("ACPI S5 request");
}
