/* vmm/net/sni: a ClientHello built here, split at every byte and over records; hostile lengths; HTTP Host parsing. */
#include <criterion/criterion.h>
#include <string.h>

#include "vmm/net/sni.h"

static uint8_t hello[SNI_MAX_INPUT + 64];
static size_t hlen;
static struct sni_info info;

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }

/* Offsets inside the last hello built, for the tests that corrupt a field. */
static size_t off_hs, off_sid, off_cs, off_ext, off_sni_ext;

/* Appends one extension. */
static size_t ext(uint8_t *b, size_t o, uint16_t type, const uint8_t *data, size_t n)
{
	put16(b + o, type);
	put16(b + o + 2, (uint16_t)n);
	memcpy(b + o + 4, data, n);
	return o + 4 + n;
}

/* The server_name extension's body for one or two host_name entries. */
static size_t sni_body(uint8_t *e, const char *name, const char *second)
{
	size_t o = 2;
	for (const char *n = name; n; n = (n == name ? second : NULL)) {
		e[o] = 0;
		put16(e + o + 1, (uint16_t)strlen(n));
		memcpy(e + o + 3, n, strlen(n));
		o += 3 + strlen(n);
	}
	put16(e, (uint16_t)(o - 2));
	return o;
}

/*
 * A ClientHello shaped like a TLS 1.3 client's: session id, four suites, null compression,
 * supported_groups, server_name (if name), supported_versions, a 32-byte key share and padding.
 * The handshake message is cut into records of at most `rec` bytes.
 */
static void build(const char *name, size_t rec, size_t padding)
{
	uint8_t body[SNI_MAX_INPUT], e[600];
	size_t o = 0;

	put16(body, 0x0303);
	memset(body + 2, 0x5a, 32);
	o = 34;
	off_sid = o;
	body[o++] = 32;
	memset(body + o, 0x11, 32);
	o += 32;
	off_cs = o;
	put16(body + o, 8);
	static const uint8_t suites[] = { 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2f };
	memcpy(body + o + 2, suites, 8);
	o += 10;
	body[o++] = 1;
	body[o++] = 0;
	off_ext = o;
	size_t ext_start = o;
	o += 2;
	static const uint8_t groups[] = { 0, 4, 0, 0x1d, 0, 0x17 };
	o = ext(body, o, 10, groups, sizeof(groups));
	off_sni_ext = o;
	if (name)
		o = ext(body, o, 0, e, sni_body(e, name, NULL));
	static const uint8_t versions[] = { 4, 3, 4, 3, 3 };
	o = ext(body, o, 43, versions, sizeof(versions));
	uint8_t ks[38] = { 0, 36, 0, 0x1d, 0, 32 };
	memset(ks + 6, 0x77, 32);
	o = ext(body, o, 51, ks, sizeof(ks));
	memset(e, 0, sizeof(e));
	if (padding)
		o = ext(body, o, 21, e, padding);
	put16(body + ext_start, (uint16_t)(o - ext_start - 2));

	/* handshake header, then records */
	uint8_t hs[SNI_MAX_INPUT + 4];
	hs[0] = 1;
	hs[1] = (uint8_t)(o >> 16), hs[2] = (uint8_t)(o >> 8), hs[3] = (uint8_t)o;
	memcpy(hs + 4, body, o);
	size_t total = o + 4;
	hlen = 0;
	for (size_t done = 0; done < total;) {
		size_t n = total - done < rec ? total - done : rec;
		hello[hlen] = 0x16, hello[hlen + 1] = 3, hello[hlen + 2] = 1;
		put16(hello + hlen + 3, (uint16_t)n);
		memcpy(hello + hlen + 5, hs + done, n);
		hlen += 5 + n;
		done += n;
	}
	off_hs = 5;
	/* offsets into the single-record layout */
	off_sid += 9, off_cs += 9, off_ext += 9, off_sni_ext += 9;
}

static enum sni_result parse_n(size_t n) { return sni_parse(hello, n, &info); }
static enum sni_result parse(void) { return parse_n(hlen); }

Test(net_sni, client_hello_with_server_name)
{
	build("Files.PythonHosted.org", 16384, 0);
	cr_assert_eq(parse(), SNI_FOUND);
	cr_assert_eq(info.kind, SNI_KIND_TLS);
	cr_assert_str_eq(info.name, "files.pythonhosted.org");
	build("example.com.", 16384, 100);
	cr_assert_eq(parse(), SNI_FOUND);
	cr_assert_str_eq(info.name, "example.com");
}

