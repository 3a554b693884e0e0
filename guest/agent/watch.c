/* The agent's directory watch: inotify events as WEVENTS frames, bounded (guest/agent/proto.h, version 5). */
#include "guest/agent/watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/agent/proto.h"

#define WATCH_MASK (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | \
		    IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
#define LOST_LEN   (AGENT_WEVENT_FIXED + 8u) /* the LOST event: room for it is always kept in the queue */

/* One watched directory: its watch descriptor and its name relative to the root ("" for the root). */
struct wdir {
	int wd;
	char *rel;
};

struct watch {
	int conn, ino;
	bool recursive;
	bool ending;                 /* the root went away: send what is queued, then the final ERROR */
	char root[AGENT_MAX_PATH];
	struct wdir dirs[AGENT_WATCH_MAX_DIRS];
	size_t ndirs;
	uint8_t queue[AGENT_WATCH_QUEUE + LOST_LEN]; /* encoded events the host has not been sent yet */
	size_t qlen;
	uint64_t lost;               /* events dropped since the last LOST event went into the queue */
	uint8_t out[AGENT_HDR_LEN + AGENT_MAX_PAYLOAD]; /* the frame being sent, from out_off */
	size_t out_len, out_off;
};

static void watch_error(int conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void watch_error(int conn, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	uint32_t n = agent_error_text(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	agent_write_frame(conn, AGENT_ERROR, msg, n);
}

static void queue_put(struct watch *w, const struct agent_wevent *e)
{
	/* at the queue's end (encode's bound is one frame's payload): the caller made room, and e is
	 * well formed, so it cannot fail */
	size_t off = 0;
	agent_wevent_encode(w->queue + w->qlen, sizeof(w->queue) - w->qlen, &off, e);
	w->qlen += off;
}

/*
 * Queues one event.  A full queue drops it and counts it; the next event that fits is preceded by
 * one LOST event with the count, so the host learns where the gap is.
 */
static void watch_push(struct watch *w, uint16_t kind, const char *name)
{
	size_t n = name ? strlen(name) : 0;
	size_t need = AGENT_WEVENT_FIXED + n + (w->lost ? LOST_LEN : 0);
	if (n >= AGENT_MAX_PATH || w->qlen + need > AGENT_WATCH_QUEUE) {
		w->lost++;
		return;
	}
	if (w->lost) {
		struct agent_wevent l = {.kind = AGENT_WEV_LOST, .lost = w->lost};
		queue_put(w, &l);
		w->lost = 0;
	}
	struct agent_wevent e = {.kind = kind};
	memcpy(e.name, name ? name : "", n + 1);
	queue_put(w, &e);
}

/* rel/name (or name at the root) into out: false when it would be too long for an event. */
static bool join_rel(char *out, const char *rel, const char *name)
{
	int n = snprintf(out, AGENT_MAX_PATH, "%s%s%s", rel, rel[0] ? "/" : "", name);
	return n > 0 && n < (int)AGENT_MAX_PATH;
}

/* The root's path joined with rel: false when too long. */
static bool join_abs(const struct watch *w, char *out, const char *rel)
{
	int n = snprintf(out, AGENT_MAX_PATH, "%s%s%s", w->root, rel[0] ? "/" : "", rel);
	return n > 0 && n < (int)AGENT_MAX_PATH;
}

static struct wdir *dir_find(struct watch *w, int wd)
{
	for (size_t i = 0; i < w->ndirs; i++)
		if (w->dirs[i].wd == wd)
			return &w->dirs[i];
	return NULL;
}

/*
 * Watches directory rel: 0, 1 when there is nothing to watch (it went away, or it is one already
 * watched: a bind mount seen twice), -ENOSPC past AGENT_WATCH_MAX_DIRS, -ENAMETOOLONG, -errno.
 */
static int dir_add(struct watch *w, const char *rel)
{
	char abs[AGENT_MAX_PATH];
	if (!join_abs(w, abs, rel))
		return -ENAMETOOLONG;
	if (w->ndirs == AGENT_WATCH_MAX_DIRS)
		return -ENOSPC;
	/* the root may be reached through a link; below it, links are never followed */
	int wd = inotify_add_watch(w->ino, abs, WATCH_MASK | (rel[0] ? IN_DONT_FOLLOW : 0));
	if (wd < 0)
		return errno == ENOENT || errno == ENOTDIR ? 1 : -errno;
	if (dir_find(w, wd))
		return 1;
	char *copy = strdup(rel);
	if (!copy) {
		inotify_rm_watch(w->ino, wd);
		return -ENOMEM;
	}
	w->dirs[w->ndirs++] = (struct wdir){.wd = wd, .rel = copy};
	return 0;
}

/* Forgets directory rel and every one below it (moved away or removed), their watches removed. */
static void dir_drop_tree(struct watch *w, const char *rel)
{
	size_t n = strlen(rel);
	for (size_t i = 0; i < w->ndirs;) {
		const char *r = w->dirs[i].rel;
		if (r[0] && !strncmp(r, rel, n) && (r[n] == '\0' || r[n] == '/')) {
			inotify_rm_watch(w->ino, w->dirs[i].wd);
			free(w->dirs[i].rel);
			w->dirs[i] = w->dirs[--w->ndirs];
		} else {
			i++;
		}
	}
}

/*
 * Walks the watched directories from index `from` on, adding each subdirectory found (so the
 * table is the walk's queue).  With report, what is found is queued as CREATE, and a directory
 * that cannot be watched as UNWATCHED; without (the first walk), running out of watches is
 * -ENOSPC.  0 or -errno.
 */
static int dir_walk(struct watch *w, size_t from, bool report)
{
	for (size_t i = from; i < w->ndirs; i++) {
		char abs[AGENT_MAX_PATH], rel[AGENT_MAX_PATH];
		if (!join_abs(w, abs, w->dirs[i].rel))
			continue;
		int dfd = open(abs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		if (!d) {
			if (dfd >= 0)
				close(dfd);
			continue; /* gone since: its parent's event says so */
		}
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (!join_rel(rel, w->dirs[i].rel, de->d_name)) {
				w->lost += report;
				continue;
			}
			if (report)
				watch_push(w, AGENT_WEV_CREATE, rel);
			bool dir = de->d_type == DT_DIR;
			struct stat st;
			if (de->d_type == DT_UNKNOWN)
				dir = fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
			if (!dir)
				continue;
			int rc = dir_add(w, rel);
			if (rc == -ENOSPC && !report) {
				closedir(d);
				return rc;
			}
			if (rc < 0 && report)
				watch_push(w, AGENT_WEV_UNWATCHED, rel);
		}
		closedir(d);
	}
	return 0;
}

static void watch_inotify_event(struct watch *w, const struct inotify_event *ev)
{
	if (ev->mask & IN_Q_OVERFLOW) {
		watch_push(w, AGENT_WEV_OVERFLOW, NULL);
		return;
	}
	struct wdir *d = dir_find(w, ev->wd);
	if (!d)
		return; /* a watch already forgotten */
	bool is_root = d->rel[0] == '\0';
	if (ev->mask & IN_IGNORED) {
		/* the kernel dropped the watch (its directory is gone) */
		if (is_root)
			w->ending = true;
		free(d->rel);
		*d = w->dirs[--w->ndirs];
		return;
	}
	if (!ev->len || !ev->name[0]) {
		/* about the directory itself: its parent's watch names it; the root's going ends the watch */
		if (is_root && (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)))
			w->ending = true;
		return;
	}
	char rel[AGENT_MAX_PATH];
	if (!join_rel(rel, d->rel, ev->name)) {
		w->lost++;
		return;
	}
	static const struct {
		uint32_t bit;
		uint16_t kind;
	} kinds[] = {
		{IN_CREATE, AGENT_WEV_CREATE}, {IN_MOVED_TO, AGENT_WEV_CREATE}, {IN_MODIFY, AGENT_WEV_WRITE},
		{IN_DELETE, AGENT_WEV_REMOVE}, {IN_MOVED_FROM, AGENT_WEV_RENAME}, {IN_ATTRIB, AGENT_WEV_CHMOD},
	};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (ev->mask & kinds[i].bit)
			watch_push(w, kinds[i].kind, rel);
	if (!w->recursive || !(ev->mask & IN_ISDIR))
		return;
	if (ev->mask & (IN_MOVED_FROM | IN_DELETE)) {
		dir_drop_tree(w, rel);
	} else if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
		size_t from = w->ndirs;
		int rc = dir_add(w, rel);
		if (rc < 0)
			watch_push(w, AGENT_WEV_UNWATCHED, rel);
		else if (rc == 0)
			dir_walk(w, from, true);
	}
}

