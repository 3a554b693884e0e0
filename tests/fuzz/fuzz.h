/* What every harness shares: an fd-leak check and little-endian readers over the fuzz input. */
#ifndef PADCELL_FUZZ_H
#define PADCELL_FUZZ_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Open fds of this process, /proc/self/fd's own excepted. */
static inline int fuzz_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the directory's own fd */
}

/*
 * fuzz_fds_begin() at the start of an execution, fuzz_fds_end() at its end: aborts (a crash
 * libFuzzer reports, with the input that caused it) when the execution left an fd open.
 */
static int fuzz_fds_at_begin;
static inline void fuzz_fds_begin(void)
{
	fuzz_fds_at_begin = fuzz_fd_count();
}

static inline void fuzz_fds_end(void)
{
	int n = fuzz_fd_count();
	if (n > fuzz_fds_at_begin) {
		fprintf(stderr, "fuzz: fd leak: %d open fds after the execution, %d before\n", n, fuzz_fds_at_begin);
		abort();
	}
}

/* A cursor over the input: takes bytes from the front; past the end everything reads as zero. */
struct fuzz_in {
	const uint8_t *p;
	size_t len;
};

static inline size_t fuzz_take(struct fuzz_in *in, void *out, size_t n)
{
	size_t k = n < in->len ? n : in->len;
	if (k)
		memcpy(out, in->p, k);
	memset((uint8_t *)out + k, 0, n - k);
	in->p += k;
	in->len -= k;
	return k;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	uint8_t v;
	fuzz_take(in, &v, 1);
	return v;
}

static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
	uint8_t b[2];
	fuzz_take(in, b, 2);
	return (uint16_t)(b[0] | b[1] << 8);
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
	uint8_t b[4];
	fuzz_take(in, b, 4);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

#endif
