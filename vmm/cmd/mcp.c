/* `padcell mcp`: an MCP server on stdin/stdout whose tools run in one sandbox VM per session. */
#include "vmm/cmd/cmd.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <sys/wait.h>
#include <stdbool.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/cmd/cli.h"
#include "vmm/mcp/mcp.h"
#include "vmm/jail/jail.h"
#include "vmm/mcp/sandbox.h"
#include "vmm/mcp/spawner.h"
#include <jansson.h>
#include "vmm/util.h"

enum { M_KERNEL = 256, M_ROOTFS, M_MEM, M_CPUS, M_BOOT_TIMEOUT, M_ALLOW_PVM, M_VERBOSE, M_NO_JAIL, M_SECCOMP };

int cmd_mcp(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, M_KERNEL },
		{ "rootfs", required_argument, NULL, M_ROOTFS },
		{ "mem", required_argument, NULL, M_MEM },
		{ "cpus", required_argument, NULL, M_CPUS },
		{ "boot-timeout", required_argument, NULL, M_BOOT_TIMEOUT },
		{ "allow-pvm", no_argument, NULL, M_ALLOW_PVM },
		{ "verbose", no_argument, NULL, M_VERBOSE },
		{ "no-jail", no_argument, NULL, M_NO_JAIL },
		{ "seccomp", required_argument, NULL, M_SECCOMP },
		{ 0 },
	};
	struct sandbox_opts o = { .mem = "512M", .cpus = 1, .boot_timeout = CLI_DEFAULT_BOOT_TIMEOUT };
	bool no_jail = false;
	enum jail_seccomp_mode seccomp = JAIL_SECCOMP_KILL;
	opterr = 0;
	optind = 1;
	int c;
	uint64_t size;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		switch (c) {
		case M_KERNEL: o.kernel = optarg; break;
		case M_ROOTFS: o.rootfs = optarg; break;
		case M_MEM:
			if (cli_parse_size(optarg, &size) || size < (64ull << 20)) {
				fprintf(stderr, "padcell: --mem: expected a size of at least 64M\n");
				return EXIT_USAGE;
			}
			o.mem = optarg;
			break;
		case M_CPUS:
			if (cli_parse_uint(optarg, 1, 254, &o.cpus)) {
				fprintf(stderr, "padcell: --cpus: expected 1 to 254\n");
				return EXIT_USAGE;
			}
			break;
		case M_BOOT_TIMEOUT:
			if (cli_parse_uint(optarg, 1, 3600, &o.boot_timeout)) {
				fprintf(stderr, "padcell: --boot-timeout: expected whole seconds, 1 to 3600\n");
				return EXIT_USAGE;
			}
			break;
		case M_ALLOW_PVM: o.allow_pvm = true; break;
		case M_VERBOSE: o.verbose = true; break;
		case M_NO_JAIL: no_jail = true; break;
		case M_SECCOMP:
			if (strcmp(optarg, "kill") && strcmp(optarg, "log")) {
				fprintf(stderr, "padcell: --seccomp takes kill or log, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			seccomp = strcmp(optarg, "log") ? JAIL_SECCOMP_KILL : JAIL_SECCOMP_LOG;
			break;
		default:
			fprintf(stderr, c == ':' ? "padcell: %s needs a value\n" : "padcell: unknown option '%s' (see padcell --help)\n",
				argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "padcell: mcp takes no arguments (it speaks MCP on stdin and stdout)\n");
		return EXIT_USAGE;
	}
	/* Files named now are checked now: a typo is one line at start, not a failed tool call later. */
	if ((o.kernel && access(o.kernel, R_OK)) || (o.rootfs && access(o.rootfs, R_OK))) {
		fprintf(stderr, "padcell: cannot read %s: %s\n", o.kernel && access(o.kernel, R_OK) ? o.kernel : o.rootfs,
			strerror(errno));
		return EXIT_USAGE;
	}
	static char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		fprintf(stderr, "padcell: cannot find padcell's own path: %s\n", strerror(errno));
		return EXIT_HOST_ERROR;
	}
	self[n] = '\0';
	o.padcell = self;
	int sig_fd = stop_signals_fd();
	if (sig_fd < 0) {
		fprintf(stderr, "padcell: signalfd: %s\n", strerror(-sig_fd));
		return EXIT_HOST_ERROR;
	}
	/* privilege separation: the VM is booted and ended by a process of its own; this one, which
	 * parses the client's JSON-RPC, confines itself before it reads a byte of it */
	char err[512];
	int spawner_fd;
	pid_t spawner_pid;
	if (mcp_spawner_fork(&o, &spawner_fd, &spawner_pid, err, sizeof(err))) {
		fprintf(stderr, "padcell: mcp: %s\n", err);
		return EXIT_HOST_ERROR;
	}
	json_object_seed(0); /* Jansson's hash seed from /dev/urandom, while it may be read */
	if (no_jail) {
		fprintf(stderr, "padcell: warning: --no-jail: the MCP server runs unconfined (no seccomp, Landlock or "
				"privilege drop); its sandbox's monitor is still jailed\n");
	} else {
		struct jail_daemon jd = { .seccomp = seccomp, .kind = JAIL_MCP };
		if (jail_confine_daemon(&jd, err, sizeof(err))) {
			fprintf(stderr, "padcell: mcp: jail: %s\n", err);
			return EXIT_HOST_ERROR;
		}
	}
	struct sandbox sb;
	struct mcp_backend b;
	sandbox_init(&sb, &o, sig_fd, spawner_fd, &b);
	struct mcp m;
	mcp_init(&m, &b, PADCELL_VERSION);
	int signo = 0;
	int rc = mcp_serve(&m, STDIN_FILENO, STDOUT_FILENO, sig_fd, &signo);
	sandbox_stop(&sb);
	close(sig_fd);
	/* the spawner ends as its channel closes: reaped here (bounded: not waited for past a second) */
	close(spawner_fd);
	for (int i = 0; i < 20 && waitpid(spawner_pid, NULL, WNOHANG) == 0; i++)
		poll(NULL, 0, 50);
	if (rc == -EINTR)
		return 128 + signo;
	if (rc) {
		fprintf(stderr, "padcell: mcp: %s\n", strerror(-rc));
		return EXIT_HOST_ERROR;
	}
	return 0;
}
