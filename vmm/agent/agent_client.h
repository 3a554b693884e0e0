/* Host side of the guest agent protocol (guest/agent/proto.h): what run, exec and cp are built on. */
#ifndef PADCELL_AGENT_CLIENT_H
#define PADCELL_AGENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "guest/agent/proto.h"

/*
 * Connects to a VM's vsock Unix socket and asks for guest port `port` (Firecracker's
 * "CONNECT <port>\n" / "OK <hostport>\n").  Retries while the guest refuses, until timeout_ms.
 * Returns the connected fd or -errno with err set.
 */
int agent_connect(const char *vsock_path, uint32_t port, int timeout_ms, char *err, size_t errlen);

/* Reads the agent's HELLO; -EPROTO for another protocol version or anything else first. */
int agent_hello(int fd, struct agent_hello *out, char *err, size_t errlen);

/* Sends SYNC (this host's realtime clock, 32 bytes from getrandom) and waits for the agent's OK. */
int agent_sync(int fd, char *err, size_t errlen);

struct agent_exec_req {
	char *const *argv;
	char *const *env;    /* NAME=VALUE, NULL-terminated; may be NULL */
	const char *cwd;     /* NULL: the agent's default */
	const char *user;    /* NULL: root */
	uint32_t timeout_ms; /* 0: none */
	int stdin_fd;        /* -1: the command's stdin is /dev/null */
};

struct agent_exec_result {
	int how;  /* enum agent_exit_how */
	int code; /* exit status, or the signal number */
};

/*
 * Runs one command on a connection that has had its HELLO: stdin_fd is streamed to it, its
 * stdout and stderr frames are written to out_fd and err_fd as they come, and signals read from
 * sig_fd (a signalfd, or -1) are forwarded to its process group.  Returns 0 with the result once
 * EXIT arrives; -errno with err set when the connection fails or the agent reports an error.
 */
int agent_exec(int fd, const struct agent_exec_req *req, int out_fd, int err_fd, int sig_fd,
	       struct agent_exec_result *res, char *err, size_t errlen);

/* Copies src_fd to guest_path (created or truncated, mode), or guest_path to dst_fd. */
int agent_put_file(int fd, int src_fd, const char *guest_path, unsigned mode, char *err, size_t errlen);
int agent_get_file(int fd, const char *guest_path, int dst_fd, char *err, size_t errlen);

/* Asks the agent (when it is init) to power the VM off. */
int agent_poweroff(int fd, char *err, size_t errlen);

#endif
