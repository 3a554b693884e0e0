/*
 * KVM-tier helper for tg.case=vsock: runs padcell, speaks Firecracker's CONNECT protocol to its
 * vsock socket and checks the test guest's echo, and receives the guest's greeting on PATH_5000.
 *
 *   tg-vsock PATH NBYTES -- padcell boot ... --vsock PATH ...
 *
 * Prints one "tg-vsock: ok ..." or "tg-vsock: FAIL ..." line per check; exits with padcell's
 * exit code when every check passed, else 1.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GREETING "hello from the padcell test guest\n"

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int addr_of(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(a->sun_path))
		return -1;
	memcpy(a->sun_path, path, strlen(path) + 1);
	return 0;
}

/* Reads until EOF, len bytes or the deadline.  Returns the bytes read. */
static size_t read_all(int fd, char *buf, size_t len, long long deadline)
{
	size_t got = 0;
	while (got < len) {
		long long left = deadline - now_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, (int)left) != 1)
			break;
		ssize_t n = read(fd, buf + got, len - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* Reads one line (up to the newline) without reading past it. */
static int read_line(int fd, char *buf, size_t len, long long deadline)
{
	size_t n = 0;
	while (n + 1 < len) {
		if (read_all(fd, buf + n, 1, deadline) != 1)
			return -1;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = 0;
	return (int)n;
}

int main(int argc, char **argv)
{
	if (argc < 5 || strcmp(argv[3], "--")) {
		fprintf(stderr, "usage: tg-vsock PATH NBYTES -- padcell boot ...\n");
		return 2;
	}
	const char *path = argv[1];
	size_t nbytes = strtoul(argv[2], NULL, 10);
	signal(SIGPIPE, SIG_IGN);
	int fails = 0;

	/* The guest's outgoing connection lands here: listening before padcell starts. */
	char gpath[200];
	snprintf(gpath, sizeof(gpath), "%s_5000", path);
	unlink(gpath);
	struct sockaddr_un ga, a;
	int gl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (addr_of(&ga, gpath) || addr_of(&a, path) || gl < 0 || bind(gl, (struct sockaddr *)&ga, sizeof(ga)) ||
	    listen(gl, 4)) {
		printf("tg-vsock: FAIL cannot listen on %s: %s\n", gpath, strerror(errno));
		return 1;
	}

	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[4], argv + 4);
		_exit(127);
	}
	long long t0 = now_ms(), deadline = t0 + 25000; /* inside the harness's 30 s per case */

	/* Host -> guest: CONNECT 1234 until the guest serves the port (it ignores early requests). */
	char *out = malloc(nbytes), *back = malloc(nbytes);
	for (size_t i = 0; i < nbytes; i++)
		out[i] = (char)('a' + (i * 7 + i / 26) % 26);
	int c = -1, tries = 0;
	char line[64];
	while (now_ms() < deadline) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			pid = -1;
			break;
		}
		c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
			close(c);
			c = -1;
			usleep(20000);
			continue;
		}
		tries++;
		if (write(c, "CONNECT 1234\n", 13) == 13 && read_line(c, line, sizeof(line), now_ms() + 5000) > 0 &&
		    !strncmp(line, "OK ", 3))
			break;
		close(c); /* refused or silent for 2 s: the guest is not listening yet */
		c = -1;
		usleep(50000);
	}
	if (c < 0) {
		printf("tg-vsock: FAIL no OK for CONNECT 1234 after %d tries\n", tries);
		fails++;
	} else {
		unsigned hp = (unsigned)strtoul(line + 3, NULL, 10);
		printf("tg-vsock: ok connect: \"CONNECT 1234\" answered \"OK %u\" (try %d, %lld ms)\n", hp, tries,
		       now_ms() - t0);
		if (hp < 1024) {
			printf("tg-vsock: FAIL host port %u is not an ephemeral one\n", hp);
			fails++;
		}
		size_t sent = 0;
		while (sent < nbytes) {
			ssize_t n = write(c, out + sent, nbytes - sent);
			if (n <= 0)
				break;
			sent += (size_t)n;
		}
		shutdown(c, SHUT_WR);
		/* The echo and the EOF after it may take a loaded machine long: only the case's deadline. */
		size_t got = read_all(c, back, nbytes, deadline);
		char extra;
		ssize_t eof = read_all(c, &extra, 1, deadline);
		if (sent != nbytes || got != nbytes || memcmp(out, back, nbytes) || eof != 0) {
			printf("tg-vsock: FAIL echo: sent %zu of %zu, got back %zu%s%s\n", sent, nbytes, got,
			       got == nbytes && memcmp(out, back, nbytes) ? ", different bytes" : "",
			       eof ? ", no EOF after" : "");
			fails++;
		} else {
			printf("tg-vsock: ok echo: %zu bytes through the guest and back, then EOF\n", nbytes);
		}
		close(c);
	}

	/* Guest -> host: padcell connected to PATH_5000 for the guest's CID 2 port 5000. */
	struct pollfd p = { .fd = gl, .events = POLLIN };
	long long left = deadline - now_ms();
	int g = left > 0 && poll(&p, 1, (int)left) == 1 ? accept(gl, NULL, NULL) : -1;
	char greet[128] = { 0 };
	size_t glen = g >= 0 ? read_all(g, greet, sizeof(greet) - 1, deadline) : 0;
	if (g < 0 || glen != strlen(GREETING) || memcmp(greet, GREETING, glen)) {
		printf("tg-vsock: FAIL greeting on %s: %s\"%.*s\"\n", gpath, g < 0 ? "no connection " : "",
		       (int)glen, greet);
		fails++;
	} else {
		printf("tg-vsock: ok greeting: guest's connection to CID 2 port 5000 arrived on PATH_5000\n");
	}
	if (g >= 0)
		close(g);
	close(gl);
	unlink(gpath);

	int status = 0, rc = 1;
	if (pid > 0) {
		while (now_ms() < deadline && waitpid(pid, &status, WNOHANG) == 0)
			usleep(20000);
		if (now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			printf("tg-vsock: FAIL padcell still running after 25 s\n");
			fails++;
		}
	}
	if (pid > 0 && WIFEXITED(status))
		rc = WEXITSTATUS(status);
	printf("tg-vsock: padcell exit %d\n", rc);
	free(out);
	free(back);
	return fails ? 1 : rc;
}
