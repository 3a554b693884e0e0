/* vmm/net/sniproxy: the guest's side a socketpair, the "internet" a listener on 127.0.0.1; every verdict and the splice. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/net/sniproxy.h"

#define LOOPBACK 0x7f000001u

static struct sniproxy *px;
static struct policy pol;
static int guest = -1;    /* the test's end of the guest's connection */
static int listener = -1; /* the server the proxy dials */
static uint16_t port;

static void setup(void)
{
	px = calloc(1, sizeof(*px));
	cr_assert(px);
	policy_init(&pol);
	listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(LOOPBACK) };
	cr_assert_eq(bind(listener, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(listener, 4), 0);
	socklen_t len = sizeof(sa);
	getsockname(listener, (struct sockaddr *)&sa, &len);
	port = ntohs(sa.sin_port);
}

static void teardown(void)
{
	sniproxy_close(px);
	free(px);
	policy_destroy(&pol);
	if (guest >= 0)
		close(guest);
	close(listener);
	guest = -1;
}

TestSuite(net_sniproxy, .init = setup, .fini = teardown);

/* Rules as typed, %u standing for the listener's port. */
static void rules(const char *a, const char *b, const char *c)
{
	const char *in[3] = { a, b, c };
	char buf[3][128];
	const char *out[3];
	size_t n = 0;
	for (size_t i = 0; i < 3 && in[i]; i++) {
		snprintf(buf[i], sizeof(buf[i]), in[i], port);
		out[n++] = buf[i];
	}
	char err[256];
	cr_assert_eq(policy_replace(&pol, out, n, false, err, sizeof(err)), 0, "%s", err);
}

static void start(const char *via)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	guest = sv[0];
	sniproxy_init(px, sv[1], via, port, 1000);
}

