/* Fuzzes the HTTP request framer (vmm/net/httpreq.c): a stream fed whole and in input-chosen pieces, which must clear the same bytes. */
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/net/httpreq.h"

static struct policy pol;
static bool pol_ready;

/* The proxy's loop: bytes arrive in pieces; what was not cleared is offered again with the next. */
static size_t run(struct httpreq *h, const uint8_t *buf, size_t len, uint32_t seed, bool whole)
{
	size_t have = 0, clear = 0;
	httpreq_init(h);
	while (have < len && h->state != HTTPREQ_REFUSED && h->state != HTTPREQ_UPGRADE_WAIT) {
		seed = seed * 1103515245u + 12345u;
		size_t k = whole ? len : 1 + (seed >> 16) % (len / 16 + 2);
		have += k < len - have ? k : len - have;
		size_t c = httpreq_feed(h, &pol, 80, buf + clear, have - clear);
		if (c > have - clear)
			abort();
		clear += c;
	}
	if (h->state == HTTPREQ_REFUSED && (!h->why[0] || !memchr(h->why, '\0', sizeof(h->why))))
		abort();
	return clear;
}

/*
 * Input: u8 chunking seed, then the stream.  Whole or in pieces, the framer must clear the same
 * bytes and end in the same state (a refusal decided by a prefix is the whole stream's too).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!pol_ready) {
		const char *r[] = { "web.test:80", "*.cdn.test" };
		char err[128];
		policy_init(&pol);
		if (policy_replace(&pol, r, 2, false, err, sizeof(err)))
			abort();
		pol_ready = true;
	}
	if (size < 1)
		return 0;
	uint32_t seed = data[0] * 2654435761u + 1;
	size_t len = size - 1;
	uint8_t *buf = malloc(len ? len : 1); /* exactly len bytes: ASan catches a read past the end */
	if (!buf)
		return 0;
	memcpy(buf, data + 1, len);
	static struct httpreq a, b;
	size_t ca = run(&a, buf, len, seed, true), cb = run(&b, buf, len, seed, false);
	if (ca != cb || a.state != b.state || a.requests != b.requests)
		abort();
	free(buf);
	return 0;
}
