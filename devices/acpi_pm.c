/* ACPI sleep registers: SLP_EN with the \_S5 sleep type from the DSDT means power off. */
#include "devices/acpi_pm.h"

#include <string.h>

#include "vmm/layout.h"

/* ACPI 6.x, 4.8.3.7 sleep control register layout. */
#define SLP_TYP_SHIFT 2
#define SLP_TYP_MASK  0x07
#define SLP_EN        0x20
#define WAK_STS       0x80

static void acpi_pm_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct acpi_pm *pm = opaque;
	memset(data, 0, len);
	*(uint8_t *)data = offset == 1 ? pm->status : 0;
}

static void acpi_pm_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct acpi_pm *pm = opaque;
	uint8_t v = *(const uint8_t *)data;
	if (offset == 1) {
		pm->status &= ~(v & WAK_STS); /* write-one-to-clear */
		return;
	}
	if ((v & SLP_EN) && ((v >> SLP_TYP_SHIFT) & SLP_TYP_MASK) == LAYOUT_ACPI_S5_TYPE) {
		if (pm->host && pm->host->event)
			pm->host->event(pm->host->ctx, DEV_EVENT_POWEROFF);
	}
	/* Other sleep states (S1-S4) are not offered in the DSDT; ignore them. */
}

const struct bus_ops acpi_pm_ops = { .read = acpi_pm_read, .write = acpi_pm_write };

void acpi_pm_init(struct acpi_pm *pm, const struct dev_host *host)
{
	memset(pm, 0, sizeof(*pm));
	pm->host = host;
}