static void send_all(int fd, const void *buf, size_t n)
{
	cr_assert_eq(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

/*
 * The loop a NIC runs, with a test's clock: until the state is past `until`, RESOLVE is reached
 * (the test answers), or a pass finds nothing to do (poll idle for 20 ms); 400 passes at most.
 */
static enum sniproxy_state drive(enum sniproxy_state until, int64_t now)
{
	for (int i = 0; i < 400 && px->state <= until && px->state != SNIPROXY_DONE; i++) {
		struct pollfd fds[2];
		int t = 20;
		unsigned n = sniproxy_poll_fill(px, fds, 2, now, &t);
		int rc = n ? poll(fds, n, t) : 0;
		enum sniproxy_state before = px->state;
		sniproxy_step(px, &pol, fds, n, now);
		if (px->state == SNIPROXY_RESOLVE && until >= SNIPROXY_RESOLVE)
			break;
		if (rc <= 0 && px->state == before)
			break;
	}
	return px->state;
}

static void resolve_to(uint32_t a)
{
	cr_assert_eq(px->state, SNIPROXY_RESOLVE);
	sniproxy_resolved(px, &pol, 0, &a, 1, 1000);
}

/* Accepts the proxy's connection to the listener, driving the proxy while waiting. */
static int accept_host(void)
{
	for (int i = 0; i < 400; i++) {
		int fd = accept(listener, NULL, NULL);
		if (fd >= 0)
			return fd;
		drive(SNIPROXY_CONNECT, 1000);
		struct pollfd p = { .fd = listener, .events = POLLIN };
		poll(&p, 1, 10);
	}
	cr_assert_fail("the proxy never connected");
	return -1;
}

static bool listener_has_connection(void)
{
	struct pollfd p = { .fd = listener, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

/* Reads n bytes from fd (blocking briefly per try), driving the proxy between reads. */
static void read_n(int fd, char *out, size_t n)
{
	size_t got = 0;
	for (int i = 0; i < 2000 && got < n; i++) {
		drive(SNIPROXY_SPLICE, 1000);
		ssize_t r = recv(fd, out + got, n - got, MSG_DONTWAIT);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0)
			break;
		else
			poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 5);
	}
	cr_assert_eq(got, n, "read %zu of %zu bytes", got, n);
}

/* True once the guest's end sees the connection end (EOF or reset). */
static bool guest_sees_end(void)
{
	char c;
	ssize_t r = recv(guest, &c, 1, MSG_DONTWAIT);
	return r == 0 || (r < 0 && errno != EAGAIN);
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }

/* A minimal TLS 1.2 ClientHello in one record: one suite, null compression, server_name if given. */
static size_t client_hello(uint8_t *out, const char *name)
{
	uint8_t b[512];
	size_t o = 0;
	put16(b, 0x0303);
	memset(b + 2, 0x42, 32);
	o = 34;
	b[o++] = 0; /* no session id */
	put16(b + o, 2), put16(b + o + 2, 0xc02f), o += 4;
	b[o++] = 1, b[o++] = 0;
	size_t ext_len_at = o;
	o += 2;
	if (name) {
		size_t n = strlen(name);
		put16(b + o, 0), put16(b + o + 2, (uint16_t)(n + 5)), put16(b + o + 4, (uint16_t)(n + 3));
		b[o + 6] = 0, put16(b + o + 7, (uint16_t)n);
		memcpy(b + o + 9, name, n);
		o += 9 + n;
	}
	put16(b + ext_len_at, (uint16_t)(o - ext_len_at - 2));
	out[0] = 0x16, out[1] = 3, out[2] = 1;
	put16(out + 3, (uint16_t)(o + 4));
	out[5] = 1, out[6] = 0, out[7] = (uint8_t)(o >> 8), out[8] = (uint8_t)o;
	memcpy(out + 9, b, o);
	return o + 9;
}

Test(net_sniproxy, http_host_allowed_is_dialled_and_spliced_both_ways)
{
	rules("api.example.test:%u", "127.0.0.1", NULL);
	start("api.example.test");
	char req[256];
	int rl = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: API.Example.Test:%u\r\nUser-Agent: t\r\n\r\n", port);
	send_all(guest, req, (size_t)rl);
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_RESOLVE);
	cr_assert(px->decided && !px->rejected, "%s", px->why);
	cr_assert_str_eq(px->info.name, "api.example.test");
	cr_assert(strstr(px->why, "rule 'api.example.test:"), "%s", px->why);
	resolve_to(LOOPBACK);
	int srv = accept_host();
	char got[256];
	read_n(srv, got, (size_t)rl);
	cr_assert_eq(memcmp(got, req, (size_t)rl), 0, "the server gets the request byte for byte");

	/* a body larger than both buffers, each way */
	size_t big = 3 * SNIPROXY_BUF + 123;
	char *out = malloc(big), *in = malloc(big);
	for (size_t i = 0; i < big; i++)
		out[i] = (char)(i * 7 + 3);
	size_t sent = 0, have = 0;
	for (int i = 0; i < 20000 && have < big; i++) {
		ssize_t w = send(srv, out + sent, big - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0)
			sent += (size_t)w;
		drive(SNIPROXY_SPLICE, 1000);
		ssize_t g = recv(guest, in + have, big - have, MSG_DONTWAIT);
		if (g > 0)
			have += (size_t)g;
		else
			poll(&(struct pollfd){ .fd = guest, .events = POLLIN }, 1, 1);
	}
	cr_assert_eq(have, big, "the guest got %zu of %zu bytes", have, big);
	cr_assert_eq(memcmp(in, out, big), 0, "intact");
	free(out);
	free(in);
	cr_assert_gt(px->to_guest, 0);

	/* the guest's EOF reaches the server, the server's EOF the guest: a clean end */
	shutdown(guest, SHUT_WR);
	char c;
	for (int i = 0; i < 400; i++) {
		drive(SNIPROXY_SPLICE, 1000);
		ssize_t r = recv(srv, &c, 1, MSG_DONTWAIT);
		if (r == 0)
			break;
		poll(&(struct pollfd){ .fd = srv, .events = POLLIN }, 1, 5);
	}
	cr_assert_eq(recv(srv, &c, 1, MSG_DONTWAIT), 0, "the server saw the guest's half close");
	close(srv);
	cr_assert_eq(drive(SNIPROXY_SPLICE, 1000), SNIPROXY_DONE);
	cr_assert(!px->reset, "a clean end is not a reset");
}

Test(net_sniproxy, tls_sni_allowed_by_a_wildcard)
{
	rules("*.cdn.test:%u", "127.0.0.1", NULL);
	start("files.cdn.test");
	uint8_t h[600];
	size_t n = client_hello(h, "Other.CDN.test");
	/* split: the first byte alone, then the rest */
	send_all(guest, h, 1);
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_HELLO);
	send_all(guest, h + 1, n - 1);
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_RESOLVE, "%s", px->why);
	cr_assert_eq(px->info.kind, SNI_KIND_TLS);
	cr_assert_str_eq(px->info.name, "other.cdn.test");
	resolve_to(LOOPBACK);
	int srv = accept_host();
	uint8_t got[600];
	read_n(srv, (char *)got, n);
	cr_assert_eq(memcmp(got, h, n), 0, "the ClientHello goes on unchanged");
	close(srv);
}

