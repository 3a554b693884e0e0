/*
 * vsock throughput, guest -> host, for `make bench` (tests/bench/run.sh, nested tier).
 *   vsockbench send CID PORT MIB      in the guest: connect over AF_VSOCK, write MIB MiB, close
 *   vsockbench sink-unix PATH COUNT   on the host, padcell: listen on the Unix socket PATH (the
 *                                     VM's --vsock PATH plus _PORT), take COUNT connections
 *   vsockbench sink-vsock PORT COUNT  on the host, QEMU vhost-vsock: listen on AF_VSOCK PORT
 * Each sink connection prints "bytes=N us=N mibs=X": time from accept to end of stream.  The same
 * program on both sides of both VMMs, so the figures differ only in the transport.
 */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256u << 10)

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int die(const char *what)
{
	fprintf(stderr, "vsockbench: %s: %s\n", what, strerror(errno));
	return 1;
}

static int do_send(unsigned cid, unsigned port, unsigned mib)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (fd < 0)
		return die("socket(AF_VSOCK)");
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	/* The host's listener may come up a moment after the guest: retry for a few seconds. */
	int tries = 0;
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (++tries > 100)
			return die("connect");
		close(fd);
		usleep(50000);
		fd = socket(AF_VSOCK, SOCK_STREAM, 0);
		if (fd < 0)
			return die("socket(AF_VSOCK)");
	}
	static char buf[CHUNK];
	memset(buf, 0x5a, sizeof(buf));
	unsigned long long left = (unsigned long long)mib << 20;
	while (left) {
		size_t n = left < sizeof(buf) ? left : sizeof(buf);
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return die("write");
		left -= (size_t)w;
	}
	close(fd);
	return 0;
}

static int sink(int lfd, unsigned count)
{
	static char buf[CHUNK];
	for (unsigned i = 0; i < count; i++) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0)
			return die("accept");
		double t0 = now_us();
		unsigned long long bytes = 0;
		for (;;) {
			ssize_t n = read(c, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return die("read");
			if (n == 0)
				break;
			bytes += (unsigned long long)n;
		}
		double us = now_us() - t0;
		close(c);
		printf("bytes=%llu us=%.0f mibs=%.1f\n", bytes, us, us > 0 ? bytes / 1048576.0 / (us / 1e6) : 0);
		fflush(stdout);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "send"))
		return do_send((unsigned)strtoul(argv[2], NULL, 0), (unsigned)strtoul(argv[3], NULL, 0),
			       (unsigned)strtoul(argv[4], NULL, 0));
	if (argc == 4 && !strcmp(argv[1], "sink-unix")) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (strlen(argv[2]) >= sizeof(sa.sun_path))
			return fprintf(stderr, "vsockbench: path too long\n"), 1;
		strcpy(sa.sun_path, argv[2]);
		unlink(argv[2]);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
			return die("listen (unix)");
		int rc = sink(fd, (unsigned)strtoul(argv[3], NULL, 0));
		unlink(argv[2]);
		return rc;
	}
	if (argc == 4 && !strcmp(argv[1], "sink-vsock")) {
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
					  .svm_port = (unsigned)strtoul(argv[2], NULL, 0) };
		int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
			return die("listen (vsock)");
		return sink(fd, (unsigned)strtoul(argv[3], NULL, 0));
	}
	fprintf(stderr, "usage: vsockbench send CID PORT MIB | sink-unix PATH COUNT | sink-vsock PORT COUNT\n");
	return 2;
}
