/* vmm/net/gate: hand-built guest frames through every drop rule, the policy, DNS diversion, and the RST builder. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/net/gate.h"

#define GUEST_IP 0x0a000205u /* 10.0.2.5 */
#define DNS_IP 0x0a000203u   /* 10.0.2.3 */
#define ALLOWED 0x5db8d822u  /* 93.184.216.34 */
#define DENIED 0x08080808u   /* 8.8.8.8 */

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t gw_mac[6] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 };

static struct gate_cfg cfg;
static struct policy pol;
static struct gate_result r;
static uint8_t f[70000];
static size_t flen;

static void setup(void)
{
	char err[256];
	const char *const rules[] = { "93.184.216.34:443", "9.9.9.9:123/udp" };
	memcpy(cfg.guest_mac, guest_mac, 6);
	cfg.guest_ip = GUEST_IP;
	cfg.dns_ip = DNS_IP;
	cfg.mtu = 1500;
	policy_init(&pol);
	cr_assert_eq(policy_replace(&pol, rules, 2, false, err, sizeof(err)), 0, "%s", err);
}
static void teardown(void) { policy_destroy(&pol); }
TestSuite(net_gate, .init = setup, .fini = teardown);

/* The test's own checksum: a plain sum of big-endian 16-bit words, folded (RFC 1071). */
static uint16_t t_sum(const uint8_t *b, size_t n, uint32_t sum)
{
	for (size_t i = 0; i < n; i++)
		sum += (i % 2 == 0) ? (uint32_t)b[i] * 256 : b[i];
	while (sum > 0xffff)
		sum = (sum >> 16) + (sum & 0xffff);
	return (uint16_t)sum;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)), put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

static void eth(uint16_t type)
{
	memcpy(f, gw_mac, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, type);
}

static void ip_csum(void)
{
	put16(f + 24, 0);
	put16(f + 24, (uint16_t)~t_sum(f + 14, (size_t)(f[14] & 0xf) * 4, 0));
}

/* An IPv4 frame from the guest to dst with l4len bytes of protocol payload (zeroed). */
static uint8_t *ipv4(uint8_t proto, uint32_t dst, size_t l4len)
{
	memset(f, 0, 14 + 20 + l4len);
	eth(0x0800);
	uint8_t *ip = f + 14;
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + l4len));
	put16(ip + 4, 0x1234);
	put16(ip + 6, 0x4000); /* DF */
	ip[8] = 64;
	ip[9] = proto;
	put32(ip + 12, GUEST_IP);
	put32(ip + 16, dst);
	ip_csum();
	flen = 14 + 20 + l4len;
	return ip + 20;
}

enum { FIN = 0x01, SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10 };

static uint8_t *tcp(uint32_t dst, uint16_t dport, uint8_t flags, size_t datalen)
{
	uint8_t *t = ipv4(IPPROTO_TCP, dst, 20 + datalen);
	put16(t, 40000);
	put16(t + 2, dport);
	put32(t + 4, 0xfffffff0u); /* near the wrap: ack = seq + len must wrap too */
	put32(t + 8, flags & ACK ? 0x11223344u : 0);
	t[12] = 5 << 4;
	t[13] = flags;
	put16(t + 14, 64240);
	return t;
}

static uint8_t *udp(uint32_t dst, uint16_t dport, size_t datalen)
{
	uint8_t *u = ipv4(IPPROTO_UDP, dst, 8 + datalen);
	put16(u, 5353);
	put16(u + 2, dport);
	put16(u + 4, (uint16_t)(8 + datalen));
	return u;
}

static enum gate_verdict inspect(void) { return gate_inspect(&cfg, &pol, f, flen, &r); }

#define EXPECT_DROP(why)                                                                                       \
	do {                                                                                                   \
		cr_assert_eq(inspect(), GATE_DROP, "verdict %d (%s), want drop for %s", r.verdict, r.reason, why); \
		cr_assert_str_eq(r.reason, why);                                                               \
	} while (0)

/* --- what passes --- */

