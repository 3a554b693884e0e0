/* tg.case=count: counts in memory and on the serial line, for snapshot/restore tests on the host. */
#include "tg.h"
#include "vmm/x86/layout.h"

/*
 * Each step writes the count into a static and into one of 64 pages at 16 MiB (so the
 * snapshot has guest memory worth saving), spins a while, checks both copies and that the TSC
 * did not run backwards, and prints "COUNT n".  A snapshot restored anywhere in the run must
 * carry on from where it was: the host compares the output before the snapshot plus the
 * restored run's output with the uninterrupted run's.  With tg.reread=N each step also reads back
 * and checks the next N pages of the tg.fill area, cyclically, and prints "count: fill checked"
 * after every full pass (so clones restored from one snapshot really read its memory).
 */
#define COUNT_AREA    (16ULL << 20)
#define COUNT_PAGES   64
#define FILL_AREA     (32ULL << 20)
#define COUNT_DEFAULT 300
#define SPIN_DEFAULT  3000

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

void tg_count(const struct tg_params *p)
{
	static volatile uint64_t count;
	uint64_t n = p->count ? p->count : COUNT_DEFAULT;
	uint64_t spin = p->spin ? p->spin : SPIN_DEFAULT;
	if (p->mem && p->mem < COUNT_AREA + COUNT_PAGES * 4096ULL) {
		tg_fail("count", "needs more than %u MiB of RAM", (unsigned)(COUNT_AREA >> 20));
		return;
	}
	if (p->fill && p->mem && p->mem < FILL_AREA + (p->fill << 20)) {
		tg_fail("count", "tg.fill=%lu does not fit in RAM", (unsigned long)p->fill);
		return;
	}
	/* One non-zero word per page is enough to make every page count in a snapshot. */
	for (uint64_t off = 0; off < (p->fill << 20); off += 4096)
		*(volatile uint64_t *)(uintptr_t)(FILL_AREA + off) = off | 1;
	if (p->fill)
		tg_printf("count: filled %lu MiB\n", (unsigned long)p->fill);
	volatile uint64_t *area = (volatile uint64_t *)(uintptr_t)COUNT_AREA;
	uint64_t last_tsc = rdtsc();
	uint64_t fill_pages = p->fill << 8, next = 0;
	for (count = 1; count <= n; count++) {
		volatile uint64_t *slot = area + (count % COUNT_PAGES) * 512;
		slot[0] = count;
		slot[1] = ~count;
		for (volatile uint64_t i = 0; i < spin; i++)
			;
		if (slot[0] != count || slot[1] != ~count) {
			tg_fail("count", "memory lost the count at %lu (%lu)", (unsigned long)count, (unsigned long)slot[0]);
			return;
		}
		uint64_t t = rdtsc();
		if (t < last_tsc) {
			tg_fail("count", "TSC went backwards at %lu (0x%lx -> 0x%lx)", (unsigned long)count,
				(unsigned long)last_tsc, (unsigned long)t);
			return;
		}
		last_tsc = t;
		for (uint64_t k = 0; k < p->reread && fill_pages; k++) {
			uint64_t off = next << 12;
			uint64_t v = *(volatile uint64_t *)(uintptr_t)(FILL_AREA + off);
			if (v != (off | 1)) {
				tg_fail("count", "fill page at 0x%lx holds 0x%lx", (unsigned long)(FILL_AREA + off), (unsigned long)v);
				return;
			}
			if (++next == fill_pages) {
				next = 0;
				tg_printf("count: fill checked\n");
			}
		}
		tg_printf("COUNT %lu\n", (unsigned long)count);
		if (p->panic_at && count == p->panic_at) {
			/* tg.panicat: the guest dies in the middle of its work, through pvpanic */
			tg_printf("panic: at COUNT %lu, writing 1 to port 0x%x\n", (unsigned long)count, LAYOUT_PVPANIC_PORT);
			tg_panic();
		}
	}
	/* Every page still holds the last count written to it. */
	for (uint64_t i = 0; i < COUNT_PAGES && i < n; i++) {
		uint64_t want = n - ((n - i) % COUNT_PAGES);
		volatile uint64_t *slot = area + i * 512;
		if (want >= 1 && (slot[0] != want || slot[1] != ~want)) {
			tg_fail("count", "page %lu holds %lu, not %lu", (unsigned long)i, (unsigned long)slot[0],
				(unsigned long)want);
			return;
		}
	}
	tg_ok("count", "%lu counted", (unsigned long)n);
}
