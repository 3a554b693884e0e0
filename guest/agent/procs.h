/* The agent's process manager (protocol 4): background processes that outlive a connection. */
#ifndef PADCELL_AGENT_PROCS_H
#define PADCELL_AGENT_PROCS_H

#include <stdbool.h>
#include <stdint.h>

#include "guest/agent/proto.h"

/*
 * Runs the process manager in this (freshly forked) process and never returns.  ctl_fd is its end
 * of a SOCK_SEQPACKET pair: each message is one frame (header and payload) with the connection it
 * came on attached (SCM_RIGHTS); the manager serves that connection from then on.  When every
 * other end of ctl_fd is closed (the agent is gone), it kills its processes and exits.
 */
void procs_main(int ctl_fd) __attribute__((noreturn));

/*
 * Hands conn to the process manager behind ctl_fd together with the frame already read from it
 * (h, payload): 0, or -errno when the manager cannot be reached.
 */
int procs_handoff(int ctl_fd, int conn, const struct agent_hdr *h, const uint8_t *payload);

/* agent.c's: the command's child side (never returns); ctty makes `in` its controlling terminal. */
void agent_child_exec(const struct agent_exec *e, int in, int out, int err_fd, bool ctty) __attribute__((noreturn));

#endif