Test(net_gate, allowed_syn_passes)
{
	tcp(ALLOWED, 443, SYN, 0);
	cr_assert_eq(inspect(), GATE_PASS, "%s", r.reason);
	cr_assert(r.policy_checked);
	cr_assert(strstr(r.decision.why, "93.184.216.34:443"), "%s", r.decision.why);
	cr_assert_eq(r.dst, ALLOWED);
	cr_assert_eq(r.dport, 443);
	cr_assert_eq(r.proto, IPPROTO_TCP);
}

Test(net_gate, syn_with_ecn_flags_is_still_checked)
{
	uint8_t *t = tcp(DENIED, 443, SYN, 0);
	t[13] |= 0xc0; /* ECE|CWR */
	cr_assert_eq(inspect(), GATE_REJECT_TCP);
}

Test(net_gate, other_tcp_segments_pass_unchecked)
{
	tcp(DENIED, 443, ACK, 0);
	cr_assert_eq(inspect(), GATE_PASS);
	cr_assert_not(r.policy_checked, "no socket can come of it");
	tcp(DENIED, 443, ACK | PSH, 100);
	cr_assert_eq(inspect(), GATE_PASS);
	tcp(DENIED, 443, SYN | ACK, 0);
	cr_assert_eq(inspect(), GATE_PASS, "a SYN-ACK answers an inbound connection");
	tcp(DENIED, 443, RST, 0);
	cr_assert_eq(inspect(), GATE_PASS);
}

Test(net_gate, ethernet_padding_after_the_ip_datagram_is_fine)
{
	tcp(ALLOWED, 443, SYN, 0);
	memset(f + flen, 0, 6);
	flen += 6;
	cr_assert_eq(inspect(), GATE_PASS, "%s", r.reason);
}

Test(net_gate, a_frame_of_exactly_the_mtu_passes_one_more_byte_does_not)
{
	tcp(ALLOWED, 443, ACK, 1500 - 40);
	cr_assert_eq(flen, 14 + 1500);
	cr_assert_eq(inspect(), GATE_PASS, "%s", r.reason);
	cfg.mtu = 1499;
	EXPECT_DROP("oversized frame");
	cfg.mtu = 0; /* the default, 1500 */
	cr_assert_eq(inspect(), GATE_PASS);
}

/* --- denied SYN and the reset --- */

static void check_rst(const uint8_t *o, uint32_t want_seq, uint32_t want_ack, uint8_t want_flags)
{
	cr_assert(memcmp(o, guest_mac, 6) == 0, "to the guest");
	cr_assert(memcmp(o + 6, gw_mac, 6) == 0, "from the address the guest sent to");
	cr_assert_eq(get16(o + 12), 0x0800);
	const uint8_t *ip = o + 14, *t = o + 34;
	cr_assert_eq(ip[0], 0x45);
	cr_assert_eq(get16(ip + 2), 40);
	cr_assert_eq(get16(ip + 6) & 0x3fff, 0, "not a fragment");
	cr_assert(ip[8] > 0, "TTL");
	cr_assert_eq(ip[9], IPPROTO_TCP);
	cr_assert_eq(get32(ip + 12), get32(f + 14 + 16), "source: the SYN's destination");
	cr_assert_eq(get32(ip + 16), GUEST_IP);
	cr_assert_eq(t_sum(ip, 20, 0), 0xffff, "IPv4 header checksum");
	cr_assert_eq(get16(t), get16(f + 34 + 2), "ports swapped");
	cr_assert_eq(get16(t + 2), 40000);
	cr_assert_eq(get32(t + 4), want_seq);
	cr_assert_eq(get32(t + 8), want_ack, "ack %#x, want %#x", get32(t + 8), want_ack);
	cr_assert_eq(t[12] >> 4, 5);
	cr_assert_eq(t[13], want_flags, "flags %#x", t[13]);
	uint8_t pseudo[12];
	memcpy(pseudo, ip + 12, 8);
	pseudo[8] = 0, pseudo[9] = IPPROTO_TCP;
	put16(pseudo + 10, 20);
	cr_assert_eq(t_sum(t, 20, t_sum(pseudo, 12, 0)), 0xffff, "TCP checksum over the pseudo-header");
}

