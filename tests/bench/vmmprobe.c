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
 *   vmmprobe memof PID GUEST_MIB      the same split as mem for a VMM already running
 *   vmmprobe clones N TEXT CMD...     starts N copies of CMD at once; each is frozen (SIGSTOP) once
 *                                     its stdout contains TEXT; when all are, prints
 *                                     "clones=N pss_kib=N rss_kib=N" (sums of Pss from smaps_rollup and
 *                                     VmRSS), then kills them; fails after 120 s
 *   vmmprobe hmp SOCK CMD...          sends each CMD to a QEMU human monitor on the Unix socket SOCK,
 *                                     waiting for its prompt (for the last, its prompt or EOF), and
 *                                     prints the replies
 *
 * With VMMPROBE_STDERR=FILE set, the commands' stderr is appended to FILE (else /dev/null).
 *
 * Guest RAM is recognised as the largest mapping, grown over contiguous anonymous neighbours
 * up to GUEST_MIB in all (at least GUEST_MIB); its resident pages are what the guest touched,
 * the rest is the VMM's own footprint.
 */
#include <errno.h>
#include <fcntl.h>
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
		const char *err = getenv("VMMPROBE_STDERR");
		int ef = err && *err ? open(err, O_WRONLY | O_CREAT | O_APPEND, 0600) : -1;
		if (ef >= 0)
			dup2(ef, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	*fd = p[0];
	return pid;
}

/*
 * SIGKILL, then wait for the child and for whatever else holds its stdout: padcell's monitor is
 * the child of the started pid (its supervisor, README "The jail") and dies a moment after it, so
 * the pipe's EOF, not waitpid, says the VM is gone; its teardown must not overlap the next run.
 * Bounded: 30 s.
 */
static void reap(pid_t pid, int fd)
{
	if (pid > 0) { /* never kill(-1): a failed spawn has no child */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	char buf[4096];
	for (int waited = 0; fd >= 0 && waited < 300; waited++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 100) == 1 && read(fd, buf, sizeof(buf)) <= 0)
			break;
	}
	if (fd >= 0)
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

/* Splits PID's resident memory into guest RAM (the largest mapping, grown over its contiguous
 * anonymous neighbours: different madvise flags split it) and the rest. */
static int smaps_split(pid_t pid, unsigned long guest_mib, unsigned long long *vmm, unsigned long long *guest)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
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
	/*
	 * Grown only up to the guest's size: a neighbour beyond it (a thread's stack, a heap arena
	 * that happens to be mapped right beside guest RAM) is the VMM's own memory and counts as such.
	 */
	int first = best, last = best;
	unsigned long long cap = (unsigned long long)guest_mib << 20, have = best >= 0 ? hi[best] - lo[best] : 0;
	while (first > 0 && anon[first - 1] && hi[first - 1] == lo[first] && have + hi[first - 1] - lo[first - 1] <= cap) {
		first--;
		have += hi[first] - lo[first];
	}
	while (last >= 0 && last + 1 < n && anon[last + 1] && lo[last + 1] == hi[last] &&
	       have + hi[last + 1] - lo[last + 1] <= cap) {
		last++;
		have += hi[last] - lo[last];
	}
	unsigned long long g = 0, span = 0;
	for (int i = first; best >= 0 && i <= last; i++) {
		g += rss[i];
		span += hi[i] - lo[i];
	}
	if (best < 0 || span < (unsigned long long)guest_mib << 20) {
		fprintf(stderr, "vmmprobe: no mapping of %lu MiB found\n", guest_mib);
		return -1;
	}
	*vmm = total - g;
	*guest = g;
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
	unsigned long long vmm, guest;
	int r = smaps_split(pid, guest_mib, &vmm, &guest);
	reap(pid, fd);
	if (r < 0)
		return 1;
	printf("vmm_rss_kib=%llu guest_rss_kib=%llu total_rss_kib=%llu\n", vmm, guest, vmm + guest);
	return 0;
}

static int probe_memof(pid_t pid, unsigned long guest_mib)
{
	unsigned long long vmm, guest;
	if (smaps_split(pid, guest_mib, &vmm, &guest) < 0)
		return 1;
	printf("vmm_rss_kib=%llu guest_rss_kib=%llu total_rss_kib=%llu\n", vmm, guest, vmm + guest);
	return 0;
}

/* The value of FIELD ("Pss:", "VmRSS:") in kB from /proc/PID/NAME, or -1. */
static long long proc_kib(pid_t pid, const char *name, const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long long v = -1;
	size_t fl = strlen(field);
	while (v < 0 && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, fl))
			v = strtoll(line + fl, NULL, 10);
	fclose(f);
	return v;
}

