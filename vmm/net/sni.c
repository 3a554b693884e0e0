/* SNI and Host extraction: TLS records joined into one ClientHello, or an HTTP/1.x header block; lengths checked. */
#include "vmm/net/sni.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#define TLS_CONTENT_HANDSHAKE 0x16
#define TLS_HANDSHAKE_CLIENT_HELLO 1
#define TLS_EXT_SERVER_NAME 0
#define TLS_SNI_HOST_NAME 0
#define TLS_RECORD_HDR 5
#define TLS_RECORD_MAX 16384 /* 2^14, RFC 8446 5.1 */
/* version(2) random(32) session_id(1+) cipher_suites(2+2) compression(1+1) */
#define TLS_CLIENT_HELLO_MIN (2 + 32 + 1 + 2 + 2 + 1 + 1)

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* A name's raw bytes, checked and normalized as policy rules are; false if not a host name. */
static bool take_name(const uint8_t *s, size_t n, struct sni_info *out)
{
	char raw[POLICY_NAME_MAX + 2];
	if (n == 0 || n > POLICY_NAME_MAX + 1 || memchr(s, 0, n))
		return false;
	memcpy(raw, s, n);
	raw[n] = '\0';
	return policy_normalize_name(raw, out->name);
}

/* The server_name extension's body (RFC 6066 3): a list of (type, name); one host_name at most. */
static enum sni_result parse_server_name(const uint8_t *e, size_t elen, struct sni_info *out)
{
	if (elen < 2 || get16(e) != elen - 2)
		return SNI_INVALID;
	bool found = false;
	for (size_t p = 2; p < elen;) {
		if (elen - p < 3)
			return SNI_INVALID;
		uint8_t type = e[p];
		size_t nlen = get16(e + p + 1);
		p += 3;
		if (nlen > elen - p)
			return SNI_INVALID;
		if (type == TLS_SNI_HOST_NAME) {
			/* two names would let padcell check one while the server serves the other */
			if (found || !take_name(e + p, nlen, out))
				return SNI_INVALID;
			found = true;
		}
		p += nlen;
	}
	return found ? SNI_FOUND : SNI_NONE;
}

/* The ClientHello body (RFC 8446 4.1.2), L bytes, complete. */
static enum sni_result parse_client_hello(const uint8_t *b, size_t L, struct sni_info *out)
{
	size_t p = 34; /* legacy_version, random */
	if (L < TLS_CLIENT_HELLO_MIN || b[0] != 3)
		return SNI_INVALID;
	size_t sid = b[p++];
	if (sid > 32 || sid > L - p)
		return SNI_INVALID;
	p += sid;
	if (L - p < 2)
		return SNI_INVALID;
	size_t cs = get16(b + p);
	p += 2;
	if (cs < 2 || cs % 2 || cs > L - p)
		return SNI_INVALID;
	p += cs;
	if (L - p < 1)
		return SNI_INVALID;
	size_t comp = b[p++];
	if (comp < 1 || comp > L - p)
		return SNI_INVALID;
	p += comp;
	if (p == L)
		return SNI_NONE; /* no extensions at all (TLS 1.2 allows it) */
	if (L - p < 2 || get16(b + p) != L - p - 2)
		return SNI_INVALID;
	p += 2;

	enum sni_result res = SNI_NONE;
	bool seen = false;
	while (p < L) {
		if (L - p < 4)
			return SNI_INVALID;
		uint16_t type = get16(b + p);
		size_t elen = get16(b + p + 2);
		p += 4;
		if (elen > L - p)
			return SNI_INVALID;
		if (type == TLS_EXT_SERVER_NAME) {
			if (seen)
				return SNI_INVALID; /* a second server_name extension (RFC 8446 4.2) */
			seen = true;
			res = parse_server_name(b + p, elen, out);
			if (res == SNI_INVALID)
				return res;
		}
		p += elen;
	}
	return res;
}

/* A record header's first bytes, as many as there are: handshake, version 3.0 to 3.4. */
static bool record_prefix_ok(const uint8_t *h, size_t n)
{
	return (n < 1 || h[0] == TLS_CONTENT_HANDSHAKE) && (n < 2 || h[1] == 3) && (n < 3 || h[2] <= 4);
}

/*
 * TLS: handshake records carry the ClientHello, possibly split over several records (RFC
 * 8446 5.1 lets a sender fragment handshake messages freely), so the records' bodies are
 * joined until the handshake message's own length is there.
 */
static enum sni_result parse_tls(const uint8_t *buf, size_t len, struct sni_info *out)
{
	uint8_t hs[SNI_MAX_INPUT];
	size_t hslen = 0, pos = 0;

	out->kind = SNI_KIND_TLS;
	for (;;) {
		size_t have = len - pos;
		if (!record_prefix_ok(buf + pos, have < 3 ? have : 3))
			return SNI_INVALID;
		if (have < TLS_RECORD_HDR)
			return SNI_NEED_MORE;
		size_t rlen = get16(buf + pos + 3);
		if (rlen == 0 || rlen > TLS_RECORD_MAX)
			return SNI_INVALID;
		size_t avail = have - TLS_RECORD_HDR < rlen ? have - TLS_RECORD_HDR : rlen;
		if (avail > sizeof(hs) - hslen)
			return SNI_INVALID;
		memcpy(hs + hslen, buf + pos + TLS_RECORD_HDR, avail);
		hslen += avail;
		pos += TLS_RECORD_HDR + avail;

		if (hslen >= 1 && hs[0] != TLS_HANDSHAKE_CLIENT_HELLO)
			return SNI_INVALID;
		if (hslen >= 4) {
			size_t L = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
			if (L < TLS_CLIENT_HELLO_MIN || L > sizeof(hs) - 4)
				return SNI_INVALID;
			if (hslen >= 4 + L)
				return parse_client_hello(hs + 4, L, out);
		}
		if (pos == len)
			return SNI_NEED_MORE; /* the buffer ended inside or right after this record */
	}
}