Test(net_gate, denied_syn_is_rejected_with_a_valid_rst)
{
	uint8_t o[GATE_RST_LEN];
	tcp(DENIED, 443, SYN, 0);
	cr_assert_eq(inspect(), GATE_REJECT_TCP);
	cr_assert_str_eq(r.decision.why, "no rule allows it");
	cr_assert_eq(gate_build_rst(f, flen, o, sizeof(o)), GATE_RST_LEN);
	check_rst(o, 0, 0xfffffff1u, RST | ACK); /* seq 0xfffffff0 + 1 for the SYN */
	tcp(ALLOWED, 80, SYN, 0);
	cr_assert_eq(inspect(), GATE_REJECT_TCP, "the rule is for port 443 only");
}

Test(net_gate, rst_counts_syn_data_and_fin)
{
	uint8_t o[GATE_RST_LEN];
	tcp(DENIED, 80, SYN | FIN, 30);
	cr_assert_eq(gate_build_rst(f, flen, o, sizeof(o)), GATE_RST_LEN);
	check_rst(o, 0, 0xfffffff0u + 30 + 2, RST | ACK); /* wraps past 2^32 */
}

Test(net_gate, rst_for_a_segment_with_ack_takes_its_seq_from_the_ack)
{
	uint8_t o[GATE_RST_LEN];
	tcp(DENIED, 80, ACK, 10);
	cr_assert_eq(gate_build_rst(f, flen, o, sizeof(o)), GATE_RST_LEN);
	check_rst(o, 0x11223344u, 0, RST);
}

Test(net_gate, fin_reset_follows_the_fin_in_its_own_direction)
{
	uint8_t o[GATE_RST_LEN];
	tcp(ALLOWED, 443, FIN | ACK, 30);
	cr_assert_eq(gate_build_fin_reset(f, flen, o, sizeof(o)), GATE_RST_LEN);
	cr_assert(memcmp(o, f, 12) == 0, "the FIN's MAC addresses: from the guest to the stack");
	const uint8_t *ip = o + 14, *t = o + 34;
	cr_assert_eq(ip[0], 0x45);
	cr_assert_eq(get16(ip + 2), 40);
	cr_assert_eq(get32(ip + 12), GUEST_IP, "from the guest");
	cr_assert_eq(get32(ip + 16), ALLOWED);
	cr_assert_eq(t_sum(ip, 20, 0), 0xffff, "IPv4 header checksum");
	cr_assert_eq(get16(t), 40000);
	cr_assert_eq(get16(t + 2), 443);
	cr_assert_eq(get32(t + 4), 0xfffffff0u + 30 + 1, "past the data and the FIN, wrapping");
	cr_assert_eq(t[13], RST, "RST alone");
	uint8_t pseudo[12];
	memcpy(pseudo, ip + 12, 8);
	pseudo[8] = 0, pseudo[9] = IPPROTO_TCP;
	put16(pseudo + 10, 20);
	cr_assert_eq(t_sum(t, 20, t_sum(pseudo, 12, 0)), 0xffff, "TCP checksum over the pseudo-header");
	tcp(ALLOWED, 443, ACK, 0);
	cr_assert_eq(gate_build_fin_reset(f, flen, o, sizeof(o)), -EINVAL, "not a FIN");
	tcp(ALLOWED, 443, FIN | RST, 0);
	cr_assert_eq(gate_build_fin_reset(f, flen, o, sizeof(o)), -EINVAL, "a reset already");
	tcp(ALLOWED, 443, FIN | SYN, 0);
	cr_assert_eq(gate_build_fin_reset(f, flen, o, sizeof(o)), -EINVAL, "SYN with FIN");
	tcp(ALLOWED, 443, FIN | ACK, 0);
	cr_assert_eq(gate_build_fin_reset(f, flen, o, sizeof(o) - 1), -ENOSPC);
	cr_assert_eq(gate_build_fin_reset(f, flen - 1, o, sizeof(o)), -EINVAL, "total length beyond the frame");
	cr_assert_eq(gate_build_fin_reset(f, 20, o, sizeof(o)), -EINVAL);
}

