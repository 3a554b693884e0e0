/* What a device may ask of the machine it sits in: interrupts and machine-level events. */
#ifndef PADCELL_DEVHOST_H
#define PADCELL_DEVHOST_H

/*
 * Devices never see the VM handle.  The monitor hands them this small interface,
 * and unit tests hand them a fake one that records what happened.
 */
enum dev_event {
	DEV_EVENT_POWEROFF, /* ACPI S5 through the sleep control register */
	DEV_EVENT_RESET,    /* keyboard-controller reset pulse            */
	DEV_EVENT_PANIC,    /* pvpanic: the guest kernel panicked         */
};

struct dev_host {
	void (*set_irq)(void *ctx, unsigned irq, int level);
	void (*event)(void *ctx, enum dev_event ev);
	void *ctx;
	/*
	 * Edge-triggers line irq (a virtio interrupt): the monitor writes the line's irqfd
	 * when it has one.  May be NULL; then devices pulse set_irq.  Callable from any thread.
	 */
	void (*notify_irq)(void *ctx, unsigned irq);
};

#endif
