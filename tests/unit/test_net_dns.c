/* vmm/net/dns: hostile queries (truncation, pointer loops, long labels and names, lying counts); replies read back. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/net/dns.h"

static uint8_t m[1024];
static size_t mlen;
static struct dns_query q;

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

static void header(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar)
{
	memset(m, 0, sizeof(m));
	put16(m, id);
	put16(m + 2, flags);
	put16(m + 4, qd);
	put16(m + 6, an);
	put16(m + 8, ns);
	put16(m + 10, ar);
	mlen = 12;
}

/* Appends a dotted name in wire form ("" is the root). */
static void name(const char *n)
{
	while (*n) {
		const char *dot = strchr(n, '.');
		size_t l = dot ? (size_t)(dot - n) : strlen(n);
		m[mlen++] = (uint8_t)l;
		memcpy(m + mlen, n, l);
		mlen += l;
		n += l + (dot ? 1 : 0);
	}
	m[mlen++] = 0;
}

static void tail(uint16_t type, uint16_t cls)
{
	put16(m + mlen, type);
	put16(m + mlen + 2, cls);
	mlen += 4;
}

static void query(const char *n, uint16_t type)
{
	header(0xbeef, 0x0100 /* RD */, 1, 0, 0, 0);
	name(n);
	tail(type, 1);
}

static enum dns_parse parse(void) { return dns_parse_query(m, mlen, &q); }

Test(net_dns, a_plain_query)
{
	query("Files.PythonHosted.org", DNS_TYPE_A);
	cr_assert_eq(parse(), DNS_QUERY_OK);
	cr_assert_eq(q.id, 0xbeef);
	cr_assert_str_eq(q.name, "files.pythonhosted.org");
	cr_assert_eq(q.qtype, DNS_TYPE_A);
	cr_assert_eq(q.qclass, DNS_CLASS_IN);
	cr_assert_eq(q.qname_len, 24);
	cr_assert(memcmp(q.qname, m + 12, 24) == 0, "wire name kept, case and all");
}

Test(net_dns, edns_additional_record_is_ignored)
{
	query("example.com", DNS_TYPE_AAAA);
	put16(m + 10, 1);
	/* OPT: root name, type 41, UDP size 1232, no options */
	static const uint8_t opt[] = { 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0 };
	memcpy(m + mlen, opt, sizeof(opt));
	mlen += sizeof(opt);
	cr_assert_eq(parse(), DNS_QUERY_OK);
	cr_assert_eq(q.qtype, DNS_TYPE_AAAA);
}

Test(net_dns, the_root_and_a_single_label)
{
	query("", DNS_TYPE_A);
	cr_assert_eq(parse(), DNS_QUERY_OK);
	cr_assert_str_eq(q.name, "");
	query("localhost", DNS_TYPE_A);
	cr_assert_eq(parse(), DNS_QUERY_OK);
	cr_assert_str_eq(q.name, "localhost");
}

Test(net_dns, not_a_query)
{
	query("example.com", DNS_TYPE_A);
	put16(m + 2, 0x8180); /* a response */
	cr_assert_eq(parse(), DNS_QUERY_IGNORE);
	put16(m + 2, 0x2800); /* opcode 5, UPDATE */
	cr_assert_eq(parse(), DNS_QUERY_NOTIMP);
	cr_assert_eq(q.id, 0xbeef, "the id is there for the reply");
	for (size_t l = 0; l < 12; l++)
		cr_assert_eq(dns_parse_query(m, l, &q), DNS_QUERY_IGNORE, "%zu bytes", l);
}

Test(net_dns, question_counts_other_than_one)
{
	query("example.com", DNS_TYPE_A);
	put16(m + 4, 0);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
	put16(m + 4, 2);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR, "two questions, even if only one is there");
	query("example.com", DNS_TYPE_A);
	name("example.org");
	tail(1, 1);
	put16(m + 4, 2);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR, "two questions");
	put16(m + 4, 0xffff);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
}

Test(net_dns, answer_or_authority_records_in_a_query)
{
	query("example.com", DNS_TYPE_A);
	put16(m + 6, 1);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
	query("example.com", DNS_TYPE_A);
	put16(m + 8, 1);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
}

