/* Fuzzes the DNS query parser and reply builder (vmm/net/dns.c): any UDP payload parsed, and every reply built from what parses read back by a reader of the harness's own. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/net/dns.h"

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

/* The parser's promises about a question it accepted. */
static void check_query(const struct dns_query *q, enum dns_parse rc)
{
	if (!q->has_question) {
		if (rc == DNS_QUERY_OK || rc == DNS_QUERY_BADNAME)
			abort();
		return;
	}
	if (rc != DNS_QUERY_OK && rc != DNS_QUERY_BADNAME)
		abort();
	/* the uncompressed wire name: labels of 1..63, the root label last, 255 bytes at most */
	if (q->qname_len < 1 || q->qname_len > DNS_WIRE_NAME_MAX)
		abort();
	size_t i = 0, text = 0;
	while (q->qname[i] != 0) {
		if (q->qname[i] > 63 || i + 1 + q->qname[i] >= q->qname_len)
			abort();
		text += (text ? 1 : 0) + q->qname[i];
		i += 1 + q->qname[i];
	}
	if (i + 1 != q->qname_len)
		abort();
	if (rc == DNS_QUERY_BADNAME) {
		if (q->name[0])
			abort();
		return;
	}
	/* the text: the labels dotted and lower-cased, nothing else */
	if (strlen(q->name) != text || text > DNS_TEXT_NAME_MAX)
		abort();
	size_t o = 0;
	for (i = 0; q->qname[i]; i += 1 + q->qname[i]) {
		if (o && q->name[o++] != '.')
			abort();
		for (size_t j = 1; j <= q->qname[i]; j++, o++) {
			uint8_t c = q->qname[i + j];
			if (c >= 'A' && c <= 'Z')
				c = (uint8_t)(c - 'A' + 'a');
			if ((uint8_t)q->name[o] != c || c == '.')
				abort();
		}
	}
}

/* Reads the reply back with nothing of dns.c: header, question, answers, exactly len bytes. */
static void check_reply(const struct dns_query *q, uint8_t rcode, const uint32_t *addrs, size_t n, uint32_t ttl,
			const uint8_t *r, size_t len, size_t outlen)
{
	size_t cap = outlen < DNS_UDP_MAX ? outlen : DNS_UDP_MAX;
	if (len < DNS_HEADER_LEN || len > cap)
		abort();
	uint16_t fl = get16(r + 2);
	if (get16(r) != q->id || !(fl & 0x8000) || (fl & 0x7800) != (q->flags & 0x7800) ||
	    (fl & 0x0100) != (q->flags & 0x0100) || !(fl & 0x0080) || (fl & 0xf) != (rcode & 0xf) || (fl & 0x0600))
		abort(); /* id, QR, opcode, RD, RA, rcode; AA and TC clear */
	if (get16(r + 4) != (q->has_question ? 1 : 0) || get16(r + 8) || get16(r + 10))
		abort();
	size_t o = DNS_HEADER_LEN;
	if (q->has_question) {
		if (len < o + q->qname_len + 4 || memcmp(r + o, q->qname, q->qname_len))
			abort();
		o += q->qname_len;
		if (get16(r + o) != q->qtype || get16(r + o + 2) != q->qclass)
			abort();
		o += 4;
	}
	bool answer = q->has_question && rcode == DNS_RCODE_NOERROR && q->qtype == 1 && q->qclass == 1;
	size_t want = answer ? n : 0, fit = (cap - o) / 16;
	if (want > fit)
		want = fit; /* as many as fit: a subset is still a good answer */
	size_t an = get16(r + 6);
	if (an != want || len != o + 16 * an)
		abort();
	uint32_t t = ttl > 0x7fffffffu ? 0x7fffffffu : ttl;
	for (size_t i = 0; i < an; i++, o += 16) {
		if (get16(r + o) != 0xc00c || get16(r + o + 2) != 1 || get16(r + o + 4) != 1 || get32(r + o + 6) != t ||
		    get16(r + o + 10) != 4 || get32(r + o + 12) != addrs[i])
			abort();
	}
}

/*
 * Input: u8 address count (0..255), u8 reply buffer size / 2 (0: 512), u32 TTL, that many u32
 * addresses, then the query.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	size_t n = fuzz_u8(&in);
	size_t small = 2u * fuzz_u8(&in);
	uint32_t ttl = fuzz_u32(&in);
	uint32_t addrs[256];
	for (size_t i = 0; i < n; i++)
		addrs[i] = fuzz_u32(&in);
	/* A copy of exactly the query's bytes: ASan catches any read past the end. */
	uint8_t *msg = malloc(in.len ? in.len : 1);
	if (!msg)
		return 0;
	size_t len = in.len;
	memcpy(msg, in.p, len);

	struct dns_query q;
	enum dns_parse rc = dns_parse_query(msg, len, &q);
	if (rc > DNS_QUERY_IGNORE)
		abort();
	check_query(&q, rc);
	if (rc == DNS_QUERY_IGNORE) {
		free(msg);
		return 0;
	}

	static const uint8_t rcodes[] = { 0, 1, 2, 3, 4, 5, 15, 0x35 };
	const size_t counts[] = { 0, 1, 2, n };
	for (size_t a = 0; a < sizeof(rcodes); a++) {
		for (size_t c = 0; c < 4; c++) {
			uint8_t out[DNS_UDP_MAX + 64];
			size_t outlen = c == 3 && small ? small : sizeof(out);
			size_t cnt = counts[c] < n ? counts[c] : n;
			int l = dns_build_reply(&q, rcodes[a], addrs, cnt, ttl, out, outlen);
			size_t need = DNS_HEADER_LEN + (q.has_question ? q.qname_len + 4 : 0);
			if (l < 0) {
				if (l != -ENOSPC || need <= (outlen < DNS_UDP_MAX ? outlen : DNS_UDP_MAX))
					abort();
				continue;
			}
			check_reply(&q, rcodes[a], addrs, cnt, ttl, out, (size_t)l, outlen);
			/* Without answers, the reply is the query again but for QR: it parses back to the same question. */
			if (get16(out + 6) == 0 && q.has_question) {
				struct dns_query back;
				out[2] &= 0x7f;
				if (dns_parse_query(out, (size_t)l, &back) != rc || back.id != q.id || back.qtype != q.qtype ||
				    back.qclass != q.qclass || back.qname_len != q.qname_len ||
				    memcmp(back.qname, q.qname, q.qname_len) || strcmp(back.name, q.name))
					abort();
			}
		}
	}
	free(msg);
	return 0;
}
