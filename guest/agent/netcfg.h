/* The guest agent's network set-up: padcell.net= from the kernel command line, applied to eth0 with ioctls. */
#ifndef PADCELL_AGENT_NETCFG_H
#define PADCELL_AGENT_NETCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* padcell.net=IP/PREFIX,GATEWAY,DNS,MTU (what the monitor appends when the VM has a NIC). */
struct netcfg {
	uint32_t ip, gw, dns; /* network byte order */
	unsigned prefix;      /* 1..30 */
	unsigned mtu;         /* 68..65535 */
};

/*
 * Finds padcell.net= in a kernel command line and parses it strictly (dotted quads, the gateway
 * and DNS inside IP/PREFIX and not the guest's own address).  1: found and valid; 0: absent;
 * -1: present but malformed (the agent then leaves the network down and says so).
 */
int netcfg_parse_cmdline(const char *cmdline, struct netcfg *c);

/* The resolv.conf text for c into out.  Returns its length, or -1 if outlen is too small. */
int netcfg_resolv_conf(const struct netcfg *c, char *out, size_t outlen);

/*
 * Brings lo up, and when c is not NULL: ifname gets c's address, netmask and MTU and is brought
 * up, a default route goes via c->gw, and resolv_path (e.g. /run/resolv.conf) is written.
 * 0, or -errno with what failed in err.
 */
int netcfg_apply(const struct netcfg *c, const char *ifname, const char *resolv_path, char *err, size_t errlen);

#endif
