/* Snapshot files: whole reads and writes, sparse copies, data-file trailers, and the atomic set of renames. */
#include "vmm/snapshot_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/jail/jail.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/util.h"

#define PAGE 4096u

/* ---- files: temporary names, sparse data, atomic renames ---------------------------------------- */

/* The directory part of path ("." for a bare name), for temporary files beside it and fsync. */
void snap_dir_of(const char *path, char *out, size_t outlen)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", path);
	snprintf(out, outlen, "%s", dirname(tmp));
}

void snap_base_of(const char *path, char *out, size_t outlen)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", path);
	snprintf(out, outlen, "%s", basename(tmp));
}

int snap_fsync_dir(const char *dir)
{
	int fd = jail_open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* When this process started: a temporary file last written before it was not made by this process. */
static struct timespec proc_start;
__attribute__((constructor)) static void snap_note_start(void)
{
	clock_gettime(CLOCK_REALTIME, &proc_start);
}

/* A whole-file OFD write lock on fd, without waiting: 0, or -errno (-EAGAIN: someone holds one). */
static int snap_tmp_lock(int fd)
{
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	return fcntl(fd, F_OFD_SETLK, &l) < 0 ? -errno : 0;
}

/*
 * Removes the "<dir>/.<base>.tmp-XXXXXX" files of writers that died before their rename (a
 * SIGKILLed monitor mid-snapshot, a power loss): a writer holds an OFD lock on its file from the
 * moment it makes it until it closes it, and the kernel drops the lock however the writer ends.
 * A file last written before this process started whose lock can be taken has no writer; one
 * written since may be another writer's between its create and its lock, and is left alone.
 */
static void snap_tmp_sweep(const char *dir, const char *base)
{
	int dfd = jail_open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (dfd < 0)
		return;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	char prefix[300];
	int pl = snprintf(prefix, sizeof(prefix), ".%s.tmp-", base);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, prefix, (size_t)pl) || strlen(e->d_name) != (size_t)pl + 6)
			continue;
		int fd = openat(dirfd(d), e->d_name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue;
		struct stat st;
		bool before = !fstat(fd, &st) && S_ISREG(st.st_mode) &&
			      (st.st_mtim.tv_sec < proc_start.tv_sec ||
			       (st.st_mtim.tv_sec == proc_start.tv_sec && st.st_mtim.tv_nsec < proc_start.tv_nsec));
		if (before && snap_tmp_lock(fd) == 0)
			unlinkat(dirfd(d), e->d_name, 0);
		close(fd);
	}
	closedir(d);
}

/*
 * A new file "<dir>/.<name>.tmp-XXXXXX" beside path, locked for as long as it is open (see
 * snap_tmp_sweep, which first removes such files of writers that died); its name goes to tmp.
 */
int snap_tmp_create(const char *path, char *tmp, size_t tmplen)
{
	char dir[4096], base[256];
	snap_dir_of(path, dir, sizeof(dir));
	snap_base_of(path, base, sizeof(base));
	snap_tmp_sweep(dir, base);
	if ((size_t)snprintf(tmp, tmplen, "%s/.%s.tmp-XXXXXX", dir, base) >= tmplen)
		return -ENAMETOOLONG;
	/* mkostemp's job, through the jail (whose root is empty: the directory is a held fd) */
	static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	char *x = tmp + strlen(tmp) - 6;
	for (int attempt = 0; attempt < 100; attempt++) {
		uint8_t r[6];
		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
			return -EIO;
		for (int i = 0; i < 6; i++)
			x[i] = chars[r[i] % (sizeof(chars) - 1)];
		int fd = jail_open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			snap_tmp_lock(fd); /* where locks are not supported, the sweep cannot take one either */
		if (fd != -EEXIST)
			return fd;
	}
	return -EEXIST;
}

