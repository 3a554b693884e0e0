/* Split virtqueue walking on a real guest_mem: good chains, indirect tables, and every malformed chain. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "tests/unit/vring.h"

static struct guest_mem mem;
static struct tv tv;
static struct virtq q;
static struct virtq_chain c;

static void setup_num(uint16_t num)
{
	cr_assert_eq(gmem_init(&mem, TV_MEM), 0);
	tv = (struct tv){ .m = &mem, .num = num };
	cr_assert_eq(tv_enable(&tv, &q, false), 0);
}
static void setup(void) { setup_num(8); }
static void teardown(void) { gmem_destroy(&mem); }

TestSuite(virtq, .init = setup, .fini = teardown);

/* Pops one chain and expects it to be refused for `why`. */
static void expect_bad(enum virtq_err why)
{
	int rc = virtq_pop(&q, &mem, &c);
	cr_assert_eq(rc, -(int)why, "got %d (%s), want %s", rc, rc < 0 ? virtq_strerror(-rc) : "ok",
		     virtq_strerror(why));
}

Test(virtq, empty_ring_pops_nothing)
{
	cr_assert_eq(virtq_pop(&q, &mem, &c), 0);
}

Test(virtq, direct_chain_readable_then_writable)
{
	tv_desc(&tv, 3, TV_BUF, 16, VRING_DESC_F_NEXT, 5);
	tv_desc(&tv, 5, TV_BUF + 0x1000, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 0);
	tv_desc(&tv, 0, TV_BUF + 0x2000, 1, VRING_DESC_F_WRITE, 0);
	tv_avail(&tv, 3);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	cr_assert_eq(c.head, 3);
	cr_assert_eq(c.nseg, 3);
	cr_assert_eq(c.nread, 1);
	cr_assert_eq(c.read_len, 16);
	cr_assert_eq(c.write_len, 513);
	cr_assert_eq(c.seg[0].host, gmem_ptr(&mem, TV_BUF, 16));
	cr_assert(c.seg[1].writable && c.seg[2].writable && !c.seg[0].writable);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 0, "one chain was offered");

	virtq_push(&q, 3, 513);
	cr_assert_eq(tv_used_idx(&tv), 1);
	struct vring_used_elem e = tv_used_elem(&tv, 0);
	cr_assert_eq(e.id, 3);
	cr_assert_eq(e.len, 513);
}

Test(virtq, several_chains_in_order_and_index_wrap)
{
	/* Start the free-running indices just below 2^16: they must wrap cleanly. */
	tv.avail_idx = 0xfffe;
	gmem_write(&mem, TV_AVAIL + 2, &tv.avail_idx, 2);
	q.last_avail = q.used_idx = q.signalled_used = 0xfffe;
	for (uint16_t i = 0; i < 4; i++) {
		tv_desc(&tv, i, TV_BUF + 0x1000 * i, 64, 0, 0);
		tv_avail(&tv, i);
	}
	for (uint16_t i = 0; i < 4; i++) {
		cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
		cr_assert_eq(c.head, i);
		virtq_push(&q, c.head, 0);
	}
	cr_assert_eq(virtq_pop(&q, &mem, &c), 0);
	cr_assert_eq(tv_used_idx(&tv), 2);
}

