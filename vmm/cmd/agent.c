/* `padcell exec` and `padcell cp`: the guest agent of a running VM, over its vsock Unix socket. */
#include "vmm/cmd/cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/agent/agent_client.h"
#include "vmm/cmd/agent_cmd.h"
#include "vmm/cmd/cli.h"
#include "vmm/util.h"

#define CONNECT_TIMEOUT_MS 5000

/* A command's end becomes padcell's exit code in the agent client (agent_exit_code): the same numbers. */
_Static_assert(AGENT_CODE_TIMEDOUT == EXIT_CMD_TIMEOUT && AGENT_CODE_FAILED == EXIT_RUN_FAILED,
	       "agent_exit_code's codes are README's exit codes");

int agent_cmd_fail(int code, const char *msg)
{
	fprintf(stderr, "padcell: %s\n", msg);
	return code;
}

/*
 * The stop signals for exec and cp, read through a signalfd by every wait of the agent client.
 * Without one (signalfd failed) they are unblocked instead: their default action then ends
 * padcell, and the shell sees 128+N all the same.
 */
static int open_signals(void)
{
	int sfd = stop_signals_fd();
	if (sfd < 0) {
		sigset_t set;
		stop_signals(&set);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
	}
	return sfd;
}

static int fail(int code, const char *msg)
{
	return agent_cmd_fail(code, msg);
}

/* The exit code for a failed agent call: 128+N after stop signal N, else 125. */
int agent_fail_code(const struct agent_conn *c, int rc)
{
	return rc == -EINTR && c->signo > 0 ? 128 + c->signo : EXIT_RUN_FAILED;
}

/* Closes what open_agent opened (c->signo stays for agent_fail_code). */
void close_agent(struct agent_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->sig_fd >= 0)
		close(c->sig_fd);
	c->fd = c->sig_fd = -1;
}

/*
 * The stop-signal fd, the connection and HELLO: 0 with c open, or the exit code with the message
 * printed and nothing left open; close_agent undoes it.  get_max bounds a GET (0: the default).
 * HELLO has no deadline of its own: the agent serves AGENT_MAX_CONNS connections at once and a
 * further one waits in its backlog, silent, until one ends; a signal still ends the wait at once.
 */
int open_agent(struct agent_conn *c, const char *vsock, uint64_t get_max, bool verbose)
{
	char err[320];
	double t0 = now_ms();
	agent_conn_init(c, -1, open_signals(), -1);
	if (get_max)
		c->get_max = get_max;
	int rc = agent_conn_open(c, vsock, AGENT_PORT, CONNECT_TIMEOUT_MS, err, sizeof(err));
	struct agent_hello h;
	if (!rc)
		rc = agent_conn_hello(c, 0, &h, err, sizeof(err));
	if (rc) {
		close_agent(c);
		return fail(agent_fail_code(c, rc), err);
	}
	if (verbose)
		fprintf(stderr, "padcell: agent connected in %.1f ms (ready %u ms after the guest booted)\n",
			now_ms() - t0, h.ready_ms);
	return 0;
}

enum { O_VSOCK = 256, O_ENV, O_CWD, O_USER, O_TIMEOUT, O_NO_STDIN, O_VERBOSE, O_MAX_SIZE, O_BACKGROUND, O_PTY };

int cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vsock", required_argument, NULL, O_VSOCK },
		{ "env", required_argument, NULL, O_ENV },
		{ "cwd", required_argument, NULL, O_CWD },
		{ "user", required_argument, NULL, O_USER },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "no-stdin", no_argument, NULL, O_NO_STDIN },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "background", no_argument, NULL, O_BACKGROUND },
		{ "pty", no_argument, NULL, O_PTY },
		{ 0 },
	};
	bool background = false, pty = false;
	const char *vsock = NULL, *cwd = NULL, *user = NULL;
	const char *env[CLI_MAX_ENV + 1] = { 0 };
	unsigned nenv = 0, timeout = 0;
	bool no_stdin = false, verbose = false;
	char msg[320];
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		switch (c) {
		case O_VSOCK: vsock = optarg; break;
		case O_ENV:
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				snprintf(msg, sizeof(msg), "--env '%s': expected NAME=VALUE", optarg);
				return fail(EXIT_USAGE, msg);
			}
			if (nenv == CLI_MAX_ENV)
				return fail(EXIT_USAGE, "too many --env");
			env[nenv++] = optarg;
			break;
		case O_CWD:
			if (optarg[0] != '/')
				return fail(EXIT_USAGE, "--cwd: expected an absolute path in the guest");
			cwd = optarg;
			break;
		case O_USER: user = optarg; break;
		case O_TIMEOUT:
			if (cli_parse_uint(optarg, 1, 7 * 24 * 3600, &timeout))
				return fail(EXIT_USAGE, "--timeout: expected whole seconds from 1 up");
			break;
		case O_NO_STDIN: no_stdin = true; break;
		case O_VERBOSE: verbose = true; break;
		case O_BACKGROUND: background = true; break;
		case O_PTY: pty = true; break;
		case ':':
			snprintf(msg, sizeof(msg), "%s needs a value", argv[optind - 1]);
			return fail(EXIT_USAGE, msg);
		default:
			snprintf(msg, sizeof(msg), "unknown option '%s' (see padcell --help)", argv[optind - 1]);
			return fail(EXIT_USAGE, msg);
		}
	}
	if (!vsock)
		return fail(EXIT_USAGE, "exec needs --vsock PATH (the socket of a VM booted with --vsock PATH)");
	if (optind >= argc || strcmp(argv[optind - 1], "--"))
		return fail(EXIT_USAGE, "exec needs a command: padcell exec --vsock PATH [options] -- CMD [ARGS...]");
	if ((background || pty) && timeout)
		return fail(EXIT_USAGE, "--timeout does not go with --background or --pty (padcell kill ends such a process)");
	if (background && no_stdin)
		return fail(EXIT_USAGE, "--no-stdin does not go with --background (its stdin is /dev/null already)");
	if (background || pty) {
		struct agent_start_req sr = { .exec = { .argv = argv + optind, .env = (char *const *)env, .cwd = cwd,
							.user = user, .stdin_fd = -1 },
					      .pty = pty };
		return background ? exec_background(vsock, &sr, verbose) : exec_pty(vsock, &sr, no_stdin, verbose);
	}

	struct agent_conn conn;
	int code = open_agent(&conn, vsock, 0, verbose);
	if (code)
		return code;
	struct agent_exec_req req = { .argv = argv + optind, .env = (char *const *)env, .cwd = cwd, .user = user,
				      .timeout_ms = timeout * 1000u, .stdin_fd = no_stdin ? -1 : STDIN_FILENO };
	struct agent_exec_result res;
	double t0 = now_ms();
	/* Closing the connection while the command runs kills it: also after a signal ended the wait. */
	int rc = agent_conn_exec(&conn, &req, STDOUT_FILENO, STDERR_FILENO, &res, msg, sizeof(msg));
	close_agent(&conn);
	if (rc)
		return fail(agent_fail_code(&conn, rc), msg);
	if (verbose)
		fprintf(stderr, "padcell: command %.1f ms\n", now_ms() - t0);
	if (res.how == AGENT_TIMEDOUT)
		fprintf(stderr, "padcell: the command timed out after %u s and was killed with its process group\n", timeout);
	return agent_exit_code(res.how, res.code);
}

/* "vm:/path" -> "/path"; NULL for a host path. */
static const char *guest_path(const char *s)
{
	return strncmp(s, "vm:", 3) ? NULL : s + 3;
}

