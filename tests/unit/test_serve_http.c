/*
 * `padcell serve`'s HTTP front (vmm/serve/http.c, libmicrohttpd) on a real loopback port with the
 * fake-free table of a spawner that starts nothing: a raw HTTP/1.1 client over a TCP socket sends
 * what E2B's SDK sends, and what it must not (no key, a body announced or streamed past 1 MiB).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/serve/api.h"
#include "vmm/serve/http.h"
#include "vmm/serve/table.h"

#define KEY "pc_httptestkey0123456789abcdef"
/* The daemon's one key (the generated api-key's case), as serve_api_handle and envd take keys. */
static const struct serve_keys *keys1(void)
{
	static struct serve_keys k;
	serve_keys_one(&k, KEY);
	return &k;
}

static int starts;

static int h_start(void *ctx, const struct serve_template *tp, struct serve_sandbox *sb,
		   int (*launched)(void *arg, const struct serve_sandbox *sb), void *arg, char *err, size_t errlen)
{
	starts++;
	sb->pid = 77777;
	sb->start_time = 1;
	return launched(arg, sb);
}
static void h_stop(void *ctx, const struct serve_sandbox *sb) {}
static int h_pause(void *ctx, const struct serve_sandbox *sb, const char *snapdir, char *err, size_t errlen)
{
	return 0;
}
static int h_hold(void *ctx, const struct serve_sandbox *sb, bool paused, char *err, size_t errlen)
{
	return 0;
}
static bool h_alive(void *ctx, const struct serve_sandbox *sb) { return true; }
static double h_now(void *ctx) { return 1.7e9; }

static struct serve_template tmpl = { .name = "base", .dir = "/nonexistent", .mem_bytes = 128ull << 20, .cpus = 1 };
static char dir[64];
static struct serve_table T;
static struct serve_http *H;
static unsigned port;

static void up(void)
{
	snprintf(dir, sizeof(dir), "/tmp/padcell-serve-http.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	struct serve_spawner sp = { .start = h_start, .stop = h_stop, .pause = h_pause, .hold = h_hold, .alive = h_alive };
	struct serve_clock clk = { .now = h_now };
	struct serve_limits lim = { .max_sandboxes = 4 };
	char err[256];
	cr_assert_eq(serve_table_init(&T, dir, &lim, &tmpl, 1, &sp, &clk, err, sizeof(err)), 0, "%s", err);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	H = serve_http_start(&T, keys1(), &a, &port, err, sizeof(err));
	cr_assert_not_null(H, "%s", err);
	cr_assert_neq(port, 0);
}

static void down(void)
{
	serve_http_stop(H);
	serve_table_free(&T);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(serve_http, .init = up, .fini = down, .timeout = 60);

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
	return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return; /* the server may close early (413): the reply is read all the same */
		c += k;
		n -= (size_t)k;
	}
}

/* The whole response until the server closes (Connection: close), bounded by a generous hang guard. */
static char *read_response(int fd)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		cr_assert_gt(poll(&p, 1, 30000), 0, "no response within 30 s");
		ssize_t k = recv(fd, buf + len, cap - len - 1, 0);
		if (k <= 0)
			break;
		len += (size_t)k;
		cr_assert_lt(len, cap - 1);
	}
	buf[len] = '\0';
	close(fd);
	return buf;
}

static char *request(const char *method, const char *path, const char *key, const char *body)
{
	int fd = dial();
	char head[512];
	int n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s%s%s"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", method, path,
			 key ? "X-API-Key: " : "", key ? key : "", key ? "\r\n" : "", body ? strlen(body) : 0);
	send_all(fd, head, (size_t)n);
	if (body)
		send_all(fd, body, strlen(body));
	return read_response(fd);
}

static unsigned status_of(const char *resp)
{
	unsigned s = 0;
	cr_assert_eq(sscanf(resp, "HTTP/1.1 %u", &s), 1, "not an HTTP response: %.80s", resp);
	return s;
}

