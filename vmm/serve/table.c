/* `padcell serve`'s sandbox table: limits, the create/kill state machine, timeouts, state files, re-adoption. */
#include "vmm/serve/table.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/err.h"

/* A path from parts whose lengths serve_table_init bounded (state_dir) or that are fixed (ids). */
static void __attribute__((format(printf, 3, 4))) pathf(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vsnprintf(out, len, fmt, ap) >= (int)len)
		out[0] = '\0';
	va_end(ap);
}

static void slot_clear(struct serve_sandbox *s)
{
	json_decref(s->metadata);
	json_decref(s->env);
	memset(s, 0, sizeof(*s));
}

static void sandbox_copy(struct serve_sandbox *dst, const struct serve_sandbox *src)
{
	*dst = *src;
	json_incref(dst->metadata);
	json_incref(dst->env);
}

void serve_sandbox_put(struct serve_sandbox *s)
{
	json_decref(s->metadata);
	json_decref(s->env);
	s->metadata = s->env = NULL;
}

static bool id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n != SERVE_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	struct stat st;
	if (lstat(path, &st) || !S_ISDIR(st.st_mode))
		return -ENOTDIR;
	return 0;
}

int serve_table_init(struct serve_table *t, const char *state_dir, const struct serve_limits *lim,
		     const struct serve_template *tmpl, size_t ntmpl, const struct serve_spawner *sp,
		     const struct serve_clock *clk, char *err, size_t errlen)
{
	memset(t, 0, sizeof(*t));
	/* the longest path below it: STATE/run/ID/vsock, a --vsock path */
	if (strlen(state_dir) + strlen("/run/") + SERVE_ID_LEN + strlen("/vsock") > SERVE_VSOCK_MAX)
		return errorf(err, errlen, -ENAMETOOLONG, "--state-dir '%s' is too long: a sandbox's vsock path under it "
			      "must fit in %d bytes (at most %zu for the directory)", state_dir, SERVE_VSOCK_MAX,
			      (size_t)SERVE_VSOCK_MAX - strlen("/run/") - SERVE_ID_LEN - strlen("/vsock"));
	if (lim->max_sandboxes == 0)
		return errorf(err, errlen, -EINVAL, "--max-sandboxes must be at least 1");
	memcpy(t->state_dir, state_dir, strlen(state_dir) + 1);
	char p[PATH_MAX];
	int rc = make_dir(state_dir);
	if (rc)
		return errorf(err, errlen, rc, "cannot make the state directory %s: %s", state_dir, strerror(-rc));
	pathf(p, sizeof(p), "%s/sandboxes", state_dir);
	if ((rc = make_dir(p)))
		return errorf(err, errlen, rc, "cannot make %s: %s", p, strerror(-rc));
	pathf(p, sizeof(p), "%s/run", state_dir);
	if ((rc = make_dir(p)))
		return errorf(err, errlen, rc, "cannot make %s: %s", p, strerror(-rc));
	t->sb = calloc(lim->max_sandboxes, sizeof(*t->sb));
	if (!t->sb)
		return errorf(err, errlen, -ENOMEM, "out of memory");
	t->lim = *lim;
	t->tmpl = tmpl;
	t->ntmpl = ntmpl;
	t->sp = *sp;
	t->clk = *clk;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void serve_table_free(struct serve_table *t)
{
	if (!t->sb)
		return;
	for (unsigned i = 0; i < t->lim.max_sandboxes; i++)
		slot_clear(&t->sb[i]);
	free(t->sb);
	t->sb = NULL;
	pthread_mutex_destroy(&t->lock);
}

void serve_table_templates_grown(struct serve_table *t, size_t ntmpl)
{
	if (ntmpl > t->ntmpl)
		__atomic_store_n(&t->ntmpl, ntmpl, __ATOMIC_RELEASE);
}

const struct serve_template *serve_template_find(const struct serve_table *t, const char *name)
{
	size_t n = __atomic_load_n(&t->ntmpl, __ATOMIC_ACQUIRE);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(t->tmpl[i].name, name))
			return &t->tmpl[i];
	return NULL;
}

/* A sandbox the API can see: running, paused, or being paused or resumed. */
static bool state_listed(enum serve_state st)
{
	return st == SERVE_RUNNING || st == SERVE_PAUSED || st == SERVE_PAUSING || st == SERVE_RESUMING;
}

