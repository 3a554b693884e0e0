/* Making a VM from command-line options: input files, disks, vsock socket, KVM, loaded kernel, vCPUs.
 * Shared by `boot` and `run`, so both build a VM the same way and undo it the same way. */
#ifndef PADCELL_LAUNCH_H
#define PADCELL_LAUNCH_H

#include <stddef.h>
#include <stdint.h>

#include "devices/virtio_net.h"
#include "vmm/cmd/cli.h"
#include "vmm/vm.h"

/* A read-only mapping of a whole input file. */
struct file_map {
	const uint8_t *data;
	size_t size;
};
int file_map(const char *path, struct file_map *f, char *err, size_t errlen);
void file_unmap(struct file_map *f);

struct launch {
	struct file_map kernel, initrd;
	struct blk_disk disks[CLI_MAX_DRIVES];
	unsigned ndisks;
	int vsock_fd;              /* the listening socket at vsock_path, or -1 */
	const char *vsock_path;    /* the options' --vsock PATH, which outlive the launch */
	struct net_params net;     /* when o->net.net: the NIC's policy; net_log_fd is its --net-log */
	int net_log_fd;
	struct vm vm;
	bool vm_made;
	struct boot_result br;
	char cmdline[LAYOUT_CMDLINE_MAX];
};

/*
 * Opens and checks everything o names, creates the VM with console output to console_fd, loads
 * the kernel and sets up the vCPUs (not started).  Returns 0, or a process exit code (EXIT_USAGE
 * for the user's mistakes, EXIT_HOST_ERROR otherwise) with err set; then nothing is left behind
 * and launch_teardown() is a no-op.
 */
int launch_boot(struct launch *l, const struct boot_opts *o, int console_fd, char *err, size_t errlen);
/* What launch_boot starts from: nothing open, launch_teardown() a no-op.  For a caller that fills l itself. */
void launch_init(struct launch *l);

/*
 * The NIC's parameters from the network options (boot, run and restore): checks this padcell
 * has a stack and opens --net-log for appending.  0, or EXIT_USAGE with err set.  launch_net_close()
 * closes the log.
 */
int launch_net(const struct net_opts *o, struct net_params *p, char *err, size_t errlen);
void launch_net_close(struct net_params *p);

/* Closes and removes everything launch_boot made, the VM first.  Safe to call twice. */
void launch_teardown(struct launch *l);

/* The documented exit code for how the VM ended. */
int launch_exit_code(struct vm *vm);

/*
 * What `boot` and `restore` do with a VM once it is built: starts the vCPUs, runs the event loop
 * on the terminal (serving api, when not NULL, until the VM stops; api is destroyed before the
 * vCPUs are joined), joins them and restores the terminal.  after_start(vm, vm_start's result,
 * ctx) and joined(ctx) may be NULL.  Says how the VM ended (always when verbose) and returns the
 * documented exit code; the VM is the caller's to tear down.
 */
struct launch_run_hooks {
	void (*after_start)(struct vm *vm, int rc, void *ctx);
	void (*joined)(void *ctx);
	void *ctx;
	bool snapshots; /* the VM may write snapshots without an API socket (--snapshot-when-ready) */
};
struct api_server;
int launch_run_until_stop(struct vm *vm, struct api_server *api, bool verbose, const struct launch_run_hooks *hooks);

/* Opens every --drive, then the --scratch disk, in device order; on error all are closed again. */
int disks_open(const struct boot_opts *o, struct blk_disk *disks, unsigned *n, char *err, size_t errlen);

#endif
