/* vmm/net/httpreq: request framing on whole streams and on every split, each refusal, chunked bodies, Upgrade. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "vmm/net/httpreq.h"

static struct policy pol;
static struct httpreq h;

static void setup(void)
{
	policy_init(&pol);
	const char *r[] = { "web.test:80", "*.cdn.test:80" };
	char err[256];
	cr_assert_eq(policy_replace(&pol, r, 2, false, err, sizeof(err)), 0, "%s", err);
	httpreq_init(&h);
}

static void teardown(void)
{
	policy_destroy(&pol);
}

TestSuite(net_httpreq, .init = setup, .fini = teardown);

/*
 * Feeds s as a proxy would: the bytes arrive in pieces of `step` (0: all at once); after each,
 * what was not cleared is offered again with the new bytes.  Returns the bytes cleared in all.
 */
static size_t feed(const char *s, size_t len, size_t step)
{
	size_t have = 0, clear = 0;
	while (have < len) {
		size_t k = step && len - have > step ? step : len - have;
		have += k;
		clear += httpreq_feed(&h, &pol, 80, (const uint8_t *)s + clear, have - clear);
		cr_assert_leq(clear, have);
		if (h.state == HTTPREQ_REFUSED)
			break;
	}
	return clear;
}

static size_t feed_str(const char *s)
{
	return feed(s, strlen(s), 0);
}

/* Refused, with why containing `what`, and nothing of the offending request cleared (clear == ok_prefix). */
static void expect_refused(const char *s, size_t ok_prefix, const char *what)
{
	httpreq_init(&h);
	size_t c = feed_str(s);
	cr_assert_eq(h.state, HTTPREQ_REFUSED, "not refused: %s", s);
	cr_assert(strstr(h.why, what), "why '%s' lacks '%s'", h.why, what);
	cr_assert_eq(c, ok_prefix, "cleared %zu, expected %zu, for %s", c, ok_prefix, s);
}

#define REQ1 "GET /a HTTP/1.1\r\nHost: web.test\r\nUser-Agent: t\r\n\r\n"
#define REQ2 "GET /b HTTP/1.1\r\nHost: WEB.test:80\r\n\r\n"
#define EVIL "GET /c HTTP/1.1\r\nHost: evil.test\r\n\r\n"

Test(net_httpreq, two_requests_for_an_allowed_host_pass_whole)
{
	const char *s = REQ1 REQ2;
	cr_assert_eq(feed_str(s), strlen(s));
	cr_assert_eq(h.state, HTTPREQ_HEAD);
	cr_assert_eq(h.requests, 2);
	cr_assert_str_eq(h.host.name, "web.test");
	cr_assert(strstr(h.decision.why, "web.test:80"), "%s", h.decision.why);
}

Test(net_httpreq, a_foreign_host_on_a_later_request_is_refused_with_none_of_it_cleared)
{
	expect_refused(REQ1 EVIL, strlen(REQ1), "sni mismatch: HTTP Host 'evil.test' on port 80");
	cr_assert(strstr(h.why, "request 2"), "%s", h.why);
	/* a wildcard allows other names below it, as for the first request */
	httpreq_init(&h);
	const char *s = REQ1 "GET / HTTP/1.1\r\nHost: img.cdn.test\r\n\r\n";
	cr_assert_eq(feed_str(s), strlen(s));
}

Test(net_httpreq, a_head_is_cleared_only_when_complete)
{
	cr_assert_eq(feed(REQ1, strlen(REQ1) - 1, 0), 0, "one byte short: nothing goes");
	cr_assert_eq(h.state, HTTPREQ_HEAD);
	cr_assert_eq(httpreq_feed(&h, &pol, 80, (const uint8_t *)REQ1, strlen(REQ1)), strlen(REQ1));
}

Test(net_httpreq, every_split_of_a_pipelined_stream_gives_the_same_answer)
{
	const char *ok = "POST /up HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\n\r\nhello"
			 "PUT /c HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n" REQ2;
	const char *bad = REQ1 "POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 2\r\n\r\nok" EVIL;
	size_t badok = strlen(bad) - strlen(EVIL);
	for (size_t step = 1; step <= strlen(ok); step++) {
		httpreq_init(&h);
		cr_assert_eq(feed(ok, strlen(ok), step), strlen(ok), "step %zu: %s", step, h.why);
		cr_assert_eq(h.requests, 3, "step %zu", step);
		cr_assert_eq(h.state, HTTPREQ_HEAD);
		httpreq_init(&h);
		cr_assert_eq(feed(bad, strlen(bad), step), badok, "step %zu", step);
		cr_assert_eq(h.state, HTTPREQ_REFUSED, "step %zu", step);
	}
}

