/*
 * padcell-agent: the guest side of `padcell run/exec/cp` (protocol: guest/agent/proto.h).
 *
 * As init (PID 1, `init=/sbin/padcell-agent`): mounts the basic file systems, sets up the scratch
 * disk, listens on vsock port AGENT_PORT, calls the host once on the same port when ready (that is
 * how `padcell run` learns it is ready without polling), reaps every orphan, and forks one handler
 * process per connection (at most AGENT_MAX_CONNS at once).  It never exits: a failure ends one
 * handler, never init.
 *
 * `padcell-agent --serve-fd N` serves one connection on fd N and exits: the unit tests run the real
 * agent this way, over a socket pair, as an ordinary host process.  `--listen-fd N` accepts on the
 * listening socket N as init does on vsock, with a process manager (guest/agent/procs.c) for
 * background processes that outlive their connection; the unit tests of protocol 4 use it.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/random.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <ftw.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/agent/netcfg.h"
#include "guest/agent/procs.h"
#include "guest/agent/proto.h"
#include "guest/agent/watch.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define TOOLS_PATH   "/usr/lib/padcell/bin:" DEFAULT_PATH /* busybox tools of the Debian image first */

static bool is_init;
static uint32_t ready_ms;
static int procs_ctl = -1; /* the process manager's control socket; -1 with --serve-fd */

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, "padcell-agent: ", 15) < 0 || write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* the console is gone: nothing else to tell */
	}
}

static uint32_t boottime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint32_t)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* ---- init: file systems, scratch disk ---------------------------------------------------- */

static bool mounted(const char *dir)
{
	FILE *f = fopen("/proc/mounts", "r");
	if (!f)
		return false;
	char line[512];
	bool found = false;
	size_t n = strlen(dir);
	while (!found && fgets(line, sizeof(line), f)) {
		char *sp = strchr(line, ' ');
		found = sp && !strncmp(sp + 1, dir, n) && sp[1 + n] == ' ';
	}
	fclose(f);
	return found;
}

static void mount_one(const char *src, const char *dir, const char *type, unsigned long flags, const char *data)
{
	mkdir(dir, 0755);
	if (mount(src, dir, type, flags, data) < 0 && errno != EBUSY)
		logf_("mounting %s on %s failed: %s", type, dir, strerror(errno));
}

/* Runs a tool and waits for it: its exit status, or -1. */
static int run_tool(char *const argv[])
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
		}
		setenv("PATH", TOOLS_PATH, 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return true;
}

/* The virtio disk whose serial is "scratch" (padcell --scratch): formatted when blank, on /scratch. */
static void setup_scratch(void)
{
	DIR *d = opendir("/sys/block");
	if (!d)
		return;
	struct stat root;
	if (stat("/", &root) < 0)
		root.st_dev = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "vd", 2))
			continue;
		char path[300], serial[64], majmin[32];
		snprintf(path, sizeof(path), "/sys/block/%s/serial", e->d_name);
		if (!read_small(path, serial, sizeof(serial)) || strcmp(serial, "scratch"))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/dev", e->d_name);
		unsigned ma, mi;
		if (!read_small(path, majmin, sizeof(majmin)) || sscanf(majmin, "%u:%u", &ma, &mi) != 2)
			continue;
		if (makedev(ma, mi) == root.st_dev)
			continue;
		char dev[300];
		snprintf(dev, sizeof(dev), "/dev/%s", e->d_name);
		/* Blank (first 64 KiB zero): format it. */
		int fd = open(dev, O_RDONLY | O_CLOEXEC);
		bool blank = false;
		if (fd >= 0) {
			static char head[65536];
			ssize_t n = read(fd, head, sizeof(head));
			blank = n == (ssize_t)sizeof(head);
			for (ssize_t i = 0; blank && i < n; i++)
				blank = head[i] == 0;
			close(fd);
		}
		if (blank) {
			char *mk[] = { "mke2fs", "-q", "-F", "-L", "scratch", "-m", "0", dev, NULL };
			if (run_tool(mk) != 0)
				logf_("formatting %s failed", dev);
		}
		mkdir("/scratch", 0755);
		if (mount(dev, "/scratch", "ext4", MS_NOSUID | MS_NODEV, NULL) < 0)
			logf_("mounting %s on /scratch failed: %s", dev, strerror(errno));
		else
			chmod("/scratch", 01777);
		break;
	}
	closedir(d);
}

/*
 * lo always; eth0 when padcell gave the VM a NIC (padcell.net= on the command line): address,
 * netmask, MTU, default route, and /run/resolv.conf (the images' /etc/resolv.conf links there,
 * since the root is read-only).
 */