static struct serve_sandbox *find_live(struct serve_table *t, const char *id)
{
	for (unsigned i = 0; i < t->lim.max_sandboxes; i++)
		if (state_listed(t->sb[i].state) && !strcmp(t->sb[i].id, id))
			return &t->sb[i];
	return NULL;
}

/* The RAM a state holds: a paused sandbox has none (its memory is a file). */
static bool state_has_ram(enum serve_state st)
{
	return st != SERVE_FREE && st != SERVE_PAUSED;
}

static void record_path(const struct serve_table *t, const char *id, char *out, size_t len)
{
	pathf(out, len, "%s/sandboxes/%s.json", t->state_dir, id);
}

static void run_dir(const struct serve_table *t, const char *id, char *out, size_t len)
{
	pathf(out, len, "%s/run/%s", t->state_dir, id);
}

static const char *state_name(enum serve_state st)
{
	switch (st) {
	case SERVE_CREATING:
	case SERVE_FILLING:
	case SERVE_POOLED: return "creating"; /* nobody has its id: a restarted daemon ends it */
	case SERVE_PAUSED: return "paused";
	case SERVE_RESUMING: return "resuming";
	default: return "running"; /* PAUSING: its process still runs until the snapshot is written */
	}
}

json_t *serve_record_json(const struct serve_sandbox *s)
{
	return json_pack("{s:s, s:I, s:I, s:s, s:s, s:f, s:f, s:f, s:I, s:I, s:O, s:O, s:s, s:b, s:s}", "id", s->id,
			 "pid", (json_int_t)s->pid, "startTime", (json_int_t)s->start_time, "template", s->tmpl, "owner", s->owner,
			 "startedAt", s->started_at, "deadline", s->deadline, "remaining", s->remaining,
			 "memBytes", (json_int_t)s->mem_bytes, "cpus", (json_int_t)s->cpus, "metadata", s->metadata,
			 "envVars", s->env, "vsock", s->vsock, "creating", !strcmp(state_name(s->state), "creating"),
			 "state", state_name(s->state));
}

/* The record is written whole under a temporary name, then renamed over the old one. */
static int record_write(const struct serve_table *t, const struct serve_sandbox *s)
{
	json_t *j = serve_record_json(s);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!text)
		return -ENOMEM;
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	record_path(t, s->id, path, sizeof(path));
	pathf(tmp, sizeof(tmp), "%s.tmp", path);
	int rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
	} else {
		size_t len = strlen(text);
		if (write(fd, text, len) != (ssize_t)len || fsync(fd))
			rc = errno ? -errno : -EIO;
		close(fd);
		if (!rc && rename(tmp, path))
			rc = -errno;
		if (rc)
			unlink(tmp);
	}
	free(text);
	return rc;
}

/* A directory's entries and the directory; depth bounds the descent (the run dir holds snap/). */
static void dir_remove(const char *path, int depth)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (unlinkat(dirfd(d), e->d_name, 0) && errno == EISDIR && depth > 0) {
				char sub[PATH_MAX];
				pathf(sub, sizeof(sub), "%s/%s", path, e->d_name);
				if (sub[0])
					dir_remove(sub, depth - 1);
			}
		}
		closedir(d);
	}
	rmdir(path);
}

/* The sandbox's files: its record and its run directory (the monitor's sockets, its log, its snapshot). */
static void files_remove(const struct serve_table *t, const char *id)
{
	char path[PATH_MAX];
	record_path(t, id, path, sizeof(path));
	unlink(path);
	run_dir(t, id, path, sizeof(path));
	dir_remove(path, 1);
}

static void snap_dir(const struct serve_sandbox *s, char *out, size_t len)
{
	pathf(out, len, "%s/snap", s->dir);
}

static int new_id(char *id)
{
	unsigned char r[SERVE_ID_LEN / 2];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -EIO;
	for (size_t i = 0; i < sizeof(r); i++)
		sprintf(id + 2 * i, "%02x", r[i]);
	return 0;
}

/* The spawner's call once the process exists: its record, marked creating, before the long wait. */
static int record_launched(void *arg, const struct serve_sandbox *sb)
{
	return record_write(arg, sb);
}

static bool timeout_ok(long s)
{
	return s >= 1 && s <= SERVE_TIMEOUT_MAX;
}

/*
 * A free slot for a new clone of tp, within the limits, with its id, paths and template's sizes
 * (the lock held): NULL with err set (-EUSERS, -ENOMEM, -EIO) when there is none.
 */