/* RFC 9110 5.6.2 tchar */
static bool tchar(uint8_t c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const uint8_t *find_crlfcrlf(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i + 4 <= n; i++)
		if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n')
			return b + i;
	return NULL;
}

enum sni_result sni_parse_host(const uint8_t *v, size_t n, struct sni_info *out)
{
	const uint8_t *colon = memchr(v, ':', n);
	size_t hlen = colon ? (size_t)(colon - v) : n;
	out->port = 0;
	if (colon) {
		unsigned long port = 0;
		size_t plen = n - hlen - 1;
		if (plen > 5)
			return SNI_INVALID;
		for (size_t i = 0; i < plen; i++) {
			if (!isdigit(colon[1 + i]))
				return SNI_INVALID; /* also a second ':', so IPv6 literals ("[::1]") */
			port = port * 10 + (unsigned long)(colon[1 + i] - '0');
		}
		if (port > 65535 || (plen && port == 0))
			return SNI_INVALID;
		out->port = (uint16_t)port;
	}
	return take_name(v, hlen, out) ? SNI_FOUND : SNI_INVALID;
}

/*
 * HTTP/1.x: a request line and a header block ending in an empty line.  Strict about
 * framing (CRLF only, no obs-fold, no space before ':', one Host) because the server behind
 * padcell reads the same bytes: any leniency here that the server lacks, or the reverse,
 * lets a request name one host to padcell and another to the server.
 */
static enum sni_result parse_http(const uint8_t *buf, size_t len, struct sni_info *out)
{
	size_t m = 0;
	out->kind = SNI_KIND_HTTP;
	while (m < len && m < 20 && isupper(buf[m]))
		m++;
	if (m == len && m < 20)
		return SNI_NEED_MORE; /* still inside the method */
	if (m == 0 || m == 20 || buf[m] != ' ')
		return SNI_INVALID;

	const uint8_t *end = find_crlfcrlf(buf, len);
	for (size_t i = 0; i < (end ? (size_t)(end - buf) : len); i++) {
		uint8_t c = buf[i];
		bool crlf = (c == '\r' && (i + 1 == len || buf[i + 1] == '\n')) ||
			    (c == '\n' && i > 0 && buf[i - 1] == '\r');
		if ((c < 0x20 && c != '\t' && !crlf) || c == 0x7f)
			return SNI_INVALID; /* a bare CR or LF, NUL or another control byte */
	}
	if (!end)
		return SNI_NEED_MORE;
	size_t hdr_end = (size_t)(end - buf) + 2; /* through the last header line's CRLF */

	/* request line: METHOD SP target SP HTTP/1.x CRLF */
	const uint8_t *eol = memmem(buf, hdr_end, "\r\n", 2);
	size_t rl = (size_t)(eol - buf);
	const uint8_t *sp2 = rl > m + 1 ? memchr(buf + m + 1, ' ', rl - m - 1) : NULL;
	if (!sp2 || sp2 == buf + m + 1 || (size_t)(eol - sp2) != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return SNI_INVALID;
	bool http11 = sp2[8] == '1';

	int hosts = 0;
	enum sni_result res = SNI_NONE;
	for (size_t p = rl + 2; p < hdr_end;) {
		const uint8_t *le = memmem(buf + p, hdr_end - p, "\r\n", 2);
		size_t n = (size_t)(le - (buf + p)), k = 0;
		const uint8_t *line = buf + p;
		while (k < n && tchar(line[k]))
			k++;
		if (k == 0 || k == n || line[k] != ':')
			return SNI_INVALID; /* obs-fold, space before ':', or no field name */
		if (k == 4 && strncasecmp((const char *)line, "host", 4) == 0) {
			size_t a = k + 1, b = n;
			while (a < b && (line[a] == ' ' || line[a] == '\t'))
				a++;
			while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t'))
				b--;
			if (++hosts > 1)
				return SNI_INVALID;
			res = sni_parse_host(line + a, b - a, out);
			if (res == SNI_INVALID)
				return res;
		}
		p += n + 2;
	}
	if (hosts == 0 && http11)
		return SNI_INVALID; /* RFC 9112 3.2: a 1.1 request without Host is a 400 */
	return res;
}

enum sni_result sni_parse(const uint8_t *buf, size_t len, struct sni_info *out)
{
	enum sni_result res;

	memset(out, 0, sizeof(*out));
	if (len > SNI_MAX_INPUT)
		len = SNI_MAX_INPUT;
	if (len == 0)
		return SNI_NEED_MORE;
	if (buf[0] == TLS_CONTENT_HANDSHAKE)
		res = parse_tls(buf, len, out);
	else if (isupper(buf[0]))
		res = parse_http(buf, len, out);
	else
		res = SNI_INVALID;
	if (res == SNI_NEED_MORE && len >= SNI_MAX_INPUT)
		res = SNI_INVALID;
	if (res != SNI_FOUND)
		out->name[0] = '\0';
	return res;
}

void sni_reader_init(struct sni_reader *r)
{
	r->len = 0;
}

enum sni_result sni_reader_feed(struct sni_reader *r, const uint8_t *data, size_t n, size_t *taken,
				struct sni_info *out)
{
	size_t room = sizeof(r->buf) - r->len;
	size_t k = n < room ? n : room;
	memcpy(r->buf + r->len, data, k);
	r->len += k;
	if (taken)
		*taken = k;
	return sni_parse(r->buf, r->len, out);
}
