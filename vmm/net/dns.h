/* DNS for the guest: parsing its (hostile) query down to one question, and building padcell's replies. */
#ifndef PADCELL_NET_DNS_H
#define PADCELL_NET_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_HEADER_LEN 12
#define DNS_WIRE_NAME_MAX 255 /* RFC 1035 2.3.4: a name's wire form, length bytes and root included */
#define DNS_TEXT_NAME_MAX 253
#define DNS_UDP_MAX 512       /* a reply without EDNS fits in this (RFC 1035 4.2.1) */

#define DNS_TYPE_A 1
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN 1

#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_FORMERR 1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_NOTIMP 4
#define DNS_RCODE_REFUSED 5

enum dns_parse {
	DNS_QUERY_OK,      /* one question, its name a host name: look it up */
	DNS_QUERY_BADNAME, /* one well-formed question whose name is not a host name (bytes other than
			      letters, digits, '-', '_', or a '.' inside a label): answer, never look up */
	DNS_QUERY_FORMERR, /* a query header, the rest malformed: answer FORMERR (no question) */
	DNS_QUERY_NOTIMP,  /* an opcode other than QUERY: answer NOTIMP (no question) */
	DNS_QUERY_IGNORE,  /* shorter than a header, or a response: send nothing */
};

struct dns_query {
	uint16_t id;
	uint16_t flags;                   /* the header's flags as received */
	bool has_question;                /* the reply repeats the question (OK and BADNAME) */
	uint8_t qname[DNS_WIRE_NAME_MAX]; /* the question's name, uncompressed, case as sent */
	size_t qname_len;
	uint16_t qtype, qclass;
	char name[DNS_TEXT_NAME_MAX + 2]; /* DNS_QUERY_OK: dotted, lower case, no trailing dot; "" is the root */
};

/*
 * Parses a query of len bytes (a UDP payload: everything in it is guest-controlled).  Exactly
 * one question is accepted; answer and authority counts must be 0; the additional section
 * (EDNS, which padcell does not speak) is ignored.  Names are bounded (labels <= 63, the
 * whole <= 255 bytes, extended label types refused) and compression pointers may only point
 * backwards, which bounds the walk and rules out loops.  Fills q as far as it got.
 */
enum dns_parse dns_parse_query(const uint8_t *msg, size_t len, struct dns_query *q);

/*
 * Builds the reply to q into out: the query's id, opcode and RD, QR and RA set, the rcode,
 * and the question if q has one.  With DNS_RCODE_NOERROR, an A/IN question gets the n addresses
 * (IPv4, host byte order) as A records with the given TTL (at most 2^31-1), as many as fit in DNS_UDP_MAX bytes
 * (a subset of the addresses is still a good answer, so no TC); any other type gets an empty
 * NOERROR answer ("no data": so an AAAA query makes the guest fall back to IPv4).
 * Returns the length, or -ENOSPC if outlen cannot hold the header and question.
 */
int dns_build_reply(const struct dns_query *q, uint8_t rcode, const uint32_t *addrs, size_t n, uint32_t ttl,
		    uint8_t *out, size_t outlen);

#endif
