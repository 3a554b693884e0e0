/* Host side of the guest agent protocol (guest/agent/proto.h): what run, exec and cp are built on. */
#ifndef PADCELL_AGENT_CLIENT_H
#define PADCELL_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/agent/proto.h"

/*
 * Bounds on what the agent may make padcell wait for (README "Guest agent protocol", "Waits").
 * A frame, once its first byte is here, must be complete within AGENT_FRAME_MS; an answer the
 * host waits for (SYNC's OK, PUT's OKs, each DATA of a GET, POWEROFF's OK) must begin within
 * AGENT_REPLY_MS, and each frame the host sends must be taken within it.  A running command's
 * output has no deadline (a command may be silent), but with a timeout the agent must report
 * its end within AGENT_TIMEOUT_SLACK_MS of it.  After a stop signal has been forwarded to a
 * command, the command has AGENT_SIGNAL_GRACE_MS to end.
 */
#define AGENT_FRAME_MS         10000
#define AGENT_REPLY_MS         60000
#define AGENT_TIMEOUT_SLACK_MS 5000
#define AGENT_SIGNAL_GRACE_MS  2000
/*
 * The most bytes a download (GET) may bring unless the caller says otherwise (cp --max-size):
 * GET announces no size, and a hostile agent could otherwise stream until the host's disk is full.
 */
#define AGENT_GET_MAX_DEFAULT  (1ull << 30)
/* The most entries a LIST may bring: a hostile agent could otherwise stream entries without end. */
#define AGENT_LIST_MAX_DEFAULT 1000000u

/*
 * One connection to an agent and what may cut its waits short.  Every wait of this client — the
 * CONNECT handshake, each frame read and write, a stream loop, local input for a copy — is one
 * poll on the fds it needs plus sig_fd and abort_fd, against a deadline:
 *   - a stop signal read from sig_fd (a signalfd of stop_signals(), or -1) ends it with -EINTR
 *     and signo set; agent_conn_exec forwards the first one to the command instead (below);
 *   - abort_fd (e.g. the VM's stop eventfd, or -1) readable ends it with -ECONNABORTED, once
 *     nothing more is buffered on the connection: the peer is gone and will send nothing more;
 *   - a passed deadline ends it with -ETIMEDOUT.
 * Every function returns 0 or -errno with err set to one line.
 */
struct agent_conn {
	int fd;
	int sig_fd;
	int abort_fd;
	int frame_ms, reply_ms, grace_ms, slack_ms; /* the bounds above; a test may make them short */
	uint64_t get_max;                           /* the bound on a GET's bytes (AGENT_GET_MAX_DEFAULT) */
	uint32_t list_max;                          /* the bound on a LIST's entries (AGENT_LIST_MAX_DEFAULT) */
	int signo;                                  /* out: the stop signal that ended a wait */
	uint32_t version;                           /* out: the agent's protocol version (HELLO) */
	/* private: the frame being received, resumed across waits */
	uint8_t hdr[AGENT_HDR_LEN];
	size_t got;
	double frame_t0;
	struct agent_hdr h;
};

/* A connection on fd (or -1 until agent_conn_open) with the default bounds. */
void agent_conn_init(struct agent_conn *c, int fd, int sig_fd, int abort_fd);

/*
 * Connects to a VM's vsock Unix socket and asks for guest port `port` (Firecracker's
 * "CONNECT <port>\n" / "OK <hostport>\n"), retrying while the guest refuses, until timeout_ms;
 * sets c->fd.  -EAGAIN (nothing listens / the guest refused until the end), -ETIMEDOUT, -EINTR.
 */
int agent_conn_open(struct agent_conn *c, const char *vsock_path, uint32_t port, int timeout_ms, char *err,
		    size_t errlen);

/*
 * Reads the agent's HELLO, which must begin before deadline (now_ms(); 0: no deadline, only
 * signals and abort_fd end the wait); -EPROTO for a protocol version outside AGENT_PROTO_MIN..
 * AGENT_PROTO_VERSION or anything else first.  c->version says which one the agent speaks: the
 * calls of a later version on an older agent fail with -EOPNOTSUPP and say so.
 */
