/* The few helpers several parts of padcell need: Unix sockets, a millisecond clock, the stop signals. */
#ifndef PADCELL_UTIL_H
#define PADCELL_UTIL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* ---- Unix stream sockets -------------------------------------------------------------------- */

/* Which step of unix_listen or unix_connect failed, so each caller can word the error its own way. */
enum unix_step {
	UNIX_STEP_PATH,       /* path empty or longer than sun_path holds (107 bytes): -ENAMETOOLONG */
	UNIX_STEP_LOOKUP,     /* lstat(path) failed other than with ENOENT */
	UNIX_STEP_NOT_SOCKET, /* path exists and is not a socket: -EEXIST, the file is left alone */
	UNIX_STEP_LIVE,       /* a socket someone accepts on (or whose backlog is full): -EADDRINUSE */
	UNIX_STEP_PROBE,      /* the probe of an existing socket failed other than with ECONNREFUSED */
	UNIX_STEP_STALE,      /* a stale socket (nobody listens) that cannot be unlinked */
	UNIX_STEP_SOCKET,     /* socket() */
	UNIX_STEP_BIND,       /* bind(), or the rename of the bound socket into place */
	UNIX_STEP_LISTEN,     /* chmod() or listen(); the socket file just made is removed again */
	UNIX_STEP_CONNECT,    /* connect() */
};

/*
 * A listening socket at path, made SOCK_CLOEXEC | flags (e.g. SOCK_NONBLOCK).  A live socket or
 * any other file at path is refused; a stale socket, one nobody listens on, is replaced.  The
 * socket file is created owner-only (0600, whatever the umask) and then given mode (0: stays
 * 0600) before listen(): no other user can connect to padcell's vsock, ready or API socket.  Returns the fd, or -errno with *at (if at is not NULL) saying which step failed.
 */
int unix_listen(const char *path, int backlog, mode_t mode, int flags, enum unix_step *at);

/* A socket (SOCK_CLOEXEC | flags) connected to path: the fd, or -errno with *at set as above. */
int unix_connect(const char *path, int flags, enum unix_step *at);

/*
 * accept4(lfd, flags) that cannot make a level-triggered loop spin when the process is out of
 * descriptors: on EMFILE/ENFILE it closes *spare (a descriptor kept for this), accepts the
 * waiting client, closes it at once (the client sees its connection end) and takes the spare
 * again.  Returns the new fd, -EAGAIN when nobody waits, -ECONNABORTED when one client was shed
 * this way (call again for the next), -EMFILE when out of descriptors with no spare to shed
 * with, or another -errno.  *spare is -1 when it could not be taken
 * back; it is retried on the next call.
 */
int accept_or_shed(int lfd, int flags, int *spare);
/* Descriptors padcell asks for at start (RLIMIT_NOFILE, up to the hard limit): the fd budget. */
#define PADCELL_NOFILE 4096
/* A spare descriptor for accept_or_shed (/dev/null, close-on-exec): the fd or -errno. */
int spare_fd_open(void);

/*
 * Writes all of text to name (relative to dirfd, or AT_FDCWD), opened O_WRONLY | O_CLOEXEC | oflags
 * (mode 0644 when O_CREAT makes it), as a shell's "echo V > FILE" does: 0, -errno, or -EIO when
 * the write was short.  For the kernel's one-value control files (/proc, cgroupfs).
 */
int write_text_at(int dirfd, const char *name, const char *text, int oflags);

/* ---- files the user names ------------------------------------------------------------------ */

/*
 * Opens a file the user named, without ever blocking on it: O_NONBLOCK while opening (a FIFO or
 * a device would otherwise wait for a peer), then the file must be a regular file (or, with
 * allow_blk, a block device), and O_NONBLOCK is cleared again.  flags are open(2)'s (O_CLOEXEC
 * and O_NOCTTY are added).  Returns the fd, or -errno: -EISDIR for a directory, -EINVAL for
 * another kind of file (*kind, if not NULL, then names it: "a FIFO", "a directory", ...), -errno
 * of open or fstat otherwise.
 */
int open_user_file(const char *path, int flags, bool allow_blk, const char **kind);
/* "a FIFO", "a directory", "a socket", "a character device", ... for st_mode. */
const char *file_kind(mode_t mode);

