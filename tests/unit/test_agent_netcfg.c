/* The agent's padcell.net= parser: the monitor's own line, and hostile or broken ones. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "devices/virtio_net.h"
#include "guest/agent/netcfg.h"

static uint32_t ip(const char *s)
{
	struct in_addr a;
	cr_assert_eq(inet_pton(AF_INET, s, &a), 1);
	return a.s_addr;
}

Test(agent_netcfg, parses_what_the_monitor_appends)
{
	char arg[128], line[256];
	cr_assert_eq(virtio_net_cmdline(arg, sizeof(arg)), 0);
	snprintf(line, sizeof(line), "console=ttyS0 root=/dev/vda ro %s virtio_mmio.device=4K@0xd0000000:5", arg);
	struct netcfg c;
	cr_assert_eq(netcfg_parse_cmdline(line, &c), 1);
	cr_assert_eq(c.ip, ip("10.0.2.15"));
	cr_assert_eq(c.prefix, 24);
	cr_assert_eq(c.gw, ip("10.0.2.2"));
	cr_assert_eq(c.dns, ip("10.0.2.3"));
	cr_assert_eq(c.mtu, NET_MTU);
	char rc[256];
	cr_assert_gt(netcfg_resolv_conf(&c, rc, sizeof(rc)), 0);
	cr_assert(strstr(rc, "\nnameserver 10.0.2.3\n"), "%s", rc);
}

Test(agent_netcfg, absent_is_not_an_error)
{
	struct netcfg c;
	cr_assert_eq(netcfg_parse_cmdline("console=ttyS0 quiet", &c), 0);
	cr_assert_eq(netcfg_parse_cmdline("", &c), 0);
	cr_assert_eq(netcfg_parse_cmdline("xpadcell.net=10.0.2.15/24,10.0.2.2,10.0.2.3,1500", &c), 0, "whole words only");
}

Test(agent_netcfg, the_last_one_wins)
{
	struct netcfg c;
	cr_assert_eq(netcfg_parse_cmdline("padcell.net=bad padcell.net=192.168.7.2/30,192.168.7.1,192.168.7.1,1500", &c), 1);
	cr_assert_eq(c.ip, ip("192.168.7.2"));
	cr_assert_eq(c.prefix, 30);
	cr_assert_eq(c.mtu, 1500);
}

Test(agent_netcfg, malformed_lines_are_refused)
{
	static const char *bad[] = {
		"padcell.net=",
		"padcell.net=10.0.2.15/24,10.0.2.2,10.0.2.3",            /* no MTU */
		"padcell.net=10.0.2.15/24,10.0.2.2,10.0.2.3,1500,9",     /* a fifth field */
		"padcell.net=10.0.2.15,10.0.2.2,10.0.2.3,1500",          /* no prefix */
		"padcell.net=10.0.2.15/0,10.0.2.2,10.0.2.3,1500",        /* prefix out of range */
		"padcell.net=10.0.2.15/31,10.0.2.2,10.0.2.3,1500",
		"padcell.net=10.0.2.15/24,10.0.3.2,10.0.2.3,1500",       /* gateway off the link */
		"padcell.net=10.0.2.15/24,10.0.2.15,10.0.2.3,1500",      /* gateway is us */
		"padcell.net=10.0.2.15/24,10.0.2.2,10.0.2.3,67",         /* MTU below IPv4's minimum */
		"padcell.net=10.0.2.15/24,10.0.2.2,10.0.2.3,65536",
		"padcell.net=10.0.2.15/24,10.0.2.2,10.0.2.3,15x0",
		"padcell.net=10.0.2.256/24,10.0.2.2,10.0.2.3,1500",
		"padcell.net=10.0.2/24,10.0.2.2,10.0.2.3,1500",
		"padcell.net=10.0.2.15/24,,10.0.2.3,1500",
		"padcell.net=10.0.2.15/+24,10.0.2.2,10.0.2.3,1500",
		"padcell.net=10.0.2.15/24,10.0.2.2,10.0.2.3,-1500",
		"padcell.net=10.0.2.15/24,10.0.2.2,10.0.2.3.4.5.6.7.8,1500",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct netcfg c;
		cr_assert_eq(netcfg_parse_cmdline(bad[i], &c), -1, "%s", bad[i]);
	}
}
