/* The NIC's resolver: the hosts file answered from memory (so lookups work inside the jail's empty root). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "devices/net_resolve.h"

struct answer {
	int calls, rc;
	size_t n;
	uint32_t addrs[NET_RESOLVE_MAX_ADDRS];
};

static void got(void *arg, int rc, const uint32_t *addrs, size_t n)
{
	struct answer *a = arg;
	a->calls++;
	a->rc = rc;
	a->n = n;
	for (size_t i = 0; i < n; i++)
		a->addrs[i] = addrs[i];
}

static struct net_resolver *open_with_hosts(const char *text, char *path)
{
	strcpy(path, "/tmp/padcell-hosts-XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct net_resolver *r;
	char err[160];
	/* a server nobody answers on: nothing here may reach a real resolver */
	cr_assert_eq(net_resolver_open(&r, "127.0.0.1:9", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(net_resolver_load_hosts(r, path), 0);
	return r;
}

Test(net_resolve, hosts_file_answers_at_once_case_and_dot_insensitive)
{
	char path[64];
	struct net_resolver *r = open_with_hosts("# comment\n"
						 "198.51.100.11 web.example.test alias.test # trailing\n"
						 "\n"
						 "::1 web.example.test\n"
						 "not-an-address web.example.test\n"
						 "198.51.100.12\tWeb.Example.Test\n"
						 "198.51.100.11 web.example.test\n",
						 path);
	struct answer a = { 0 };
	cr_assert_eq(net_resolve_start(r, "WEB.example.TEST.", got, &a), 0);
	cr_assert_eq(a.calls, 1, "answered before start returned");
	cr_assert_eq(a.rc, 0);
	cr_assert_eq(a.n, 2, "both IPv4 addresses, the repeated one once");
	cr_assert_eq(a.addrs[0], 0xc633640bu);
	cr_assert_eq(a.addrs[1], 0xc633640cu);
	cr_assert_eq(net_resolver_pending(r), 0);
	a = (struct answer){ 0 };
	cr_assert_eq(net_resolve_start(r, "alias.test", got, &a), 0);
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.n, 1);
	net_resolver_close(r);
	unlink(path);
}

/* The file is read once: removing it afterwards (as the jail's empty root does) changes nothing. */
Test(net_resolve, hosts_file_is_not_read_again)
{
	char path[64];
	struct net_resolver *r = open_with_hosts("203.0.113.5 only-in-hosts.test\n", path);
	unlink(path);
	struct answer a = { 0 };
	cr_assert_eq(net_resolve_start(r, "only-in-hosts.test", got, &a), 0);
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.n, 1);
	cr_assert_eq(a.addrs[0], 0xcb007105u);
	net_resolver_close(r);
}

/* A name the file does not have goes to the servers; closing the resolver cancels it. */
Test(net_resolve, other_names_go_to_the_servers)
{
	char path[64];
	struct net_resolver *r = open_with_hosts("203.0.113.5 a.test\n", path);
	struct answer a = { 0 };
	cr_assert_eq(net_resolve_start(r, "b.test", got, &a), 0);
	cr_assert_eq(a.calls, 0);
	cr_assert_eq(net_resolver_pending(r), 1);
	net_resolver_close(r);
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(a.rc, -ECANCELED);
	unlink(path);
}

Test(net_resolve, missing_hosts_file_is_enoent)
{
	char path[64];
	struct net_resolver *r = open_with_hosts("", path);
	unlink(path);
	cr_assert_eq(net_resolver_load_hosts(r, path), -ENOENT);
	net_resolver_close(r);
}
