/* pvpanic device: reading tells the guest which events we understand, writing reports one. */
#include "devices/pvpanic.h"

#include <misc/pvpanic.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/snapshot_fmt.h"

static void pvpanic_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	memset(data, 0, len);
	*(uint8_t *)data = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
}

static void pvpanic_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct pvpanic *p = opaque;
	uint8_t v = *(const uint8_t *)data;
	if (v & PVPANIC_PANICKED) {
		if (p->host && p->host->event)
			p->host->event(p->host->ctx, DEV_EVENT_PANIC);
	} else if (v & PVPANIC_CRASH_LOADED) {
		/* kdump is running in the guest: let it finish, it will reboot. */
		p->crash_loaded = 1;
	}
}

const struct bus_ops pvpanic_ops = { .read = pvpanic_read, .write = pvpanic_write };

void pvpanic_init(struct pvpanic *p, const struct dev_host *host)
{
	memset(p, 0, sizeof(*p));
	p->host = host;
}

/* ---- the device interface ---------------------------------------------------------------- */

static void pvpanic_dev_save(struct device *d, void *st)
{
	uint32_t v = pvpanic_save(d->dev);
	memcpy(st, &v, sizeof(v));
}

static int pvpanic_dev_load(struct device *d, const void *st, char *err, size_t errlen)
{
	uint32_t v;
	memcpy(&v, st, sizeof(v));
	pvpanic_load(d->dev, v);
	return 0;
}

static void pvpanic_dev_destroy(struct device *d)
{
	free(d->dev);
}

static const struct dev_ops pvpanic_dev_ops = {
	.name = "pvpanic",
	.snap_section = SNAP_SEC_PVPANIC,
	.state_size = sizeof(uint32_t),
	.save = pvpanic_dev_save,
	.load = pvpanic_dev_load,
	.destroy = pvpanic_dev_destroy,
};

int pvpanic_create(struct device *d, const struct guest_mem *mem, const struct dev_host *host, const void *params)
{
	struct pvpanic *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pvpanic_init(p, host);
	d->ops = &pvpanic_dev_ops;
	d->dev = d->bus_opaque = p;
	d->bus_ops = &pvpanic_ops;
	d->len = 1;
	return 0;
}
