/* vmm/net/policy: rule parsing, CIDR and port edges, domains and wildcards, the refused ranges, atomic replace. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "vmm/net/policy.h"

static uint32_t ip(const char *s)
{
	struct in_addr a;
	cr_assert_eq(inet_pton(AF_INET, s, &a), 1, "bad test address %s", s);
	return ntohl(a.s_addr);
}

static struct policy pol;
static struct policy_decision d;
static char err[512];

static void setup(void) { policy_init(&pol); }
static void teardown(void) { policy_destroy(&pol); }
TestSuite(net_policy, .init = setup, .fini = teardown);

/* Replaces the policy with rules (NULL-terminated) and asserts it parsed. */
#define SET(open, ...)                                                                                         \
	do {                                                                                                   \
		const char *const r_[] = { __VA_ARGS__ };                                                      \
		cr_assert_eq(policy_replace(&pol, r_, sizeof(r_) / sizeof(r_[0]), open, err, sizeof(err)), 0, \
			     "%s", err);                                                                       \
	} while (0)

static bool tcp(const char *addr, uint16_t port) { return policy_check_addr(&pol, ip(addr), port, IPPROTO_TCP, &d); }
static bool udp(const char *addr, uint16_t port) { return policy_check_addr(&pol, ip(addr), port, IPPROTO_UDP, &d); }

Test(net_policy, empty_policy_denies_everything)
{
	cr_assert_not(tcp("1.1.1.1", 443));
	cr_assert_str_eq(d.why, "no rule allows it");
	cr_assert_not(policy_check_name(&pol, "example.com", 443, &d));
	cr_assert_not(policy_check_dns(&pol, "example.com", &d));
}

Test(net_policy, exact_ip_all_ports_tcp_only)
{
	SET(false, "93.184.216.34");
	cr_assert(tcp("93.184.216.34", 1));
	cr_assert(tcp("93.184.216.34", 65535));
	cr_assert(strstr(d.why, "rule '93.184.216.34'"), "%s", d.why);
	cr_assert_not(tcp("93.184.216.35", 80));
	cr_assert_not(tcp("93.184.216.33", 80));
	cr_assert_not(udp("93.184.216.34", 53), "TCP is the default protocol");
}

Test(net_policy, cidr_edges)
{
	SET(false, "203.0.113.64/26:443");
	cr_assert(tcp("203.0.113.64", 443));
	cr_assert(tcp("203.0.113.127", 443));
	cr_assert_not(tcp("203.0.113.63", 443));
	cr_assert_not(tcp("203.0.113.128", 443));
	SET(false, "0.0.0.0/0:22");
	cr_assert(tcp("8.8.8.8", 22));
	cr_assert(tcp("223.255.255.255", 22));
	cr_assert_not(tcp("8.8.8.8", 23));
	SET(false, "198.51.100.7/32");
	cr_assert(tcp("198.51.100.7", 9));
	cr_assert_not(tcp("198.51.100.6", 9));
}

Test(net_policy, port_ranges_are_inclusive)
{
	SET(false, "1.2.3.4:8000-8080", "1.2.3.4:65535", "5.6.7.8:1-1");
	cr_assert_not(tcp("1.2.3.4", 7999));
	cr_assert(tcp("1.2.3.4", 8000));
	cr_assert(tcp("1.2.3.4", 8080));
	cr_assert_not(tcp("1.2.3.4", 8081));
	cr_assert(tcp("1.2.3.4", 65535));
	cr_assert(tcp("5.6.7.8", 1));
	cr_assert_not(tcp("5.6.7.8", 2));
}

Test(net_policy, udp_rules)
{
	SET(false, "9.9.9.9:53/udp", "1.1.1.1/TCP", "8.8.0.0/16:123/udp");
	cr_assert(udp("9.9.9.9", 53));
	cr_assert_not(tcp("9.9.9.9", 53), "a UDP rule does not allow TCP");
	cr_assert_not(udp("9.9.9.9", 54));
	cr_assert(tcp("1.1.1.1", 80));
	cr_assert_not(udp("1.1.1.1", 80));
	cr_assert(udp("8.8.4.4", 123));
}

