/* Encoding and checking of snapshot state files: nothing here trusts a byte of the input. */
#include "vmm/snapshot_fmt.h"

#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "devices/virtio_vsock.h"
#include "vmm/x86/acpi.h"
#include "vmm/err.h"
#include "vmm/x86/layout.h"
#include "vmm/mem.h"

#define SNAP_MAX_MSRS   1024u
#define SNAP_MAX_CPUID  4096u
#define SNAP_MAX_XSAVE  (1u << 20)

/* ---- CRC-32 ------------------------------------------------------------------------------------ */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t snap_crc32(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc_once, crc_table_init);
	const uint8_t *p = data;
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- writing ----------------------------------------------------------------------------------- */

static void enc_put(struct snap_enc *e, const void *data, size_t len)
{
	if (e->error)
		return;
	if (e->cap - e->len < len) {
		size_t cap = e->cap ? e->cap : 65536;
		while (cap - e->len < len)
			cap *= 2;
		uint8_t *nb = realloc(e->buf, cap);
		if (!nb) {
			e->error = -ENOMEM;
			return;
		}
		e->buf = nb;
		e->cap = cap;
	}
	if (data)
		memcpy(e->buf + e->len, data, len);
	else
		memset(e->buf + e->len, 0, len);
	e->len += len;
}

void snap_enc_init(struct snap_enc *e, const struct snap_header *h)
{
	*e = (struct snap_enc){ 0 };
	struct snap_header hh = *h;
	memcpy(hh.magic, SNAP_MAGIC, sizeof(hh.magic));
	hh.version = SNAP_VERSION;
	hh.header_size = sizeof(hh);
	enc_put(e, &hh, sizeof(hh));
}

void snap_enc_add(struct snap_enc *e, uint32_t type, uint32_t index, const void *data, size_t len)
{
	struct snap_section s = { .type = type, .index = index, .len = len };
	enc_put(e, &s, sizeof(s));
	enc_put(e, data, len);
	enc_put(e, NULL, (8 - len % 8) % 8);
	e->nsections++;
}

int snap_enc_finish(struct snap_enc *e)
{
	enc_put(e, NULL, 8);
	if (e->error)
		return e->error;
	struct snap_header *h = (struct snap_header *)e->buf;
	h->total_size = e->len;
	h->nsections = e->nsections;
	uint32_t tail[2] = { snap_crc32(0, e->buf, e->len - 8), SNAP_END_MAGIC };
	memcpy(e->buf + e->len - 8, tail, 8);
	return 0;
}

void snap_enc_free(struct snap_enc *e)
{
	free(e->buf);
	*e = (struct snap_enc){ 0 };
}

/* ---- reading ----------------------------------------------------------------------------------- */

int snap_decode(const uint8_t *buf, size_t len, struct snap_view *view, char *err, size_t errlen)
{
	*view = (struct snap_view){ 0 };
	struct snap_header h;
	if (len < sizeof(h.magic) || memcmp(buf, SNAP_MAGIC, sizeof(h.magic)))
		return errorf(err, errlen, -EINVAL, "not a padcell snapshot state file");
	if (len < sizeof(h) + 8)
		return errorf(err, errlen, -EINVAL, "truncated (%zu bytes)", len);
	memcpy(&h, buf, sizeof(h));
	if (h.version == 2)
		return errorf(err, errlen, -EINVAL,
			      "written by padcell snapshot format version 2, which names its drives by path alone; "
			      "this padcell reads version %u only (it checks a drive is the same file): take the "
			      "snapshot again", SNAP_VERSION);
	if (h.version != SNAP_VERSION)
		return errorf(err, errlen, -EINVAL,
			      "written by padcell snapshot format version %u; this padcell reads version %u only",
			      h.version, SNAP_VERSION);
	if (h.header_size != sizeof(h))
		return errorf(err, errlen, -EINVAL, "corrupt header (header size %u)", h.header_size);
	if (h.total_size > len)
		return errorf(err, errlen, -EINVAL, "truncated (%zu of %llu bytes)", len,
			      (unsigned long long)h.total_size);
	if (h.total_size != len)
		return errorf(err, errlen, -EINVAL, "corrupt: %zu bytes where the header says %llu", len,
			      (unsigned long long)h.total_size);
	uint32_t tail[2];
	memcpy(tail, buf + len - 8, 8);
	if (tail[1] != SNAP_END_MAGIC || tail[0] != snap_crc32(0, buf, len - 8))
		return errorf(err, errlen, -EINVAL, "checksum mismatch: the file is corrupt");
	/* Intact as written; still, a buggy or hostile writer gets no further than bounds allow. */
	if (h.nsections > SNAP_MAX_SECTIONS)
		return errorf(err, errlen, -EINVAL, "corrupt: %u sections", h.nsections);
	view->sec = calloc(h.nsections ? h.nsections : 1, sizeof(*view->sec));
	if (!view->sec)
		return errorf(err, errlen, -ENOMEM, "out of memory");
	view->hdr = (const struct snap_header *)buf;
	size_t off = sizeof(h), end = len - 8;
	for (unsigned i = 0; i < h.nsections; i++) {
		struct snap_section s;
		if (end - off < sizeof(s)) {
			snap_view_free(view);
			return errorf(err, errlen, -EINVAL, "corrupt: section %u runs past the end", i);
		}
		memcpy(&s, buf + off, sizeof(s));
		off += sizeof(s);
		uint64_t padded = s.len + (8 - s.len % 8) % 8;
		if (s.len > end - off || padded > end - off) {
			snap_view_free(view);
			return errorf(err, errlen, -EINVAL, "corrupt: section %u (type %u) is %llu bytes, past the end", i,
				      s.type, (unsigned long long)s.len);
		}
		view->sec[i].type = s.type;
		view->sec[i].index = s.index;
		view->sec[i].data = buf + off;
		view->sec[i].len = s.len;
		off += padded;
		for (unsigned j = 0; j < i; j++) {
			if (view->sec[j].type == s.type && view->sec[j].index == s.index) {
				snap_view_free(view);
				return errorf(err, errlen, -EINVAL, "corrupt: section type %u index %u twice", s.type,
					      s.index);
			}
		}
	}
	if (off != end) {
		snap_view_free(view);
		return errorf(err, errlen, -EINVAL, "corrupt: %zu stray bytes after the sections", end - off);
	}
	view->nsec = h.nsections;
	return 0;
}

