/* Unix-socket listen/connect with the stale-socket probe, now_ms, the stop signals and guest text escaping, written once. */
#include "vmm/util.h"
#include "vmm/jail/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int fail_at(enum unix_step *at, enum unix_step step, int rc)
{
	if (at)
		*at = step;
	return rc;
}

static int unix_addr(struct sockaddr_un *a, const char *path)
{
	size_t n = strlen(path);
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	/* A NUL must follow: an unterminated sun_path is read up to sizeof(sun_path) by the kernel,
	 * and an empty one would bind an abstract name nobody can see in the file system. */
	if (n == 0 || n >= sizeof(a->sun_path))
		return -ENAMETOOLONG;
	memcpy(a->sun_path, path, n);
	return 0;
}

/*
 * What is at path already: 0 when nothing is (or a stale socket was removed), else -errno.  A
 * socket file is live if someone accepts on it and stale (left by a crash) if the connection is
 * refused.  The probe does not block: a live socket with a full backlog answers EAGAIN instead of
 * stalling the caller, and counts as live.
 */
static int unix_clear_stale(const char *path, const struct sockaddr_un *a, enum unix_step *at)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : fail_at(at, UNIX_STEP_LOOKUP, -errno);
	if (!S_ISSOCK(st.st_mode))
		return fail_at(at, UNIX_STEP_NOT_SOCKET, -EEXIST);
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (probe < 0)
		return fail_at(at, UNIX_STEP_SOCKET, -errno);
	int rc = connect(probe, (const struct sockaddr *)a, sizeof(*a));
	int e = errno;
	close(probe);
	if (rc == 0 || e == EAGAIN)
		return fail_at(at, UNIX_STEP_LIVE, -EADDRINUSE);
	if (e != ECONNREFUSED)
		return fail_at(at, UNIX_STEP_PROBE, -e);
	if (unlink(path) < 0)
		return fail_at(at, UNIX_STEP_STALE, -errno);
	return 0;
}

/*
 * Where the socket is bound before it appears at path: DIR/.padcell-R beside it, R 64 random bits
 * (not the pid: a jailed monitor is pid 1 of its own namespace, like every other one), when that
 * fits sun_path; else path itself, and then the moment between bind and listen stays visible.
 */
static void unix_temp_addr(struct sockaddr_un *tmp, const char *path)
{
	uint64_t r = 0;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 40);
	const char *slash = strrchr(path, '/');
	int dir = slash ? (int)(slash - path + 1) : 0;
	int n = snprintf(tmp->sun_path, sizeof(tmp->sun_path), "%.*s.padcell-%016llx", dir, path, (unsigned long long)r);
	if (n < 0 || (size_t)n >= sizeof(tmp->sun_path))
		unix_addr(tmp, path);
	else
		tmp->sun_family = AF_UNIX;
}

/*
 * The socket appears at path only once it listens: it is bound and made to listen under a
 * temporary name in the same directory and then renamed into place (RENAME_NOREPLACE: a socket
 * someone else made there meanwhile is theirs, and counts as live).  So a client that sees the
 * file and connects at once is never refused, however long this process is held off the CPU
 * between bind() and listen().
 */
int unix_listen(const char *path, int backlog, mode_t mode, int flags, enum unix_step *at)
{
	struct sockaddr_un a, t;
	if (unix_addr(&a, path))
		return fail_at(at, UNIX_STEP_PATH, -ENAMETOOLONG);
	int rc = unix_clear_stale(path, &a, at);
	if (rc)
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
	if (fd < 0)
		return fail_at(at, UNIX_STEP_SOCKET, -errno);
	bool direct;
	int e;
	/* Born owner-only: bind() takes the umask, so nobody else's connect can ever pass, even for
	 * the moment before chmod.  (The umask is the process's; padcell listens before its threads.)
	 * A temporary name someone holds already (a 1 in 2^64 chance) is drawn again. */
	for (int tries = 0;; tries++) {
		unix_temp_addr(&t, path);
		direct = strcmp(t.sun_path, path) == 0;
		mode_t old = umask(0177);
		rc = bind(fd, (struct sockaddr *)&t, sizeof(t));
		e = errno;
		umask(old);
		if (rc == 0 || e != EADDRINUSE || direct || tries == 3)
			break;
	}
	if (rc < 0) {
		rc = fail_at(at, UNIX_STEP_BIND, -e);
		goto err_close;
	}
	if (chmod(t.sun_path, mode ? mode : 0600) < 0 || listen(fd, backlog) < 0) {
		rc = fail_at(at, UNIX_STEP_LISTEN, -errno);
		goto err_unlink;
	}
	if (!direct && renameat2(AT_FDCWD, t.sun_path, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
		rc = errno == EEXIST ? fail_at(at, UNIX_STEP_LIVE, -EADDRINUSE) : fail_at(at, UNIX_STEP_BIND, -errno);
		goto err_unlink;
	}
	return fd;
err_unlink:
	unlink(t.sun_path); /* ours: bind made it a moment ago */
err_close:
	close(fd);
	return rc;
}

int unix_connect(const char *path, int flags, enum unix_step *at)
{
	struct sockaddr_un a;
	char name[sizeof(a.sun_path)];
	int rc = jail_unix_path(path, name, sizeof(name)); /* the jail's root is empty: from its working directory */
	if (rc)
		return fail_at(at, UNIX_STEP_PATH, rc);
	if (unix_addr(&a, name))
		return fail_at(at, UNIX_STEP_PATH, -ENAMETOOLONG);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
	if (fd < 0)
		return fail_at(at, UNIX_STEP_SOCKET, -errno);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		return fail_at(at, UNIX_STEP_CONNECT, -e);
	}
	return fd;
}

