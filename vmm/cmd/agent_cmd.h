/* What the agent commands (vmm/cmd/agent.c, vmm/cmd/procs.c) share: opening the agent, errors, exit codes. */
#ifndef PADCELL_CMD_AGENT_CMD_H
#define PADCELL_CMD_AGENT_CMD_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/agent/agent_client.h"

/* Prints "padcell: msg" and returns code. */
int agent_cmd_fail(int code, const char *msg);
/* The stop-signal fd, the connection and HELLO: 0, or the exit code with the message printed. */
int open_agent(struct agent_conn *c, const char *vsock, uint64_t get_max, bool verbose);
void close_agent(struct agent_conn *c);
/* The exit code for a failed agent call: 128+N after stop signal N, else 125. */
int agent_fail_code(const struct agent_conn *c, int rc);

/* exec --background: prints the process id; exec --pty: runs it on a terminal, attached (procs.c). */
int exec_background(const char *vsock, const struct agent_start_req *req, bool verbose);
int exec_pty(const char *vsock, struct agent_start_req *req, bool no_stdin, bool verbose);

#endif