Test(net_gate, rst_builder_refuses_bad_input)
{
	uint8_t o[GATE_RST_LEN];
	tcp(DENIED, 80, RST, 0);
	cr_assert_eq(gate_build_rst(f, flen, o, sizeof(o)), -EINVAL, "never answer a reset");
	tcp(DENIED, 80, SYN, 0);
	cr_assert_eq(gate_build_rst(f, flen, o, sizeof(o) - 1), -ENOSPC);
	cr_assert_eq(gate_build_rst(f, flen - 1, o, sizeof(o)), -EINVAL, "total length beyond the frame");
	cr_assert_eq(gate_build_rst(f, 20, o, sizeof(o)), -EINVAL);
	udp(DENIED, 80, 20);
	cr_assert_eq(gate_build_rst(f, flen, o, sizeof(o)), -EINVAL, "not TCP");
	uint8_t *t = tcp(DENIED, 80, SYN, 0);
	t[12] = 6 << 4;
	cr_assert_eq(gate_build_rst(f, flen, o, sizeof(o)), -EINVAL, "data offset beyond the segment");
}

Test(net_gate, syn_to_a_refused_range_is_rejected_even_in_open_mode)
{
	char err[64];
	cr_assert_eq(policy_replace(&pol, NULL, 0, true, err, sizeof(err)), 0);
	tcp(DENIED, 443, SYN, 0);
	cr_assert_eq(inspect(), GATE_PASS, "open mode");
	static const uint32_t refused[] = { 0x7f000001, 0xa9fea9fe, 0x0a000202, 0xc0a80001, 0xac100001, 0x64400001 };
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		tcp(refused[i], 80, SYN, 0);
		cr_assert_eq(inspect(), GATE_REJECT_TCP, "%#x", refused[i]);
		cr_assert(strncmp(r.decision.why, "refused", 7) == 0, "%s", r.decision.why);
	}
}

/* --- UDP and DNS --- */

Test(net_gate, dns_to_the_stack_is_diverted_with_its_payload)
{
	uint8_t *u = udp(DNS_IP, 53, 29);
	memset(u + 8, 0xab, 29);
	flen += 4; /* padding: the payload still ends where the UDP length says */
	f[flen - 1] = 0;
	cr_assert_eq(inspect(), GATE_DNS, "%s", r.reason);
	cr_assert_eq(r.payload_off, 14 + 20 + 8);
	cr_assert_eq(r.payload_len, 29);
	cr_assert_not(r.policy_checked);
}

Test(net_gate, dns_elsewhere_is_just_udp_and_denied)
{
	udp(DENIED, 53, 29);
	EXPECT_DROP("denied by policy");
	cr_assert(r.policy_checked);
	udp(DNS_IP, 54, 29);
	EXPECT_DROP("denied by policy");
	cr_assert(strncmp(r.decision.why, "refused", 7) == 0, "the stack's address is private: %s", r.decision.why);
}

Test(net_gate, udp_allowed_by_a_udp_rule)
{
	udp(0x09090909, 123, 48);
	cr_assert_eq(inspect(), GATE_PASS, "%s", r.reason);
	udp(0x09090909, 124, 48);
	EXPECT_DROP("denied by policy");
	udp(ALLOWED, 443, 48);
	EXPECT_DROP("denied by policy"); /* a TCP rule */
}

Test(net_gate, drop_udp_length_beyond_the_datagram)
{
	uint8_t *u = udp(DNS_IP, 53, 10);
	put16(u + 4, 19);
	EXPECT_DROP("UDP length");
}

Test(net_gate, drop_udp_length_below_the_header)
{
	uint8_t *u = udp(DNS_IP, 53, 10);
	put16(u + 4, 7);
	EXPECT_DROP("UDP length");
}

Test(net_gate, drop_runt_udp_header)
{
	ipv4(IPPROTO_UDP, DNS_IP, 7);
	EXPECT_DROP("runt UDP header");
}