Test(net_dns, every_truncation)
{
	query("www.example.com", DNS_TYPE_A);
	size_t full = mlen;
	for (size_t l = 12; l < full; l++)
		cr_assert_eq(dns_parse_query(m, l, &q), DNS_QUERY_FORMERR, "cut at %zu of %zu", l, full);
	cr_assert_eq(dns_parse_query(m, full, &q), DNS_QUERY_OK);
}

Test(net_dns, label_lengths_over_63)
{
	header(1, 0, 1, 0, 0, 0);
	m[mlen++] = 64;
	memset(m + mlen, 'a', 64);
	mlen += 64;
	m[mlen++] = 0;
	tail(1, 1);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
	m[12] = 0x80 | 5; /* reserved label type */
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);

	char l63[64];
	memset(l63, 'b', 63);
	l63[63] = '\0';
	query(l63, DNS_TYPE_A);
	cr_assert_eq(parse(), DNS_QUERY_OK, "63 is allowed");
}

/* A name of `total` wire bytes: labels of 63 then whatever makes up the rest. */
static void long_name(size_t total)
{
	char n[400] = "";
	size_t wire = 1; /* the root */
	while (wire < total) {
		size_t l = total - wire - 1;
		if (l > 63)
			l = 63;
		if (l == 0)
			l = 1; /* cannot add a label of 0: overshoot by one, fine for the test's sizes */
		size_t at = strlen(n);
		if (at)
			n[at++] = '.';
		memset(n + at, 'c', l);
		n[at + l] = '\0';
		wire += l + 1;
	}
	query(n, DNS_TYPE_A);
	cr_assert_eq(mlen - 12 - 4, wire);
}

Test(net_dns, names_up_to_255_bytes)
{
	long_name(255);
	cr_assert_eq(parse(), DNS_QUERY_OK);
	cr_assert_eq(strlen(q.name), 253);
	long_name(256);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
	long_name(300);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
}

Test(net_dns, compression_pointers)
{
	/* a pointer to itself: the simplest loop */
	header(1, 0, 1, 0, 0, 0);
	m[mlen++] = 0xc0, m[mlen++] = 12;
	tail(1, 1);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
	/* a label, then a pointer back to its own start: a loop through a label */
	header(1, 0, 1, 0, 0, 0);
	m[mlen++] = 1, m[mlen++] = 'a', m[mlen++] = 0xc0, m[mlen++] = 12;
	tail(1, 1);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
	/* two pointers at each other */
	header(1, 0, 1, 0, 0, 0);
	m[mlen++] = 0xc0, m[mlen++] = 14;
	m[mlen++] = 0xc0, m[mlen++] = 12;
	tail(1, 1);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
	/* forwards, into the header, past the end */
	static const uint8_t targets[][2] = { { 0xc0, 20 }, { 0xc0, 0 }, { 0xc0, 4 }, { 0xff, 0xff } };
	for (size_t i = 0; i < 4; i++) {
		header(1, 0, 1, 0, 0, 0);
		m[mlen++] = targets[i][0], m[mlen++] = targets[i][1];
		tail(1, 1);
		memset(m + mlen, 0, 16);
		mlen += 16;
		cr_assert_eq(parse(), DNS_QUERY_FORMERR, "pointer %#x%02x", targets[i][0], targets[i][1]);
	}
	/* a pointer cut in half */
	header(1, 0, 1, 0, 0, 0);
	m[mlen++] = 0xc0;
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
}

Test(net_dns, names_that_are_not_host_names)
{
	static const char *const bad[] = { "exa mple.com", "a\x01.com", "ex\xc3\xa9.com", "a*.com" };
	for (size_t i = 0; i < 4; i++) {
		query(bad[i], DNS_TYPE_A);
		cr_assert_eq(parse(), DNS_QUERY_BADNAME, "%s", bad[i]);
		cr_assert(q.has_question, "still answerable");
		cr_assert_str_eq(q.name, "");
	}
	/* a '.' inside a label would read as two labels in text */
	header(1, 0, 1, 0, 0, 0);
	m[mlen++] = 7;
	memcpy(m + mlen, "pypi.org", 8);
	m[12] = 8;
	mlen += 8;
	m[mlen++] = 0;
	tail(1, 1);
	cr_assert_eq(parse(), DNS_QUERY_BADNAME);
	/* a NUL inside a label */
	header(1, 0, 1, 0, 0, 0);
	m[mlen++] = 3, m[mlen++] = 'a', m[mlen++] = 0, m[mlen++] = 'b', m[mlen++] = 0;
	tail(1, 1);
	cr_assert_eq(parse(), DNS_QUERY_BADNAME);
}