int cmd_cp(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vsock", required_argument, NULL, O_VSOCK },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "max-size", required_argument, NULL, O_MAX_SIZE },
		{ 0 },
	};
	const char *vsock = NULL;
	bool verbose = false;
	uint64_t max_size = AGENT_GET_MAX_DEFAULT;
	char msg[320];
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		if (c == O_VSOCK) {
			vsock = optarg;
		} else if (c == O_VERBOSE) {
			verbose = true;
		} else if (c == O_MAX_SIZE) {
			if (cli_parse_size(optarg, &max_size) || !max_size)
				return fail(EXIT_USAGE, "--max-size: expected a size above 0 (K, M, G, T; a bare number is MiB; "
							"B for bytes)");
		} else {
			snprintf(msg, sizeof(msg), c == ':' ? "%s needs a value" : "unknown option '%s' (see padcell --help)",
				 argv[optind - 1]);
			return fail(EXIT_USAGE, msg);
		}
	}
	if (!vsock)
		return fail(EXIT_USAGE, "cp needs --vsock PATH (the socket of a VM booted with --vsock PATH)");
	if (argc - optind != 2)
		return fail(EXIT_USAGE, "usage: padcell cp --vsock PATH SRC DST (one of them vm:/path in the guest)");
	const char *src = argv[optind], *dst = argv[optind + 1];
	const char *gsrc = guest_path(src), *gdst = guest_path(dst);
	if (!gsrc == !gdst)
		return fail(EXIT_USAGE, "cp: exactly one of SRC and DST must be a guest path written vm:/path");
	if ((gsrc && gsrc[0] != '/') || (gdst && gdst[0] != '/'))
		return fail(EXIT_USAGE, "cp: guest paths are absolute: vm:/path");

	int local = -1;
	unsigned mode = 0644;
	if (gdst) {
		local = strcmp(src, "-") ? open(src, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
		struct stat st;
		if (local < 0 || fstat(local, &st) < 0) {
			snprintf(msg, sizeof(msg), "cannot read '%s': %s", src, strerror(errno));
			return fail(EXIT_USAGE, msg);
		}
		if (S_ISREG(st.st_mode))
			mode = st.st_mode & 07777;
	}
	struct agent_conn conn;
	int code = open_agent(&conn, vsock, max_size, verbose);
	if (code) {
		if (local > STDIN_FILENO)
			close(local);
		return code;
	}
	int rc;
	double t0 = now_ms();
	if (gdst) {
		rc = agent_conn_put_file(&conn, local, gdst, mode, msg, sizeof(msg));
		if (local > STDIN_FILENO)
			close(local);
	} else {
		/* Written beside the destination and renamed: a failed copy leaves no partial file. */
		char tmp[4096];
		bool to_stdout = !strcmp(dst, "-");
		if (!to_stdout && snprintf(tmp, sizeof(tmp), "%s.padcell-cp.%d", dst, (int)getpid()) >= (int)sizeof(tmp)) {
			close_agent(&conn);
			return fail(EXIT_USAGE, "cp: destination path too long");
		}
		local = to_stdout ? STDOUT_FILENO : open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (local < 0) {
			snprintf(msg, sizeof(msg), "cannot create '%s': %s", dst, strerror(errno));
			close_agent(&conn);
			return fail(EXIT_USAGE, msg);
		}
		rc = agent_conn_get_file(&conn, gsrc, local, msg, sizeof(msg));
		if (!to_stdout) {
			if (!rc && fsync(local) < 0)
				rc = -errno, snprintf(msg, sizeof(msg), "writing '%s': %s", dst, strerror(errno));
			close(local);
			if (!rc && rename(tmp, dst) < 0)
				rc = -errno, snprintf(msg, sizeof(msg), "cannot rename into '%s': %s", dst, strerror(errno));
			if (rc)
				unlink(tmp);
		}
	}
	close_agent(&conn);
	if (rc)
		return fail(agent_fail_code(&conn, rc), msg);
	if (verbose)
		fprintf(stderr, "padcell: copied in %.1f ms\n", now_ms() - t0);
	return 0;
}

/* ---- padcell fs: file operations in a running VM ---- */