static struct serve_sandbox *slot_reserve(struct serve_table *t, const struct serve_template *tp, int *rc, char *err,
					  size_t errlen)
{
	uint64_t mem = 0;
	struct serve_sandbox *s = NULL;
	for (unsigned i = 0; i < t->lim.max_sandboxes; i++) {
		if (t->sb[i].state == SERVE_FREE) {
			if (!s)
				s = &t->sb[i];
			continue;
		}
		if (state_has_ram(t->sb[i].state))
			mem += t->sb[i].mem_bytes;
	}
	*rc = 0;
	if (!s)
		*rc = errorf(err, errlen, -EUSERS, "the host's limit of %u sandboxes is reached (--max-sandboxes)",
			     t->lim.max_sandboxes);
	else if (t->lim.max_mem && mem + tp->mem_bytes > t->lim.max_mem)
		*rc = errorf(err, errlen, -ENOMEM, "template '%s' needs %llu MiB, and %llu of the host's %llu MiB are in use (--max-mem)",
			     tp->name, (unsigned long long)(tp->mem_bytes >> 20), (unsigned long long)(mem >> 20),
			     (unsigned long long)(t->lim.max_mem >> 20));
	else if (new_id(s->id))
		*rc = errorf(err, errlen, -EIO, "getrandom failed");
	if (*rc) {
		if (s)
			memset(s->id, 0, sizeof(s->id));
		return NULL;
	}
	snprintf(s->tmpl, sizeof(s->tmpl), "%s", tp->name);
	s->mem_bytes = tp->mem_bytes;
	s->cpus = tp->cpus;
	s->metadata = json_object();
	s->env = json_object();
	run_dir(t, s->id, s->dir, sizeof(s->dir));
	pathf(s->vsock, sizeof(s->vsock), "%s/vsock", s->dir);
	return s;
}

/*
 * The end of a start made on a private copy: under the lock, the slot takes the copy back (and *out
 * a copy of it, when given), or is cleared when the start failed (rc != 0); the copy is released.
 */
static void work_settle(struct serve_table *t, struct serve_sandbox *s, struct serve_sandbox *work, int rc,
			struct serve_sandbox *out)
{
	pthread_mutex_lock(&t->lock);
	serve_sandbox_put(s);
	if (rc) {
		slot_clear(s);
	} else {
		sandbox_copy(s, work);
		if (out)
			sandbox_copy(out, work);
	}
	pthread_mutex_unlock(&t->lock);
	serve_sandbox_put(work);
}

/* The sandbox's metadata and env replaced by a create's (borrowed; NULL: empty). */
static void sandbox_set_maps(struct serve_sandbox *s, json_t *metadata, json_t *env)
{
	json_decref(s->metadata);
	json_decref(s->env);
	s->metadata = metadata ? json_incref(metadata) : json_object();
	s->env = env ? json_incref(env) : json_object();
}

/*
 * A create from tp's warm pool: a ready clone's vCPUs let go, the create's timeout, metadata and
 * env applied.  1 taken (*out filled), 0 none ready or the clone failed (it is ended; the caller
 * starts one cold).
 */
static int pool_take(struct serve_table *t, const struct serve_template *tp, const char *owner, long timeout_s,
		     json_t *metadata, json_t *env, struct serve_sandbox *out, char *err, size_t errlen)
{
	pthread_mutex_lock(&t->lock);
	struct serve_sandbox *s = NULL;
	for (unsigned i = 0; !s && i < t->lim.max_sandboxes; i++)
		if (t->sb[i].state == SERVE_POOLED && !strcmp(t->sb[i].tmpl, tp->name))
			s = &t->sb[i];
	struct serve_sandbox work;
	if (s) {
		s->state = SERVE_CREATING;
		sandbox_copy(&work, s);
	}
	pthread_mutex_unlock(&t->lock);
	if (!s)
		return 0;
	char herr[256];
	int rc = t->sp.hold(t->sp.ctx, &work, false, herr, sizeof(herr));
	if (!rc) {
		double now = t->clk.now(t->clk.ctx);
		work.started_at = now;
		work.deadline = now + (double)timeout_s;
		work.state = SERVE_RUNNING;
		snprintf(work.owner, sizeof(work.owner), "%s", owner);
		sandbox_set_maps(&work, metadata, env);
		if ((rc = record_write(t, &work)))
			errorf(err, errlen, rc, "cannot write the sandbox's record in %s/sandboxes: %s", t->state_dir,
			       strerror(-rc));
	}
	if (rc) {
		t->sp.stop(t->sp.ctx, &work);
		files_remove(t, work.id);
	}
	work_settle(t, s, &work, rc, out);
	/* a clone that would not run again is no reason to fail the create: a cold one is started */
	return rc == 0;
}

