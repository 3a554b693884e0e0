/* pvpanic: the guest kernel reports a panic through one I/O port. */
#ifndef PADCELL_PVPANIC_H
#define PADCELL_PVPANIC_H

#include "devices/bus.h"
#include "devices/devhost.h"
#include "devices/device.h"

struct pvpanic {
	const struct dev_host *host;
	unsigned crash_loaded; /* the guest told us a crash kernel took over */
};

extern const struct bus_ops pvpanic_ops;
void pvpanic_init(struct pvpanic *p, const struct dev_host *host);
/* Snapshot state: crash_loaded, the one field that changes. */
static inline uint32_t pvpanic_save(const struct pvpanic *p) { return p->crash_loaded; }
static inline void pvpanic_load(struct pvpanic *p, uint32_t v) { p->crash_loaded = v; }

/* As a device (devices/device.h): its port at d->base; no params. */
dev_create_fn pvpanic_create;

#endif