static void setup_net(void)
{
	static char cmdline[4096];
	struct netcfg c;
	int have = read_small("/proc/cmdline", cmdline, sizeof(cmdline)) ? netcfg_parse_cmdline(cmdline, &c) : 0;
	if (have < 0)
		logf_("padcell.net= is malformed: eth0 stays down");
	char err[200];
	if (netcfg_apply(have > 0 ? &c : NULL, "eth0", "/run/resolv.conf", err, sizeof(err)))
		logf_("network: %s", err);
	else if (have > 0)
		logf_("eth0 up, mtu %u", c.mtu);
}

static void init_system(void)
{
	mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	if (!mounted("/dev"))
		mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL);
	mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_one("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
	mount_one("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	if (sethostname("padcell", 7) < 0)
		logf_("sethostname: %s", strerror(errno));
	setup_scratch();
	setup_net();
	/* A console that goes away must not kill init. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
}

/* ---- one connection ------------------------------------------------------------------------ */

static uint8_t payload[AGENT_MAX_PAYLOAD];
static struct agent_exec ex; /* 64 KiB of pointers: static, one per handler process */

static void send_error(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_error(int fd, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	uint32_t n = agent_error_text(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	agent_write_frame(fd, AGENT_ERROR, msg, n);
}

/* SYNC: the host's clock, and entropy so clones restored from one snapshot diverge. */
static int do_sync(int fd, const uint8_t *p, uint32_t len)
{
	struct agent_sync s;
	if (agent_sync_decode(p, len, &s)) {
		send_error(fd, "malformed SYNC");
		return -1;
	}
	/* Not init (a unit test on the host, likely as root): the host's clock and random pool are not
	 * ours to touch.  The SYNC is checked and acknowledged, nothing more. */
	if (!is_init)
		return agent_write_frame(fd, AGENT_OK, NULL, 0) ? -1 : 0;
	struct timespec ts = { .tv_sec = (time_t)(s.realtime_ns / 1000000000u), .tv_nsec = (long)(s.realtime_ns % 1000000000u) };
	bool clock_ok = clock_settime(CLOCK_REALTIME, &ts) == 0;
	struct {
		struct rand_pool_info info;
		uint8_t bytes[sizeof(s.seed)];
	} pool = { .info = { .entropy_count = 8 * sizeof(s.seed), .buf_size = sizeof(s.seed) } };
	memcpy(pool.bytes, s.seed, sizeof(s.seed));
	int rfd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	bool rnd_ok = rfd >= 0 && ioctl(rfd, RNDADDENTROPY, &pool) == 0 && ioctl(rfd, RNDRESEEDCRNG) == 0;
	if (rfd >= 0)
		close(rfd);
	if (!clock_ok || !rnd_ok) {
		send_error(fd, "SYNC: %s failed: %s", clock_ok ? "reseeding the random pool" : "setting the clock",
			   strerror(errno));
		return -1;
	}
	return agent_write_frame(fd, AGENT_OK, NULL, 0) ? -1 : 0;
}

/* NAME or UID[:GID] -> ids and home, from /etc/passwd (no NSS in a static binary). */
static int resolve_user(const char *user, uid_t *uid, gid_t *gid, char *home, size_t homecap)
{
	char *end;
	unsigned long u = strtoul(user, &end, 10);
	bool numeric = end != user && (*end == '\0' || *end == ':');
	snprintf(home, homecap, "/");
	FILE *f = fopen("/etc/passwd", "r");
	char line[1024];
	bool found = false;
	while (f && fgets(line, sizeof(line), f)) {
		char *fld[7] = { 0 };
		char *s = line;
		for (int i = 0; i < 7 && s; i++) {
			fld[i] = s;
			s = strchr(s, ':');
			if (s)
				*s++ = '\0';
		}
		if (!fld[6])
			continue;
		fld[6][strcspn(fld[6], "\n")] = '\0';
		if (numeric ? strtoul(fld[2], NULL, 10) == u : !strcmp(fld[0], user)) {
			*uid = (uid_t)strtoul(fld[2], NULL, 10);
			*gid = (gid_t)strtoul(fld[3], NULL, 10);
			snprintf(home, homecap, "%s", fld[5]);
			found = true;
			break;
		}
	}
	if (f)
		fclose(f);
	if (!found && !numeric)
		return -1;
	if (!found) {
		*uid = (uid_t)u;
		*gid = (gid_t)u;
	}
	if (numeric && *end == ':') {
		char *gend;
		unsigned long g = strtoul(end + 1, &gend, 10);
		if (gend == end + 1 || *gend)
			return -1;
		*gid = (gid_t)g;
	}
	return 0;
}

static bool set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

/* Kills what the command left: its process group, then any orphan reparented to this handler. */
static void kill_leftovers(pid_t pgid)
{
	if (pgid > 0)
		kill(-pgid, SIGKILL);
	for (int round = 0; round < 50; round++) {
		bool any = false;
		DIR *d = opendir("/proc");
		if (!d)
			return;
		struct dirent *e;
		pid_t me = getpid();
		while ((e = readdir(d))) {
			char *end;
			long pid = strtol(e->d_name, &end, 10);
			if (*end || pid <= 1 || pid == me)
				continue;
			char path[64], stat[512];
			snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
			if (!read_small(path, stat, sizeof(stat)))
				continue;
			char *rp = strrchr(stat, ')');
			int ppid = 0, pg = 0;
			char st;
			if (!rp || sscanf(rp + 1, " %c %d %d", &st, &ppid, &pg) != 3)
				continue;
			if (ppid == me || (pgid > 0 && pg == pgid)) {
				kill((pid_t)pid, SIGKILL);
				any = true;
			}
		}
		closedir(d);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (!any)
			return;
		usleep(2000);
	}
}

void agent_child_exec(const struct agent_exec *e, int in, int out, int err_fd, bool ctty)
{
	/* A new session: the command and everything it starts share one process group. */
	setsid();
	dup2(in, STDIN_FILENO);
	dup2(out, STDOUT_FILENO);
	dup2(err_fd, STDERR_FILENO);
	/* A PTY: the terminal is the session's, so ^C, job control and SIGWINCH reach its group. */
	if (ctty)
		ioctl(STDIN_FILENO, TIOCSCTTY, 0);
	/* Nothing else of the agent's: --serve-fd's connection, for one, is not close-on-exec. */
	close_range(3, ~0u, 0);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	char home[512] = "/root";
	uid_t uid = 0;
	gid_t gid = 0;
	if (e->user[0] && resolve_user(e->user, &uid, &gid, home, sizeof(home))) {
		dprintf(STDERR_FILENO, "padcell-agent: unknown user '%s'\n", e->user);
		_exit(126);
	}
	if (e->user[0] && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)) {
		dprintf(STDERR_FILENO, "padcell-agent: cannot become '%s': %s\n", e->user, strerror(errno));
		_exit(126);
	}
	const char *cwd = e->cwd[0] ? e->cwd : (is_init ? "/" : NULL);
	if (cwd && chdir(cwd) < 0) {
		dprintf(STDERR_FILENO, "padcell-agent: cannot change to '%s': %s\n", cwd, strerror(errno));
		_exit(126);
	}
	/* The environment: a small default, then the host's --env on top. */
	if (is_init) {
		clearenv();
		setenv("PATH", DEFAULT_PATH, 1);
		setenv("HOME", home, 1);
		setenv("TERM", ctty ? "xterm-256color" : "dumb", 1);
		setenv("LANG", "C.UTF-8", 1);
	}
	for (uint32_t i = 0; i < e->envc; i++)
		putenv((char *)e->envv[i]);
	execvp(e->argv[0], (char *const *)e->argv);
	int why = errno;
	dprintf(STDERR_FILENO, "padcell-agent: cannot run '%s': %s\n", e->argv[0], strerror(why));
	_exit(why == ENOENT ? 127 : 126); /* what a shell answers */
}

static volatile sig_atomic_t timed_out;
static volatile pid_t alarm_pgid;

static void on_alarm(int sig)
{
	(void)sig;
	timed_out = 1;
	if (alarm_pgid > 0)
		kill(-alarm_pgid, SIGKILL);
}

/* Pumps one pipe into frames of type t: false at end of file (or error). */
static bool pump_pipe(int conn, int pfd, uint16_t t, bool *dead)
{
	static uint8_t buf[AGENT_MAX_PAYLOAD];
	ssize_t n = read(pfd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	if (!*dead && agent_write_frame(conn, t, buf, (uint32_t)n))
		*dead = true; /* the host is gone: keep draining so the command is not stuck */
	return true;
}

static int do_exec(int conn, const uint8_t *p, uint32_t len)
{
	if (agent_exec_decode(p, len, &ex)) {
		send_error(conn, "malformed EXEC");
		return -1;
	}
	int inp[2] = { -1, -1 }, outp[2], errp[2];
	if (pipe2(outp, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) ||
	    ((ex.flags & AGENT_EXEC_STDIN) ? pipe2(inp, O_CLOEXEC) : 0)) {
		send_error(conn, "pipe: %s", strerror(errno));
		return -1;
	}
	if (inp[0] < 0)
		inp[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	/* SIGCHLD is read through a signalfd, so it must stay pending (blocked) here. */
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	pid_t pid = fork();
	if (pid < 0) {
		send_error(conn, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0)
		agent_child_exec(&ex, inp[0], outp[1], errp[1], false);
	close(inp[0]);
	close(outp[1]);
	close(errp[1]);
	int in_w = inp[1]; /* -1 without stdin */
	set_nonblock(outp[0]);
	set_nonblock(errp[0]);
	if (in_w >= 0)
		set_nonblock(in_w);

	alarm_pgid = pid; /* setsid() in the child: its pid is the group id */
	timed_out = 0;
	if (ex.timeout_ms) {
		struct sigaction sa = { .sa_handler = on_alarm };
		sigaction(SIGALRM, &sa, NULL);
		struct itimerval it = { .it_value = { .tv_sec = ex.timeout_ms / 1000, .tv_usec = (ex.timeout_ms % 1000) * 1000 } };
		setitimer(ITIMER_REAL, &it, NULL);
	}

	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);

	bool out_open = true, err_open = true, host_dead = false, conn_open = true;
	bool exited = false;
	int status = 0;
	/* Stdin the command has not read yet: never more than the window the host keeps to. */
	static uint8_t inbuf[AGENT_MAX_PAYLOAD];
	static uint8_t ring[AGENT_STDIN_WINDOW];
	size_t r_head = 0, r_len = 0;
	uint32_t unacked = 0; /* stdin bytes consumed (or dropped) and not yet acknowledged */
	bool in_eof = false;

	while (out_open || err_open || !exited) {
		struct pollfd pf[5];
		int n = 0, i_out = -1, i_err = -1, i_conn = -1, i_in = -1, i_sig = -1;
		if (out_open) { i_out = n; pf[n++] = (struct pollfd){ .fd = outp[0], .events = POLLIN }; }
		if (err_open) { i_err = n; pf[n++] = (struct pollfd){ .fd = errp[0], .events = POLLIN }; }
		/* Always read the host: SIGNAL frames and its disconnect must not wait behind stdin. */
		if (conn_open) { i_conn = n; pf[n++] = (struct pollfd){ .fd = conn, .events = POLLIN }; }
		if (r_len && in_w >= 0) { i_in = n; pf[n++] = (struct pollfd){ .fd = in_w, .events = POLLOUT }; }
		if (!exited && sfd >= 0) { i_sig = n; pf[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN }; }
		/* Without a signalfd, poll the child now and then. */
		int r = poll(pf, (nfds_t)n, sfd >= 0 ? -1 : 50);
		if (r < 0 && errno != EINTR)
			break;
		if (r < 0)
			continue;
		if (i_sig >= 0 && pf[i_sig].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				;
		}
		if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
			exited = true;
			/* The command is done: nothing of it may outlive it. */
			kill_leftovers(pid);
		}
		if (i_out >= 0 && pf[i_out].revents && !pump_pipe(conn, outp[0], AGENT_STDOUT, &host_dead))
			out_open = false;
		if (i_err >= 0 && pf[i_err].revents && !pump_pipe(conn, errp[0], AGENT_STDERR, &host_dead))
			err_open = false;
		if (i_in >= 0 && pf[i_in].revents) {
			size_t chunk = r_len < sizeof(ring) - r_head ? r_len : sizeof(ring) - r_head;
			ssize_t w = write(in_w, ring + r_head, chunk);
			if (w > 0) {
				r_head = (r_head + (size_t)w) % sizeof(ring);
				r_len -= (size_t)w;
				unacked += (uint32_t)w;
			} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
				close(in_w); /* the command closed its stdin: drop the rest */
				in_w = -1;
				unacked += (uint32_t)r_len;
				r_len = 0;
			}
		}
		if (i_conn >= 0 && pf[i_conn].revents) {
			struct agent_hdr h;
			uint32_t sig;
			int rc = agent_read_frame(conn, &h, inbuf, sizeof(inbuf));
			if (rc) {
				/* The host went away: the command goes too. */
				conn_open = false;
				host_dead = true;
				kill(-pid, SIGKILL);
			} else if (h.type == AGENT_STDIN) {
				if (h.len == 0) {
					in_eof = true;
				} else if (in_w < 0) {
					unacked += h.len; /* nobody reads it: dropped, and acknowledged */
				} else if (h.len > sizeof(ring) - r_len) {
					send_error(conn, "stdin beyond the %u-byte window", AGENT_STDIN_WINDOW);
					conn_open = false;
					host_dead = true;
					kill(-pid, SIGKILL);
				} else {
					size_t tail = (r_head + r_len) % sizeof(ring);
					size_t first = h.len < sizeof(ring) - tail ? h.len : sizeof(ring) - tail;
					memcpy(ring + tail, inbuf, first);
					memcpy(ring, inbuf + first, h.len - first);
					r_len += h.len;
				}
			} else if (h.type == AGENT_SIGNAL && agent_u32_decode(inbuf, h.len, &sig) == 0) {
				if (sig >= 1 && sig <= 64 && !exited)
					kill(-pid, (int)sig);
			} else {
				send_error(conn, "unexpected frame type %u while a command runs", h.type);
				conn_open = false;
				host_dead = true;
				kill(-pid, SIGKILL);
			}
		}
		/* After the host's frame: an end of input or dropped stdin must not wait for the next event. */
		if (in_eof && r_len == 0 && in_w >= 0) {
			close(in_w);
			in_w = -1;
		}
		/* Acknowledge in batches, and whatever is left once the command has caught up. */
		if (unacked && (r_len == 0 || unacked >= AGENT_STDIN_WINDOW / 4)) {
			uint8_t b[4];
			agent_u32_encode(b, unacked);
			if (!host_dead && agent_write_frame(conn, AGENT_STDIN_ACK, b, sizeof(b)))
				host_dead = true;
			unacked = 0;
		}
		if (exited && !out_open && !err_open)
			break;
	}
	struct itimerval off = { 0 };
	setitimer(ITIMER_REAL, &off, NULL);
	alarm_pgid = 0;
	if (!exited) {
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		kill_leftovers(pid);
	}
	if (in_w >= 0)
		close(in_w);
	close(outp[0]);
	close(errp[0]);
	if (sfd >= 0)
		close(sfd);
	if (host_dead)
		return -1;
	uint8_t x[8];
	if (timed_out)
		agent_exit_encode(x, AGENT_TIMEDOUT, 0);
	else if (WIFSIGNALED(status))
		agent_exit_encode(x, AGENT_SIGNALED, WTERMSIG(status));
	else
		agent_exit_encode(x, AGENT_EXITED, WEXITSTATUS(status));
	return agent_write_frame(conn, AGENT_EXIT, x, sizeof(x)) ? -1 : 0;
}

static int do_put(int conn, const uint8_t *p, uint32_t len)
{
	char path[AGENT_MAX_PATH];
	uint32_t mode;
	if (agent_put_decode(p, len, &mode, path, sizeof(path))) {
		send_error(conn, "malformed PUT");
		return -1;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		send_error(conn, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	fchmod(fd, mode);
	if (agent_write_frame(conn, AGENT_OK, NULL, 0)) {
		close(fd);
		return -1;
	}
	int werr = 0;
	for (;;) {
		struct agent_hdr h;
		if (agent_read_frame(conn, &h, payload, sizeof(payload)) || h.type != AGENT_DATA) {
			close(fd);
			unlink(path); /* a half-sent file is not left looking complete */
			return -1;
		}
		if (h.len == 0)
			break;
		for (uint32_t off = 0; off < h.len && !werr;) {
			ssize_t w = write(fd, payload + off, h.len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				werr = errno;
			else
				off += (uint32_t)w;
		}
	}
	if (!werr && fsync(fd) < 0)
		werr = errno;
	close(fd);
	if (werr) {
		send_error(conn, "writing %s: %s", path, strerror(werr));
		return -1;
	}
	return agent_write_frame(conn, AGENT_OK, NULL, 0) ? -1 : 0;
}

static int do_get(int conn, const uint8_t *p, uint32_t len)
{
	char path[AGENT_MAX_PATH];
	if (agent_path_decode(p, len, path, sizeof(path))) {
		send_error(conn, "malformed GET");
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		send_error(conn, "cannot read %s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	for (;;) {
		ssize_t n = read(fd, payload, sizeof(payload));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			send_error(conn, "reading %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (agent_write_frame(conn, AGENT_DATA, payload, (uint32_t)n)) {
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
	}
	close(fd);
	return 0;
}

/* ---- file operations (protocol version 3): an ERROR answer here does not end the connection ---- */

static void entry_from_stat(struct agent_entry *e, const struct stat *st, const char *name)
{
	e->mode = (uint32_t)(st->st_mode & (S_IFMT | 07777));
	e->size = (uint64_t)st->st_size;
	e->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	snprintf(e->name, sizeof(e->name), "%s", name);
}

/* The last component of path ("/" for the root itself), into name. */
static void last_name(const char *path, char *name, size_t cap)
{
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	size_t b = n;
	while (b > 0 && path[b - 1] != '/')
		b--;
	if (b == n) {
		snprintf(name, cap, "/");
		return;
	}
	snprintf(name, cap, "%.*s", (int)(n - b), path + b);
}

static int do_stat(int conn, const uint8_t *p, uint32_t len)
{
	char path[AGENT_MAX_PATH], name[AGENT_MAX_NAME + 1];
	if (agent_path_decode(p, len, path, sizeof(path))) {
		send_error(conn, "malformed STAT");
		return -1;
	}
	struct stat st;
	if (lstat(path, &st) < 0) {
		send_error(conn, "cannot stat %s: %s", path, strerror(errno));
		return 0;
	}
	last_name(path, name, sizeof(name));
	struct agent_entry e;
	entry_from_stat(&e, &st, name);
	size_t off = 0;
	if (agent_entry_encode(payload, sizeof(payload), &off, &e)) {
		send_error(conn, "cannot describe %s", path);
		return 0;
	}
	return agent_write_frame(conn, AGENT_ENTRIES, payload, (uint32_t)off) ? -1 : 0;
}

/* LIST: whole entries packed into frames as they fill, then an empty ENTRIES. */
static int do_list(int conn, const uint8_t *p, uint32_t len)
{
	char path[AGENT_MAX_PATH];
	if (agent_path_decode(p, len, path, sizeof(path))) {
		send_error(conn, "malformed LIST");
		return -1;
	}
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		send_error(conn, "cannot list %s: %s", path, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return 0;
	}
	size_t off = 0;
	struct dirent *de;
	int rc = 0;
	while (!rc && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone since readdir: not an entry any more */
		struct agent_entry e;
		entry_from_stat(&e, &st, de->d_name);
		if (agent_entry_encode(payload, sizeof(payload), &off, &e) == -E2BIG) {
			rc = agent_write_frame(conn, AGENT_ENTRIES, payload, (uint32_t)off);
			off = 0;
			if (!rc)
				agent_entry_encode(payload, sizeof(payload), &off, &e);
		}
	}
	closedir(d);
	if (!rc && off)
		rc = agent_write_frame(conn, AGENT_ENTRIES, payload, (uint32_t)off);
	if (!rc)
		rc = agent_write_frame(conn, AGENT_ENTRIES, NULL, 0);
	return rc ? -1 : 0;
}

/* mkdir -p: each missing component, in order; an existing directory is fine. */
static int mkdir_parents(char *path, mode_t mode)
{
	for (char *s = path + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		struct stat st;
		int e = mkdir(path, 0755) < 0 ? errno : 0;
		if (e == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			e = 0;
		*s = '/';
		if (e)
			return -(e == EEXIST ? ENOTDIR : e);
	}
	struct stat st;
	if (mkdir(path, mode) < 0 && (errno != EEXIST || stat(path, &st) < 0 || !S_ISDIR(st.st_mode)))
		return -(errno == EEXIST ? EEXIST : errno);
	return 0;
}

static int do_mkdir(int conn, const uint8_t *p, uint32_t len)
{
	char path[AGENT_MAX_PATH];
	uint32_t mode, flags;
	if (agent_mkdir_decode(p, len, &mode, &flags, path, sizeof(path))) {
		send_error(conn, "malformed MKDIR");
		return -1;
	}
	int rc = (flags & AGENT_MKDIR_PARENTS) ? mkdir_parents(path, mode) : (mkdir(path, mode) < 0 ? -errno : 0);
	if (rc) {
		send_error(conn, "cannot make directory %s: %s", path, strerror(-rc));
		return 0;
	}
	return agent_write_frame(conn, AGENT_OK, NULL, 0) ? -1 : 0;
}

static int do_move(int conn, const uint8_t *p, uint32_t len)
{
	char src[AGENT_MAX_PATH], dst[AGENT_MAX_PATH];
	if (agent_move_decode(p, len, src, dst, sizeof(src))) {
		send_error(conn, "malformed MOVE");
		return -1;
	}
	if (rename(src, dst) < 0) {
		send_error(conn, "cannot move %s to %s: %s", src, dst, strerror(errno));
		return 0;
	}
	return agent_write_frame(conn, AGENT_OK, NULL, 0) ? -1 : 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? errno : 0;
}

static int do_remove(int conn, const uint8_t *p, uint32_t len)
{
	char path[AGENT_MAX_PATH];
	uint32_t flags;
	if (agent_remove_decode(p, len, &flags, path, sizeof(path))) {
		send_error(conn, "malformed REMOVE");
		return -1;
	}
	struct stat st;
	int e = 0;
	if (lstat(path, &st) < 0)
		e = errno;
	else if (!S_ISDIR(st.st_mode))
		e = unlink(path) < 0 ? errno : 0;
	else if (flags & AGENT_REMOVE_RECURSIVE)
		/* Depth first, never following a link, never leaving the file system it starts on. */
		e = nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	else
		e = rmdir(path) < 0 ? errno : 0;
	if (e) {
		send_error(conn, "cannot remove %s: %s", path, strerror(e > 0 ? e : errno));
		return 0;
	}
	return agent_write_frame(conn, AGENT_OK, NULL, 0) ? -1 : 0;
}

/* Serves one connection: HELLO, then SYNC/PUT/GET and file operations any number of times, or
 * one EXEC, WATCH or POWEROFF. */
static int serve(int conn)
{
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	struct agent_hello hello = { .version = AGENT_PROTO_VERSION, .flags = is_init ? AGENT_HELLO_INIT : 0,
				     .ready_ms = ready_ms };
	uint8_t hb[AGENT_HELLO_LEN];
	agent_hello_encode(hb, &hello);
	if (agent_write_frame(conn, AGENT_HELLO, hb, sizeof(hb)))
		return 1;
	for (;;) {
		struct agent_hdr h;
		int rc = agent_read_frame(conn, &h, payload, sizeof(payload));
		if (rc == -EPIPE)
			return 0;
		if (rc) {
			if (rc == -EPROTO)
				send_error(conn, "malformed frame header");
			return 1;
		}
		switch (h.type) {
		case AGENT_SYNC:
			if (do_sync(conn, payload, h.len))
				return 1;
			break;
		case AGENT_EXEC:
			return do_exec(conn, payload, h.len) ? 1 : 0;
		case AGENT_PUT:
			if (do_put(conn, payload, h.len))
				return 1;
			break;
		case AGENT_GET:
			if (do_get(conn, payload, h.len))
				return 1;
			break;
		case AGENT_STAT:
		case AGENT_LIST:
		case AGENT_MKDIR:
		case AGENT_MOVE:
		case AGENT_REMOVE: {
			static int (*const ops[])(int, const uint8_t *, uint32_t) = {
				[AGENT_STAT - AGENT_STAT] = do_stat, [AGENT_LIST - AGENT_STAT] = do_list,
				[AGENT_MKDIR - AGENT_STAT] = do_mkdir, [AGENT_MOVE - AGENT_STAT] = do_move,
				[AGENT_REMOVE - AGENT_STAT] = do_remove,
			};
			if (ops[h.type - AGENT_STAT](conn, payload, h.len))
				return 1;
			break;
		}
		case AGENT_START:
		case AGENT_PLIST:
		case AGENT_ATTACH:
		case AGENT_SEND:
		case AGENT_KILL:
		case AGENT_RESIZE:
			/* Processes that outlive this connection belong to the process manager: the
			 * connection goes there, with the frame just read, and this handler ends. */
			if (procs_ctl < 0) {
				send_error(conn, "background processes need the agent's process manager "
						 "(not in --serve-fd mode)");
				return 1;
			}
			if (procs_handoff(procs_ctl, conn, &h, payload)) {
				send_error(conn, "the agent's process manager is not running");
				return 1;
			}
			return 0;
		case AGENT_WATCH:
			/* the connection carries this watch's events until the host closes it */
			return watch_serve(conn, payload, h.len) ? 1 : 0;
		case AGENT_POWEROFF:
			if (!is_init) {
				send_error(conn, "the agent is not init here: it cannot power off");
				return 1;
			}
			agent_write_frame(conn, AGENT_OK, NULL, 0);
			sync();
			reboot(RB_POWER_OFF);
			return 1;
		default:
			send_error(conn, "unexpected frame type %u", h.type);
			return 1;
		}
	}
}

/* ---- init's loop ----------------------------------------------------------------------------- */

static pid_t handler_pids[AGENT_MAX_CONNS];
static unsigned handlers;

static void spawn_handler(int conn)
{
	if (handlers >= AGENT_MAX_CONNS) {
		close(conn);
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* Handlers are sessions of their own: the console's signals are not theirs. */
		setsid();
		_exit(serve(conn));
	}
	if (pid > 0)
		handler_pids[handlers++] = pid;
	else
		logf_("fork: %s", strerror(errno));
	close(conn);
}

/* The host's ready line: connect to CID 2, AGENT_PORT; refused (nobody listening) is fine. */
static void call_host(void)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = AGENT_PORT };
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return;
	}
	spawn_handler(fd);
}

static pid_t procs_pid = -1;

/* Starts the process manager (guest/agent/procs.c) with a fresh control socket in procs_ctl. */
static void procs_spawn(int lfd)
{
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		logf_("process manager: socketpair: %s", strerror(errno));
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		if (!is_init)
			prctl(PR_SET_PDEATHSIG, SIGTERM);
		close(sp[0]);
		if (lfd >= 0)
			close(lfd);
		procs_main(sp[1]);
	}
	close(sp[1]);
	if (pid < 0) {
		logf_("process manager: fork: %s", strerror(errno));
		close(sp[0]);
		return;
	}
	procs_pid = pid;
	procs_ctl = sp[0];
}

/* Accepts connections on lfd and serves each in a handler of its own, for ever. */
static void agent_loop(int lfd)
{
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	procs_spawn(lfd);
	if (is_init)
		call_host();
	for (;;) {
		struct pollfd pf[2] = { { .fd = sfd, .events = POLLIN }, { .fd = lfd, .events = POLLIN } };
		/* At the connection limit, new ones wait in the backlog until a handler ends. */
		int n = poll(pf, handlers < AGENT_MAX_CONNS ? 2 : 1, sfd >= 0 ? -1 : 100);
		if (n < 0 && errno != EINTR)
			sleep(1);
		if (pf[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				;
		}
		/* Reap everything: handlers, the process manager, and orphans reparented to init. */
		pid_t pid;
		int st;
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			if (pid == procs_pid) {
				/* Its processes are lost with it; a new one serves what comes next. */
				logf_("the process manager ended (status %#x): starting a new one", (unsigned)st);
				close(procs_ctl);
				procs_ctl = -1;
				procs_pid = -1;
				sleep(1);
				procs_spawn(lfd);
				continue;
			}
			for (unsigned i = 0; i < handlers; i++)
				if (handler_pids[i] == pid) {
					handler_pids[i] = handler_pids[--handlers];
					break;
				}
		}
		if (handlers < AGENT_MAX_CONNS && n > 0 && (pf[1].revents & POLLIN)) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0)
				spawn_handler(c);
		}
	}
}

static void init_loop(void)
{
	int lfd = -1;
	for (int tries = 0; lfd < 0; tries++) {
		lfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = AGENT_PORT };
		if (lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(lfd, 64) == 0)
			break;
		if (tries == 0)
			logf_("cannot listen on vsock port %u: %s (is there a vsock device? retrying)", AGENT_PORT,
			      strerror(errno));
		if (lfd >= 0)
			close(lfd);
		lfd = -1;
		sleep(1);
	}
	ready_ms = boottime_ms();
	logf_("ready");
	agent_loop(lfd);
}

int main(int argc, char **argv)
{
	if (argc == 3 && (!strcmp(argv[1], "--serve-fd") || !strcmp(argv[1], "--listen-fd"))) {
		char *end;
		long fd = strtol(argv[2], &end, 10);
		if (*end || fd < 0 || fd > 65535) {
			fprintf(stderr, "padcell-agent: %s N: N must be an open fd\n", argv[1]);
			return 2;
		}
		signal(SIGPIPE, SIG_IGN);
		ready_ms = boottime_ms();
		if (!strcmp(argv[1], "--serve-fd"))
			return serve((int)fd);
		fcntl((int)fd, F_SETFD, FD_CLOEXEC);
		agent_loop((int)fd);
		return 1;
	}
	if (getpid() != 1) {
		fprintf(stderr, "usage: padcell-agent (as init, PID 1) | padcell-agent --serve-fd N | "
				"padcell-agent --listen-fd N\n");
		return 2;
	}
	is_init = true;
	int con = open("/dev/console", O_RDWR | O_CLOEXEC);
	if (con >= 0) {
		dup2(con, STDIN_FILENO);
		dup2(con, STDOUT_FILENO);
		dup2(con, STDERR_FILENO);
		if (con > 2)
			close(con);
	}
	chdir("/");
	init_system();
	init_loop();
	return 0; /* not reached: init never returns */
}
