/* padcell entry point: subcommand dispatch, and the one place errors become messages and exit codes. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/acpi.h"
#include "vmm/api.h"
#include "vmm/check.h"
#include "vmm/cli.h"
#include "vmm/cmd_agent.h"
#include "vmm/cmd_run.h"
#include "vmm/cmd_restore.h"
#include "vmm/cmd_snapshot.h"
#include "vmm/evloop.h"
#include "vmm/launch.h"
#include "vmm/layout.h"
#include "vmm/term.h"
#include "vmm/vm.h"

#define PADCELL_VERSION "0.1.0"

static int die_usage(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "padcell: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

static void api_service(void *server)
{
	api_server_service(server);
}

static int cmd_boot(int argc, char **argv)
{
	char err[320];
	struct boot_opts o;
	if (cli_parse_boot(argc, argv, &o, err, sizeof(err)))
		return die_usage("%s%s", err, "");

	/* The control socket is claimed first: a live or unusable PATH is the user's error, found
	 * before anything is built. */
	int api_fd = -1;
	if (o.api_sock) {
		api_fd = api_listen(o.api_sock, err, sizeof(err));
		if (api_fd < 0)
			return die_usage("--api-sock '%s': %s", o.api_sock, err);
	}
	static struct launch l;
	struct ready_snap snap = { .ready_fd = -1 };
	int rc = launch_boot(&l, &o, STDOUT_FILENO, err, sizeof(err));
	if (!rc && o.snapshot_dir && ready_snap_listen(&snap, o.vsock_path, o.snapshot_dir, err, sizeof(err))) {
		launch_teardown(&l);
		rc = EXIT_USAGE;
	}
	if (rc) {
		if (api_fd >= 0) {
			close(api_fd);
			unlink(o.api_sock);
		}
		fprintf(stderr, "padcell: %s\n", err);
		return rc;
	}
	struct vm *vm = &l.vm;
	struct api_server *api = NULL;
	if (api_fd >= 0 && !(api = api_vm_serve(vm, api_fd, o.api_sock, PADCELL_VERSION, err, sizeof(err)))) {
		launch_teardown(&l);
		fprintf(stderr, "padcell: --api-sock '%s': %s\n", o.api_sock, err);
		return EXIT_HOST_ERROR;
	}
	struct evloop_hook hook = { .fd = api ? api_server_fd(api) : -1, .ready = api_service, .ctx = api };
	struct term term;
	term_raw(&term, STDIN_FILENO);
	if (vm_start(vm) == 0 || vm_status(vm) != VM_RUNNING) {
		if (o.snapshot_dir && ready_snap_start(&snap, vm))
			fprintf(stderr, "padcell: --snapshot-when-ready: cannot start its thread\n");
		evloop_run_hooks(vm, STDIN_FILENO, term.raw, &hook, api ? 1 : 0);
	}
	api_server_destroy(api); /* no more requests: the socket goes before the VM does */
	vm_kick_all(vm);
	vm_join(vm);
	ready_snap_finish(&snap);
	term_restore(&term);

	rc = launch_exit_code(vm);
	if (rc != EXIT_GUEST_OK || o.verbose)
		fprintf(stderr, "padcell: %s\n", vm->stop_detail[0] ? vm->stop_detail : "VM stopped");
	launch_teardown(&l);
	return rc;
}

int main(int argc, char **argv)
{
	/* Termination signals are read through a signalfd by the event loop; a closed
	 * console must not kill the monitor mid-write. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		cli_usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "boot"))
		return cmd_boot(argc - 1, argv + 1);
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "exec"))
		return cmd_exec(argc - 1, argv + 1);
	if (!strcmp(cmd, "cp"))
		return cmd_cp(argc - 1, argv + 1);
	if (!strcmp(cmd, "restore"))
		return cmd_restore(argc - 1, argv + 1, PADCELL_VERSION);
	if (!strcmp(cmd, "snapshot"))
		return cmd_snapshot(argc - 1, argv + 1);
	if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume") || !strcmp(cmd, "status"))
		return cmd_pause_resume(argc - 1, argv + 1);
	if (!strcmp(cmd, "check"))
		return check_run(stdout) ? EXIT_HOST_ERROR : 0;
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		cli_usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("padcell %s\n", PADCELL_VERSION);
		return 0;
	}
	return die_usage("unknown command '%s' (see padcell --help)%s", cmd, "");
}
