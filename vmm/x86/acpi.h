/* ACPI tables for a hardware-reduced platform: RSDP, XSDT, FADT, MADT and the compiled DSDT. */
#ifndef PADCELL_ACPI_H
#define PADCELL_ACPI_H

#include <stdint.h>

#include "vmm/mem.h"

/* Largest vCPU count the MADT describes (xAPIC IDs, one byte, 0xff is broadcast). */
#define ACPI_MAX_CPUS 254

/* Writes all tables into [LAYOUT_ACPI_START, LAYOUT_ACPI_END); returns the RSDP address. */
int acpi_build(const struct guest_mem *m, unsigned ncpus, uint64_t *rsdp_gpa);

/* Sum of bytes; a valid ACPI table sums to zero. */
uint8_t acpi_checksum(const void *p, uint64_t len);

#endif
