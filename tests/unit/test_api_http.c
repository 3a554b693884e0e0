/* vmm/api/http.c: request and response heads from split, pipelined, oversized and malformed input. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/api/http.h"

static int parse(const char *s, struct http_request *r)
{
	char why[256];
	return http_parse_request_head(s, strlen(s), r, why, sizeof(why));
}

Test(http_request, simple_get)
{
	struct http_request r;
	const char *s = "GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n";
	cr_assert_eq(parse(s, &r), 1);
	cr_assert_str_eq(r.method, "GET");
	cr_assert_str_eq(r.path, "/");
	cr_assert_eq(r.head_len, strlen(s));
	cr_assert(!r.has_length);
	cr_assert_eq(r.content_length, 0);
	cr_assert(r.keep_alive);
	cr_assert(!r.expect_continue);
}

Test(http_request, every_split_point_waits_for_more)
{
	const char *s = "PUT /snapshot/create HTTP/1.1\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}";
	size_t head = strlen(s) - 2;
	struct http_request r;
	char why[256];
	for (size_t n = 0; n < head; n++)
		cr_assert_eq(http_parse_request_head(s, n, &r, why, sizeof(why)), 0, "prefix of %zu bytes", n);
	cr_assert_eq(http_parse_request_head(s, head, &r, why, sizeof(why)), 1);
	cr_assert_eq(r.head_len, head);
	cr_assert(r.has_length);
	cr_assert_eq(r.content_length, 2);
	cr_assert_str_eq(r.path, "/snapshot/create");
}

Test(http_request, pipelined_requests_parse_one_after_another)
{
	const char *s = "PATCH /vm HTTP/1.1\r\nContent-Length: 18\r\n\r\n{\"state\":\"Paused\"}"
			"GET / HTTP/1.1\r\n\r\n";
	struct http_request r;
	cr_assert_eq(parse(s, &r), 1);
	cr_assert_str_eq(r.method, "PATCH");
	size_t used = r.head_len + r.content_length;
	cr_assert_eq(memcmp(s + r.head_len, "{\"state\":\"Paused\"}", 18), 0);
	cr_assert_eq(parse(s + used, &r), 1);
	cr_assert_str_eq(r.method, "GET");
	cr_assert_eq(used + r.head_len, strlen(s));
}

Test(http_request, bare_lf_and_leading_empty_lines)
{
	struct http_request r;
	cr_assert_eq(parse("\r\n\nGET /vm HTTP/1.1\nContent-Length: 0\n\n", &r), 1);
	cr_assert_str_eq(r.path, "/vm");
	cr_assert(r.has_length);
}

Test(http_request, target_forms)
{
	struct http_request r;
	cr_assert_eq(parse("GET /vm?x=1#f HTTP/1.1\r\n\r\n", &r), 1);
	cr_assert_str_eq(r.path, "/vm");
	cr_assert_eq(parse("GET http://localhost/snapshot/create HTTP/1.1\r\n\r\n", &r), 1);
	cr_assert_str_eq(r.path, "/snapshot/create");
	cr_assert_eq(parse("GET http://localhost HTTP/1.1\r\n\r\n", &r), 1);
	cr_assert_str_eq(r.path, "/");
	cr_assert_eq(parse("GET vm HTTP/1.1\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET * HTTP/1.1\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET /a\x01 HTTP/1.1\r\n\r\n", &r), -400);

	char *big = malloc(HTTP_PATH_MAX + 64);
	strcpy(big, "GET /");
	memset(big + 5, 'a', HTTP_PATH_MAX);
	strcpy(big + 5 + HTTP_PATH_MAX, " HTTP/1.1\r\n\r\n");
	cr_assert_eq(parse(big, &r), -414);
	free(big);
}

Test(http_request, bad_request_lines)
{
	struct http_request r;
	cr_assert_eq(parse("GET / HTTP/2.0\r\n\r\n", &r), -505);
	cr_assert_eq(parse("GET / HTTP/1.2\r\n\r\n", &r), -505);
	cr_assert_eq(parse("GET / HTTP/1.1x\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET / FTP/1.1\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET /\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET  / HTTP/1.1\r\n\r\n", &r), -400);
	cr_assert_eq(parse(" GET / HTTP/1.1\r\n\r\n", &r), -400);
	cr_assert_eq(parse("G(T / HTTP/1.1\r\n\r\n", &r), -400);
	cr_assert_eq(parse("VERYLONGMETHODNAME / HTTP/1.1\r\n\r\n", &r), -501);
	cr_assert_eq(parse("hello\r\n\r\n", &r), -400);
}

Test(http_request, bad_headers)
{
	struct http_request r;
	cr_assert_eq(parse("GET / HTTP/1.1\r\nNoColon\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost : x\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\n: x\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", &r), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", &r), -400);
}

Test(http_request, content_length_rules)
{
	struct http_request r;
	cr_assert_eq(parse("PUT / HTTP/1.1\r\ncontent-length:  65536 \r\n\r\n", &r), 1);
	cr_assert_eq(r.content_length, HTTP_BODY_MAX);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", &r), -413);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n", &r), -413);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n", &r), -400);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", &r), -400);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length:\r\n\r\n", &r), -400);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", &r), -400);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", &r), -400);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", &r), 1);
	cr_assert_eq(r.content_length, 3);
	/* chunked bodies are not spoken */
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r), -411);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", &r), -411);
}

