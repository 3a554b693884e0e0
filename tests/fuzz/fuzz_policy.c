/* Fuzzes the egress policy (vmm/net/policy.c): --allow rule strings parsed one by one and as a set, each matching what it names, and checks on any address or name. */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/net/policy.h"

#define MAX_LINES (POLICY_MAX_RULES + 4)

static char *lines[MAX_LINES];
static struct policy one, set;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	policy_init(&one);
	policy_init(&set);
	/* the network stack's addresses, as the NIC registers them */
	policy_add_own(&set, 0x0a000202u, POLICY_OWN_STACK);
	policy_add_own(&set, 0x0a000203u, POLICY_OWN_STACK);
	policy_add_own(&set, 0x0a00020fu, POLICY_OWN_STACK);
	return 0;
}

static void check_decision(bool rc, const struct policy_decision *d)
{
	if (rc != d->allow || !d->why[0] || !memchr(d->why, '\0', sizeof(d->why)))
		abort();
}

static void must_allow_addr(uint32_t a, const struct policy_rule *r)
{
	struct policy_decision d;
	bool ok = policy_check_addr(&one, a, r->port_hi, r->proto, &d);
	check_decision(ok, &d);
	/* a rule opens a refused range only by naming it at least as narrowly; /32 always does */
	if (!ok && (r->prefix == 32 || !policy_refused_range(&one, a)))
		abort();
	bool icmp = policy_check_addr(&one, a, 0, IPPROTO_ICMP, &d);
	check_decision(icmp, &d);
	if (icmp != ok)
		abort(); /* ping follows the address, whatever the rule's ports */
	bool other = policy_check_addr(&one, a, r->port_hi, r->proto == IPPROTO_TCP ? IPPROTO_UDP : IPPROTO_TCP, &d);
	check_decision(other, &d);
	if (other)
		abort(); /* one rule, one protocol, and no open mode */
}

/* A rule that parses names what it says: its own address or name is allowed by it alone. */
static void check_rule(const char *s, const struct policy_rule *r)
{
	char norm[POLICY_NAME_MAX + 1], err[512];
	if (strcmp(r->text, s) || r->port_lo > r->port_hi || (r->proto != IPPROTO_TCP && r->proto != IPPROTO_UDP))
		abort();
	if (policy_replace(&one, &s, 1, false, err, sizeof(err)) || one.nrules != 1)
		abort();
	struct policy_decision d;
	switch (r->kind) {
	case POLICY_RULE_ADDR:
		if (r->prefix > 32 || r->mask != (r->prefix ? ~0u << (32 - r->prefix) : 0) || (r->addr & ~r->mask))
			abort();
		must_allow_addr(r->addr, r);
		must_allow_addr(r->addr | ~r->mask, r);
		if (policy_check_name(&one, "example.org", r->port_hi, &d))
			abort(); /* address rules never match names */
		break;
	case POLICY_RULE_DOMAIN:
	case POLICY_RULE_WILDCARD: {
		if (r->proto != IPPROTO_TCP || !policy_normalize_name(r->name, norm) || strcmp(norm, r->name))
			abort();
		char name[POLICY_NAME_MAX + 8], upper[POLICY_NAME_MAX + 8];
		bool wild = r->kind == POLICY_RULE_WILDCARD;
		size_t nl = strlen(r->name);
		/* the wildcard's own suffix is not below itself; a name below a domain is not the domain */
		if (policy_check_name(&one, r->name, r->port_hi, &d) == wild)
			abort();
		check_decision(d.allow, &d);
		if (nl + 2 <= POLICY_NAME_MAX) {
			memcpy(name, "a.", 2);
			memcpy(name + 2, r->name, nl + 1);
			if (policy_check_name(&one, name, r->port_lo, &d) != wild || policy_check_dns(&one, name, &d) != wild)
				abort();
		}
		const char *own = wild ? name : r->name;
		if (wild && nl + 2 > POLICY_NAME_MAX)
			break;
		/* case and one trailing dot do not matter */
		size_t ol = strlen(own);
		for (size_t i = 0; i <= ol; i++)
			upper[i] = own[i] >= 'a' && own[i] <= 'z' ? (char)(own[i] - 32) : own[i];
		upper[ol] = '.', upper[ol + 1] = '\0';
		if (!policy_check_name(&one, upper, r->port_hi, &d) || !policy_check_dns(&one, own, &d))
			abort();
		if (policy_check_addr(&one, 0x5db8d822u, r->port_hi, IPPROTO_TCP, &d))
			abort(); /* domain rules never match addresses */
		break;
	}
	default:
		abort();
	}
}

