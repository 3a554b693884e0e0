/* A polling virtio-blk driver (MMIO transport v2) for the KVM tier: no interrupts, the used ring is polled. */
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "pattern.h"
#include "tg.h"

#define QNUM        256 /* big enough to build a chain longer than seg_max + 2 */
#define WAIT_SPINS  1000000ul
#define SECTOR      512u

/* Rings and buffers: uncleared (.noclear) because clearing memory costs ~2 us a word under PVM. */
struct ring_mem {
	struct vring_desc desc[QNUM];                                   /* 4 KiB, 16-aligned  */
	struct { uint16_t flags, idx, ring[QNUM], used_event; } avail;
	uint8_t pad[4096 - (4 + 2 * QNUM + 2)];
	struct { uint16_t flags, idx; struct vring_used_elem ring[QNUM]; uint16_t avail_event; } used;
};
static struct ring_mem rings __attribute__((section(".noclear"), aligned(4096)));
static struct vring_desc itable[QNUM] __attribute__((section(".noclear"), aligned(16)));
static uint8_t buf[64 * 1024] __attribute__((section(".noclear"), aligned(4096)));
static struct virtio_blk_outhdr hdr __attribute__((section(".noclear"), aligned(16)));
static uint8_t status __attribute__((section(".noclear")));

struct vblk {
	uint64_t base;
	uint64_t features;   /* negotiated */
	uint64_t capacity;
	uint32_t seg_max;
	uint16_t avail_idx, used_seen;
};

static uint32_t mmio_rd(const struct vblk *d, uint32_t off) { return *(volatile uint32_t *)(d->base + off); }
static void mmio_wr(const struct vblk *d, uint32_t off, uint32_t v) { *(volatile uint32_t *)(d->base + off) = v; }
static uint64_t addr(const void *p) { return (uint64_t)p; } /* identity-mapped: virtual == physical */

/*
 * Reset, negotiate `want` (minus what is not offered; VERSION_1 always), set up queue 0
 * with QNUM entries, DRIVER_OK.  Returns NULL on success or what went wrong.
 */