int spare_fd_open(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int accept_or_shed(int lfd, int flags, int *spare)
{
	if (*spare < 0)
		*spare = spare_fd_open(); /* may still fail: then EMFILE is passed on */
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, flags);
		if (fd >= 0)
			return fd;
		int e = errno;
		if (e == EINTR || e == ECONNABORTED)
			continue;
		if (e == EWOULDBLOCK)
			return -EAGAIN;
		if ((e != EMFILE && e != ENFILE) || *spare < 0)
			return -e;
		/* The client stays in the backlog, so a level-triggered epoll would wake at once,
		 * forever: take it with the spare descriptor's slot and let it go. */
		close(*spare);
		*spare = -1;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			close(fd);
		*spare = spare_fd_open();
		return -ECONNABORTED;
	}
}

const char *file_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return "a regular file";
	case S_IFDIR: return "a directory";
	case S_IFIFO: return "a FIFO";
	case S_IFSOCK: return "a socket";
	case S_IFCHR: return "a character device";
	case S_IFBLK: return "a block device";
	case S_IFLNK: return "a symbolic link";
	default: return "a special file";
	}
}

int open_user_file(const char *path, int flags, bool allow_blk, const char **kind)
{
	/* O_NONBLOCK: opening a FIFO with no writer (or a tape, a modem line) would wait forever. */
	int fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode) && !(allow_blk && S_ISBLK(st.st_mode))) {
		if (kind)
			*kind = file_kind(st.st_mode);
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* The directory part and the final name of path, as dirname/basename would (copies). */
static void path_split(const char *path, char *dir, char *base, size_t len)
{
	char a[PATH_MAX], b[PATH_MAX];
	snprintf(a, sizeof(a), "%s", path);
	snprintf(b, sizeof(b), "%s", path);
	snprintf(dir, len, "%s", dirname(a));
	snprintf(base, len, "%s", basename(b));
}

bool same_file_path(const char *a, const char *b)
{
	if (!strcmp(a, b))
		return true;
	struct stat sa, sb;
	if (jail_stat(a, &sa) == 0 && jail_stat(b, &sb) == 0 && same_inode(&sa, &sb))
		return true;
	char da[PATH_MAX], ba[PATH_MAX], db[PATH_MAX], bb[PATH_MAX];
	path_split(a, da, ba, sizeof(da));
	path_split(b, db, bb, sizeof(db));
	if (strcmp(ba, bb))
		return false;
	struct stat pa, pb;
	if (jail_stat(da, &pa) < 0 || jail_stat(db, &pb) < 0)
		return !strcmp(da, db);
	return same_inode(&pa, &pb);
}

bool path_is_fd(const char *path, int fd)
{
	struct stat sp, sf;
	return fd >= 0 && jail_stat(path, &sp) == 0 && fstat(fd, &sf) == 0 && same_inode(&sp, &sf);
}

int fd_nonblocking_copy(int fd, bool *is_socket, int *restore_flags)
{
	*is_socket = false;
	*restore_flags = -1;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISSOCK(st.st_mode)) {
		*is_socket = S_ISSOCK(st.st_mode);
		int c = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		return c < 0 ? -errno : c;
	}
	/* A new open file of its own: O_NONBLOCK there leaves the shell's terminal or pipe alone. */
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	int c = open(proc, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (c >= 0) {
		struct stat sc;
		if (fstat(c, &sc) == 0 && same_inode(&sc, &st))
			return c;
		close(c);
	}
	c = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (c < 0)
		return -errno;
	int fl = fcntl(c, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK) && fcntl(c, F_SETFL, fl | O_NONBLOCK) == 0)
		*restore_flags = fl;
	return c;
}