void snap_view_free(struct snap_view *view)
{
	free(view->sec);
	*view = (struct snap_view){ 0 };
}

const void *snap_find(const struct snap_view *v, uint32_t type, uint32_t index, uint64_t *len)
{
	for (unsigned i = 0; i < v->nsec; i++) {
		if (v->sec[i].type == type && v->sec[i].index == index) {
			if (len)
				*len = v->sec[i].len;
			return v->sec[i].data;
		}
	}
	return NULL;
}

static const char *const sec_names[SNAP_SEC_MAX] = {
	[SNAP_SEC_REGS] = "REGS", [SNAP_SEC_SREGS] = "SREGS", [SNAP_SEC_FPU] = "FPU", [SNAP_SEC_XSAVE] = "XSAVE",
	[SNAP_SEC_XCRS] = "XCRS", [SNAP_SEC_MSRS] = "MSRS", [SNAP_SEC_LAPIC] = "LAPIC",
	[SNAP_SEC_EVENTS] = "VCPU_EVENTS", [SNAP_SEC_MP_STATE] = "MP_STATE", [SNAP_SEC_DEBUGREGS] = "DEBUGREGS",
	[SNAP_SEC_CPUID] = "CPUID", [SNAP_SEC_IRQCHIP] = "IRQCHIP", [SNAP_SEC_PIT2] = "PIT2",
	[SNAP_SEC_CLOCK] = "CLOCK", [SNAP_SEC_SERIAL] = "serial", [SNAP_SEC_I8042] = "i8042",
	[SNAP_SEC_ACPI_PM] = "ACPI PM", [SNAP_SEC_PVPANIC] = "pvpanic", [SNAP_SEC_DISK] = "disk",
	[SNAP_SEC_BLK] = "virtio-blk", [SNAP_SEC_VSOCK] = "virtio-vsock",
	[SNAP_SEC_NET] = "virtio-net",
};

/* Exact size, or 0 for the variable-length sections. */
static uint64_t sec_size(uint32_t type)
{
	switch (type) {
	case SNAP_SEC_REGS: return sizeof(struct kvm_regs);
	case SNAP_SEC_SREGS: return sizeof(struct kvm_sregs);
	case SNAP_SEC_FPU: return sizeof(struct kvm_fpu);
	case SNAP_SEC_XCRS: return sizeof(struct kvm_xcrs);
	case SNAP_SEC_LAPIC: return sizeof(struct kvm_lapic_state);
	case SNAP_SEC_EVENTS: return sizeof(struct kvm_vcpu_events);
	case SNAP_SEC_MP_STATE: return sizeof(struct kvm_mp_state);
	case SNAP_SEC_DEBUGREGS: return sizeof(struct kvm_debugregs);
	case SNAP_SEC_IRQCHIP: return sizeof(struct kvm_irqchip);
	case SNAP_SEC_PIT2: return sizeof(struct kvm_pit_state2);
	case SNAP_SEC_CLOCK: return sizeof(struct kvm_clock_data);
	case SNAP_SEC_SERIAL: return sizeof(struct serial_state);
	case SNAP_SEC_I8042: return sizeof(struct i8042_state);
	case SNAP_SEC_ACPI_PM: return sizeof(struct acpi_pm_state);
	case SNAP_SEC_PVPANIC: return sizeof(uint32_t);
	case SNAP_SEC_DISK: return sizeof(struct snap_disk);
	case SNAP_SEC_BLK: return sizeof(struct virtio_blk_state);
	case SNAP_SEC_VSOCK: return sizeof(struct virtio_vsock_state);
	case SNAP_SEC_NET: return sizeof(struct virtio_net_state);
	default: return 0;
	}
}