Test(net_policy, icmp_follows_any_address_rule)
{
	SET(false, "9.9.9.9:53/udp");
	cr_assert(policy_check_addr(&pol, ip("9.9.9.9"), 0, IPPROTO_ICMP, &d));
	cr_assert_not(policy_check_addr(&pol, ip("9.9.9.8"), 0, IPPROTO_ICMP, &d));
	cr_assert_not(policy_check_addr(&pol, ip("9.9.9.9"), 0, 47 /* GRE */, &d));
}

Test(net_policy, domains_case_insensitive_trailing_dot)
{
	SET(false, "PyPI.org:443", "files.example.com.");
	cr_assert(policy_check_name(&pol, "pypi.org", 443, &d));
	cr_assert(strstr(d.why, "PyPI.org:443"), "the reason quotes the rule as written: %s", d.why);
	cr_assert(policy_check_name(&pol, "PYPI.ORG.", 443, &d));
	cr_assert_not(policy_check_name(&pol, "pypi.org", 80, &d));
	cr_assert_not(policy_check_name(&pol, "www.pypi.org", 443, &d), "a plain domain is not a wildcard");
	cr_assert_not(policy_check_name(&pol, "pypi.org.evil.com", 443, &d));
	cr_assert(policy_check_name(&pol, "Files.Example.Com", 22, &d));
	cr_assert(policy_check_dns(&pol, "pypi.org", &d));
	cr_assert_not(policy_check_dns(&pol, "pypi.com", &d));
	cr_assert_not(policy_check_name(&pol, "pypi..org", 443, &d));
	cr_assert_not(policy_check_name(&pol, "", 443, &d));
	cr_assert_not(policy_check_name(&pol, ".", 443, &d));
	cr_assert_not(tcp("151.101.0.223", 443), "domain rules never match addresses");
}

Test(net_policy, wildcards)
{
	SET(false, "*.pythonhosted.org:443");
	cr_assert(policy_check_name(&pol, "files.pythonhosted.org", 443, &d));
	cr_assert(policy_check_name(&pol, "a.b.PYTHONHOSTED.org.", 443, &d));
	cr_assert_not(policy_check_name(&pol, "pythonhosted.org", 443, &d), "not the name itself");
	cr_assert_not(policy_check_name(&pol, "evilpythonhosted.org", 443, &d));
	cr_assert_not(policy_check_name(&pol, "files.pythonhosted.org.evil", 443, &d));
	cr_assert_not(policy_check_name(&pol, "files.pythonhosted.org", 80, &d));
	cr_assert(policy_check_dns(&pol, "x.pythonhosted.org", &d));
	cr_assert_not(policy_check_dns(&pol, "pythonhosted.org", &d));
}

Test(net_policy, refused_ranges_stay_refused_in_open_mode)
{
	static const char *const refused[] = {
		"127.0.0.1",   "127.255.255.255", "0.0.0.0",	     "0.1.2.3",	       "10.0.0.1",
		"10.255.255.255", "172.16.0.1",	  "172.31.255.255",  "192.168.1.1",    "100.64.0.1",
		"100.127.255.254", "169.254.169.254", "169.254.0.1", "224.0.0.251",    "239.255.255.250",
		"240.0.0.1",   "255.255.255.255",
	};
	SET(true, "0.0.0.0/0");
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		cr_assert_not(tcp(refused[i], 80), "%s allowed in open mode", refused[i]);
		cr_assert(strncmp(d.why, "refused: ", 9) == 0, "%s: %s", refused[i], d.why);
		cr_assert_not(udp(refused[i], 53), "%s allowed for UDP in open mode", refused[i]);
	}
	cr_assert(tcp("8.8.8.8", 80));
	cr_assert(udp("8.8.8.8", 53), "open mode is TCP and UDP");
	cr_assert(tcp("172.15.255.255", 80), "just below 172.16/12");
	cr_assert(tcp("172.32.0.0", 80), "just above 172.16/12");
	cr_assert(tcp("100.63.255.255", 80));
	cr_assert(tcp("100.128.0.0", 80));
	cr_assert(tcp("223.255.255.255", 80), "just below multicast");
	cr_assert(tcp("11.0.0.0", 80));
	cr_assert(policy_check_name(&pol, "anything.example", 443, &d));
	tcp("169.254.169.254", 80);
	cr_assert(strstr(d.why, "metadata"), "%s", d.why);
}