Test(net_gate, drop_udp_port_zero)
{
	udp(DNS_IP, 0, 10);
	EXPECT_DROP("UDP port 0");
	uint8_t *u = udp(ALLOWED, 9, 10);
	put16(u, 0);
	EXPECT_DROP("UDP port 0");
}

/* --- ICMP --- */

Test(net_gate, icmp_echo_to_allowed_addresses_only)
{
	uint8_t *i = ipv4(IPPROTO_ICMP, ALLOWED, 16);
	i[0] = 8;
	cr_assert_eq(inspect(), GATE_PASS, "%s", r.reason);
	i = ipv4(IPPROTO_ICMP, DENIED, 16);
	i[0] = 8;
	EXPECT_DROP("denied by policy");
}

Test(net_gate, drop_icmp_other_than_echo)
{
	uint8_t *i = ipv4(IPPROTO_ICMP, ALLOWED, 16);
	i[0] = 3; /* destination unreachable */
	EXPECT_DROP("ICMP other than echo request");
	i[0] = 8, i[1] = 1; /* echo with a code */
	EXPECT_DROP("ICMP other than echo request");
}

Test(net_gate, drop_runt_icmp_header)
{
	ipv4(IPPROTO_ICMP, ALLOWED, 7);
	EXPECT_DROP("runt ICMP header");
}

/* --- ARP --- */

static void arp(uint16_t op, const uint8_t *sha, uint32_t spa)
{
	memset(f, 0, 42);
	eth(0x0806);
	memset(f, 0xff, 6);
	uint8_t *a = f + 14;
	put16(a, 1);
	put16(a + 2, 0x0800);
	a[4] = 6, a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, sha, 6);
	put32(a + 14, spa);
	put32(a + 24, 0x0a000202);
	flen = 42;
}

Test(net_gate, arp_from_the_guest_passes)
{
	arp(1, guest_mac, GUEST_IP);
	cr_assert_eq(inspect(), GATE_PASS, "%s", r.reason);
	arp(2, guest_mac, GUEST_IP);
	cr_assert_eq(inspect(), GATE_PASS);
	arp(1, guest_mac, 0);
	cr_assert_eq(inspect(), GATE_PASS, "an address probe");
}

static const uint8_t other_mac[6] = { 0x52, 0x54, 0x00, 0x99, 0x99, 0x99 };

Test(net_gate, arp_from_another_mac_is_dropped)
{
	arp(1, guest_mac, GUEST_IP);
	memcpy(f + 6, other_mac, 6);
	EXPECT_DROP("source MAC is not the guest's");
}

Test(net_gate, drop_arp_sender_mac_not_the_guests)
{
	arp(1, other_mac, GUEST_IP);
	EXPECT_DROP("ARP sender MAC is not the guest's");
}

Test(net_gate, drop_arp_sender_ip_not_the_guests)
{
	arp(2, guest_mac, 0x0a000202);
	EXPECT_DROP("ARP sender IP is not the guest's");
}

Test(net_gate, drop_runt_arp)
{
	arp(1, guest_mac, GUEST_IP);
	flen = 41;
	EXPECT_DROP("runt ARP");
}

Test(net_gate, drop_arp_not_ethernet_ipv4)
{
	arp(1, guest_mac, GUEST_IP);
	put16(f + 14, 6); /* IEEE 802 */
	EXPECT_DROP("ARP not for Ethernet/IPv4");
	arp(1, guest_mac, GUEST_IP);
	put16(f + 16, 0x86dd);
	EXPECT_DROP("ARP not for Ethernet/IPv4");
	arp(1, guest_mac, GUEST_IP);
	f[14 + 4] = 8;
	EXPECT_DROP("ARP not for Ethernet/IPv4");
}

Test(net_gate, drop_arp_operation)
{
	arp(3, guest_mac, GUEST_IP); /* RARP request */
	EXPECT_DROP("ARP operation");
}

/* --- each drop rule --- */

Test(net_gate, drop_runt_frame)
{
	tcp(ALLOWED, 443, SYN, 0);
	flen = 13;
	EXPECT_DROP("runt frame");
	flen = 0;
	EXPECT_DROP("runt frame");
}