static json_t *body_of(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");
	cr_assert_not_null(b);
	json_error_t je;
	json_t *j = json_loads(b + 4, 0, &je);
	cr_assert_not_null(j, "not JSON: %s", b + 4);
	return j;
}

Test(serve_http, create_list_get_delete_over_http)
{
	char *r = request("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"timeout\":60,\"metadata\":{\"a\":\"b\"}}");
	cr_assert_eq(status_of(r), 201, "%s", r);
	cr_assert(strcasestr(r, "Content-Type: application/json"), "%s", r);
	json_t *j = body_of(r);
	char id[SERVE_ID_LEN + 1], path[64];
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "sandboxID")));
	json_decref(j);
	free(r);
	cr_assert_eq(starts, 1);

	r = request("GET", "/sandboxes", KEY, NULL);
	cr_assert_eq(status_of(r), 200, "%s", r);
	j = body_of(r);
	cr_assert_eq(json_array_size(j), 1);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "sandboxID")), id);
	json_decref(j);
	free(r);

	snprintf(path, sizeof(path), "/sandboxes/%s", id);
	r = request("GET", path, KEY, NULL);
	cr_assert_eq(status_of(r), 200, "%s", r);
	free(r);
	r = request("DELETE", path, KEY, NULL);
	cr_assert_eq(status_of(r), 204, "%s", r);
	free(r);
	r = request("GET", path, KEY, NULL);
	cr_assert_eq(status_of(r), 404, "%s", r);
	j = body_of(r);
	cr_assert_eq(json_integer_value(json_object_get(j, "code")), 404);
	json_decref(j);
	free(r);
}

Test(serve_http, no_key_or_a_wrong_one_is_401)
{
	char *r = request("GET", "/sandboxes", NULL, NULL);
	cr_assert_eq(status_of(r), 401, "%s", r);
	free(r);
	r = request("POST", "/sandboxes", "pc_wrong", "{\"templateID\":\"base\"}");
	cr_assert_eq(status_of(r), 401, "%s", r);
	free(r);
	cr_assert_eq(starts, 0);
}

Test(serve_http, a_body_announced_past_1mib_is_refused_unread)
{
	int fd = dial();
	char head[256];
	int n = snprintf(head, sizeof(head), "POST /sandboxes HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
			 "Content-Length: %u\r\n\r\n", KEY, SERVE_BODY_MAX + 1);
	send_all(fd, head, (size_t)n);
	/* no body sent at all: the answer comes from the headers alone */
	char *r = read_response(fd);
	cr_assert_eq(status_of(r), 413, "%s", r);
	free(r);
}

Test(serve_http, a_chunked_body_past_1mib_is_413)
{
	int fd = dial();
	char head[256];
	int n = snprintf(head, sizeof(head), "POST /sandboxes HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
			 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n", KEY);
	send_all(fd, head, (size_t)n);
	static char chunk[65536];
	memset(chunk, ' ', sizeof(chunk));
	char size[32];
	int sn = snprintf(size, sizeof(size), "%zx\r\n", sizeof(chunk));
	for (int i = 0; i < 20; i++) { /* 1.25 MiB of spaces: valid JSON whitespace, past the bound */
		send_all(fd, size, (size_t)sn);
		send_all(fd, chunk, sizeof(chunk));
		send_all(fd, "\r\n", 2);
	}
	send_all(fd, "0\r\n\r\n", 5);
	char *r = read_response(fd);
	cr_assert_eq(status_of(r), 413, "%s", r);
	free(r);
	cr_assert_eq(starts, 0);
}

/* The query reaches the API decoded once: E2B's SDK sends metadata=k%3Dv (URLSearchParams inside). */
Test(serve_http, list_filters_through_the_query_string)
{
	char *r = request("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"metadata\":{\"user\":\"a b\"}}");
	cr_assert_eq(status_of(r), 201, "%s", r);
	free(r);
	r = request("POST", "/sandboxes", KEY, "{\"templateID\":\"base\",\"metadata\":{\"user\":\"c\"}}");
	cr_assert_eq(status_of(r), 201, "%s", r);
	free(r);
	r = request("GET", "/sandboxes?metadata=user%3Da%2Bb&state=running", KEY, NULL);
	cr_assert_eq(status_of(r), 200, "%s", r);
	json_t *j = body_of(r);
	cr_assert_eq(json_array_size(j), 1, "%s", r);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_array_get(j, 0), "metadata"), "user")), "a b");
	json_decref(j);
	free(r);
	r = request("GET", "/sandboxes?state=paused", KEY, NULL);
	j = body_of(r);
	cr_assert_eq(json_array_size(j), 0, "%s", r);
	json_decref(j);
	free(r);
	r = request("GET", "/sandboxes?state=sleeping", KEY, NULL);
	cr_assert_eq(status_of(r), 400, "%s", r);
	free(r);
}

