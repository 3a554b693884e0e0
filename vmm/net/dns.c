/* DNS wire format, the little padcell needs: one question in, a header, the question and A records out. */
#include "vmm/net/dns.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#define DNS_F_QR 0x8000
#define DNS_F_OPCODE 0x7800
#define DNS_F_RD 0x0100
#define DNS_F_RA 0x0080
#define DNS_PTR_HOPS 127 /* more than a 255-byte name could need; the backward rule ends loops anyway */

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }

static bool host_char(uint8_t c) { return isalnum(c) || c == '-' || c == '_'; }

/*
 * Walks the name at msg[DNS_HEADER_LEN], copying its uncompressed wire form into q->qname.
 * Returns the offset just past the name in the message (past the first pointer, if any), or 0.
 * A pointer must point before the label run it ends, so each jump goes strictly backwards:
 * no loop is possible and every byte is visited at most once per jump.
 */
static size_t parse_name(const uint8_t *msg, size_t len, struct dns_query *q)
{
	size_t pos = DNS_HEADER_LEN, run = DNS_HEADER_LEN, end = 0;
	unsigned hops = 0;

	q->qname_len = 0;
	for (;;) {
		if (pos >= len)
			return 0; /* truncated */
		uint8_t c = msg[pos];
		if ((c & 0xc0) == 0xc0) {
			if (pos + 1 >= len)
				return 0;
			size_t target = (size_t)(c & 0x3f) << 8 | msg[pos + 1];
			if (!end)
				end = pos + 2;
			/* backwards only, and never into the header, which holds no names */
			if (target >= run || target < DNS_HEADER_LEN || ++hops > DNS_PTR_HOPS)
				return 0;
			pos = run = target;
			continue;
		}
		if (c & 0xc0)
			return 0; /* 0x40 and 0x80: extended and reserved label types, or a length over 63 */
		if (q->qname_len + 1 + c > DNS_WIRE_NAME_MAX)
			return 0; /* the name would pass 255 bytes */
		if (pos + 1 + c > len)
			return 0;
		memcpy(q->qname + q->qname_len, msg + pos, 1 + (size_t)c);
		q->qname_len += 1 + (size_t)c;
		pos += 1 + (size_t)c;
		if (c == 0)
			return end ? end : pos;
	}
}

/* The dotted, lower-case text of q->qname, if every label is a host-name label. */
static bool name_text(struct dns_query *q)
{
	size_t o = 0;
	for (size_t i = 0; q->qname[i] != 0; i += 1 + q->qname[i]) {
		if (o)
			q->name[o++] = '.';
		for (size_t j = 1; j <= q->qname[i]; j++) {
			uint8_t c = q->qname[i + j];
			if (!host_char(c))
				return false;
			q->name[o++] = (char)tolower(c);
		}
	}
	q->name[o] = '\0';
	return true;
}

enum dns_parse dns_parse_query(const uint8_t *msg, size_t len, struct dns_query *q)
{
	memset(q, 0, sizeof(*q));
	if (len < DNS_HEADER_LEN)
		return DNS_QUERY_IGNORE;
	q->id = get16(msg);
	q->flags = get16(msg + 2);
	if (q->flags & DNS_F_QR)
		return DNS_QUERY_IGNORE; /* a response: answering it could start a loop */
	if (q->flags & DNS_F_OPCODE)
		return DNS_QUERY_NOTIMP;
	if (get16(msg + 4) != 1 || get16(msg + 6) != 0 || get16(msg + 8) != 0)
		return DNS_QUERY_FORMERR;

	size_t end = parse_name(msg, len, q);
	if (end == 0 || end + 4 > len) {
		q->qname_len = 0;
		return DNS_QUERY_FORMERR;
	}
	q->qtype = get16(msg + end);
	q->qclass = get16(msg + end + 2);
	q->has_question = true;
	/* a wire name of at most 255 bytes has at most 253 characters of text */
	return name_text(q) ? DNS_QUERY_OK : (q->name[0] = '\0', DNS_QUERY_BADNAME);
}

int dns_build_reply(const struct dns_query *q, uint8_t rcode, const uint32_t *addrs, size_t n, uint32_t ttl,
		    uint8_t *out, size_t outlen)
{
	size_t qlen = q->has_question ? q->qname_len + 4 : 0;
	size_t cap = outlen < DNS_UDP_MAX ? outlen : DNS_UDP_MAX;

	if (cap < DNS_HEADER_LEN + qlen)
		return -ENOSPC;
	bool answer = q->has_question && rcode == DNS_RCODE_NOERROR && q->qtype == DNS_TYPE_A &&
		      q->qclass == DNS_CLASS_IN;
	size_t room = (cap - DNS_HEADER_LEN - qlen) / 16;
	size_t an = answer ? (n < room ? n : room) : 0;

	put16(out, q->id);
	put16(out + 2, (uint16_t)(DNS_F_QR | (q->flags & (DNS_F_OPCODE | DNS_F_RD)) | DNS_F_RA | (rcode & 0xf)));
	put16(out + 4, q->has_question ? 1 : 0);
	put16(out + 6, (uint16_t)an);
	put16(out + 8, 0);
	put16(out + 10, 0);
	if (ttl > 0x7fffffff)
		ttl = 0x7fffffff; /* RFC 2181 8: a TTL has 31 bits */
	size_t o = DNS_HEADER_LEN;
	if (q->has_question) {
		memcpy(out + o, q->qname, q->qname_len);
		o += q->qname_len;
		put16(out + o, q->qtype);
		put16(out + o + 2, q->qclass);
		o += 4;
	}
	for (size_t i = 0; i < an; i++) {
		put16(out + o, 0xc000 | DNS_HEADER_LEN); /* the question's name */
		put16(out + o + 2, DNS_TYPE_A);
		put16(out + o + 4, DNS_CLASS_IN);
		put16(out + o + 6, (uint16_t)(ttl >> 16));
		put16(out + o + 8, (uint16_t)ttl);
		put16(out + o + 10, 4);
		put16(out + o + 12, (uint16_t)(addrs[i] >> 16));
		put16(out + o + 14, (uint16_t)addrs[i]);
		o += 16;
	}
	return (int)o;
}
