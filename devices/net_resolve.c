/*
 * Host-side name resolution with c-ares: asynchronous and bounded.  resolv.conf is read by c-ares
 * when the resolver opens; /etc/hosts is read here at the same time, before the jail's empty root
 * hides it (c-ares would open it again at every lookup), and answered from memory.
 */
#include "devices/net_resolve.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vmm/err.h"

/* One name of the hosts file and its IPv4 address. */
struct hosts_entry {
	char name[256];
	uint32_t addr; /* host order */
};

struct net_resolver {
	ares_channel ch;
	unsigned pending;
	struct hosts_entry *hosts;
	size_t nhosts;
};

struct resolve_req {
	struct net_resolver *r;
	net_resolve_cb *cb;
	void *arg;
};

static pthread_once_t cares_once = PTHREAD_ONCE_INIT;
static int cares_init_rc;

static void cares_init(void)
{
	cares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

int net_resolver_open(struct net_resolver **out, const char *servers, char *err, size_t errlen)
{
	pthread_once(&cares_once, cares_init);
	if (cares_init_rc != ARES_SUCCESS)
		return errorf(err, errlen, -EIO, "c-ares: %s", ares_strerror(cares_init_rc));
	struct net_resolver *r = calloc(1, sizeof(*r));
	if (!r)
		return errorf(err, errlen, -ENOMEM, "out of memory");
	/*
	 * glibc's getaddrinfo would need NSS modules at run time, which a static padcell cannot
	 * load reliably; the hosts file first (from memory), then resolv.conf's servers through c-ares.
	 */
	struct ares_options o = {
		.timeout = NET_RESOLVE_TIMEOUT_MS,
		.tries = NET_RESOLVE_TRIES,
		.lookups = (char *)"b", /* the hosts file is answered from memory, above c-ares */
	};
	int rc = ares_init_options(&r->ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS);
	if (rc != ARES_SUCCESS) {
		free(r);
		return errorf(err, errlen, rc == ARES_ENOMEM ? -ENOMEM : -EIO, "c-ares: %s", ares_strerror(rc));
	}
	if (servers && (rc = ares_set_servers_ports_csv(r->ch, servers)) != ARES_SUCCESS) {
		ares_destroy(r->ch);
		free(r);
		return errorf(err, errlen, -EINVAL, "c-ares servers '%s': %s", servers, ares_strerror(rc));
	}
	rc = net_resolver_load_hosts(r, NET_RESOLVE_HOSTS_FILE);
	if (rc && rc != -ENOENT) {
		net_resolver_close(r);
		return errorf(err, errlen, rc, "%s: %s", NET_RESOLVE_HOSTS_FILE, strerror(-rc));
	}
	*out = r;
	return 0;
}

/* Lower case, without one trailing dot; false for an empty or overlong name. */
static bool norm_name(char out[256], const char *name)
{
	size_t n = strlen(name);
	if (n && name[n - 1] == '.')
		n--;
	if (!n || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
	out[n] = '\0';
	return true;
}

int net_resolver_load_hosts(struct net_resolver *r, const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	free(r->hosts);
	r->hosts = NULL;
	r->nhosts = 0;
	size_t cap = 0;
	char line[1024];
	int rc = 0;
	while (fgets(line, sizeof(line), f)) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *save, *tok = strtok_r(line, " \t\r\n", &save);
		struct in_addr a;
		if (!tok || inet_pton(AF_INET, tok, &a) != 1)
			continue; /* blank, a comment, IPv6 or junk */
		while ((tok = strtok_r(NULL, " \t\r\n", &save))) {
			if (r->nhosts == NET_RESOLVE_MAX_HOSTS) {
				rc = -EFBIG;
				goto out;
			}
			if (r->nhosts == cap) {
				size_t ncap = cap ? cap * 2 : 16;
				struct hosts_entry *h = realloc(r->hosts, ncap * sizeof(*h));
				if (!h) {
					rc = -ENOMEM;
					goto out;
				}
				r->hosts = h;
				cap = ncap;
			}
			struct hosts_entry *e = &r->hosts[r->nhosts];
			if (!norm_name(e->name, tok))
				continue;
			e->addr = ntohl(a.s_addr);
			r->nhosts++;
		}
	}
	if (ferror(f))
		rc = -EIO;
out:
	fclose(f);
	return rc;
}

void net_resolver_close(struct net_resolver *r)
{
	if (!r)
		return;
	ares_destroy(r->ch); /* every pending callback runs with ARES_EDESTRUCTION */
	free(r->hosts);
	free(r);
}

static int status_errno(int status)
{
	switch (status) {
	case ARES_SUCCESS:
		return 0;
	case ARES_ENOTFOUND:
	case ARES_ENONAME:
	case ARES_ENODATA:
		return -ENOENT;
	case ARES_ETIMEOUT:
		return -ETIMEDOUT;
	case ARES_EDESTRUCTION:
	case ARES_ECANCELLED:
		return -ECANCELED;
	default:
		return -EIO;
	}
}

static void resolve_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct resolve_req *q = arg;
	uint32_t addrs[NET_RESOLVE_MAX_ADDRS];
	size_t n = 0;
	for (struct ares_addrinfo_node *a = res ? res->nodes : NULL; a && n < NET_RESOLVE_MAX_ADDRS; a = a->ai_next) {
		if (a->ai_family != AF_INET || a->ai_addrlen < (ares_socklen_t)sizeof(struct sockaddr_in))
			continue;
		uint32_t v = ntohl(((const struct sockaddr_in *)(const void *)a->ai_addr)->sin_addr.s_addr);
		bool dup = false;
		for (size_t i = 0; i < n; i++)
			dup |= addrs[i] == v;
		if (!dup)
			addrs[n++] = v;
	}
	if (res)
		ares_freeaddrinfo(res);
	q->r->pending--;
	/* ENODATA from c-ares means "the name exists, no A records": an empty answer, not NXDOMAIN */
	int rc = status == ARES_ENODATA ? 0 : status_errno(status);
	q->cb(q->arg, rc, addrs, rc ? 0 : n);
	free(q);
}

