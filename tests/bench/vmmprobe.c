/*
 * Benchmark probe for a VMM command line.  Starts the command with stdout on a pipe,
 * waits for the guest's first byte, then either records the elapsed time or reads
 * the VMM's resident memory, and kills it.
 *
 *   vmmprobe first RUNS CMD...   prints "median_us=N min_us=N max_us=N runs=N"
 *   vmmprobe mem GUEST_MIB TEXT CMD...  once a stdout line contains TEXT ("" = the first byte),
 *                                 freezes the VMM (SIGSTOP) and prints
 *                                 "vmm_rss_kib=N guest_rss_kib=N total_rss_kib=N"
 *   vmmprobe marker RUNS TEXT CMD...  times start -> a stdout line containing TEXT, and start -> exit;
 *                                     prints "marker_us=N exit_us=N runs=N" (medians), fails if a
 *                                     run never shows TEXT or exits non-zero
 *
 * Guest RAM is recognised as the largest mapping at least GUEST_MIB in size; its
 * resident pages are what the guest touched, the rest is the VMM's own footprint.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
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

/* Starts argv with stdout on a pipe; returns the pid, *fd is the read end. */
static pid_t spawn(char **argv, int *fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		int dn = open("/dev/null", O_RDWR);
		dup2(dn, 0);
		dup2(dn, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	*fd = p[0];
	return pid;
}

static void reap(pid_t pid, int fd)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(fd);
}

static int probe_first(int runs, char **argv)
{
	double *t = calloc(runs, sizeof(double));
	for (int i = 0; i < runs; i++) {
		int fd;
		double t0 = now_us();
		pid_t pid = spawn(argv, &fd);
		char c;
		ssize_t n = read(fd, &c, 1);
		t[i] = now_us() - t0;
		reap(pid, fd);
		if (n != 1) {
			fprintf(stderr, "vmmprobe: run %d: the guest printed nothing\n", i);
			return 1;
		}
	}
	qsort(t, runs, sizeof(double), cmp);
	printf("median_us=%.0f min_us=%.0f max_us=%.0f runs=%d\n", t[runs / 2], t[0], t[runs - 1], runs);
	return 0;
}

static int probe_mem(unsigned long guest_mib, const char *text, char **argv)
{
	int fd;
	pid_t pid = spawn(argv, &fd);
	char buf[65536];
	size_t have = 0;
	bool seen = false;
	while (!seen) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			break;
		have += n;
		buf[have] = 0;
		seen = strstr(buf, text) != NULL;
		if (have > sizeof(buf) / 2) {
			memmove(buf, buf + have - 256, 256);
			have = 256;
		}
	}
	if (!seen) {
		fprintf(stderr, "vmmprobe: the guest never printed '%s'\n", text);
		reap(pid, fd);
		return 1;
	}
	/* Freeze it where it stands: the guest may power off right after the marker. */
	kill(pid, SIGSTOP);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	FILE *f = fopen(path, "r");
	if (!f) {
		reap(pid, fd);
		return 1;
	}
	/* Guest RAM may be split into adjacent mappings (different madvise flags):
	 * take the largest mapping and grow it over its contiguous neighbours. */
	enum { MAXMAP = 4096 };
	static unsigned long long lo[MAXMAP], hi[MAXMAP], rss[MAXMAP];
	static bool anon[MAXMAP]; /* no backing path: plain anonymous memory */
	int n = 0;
	char line[512];
	unsigned long long total = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b;
		unsigned long kb;
		if (sscanf(line, "%llx-%llx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			if (n < MAXMAP) {
				lo[n] = a;
				hi[n] = b;
				rss[n] = 0;
				char mpath[256] = "";
				sscanf(line, "%*s %*s %*s %*s %*s %255s", mpath);
				anon[n] = mpath[0] == 0;
				n++;
			}
		} else if (sscanf(line, "Rss: %lu kB", &kb) == 1 && n > 0) {
			rss[n - 1] = kb;
			total += kb;
		}
	}
	fclose(f);
	int best = -1;
	for (int i = 0; i < n; i++)
		if (best < 0 || hi[i] - lo[i] > hi[best] - lo[best])
			best = i;
	int first = best, last = best;
	while (first > 0 && anon[first - 1] && hi[first - 1] == lo[first])
		first--;
	while (last >= 0 && last + 1 < n && anon[last + 1] && lo[last + 1] == hi[last])
		last++;
	unsigned long long guest = 0, span = 0;
	for (int i = first; best >= 0 && i <= last; i++) {
		guest += rss[i];
		span += hi[i] - lo[i];
	}
	reap(pid, fd);
	if (best < 0 || span < (unsigned long long)guest_mib << 20) {
		fprintf(stderr, "vmmprobe: no mapping of %lu MiB found\n", guest_mib);
		return 1;
	}
	printf("vmm_rss_kib=%llu guest_rss_kib=%llu total_rss_kib=%llu\n", total - guest, guest, total);
	return 0;
}

static int probe_marker(int runs, const char *text, char **argv)
{
	double *tm = calloc(runs, sizeof(double)), *te = calloc(runs, sizeof(double));
	for (int i = 0; i < runs; i++) {
		int fd;
		double t0 = now_us();
		pid_t pid = spawn(argv, &fd);
		char buf[65536];
		size_t have = 0;
		tm[i] = -1;
		for (;;) {
			ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
			if (n <= 0)
				break;
			have += n;
			buf[have] = 0;
			if (tm[i] < 0 && strstr(buf, text))
				tm[i] = now_us() - t0;
			if (have > sizeof(buf) / 2) { /* keep the tail, enough to hold a marker */
				memmove(buf, buf + have - 256, 256);
				have = 256;
			}
		}
		int st;
		waitpid(pid, &st, 0);
		te[i] = now_us() - t0;
		close(fd);
		if (tm[i] < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "vmmprobe: run %d: marker %s, status 0x%x\n", i, tm[i] < 0 ? "missing" : "seen", st);
			return 1;
		}
	}
	qsort(tm, runs, sizeof(double), cmp);
	qsort(te, runs, sizeof(double), cmp);
	printf("marker_us=%.0f exit_us=%.0f runs=%d\n", tm[runs / 2], te[runs / 2], runs);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "marker"))
		return probe_marker(atoi(argv[2]) > 0 ? atoi(argv[2]) : 1, argv[3], argv + 4);
	if (argc >= 4 && !strcmp(argv[1], "first"))
		return probe_first(atoi(argv[2]) > 0 ? atoi(argv[2]) : 1, argv + 3);
	if (argc >= 5 && !strcmp(argv[1], "mem"))
		return probe_mem(strtoul(argv[2], NULL, 10), argv[3], argv + 4);
	fprintf(stderr, "usage: vmmprobe first RUNS CMD... | mem GUEST_MIB TEXT CMD... | marker RUNS TEXT CMD...\n");
	return 2;
}
