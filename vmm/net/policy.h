/* The egress policy: --allow rules parsed as users type them, matched against IPv4 destinations and domain names. */
#ifndef PADCELL_NET_POLICY_H
#define PADCELL_NET_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Rule syntax (one --allow value each):
 *   TARGET[:PORTS][/PROTO]
 *   TARGET  an IPv4 address (1.2.3.4), a CIDR (10.1.0.0/16, host bits zero), a domain
 *           (pypi.org, case-insensitive, a trailing dot tolerated) or a wildcard domain
 *           (*.pythonhosted.org: every name below it, not the name itself)
 *   PORTS   N or N-M (1..65535); none means every port
 *   PROTO   tcp (the default) or udp; domain rules are TCP only, since a domain is matched
 *           by the TLS SNI or HTTP Host of the connection, which a UDP datagram does not have
 * Open mode ("internet yes") allows TCP and UDP to any address outside the refused ranges
 * below, and every domain name.
 *
 * Refused ranges: 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.168/16, 224/4,
 * 240/4, 255.255.255.255, and the addresses registered with policy_add_own().  Neither open
 * mode nor a broader rule opens them: only an address rule whose CIDR lies inside every
 * refused range containing the destination does (so 10.1.2.3 or 10.0.0.0/8 open that much
 * of 10/8; 0.0.0.0/0 opens nothing refused; and 10.0.0.0/8 does not open a host address
 * registered inside it).
 *
 * Addresses in this API are IPv4 in host byte order.
 */

#define POLICY_MAX_RULES 1024
#define POLICY_MAX_OWN 32
#define POLICY_NAME_MAX 253 /* a domain name's text, without the trailing dot */
#define POLICY_TEXT_MAX 300 /* a rule as typed, kept for logging */

enum policy_rule_kind { POLICY_RULE_ADDR, POLICY_RULE_DOMAIN, POLICY_RULE_WILDCARD };

struct policy_rule {
	enum policy_rule_kind kind;
	uint32_t addr, mask;            /* ADDR: the network and its mask */
	uint8_t prefix;                 /* ADDR: mask length */
	char name[POLICY_NAME_MAX + 1]; /* DOMAIN: the name; WILDCARD: the suffix after "*."; lower case */
	uint16_t port_lo, port_hi;      /* inclusive; 0-65535 when the rule names no port */
	uint8_t proto;                  /* IPPROTO_TCP or IPPROTO_UDP */
	char text[POLICY_TEXT_MAX + 1]; /* the rule as the user wrote it */
};

/* Why an address is "our own": the host's addresses, or the user-mode stack's virtual ones. */
enum policy_own_kind { POLICY_OWN_HOST, POLICY_OWN_STACK };

/*
 * A rule set and the own addresses.  Not thread-safe: the caller serializes readers and
 * policy_replace() (the network device's lock).  policy_replace() never leaves a half-built
 * set behind, so a reader under that lock sees the old set or the new one.
 */
struct policy {
	struct policy_rule *rules;
	size_t nrules;
	bool open;
	uint32_t own[POLICY_MAX_OWN];
	enum policy_own_kind own_kind[POLICY_MAX_OWN];
	size_t nown;
};

/* A decision and its reason for the log: "rule '…'", "refused range …", "no rule allows it". */
struct policy_decision {
	bool allow;
	char why[POLICY_TEXT_MAX + 64];
};

/*
 * Decisions counted per verdict since the NIC was made (the --net-log verdicts): allowed,
 * rejected (a refused TCP connection, reset) and dropped (any other frame the gate refused)
 * for frames; resolved, nxdomain and servfail for the guest's DNS queries.
 */
struct policy_counts {
	uint64_t allowed, rejected, dropped, resolved, nxdomain, servfail; /* per --net-log verdict */
	uint64_t sni_accepted, sni_refused; /* name-checked connections: the SNI/Host check's decisions */
	uint64_t rx_throttled, tx_throttled; /* times a rate limiter held a frame back (a wait) */
};

/* What GET /network/policy reports: the rules in force as typed, open mode, the counts. */
struct policy_view {
	bool open;
	size_t nrules;
	char (*rules)[POLICY_TEXT_MAX + 1]; /* nrules of them, malloc'd: policy_view_free() */
	struct policy_counts counts;
	uint64_t changes; /* rule sets put in place through the API since the NIC was made */
};

/* Fills v->open, nrules and rules from p (counts and changes are the caller's).  0 or -ENOMEM. */
int policy_view_fill(const struct policy *p, struct policy_view *v);
void policy_view_free(struct policy_view *v);

/* An empty policy: everything denied.  Cannot fail. */
void policy_init(struct policy *p);
void policy_destroy(struct policy *p);

/* Parses one rule.  Returns 0, or -EINVAL with one line in err naming the rule and the problem. */
int policy_parse_rule(const char *s, struct policy_rule *r, char *err, size_t errlen);

/*
 * Parses a whole new rule set (n rules, and open mode) and, only if every rule parses, puts
 * it in place of the old one.  On error the old set stays and err names the first bad rule.
 * Returns 0, -EINVAL, -E2BIG (more than POLICY_MAX_RULES) or -ENOMEM.  The own addresses are
 * the VM's, not the rule set's: they survive a replace.
 */
int policy_replace(struct policy *p, const char *const *rules, size_t n, bool open, char *err, size_t errlen);

/* Registers an address that is always refused unless a rule names it exactly.  -ENOSPC when full. */
int policy_add_own(struct policy *p, uint32_t addr, enum policy_own_kind kind);

/*
 * Decides a connection or datagram to addr:port over proto (IPPROTO_TCP or IPPROTO_UDP).
 * IPPROTO_ICMP asks "may the guest ping addr": any address rule covering addr, whatever its
 * ports and protocol, or open mode.  Domain rules never match here.  Returns d->allow.
 */
bool policy_check_addr(const struct policy *p, uint32_t addr, uint16_t port, uint8_t proto,
		       struct policy_decision *d);

/* Decides a TCP connection to a name (from TLS SNI or HTTP Host) and port. */
bool policy_check_name(const struct policy *p, const char *name, uint16_t port, struct policy_decision *d);

/* Decides whether padcell resolves a name for the guest: some rule allows it on some port. */
bool policy_check_dns(const struct policy *p, const char *name, struct policy_decision *d);

/*
 * The one definition of a host name padcell matches: letters, digits, '-' and '_', labels of
 * 1..63 not starting or ending with '-', at most 253 characters.  Writes name lower-cased and
 * without one trailing dot into out; false (out undefined) if it is not such a name.
 */
bool policy_normalize_name(const char *name, char out[POLICY_NAME_MAX + 1]);

/* If addr lies in a refused range (fixed or own), returns that range's description, else NULL. */
const char *policy_refused_range(const struct policy *p, uint32_t addr);

#endif