/* envd's paths are routed to vmm/serve/envd.c with E2B's single-URL headers, before the REST key check. */
static char *envd_request(const char *path, const char *headers, const char *ct, const void *body, size_t len)
{
	int fd = dial();
	char head[1024];
	int n = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s"
			 "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n", path, headers, ct, len);
	send_all(fd, head, (size_t)n);
	send_all(fd, body, len);
	return read_response(fd);
}

Test(serve_http, envd_routes_over_http)
{
	char *r = request("POST", "/sandboxes", KEY, "{\"templateID\":\"base\"}");
	cr_assert_eq(status_of(r), 201, "%s", r);
	json_t *j = body_of(r);
	cr_assert_str_eq(json_string_value(json_object_get(j, "envdAccessToken")), KEY);
	cr_assert_str_eq(json_string_value(json_object_get(j, "envdVersion")), ENVD_VERSION);
	char hdr[256];
	snprintf(hdr, sizeof(hdr), "E2b-Sandbox-Id: %s\r\nX-Access-Token: %s\r\n",
		 json_string_value(json_object_get(j, "sandboxID")), KEY);
	json_decref(j);
	free(r);

	const char *stat = "{\"path\":\"/\"}";
	r = envd_request("/filesystem.Filesystem/Stat", "", "application/json", stat, strlen(stat));
	cr_assert_eq(status_of(r), 401, "%s", r);
	j = body_of(r);
	cr_assert_str_eq(json_string_value(json_object_get(j, "code")), "unauthenticated");
	json_decref(j);
	free(r);

	/* the fake spawner's sandbox has no agent behind its vsock path: Connect's unavailable */
	r = envd_request("/filesystem.Filesystem/Stat", hdr, "application/json", stat, strlen(stat));
	cr_assert_eq(status_of(r), 503, "%s", r);
	j = body_of(r);
	cr_assert_str_eq(json_string_value(json_object_get(j, "code")), "unavailable");
	json_decref(j);
	free(r);

	/* a stream's error comes in its end-of-stream envelope under 200 */
	static const char start[] = "\0\0\0\0\x1f{\"process\":{\"cmd\":\"/bin/true\"}}";
	snprintf(hdr, sizeof(hdr), "E2b-Sandbox-Id: inosuchsandbox\r\nX-Access-Token: %s\r\n", KEY);
	r = envd_request("/process.Process/Start", hdr, "application/connect+json", start, sizeof(start) - 1);
	cr_assert_eq(status_of(r), 200, "%s", r);
	cr_assert(strcasestr(r, "Content-Type: application/connect+json"), "%s", r);
	/* a live stream: chunked, the envelopes as they were sent */
	cr_assert(strcasestr(r, "Transfer-Encoding: chunked"), "%s", r);
	const char *p = strstr(r, "\r\n\r\n") + 4;
	char body[4096];
	size_t blen = 0;
	for (;;) {
		char *e;
		unsigned long n = strtoul(p, &e, 16);
		cr_assert_eq(strncmp(e, "\r\n", 2), 0, "a chunk size line: %.20s", p);
		if (n == 0)
			break;
		cr_assert_lt(blen + n, sizeof(body));
		memcpy(body + blen, e + 2, n);
		blen += n;
		p = e + 2 + n + 2;
	}
	cr_assert_geq(blen, 5);
	cr_assert_eq((unsigned char)body[0], ENVD_FLAG_END);
	body[blen] = '\0';
	cr_assert(strstr(body + 5, "\"not_found\""), "%s", body + 5);
	free(r);

	/* an error before the stream begins is a plain Connect error */
	r = envd_request("/process.Process/Start", hdr, "application/json", start, sizeof(start) - 1);
	cr_assert_eq(status_of(r), 415, "%s", r);
	free(r);
}

