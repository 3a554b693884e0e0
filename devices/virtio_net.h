/* virtio-net: one NIC whose every guest frame passes the egress gate before a backend (the user-mode stack) sees it. */
#ifndef PADCELL_VIRTIO_NET_H
#define PADCELL_VIRTIO_NET_H

#include <linux/virtio_net.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"
#include "devices/devthread.h"
#include "devices/net_resolve.h"
#include "devices/ratelimit.h"
#include "devices/virtio_mmio.h"
#include "vmm/net/gate.h"
#include "vmm/net/policy.h"
#include "vmm/net/publish.h"
#include "vmm/net/sniproxy.h"

/*
 * The guest's network, fixed (the guest learns it from padcell.net= on its command line):
 * 10.0.2.15/24, gateway 10.0.2.2 (the stack), DNS 10.0.2.3 (answered by padcell itself).
 * Every VM has the same addresses and MAC: each has its own stack, so clones need nothing.
 */
#define NET_GUEST_IP   0x0a00020fu /* 10.0.2.15 */
#define NET_NETWORK    0x0a000200u /* 10.0.2.0  */
#define NET_PREFIX     24
#define NET_GATEWAY_IP 0x0a000202u /* 10.0.2.2  */
#define NET_DNS_IP     0x0a000203u /* 10.0.2.3  */
#define NET_GUEST_MAC  { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 }
/*
 * The IP MTU offered with VIRTIO_NET_F_MTU.  A user-mode stack pays per frame, not per byte
 * (slirp4netns measured 1.7 Gb/s at 1500 and 8.1 Gb/s at 65520, rootlesskit's CI), but not
 * 65520: its MSS (65480) is larger than a Linux receiver's first window (about 64 KiB from
 * tcp_rmem's 128 KiB), so slirp, which sends no segment shorter than the MSS into a window
 * under half the largest it saw, could only send one segment per persist timeout (5 s):
 * measured in the nested bench, L1 -> guest ran at 0.1 Mbit/s in 3 of 6 runs at 65520.
 * At 16384 four segments fit that first window, and a 64 KiB write is still four frames, not
 * the 45 of MTU 1500.
 */
#define NET_MTU        16384u
#define NET_HDR_LEN    ((uint32_t)sizeof(struct virtio_net_hdr_v1)) /* VERSION_1: always with num_buffers */
/* The largest frame the gate is shown: an IPv4 packet of 65535 bytes in Ethernet. */
#define NET_FRAME_MAX  (14u + 65535u)
/*
 * Frames for the guest that found no rx buffer (or that the rx limiter holds back) wait in one
 * ring of this many bytes, allocated once: a burst never grows the heap.  While any frame waits
 * the backend stops reading its host sockets (virtio_net_rx_paused), so the host peers' TCP
 * windows close instead of the backlog filling; what the stack still sends meanwhile (ACKs,
 * retransmissions, data it had already read) waits here, and beyond the ring is dropped and
 * counted (rx_overrun) as a full NIC ring would drop it: TCP sends it again.
 */
#define NET_RX_BACKLOG_BYTES (256u * 1024u)
#define NET_DNS_TTL    60u
/*
 * Addresses padcell resolved for an allowed name stay "pinned" to that name: a SYN to one is
 * decided by the name's rules (policy_check_name) while no address rule allows it.  Kept for
 * NET_PIN_MS after the last answer (longer than the TTL the guest was given); the oldest goes first.
 */
#define NET_PINS_MAX   256u
#define NET_PIN_MS     (10u * 60u * 1000u)
#define NET_DNS_FRAME_MAX 1514u /* a query frame longer than this is not resolved (REFUSED) */

/*
 * Connections to pinned addresses (a name's rules allowed them) that padcell terminates itself to
 * check their TLS SNI / HTTP Host (vmm/net/sniproxy.h), when the backend can do it (dials_loopback).
 * A listener is only waited on for NET_REDIRECT_ACCEPT_MS; a finished connection's address
 * translation stays NET_REDIRECT_LINGER_MS for the last segments (FIN, RST) to get through.
 */
