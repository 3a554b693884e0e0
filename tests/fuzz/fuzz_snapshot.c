/* Fuzzes the snapshot state-file decoder (vmm/snapshot_fmt.c): snap_decode, snap_check_machine and the data-file trailer check. */
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/snapshot_fmt.h"

/*
 * The first byte picks a mode.  Bit 0: fix the file up first (total_size and the CRC trailer made
 * to match), so the mutations reach the section walk and the machine check behind the checksum.
 * Bit 1: also check the last SNAP_DATA_TRAILER bytes as a data-file trailer.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++, size--;
	uint8_t *buf = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if ((mode & 1) && size >= sizeof(struct snap_header) + 8) {
		struct snap_header h;
		memcpy(&h, buf, sizeof(h));
		h.total_size = size;
		memcpy(buf, &h, sizeof(h));
		uint32_t tail[2] = { snap_crc32(0, buf, size - 8), SNAP_END_MAGIC };
		memcpy(buf + size - 8, tail, sizeof(tail));
	}
	struct snap_view v;
	char err[256];
	if (snap_decode(buf, size, &v, err, sizeof(err)) == 0) {
		/* Every indexed section lies inside the file; snap_find finds each one. */
		for (unsigned i = 0; i < v.nsec; i++) {
			const uint8_t *d = v.sec[i].data;
			if (d < buf || d > buf + size || v.sec[i].len > (uint64_t)(buf + size - d))
				abort();
			uint64_t len;
			if (!snap_find(&v, v.sec[i].type, v.sec[i].index, &len) || len != v.sec[i].len)
				abort();
		}
		if (snap_check_machine(&v, err, sizeof(err)) == 0 && (v.hdr->ncpus == 0 || v.nsec == 0))
			abort();
		snap_view_free(&v);
	} else if (!err[0]) {
		abort();
	}
	if ((mode & 2) && size >= SNAP_DATA_TRAILER + SNAP_ID_BYTES + 8) {
		uint64_t data_size;
		memcpy(&data_size, buf, 8);
		snap_trailer_check(buf + size - SNAP_DATA_TRAILER, buf + 8, data_size, err, sizeof(err));
	}
	free(buf);
	return 0;
}
