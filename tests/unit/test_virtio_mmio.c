/* The virtio-mmio register file: identification, feature negotiation, status machine, queues, config. */
#include <criterion/criterion.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include "devices/virtio_mmio.h"
#include "tests/unit/fake_host.h"
#include "tests/unit/vring.h"

#define DEV_FEATURE_BIT 5 /* some device-specific feature the fake device offers */

static struct guest_mem mem;
static struct fake_host fh;
static struct virtio_mmio t;
static uint8_t config[24] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };
static unsigned notified[4], resets;

static void dev_notify(void *opaque, unsigned q) { notified[q]++; }
static void dev_reset(void *opaque) { resets++; }
static const struct virtio_dev_ops dev_ops = { .queue_notify = dev_notify, .reset = dev_reset };

static void setup(void)
{
	cr_assert_eq(gmem_init(&mem, TV_MEM), 0);
	fake_host_init(&fh);
	memset(notified, 0, sizeof(notified));
	resets = 0;
	virtio_mmio_init(&t, &mem, &fh.host, 7, 2, 1ULL << DEV_FEATURE_BIT, 1, config, sizeof(config), &dev_ops, NULL);
}
static void teardown(void)
{
	virtio_mmio_destroy(&t);
	gmem_destroy(&mem);
}
TestSuite(virtio_mmio, .init = setup, .fini = teardown);

static uint32_t rd(uint64_t off)
{
	uint32_t v;
	virtio_mmio_ops.read(&t, off, &v, 4);
	return v;
}
static void wr(uint64_t off, uint32_t v) { virtio_mmio_ops.write(&t, off, &v, 4); }

static void driver_features(uint64_t f)
{
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
}

/* ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns whether FEATURES_OK stuck. */
static bool negotiate(uint64_t f)
{
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
	driver_features(f);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
	return rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK;
}

static void queue_setup(uint32_t num)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(VIRTIO_MMIO_QUEUE_NUM, num);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)TV_DESC);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)TV_AVAIL);
	wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)TV_USED);
	wr(VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
}

static const uint32_t S_ALL_BUT_OK =
	VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;

static void bring_up(void)
{
	cr_assert(negotiate((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX)));
	queue_setup(8);
	wr(VIRTIO_MMIO_STATUS, S_ALL_BUT_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK);
}

Test(virtio_mmio, identification)
{
	cr_assert_eq(rd(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976, "\"virt\"");
	cr_assert_eq(rd(VIRTIO_MMIO_VERSION), 2, "modern transport only");
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_ID), 2);
	cr_assert_neq(rd(VIRTIO_MMIO_VENDOR_ID), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
}

Test(virtio_mmio, device_feature_window)
{
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = rd(VIRTIO_MMIO_DEVICE_FEATURES);
	cr_assert(lo & (1u << DEV_FEATURE_BIT));
	cr_assert(lo & (1u << VIRTIO_RING_F_INDIRECT_DESC));
	cr_assert(lo & (1u << VIRTIO_RING_F_EVENT_IDX));
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	cr_assert(rd(VIRTIO_MMIO_DEVICE_FEATURES) & (1u << (VIRTIO_F_VERSION_1 - 32)));
	wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	cr_assert_eq(rd(VIRTIO_MMIO_DEVICE_FEATURES), 0, "no features beyond bit 63");
}

Test(virtio_mmio, negotiation_to_driver_ok)
{
	bring_up();
	cr_assert_eq(t.driver_features, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX));
	cr_assert(t.queues[0].event_idx, "EVENT_IDX reached the queue");
	cr_assert_eq(notified[0], 1, "DRIVER_OK looks at the ready queues once");
}

Test(virtio_mmio, features_ok_refused_without_version_1)
{
	cr_assert_not(negotiate(1ULL << DEV_FEATURE_BIT), "a legacy-only driver is refused");
	wr(VIRTIO_MMIO_STATUS, S_ALL_BUT_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK, "no DRIVER_OK without FEATURES_OK");
}

Test(virtio_mmio, features_ok_refused_for_features_not_offered)
{
	cr_assert_not(negotiate((1ULL << VIRTIO_F_VERSION_1) | (1ULL << 3)));
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_not(negotiate((1ULL << VIRTIO_F_VERSION_1) | (1ULL << 40)));
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert(negotiate((1ULL << VIRTIO_F_VERSION_1) | (1ULL << DEV_FEATURE_BIT)));
}

Test(virtio_mmio, features_ok_needs_acknowledge_and_driver)
{
	driver_features(1ULL << VIRTIO_F_VERSION_1);
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_FEATURES_OK);
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK);
}

Test(virtio_mmio, driver_features_frozen_after_features_ok)
{
	cr_assert(negotiate(1ULL << VIRTIO_F_VERSION_1));
	driver_features((1ULL << VIRTIO_F_VERSION_1) | (1ULL << DEV_FEATURE_BIT));
	cr_assert_eq(t.driver_features, 1ULL << VIRTIO_F_VERSION_1);
}

Test(virtio_mmio, driver_cannot_clear_status_bits_or_set_needs_reset)
{
	bring_up();
	wr(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), S_ALL_BUT_OK | VIRTIO_CONFIG_S_DRIVER_OK);
	wr(VIRTIO_MMIO_STATUS, S_ALL_BUT_OK | VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	wr(VIRTIO_MMIO_STATUS, S_ALL_BUT_OK | VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_FAILED);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FAILED);
}

Test(virtio_mmio, queue_registers)
{
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTQ_MAX_SIZE);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x89abc000);
	wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, 0x1);
	cr_assert_eq(t.queues[0].desc_gpa, 0x189abc000ULL, "64-bit address from two halves");
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), 0x89abc000);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_DESC_HIGH), 1);
	wr(VIRTIO_MMIO_QUEUE_SEL, 1); /* the fake device has one queue */
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_NUM_MAX), 0, "no such queue");
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
}