/*
 * Input: u8 flags (bit 0: open mode for the set), then rules, one a line.  Each line is parsed
 * alone and checked against its own target, then every line as one set, and each line's bytes
 * are also a name and (as four bytes) an address to check against the set.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool open = data[0] & 1;
	size_t n = 0;
	for (size_t p = 1; p <= size && n < MAX_LINES;) {
		const uint8_t *nl = memchr(data + p, '\n', size - p);
		size_t l = nl ? (size_t)(nl - (data + p)) : size - p;
		lines[n] = malloc(l + 1);
		if (!lines[n])
			abort();
		memcpy(lines[n], data + p, l);
		lines[n][l] = '\0'; /* a NUL inside ends the string early, as a C caller's would */
		n++;
		p += l + 1;
		if (!nl)
			break;
	}

	char err[512];
	bool all_ok = true;
	for (size_t i = 0; i < n; i++) {
		struct policy_rule r;
		err[0] = '\0';
		int rc = policy_parse_rule(lines[i], &r, err, sizeof(err));
		if (rc == 0)
			check_rule(lines[i], &r);
		else if (rc != -EINVAL || !err[0] || !memchr(err, '\0', sizeof(err)))
			abort();
		all_ok &= rc == 0;
	}

	/* The set: all or nothing. */
	struct policy_rule *before = set.rules;
	size_t nbefore = set.nrules;
	int rc = policy_replace(&set, (const char *const *)lines, n, open, err, sizeof(err));
	if (rc == 0) {
		if (!all_ok || n > POLICY_MAX_RULES || set.nrules != n || set.open != open)
			abort();
	} else if (set.rules != before || set.nrules != nbefore || (all_ok && n <= POLICY_MAX_RULES) || !err[0]) {
		abort();
	}

	for (size_t i = 0; i < n; i++) {
		struct policy_decision d;
		const uint8_t *b = (const uint8_t *)lines[i];
		uint32_t a = 0;
		for (size_t k = 0; k < 4 && b[k]; k++)
			a |= (uint32_t)b[k] << (24 - 8 * k);
		uint16_t port = (uint16_t)(a ^ (a >> 16));
		for (uint8_t proto = 0; proto < 20; proto++) {
			bool ok = policy_check_addr(&set, a, port, proto, &d);
			check_decision(ok, &d);
			if (ok && proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP)
				abort();
		}
		const char *why = policy_refused_range(&set, a);
		if (why && set.open && set.nrules == 0 && policy_check_addr(&set, a, port, IPPROTO_TCP, &d))
			abort(); /* open mode never opens a refused range */
		bool ok = policy_check_name(&set, lines[i], port, &d);
		check_decision(ok, &d);
		bool dns = policy_check_dns(&set, lines[i], &d);
		check_decision(dns, &d);
		if (ok && !dns)
			abort(); /* a name allowed on a port resolves */
		char norm[POLICY_NAME_MAX + 1], norm2[POLICY_NAME_MAX + 1];
		if (policy_normalize_name(lines[i], norm)) {
			if (strlen(norm) > POLICY_NAME_MAX || !policy_normalize_name(norm, norm2) || strcmp(norm, norm2))
				abort();
		} else if (ok) {
			abort(); /* only host names are allowed */
		}
	}
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	return 0;
}
