/*
 * `padcell serve`'s sandbox table: the sandboxes of one host, their limits, timeouts and state
 * files.  The table never starts a VM itself: it calls a spawner (the real one runs a child
 * `padcell restore`, tests pass a fake), and it never reads the clock itself (tests inject one).
 */
#ifndef PADCELL_SERVE_TABLE_H
#define PADCELL_SERVE_TABLE_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SERVE_ID_LEN       20    /* "i" + 19 lowercase hex/alnum characters */
#define SERVE_NAME_MAX     64    /* a template's name */
#define SERVE_TIMEOUT_MAX  86400 /* seconds: a day, E2B's own upper bound */
#define SERVE_VSOCK_MAX    96    /* the monitor's bound on a --vsock path (VSOCK_PATH_MAX) */

struct serve_template {
	char name[SERVE_NAME_MAX];
	char dir[PATH_MAX];        /* the snapshot: dir/state + dir/mem */
	uint64_t mem_bytes;        /* its guest RAM, from the state file's header */
	unsigned cpus;
};

enum serve_state {
	SERVE_FREE = 0,            /* an unused slot */
	SERVE_CREATING,            /* counted against the limits while its VM starts, not listed */
	SERVE_RUNNING,
	SERVE_STOPPING,            /* being killed: not listed, not killed twice */
};

struct serve_sandbox {
	enum serve_state state;
	char id[SERVE_ID_LEN + 1];
	char tmpl[SERVE_NAME_MAX];
	pid_t pid;
	unsigned long long start_time; /* the process's, from /proc (with pid: one process for good) */
	double started_at;         /* the clock's seconds (epoch) when created */
	double deadline;           /* the clock's seconds at which the sandbox is ended */
	uint64_t mem_bytes;
	unsigned cpus;
	json_t *metadata;          /* object of strings (owned), never NULL once created */
	json_t *env;               /* envVars: applied by envd (vmm/serve/envd.c) to every command */
	char dir[128];             /* the sandbox's private directory (STATE/run/ID): its vsock socket and log */
	char vsock[SERVE_VSOCK_MAX + 1];
};

struct serve_spawner {
	void *ctx;
	/* Starts sb (sb->dir exists, sb->vsock is named) from t: sets sb->pid and sb->start_time,
	 * calls launched(arg, sb) as soon as they are known (the table records the process, so a
	 * daemon killed during the wait leaves no unrecorded VM; its error fails the start), then
	 * returns once the agent answers.  0, or -errno with err set; nothing is left running on failure. */
	int (*start)(void *ctx, const struct serve_template *t, struct serve_sandbox *sb,
		     int (*launched)(void *arg, const struct serve_sandbox *sb), void *arg, char *err, size_t errlen);
	/* Ends sb's process if it is still the one (pid and start time). */
	void (*stop)(void *ctx, const struct serve_sandbox *sb);
	/* Whether sb's process is alive (same pid and start time). */
	bool (*alive)(void *ctx, const struct serve_sandbox *sb);
};

struct serve_clock {
	void *ctx;
	double (*now)(void *ctx);  /* seconds since the epoch (deadlines outlive the daemon) */
};

struct serve_limits {
	unsigned max_sandboxes;
	uint64_t max_mem;          /* bytes: the sum of the sandboxes' guest RAM */
};

struct serve_table {
	pthread_mutex_t lock;      /* every call below takes it; the spawner runs without it */
	char state_dir[128];       /* holds sandboxes/ID.json and run/ID/ (short: vsock paths are under it) */
	struct serve_limits lim;
	const struct serve_template *tmpl;
	size_t ntmpl;
	struct serve_sandbox *sb;  /* max_sandboxes slots */
	struct serve_spawner sp;
	struct serve_clock clk;
};

/* Makes state_dir's sandboxes/ and run/ (0700); refuses a state dir too long for a vsock path. */
int serve_table_init(struct serve_table *t, const char *state_dir, const struct serve_limits *lim,
		     const struct serve_template *tmpl, size_t ntmpl, const struct serve_spawner *sp,
		     const struct serve_clock *clk, char *err, size_t errlen);
void serve_table_free(struct serve_table *t);

/* One template by name, or NULL. */
const struct serve_template *serve_template_find(const struct serve_table *t, const char *name);

/*
 * A new sandbox of template tmpl_name ending timeout_s seconds from now, metadata and env (objects
 * of strings, or NULL; borrowed) kept with it.  Its copy (caller frees the metadata/env refs with
 * serve_sandbox_put) in *out.  -ENOENT unknown template, -EUSERS over max sandboxes, -ENOMEM over
 * max memory (err says which), -EINVAL a bad timeout, or the spawner's error.
 */
int serve_create(struct serve_table *t, const char *tmpl_name, long timeout_s, json_t *metadata, json_t *env,
		 struct serve_sandbox *out, char *err, size_t errlen);

/* A copy of sandbox id (-ENOENT when there is none running); release with serve_sandbox_put. */
int serve_get(struct serve_table *t, const char *id, struct serve_sandbox *out);
void serve_sandbox_put(struct serve_sandbox *s);

/* Copies of the running sandboxes (a malloc'd array, each released with serve_sandbox_put). */
int serve_list(struct serve_table *t, struct serve_sandbox **out, size_t *n);

/* Ends sandbox id and removes its files: 0, or -ENOENT. */
int serve_kill(struct serve_table *t, const char *id);

/* The sandbox now ends timeout_s seconds from now (E2B's setTimeout): 0, -ENOENT or -EINVAL. */
int serve_set_timeout(struct serve_table *t, const char *id, long timeout_s);

/* Ends every sandbox past its deadline and forgets those whose process died: how many went. */
unsigned serve_tick(struct serve_table *t);

/*
 * Reads state_dir/sandboxes/: a record whose process is alive (same pid and start time) is
 * adopted as running, any other (dead, reused pid, unreadable) is removed with its directory, and
 * one still marked creating (a daemon ended during its start: nobody got its id) is ended too.  *adopted and *removed say how many.
 */
int serve_adopt(struct serve_table *t, unsigned *adopted, unsigned *removed, char *err, size_t errlen);

/* The sandbox's record as JSON (what its state file holds). */
json_t *serve_record_json(const struct serve_sandbox *s);

#endif
