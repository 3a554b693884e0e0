/* padcell entry point: the process-wide signal set, and the command table. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "vmm/cmd/cli.h"
#include "vmm/cmd/cmd.h"
#include "vmm/util.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {
	{ "boot", cmd_boot },
	{ "run", cmd_run },
	{ "exec", cmd_exec },
	{ "cp", cmd_cp },
	{ "fs", cmd_fs },
	{ "ps", cmd_ps },
	{ "attach", cmd_attach },
	{ "kill", cmd_kill },
	{ "mcp", cmd_mcp },
	{ "serve", cmd_serve },
	{ "template", cmd_template },
	{ "restore", cmd_restore },
	{ "snapshot", cmd_snapshot },
	{ "pause", cmd_pause_resume },
	{ "resume", cmd_pause_resume },
	{ "status", cmd_pause_resume },
	{ "net-policy", cmd_net_policy },
	{ "check", cmd_check },
};

int main(int argc, char **argv)
{
	/* Termination signals are read through a signalfd by the event loop; a closed
	 * console must not kill the monitor mid-write. */
	sigset_t sigs;
	stop_signals(&sigs);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* The fd budget: a guest's vsock connections are capped below it (devices/virtio_vsock.h). */
	nofile_raise(PADCELL_NOFILE);

	if (argc < 2) {
		cli_usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(cmd, commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		cli_usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("padcell %s\n", PADCELL_VERSION);
		return 0;
	}
	fprintf(stderr, "padcell: unknown command '%s' (see padcell --help)\n", cmd);
	return EXIT_USAGE;
}
