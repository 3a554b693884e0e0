/* virtio-blk on a raw image file: request handling, and the worker thread that keeps I/O off the vCPUs. */
#ifndef PADCELL_VIRTIO_BLK_H
#define PADCELL_VIRTIO_BLK_H

#include <linux/virtio_blk.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/devthread.h"
#include "devices/ratelimit.h"
#include "devices/virtio_mmio.h"

/* Limits advertised in the config space and enforced per request. */
#define BLK_SEG_MAX          126          /* data segments; +2 for header and status   */
#define BLK_SIZE_MAX         (1u << 20)   /* bytes in one segment                      */
#define BLK_DISCARD_SEG_MAX  16           /* ranges in one DISCARD / WRITE_ZEROES      */
#define BLK_DISCARD_SECTORS  (1u << 22)   /* sectors in one range (2 GiB)              */
#define BLK_SECTOR           512u

/* An opened backing file.  Opening is the CLI's business; the device only does I/O on it. */
struct blk_disk {
	int fd;
	uint64_t size;                          /* bytes, a multiple of 512 */
	bool ro;
	char id[VIRTIO_BLK_ID_BYTES + 1];       /* GET_ID answer, NUL-terminated */
	bool scratch;                           /* blk_disk_scratch: a nameless temporary file */
	char path[4096];                        /* blk_disk_open: the image's absolute path (snapshots) */
	uint64_t dev, ino, btime_ns;            /* blk_disk_open: the file's identity (util.h file_id) */
	struct ratelimit_cfg rate;              /* the device's limits at start (the CLI's --drive-rate); zero: none */
};

/*
 * Opens a raw image: read-only ones O_RDONLY (shared lock), writable ones O_RDWR
 * (exclusive lock).  id NULL means the file's basename, cut to 20 bytes.  Returns 0, or
 * -errno with err saying what is wrong with the user's input.
 */
int blk_disk_open(struct blk_disk *d, const char *path, bool ro, const char *id, char *err, size_t errlen);
/* A writable, sparse, already-unlinked temporary file of `size` bytes ($TMPDIR, else /var/tmp, else /tmp). */
int blk_disk_scratch(struct blk_disk *d, uint64_t size, char *err, size_t errlen);
void blk_disk_close(struct blk_disk *d);

/*
 * Executes one request chain against the disk, writes its status byte and returns the
 * used length (bytes the device wrote into the chain).  Synchronous; the worker calls it.
 */
uint32_t blk_handle_request(const struct blk_disk *d, const struct virtq_chain *c);

struct virtio_blk {
	struct virtio_mmio t;
	struct blk_disk *disk;
	struct virtio_blk_config config;
	struct devthread worker;
	pthread_cond_t idle;
	int kick_fd;  /* eventfd the worker sleeps on; the monitor makes it queue 0's ioeventfd */
	bool busy;    /* a request in flight, the lock dropped */
	struct virtq_chain chain; /* the worker's current request */
	uint64_t completed;
	/*
	 * The drive's rate limiter (devices/ratelimit.h), under t.lock.  A request it refuses stays
	 * in the ring (unpopped) and the worker sleeps until throttle_until_ns, or a kick: nothing is
	 * lost and nothing spins.  clock is CLOCK_MONOTONIC unless a test injects its own.
	 */
	struct ratelimit rl;
	uint64_t (*clock)(void);
	uint64_t throttle_until_ns; /* 0: not throttled */
	uint64_t throttled;         /* times a request was held back */
};

/* Live change of the drive's limits (the API's PATCH /drives/{id}); wakes the worker. */
void virtio_blk_set_rate(struct virtio_blk *b, const struct ratelimit_patch *p);

int virtio_blk_init(struct virtio_blk *b, struct blk_disk *disk, const struct guest_mem *mem,
		    const struct dev_host *host, unsigned irq);
/* Starts the I/O worker; -errno on failure. */
int virtio_blk_start(struct virtio_blk *b);
/*
 * Pause: stops the worker once the request in flight is done (no guest-memory writes after);
 * the queue state stays in the transport.  Resume starts it again and has it look at the queue.
 */
void virtio_blk_pause(struct virtio_blk *b);
/* Snapshot state: the transport and what the guest was told about the disk (fixed layout). */
struct virtio_blk_state {
	struct virtio_mmio_state t;
	uint64_t capacity;
	uint8_t ro, pad[7];
};
void virtio_blk_save(struct virtio_blk *b, struct virtio_blk_state *st);
/* -EINVAL when the state is not for a disk like this one (size, read-only) or does not check out. */
int virtio_blk_load(struct virtio_blk *b, const struct virtio_blk_state *st);
int virtio_blk_resume(struct virtio_blk *b);
/* Stops the worker (waiting for the request in flight) and releases the device, not the disk. */
void virtio_blk_destroy(struct virtio_blk *b);

/* As a device (devices/device.h): a virtio-mmio window at d->base, interrupt d->irq; params the struct blk_disk. */
dev_create_fn virtio_blk_create;
/* How many disks the snapshot has: they are in virtio slots 0..n-1. */
unsigned virtio_blk_disk_count(const struct dev_snap_in *in);
/*
 * Reopens the disk of the snapshot's virtio slot `index`: a scratch disk as a new private copy of
 * the snapshot's; a --drive by its path, which must still have its size — and, for a writable
 * one, still be the same file (device, inode, birth time), else it is refused: a state file may
 * have been copied from another host or crafted to name any file.  `user_path`, if not NULL, is the
 * user's own choice for the slot (restore --drive N=PATH): opened instead, as read-only as the
 * snapshot's drive was, with only its size checked.  -ENOENT when that slot had no disk; else 0,
 * or -errno with err set and d closed.
 */
int virtio_blk_disk_restore(const struct dev_snap_in *in, unsigned index, const char *user_path, struct blk_disk *d,
			    char *err, size_t errlen);

#endif
