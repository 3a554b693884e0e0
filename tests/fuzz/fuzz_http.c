/* Fuzzes the HTTP/1.1 head parsers (vmm/api/http.c): request and response heads, pipelined, from raw bytes. */
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/api/http.h"

/* The parser's promises, checked on every head it accepts. */
static void check_request(const struct http_request *r, size_t len)
{
	if (r->head_len == 0 || r->head_len > len || r->head_len > HTTP_HEAD_MAX)
		abort();
	if (!memchr(r->method, '\0', sizeof(r->method)) || !memchr(r->path, '\0', sizeof(r->path)))
		abort();
	if (r->path[0] != '/' || !r->method[0])
		abort();
	if (r->content_length > HTTP_BODY_MAX || (!r->has_length && r->content_length))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes: ASan catches any read past the end. */
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	char why[128];

	/* The server's loop: parse, skip the body, parse the next pipelined request. */
	size_t off = 0;
	for (int n = 0; n < 64 && off < size; n++) {
		struct http_request req;
		int rc = http_parse_request_head(buf + off, size - off, &req, why, sizeof(why));
		if (rc < 0 && (!why[0] || rc < -505))
			abort();
		if (rc != 1)
			break;
		check_request(&req, size - off);
		if (req.content_length > size - off - req.head_len)
			break;
		off += req.head_len + req.content_length;
	}

	struct http_response resp;
	int rc = http_parse_response_head(buf, size, &resp, why, sizeof(why));
	if (rc == 1 && (resp.head_len == 0 || resp.head_len > size || resp.status < 0 || resp.status > 999))
		abort();

	/* The writer on whatever the input says, into a buffer that may be too small. */
	if (size >= 3) {
		char out[256];
		char body[64];
		size_t blen = size - 3 < sizeof(body) - 1 ? size - 3 : sizeof(body) - 1;
		memcpy(body, buf + 3, blen);
		body[blen] = '\0';
		int status = (unsigned char)buf[0] | ((unsigned char)buf[1] & 3) << 8;
		size_t cap = (unsigned char)buf[2];
		int n = http_format_response(out, cap, status, buf[1] & 4 ? NULL : body, buf[1] & 8);
		if (n >= 0 && (size_t)n >= cap)
			abort();
	}
	free(buf);
	return 0;
}