static const char *vblk_init(struct vblk *d, uint64_t want)
{
	if (mmio_rd(d, VIRTIO_MMIO_MAGIC_VALUE) != 0x74726976)
		return "bad magic";
	if (mmio_rd(d, VIRTIO_MMIO_VERSION) != 2)
		return "not a version 2 transport";
	if (mmio_rd(d, VIRTIO_MMIO_DEVICE_ID) != 2)
		return "not a block device";
	mmio_wr(d, VIRTIO_MMIO_STATUS, 0);
	if (mmio_rd(d, VIRTIO_MMIO_STATUS) != 0)
		return "status not 0 after reset";
	mmio_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	mmio_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	mmio_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint64_t offered = mmio_rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
	mmio_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	offered |= (uint64_t)mmio_rd(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	if (!(offered & (1ULL << VIRTIO_F_VERSION_1)))
		return "VERSION_1 not offered";
	d->features = (want & offered) | (1ULL << VIRTIO_F_VERSION_1);
	mmio_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mmio_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)d->features);
	mmio_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
	uint32_t s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
	mmio_wr(d, VIRTIO_MMIO_STATUS, s);
	if (!(mmio_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK))
		return "FEATURES_OK refused";
	d->features |= offered & (1ULL << VIRTIO_BLK_F_RO); /* remember what the device said */

	mmio_wr(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	if (mmio_rd(d, VIRTIO_MMIO_QUEUE_READY))
		return "queue ready after reset";
	if (mmio_rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX) < QNUM)
		return "queue too small";
	rings.avail.flags = rings.avail.idx = rings.avail.used_event = 0;
	rings.used.flags = rings.used.idx = 0;
	d->avail_idx = d->used_seen = 0;
	mmio_wr(d, VIRTIO_MMIO_QUEUE_NUM, QNUM);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)addr(rings.desc));
	mmio_wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)addr(&rings.avail));
	mmio_wr(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)addr(&rings.used));
	mmio_wr(d, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
	mmio_wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
	mmio_wr(d, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
	if ((mmio_rd(d, VIRTIO_MMIO_STATUS) & 0xff) != (s | VIRTIO_CONFIG_S_DRIVER_OK))
		return "DRIVER_OK did not stick";
	uint32_t gen = mmio_rd(d, VIRTIO_MMIO_CONFIG_GENERATION);
	d->capacity = mmio_rd(d, VIRTIO_MMIO_CONFIG) | (uint64_t)mmio_rd(d, VIRTIO_MMIO_CONFIG + 4) << 32;
	d->seg_max = mmio_rd(d, VIRTIO_MMIO_CONFIG + 12);
	if (mmio_rd(d, VIRTIO_MMIO_CONFIG_GENERATION) != gen)
		return "config generation changed while nothing changed";
	return NULL;
}

enum wait_result { ANSWERED, NEEDS_RESET, TIMED_OUT };

/* Makes chain `head` available, kicks, and polls for its completion or for NEEDS_RESET. */
static enum wait_result vblk_submit(struct vblk *d, uint16_t head, uint32_t *used_len)
{
	rings.avail.ring[d->avail_idx % QNUM] = head;
	__asm__ volatile("" ::: "memory"); /* x86 keeps stores in order; the compiler must too */
	rings.avail.idx = ++d->avail_idx;
	__asm__ volatile("" ::: "memory");
	mmio_wr(d, VIRTIO_MMIO_QUEUE_NOTIFY, 0); /* always kick: a polling driver can afford it */
	for (unsigned long i = 0; i < WAIT_SPINS; i++) {
		if (*(volatile uint16_t *)&rings.used.idx != d->used_seen) {
			*used_len = rings.used.ring[d->used_seen % QNUM].len;
			d->used_seen++;
			return ANSWERED;
		}
		if (!(i & 63) && (mmio_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET))
			return NEEDS_RESET;
		cpu_relax();
	}
	return TIMED_OUT;
}

static void desc(struct vring_desc *t, unsigned i, const void *p, uint32_t len, uint16_t flags, uint16_t next)
{
	t[i] = (struct vring_desc){ .addr = addr(p), .len = len, .flags = flags, .next = next };
}

/* header, data (one or two descriptors), status; returns the status byte, or 0xff for no answer. */
static uint8_t vblk_rw(struct vblk *d, uint32_t type, uint64_t sector, void *data, uint32_t len, bool split)
{
	hdr = (struct virtio_blk_outhdr){ .type = type, .sector = sector };
	status = 0xff;
	uint16_t wr = type == VIRTIO_BLK_T_OUT ? 0 : VRING_DESC_F_WRITE;
	unsigned n = 0;
	desc(rings.desc, n, &hdr, sizeof(hdr), VRING_DESC_F_NEXT, n + 1), n++;
	if (len && split) {
		desc(rings.desc, n, data, len / 2, VRING_DESC_F_NEXT | wr, n + 1), n++;
		desc(rings.desc, n, (uint8_t *)data + len / 2, len - len / 2, VRING_DESC_F_NEXT | wr, n + 1), n++;
	} else if (len) {
		desc(rings.desc, n, data, len, VRING_DESC_F_NEXT | wr, n + 1), n++;
	}
	desc(rings.desc, n, &status, 1, VRING_DESC_F_WRITE, 0);
	uint32_t used;
	if (vblk_submit(d, 0, &used) != ANSWERED)
		return 0xff;
	return status;
}

/* The same request through an indirect table. */
static uint8_t vblk_rw_indirect(struct vblk *d, uint32_t type, uint64_t sector, void *data, uint32_t len)
{
	hdr = (struct virtio_blk_outhdr){ .type = type, .sector = sector };
	status = 0xff;
	uint16_t wr = type == VIRTIO_BLK_T_OUT ? 0 : VRING_DESC_F_WRITE;
	desc(itable, 0, &hdr, sizeof(hdr), VRING_DESC_F_NEXT, 1);
	desc(itable, 1, data, len, VRING_DESC_F_NEXT | wr, 2);
	desc(itable, 2, &status, 1, VRING_DESC_F_WRITE, 0);
	desc(rings.desc, 0, itable, 3 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	uint32_t used;
	if (vblk_submit(d, 0, &used) != ANSWERED)
		return 0xff;
	return status;
}

/* Byte i of the image at `off` follows the initrd pattern (pattern.h). */
static bool pattern_ok(const uint8_t *p, uint64_t off, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		if (p[i] != tg_pattern_byte(off + i))
			return false;
	return true;
}

static bool get_id(struct vblk *d, const char *want)
{
	char id[VIRTIO_BLK_ID_BYTES + 1];
	memset(id, 0, sizeof(id));
	if (vblk_rw(d, VIRTIO_BLK_T_GET_ID, 0, id, VIRTIO_BLK_ID_BYTES, false) != VIRTIO_BLK_S_OK)
		return false;
	return !strcmp(id, want);
}

static const uint64_t want_features = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_SIZE_MAX) |
				      (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES) |
				      (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | (1ULL << VIRTIO_RING_F_EVENT_IDX);

/* Device 0: the read-only image of tg.blk bytes holding the pattern. */
static void check_ro(struct vblk *d, const struct tg_params *p)
{
	const char *why = vblk_init(d, want_features);
	if (why) {
		tg_fail("blk-ro", "init: %s", why);
		return;
	}
	if (!(d->features & (1ULL << VIRTIO_BLK_F_RO)))
		return tg_fail("blk-ro", "VIRTIO_BLK_F_RO not offered on a read-only drive");
	if (d->capacity * SECTOR != p->blk_size)
		return tg_fail("blk-ro", "capacity %lu sectors, image is %lu bytes", d->capacity, p->blk_size);
	uint64_t last = d->capacity - 1;
	uint8_t s;
	if ((s = vblk_rw(d, VIRTIO_BLK_T_IN, 0, buf, SECTOR, false)) || !pattern_ok(buf, 0, SECTOR))
		return tg_fail("blk-ro", "sector 0: status %u or content differs", s);
	if ((s = vblk_rw(d, VIRTIO_BLK_T_IN, 5, buf, 3 * SECTOR, true)) || !pattern_ok(buf, 5 * SECTOR, 3 * SECTOR))
		return tg_fail("blk-ro", "sectors 5-7 in two segments: status %u or content differs", s);
	if ((s = vblk_rw_indirect(d, VIRTIO_BLK_T_IN, last, buf, SECTOR)) || !pattern_ok(buf, last * SECTOR, SECTOR))
		return tg_fail("blk-ro", "last sector through an indirect table: status %u or content differs", s);
	memset(buf, 0xa5, SECTOR);
	if ((s = vblk_rw(d, VIRTIO_BLK_T_OUT, 0, buf, SECTOR, false)) != VIRTIO_BLK_S_IOERR)
		return tg_fail("blk-ro", "write on a read-only drive: status %u, want IOERR", s);
	if ((s = vblk_rw(d, VIRTIO_BLK_T_IN, 0, buf, SECTOR, false)) || !pattern_ok(buf, 0, SECTOR))
		return tg_fail("blk-ro", "sector 0 changed after a refused write");
	if ((s = vblk_rw(d, VIRTIO_BLK_T_IN, d->capacity, buf, SECTOR, false)) != VIRTIO_BLK_S_IOERR)
		return tg_fail("blk-ro", "read past the end: status %u, want IOERR", s);
	if ((s = vblk_rw(d, 7, 0, NULL, 0, false)) != VIRTIO_BLK_S_UNSUPP)
		return tg_fail("blk-ro", "unknown request type: status %u, want UNSUPP", s);
	if ((s = vblk_rw(d, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false)) != VIRTIO_BLK_S_OK)
		return tg_fail("blk-ro", "flush: status %u", s);
	if (!get_id(d, "tg-ro"))
		return tg_fail("blk-ro", "GET_ID is not \"tg-ro\"");
	tg_ok("blk-ro", "%lu sectors, RO offered; reads (direct, 2 segments, indirect) match; write -> IOERR, "
	      "past end -> IOERR, unknown -> UNSUPP, flush, GET_ID", d->capacity);
}

/* Device `d`: writable; writes the pattern shifted by 7 at sector 2 (the harness checks the file). */
static void check_rw(struct vblk *d, const char *name, const char *id)
{
	const char *why = vblk_init(d, want_features);
	if (why) {
		tg_fail(name, "init: %s", why);
		return;
	}
	if (d->features & (1ULL << VIRTIO_BLK_F_RO))
		return tg_fail(name, "VIRTIO_BLK_F_RO offered on a writable drive");
	if (!(d->features & (1ULL << VIRTIO_BLK_F_WRITE_ZEROES)))
		return tg_fail(name, "WRITE_ZEROES not offered");
	uint8_t s;
	for (uint32_t i = 0; i < 2 * SECTOR; i++)
		buf[i] = tg_pattern_byte(i + 7);
	if ((s = vblk_rw(d, VIRTIO_BLK_T_OUT, 2, buf, 2 * SECTOR, true)) != VIRTIO_BLK_S_OK)
		return tg_fail(name, "write sectors 2-3: status %u", s);
	memset(buf, 0, 2 * SECTOR);
	if ((s = vblk_rw_indirect(d, VIRTIO_BLK_T_IN, 2, buf, 2 * SECTOR)) || !pattern_ok(buf, 7, 2 * SECTOR))
		return tg_fail(name, "read back sectors 2-3: status %u or content differs", s);
	uint64_t last = d->capacity - 1;
	memset(buf, 0x3c, SECTOR);
	if ((s = vblk_rw(d, VIRTIO_BLK_T_OUT, last, buf, SECTOR, false)) != VIRTIO_BLK_S_OK)
		return tg_fail(name, "write last sector: status %u", s);
	/* WRITE_ZEROES carries a device-readable range after the header. */
	struct virtio_blk_discard_write_zeroes z = { .sector = last, .num_sectors = 1 };
	hdr = (struct virtio_blk_outhdr){ .type = VIRTIO_BLK_T_WRITE_ZEROES };
	status = 0xff;
	desc(rings.desc, 0, &hdr, sizeof(hdr), VRING_DESC_F_NEXT, 1);
	desc(rings.desc, 1, &z, sizeof(z), VRING_DESC_F_NEXT, 2);
	desc(rings.desc, 2, &status, 1, VRING_DESC_F_WRITE, 0);
	uint32_t used;
	if (vblk_submit(d, 0, &used) != ANSWERED || status != VIRTIO_BLK_S_OK)
		return tg_fail(name, "write-zeroes on the last sector: status %u", status);
	memset(buf, 0xff, SECTOR);
	if ((s = vblk_rw(d, VIRTIO_BLK_T_IN, last, buf, SECTOR, false)) || buf[0] || buf[SECTOR - 1])
		return tg_fail(name, "last sector not zero after write-zeroes (status %u)", s);
	if ((s = vblk_rw(d, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false)) != VIRTIO_BLK_S_OK)
		return tg_fail(name, "flush: status %u", s);
	if (!get_id(d, id))
		return tg_fail(name, "GET_ID is not \"%s\"", id);
	tg_ok(name, "%lu sectors, writable; write/read back (2 segments, indirect), write-zeroes, flush, GET_ID %s",
	      d->capacity, id);
}

/*
 * tg.blkbench=MiB: sequential 64 KiB reads of disk 0 (wrapping), and tg.blkiops=N: N 4 KiB reads
 * at scattered sectors.  Nothing is checked; the harness times runs with and without.
 */
static void blk_bench(struct vblk *d, const struct tg_params *p)
{
	uint64_t chunk = sizeof(buf) / SECTOR, pos = 0;
	for (uint64_t i = 0; i < p->blk_bench_mib * 16; i++) {
		if (pos + chunk > d->capacity)
			pos = 0;
		if (vblk_rw(d, VIRTIO_BLK_T_IN, pos, buf, sizeof(buf), false) != VIRTIO_BLK_S_OK)
			return tg_fail("blk-bench", "sequential read at sector %lu failed", pos);
		pos += chunk;
	}
	uint64_t blocks = d->capacity / 8;
	for (uint64_t i = 0; i < p->blk_iops && blocks; i++) {
		uint64_t sector = ((i * 2654435761u) % blocks) * 8;
		if (vblk_rw(d, VIRTIO_BLK_T_IN, sector, buf, 4096, false) != VIRTIO_BLK_S_OK)
			return tg_fail("blk-bench", "4 KiB read at sector %lu failed", sector);
	}
	if (p->blk_bench_mib || p->blk_iops)
		tg_ok("blk-bench", "%lu MiB in 64 KiB reads, %lu random 4 KiB reads", p->blk_bench_mib, p->blk_iops);
}

/*
 * The interrupt, seen without taking it: the device's IRQ line is an edge into KVM's
 * irqchip (through the irqfd), which latches it in the 8259's IRR even with every line
 * masked and IF=0.  Re-initialising the master PIC clears the IRR between steps.
 */
static void pic_reset_masked(void)
{
	outb(0x20, 0x11); /* ICW1: edge, cascade, ICW4 follows */
	outb(0x21, 0x20); /* ICW2: vectors 0x20-0x27 (never delivered) */
	outb(0x21, 0x04); /* ICW3: slave on IRQ 2 */
	outb(0x21, 0x01); /* ICW4: 8086 mode */
	outb(0x21, 0xff); /* OCW1: all masked */
}

static uint8_t pic_irr(void)
{
	outb(0x20, 0x0a); /* OCW3: read IRR */
	return inb(0x20);
}

/* Register reads (each a VM exit) the interrupt check waits at most: a hang guard, seconds. */
#define IRQ_WAIT_READS 200000u

static void check_irq(struct vblk *d, unsigned irq)
{
	if (irq >= 8)
		return tg_ok("blk-irq", "IRQ %u is on the slave PIC; not checked", irq);
	mmio_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, mmio_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS));
	/* EVENT_IDX: ask for an interrupt for exactly the next completion. */
	rings.avail.used_event = d->used_seen;
	pic_reset_masked();
	uint8_t s = vblk_rw(d, VIRTIO_BLK_T_IN, 1, buf, SECTOR, false);
	/*
	 * The device publishes the used entry, then sets InterruptStatus and signals its irqfd, and
	 * KVM injects from its own context: both may land after the completion is visible.  Wait
	 * for them; the bound only guards against a hang.
	 */
	uint32_t isr = 0;
	uint8_t irr = 0;
	for (unsigned i = 0; i < IRQ_WAIT_READS; i++) {
		isr = mmio_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS);
		irr = pic_irr();
		if ((isr & VIRTIO_MMIO_INT_VRING) && (irr & (1u << irq)))
			break;
	}
	if (s || !(isr & VIRTIO_MMIO_INT_VRING) || !(irr & (1u << irq)))
		return tg_fail("blk-irq", "completion wanted an interrupt: status %u, InterruptStatus 0x%x, PIC IRR 0x%x",
			       s, isr, irr);
	mmio_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	if (mmio_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS))
		return tg_fail("blk-irq", "InterruptStatus not cleared by InterruptACK");
	/* And none when used_event says not yet. */
	rings.avail.used_event = (uint16_t)(d->used_seen + 100);
	pic_reset_masked();
	s = vblk_rw(d, VIRTIO_BLK_T_IN, 1, buf, SECTOR, false);
	isr = mmio_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS);
	irr = pic_irr();
	if (s || isr || (irr & (1u << irq)))
		return tg_fail("blk-irq", "used_event in the future, yet InterruptStatus 0x%x, PIC IRR 0x%x", isr, irr);
	tg_ok("blk-irq", "IRQ %u reaches the irqchip when used_event asks for it (EVENT_IDX), not otherwise; ACK clears",
	      irq);
}