/* Reads what inotify has: false when it failed. */
static bool watch_read(struct watch *w)
{
	_Alignas(struct inotify_event) char buf[65536];
	for (;;) {
		ssize_t n = read(w->ino, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN;
		for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
			const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
			off += (ssize_t)sizeof(*ev) + ev->len;
			if (off > n)
				break;
			watch_inotify_event(w, ev);
		}
	}
}

/* Moves the queue's first events (whole, at most one payload) into the frame to send. */
static void watch_fill_out(struct watch *w)
{
	if (w->out_off < w->out_len)
		return;
	if (!w->qlen && w->lost) {
		/* nothing queued to put it before: the LOST event alone (its room is always kept) */
		struct agent_wevent l = {.kind = AGENT_WEV_LOST, .lost = w->lost};
		queue_put(w, &l);
		w->lost = 0;
	}
	size_t take = 0;
	while (take < w->qlen) {
		size_t n = AGENT_WEVENT_FIXED + ((size_t)w->queue[take + 2] | (size_t)w->queue[take + 3] << 8);
		if (take + n > AGENT_MAX_PAYLOAD)
			break;
		take += n;
	}
	w->out_off = w->out_len = 0;
	if (!take)
		return;
	agent_hdr_encode(w->out, (uint32_t)take, AGENT_WEVENTS, 0);
	memcpy(w->out + AGENT_HDR_LEN, w->queue, take);
	memmove(w->queue, w->queue + take, w->qlen - take);
	w->qlen -= take;
	w->out_len = AGENT_HDR_LEN + take;
}