Test(net_dns, random_garbage_never_crashes)
{
	uint32_t s = 12345;
	for (int iter = 0; iter < 200000; iter++) {
		size_t l = 12 + (s % 80);
		for (size_t i = 0; i < l; i++) {
			s = s * 1103515245 + 12345;
			m[i] = (uint8_t)(s >> 16);
			if ((s >> 8) % 4 == 0) /* bias towards pointer bytes and short label lengths */
				m[i] = (s & 1) ? 0xc0 : (uint8_t)((s >> 4) % 70);
		}
		put16(m + 2, 0);
		put16(m + 4, 1);
		put16(m + 6, 0);
		put16(m + 8, 0);
		enum dns_parse rc = dns_parse_query(m, l, &q);
		cr_assert(rc == DNS_QUERY_OK || rc == DNS_QUERY_BADNAME || rc == DNS_QUERY_FORMERR);
		if (rc == DNS_QUERY_OK)
			cr_assert(strlen(q.name) <= DNS_TEXT_NAME_MAX && q.qname_len <= DNS_WIRE_NAME_MAX);
	}
}

/* --- replies, read back --- */

static uint8_t out[1024];

static void check_header(int len, uint16_t id, uint8_t rcode, uint16_t qd, uint16_t an)
{
	cr_assert_geq(len, 12);
	cr_assert_eq(get16(out), id);
	uint16_t fl = get16(out + 2);
	cr_assert(fl & 0x8000, "QR");
	cr_assert(fl & 0x0080, "RA");
	cr_assert_eq(fl & 0x0100, get16(m + 2) & 0x0100, "RD copied");
	cr_assert_eq(fl & 0x000f, rcode);
	cr_assert_eq(fl & 0x0600, 0, "neither AA nor TC");
	cr_assert_eq(get16(out + 4), qd);
	cr_assert_eq(get16(out + 6), an);
	cr_assert_eq(get16(out + 8), 0);
	cr_assert_eq(get16(out + 10), 0);
}

Test(net_dns, nxdomain_keeps_id_and_question)
{
	query("NoSuch.Example", DNS_TYPE_A);
	cr_assert_eq(parse(), DNS_QUERY_OK);
	int len = dns_build_reply(&q, DNS_RCODE_NXDOMAIN, NULL, 0, 0, out, sizeof(out));
	check_header(len, 0xbeef, DNS_RCODE_NXDOMAIN, 1, 0);
	cr_assert_eq((size_t)len, mlen, "header and question only");
	cr_assert(memcmp(out + 12, m + 12, mlen - 12) == 0, "the question verbatim, case preserved");
	struct dns_query back;
	cr_assert_eq(dns_parse_query(out, (size_t)len, &back), DNS_QUERY_IGNORE, "a reply is never taken as a query");
}

Test(net_dns, refused_and_servfail)
{
	uint8_t rc[] = { DNS_RCODE_REFUSED, DNS_RCODE_SERVFAIL };
	for (int i = 0; i < 2; i++) {
		query("example.com", DNS_TYPE_A);
		put16(m + 2, 0); /* no RD */
		parse();
		uint32_t a = 0x01020304;
		int len = dns_build_reply(&q, rc[i], &a, 1, 60, out, sizeof(out));
		check_header(len, 0xbeef, rc[i], 1, 0);
		cr_assert_eq((size_t)len, mlen, "no answer with an error rcode");
	}
}