Test(net_policy, exact_naming_opens_a_refused_range)
{
	SET(false, "10.1.2.3:5432", "192.168.0.0/16:80", "172.0.0.0/8");
	cr_assert(tcp("10.1.2.3", 5432));
	cr_assert_not(tcp("10.1.2.4", 5432));
	cr_assert(tcp("192.168.77.1", 80), "the rule is the range itself");
	cr_assert_not(tcp("172.16.0.1", 80), "172.0.0.0/8 is broader than 172.16/12");
	cr_assert(strstr(d.why, "broader"), "%s", d.why);
	cr_assert(tcp("172.15.0.1", 80), "but it opens the public part it covers");
}

Test(net_policy, a_broad_rule_does_not_open_anything_refused)
{
	SET(false, "0.0.0.0/0", "8.0.0.0/5");
	cr_assert_not(tcp("127.0.0.1", 80));
	cr_assert_not(tcp("10.0.0.1", 80), "8.0.0.0/5 covers 10/8 but does not name it");
	cr_assert(tcp("9.0.0.1", 80));
}

Test(net_policy, own_addresses)
{
	cr_assert_eq(policy_add_own(&pol, ip("203.0.113.5"), POLICY_OWN_HOST), 0);
	cr_assert_eq(policy_add_own(&pol, ip("10.0.2.2"), POLICY_OWN_STACK), 0);
	cr_assert_eq(policy_add_own(&pol, ip("10.0.2.2"), POLICY_OWN_STACK), 0, "twice is fine");
	SET(true, "203.0.113.0/24", "10.0.0.0/8");
	cr_assert_not(tcp("203.0.113.5", 22), "the host's public address, open mode and a /24 notwithstanding");
	cr_assert(strstr(d.why, "host's own"), "%s", d.why);
	cr_assert(tcp("203.0.113.6", 22));
	cr_assert_not(tcp("10.0.2.2", 80), "10/8 named, but not the stack's own address inside it");
	cr_assert(strstr(d.why, "stack's own"), "%s", d.why);
	cr_assert(tcp("10.0.2.9", 80));
	SET(false, "203.0.113.5:22");
	cr_assert(tcp("203.0.113.5", 22), "named exactly");
	cr_assert_not(tcp("203.0.113.5", 23));
	SET(false, "0.0.0.0/0");
	cr_assert_not(tcp("203.0.113.5", 22), "the own addresses survive a replace");
	for (int i = 2; i < POLICY_MAX_OWN; i++)
		cr_assert_eq(policy_add_own(&pol, ip("198.18.0.0") + (uint32_t)i, POLICY_OWN_HOST), 0);
	cr_assert_eq(policy_add_own(&pol, ip("198.19.0.0"), POLICY_OWN_HOST), -ENOSPC);
}

