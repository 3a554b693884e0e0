/* virtio-vsock: guest stream sockets bridged to host Unix sockets (Firecracker's CONNECT protocol). */
#ifndef PADCELL_VIRTIO_VSOCK_H
#define PADCELL_VIRTIO_VSOCK_H

#include <linux/virtio_vsock.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/devthread.h"
#include "devices/virtio_mmio.h"

#define VSOCK_HOST_CID      2u
#define VSOCK_DEFAULT_CID   3u
#define VSOCK_MAX_CONNS     1023u          /* host clients waiting for a line count too          */
/*
 * Each connection costs a host descriptor, so the guest may hold at most the soft RLIMIT_NOFILE
 * less this reserve (254 vCPUs, and 130 for the monitor's own: disks, eventfds, the API, a
 * snapshot's files), and never fewer than VSOCK_MIN_CONNS: with padcell's 4096 that is 1023,
 * with a limit of 1024 it is 640.
 */
#define VSOCK_FD_RESERVE    384u
#define VSOCK_MIN_CONNS     16u
/* What padcell buffers per connection, guest -> host (only what the host socket cannot take yet;
 * at most 1023 x 256 KiB in all).  64 KiB measured 0.3x QEMU's vhost-vsock in the nested tier: the
 * guest stalled on credit every 64 KiB.  vhost's default window is 256 KiB too. */
#define VSOCK_BUF_ALLOC     (256u << 10)
#define VSOCK_CONNECT_LINE  32u            /* "CONNECT <port>\n", newline included               */
#define VSOCK_CONNECT_MS    2000           /* the guest's time to answer a host-initiated REQUEST */
#define VSOCK_LINE_MS       2000           /* a host client's time to finish its CONNECT line     */
#define VSOCK_RESET_WAIT_MS 1000           /* most a host CONNECT waits for the guest to handle a reset */
#define VSOCK_PATH_MAX      96u            /* sun_path (108) less "_<port>" (11) and the NUL     */
#define VSOCK_FIRST_EPHEMERAL 1024u        /* host ports padcell allocates for host clients      */

enum vsock_queue { VSOCK_Q_RX = 0, VSOCK_Q_TX = 1, VSOCK_Q_EVENT = 2 };

enum vsock_state {
	VSOCK_FREE = 0,
	VSOCK_LINE,        /* host client accepted, its CONNECT line not complete yet    */
	VSOCK_REQ_SENT,    /* REQUEST queued/sent to the guest, waiting for RESPONSE/RST */
	VSOCK_ESTABLISHED,
};

/* Control packets a connection still owes the guest (sent as rx buffers come). */
#define VSOCK_P_REQUEST  1u
#define VSOCK_P_RESPONSE 2u
#define VSOCK_P_CREDIT   4u
#define VSOCK_P_SHUTDOWN 8u
#define VSOCK_P_RST      16u

struct vsock_conn {
	enum vsock_state state;
	int fd;                      /* the host-side Unix stream socket, non-blocking */
	uint32_t host_port, guest_port;
	bool host_initiated;
	unsigned pending;            /* VSOCK_P_* */
	int64_t deadline_ms;         /* VSOCK_LINE, VSOCK_REQ_SENT: give up then */
	/* host -> guest: never more than the guest's credit */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	uint32_t tx_cnt;             /* payload bytes sent to the guest */
	bool readable;               /* the socket may have data (edge-triggered epoll) */
	bool host_eof;               /* read 0: the host will send no more (SHUTDOWN SEND owed/sent) */
	/* guest -> host: at most VSOCK_BUF_ALLOC bytes in flight, buffered only when the socket is full */
	uint32_t rx_cnt;             /* payload bytes accepted from the guest */
	uint32_t fwd_cnt;            /* of those, written to the socket */
	uint32_t fwd_cnt_told;       /* fwd_cnt last advertised to the guest */
	uint8_t *buf;                /* VSOCK_BUF_ALLOC bytes, allocated when first needed */
	uint32_t buf_off, buf_len;
	uint32_t guest_shut;         /* VIRTIO_VSOCK_SHUTDOWN_* the guest sent */
	bool host_wr_shut;           /* shutdown(SHUT_WR) done on the socket */
	char line[VSOCK_CONNECT_LINE + 1];
	unsigned line_len;
};

