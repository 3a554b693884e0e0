/* Times a command from exec to the first byte on its stdout, and to its exit.  Prints medians in microseconds. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* usage: firstbyte RUNS CMD ARGS...  → "first_us=<median> exit_us=<median> runs=N" */
int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: firstbyte RUNS CMD [ARGS...]\n");
		return 2;
	}
	int runs = atoi(argv[1]);
	if (runs < 1 || runs > 10000)
		return 2;
	double *first = calloc(runs, sizeof(double)), *total = calloc(runs, sizeof(double));
	for (int i = 0; i < runs; i++) {
		int p[2];
		if (pipe(p) < 0)
			return 1;
		double t0 = now_us();
		pid_t pid = fork();
		if (pid == 0) {
			dup2(p[1], 1);
			close(p[0]);
			close(p[1]);
			int dn = open("/dev/null", 0);
			dup2(dn, 0);
			execvp(argv[2], argv + 2);
			_exit(127);
		}
		close(p[1]);
		char c;
		ssize_t n = read(p[0], &c, 1);
		double t1 = now_us();
		char buf[4096];
		while (read(p[0], buf, sizeof(buf)) > 0)
			;
		int st;
		waitpid(pid, &st, 0);
		double t2 = now_us();
		close(p[0]);
		if (n != 1) {
			fprintf(stderr, "firstbyte: run %d printed nothing (status 0x%x)\n", i, st);
			return 1;
		}
		first[i] = t1 - t0;
		total[i] = t2 - t0;
	}
	qsort(first, runs, sizeof(double), cmp);
	qsort(total, runs, sizeof(double), cmp);
	printf("first_us=%.0f exit_us=%.0f runs=%d\n", first[runs / 2], total[runs / 2], runs);
	return 0;
}
