/*
 * padcell's DSDT, compiled by iasl at build time.  Port numbers must match vmm/x86/layout.h
 * (LAYOUT_PVPANIC_PORT) and the \_S5 value LAYOUT_ACPI_S5_TYPE.
 */
DefinitionBlock ("dsdt.aml", "DSDT", 2, "PADCEL", "PADCELL ", 1)
{
    /* S5 (soft off): SLP_TYP 5 with SLP_EN written to PM1a_CNT powers off. */
    Name (_S5, Package (0x04) { 0x05, 0x00, 0x00, 0x00 })

    Scope (\_SB)
    {
        /* pvpanic: the guest writes 1 to port 0x505 when its kernel panics. */
        Device (PEVT)
        {
            Name (_HID, "QEMU0001")
            Name (_UID, Zero)
            Name (_CRS, ResourceTemplate ()
            {
                IO (Decode16, 0x0505, 0x0505, 0x01, 0x01)
            })
            Method (_STA, 0, NotSerialized)
            {
                Return (0x0F)
            }
        }
    }
}
