/* Snapshot files: whole reads and writes, sparse copies, data-file trailers, and the atomic set of renames. */
#ifndef PADCELL_SNAPSHOT_IO_H
#define PADCELL_SNAPSHOT_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/mem.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/x86/layout.h"

/* The directory part of path ("." for a bare name), and the name without it. */
void snap_dir_of(const char *path, char *out, size_t outlen);
void snap_base_of(const char *path, char *out, size_t outlen);
int snap_fsync_dir(const char *dir);
/* A new file "<dir>/.<name>.tmp-XXXXXX" beside path; its name goes to tmp.  The fd or -errno. */
int snap_tmp_create(const char *path, char *tmp, size_t tmplen);

/* All of buf, retrying short transfers: 0 or -errno (-EIO for a write of 0, -ENODATA for EOF). */
int snap_pwrite_all(int fd, const void *buf, size_t len, off_t off);
int snap_pread_all(int fd, void *buf, size_t len, off_t off);

/* Guest memory into fd at 0; all-zero and untouched pages stay holes.  0 or -errno. */
int snap_write_mem(int fd, const struct guest_mem *m);
/* Copies the data extents of the first `size` bytes of src into dst (holes stay holes).  0 or -errno. */
int snap_copy_sparse(int dst, int src, uint64_t size);

/* Ends a data file of `size` bytes with the snapshot's trailer, and fsyncs it. */
int snap_data_finish(int fd, const uint8_t id[SNAP_ID_BYTES], uint64_t size);
/* Opens a data file and checks it is `size` bytes of this snapshot's data plus its trailer: fd or -errno with err. */
int snap_data_open(const char *path, const char *what, const uint8_t id[SNAP_ID_BYTES], uint64_t size,
		   char *err, size_t errlen);
/* The whole state file into a new buffer (at most SNAP_MAX_SIZE); 0 or -errno with err (-EINVAL: not one). */
int snap_state_read(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen);

/*
 * The files one snapshot writes, each under a temporary name until snap_files_commit renames
 * them all into place, the state file (the last one created) last.
 */
#define SNAP_FILES_MAX (2 + LAYOUT_VIRTIO_MAX)
struct snap_file {
	char tmp[4400];
	char final[4400];
	bool made;                /* tmp exists and is ours to remove */
};
struct snap_files {
	struct snap_file files[SNAP_FILES_MAX];
	unsigned n;
};
/* A temporary file that becomes `final`; errors name `beside`.  The fd, or -errno with err set. */
int snap_files_create(struct snap_files *f, const char *final, const char *beside, char *err, size_t errlen);
/* Renames every file into place, the state last, syncing the directories (mem_path's too). */
int snap_files_commit(struct snap_files *f, const char *mem_path, char *err, size_t errlen);
/* Removes whatever temporary files are left. */
void snap_files_abort(struct snap_files *f);

#endif
