/* pvpanic device: reading tells the guest which events we understand, writing reports one. */
#include "devices/pvpanic.h"

#include <misc/pvpanic.h>
#include <stdint.h>
#include <string.h>

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