Test(net_sniproxy, a_foreign_sni_is_cut_before_any_dial)
{
	rules("pypi.test:%u", "127.0.0.1", NULL);
	start("pypi.test");
	uint8_t h[600];
	size_t n = client_hello(h, "evil.test");
	send_all(guest, h, n);
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_DONE);
	cr_assert(px->rejected && px->reset);
	cr_assert(strstr(px->why, "sni mismatch"), "%s", px->why);
	cr_assert(strstr(px->why, "evil.test") && strstr(px->why, "resolved for pypi.test"), "%s", px->why);
	cr_assert_eq(px->hfd, -1, "nothing dialled");
	sniproxy_close(px);
	cr_assert(guest_sees_end());
	cr_assert(!listener_has_connection());
}

Test(net_sniproxy, a_foreign_http_host_is_cut)
{
	rules("pypi.test:%u", "127.0.0.1", NULL);
	start("pypi.test");
	const char *req = "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n";
	send_all(guest, req, strlen(req));
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_DONE);
	cr_assert(px->rejected);
	cr_assert(strstr(px->why, "sni mismatch: HTTP Host 'evil.test'"), "%s", px->why);
	cr_assert(!listener_has_connection());
}

Test(net_sniproxy, an_allowed_name_on_another_port_is_cut)
{
	rules("pypi.test:1", "127.0.0.1", NULL);
	start("pypi.test");
	const char *req = "GET / HTTP/1.1\r\nHost: pypi.test\r\n\r\n";
	send_all(guest, req, strlen(req));
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_DONE);
	cr_assert(px->rejected && strstr(px->why, "sni mismatch"), "%s", px->why);
}

Test(net_sniproxy, no_sni_no_host_or_garbage_is_cut)
{
	rules("pypi.test:%u", "127.0.0.1", NULL);
	start("pypi.test");
	uint8_t h[600];
	send_all(guest, h, client_hello(h, NULL));
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_DONE);
	cr_assert(px->rejected && !strcmp(px->why, "no TLS SNI"), "%s", px->why);
	sniproxy_close(px);
	close(guest);

	start("pypi.test");
	const char *req = "GET / HTTP/1.0\r\n\r\n";
	send_all(guest, req, strlen(req));
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_DONE);
	cr_assert(px->rejected && !strcmp(px->why, "no HTTP Host"), "%s", px->why);
	sniproxy_close(px);
	close(guest);

	start("pypi.test");
	send_all(guest, "\x01\x02\x03\x04SSH-2.0", 11);
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_DONE);
	cr_assert(px->rejected && strstr(px->why, "not a TLS ClientHello"), "%s", px->why);
	cr_assert(!listener_has_connection());
}

Test(net_sniproxy, endless_headers_are_cut_at_the_input_bound)
{
	rules("pypi.test:%u", "127.0.0.1", NULL);
	start("pypi.test");
	char line[1024];
	memset(line, 'a', sizeof(line));
	memcpy(line, "GET / HTTP/1.1\r\nX: ", 19);
	line[sizeof(line) - 2] = '\r', line[sizeof(line) - 1] = '\n';
	size_t sent = 0;
	for (int i = 0; i < 64 && px->state == SNIPROXY_HELLO; i++) {
		ssize_t w = send(guest, line, sizeof(line), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0)
			sent += (size_t)w;
		drive(SNIPROXY_HELLO, 1000);
		memcpy(line, "X-More: aaaaaaaaaa", 18);
	}
	cr_assert_eq(px->state, SNIPROXY_DONE, "still reading after %zu bytes", sent);
	cr_assert(px->rejected);
	cr_assert_leq(px->g2h.len, SNI_MAX_INPUT, "never more than the bound is kept");
}