Test(net_sni, split_at_every_byte_boundary)
{
	build("pypi.org", 16384, 200);
	for (size_t k = 0; k < hlen; k++)
		cr_assert_eq(parse_n(k), SNI_NEED_MORE, "prefix of %zu of %zu bytes", k, hlen);
	cr_assert_eq(parse(), SNI_FOUND);
	/* and through the reader, in two pieces split everywhere */
	static struct sni_reader r;
	for (size_t k = 0; k <= hlen; k++) {
		size_t taken;
		sni_reader_init(&r);
		cr_assert_eq(sni_reader_feed(&r, hello, k, &taken, &info), k == hlen ? SNI_FOUND : SNI_NEED_MORE);
		cr_assert_eq(taken, k);
		if (k < hlen)
			cr_assert_eq(sni_reader_feed(&r, hello + k, hlen - k, &taken, &info), SNI_FOUND, "split at %zu", k);
		cr_assert_str_eq(info.name, "pypi.org");
		cr_assert_eq(r.len, hlen);
	}
}

Test(net_sni, one_byte_at_a_time_through_the_reader)
{
	static struct sni_reader r;
	build("a.b.example.net", 16384, 0);
	sni_reader_init(&r);
	for (size_t i = 0; i < hlen; i++)
		cr_assert_eq(sni_reader_feed(&r, hello + i, 1, NULL, &info), i + 1 == hlen ? SNI_FOUND : SNI_NEED_MORE,
			     "byte %zu", i);
	cr_assert_str_eq(info.name, "a.b.example.net");
}

Test(net_sni, handshake_fragmented_over_records)
{
	for (size_t rec = 1; rec <= 64; rec += 7) {
		build("frag.example.org", rec, 300);
		cr_assert_eq(parse(), SNI_FOUND, "records of %zu", rec);
		cr_assert_str_eq(info.name, "frag.example.org");
		for (size_t k = 0; k < hlen; k += 3)
			cr_assert_eq(parse_n(k), SNI_NEED_MORE, "records of %zu, prefix %zu", rec, k);
	}
}

Test(net_sni, trailing_bytes_after_the_hello_are_ignored)
{
	build("pypi.org", 16384, 0);
	memcpy(hello + hlen, "\x14\x03\x03\x00\x01\x01", 6);
	hlen += 6;
	cr_assert_eq(parse(), SNI_FOUND);
}

Test(net_sni, no_server_name_is_none)
{
	build(NULL, 16384, 0);
	cr_assert_eq(parse(), SNI_NONE);
	cr_assert_eq(info.kind, SNI_KIND_TLS);
	cr_assert_str_eq(info.name, "");
	/* a hello with no extensions at all */
	build(NULL, 16384, 0);
	size_t body = off_ext - 9;
	hlen = off_ext;
	put16(hello + 3, (uint16_t)(hlen - 5));
	hello[6] = 0, put16(hello + 7, (uint16_t)body);
	cr_assert_eq(parse(), SNI_NONE);
}

Test(net_sni, garbage_is_invalid)
{
	static const char *const junk[] = { "\x00", "\x15\x03\x03", "\x17\x03\x03\x00\x10", "\x16\x02", "\x16\x03\x05",
					    "SSH-2.0-OpenSSH_9.2\r\n", "\x80\x2e\x01\x03\x01", "hello", "GET/ HTTP/1.1" };
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		cr_assert_eq(sni_parse((const uint8_t *)junk[i], strlen(junk[i]) ? strlen(junk[i]) : 1, &info),
			     SNI_INVALID, "junk %zu", i);
	build("pypi.org", 16384, 0);
	hello[5] = 2; /* a ServerHello */
	cr_assert_eq(parse(), SNI_INVALID);
	cr_assert_eq(parse_n(6), SNI_INVALID, "known as soon as the byte is there");
}

Test(net_sni, hostile_record_and_handshake_lengths)
{
	build("pypi.org", 16384, 0);
	put16(hello + 3, 0);
	cr_assert_eq(parse(), SNI_INVALID, "empty record");
	put16(hello + 3, 16385);
	cr_assert_eq(parse(), SNI_INVALID, "record over 2^14");
	put16(hello + 3, 0xffff);
	cr_assert_eq(parse_n(5), SNI_INVALID);

	build("pypi.org", 16384, 0);
	hello[6] = 0xff, hello[7] = 0xff, hello[8] = 0xff;
	cr_assert_eq(parse(), SNI_INVALID, "a 16 MiB handshake");
	build("pypi.org", 16384, 0);
	hello[6] = 0, hello[7] = 0, hello[8] = 10;
	cr_assert_eq(parse(), SNI_INVALID, "shorter than any ClientHello");
}

