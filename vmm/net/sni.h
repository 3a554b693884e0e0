/* The name a TCP client asks for: TLS ClientHello server_name or HTTP/1.x Host, from the stream's first bytes. */
#ifndef PADCELL_NET_SNI_H
#define PADCELL_NET_SNI_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/net/policy.h"

/* How much of a stream is read for the name before giving up (a ClientHello is ~0.5-2 KiB). */
#define SNI_MAX_INPUT 16384

enum sni_result {
	SNI_NEED_MORE, /* consistent so far but incomplete: call again with more bytes */
	SNI_FOUND,     /* a complete ClientHello or header block naming a host */
	SNI_NONE,      /* complete and valid, but names no host (no server_name; HTTP/1.0 without Host) */
	SNI_INVALID,   /* not TLS or HTTP/1.x, malformed, ambiguous (two names), or over SNI_MAX_INPUT */
};

enum sni_kind { SNI_KIND_UNKNOWN, SNI_KIND_TLS, SNI_KIND_HTTP };

struct sni_info {
	enum sni_kind kind;
	char name[POLICY_NAME_MAX + 1]; /* SNI_FOUND: lower case, no trailing dot */
	uint16_t port;                  /* HTTP: the Host header's port, 0 if it names none */
};

/*
 * Looks at the first len bytes of a client's stream (everything in them hostile).  Stateless:
 * call it again on the longer prefix as segments arrive; a ClientHello split over segments,
 * or over several TLS records, is found once its last byte is there.  Given SNI_MAX_INPUT or
 * more bytes, it never returns SNI_NEED_MORE.  Uses SNI_MAX_INPUT bytes of stack for records.
 */
enum sni_result sni_parse(const uint8_t *buf, size_t len, struct sni_info *out);

/* A Host header's value (whitespace trimmed), host[:port]: SNI_FOUND with out->name and out->port, or SNI_INVALID. */
enum sni_result sni_parse_host(const uint8_t *v, size_t n, struct sni_info *out);

/* The bytes seen so far, for a caller that has nowhere else to keep them until it dials. */
struct sni_reader {
	uint8_t buf[SNI_MAX_INPUT];
	size_t len;
};

void sni_reader_init(struct sni_reader *r);

/*
 * Appends up to n bytes (what fits under SNI_MAX_INPUT; the rest is the caller's to forward
 * after r->buf) and parses everything so far.  *taken says how many bytes were kept.
 */
enum sni_result sni_reader_feed(struct sni_reader *r, const uint8_t *data, size_t n, size_t *taken,
				struct sni_info *out);

#endif
