/* SMP check: wake every application processor with INIT/SIPI/SIPI, one at a time, and wait until each runs C
 * in long mode. */
#include "smp.h"
#include "tg.h"
#include "vmm/x86/layout.h"

/* Local APIC registers (Intel SDM vol. 3, 11.4.1), memory-mapped at LAYOUT_LAPIC_ADDR. */
#define APIC_ID      0x020
#define APIC_SVR     0x0f0
#define APIC_ICR_LO  0x300
#define APIC_ICR_HI  0x310
#define APIC_SVR_ENABLE      0x100
#define APIC_ICR_BUSY        (1u << 12) /* delivery status: send pending */
#define APIC_ICR_INIT        0x00004500 /* INIT, level assert            */
#define APIC_ICR_STARTUP     0x00004600 /* start-up IPI, vector in 7:0   */

#define AP_ALIVE 0x61766961u /* "aiva": written by the AP once it runs C */

extern const uint8_t tg_tramp_start[], tg_tramp_end[];
extern uint32_t tg_tramp_cr3;
extern uint64_t tg_ap_stack; /* the stack top trampoline.S loads for the next AP */

/* Written by the AP being woken, polled by the BSP; APs start strictly one after another. */
static volatile uint32_t ap_alive;
static volatile uint32_t ap_apic_id;
extern uint8_t tg_ap_stacks[TG_AP_MAX][TG_AP_STACK]; /* trampoline.S */

static volatile uint32_t *apic_reg(unsigned off)
{
	return (volatile uint32_t *)(LAYOUT_LAPIC_ADDR + off);
}

static uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

void tg_ap_main(void);
void tg_ap_main(void)
{
	uint32_t a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	ap_apic_id = b >> 24;
	__atomic_store_n(&ap_alive, AP_ALIVE, __ATOMIC_RELEASE);
	/* Returns to trampoline.S, which halts with interrupts off: no host CPU spent until the VM ends. */
}

static bool icr_send(uint32_t dest, uint32_t cmd)
{
	*apic_reg(APIC_ICR_HI) = dest << 24;
	*apic_reg(APIC_ICR_LO) = cmd;
	for (unsigned i = 0; i < 100000; i++)
		if (!(*apic_reg(APIC_ICR_LO) & APIC_ICR_BUSY))
			return true;
	return false;
}

/* Wakes one AP and waits for it; returns the TSC cycles it took, or 0 after a FAIL line. */
static uint64_t ap_wake(unsigned target, unsigned slot)
{
	tg_ap_stack = (uint64_t)&tg_ap_stacks[slot][TG_AP_STACK];
	ap_apic_id = ~0u;
	__atomic_store_n(&ap_alive, 0, __ATOMIC_RELEASE);

	/* SDM 8.4.4.1: INIT, then two start-up IPIs; KVM drops the second if the first worked. */
	const uint32_t sipi = APIC_ICR_STARTUP | (TG_TRAMP_ADDR >> 12);
	if (!icr_send(target, APIC_ICR_INIT) || !icr_send(target, sipi) || !icr_send(target, sipi)) {
		tg_fail("smp", "local APIC ICR stayed busy waking APIC ID %u", target);
		return 0;
	}
	/* About two seconds at any plausible TSC rate; an AP normally answers in milliseconds. */
	uint64_t start = rdtsc(), cycles;
	while (__atomic_load_n(&ap_alive, __ATOMIC_ACQUIRE) != AP_ALIVE && rdtsc() - start < 5000000000ULL)
		cpu_relax();
	cycles = rdtsc() - start;
	if (ap_alive != AP_ALIVE) {
		tg_fail("smp", "APIC ID %u did not reach long mode after INIT/SIPI/SIPI", target);
		return 0;
	}
	if (ap_apic_id != target) {
		tg_fail("smp", "woke APIC ID %u but the CPU that answered reports %u", target, ap_apic_id);
		return 0;
	}
	return cycles ? cycles : 1;
}

void tg_check_smp(const struct tg_boot *b, const struct tg_acpi_info *ai)
{
	uint64_t cr3_64;
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3_64));
	uint32_t cr3 = (uint32_t)cr3_64;
	size_t len = (size_t)(tg_tramp_end - tg_tramp_start);

	if (ai->ncpus < 2) {
		tg_fail("smp", "needs at least 2 CPUs in the MADT, found %u", ai->ncpus);
		return;
	}
	if (!tg_in_ram(b, TG_TRAMP_ADDR, 4096) || len > 4096 || cr3_64 >= 0x100000000ULL) {
		tg_fail("smp", "cannot place the start-up page at 0x%x (or CR3 0x%lx is above 4 GiB)", TG_TRAMP_ADDR,
			cr3_64);
		return;
	}
	uint8_t *page = (uint8_t *)TG_TRAMP_ADDR;
	memcpy(page, tg_tramp_start, len);
	memcpy(page + ((const uint8_t *)&tg_tramp_cr3 - tg_tramp_start), &cr3, 4);
	*apic_reg(APIC_SVR) |= APIC_SVR_ENABLE;

	unsigned bsp = *apic_reg(APIC_ID) >> 24, woken = 0;
	uint64_t worst = 0;
	for (unsigned i = 0; i < ai->ncpus && woken < TG_AP_MAX; i++) {
		if (ai->apic_ids[i] == bsp)
			continue;
		uint64_t cycles = ap_wake(ai->apic_ids[i], woken);
		if (!cycles)
			return;
		if (cycles > worst)
			worst = cycles;
		woken++;
	}
	if (woken + 1 != ai->ncpus && woken < TG_AP_MAX)
		tg_fail("smp", "the MADT does not list this CPU (APIC ID %u)", bsp);
	else
		tg_ok("smp", "BSP %u woke %u APs via 0x%x: each reached long mode and ran C (slowest %lu K TSC cycles)",
		      bsp, woken, TG_TRAMP_ADDR, worst / 1000);
}