Test(net_sniproxy, the_hello_deadline_cuts_a_silent_or_slow_guest)
{
	rules("pypi.test:%u", "127.0.0.1", NULL);
	start("pypi.test");
	send_all(guest, "GET / HT", 8);
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_HELLO, "incomplete: still waiting");
	struct pollfd fds[2];
	int t = -1;
	unsigned n = sniproxy_poll_fill(px, fds, 2, 1000, &t);
	cr_assert_eq(n, 1);
	cr_assert_eq(t, SNIPROXY_HELLO_MS, "poll is bounded by the deadline");
	fds[0].revents = 0;
	cr_assert_eq(sniproxy_step(px, &pol, fds, n, 1000 + SNIPROXY_HELLO_MS), SNIPROXY_DONE);
	cr_assert(px->rejected && strstr(px->why, "within"), "%s", px->why);
}

Test(net_sniproxy, the_guest_closing_early_is_cut)
{
	rules("pypi.test:%u", "127.0.0.1", NULL);
	start("pypi.test");
	send_all(guest, "GET / HT", 8);
	shutdown(guest, SHUT_WR);
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_DONE);
	cr_assert(px->rejected && strstr(px->why, "closed before"), "%s", px->why);
}

Test(net_sniproxy, answers_in_refused_ranges_are_not_dialled)
{
	rules("pypi.test:%u", NULL, NULL); /* no rule opens loopback */
	start("pypi.test");
	const char *req = "GET / HTTP/1.1\r\nHost: pypi.test\r\n\r\n";
	send_all(guest, req, strlen(req));
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_RESOLVE);
	uint32_t a[3] = { LOOPBACK, 0xa9fea9feu /* 169.254.169.254 */, 0x0a000001u };
	cr_assert_eq(sniproxy_resolved(px, &pol, 0, a, 3, 1000), SNIPROXY_DONE);
	cr_assert(px->rejected && strstr(px->why, "refused ranges"), "%s", px->why);
	cr_assert(!listener_has_connection());
}

Test(net_sniproxy, resolver_failures_and_dead_addresses_are_cut)
{
	rules("pypi.test", "127.0.0.1", NULL);
	start("pypi.test");
	const char *req = "GET / HTTP/1.1\r\nHost: pypi.test\r\n\r\n";
	send_all(guest, req, strlen(req));
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_RESOLVE);
	cr_assert_eq(sniproxy_resolved(px, &pol, -ENOENT, NULL, 0, 1000), SNIPROXY_DONE);
	cr_assert(strstr(px->why, "no such name"), "%s", px->why);
	sniproxy_close(px);
	close(guest);

	/* a closed port: every answer refused, then the reset */
	close(listener);
	listener = socket(AF_INET, SOCK_STREAM, 0); /* for teardown */
	start("pypi.test");
	send_all(guest, req, strlen(req));
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_RESOLVE);
	uint32_t a[2] = { LOOPBACK, LOOPBACK };
	sniproxy_resolved(px, &pol, 0, a, 2, 1000);
	cr_assert_eq(drive(SNIPROXY_SPLICE, 1000), SNIPROXY_DONE);
	cr_assert(px->rejected && strstr(px->why, "cannot connect") && strstr(px->why, "2 addresses"), "%s", px->why);
}

Test(net_sniproxy, a_resolver_that_never_answers_is_cut_at_the_deadline)
{
	rules("pypi.test:%u", "127.0.0.1", NULL);
	start("pypi.test");
	const char *req = "GET / HTTP/1.1\r\nHost: pypi.test\r\n\r\n";
	send_all(guest, req, strlen(req));
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_RESOLVE);
	struct pollfd fds[2];
	cr_assert_eq(sniproxy_step(px, &pol, fds, 0, 1000 + SNIPROXY_RESOLVE_MS), SNIPROXY_DONE);
	cr_assert(px->rejected && strstr(px->why, "timed out"), "%s", px->why);
}