int snap_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int snap_pread_all(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	for (unsigned i = 0; i < PAGE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

/*
 * Which pages of an anonymous mapping were never touched: /proc/self/pagemap says "neither
 * present nor swapped", and such pages read as zeros.  Saves reading (and mapping the zero
 * page into) gigabytes a guest never used.  NULL when pagemap cannot be read: scan everything.
 */
static int pagemap_fd(void)
{
	int fd = jail_open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
	return fd < 0 ? -1 : fd;
}

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)

/* Whether byte off of file src lies in a hole; *cur caches the data extent around the last answer. */
static bool file_hole_at(int src, uint64_t off, uint64_t cur[2])
{
	if (off >= cur[1]) { /* offsets only grow: the cached extent answers until past its end */
		off_t data = lseek(src, (off_t)off, SEEK_DATA);
		if (data < 0) {
			/* ENXIO: only holes from here on; anything else: assume data, and look. */
			cur[0] = cur[1] = errno == ENXIO ? UINT64_MAX : off;
			return errno == ENXIO;
		}
		off_t hole = lseek(src, data, SEEK_HOLE);
		cur[0] = (uint64_t)data;
		cur[1] = hole < 0 ? (uint64_t)data + PAGE : (uint64_t)hole;
	}
	return off < cur[0];
}

/*
 * Writes guest memory into fd at 0: pages that are all zero are left as holes.  A page pagemap
 * reports untouched is zero without looking when the memory is anonymous, and when it is mapped
 * from a file (a restored VM) and the file has a hole there.
 */
int snap_write_mem(int fd, const struct guest_mem *m)
{
	const uint8_t *host = m->host;
	uint64_t size = m->size, cur[2] = { 0, 0 };
	int pm = pagemap_fd();
	enum { BATCH = 512 };
	uint64_t ent[BATCH];
	uint64_t run_start = 0, run_len = 0;
	int rc = 0;
	for (uint64_t off = 0; off < size && !rc; off += (uint64_t)BATCH * PAGE) {
		uint64_t npages = (size - off) / PAGE < BATCH ? (size - off) / PAGE : BATCH;
		bool have_pm = false;
		if (pm >= 0) {
			uint64_t vpn = ((uintptr_t)host + off) / PAGE;
			have_pm = snap_pread_all(pm, ent, npages * 8, (off_t)(vpn * 8)) == 0;
		}
		for (uint64_t i = 0; i < npages && !rc; i++) {
			uint64_t o = off + i * PAGE;
			bool untouched = have_pm && !(ent[i] & (PM_PRESENT | PM_SWAPPED));
			bool zero = (untouched && (!m->from_file || file_hole_at(m->file_fd, o, cur))) ||
				    page_is_zero(host + o);
			if (!zero && run_len && run_start + run_len == o && run_len < (8u << 20)) {
				run_len += PAGE;
				continue;
			}
			if (run_len)
				rc = snap_pwrite_all(fd, host + run_start, run_len, (off_t)run_start);
			run_len = 0;
			if (!zero) {
				run_start = o;
				run_len = PAGE;
			}
		}
	}
	if (!rc && run_len)
		rc = snap_pwrite_all(fd, host + run_start, run_len, (off_t)run_start);
	if (pm >= 0)
		close(pm);
	return rc;
}

/* Copies the data extents of the first `size` bytes of src into dst (holes stay holes). */
int snap_copy_sparse(int dst, int src, uint64_t size)
{
	enum { COPY_BUF = 1 << 16 };
	uint8_t *buf = NULL; /* only when the kernel cannot copy: see below */
	int rc = 0;
	off_t off = 0;
	while (!rc && (uint64_t)off < size) {
		off_t data = lseek(src, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0) {
			rc = -errno;
			break;
		}
		if ((uint64_t)data >= size)
			break;
		off_t hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0) {
			rc = -errno;
			break;
		}
		if ((uint64_t)hole > size)
			hole = (off_t)size;
		off_t in = data, out = data;
		while (!rc && in < hole) {
			ssize_t n = copy_file_range(src, &in, dst, &out, (size_t)(hole - in), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
				/*
				 * No in-kernel copy between these files: through a buffer from the heap, made
				 * on this path only.  (A static __thread one was the whole static TLS block,
				 * zeroed and resident in every thread of every VM.)
				 */
				if (!buf && !(buf = malloc(COPY_BUF))) {
					rc = -ENOMEM;
					break;
				}
				size_t want = (size_t)(hole - in) < COPY_BUF ? (size_t)(hole - in) : COPY_BUF;
				rc = snap_pread_all(src, buf, want, in);
				if (!rc)
					rc = snap_pwrite_all(dst, buf, want, out);
				in += (off_t)want;
				out += (off_t)want;
				continue;
			}
			if (n < 0)
				rc = -errno;
			else if (n == 0)
				rc = -EIO;
		}
		off = hole;
	}
	free(buf);
	return rc;
}

int snap_data_finish(int fd, const uint8_t id[SNAP_ID_BYTES], uint64_t size)
{
	uint8_t tr[SNAP_DATA_TRAILER];
	snap_trailer_make(tr, id, size);
	int rc = snap_pwrite_all(fd, tr, sizeof(tr), (off_t)size);
	if (!rc && ftruncate(fd, (off_t)(size + SNAP_DATA_TRAILER)) < 0)
		rc = -errno;
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	return rc;
}

int snap_state_read(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	const char *kind = NULL;
	int fd = open_user_file(path, O_RDONLY, false, &kind);
	if (fd < 0 && kind)
		return errorf(err, errlen, -EINVAL, "state file '%s': not a regular file (%s)", path, kind);
	if (fd < 0)
		return errorf(err, errlen, fd == -ENOENT ? -EINVAL : fd, "state file '%s': %s", path, strerror(-fd));
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = errorf(err, errlen, -errno, "state file '%s': %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = errorf(err, errlen, -EINVAL, "state file '%s': not a regular file", path);
	} else if (st.st_size > SNAP_MAX_SIZE) {
		rc = errorf(err, errlen, -EINVAL, "state file '%s': too large (%lld bytes) to be a padcell state file",
			    path, (long long)st.st_size);
	} else {
		*len = (size_t)st.st_size;
		*buf = malloc(*len ? *len : 1);
		if (!*buf)
			rc = errorf(err, errlen, -ENOMEM, "out of memory");
		else if ((rc = snap_pread_all(fd, *buf, *len, 0)))
			rc = errorf(err, errlen, rc == -ENODATA ? -EINVAL : rc, "state file '%s': %s", path,
				    rc == -ENODATA ? "shrank while being read" : strerror(-rc));
		if (rc) {
			free(*buf);
			*buf = NULL;
		}
	}
	close(fd);
	return rc;
}