Test(http_request, oversize_head)
{
	struct http_request r;
	char why[256];
	size_t n = HTTP_HEAD_MAX + 100;
	char *s = malloc(n);
	/* A head that never ends: refused once HTTP_HEAD_MAX bytes are in, not before. */
	int k = snprintf(s, n, "GET / HTTP/1.1\r\nX-Pad: ");
	memset(s + k, 'a', n - k);
	cr_assert_eq(http_parse_request_head(s, HTTP_HEAD_MAX - 1, &r, why, sizeof(why)), 0);
	cr_assert_eq(http_parse_request_head(s, HTTP_HEAD_MAX, &r, why, sizeof(why)), -400);
	cr_assert(strstr(why, "8192"), "%s", why);
	/* Many short header lines add up the same way. */
	size_t off = (size_t)snprintf(s, n, "GET / HTTP/1.1\r\n");
	while (off + 6 < n) {
		memcpy(s + off, "A: b\r\n", 6);
		off += 6;
	}
	cr_assert_eq(http_parse_request_head(s, off, &r, why, sizeof(why)), -400);
	/* A head of exactly HTTP_HEAD_MAX bytes is fine. */
	k = snprintf(s, n, "GET / HTTP/1.1\r\nX-Pad: ");
	memset(s + k, 'a', HTTP_HEAD_MAX - k - 4);
	memcpy(s + HTTP_HEAD_MAX - 4, "\r\n\r\n", 4);
	cr_assert_eq(http_parse_request_head(s, HTTP_HEAD_MAX, &r, why, sizeof(why)), 1);
	cr_assert_eq(r.head_len, HTTP_HEAD_MAX);
	free(s);
}

Test(http_request, connection_and_expect)
{
	struct http_request r;
	cr_assert_eq(parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", &r), 1);
	cr_assert(!r.keep_alive);
	cr_assert_eq(parse("GET / HTTP/1.0\r\n\r\n", &r), 1);
	cr_assert(!r.keep_alive);
	cr_assert_eq(parse("GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n", &r), 1);
	cr_assert(r.keep_alive);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", &r), 1);
	cr_assert(r.expect_continue);
}

Test(http_response, heads)
{
	struct http_response r;
	char why[128];
	const char *s = "HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n";
	cr_assert_eq(http_parse_response_head(s, strlen(s), &r, why, sizeof(why)), 1);
	cr_assert_eq(r.status, 204);
	cr_assert_eq(r.content_length, 0);
	cr_assert(r.keep_alive);
	s = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 20\r\n\r\n";
	cr_assert_eq(http_parse_response_head(s, strlen(s) - 1, &r, why, sizeof(why)), 0);
	cr_assert_eq(http_parse_response_head(s, strlen(s), &r, why, sizeof(why)), 1);
	cr_assert_eq(r.status, 400);
	cr_assert_eq(r.content_length, 20);
	cr_assert(!r.keep_alive);
	s = "SSH-2.0-OpenSSH\r\n";
	cr_assert_eq(http_parse_response_head(s, strlen(s), &r, why, sizeof(why)), -1);
	s = "HTTP/1.1 2000 OK\r\n\r\n";
	cr_assert_eq(http_parse_response_head(s, strlen(s), &r, why, sizeof(why)), -1);
	s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	cr_assert_eq(http_parse_response_head(s, strlen(s), &r, why, sizeof(why)), -1);
}

Test(http_response, format_and_parse_back)
{
	char out[512];
	int n = http_format_response(out, sizeof(out), 400, "{\"fault_message\":\"x\"}", false);
	cr_assert_gt(n, 0);
	struct http_response r;
	char why[128];
	cr_assert_eq(http_parse_response_head(out, (size_t)n, &r, why, sizeof(why)), 1);
	cr_assert_eq(r.status, 400);
	cr_assert(!r.keep_alive);
	cr_assert_eq(r.content_length, 21);
	cr_assert_str_eq(out + r.head_len, "{\"fault_message\":\"x\"}");
	cr_assert(strstr(out, "Content-Type: application/json\r\n"));

	n = http_format_response(out, sizeof(out), 204, NULL, true);
	cr_assert_eq(http_parse_response_head(out, (size_t)n, &r, why, sizeof(why)), 1);
	cr_assert_eq(r.status, 204);
	cr_assert_eq(r.head_len, (size_t)n);
	cr_assert_null(strstr(out, "Content-Length"), "a 204 carries no Content-Length");

	cr_assert_eq(http_format_response(out, 20, 200, "{}", true), -ENOSPC);
	cr_assert_str_eq(http_status_text(413), "Payload Too Large");
}