static int probe_clones(int n, const char *text, char **argv)
{
	enum { MAXC = 64, KEEP = 256 };
	if (n > MAXC)
		n = MAXC;
	pid_t pid[MAXC];
	struct pollfd pfd[MAXC];
	char tail[MAXC][2 * KEEP + 1];
	size_t have[MAXC];
	int left = n, rc = 1;
	for (int i = 0; i < n; i++) {
		int fd = -1;
		pid[i] = spawn(argv, &fd);
		pfd[i] = (struct pollfd){ .fd = fd, .events = POLLIN };
		have[i] = 0;
		if (pid[i] < 0) {
			fprintf(stderr, "vmmprobe: cannot start clone %d: %s\n", i, strerror(errno));
			if (fd >= 0)
				close(fd);
			n = i; /* only the started ones are reaped */
			goto out;
		}
	}
	double end = now_us() + 120e6;
	while (left > 0 && now_us() < end) {
		if (poll(pfd, n, 1000) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t r = read(pfd[i].fd, tail[i] + have[i], 2 * KEEP - have[i]);
			if (r <= 0) {
				fprintf(stderr, "vmmprobe: clone %d ended before printing '%s'\n", i, text);
				goto out;
			}
			have[i] += r;
			tail[i][have[i]] = 0;
			if (strstr(tail[i], text)) {
				kill(pid[i], SIGSTOP); /* frozen: no more faults, no CPU */
				pfd[i].fd = -pfd[i].fd - 1;
				left--;
			} else if (have[i] > KEEP) {
				memmove(tail[i], tail[i] + have[i] - KEEP, KEEP);
				have[i] = KEEP;
			}
		}
	}
	if (left > 0) {
		fprintf(stderr, "vmmprobe: %d of %d clones never printed '%s'\n", left, n, text);
		goto out;
	}
	long long pss = 0, rss = 0;
	for (int i = 0; i < n; i++) {
		long long p = proc_kib(pid[i], "smaps_rollup", "Pss:"), r = proc_kib(pid[i], "status", "VmRSS:");
		if (p < 0 || r < 0) {
			fprintf(stderr, "vmmprobe: cannot read clone %d's memory\n", i);
			goto out;
		}
		pss += p;
		rss += r;
	}
	printf("clones=%d pss_kib=%lld rss_kib=%lld\n", n, pss, rss);
	rc = 0;
out:
	for (int i = 0; i < n; i++)
		reap(pid[i], pfd[i].fd < 0 ? -pfd[i].fd - 1 : pfd[i].fd);
	return rc;
}

/* Reads from the monitor until its prompt ends the input (or EOF if eof_ok); prints it. */
static int hmp_reply(int fd, bool eof_ok)
{
	static char buf[1 << 16];
	size_t have = 0;
	const char *prompt = "(qemu) ";
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 120000) <= 0) {
			fprintf(stderr, "vmmprobe: the monitor did not answer within 120 s\n");
			return -1;
		}
		ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (r <= 0)
			return eof_ok ? 0 : -1;
		have += r;
		buf[have] = 0;
		if (have >= strlen(prompt) && !strcmp(buf + have - strlen(prompt), prompt)) {
			fwrite(buf, 1, have, stdout);
			putchar('\n');
			return 0;
		}
		if (have > sizeof(buf) / 2) {
			fwrite(buf, 1, have - 64, stdout);
			memmove(buf, buf + have - 64, 64);
			have = 64;
		}
	}
}

static int probe_hmp(const char *sock, char **cmds, int ncmds)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(sock) >= sizeof(a.sun_path)) {
		fprintf(stderr, "vmmprobe: socket path too long\n");
		return 1;
	}
	strcpy(a.sun_path, sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		fprintf(stderr, "vmmprobe: cannot connect to %s: %s\n", sock, strerror(errno));
		return 1;
	}
	if (hmp_reply(fd, false) < 0)
		return 1;
	for (int i = 0; i < ncmds; i++) {
		char line[4096];
		int len = snprintf(line, sizeof(line), "%s\n", cmds[i]);
		if (len >= (int)sizeof(line) || write(fd, line, len) != len || hmp_reply(fd, i == ncmds - 1) < 0) {
			fprintf(stderr, "vmmprobe: monitor command '%s' failed\n", cmds[i]);
			return 1;
		}
	}
	close(fd);
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
	if (argc == 4 && !strcmp(argv[1], "memof"))
		return probe_memof(atoi(argv[2]), strtoul(argv[3], NULL, 10));
	if (argc >= 5 && !strcmp(argv[1], "clones"))
		return probe_clones(atoi(argv[2]) > 0 ? atoi(argv[2]) : 1, argv[3], argv + 4);
	if (argc >= 4 && !strcmp(argv[1], "hmp"))
		return probe_hmp(argv[2], argv + 3, argc - 3);
	fprintf(stderr, "usage: vmmprobe first RUNS CMD... | mem GUEST_MIB TEXT CMD... | marker RUNS TEXT CMD... |\n"
			"       memof PID GUEST_MIB | clones N TEXT CMD... | hmp SOCK CMD...\n");
	return 2;
}