/* One entry as a line: type, permissions, size, mtime (UTC), and the name the guest chose, escaped. */
static void fs_print_entry(const struct agent_entry *e, const char *shown_name)
{
	static const struct { uint32_t fmt; char c; } types[] = {
		{ S_IFREG, '-' }, { S_IFDIR, 'd' }, { S_IFLNK, 'l' }, { S_IFCHR, 'c' },
		{ S_IFBLK, 'b' }, { S_IFIFO, 'p' }, { S_IFSOCK, 's' },
	};
	char t = '?';
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if ((e->mode & S_IFMT) == types[i].fmt)
			t = types[i].c;
	time_t secs = (time_t)(e->mtime_ns / 1000000000);
	struct tm tm;
	char when[32] = "?";
	if (gmtime_r(&secs, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	char name[4 * AGENT_MAX_NAME + 4];
	if (!shown_name) {
		text_escape(name, sizeof(name), e->name, strlen(e->name), 0);
		shown_name = name;
	}
	printf("%c %04o %llu %s %s\n", t, e->mode & 07777u, (unsigned long long)e->size, when, shown_name);
}

static int fs_list_each(void *arg, const struct agent_entry *e)
{
	(void)arg;
	fs_print_entry(e, NULL);
	return 0;
}

enum { O_PARENTS = 300, O_RECURSIVE, O_MODE };

int cmd_fs(int argc, char **argv)
{
	static const char usage[] = "usage: padcell fs stat|ls|mkdir|mv|rm --vsock PATH [-p] [--mode MODE] [-r] GUEST_PATH...";
	if (argc < 2)
		return fail(EXIT_USAGE, usage);
	const char *op = argv[1];
	enum { FS_STAT, FS_LS, FS_MKDIR, FS_MV, FS_RM } which;
	if (!strcmp(op, "stat")) which = FS_STAT;
	else if (!strcmp(op, "ls")) which = FS_LS;
	else if (!strcmp(op, "mkdir")) which = FS_MKDIR;
	else if (!strcmp(op, "mv")) which = FS_MV;
	else if (!strcmp(op, "rm")) which = FS_RM;
	else {
		char m[200];
		snprintf(m, sizeof(m), "fs: unknown operation '%.64s' (stat, ls, mkdir, mv or rm)", op);
		return fail(EXIT_USAGE, m);
	}
	static const struct option opts[] = {
		{ "vsock", required_argument, NULL, O_VSOCK },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "parents", no_argument, NULL, O_PARENTS },
		{ "recursive", no_argument, NULL, O_RECURSIVE },
		{ "mode", required_argument, NULL, O_MODE },
		{ 0 },
	};
	const char *vsock = NULL;
	bool verbose = false, parents = false, recursive = false, mode_given = false;
	unsigned long mode = 0755;
	char msg[400];
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc - 1, argv + 1, "+:pr", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case O_VSOCK: vsock = optarg; break;
		case O_VERBOSE: verbose = true; break;
		case 'p': case O_PARENTS: parents = true; break;
		case 'r': case O_RECURSIVE: recursive = true; break;
		case O_MODE:
			errno = 0;
			mode = strtoul(optarg, &end, 8);
			if (errno || end == optarg || *end || mode > 07777)
				return fail(EXIT_USAGE, "--mode: expected octal permissions, at most 7777");
			mode_given = true;
			break;
		case ':':
			snprintf(msg, sizeof(msg), "%s needs a value", argv[optind]);
			return fail(EXIT_USAGE, msg);
		default:
			snprintf(msg, sizeof(msg), "unknown option '%s' (see padcell --help)", argv[optind]);
			return fail(EXIT_USAGE, msg);
		}
	}
	int first = optind + 1, npaths = argc - first;
	if (!vsock)
		return fail(EXIT_USAGE, "fs needs --vsock PATH (the socket of a VM booted with --vsock PATH)");
	if ((parents || mode_given) && which != FS_MKDIR)
		return fail(EXIT_USAGE, "fs: -p and --mode are mkdir's");
	if (recursive && which != FS_RM)
		return fail(EXIT_USAGE, "fs: -r is rm's");
	if (which == FS_MV ? npaths != 2 : npaths < 1)
		return fail(EXIT_USAGE, which == FS_MV ? "usage: padcell fs mv --vsock PATH SRC DST (guest paths)" : usage);
	for (int i = first; i < argc; i++) {
		size_t n = strlen(argv[i]);
		if (argv[i][0] != '/' || n >= AGENT_MAX_PATH)
			return fail(EXIT_USAGE, "fs: guest paths are absolute, at most 4095 bytes");
	}

	struct agent_conn conn;
	int code = open_agent(&conn, vsock, 0, verbose);
	if (code)
		return code;
	/* An ERROR answer (no such file, ...) is that path's failure: exit 1, the others still go.
	 * Anything else leaves the connection unusable: 125 (or 128+N). */
	int failed = 0, rc = 0;
	for (int i = first; i < argc && !rc; i++) {
		const char *p = argv[i];
		switch (which) {
		case FS_STAT: {
			struct agent_entry e;
			rc = agent_conn_stat(&conn, p, &e, msg, sizeof(msg));
			if (!rc) {
				char shown[4 * AGENT_MAX_PATH + 4];
				text_escape(shown, sizeof(shown), p, strlen(p), 0);
				fs_print_entry(&e, shown);
			}
			break;
		}
		case FS_LS:
			if (npaths > 1)
				printf("%s%s:\n", i > first ? "\n" : "", p);
			rc = agent_conn_list(&conn, p, fs_list_each, NULL, msg, sizeof(msg));
			break;
		case FS_MKDIR: rc = agent_conn_mkdir(&conn, p, (unsigned)mode, parents, msg, sizeof(msg)); break;
		case FS_RM: rc = agent_conn_remove(&conn, p, recursive, msg, sizeof(msg)); break;
		case FS_MV:
			rc = agent_conn_move(&conn, p, argv[i + 1], msg, sizeof(msg));
			i = argc;
			break;
		}
		if (rc == -EIO) {
			fprintf(stderr, "padcell: %s\n", msg);
			failed = 1;
			rc = 0;
		}
	}
	close_agent(&conn);
	if (fflush(stdout) != 0 && !rc)
		return fail(EXIT_HOST_ERROR, "writing the output failed");
	if (rc)
		return fail(agent_fail_code(&conn, rc), msg);
	return failed;
}
