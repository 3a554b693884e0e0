/* Egress rules: parsing --allow values, and the address and name decisions with the always-refused ranges. */
#include "vmm/net/policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/err.h"

struct refused {
	uint32_t net;
	uint8_t prefix;
	const char *why;
};

/*
 * What a sandbox must never reach by default: the host and its networks, the cloud's metadata
 * service (169.254.169.254), and addresses that are not unicast destinations at all.  The
 * user-mode stack would happily connect to any of them (libslirp reaches the host's loopback
 * even with disable_host_loopback set), so this list is the only thing standing in the way.
 */
static const struct refused refused_ranges[] = {
	{ 0x00000000, 8, "0.0.0.0/8 (this network)" },
	{ 0x0a000000, 8, "10.0.0.0/8 (private, RFC 1918)" },
	{ 0x64400000, 10, "100.64.0.0/10 (shared address space, carrier-grade NAT)" },
	{ 0x7f000000, 8, "127.0.0.0/8 (loopback)" },
	{ 0xa9fe0000, 16, "169.254.0.0/16 (link-local, cloud metadata)" },
	{ 0xac100000, 12, "172.16.0.0/12 (private, RFC 1918)" },
	{ 0xc0a80000, 16, "192.168.0.0/16 (private, RFC 1918)" },
	{ 0xe0000000, 4, "224.0.0.0/4 (multicast)" },
	{ 0xf0000000, 4, "240.0.0.0/4 (reserved)" },
	{ 0xffffffff, 32, "255.255.255.255 (broadcast)" },
};

static uint32_t prefix_mask(unsigned prefix) { return prefix == 0 ? 0 : ~0u << (32 - prefix); }

static bool in_net(uint32_t addr, uint32_t net, unsigned prefix)
{
	return (addr & prefix_mask(prefix)) == net;
}

void policy_init(struct policy *p)
{
	memset(p, 0, sizeof(*p));
}

void policy_destroy(struct policy *p)
{
	free(p->rules);
	p->rules = NULL;
	p->nrules = 0;
}

int policy_view_fill(const struct policy *p, struct policy_view *v)
{
	v->open = p->open;
	v->nrules = 0;
	v->rules = NULL;
	if (!p->nrules)
		return 0;
	v->rules = malloc(p->nrules * sizeof(*v->rules));
	if (!v->rules)
		return -ENOMEM;
	for (size_t i = 0; i < p->nrules; i++)
		snprintf(v->rules[i], sizeof(v->rules[i]), "%s", p->rules[i].text);
	v->nrules = p->nrules;
	return 0;
}

void policy_view_free(struct policy_view *v)
{
	free(v->rules);
	v->rules = NULL;
	v->nrules = 0;
}

int policy_add_own(struct policy *p, uint32_t addr, enum policy_own_kind kind)
{
	for (size_t i = 0; i < p->nown; i++)
		if (p->own[i] == addr)
			return 0;
	if (p->nown == POLICY_MAX_OWN)
		return -ENOSPC;
	p->own[p->nown] = addr;
	p->own_kind[p->nown++] = kind;
	return 0;
}

static const char *own_why(enum policy_own_kind k)
{
	return k == POLICY_OWN_HOST ? "the host's own address" : "the network stack's own address";
}

const char *policy_refused_range(const struct policy *p, uint32_t addr)
{
	/* own addresses first: they are the most specific, and the more useful reason */
	for (size_t i = 0; i < p->nown; i++)
		if (p->own[i] == addr)
			return own_why(p->own_kind[i]);
	for (size_t i = 0; i < sizeof(refused_ranges) / sizeof(refused_ranges[0]); i++)
		if (in_net(addr, refused_ranges[i].net, refused_ranges[i].prefix))
			return refused_ranges[i].why;
	return NULL;
}

/*
 * Whether rule r (already known to contain addr) names addr's refused ranges exactly: it
 * must lie inside every refused range that holds addr.  All of them are CIDRs containing
 * addr, as is r, so "inside" is just "at least as long a prefix".
 */
static bool rule_opens_refused(const struct policy *p, const struct policy_rule *r, uint32_t addr)
{
	for (size_t i = 0; i < p->nown; i++)
		if (p->own[i] == addr && r->prefix < 32)
			return false;
	for (size_t i = 0; i < sizeof(refused_ranges) / sizeof(refused_ranges[0]); i++)
		if (in_net(addr, refused_ranges[i].net, refused_ranges[i].prefix) &&
		    r->prefix < refused_ranges[i].prefix)
			return false;
	return true;
}

static bool decide(struct policy_decision *d, bool allow, const char *fmt, const char *arg)
{
	d->allow = allow;
	snprintf(d->why, sizeof(d->why), fmt, arg);
	return allow;
}