Test(net_sni, hostile_lengths_inside_the_hello)
{
	build("pypi.org", 16384, 0);
	hello[off_sid] = 33;
	cr_assert_eq(parse(), SNI_INVALID, "session id over 32");
	build("pypi.org", 16384, 0);
	put16(hello + off_cs, 7);
	cr_assert_eq(parse(), SNI_INVALID, "odd cipher suites length");
	put16(hello + off_cs, 0xfffe);
	cr_assert_eq(parse(), SNI_INVALID, "cipher suites past the end");
	build("pypi.org", 16384, 0);
	put16(hello + off_ext, (uint16_t)(hello[off_ext] << 8 | hello[off_ext + 1]) + 1);
	cr_assert_eq(parse(), SNI_INVALID, "extensions longer than the hello");
	build("pypi.org", 16384, 0);
	put16(hello + off_sni_ext + 2, 0xfff0);
	cr_assert_eq(parse(), SNI_INVALID, "an extension past the end");
	build("pypi.org", 16384, 0);
	put16(hello + off_sni_ext + 4, 0x00ff);
	cr_assert_eq(parse(), SNI_INVALID, "server name list lying");
	build("pypi.org", 16384, 0);
	put16(hello + off_sni_ext + 7, 0x00ff);
	cr_assert_eq(parse(), SNI_INVALID, "name length past the list");
	build("pypi.org", 16384, 0);
	put16(hello + off_sni_ext + 7, 0);
	cr_assert_eq(parse(), SNI_INVALID, "empty name");
}

Test(net_sni, two_names_are_invalid)
{
	/* two host_name entries in one extension */
	uint8_t e[100];
	build("aaaaaaaaa.com", 16384, 0); /* same length as the replacement below */
	size_t n = sni_body(e, "a.com", "b.com");
	cr_assert_eq(n, 2 + 3 + 13, "the test swaps in a body of the same size");
	memcpy(hello + off_sni_ext + 4, e, n);
	cr_assert_eq(parse(), SNI_INVALID);
	/* two server_name extensions: turn the supported_groups extension into a second one */
	build("pypi.org", 16384, 0);
	size_t groups = off_sni_ext - 10;
	static const uint8_t second[] = { 0, 0, 0, 6, 0, 4, 0, 0, 1, 'x' };
	memcpy(hello + groups, second, sizeof(second));
	cr_assert_eq(parse(), SNI_INVALID);
}

Test(net_sni, names_that_are_not_host_names)
{
	static const char *const bad[] = { "exa mple.com", "a..b", "-a.com", "ex*.com", "\xc3\xa9.com" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		build(bad[i], 16384, 0);
		cr_assert_eq(parse(), SNI_INVALID, "%s", bad[i]);
	}
	build("pypi.org", 16384, 0);
	hello[off_sni_ext + 4 + 2 + 3 + 4] = 0; /* "pypi\0org" */
	cr_assert_eq(parse(), SNI_INVALID, "an embedded NUL");
	char longname[300];
	memset(longname, 'a', 254);
	for (int i = 60; i < 254; i += 61)
		longname[i] = '.';
	longname[254] = '\0';
	build(longname, 16384, 0);
	cr_assert_eq(parse(), SNI_INVALID, "254 characters");
	longname[253] = '\0';
	build(longname, 16384, 0);
	cr_assert_eq(parse(), SNI_FOUND, "253 is the longest");
}

Test(net_sni, a_hello_that_never_ends_gives_up_at_the_bound)
{
	/* claims a 16000-byte handshake, sent as records that never complete it */
	build("pypi.org", 16384, 0);
	hello[6] = 0, hello[7] = 0x3e, hello[8] = 0x80;
	put16(hello + 3, 16384);
	memset(hello + hlen, 0, sizeof(hello) - hlen);
	cr_assert_eq(parse_n(16000), SNI_NEED_MORE);
	cr_assert_eq(parse_n(SNI_MAX_INPUT), SNI_INVALID);
	cr_assert_eq(parse_n(sizeof(hello)), SNI_INVALID, "more than the bound is looked at only up to it");
	build("pypi.org", 16384, 0);
	hello[6] = 0, hello[7] = 0x40, hello[8] = 0;
	cr_assert_eq(parse(), SNI_INVALID, "a 16 KiB handshake cannot fit in the bound");
}

Test(net_sni, every_single_byte_corruption_is_survived)
{
	build("mutate.example.com", 40, 50);
	static uint8_t copy[sizeof(hello)];
	memcpy(copy, hello, hlen);
	for (size_t i = 0; i < hlen; i++)
		for (int bit = 0; bit < 8; bit++) {
			memcpy(hello, copy, hlen);
			hello[i] ^= (uint8_t)(1 << bit);
			enum sni_result rc = parse();
			if (rc == SNI_FOUND)
				cr_assert(strlen(info.name) > 0 && strlen(info.name) <= POLICY_NAME_MAX);
		}
}

/* --- HTTP --- */

