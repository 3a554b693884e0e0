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
	bool resume;               /* not a template: a paused sandbox's own snapshot (STATE/run/ID/snap) */
};

enum serve_state {
	SERVE_FREE = 0,            /* an unused slot */
	SERVE_CREATING,            /* counted against the limits while its VM starts, not listed */
	SERVE_RUNNING,
	SERVE_STOPPING,            /* being killed: not listed, not killed twice */
	SERVE_PAUSED,              /* its snapshot in dir/snap, no process: listed, not timed, no RAM counted */
	SERVE_PAUSING,             /* its snapshot being written: listed as running, busy (409) */
	SERVE_RESUMING,            /* its snapshot being restored: listed as paused, busy (409) */
	SERVE_FILLING,             /* a warm pool's clone being started: counted, not listed */
	SERVE_POOLED,              /* a warm pool's clone, ready, its vCPUs paused: counted, not listed */
};

struct serve_sandbox {
	enum serve_state state;
	char id[SERVE_ID_LEN + 1];
	char tmpl[SERVE_NAME_MAX];
	char owner[SERVE_NAME_MAX]; /* the name of the API key that created it ("" with one key): only that key sees it */
	pid_t pid;
	unsigned long long start_time; /* the process's, from /proc (with pid: one process for good) */
	double started_at;         /* the clock's seconds (epoch) when created */
	double deadline;           /* the clock's seconds at which the sandbox is ended */
	double remaining;          /* paused: the seconds its timeout had left (paused time does not count) */
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
	/* Pauses sb's VM, writes its snapshot to snapdir/state + snapdir/mem through its API socket
	 * (sb->dir/api), then ends its process.  0, or -errno with err set (the VM then runs on). */
	int (*pause)(void *ctx, const struct serve_sandbox *sb, const char *snapdir, char *err, size_t errlen);
	/* A warm pool's clone: its vCPUs paused (held) or running again, through its API socket.  0, or -errno. */
	int (*hold)(void *ctx, const struct serve_sandbox *sb, bool paused, char *err, size_t errlen);
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

/* --pool TEMPLATE=N: N clones of a template kept restored, their vCPUs paused, for the next creates. */
struct serve_pool {
	const struct serve_template *tmpl;
	unsigned size;
};

struct envd_watchers;
struct serve_table {
	pthread_mutex_t lock;      /* every call below takes it; the spawner runs without it */
	char state_dir[128];       /* holds sandboxes/ID.json and run/ID/ (short: vsock paths are under it) */
	struct serve_limits lim;
	const struct serve_template *tmpl;
	size_t ntmpl;
	struct serve_sandbox *sb;  /* max_sandboxes slots */
	struct serve_spawner sp;
	struct serve_clock clk;
	const struct serve_pool *pool; /* serve_table_set_pools; none by default */
	size_t npool;
	struct envd_watchers *watchers; /* envd's CreateWatcher watchers (vmm/serve/envd.c): made on first use,
					   ended by envd_watchers_end before serve_table_free */
};

/* Makes state_dir's sandboxes/ and run/ (0700); refuses a state dir too long for a vsock path. */
int serve_table_init(struct serve_table *t, const char *state_dir, const struct serve_limits *lim,
		     const struct serve_template *tmpl, size_t ntmpl, const struct serve_spawner *sp,
		     const struct serve_clock *clk, char *err, size_t errlen);
void serve_table_free(struct serve_table *t);

/* The warm pools (pool must outlive t); a pool's template must be one of t's. */
void serve_table_set_pools(struct serve_table *t, const struct serve_pool *pool, size_t npool);

/*
 * Starts at most one pool clone where a pool is short and the limits leave room (pool members
 * count against --max-sandboxes and --max-mem), then holds its vCPUs.  1 when one was added, 0
 * when no pool needs one, the limits are reached or a create is under way (it comes first),
 * -errno with err set when the start failed.
 * Runs without the table's lock during the start, like a create.
 */
int serve_pool_fill_one(struct serve_table *t, char *err, size_t errlen);

/* Ends every ready pool clone and removes its files (the daemon's shutdown): how many. */
unsigned serve_pool_drain(struct serve_table *t);

/* How many clones of template name are ready in its pool. */
unsigned serve_pool_ready(struct serve_table *t, const char *name);

/*
 * The caller's template array (t's tmpl, which it owns) now has ntmpl entries: the ones past the
 * old count, written before this call, are seen by every create from now on.  Templates are only
 * added while requests run (never changed or removed: sandboxes and pools point to them).
 */
void serve_table_templates_grown(struct serve_table *t, size_t ntmpl);

/* One template by name, or NULL. */
const struct serve_template *serve_template_find(const struct serve_table *t, const char *name);

/*
 * A new sandbox of template tmpl_name ending timeout_s seconds from now (a ready clone of its
 * warm pool when there is one, its vCPUs let go: no start; else a clone started now), metadata and env (objects
 * of strings, or NULL; borrowed) kept with it.  Its copy (caller frees the metadata/env refs with
 * serve_sandbox_put) in *out.  -ENOENT unknown template, -EUSERS over max sandboxes, -ENOMEM over
 * max memory (err says which), -EINVAL a bad timeout, or the spawner's error.
 */
int serve_create(struct serve_table *t, const char *tmpl_name, long timeout_s, json_t *metadata, json_t *env,
		 struct serve_sandbox *out, char *err, size_t errlen);
/* The same for the API key named owner (per-key scoping): the sandbox is that key's alone. */
int serve_create_owned(struct serve_table *t, const char *owner, const char *tmpl_name, long timeout_s,
		       json_t *metadata, json_t *env, struct serve_sandbox *out, char *err, size_t errlen);

/* A copy of sandbox id (-ENOENT when there is none running or paused); release with serve_sandbox_put. */
int serve_get(struct serve_table *t, const char *id, struct serve_sandbox *out);
/* serve_get of a sandbox of owner's: another key's is -ENOENT, as a missing one (nothing of it is told). */
int serve_get_owned(struct serve_table *t, const char *owner, const char *id, struct serve_sandbox *out);
void serve_sandbox_put(struct serve_sandbox *s);

/* Copies of the running and paused sandboxes (states as the API shows them) (a malloc'd array, each released with serve_sandbox_put). */
int serve_list(struct serve_table *t, struct serve_sandbox **out, size_t *n);

/* Ends sandbox id and removes its files: 0, or -ENOENT. */
int serve_kill(struct serve_table *t, const char *id);

/* The sandbox now ends timeout_s seconds from now (E2B's setTimeout): 0, -ENOENT or -EINVAL. */
int serve_set_timeout(struct serve_table *t, const char *id, long timeout_s);

/*
 * E2B's pause: the sandbox's snapshot written to STATE/run/ID/snap, its monitor ended (a paused
 * sandbox keeps its memory file, not its RAM), the record marked paused.  0, -ENOENT, -EALREADY
 * (paused already), -EBUSY (being paused or resumed), or the spawner's error (it runs on).
 */
int serve_pause(struct serve_table *t, const char *id, char *err, size_t errlen);

/*
 * E2B's resume: a paused sandbox restored from its snapshot with the same vsock socket; its
 * deadline is what its timeout had left when paused, or timeout_s from now when timeout_s > 0.
 * 0, -ENOENT, -EALREADY (running), -EBUSY, -ENOMEM (over --max-mem), -EINVAL or the spawner's
 * error (it stays paused).  A copy in *out (release with serve_sandbox_put) when out is not NULL.
 */
int serve_resume(struct serve_table *t, const char *id, long timeout_s, struct serve_sandbox *out, char *err,
		 size_t errlen);

/* Ends every sandbox past its deadline and forgets those whose process died: how many went. */
unsigned serve_tick(struct serve_table *t);

/*
 * Reads state_dir/sandboxes/: a record whose process is alive (same pid and start time) is
 * adopted as running, any other (dead, reused pid, unreadable) is removed with its directory, and
 * one still marked creating (a daemon ended during its start: nobody got its id) is ended too; a
 * paused record is adopted as paused when its snapshot's state file is there.  *adopted and *removed say how many.
 */
int serve_adopt(struct serve_table *t, unsigned *adopted, unsigned *removed, char *err, size_t errlen);

/* The sandbox's record as JSON (what its state file holds). */
json_t *serve_record_json(const struct serve_sandbox *s);

#endif