void tg_check_blk(const struct tg_params *p)
{
	if (p->nvirtio != 3) {
		tg_fail("blk", "%u virtio_mmio.device= entries, the harness passes 3", p->nvirtio);
		return;
	}
	struct vblk d = { .base = p->virtio_base[0] };
	/* A driver without VERSION_1 must be turned away at FEATURES_OK. */
	mmio_wr(&d, VIRTIO_MMIO_STATUS, 0);
	mmio_wr(&d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	mmio_wr(&d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_wr(&d, VIRTIO_MMIO_DRIVER_FEATURES, 0);
	mmio_wr(&d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	if (mmio_rd(&d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK)
		tg_fail("blk-features", "FEATURES_OK accepted without VERSION_1");
	else
		tg_ok("blk-features", "FEATURES_OK refused without VERSION_1");
	check_ro(&d, p);
	check_irq(&d, p->virtio_irq[0]);
	blk_bench(&d, p);
	struct vblk rw = { .base = p->virtio_base[1] };
	check_rw(&rw, "blk-rw", "blk-rw.img");
	struct vblk scratch = { .base = p->virtio_base[2] };
	check_rw(&scratch, "blk-scratch", "scratch");
}

/* tg.case=vsock with a disk before the vsock device: the scratch disk's write/read checks. */
void tg_check_blk_scratch(const struct tg_params *p)
{
	struct vblk d = { .base = p->virtio_base[0] };
	check_rw(&d, "blk-scratch", "scratch");
}

/*
 * tg.case=blk-fill, tg.blkfill=MiB: write MiB to disk 0 in 64 KiB requests (each chunk holds its
 * own number), counting OK and IOERR (a host disk that fills up).  Then every chunk that got OK
 * must read back intact, and the device must still answer (no NEEDS_RESET, no silence).
 */
void tg_check_blk_fill(const struct tg_params *p)
{
	struct vblk d = { .base = p->virtio_base[0] };
	const char *why = p->nvirtio ? vblk_init(&d, want_features) : "no virtio_mmio.device= on the command line";
	if (why)
		return tg_fail("blk-fill", "init: %s", why);
	uint64_t chunk = sizeof(buf) / SECTOR, n = p->blk_fill_mib * 16, ok = 0, ioerr = 0, first_err = 0;
	if (n * chunk > d.capacity)
		return tg_fail("blk-fill", "tg.blkfill=%lu MiB is more than the disk's %lu sectors", p->blk_fill_mib,
			       d.capacity);
	static uint8_t good[4096]; /* which chunks were written: at most 256 MiB */
	if (n > sizeof(good))
		return tg_fail("blk-fill", "tg.blkfill is at most %u MiB", (unsigned)sizeof(good) / 16);
	for (uint64_t i = 0; i < n; i++) {
		for (uint64_t w = 0; w < sizeof(buf) / 8; w++)
			((uint64_t *)buf)[w] = i * 0x9e3779b97f4a7c15ULL + w;
		uint8_t s = vblk_rw(&d, VIRTIO_BLK_T_OUT, i * chunk, buf, sizeof(buf), false);
		good[i] = s == VIRTIO_BLK_S_OK;
		if (s == VIRTIO_BLK_S_OK) {
			ok++;
		} else if (s == VIRTIO_BLK_S_IOERR) {
			if (!ioerr++)
				first_err = i * chunk;
		} else {
			return tg_fail("blk-fill", "write at sector %lu: status %u%s", i * chunk, s,
				       s == 0xff ? " (no answer or NEEDS_RESET)" : "");
		}
	}
	uint8_t fs = vblk_rw(&d, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false);
	if (fs != VIRTIO_BLK_S_OK && fs != VIRTIO_BLK_S_IOERR)
		return tg_fail("blk-fill", "flush: status %u", fs);
	for (uint64_t i = 0; i < n; i++) {
		if (!good[i])
			continue;
		uint8_t s = vblk_rw(&d, VIRTIO_BLK_T_IN, i * chunk, buf, sizeof(buf), false);
		if (s != VIRTIO_BLK_S_OK)
			return tg_fail("blk-fill", "read back sector %lu: status %u", i * chunk, s);
		for (uint64_t w = 0; w < sizeof(buf) / 8; w++)
			if (((uint64_t *)buf)[w] != i * 0x9e3779b97f4a7c15ULL + w)
				return tg_fail("blk-fill", "sector %lu read back different", i * chunk);
	}
	tg_printf("blk-fill: %lu of %lu writes OK, %lu IOERR (first at sector %lu), flush %s\n", ok, n, ioerr,
		  first_err, fs == VIRTIO_BLK_S_OK ? "OK" : "IOERR");
	tg_ok("blk-fill", "every write answered OK or IOERR, every OK chunk reads back intact");
}

/* ---- hostile chains: each must get an error status or NEEDS_RESET, and the VM lives on ---- */

enum want { WANT_ERROR_STATUS, WANT_NEEDS_RESET };

struct hostile {
	const char *name;
	enum want want;
};

/* Builds hostile case i at head 0; returns false when there is no case i. */
static bool hostile_build(unsigned i, struct hostile *h, const struct tg_params *p)
{
	hdr = (struct virtio_blk_outhdr){ .type = VIRTIO_BLK_T_IN, .sector = 0 };
	status = 0xff;
	uint16_t N = VRING_DESC_F_NEXT, W = VRING_DESC_F_WRITE;
	desc(rings.desc, 0, &hdr, sizeof(hdr), N, 1);
	desc(rings.desc, 2, &status, 1, W, 0);
	/* Just past the end of RAM (tg.mem), or in the MMIO gap when tg.mem was not given. */
	uint64_t beyond = !p->mem ? 0xbffffff0ULL
		: p->mem > 0xc0000000ULL ? 0x100000000ULL + (p->mem - 0xc0000000ULL) : p->mem;
	switch (i) {
	case 0:
		*h = (struct hostile){ "loop", WANT_NEEDS_RESET };
		desc(rings.desc, 1, buf, SECTOR, N | W, 0); /* back to the head */
		return true;
	case 1:
		*h = (struct hostile){ "address-outside-ram", WANT_NEEDS_RESET };
		rings.desc[1] = (struct vring_desc){ .addr = beyond, .len = SECTOR, .flags = N | W, .next = 2 };
		return true;
	case 2:
		*h = (struct hostile){ "address-in-mmio-gap", WANT_NEEDS_RESET };
		rings.desc[1] = (struct vring_desc){ .addr = 0xd0000000ULL, .len = SECTOR, .flags = N | W, .next = 2 };
		return true;
	case 3:
		*h = (struct hostile){ "length-overflow", WANT_NEEDS_RESET };
		desc(rings.desc, 1, buf, 0xffffffffu, N | W, 2);
		return true;
	case 4:
		*h = (struct hostile){ "zero-length", WANT_NEEDS_RESET };
		desc(rings.desc, 1, buf, 0, N | W, 2);
		return true;
	case 5: {
		/* seg_max + 1 data segments (all on one buffer), in an indirect table the queue can hold. */
		*h = (struct hostile){ "too-many-segments", WANT_ERROR_STATUS };
		unsigned nseg = 126 + 1, n = 0;
		desc(itable, n, &hdr, sizeof(hdr), N, n + 1), n++;
		for (unsigned k = 0; k < nseg; k++, n++)
			desc(itable, n, buf, SECTOR, N | W, n + 1);
		desc(itable, n, &status, 1, W, 0), n++;
		desc(rings.desc, 0, itable, n * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
		return true;
	}
	case 6:
		*h = (struct hostile){ "write-into-readonly-buffer", WANT_ERROR_STATUS };
		/* Readable header, readable data, writable status: a legal chain, but a read must
		 * land in device-writable buffers. */
		desc(rings.desc, 1, buf, SECTOR, N, 2);
		return true;
	case 7:
		*h = (struct hostile){ "next-out-of-range", WANT_NEEDS_RESET };
		desc(rings.desc, 1, buf, SECTOR, N | W, QNUM);
		return true;
	case 8:
		*h = (struct hostile){ "nested-indirect", WANT_NEEDS_RESET };
		desc(itable, 0, &itable[4], sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
		desc(itable, 4, &hdr, sizeof(hdr), 0, 0);
		desc(rings.desc, 0, itable, sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
		return true;
	case 9:
		*h = (struct hostile){ "indirect-bad-length", WANT_NEEDS_RESET };
		desc(rings.desc, 0, itable, 24, VRING_DESC_F_INDIRECT, 0);
		return true;
	case 10:
		*h = (struct hostile){ "readable-after-writable", WANT_NEEDS_RESET };
		desc(rings.desc, 1, buf, SECTOR, N | W, 2);
		desc(rings.desc, 2, &status, 1, N | W, 3);
		desc(rings.desc, 3, buf + SECTOR, SECTOR, 0, 0);
		return true;
	}
	return false;
}

void tg_check_blk_hostile(const struct tg_params *p)
{
	if (p->nvirtio < 1) {
		tg_fail("blk-hostile", "no virtio_mmio.device= on the command line");
		return;
	}
	struct vblk d = { .base = p->virtio_base[0] };
	struct hostile h;
	unsigned n = 0;
	for (;; n++) {
		/* Every case starts from a freshly reset device; the last init is for the check below. */
		const char *why = vblk_init(&d, want_features);
		if (why) {
			tg_fail("blk-hostile", "init after %u malformed chains: %s", n, why);
			return;
		}
		if (!hostile_build(n, &h, p))
			break;
		uint32_t used = 0;
		enum wait_result r = vblk_submit(&d, 0, &used);
		if (r == TIMED_OUT)
			tg_fail("blk-hostile", "%s: no answer and no NEEDS_RESET", h.name);
		else if (r == ANSWERED && status == VIRTIO_BLK_S_OK)
			tg_fail("blk-hostile", "%s: the device said OK", h.name);
		else if (r == ANSWERED && h.want == WANT_NEEDS_RESET)
			tg_fail("blk-hostile", "%s: answered with status %u, expected NEEDS_RESET", h.name, status);
		else if (r == ANSWERED && status != VIRTIO_BLK_S_IOERR)
			tg_fail("blk-hostile", "%s: status %u, expected IOERR", h.name, status);
		else
			tg_ok("blk-hostile", "%s -> %s", h.name, r == NEEDS_RESET ? "DEVICE_NEEDS_RESET" : "IOERR");
	}
	/* After all that, the reset device must serve a normal request. */
	uint8_t s = vblk_rw(&d, VIRTIO_BLK_T_IN, 0, buf, SECTOR, false);
	if (s != VIRTIO_BLK_S_OK)
		tg_fail("blk-hostile", "device unusable after %u malformed chains (status %u)", n, s);
	else
		tg_ok("blk-hostile", "device serves requests again after %u malformed chains", n);
}
