/*
 * HTTP/1.1 heads, parsed from a byte buffer that may hold a partial message, one message or several
 * pipelined ones.  Everything is bounded: the head by HTTP_HEAD_MAX, a body by HTTP_BODY_MAX, so a
 * client can never make padcell buffer more.  Lines may end in CRLF or a bare LF (RFC 9112 2.2).
 */
#include "vmm/api/http.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "vmm/err.h"

/*
 * The next line of buf from *pos, without its line ending.  1: a line; 0: no line end yet and
 * the head is still under HTTP_HEAD_MAX; -1: no line end within HTTP_HEAD_MAX.
 */
static int next_line(const char *buf, size_t len, size_t *pos, const char **line, size_t *linelen)
{
	size_t limit = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
	if (*pos >= limit)
		return len >= HTTP_HEAD_MAX ? -1 : 0;
	const char *nl = memchr(buf + *pos, '\n', limit - *pos);
	if (!nl)
		return len >= HTTP_HEAD_MAX ? -1 : 0;
	*line = buf + *pos;
	*linelen = (size_t)(nl - *line);
	if (*linelen && (*line)[*linelen - 1] == '\r')
		(*linelen)--;
	*pos = (size_t)(nl - buf) + 1;
	return 1;
}

/* RFC 9110 5.6.2: the characters of a token (method, header name). */
static bool is_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Splits "Name: value" (optional whitespace around the value).  false when it is not a header line. */
static bool split_header(const char *line, size_t len, const char **name, size_t *nlen, const char **val,
			 size_t *vlen)
{
	const char *colon = memchr(line, ':', len);
	if (!colon || colon == line)
		return false;
	for (const char *p = line; p < colon; p++)
		if (!is_tchar((unsigned char)*p))
			return false; /* includes whitespace before the colon (RFC 9112 5.1: reject) */
	*name = line;
	*nlen = (size_t)(colon - line);
	const char *v = colon + 1, *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	for (const char *p = v; p < end; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			return false;
	*val = v;
	*vlen = (size_t)(end - v);
	return true;
}

static bool name_is(const char *name, size_t nlen, const char *want)
{
	return nlen == strlen(want) && !strncasecmp(name, want, nlen);
}

/* Does a comma-separated header value hold this token (case-insensitive)? */
static bool list_has(const char *val, size_t vlen, const char *tok)
{
	size_t tlen = strlen(tok);
	const char *p = val, *end = val + vlen;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
			p++;
		const char *q = p;
		while (q < end && *q != ',')
			q++;
		const char *e = q;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) == tlen && !strncasecmp(p, tok, tlen))
			return true;
		p = q;
	}
	return false;
}

