/* The device interface: each kind's create function and dev_ops on a fake host, and the devthread helper. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/acpi_pm.h"
#include "devices/device.h"
#include "devices/devthread.h"
#include "devices/i8042.h"
#include "devices/pvpanic.h"
#include "devices/serial.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_vsock.h"
#include "tests/unit/fake_host.h"
#include "vmm/snapshot_fmt.h"

#define TMEM (16u << 20)

/* A device made the way the monitor makes one: index, base and irq first, then its create function. */
static void make(struct device *d, dev_create_fn *create, uint64_t base, unsigned irq, const struct guest_mem *mem,
		 const struct dev_host *host, const void *params)
{
	*d = (struct device){ .base = base, .irq = irq, .kick_fd = -1, .irqfd = -1 };
	cr_assert_eq(create(d, mem, host, params), 0);
	cr_assert_not_null(d->ops);
	cr_assert_not_null(d->ops->name);
	cr_assert_not_null(d->ops->destroy);
	cr_assert_not_null(d->bus_ops);
	cr_assert_gt(d->len, 0);
}

/* Saves a through its ops, loads that into b, and checks b saves the same bytes. */
static void round_trip(struct device *a, struct device *b)
{
	size_t n = a->ops->state_size;
	cr_assert_gt(n, 0);
	uint8_t *s1 = calloc(1, n), *s2 = calloc(1, n);
	char err[128];
	a->ops->save(a, s1);
	cr_assert_eq(b->ops->load(b, s1, err, sizeof(err)), 0, "%s", err);
	b->ops->save(b, s2);
	cr_assert_eq(memcmp(s1, s2, n), 0, "%s: state differs after a round trip", a->ops->name);
	free(s1);
	free(s2);
}

Test(device_ops, legacy_devices_have_their_sections_and_round_trip)
{
	struct fake_host fh;
	fake_host_init(&fh);
	const struct serial_params sp = { .out_fd = -1 };
	static const struct {
		dev_create_fn *create;
		uint32_t section;
		size_t size;
	} kinds[] = {
		{ serial_create, SNAP_SEC_SERIAL, sizeof(struct serial_state) },
		{ i8042_create, SNAP_SEC_I8042, sizeof(struct i8042_state) },
		{ acpi_pm_create, SNAP_SEC_ACPI_PM, sizeof(struct acpi_pm_state) },
		{ pvpanic_create, SNAP_SEC_PVPANIC, sizeof(uint32_t) },
	};
	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct device a, b;
		make(&a, kinds[i].create, 0x100, 4, NULL, &fh.host, &sp);
		make(&b, kinds[i].create, 0x100, 4, NULL, &fh.host, &sp);
		cr_assert_eq(a.ops->snap_section, kinds[i].section, "%s", a.ops->name);
		cr_assert_eq(a.ops->state_size, kinds[i].size, "%s", a.ops->name);
		cr_assert_null(a.virtio);
		cr_assert_eq(a.kick_fd, -1);
		/* Something to carry over: a byte written to the device's first register. */
		uint8_t v = 0x5a;
		a.bus_ops->write(a.bus_opaque, 0, &v, 1);
		round_trip(&a, &b);
		a.ops->destroy(&a);
		b.ops->destroy(&b);
	}
}

Test(device_ops, serial_state_survives_through_the_ops)
{
	struct fake_host fh;
	fake_host_init(&fh);
	const struct serial_params sp = { .out_fd = -1 };
	struct device a, b;
	make(&a, serial_create, 0x3f8, 4, NULL, &fh.host, &sp);
	make(&b, serial_create, 0x3f8, 4, NULL, &fh.host, &sp);
	cr_assert_eq(a.len, 8);
	uint8_t v = 0xa5;
	a.bus_ops->write(a.bus_opaque, 7, &v, 1); /* the scratch register */
	round_trip(&a, &b);
	v = 0;
	b.bus_ops->read(b.bus_opaque, 7, &v, 1);
	cr_assert_eq(v, 0xa5);
	a.ops->destroy(&a);
	b.ops->destroy(&b);
}

struct recorder {
	struct dev_snap_out out;
	unsigned nadd, nfile;
	uint32_t type, index;
	struct snap_disk disk;
	char file[256];
	uint64_t file_size;
};

static void rec_add(struct dev_snap_out *o, uint32_t type, uint32_t index, const void *data, size_t len)
{
	struct recorder *r = o->ctx;
	r->nadd++;
	r->type = type;
	r->index = index;
	if (type == SNAP_SEC_DISK && len == sizeof(r->disk))
		memcpy(&r->disk, data, len);
}