Test(net_gate, drop_oversized_frame)
{
	tcp(ALLOWED, 443, SYN, 0);
	flen = 14 + 1501;
	EXPECT_DROP("oversized frame");
	flen = sizeof(f);
	EXPECT_DROP("oversized frame");
}

Test(net_gate, drop_foreign_source_mac)
{
	tcp(ALLOWED, 443, SYN, 0);
	f[11] ^= 1;
	EXPECT_DROP("source MAC is not the guest's");
}

Test(net_gate, drop_ipv6)
{
	ipv4(IPPROTO_TCP, ALLOWED, 40);
	put16(f + 12, 0x86dd);
	EXPECT_DROP("IPv6");
}

Test(net_gate, drop_vlan_8021q)
{
	tcp(ALLOWED, 443, SYN, 0);
	put16(f + 12, 0x8100);
	EXPECT_DROP("VLAN tag");
}

Test(net_gate, drop_vlan_8021ad)
{
	tcp(ALLOWED, 443, SYN, 0);
	put16(f + 12, 0x88a8);
	EXPECT_DROP("VLAN tag");
}

Test(net_gate, drop_other_ethertypes)
{
	tcp(ALLOWED, 443, SYN, 0);
	put16(f + 12, 0x8035); /* RARP */
	EXPECT_DROP("EtherType other than ARP or IPv4");
	put16(f + 12, 0x05dc); /* an 802.3 length field */
	EXPECT_DROP("EtherType other than ARP or IPv4");
}

Test(net_gate, drop_runt_ipv4_header)
{
	tcp(ALLOWED, 443, SYN, 0);
	flen = 14 + 19;
	EXPECT_DROP("runt IPv4 header");
}

Test(net_gate, drop_wrong_ip_version)
{
	tcp(ALLOWED, 443, SYN, 0);
	f[14] = 0x65;
	ip_csum();
	EXPECT_DROP("IP version is not 4");
}

Test(net_gate, drop_ihl_below_5)
{
	tcp(ALLOWED, 443, SYN, 0);
	f[14] = 0x44;
	EXPECT_DROP("IPv4 header length below 20");
}

Test(net_gate, drop_ip_options)
{
	uint8_t *t = ipv4(IPPROTO_TCP, ALLOWED, 24);
	/* move the TCP header after a 4-byte option (NOP NOP NOP EOL) */
	memset(t, 0, 24);
	t[0] = 1, t[1] = 1, t[2] = 1, t[3] = 0;
	f[14] = 0x46;
	ip_csum();
	EXPECT_DROP("IPv4 options");
}

Test(net_gate, drop_bad_header_checksum)
{
	tcp(ALLOWED, 443, SYN, 0);
	f[14 + 10] ^= 0x01;
	EXPECT_DROP("IPv4 header checksum");
	tcp(ALLOWED, 443, SYN, 0);
	f[14 + 8] = 63; /* TTL changed, checksum not */
	EXPECT_DROP("IPv4 header checksum");
}

Test(net_gate, drop_total_length_beyond_the_frame)
{
	tcp(ALLOWED, 443, SYN, 0);
	put16(f + 16, (uint16_t)(flen - 14 + 1));
	ip_csum();
	EXPECT_DROP("IPv4 total length beyond the frame");
	put16(f + 16, 0xffff);
	ip_csum();
	EXPECT_DROP("IPv4 total length beyond the frame");
}

Test(net_gate, drop_total_length_below_the_header)
{
	tcp(ALLOWED, 443, SYN, 0);
	put16(f + 16, 19);
	ip_csum();
	EXPECT_DROP("IPv4 total length below the header");
}

Test(net_gate, drop_fragment_more_fragments)
{
	tcp(ALLOWED, 443, SYN, 0);
	put16(f + 20, 0x2000);
	ip_csum();
	EXPECT_DROP("IPv4 fragment");
}

