/* `padcell boot`: one VM from a kernel, run until it stops, on the terminal's console. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/api/api.h"
#include "vmm/cmd/check.h"
#include "vmm/cmd/cli.h"
#include "vmm/cmd/cmd.h"
#include "vmm/cmd/run.h"
#include "vmm/jail/jail.h"
#include "vmm/launch.h"
#include "vmm/util.h"
#include "vmm/vm.h"

static int die_usage(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "padcell: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

/* --snapshot-when-ready: its thread waits for the guest's ready call, once the vCPUs run. */
static void snap_after_start(struct vm *vm, int rc, void *ctx)
{
	if (ready_snap_start(ctx, vm))
		fprintf(stderr, "padcell: --snapshot-when-ready: cannot start its thread\n");
}

static void snap_joined(void *ctx)
{
	ready_snap_finish(ctx);
}

/* The VM o describes, from its sockets to its exit code. */
static int boot_vm(const struct boot_opts *o)
{
	char err[320];
	/*
	 * On PVM a Linux kernel spins in instruction emulation and never comes up: say so now.  Tiny
	 * freestanding guests (the kvm tier's) run fine there, so only a kernel that says it is
	 * Linux is refused.  A file that does not parse is launch_boot's to report.
	 */
	if (!o->allow_pvm && host_kvm_kind() == HOST_KVM_PVM) {
		struct file_map f;
		struct kernel_image k;
		bool is_linux = !file_map(o->kernel, &f, err, sizeof(err)) &&
				!kernel_parse(f.data, f.size, &k, err, sizeof(err)) && k.is_linux;
		file_unmap(&f);
		if (is_linux) {
			fprintf(stderr, "padcell: this host's /dev/kvm is PVM (kvm_pvm, no VT-x/AMD-V), where the Linux "
					"kernel '%s' cannot boot; run on a host with hardware KVM, or in the nested tier "
					"(`make demo` shows it) (--allow-pvm boots anyway)\n", o->kernel);
			return EXIT_USAGE;
		}
	}

	struct jail_opts jail = o->jail;
	jail.host_net = o->net.net;
	if (jail_prepare(&jail, err, sizeof(err)))
		return die_usage("%s%s", err, "");
	/* What the VM touches after confinement: its sockets (removed at exit), its snapshots. */
	jail_allow_path(o->api_sock, false);
	jail_allow_connect(o->vsock_path);
	jail_own_path(o->api_sock); /* with --uid/--uid-range: the VM's uid owns its sockets */
	jail_own_path(o->vsock_path);
	jail_allow_path(o->snapshot_dir, true);
	/* The control socket is claimed first: a live or unusable PATH is the user's error, found
	 * before anything is built. */
	int api_fd = -1;
	if (o->api_sock) {
		api_fd = api_listen(o->api_sock, err, sizeof(err));
		if (api_fd < 0)
			return die_usage("--api-sock '%s': %s", o->api_sock, err);
	}
	/* ~42 KiB, mostly disks the VM may not have: zero pages, resident only where written */
	struct launch *l = page_zalloc(sizeof(*l));
	struct ready_snap snap = { .ready_fd = -1 };
	int rc = EXIT_HOST_ERROR;
	if (!l)
		snprintf(err, sizeof(err), "out of memory");
	else
		rc = launch_boot(l, o, STDOUT_FILENO, err, sizeof(err));
	if (!rc && o->snapshot_dir && ready_snap_listen(&snap, o->vsock_path, o->snapshot_dir, err, sizeof(err))) {
		launch_teardown(l);
		rc = EXIT_USAGE;
	}
	if (rc) {
		if (api_fd >= 0) {
			close(api_fd);
			unlink(o->api_sock);
		}
		page_free(l, sizeof(*l));
		fprintf(stderr, "padcell: %s\n", err);
		return rc;
	}
	struct vm *vm = &l->vm;
	struct api_server *api = NULL;
	if (api_fd >= 0 && !(api = api_vm_serve(vm, api_fd, o->api_sock, PADCELL_VERSION, err, sizeof(err)))) {
		launch_teardown(l);
		page_free(l, sizeof(*l));
		fprintf(stderr, "padcell: --api-sock '%s': %s\n", o->api_sock, err);
		return EXIT_HOST_ERROR;
	}
	struct launch_run_hooks hooks = { .joined = snap_joined, .ctx = &snap };
	if (o->snapshot_dir)
		hooks.after_start = snap_after_start, hooks.snapshots = true;
	rc = launch_run_until_stop(vm, api, o->verbose, &hooks);
	launch_teardown(l);
	page_free(l, sizeof(*l));
	return rc;
}

int cmd_boot(int argc, char **argv)
{
	char err[320];
	struct boot_opts o;
	if (cli_parse_boot(argc, argv, &o, err, sizeof(err)))
		return die_usage("%s%s", err, "");
	int rc = boot_vm(&o);
	cli_opts_free(&o);
	return rc;
}