/* The loop: inotify into the queue, the queue to the host as it takes it, until the host leaves. */
static int watch_loop(struct watch *w)
{
	for (;;) {
		watch_fill_out(w);
		bool sending = w->out_off < w->out_len;
		if (w->ending && !sending) {
			watch_error(w->conn, "the watched directory %s was removed or moved away", w->root);
			return 0;
		}
		struct pollfd pf[2] = {
			{.fd = w->conn, .events = POLLIN | (sending ? POLLOUT : 0)},
			{.fd = w->ending ? -1 : w->ino, .events = POLLIN},
		};
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		/* the host closed the connection (or sent something: it ends the watch the same way) */
		if (pf[0].revents & (POLLIN | POLLHUP | POLLERR))
			return 0;
		if (pf[0].revents & POLLOUT) {
			ssize_t n = send(w->conn, w->out + w->out_off, w->out_len - w->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return -1;
			if (n > 0)
				w->out_off += (size_t)n;
		}
		if ((pf[1].revents & POLLIN) && !watch_read(w)) {
			watch_error(w->conn, "reading inotify: %s", strerror(errno));
			return -1;
		}
	}
}

int watch_serve(int conn, const uint8_t *p, uint32_t len)
{
	struct watch *w = calloc(1, sizeof(*w));
	uint32_t flags;
	if (!w) {
		watch_error(conn, "out of memory for a watch");
		return -1;
	}
	int rc = -1;
	w->conn = conn;
	w->ino = -1;
	if (agent_watch_decode(p, len, &flags, w->root, sizeof(w->root))) {
		watch_error(conn, "malformed WATCH");
		goto out;
	}
	w->recursive = flags & AGENT_WATCH_RECURSIVE;
	/* "/a/b/" and "/a/b" are one directory; names are relative to it */
	for (size_t n = strlen(w->root); n > 1 && w->root[n - 1] == '/'; n--)
		w->root[n - 1] = '\0';
	struct stat st;
	int se = stat(w->root, &st) < 0 ? errno : 0;
	if (se || !S_ISDIR(st.st_mode)) {
		watch_error(conn, "cannot watch %s: %s", w->root, se ? strerror(se) : "Not a directory");
		rc = 0;
		goto out;
	}
	if ((w->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
		watch_error(conn, "inotify: %s", strerror(errno));
		goto out;
	}
	int e = dir_add(w, "");
	if (e == 0 && w->recursive)
		e = dir_walk(w, 0, false);
	if (e) {
		if (e == -ENOSPC)
			watch_error(conn, "cannot watch %s: more than %u directories under it", w->root, AGENT_WATCH_MAX_DIRS);
		else
			watch_error(conn, "cannot watch %s: %s", w->root, e > 0 ? "it went away" : strerror(-e));
		rc = 0;
		goto out;
	}
	if (agent_write_frame(conn, AGENT_OK, NULL, 0))
		goto out;
	rc = watch_loop(w);
out:
	for (size_t i = 0; i < w->ndirs; i++)
		free(w->dirs[i].rel);
	if (w->ino >= 0)
		close(w->ino);
	free(w);
	return rc;
}