Test(virtq, indirect_table)
{
	uint64_t table = TV_BUF + 0x10000;
	tv_idesc(&tv, table, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 1);
	tv_idesc(&tv, table, 1, TV_BUF + 0x1000, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	tv_idesc(&tv, table, 2, TV_BUF + 0x3000, 1, VRING_DESC_F_WRITE, 0);
	tv_desc(&tv, 2, table, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	tv_avail(&tv, 2);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	cr_assert_eq(c.head, 2);
	cr_assert_eq(c.nseg, 3);
	cr_assert_eq(c.nread, 1);
	cr_assert_eq(c.write_len, 4097);
}

Test(virtq, direct_descriptors_then_indirect_table)
{
	uint64_t table = TV_BUF + 0x10000;
	tv_idesc(&tv, table, 0, TV_BUF + 0x1000, 8, VRING_DESC_F_WRITE, 0);
	tv_desc(&tv, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 1);
	tv_desc(&tv, 1, table, 16, VRING_DESC_F_INDIRECT, 0);
	tv_avail(&tv, 0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	cr_assert_eq(c.nseg, 2);
	cr_assert_eq(c.nread, 1);
}

Test(virtq, chain_as_long_as_the_queue_is_fine)
{
	for (uint16_t i = 0; i < 8; i++)
		tv_desc(&tv, i, TV_BUF + 0x100 * i, 0x100, i < 7 ? VRING_DESC_F_NEXT : 0, i + 1);
	tv_avail(&tv, 0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	cr_assert_eq(c.nseg, 8);
}

/* ---- malformed chains: each is refused, the monitor carries on ---- */

Test(virtq, descriptor_loop)
{
	tv_desc(&tv, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 1);
	tv_desc(&tv, 1, TV_BUF, 16, VRING_DESC_F_NEXT, 0);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_LOOP);
}

Test(virtq, descriptor_self_loop)
{
	tv_desc(&tv, 4, TV_BUF, 16, VRING_DESC_F_NEXT, 4);
	tv_avail(&tv, 4);
	expect_bad(VIRTQ_E_LOOP);
}

Test(virtq, loop_inside_indirect_table)
{
	uint64_t table = TV_BUF + 0x10000;
	tv_idesc(&tv, table, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 1);
	tv_idesc(&tv, table, 1, TV_BUF, 16, VRING_DESC_F_NEXT, 0);
	tv_desc(&tv, 0, table, 32, VRING_DESC_F_INDIRECT, 0);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_LOOP);
}

Test(virtq, address_outside_guest_memory)
{
	tv_desc(&tv, 0, TV_MEM - 8, 16, 0, 0); /* straddles the end of RAM */
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_ADDR);
	tv_desc(&tv, 1, 0xd0000000ULL, 4, 0, 0); /* MMIO gap */
	tv_avail(&tv, 1);
	expect_bad(VIRTQ_E_ADDR);
	tv_desc(&tv, 2, 0xfffffffffffffff0ULL, 0x20, 0, 0); /* wraps */
	tv_avail(&tv, 2);
	expect_bad(VIRTQ_E_ADDR);
}

Test(virtq, length_overruns_memory)
{
	tv_desc(&tv, 0, TV_BUF, 0xffffffffu, VRING_DESC_F_WRITE, 0);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_ADDR);
}

Test(virtq, chain_total_over_4gib)
{
	/* Needs more than 4 GiB of RAM to be expressible: 5 GiB, never touched (NORESERVE). */
	gmem_destroy(&mem);
	cr_assert_eq(gmem_init(&mem, 5ULL << 30), 0);
	cr_assert_eq(tv_enable(&tv, &q, false), 0);
	tv_desc(&tv, 0, TV_BUF, 0xbf000000u, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	tv_desc(&tv, 1, 0x100000000ULL, 0x7fffffffu, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	tv_desc(&tv, 2, 0x100000000ULL, 0x7fffffffu, VRING_DESC_F_WRITE, 0);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_OVERFLOW);
}

Test(virtq, zero_length_buffer)
{
	tv_desc(&tv, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 1);
	tv_desc(&tv, 1, TV_BUF + 0x1000, 0, VRING_DESC_F_WRITE, 0);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_ZERO_LEN);
}

Test(virtq, too_many_segments_in_indirect_table)
{
	/* A table longer than the queue is a chain longer than the queue (2.7.5.3.1). */
	uint64_t table = TV_BUF + 0x10000;
	for (uint16_t i = 0; i < 9; i++)
		tv_idesc(&tv, table, i, TV_BUF, 16, i < 8 ? VRING_DESC_F_NEXT : 0, i + 1);
	tv_desc(&tv, 0, table, 9 * 16, VRING_DESC_F_INDIRECT, 0);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_INDIRECT);
}

