/* The gate: what a guest's Ethernet frame may do before the user-mode stack sees it, and the RST for a refused SYN. */
#ifndef PADCELL_NET_GATE_H
#define PADCELL_NET_GATE_H

#include <linux/if_ether.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/net/policy.h"

/* The guest's identity and the stack's DNS address; addresses in host byte order. */
struct gate_cfg {
	uint8_t guest_mac[ETH_ALEN];
	uint32_t guest_ip;
	uint32_t dns_ip;
	uint32_t mtu; /* the guest's IP MTU (68..65535); 0 means 1500 */
};

enum gate_verdict {
	GATE_PASS,       /* hand the frame to the stack */
	GATE_DROP,       /* discard it; reason says why */
	GATE_REJECT_TCP, /* a SYN the policy refuses: discard it and answer with gate_build_rst() */
	GATE_DNS,        /* a query to the stack's DNS address: padcell answers it (payload below) */
};

struct gate_result {
	enum gate_verdict verdict;
	const char *reason;              /* a static string: the drop rule, or what kind of frame passed */
	bool policy_checked;             /* decision below is valid */
	struct policy_decision decision; /* the policy's answer and its reason, for the log */
	/* IPv4 frames, once parsed that far (host byte order): */
	uint8_t proto;
	uint32_t src, dst;
	uint16_t sport, dport;
	size_t payload_off, payload_len; /* GATE_DNS: the UDP payload, within the frame */
};

/*
 * Inspects one frame the guest sent, starting at its Ethernet header (no virtio-net header),
 * `len` bytes, all of it guest-controlled; no length field inside is trusted.  The frame is
 * only read: pass the gate a copy the guest can no longer change, and hand that same copy to
 * the stack.  Returns r->verdict.
 */
enum gate_verdict gate_inspect(const struct gate_cfg *cfg, const struct policy *p, const uint8_t *frame, size_t len,
			       struct gate_result *r);

/* The length of the frame gate_build_rst() writes: Ethernet + IPv4 + TCP, no options. */
#define GATE_RST_LEN (ETH_HLEN + 20 + 20)

/*
 * Builds, into out, the TCP reset answering `seg` (the guest's frame gate_inspect() rejected):
 * addresses and ports swapped, RST|ACK with seq 0 and ack = SEG.SEQ + SEG.LEN for a segment
 * without ACK (RFC 793, "Reset Generation"), RST with seq = SEG.ACK otherwise; IPv4 and TCP
 * checksums filled in.  Returns GATE_RST_LEN, -EINVAL if seg is not a well-formed IPv4 TCP
 * frame or is itself a reset (never answer a reset), or -ENOSPC if outlen is too small.
 */
int gate_build_rst(const uint8_t *seg, size_t len, uint8_t *out, size_t outlen);

/*
 * Builds, into out, the reset that follows `fin` (the guest's FIN to the stack, as it was sent)
 * in the same direction: same addresses and ports, RST with seq = SEG.SEQ + SEG.LEN, so that it
 * lands exactly at the stack's rcv_nxt once the FIN is in.  A stack that closed first and now
 * sits in TIME_WAIT (RFC 793: a reset there closes the connection) frees it at once instead of
 * holding its buffers for 2 MSL.  Returns GATE_RST_LEN, -EINVAL if fin is not a well-formed IPv4
 * TCP segment with FIN (and without RST or SYN), or -ENOSPC if outlen is too small.
 */
int gate_build_fin_reset(const uint8_t *fin, size_t len, uint8_t *out, size_t outlen);

/*
 * Builds, into out, a UDP datagram answering `dgram` (a guest frame gate_inspect() parsed as
 * IPv4/UDP, e.g. a GATE_DNS query): Ethernet and IP addresses and the ports swapped, `payload`
 * as its data, IPv4 and UDP checksums filled in.  Returns the frame's length, -EINVAL if dgram
 * is not a well-formed IPv4 UDP frame, -ENOSPC if outlen (or 65535 for the IP packet) is too small.
 */
int gate_build_udp_reply(const uint8_t *dgram, size_t len, const uint8_t *payload, size_t plen, uint8_t *out,
			 size_t outlen);

#endif
