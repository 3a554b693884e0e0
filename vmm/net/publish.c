/* --publish values, parsed strictly: what the NIC's stack is told to listen on for the guest. */
#include "vmm/net/publish.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmm/err.h"

static int port_of(const char *s, size_t len, uint16_t *out)
{
	if (len == 0 || len > 5)
		return -1;
	unsigned v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int net_publish_parse(const char *s, struct net_publish *p, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	size_t len = strlen(s);
	if (len >= sizeof(p->text))
		return errorf(err, errlen, -EINVAL, "--publish '%.60s...': too long", s);
	memcpy(p->text, s, len + 1);
	const char *last = strrchr(s, ':');
	if (!last)
		return errorf(err, errlen, -EINVAL, "--publish '%s': expected [ADDR:]HOSTPORT:GUESTPORT", s);
	const char *first = memrchr(s, ':', (size_t)(last - s));
	const char *hp = first ? first + 1 : s;
	p->host_addr = NET_PUBLISH_DEFAULT_ADDR;
	if (first) {
		char a[16];
		size_t alen = (size_t)(first - s);
		struct in_addr in;
		if (alen == 0 || alen >= sizeof(a))
			return errorf(err, errlen, -EINVAL, "--publish '%s': the address is not an IPv4 address", s);
		memcpy(a, s, alen);
		a[alen] = '\0';
		if (inet_pton(AF_INET, a, &in) != 1)
			return errorf(err, errlen, -EINVAL, "--publish '%s': '%s' is not an IPv4 address", s, a);
		p->host_addr = ntohl(in.s_addr);
	}
	if (port_of(hp, (size_t)(last - hp), &p->host_port))
		return errorf(err, errlen, -EINVAL, "--publish '%s': the host port must be 1-65535", s);
	if (port_of(last + 1, strlen(last + 1), &p->guest_port))
		return errorf(err, errlen, -EINVAL, "--publish '%s': the guest port must be 1-65535", s);
	return 0;
}
