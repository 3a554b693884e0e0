/* `padcell ps`, `attach`, `kill` and `exec --background/--pty`: the guest agent's background processes (protocol 4). */
#include "vmm/cmd/cmd.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/cmd/agent_cmd.h"
#include "vmm/cmd/cli.h"
#include "vmm/util.h"

enum { O_VSOCK = 256, O_SIGNAL, O_VERBOSE };

/* --vsock PATH [--signal SIG] [--verbose] then exactly `want` operands: 0, or the usage exit code. */
static int parse_common(int argc, char **argv, const char *cmd, int want, const char **vsock, const char **sig,
			bool *verbose)
{
	static const struct option opts[] = {
		{ "vsock", required_argument, NULL, O_VSOCK },
		{ "signal", required_argument, NULL, O_SIGNAL },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ 0 },
	};
	char msg[320];
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		if (c == O_VSOCK) {
			*vsock = optarg;
		} else if (c == O_SIGNAL && sig) {
			*sig = optarg;
		} else if (c == O_VERBOSE) {
			*verbose = true;
		} else {
			snprintf(msg, sizeof(msg), c == ':' ? "%s needs a value" : "unknown option '%s' (see padcell --help)",
				 argv[optind - 1]);
			return agent_cmd_fail(EXIT_USAGE, msg);
		}
	}
	if (!*vsock) {
		snprintf(msg, sizeof(msg), "%s needs --vsock PATH (the socket of a VM booted with --vsock PATH)", cmd);
		return agent_cmd_fail(EXIT_USAGE, msg);
	}
	if (argc - optind != want) {
		snprintf(msg, sizeof(msg), "usage: padcell %s --vsock PATH%s%s", cmd, sig ? " [--signal SIG]" : "",
			 want ? " ID" : "");
		return agent_cmd_fail(EXIT_USAGE, msg);
	}
	return 0;
}

static int parse_id(const char *s, uint32_t *id)
{
	unsigned v;
	if (cli_parse_uint(s, 1, UINT32_MAX, &v)) {
		char msg[200];
		snprintf(msg, sizeof(msg), "'%.40s' is not a process id (a number from 1, as exec --background printed)", s);
		return agent_cmd_fail(EXIT_USAGE, msg);
	}
	*id = v;
	return 0;
}

/* A signal by number or name, with or without SIG: TERM, SIGKILL, 9. */
static int parse_signal(const char *s, int *sig)
{
	static const struct { const char *name; int sig; } names[] = {
		{ "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "KILL", SIGKILL }, { "USR1", SIGUSR1 },
		{ "USR2", SIGUSR2 }, { "TERM", SIGTERM }, { "CONT", SIGCONT }, { "STOP", SIGSTOP }, { "TSTP", SIGTSTP },
		{ "WINCH", SIGWINCH }, { "ALRM", SIGALRM },
	};
	unsigned v;
	if (!cli_parse_uint(s, 1, 64, &v)) {
		*sig = (int)v;
		return 0;
	}
	const char *n = strncasecmp(s, "SIG", 3) ? s : s + 3;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(n, names[i].name)) {
			*sig = names[i].sig;
			return 0;
		}
	char msg[200];
	snprintf(msg, sizeof(msg), "--signal '%.40s': expected a number 1..64 or a name (TERM, KILL, INT, HUP, ...)", s);
	return agent_cmd_fail(EXIT_USAGE, msg);
}

int exec_background(const char *vsock, const struct agent_start_req *req, bool verbose)
{
	struct agent_conn conn;
	int code = open_agent(&conn, vsock, 0, verbose);
	if (code)
		return code;
	char msg[320];
	uint32_t id, pid;
	int rc = agent_conn_start(&conn, req, &id, &pid, msg, sizeof(msg));
	close_agent(&conn);
	if (rc)
		return agent_cmd_fail(agent_fail_code(&conn, rc), msg);
	if (verbose)
		fprintf(stderr, "padcell: process %u is guest pid %u\n", id, pid);
	printf("%u\n", id);
	return 0;
}