/*
 * A file's identity, to know it again later by more than its name: device, inode, size, and its
 * birth time (statx STATX_BTIME, 0 where the file system keeps none).  Writes do not change it;
 * a copy, a new file under the old name or another host's file have another.
 */
struct file_id {
	uint64_t dev, ino, size, btime_ns;
};
/* The identity of the file open as fd: 0 or -errno. */
int file_id_of(int fd, struct file_id *id);

/* Whether a and b are the same file (st_dev and st_ino). */
static inline bool same_inode(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}
/*
 * Whether paths a and b name the same directory entry, however spelt ("/d//s", "/d/./s",
 * symlinked directories): the same final name in the same directory (by inode), or, for files
 * that exist, the same inode.  Neither file need exist; a parent that does not exist compares
 * by spelling.
 */
bool same_file_path(const char *a, const char *b);
/* Whether path, if it exists (symlinks followed), is the file open as fd. */
bool path_is_fd(const char *path, int fd);

/* ---- descriptors ------------------------------------------------------------------------------ */

/*
 * A copy of fd for writing that never blocks, without touching the flags of fd's own open file
 * (a terminal or pipe shared with the shell): a fresh open of /proc/self/fd/N with O_NONBLOCK
 * for pipes, FIFOs and terminals; a dup for regular files and block devices (which do not
 * block) and for sockets (write them with MSG_DONTWAIT: *is_socket says so).  Where /proc
 * cannot reopen it, a dup with O_NONBLOCK set on the shared file, and *restore_flags holds the
 * flags to put back when done (else -1).  Close-on-exec.  The fd or -errno.
 */
int fd_nonblocking_copy(int fd, bool *is_socket, int *restore_flags);

/*
 * Raises the soft RLIMIT_NOFILE to want (at most the hard limit).  Returns the soft limit in
 * force afterwards.
 */
unsigned long nofile_raise(unsigned long want);
/* The soft RLIMIT_NOFILE now. */
unsigned long nofile_limit(void);

/* ---- text from the guest ---------------------------------------------------------------------- */

/*
 * Text the guest chose (an agent's ERROR message, the console tail, an answer to CONNECT) made
 * safe for the host's terminal before padcell prints it in its own messages: printable ASCII and
 * well-formed UTF-8 stay as they are; every other byte becomes a visible escape — \x1b for ESC
 * (so no CSI/OSC sequence can move the cursor, clear the screen or set the title), \r, \b,
 * \x7f, the C1 controls 0x80-0x9f whether raw or UTF-8-encoded (U+0080-U+009F), bytes that are
 * not well-formed UTF-8 (overlong forms, surrogates, beyond U+10FFFF, cut-off sequences), and
 * the bidirectional overrides U+202A-U+202E and U+2066-U+2069, each byte as \xHH; a backslash
 * becomes \\ so an escape cannot be faked.  With TEXT_MULTILINE newlines stay (a CR right
 * before one is dropped: the serial console's CRLF) and a tab stays; otherwise they are \n and
 * \t too.  The result, NUL-terminated, fills at most size bytes; when the input does not fit
 * it ends in "..." (never half an escape or half a character).  Returns its length.
 */
#define TEXT_MULTILINE 1u
size_t text_escape(char *dst, size_t size, const void *src, size_t len, unsigned flags);

/* ---- time ------------------------------------------------------------------------------------ */

/* Milliseconds on the monotonic clock, with the fraction (whole values stay exact). */
double now_ms(void);

/* ---- signals --------------------------------------------------------------------------------- */

/*
 * The signals that stop padcell: SIGINT, SIGTERM, SIGHUP.  main() blocks them for the whole
 * process; whoever waits for them reads a signalfd.
 */
void stop_signals(sigset_t *set);

/* A non-blocking, close-on-exec signalfd for the stop signals (blocked by main): the fd or -errno. */
int stop_signals_fd(void);

/*
 * Zeroed memory of its own mapping, for a large struct that lives as long as the process (a
 * command's VM and options): its pages become resident only as they are written, where a
 * struct on the stack, cleared with memset, is resident whole for good.  NULL when out of memory.
 */
void *page_zalloc(size_t size);
void page_free(void *p, size_t size);

#endif
