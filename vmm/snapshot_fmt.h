/* The snapshot state file's format: header, typed sections, CRC-32 trailer; and the data files' trailer. */
#ifndef PADCELL_SNAPSHOT_FMT_H
#define PADCELL_SNAPSHOT_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A state file is, in host (x86-64, little-endian) byte order:
 *   struct snap_header
 *   nsections x { struct snap_section, len bytes of data, zero padding to 8 bytes }
 *   uint32_t crc32 of every byte before it, uint32_t SNAP_END_MAGIC
 * Any change to the header, a section's layout or the set of sections bumps SNAP_VERSION:
 * a snapshot is only restored by the padcell format version that wrote it.
 */
#define SNAP_MAGIC      "PADCSNAP"
#define SNAP_VERSION    3u /* 2: the virtio-net section; 3: a drive's identity in struct snap_disk */
#define SNAP_END_MAGIC  0x444e4553u /* "SEND" */
#define SNAP_MAX_SECTIONS 4096u
#define SNAP_MAX_SIZE   (64u << 20)  /* no state file is near this; a bigger one is refused unread */
#define SNAP_ID_BYTES   16

struct snap_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;     /* sizeof(struct snap_header) */
	uint64_t total_size;      /* the whole file, trailer included */
	uint8_t id[SNAP_ID_BYTES];/* random; the memory file and disk copies carry it too */
	uint64_t mem_size;        /* guest RAM bytes */
	uint64_t mem_file_size;   /* mem_size + SNAP_DATA_TRAILER */
	uint32_t ncpus;
	uint32_t nsections;
	uint32_t host_cpuid_crc;  /* crc32 of KVM_GET_SUPPORTED_CPUID's entries where it was taken */
	uint32_t tsc_khz;         /* the vCPUs' TSC frequency, 0 when KVM would not say */
	uint64_t created_ns;      /* CLOCK_REALTIME when taken */
	uint8_t reserved[40];
};
_Static_assert(sizeof(struct snap_header) == 120, "snap_header layout");

struct snap_section {
	uint32_t type;            /* enum snap_sec */
	uint32_t index;           /* vCPU, disk or irqchip number; 0 otherwise */
	uint64_t len;             /* data bytes, without padding */
};

enum snap_sec {
	/* per vCPU (index = vCPU) */
	SNAP_SEC_REGS = 1,        /* struct kvm_regs */
	SNAP_SEC_SREGS,           /* struct kvm_sregs */
	SNAP_SEC_FPU,             /* struct kvm_fpu */
	SNAP_SEC_XSAVE,           /* KVM_GET_XSAVE(2) area, optional */
	SNAP_SEC_XCRS,            /* struct kvm_xcrs, optional */
	SNAP_SEC_MSRS,            /* struct kvm_msr_entry[] */
	SNAP_SEC_LAPIC,           /* struct kvm_lapic_state */
	SNAP_SEC_EVENTS,          /* struct kvm_vcpu_events */
	SNAP_SEC_MP_STATE,        /* struct kvm_mp_state */
	SNAP_SEC_DEBUGREGS,       /* struct kvm_debugregs */
	SNAP_SEC_CPUID,           /* struct kvm_cpuid_entry2[] as given to the vCPU */
	/* the machine */
	SNAP_SEC_IRQCHIP = 32,    /* struct kvm_irqchip; index = chip (PIC master, slave, IOAPIC) */
	SNAP_SEC_PIT2,            /* struct kvm_pit_state2 */
	SNAP_SEC_CLOCK,           /* struct kvm_clock_data */
	SNAP_SEC_SERIAL,          /* struct serial_state */
	SNAP_SEC_I8042,           /* struct i8042_state */
	SNAP_SEC_ACPI_PM,         /* struct acpi_pm_state */
	SNAP_SEC_PVPANIC,         /* uint32_t */
	SNAP_SEC_DISK,            /* struct snap_disk; index = virtio slot */
	SNAP_SEC_BLK,             /* struct virtio_blk_state; index = virtio slot */
	SNAP_SEC_VSOCK,           /* struct virtio_vsock_state; index = virtio slot */
	SNAP_SEC_NET,             /* struct virtio_net_state; index = virtio slot */
	SNAP_SEC_MAX
};

/*
 * A disk as the snapshot knows it.  A scratch disk's contents are in the file `path` beside the
 * state file; a --drive is the host file at `path`, and restore reopens a writable one only if it
 * is still that file (util.h struct file_id: dev, ino, birth time; and size), since a state file
 * can be crafted to name any file.  All identity fields are 0 for a scratch disk.
 */
struct snap_disk {
	uint64_t size;
	uint8_t ro, scratch, pad[6];
	char id[24];              /* NUL-terminated, at most 20 bytes */
	char path[4096];          /* a --drive's absolute path; a scratch copy's file name beside the state */
	uint64_t dev, ino;        /* the --drive's identity when the snapshot was taken */
	uint64_t btime_ns;
};
_Static_assert(sizeof(struct snap_disk) == 4160, "snap_disk layout");

/* ---- writing ------------------------------------------------------------------------------- */

struct snap_enc {
	uint8_t *buf;
	size_t len, cap;
	uint32_t nsections;
	int error;                /* -ENOMEM once an append failed; snap_enc_finish reports it */
};

void snap_enc_init(struct snap_enc *e, const struct snap_header *h);
void snap_enc_add(struct snap_enc *e, uint32_t type, uint32_t index, const void *data, size_t len);
/* Fills in total_size and nsections, appends the checksum.  0 or -ENOMEM. */
int snap_enc_finish(struct snap_enc *e);
void snap_enc_free(struct snap_enc *e);

/* ---- reading -------------------------------------------------------------------------------- */

struct snap_view {
	const struct snap_header *hdr;
	struct {
		uint32_t type, index;
		const uint8_t *data;
		uint64_t len;
	} *sec;
	unsigned nsec;
};

/*
 * Checks buf (len bytes) is a complete, intact state file of this format version and indexes
 * its sections.  0, or -EINVAL with err saying what is wrong.  view points into buf.
 */
int snap_decode(const uint8_t *buf, size_t len, struct snap_view *view, char *err, size_t errlen);
void snap_view_free(struct snap_view *view);

/* The section (type, index): its data and length, or NULL. */
const void *snap_find(const struct snap_view *v, uint32_t type, uint32_t index, uint64_t *len);

/*
 * Checks that every section a machine needs is there with the size its type has, for every
 * vCPU the header counts, and that the disk and device sections agree.  0 or -EINVAL with err.
 */
int snap_check_machine(const struct snap_view *v, char *err, size_t errlen);

/* ---- the memory file's and disk copies' trailer ----------------------------------------------- */

/*
 * Data files (guest memory, scratch-disk copies) are the data followed by one 4 KiB trailer
 * naming the snapshot they belong to, so a state file is never paired with another snapshot's
 * memory.
 */
#define SNAP_DATA_TRAILER 4096u
#define SNAP_DATA_MAGIC   "PADCDATA"
void snap_trailer_make(uint8_t out[SNAP_DATA_TRAILER], const uint8_t id[SNAP_ID_BYTES], uint64_t data_size);
/* 0, or -EINVAL with err when the trailer is not a padcell trailer for (id, data_size). */
int snap_trailer_check(const uint8_t in[SNAP_DATA_TRAILER], const uint8_t id[SNAP_ID_BYTES], uint64_t data_size,
		       char *err, size_t errlen);

/* CRC-32 (IEEE 802.3, as zlib's crc32), continuing from crc (0 to start). */
uint32_t snap_crc32(uint32_t crc, const void *data, size_t len);

#endif
