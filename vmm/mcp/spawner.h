/*
 * `padcell mcp`'s privilege separation: a spawner process, forked at start, boots and ends the
 * session's sandbox VM (`padcell boot`, its private directory and ready socket); the MCP server,
 * which parses the client's JSON-RPC, then confines itself and asks it over a socketpair in
 * fixed-size messages.  The spawner holds every option of the VM from the start: a request names
 * only what to do.
 */
#ifndef PADCELL_MCP_SPAWNER_H
#define PADCELL_MCP_SPAWNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/mcp/sandbox.h"

#define MCP_SPAWN_MAGIC 0x6d637370u /* "mcsp" */

enum mcp_spawn_op {
	MCP_SPAWN_BOOT = 1, /* boot the VM: its pid, directory, ready socket (listening) and pidfd */
	MCP_SPAWN_STOP,     /* end it (SIGTERM, SIGKILL after 10 s), reap it, remove its directory */
	MCP_SPAWN_WAIT,     /* whether it ended, and how (reaped then) */
};

struct mcp_spawn_req {
	uint32_t magic;
	uint32_t op;
};

struct mcp_spawn_rep {
	uint32_t magic;
	int32_t rc;          /* 0 or -errno */
	int32_t pid;
	int32_t exited;      /* WAIT: 1 when it ended (status is its wait status) */
	int32_t status;
	char dir[64];        /* BOOT: its private directory (vsock and ready sockets beneath) */
	char err[512];
};

/* A message of len bytes checked as a request: exact size, magic, known op.  0, or -EINVAL with err set. */
int mcp_spawn_req_check(const void *msg, size_t len, struct mcp_spawn_req *out, char *err, size_t errlen);

/* Forks the spawner (single-threaded caller), which boots VMs with o; the server's end in *fd, its pid in *pid. */
int mcp_spawner_fork(const struct sandbox_opts *o, int *fd, pid_t *pid, char *err, size_t errlen);

/* The server's side: one request, its reply, and the fds it carries (BOOT: ready, pidfd; else -1). */
int mcp_spawn_call(int fd, enum mcp_spawn_op op, struct mcp_spawn_rep *r, int fds[2]);

#endif