/*
 * The stack's FINs to the guest not yet answered (fins, below): when the guest's FIN acks one,
 * the stack, which closed first, would hold the connection in TIME_WAIT for 2 MSL (libslirp: 10 s),
 * with both socket buffers.  Between the guest and the stack the link is this device, where no
 * segment is lost, reordered or duplicated, so TIME_WAIT guards nothing: padcell sends the stack
 * a reset right behind the guest's FIN (gate_build_fin_reset) and the connection is freed at
 * once.  A full table costs nothing but that: the oldest entry goes, its connection waits 2 MSL.
 */
#define NET_FINS_MAX 32u

struct net_fin {
	uint32_t dst;     /* the guest's view: 10.0.2.15:sport -> dst:dport */
	uint16_t sport, dport;
	uint32_t fin_end; /* the sequence number just past the stack's FIN: what the guest's FIN acks */
	bool used;
};

#define NET_REDIRECTS_MAX 64u
#define NET_REDIRECT_ACCEPT_MS 10000
#define NET_REDIRECT_LINGER_MS 30000

struct net_redirect {
	struct virtio_net *net;
	bool used;
	uint32_t dst;                   /* the guest's view: 10.0.2.15:sport -> dst:dport */
	uint16_t sport, dport;
	uint16_t lport;                 /* what the stack dials instead: 127.0.0.1:lport */
	int lfd;                        /* that listener, until the stack's connection is accepted */
	int64_t accept_by_ms;
	int64_t expire_ms;              /* 0 while the connection lives */
	struct sniproxy *px;            /* once accepted */
	bool resolving, logged, logged_reject; /* the check's verdict logged; a refusal logged (may follow an allow) */
	char via[POLICY_NAME_MAX + 1];  /* the name the address was resolved for */
};

struct net_pin {
	uint32_t addr;
	int64_t expire_ms;
	char name[POLICY_NAME_MAX + 1];
};

enum net_queue { NET_Q_RX = 0, NET_Q_TX = 1 };

struct virtio_net;

/*
 * Where passed frames go: a user-mode stack (devices/net_slirp.c) or, in tests, a fake.  Every
 * hook runs on the device's thread without the device lock; frames for the guest come back
 * through virtio_net_deliver() from inside these hooks.
 */
struct net_backend_ops {
	const char *name;
	/* Makes the stack, on the device thread before its first poll.  0 or -errno. */
	int (*open)(void *ctx, struct virtio_net *n);
	/* One frame the gate passed: Ethernet, no virtio header; len <= NET_FRAME_MAX. */
	void (*send)(void *ctx, const uint8_t *frame, size_t len);
	/* Adds up to max fds to poll and may lower *timeout_ms (-1: none yet); returns how many it added. */
	unsigned (*poll_fill)(void *ctx, struct pollfd *fds, unsigned max, int *timeout_ms);
	/* After poll() returned rc: the fds it added, revents filled in. */
	void (*poll_done)(void *ctx, struct pollfd *fds, unsigned n, int rc);
	/* Releases the stack: every connection it had is gone. */
	void (*close)(void *ctx);
	/* After open: listen on p's host address and port, forwarding to the guest.  0 or -errno, err set. */
	int (*publish)(void *ctx, const struct net_publish *p, char *err, size_t errlen);
	/*
	 * The stack dials a host socket to whatever address a guest's SYN names, 127.0.0.1 included
	 * (libslirp): a connection to a pinned address is then sent to a listener of padcell's own,
	 * its SNI/Host checked.  False (a test's fake): such connections pass unchecked.
	 */
	bool dials_loopback;
};

struct net_backend {
	const struct net_backend_ops *ops;
	void *ctx;
};