int agent_conn_hello(struct agent_conn *c, double deadline, struct agent_hello *out, char *err, size_t errlen);

/* Sends SYNC (this host's realtime clock, 32 bytes from getrandom) and waits for the agent's OK. */
int agent_conn_sync(struct agent_conn *c, char *err, size_t errlen);

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
 * stdout and stderr frames are written to out_fd and err_fd as they come (a pipe nobody reads
 * holds the output back, never the waits).  Returns 0 with the result once EXIT arrives.
 *
 * The first stop signal is forwarded to the command's process group; if the command has not
 * ended AGENT_SIGNAL_GRACE_MS later, or a second stop signal comes, it returns -EINTR with
 * c->signo the signal that ended the wait (closing the connection then kills the command).  A
 * command with a timeout whose end the agent does not report within AGENT_TIMEOUT_SLACK_MS of it
 * is reported as AGENT_TIMEDOUT all the same.  -ECONNABORTED when abort_fd fires, -EPIPE when the
 * agent hangs up, -EPROTO or -ETIMEDOUT for a malformed or stalled frame, -EIO for its ERROR.
 */
int agent_conn_exec(struct agent_conn *c, const struct agent_exec_req *req, int out_fd, int err_fd,
		    struct agent_exec_result *res, char *err, size_t errlen);

/*
 * A command's end (an EXIT's how and code: agent_exec_result, agent_attach_result) as padcell's
 * exit code (README "Exit codes"): the command's own code, 128+N when signal N killed it,
 * AGENT_CODE_TIMEDOUT when its timeout fired, AGENT_CODE_FAILED for a how the client never
 * passes on (it refuses them as malformed).
 */
#define AGENT_CODE_TIMEDOUT 124
#define AGENT_CODE_FAILED   125
int agent_exit_code(int how, int code);

/*
 * Copies src_fd to guest_path (created or truncated, mode), or guest_path to dst_fd.  A download
 * that would pass c->get_max bytes ends with -EFBIG before the frame that passes it is written.
 */
int agent_conn_put_file(struct agent_conn *c, int src_fd, const char *guest_path, unsigned mode, char *err,
			size_t errlen);
int agent_conn_get_file(struct agent_conn *c, const char *guest_path, int dst_fd, char *err, size_t errlen);

/*
 * File operations (protocol version 3).  Paths are absolute.  An ERROR answer is -EIO with the
 * agent's message (escaped) in err, and the connection stays usable; every other failure leaves
 * it unusable.  agent_conn_list calls each(arg, entry) for every entry (a non-zero return stops
 * the listing with that code, after the rest of the reply has been read); more than c->list_max
 * entries end it with -EFBIG.  Each reply frame must begin within reply_ms.
 */
int agent_conn_stat(struct agent_conn *c, const char *path, struct agent_entry *out, char *err, size_t errlen);
int agent_conn_list(struct agent_conn *c, const char *path, int (*each)(void *arg, const struct agent_entry *e),
		    void *arg, char *err, size_t errlen);
int agent_conn_mkdir(struct agent_conn *c, const char *path, unsigned mode, bool parents, char *err, size_t errlen);
int agent_conn_move(struct agent_conn *c, const char *src, const char *dst, char *err, size_t errlen);
int agent_conn_remove(struct agent_conn *c, const char *path, bool recursive, char *err, size_t errlen);

/*
 * Background processes (protocol version 4; -EOPNOTSUPP on an older agent).  The first of these
 * calls hands the connection to the agent's process manager: from then on it carries only these
 * calls.  An ERROR answer is -EIO with the agent's message and the connection stays usable.
 */