Test(net_gate, drop_fragment_offset)
{
	tcp(ALLOWED, 443, SYN, 0);
	put16(f + 20, 0x4001); /* DF and offset 8: still a fragment */
	ip_csum();
	EXPECT_DROP("IPv4 fragment");
	put16(f + 20, 0x1fff);
	ip_csum();
	EXPECT_DROP("IPv4 fragment");
}

Test(net_gate, drop_spoofed_source_ip)
{
	tcp(ALLOWED, 443, SYN, 0);
	put32(f + 26, GUEST_IP + 1);
	ip_csum();
	EXPECT_DROP("source IP is not the guest's");
	put32(f + 26, 0);
	ip_csum();
	EXPECT_DROP("source IP is not the guest's");
}

Test(net_gate, drop_other_ip_protocols)
{
	ipv4(47 /* GRE */, ALLOWED, 20);
	EXPECT_DROP("IP protocol other than TCP, UDP or ICMP");
	ipv4(132 /* SCTP */, ALLOWED, 20);
	EXPECT_DROP("IP protocol other than TCP, UDP or ICMP");
}

Test(net_gate, drop_runt_tcp_header)
{
	ipv4(IPPROTO_TCP, ALLOWED, 19);
	EXPECT_DROP("runt TCP header");
	/* the frame has the bytes, the IP total length does not: the IP length wins */
	tcp(ALLOWED, 443, SYN, 0);
	put16(f + 16, 20 + 19);
	ip_csum();
	EXPECT_DROP("runt TCP header");
}

Test(net_gate, drop_tcp_data_offset)
{
	uint8_t *t = tcp(ALLOWED, 443, SYN, 0);
	t[12] = 4 << 4;
	EXPECT_DROP("TCP data offset");
	t[12] = 6 << 4;
	EXPECT_DROP("TCP data offset");
	t[12] = 15 << 4;
	EXPECT_DROP("TCP data offset");
}

Test(net_gate, drop_tcp_port_zero)
{
	tcp(ALLOWED, 0, SYN, 0);
	EXPECT_DROP("TCP port 0");
}

/* --- no length is trusted: every prefix of every kind of frame, in a buffer of exactly that size --- */

static void every_prefix(void)
{
	size_t full = flen;
	for (size_t l = 0; l <= full; l++) {
		uint8_t *copy = malloc(l ? l : 1);
		memcpy(copy, f, l);
		enum gate_verdict v = gate_inspect(&cfg, &pol, copy, l, &r);
		cr_assert(v == GATE_DROP || l == full || l >= 14 + (size_t)get16(f + 16), "prefix %zu of %zu: %d (%s)", l,
			  full, v, r.reason);
		uint8_t o[GATE_RST_LEN];
		(void)gate_build_rst(copy, l, o, sizeof(o));
		free(copy);
	}
}

Test(net_gate, every_truncation_is_dropped_and_read_in_bounds)
{
	tcp(ALLOWED, 443, SYN, 12);
	every_prefix();
	udp(DNS_IP, 53, 30);
	every_prefix();
	uint8_t *i = ipv4(IPPROTO_ICMP, ALLOWED, 16);
	i[0] = 8;
	every_prefix();
}

Test(net_gate, random_frames_never_read_out_of_bounds)
{
	uint32_t s = 99;
	for (int iter = 0; iter < 20000; iter++) {
		tcp(ALLOWED, 443, SYN, 8);
		if (iter % 3 == 1)
			udp(DNS_IP, 53, 20);
		for (int k = 0; k < 3; k++) {
			s = s * 1103515245 + 12345;
			f[(s >> 8) % flen] = (uint8_t)(s >> 20);
		}
		if (iter % 2)
			ip_csum(); /* get past the checksum to the length checks behind it */
		s = s * 1103515245 + 12345;
		size_t l = (s >> 8) % (flen + 1);
		uint8_t *copy = malloc(l ? l : 1);
		memcpy(copy, f, l);
		gate_inspect(&cfg, &pol, copy, l, &r);
		if (r.verdict == GATE_DNS)
			cr_assert_leq(r.payload_off + r.payload_len, l);
		uint8_t o[GATE_RST_LEN];
		(void)gate_build_rst(copy, l, o, sizeof(o));
		free(copy);
	}
}
