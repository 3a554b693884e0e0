/*
 * The control socket (`--api-sock PATH`): Firecracker's HTTP/JSON API over a Unix stream socket,
 * for what pause and snapshot need.  Routes:
 *   GET  /                 200 {"id", "state": "Running"|"Paused", "vmm_version", "app_name": "padcell"}
 *   PATCH /vm              {"state": "Paused"|"Resumed"} -> 204
 *   PUT  /snapshot/create  {"snapshot_type": "Full", "snapshot_path", "mem_file_path"} -> 204
 *   PATCH /drives/{id}     {"drive_id"?, "rate_limiter"} -> 204
 *   PATCH /network-interfaces/{id}  {"iface_id"?, "rx_rate_limiter"?, "tx_rate_limiter"?} -> 204
 *   PUT  /network/policy   {"allow": [RULE...], "open"?: bool} -> 204: the NIC's egress rules
 *                          replaced, all or nothing (RULE as --allow; "open" as --allow-internet)
 *   GET  /network/policy   200 {"allow": [...], "open", "changes", "counters": {"allowed",
 *                          "rejected", "dropped", "resolved", "nxdomain", "servfail"}}
 * A rate limiter is Firecracker's {"bandwidth"?: BUCKET, "ops"?: BUCKET}, BUCKET {"size",
 * "one_time_burst"?, "refill_time" (ms)}: a bucket given replaces that bucket (size 0: no limit),
 * one left out stays as it is.
 * Errors are {"fault_message": "..."} with 400 (bad request, or the VM in the wrong state) or 500
 * (the host failed).  The server never blocks and has no thread: the monitor's event loop watches
 * api_server_fd() and calls api_server_service() when it is readable.
 */
#ifndef PADCELL_API_H
#define PADCELL_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/ratelimit.h"
#include "vmm/net/policy.h"

#define API_MAX_CLIENTS 8    /* connections served at once; a ninth evicts the least recently active */
#define API_PATH_MAX    107  /* sun_path less its terminating NUL */

/*
 * What the API acts on.  Each call returns 0 or -errno with err set to one line for the
 * client's fault_message.  snapshot is only called while is_paused() says true.
 */
struct api_ops {
	void *ctx;
	int (*pause)(void *ctx, char *err, size_t errlen);
	int (*resume)(void *ctx, char *err, size_t errlen);
	bool (*is_paused)(void *ctx);
	int (*snapshot)(void *ctx, const char *state_path, const char *mem_path, char *err, size_t errlen);
	/*
	 * Changes the rate limiters of the resource cls ("drive" or "net") named id: p[0..np-1] (a
	 * drive: one; a NIC: rx, tx).  -ENOENT (err set) when there is no such resource.
	 */
	int (*set_rate)(void *ctx, const char *cls, const char *id, const struct ratelimit_patch *p, unsigned np,
			char *err, size_t errlen);
	/*
	 * Replaces the NIC's egress rules (as --allow values) and open mode, or changes nothing
	 * (-EINVAL, err naming the bad rule).  -ENOENT (err set) when the VM has no NIC.
	 */
	int (*set_policy)(void *ctx, const char *const *rules, size_t n, bool open, char *err, size_t errlen);
	/* The rules in force and the decision counts; the API policy_view_free()s v.  -ENOENT: no NIC. */
	int (*get_policy)(void *ctx, struct policy_view *v, char *err, size_t errlen);
};

struct api_config {
	const char *id;          /* the instance id GET / reports */
	const char *vmm_version; /* padcell's version */
	struct api_ops ops;
};

/*
 * Creates the listening socket at path, mode 0600.  A stale socket file (nobody accepts on it)
 * is replaced; a live socket, or any other kind of file, is refused.  Returns the fd
 * (non-blocking, close-on-exec) or -errno with err set ("in use by another process", ...).
 */
int api_listen(const char *path, char *err, size_t errlen);

struct api_server;

/*
 * Serves on listen_fd (from api_listen, now owned by the server).  path, when not NULL, is
 * unlinked by api_server_destroy().  NULL with err set on failure (listen_fd is then closed).
 */
struct api_server *api_server_new(int listen_fd, const char *path, const struct api_config *cfg, char *err,
				  size_t errlen);
/* Closes every connection and the listening socket, and unlinks the socket file. */
void api_server_destroy(struct api_server *s);

/* One fd that is readable whenever the server has work (an epoll set of its sockets). */
int api_server_fd(const struct api_server *s);
/* Accepts, reads, answers and writes whatever is ready, without blocking. */
void api_server_service(struct api_server *s);

/* How many connections are open (for tests). */
unsigned api_server_clients(const struct api_server *s);
/* How many times the listening socket woke the server (for tests: out of descriptors must not spin). */
uint64_t api_server_accept_wakeups(const struct api_server *s);

/*
 * The server for a VM (vmm/api/api_vm.c): its pause, resume and snapshot, instance id "padcell-<pid>".
 * As api_server_new otherwise.
 */
struct vm;
struct api_server *api_vm_serve(struct vm *vm, int listen_fd, const char *path, const char *version, char *err,
				size_t errlen);

/*
 * The routing and JSON half, apart from sockets: answers one request.  Writes the status into
 * *status and a JSON body (or "" for none) into body.  Exposed for unit tests.
 */
void api_handle(const struct api_config *cfg, const char *method, const char *path, const char *req_body,
		size_t req_len, int *status, char *body, size_t bodylen);

#endif
