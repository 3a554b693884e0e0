/*
 * `padcell mcp`: a Model Context Protocol server over stdio (JSON-RPC 2.0, one JSON message per
 * line).  This layer parses and answers messages and knows nothing of VMs: the tools run through
 * a backend (struct mcp_backend), the real one a sandbox VM (vmm/mcp/sandbox.c), a test's a fake.
 */
#ifndef PADCELL_MCP_H
#define PADCELL_MCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MCP_LINE_MAX   (4u << 20)  /* one request line, newline excluded */
#define MCP_OUTPUT_MAX (1u << 20)  /* stdout or stderr of one command, a file read: kept in a result */
#define MCP_TIMEOUT_MAX (24u * 3600u) /* run_command's timeout, in seconds */
#define MCP_TIMEOUT_DEFAULT 300u

/* JSON-RPC 2.0 error codes. */
#define MCP_PARSE_ERROR      -32700
#define MCP_INVALID_REQUEST  -32600
#define MCP_METHOD_NOT_FOUND -32601
#define MCP_INVALID_PARAMS   -32602
#define MCP_INTERNAL_ERROR   -32603

/* A command's output, captured with a bound. */
struct mcp_output {
	char *data;     /* malloc'd, NUL-terminated; may hold bytes that are not UTF-8 */
	size_t len;
	bool truncated; /* more came than MCP_OUTPUT_MAX */
};

struct mcp_run_req {
	char *const *argv;
	char *const *env;    /* NAME=VALUE, NULL-terminated */
	const char *cwd;     /* NULL: / */
	unsigned timeout_s;
};

struct mcp_run_res {
	struct mcp_output out, err;
	int exit_code;  /* the command's, or 128+N when signal N killed it */
	bool timed_out; /* the timeout fired; its process group was killed */
};

struct mcp_entry {
	char type;        /* '-' file, 'd' directory, 'l' link, 'c', 'b', 'p', 's' */
	unsigned mode;    /* permissions, 07777 */
	uint64_t size;
	int64_t mtime_s;
	char name[256];
};

/*
 * What the tools run on.  Each returns 0, or -errno with err set to one line (the tool's failure,
 * reported as an isError result).  list fills a malloc'd array.
 */
struct mcp_backend {
	void *ctx;
	int (*run)(void *ctx, const struct mcp_run_req *req, struct mcp_run_res *res, char *err, size_t errlen);
	int (*read_file)(void *ctx, const char *path, struct mcp_output *out, char *err, size_t errlen);
	int (*write_file)(void *ctx, const char *path, const void *data, size_t len, char *err, size_t errlen);
	int (*list)(void *ctx, const char *path, struct mcp_entry **entries, size_t *n, char *err, size_t errlen);
	int stop_signo; /* set by the backend when a stop signal ended one of its waits: the service ends */
};

struct mcp {
	struct mcp_backend *backend;
	bool initialized;        /* initialize answered */
	char version[16];        /* the protocol version agreed on */
	const char *server_version;
};

void mcp_init(struct mcp *m, struct mcp_backend *b, const char *server_version);

/*
 * Handles one message (a line without its newline, len bytes).  Returns the answer as a
 * malloc'd JSON text without newline, or NULL when none is due (a notification, a response).
 */
char *mcp_handle(struct mcp *m, const char *line, size_t len);

/*
 * Serves in_fd until its end: each line answered on out_fd.  A line over MCP_LINE_MAX gets an
 * Invalid Request error and is skipped to its end.  A stop signal on sig_fd (-1: none) ends the
 * service: returns 0 at the end of input, -EINTR with *signo set after a signal, -errno when
 * reading or writing failed.
 */
int mcp_serve(struct mcp *m, int in_fd, int out_fd, int sig_fd, int *signo);

void mcp_output_free(struct mcp_output *o);

#endif