Test(virtq, too_many_segments_direct_plus_indirect)
{
	uint64_t table = TV_BUF + 0x10000;
	for (uint16_t i = 0; i < 8; i++)
		tv_idesc(&tv, table, i, TV_BUF, 16, i < 7 ? VRING_DESC_F_NEXT : 0, i + 1);
	tv_desc(&tv, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 1);
	tv_desc(&tv, 1, table, 8 * 16, VRING_DESC_F_INDIRECT, 0);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_LOOP); /* 9 buffers in an 8-entry queue */
}

Test(virtq, next_index_out_of_range)
{
	tv_desc(&tv, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 8);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_NEXT);
	uint64_t table = TV_BUF + 0x10000;
	tv_idesc(&tv, table, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 2); /* table has 2 entries */
	tv_desc(&tv, 1, table, 32, VRING_DESC_F_INDIRECT, 0);
	tv_avail(&tv, 1);
	expect_bad(VIRTQ_E_NEXT);
}

Test(virtq, head_index_out_of_range)
{
	tv_avail(&tv, 8);
	expect_bad(VIRTQ_E_HEAD);
	tv_avail(&tv, 0xffff);
	expect_bad(VIRTQ_E_HEAD);
}

Test(virtq, avail_index_too_far_ahead)
{
	uint16_t idx = 9; /* 9 new buffers in an 8-entry ring */
	gmem_write(&mem, TV_AVAIL + 2, &idx, 2);
	expect_bad(VIRTQ_E_AVAIL_IDX);
}

Test(virtq, readable_after_writable)
{
	/* The device would read a buffer the driver meant it to write into, or vice versa. */
	tv_desc(&tv, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 1);
	tv_desc(&tv, 1, TV_BUF + 0x1000, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2);
	tv_desc(&tv, 2, TV_BUF + 0x2000, 512, 0, 0);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_ORDER);
}

Test(virtq, nested_indirect)
{
	uint64_t t1 = TV_BUF + 0x10000, t2 = TV_BUF + 0x11000;
	tv_idesc(&tv, t2, 0, TV_BUF, 16, 0, 0);
	tv_idesc(&tv, t1, 0, t2, 16, VRING_DESC_F_INDIRECT, 0);
	tv_desc(&tv, 0, t1, 16, VRING_DESC_F_INDIRECT, 0);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_INDIRECT);
}

Test(virtq, indirect_table_bad_length)
{
	uint64_t table = TV_BUF + 0x10000;
	tv_idesc(&tv, table, 0, TV_BUF, 16, 0, 0);
	tv_desc(&tv, 0, table, 24, VRING_DESC_F_INDIRECT, 0); /* not a multiple of 16 */
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_INDIRECT);
	tv_desc(&tv, 1, table, 0, VRING_DESC_F_INDIRECT, 0);  /* empty */
	tv_avail(&tv, 1);
	expect_bad(VIRTQ_E_INDIRECT);
	tv_desc(&tv, 2, TV_MEM - 16, 32, VRING_DESC_F_INDIRECT, 0); /* past RAM */
	tv_avail(&tv, 2);
	expect_bad(VIRTQ_E_ADDR);
}