bool policy_check_addr(const struct policy *p, uint32_t addr, uint16_t port, uint8_t proto,
		       struct policy_decision *d)
{
	const char *refused = policy_refused_range(p, addr);
	const struct policy_rule *broader = NULL;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP)
		return decide(d, false, "%s", "protocol not allowed");
	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];
		if (r->kind != POLICY_RULE_ADDR || !in_net(addr, r->addr, r->prefix))
			continue;
		if (proto != IPPROTO_ICMP && (r->proto != proto || port < r->port_lo || port > r->port_hi))
			continue;
		if (refused && !rule_opens_refused(p, r, addr)) {
			broader = broader ? broader : r;
			continue;
		}
		return decide(d, true, "rule '%s'", r->text);
	}
	if (refused) {
		if (broader) {
			d->allow = false;
			snprintf(d->why, sizeof(d->why), "refused: %s (rule '%s' is broader; name it exactly)", refused,
				 broader->text);
			return false;
		}
		return decide(d, false, "refused: %s", refused);
	}
	if (p->open)
		return decide(d, true, "%s", "open mode");
	return decide(d, false, "%s", "no rule allows it");
}

/*
 * Host names as rules and lookups use them: letters, digits, '-' and '_', labels of 1..63
 * that neither start nor end with '-' (RFC 1123's rule; '_' is allowed for SRV-style names).
 */
static bool valid_name(const char *s)
{
	size_t label = 0, total = strlen(s);
	if (total == 0 || total > POLICY_NAME_MAX)
		return false;
	for (const char *c = s;; c++) {
		if (*c == '.' || *c == '\0') {
			if (label == 0 || label > 63 || c[-1] == '-' || c[-(ptrdiff_t)label] == '-')
				return false;
			if (*c == '\0')
				return true;
			label = 0;
		} else if (isalnum((unsigned char)*c) || *c == '-' || *c == '_') {
			label++;
		} else {
			return false;
		}
	}
}

bool policy_normalize_name(const char *name, char out[POLICY_NAME_MAX + 1])
{
	size_t n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > POLICY_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)name[i]);
	out[n] = '\0';
	return valid_name(out);
}

static bool name_matches(const struct policy_rule *r, const char *name)
{
	if (r->kind == POLICY_RULE_DOMAIN)
		return strcmp(r->name, name) == 0;
	if (r->kind != POLICY_RULE_WILDCARD)
		return false;
	/* *.example.com: a.example.com and a.b.example.com, never example.com or badexample.com */
	size_t n = strlen(name), s = strlen(r->name);
	return n > s + 1 && name[n - s - 1] == '.' && strcmp(name + n - s, r->name) == 0;
}

bool policy_check_name(const struct policy *p, const char *name, uint16_t port, struct policy_decision *d)
{
	char norm[POLICY_NAME_MAX + 1];
	if (!policy_normalize_name(name, norm))
		return decide(d, false, "%s", "not a valid host name");
	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];
		if (name_matches(r, norm) && port >= r->port_lo && port <= r->port_hi)
			return decide(d, true, "rule '%s'", r->text);
	}
	if (p->open)
		return decide(d, true, "%s", "open mode");
	return decide(d, false, "%s", "no rule allows it");
}

bool policy_check_dns(const struct policy *p, const char *name, struct policy_decision *d)
{
	char norm[POLICY_NAME_MAX + 1];
	if (!policy_normalize_name(name, norm))
		return decide(d, false, "%s", "not a valid host name");
	for (size_t i = 0; i < p->nrules; i++)
		if (name_matches(&p->rules[i], norm))
			return decide(d, true, "rule '%s'", p->rules[i].text);
	if (p->open)
		return decide(d, true, "%s", "open mode");
	return decide(d, false, "%s", "no rule allows it");
}

