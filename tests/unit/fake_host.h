/* A fake dev_host for unit tests: records every IRQ level change and machine event. */
#ifndef PADCELL_TEST_FAKE_HOST_H
#define PADCELL_TEST_FAKE_HOST_H

#include <string.h>

#include "devices/devhost.h"

#define FAKE_MAX_IRQ    32
#define FAKE_MAX_EVENTS 16

struct fake_host {
	struct dev_host host;
	int irq_level[FAKE_MAX_IRQ]; /* last level set on each line   */
	unsigned irq_calls;          /* set_irq calls, all lines       */
	unsigned last_irq;
	enum dev_event events[FAKE_MAX_EVENTS];
	unsigned nevents;
	unsigned notify_calls;       /* notify_irq (edge) calls, all lines */
	unsigned notify_last_irq;
};

static inline void fake_set_irq(void *ctx, unsigned irq, int level)
{
	struct fake_host *f = ctx;
	f->irq_calls++;
	f->last_irq = irq;
	if (irq < FAKE_MAX_IRQ)
		f->irq_level[irq] = level;
}

static inline void fake_event(void *ctx, enum dev_event ev)
{
	struct fake_host *f = ctx;
	if (f->nevents < FAKE_MAX_EVENTS)
		f->events[f->nevents] = ev;
	f->nevents++;
}

static inline void fake_notify_irq(void *ctx, unsigned irq)
{
	struct fake_host *f = ctx;
	__atomic_add_fetch(&f->notify_calls, 1, __ATOMIC_SEQ_CST); /* device workers call this */
	f->notify_last_irq = irq;
}

static inline void fake_host_init(struct fake_host *f)
{
	memset(f, 0, sizeof(*f));
	f->host.set_irq = fake_set_irq;
	f->host.event = fake_event;
	f->host.notify_irq = fake_notify_irq;
	f->host.ctx = f;
}

#endif