/* Opens a data file and checks it is `size` bytes of this snapshot's data plus its trailer. */
int snap_data_open(const char *path, const char *what, const uint8_t id[SNAP_ID_BYTES], uint64_t size,
			  char *err, size_t errlen)
{
	const char *kind = NULL;
	int fd = open_user_file(path, O_RDONLY, false, &kind);
	if (fd < 0 && kind)
		return errorf(err, errlen, -EINVAL, "%s '%s': not a regular file (%s)", what, path, kind);
	if (fd < 0)
		return errorf(err, errlen, fd == -ENOENT ? -EINVAL : fd, "%s '%s': %s", what, path, strerror(-fd));
	struct stat st;
	char why[160];
	uint8_t tr[SNAP_DATA_TRAILER];
	int rc;
	if (fstat(fd, &st) < 0) {
		rc = errorf(err, errlen, -errno, "%s '%s': %s", what, path, strerror(errno));
	} else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size + SNAP_DATA_TRAILER) {
		rc = errorf(err, errlen, -EINVAL, "%s '%s' is %lld bytes; the snapshot needs %llu", what, path,
			    (long long)st.st_size, (unsigned long long)(size + SNAP_DATA_TRAILER));
	} else if ((rc = snap_pread_all(fd, tr, sizeof(tr), (off_t)size))) {
		rc = errorf(err, errlen, rc == -ENODATA ? -EINVAL : rc, "%s '%s': cannot read its trailer", what, path);
	} else if (snap_trailer_check(tr, id, size, why, sizeof(why))) {
		rc = errorf(err, errlen, -EINVAL, "%s '%s' %s", what, path, why);
	} else {
		return fd;
	}
	close(fd);
	return rc;
}

/* The snapshot's disks, reopened: --drive images by path, scratch disks as private copies. */

/* ---- the atomic set: every file under a temporary name, renamed into place, the state last ------------ */

int snap_files_create(struct snap_files *f, const char *final, const char *beside, char *err, size_t errlen)
{
	if (f->n >= SNAP_FILES_MAX)
		return errorf(err, errlen, -ENOSPC, "too many snapshot files");
	struct snap_file *sf = &f->files[f->n];
	*sf = (struct snap_file){ 0 };
	int fd = snap_tmp_create(final, sf->tmp, sizeof(sf->tmp));
	if (fd < 0 && (fd == -EACCES || fd == -EPERM) && jail_confined())
		return errorf(err, errlen, fd, "cannot create a file beside '%s': the jail allows snapshots only beneath "
			      "the API socket's directory and --jail-dir directories (start the VM with --jail-dir DIR)", beside);
	if (fd < 0)
		return errorf(err, errlen, fd, "cannot create a file beside '%s': %s", beside, strerror(-fd));
	snprintf(sf->final, sizeof(sf->final), "%s", final);
	sf->made = true;
	f->n++;
	return fd;
}

int snap_files_commit(struct snap_files *f, const char *mem_path, char *err, size_t errlen)
{
	struct snap_file *state = &f->files[f->n - 1];
	char dir[4096];
	snap_dir_of(state->final, dir, sizeof(dir));
	/*
	 * The old state goes first, so from here until the last rename there is no state file at
	 * all; the state, which makes a snapshot, comes last.  A kill or a full disk at any point
	 * leaves either no state file or a complete, matching set.
	 */
	int urc = jail_unlink(state->final);
	if (urc && urc != -ENOENT)
		return errorf(err, errlen, urc, "cannot replace '%s': %s", state->final, strerror(-urc));
	snap_fsync_dir(dir);
	for (unsigned i = 0; i + 1 < f->n; i++) {
		int rrc = jail_rename(f->files[i].tmp, f->files[i].final);
		if (rrc)
			return errorf(err, errlen, rrc, "cannot rename into '%s': %s", f->files[i].final, strerror(-rrc));
		f->files[i].made = false;
	}
	char mdir[4096];
	snap_dir_of(mem_path, mdir, sizeof(mdir));
	snap_fsync_dir(mdir);
	int src = jail_rename(state->tmp, state->final);
	if (src)
		return errorf(err, errlen, src, "cannot rename into '%s': %s", state->final, strerror(-src));
	state->made = false;
	int rc = snap_fsync_dir(dir);
	if (rc)
		return errorf(err, errlen, rc, "cannot sync the directory of '%s': %s", state->final, strerror(-rc));
	return 0;
}

void snap_files_abort(struct snap_files *f)
{
	for (unsigned i = 0; i < f->n; i++)
		if (f->files[i].made)
			jail_unlink(f->files[i].tmp);
	f->n = 0;
}