static int ps_print(void *arg, const struct agent_proc *p)
{
	(void)arg;
	/* argv joined by spaces, as a shell line would show it (each byte escaped as needed) */
	char joined[AGENT_PROC_ARGV], shown[AGENT_PROC_ARGV * 4 + 1], state[32];
	size_t n = p->argv_len ? p->argv_len - 1u : 0;
	memcpy(joined, p->argv, n);
	for (size_t i = 0; i < n; i++)
		if (joined[i] == '\0')
			joined[i] = ' ';
	text_escape(shown, sizeof(shown), joined, n, 0);
	if (p->state == AGENT_PROC_RUNNING)
		snprintf(state, sizeof(state), "running");
	else if (p->how == AGENT_SIGNALED)
		snprintf(state, sizeof(state), "signal %d", p->code);
	else
		snprintf(state, sizeof(state), "exited %d", p->code);
	printf("%-6u %-7u %-10s %s\n", p->id, p->pid, state, shown);
	return 0;
}

int cmd_ps(int argc, char **argv)
{
	const char *vsock = NULL;
	bool verbose = false;
	int code = parse_common(argc, argv, "ps", 0, &vsock, NULL, &verbose);
	if (code)
		return code;
	struct agent_conn conn;
	if ((code = open_agent(&conn, vsock, 0, verbose)))
		return code;
	char msg[320];
	printf("%-6s %-7s %-10s %s\n", "ID", "PID", "STATE", "COMMAND");
	int rc = agent_conn_ps(&conn, ps_print, NULL, msg, sizeof(msg));
	close_agent(&conn);
	return rc ? agent_cmd_fail(agent_fail_code(&conn, rc), msg) : 0;
}

/* The process's end as an exit code (128+N for signal N), the gaps said on stderr. */
static int attach_code(const struct agent_attach_result *r)
{
	for (int s = 0; s < 2; s++)
		if (r->gap[s])
			fprintf(stderr, "padcell: %llu bytes of %s were dropped before they could be sent (the agent "
					"keeps the last %u KiB of each stream)\n", (unsigned long long)r->gap[s],
				s ? "stderr" : "stdout", AGENT_PROC_RING >> 10);
	return agent_exit_code(r->how, r->code);
}

static int attach_on(struct agent_conn *conn, uint32_t id)
{
	char msg[320];
	struct agent_attach_result r;
	int rc = agent_conn_attach(conn, id, STDOUT_FILENO, STDERR_FILENO, &r, msg, sizeof(msg));
	if (rc == -EINTR) {
		fprintf(stderr, "padcell: detached (signal %d); process %u goes on\n", conn->signo, id);
		return 128 + conn->signo;
	}
	return rc ? agent_cmd_fail(agent_fail_code(conn, rc), msg) : attach_code(&r);
}

int cmd_attach(int argc, char **argv)
{
	const char *vsock = NULL;
	bool verbose = false;
	uint32_t id;
	int code = parse_common(argc, argv, "attach", 1, &vsock, NULL, &verbose);
	if (code || (code = parse_id(argv[optind], &id)))
		return code;
	struct agent_conn conn;
	if ((code = open_agent(&conn, vsock, 0, verbose)))
		return code;
	code = attach_on(&conn, id);
	close_agent(&conn);
	return code;
}

int cmd_kill(int argc, char **argv)
{
	const char *vsock = NULL, *sigs = NULL;
	bool verbose = false;
	uint32_t id;
	int sig = SIGTERM;
	int code = parse_common(argc, argv, "kill", 1, &vsock, &sigs, &verbose);
	if (code || (code = parse_id(argv[optind], &id)) || (sigs && (code = parse_signal(sigs, &sig))))
		return code;
	struct agent_conn conn;
	if ((code = open_agent(&conn, vsock, 0, verbose)))
		return code;
	char msg[320];
	int rc = agent_conn_kill(&conn, id, sig, msg, sizeof(msg));
	close_agent(&conn);
	return rc ? agent_cmd_fail(agent_fail_code(&conn, rc), msg) : 0;
}

/* ---- exec --pty ---- */

/*
 * The stdin pump of exec --pty, a child process with a connection of its own (the client keeps
 * one frame buffer per process, so the two connections cannot share one process's threads):
 * stdin's bytes to SEND, SIGWINCH to RESIZE, stdin's end to closing stdin.  It ends with its
 * parent (PR_SET_PDEATHSIG) or when the parent kills it.
 */