Test(net_sniproxy, the_server_resetting_resets_the_guest)
{
	rules("pypi.test:%u", "127.0.0.1", NULL);
	start("pypi.test");
	const char *req = "GET / HTTP/1.1\r\nHost: pypi.test\r\n\r\n";
	send_all(guest, req, strlen(req));
	drive(SNIPROXY_HELLO, 1000);
	resolve_to(LOOPBACK);
	int srv = accept_host();
	char got[64];
	read_n(srv, got, strlen(req));
	struct linger l = { 1, 0 };
	setsockopt(srv, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(srv);
	for (int i = 0; i < 400 && px->state != SNIPROXY_DONE; i++) {
		drive(SNIPROXY_SPLICE, 1000);
		poll(NULL, 0, 2);
	}
	cr_assert_eq(px->state, SNIPROXY_DONE);
	cr_assert(px->reset);
	cr_assert(!px->rejected, "allowed, then reset by the server");
}

Test(net_sniproxy, a_side_with_nothing_to_wait_for_is_not_polled)
{
	rules("pypi.test:%u", "127.0.0.1", NULL);
	start("pypi.test");
	const char *req = "GET / HTTP/1.1\r\nHost: pypi.test\r\n\r\n";
	send_all(guest, req, strlen(req));
	drive(SNIPROXY_HELLO, 1000);
	resolve_to(LOOPBACK);
	int srv = accept_host();
	char got[64];
	read_n(srv, got, strlen(req));
	/* the guest closes both ways: its EOF goes on, and its hangup must not wake every poll */
	shutdown(guest, SHUT_RDWR);
	drive(SNIPROXY_SPLICE, 1000);
	cr_assert(px->g_eof && px->h_shut, "the guest's EOF passed on to the server");
	struct pollfd fds[2];
	int t = -1;
	cr_assert_eq(sniproxy_poll_fill(px, fds, 2, 1000, &t), 2);
	cr_assert_eq(fds[0].fd, -1, "the guest's side is left out while nothing is owed to it");
	cr_assert_eq(fds[1].fd, px->hfd);
	cr_assert_eq(fds[1].events, POLLIN);
	/* the server's answer then finds the guest gone: a reset, not a hang */
	send_all(srv, "late", 4);
	for (int i = 0; i < 100 && px->state != SNIPROXY_DONE; i++)
		drive(SNIPROXY_SPLICE, 1000);
	cr_assert_eq(px->state, SNIPROXY_DONE);
	close(srv);
}

/* Reads what the server gets until the proxy cuts the connection; returns the byte count. */
static size_t read_until_end(int fd, char *out, size_t max)
{
	size_t got = 0;
	for (int i = 0; i < 2000; i++) {
		drive(SNIPROXY_SPLICE, 1000);
		ssize_t r = recv(fd, out + got, max - got, MSG_DONTWAIT);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0 || (r < 0 && errno != EAGAIN))
			break;
		else if (px->state == SNIPROXY_DONE && px->hfd < 0)
			poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 50);
		else
			poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 5);
	}
	return got;
}

/* A connection allowed by its first request and spliced: the server's side. */
static int http_connected(const char *first)
{
	send_all(guest, first, strlen(first));
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_RESOLVE, "%s", px->why);
	resolve_to(LOOPBACK);
	return accept_host();
}

