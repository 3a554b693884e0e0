/* eth0 from padcell.net=: parsed strictly, applied with the classic SIOCSIF* and SIOCADDRT ioctls (no tools needed). */
#include "guest/agent/netcfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define NETCFG_KEY "padcell.net="

/* One dotted quad, ending at *end (',' '/' or the value's end); exactly four decimal parts. */
static bool parse_ip(const char *s, size_t len, uint32_t *out)
{
	char buf[16];
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	struct in_addr a;
	if (inet_pton(AF_INET, buf, &a) != 1)
		return false;
	*out = a.s_addr;
	return true;
}

static bool parse_uint(const char *s, size_t len, unsigned lo, unsigned hi, unsigned *out)
{
	if (len == 0 || len > 5)
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

int netcfg_parse_cmdline(const char *cmdline, struct netcfg *c)
{
	const char *v = NULL;
	/* the last padcell.net= wins, as the kernel's own parameters do; only whole words count */
	for (const char *p = cmdline; (p = strstr(p, NETCFG_KEY)); p += sizeof(NETCFG_KEY) - 1)
		if (p == cmdline || p[-1] == ' ')
			v = p + sizeof(NETCFG_KEY) - 1;
	if (!v)
		return 0;
	size_t vlen = strcspn(v, " \n\t");
	const char *f[4];
	size_t flen[4];
	unsigned nf = 0;
	for (const char *p = v, *end = v + vlen; nf < 4; nf++) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		f[nf] = p;
		flen[nf] = (size_t)((comma ? comma : end) - p);
		if (!comma) {
			nf++;
			break;
		}
		p = comma + 1;
		if (nf == 3)
			return -1; /* a fifth field */
	}
	if (nf != 4)
		return -1;
	const char *slash = memchr(f[0], '/', flen[0]);
	if (!slash || !parse_ip(f[0], (size_t)(slash - f[0]), &c->ip) ||
	    !parse_uint(slash + 1, flen[0] - (size_t)(slash + 1 - f[0]), 1, 30, &c->prefix) ||
	    !parse_ip(f[1], flen[1], &c->gw) || !parse_ip(f[2], flen[2], &c->dns) ||
	    !parse_uint(f[3], flen[3], 68, 65535, &c->mtu))
		return -1;
	uint32_t mask = htonl(~0u << (32 - c->prefix));
	if ((c->gw & mask) != (c->ip & mask) || c->gw == c->ip)
		return -1; /* the gateway must be on the link, and not us */
	return 1;
}

int netcfg_resolv_conf(const struct netcfg *c, char *out, size_t outlen)
{
	char dns[INET_ADDRSTRLEN];
	struct in_addr a = { .s_addr = c->dns };
	inet_ntop(AF_INET, &a, dns, sizeof(dns));
	/* padcell answers DNS itself; one server, no search list (names are what the rules say) */
	int n = snprintf(out, outlen, "# written by padcell-agent from padcell.net=\nnameserver %s\n", dns);
	return n > 0 && (size_t)n < outlen ? n : -1;
}

static int set_addr(int fd, const char *ifname, unsigned long req, uint32_t addr)
{
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = addr };
	memcpy(&ifr.ifr_addr, &sin, sizeof(sin));
	return ioctl(fd, req, &ifr) < 0 ? -errno : 0;
}

static int link_up(int fd, const char *ifname)
{
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(fd, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

#define FAIL(what) do { rc = rc ? rc : -EIO; snprintf(err, errlen, "%s: %s", what, strerror(-rc)); goto out; } while (0)

int netcfg_apply(const struct netcfg *c, const char *ifname, const char *resolv_path, char *err, size_t errlen)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket(AF_INET): %s", strerror(errno));
		return -errno;
	}
	int rc = link_up(fd, "lo"); /* the kernel gives lo 127.0.0.1/8 when it comes up */
	if (rc)
		FAIL("bringing lo up");
	if (!c)
		goto out;
	if ((rc = set_addr(fd, ifname, SIOCSIFADDR, c->ip)))
		FAIL("setting eth0's address");
	if ((rc = set_addr(fd, ifname, SIOCSIFNETMASK, htonl(~0u << (32 - c->prefix)))))
		FAIL("setting eth0's netmask");
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_mtu = (int)c->mtu;
	if (ioctl(fd, SIOCSIFMTU, &ifr) < 0) {
		rc = -errno;
		FAIL("setting eth0's MTU");
	}
	if ((rc = link_up(fd, ifname)))
		FAIL("bringing eth0 up");
	struct rtentry rt = { 0 };
	struct sockaddr_in dst = { .sin_family = AF_INET }, gw = { .sin_family = AF_INET, .sin_addr.s_addr = c->gw };
	memcpy(&rt.rt_dst, &dst, sizeof(dst));
	memcpy(&rt.rt_genmask, &dst, sizeof(dst));
	memcpy(&rt.rt_gateway, &gw, sizeof(gw));
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	rt.rt_dev = (char *)ifname;
	if (ioctl(fd, SIOCADDRT, &rt) < 0 && errno != EEXIST) {
		rc = -errno;
		FAIL("adding the default route");
	}
	char text[256];
	int len = netcfg_resolv_conf(c, text, sizeof(text));
	int rf = open(resolv_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (rf < 0) {
		rc = -errno;
		FAIL(resolv_path);
	}
	if (len < 0 || write(rf, text, (size_t)len) != len) {
		rc = len < 0 ? -ENOSPC : -errno;
		close(rf);
		FAIL(resolv_path);
	}
	close(rf);
out:
	close(fd);
	return rc;
}
