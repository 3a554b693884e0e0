/* Snapshots of a paused VM: guest memory in one file, machine state in another; restore from them. */
#ifndef PADCELL_SNAPSHOT_H
#define PADCELL_SNAPSHOT_H

#include <stddef.h>

struct vm;
struct vm_config;

/*
 * Writes the paused VM's memory to mem_path (sparse: all-zero pages are holes) and its
 * machine state to state_path (versioned, checksummed).  Both are written under temporary
 * names and renamed into place, state last, so no failure leaves a snapshot that looks valid.
 * -EBUSY when the VM is not paused; else 0 or -errno with err set.
 */
int snapshot_create(struct vm *vm, const char *state_path, const char *mem_path, char *err, size_t errlen);

/*
 * Creates the VM described by the snapshot (memory mapped copy-on-write from mem_path, vCPU,
 * irqchip, PIT, clock and device state loaded), ready for vm_start().  cfg supplies what is
 * not in the snapshot (console, vsock path and listening socket, verbosity); its disks, mem
 * size and vCPU count are ignored.  0, or -errno with err set (-EINVAL for a snapshot that is
 * corrupt, truncated, of another format version or does not match this host).
 */
int vm_restore(struct vm *vm, const struct vm_config *cfg, const char *state_path, const char *mem_path,
	       char *err, size_t errlen);

#endif
