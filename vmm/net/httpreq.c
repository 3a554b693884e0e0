/* An incremental HTTP/1.x request framer: heads kept whole and checked, bodies by Content-Length or chunks, strict about ambiguity. */
#include "vmm/net/httpreq.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void httpreq_init(struct httpreq *h)
{
	memset(h, 0, sizeof(*h));
	h->state = HTTPREQ_HEAD;
}

static size_t refuse(struct httpreq *h, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->why, sizeof(h->why), fmt, ap);
	va_end(ap);
	h->state = HTTPREQ_REFUSED;
	return 0;
}

/* RFC 9110 5.6.2 tchar */
static bool tchar(uint8_t c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The offset just past the first occurrence of pat (plen bytes) in data[0..n), searched from *from; 0 if none. */
static size_t find_end(const uint8_t *data, size_t n, size_t *from, const char *pat, size_t plen)
{
	size_t start = *from >= plen - 1 ? *from - (plen - 1) : 0;
	if (n >= plen)
		for (size_t i = start; i + plen <= n; i++)
			if (memcmp(data + i, pat, plen) == 0)
				return i + plen;
	*from = n;
	return 0;
}

/*
 * Control bytes in a head or trailer block b[0..n) (n through its last CRLF): only HTAB, and CR
 * and LF as a pair.  The server behind padcell reads the same bytes: a bare CR or LF that padcell
 * took for text and the server for a line end (or the reverse) would hide a header from one of them.
 */
static const char *block_bad_byte(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = b[i];
		if (c == 0)
			return "a NUL byte";
		if (c == '\r' && (i + 1 == n || b[i + 1] != '\n'))
			return "a bare CR";
		if (c == '\n' && (i == 0 || b[i - 1] != '\r'))
			return "a bare LF";
		if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
			return "a control byte";
	}
	return NULL;
}

/* One field line (no CRLF): name ':' value; value trimmed of OWS.  NULL if malformed (obs-fold included). */
static const char *field_split(const uint8_t *line, size_t n, size_t *name_len, const uint8_t **val, size_t *val_len)
{
	if (n && (line[0] == ' ' || line[0] == '\t'))
		return "an obs-fold (a line starting with white space)";
	size_t k = 0;
	while (k < n && tchar(line[k]))
		k++;
	if (k == 0 || k == n || line[k] != ':')
		return "a malformed header line (no name, or white space before ':')";
	size_t a = k + 1, b = n;
	while (a < b && (line[a] == ' ' || line[a] == '\t'))
		a++;
	while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t'))
		b--;
	*name_len = k;
	*val = line + a;
	*val_len = b - a;
	return NULL;
}

static bool name_is(const uint8_t *line, size_t k, const char *name)
{
	return strlen(name) == k && strncasecmp((const char *)line, name, k) == 0;
}

/* Where the framer goes once a request's body (if any) is through. */
static void body_done(struct httpreq *h)
{
	h->state = h->upgrade ? HTTPREQ_UPGRADE_WAIT : HTTPREQ_HEAD;
	h->upgrade = false;
	h->scanned = 0;
}