static bool sec_per_vcpu(uint32_t type)
{
	return type >= SNAP_SEC_REGS && type <= SNAP_SEC_CPUID;
}

static int need(const struct snap_view *v, uint32_t type, uint32_t index, char *err, size_t errlen)
{
	if (snap_find(v, type, index, NULL))
		return 0;
	if (sec_per_vcpu(type))
		return errorf(err, errlen, -EINVAL, "corrupt: no %s section for vCPU %u", sec_names[type], index);
	if (type == SNAP_SEC_IRQCHIP || type == SNAP_SEC_DISK || type == SNAP_SEC_BLK)
		return errorf(err, errlen, -EINVAL, "corrupt: no %s section %u", sec_names[type], index);
	return errorf(err, errlen, -EINVAL, "corrupt: no %s section", sec_names[type]);
}

int snap_check_machine(const struct snap_view *v, char *err, size_t errlen)
{
	const struct snap_header *h = v->hdr;
	if (h->ncpus < 1 || h->ncpus > ACPI_MAX_CPUS)
		return errorf(err, errlen, -EINVAL, "corrupt: %u vCPUs", h->ncpus);
	if (h->mem_size < GMEM_MIN_SIZE || h->mem_size > GMEM_MAX_SIZE || (h->mem_size & 0xfff) ||
	    h->mem_file_size != h->mem_size + SNAP_DATA_TRAILER)
		return errorf(err, errlen, -EINVAL, "corrupt: memory size %llu", (unsigned long long)h->mem_size);
	unsigned ndisk = 0, nvsock = 0, nnet = 0;
	for (unsigned i = 0; i < v->nsec; i++) {
		uint32_t t = v->sec[i].type, idx = v->sec[i].index;
		uint64_t len = v->sec[i].len;
		if (t >= SNAP_SEC_MAX || !sec_names[t])
			return errorf(err, errlen, -EINVAL, "corrupt: unknown section type %u", t);
		if (sec_per_vcpu(t) && idx >= h->ncpus)
			return errorf(err, errlen, -EINVAL, "corrupt: %s section for vCPU %u of %u", sec_names[t], idx,
				      h->ncpus);
		uint64_t want = sec_size(t);
		bool ok = want ? len == want : false;
		if (t == SNAP_SEC_MSRS)
			ok = len && len % sizeof(struct kvm_msr_entry) == 0 &&
			     len / sizeof(struct kvm_msr_entry) <= SNAP_MAX_MSRS;
		else if (t == SNAP_SEC_CPUID)
			ok = len && len % sizeof(struct kvm_cpuid_entry2) == 0 &&
			     len / sizeof(struct kvm_cpuid_entry2) <= SNAP_MAX_CPUID;
		else if (t == SNAP_SEC_XSAVE)
			ok = len >= sizeof(struct kvm_xsave) && len <= SNAP_MAX_XSAVE && len % 4 == 0;
		if (!ok)
			return errorf(err, errlen, -EINVAL, "corrupt: %s section of %llu bytes", sec_names[t],
				      (unsigned long long)len);
		if (t == SNAP_SEC_IRQCHIP && idx > 2)
			return errorf(err, errlen, -EINVAL, "corrupt: IRQCHIP section for chip %u", idx);
		bool slot = t == SNAP_SEC_DISK || t == SNAP_SEC_BLK || t == SNAP_SEC_VSOCK || t == SNAP_SEC_NET;
		if (slot && idx >= LAYOUT_VIRTIO_MAX)
			return errorf(err, errlen, -EINVAL, "corrupt: %s section for virtio slot %u", sec_names[t], idx);
		if (!sec_per_vcpu(t) && t != SNAP_SEC_IRQCHIP && !slot && idx != 0)
			return errorf(err, errlen, -EINVAL, "corrupt: %s section with index %u", sec_names[t], idx);
		ndisk += t == SNAP_SEC_DISK;
		nvsock += t == SNAP_SEC_VSOCK;
		nnet += t == SNAP_SEC_NET;
	}
	static const uint32_t per_vcpu[] = { SNAP_SEC_REGS, SNAP_SEC_SREGS, SNAP_SEC_FPU, SNAP_SEC_MSRS,
					     SNAP_SEC_LAPIC, SNAP_SEC_EVENTS, SNAP_SEC_MP_STATE,
					     SNAP_SEC_DEBUGREGS, SNAP_SEC_CPUID };
	static const uint32_t machine[] = { SNAP_SEC_PIT2, SNAP_SEC_CLOCK, SNAP_SEC_SERIAL, SNAP_SEC_I8042,
					    SNAP_SEC_ACPI_PM, SNAP_SEC_PVPANIC };
	int rc;
	for (unsigned c = 0; c < h->ncpus; c++)
		for (unsigned i = 0; i < sizeof(per_vcpu) / sizeof(per_vcpu[0]); i++)
			if ((rc = need(v, per_vcpu[i], c, err, errlen)))
				return rc;
	for (unsigned i = 0; i < sizeof(machine) / sizeof(machine[0]); i++)
		if ((rc = need(v, machine[i], 0, err, errlen)))
			return rc;
	for (unsigned c = 0; c < 3; c++)
		if ((rc = need(v, SNAP_SEC_IRQCHIP, c, err, errlen)))
			return rc;
	/* Disks fill virtio slots 0..n-1, each with its device; the vsock device, if any, comes next. */
	for (unsigned d = 0; d < ndisk; d++) {
		if ((rc = need(v, SNAP_SEC_DISK, d, err, errlen)) || (rc = need(v, SNAP_SEC_BLK, d, err, errlen)))
			return rc;
		const struct snap_disk *sd = snap_find(v, SNAP_SEC_DISK, d, NULL);
		if (!memchr(sd->id, 0, sizeof(sd->id)) || strlen(sd->id) > 20 || !memchr(sd->path, 0, sizeof(sd->path)) ||
		    !sd->path[0] || sd->ro > 1 || sd->scratch > 1 || !sd->size || sd->size % 512)
			return errorf(err, errlen, -EINVAL, "corrupt: disk %u", d);
		if (sd->scratch && strchr(sd->path, '/'))
			return errorf(err, errlen, -EINVAL, "corrupt: disk %u's copy is not beside the state file", d);
		if (!sd->scratch && sd->path[0] != '/')
			return errorf(err, errlen, -EINVAL, "corrupt: disk %u's path is not absolute", d);
		if (sd->scratch && (sd->dev || sd->ino || sd->btime_ns))
			return errorf(err, errlen, -EINVAL, "corrupt: scratch disk %u with a host file's identity", d);
	}
	for (unsigned i = 0; i < v->nsec; i++)
		if (v->sec[i].type == SNAP_SEC_BLK && v->sec[i].index >= ndisk)
			return errorf(err, errlen, -EINVAL, "corrupt: virtio-blk device %u without its disk",
				      v->sec[i].index);
	if (nvsock > 1 || (nvsock && !snap_find(v, SNAP_SEC_VSOCK, ndisk, NULL)))
		return errorf(err, errlen, -EINVAL, "corrupt: virtio-vsock device not after the disks");
	/* The NIC, if any, comes after the disks and the vsock device (vmm/vm_devices.c's order). */
	if (nnet > 1 || (nnet && !snap_find(v, SNAP_SEC_NET, ndisk + nvsock, NULL)))
		return errorf(err, errlen, -EINVAL, "corrupt: virtio-net device not after the disks and vsock");
	return 0;
}