int serve_create(struct serve_table *t, const char *tmpl_name, long timeout_s, json_t *metadata, json_t *env,
		 struct serve_sandbox *out, char *err, size_t errlen)
{
	return serve_create_owned(t, "", tmpl_name, timeout_s, metadata, env, out, err, errlen);
}

int serve_create_owned(struct serve_table *t, const char *owner, const char *tmpl_name, long timeout_s,
		       json_t *metadata, json_t *env, struct serve_sandbox *out, char *err, size_t errlen)
{
	if (strlen(owner) >= SERVE_NAME_MAX)
		return errorf(err, errlen, -EINVAL, "the key's name is over %d characters", SERVE_NAME_MAX - 1);
	if (!timeout_ok(timeout_s))
		return errorf(err, errlen, -EINVAL, "timeout %ld is out of range: 1 to %d seconds", timeout_s, SERVE_TIMEOUT_MAX);
	const struct serve_template *tp = serve_template_find(t, tmpl_name);
	if (!tp)
		return errorf(err, errlen, -ENOENT, "template '%s' not found", tmpl_name);
	if (pool_take(t, tp, owner, timeout_s, metadata, env, out, err, errlen))
		return 0;
	int rc;
	pthread_mutex_lock(&t->lock);
	struct serve_sandbox *s = slot_reserve(t, tp, &rc, err, errlen);
	if (!s) {
		pthread_mutex_unlock(&t->lock);
		return rc;
	}
	s->state = SERVE_CREATING;
	snprintf(s->owner, sizeof(s->owner), "%s", owner);
	sandbox_set_maps(s, metadata, env);
	/* the spawner works on its own copy, without the lock: a slow start holds up nobody else */
	struct serve_sandbox work;
	sandbox_copy(&work, s);
	pthread_mutex_unlock(&t->lock);

	if (mkdir(work.dir, 0700))
		rc = errorf(err, errlen, -errno, "cannot make %s: %s", work.dir, strerror(errno));
	else
		rc = t->sp.start(t->sp.ctx, tp, &work, record_launched, t, err, errlen);
	if (!rc) {
		double now = t->clk.now(t->clk.ctx);
		work.started_at = now;
		work.deadline = now + (double)timeout_s;
		work.state = SERVE_RUNNING;
		int wrc = record_write(t, &work);
		if (wrc) {
			errorf(err, errlen, wrc, "cannot write the sandbox's record in %s/sandboxes: %s", t->state_dir,
			       strerror(-wrc));
			t->sp.stop(t->sp.ctx, &work);
			rc = wrc;
		}
	}
	if (rc)
		files_remove(t, work.id);
	work_settle(t, s, &work, rc, out);
	return rc;
}

void serve_table_set_pools(struct serve_table *t, const struct serve_pool *pool, size_t npool)
{
	t->pool = pool;
	t->npool = npool;
}

int serve_pool_fill_one(struct serve_table *t, char *err, size_t errlen)
{
	pthread_mutex_lock(&t->lock);
	const struct serve_template *tp = NULL;
	/* a create under way comes first: a refill's restore would compete with it for the host */
	bool creating = false;
	for (unsigned i = 0; i < t->lim.max_sandboxes; i++)
		creating |= t->sb[i].state == SERVE_CREATING;
	for (size_t p = 0; !creating && !tp && p < t->npool; p++) {
		unsigned have = 0;
		for (unsigned i = 0; i < t->lim.max_sandboxes; i++)
			if ((t->sb[i].state == SERVE_POOLED || t->sb[i].state == SERVE_FILLING) &&
			    !strcmp(t->sb[i].tmpl, t->pool[p].tmpl->name))
				have++;
		if (have < t->pool[p].size)
			tp = t->pool[p].tmpl;
	}
	int rc = 0;
	struct serve_sandbox *s = tp ? slot_reserve(t, tp, &rc, err, errlen) : NULL;
	struct serve_sandbox work;
	if (s) {
		s->state = SERVE_FILLING;
		sandbox_copy(&work, s);
	}
	pthread_mutex_unlock(&t->lock);
	if (!s)
		return 0; /* every pool is full, or the limits leave no room: creates come first */

	bool started = false;
	if (mkdir(work.dir, 0700))
		rc = errorf(err, errlen, -errno, "cannot make %s: %s", work.dir, strerror(errno));
	else if (!(rc = t->sp.start(t->sp.ctx, tp, &work, record_launched, t, err, errlen)))
		started = true, rc = t->sp.hold(t->sp.ctx, &work, true, err, errlen);
	if (rc) {
		if (started)
			t->sp.stop(t->sp.ctx, &work);
		files_remove(t, work.id);
	}
	if (!rc)
		work.state = SERVE_POOLED;
	work_settle(t, s, &work, rc, NULL);
	return rc ? rc : 1;
}

