/* Frame gate: parsing a hostile Ethernet/IPv4 frame step by step, each rule its own drop reason; the RST builder. */
#include "vmm/net/gate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/icmp.h>
#include <linux/if_arp.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <netinet/in.h>
#include <string.h>

_Static_assert(sizeof(struct ethhdr) == ETH_HLEN, "ethhdr");
_Static_assert(sizeof(struct iphdr) == 20, "iphdr");
_Static_assert(sizeof(struct tcphdr) == 20, "tcphdr");
_Static_assert(sizeof(struct udphdr) == 8, "udphdr");
_Static_assert(sizeof(struct arphdr) == 8, "arphdr");

#define IP_MF_BIT 0x2000
#define IP_DF_BIT 0x4000
#define IP_OFFSET_MASK 0x1fff
#define ARP_ETH_IPV4_LEN (sizeof(struct arphdr) + 2 * (ETH_ALEN + 4))
#define DNS_PORT 53

static uint32_t csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *b = data;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)b[i] << 8 | b[i + 1];
	if (len & 1)
		sum += (uint32_t)b[len - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static enum gate_verdict verdict(struct gate_result *r, enum gate_verdict v, const char *reason)
{
	r->verdict = v;
	r->reason = reason;
	return v;
}

static enum gate_verdict drop(struct gate_result *r, const char *reason) { return verdict(r, GATE_DROP, reason); }

/*
 * ARP for Ethernet/IPv4 only, and only about the guest itself: a guest that answers or
 * announces for other addresses (ARP spoofing) gains nothing against a user-mode stack,
 * but nothing needs it either.  Sender IP 0.0.0.0 is an address probe (RFC 5227).
 */
static enum gate_verdict check_arp(const struct gate_cfg *cfg, const uint8_t *f, size_t len, struct gate_result *r)
{
	struct arphdr ah;
	uint8_t sha[ETH_ALEN];
	uint32_t spa;

	if (len < ETH_HLEN + ARP_ETH_IPV4_LEN)
		return drop(r, "runt ARP");
	memcpy(&ah, f + ETH_HLEN, sizeof(ah));
	if (ntohs(ah.ar_hrd) != ARPHRD_ETHER || ntohs(ah.ar_pro) != ETH_P_IP || ah.ar_hln != ETH_ALEN || ah.ar_pln != 4)
		return drop(r, "ARP not for Ethernet/IPv4");
	if (ntohs(ah.ar_op) != ARPOP_REQUEST && ntohs(ah.ar_op) != ARPOP_REPLY)
		return drop(r, "ARP operation");
	memcpy(sha, f + ETH_HLEN + sizeof(ah), ETH_ALEN);
	memcpy(&spa, f + ETH_HLEN + sizeof(ah) + ETH_ALEN, 4);
	if (memcmp(sha, cfg->guest_mac, ETH_ALEN) != 0)
		return drop(r, "ARP sender MAC is not the guest's");
	if (spa != 0 && ntohl(spa) != cfg->guest_ip)
		return drop(r, "ARP sender IP is not the guest's");
	return verdict(r, GATE_PASS, "ARP");
}

static enum gate_verdict check_policy(const struct policy *p, struct gate_result *r, enum gate_verdict denied)
{
	r->policy_checked = true;
	if (policy_check_addr(p, r->dst, r->dport, r->proto, &r->decision))
		return verdict(r, GATE_PASS, "allowed by policy");
	return verdict(r, denied, "denied by policy");
}

static enum gate_verdict check_tcp(const struct policy *p, const uint8_t *l4, size_t l4len, struct gate_result *r)
{
	struct tcphdr th;
	if (l4len < sizeof(th))
		return drop(r, "runt TCP header");
	memcpy(&th, l4, sizeof(th));
	if (th.doff < 5 || (size_t)th.doff * 4 > l4len)
		return drop(r, "TCP data offset");
	r->sport = ntohs(th.source);
	r->dport = ntohs(th.dest);
	if (r->sport == 0 || r->dport == 0)
		return drop(r, "TCP port 0");
	/*
	 * A SYN without ACK is the only segment that makes the stack open a host socket (libslirp
	 * creates one only for a segment with SYN and none of ACK, RST, FIN or URG; any SYN
	 * without ACK is a superset of that, and covers SYN|ECE|CWR).  Every other segment either
	 * belongs to a connection whose SYN passed here, or to none, and then the stack answers
	 * it with its own reset without touching the host.
	 */
	if (th.syn && !th.ack)
		return check_policy(p, r, GATE_REJECT_TCP);
	return verdict(r, GATE_PASS, "TCP segment of a known connection");
}

static enum gate_verdict check_udp(const struct gate_cfg *cfg, const struct policy *p, size_t l4off, size_t l4len,
				   const uint8_t *f, struct gate_result *r)
{
	struct udphdr uh;
	if (l4len < sizeof(uh))
		return drop(r, "runt UDP header");
	memcpy(&uh, f + l4off, sizeof(uh));
	size_t ulen = ntohs(uh.len);
	if (ulen < sizeof(uh) || ulen > l4len)
		return drop(r, "UDP length");
	r->sport = ntohs(uh.source);
	r->dport = ntohs(uh.dest);
	if (r->sport == 0 || r->dport == 0)
		return drop(r, "UDP port 0");
	if (r->dst == cfg->dns_ip && r->dport == DNS_PORT) {
		r->payload_off = l4off + sizeof(uh);
		r->payload_len = ulen - sizeof(uh);
		return verdict(r, GATE_DNS, "DNS query");
	}
	/* Denied UDP is dropped silently: there is no connection to reset, and an ICMP error
	 * would only tell a scanner what it already guessed. */
	return check_policy(p, r, GATE_DROP);
}

/*
 * ICMP: echo requests to an address some rule (or open mode) allows, so `ping` works where
 * the network does; nothing else.  A guest has no reason to send ICMP errors or redirects
 * through a user-mode stack, and the stack would not forward them anyway.
 */
static enum gate_verdict check_icmp(const struct policy *p, const uint8_t *l4, size_t l4len, struct gate_result *r)
{
	struct icmphdr ih;
	if (l4len < sizeof(ih))
		return drop(r, "runt ICMP header");
	memcpy(&ih, l4, sizeof(ih));
	if (ih.type != ICMP_ECHO || ih.code != 0)
		return drop(r, "ICMP other than echo request");
	return check_policy(p, r, GATE_DROP);
}

static enum gate_verdict check_ipv4(const struct gate_cfg *cfg, const struct policy *p, const uint8_t *f, size_t len,
				    struct gate_result *r)
{
	struct iphdr ih;
	if (len < ETH_HLEN + sizeof(ih))
		return drop(r, "runt IPv4 header");
	memcpy(&ih, f + ETH_HLEN, sizeof(ih));
	if (ih.version != 4)
		return drop(r, "IP version is not 4");
	if (ih.ihl < 5)
		return drop(r, "IPv4 header length below 20");
	if (ih.ihl != 5)
		return drop(r, "IPv4 options");
	if (csum_fold(csum_add(0, f + ETH_HLEN, sizeof(ih))) != 0xffff)
		return drop(r, "IPv4 header checksum");
	size_t tot = ntohs(ih.tot_len);
	/* shorter than the frame is fine (padding); longer would read past what the guest sent */
	if (tot < sizeof(ih))
		return drop(r, "IPv4 total length below the header");
	if (tot > len - ETH_HLEN)
		return drop(r, "IPv4 total length beyond the frame");
	uint16_t frag = ntohs(ih.frag_off);
	if (frag & (IP_MF_BIT | IP_OFFSET_MASK))
		return drop(r, "IPv4 fragment");
	r->proto = ih.protocol;
	r->src = ntohl(ih.saddr);
	r->dst = ntohl(ih.daddr);
	/* the guest is configured statically (no DHCP), so 0.0.0.0 is as foreign as any other */
	if (r->src != cfg->guest_ip)
		return drop(r, "source IP is not the guest's");

	size_t l4off = ETH_HLEN + sizeof(ih), l4len = tot - sizeof(ih);
	switch (ih.protocol) {
	case IPPROTO_TCP:
		return check_tcp(p, f + l4off, l4len, r);
	case IPPROTO_UDP:
		return check_udp(cfg, p, l4off, l4len, f, r);
	case IPPROTO_ICMP:
		return check_icmp(p, f + l4off, l4len, r);
	default:
		return drop(r, "IP protocol other than TCP, UDP or ICMP");
	}
}

enum gate_verdict gate_inspect(const struct gate_cfg *cfg, const struct policy *p, const uint8_t *frame, size_t len,
			       struct gate_result *r)
{
	struct ethhdr eh;
	size_t mtu = cfg->mtu ? cfg->mtu : 1500;

	memset(r, 0, sizeof(*r));
	/*
	 * No minimum of 60: virtio-net frames carry no Ethernet padding, so a runt is only a
	 * frame too short for the headers its type needs.  The device offers no segmentation
	 * offload, so nothing legitimate exceeds the MTU.
	 */
	if (len < ETH_HLEN)
		return drop(r, "runt frame");
	if (len > ETH_HLEN + mtu)
		return drop(r, "oversized frame");
	memcpy(&eh, frame, sizeof(eh));
	if (memcmp(eh.h_source, cfg->guest_mac, ETH_ALEN) != 0)
		return drop(r, "source MAC is not the guest's");
	switch (ntohs(eh.h_proto)) {
	case ETH_P_ARP:
		return check_arp(cfg, frame, len, r);
	case ETH_P_IP:
		return check_ipv4(cfg, p, frame, len, r);
	case ETH_P_8021Q:
	case ETH_P_8021AD:
		return drop(r, "VLAN tag");
	case ETH_P_IPV6:
		return drop(r, "IPv6");
	default:
		return drop(r, "EtherType other than ARP or IPv4");
	}
}

/* The Ethernet and IPv4 headers of a reply to (eh, ih): addresses swapped, l4len bytes after them. */
static void reply_headers(const struct ethhdr *eh, const struct iphdr *ih, uint8_t proto, size_t l4len,
			  struct ethhdr *oe, struct iphdr *oi)
{
	memcpy(oe->h_dest, eh->h_source, ETH_ALEN);
	memcpy(oe->h_source, eh->h_dest, ETH_ALEN);
	oe->h_proto = htons(ETH_P_IP);
	memset(oi, 0, sizeof(*oi));
	oi->version = 4;
	oi->ihl = 5;
	oi->tot_len = htons((uint16_t)(sizeof(*oi) + l4len));
	oi->frag_off = htons(IP_DF_BIT);
	oi->ttl = 64;
	oi->protocol = proto;
	oi->saddr = ih->daddr;
	oi->daddr = ih->saddr;
	oi->check = htons((uint16_t)~csum_fold(csum_add(0, oi, sizeof(*oi))));
}

/* The sum of the TCP/UDP pseudo-header: source, destination, zero, protocol, segment length. */
static uint32_t pseudo_sum(const struct iphdr *oi, size_t l4len)
{
	uint8_t pseudo[12];
	memcpy(pseudo, &oi->saddr, 4);
	memcpy(pseudo + 4, &oi->daddr, 4);
	pseudo[8] = 0;
	pseudo[9] = oi->protocol;
	pseudo[10] = (uint8_t)(l4len >> 8);
	pseudo[11] = (uint8_t)l4len;
	return csum_add(0, pseudo, sizeof(pseudo));
}

/*
 * The headers of a well-formed IPv4 TCP segment in an Ethernet frame (any IP header length), and
 * its data length; 0 or -EINVAL.  Nothing in it is trusted beyond what is checked here.
 */
static int tcp_seg_read(const uint8_t *seg, size_t len, struct ethhdr *eh, struct iphdr *ih, struct tcphdr *th,
			size_t *ihl, size_t *datalen)
{
	if (len < ETH_HLEN + sizeof(*ih) + sizeof(*th))
		return -EINVAL;
	memcpy(eh, seg, sizeof(*eh));
	memcpy(ih, seg + ETH_HLEN, sizeof(*ih));
	size_t tot = ntohs(ih->tot_len);
	*ihl = (size_t)ih->ihl * 4;
	if (ntohs(eh->h_proto) != ETH_P_IP || ih->version != 4 || ih->ihl < 5 || ih->protocol != IPPROTO_TCP ||
	    tot < *ihl + sizeof(*th) || tot > len - ETH_HLEN)
		return -EINVAL;
	memcpy(th, seg + ETH_HLEN + *ihl, sizeof(*th));
	size_t hlen = (size_t)th->doff * 4;
	if (th->doff < 5 || hlen > tot - *ihl)
		return -EINVAL;
	*datalen = tot - *ihl - hlen;
	return 0;
}

/* Writes the reset (oe, oi and ot, whose checksum is filled in here) into out; GATE_RST_LEN. */
static int rst_emit(const struct ethhdr *oe, const struct iphdr *oi, struct tcphdr *ot, uint8_t *out)
{
	uint32_t sum = csum_add(pseudo_sum(oi, sizeof(*ot)), ot, sizeof(*ot));
	ot->check = htons((uint16_t)~csum_fold(sum));
	memcpy(out, oe, sizeof(*oe));
	memcpy(out + ETH_HLEN, oi, sizeof(*oi));
	memcpy(out + ETH_HLEN + sizeof(*oi), ot, sizeof(*ot));
	return GATE_RST_LEN;
}

int gate_build_rst(const uint8_t *seg, size_t len, uint8_t *out, size_t outlen)
{
	struct ethhdr eh;
	struct iphdr ih;
	struct tcphdr th;
	size_t ihl, datalen;
	if (tcp_seg_read(seg, len, &eh, &ih, &th, &ihl, &datalen) || ihl != sizeof(ih) || th.rst)
		return -EINVAL;
	if (outlen < GATE_RST_LEN)
		return -ENOSPC;

	/* RFC 793: SEG.LEN counts the data plus one for SYN and one for FIN */
	uint32_t seglen = (uint32_t)datalen + th.syn + th.fin;

	struct ethhdr oe;
	struct iphdr oi;
	reply_headers(&eh, &ih, IPPROTO_TCP, sizeof(th), &oe, &oi);

	struct tcphdr ot;
	memset(&ot, 0, sizeof(ot));
	ot.source = th.dest;
	ot.dest = th.source;
	ot.doff = 5;
	ot.rst = 1;
	if (th.ack) {
		ot.seq = th.ack_seq;
	} else {
		ot.seq = 0;
		ot.ack_seq = htonl(ntohl(th.seq) + seglen);
		ot.ack = 1;
	}
	return rst_emit(&oe, &oi, &ot, out);
}

int gate_build_fin_reset(const uint8_t *fin, size_t len, uint8_t *out, size_t outlen)
{
	struct ethhdr eh;
	struct iphdr ih;
	struct tcphdr th;
	size_t ihl, datalen;
	if (tcp_seg_read(fin, len, &eh, &ih, &th, &ihl, &datalen) || !th.fin || th.rst || th.syn)
		return -EINVAL;
	if (outlen < GATE_RST_LEN)
		return -ENOSPC;

	struct iphdr oi;
	memset(&oi, 0, sizeof(oi));
	oi.version = 4;
	oi.ihl = 5;
	oi.tot_len = htons((uint16_t)(sizeof(oi) + sizeof(th)));
	oi.frag_off = htons(IP_DF_BIT);
	oi.ttl = 64;
	oi.protocol = IPPROTO_TCP;
	oi.saddr = ih.saddr;
	oi.daddr = ih.daddr;
	oi.check = htons((uint16_t)~csum_fold(csum_add(0, &oi, sizeof(oi))));

	struct tcphdr ot;
	memset(&ot, 0, sizeof(ot));
	ot.source = th.source;
	ot.dest = th.dest;
	ot.seq = htonl(ntohl(th.seq) + (uint32_t)datalen + 1u); /* past the data and the FIN */
	ot.doff = 5;
	ot.rst = 1;
	return rst_emit(&eh, &oi, &ot, out);
}

int gate_build_udp_reply(const uint8_t *dgram, size_t len, const uint8_t *payload, size_t plen, uint8_t *out,
			 size_t outlen)
{
	struct ethhdr eh;
	struct iphdr ih;
	struct udphdr uh;

	if (len < ETH_HLEN + sizeof(ih) + sizeof(uh))
		return -EINVAL;
	memcpy(&eh, dgram, sizeof(eh));
	memcpy(&ih, dgram + ETH_HLEN, sizeof(ih));
	if (ntohs(eh.h_proto) != ETH_P_IP || ih.version != 4 || ih.ihl < 5 || ih.protocol != IPPROTO_UDP ||
	    len < ETH_HLEN + (size_t)ih.ihl * 4 + sizeof(uh))
		return -EINVAL;
	memcpy(&uh, dgram + ETH_HLEN + (size_t)ih.ihl * 4, sizeof(uh));
	size_t ulen = sizeof(uh) + plen, total = ETH_HLEN + sizeof(ih) + ulen;
	if (sizeof(ih) + ulen > 65535 || outlen < total)
		return -ENOSPC;

	struct ethhdr oe;
	struct iphdr oi;
	reply_headers(&eh, &ih, IPPROTO_UDP, ulen, &oe, &oi);

	struct udphdr ou = { .source = uh.dest, .dest = uh.source, .len = htons((uint16_t)ulen) };
	/* payload follows an 8-byte header, so the two sums join on an even offset */
	uint32_t sum = csum_add(csum_add(pseudo_sum(&oi, ulen), &ou, sizeof(ou)), payload, plen);
	uint16_t c = (uint16_t)~csum_fold(sum);
	ou.check = htons(c ? c : 0xffff); /* 0 would mean "no checksum" (RFC 768) */

	memcpy(out, &oe, sizeof(oe));
	memcpy(out + ETH_HLEN, &oi, sizeof(oi));
	memcpy(out + ETH_HLEN + sizeof(oi), &ou, sizeof(ou));
	memcpy(out + ETH_HLEN + sizeof(oi) + sizeof(ou), payload, plen);
	return (int)total;
}
