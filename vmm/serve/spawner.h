/*
 * `padcell serve`'s privilege separation: a small spawner process, forked before the daemon
 * confines itself, keeps what starting and ending monitors needs (exec of `padcell restore`,
 * signals, reaping, the privileges the monitors start with).  The confined HTTP daemon asks it
 * over a socketpair, one fixed-size request per message; the spawner checks each one and computes
 * every path itself from its state directory, the sandbox's id and its own template list.
 */
#ifndef PADCELL_SERVE_SPAWNER_H
#define PADCELL_SERVE_SPAWNER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/serve/table.h"

#define SPAWNER_MAGIC 0x70647370u /* "psdp" */

enum spawner_op {
	SPAWNER_START = 1, /* a monitor for id: `padcell restore` of template tmpl, or of run/ID/snap (resume) */
	SPAWNER_STOP,      /* SIGTERM, SIGKILL after 10 s, to a sandbox monitor of this state dir (pid + start time) */
	SPAWNER_ALIVE,     /* whether pid is alive and started at start_time */
};

/* One request, the whole message; strings NUL-terminated within their fields. */
struct spawner_req {
	uint32_t magic;
	uint32_t op;
	uint32_t tag;        /* echoed in the reply: the daemon's threads share the channel */
	uint32_t resume;     /* START: 1 from STATE/run/ID/snap, 0 from template tmpl */
	int32_t pid;         /* STOP, ALIVE */
	uint32_t pad;
	uint64_t start_time; /* STOP, ALIVE */
	char id[SERVE_ID_LEN + 1];
	char tmpl[SERVE_NAME_MAX];
};

struct spawner_rep {
	uint32_t magic;
	uint32_t tag;
	int32_t rc;          /* 0 or -errno; ALIVE: 1 alive, 0 not */
	int32_t pid;         /* START: the monitor's (its pidfd rides along as SCM_RIGHTS) */
	uint64_t start_time;
	char err[256];
};

/* What the spawner serves: the state dir, the templates by name, the padcell it executes. */
struct spawner_conf {
	const char *state_dir;
	struct serve_template *tmpl; /* the spawner's own copy grows when it scans templates_dir again */
	size_t ntmpl, max;
	const char *templates_dir;   /* NULL: none; else scanned again for a START of a name not known yet */
	const char *padcell;
	bool verbose;        /* the monitors' output on the daemon's stderr, not their log */
};

/*
 * A received message of len bytes checked as a request: the exact size, the magic, a known op,
 * an id of 20 lowercase hex digits and a known template for START (unless resume), a pid above 1
 * and a start time for STOP and ALIVE.  0 (the request copied to *out), -ENOENT (err set) for an
 * unknown template, or -EINVAL with err set.
 */
int spawner_req_check(const struct spawner_conf *c, const void *msg, size_t len, struct spawner_req *out, char *err,
		      size_t errlen);

/*
 * Forks the spawner; it serves fd's other end until the daemon closes it (or exits), then exits,
 * leaving the monitors running.  Call while single-threaded.  The daemon's end in *fd and the
 * spawner's pid in *pid: 0, or -errno with err set.
 */
int spawner_fork(struct spawner_conf *c, int *fd, pid_t *pid, char *err, size_t errlen);

/*
 * The fork both spawners (this one and `padcell mcp`'s) start with: a SOCK_SEQPACKET socketpair,
 * the child with its end as fd 3 and nothing else but stdio, named padcell-spawner, no new
 * privileges, no core file, SIGKILL when its server ends.  0 in the server (*fd its end, *pid the
 * child), 1 in the child (*fd 3), -errno with err set.
 */
int spawner_fork_child(int *fd, pid_t *pid, char *err, size_t errlen);

/* The daemon's side: requests from any thread, each waiting (bounded) for its own reply. */
struct spawner_waiter;
struct spawner_client {
	int fd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t next_tag;
	bool reading;        /* a thread is receiving replies for everyone */
	bool dead;           /* the spawner is gone: every call fails */
	struct spawner_waiter *waiters;
};
void spawner_client_init(struct spawner_client *c, int fd);
/* START: 0 with *pid, *start_time and *pidfd (the caller's to close), or -errno with err set. */
int spawner_start(struct spawner_client *c, const char *id, const char *tmpl, bool resume, pid_t *pid,
		  unsigned long long *start_time, int *pidfd, char *err, size_t errlen);
/* STOP: returns once the process is gone (or was not that one). */
void spawner_stop(struct spawner_client *c, pid_t pid, unsigned long long start_time);
bool spawner_alive(struct spawner_client *c, pid_t pid, unsigned long long start_time);

#endif