Test(virtio_mmio, queue_ready_and_frozen_while_live)
{
	bring_up();
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 1);
	wr(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x4000);
	cr_assert_eq(t.queues[0].desc_gpa, TV_DESC, "a live queue's address cannot move");
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert_eq(notified[0], 2);
	wr(VIRTIO_MMIO_QUEUE_READY, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	cr_assert_eq(notified[0], 2, "no kicks for a stopped queue");
}

Test(virtio_mmio, notify_before_driver_ok_is_ignored)
{
	cr_assert(negotiate(1ULL << VIRTIO_F_VERSION_1));
	queue_setup(8);
	wr(VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	virtio_mmio_queue_notify(&t, 0); /* the ioeventfd path */
	cr_assert_eq(notified[0], 0);
	virtio_mmio_queue_notify(&t, 3);
	cr_assert_eq(notified[0], 0);
}

Test(virtio_mmio, bad_queue_setup_sets_needs_reset)
{
	cr_assert(negotiate(1ULL << VIRTIO_F_VERSION_1));
	queue_setup(12); /* not a power of two */
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert(negotiate(1ULL << VIRTIO_F_VERSION_1));
	wr(VIRTIO_MMIO_QUEUE_NUM, 8);
	wr(VIRTIO_MMIO_QUEUE_USED_LOW, 0xd0000000u); /* not RAM */
	wr(VIRTIO_MMIO_QUEUE_READY, 1);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_mmio, queue_ready_before_features_ok_needs_reset)
{
	queue_setup(8);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(virtio_mmio, reset_clears_everything)
{
	bring_up();
	virtio_mmio_needs_reset(&t);
	t.interrupt_status = 3;
	wr(VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(resets, 1, "the device was told");
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	cr_assert_eq(t.driver_features, 0);
	wr(VIRTIO_MMIO_QUEUE_SEL, 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_READY), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_DESC_LOW), 0);
	cr_assert_eq(rd(VIRTIO_MMIO_QUEUE_USED_LOW), 0);
	cr_assert_null(virtio_mmio_queue(&t, 0));
	bring_up(); /* and the device comes back */
}

Test(virtio_mmio, needs_reset_stops_the_queue_and_raises_config_interrupt)
{
	bring_up();
	unsigned before = fh.notify_calls;
	pthread_mutex_lock(&t.lock);
	virtio_mmio_needs_reset(&t);
	cr_assert_null(virtio_mmio_queue(&t, 0), "a broken device serves nothing");
	pthread_mutex_unlock(&t.lock);
	cr_assert(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	cr_assert_eq(fh.notify_calls, before + 1);
	cr_assert_eq(fh.notify_last_irq, 7);
}

Test(virtio_mmio, interrupt_status_and_ack)
{
	virtio_mmio_interrupt(&t, VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(fh.notify_calls, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	wr(VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(rd(VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

Test(virtio_mmio, interrupt_without_notify_irq_pulses_the_line)
{
	fh.host.notify_irq = NULL;
	virtio_mmio_interrupt(&t, VIRTIO_MMIO_INT_VRING);
	cr_assert_eq(fh.irq_calls, 2, "raise and lower");
	cr_assert_eq(fh.irq_level[7], 0);
}

Test(virtio_mmio, config_space_and_generation)
{
	uint8_t b;
	virtio_mmio_ops.read(&t, VIRTIO_MMIO_CONFIG + 2, &b, 1);
	cr_assert_eq(b, 0x33);
	uint64_t q;
	virtio_mmio_ops.read(&t, VIRTIO_MMIO_CONFIG, &q, 8);
	cr_assert_eq(q, 0x8877665544332211ULL);
	uint32_t w = 0xdeadbeef;
	virtio_mmio_ops.read(&t, VIRTIO_MMIO_CONFIG + sizeof(config) - 2, &w, 4);
	cr_assert_eq(w, 0, "a read past the config space is 0");
	virtio_mmio_ops.write(&t, VIRTIO_MMIO_CONFIG, &w, 4);
	cr_assert_eq(config[0], 0x11, "config space is read-only");

	uint32_t g = rd(VIRTIO_MMIO_CONFIG_GENERATION);
	cr_assert_eq(rd(VIRTIO_MMIO_CONFIG_GENERATION), g, "stable while nothing changes");
	bring_up();
	pthread_mutex_lock(&t.lock);
	virtio_mmio_config_changed(&t);
	pthread_mutex_unlock(&t.lock);
	cr_assert_neq(rd(VIRTIO_MMIO_CONFIG_GENERATION), g);
	cr_assert(rd(VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
}

Test(virtio_mmio, narrow_and_unaligned_register_accesses_are_ignored)
{
	uint16_t h = 0xffff;
	virtio_mmio_ops.read(&t, VIRTIO_MMIO_MAGIC_VALUE, &h, 2);
	cr_assert_eq(h, 0);
	uint8_t one = VIRTIO_CONFIG_S_ACKNOWLEDGE;
	virtio_mmio_ops.write(&t, VIRTIO_MMIO_STATUS, &one, 1);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	uint32_t v = VIRTIO_CONFIG_S_ACKNOWLEDGE;
	virtio_mmio_ops.write(&t, VIRTIO_MMIO_STATUS + 1, &v, 4);
	cr_assert_eq(rd(VIRTIO_MMIO_STATUS), 0);
	cr_assert_eq(rd(0x0f0), 0, "reserved reads as 0");
	wr(VIRTIO_MMIO_QUEUE_PFN, 0x1234); /* legacy register: ignored */
}
