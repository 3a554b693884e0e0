/*
 * The sandbox behind `padcell mcp`: one VM per session, booted at the first tool call as a
 * `padcell boot` process of the spawner's (jailed like any other, the agent as init), reached through the guest
 * agent on its vsock socket, and killed with everything it made when the session ends.
 */
#ifndef PADCELL_MCP_SANDBOX_H
#define PADCELL_MCP_SANDBOX_H

#include <stdbool.h>
#include <sys/types.h>

#include "vmm/mcp/mcp.h"

struct sandbox_opts {
	const char *padcell;   /* this executable */
	const char *kernel;    /* NULL: the default kernel (run's rules) */
	const char *rootfs;    /* NULL: the default root image */
	const char *mem;       /* --mem of the VM, e.g. "512M" */
	unsigned cpus;
	unsigned boot_timeout; /* seconds from the start of the boot until the agent is ready */
	bool allow_pvm;
	bool verbose;          /* the VM's console on stderr */
};

struct sandbox {
	struct sandbox_opts o;
	int sig_fd;            /* stop signals: end any wait */
	int spawner_fd;        /* the spawner process, which boots and ends the VM (vmm/mcp/spawner.h) */
	struct mcp_backend *backend;
	pid_t pid;             /* the `padcell boot` child, 0 when none */
	int pidfd;             /* readable once it has exited: a lost VM fails the call at once */
	bool up;
	char dir[64], vsock[128], ready[160];
	char kernel[4096], rootfs[4096];
};

/* A backend whose calls run in sb (which must outlive it); nothing starts until the first call. */
void sandbox_init(struct sandbox *sb, const struct sandbox_opts *o, int sig_fd, int spawner_fd, struct mcp_backend *b);

/* Stops the VM (SIGTERM, then SIGKILL after 10 s), reaps it and removes its directory. */
void sandbox_stop(struct sandbox *sb);

#endif
