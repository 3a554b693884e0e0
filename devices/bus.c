/* Address-range bus dispatch. */
#include "devices/bus.h"

#include <errno.h>
#include <string.h>

void bus_init(struct bus *b)
{
	memset(b, 0, sizeof(*b));
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name)
{
	if (len == 0 || base + len - 1 < base || !ops)
		return -EINVAL;
	if (b->count == BUS_MAX_RANGES)
		return -ENOSPC;
	unsigned i = 0;
	while (i < b->count && b->ranges[i].base < base)
		i++;
	/* Only the neighbours can overlap in a sorted, non-overlapping array. */
	if (i > 0 && b->ranges[i - 1].base + b->ranges[i - 1].len - 1 >= base)
		return -EEXIST;
	if (i < b->count && base + len - 1 >= b->ranges[i].base)
		return -EEXIST;
	memmove(&b->ranges[i + 1], &b->ranges[i], (b->count - i) * sizeof(b->ranges[0]));
	b->ranges[i] = (struct bus_range){ base, len, ops, opaque, name };
	b->count++;
	return 0;
}

const struct bus_range *bus_find(const struct bus *b, uint64_t addr, uint32_t len)
{
	if (len == 0 || addr + len - 1 < addr)
		return NULL;
	unsigned lo = 0, hi = b->count;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &b->ranges[mid];
		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return len <= r->len - (addr - r->base) ? r : NULL;
	}
	return NULL;
}

bool bus_read(const struct bus *b, uint64_t addr, void *data, uint32_t len)
{
	const struct bus_range *r = bus_find(b, addr, len);
	if (!r || !r->ops->read) {
		memset(data, 0xff, len);
		return false;
	}
	r->ops->read(r->opaque, addr - r->base, data, len);
	return true;
}

bool bus_write(const struct bus *b, uint64_t addr, const void *data, uint32_t len)
{
	const struct bus_range *r = bus_find(b, addr, len);
	if (!r || !r->ops->write)
		return false;
	r->ops->write(r->opaque, addr - r->base, data, len);
	return true;
}