Test(net_httpreq, a_body_that_looks_like_a_request_is_only_a_body)
{
	char s[512];
	int n = snprintf(s, sizeof(s), "POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: %zu\r\n\r\n%s" REQ2,
			 strlen(EVIL), EVIL);
	cr_assert_eq(feed(s, (size_t)n, 0), (size_t)n, "%s", h.why);
	cr_assert_eq(h.requests, 2);
	/* the same in a chunk */
	httpreq_init(&h);
	n = snprintf(s, sizeof(s), "POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: Chunked\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n" EVIL,
		     strlen(EVIL), EVIL);
	cr_assert_eq(feed(s, (size_t)n, 0), (size_t)n - strlen(EVIL), "the request after the chunks is checked");
	cr_assert_eq(h.state, HTTPREQ_REFUSED);
}

Test(net_httpreq, chunked_bodies_with_extensions_and_trailers)
{
	const char *s = "POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n"
			"A ; name=\"v\"\r\n0123456789\r\n1;a;b=c\r\nx\r\n000\r\nTrailer-One: 1\r\nTrailer-Two: 2\r\n\r\n" REQ2;
	cr_assert_eq(feed_str(s), strlen(s), "%s", h.why);
	cr_assert_eq(h.requests, 2);
}

Test(net_httpreq, ambiguous_framing_is_refused)
{
	const char *p = "POST / HTTP/1.1\r\nHost: web.test\r\n";
	char s[512];
	struct {
		const char *rest, *why;
	} cases[] = {
		{ "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding" },
		{ "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "both Content-Length and Transfer-Encoding" },
		{ "Content-Length: 3\r\nContent-Length: 3\r\n\r\n", "several Content-Length" },
		{ "Content-Length: 3, 3\r\n\r\n", "malformed Content-Length" },
		{ "Content-Length: -1\r\n\r\n", "malformed Content-Length" },
		{ "Content-Length: +3\r\n\r\n", "malformed Content-Length" },
		{ "Content-Length:\r\n\r\n", "malformed Content-Length" },
		{ "Content-Length: 1234567890123456789\r\n\r\n", "malformed Content-Length" },
		{ "Transfer-Encoding: gzip, chunked\r\n\r\n", "only chunked" },
		{ "Transfer-Encoding: identity\r\n\r\n", "only chunked" },
		{ "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "several Transfer-Encoding" },
		{ "X-A: 1\r\n folded\r\n\r\n", "obs-fold" },
		{ "X-A: 1\r\n\tfolded\r\n\r\n", "obs-fold" },
		{ "X-A: a\rb\r\n\r\n", "bare CR" },
		{ "X-A: a\nb\r\n\r\n", "bare LF" },
		{ "X-A: a\0b\r\n\r\n", "NUL" },
		{ "X-A: a\x01" "b\r\n\r\n", "control byte" },
		{ "X-A : 1\r\n\r\n", "malformed header line" },
		{ ": 1\r\n\r\n", "malformed header line" },
		{ "Host: web.test\r\n\r\n", "two Host headers" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* the NUL case's length counted by hand: "X-A: a", NUL, "b", CRLF CRLF */
		size_t rl = strstr(cases[i].why, "NUL") ? 12 : strlen(cases[i].rest);
		size_t pl = strlen(REQ1) + strlen(p);
		memcpy(s, REQ1, strlen(REQ1));
		memcpy(s + strlen(REQ1), p, strlen(p));
		memcpy(s + pl, cases[i].rest, rl);
		httpreq_init(&h);
		cr_assert_eq(feed(s, pl + rl, 0), strlen(REQ1), "case %zu: %s", i, h.why);
		cr_assert_eq(h.state, HTTPREQ_REFUSED, "case %zu", i);
		cr_assert(strstr(h.why, cases[i].why), "case %zu: '%s' lacks '%s'", i, h.why, cases[i].why);
	}
}

Test(net_httpreq, bad_chunks_are_refused)
{
	const char *p = "POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n";
	struct {
		const char *rest, *why;
	} cases[] = {
		{ "g\r\n", "malformed chunk size" },
		{ "\r\n", "malformed chunk size" },
		{ "-1\r\n", "malformed chunk size" },
		{ "3 \r\nabc\r\n", "malformed chunk size" },
		{ "3x\r\nabc\r\n", "malformed chunk size" },
		{ "0x3\r\nabc\r\n", "malformed chunk size" },
		{ "10000000000000000\r\n", "too large" },
		{ "3\r\nabcX\r\n", "not followed by CRLF" },
		{ "3\r\nabc\rX", "not followed by CRLF" },
		{ "3;a\rb\r\n", "bare CR" },
		{ "0\r\nX: 1\r\n folded\r\n\r\n", "obs-fold" },
		{ "0\r\nX: a\0\r\n\r\n", "NUL" },
	};
	char s[512];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* "0", CRLF, "X: a", NUL, CRLF CRLF */
		size_t rl = strstr(cases[i].why, "NUL") ? 12 : strlen(cases[i].rest);
		memcpy(s, p, strlen(p));
		memcpy(s + strlen(p), cases[i].rest, rl);
		httpreq_init(&h);
		feed(s, strlen(p) + rl, 0);
		cr_assert_eq(h.state, HTTPREQ_REFUSED, "case %zu", i);
		cr_assert(strstr(h.why, cases[i].why), "case %zu: '%s' lacks '%s'", i, h.why, cases[i].why);
	}
	/* a chunk-size line without end is cut at its bound */
	char big[HTTPREQ_LINE_MAX + 200];
	int n = snprintf(big, sizeof(big), "%s1;", p);
	memset(big + n, 'e', sizeof(big) - (size_t)n);
	httpreq_init(&h);
	feed(big, sizeof(big), 0);
	cr_assert_eq(h.state, HTTPREQ_REFUSED);
	cr_assert(strstr(h.why, "chunk-size line over"), "%s", h.why);
}

Test(net_httpreq, no_host_connect_and_bad_request_lines_are_refused)
{
	expect_refused(REQ1 "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", strlen(REQ1), "no Host header");
	expect_refused(REQ1 "GET / HTTP/1.0\r\n\r\n", strlen(REQ1), "no Host header");
	expect_refused("CONNECT evil.test:443 HTTP/1.1\r\nHost: web.test\r\n\r\n", 0, "CONNECT");
	expect_refused(REQ1 "GET / HTTP/2.0\r\nHost: web.test\r\n\r\n", strlen(REQ1), "not an HTTP/1.x request line");
	expect_refused(REQ1 "GET /a b HTTP/1.1\r\nHost: web.test\r\n\r\n", strlen(REQ1), "not an HTTP/1.x request line");
	expect_refused(REQ1 "get / HTTP/1.1\r\nHost: web.test\r\n\r\n", strlen(REQ1), "not an HTTP/1.x request line");
	expect_refused(REQ1 "GET / HTTP/1.1\r\nHost: evil.test@web.test\r\n\r\n", strlen(REQ1), "malformed Host");
	expect_refused(REQ1 "\n", strlen(REQ1), "bare LF");
	/* an empty line between requests is what servers skip: it passes */
	httpreq_init(&h);
	cr_assert_eq(feed_str(REQ1 "\r\n" REQ2), strlen(REQ1 "\r\n" REQ2));
}

Test(net_httpreq, an_endless_head_is_refused_at_the_bound)
{
	static char s[HTTPREQ_HEAD_MAX + 100];
	int n = snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: web.test\r\nX: ");
	memset(s + n, 'a', sizeof(s) - (size_t)n);
	cr_assert_eq(feed(s, sizeof(s), 1000), 0);
	cr_assert_eq(h.state, HTTPREQ_REFUSED);
	cr_assert(strstr(h.why, "head over"), "%s", h.why);
}

Test(net_httpreq, upgrade_waits_for_the_servers_answer)
{
	const char *up = "GET /ws HTTP/1.1\r\nHost: web.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
	char s[512];
	snprintf(s, sizeof(s), "%s%s", up, "\x81\x05hello");
	cr_assert_eq(feed_str(s), strlen(up), "the bytes after an Upgrade request wait");
	cr_assert_eq(h.state, HTTPREQ_UPGRADE_WAIT);
	httpreq_server_began(&h, (const uint8_t *)"HTTP/1.1 101 Switching", HTTPREQ_STATUS_PEEK);
	cr_assert_eq(h.state, HTTPREQ_PASS);
	cr_assert_eq(httpreq_feed(&h, &pol, 80, (const uint8_t *)s + strlen(up), 7), 7, "switched: everything passes");

	/* declined: the stream stays HTTP and the next request is checked */
	httpreq_init(&h);
	snprintf(s, sizeof(s), "%s%s", up, EVIL);
	cr_assert_eq(feed_str(s), strlen(up));
	httpreq_server_began(&h, (const uint8_t *)"HTTP/1.1 200 OK\r\n", HTTPREQ_STATUS_PEEK);
	cr_assert_eq(h.state, HTTPREQ_HEAD);
	cr_assert_eq(httpreq_feed(&h, &pol, 80, (const uint8_t *)s + strlen(up), strlen(EVIL)), 0);
	cr_assert_eq(h.state, HTTPREQ_REFUSED);

	/* only the first request may ask: a later one's answer cannot be told from an earlier body */
	snprintf(s, sizeof(s), "%s%s", REQ1, up);
	expect_refused(s, strlen(REQ1), "Upgrade after the first request");
}
