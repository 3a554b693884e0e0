/* `padcell run`: one command in a fresh (or restored) microVM. */
#ifndef PADCELL_CMD_RUN_H
#define PADCELL_CMD_RUN_H

#include <stddef.h>

/* The default kernel or root image: $env, else share/padcell/name beside or above the executable. */
int run_default_file(const char *env, const char *name, char *out, size_t outlen, char *err, size_t errlen);

/*
 * cmd_run with setup commands (template build): argv as `padcell run` takes it; each setup[i] runs
 * as `sh -c` once the agent is ready, before --snapshot-when-ready's snapshot.  The exit code.
 */
int run_with_setup(int argc, char **argv, const char *const *setup, unsigned nsetup);

/*
 * boot --snapshot-when-ready DIR: a thread that waits for the agent's ready call on the VM's
 * vsock PATH_<AGENT_PORT>, then pauses the VM, writes DIR/state and DIR/mem, and resumes it.
 * The caller's HELLO must come within AGENT_FRAME_MS, and ready_snap_finish ends any wait of the
 * thread at once: a guest that connects and sends nothing cannot hold the join.
 */
#include <pthread.h>
#include <stdbool.h>
struct vm;
struct ready_snap {
	struct vm *vm;
	const char *dir;
	int ready_fd;
	char ready_path[160];
	bool verbose;
	pthread_t thread;
	bool started;
	int quit_efd;              /* written by ready_snap_finish: the thread's waits end */
};
int ready_snap_listen(struct ready_snap *s, const char *vsock_path, const char *dir, char *err, size_t errlen);
int ready_snap_start(struct ready_snap *s, struct vm *vm);
/* After the VM stopped (or at any time): ends the thread's waits, joins it, removes the socket. */
void ready_snap_finish(struct ready_snap *s);

#endif