static enum sni_result http(const char *s) { return sni_parse((const uint8_t *)s, strlen(s), &info); }

Test(net_sni, http_host)
{
	cr_assert_eq(http("GET / HTTP/1.1\r\nHost: Example.COM\r\nAccept: */*\r\n\r\n"), SNI_FOUND);
	cr_assert_eq(info.kind, SNI_KIND_HTTP);
	cr_assert_str_eq(info.name, "example.com");
	cr_assert_eq(info.port, 0);
	cr_assert_eq(http("POST /upload HTTP/1.0\r\nUser-Agent: x\r\nhost:\tpypi.org:8080 \r\n\r\nbody"), SNI_FOUND);
	cr_assert_str_eq(info.name, "pypi.org");
	cr_assert_eq(info.port, 8080);
	cr_assert_eq(http("GET / HTTP/1.1\r\nHOST: files.pythonhosted.org.:80\r\n\r\n"), SNI_FOUND);
	cr_assert_str_eq(info.name, "files.pythonhosted.org");
	cr_assert_eq(info.port, 80);
	cr_assert_eq(http("CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n"), SNI_FOUND);
	cr_assert_eq(http("GET / HTTP/1.1\r\nX-Host: evil.com\r\nHost: good.com\r\nX-Forwarded-Host: evil.com\r\n\r\n"),
		     SNI_FOUND);
	cr_assert_str_eq(info.name, "good.com");
	cr_assert_eq(http("GET / HTTP/1.1\r\nHost: a.com:\r\n\r\n"), SNI_FOUND, "an empty port is allowed");
}

Test(net_sni, http_split_at_every_byte)
{
	const char *req = "GET /simple/requests/ HTTP/1.1\r\nHost: pypi.org\r\nUser-Agent: pip/23\r\n\r\n";
	size_t n = strlen(req);
	for (size_t k = 0; k < n; k++)
		cr_assert_eq(sni_parse((const uint8_t *)req, k, &info), SNI_NEED_MORE, "prefix %zu", k);
	cr_assert_eq(sni_parse((const uint8_t *)req, n, &info), SNI_FOUND);
}

Test(net_sni, http_without_host)
{
	cr_assert_eq(http("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n"), SNI_NONE);
	cr_assert_eq(http("GET / HTTP/1.0\r\n\r\n"), SNI_NONE);
	cr_assert_eq(http("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), SNI_INVALID, "1.1 requires Host");
}

Test(net_sni, http_ambiguous_or_malformed)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.com\r\n\tb.com\r\n\r\n",   /* obs-fold */
		"GET / HTTP/1.1\r\nHost : a.com\r\n\r\n",	       /* space before ':' */
		"GET / HTTP/1.1\nHost: a.com\r\n\r\n",		       /* bare LF */
		"GET / HTTP/1.1\r\nHost: a.com\rX: y\r\n\r\n",	       /* bare CR */
		"GET / HTTP/1.1\r\nHost: a.com:99999\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.com:0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.com:8x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b.com\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: \r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.com\x01\r\n\r\n",
		"get / HTTP/1.1\r\nHost: a.com\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a.com\r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: a.com\r\n\r\n",
		"GET / x HTTP/1.1\r\nHost: a.com\r\n\r\n",
		"GET / HTTP/1.1 \r\nHost: a.com\r\n\r\n",
		"GET / HTTP/1.1\r\n: a.com\r\n\r\n",
		"GET / HTTP/1.1\r\nHost a.com\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GETTTTTTTTTTTTTTTTTTTTTTT / HTTP/1.1\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(http(bad[i]), SNI_INVALID, "accepted: %s", bad[i]);
	cr_assert_eq(http("GET / HTTP/1.1\r\nHost: a.com\n"), SNI_INVALID, "a bare LF is known before the end");
}

Test(net_sni, http_headers_that_never_end)
{
	static uint8_t big[SNI_MAX_INPUT + 100];
	const char *start = "GET / HTTP/1.1\r\nHost: pypi.org\r\nX: ";
	memcpy(big, start, strlen(start));
	memset(big + strlen(start), 'a', sizeof(big) - strlen(start));
	cr_assert_eq(sni_parse(big, SNI_MAX_INPUT - 1, &info), SNI_NEED_MORE);
	cr_assert_eq(sni_parse(big, SNI_MAX_INPUT, &info), SNI_INVALID);
	cr_assert_eq(sni_parse(big, sizeof(big), &info), SNI_INVALID);
	static struct sni_reader r;
	size_t taken;
	sni_reader_init(&r);
	cr_assert_eq(sni_reader_feed(&r, big, sizeof(big), &taken, &info), SNI_INVALID);
	cr_assert_eq(taken, SNI_MAX_INPUT, "the reader keeps no more than the bound");
}