Test(net_dns, a_answer_round_trip)
{
	query("pypi.org", DNS_TYPE_A);
	cr_assert_eq(parse(), DNS_QUERY_OK);
	uint32_t a[] = { 0x97650002u, 0x97654002u };
	int len = dns_build_reply(&q, DNS_RCODE_NOERROR, a, 2, 300, out, sizeof(out));
	check_header(len, 0xbeef, 0, 1, 2);
	cr_assert_eq((size_t)len, mlen + 2 * 16);
	cr_assert(memcmp(out + 12, m + 12, mlen - 12) == 0);
	for (int i = 0; i < 2; i++) {
		const uint8_t *rr = out + mlen + 16 * i;
		cr_assert_eq(get16(rr), 0xc00c, "the name points at the question");
		cr_assert_eq(get16(rr + 2), DNS_TYPE_A);
		cr_assert_eq(get16(rr + 4), DNS_CLASS_IN);
		cr_assert_eq(get32(rr + 6), 300);
		cr_assert_eq(get16(rr + 10), 4);
		cr_assert_eq(get32(rr + 12), a[i]);
	}
	len = dns_build_reply(&q, DNS_RCODE_NOERROR, a, 1, 0xffffffffu, out, sizeof(out));
	cr_assert_eq(get32(out + mlen + 6), 0x7fffffff, "TTL clamped to 31 bits");
}

Test(net_dns, aaaa_and_other_types_get_an_empty_noerror)
{
	uint32_t a = 0x01020304;
	uint16_t types[] = { DNS_TYPE_AAAA, 16 /* TXT */, 255 /* ANY */ };
	for (int i = 0; i < 3; i++) {
		query("pypi.org", types[i]);
		parse();
		int len = dns_build_reply(&q, DNS_RCODE_NOERROR, &a, 1, 60, out, sizeof(out));
		check_header(len, 0xbeef, 0, 1, 0);
		cr_assert_eq(get16(out + mlen - 4), types[i], "the question's type kept");
	}
	query("pypi.org", DNS_TYPE_A);
	put16(m + mlen - 2, 3); /* class CHAOS */
	parse();
	int len = dns_build_reply(&q, DNS_RCODE_NOERROR, &a, 1, 60, out, sizeof(out));
	check_header(len, 0xbeef, 0, 1, 0);
}

Test(net_dns, answers_fit_in_512_bytes)
{
	uint32_t a[100];
	for (int i = 0; i < 100; i++)
		a[i] = 0x01000000u + (uint32_t)i;
	query("pypi.org", DNS_TYPE_A);
	parse();
	int len = dns_build_reply(&q, DNS_RCODE_NOERROR, a, 100, 60, out, sizeof(out));
	cr_assert_leq(len, 512);
	size_t fit = (512 - mlen) / 16;
	check_header(len, 0xbeef, 0, 1, (uint16_t)fit);
	cr_assert_eq(get32(out + mlen + 16 * (fit - 1) + 12), a[fit - 1]);
	len = dns_build_reply(&q, DNS_RCODE_NOERROR, a, 100, 60, out, mlen + 20);
	check_header(len, 0xbeef, 0, 1, 1);
	cr_assert_eq(len, (int)mlen + 16, "bounded by the caller's buffer too");
}

Test(net_dns, formerr_and_notimp_replies_have_no_question)
{
	query("example.com", DNS_TYPE_A);
	put16(m + 4, 2);
	cr_assert_eq(parse(), DNS_QUERY_FORMERR);
	int len = dns_build_reply(&q, DNS_RCODE_FORMERR, NULL, 0, 0, out, sizeof(out));
	cr_assert_eq(len, 12);
	check_header(len, 0xbeef, DNS_RCODE_FORMERR, 0, 0);
	query("example.com", DNS_TYPE_A);
	put16(m + 2, 0x1100); /* opcode 2 (STATUS), RD */
	cr_assert_eq(parse(), DNS_QUERY_NOTIMP);
	len = dns_build_reply(&q, DNS_RCODE_NOTIMP, NULL, 0, 0, out, sizeof(out));
	check_header(len, 0xbeef, DNS_RCODE_NOTIMP, 0, 0);
	cr_assert_eq(get16(out + 2) & 0x7800, 0x1000, "the opcode is echoed");
}

Test(net_dns, reply_needs_room_for_the_question)
{
	query("pypi.org", DNS_TYPE_A);
	parse();
	cr_assert_eq(dns_build_reply(&q, DNS_RCODE_NXDOMAIN, NULL, 0, 0, out, mlen - 1), -ENOSPC);
	cr_assert_eq(dns_build_reply(&q, DNS_RCODE_NXDOMAIN, NULL, 0, 0, out, mlen), (int)mlen);
}