unsigned serve_pool_ready(struct serve_table *t, const char *name)
{
	unsigned n = 0;
	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->lim.max_sandboxes; i++)
		if (t->sb[i].state == SERVE_POOLED && !strcmp(t->sb[i].tmpl, name))
			n++;
	pthread_mutex_unlock(&t->lock);
	return n;
}

int serve_get(struct serve_table *t, const char *id, struct serve_sandbox *out)
{
	pthread_mutex_lock(&t->lock);
	struct serve_sandbox *s = find_live(t, id);
	if (s)
		sandbox_copy(out, s);
	pthread_mutex_unlock(&t->lock);
	return s ? 0 : -ENOENT;
}

int serve_get_owned(struct serve_table *t, const char *owner, const char *id, struct serve_sandbox *out)
{
	int rc = serve_get(t, id, out);
	if (rc == 0 && strcmp(out->owner, owner)) {
		serve_sandbox_put(out);
		rc = -ENOENT;
	}
	return rc;
}

int serve_list(struct serve_table *t, struct serve_sandbox **out, size_t *n)
{
	pthread_mutex_lock(&t->lock);
	struct serve_sandbox *a = calloc(t->lim.max_sandboxes, sizeof(*a));
	size_t k = 0;
	for (unsigned i = 0; a && i < t->lim.max_sandboxes; i++)
		if (state_listed(t->sb[i].state))
			sandbox_copy(&a[k++], &t->sb[i]);
	pthread_mutex_unlock(&t->lock);
	if (!a)
		return -ENOMEM;
	*out = a;
	*n = k;
	return 0;
}

/* Ends a sandbox marked STOPPING (the lock not held), then frees its slot. */
static void finish_stop(struct serve_table *t, struct serve_sandbox *s, bool signal_it)
{
	struct serve_sandbox work;
	pthread_mutex_lock(&t->lock);
	sandbox_copy(&work, s);
	pthread_mutex_unlock(&t->lock);
	if (signal_it)
		t->sp.stop(t->sp.ctx, &work);
	files_remove(t, work.id);
	serve_sandbox_put(&work);
	pthread_mutex_lock(&t->lock);
	slot_clear(s);
	pthread_mutex_unlock(&t->lock);
}

unsigned serve_pool_drain(struct serve_table *t)
{
	unsigned n = 0;
	for (unsigned i = 0; i < t->lim.max_sandboxes; i++) {
		struct serve_sandbox *s = &t->sb[i];
		pthread_mutex_lock(&t->lock);
		bool pooled = s->state == SERVE_POOLED;
		if (pooled)
			s->state = SERVE_STOPPING;
		pthread_mutex_unlock(&t->lock);
		if (pooled) {
			finish_stop(t, s, true);
			n++;
		}
	}
	return n;
}

int serve_kill(struct serve_table *t, const char *id)
{
	pthread_mutex_lock(&t->lock);
	struct serve_sandbox *s = find_live(t, id);
	int rc = !s ? -ENOENT : s->state == SERVE_PAUSING || s->state == SERVE_RESUMING ? -EBUSY : 0;
	/* a paused sandbox has no process: its snapshot goes with its files */
	bool signal_it = s && s->state == SERVE_RUNNING;
	if (!rc)
		s->state = SERVE_STOPPING;
	pthread_mutex_unlock(&t->lock);
	if (rc)
		return rc;
	finish_stop(t, s, signal_it);
	return 0;
}