static int rec_add_file(struct dev_snap_out *o, const char *name, int fd, uint64_t size)
{
	struct recorder *r = o->ctx;
	r->nfile++;
	snprintf(r->file, sizeof(r->file), "%s", name);
	r->file_size = size;
	return 0;
}

Test(device_ops, virtio_blk_is_a_device)
{
	struct guest_mem mem;
	cr_assert_eq(gmem_init(&mem, TMEM), 0);
	struct fake_host fh;
	fake_host_init(&fh);
	struct blk_disk disk;
	char err[128];
	cr_assert_eq(blk_disk_scratch(&disk, 1 << 20, err, sizeof(err)), 0, "%s", err);
	struct device d;
	make(&d, virtio_blk_create, 0xd0000000, 5, &mem, &fh.host, &disk);
	d.index = 2;
	cr_assert_not_null(d.virtio);
	cr_assert_geq(d.kick_fd, 0);
	cr_assert(d.kick_datamatch, "one queue: only QueueNotify 0 wakes the worker");
	cr_assert_eq(d.ops->snap_section, SNAP_SEC_BLK);
	struct virtio_blk *b = d.dev;
	cr_assert_eq(d.ops->start(&d), 0);
	cr_assert(b->worker.started);
	d.ops->pause(&d);
	cr_assert(!b->worker.started);
	cr_assert_eq(d.ops->resume(&d), 0);
	cr_assert(b->worker.started);

	/* A scratch disk's contents go beside the state file, under a name the DISK section records. */
	struct recorder r = { .out = { .add = rec_add, .add_file = rec_add_file, .state_base = "state" } };
	r.out.ctx = &r;
	cr_assert_eq(d.ops->save_backing(&d, &r.out, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.nadd, 1);
	cr_assert_eq(r.type, SNAP_SEC_DISK);
	cr_assert_eq(r.index, 2);
	cr_assert_eq(r.nfile, 1);
	cr_assert_str_eq(r.file, "state.disk2");
	cr_assert_str_eq(r.disk.path, "state.disk2");
	cr_assert_eq(r.file_size, 1 << 20);
	cr_assert(r.disk.scratch);
	d.ops->destroy(&d);
	blk_disk_close(&disk);
	gmem_destroy(&mem);
}

Test(device_ops, virtio_vsock_is_a_device)
{
	struct guest_mem mem;
	cr_assert_eq(gmem_init(&mem, TMEM), 0);
	struct fake_host fh;
	fake_host_init(&fh);
	const struct vsock_params p = { .path = "/tmp/none.sock", .listen_fd = -1, .guest_cid = 42 };
	struct device a, b;
	make(&a, virtio_vsock_create, 0xd0001000, 6, &mem, &fh.host, &p);
	make(&b, virtio_vsock_create, 0xd0001000, 6, &mem, &fh.host, &p);
	cr_assert_not_null(a.virtio);
	cr_assert_geq(a.kick_fd, 0);
	cr_assert(!a.kick_datamatch, "one pass serves every queue: any QueueNotify wakes the thread");
	cr_assert_eq(a.ops->snap_section, SNAP_SEC_VSOCK);
	cr_assert_null(a.ops->save_backing);
	round_trip(&a, &b);
	a.ops->destroy(&a);
	b.ops->destroy(&b);
	gmem_destroy(&mem);
}

struct counter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct devthread t;
	unsigned wakes, runs;
	bool woken;
};

static void counter_wake(void *arg)
{
	struct counter *c = arg;
	pthread_mutex_lock(&c->lock);
	c->wakes++;
	c->woken = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void *counter_thread(void *arg)
{
	struct counter *c = arg;
	pthread_mutex_lock(&c->lock);
	c->runs++;
	while (!c->t.stop) {
		while (!c->woken)
			pthread_cond_wait(&c->cond, &c->lock);
		c->woken = false;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

Test(devthread, stop_joins_and_resume_wakes_once)
{
	struct counter c = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	devthread_init(&c.t, &c.lock, counter_thread, counter_wake, &c);
	devthread_stop(&c.t); /* not started: nothing to do */
	cr_assert_eq(c.wakes, 0);
	cr_assert_eq(devthread_start(&c.t), 0);
	cr_assert(c.t.started);
	devthread_stop(&c.t);
	cr_assert(!c.t.started);
	cr_assert(!c.t.stop, "stop is cleared for the next start");
	cr_assert_eq(c.runs, 1);
	cr_assert_eq(c.wakes, 1);
	cr_assert_eq(devthread_resume(&c.t), 0);
	cr_assert_eq(devthread_resume(&c.t), 0, "resuming a running thread is 0");
	devthread_stop(&c.t);
	cr_assert_eq(c.runs, 2);
	cr_assert_eq(c.wakes, 3, "resume wakes once, stop once more");
}
