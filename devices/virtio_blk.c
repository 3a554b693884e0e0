/* virtio-blk: the guest's requests become preadv/pwritev/fdatasync/fallocate on a worker thread. */
#include "devices/virtio_blk.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/falloc.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/util.h"

_Static_assert(sizeof(struct virtio_blk_outhdr) == 16, "request header is 16 bytes");
_Static_assert(sizeof(struct virtio_blk_discard_write_zeroes) == 16, "discard range is 16 bytes");

/* ---- backing files ------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, int rc, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return rc;
}

static int disk_check(struct blk_disk *d, char *err, size_t errlen)
{
	struct stat st;
	if (fstat(d->fd, &st) < 0)
		return fail(err, errlen, -errno, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return fail(err, errlen, -EISDIR, "is a directory");
	if (!S_ISREG(st.st_mode))
		return fail(err, errlen, -EINVAL, "not a regular file (padcell takes raw image files)");
	if (st.st_size == 0)
		return fail(err, errlen, -EINVAL, "file is empty");
	if (st.st_size % BLK_SECTOR)
		return fail(err, errlen, -EINVAL, "size is not a multiple of 512 bytes");
	/* Two VMs may share a read-only image; nobody shares a writable one. */
	if (flock(d->fd, (d->ro ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0)
		return fail(err, errlen, -EBUSY, d->ro ? "opened writable elsewhere (another VM, or another --drive)"
						      : "in use elsewhere (another VM, or another --drive)");
	d->size = st.st_size;
	return 0;
}

int blk_disk_open(struct blk_disk *d, const char *path, bool ro, const char *id, char *err, size_t errlen)
{
	memset(d, 0, sizeof(*d));
	d->fd = -1; /* closing a disk that failed to open is harmless */
	d->ro = ro;
	if (id && strlen(id) > VIRTIO_BLK_ID_BYTES)
		return fail(err, errlen, -EINVAL, "id= is longer than 20 bytes");
	if (id && !*id)
		return fail(err, errlen, -EINVAL, "id= is empty");
	/* Never blocks: a FIFO (or a tape) is refused before open() could wait for its peer. */
	const char *kind = NULL;
	d->fd = open_user_file(path, ro ? O_RDONLY : O_RDWR, false, &kind);
	if (d->fd < 0) {
		int rc = d->fd;
		d->fd = -1;
		if (rc == -EISDIR)
			return fail(err, errlen, rc, "is a directory");
		if (kind) {
			char msg[128];
			snprintf(msg, sizeof(msg), "not a regular file (%s; padcell takes raw image files)", kind);
			return fail(err, errlen, rc, msg);
		}
		return fail(err, errlen, rc, strerror(-rc));
	}
	int rc = disk_check(d, err, errlen);
	struct file_id fid;
	if (!rc && (rc = file_id_of(d->fd, &fid)))
		fail(err, errlen, rc, strerror(-rc));
	if (rc) {
		close(d->fd);
		d->fd = -1;
		return rc;
	}
	d->dev = fid.dev;
	d->ino = fid.ino;
	d->btime_ns = fid.btime_ns;
	/* Kept for snapshots, which reopen the image by name; absolute, so any directory will do. */
	char *abs = realpath(path, NULL);
	snprintf(d->path, sizeof(d->path), "%s", abs ? abs : path);
	free(abs);
	if (id) {
		strcpy(d->id, id);
	} else {
		char *copy = strdup(path);
		snprintf(d->id, sizeof(d->id), "%s", copy ? basename(copy) : "disk");
		free(copy);
	}
	return 0;
}

int blk_disk_scratch(struct blk_disk *d, uint64_t size, char *err, size_t errlen)
{
	memset(d, 0, sizeof(*d));
	d->fd = -1;
	if (size == 0 || size % BLK_SECTOR)
		return fail(err, errlen, -EINVAL, "size must be a non-zero multiple of 512 bytes");
	/* $TMPDIR if set; else /var/tmp (disk-backed, unlike a tmpfs /tmp), else /tmp (minimal hosts). */
	const char *env = getenv("TMPDIR");
	const char *dirs[] = { env && *env ? env : "/var/tmp", env && *env ? NULL : "/tmp" };
	const char *dir = dirs[0];
	int e = 0;
	for (unsigned i = 0; i < 2 && dirs[i] && d->fd < 0; i++) {
		dir = dirs[i];
		/* O_TMPFILE never has a name; where it is unsupported, a named file is unlinked at once. */
		d->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (d->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
			char path[4096];
			snprintf(path, sizeof(path), "%s/padcell-scratch-XXXXXX", dir);
			d->fd = mkostemp(path, O_CLOEXEC);
			if (d->fd >= 0)
				unlink(path);
		}
		e = errno;
	}
	if (d->fd < 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot create a temporary file in %s: %s", dir, strerror(e));
		return fail(err, errlen, -e, msg);
	}
	if (ftruncate(d->fd, (off_t)size) < 0) {
		e = errno;
		close(d->fd);
		d->fd = -1;
		return fail(err, errlen, -e, strerror(e));
	}
	d->size = size;
	d->scratch = true;
	strcpy(d->id, "scratch");
	return 0;
}

void blk_disk_close(struct blk_disk *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

/* ---- requests -------------------------------------------------------------------------- */

/* The data part of a chain as iovecs: `skip` bytes in, `len` bytes long, from one stream. */
static int chain_iov(const struct virtq_chain *c, bool writable, uint64_t skip, uint64_t len,
		     struct iovec *iov, unsigned *niov)
{
	if (virtq_chain_iov(c, writable, skip, len, iov, niov) != len)
		return -1;
	for (unsigned i = 0; i < *niov; i++)
		if (iov[i].iov_len > BLK_SIZE_MAX)
			return -1; /* SIZE_MAX is a promise the driver made */
	return 0;
}

/* preadv/pwritev until done; a short transfer (end of file) is an error. */
static int blk_rw(int fd, struct iovec *iov, unsigned n, uint64_t off, bool write)
{
	while (n) {
		ssize_t r = write ? pwritev(fd, iov, (int)n, (off_t)off) : preadv(fd, iov, (int)n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += r;
		while (n && (size_t)r >= iov->iov_len) {
			r -= iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= r;
		}
	}
	return 0;
}

static bool in_range(const struct blk_disk *d, uint64_t sector, uint64_t bytes)
{
	if (sector > d->size / BLK_SECTOR)
		return false;
	return bytes <= d->size - sector * BLK_SECTOR;
}

static uint8_t blk_zero_range(const struct blk_disk *d, uint64_t off, uint64_t len, bool unmap)
{
	int mode = unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	if (fallocate(d->fd, mode, (off_t)off, (off_t)len) == 0)
		return VIRTIO_BLK_S_OK;
	if (errno != EOPNOTSUPP)
		return VIRTIO_BLK_S_IOERR;
	static const uint8_t zeros[65536];
	while (len) {
		size_t n = len < sizeof(zeros) ? len : sizeof(zeros);
		ssize_t w = pwrite(d->fd, zeros, n, (off_t)off);
		if (w <= 0)
			return VIRTIO_BLK_S_IOERR;
		off += w;
		len -= w;
	}
	return VIRTIO_BLK_S_OK;
}

/* DISCARD and WRITE_ZEROES: an array of 16-byte ranges after the header. */
static uint8_t blk_ranges(const struct blk_disk *d, const struct virtq_chain *c, uint32_t type, uint64_t data_len)
{
	if (d->ro)
		return VIRTIO_BLK_S_UNSUPP; /* not offered on read-only drives */
	if (data_len == 0 || data_len % sizeof(struct virtio_blk_discard_write_zeroes) ||
	    data_len / sizeof(struct virtio_blk_discard_write_zeroes) > BLK_DISCARD_SEG_MAX)
		return VIRTIO_BLK_S_IOERR;
	unsigned n = data_len / sizeof(struct virtio_blk_discard_write_zeroes);
	struct virtio_blk_discard_write_zeroes r[BLK_DISCARD_SEG_MAX];
	virtq_chain_read(c, sizeof(struct virtio_blk_outhdr), r, data_len);
	for (unsigned i = 0; i < n; i++) { /* validate all before touching the file */
		uint32_t allowed = type == VIRTIO_BLK_T_WRITE_ZEROES ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
		if (r[i].flags & ~allowed)
			return VIRTIO_BLK_S_UNSUPP;
		if (r[i].num_sectors > BLK_DISCARD_SECTORS ||
		    !in_range(d, r[i].sector, (uint64_t)r[i].num_sectors * BLK_SECTOR))
			return VIRTIO_BLK_S_IOERR;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = r[i].sector * BLK_SECTOR, len = (uint64_t)r[i].num_sectors * BLK_SECTOR;
		if (!len)
			continue;
		if (type == VIRTIO_BLK_T_DISCARD) {
			/* A hint: where the filesystem cannot punch holes, doing nothing is correct. */
			if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0 &&
			    errno != EOPNOTSUPP)
				return VIRTIO_BLK_S_IOERR;
		} else {
			uint8_t s = blk_zero_range(d, off, len, r[i].flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
			if (s != VIRTIO_BLK_S_OK)
				return s;
		}
	}
	return VIRTIO_BLK_S_OK;
}

uint32_t blk_handle_request(const struct blk_disk *d, const struct virtq_chain *c)
{
	/* The status byte is the chain's last device-writable byte; without one nothing can be said. */
	if (c->write_len == 0)
		return 0;
	uint64_t data_in = c->write_len - 1; /* device-writable bytes before the status */
	uint32_t used = 1;
	uint8_t status = VIRTIO_BLK_S_IOERR;
	struct virtio_blk_outhdr hdr;
	struct iovec iov[VIRTQ_MAX_SIZE];
	unsigned niov;

	if (c->read_len < sizeof(hdr) || c->nseg > BLK_SEG_MAX + 2)
		goto out;
	virtq_chain_read(c, 0, &hdr, sizeof(hdr));
	uint64_t data_out = c->read_len - sizeof(hdr); /* device-readable bytes after the header */

	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
		/* Data lands in device-writable buffers only; a read-only data buffer fails the request. */
		if (data_out || data_in % BLK_SECTOR || !in_range(d, hdr.sector, data_in))
			break;
		if (data_in && (chain_iov(c, true, 0, data_in, iov, &niov) ||
				blk_rw(d->fd, iov, niov, hdr.sector * BLK_SECTOR, false)))
			break;
		used += data_in;
		status = VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_OUT:
		if (d->ro || data_in || data_out % BLK_SECTOR || !in_range(d, hdr.sector, data_out))
			break;
		if (data_out && (chain_iov(c, false, sizeof(hdr), data_out, iov, &niov) ||
				 blk_rw(d->fd, iov, niov, hdr.sector * BLK_SECTOR, true)))
			break;
		status = VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_FLUSH:
		status = fdatasync(d->fd) == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		/* 20 bytes, NUL-padded, not necessarily NUL-terminated (5.2.6). */
		char id[VIRTIO_BLK_ID_BYTES] = { 0 };
		memcpy(id, d->id, strnlen(d->id, sizeof(id)));
		uint64_t n = data_in < sizeof(id) ? data_in : sizeof(id);
		if (!n)
			break;
		virtq_chain_write(c, 0, id, n);
		used += n;
		status = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = data_in ? VIRTIO_BLK_S_IOERR : blk_ranges(d, c, hdr.type, data_out);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
out:
	virtq_chain_write(c, c->write_len - 1, &status, 1);
	return used;
}

/* ---- the device ------------------------------------------------------------------------ */

/* A QueueNotify that came through a vCPU exit (no ioeventfd): wake the worker the same way. */
static void blk_queue_notify(void *opaque, unsigned q)
{
	struct virtio_blk *b = opaque;
	uint64_t one = 1;
	if (write(b->kick_fd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow: the worker drains it on every wake */
	}
}

/* Runs on the vCPU that wrote Status 0: wait out the request in flight, whose result is dropped. */
static void blk_reset(void *opaque)
{
	struct virtio_blk *b = opaque;
	while (b->busy)
		pthread_cond_wait(&b->idle, &b->t.lock);
}

static void blk_wake(void *arg)
{
	blk_queue_notify(arg, 0);
}

static const struct virtio_dev_ops blk_ops = { .queue_notify = blk_queue_notify, .reset = blk_reset };

/*
 * What a request costs the limiter: one operation, and the data bytes of a read or a write
 * (Firecracker counts those two; a flush, GET_ID or discard is an operation only).  The chain
 * is only looked at, its lengths being the device's own view; the request checks it again.
 */
static uint64_t blk_request_bytes(const struct virtq_chain *c)
{
	struct virtio_blk_outhdr hdr;
	if (c->read_len < sizeof(hdr) || virtq_chain_read(c, 0, &hdr, sizeof(hdr)) != sizeof(hdr))
		return 0;
	if (hdr.type == VIRTIO_BLK_T_IN)
		return c->write_len ? c->write_len - 1 : 0;
	if (hdr.type == VIRTIO_BLK_T_OUT)
		return c->read_len - sizeof(hdr);
	return 0;
}

/* True if the limiter lets the popped request through now; else it goes back to the ring. */
static bool blk_admit(struct virtio_blk *b, struct virtq *q)
{
	if (!ratelimit_active(&b->rl))
		return true;
	uint64_t now = b->clock(), wait;
	if (ratelimit_consume(&b->rl, 1, blk_request_bytes(&b->chain), now, &wait)) {
		b->throttle_until_ns = 0;
		return true;
	}
	virtq_unpop(q);
	b->throttle_until_ns = now + wait;
	b->throttled++;
	return false;
}

/* Pops and serves chains until the queue is empty or the limiter says wait; I/O runs without the lock. */
static void blk_drain_queue(struct virtio_blk *b)
{
	struct virtio_mmio *t = &b->t;
	for (;;) {
		struct virtq *q = virtio_mmio_queue(t, 0);
		if (!q)
			return;
		int rc = virtq_pop(q, t->mem, &b->chain);
		if (rc < 0) {
			virtio_mmio_needs_reset(t);
			return;
		}
		if (rc == 0)
			break;
		if (!blk_admit(b, q))
			return;
		uint64_t resets = t->resets;
		b->busy = true;
		pthread_mutex_unlock(&t->lock);
		uint32_t used = blk_handle_request(b->disk, &b->chain);
		pthread_mutex_lock(&t->lock);
		b->busy = false;
		pthread_cond_broadcast(&b->idle);
		if (t->resets != resets || !(q = virtio_mmio_queue(t, 0)))
			return; /* reset while in flight: the driver no longer expects an answer */
		virtq_push(q, b->chain.head, used);
		b->completed++;
		/* Interrupt per completion the driver asked for (EVENT_IDX decides), not per batch. */
		if (virtq_should_interrupt(q))
			virtio_mmio_interrupt(t, VIRTIO_MMIO_INT_VRING);
	}
}

/*
 * The worker sleeps on kick_fd, which KVM signals directly when the guest writes
 * QueueNotify (an ioeventfd): a kick costs no vCPU exit to userspace and no hop
 * through another thread.
 */
static void *blk_worker(void *arg)
{
	struct virtio_blk *b = arg;
	for (;;) {
		/* Throttled: until the limiter has the tokens (rounded up to a whole ms), or a kick. */
		pthread_mutex_lock(&b->t.lock);
		uint64_t until = b->throttle_until_ns;
		int timeout = -1;
		if (until) {
			uint64_t now = b->clock();
			uint64_t ms = until > now ? (until - now + 999999) / 1000000 : 0;
			timeout = ms > 60000 ? 60000 : (int)ms; /* a long wait is looked at again each minute */
		}
		pthread_mutex_unlock(&b->t.lock);
		struct pollfd pfd = { .fd = b->kick_fd, .events = POLLIN };
		int prc = poll(&pfd, 1, timeout);
		if (prc < 0 && errno != EINTR)
			break;
		uint64_t n;
		if (prc > 0 && read(b->kick_fd, &n, sizeof(n)) < 0 && errno != EINTR && errno != EAGAIN)
			break;
		pthread_mutex_lock(&b->t.lock);
		if (b->worker.stop) {
			pthread_mutex_unlock(&b->t.lock);
			break;
		}
		blk_drain_queue(b);
		pthread_mutex_unlock(&b->t.lock);
	}
	return NULL;
}

int virtio_blk_init(struct virtio_blk *b, struct blk_disk *disk, const struct guest_mem *mem,
		    const struct dev_host *host, unsigned irq)
{
	memset(b, 0, sizeof(*b));
	b->kick_fd = eventfd(0, EFD_CLOEXEC);
	if (b->kick_fd < 0)
		return -errno;
	b->disk = disk;
	uint64_t features = (1ULL << VIRTIO_BLK_F_SIZE_MAX) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
			    (1ULL << VIRTIO_BLK_F_FLUSH);
	if (disk->ro)
		features |= 1ULL << VIRTIO_BLK_F_RO;
	else
		features |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	b->config.capacity = disk->size / BLK_SECTOR;
	b->config.size_max = BLK_SIZE_MAX;
	b->config.seg_max = BLK_SEG_MAX;
	b->config.max_discard_sectors = BLK_DISCARD_SECTORS;
	b->config.max_discard_seg = BLK_DISCARD_SEG_MAX;
	b->config.discard_sector_alignment = 1;
	b->config.max_write_zeroes_sectors = BLK_DISCARD_SECTORS;
	b->config.max_write_zeroes_seg = BLK_DISCARD_SEG_MAX;
	b->config.write_zeroes_may_unmap = 1;
	virtio_mmio_init(&b->t, mem, host, irq, VIRTIO_ID_BLOCK, features, 1, &b->config, sizeof(b->config),
			 &blk_ops, b);
	pthread_cond_init(&b->idle, NULL);
	b->clock = ratelimit_clock_ns;
	ratelimit_init(&b->rl, &disk->rate, b->clock());
	devthread_init(&b->worker, &b->t.lock, blk_worker, blk_wake, b);
	return 0;
}

void virtio_blk_set_rate(struct virtio_blk *b, const struct ratelimit_patch *p)
{
	pthread_mutex_lock(&b->t.lock);
	ratelimit_patch_apply(&b->rl, p, b->clock());
	b->throttle_until_ns = 0; /* the worker asks the new limits at once */
	pthread_mutex_unlock(&b->t.lock);
	blk_wake(b);
}

int virtio_blk_start(struct virtio_blk *b)
{
	return devthread_start(&b->worker);
}

void virtio_blk_save(struct virtio_blk *b, struct virtio_blk_state *st)
{
	memset(st, 0, sizeof(*st));
	virtio_mmio_save(&b->t, &st->t);
	st->capacity = b->config.capacity;
	st->ro = b->disk->ro;
}

int virtio_blk_load(struct virtio_blk *b, const struct virtio_blk_state *st)
{
	if (st->capacity != b->config.capacity || st->ro != (uint8_t)b->disk->ro)
		return -EINVAL;
	return virtio_mmio_load(&b->t, &st->t);
}

void virtio_blk_pause(struct virtio_blk *b)
{
	devthread_stop(&b->worker);
}

int virtio_blk_resume(struct virtio_blk *b)
{
	return devthread_resume(&b->worker);
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	virtio_blk_pause(b);
	pthread_cond_destroy(&b->idle);
	close(b->kick_fd);
	virtio_mmio_destroy(&b->t);
}

/* ---- the device interface ---------------------------------------------------------------- */

static int blk_dev_start(struct device *d)
{
	return virtio_blk_start(d->dev);
}

static void blk_dev_pause(struct device *d)
{
	virtio_blk_pause(d->dev);
}

static int blk_dev_resume(struct device *d)
{
	return virtio_blk_resume(d->dev);
}

static void blk_dev_save(struct device *d, void *st)
{
	virtio_blk_save(d->dev, st);
}

static int blk_dev_load(struct device *d, const void *st, char *err, size_t errlen)
{
	if (virtio_blk_load(d->dev, st))
		return errorf(err, errlen, -EINVAL, "the snapshot's virtio-blk device %u does not fit its disk", d->index);
	return 0;
}

/*
 * The disk as the snapshot knows it: a --drive by its absolute path; a scratch disk, whose
 * contents are the guest's, as a copy "<state file's name>.disk<slot>" beside the state file.
 */
static int blk_dev_save_backing(struct device *d, struct dev_snap_out *o, char *err, size_t errlen)
{
	const struct blk_disk *disk = ((struct virtio_blk *)d->dev)->disk;
	struct snap_disk *sd = calloc(1, sizeof(*sd));
	if (!sd)
		return errorf(err, errlen, -ENOMEM, "out of memory");
	sd->size = disk->size;
	sd->ro = disk->ro;
	sd->scratch = disk->scratch;
	snprintf(sd->id, sizeof(sd->id), "%s", disk->id);
	int rc = 0;
	if (disk->scratch) {
		snprintf(sd->path, sizeof(sd->path), "%s.disk%u", o->state_base, d->index);
		if ((rc = o->add_file(o, sd->path, disk->fd, disk->size)))
			errorf(err, errlen, rc, "out of memory");
	} else {
		snprintf(sd->path, sizeof(sd->path), "%s", disk->path);
		sd->dev = disk->dev;
		sd->ino = disk->ino;
		sd->btime_ns = disk->btime_ns;
		if (o->uses_file)
			o->uses_file(o, disk->fd);
	}
	if (!rc)
		o->add(o, SNAP_SEC_DISK, d->index, sd, sizeof(*sd));
	free(sd);
	return rc;
}

static void blk_dev_restored(struct device *d)
{
	virtio_mmio_notify_all(&((struct virtio_blk *)d->dev)->t);
}

/* A drive is named by its index ("0" is /dev/vda), its kernel name ("vda") or its id (the serial GET_ID returns). */
static int blk_dev_set_rate(struct device *d, const char *cls, const char *id, const struct ratelimit_patch *p,
			    unsigned np, char *err, size_t errlen)
{
	struct virtio_blk *b = d->dev;
	char idx[12], kname[8];
	snprintf(idx, sizeof(idx), "%u", d->index);
	snprintf(kname, sizeof(kname), "vd%c", 'a' + (int)d->index);
	if (strcmp(cls, "drive") || (strcmp(id, idx) && strcmp(id, kname) && strcmp(id, b->disk->id)))
		return -ENOENT;
	if (np != 1)
		return errorf(err, errlen, -EINVAL, "a drive has one rate limiter");
	virtio_blk_set_rate(b, &p[0]);
	return 0;
}

static void blk_dev_destroy(struct device *d)
{
	virtio_blk_destroy(d->dev);
	free(d->dev);
}

static const struct dev_ops blk_dev_ops = {
	.name = "virtio-blk",
	.start = blk_dev_start,
	.pause = blk_dev_pause,
	.resume = blk_dev_resume,
	.snap_section = SNAP_SEC_BLK,
	.state_size = sizeof(struct virtio_blk_state),
	.save = blk_dev_save,
	.load = blk_dev_load,
	.save_backing = blk_dev_save_backing,
	.restored = blk_dev_restored,
	.set_rate = blk_dev_set_rate,
	.destroy = blk_dev_destroy,
};

int virtio_blk_create(struct device *d, const struct guest_mem *mem, const struct dev_host *host, const void *params)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	int rc = virtio_blk_init(b, (struct blk_disk *)params, mem, host, d->irq);
	if (rc) {
		free(b);
		return rc;
	}
	d->ops = &blk_dev_ops;
	d->dev = b;
	d->virtio = d->bus_opaque = &b->t;
	d->bus_ops = &virtio_mmio_ops;
	d->len = VIRTIO_MMIO_RANGE_LEN;
	/* One queue: KVM need signal the worker only for QueueNotify == 0. */
	d->kick_fd = b->kick_fd;
	d->kick_datamatch = true;
	return 0;
}

unsigned virtio_blk_disk_count(const struct dev_snap_in *in)
{
	unsigned n = 0;
	while (in->find(in, SNAP_SEC_DISK, n, NULL))
		n++;
	return n;
}

int virtio_blk_disk_restore(const struct dev_snap_in *in, unsigned index, const char *user_path, struct blk_disk *d,
			    char *err, size_t errlen)
{
	const struct snap_disk *sd = in->find(in, SNAP_SEC_DISK, index, NULL);
	if (!sd)
		return -ENOENT;
	char why[256];
	int rc;
	if (user_path && sd->scratch) {
		memset(d, 0, sizeof(*d));
		d->fd = -1;
		rc = errorf(err, errlen, -EINVAL, "--drive %u=%s: slot %u is the snapshot's scratch disk, whose contents "
			    "are in the snapshot; only a --drive can be replaced", index, user_path, index);
	} else if (user_path) {
		/* The user's own choice: like a --drive at boot, as the snapshot had it (ro or not). */
		rc = blk_disk_open(d, user_path, sd->ro, sd->id, why, sizeof(why));
		if (rc)
			rc = errorf(err, errlen, -EINVAL, "--drive %u=%s: %s", index, user_path, why);
		else if (d->size != sd->size)
			rc = errorf(err, errlen, -EINVAL, "--drive %u=%s: %llu bytes, the snapshot's disk %u was %llu", index,
				    user_path, (unsigned long long)d->size, index, (unsigned long long)sd->size);
	} else if (sd->scratch) {
		char path[8200];
		snprintf(path, sizeof(path), "%s/%s", in->dir, sd->path);
		int src = in->open_file(in, path, "scratch-disk copy", sd->size, err, errlen);
		if (src < 0)
			return src;
		rc = blk_disk_scratch(d, sd->size, why, sizeof(why));
		if (rc)
			errorf(err, errlen, rc, "scratch disk: %s", why);
		else if ((rc = in->copy_file(d->fd, src, sd->size)))
			errorf(err, errlen, rc, "cannot copy the scratch disk '%s': %s", path, strerror(-rc));
		else
			snprintf(d->id, sizeof(d->id), "%.20s", sd->id);
		close(src);
	} else {
		rc = blk_disk_open(d, sd->path, sd->ro, sd->id, why, sizeof(why));
		if (rc)
			rc = errorf(err, errlen, -EINVAL, "the snapshot's disk '%s': %s", sd->path, why);
		else if (d->size != sd->size)
			rc = errorf(err, errlen, -EINVAL, "the snapshot's disk '%s' was %llu bytes, now %llu", sd->path,
				    (unsigned long long)sd->size, (unsigned long long)d->size);
		/* A read-only drive by path and size (a shared base image on another host is fine); a
		 * writable one only if it is the very file, which a crafted state file cannot name. */
		else if (!sd->ro && (d->dev != sd->dev || d->ino != sd->ino || d->btime_ns != sd->btime_ns))
			rc = errorf(err, errlen, -EINVAL,
				    "the snapshot's writable disk %u '%s' is not the file the snapshot was taken with "
				    "(another device, inode or birth time: a copy, another host's snapshot, or a crafted "
				    "state file); if it is the right disk, name it: restore --drive %u=%s", index, sd->path,
				    index, sd->path);
	}
	if (rc)
		blk_disk_close(d);
	return rc;
}
