/* gmem_ptr: the one checked guest-address translation, at every edge of RAM and the MMIO gap. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

#include "vmm/x86/layout.h"
#include "vmm/mem.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static struct guest_mem m;

static void small_setup(void) { cr_assert_eq(gmem_init(&m, 64 * MiB), 0); }
static void big_setup(void) { cr_assert_eq(gmem_init(&m, 4 * GiB), 0); } /* NORESERVE: cheap */
static void teardown(void) { gmem_destroy(&m); }

TestSuite(gmem_small, .init = small_setup, .fini = teardown);
TestSuite(gmem_big, .init = big_setup, .fini = teardown);

Test(gmem_small, sizes_after_init)
{
	cr_assert_eq(m.size, 64 * MiB);
	cr_assert_eq(gmem_low_end(&m), 64 * MiB);
	cr_assert_eq(gmem_high_size(&m), 0);
	uint8_t *p = gmem_ptr(&m, 0x1234, 16);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(p[i], 0, "fresh guest memory must read as zero");
}

Test(gmem_small, inside_low_ram)
{
	cr_assert_eq(gmem_ptr(&m, 0, 1), m.host);
	cr_assert_eq(gmem_ptr(&m, 0x1000, 0x1000), m.host + 0x1000);
	cr_assert_eq(gmem_ptr(&m, 0, 64 * MiB), m.host, "all of RAM in one range");
}

Test(gmem_small, exact_end_boundaries)
{
	cr_assert_eq(gmem_ptr(&m, 64 * MiB - 1, 1), m.host + 64 * MiB - 1, "last byte");
	cr_assert_eq(gmem_ptr(&m, 64 * MiB - 8, 8), m.host + 64 * MiB - 8, "last 8 bytes");
	cr_assert_null(gmem_ptr(&m, 64 * MiB, 1), "first byte past RAM");
	cr_assert_null(gmem_ptr(&m, 0, 64 * MiB + 1), "one byte too long");
}

Test(gmem_small, straddling_the_end)
{
	cr_assert_null(gmem_ptr(&m, 64 * MiB - 1, 2));
	cr_assert_null(gmem_ptr(&m, 64 * MiB - 4096, 8192));
}

Test(gmem_small, len_zero_refused)
{
	cr_assert_null(gmem_ptr(&m, 0, 0));
	cr_assert_null(gmem_ptr(&m, 0x1000, 0));
}

Test(gmem_small, wrap_around)
{
	cr_assert_null(gmem_ptr(&m, UINT64_MAX, 1));
	cr_assert_null(gmem_ptr(&m, UINT64_MAX, 2), "gpa + len wraps to 0");
	cr_assert_null(gmem_ptr(&m, UINT64_MAX - 7, 16));
	cr_assert_null(gmem_ptr(&m, 1, UINT64_MAX), "len wraps past 0");
	cr_assert_null(gmem_ptr(&m, 0x1000, UINT64_MAX - 0x800));
	cr_assert_null(gmem_ptr(&m, 0, UINT64_MAX));
}

Test(gmem_small, nothing_above_4g_for_small_guest)
{
	cr_assert_null(gmem_ptr(&m, LAYOUT_MMIO_GAP_END, 1));
	cr_assert_null(gmem_ptr(&m, LAYOUT_MMIO_GAP_START, 1));
}

Test(gmem_small, read_write_copy_and_fault)
{
	const char msg[] = "padcell";
	cr_assert_eq(gmem_write(&m, 0x5000, msg, sizeof(msg)), 0);
	char back[sizeof(msg)];
	cr_assert_eq(gmem_read(&m, 0x5000, back, sizeof(back)), 0);
	cr_assert_str_eq(back, msg);
	cr_assert_str_eq((char *)m.host + 0x5000, msg);
	cr_assert_eq(gmem_write(&m, 64 * MiB - 2, msg, sizeof(msg)), -EFAULT);
	cr_assert_eq(gmem_read(&m, 64 * MiB, back, 1), -EFAULT);
	cr_assert_eq(gmem_read(&m, UINT64_MAX, back, 2), -EFAULT);
}

