/* Fuzzes the SNI/Host extractor (vmm/net/sni.c): a stream's first bytes fed whole and in input-chosen chunks, which must come to the same answer. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/net/sni.h"

static struct sni_reader reader;

static void check_info(enum sni_result res, const struct sni_info *s)
{
	if (res > SNI_INVALID || s->kind > SNI_KIND_HTTP)
		abort();
	if (!memchr(s->name, '\0', sizeof(s->name)))
		abort();
	if (res != SNI_FOUND) {
		if (s->name[0])
			abort();
		return;
	}
	/* a name found is a host name as policy rules match them, already normalized */
	char norm[POLICY_NAME_MAX + 1];
	if (s->kind == SNI_KIND_UNKNOWN || !policy_normalize_name(s->name, norm) || strcmp(norm, s->name))
		abort();
	if (s->kind == SNI_KIND_TLS && s->port)
		abort();
}

static bool same(enum sni_result a, const struct sni_info *x, enum sni_result b, const struct sni_info *y)
{
	return a == b && x->kind == y->kind && x->port == y->port && strcmp(x->name, y->name) == 0;
}

/*
 * Input: u8 chunking seed, then the stream.  The stream is parsed whole, then fed through a
 * sni_reader in chunks (sizes from the seed); the first answer other than NEED_MORE is the one
 * a proxy would act on, so it must be the whole stream's, and so must the last.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t seed = data[0] * 2654435761u + 1;
	size_t len = size - 1;
	/* A copy of exactly len bytes: ASan catches any read past the end. */
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, len);

	struct sni_info whole;
	enum sni_result rw = sni_parse(buf, len, &whole);
	check_info(rw, &whole);
	if (len >= SNI_MAX_INPUT && rw == SNI_NEED_MORE)
		abort();

	/* Stateless: the same bytes give the same answer. */
	struct sni_info again;
	if (!same(sni_parse(buf, len, &again), &again, rw, &whole))
		abort();

	/* Chunks: at most ~48 feeds, so the quadratic cost of re-parsing stays small. */
	sni_reader_init(&reader);
	size_t step = len / 32 + 1, off = 0;
	bool decided = false;
	enum sni_result last = SNI_NEED_MORE;
	struct sni_info first, cur;
	memset(&cur, 0, sizeof(cur));
	while (off < len) {
		seed = seed * 1103515245u + 12345u;
		size_t k = 1 + (seed >> 16) % (2 * step);
		if (k > len - off)
			k = len - off;
		size_t taken;
		last = sni_reader_feed(&reader, buf + off, k, &taken, &cur);
		check_info(last, &cur);
		if (taken > k || reader.len > SNI_MAX_INPUT || (taken < k && reader.len != SNI_MAX_INPUT))
			abort();
		if (!decided && last != SNI_NEED_MORE) {
			decided = true;
			first = cur;
			if (!same(last, &cur, rw, &whole))
				abort(); /* a prefix decided otherwise than the whole stream */
		}
		off += k;
	}
	if (len && !same(last, &cur, rw, &whole))
		abort();
	if (decided && !same(rw, &first, rw, &whole))
		abort();
	free(buf);
	return 0;
}
