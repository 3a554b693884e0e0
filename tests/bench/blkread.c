/* Block-device read benchmark run inside the benchmark guest (static, no libc beyond the basics).
 *   blkread seq DEV MIB        sequential 1 MiB O_DIRECT reads of the first MIB MiB -> MiB/s
 *   blkread rand DEV COUNT     COUNT 4 KiB O_DIRECT reads at 4 KiB-aligned offsets drawn by a fixed-seed
 *                              xorshift64 over the whole device -> reads/s
 * Prints one line: "seq mib=N secs=S mibs=R" or "rand count=N secs=S iops=R"; exit 1 on any error. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int full_pread(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[1], "seq") && strcmp(argv[1], "rand"))) {
		fprintf(stderr, "usage: blkread seq DEV MIB | blkread rand DEV COUNT\n");
		return 2;
	}
	long n = strtol(argv[3], NULL, 10);
	int fd = open(argv[2], O_RDONLY | O_DIRECT);
	if (fd < 0 || n <= 0) {
		perror(argv[2]);
		return 1;
	}
	uint64_t size = 0;
	if (ioctl(fd, BLKGETSIZE64, &size) < 0) { /* a regular file (for trying it on the host) */
		off_t end = lseek(fd, 0, SEEK_END);
		size = end > 0 ? (uint64_t)end : 0;
	}
	if (size < 4096) {
		fprintf(stderr, "blkread: %s: size %llu\n", argv[2], (unsigned long long)size);
		return 1;
	}
	void *buf;
	if (posix_memalign(&buf, 4096, 1 << 20))
		return 1;
	if (!strcmp(argv[1], "seq")) {
		if ((uint64_t)n << 20 > size) {
			fprintf(stderr, "blkread: %s has only %llu bytes\n", argv[2], (unsigned long long)size);
			return 1;
		}
		double t0 = now();
		for (long i = 0; i < n; i++)
			if (full_pread(fd, buf, 1 << 20, (off_t)i << 20)) {
				perror("pread");
				return 1;
			}
		double s = now() - t0;
		printf("seq mib=%ld secs=%.3f mibs=%.1f\n", n, s, (double)n / s);
	} else {
		uint64_t x = 0x9e3779b97f4a7c15ull, blocks = size / 4096;
		double t0 = now();
		for (long i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			if (full_pread(fd, buf, 4096, (off_t)((x % blocks) * 4096))) {
				perror("pread");
				return 1;
			}
		}
		double s = now() - t0;
		printf("rand count=%ld secs=%.3f iops=%.0f\n", n, s, (double)n / s);
	}
	return 0;
}