Test(gmem_big, split_around_the_gap)
{
	cr_assert_eq(gmem_low_end(&m), 3 * GiB);
	cr_assert_eq(gmem_high_size(&m), 1 * GiB);
}

Test(gmem_big, low_ram_end)
{
	cr_assert_eq(gmem_ptr(&m, 3 * GiB - 1, 1), m.host + 3 * GiB - 1);
	cr_assert_null(gmem_ptr(&m, 3 * GiB - 1, 2), "straddles into the MMIO gap");
	cr_assert_null(gmem_ptr(&m, 3 * GiB - 4096, 4097));
}

Test(gmem_big, gap_is_not_ram)
{
	cr_assert_null(gmem_ptr(&m, 3 * GiB, 1));
	cr_assert_null(gmem_ptr(&m, LAYOUT_IOAPIC_ADDR, 4));
	cr_assert_null(gmem_ptr(&m, LAYOUT_LAPIC_ADDR, 4));
	cr_assert_null(gmem_ptr(&m, LAYOUT_VIRTIO_MMIO_BASE, 0x200));
	cr_assert_null(gmem_ptr(&m, 4 * GiB - 1, 1));
	cr_assert_null(gmem_ptr(&m, 4 * GiB - 1, 2), "straddles from the gap into high RAM");
	cr_assert_null(gmem_ptr(&m, 0, 5 * GiB), "spans low RAM, gap and high RAM");
	cr_assert_null(gmem_ptr(&m, 3 * GiB - 1, GiB + 2));
}

Test(gmem_big, high_ram)
{
	/* RAM above the gap is the rest of the host mapping, right after low RAM. */
	cr_assert_eq(gmem_ptr(&m, 4 * GiB, 1), m.host + 3 * GiB);
	cr_assert_eq(gmem_ptr(&m, 4 * GiB, GiB), m.host + 3 * GiB, "all of high RAM");
	cr_assert_eq(gmem_ptr(&m, 5 * GiB - 1, 1), m.host + 4 * GiB - 1, "last byte");
	cr_assert_null(gmem_ptr(&m, 5 * GiB - 1, 2), "straddles the end of high RAM");
	cr_assert_null(gmem_ptr(&m, 5 * GiB, 1));
	cr_assert_null(gmem_ptr(&m, 4 * GiB, GiB + 1));
	cr_assert_null(gmem_ptr(&m, UINT64_MAX - 15, 16));
}

Test(gmem_big, high_ram_write_lands_after_low_ram)
{
	uint32_t v = 0xfeedc0de;
	cr_assert_eq(gmem_write(&m, 4 * GiB + 0x10, &v, sizeof(v)), 0);
	uint32_t back;
	memcpy(&back, m.host + 3 * GiB + 0x10, sizeof(back));
	cr_assert_eq(back, v);
	cr_assert_eq(gmem_write(&m, 3 * GiB, &v, sizeof(v)), -EFAULT);
}

Test(gmem_init, rejects_bad_sizes)
{
	struct guest_mem g;
	cr_assert_eq(gmem_init(&g, 0), -EINVAL);
	cr_assert_eq(gmem_init(&g, GMEM_MIN_SIZE - 4096), -EINVAL);
	cr_assert_eq(gmem_init(&g, 64 * MiB + 1), -EINVAL, "not a multiple of 4 KiB");
	cr_assert_eq(gmem_init(&g, GMEM_MAX_SIZE + 4096), -EINVAL);
	cr_assert_null(gmem_ptr(&g, 0, 1), "a failed init leaves no mapping");
}

Test(gmem_init, exactly_3g_has_no_high_ram)
{
	struct guest_mem g;
	cr_assert_eq(gmem_init(&g, 3 * GiB), 0);
	cr_assert_eq(gmem_low_end(&g), 3 * GiB);
	cr_assert_eq(gmem_high_size(&g), 0);
	cr_assert_not_null(gmem_ptr(&g, 3 * GiB - 1, 1));
	cr_assert_null(gmem_ptr(&g, 4 * GiB, 1));
	gmem_destroy(&g);
	cr_assert_null(gmem_ptr(&g, 0, 1), "destroyed memory translates nothing");
}
