/* PM1a registers: SLP_EN with the \_S5 sleep type from the DSDT means power off. */
#include "devices/acpi_pm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/x86/layout.h"
#include "vmm/snapshot_fmt.h"

/* ACPI 6.x, 4.8.3.1 and 4.8.3.2: PM1 status/enable and control bits we model. */
#define PM1_STS_WAK     (1u << 15)
#define PM1_CNT_SCI_EN  (1u << 0)
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_TYP_MASK  0x7u
#define PM1_CNT_SLP_EN  (1u << 13)

#define OFF_STS 0
#define OFF_EN  2
#define OFF_CNT 4

/* Accesses may be 8 or 16 bits wide and start at either byte of a register. */
static uint16_t *acpi_pm_reg(struct acpi_pm *pm, uint64_t offset)
{
	switch (offset & ~1ULL) {
	case OFF_STS: return &pm->status;
	case OFF_EN: return &pm->enable;
	case OFF_CNT: return &pm->control;
	default: return NULL;
	}
}

static void acpi_pm_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct acpi_pm *pm = opaque;
	uint32_t v = 0;
	pthread_mutex_lock(&pm->lock);
	for (uint32_t i = 0; i < len && i < 4; i++) {
		uint16_t *r = acpi_pm_reg(pm, offset + i);
		uint8_t byte = r ? (uint8_t)(*r >> (((offset + i) & 1) * 8)) : 0xff;
		v |= (uint32_t)byte << (i * 8);
	}
	pthread_mutex_unlock(&pm->lock);
	memset(data, 0, len);
	memcpy(data, &v, len < 4 ? len : 4);
}

static void acpi_pm_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct acpi_pm *pm = opaque;
	uint32_t v = 0;
	memcpy(&v, data, len < 4 ? len : 4);
	bool poweroff = false;
	pthread_mutex_lock(&pm->lock);
	for (uint32_t i = 0; i < len && i < 4; i++) {
		uint64_t at = offset + i;
		uint16_t *r = acpi_pm_reg(pm, at);
		if (!r)
			continue;
		unsigned shift = (at & 1) * 8;
		uint16_t byte = (uint16_t)(((v >> (i * 8)) & 0xff) << shift);
		uint16_t mask = (uint16_t)(0xff << shift);
		if (r == &pm->status) {
			pm->status &= ~byte; /* write-one-to-clear */
		} else if (r == &pm->control) {
			/* SCI_EN is read-only 1: ACPI mode is always on. SLP_EN reads as 0. */
			uint16_t nv = (uint16_t)((pm->control & ~mask) | byte);
			if ((nv & PM1_CNT_SLP_EN) &&
			    ((nv >> PM1_CNT_SLP_TYP_SHIFT) & PM1_CNT_SLP_TYP_MASK) == LAYOUT_ACPI_S5_TYPE)
				poweroff = true;
			pm->control = (uint16_t)((nv & ~PM1_CNT_SLP_EN) | PM1_CNT_SCI_EN);
		} else {
			*r = (uint16_t)((*r & ~mask) | byte);
		}
	}
	pthread_mutex_unlock(&pm->lock);
	/* Other sleep states are not offered in the DSDT, so SLP_EN with them does nothing. */
	if (poweroff && pm->host && pm->host->event)
		pm->host->event(pm->host->ctx, DEV_EVENT_POWEROFF);
}

const struct bus_ops acpi_pm_ops = { .read = acpi_pm_read, .write = acpi_pm_write };

void acpi_pm_init(struct acpi_pm *pm, const struct dev_host *host)
{
	memset(pm, 0, sizeof(*pm));
	pthread_mutex_init(&pm->lock, NULL);
	pm->host = host;
	pm->control = PM1_CNT_SCI_EN;
}

void acpi_pm_save(struct acpi_pm *pm, struct acpi_pm_state *st)
{
	pthread_mutex_lock(&pm->lock);
	*st = (struct acpi_pm_state){ .status = pm->status, .enable = pm->enable, .control = pm->control };
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_load(struct acpi_pm *pm, const struct acpi_pm_state *st)
{
	pthread_mutex_lock(&pm->lock);
	pm->status = st->status;
	pm->enable = st->enable;
	/* As a register write leaves it: SLP_EN never latches, SCI_EN always reads 1 (ACPI is on). */
	pm->control = (uint16_t)((st->control & ~PM1_CNT_SLP_EN) | PM1_CNT_SCI_EN);
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_destroy(struct acpi_pm *pm)
{
	pthread_mutex_destroy(&pm->lock);
}

/* ---- the device interface ---------------------------------------------------------------- */

static void acpi_pm_dev_save(struct device *d, void *st)
{
	acpi_pm_save(d->dev, st);
}

static int acpi_pm_dev_load(struct device *d, const void *st, char *err, size_t errlen)
{
	acpi_pm_load(d->dev, st);
	return 0;
}

static void acpi_pm_dev_destroy(struct device *d)
{
	acpi_pm_destroy(d->dev);
	free(d->dev);
}

static const struct dev_ops acpi_pm_dev_ops = {
	.name = "acpi-pm1a",
	.snap_section = SNAP_SEC_ACPI_PM,
	.state_size = sizeof(struct acpi_pm_state),
	.save = acpi_pm_dev_save,
	.load = acpi_pm_dev_load,
	.destroy = acpi_pm_dev_destroy,
};

int acpi_pm_create(struct device *d, const struct guest_mem *mem, const struct dev_host *host, const void *params)
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	if (!pm)
		return -ENOMEM;
	acpi_pm_init(pm, host);
	d->ops = &acpi_pm_dev_ops;
	d->dev = d->bus_opaque = pm;
	d->bus_ops = &acpi_pm_ops;
	d->len = LAYOUT_ACPI_PM_LEN;
	return 0;
}
