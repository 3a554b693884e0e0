/* --publish [ADDR:]HOSTPORT:GUESTPORT: a host TCP port forwarded to a port of the guest (ingress for servers it starts). */
#ifndef PADCELL_NET_PUBLISH_H
#define PADCELL_NET_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#define NET_PUBLISH_MAX 16
#define NET_PUBLISH_DEFAULT_ADDR 0x7f000001u /* host loopback unless an address is given */

struct net_publish {
	uint32_t host_addr; /* IPv4, host byte order */
	uint16_t host_port, guest_port;
	char text[48];      /* as typed, for messages */
};

/*
 * Parses one --publish value: HOSTPORT:GUESTPORT or ADDR:HOSTPORT:GUESTPORT, ADDR a dotted IPv4
 * address (0.0.0.0 for every host address), ports 1..65535 in decimal.  0, or -EINVAL with one
 * line in err.
 */
int net_publish_parse(const char *s, struct net_publish *p, char *err, size_t errlen);

#endif
