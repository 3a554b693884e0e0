/* A bounded HTTP/1.1 message parser and response writer for the control socket and its client. */
#ifndef PADCELL_HTTP_H
#define PADCELL_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEAD_MAX   8192u  /* request line + headers + the blank line */
#define HTTP_BODY_MAX   65536u /* Content-Length above this: 413 */
#define HTTP_METHOD_MAX 16u
#define HTTP_PATH_MAX   1024u

struct http_request {
	char method[HTTP_METHOD_MAX];
	char path[HTTP_PATH_MAX]; /* the request target, without a query string */
	size_t head_len;          /* bytes of request line and headers, the blank line included */
	size_t content_length;    /* 0 when has_length is false */
	bool has_length;          /* a Content-Length header was given */
	bool keep_alive;          /* HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with keep-alive */
	bool expect_continue;     /* "Expect: 100-continue" */
};

/*
 * Parses the head of the request at the start of buf[0..len).  Returns 0 when the head is not
 * complete yet (and still within HTTP_HEAD_MAX), 1 with *req filled when it is, or a negative
 * HTTP status (-400, -411, -413, -501, -505) with why set: the connection cannot go on.
 * A body is left to the caller: it is the content_length bytes after head_len.
 */
int http_parse_request_head(const char *buf, size_t len, struct http_request *req, char *why, size_t whylen);

struct http_response {
	int status;
	size_t head_len;
	size_t content_length; /* 0 without the header (a 204, say) */
	bool keep_alive;
};

/* The same for a response (the client's side): 0 more needed, 1 complete, -1 malformed. */
int http_parse_response_head(const char *buf, size_t len, struct http_response *resp, char *why, size_t whylen);

/* The reason phrase for a status code ("Bad Request"); "Unknown" for codes padcell never sends. */
const char *http_status_text(int status);

/*
 * Writes a whole response into out: status line, Server, Connection, and for a body
 * Content-Type: application/json and Content-Length.  Returns the length, or -ENOSPC when it
 * does not fit.  body may be NULL (no body, as a 204 has none).
 */
int http_format_response(char *out, size_t outlen, int status, const char *body, bool keep_alive);

#endif