/* Content-Length: 1*DIGIT.  -1 malformed, -2 over the body limit, else 0. */
static int parse_length(const char *val, size_t vlen, size_t *out)
{
	if (!vlen)
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < vlen; i++) {
		if (val[i] < '0' || val[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(val[i] - '0');
		if (v > HTTP_BODY_MAX)
			return -2; /* stops before any overflow, whatever the digit count */
	}
	*out = (size_t)v;
	return 0;
}

/* "HTTP/1.0" -> 0, "HTTP/1.1" -> 1; another HTTP version -> -505; anything else -> -400. */
static int parse_version(const char *v, size_t len)
{
	if (len != 8 || strncmp(v, "HTTP/", 5) || !isdigit((unsigned char)v[5]) || v[6] != '.' ||
	    !isdigit((unsigned char)v[7]))
		return -400;
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return -505;
	return v[7] - '0';
}

/* METHOD SP request-target SP HTTP-version */
static int parse_request_line(const char *line, size_t len, struct http_request *req, int *minor, char *why,
			      size_t whylen)
{
	const char *sp1 = memchr(line, ' ', len);
	if (!sp1 || sp1 == line)
		return errorf(why, whylen, -400, "malformed request line");
	size_t mlen = (size_t)(sp1 - line);
	if (mlen >= HTTP_METHOD_MAX)
		return errorf(why, whylen, -501, "unknown method");
	for (size_t i = 0; i < mlen; i++)
		if (!is_tchar((unsigned char)line[i]))
			return errorf(why, whylen, -400, "malformed request line: bad method");
	const char *target = sp1 + 1, *end = line + len;
	const char *sp2 = memchr(target, ' ', (size_t)(end - target));
	if (!sp2 || sp2 == target)
		return errorf(why, whylen, -400, "malformed request line");
	int v = parse_version(sp2 + 1, (size_t)(end - sp2 - 1));
	if (v == -505)
		return errorf(why, whylen, -505, "only HTTP/1.0 and HTTP/1.1 are spoken here");
	if (v < 0)
		return errorf(why, whylen, -400, "malformed request line: bad HTTP version");
	*minor = v;
	for (const char *p = target; p < sp2; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return errorf(why, whylen, -400, "malformed request target");
	/* absolute-form (RFC 9112 3.2.2): keep the path after the authority. */
	if ((size_t)(sp2 - target) > 7 && !strncasecmp(target, "http://", 7)) {
		const char *slash = memchr(target + 7, '/', (size_t)(sp2 - target - 7));
		target = slash ? slash : sp2;
	}
	size_t plen = (size_t)(sp2 - target);
	const char *q = memchr(target, '?', plen);
	if (q)
		plen = (size_t)(q - target);
	const char *h = memchr(target, '#', plen);
	if (h)
		plen = (size_t)(h - target);
	if (plen == 0 && target == sp2) {
		target = "/"; /* "http://localhost" names the root */
		plen = 1;
	}
	if (plen == 0 || target[0] != '/')
		return errorf(why, whylen, -400, "malformed request target: expected a path starting with /");
	if (plen >= HTTP_PATH_MAX)
		return errorf(why, whylen, -414, "request path longer than %u bytes", HTTP_PATH_MAX - 1);
	memcpy(req->method, line, mlen);
	req->method[mlen] = '\0';
	memcpy(req->path, target, plen);
	req->path[plen] = '\0';
	return 0;
}

int http_parse_request_head(const char *buf, size_t len, struct http_request *req, char *why, size_t whylen)
{
	memset(req, 0, sizeof(*req));
	size_t pos = 0;
	const char *line;
	size_t llen;
	int rc;
	/* RFC 9112 2.2: empty lines before the request line (a client's stray CRLF) are ignored. */
	do {
		rc = next_line(buf, len, &pos, &line, &llen);
	} while (rc == 1 && llen == 0);
	if (rc < 0)
		return errorf(why, whylen, -400, "request line and headers are over %u bytes", HTTP_HEAD_MAX);
	if (rc == 0)
		return 0;
	int minor = 1;
	rc = parse_request_line(line, llen, req, &minor, why, whylen);
	if (rc)
		return rc;
	req->keep_alive = minor == 1;
	bool chunked = false;
	for (;;) {
		rc = next_line(buf, len, &pos, &line, &llen);
		if (rc < 0)
			return errorf(why, whylen, -400, "request line and headers are over %u bytes", HTTP_HEAD_MAX);
		if (rc == 0)
			return 0;
		if (llen == 0)
			break;
		if (line[0] == ' ' || line[0] == '\t')
			return errorf(why, whylen, -400, "folded header lines are not accepted");
		const char *name, *val;
		size_t nlen, vlen;
		if (!split_header(line, llen, &name, &nlen, &val, &vlen))
			return errorf(why, whylen, -400, "malformed header line");
		if (name_is(name, nlen, "Content-Length")) {
			size_t n = 0;
			int lr = parse_length(val, vlen, &n);
			if (lr == -2)
				return errorf(why, whylen, -413, "request body over %u bytes", HTTP_BODY_MAX);
			if (lr < 0)
				return errorf(why, whylen, -400, "malformed Content-Length");
			if (req->has_length && n != req->content_length)
				return errorf(why, whylen, -400, "conflicting Content-Length headers");
			req->content_length = n;
			req->has_length = true;
		} else if (name_is(name, nlen, "Transfer-Encoding")) {
			chunked = true;
		} else if (name_is(name, nlen, "Connection")) {
			if (list_has(val, vlen, "close"))
				req->keep_alive = false;
			else if (list_has(val, vlen, "keep-alive"))
				req->keep_alive = true;
		} else if (name_is(name, nlen, "Expect")) {
			if (vlen == 12 && !strncasecmp(val, "100-continue", 12))
				req->expect_continue = true;
		}
	}
	if (chunked)
		return errorf(why, whylen, -411, "Transfer-Encoding is not supported: send the body with Content-Length");
	req->head_len = pos;
	return 1;
}

int http_parse_response_head(const char *buf, size_t len, struct http_response *resp, char *why, size_t whylen)
{
	memset(resp, 0, sizeof(*resp));
	size_t pos = 0;
	const char *line;
	size_t llen;
	int rc = next_line(buf, len, &pos, &line, &llen);
	if (rc <= 0)
		return rc < 0 ? errorf(why, whylen, -1, "response head over %u bytes", HTTP_HEAD_MAX) : 0;
	/* HTTP/1.x SP 3DIGIT [SP reason] */
	int minor = llen >= 12 ? parse_version(line, 8) : -400;
	if (minor < 0 || line[8] != ' ' || !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
	    !isdigit((unsigned char)line[11]) || (llen > 12 && line[12] != ' '))
		return errorf(why, whylen, -1, "not an HTTP response");
	resp->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	resp->keep_alive = minor == 1;
	for (;;) {
		rc = next_line(buf, len, &pos, &line, &llen);
		if (rc < 0)
			return errorf(why, whylen, -1, "response head over %u bytes", HTTP_HEAD_MAX);
		if (rc == 0)
			return 0;
		if (llen == 0)
			break;
		const char *name, *val;
		size_t nlen, vlen;
		if (!split_header(line, llen, &name, &nlen, &val, &vlen))
			return errorf(why, whylen, -1, "malformed header line in the response");
		if (name_is(name, nlen, "Content-Length")) {
			if (parse_length(val, vlen, &resp->content_length))
				return errorf(why, whylen, -1, "bad Content-Length in the response");
		} else if (name_is(name, nlen, "Transfer-Encoding")) {
			return errorf(why, whylen, -1, "chunked responses are not expected");
		} else if (name_is(name, nlen, "Connection")) {
			if (list_has(val, vlen, "close"))
				resp->keep_alive = false;
		}
	}
	resp->head_len = pos;
	return 1;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

int http_format_response(char *out, size_t outlen, int status, const char *body, bool keep_alive)
{
	int n;
	if (body)
		n = snprintf(out, outlen,
			     "HTTP/1.1 %d %s\r\nServer: padcell\r\nConnection: %s\r\n"
			     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			     status, http_status_text(status), keep_alive ? "keep-alive" : "close", strlen(body), body);
	else
		n = snprintf(out, outlen, "HTTP/1.1 %d %s\r\nServer: padcell\r\nConnection: %s\r\n\r\n", status,
			     http_status_text(status), keep_alive ? "keep-alive" : "close");
	if (n < 0 || (size_t)n >= outlen)
		return -ENOSPC;
	return n;
}