struct agent_start_req {
	struct agent_exec_req exec; /* timeout_ms must be 0; stdin_fd is unused */
	bool pty;                   /* a terminal for stdin, stdout and stderr (all output is stdout) */
	bool keep_stdin;            /* stdin is a pipe SEND writes to (always, with a PTY) */
	uint16_t rows, cols;        /* the PTY's size; 0: 24x80 */
	const char *tag;            /* NULL or "": none; else 1..AGENT_MAX_TAG bytes (protocol 5) */
};
int agent_conn_start(struct agent_conn *c, const struct agent_start_req *req, uint32_t *id, uint32_t *pid,
		     char *err, size_t errlen);
/* Calls each(arg, entry) for every process the agent keeps (at most AGENT_MAX_PROCS); protocol 5. */
int agent_conn_ps(struct agent_conn *c, int (*each)(void *arg, const struct agent_proc *p), void *arg, char *err,
		  size_t errlen);
/*
 * Streams process id's kept and live output to out_fd and err_fd until its EXIT (which collects
 * it: the agent forgets it), with no deadline (a process may be silent); a stop signal ends the
 * wait with -EINTR (the process goes on).  res->gap[0/1] count the stdout/stderr bytes the agent
 * had dropped from its ring before they could be sent.
 */
struct agent_attach_result {
	int how, code;
	uint64_t gap[2];
};
int agent_conn_attach(struct agent_conn *c, uint32_t id, int out_fd, int err_fd, struct agent_attach_result *res,
		      char *err, size_t errlen);
/* Writes len bytes (at most AGENT_MAX_PAYLOAD - 4) to the process's stdin; len 0 closes it. */
int agent_conn_send(struct agent_conn *c, uint32_t id, const void *buf, size_t len, char *err, size_t errlen);
int agent_conn_kill(struct agent_conn *c, uint32_t id, int sig, char *err, size_t errlen);
int agent_conn_resize(struct agent_conn *c, uint32_t id, uint16_t rows, uint16_t cols, char *err, size_t errlen);

/*
 * Watching a directory (protocol version 5; -EOPNOTSUPP on an older agent).  agent_conn_watch
 * sends WATCH for path (with recursive, its subdirectories too) and waits reply_ms for the
 * agent's OK: every change after it returns 0 is reported.  An ERROR answer is -EIO with the
 * agent's message.  From then on the connection carries only the watch's events.
 *
 * agent_conn_watch_read then calls each(arg, event) for every event as it comes, with no
 * deadline; with idle_ms > 0, each(arg, NULL) whenever no event came for idle_ms (a stream's
 * keepalive).  A non-zero return of each ends the call with that code (closing the connection
 * then ends the agent's watch).  The agent's own end of the watch (the directory went away) is
 * -EIO with its message; abort_fd and stop signals end it as every wait.  Each frame is checked
 * whole before any of its events is handed on.
 */
int agent_conn_watch(struct agent_conn *c, const char *path, bool recursive, char *err, size_t errlen);
int agent_conn_watch_read(struct agent_conn *c, int idle_ms, int (*each)(void *arg, const struct agent_wevent *e),
			  void *arg, char *err, size_t errlen);

/* Asks the agent (when it is init) to power the VM off. */
int agent_conn_poweroff(struct agent_conn *c, char *err, size_t errlen);

/*
 * The same calls on a bare fd: the default bounds, no abort fd, a signal fd only for exec, and
 * no deadline for HELLO.  Tests and the fuzzers use these.
 */
int agent_connect(const char *vsock_path, uint32_t port, int timeout_ms, char *err, size_t errlen);
int agent_hello(int fd, struct agent_hello *out, char *err, size_t errlen);
int agent_sync(int fd, char *err, size_t errlen);
int agent_exec(int fd, const struct agent_exec_req *req, int out_fd, int err_fd, int sig_fd,
	       struct agent_exec_result *res, char *err, size_t errlen);
int agent_put_file(int fd, int src_fd, const char *guest_path, unsigned mode, char *err, size_t errlen);
int agent_get_file(int fd, const char *guest_path, int dst_fd, char *err, size_t errlen);
int agent_poweroff(int fd, char *err, size_t errlen);

#endif