/* Digits only, 1..65535. */
static int parse_port(const char *s, size_t len, uint16_t *out)
{
	unsigned long v = 0;
	if (len == 0 || len > 5)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

static int parse_ports(const char *s, struct policy_rule *r)
{
	const char *dash = strchr(s, '-');
	if (!dash) {
		if (parse_port(s, strlen(s), &r->port_lo) < 0)
			return -EINVAL;
		r->port_hi = r->port_lo;
		return 0;
	}
	if (parse_port(s, (size_t)(dash - s), &r->port_lo) < 0 || parse_port(dash + 1, strlen(dash + 1), &r->port_hi) < 0)
		return -EINVAL;
	return r->port_lo <= r->port_hi ? 0 : -ERANGE;
}

static bool all_digits_and_dots(const char *s)
{
	for (; *s; s++)
		if (!isdigit((unsigned char)*s) && *s != '.')
			return false;
	return true;
}

static int parse_addr(const char *rule, char *t, struct policy_rule *r, char *err, size_t errlen)
{
	struct in_addr a;
	char *slash = strchr(t, '/');
	unsigned long prefix = 32;

	if (slash) {
		char *end;
		*slash = '\0';
		if (!isdigit((unsigned char)slash[1]) || (prefix = strtoul(slash + 1, &end, 10), *end) || prefix > 32)
			return errorf(err, errlen, -EINVAL, "allow rule '%s': '/%s' is not a prefix length 0-32", rule,
				      slash + 1);
	}
	if (inet_pton(AF_INET, t, &a) != 1)
		return errorf(err, errlen, -EINVAL, "allow rule '%s': '%s' is not an IPv4 address", rule, t);
	r->kind = POLICY_RULE_ADDR;
	r->prefix = (uint8_t)prefix;
	r->mask = prefix_mask(r->prefix);
	r->addr = ntohl(a.s_addr);
	if (r->addr & ~r->mask) {
		struct in_addr net = { htonl(r->addr & r->mask) };
		char buf[INET_ADDRSTRLEN];
		return errorf(err, errlen, -EINVAL, "allow rule '%s': host bits set after /%lu (did you mean %s/%lu?)",
			      rule, prefix, inet_ntop(AF_INET, &net, buf, sizeof(buf)), prefix);
	}
	return 0;
}

int policy_parse_rule(const char *s, struct policy_rule *r, char *err, size_t errlen)
{
	char t[POLICY_TEXT_MAX + 1];
	size_t len = strlen(s);

	memset(r, 0, sizeof(*r));
	if (len == 0)
		return errorf(err, errlen, -EINVAL, "allow rule is empty");
	if (len > POLICY_TEXT_MAX)
		return errorf(err, errlen, -EINVAL, "allow rule '%.40s...' is longer than %d characters", s,
			      POLICY_TEXT_MAX);
	memcpy(r->text, s, len + 1);
	memcpy(t, s, len + 1);
	r->proto = IPPROTO_TCP;
	r->port_lo = 0;
	r->port_hi = 65535;

	/* /PROTO: a last '/' followed by letters (a CIDR's /N is digits) */
	char *slash = strrchr(t, '/');
	if (slash && isalpha((unsigned char)slash[1])) {
		if (strcasecmp(slash + 1, "tcp") == 0)
			r->proto = IPPROTO_TCP;
		else if (strcasecmp(slash + 1, "udp") == 0)
			r->proto = IPPROTO_UDP;
		else
			return errorf(err, errlen, -EINVAL, "allow rule '%s': unknown protocol '%s' (tcp or udp)", s,
				      slash + 1);
		*slash = '\0';
	}

	char *colon = strrchr(t, ':');
	if (colon) {
		*colon = '\0';
		if (strchr(t, ':'))
			return errorf(err, errlen, -EINVAL, "allow rule '%s': IPv6 is not supported", s);
		int rc = parse_ports(colon + 1, r);
		if (rc == -ERANGE)
			return errorf(err, errlen, -EINVAL, "allow rule '%s': port range '%s' runs backwards", s,
				      colon + 1);
		if (rc < 0)
			return errorf(err, errlen, -EINVAL, "allow rule '%s': '%s' is not a port (N or N-M, 1-65535)",
				      s, colon + 1);
	}
	if (t[0] == '\0')
		return errorf(err, errlen, -EINVAL, "allow rule '%s': no address or domain", s);

	if (strchr(t, '/') || all_digits_and_dots(t))
		return parse_addr(s, t, r, err, errlen);

	const char *name = t;
	r->kind = POLICY_RULE_DOMAIN;
	if (strncmp(t, "*.", 2) == 0) {
		r->kind = POLICY_RULE_WILDCARD;
		name = t + 2;
	}
	if (strchr(name, '*'))
		return errorf(err, errlen, -EINVAL, "allow rule '%s': a wildcard is only '*.' at the start of a domain", s);
	if (!policy_normalize_name(name, r->name))
		return errorf(err, errlen, -EINVAL,
			      "allow rule '%s': '%s' is not an IPv4 address, CIDR or domain name "
			      "(letters, digits, '-', '_'; labels of 1-63)", s, name);
	if (r->proto != IPPROTO_TCP)
		return errorf(err, errlen, -EINVAL,
			      "allow rule '%s': domain rules are TCP only (matched by TLS SNI or HTTP Host)", s);
	return 0;
}

int policy_replace(struct policy *p, const char *const *rules, size_t n, bool open, char *err, size_t errlen)
{
	struct policy_rule *nr = NULL;

	if (n > POLICY_MAX_RULES)
		return errorf(err, errlen, -E2BIG, "%zu allow rules: at most %d", n, POLICY_MAX_RULES);
	if (n > 0 && !(nr = calloc(n, sizeof(*nr))))
		return errorf(err, errlen, -ENOMEM, "allow rules: out of memory");
	for (size_t i = 0; i < n; i++) {
		int rc = policy_parse_rule(rules[i], &nr[i], err, errlen);
		if (rc < 0) {
			free(nr);
			return rc;
		}
	}
	free(p->rules);
	p->rules = nr;
	p->nrules = n;
	p->open = open;
	return 0;
}
