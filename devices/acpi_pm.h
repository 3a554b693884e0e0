/* Hardware-reduced ACPI sleep control and status registers: how the guest powers off. */
#ifndef PADCELL_ACPI_PM_H
#define PADCELL_ACPI_PM_H

#include <stdint.h>

#include "devices/bus.h"
#include "devices/devhost.h"

struct acpi_pm {
	const struct dev_host *host;
	uint8_t status;
};

/* Sleep control at offset 0, sleep status at offset 1 (FADT points at both). */
#define ACPI_PM_RANGE_LEN 2
extern const struct bus_ops acpi_pm_ops;
void acpi_pm_init(struct acpi_pm *pm, const struct dev_host *host);

#endif
