/* Guest physical memory map and port assignments: the contract between padcell and its guests. */
#ifndef PADCELL_LAYOUT_H
#define PADCELL_LAYOUT_H

/*
 * Shared by the monitor and the test guest (guest/testguest), so both sides agree on
 * where the boot structures live.  Constants only: this header is included from
 * freestanding code and from assembly.
 */

/* Boot structures in low memory (below the EBDA). */
#define LAYOUT_GDT_ADDR          0x500
#define LAYOUT_PVH_INFO_ADDR     0x6000   /* struct hvm_start_info                 */
#define LAYOUT_PVH_MEMMAP_ADDR   0x6040   /* struct hvm_memmap_table_entry[]       */
#define LAYOUT_PVH_MODLIST_ADDR  0x6f00   /* struct hvm_modlist_entry (the initrd) */
#define LAYOUT_ZERO_PAGE_ADDR    0x7000   /* struct boot_params                    */
#define LAYOUT_BOOT_STACK_TOP    0x8ff0
#define LAYOUT_PML4_ADDR         0x9000
#define LAYOUT_PDPT_ADDR         0xa000
#define LAYOUT_PD_ADDR           0xb000   /* four pages: identity map of 0..4 GiB  */
#define LAYOUT_CMDLINE_ADDR      0x20000
#define LAYOUT_CMDLINE_MAX       4096     /* including the terminating NUL         */

/* Legacy holes.  RAM is [0, EBDA) and [1 MiB, ...). */
#define LAYOUT_EBDA_START        0x9fc00
#define LAYOUT_ACPI_START        0xe0000  /* RSDP and all ACPI tables              */
#define LAYOUT_ACPI_END          0x100000
#define LAYOUT_HIMEM_START       0x100000

/* 32-bit MMIO gap: guest RAM above it continues at 4 GiB. */
#define LAYOUT_MMIO_GAP_START    0xc0000000ULL
#define LAYOUT_MMIO_GAP_END      0x100000000ULL
#define LAYOUT_VIRTIO_MMIO_BASE  0xd0000000ULL
#define LAYOUT_VIRTIO_MMIO_STRIDE 0x1000  /* device i at BASE + i * STRIDE            */
#define LAYOUT_IOAPIC_ADDR       0xfec00000ULL
#define LAYOUT_LAPIC_ADDR        0xfee00000ULL

/* Port I/O. */
#define LAYOUT_COM1_PORT         0x3f8
#define LAYOUT_COM1_IRQ          4
#define LAYOUT_I8042_DATA_PORT   0x60
#define LAYOUT_I8042_CMD_PORT    0x64
#define LAYOUT_PVPANIC_PORT      0x505
#define LAYOUT_ACPI_PM1_EVT      0x600    /* PM1a event block: status(2), enable(2) */
#define LAYOUT_ACPI_PM1_CNT      0x604    /* PM1a control block (2 bytes)           */
#define LAYOUT_ACPI_PM_LEN       6        /* both blocks, one device                */
#define LAYOUT_ACPI_SCI_IRQ      9        /* declared in the FADT, never raised     */

/*
 * Virtio-mmio device i gets ISA IRQ LAYOUT_VIRTIO_IRQS[i] (identity-mapped to an I/O APIC pin,
 * edge-triggered).  Skipped: 0 PIT, 1 i8042 keyboard, 2 cascade, 3 COM2, 4 COM1, 8 RTC,
 * 9 ACPI SCI (level, active-low: cannot share with an edge), 12 i8042 aux.
 */
#define LAYOUT_VIRTIO_IRQS       { 5, 6, 7, 10, 11, 13, 14, 15 }
#define LAYOUT_VIRTIO_MAX        8

/* ACPI S5 sleep type: the value of \_S5 in the DSDT, written to PM1a_CNT.SLP_TYP. */
#define LAYOUT_ACPI_S5_TYPE      5

#endif
