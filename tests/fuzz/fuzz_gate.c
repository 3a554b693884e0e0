/* Fuzzes the egress gate (vmm/net/gate.c): gate_inspect on any frame under a policy of a few rules, and the RST and UDP reply builders on what it lets through to them. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/net/gate.h"
#include "vmm/net/policy.h"

static const uint8_t guest_mac[ETH_ALEN] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
#define GUEST_IP 0x0a00020fu /* 10.0.2.15 */
#define DNS_IP   0x0a000203u /* 10.0.2.3 */

static struct policy pol;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const rules[] = { "93.184.216.34:443", "pypi.org:443", "10.1.0.0/16:80-90",
					     "1.1.1.1:53/udp", "*.example.com", "8.8.0.0/16" };
	char err[256];
	policy_init(&pol);
	if (policy_replace(&pol, rules, sizeof(rules) / sizeof(rules[0]), false, err, sizeof(err)))
		abort();
	policy_add_own(&pol, 0x0a000202u, POLICY_OWN_STACK);
	policy_add_own(&pol, DNS_IP, POLICY_OWN_STACK);
	policy_add_own(&pol, GUEST_IP, POLICY_OWN_STACK);
	return 0;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

/* The Internet checksum, written here rather than borrowed from the gate: a sum that verifies is 0xffff. */
static uint32_t sum16(uint32_t s, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s += i % 2 ? b[i] : (uint32_t)b[i] << 8;
	return s;
}
static uint16_t fold(uint32_t s)
{
	while (s > 0xffff)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* An L4 checksum over the pseudo-header of the IPv4 packet at ip (20-byte header) verifies. */
static bool l4_ok(const uint8_t *ip, size_t l4len)
{
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = ip[9];
	ph[10] = (uint8_t)(l4len >> 8);
	ph[11] = (uint8_t)l4len;
	return fold(sum16(sum16(0, ph, 12), ip + 20, l4len)) == 0xffff;
}

/* What every frame the builders write must be: Ethernet/IPv4, 20-byte header, addresses swapped. */
static void check_reply_ip(const uint8_t *seg, const uint8_t *out, size_t outlen, uint8_t proto)
{
	const uint8_t *ip = out + ETH_HLEN;
	if (memcmp(out, seg + 6, 6) || memcmp(out + 6, seg, 6) || get16(out + 12) != ETH_P_IP)
		abort();
	if (ip[0] != 0x45 || ip[9] != proto || get16(ip + 2) != outlen - ETH_HLEN || (get16(ip + 6) & 0x3fff))
		abort();
	if (fold(sum16(0, ip, 20)) != 0xffff)
		abort(); /* the IPv4 header checksum */
	if (get32(ip + 12) != get32(seg + ETH_HLEN + 16) || get32(ip + 16) != get32(seg + ETH_HLEN + 12))
		abort();
}

static void check_rst(const uint8_t *seg, size_t len)
{
	uint8_t out[GATE_RST_LEN + 8];
	const uint8_t *th = seg + ETH_HLEN + 20;
	bool seg_rst = th[13] & 0x04;
	int rc = gate_build_rst(seg, len, out, sizeof(out));
	if (seg_rst) {
		if (rc != -EINVAL)
			abort(); /* never answer a reset */
		return;
	}
	if (rc != GATE_RST_LEN)
		abort(); /* a frame the gate parsed as a SYN is well-formed enough to answer */
	if (gate_build_rst(seg, len, out, GATE_RST_LEN - 1) != -ENOSPC)
		abort();
	check_reply_ip(seg, out, GATE_RST_LEN, IPPROTO_TCP);
	const uint8_t *ip = out + ETH_HLEN, *ot = ip + 20;
	if (!l4_ok(ip, 20))
		abort(); /* the TCP checksum */
	if (get16(ot) != get16(th + 2) || get16(ot + 2) != get16(th) || ot[12] >> 4 != 5)
		abort();
	/* the gate rejects only SYNs without ACK: RST|ACK, seq 0, ack = SEG.SEQ + SEG.LEN */
	size_t tot = get16(seg + ETH_HLEN + 2), hlen = (size_t)(th[12] >> 4) * 4;
	uint32_t seglen = (uint32_t)(tot - 20 - hlen) + 1 + (th[13] & 1);
	if (ot[13] != 0x14 || get32(ot + 4) != 0 || get32(ot + 8) != get32(th + 4) + seglen)
		abort();
}

static void check_udp_reply(const uint8_t *dgram, size_t len, const struct gate_result *r)
{
	static uint8_t out[ETH_HLEN + 28 + 65536];
	const uint8_t *payload = dgram + r->payload_off;
	int rc = gate_build_udp_reply(dgram, len, payload, r->payload_len, out, sizeof(out));
	if (rc != (int)(ETH_HLEN + 28 + r->payload_len))
		abort();
	check_reply_ip(dgram, out, (size_t)rc, IPPROTO_UDP);
	const uint8_t *ip = out + ETH_HLEN, *u = ip + 20;
	if (get16(u) != r->dport || get16(u + 2) != r->sport || get16(u + 4) != 8 + r->payload_len)
		abort();
	if (!l4_ok(ip, 8 + r->payload_len) || memcmp(u + 8, payload, r->payload_len))
		abort();
}

/*
 * Input: one config byte (bit 0: open mode; bits 1-2: the MTU, 1500, 68, 576 or 65520), then
 * the frame, Ethernet header first.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t mtus[] = { 0, 68, 576, 65520 };
	if (size < 1)
		return 0;
	struct gate_cfg cfg = { .guest_ip = GUEST_IP, .dns_ip = DNS_IP, .mtu = mtus[(data[0] >> 1) & 3] };
	memcpy(cfg.guest_mac, guest_mac, ETH_ALEN);
	pol.open = data[0] & 1;
	size_t len = size - 1;
	/* A copy of exactly len bytes: ASan catches any read past the end. */
	uint8_t *f = malloc(len ? len : 1);
	if (!f)
		return 0;
	memcpy(f, data + 1, len);

	struct gate_result r;
	enum gate_verdict v = gate_inspect(&cfg, &pol, f, len, &r);
	if (v != r.verdict || !r.reason || v > GATE_DNS)
		abort();
	if (v != GATE_DROP && (len < ETH_HLEN || memcmp(f + 6, guest_mac, 6)))
		abort();
	if (r.policy_checked && r.decision.allow != (v == GATE_PASS))
		abort();
	if (v != GATE_DROP && get16(f + 12) == ETH_P_IP && r.src != GUEST_IP)
		abort(); /* nothing leaves with another source address */
	switch (v) {
	case GATE_REJECT_TCP:
		if (r.proto != IPPROTO_TCP || !r.policy_checked || !r.decision.why[0])
			abort();
		check_rst(f, len);
		break;
	case GATE_DNS:
		if (r.proto != IPPROTO_UDP || r.dst != DNS_IP || r.dport != 53 ||
		    r.payload_off + r.payload_len > len || r.payload_off != ETH_HLEN + 28)
			abort();
		check_udp_reply(f, len, &r);
		break;
	case GATE_PASS:
		if (r.policy_checked && r.proto == IPPROTO_UDP)
			check_udp_reply(f, len, &(struct gate_result){ .sport = r.sport, .dport = r.dport,
								      .payload_off = ETH_HLEN + 28,
								      .payload_len = get16(f + ETH_HLEN + 24) - 8u });
		break;
	default:
		break;
	}
	/* The builders on whatever the input is: no crash, no read past the frame. */
	uint8_t rst[GATE_RST_LEN];
	int rc = gate_build_rst(f, len, rst, sizeof(rst));
	if (rc != GATE_RST_LEN && rc != -EINVAL)
		abort();
	free(f);
	return 0;
}