/* What a NIC is made with. */
struct net_params {
	const char *const *rules; /* --allow rules, as typed */
	size_t nrules;
	bool open;                /* --allow-internet */
	int log_fd;               /* --net-log: JSON lines appended here; -1 for none (the caller's fd) */
	/* NULL: the built-in stack (libslirp), or -ENOTSUP when this padcell was built without it. */
	const struct net_backend *backend;
	/* NULL: the host's resolv.conf; else c-ares servers such as "127.0.0.1:5353" (tests). */
	const char *dns_servers;
	/* --publish: host TCP ports forwarded to the guest; the stack listens on them from init on. */
	const struct net_publish *publish;
	size_t npublish;
	/* --net-rate-rx / --net-rate-tx: frames to the guest and from it (zero: no limit). */
	struct ratelimit_cfg rx_rate, tx_rate;
};

struct net_stats {
	uint64_t tx_frames, tx_passed, tx_dropped, tx_rejected, tx_bad;
	uint64_t rx_frames, rx_dropped;
	uint64_t rx_overrun;                 /* of rx_dropped: the backlog was full */
	uint64_t rx_paused;                  /* device loop passes in which the backend was told not to read */
	uint64_t rx_throttled, tx_throttled; /* times the limiter held a frame back */
	uint64_t dns_queries, dns_resolved, dns_failed, dns_rebind_dropped;
	uint64_t sni_checked, sni_allowed, sni_rejected; /* connections to pinned addresses */
	uint64_t timewait_cut;   /* connections the stack closed first, reset after the guest's FIN (see fins) */
};

struct virtio_net {
	struct virtio_mmio t;
	struct virtio_net_config config;
	struct gate_cfg gate;
	/*
	 * The policy in force: read on the device thread without the lock, replaced only there,
	 * under t.lock, between two frames.  A new set from the API waits in policy_next (under
	 * t.lock) until the thread's next pass swaps it in (net_policy_swap), so no frame is ever
	 * judged by half of one set and half of another.
	 */
	struct policy policy;
	struct policy *policy_next;
	uint64_t policy_changes;     /* under t.lock */
	struct policy_counts counts; /* written on the device thread, read anywhere: __atomic, relaxed */
	int log_fd;
	struct net_backend be;
	bool be_open;             /* open was tried (once) */
	bool be_ok;               /* and worked */
	int kick_fd;              /* the monitor makes it the ioeventfd of both queues */
	struct devthread thread;
	struct virtq_chain chain;
	struct virtq_chain rx_first; /* MRG_RXBUF: a frame's first rx buffer, its header written last */
	uint8_t *txbuf;           /* NET_HDR_LEN + NET_FRAME_MAX: the guest's frame, copied once */
	size_t txlen;
	/*
	 * The rx backlog, under t.lock: records (a 4-byte length, the frame, padded to 4) from head
	 * to tail; once wrapped, from head to the end (or a wrap mark) and on from 0 to tail.
	 */
	struct {
		uint8_t *buf;     /* NET_RX_BACKLOG_BYTES */
		size_t head, tail;
		bool wrapped;
		unsigned n;       /* frames */
		size_t bytes;     /* their lengths summed */
	} bl;
	bool rx_paused;           /* this pass: frames wait, the backend reads nothing (device thread) */
	struct net_stats stats;
	struct net_resolver *resolver;
	/*
	 * Device thread only: NET_PINS_MAX pins and NET_REDIRECTS_MAX redirects (~88 KiB), in one
	 * anonymous mapping of their own (tables, below) so that only the pages in use are resident:
	 * a VM that resolves a few names costs a page or two, not the whole table.
	 */
	struct net_pin *pins;
	unsigned npins;
	struct net_redirect *redirects;
	size_t tables_len;
	struct net_fin fins[NET_FINS_MAX]; /* device thread only */
	unsigned fin_next;                 /* the slot the next FIN takes when none is free */
	uint8_t *rxnat;           /* NET_FRAME_MAX: a frame for the guest whose source is translated back */
	/*
	 * Rate limiters, under t.lock.  A tx frame the limiter refuses stays in the ring (unpopped);
	 * an rx frame waits in the backlog, its buffer back in the ring.  The device loop's poll()
	 * ends at the earlier *_until_ns (0: not throttled).  clock: CLOCK_MONOTONIC unless a test's.
	 */
	struct ratelimit rx_rl, tx_rl;
	uint64_t rx_until_ns, tx_until_ns;
	uint64_t (*clock)(void);
};