/* A complete head data[0..len) (through its empty line): checked, then the body's framing set. */
static size_t head_check(struct httpreq *h, const struct policy *pol, uint16_t port, const uint8_t *data, size_t len)
{
	unsigned req = h->requests + 1;
	const char *bad = block_bad_byte(data, len);
	if (bad)
		return refuse(h, "request %u: %s in the head", req, bad);

	/* request line: METHOD SP target SP HTTP/1.x CRLF */
	const uint8_t *eol = memmem(data, len, "\r\n", 2);
	size_t rl = (size_t)(eol - data), m = 0;
	while (m < rl && m < 20 && isupper(data[m]))
		m++;
	const uint8_t *sp2 = m && m < rl && data[m] == ' ' ? memchr(data + m + 1, ' ', rl - m - 1) : NULL;
	if (!sp2 || sp2 == data + m + 1 || (size_t)(eol - sp2) != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return refuse(h, "request %u: not an HTTP/1.x request line", req);
	bool http11 = sp2[8] == '1';
	if (m == 7 && memcmp(data, "CONNECT", 7) == 0)
		return refuse(h, "request %u: CONNECT (a tunnel to any host) is refused", req);

	int hosts = 0, lengths = 0, encodings = 0;
	bool chunked = false, upgrade = false;
	uint64_t clen = 0;
	struct sni_info host;
	memset(&host, 0, sizeof(host));
	for (size_t p = rl + 2; p + 2 < len;) {
		const uint8_t *le = memmem(data + p, len - p, "\r\n", 2);
		size_t n = (size_t)(le - (data + p)), k, vlen;
		const uint8_t *line = data + p, *v;
		const char *err = field_split(line, n, &k, &v, &vlen);
		if (err)
			return refuse(h, "request %u: %s", req, err);
		if (name_is(line, k, "host")) {
			if (++hosts > 1)
				return refuse(h, "request %u: two Host headers", req);
			if (sni_parse_host(v, vlen, &host) != SNI_FOUND)
				return refuse(h, "request %u: a malformed Host", req);
		} else if (name_is(line, k, "content-length")) {
			if (++lengths > 1)
				return refuse(h, "request %u: several Content-Length headers", req);
			if (vlen == 0 || vlen > 18)
				return refuse(h, "request %u: a malformed Content-Length", req);
			for (size_t i = 0; i < vlen; i++) {
				if (!isdigit(v[i]))
					return refuse(h, "request %u: a malformed Content-Length", req);
				clen = clen * 10 + (uint64_t)(v[i] - '0');
			}
		} else if (name_is(line, k, "transfer-encoding")) {
			if (++encodings > 1)
				return refuse(h, "request %u: several Transfer-Encoding headers", req);
			if (vlen != 7 || strncasecmp((const char *)v, "chunked", 7) != 0)
				return refuse(h, "request %u: Transfer-Encoding '%.*s' (only chunked is framed)", req,
					      (int)(vlen > 64 ? 64 : vlen), (const char *)v);
			chunked = true;
		} else if (name_is(line, k, "upgrade")) {
			upgrade = true;
		}
		p += n + 2;
	}
	if (!hosts)
		return refuse(h, "request %u: no Host header", req);
	if (lengths && encodings)
		return refuse(h, "request %u: both Content-Length and Transfer-Encoding", req);
	if (chunked && !http11)
		return refuse(h, "request %u: Transfer-Encoding in an HTTP/1.0 request", req);
	/*
	 * The server's answer to the first request is the first thing it sends, so only there can a
	 * 101 be told apart from a body that contains those bytes.
	 */
	if (upgrade && req > 1)
		return refuse(h, "request %u: Upgrade after the first request (only a connection's first request may "
				 "switch protocols)", req);
	if (!policy_check_name(pol, host.name, port, &h->decision))
		return refuse(h, "sni mismatch: HTTP Host '%s' on port %u: %s (request %u on this connection)", host.name,
			      port, h->decision.why, req);

	h->requests = req;
	h->host = host;
	h->upgrade = upgrade;
	h->scanned = 0;
	if (chunked)
		h->state = HTTPREQ_CHUNK_SIZE;
	else if (clen) {
		h->state = HTTPREQ_BODY;
		h->left = clen;
	} else
		body_done(h);
	return len;
}

static size_t step_head(struct httpreq *h, const struct policy *pol, uint16_t port, const uint8_t *data, size_t n)
{
	/* RFC 9112 2.2: an empty line before a request line is ignored by servers; it hides nothing */
	if (h->scanned == 0 && n >= 1 && data[0] == '\r') {
		if (n < 2)
			return 0;
		if (data[1] != '\n')
			return refuse(h, "request %u: a bare CR", h->requests + 1);
		return 2;
	}
	if (h->scanned == 0 && n >= 1 && data[0] == '\n')
		return refuse(h, "request %u: a bare LF", h->requests + 1);
	size_t end = find_end(data, n < HTTPREQ_HEAD_MAX ? n : HTTPREQ_HEAD_MAX, &h->scanned, "\r\n\r\n", 4);
	if (!end) {
		if (n >= HTTPREQ_HEAD_MAX)
			return refuse(h, "request %u: a head over %d bytes", h->requests + 1, HTTPREQ_HEAD_MAX);
		return 0;
	}
	return head_check(h, pol, port, data, end);
}

static size_t step_chunk_size(struct httpreq *h, const uint8_t *data, size_t n)
{
	size_t end = find_end(data, n < HTTPREQ_LINE_MAX ? n : HTTPREQ_LINE_MAX, &h->scanned, "\r\n", 2);
	if (!end) {
		if (n >= HTTPREQ_LINE_MAX)
			return refuse(h, "request %u: a chunk-size line over %d bytes", h->requests, HTTPREQ_LINE_MAX);
		return 0;
	}
	const char *bad = block_bad_byte(data, end);
	if (bad)
		return refuse(h, "request %u: %s in a chunk-size line", h->requests, bad);
	size_t i = 0, line = end - 2;
	uint64_t size = 0;
	while (i < line && isxdigit(data[i])) {
		if (size >> 60)
			return refuse(h, "request %u: a chunk size too large", h->requests);
		size = size << 4 | (uint64_t)(isdigit(data[i]) ? data[i] - '0' : (tolower(data[i]) - 'a' + 10));
		i++;
	}
	size_t j = i;
	while (j < line && (data[j] == ' ' || data[j] == '\t'))
		j++;
	/* chunk-ext (RFC 9112 7.1.1) starts with ';' after optional white space; its bytes were checked above */
	if (i == 0 || (j < line && data[j] != ';') || (j == line && j != i))
		return refuse(h, "request %u: a malformed chunk size", h->requests);
	h->scanned = 0;
	if (size == 0)
		h->state = HTTPREQ_TRAILER;
	else {
		h->state = HTTPREQ_CHUNK_DATA;
		h->left = size;
	}
	return end;
}

static size_t step_trailer(struct httpreq *h, const uint8_t *data, size_t n)
{
	if (h->scanned == 0 && n >= 1 && data[0] == '\r') {
		if (n < 2)
			return 0;
		if (data[1] != '\n')
			return refuse(h, "request %u: a bare CR after the last chunk", h->requests);
		body_done(h);
		return 2;
	}
	size_t end = find_end(data, n < HTTPREQ_HEAD_MAX ? n : HTTPREQ_HEAD_MAX, &h->scanned, "\r\n\r\n", 4);
	if (!end) {
		if (n >= HTTPREQ_HEAD_MAX)
			return refuse(h, "request %u: a trailer section over %d bytes", h->requests, HTTPREQ_HEAD_MAX);
		return 0;
	}
	const char *bad = block_bad_byte(data, end);
	if (bad)
		return refuse(h, "request %u: %s in the trailer section", h->requests, bad);
	for (size_t p = 0; p + 2 < end;) {
		const uint8_t *le = memmem(data + p, end - p, "\r\n", 2);
		size_t len = (size_t)(le - (data + p)), k, vlen;
		const uint8_t *v;
		const char *err = field_split(data + p, len, &k, &v, &vlen);
		if (err)
			return refuse(h, "request %u: %s in the trailer section", h->requests, err);
		p += len + 2;
	}
	body_done(h);
	return end;
}

size_t httpreq_feed(struct httpreq *h, const struct policy *pol, uint16_t port, const uint8_t *data, size_t n)
{
	size_t done = 0;
	for (;;) {
		size_t k = 0, left = n - done;
		const uint8_t *d = data + done;
		switch (h->state) {
		case HTTPREQ_HEAD:
			k = step_head(h, pol, port, d, left);
			break;
		case HTTPREQ_BODY:
		case HTTPREQ_CHUNK_DATA:
			k = h->left < left ? (size_t)h->left : left;
			h->left -= k;
			if (h->left == 0) {
				if (h->state == HTTPREQ_BODY)
					body_done(h);
				else {
					h->state = HTTPREQ_CHUNK_END;
					h->left = 2;
				}
			}
			break;
		case HTTPREQ_CHUNK_END:
			if (left && d[0] != (h->left == 2 ? '\r' : '\n'))
				return done + refuse(h, "request %u: a chunk's data not followed by CRLF", h->requests);
			if (left) {
				k = 1;
				if (--h->left == 0) {
					h->state = HTTPREQ_CHUNK_SIZE;
					h->scanned = 0;
				}
			}
			break;
		case HTTPREQ_CHUNK_SIZE:
			k = step_chunk_size(h, d, left);
			break;
		case HTTPREQ_TRAILER:
			k = step_trailer(h, d, left);
			break;
		case HTTPREQ_PASS:
			k = left;
			break;
		case HTTPREQ_UPGRADE_WAIT:
		case HTTPREQ_REFUSED:
			break;
		}
		done += k;
		/* every step that changes state takes bytes: none taken means more are needed */
		if (k == 0 || done == n || h->state == HTTPREQ_REFUSED || h->state == HTTPREQ_UPGRADE_WAIT)
			return done;
	}
}

void httpreq_server_began(struct httpreq *h, const uint8_t *data, size_t n)
{
	if (h->state != HTTPREQ_UPGRADE_WAIT)
		return;
	bool switched = n >= HTTPREQ_STATUS_PEEK &&
			(memcmp(data, "HTTP/1.1 101 ", HTTPREQ_STATUS_PEEK) == 0 ||
			 memcmp(data, "HTTP/1.0 101 ", HTTPREQ_STATUS_PEEK) == 0);
	h->state = switched ? HTTPREQ_PASS : HTTPREQ_HEAD;
	h->scanned = 0;
}