/* ---- data-file trailer -------------------------------------------------------------------------- */

struct trailer {
	char magic[8];
	uint32_t version, pad;
	uint8_t id[SNAP_ID_BYTES];
	uint64_t data_size;
	uint32_t crc, pad2;
};

void snap_trailer_make(uint8_t out[SNAP_DATA_TRAILER], const uint8_t id[SNAP_ID_BYTES], uint64_t data_size)
{
	struct trailer t = { .version = SNAP_VERSION, .data_size = data_size };
	memcpy(t.magic, SNAP_DATA_MAGIC, sizeof(t.magic));
	memcpy(t.id, id, SNAP_ID_BYTES);
	t.crc = snap_crc32(0, &t, offsetof(struct trailer, crc));
	memset(out, 0, SNAP_DATA_TRAILER);
	memcpy(out, &t, sizeof(t));
}

int snap_trailer_check(const uint8_t in[SNAP_DATA_TRAILER], const uint8_t id[SNAP_ID_BYTES], uint64_t data_size,
		       char *err, size_t errlen)
{
	struct trailer t;
	memcpy(&t, in, sizeof(t));
	if (memcmp(t.magic, SNAP_DATA_MAGIC, sizeof(t.magic)) ||
	    t.crc != snap_crc32(0, &t, offsetof(struct trailer, crc)))
		return errorf(err, errlen, -EINVAL, "not a padcell snapshot data file (no trailer)");
	if (t.version != SNAP_VERSION || memcmp(t.id, id, SNAP_ID_BYTES) || t.data_size != data_size)
		return errorf(err, errlen, -EINVAL, "belongs to another snapshot than the state file");
	return 0;
}