unsigned long nofile_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	return rl.rlim_cur == RLIM_INFINITY ? ULONG_MAX : (unsigned long)rl.rlim_cur;
}

unsigned long nofile_raise(unsigned long want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	return nofile_limit();
}

double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
}

int stop_signals_fd(void)
{
	sigset_t set;
	stop_signals(&set);
	int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

/*
 * The length of the well-formed UTF-8 sequence at p (n bytes left) that is safe to show as it
 * is, or 0: a lead byte with the continuation bytes it needs, not an overlong form, a surrogate,
 * beyond U+10FFFF, a C1 control or a bidirectional override.
 */
static size_t utf8_safe_len(const uint8_t *p, size_t n)
{
	size_t need;
	uint32_t cp;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		need = 2, cp = p[0] & 0x1fu;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		need = 3, cp = p[0] & 0x0fu;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		need = 4, cp = p[0] & 0x07u;
	else
		return 0;
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	static const uint32_t min_of[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (cp < min_of[need] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	if (cp <= 0x9f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
		return 0; /* C1 controls, which some terminals obey; text that reads backwards */
	return need;
}

size_t text_escape(char *dst, size_t size, const void *src, size_t len, unsigned flags)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *p = src;
	if (!size)
		return 0;
	/* Room is kept for "..." until the last unit is known to fit without it. */
	size_t out = 0, cap = size - 1;
	bool multi = flags & TEXT_MULTILINE;
	for (size_t i = 0; i < len;) {
		char unit[8];
		size_t ulen = 0, used = 1;
		uint8_t b = p[i];
		if (b == '\\') {
			unit[0] = unit[1] = '\\', ulen = 2;
		} else if (b >= 0x20 && b < 0x7f) {
			unit[0] = (char)b, ulen = 1;
		} else if (b == '\n' || b == '\t') {
			if (multi)
				unit[0] = (char)b, ulen = 1;
			else
				unit[0] = '\\', unit[1] = b == '\n' ? 'n' : 't', ulen = 2;
		} else if (multi && b == '\r' && i + 1 < len && p[i + 1] == '\n') {
			ulen = 0; /* CRLF: the newline alone */
		} else if (b >= 0x80 && (used = utf8_safe_len(p + i, len - i))) {
			memcpy(unit, p + i, used);
			ulen = used;
		} else {
			used = 1;
			if (b == '\r' || b == '\b')
				unit[0] = '\\', unit[1] = b == '\r' ? 'r' : 'b', ulen = 2;
			else
				unit[0] = '\\', unit[1] = 'x', unit[2] = hex[b >> 4], unit[3] = hex[b & 15], ulen = 4;
		}
		bool last = i + used >= len;
		size_t room = last ? cap : (cap >= 3 ? cap - 3 : 0);
		if (out + ulen > room) {
			if (cap >= 3) {
				/* what fits with "..." after it; the units already out left room for it */
				memcpy(dst + out, "...", 3);
				out += 3;
			}
			break;
		}
		memcpy(dst + out, unit, ulen);
		out += ulen;
		i += used;
	}
	dst[out] = '\0';
	return out;
}

int file_id_of(int fd, struct file_id *id)
{
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS | STATX_BTIME, &sx) < 0)
		return -errno;
	id->dev = ((uint64_t)sx.stx_dev_major << 32) | sx.stx_dev_minor;
	id->ino = sx.stx_ino;
	id->size = sx.stx_size;
	id->btime_ns = (sx.stx_mask & STATX_BTIME)
			       ? (uint64_t)sx.stx_btime.tv_sec * 1000000000u + sx.stx_btime.tv_nsec
			       : 0;
	return 0;
}

int write_text_at(int dirfd, const char *name, const char *text, int oflags)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC | oflags, 0644);
	if (fd < 0)
		return -errno;
	size_t len = strlen(text);
	ssize_t n = write(fd, text, len);
	int rc = n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
	close(fd);
	return rc;
}

void *page_zalloc(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void page_free(void *p, size_t size)
{
	if (p)
		munmap(p, size);
}