int net_resolve_start(struct net_resolver *r, const char *name, net_resolve_cb *cb, void *arg)
{
	/* The hosts file wins, as in glibc's "files dns": every address it gives the name, at once. */
	char key[256];
	if (norm_name(key, name)) {
		uint32_t addrs[NET_RESOLVE_MAX_ADDRS];
		size_t n = 0;
		for (size_t i = 0; i < r->nhosts && n < NET_RESOLVE_MAX_ADDRS; i++) {
			if (strcmp(r->hosts[i].name, key))
				continue;
			bool dup = false;
			for (size_t k = 0; k < n; k++)
				dup |= addrs[k] == r->hosts[i].addr;
			if (!dup)
				addrs[n++] = r->hosts[i].addr;
		}
		if (n) {
			cb(arg, 0, addrs, n);
			return 0;
		}
	}
	if (r->pending >= NET_RESOLVE_MAX_PENDING)
		return -EBUSY;
	struct resolve_req *q = malloc(sizeof(*q));
	if (!q)
		return -ENOMEM;
	*q = (struct resolve_req){ .r = r, .cb = cb, .arg = arg };
	/* IPv4 only (the guest has no IPv6), and no sorting: c-ares sorts by connecting UDP sockets. */
	struct ares_addrinfo_hints h = { .ai_family = AF_INET, .ai_flags = ARES_AI_NOSORT };
	r->pending++;
	ares_getaddrinfo(r->ch, name, NULL, &h, resolve_done, q);
	/* c-ares may answer at once (a cached or numeric answer): the callback already ran and freed q */
	return 0;
}

unsigned net_resolver_pending(const struct net_resolver *r)
{
	return r->pending;
}

unsigned net_resolver_poll_fill(struct net_resolver *r, struct pollfd *fds, unsigned max, int *timeout_ms)
{
	if (!r->pending)
		return 0;
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	/* The bitmask by hand: ares.h's ARES_GETSOCK_WRITABLE shifts a signed 1 into bit 31 for socket 15. */
	unsigned bits = (unsigned)ares_getsock(r->ch, socks, ARES_GETSOCK_MAXNUM);
	unsigned n = 0;
	for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM && n < max; i++) {
		short ev = (short)((bits & (1u << i) ? POLLIN : 0) | (bits & (1u << (i + ARES_GETSOCK_MAXNUM)) ? POLLOUT : 0));
		if (ev)
			fds[n++] = (struct pollfd){ .fd = socks[i], .events = ev };
	}
	struct timeval tv, *t = ares_timeout(r->ch, NULL, &tv);
	if (t) {
		long ms = (long)t->tv_sec * 1000 + (t->tv_usec + 999) / 1000;
		if (*timeout_ms < 0 || ms < *timeout_ms)
			*timeout_ms = (int)ms;
	}
	return n;
}

void net_resolver_poll_done(struct net_resolver *r, const struct pollfd *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (!fds[i].revents)
			continue;
		ares_socket_t rd = fds[i].revents & (POLLIN | POLLERR | POLLHUP) ? fds[i].fd : ARES_SOCKET_BAD;
		ares_socket_t wr = fds[i].revents & (POLLOUT | POLLERR | POLLHUP) ? fds[i].fd : ARES_SOCKET_BAD;
		ares_process_fd(r->ch, rd, wr);
	}
	if (r->pending)
		ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts and retries */
}