int serve_set_timeout(struct serve_table *t, const char *id, long timeout_s)
{
	if (!timeout_ok(timeout_s))
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	struct serve_sandbox *s = find_live(t, id);
	int rc = -ENOENT;
	if (s && s->state == SERVE_PAUSED) {
		/* a paused sandbox's clock is stopped: the timeout counts from its resume */
		double old = s->remaining;
		s->remaining = (double)timeout_s;
		if ((rc = record_write(t, s)))
			s->remaining = old;
	} else if (s && s->state == SERVE_RUNNING) {
		double old = s->deadline;
		s->deadline = t->clk.now(t->clk.ctx) + (double)timeout_s;
		/* the record keeps the deadline a restarted daemon enforces */
		if ((rc = record_write(t, s)))
			s->deadline = old;
	} else if (s) {
		rc = -EBUSY;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* A live sandbox for a pause or resume, marked busy with state to: 0, or why not (nothing changed). */
static int claim(struct serve_table *t, const char *id, enum serve_state from, enum serve_state to,
		 struct serve_sandbox **out)
{
	struct serve_sandbox *s = find_live(t, id);
	if (!s)
		return -ENOENT;
	if (s->state == SERVE_PAUSING || s->state == SERVE_RESUMING)
		return -EBUSY;
	if (s->state != from)
		return -EALREADY;
	s->state = to;
	*out = s;
	return 0;
}

int serve_pause(struct serve_table *t, const char *id, char *err, size_t errlen)
{
	pthread_mutex_lock(&t->lock);
	struct serve_sandbox *s = NULL;
	int rc = claim(t, id, SERVE_RUNNING, SERVE_PAUSING, &s);
	struct serve_sandbox work;
	if (!rc)
		sandbox_copy(&work, s);
	pthread_mutex_unlock(&t->lock);
	if (rc == -ENOENT)
		return errorf(err, errlen, rc, "sandbox \"%s\" not found", id);
	if (rc == -EALREADY)
		return errorf(err, errlen, rc, "sandbox \"%s\" is already paused", id);
	if (rc)
		return errorf(err, errlen, rc, "sandbox \"%s\" is being paused or resumed", id);

	char snap[PATH_MAX];
	snap_dir(&work, snap, sizeof(snap));
	if ((rc = make_dir(snap)))
		errorf(err, errlen, rc, "cannot make %s: %s", snap, strerror(-rc));
	else
		rc = t->sp.pause(t->sp.ctx, &work, snap, err, errlen);
	if (!rc) {
		/* the timeout's clock stops: what it had left is kept for the resume */
		double left = work.deadline - t->clk.now(t->clk.ctx);
		work.remaining = left > 1.0 ? left : 1.0;
		work.state = SERVE_PAUSED;
		work.pid = 0;
		work.start_time = 0;
		int wrc = record_write(t, &work);
		if (wrc)
			/* the VM is gone and its snapshot is there: kept as paused in memory, said so */
			errorf(err, errlen, 0, "paused, but its record in %s/sandboxes could not be written (%s): a "
			       "restarted daemon will not find it", t->state_dir, strerror(-wrc));
	}
	pthread_mutex_lock(&t->lock);
	if (rc) {
		s->state = SERVE_RUNNING;
	} else {
		serve_sandbox_put(s);
		sandbox_copy(s, &work);
	}
	pthread_mutex_unlock(&t->lock);
	serve_sandbox_put(&work);
	return rc;
}

int serve_resume(struct serve_table *t, const char *id, long timeout_s, struct serve_sandbox *out, char *err,
		 size_t errlen)
{
	if (timeout_s != 0 && !timeout_ok(timeout_s))
		return errorf(err, errlen, -EINVAL, "timeout %ld is out of range: 1 to %d seconds", timeout_s,
			      SERVE_TIMEOUT_MAX);
	pthread_mutex_lock(&t->lock);
	struct serve_sandbox *s = NULL;
	int rc = claim(t, id, SERVE_PAUSED, SERVE_RESUMING, &s);
	if (!rc && t->lim.max_mem) {
		/* its RAM comes back: the same limit as a create */
		uint64_t mem = 0;
		for (unsigned i = 0; i < t->lim.max_sandboxes; i++)
			if (state_has_ram(t->sb[i].state))
				mem += t->sb[i].mem_bytes;
		if (mem > t->lim.max_mem) {
			s->state = SERVE_PAUSED;
			rc = errorf(err, errlen, -ENOMEM, "resuming needs %llu MiB, and %llu of the host's %llu MiB are in "
				    "use (--max-mem)", (unsigned long long)(s->mem_bytes >> 20),
				    (unsigned long long)((mem - s->mem_bytes) >> 20), (unsigned long long)(t->lim.max_mem >> 20));
		}
	}
	struct serve_sandbox work;
	if (!rc)
		sandbox_copy(&work, s);
	pthread_mutex_unlock(&t->lock);
	if (rc == -ENOENT)
		return errorf(err, errlen, rc, "sandbox \"%s\" not found", id);
	if (rc == -EALREADY)
		return errorf(err, errlen, rc, "sandbox \"%s\" is already running", id);
	if (rc == -EBUSY)
		return errorf(err, errlen, rc, "sandbox \"%s\" is being paused or resumed", id);
	if (rc)
		return rc;

	/* the snapshot is restored as a template is: same vsock socket, same API socket */
	struct serve_template from = { .mem_bytes = work.mem_bytes, .cpus = work.cpus, .resume = true };
	snprintf(from.name, sizeof(from.name), "%s", work.tmpl);
	snap_dir(&work, from.dir, sizeof(from.dir));
	rc = t->sp.start(t->sp.ctx, &from, &work, record_launched, t, err, errlen);
	if (!rc) {
		work.deadline = t->clk.now(t->clk.ctx) + (timeout_s > 0 ? (double)timeout_s : work.remaining);
		work.remaining = 0;
		work.state = SERVE_RUNNING;
		int wrc = record_write(t, &work);
		if (wrc) {
			errorf(err, errlen, wrc, "cannot write the sandbox's record in %s/sandboxes: %s", t->state_dir,
			       strerror(-wrc));
			t->sp.stop(t->sp.ctx, &work);
			rc = wrc;
		}
	}
	if (rc) {
		/* still paused: its snapshot is untouched, and its record says so again */
		work.state = SERVE_PAUSED;
		work.pid = 0;
		work.start_time = 0;
		record_write(t, &work);
	}
	pthread_mutex_lock(&t->lock);
	serve_sandbox_put(s);
	sandbox_copy(s, &work);
	if (!rc && out)
		sandbox_copy(out, &work);
	pthread_mutex_unlock(&t->lock);
	serve_sandbox_put(&work);
	return rc;
}

unsigned serve_tick(struct serve_table *t)
{
	unsigned gone = 0;
	for (unsigned i = 0; i < t->lim.max_sandboxes; i++) {
		struct serve_sandbox *s = &t->sb[i];
		pthread_mutex_lock(&t->lock);
		bool expired = false, dead = false;
		if (s->state == SERVE_RUNNING) {
			expired = t->clk.now(t->clk.ctx) >= s->deadline;
			dead = !expired && !t->sp.alive(t->sp.ctx, s);
		} else if (s->state == SERVE_POOLED) {
			dead = !t->sp.alive(t->sp.ctx, s); /* a pool clone has no deadline: it waits for a create */
		}
		if (expired || dead)
			s->state = SERVE_STOPPING;
		pthread_mutex_unlock(&t->lock);
		if (expired || dead) {
			finish_stop(t, s, expired);
			gone++;
		}
	}
	return gone;
}

static bool json_string_object(json_t *o)
{
	if (!json_is_object(o))
		return false;
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
		if (!json_is_string(v))
			return false;
	return true;
}

/* A record read back: everything checked, paths recomputed (never taken from the file). */
static int record_parse(const struct serve_table *t, const char *path, const char *id, struct serve_sandbox *s)
{
	json_error_t je;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return -EINVAL;
	const char *rid = NULL, *tmpl = NULL, *owner = "";
	json_int_t pid = 0, start = 0, mem = 0, cpus = 0;
	double started = 0, deadline = 0;
	json_t *md = NULL, *env = NULL;
	int creating = 0;
	double remaining = 0;
	const char *state = "running";
	int rc = -EINVAL;
	if (json_unpack(j, "{s:s, s:I, s:I, s:s, s:F, s:F, s:I, s:I, s:o, s:o, s?b, s?s, s?F, s?s}", "id", &rid, "pid", &pid,
			"startTime", &start, "template", &tmpl, "startedAt", &started, "deadline", &deadline,
			"memBytes", &mem, "cpus", &cpus, "metadata", &md, "envVars", &env, "creating", &creating,
			"state", &state, "remaining", &remaining, "owner", &owner) != 0) {
		json_decref(j);
		return -EINVAL;
	}
	bool paused = !strcmp(state, "paused"), resuming = !strcmp(state, "resuming");
	if (!paused && !resuming && strcmp(state, "running") && strcmp(state, "creating")) {
		json_decref(j);
		return -EINVAL;
	}
	/* a paused sandbox has no process; any other names one */
	bool proc_ok = paused ? pid == 0 && start == 0 : pid > 1 && pid <= 0x7fffffff && start > 0;
	if (!strcmp(rid, id) && proc_ok && mem >= 0 && cpus >= 0 && remaining >= 0 && remaining <= SERVE_TIMEOUT_MAX &&
	    strlen(tmpl) < SERVE_NAME_MAX && strlen(owner) < SERVE_NAME_MAX && json_string_object(md) &&
	    json_string_object(env)) {
		memset(s, 0, sizeof(*s));
		snprintf(s->id, sizeof(s->id), "%s", id);
		snprintf(s->tmpl, sizeof(s->tmpl), "%s", tmpl);
		snprintf(s->owner, sizeof(s->owner), "%s", owner);
		s->pid = (pid_t)pid;
		s->start_time = (unsigned long long)start;
		s->started_at = started;
		s->deadline = deadline;
		s->mem_bytes = (uint64_t)mem;
		s->cpus = (unsigned)cpus;
		s->metadata = json_incref(md);
		s->env = json_incref(env);
		s->remaining = remaining;
		s->state = paused ? SERVE_PAUSED : resuming ? SERVE_RESUMING : creating ? SERVE_CREATING : SERVE_RUNNING;
		run_dir(t, id, s->dir, sizeof(s->dir));
		pathf(s->vsock, sizeof(s->vsock), "%s/vsock", s->dir);
		rc = 0;
	}
	json_decref(j);
	return rc;
}

int serve_adopt(struct serve_table *t, unsigned *adopted, unsigned *removed, char *err, size_t errlen)
{
	*adopted = *removed = 0;
	char dir[PATH_MAX];
	pathf(dir, sizeof(dir), "%s/sandboxes", t->state_dir);
	DIR *d = opendir(dir);
	if (!d)
		return errorf(err, errlen, -errno, "cannot read %s: %s", dir, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (e->d_name[0] == '.')
			continue;
		char id[SERVE_ID_LEN + 1] = "";
		if (n == SERVE_ID_LEN + 5 && !strcmp(e->d_name + SERVE_ID_LEN, ".json"))
			memcpy(id, e->d_name, SERVE_ID_LEN);
		char path[PATH_MAX];
		pathf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (!id_valid(id)) {
			/* not a record (a temporary file a kill left): nothing of ours to keep */
			unlinkat(dirfd(d), e->d_name, 0);
			continue;
		}
		struct serve_sandbox s;
		int prc = record_parse(t, path, id, &s);
		bool alive = !prc && s.state != SERVE_PAUSED && t->sp.alive(t->sp.ctx, &s);
		bool keep = alive && s.state == SERVE_RUNNING;
		if (!prc && (s.state == SERVE_PAUSED || s.state == SERVE_RESUMING)) {
			/* paused, or a resume the last daemon did not finish (its half-started monitor ended):
			 * kept as paused while its snapshot is there */
			if (alive)
				t->sp.stop(t->sp.ctx, &s);
			alive = false;
			char st[PATH_MAX + 8];
			snap_dir(&s, st, sizeof(st));
			strcat(st, "/state");
			keep = access(st, F_OK) == 0;
			if (keep && s.state == SERVE_RESUMING) {
				s.state = SERVE_PAUSED;
				s.pid = 0;
				s.start_time = 0;
				record_write(t, &s);
			}
		}
		struct serve_sandbox *slot = NULL;
		pthread_mutex_lock(&t->lock);
		for (unsigned i = 0; keep && !slot && i < t->lim.max_sandboxes; i++)
			if (t->sb[i].state == SERVE_FREE)
				slot = &t->sb[i];
		if (slot)
			*slot = s;
		pthread_mutex_unlock(&t->lock);
		if (slot) {
			++*adopted;
			continue;
		}
		/* dead, half-created, or over this daemon's --max-sandboxes: ended, and its files removed */
		if (alive)
			t->sp.stop(t->sp.ctx, &s);
		if (!prc)
			serve_sandbox_put(&s);
		files_remove(t, id);
		++*removed;
	}
	closedir(d);
	return 0;
}