struct virtio_vsock {
	struct virtio_mmio t;
	struct virtio_vsock_config config;
	uint32_t guest_cid;
	char path[VSOCK_PATH_MAX + 1];
	int listen_fd;               /* the caller's (vsock_listen); it closes it and unlinks path */
	int epoll_fd;
	int kick_fd;                 /* the monitor makes it the ioeventfd of every queue */
	struct vsock_conn conns[VSOCK_MAX_CONNS];
	unsigned nconns;             /* slots not VSOCK_FREE */
	int spare_fd;                /* for accept_or_shed: a client past the fd limit is closed, not left waiting */
	uint32_t next_port;
	bool reset_pending;          /* TRANSPORT_RESET waiting for an event buffer */
	/*
	 * TRANSPORT_RESET delivered, the guest not done with it yet: Linux resets every connected
	 * socket when it handles the event, silently (no RST), so a connection the host opened
	 * meanwhile would die unseen.  REQUESTs wait until the driver re-posts an event buffer,
	 * which it does right after handling the event (or VSOCK_RESET_WAIT_MS passed).
	 */
	bool reset_wait;
	int64_t reset_wait_until;
	uint16_t reset_avail;        /* the event queue's avail idx when the reset went out */
	unsigned rst_pending;        /* RSTs for packets of no connection, waiting for rx buffers */
	struct virtio_vsock_hdr rst_queue[64];
	unsigned rr;                 /* round-robin start for rx */
	uint64_t dropped;            /* malformed packets dropped (tests look) */
	struct devthread thread;
	struct virtq_chain chain;
};

/*
 * Binds and listens on path.  A socket file nobody listens on is removed first; a live one,
 * or any other file, is refused.  Returns the fd or -errno with err saying why.
 */
int vsock_listen(const char *path, char *err, size_t errlen);

/* How many connections fit in the descriptor budget now (VSOCK_FD_RESERVE). */
unsigned vsock_conn_cap(void);

/* "CONNECT <port>\n" (any case, at most 32 bytes, the newline included): 0 and *port, or -EINVAL. */
int vsock_parse_connect(const char *line, size_t len, uint32_t *port);

/* listen_fd comes from vsock_listen(path) and stays the caller's.  -errno on failure. */
int virtio_vsock_init(struct virtio_vsock *v, const char *path, int listen_fd, uint32_t guest_cid,
		      const struct guest_mem *mem, const struct dev_host *host, unsigned irq);
/* One pass of the device loop: wait up to timeout_ms for sockets or kicks, then do all that is due. */
void virtio_vsock_poll(struct virtio_vsock *v, int timeout_ms);
int virtio_vsock_start(struct virtio_vsock *v);
/*
 * Pause: stops the device thread (no guest-memory access after); connections stay open and
 * their data waits in the sockets.  Resume starts the thread again.
 */
void virtio_vsock_pause(struct virtio_vsock *v);
/* Snapshot state: the transport and the guest's CID; connections are not saved (fixed layout). */
struct virtio_vsock_state {
	struct virtio_mmio_state t;
	uint32_t guest_cid, pad;
};
void virtio_vsock_save(struct virtio_vsock *v, struct virtio_vsock_state *st);
/* -EINVAL for another CID or a transport state that does not check out. */
int virtio_vsock_load(struct virtio_vsock *v, const struct virtio_vsock_state *st);
int virtio_vsock_resume(struct virtio_vsock *v);
/* Stops the thread and closes every connection (not listen_fd). */
void virtio_vsock_destroy(struct virtio_vsock *v);

/* Closes every connection and tells the guest with VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (snapshots). */
void virtio_vsock_transport_reset(struct virtio_vsock *v);

/* Tests: handle one packet from the guest as if popped from the tx queue; caller holds t.lock. */
void vsock_handle_packet(struct virtio_vsock *v, const struct virtio_vsock_hdr *h, const struct virtq_chain *c);

/* As a device (devices/device.h): a virtio-mmio window at d->base, interrupt d->irq; params a struct vsock_params. */
struct vsock_params {
	const char *path;
	int listen_fd;  /* from vsock_listen(path), the caller's */
	uint32_t guest_cid;
};
dev_create_fn virtio_vsock_create;
/* The CID of the snapshot's vsock device in virtio slot `index`: 0, or -ENOENT when it has none there. */
int virtio_vsock_cid_restore(const struct dev_snap_in *in, unsigned index, uint32_t *cid);

#endif
