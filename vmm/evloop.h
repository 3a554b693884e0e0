/* The monitor's event loop: host input, signals and the VM's stop request, off the vCPU threads. */
#ifndef PADCELL_EVLOOP_H
#define PADCELL_EVLOOP_H

#include "vmm/vm.h"

/*
 * Runs until the VM stops.  Host input from in_fd (-1 for none) feeds the serial
 * port; when in_fd is a terminal, Ctrl-A x ends the VM.  SIGINT, SIGTERM and
 * SIGHUP must be blocked by the caller; they end the VM with VM_STOP_SIGNAL.
 */
int evloop_run(struct vm *vm, int in_fd, bool escape_keys);

/* One more fd for the loop to watch (the API socket's epoll set): ready(ctx) runs when it is readable. */
struct evloop_hook {
	int fd;
	void (*ready)(void *ctx);
	void *ctx;
};
#define EVLOOP_MAX_HOOKS 4

/* evloop_run, also serving up to EVLOOP_MAX_HOOKS hooks on the loop's own thread. */
int evloop_run_hooks(struct vm *vm, int in_fd, bool escape_keys, const struct evloop_hook *hooks, unsigned nhooks);

#endif
