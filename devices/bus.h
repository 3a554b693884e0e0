/* An address-range bus: port I/O and MMIO accesses are dispatched to device ops. */
#ifndef PADCELL_BUS_H
#define PADCELL_BUS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * A device sees an access as (offset within its range, data, len).  Handlers are
 * called from vCPU threads; a device that also has host-side activity (input,
 * I/O completion) protects its own state.
 */
struct bus_ops {
	void (*read)(void *opaque, uint64_t offset, void *data, uint32_t len);
	void (*write)(void *opaque, uint64_t offset, const void *data, uint32_t len);
};

struct bus_range {
	uint64_t base;
	uint64_t len;
	const struct bus_ops *ops;
	void *opaque;
	const char *name;
};

#define BUS_MAX_RANGES 32

struct bus {
	struct bus_range ranges[BUS_MAX_RANGES]; /* sorted by base, never overlapping */
	unsigned count;
};

void bus_init(struct bus *b);
/* -EINVAL for an empty or wrapping range, -EEXIST if it overlaps, -ENOSPC when full. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name);
/* The range holding all of [addr, addr+len), or NULL. */
const struct bus_range *bus_find(const struct bus *b, uint64_t addr, uint32_t len);
/*
 * Dispatch an access.  Returns false when no device claims it; then a read has
 * filled `data` with all-ones (what an unclaimed ISA/MMIO read returns on real
 * hardware) and a write was dropped.  Neither is an error of the monitor.
 */
bool bus_read(const struct bus *b, uint64_t addr, void *data, uint32_t len);
bool bus_write(const struct bus *b, uint64_t addr, const void *data, uint32_t len);

#endif
