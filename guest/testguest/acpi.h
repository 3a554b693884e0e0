/* The ACPI tables the test guest reads: the same declarations padcell writes them with. */
#ifndef TG_ACPI_H
#define TG_ACPI_H

#include "vmm/x86/acpi_tables.h"

#endif