Test(net_policy, parse_rule_fields)
{
	struct policy_rule r;
	cr_assert_eq(policy_parse_rule("10.0.0.0/8:1000-2000/udp", &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.kind, POLICY_RULE_ADDR);
	cr_assert_eq(r.addr, 0x0a000000);
	cr_assert_eq(r.prefix, 8);
	cr_assert_eq(r.port_lo, 1000);
	cr_assert_eq(r.port_hi, 2000);
	cr_assert_eq(r.proto, IPPROTO_UDP);
	cr_assert_eq(policy_parse_rule("*.Example.COM.:443", &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.kind, POLICY_RULE_WILDCARD);
	cr_assert_str_eq(r.name, "example.com");
	cr_assert_eq(r.proto, IPPROTO_TCP);
	cr_assert_eq(policy_parse_rule("localhost", &r, err, sizeof(err)), 0, "one label is a name");
	cr_assert_eq(r.port_lo, 0);
	cr_assert_eq(r.port_hi, 65535);
}

Test(net_policy, parse_errors_are_one_clear_line)
{
	static const struct {
		const char *rule, *says;
	} bad[] = {
		{ "", "empty" },
		{ "1.2.3", "not an IPv4 address" },
		{ "256.1.1.1", "not an IPv4 address" },
		{ "1.2.3.4/33", "prefix length" },
		{ "1.2.3.4/", "prefix length" },
		{ "1.2.3.4/24", "did you mean 1.2.3.0/24" },
		{ "1.2.3.4:0", "not a port" },
		{ "1.2.3.4:65536", "not a port" },
		{ "1.2.3.4:80-", "not a port" },
		{ "1.2.3.4:-80", "not a port" },
		{ "1.2.3.4:http", "not a port" },
		{ "1.2.3.4:", "not a port" },
		{ "1.2.3.4:90-80", "backwards" },
		{ "1.2.3.4/sctp", "unknown protocol" },
		{ "::1", "IPv6" },
		{ "[2001:db8::1]:443", "IPv6" },
		{ ":443", "no address or domain" },
		{ "example.com:443/udp", "TCP only" },
		{ "*.", "not an IPv4 address, CIDR or domain" },
		{ "*", "wildcard" },
		{ "a.*.example.com", "wildcard" },
		{ "**.example.com", "wildcard" },
		{ "exa mple.com", "domain" },
		{ "example..com", "domain" },
		{ "-", "domain" },
		{ "example.com/8", "not an IPv4 address" },
	};
	struct policy_rule r;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(policy_parse_rule(bad[i].rule, &r, err, sizeof(err)), -EINVAL, "'%s' accepted",
			     bad[i].rule);
		cr_assert(strstr(err, bad[i].says), "'%s': message '%s' lacks '%s'", bad[i].rule, err, bad[i].says);
		cr_assert_null(strchr(err, '\n'), "one line");
	}
	char longlabel[80];
	memset(longlabel, 'a', 64);
	strcpy(longlabel + 64, ".com");
	cr_assert_eq(policy_parse_rule(longlabel, &r, err, sizeof(err)), -EINVAL, "a 64-character label");
	cr_assert_eq(policy_parse_rule(longlabel + 1, &r, err, sizeof(err)), 0, "63 is the limit: %s", err);
	char huge[400];
	memset(huge, 'a', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	cr_assert_eq(policy_parse_rule(huge, &r, err, sizeof(err)), -EINVAL);
}

Test(net_policy, replace_is_all_or_nothing)
{
	SET(false, "1.1.1.1:443", "pypi.org:443");
	const char *const bad[] = { "8.8.8.8", "9.9.9.9:99999", "10.0.0.0/8" };
	cr_assert_eq(policy_replace(&pol, bad, 3, true, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "99999"), "names the bad rule: %s", err);
	cr_assert(tcp("1.1.1.1", 443), "the old set is still in force");
	cr_assert_not(tcp("8.8.8.8", 80), "nothing of the new one");
	cr_assert_not(tcp("8.8.4.4", 80), "nor its open mode");
	cr_assert(policy_check_name(&pol, "pypi.org", 443, &d));

	const char *const good[] = { "8.8.8.8" };
	cr_assert_eq(policy_replace(&pol, good, 1, false, err, sizeof(err)), 0);
	cr_assert(tcp("8.8.8.8", 80));
	cr_assert_not(tcp("1.1.1.1", 443), "the old rules are gone");
	cr_assert_not(policy_check_name(&pol, "pypi.org", 443, &d));
	cr_assert_eq(policy_replace(&pol, NULL, 0, true, err, sizeof(err)), 0, "an empty set in open mode");
	cr_assert(tcp("1.1.1.1", 443));
	cr_assert_eq(policy_replace(&pol, NULL, POLICY_MAX_RULES + 1, false, err, sizeof(err)), -E2BIG);
	cr_assert(tcp("1.1.1.1", 443));
}