static void pty_pump(const char *vsock, uint32_t id, bool no_stdin) __attribute__((noreturn));
static void pty_pump(const char *vsock, uint32_t id, bool no_stdin)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	sigset_t w;
	sigemptyset(&w);
	sigaddset(&w, SIGWINCH);
	int wfd = signalfd(-1, &w, SFD_CLOEXEC);
	struct agent_conn c;
	agent_conn_init(&c, -1, -1, -1);
	char msg[320];
	struct agent_hello h;
	if (agent_conn_open(&c, vsock, AGENT_PORT, 5000, msg, sizeof(msg)) ||
	    agent_conn_hello(&c, now_ms() + c.reply_ms, &h, msg, sizeof(msg)))
		_exit(1);
	bool in_open = !no_stdin;
	if (!in_open)
		agent_conn_send(&c, id, NULL, 0, msg, sizeof(msg)); /* --no-stdin: end of input at once */
	static uint8_t b[4096];
	for (;;) {
		struct pollfd p[2] = { { .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN }, { .fd = wfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;
			struct winsize ws;
			if (read(wfd, &si, sizeof(si)) > 0 && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row &&
			    ws.ws_col)
				agent_conn_resize(&c, id, ws.ws_row, ws.ws_col, msg, sizeof(msg));
		}
		if (p[0].revents) {
			ssize_t n = read(STDIN_FILENO, b, sizeof(b));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				agent_conn_send(&c, id, NULL, 0, msg, sizeof(msg));
				in_open = false;
			} else if (agent_conn_send(&c, id, b, (size_t)n, msg, sizeof(msg))) {
				in_open = false; /* the process closed it, or ended */
			}
		}
	}
}

int exec_pty(const char *vsock, struct agent_start_req *req, bool no_stdin, bool verbose)
{
	bool tty = isatty(STDIN_FILENO);
	struct winsize ws;
	if (tty && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col && ws.ws_row <= AGENT_MAX_WINSZ &&
	    ws.ws_col <= AGENT_MAX_WINSZ) {
		req->rows = ws.ws_row;
		req->cols = ws.ws_col;
	}
	struct agent_conn conn;
	int code = open_agent(&conn, vsock, 0, verbose);
	if (code)
		return code;
	char msg[320];
	uint32_t id, pid;
	int rc = agent_conn_start(&conn, req, &id, &pid, msg, sizeof(msg));
	if (rc) {
		close_agent(&conn);
		return agent_cmd_fail(agent_fail_code(&conn, rc), msg);
	}
	/* The START connection carries the stream; the pump has a connection of its own. */
	sigset_t w;
	sigemptyset(&w);
	sigaddset(&w, SIGWINCH);
	sigprocmask(SIG_BLOCK, &w, NULL);
	struct termios saved;
	bool raw = tty && tcgetattr(STDIN_FILENO, &saved) == 0;
	if (raw) {
		struct termios t = saved;
		cfmakeraw(&t);
		raw = tcsetattr(STDIN_FILENO, TCSADRAIN, &t) == 0;
	}
	fflush(stdout);
	pid_t pump = fork();
	if (pump == 0)
		pty_pump(vsock, id, no_stdin);
	struct agent_attach_result r;
	rc = agent_conn_attach(&conn, id, STDOUT_FILENO, STDERR_FILENO, &r, msg, sizeof(msg));
	code = rc ? agent_fail_code(&conn, rc) : attach_code(&r);
	if (rc == -EINTR) {
		/* Our stop signal: the process goes with us, as exec's does. */
		struct agent_conn k;
		agent_conn_init(&k, -1, -1, -1);
		struct agent_hello h;
		if (!agent_conn_open(&k, vsock, AGENT_PORT, 2000, msg, sizeof(msg)) &&
		    !agent_conn_hello(&k, now_ms() + 2000, &h, msg, sizeof(msg)))
			agent_conn_kill(&k, id, SIGKILL, msg, sizeof(msg));
		if (k.fd >= 0)
			close(k.fd);
	}
	if (pump > 0) {
		kill(pump, SIGKILL);
		while (waitpid(pump, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (raw)
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved);
	close_agent(&conn);
	if (rc)
		return agent_cmd_fail(code, rc == -EINTR ? "stopped by a signal: the process was killed" : msg);
	return code;
}
