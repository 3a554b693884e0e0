/* The name check for connections to allowed names: read the guest's first bytes, check SNI/Host, dial that name, splice. */
#ifndef PADCELL_NET_SNIPROXY_H
#define PADCELL_NET_SNIPROXY_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/net/httpreq.h"
#include "vmm/net/policy.h"
#include "vmm/net/sni.h"

/*
 * One guest TCP connection that padcell terminates itself (it was made to an address padcell
 * resolved for an allowed name, so the address alone proves nothing: a CDN serves many names
 * there).  The states, each bounded:
 *
 *   HELLO    read the guest's first bytes (at most SNI_MAX_INPUT, for SNIPROXY_HELLO_MS) until
 *            sni_parse() finds a TLS SNI or HTTP Host; none, a parse failure, the deadline or
 *            a name the policy does not allow on this port ends it with a reset (rejected)
 *   RESOLVE  the caller resolves info.name with the NIC's resolver and calls sniproxy_resolved()
 *   CONNECT  non-blocking connects to the answers outside the refused ranges, one after the
 *            other, for SNIPROXY_CONNECT_MS in all
 *   SPLICE   the bytes already read, then both ways through two bounded buffers; an EOF is
 *            passed on as a half close, an error resets both sides.  HTTP (not TLS, whose SNI
 *            names the whole connection): the guest's bytes go through httpreq, request by
 *            request, and only what it cleared is sent; a request it refuses (a Host no rule
 *            allows, ambiguous framing, ...) ends the connection with a reset (rejected, again)
 *   DONE     sniproxy_close() closes what is left
 *
 * The object does no resolving and no logging: the caller sees the state and the verdict.
 * Everything on the guest side is hostile; no call blocks (the fds are used with MSG_DONTWAIT).
 */

#define SNIPROXY_HELLO_MS 10000
#define SNIPROXY_RESOLVE_MS 10000 /* the resolver has its own bound; this is the hang guard */
#define SNIPROXY_CONNECT_MS 10000
#define SNIPROXY_BUF 65536 /* per direction; at least SNI_MAX_INPUT */
#define SNIPROXY_MAX_ADDRS 16

_Static_assert(SNIPROXY_BUF >= SNI_MAX_INPUT, "the hello is kept in the guest-to-host buffer");

enum sniproxy_state { SNIPROXY_HELLO, SNIPROXY_RESOLVE, SNIPROXY_CONNECT, SNIPROXY_SPLICE, SNIPROXY_DONE };

struct sniproxy_buf {
	uint8_t data[SNIPROXY_BUF];
	size_t off, len; /* pending bytes: data[off .. off+len) */
};

struct sniproxy {
	enum sniproxy_state state;
	int gfd, hfd;                   /* the guest's side (given), the host's (dialled); -1 when none */
	uint16_t port;                  /* the port the guest connected to, dialled again */
	char via[POLICY_NAME_MAX + 1];  /* the name whose resolution gave the guest the address */
	struct sni_info info;           /* the name the guest asked for, once HELLO is past */
	bool framing;                   /* HTTP: every request checked (http), g2h sent only as far as g2h_clear */
	size_t g2h_clear;               /* of g2h's pending bytes, how many may go to the server */
	struct httpreq http;
	uint8_t peek[HTTPREQ_STATUS_PEEK]; /* the server's first bytes, for an Upgrade's answer */
	size_t peek_len;
	int64_t deadline_ms;            /* of the current state (HELLO, RESOLVE, CONNECT) */
	uint32_t addrs[SNIPROXY_MAX_ADDRS]; /* CONNECT: the answers left to try, host byte order */
	size_t naddrs, next;
	struct sniproxy_buf g2h, h2g;
	bool g_eof, h_eof;              /* read side reached EOF */
	bool g_shut, h_shut;            /* our write side shut (EOF passed on) */
	/* The decision, once made (allowed at RESOLVE, or rejected): for the caller's log, once. */
	bool decided, rejected, reset;  /* rejected may follow an allow: a later HTTP request refused */
	char why[1024];                 /* names, the rule's text: bounded, cut if need be */
	struct policy_decision decision;
	uint64_t to_host, to_guest;     /* bytes spliced, for the caller's stats */
};

/* Takes gfd (a connected stream socket, made non-blocking here); via is the name it was resolved for. */
void sniproxy_init(struct sniproxy *p, int gfd, const char *via, uint16_t port, int64_t now_ms);

/* Adds the fds to wait on (at most 2) and lowers *timeout_ms (-1: none) to the state's deadline. */
unsigned sniproxy_poll_fill(struct sniproxy *p, struct pollfd *fds, unsigned max, int64_t now_ms, int *timeout_ms);

/* After poll(): the fds poll_fill added (n of them; revents may be 0).  Moves bytes and state. */
enum sniproxy_state sniproxy_step(struct sniproxy *p, const struct policy *pol, const struct pollfd *fds, unsigned n,
				  int64_t now_ms);

/*
 * The answer for info.name (status 0 or -errno, as devices/net_resolve.h gives it).  Answers in
 * a refused range that no exact rule opens are dropped (rebinding); then the first connect.
 */
enum sniproxy_state sniproxy_resolved(struct sniproxy *p, const struct policy *pol, int status, const uint32_t *addrs,
				      size_t n, int64_t now_ms);

/* Ends the connection now: a reset to the guest (as for a rejection), both fds closed; state DONE. */
void sniproxy_abort(struct sniproxy *p, const char *why);

/* Closes whatever fds are open (a rejected or reset connection's guest side with a TCP reset). */
void sniproxy_close(struct sniproxy *p);

#endif
