/* ACPI fixed-hardware PM1a event and control blocks: how the guest powers off. */
#ifndef PADCELL_ACPI_PM_H
#define PADCELL_ACPI_PM_H

#include <pthread.h>
#include <stdint.h>

#include "devices/bus.h"
#include "devices/devhost.h"
#include "devices/device.h"

/*
 * One bus range of LAYOUT_ACPI_PM_LEN ports: PM1a_STS (offset 0, 16 bits),
 * PM1a_EN (offset 2, 16 bits), PM1a_CNT (offset 4, 16 bits).
 */
struct acpi_pm {
	pthread_mutex_t lock;
	uint16_t status, enable, control;
	const struct dev_host *host;
};

extern const struct bus_ops acpi_pm_ops;
/* Snapshot state (fixed layout). */
struct acpi_pm_state {
	uint16_t status, enable, control, pad;
};
void acpi_pm_save(struct acpi_pm *pm, struct acpi_pm_state *st);
void acpi_pm_load(struct acpi_pm *pm, const struct acpi_pm_state *st);
void acpi_pm_init(struct acpi_pm *pm, const struct dev_host *host);
void acpi_pm_destroy(struct acpi_pm *pm);

/* As a device (devices/device.h): the PM1a blocks at d->base; no params. */
dev_create_fn acpi_pm_create;

#endif
