/*
 * KVM-tier helper for tg.case=vsock: runs padcell, speaks Firecracker's CONNECT protocol to its
 * vsock socket and checks the test guest's echo, and receives the guest's greeting on PATH_5000.
 *
 *   tg-vsock [--rounds N] [--gate PREFIX] [--deadline S] [--abort-after B] PATH NBYTES -- padcell boot ...
 *
 * --rounds N: N echo connections one after another (the guest is given tg.vsockecho=N).
 * --gate PREFIX: before round k, print "tg-vsock: round k waits for PREFIX.k" and wait until that
 *   file exists (a harness holds many VMs at the same point this way).
 * --deadline S: the hang guard for the whole run (default 25 s).
 * --abort-after B: in round 1, send B bytes, wait until echoed bytes are waiting unread, then
 *   close: the host peer vanishes mid-stream (the guest must see a reset; later rounds run normally).
 *
 * Prints one "tg-vsock: ok ..." or "tg-vsock: FAIL ..." line per check; exits with padcell's
 * exit code when every check passed, else 1.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
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

static bool gate_wait(const char *prefix, int round, pid_t pid, long long deadline)
{
	char path[256];
	snprintf(path, sizeof(path), "%s.%d", prefix, round);
	printf("tg-vsock: round %d waits for %s\n", round, path);
	fflush(stdout);
	while (access(path, F_OK) != 0) {
		if (now_ms() >= deadline || waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		usleep(50000);
	}
	return true;
}

/* CONNECT 1234 until the guest serves the port (it ignores early requests).  Returns the fd or -1. */
static int echo_connect(const struct sockaddr_un *a, pid_t *pid, long long deadline, long long t0, int round)
{
	int c = -1, tries = 0;
	char line[64];
	while (now_ms() < deadline) {
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			*pid = -1;
			break;
		}
		c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(c, (const struct sockaddr *)a, sizeof(*a)) < 0) {
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
		printf("tg-vsock: FAIL round %d: no OK for CONNECT 1234 after %d tries\n", round, tries);
		return -1;
	}
	unsigned hp = (unsigned)strtoul(line + 3, NULL, 10);
	printf("tg-vsock: ok connect: \"CONNECT 1234\" answered \"OK %u\" (round %d, try %d, %lld ms)\n", hp, round,
	       tries, now_ms() - t0);
	if (hp < 1024) {
		printf("tg-vsock: FAIL host port %u is not an ephemeral one\n", hp);
		close(c);
		return -1;
	}
	return c;
}

/* Sends NBYTES, half-closes, checks the echo and the EOF after it.  Returns 0 when all came back. */
static int echo_round(int c, const char *out, char *back, size_t nbytes, long long deadline, int round)
{
	size_t sent = 0;
	while (sent < nbytes) {
		ssize_t n = write(c, out + sent, nbytes - sent);
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	shutdown(c, SHUT_WR);
	/* The echo and the EOF after it may take a loaded machine long: only the deadline. */
	size_t got = read_all(c, back, nbytes, deadline);
	char extra;
	ssize_t eof = read_all(c, &extra, 1, deadline);
	if (sent != nbytes || got != nbytes || memcmp(out, back, nbytes) || eof != 0) {
		printf("tg-vsock: FAIL echo (round %d): sent %zu of %zu, got back %zu%s%s\n", round, sent, nbytes, got,
		       got == nbytes && memcmp(out, back, nbytes) ? ", different bytes" : "", eof ? ", no EOF after" : "");
		return -1;
	}
	printf("tg-vsock: ok echo: %zu bytes through the guest and back, then EOF (round %d)\n", nbytes, round);
	return 0;
}

/* Sends `bytes`, waits until some echo is waiting unread, then closes: Linux tells the peer of a
 * Unix stream socket closed with unread data ECONNRESET, the host end of an abort. */
static int echo_abort(int c, const char *out, size_t bytes, long long deadline)
{
	size_t sent = 0;
	while (sent < bytes) {
		ssize_t n = write(c, out + sent, bytes - sent);
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	struct pollfd p = { .fd = c, .events = POLLIN };
	long long left = deadline - now_ms();
	int ready = left > 0 ? poll(&p, 1, (int)left) : 0;
	close(c);
	if (sent != bytes || ready != 1) {
		printf("tg-vsock: FAIL abort: sent %zu of %zu, %s\n", sent, bytes, ready == 1 ? "" : "no echo came");
		return -1;
	}
	printf("tg-vsock: ok abort: closed after %zu bytes with the echo unread\n", sent);
	return 0;
}

int main(int argc, char **argv)
{
	int rounds = 1;
	long long deadline_s = 25;
	size_t abort_after = 0;
	const char *gate = NULL;
	int ai = 1;
	while (ai + 1 < argc && !strncmp(argv[ai], "--", 2) && argv[ai][2]) {
		if (!strcmp(argv[ai], "--rounds"))
			rounds = atoi(argv[ai + 1]);
		else if (!strcmp(argv[ai], "--gate"))
			gate = argv[ai + 1];
		else if (!strcmp(argv[ai], "--deadline"))
			deadline_s = atoll(argv[ai + 1]);
		else if (!strcmp(argv[ai], "--abort-after"))
			abort_after = strtoul(argv[ai + 1], NULL, 10);
		else
			break;
		ai += 2;
	}
	argc -= ai - 1;
	argv += ai - 1;
	if (argc < 5 || strcmp(argv[3], "--") || rounds < 1 || rounds > 100 || deadline_s < 1) {
		fprintf(stderr, "usage: tg-vsock [--rounds N] [--gate PREFIX] [--deadline S] [--abort-after B] "
				"PATH NBYTES -- padcell boot ...\n");
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

	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[4], argv + 4);
		_exit(127);
	}
	long long t0 = now_ms(), deadline = t0 + deadline_s * 1000;
	printf("tg-vsock: padcell pid %d\n", (int)pid);

	char *out = malloc(nbytes ? nbytes : 1), *back = malloc(nbytes ? nbytes : 1);
	for (size_t i = 0; i < nbytes; i++)
		out[i] = (char)('a' + (i * 7 + i / 26) % 26);
	bool greeted = false;
	for (int r = 1; r <= rounds && pid > 0; r++) {
		if (gate && !gate_wait(gate, r, pid, deadline)) {
			printf("tg-vsock: FAIL round %d: gate never opened or padcell ended\n", r);
			fails++;
			break;
		}
		int c = echo_connect(&a, &pid, deadline, t0, r);
		if (c < 0) {
			fails++;
			break;
		}
		if (r == 1 && abort_after) {
			fails += echo_abort(c, out, abort_after < nbytes ? abort_after : nbytes, deadline) != 0;
		} else {
			fails += echo_round(c, out, back, nbytes, deadline, r) != 0;
			close(c);
		}
		if (!greeted) {
			/* Guest -> host: padcell connected to PATH_5000 for the guest's CID 2 port 5000 (before the
			 * first echo, so it is waiting in the backlog by now). */
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
			greeted = true;
		}
		fflush(stdout);
	}
	close(gl);
	unlink(gpath);

	int status = 0, rc = 1;
	if (pid > 0) {
		while (now_ms() < deadline && waitpid(pid, &status, WNOHANG) == 0)
			usleep(20000);
		if (now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			printf("tg-vsock: FAIL padcell still running after %lld s\n", deadline_s);
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