/* A chunked POST of body to path, its chunks cut every `piece` bytes. */
static char *chunked_request(const char *path, const char *headers, const char *body, size_t len, size_t piece)
{
	int fd = dial();
	char head[1024], size[32];
	int n = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s"
			 "Content-Type: application/connect+json\r\nTransfer-Encoding: chunked\r\n\r\n", path, headers);
	send_all(fd, head, (size_t)n);
	for (size_t off = 0; off < len; off += piece) {
		size_t k = len - off < piece ? len - off : piece;
		int sn = snprintf(size, sizeof(size), "%zx\r\n", k);
		send_all(fd, size, (size_t)sn);
		send_all(fd, body + off, k);
		send_all(fd, "\r\n", 2);
	}
	send_all(fd, "0\r\n\r\n", 5);
	return read_response(fd);
}

/* The end-of-stream envelope's error code of a buffered (Content-Length) Connect stream reply. */
static void expect_stream_end(const char *resp, const char *code)
{
	cr_assert_eq(status_of(resp), 200, "%s", resp);
	cr_assert(strcasestr(resp, "Content-Type: application/connect+json"), "%s", resp);
	const char *b = strstr(resp, "\r\n\r\n") + 4;
	cr_assert_eq((unsigned char)b[0], ENVD_FLAG_END, "%s", b);
	cr_assert(strstr(b + 5, code), "%s", b + 5);
}

/*
 * StreamInput's body is taken as it arrives, not whole: envelopes split across chunks are put
 * together (the start here finds no agent behind the fake sandbox: unavailable in the stream's
 * end), a body of keepalives past 1 MiB is not refused as a body (it ends without a start).
 */
Test(serve_http, stream_input_is_read_incrementally)
{
	char *r = request("POST", "/sandboxes", KEY, "{\"templateID\":\"base\"}");
	cr_assert_eq(status_of(r), 201, "%s", r);
	json_t *j = body_of(r);
	char hdr[256];
	snprintf(hdr, sizeof(hdr), "E2b-Sandbox-Id: %s\r\nX-Access-Token: %s\r\n",
		 json_string_value(json_object_get(j, "sandboxID")), KEY);
	json_decref(j);
	free(r);
	static const char start[] = "\0\0\0\0\x21{\"start\":{\"process\":{\"tag\":\"t\"}}}";
	r = chunked_request("/process.Process/StreamInput", hdr, start, sizeof(start) - 1, 3);
	expect_stream_end(r, "\"unavailable\"");
	free(r);
	static char keep[60000 * 21];
	for (unsigned i = 0; i < 60000; i++)
		memcpy(keep + i * 21, "\0\0\0\0\x10{\"keepalive\":{}}", 21);
	r = chunked_request("/process.Process/StreamInput", hdr, keep, sizeof(keep), 65536);
	expect_stream_end(r, "no 'start' message");
	free(r);
	r = chunked_request("/process.Process/StreamInput", "X-Access-Token: wrong\r\n", start, sizeof(start) - 1, 8);
	cr_assert_eq(status_of(r), 401, "%s", r);
	free(r);
}
