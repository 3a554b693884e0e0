/*
 * upstream: "the internet's" UDP services for the nested net tier, in L1's test network namespace.
 *   upstream dns ADDR LOGFILE NAME=IPV4...   a DNS server on ADDR:53: A answers for the NAMEs given,
 *       NXDOMAIN for any other name; every name asked is appended to LOGFILE ("name qtype" lines),
 *       so the test can prove that a name no rule allows never reached it.
 *   upstream udp-sink ADDR PORT LOGFILE      appends one line per datagram received on ADDR:PORT,
 *       so the test can prove that UDP the policy refuses never arrived.
 *   upstream peek ADDR PORT LOGFILE          a TCP server on ADDR:PORT that reads a connection's first
 *       bytes (one read, 5 s bound), appends "peek N bytes" to LOGFILE, answers "peeked N\n" and
 *       closes: a stand-in for a TLS server, so the test can tell which ClientHellos reached it.
 *   upstream keepalive ADDR PORT LOGFILE     an HTTP/1.1 server on ADDR:PORT that keeps each connection
 *       open and answers every request (heads only, 10 s bound per read) with a short 200, appending
 *       "request CONN N host HOST" to LOGFILE: so the test can tell which requests of a kept-alive
 *       connection reached it.
 * All four run until killed.
 *   upstream get ADDR PORT PATH              one HTTP/1.0 GET (10 s bound per step), the body on
 *       stdout; exit 0 on a 200 answer.  L1's busybox wget cannot be used: static glibc's NSS
 *       lookups crash it, even for a numeric address.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "vmm/net/dns.h"

#define MAX_NAMES 32

static int bound_udp(const char *addr, unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "upstream: '%s' is not an IPv4 address\n", addr);
		return -1;
	}
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("upstream: bind");
		return -1;
	}
	return fd;
}

static int udp_sink(const char *addr, const char *port, const char *logpath)
{
	int fd = bound_udp(addr, (unsigned)atoi(port));
	int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0 || log < 0)
		return 1;
	for (;;) {
		uint8_t d[2048];
		ssize_t len = recv(fd, d, sizeof(d), 0);
		char line[64];
		int ll = snprintf(line, sizeof(line), "datagram %zd bytes\n", len);
		if (len >= 0 && write(log, line, (size_t)ll) < 0)
			perror("upstream: log");
	}
}

static int tcp_peek(const char *addr, const char *port, const char *logpath)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || fd < 0 || log < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
		perror("upstream peek");
		return 1;
	}
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		struct timeval tv = { .tv_sec = 5 };
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		uint8_t d[16384];
		ssize_t n = recv(c, d, sizeof(d), 0);
		char line[64];
		int ll = snprintf(line, sizeof(line), "peek %zd bytes\n", n);
		if (write(log, line, (size_t)ll) < 0)
			perror("upstream: log");
		ll = snprintf(line, sizeof(line), "peeked %zd\n", n);
		if (send(c, line, (size_t)ll, MSG_NOSIGNAL) < 0)
			perror("upstream: peek answer");
		close(c);
	}
}

static int tcp_listen(const char *addr, const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0)
		return -1;
	return fd;
}

/* One connection's requests, one after the other, until EOF, an error or a quiet 10 s. */
static void keepalive_conn(int c, int log, unsigned conn)
{
	char buf[16384];
	size_t have = 0;
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (unsigned req = 1;;) {
		char *end;
		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			if (have == sizeof(buf))
				return;
			ssize_t r = recv(c, buf + have, sizeof(buf) - have, 0);
			if (r <= 0)
				return;
			have += (size_t)r;
		}
		*end = '\0';
		const char *host = strcasestr(buf, "\r\nhost:");
		char hv[256] = "-";
		if (host && sscanf(host + 7, " %255[^\r]", hv) != 1)
			snprintf(hv, sizeof(hv), "-");
		char line[400], resp[128];
		int ll = snprintf(line, sizeof(line), "request %u %u host %s\n", conn, req, hv);
		if (write(log, line, (size_t)ll) < 0)
			perror("upstream: log");
		int rl = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nkeepalive-%02u", req % 100);
		if (send(c, resp, (size_t)rl, MSG_NOSIGNAL) != rl)
			return;
		size_t used = (size_t)(end - buf) + 4;
		memmove(buf, buf + used, have - used);
		have -= used;
		req++;
	}
}