/* Live change of the NIC's limits (the API's PATCH /network-interfaces/{id}): rx or tx may be NULL. */
void virtio_net_set_rate(struct virtio_net *n, const struct ratelimit_patch *rx, const struct ratelimit_patch *tx);

/*
 * Live change of the egress policy (the API's PUT /network/policy): the rules are checked and
 * built here, on the caller's thread; the device loop puts the set in place before it judges
 * its next frame (a paused VM's on resume; until then GET reports the waiting set).  Connections already open are kept;
 * every new connection, datagram and DNS query is decided by the new set, connections to
 * addresses the guest resolved before by the name they were resolved for.  0, or -EINVAL /
 * -E2BIG / -ENOMEM with err set and the policy unchanged.
 */
int virtio_net_set_policy(struct virtio_net *n, const char *const *rules, size_t nrules, bool open, char *err,
			  size_t errlen);
/* The set in force (or waiting to be, if one is) and the counts.  0 or -ENOMEM; policy_view_free() v. */
int virtio_net_get_policy(struct virtio_net *n, struct policy_view *v);

/* 0 or -errno (err says why): a bad rule, no backend, no memory. */
int virtio_net_init(struct virtio_net *n, const struct net_params *p, const struct guest_mem *mem,
		    const struct dev_host *host, unsigned irq, char *err, size_t errlen);
int virtio_net_start(struct virtio_net *n);
void virtio_net_pause(struct virtio_net *n);
int virtio_net_resume(struct virtio_net *n);
/* Stops the thread and closes the backend. */
void virtio_net_destroy(struct virtio_net *n);

/*
 * One pass of the device loop: the backend opened if it is not yet, the tx queue drained through
 * the gate, backlogged frames delivered, then up to timeout_ms in poll() for kicks and the backend.
 */
void virtio_net_poll(struct virtio_net *n, int timeout_ms);

/* A frame for the guest (Ethernet, no virtio header): onto the rx queue, the backlog, or dropped.  Takes the lock. */
void virtio_net_deliver(struct virtio_net *n, const uint8_t *frame, size_t len);

/*
 * For the backend's poll_fill: true while frames wait for guest rx buffers.  The backend then
 * reads none of its host sockets in this pass (it still writes to them and runs its timers);
 * the guest posting buffers kicks the loop, the backlog drains, and reading resumes.
 */
bool virtio_net_rx_paused(const struct virtio_net *n);

/* Snapshot state: the transport, MAC and MTU; connections are not saved (fixed layout). */
struct virtio_net_state {
	struct virtio_mmio_state t;
	uint8_t mac[6];
	uint16_t mtu;
	uint32_t pad[2];
};
void virtio_net_save(struct virtio_net *n, struct virtio_net_state *st);
/* -EINVAL for another MAC/MTU or a transport state that does not check out. */
int virtio_net_load(struct virtio_net *n, const struct virtio_net_state *st);

/* The built-in backend (libslirp), when this padcell has it: 0, or -ENOTSUP / -ENOMEM with err set. */
int net_slirp_backend(struct net_backend *be, char *err, size_t errlen);
/* Whether this padcell was built with libslirp (make SLIRP=1). */
bool net_slirp_built_in(void);

/* As a device (devices/device.h): params a struct net_params. */
dev_create_fn virtio_net_create;
/* True when the snapshot has a NIC in virtio slot `index`. */
bool virtio_net_in_snapshot(const struct dev_snap_in *in, unsigned index);

/* "padcell.net=10.0.2.15/24,10.0.2.2,10.0.2.3,16384": what the guest agent configures eth0 with. */
int virtio_net_cmdline(char *out, size_t outlen);

#endif