Test(virtq, indirect_with_next_flag)
{
	uint64_t table = TV_BUF + 0x10000;
	tv_idesc(&tv, table, 0, TV_BUF, 16, 0, 0);
	tv_desc(&tv, 0, table, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	tv_desc(&tv, 1, TV_BUF, 16, 0, 0);
	tv_avail(&tv, 0);
	expect_bad(VIRTQ_E_INDIRECT);
}

Test(virtq, bad_chain_is_consumed_and_the_next_one_works)
{
	tv_desc(&tv, 0, TV_BUF, 16, VRING_DESC_F_NEXT, 0);
	tv_avail(&tv, 0);
	tv_desc(&tv, 1, TV_BUF, 16, 0, 0);
	tv_avail(&tv, 1);
	expect_bad(VIRTQ_E_LOOP);
	cr_assert_eq(c.head, 0, "the refused chain is named");
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	cr_assert_eq(c.head, 1);
}

/* ---- setup, notification suppression, stream copies ---- */

Test(virtq, enable_checks_size_alignment_and_memory)
{
	struct virtq bad;
	virtq_reset(&bad);
	bad.desc_gpa = TV_DESC, bad.avail_gpa = TV_AVAIL, bad.used_gpa = TV_USED;
	uint16_t nums[] = { 0, 3, 12, 512 };
	for (unsigned i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		bad.num = nums[i];
		cr_assert_neq(virtq_enable(&bad, &mem, false), 0, "num %u", nums[i]);
		cr_assert_not(bad.ready);
	}
	bad.num = 256;
	cr_assert_eq(virtq_enable(&bad, &mem, false), 0);
	bad.ready = false;
	bad.desc_gpa = TV_DESC + 8; /* descriptor table must be 16-aligned */
	cr_assert_neq(virtq_enable(&bad, &mem, false), 0);
	bad.desc_gpa = TV_DESC;
	bad.used_gpa = TV_USED + 2; /* used ring 4-aligned */
	cr_assert_neq(virtq_enable(&bad, &mem, false), 0);
	bad.used_gpa = TV_MEM - 64; /* runs past RAM */
	cr_assert_neq(virtq_enable(&bad, &mem, false), 0);
	bad.used_gpa = TV_USED;
	bad.avail_gpa = 0xd0000000ULL;
	cr_assert_neq(virtq_enable(&bad, &mem, false), 0);
}

Test(virtq, interrupt_suppression_without_event_idx)
{
	tv_desc(&tv, 0, TV_BUF, 16, 0, 0);
	tv_avail(&tv, 0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	cr_assert_not(virtq_should_interrupt(&q), "nothing pushed yet");
	virtq_push(&q, 0, 0);
	cr_assert(virtq_should_interrupt(&q));
	cr_assert_not(virtq_should_interrupt(&q), "already signalled");
	uint16_t flags = VRING_AVAIL_F_NO_INTERRUPT;
	gmem_write(&mem, TV_AVAIL, &flags, 2);
	virtq_push(&q, 0, 0);
	cr_assert_not(virtq_should_interrupt(&q), "driver said no interrupts");
}

Test(virtq, event_idx_used_event_and_avail_event)
{
	cr_assert_eq(tv_enable(&tv, &q, true), 0);
	uint16_t used_event = 1; /* interrupt once used idx passes 1, i.e. on the second completion */
	gmem_write(&mem, TV_AVAIL + 4 + 2 * 8, &used_event, 2);
	for (uint16_t i = 0; i < 3; i++) {
		tv_desc(&tv, i, TV_BUF, 16, 0, 0);
		tv_avail(&tv, i);
	}
	bool irq[3];
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
		virtq_push(&q, c.head, 0);
		irq[i] = virtq_should_interrupt(&q);
	}
	cr_assert(!irq[0] && irq[1] && !irq[2], "interrupts %d %d %d", irq[0], irq[1], irq[2]);
	/* An empty pop tells the driver where to kick next: avail_event = 3. */
	cr_assert_eq(virtq_pop(&q, &mem, &c), 0);
	uint16_t avail_event;
	gmem_read(&mem, TV_USED + 4 + 8 * 8, &avail_event, 2);
	cr_assert_eq(avail_event, 3);
}

Test(virtq, chain_stream_copies_cross_segments)
{
	tv_desc(&tv, 0, TV_BUF, 3, VRING_DESC_F_NEXT, 1);
	tv_desc(&tv, 1, TV_BUF + 0x10, 5, VRING_DESC_F_NEXT, 2);
	tv_desc(&tv, 2, TV_BUF + 0x20, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 3);
	tv_desc(&tv, 3, TV_BUF + 0x30, 4, VRING_DESC_F_WRITE, 0);
	gmem_write(&mem, TV_BUF, "abc", 3);
	gmem_write(&mem, TV_BUF + 0x10, "defgh", 5);
	tv_avail(&tv, 0);
	cr_assert_eq(virtq_pop(&q, &mem, &c), 1);
	char buf[16] = { 0 };
	cr_assert_eq(virtq_chain_read(&c, 1, buf, 6), 6);
	cr_assert_str_eq(buf, "bcdefg");
	cr_assert_eq(virtq_chain_read(&c, 6, buf, 16), 2, "only 8 readable bytes");
	cr_assert_eq(virtq_chain_write(&c, 2, "WXYZ", 4), 4);
	char w[4];
	gmem_read(&mem, TV_BUF + 0x22, w, 2);
	cr_assert_eq(memcmp(w, "WX", 2), 0);
	gmem_read(&mem, TV_BUF + 0x30, w, 2);
	cr_assert_eq(memcmp(w, "YZ", 2), 0);
	cr_assert_eq(virtq_chain_write(&c, 7, "!!", 2), 1, "clipped at the end");
}

/* ---- random rings: whatever the guest writes, a popped chain lies entirely in RAM ---- */

static uint64_t fuzz_state = 0x2545f4914f6cdd1dULL;
static uint64_t fuzz(void)
{
	fuzz_state ^= fuzz_state << 13;
	fuzz_state ^= fuzz_state >> 7;
	fuzz_state ^= fuzz_state << 17;
	return fuzz_state;
}

/* Addresses near the interesting edges: RAM start and end, the gap, wrap-around. */
static uint64_t fuzz_addr(void)
{
	static const uint64_t edges[] = { 0, TV_BUF, TV_MEM - 0x100, TV_MEM, 0xc0000000ULL, 0xfffffffffffff000ULL,
					  TV_DESC, TV_BUF + 0x10000 };
	return edges[fuzz() % 8] + (fuzz() % 0x200) - 0x100;
}

Test(virtq, random_rings_never_escape_ram)
{
	uint64_t table = TV_BUF + 0x10000;
	unsigned popped = 0, refused = 0;
	for (unsigned round = 0; round < 20000; round++) {
		for (uint16_t i = 0; i < 8; i++) {
			uint16_t flags = fuzz() & (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE | VRING_DESC_F_INDIRECT);
			if (fuzz() % 4) /* mostly valid-looking buffers, sometimes indirect tables */
				flags &= ~VRING_DESC_F_INDIRECT;
			uint64_t a = fuzz() % 3 ? TV_BUF + (fuzz() % 0x1000) : fuzz_addr();
			uint32_t len = fuzz() % 5 ? (uint32_t)(fuzz() % 0x2000) : (uint32_t)fuzz();
			if (flags & VRING_DESC_F_INDIRECT)
				a = fuzz() % 2 ? table : a, len = fuzz() % 2 ? 16 * (uint32_t)(fuzz() % 10) : len;
			tv_desc(&tv, i, a, len, flags, (uint16_t)(fuzz() % 10));
			tv_idesc(&tv, table, i, fuzz_addr(), (uint32_t)(fuzz() % 0x300), (uint16_t)fuzz(),
				 (uint16_t)(fuzz() % 10));
		}
		tv_avail(&tv, (uint16_t)(fuzz() % 9));
		int rc = virtq_pop(&q, &mem, &c);
		cr_assert_neq(rc, 0, "an offered chain is popped or refused");
		if (rc < 0) {
			refused++;
			continue;
		}
		popped++;
		cr_assert_leq(c.nseg, q.num);
		uint64_t total = 0;
		for (unsigned k = 0; k < c.nseg; k++) {
			const uint8_t *p = c.seg[k].host;
			cr_assert(p >= mem.host && p + c.seg[k].len <= mem.host + mem.size, "segment %u escapes RAM", k);
			cr_assert_eq(c.seg[k].writable, k >= c.nread, "readable segments come first");
			total += c.seg[k].len;
		}
		cr_assert_eq(total, c.read_len + c.write_len);
	}
	cr_assert_gt(popped, 100, "the fuzzer also makes good chains (%u)", popped);
	cr_assert_gt(refused, 100, "and bad ones (%u)", refused);
}
