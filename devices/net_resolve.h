/* The NIC's host-side resolver: c-ares on the NIC's own poll loop, for the names a rule allows. */
#ifndef PADCELL_NET_RESOLVE_H
#define PADCELL_NET_RESOLVE_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

/* Queries in flight at once; a query past that is answered SERVFAIL at once by the caller. */
#define NET_RESOLVE_MAX_PENDING 32
/* Per server and try; with two tries and the servers of resolv.conf, each query is bounded. */
#define NET_RESOLVE_TIMEOUT_MS 2000
#define NET_RESOLVE_TRIES 2
#define NET_RESOLVE_MAX_ADDRS 16
#define NET_RESOLVE_MAX_HOSTS 65536          /* names read from the hosts file */
#define NET_RESOLVE_HOSTS_FILE "/etc/hosts"

struct net_resolver;

/*
 * The answer to one query: status 0 with n IPv4 addresses (host byte order, n may be 0 for a
 * name without A records), -ENOENT (the name does not exist), -ETIMEDOUT, -ECANCELED (the
 * resolver was closed), or -EIO (any other failure).  Called from net_resolver_poll_done() or
 * net_resolver_close(), never from net_resolve_start().
 */
typedef void net_resolve_cb(void *arg, int status, const uint32_t *addrs, size_t n);

/*
 * Makes a resolver.  servers NULL: the host's resolv.conf (and /etc/hosts first, "files then
 * DNS"), read now, so a jail set up later need not allow the files; otherwise a c-ares server
 * list such as "127.0.0.1:5353" (for tests), still after /etc/hosts.  0 or -errno with err set.
 */
int net_resolver_open(struct net_resolver **r, const char *servers, char *err, size_t errlen);
/* Cancels every query in flight (their callbacks run with -ECANCELED) and frees r; NULL is a no-op. */
void net_resolver_close(struct net_resolver *r);
/*
 * (Re)reads a hosts file into memory (IPv4 lines only; -ENOENT when there is none, -EFBIG past
 * NET_RESOLVE_MAX_HOSTS names).  net_resolver_open reads /etc/hosts: lookups never open it again,
 * so they work inside the jail's empty root.
 */
int net_resolver_load_hosts(struct net_resolver *r, const char *path);

/* Starts resolving name (a normalised host name) to IPv4.  0, or -EBUSY when too many are in flight. */
int net_resolve_start(struct net_resolver *r, const char *name, net_resolve_cb *cb, void *arg);
unsigned net_resolver_pending(const struct net_resolver *r);

/* Adds up to max fds for poll() and lowers *timeout_ms (-1: none) to the next query timeout. */
unsigned net_resolver_poll_fill(struct net_resolver *r, struct pollfd *fds, unsigned max, int *timeout_ms);
/* After poll(): reads answers from the fds poll_fill added and handles timeouts. */
void net_resolver_poll_done(struct net_resolver *r, const struct pollfd *fds, unsigned n);

#endif
