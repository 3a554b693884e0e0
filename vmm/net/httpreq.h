/* HTTP/1.x request framing for a guest's stream to an allowed name: every request's Host checked, bodies framed, nothing passed unchecked. */
#ifndef PADCELL_NET_HTTPREQ_H
#define PADCELL_NET_HTTPREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/net/policy.h"
#include "vmm/net/sni.h"

#define HTTPREQ_HEAD_MAX SNI_MAX_INPUT /* a request head, or a chunked body's trailer section */
#define HTTPREQ_LINE_MAX 4096          /* a chunk-size line with its extensions */
#define HTTPREQ_STATUS_PEEK 13         /* "HTTP/1.1 101 ": what decides an Upgrade */

enum httpreq_state {
	HTTPREQ_HEAD,         /* the next request's line and header block, kept until complete and checked */
	HTTPREQ_BODY,         /* Content-Length bytes, streamed through */
	HTTPREQ_CHUNK_SIZE,   /* a chunk-size line, kept until complete */
	HTTPREQ_CHUNK_DATA,   /* a chunk's bytes, streamed through */
	HTTPREQ_CHUNK_END,    /* the CRLF after a chunk's bytes */
	HTTPREQ_TRAILER,      /* the trailer section after the last chunk, kept until complete */
	HTTPREQ_UPGRADE_WAIT, /* an Upgrade request went out: nothing more until the server's status line */
	HTTPREQ_PASS,         /* the server switched protocols (101): the stream is no longer HTTP */
	HTTPREQ_REFUSED,      /* a rule broken: why says which; the connection must be reset */
};

struct httpreq {
	enum httpreq_state state;
	uint64_t left;       /* BODY, CHUNK_DATA: bytes still to come; CHUNK_END: of the CRLF */
	size_t scanned;      /* HEAD, CHUNK_SIZE, TRAILER: bytes already searched for the unit's end */
	bool upgrade;        /* the request being framed asked for Upgrade */
	unsigned requests;   /* heads checked and passed */
	struct sni_info host;           /* the last passed request's Host */
	struct policy_decision decision; /* its rule */
	char why[512];       /* REFUSED: the reason, for the log */
};

void httpreq_init(struct httpreq *h);

/*
 * data[0..n) is the guest's stream from the first byte not yet cleared (a call never gets bytes an
 * earlier one cleared; bytes it did not clear come again, with more after them).  Returns how many
 * may go to the server now: whole request heads whose Host pol allows on port (policy_check_name),
 * and body bytes of such requests.  A head is cleared only when all of it is there and checked, so
 * no byte of a refused request is ever cleared.  Everything in data is hostile; bounded: a head,
 * trailer or chunk-size line longer than its bound is refused, never buffered further.
 */
size_t httpreq_feed(struct httpreq *h, const struct policy *pol, uint16_t port, const uint8_t *data, size_t n);

/*
 * In UPGRADE_WAIT: the server's first bytes (HTTPREQ_STATUS_PEEK of them, or fewer when it closed
 * first).  A 101 turns the stream to PASS; any other answer means the server stayed with HTTP, and
 * the next request is framed as usual.
 */
void httpreq_server_began(struct httpreq *h, const uint8_t *data, size_t n);

#endif