Test(net_sniproxy, keep_alive_requests_for_the_allowed_host_pass_and_a_foreign_one_is_cut)
{
	rules("web.test:%u", "127.0.0.1", NULL);
	start("web.test");
	const char *r1 = "GET /1 HTTP/1.1\r\nHost: web.test\r\n\r\n";
	const char *r2 = "POST /2 HTTP/1.1\r\nHost: web.test\r\nContent-Length: 4\r\n\r\nbody";
	const char *evil = "GET /3 HTTP/1.1\r\nHost: evil.test\r\n\r\n";
	int srv = http_connected(r1);
	char got[512];
	read_n(srv, got, strlen(r1));
	send_all(srv, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38);
	read_n(guest, got, 38);

	send_all(guest, r2, strlen(r2));
	read_n(srv, got, strlen(r2));
	cr_assert_eq(memcmp(got, r2, strlen(r2)), 0, "the second request for the same host goes on");
	cr_assert(!px->rejected);

	/* the third names another host: cut, and not one byte of it reaches the server */
	send_all(guest, evil, 10);
	drive(SNIPROXY_SPLICE, 1000);
	cr_assert_eq(px->state, SNIPROXY_SPLICE, "half a head: waiting, nothing sent");
	send_all(guest, evil + 10, strlen(evil) - 10);
	drive(SNIPROXY_SPLICE, 1000);
	cr_assert_eq(px->state, SNIPROXY_DONE);
	cr_assert(px->rejected && px->reset);
	cr_assert(strstr(px->why, "sni mismatch: HTTP Host 'evil.test'") && strstr(px->why, "request 3"), "%s", px->why);
	sniproxy_close(px);
	cr_assert_eq(read_until_end(srv, got, sizeof(got)), 0, "the server got none of the refused request");
	cr_assert(guest_sees_end());
	close(srv);
}

Test(net_sniproxy, pipelined_requests_in_one_segment_stop_at_the_refused_one)
{
	rules("web.test:%u", "127.0.0.1", NULL);
	start("web.test");
	const char *ok = "GET /1 HTTP/1.1\r\nHost: web.test\r\n\r\n"
			 "POST /2 HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\n\r\n";
	char all[512];
	snprintf(all, sizeof(all), "%sGET /3 HTTP/1.1\r\nHost: evil.test\r\n\r\nGET /4 HTTP/1.1\r\nHost: web.test\r\n\r\n", ok);
	int srv = http_connected(all);
	char got[512];
	size_t n = read_until_end(srv, got, sizeof(got));
	cr_assert_eq(px->state, SNIPROXY_DONE);
	cr_assert(px->rejected && strstr(px->why, "evil.test"), "%s", px->why);
	cr_assert_leq(n, strlen(ok));
	cr_assert_eq(memcmp(got, ok, n), 0, "what the server got is the allowed requests' bytes, nothing after");
	close(srv);
}

Test(net_sniproxy, ambiguous_framing_on_the_first_request_is_cut_before_it_is_sent)
{
	rules("web.test:%u", "127.0.0.1", NULL);
	start("web.test");
	int srv = http_connected("POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n");
	char got[256];
	cr_assert_eq(read_until_end(srv, got, sizeof(got)), 0);
	cr_assert(px->rejected && strstr(px->why, "both Content-Length and Transfer-Encoding"), "%s", px->why);
	close(srv);
}

Test(net_sniproxy, an_upgrade_answered_101_passes_the_rest_and_tls_is_never_framed)
{
	rules("web.test:%u", "127.0.0.1", NULL);
	start("web.test");
	const char *up = "GET /ws HTTP/1.1\r\nHost: web.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
	int srv = http_connected(up);
	char got[256];
	read_n(srv, got, strlen(up));
	send_all(guest, "not http", 8);
	drive(SNIPROXY_SPLICE, 1000);
	cr_assert_eq(px->g2h_clear, 0, "held until the server answers");
	const char *sw = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
	send_all(srv, sw, strlen(sw));
	read_n(guest, got, strlen(sw));
	read_n(srv, got, 8);
	cr_assert_eq(memcmp(got, "not http", 8), 0);
	cr_assert(!px->rejected);
	close(srv);
	sniproxy_close(px);
	close(guest);

	/* TLS: the SNI names the connection; what follows the ClientHello is not HTTP and passes */
	rules("web.test:%u", "127.0.0.1", NULL);
	start("web.test");
	uint8_t hello[600];
	size_t hn = client_hello(hello, "web.test");
	send_all(guest, hello, hn);
	cr_assert_eq(drive(SNIPROXY_HELLO, 1000), SNIPROXY_RESOLVE);
	resolve_to(LOOPBACK);
	srv = accept_host();
	read_n(srv, got, hn);
	const char *foreign = "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n";
	send_all(guest, foreign, strlen(foreign));
	read_n(srv, got, strlen(foreign));
	cr_assert(!px->rejected);
	close(srv);
}