static int tcp_keepalive(const char *addr, const char *port, const char *logpath)
{
	int fd = tcp_listen(addr, port);
	int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0 || log < 0) {
		perror("upstream keepalive");
		return 1;
	}
	for (unsigned conn = 1;; conn++) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		keepalive_conn(c, log, conn);
		close(c);
	}
}

static int http_get(const char *addr, const char *port, const char *path)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "upstream get: '%s' is not an IPv4 address\n", addr);
		return 2;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("upstream get: connect");
		return 1;
	}
	char req[512], buf[65536];
	int rl = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr);
	if (rl < 0 || (size_t)rl >= sizeof(req) || write(fd, req, (size_t)rl) != rl) {
		perror("upstream get: write");
		return 1;
	}
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(buf) - 1 && (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	buf[n] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	if (!body) {
		fprintf(stderr, "upstream get: no HTTP answer (%zu bytes)\n", n);
		return 1;
	}
	fputs(body + 4, stdout);
	return strncmp(buf, "HTTP/1.0 200", 12) && strncmp(buf, "HTTP/1.1 200", 12) ? 1 : 0;
}

static int dns(int argc, char **argv);

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "udp-sink"))
		return udp_sink(argv[2], argv[3], argv[4]);
	if (argc >= 4 && !strcmp(argv[1], "dns"))
		return dns(argc - 1, argv + 1);
	if (argc == 5 && !strcmp(argv[1], "get"))
		return http_get(argv[2], argv[3], argv[4]);
	if (argc == 5 && !strcmp(argv[1], "peek"))
		return tcp_peek(argv[2], argv[3], argv[4]);
	if (argc == 5 && !strcmp(argv[1], "keepalive"))
		return tcp_keepalive(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: upstream dns ADDR LOGFILE NAME=IPV4... | upstream udp-sink ADDR PORT LOGFILE | "
		"upstream get ADDR PORT PATH | upstream peek ADDR PORT LOGFILE | upstream keepalive ADDR PORT LOGFILE\n");
	return 2;
}

static int dns(int argc, char **argv)
{
	if (argc - 3 > MAX_NAMES) {
		fprintf(stderr, "upstream dns: at most %d names\n", MAX_NAMES);
		return 2;
	}
	const char *names[MAX_NAMES];
	uint32_t addrs[MAX_NAMES];
	int n = 0;
	for (int i = 3; i < argc; i++, n++) {
		char *eq = strchr(argv[i], '=');
		struct in_addr a;
		if (!eq || inet_pton(AF_INET, eq + 1, &a) != 1) {
			fprintf(stderr, "upstream dns: '%s' is not NAME=IPV4\n", argv[i]);
			return 2;
		}
		*eq = '\0';
		names[n] = argv[i];
		addrs[n] = ntohl(a.s_addr);
	}
	int fd = bound_udp(argv[1], 53);
	int log = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0 || log < 0)
		return 1;
	for (;;) {
		uint8_t q[1500], out[DNS_UDP_MAX];
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t len = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
		if (len < 0)
			continue;
		struct dns_query dq;
		if (dns_parse_query(q, (size_t)len, &dq) != DNS_QUERY_OK)
			continue;
		char line[DNS_TEXT_NAME_MAX + 16];
		int ll = snprintf(line, sizeof(line), "%s %u\n", dq.name, dq.qtype);
		if (ll > 0 && write(log, line, (size_t)ll) < 0)
			perror("upstream: log");
		uint8_t rcode = DNS_RCODE_NXDOMAIN;
		uint32_t a = 0;
		for (int i = 0; i < n; i++)
			if (!strcasecmp(dq.name, names[i]))
				rcode = DNS_RCODE_NOERROR, a = addrs[i];
		int rl = dns_build_reply(&dq, rcode, &a, rcode == DNS_RCODE_NOERROR, 30, out, sizeof(out));
		if (rl > 0)
			sendto(fd, out, (size_t)rl, 0, (struct sockaddr *)&from, fl);
	}
}
