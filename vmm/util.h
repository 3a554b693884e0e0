/* The few helpers several parts of padcell need: Unix sockets, a millisecond clock, the stop signals. */
#ifndef PADCELL_UTIL_H
#define PADCELL_UTIL_H

#include <signal.h>
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
	UNIX_STEP_BIND,       /* bind() */
	UNIX_STEP_LISTEN,     /* chmod() or listen(); the socket file just made is removed again */
	UNIX_STEP_CONNECT,    /* connect() */
};

/*
 * A listening socket at path, made SOCK_CLOEXEC | flags (e.g. SOCK_NONBLOCK).  A live socket or
 * any other file at path is refused; a stale socket, one nobody listens on, is replaced.  mode,
 * unless 0, is set on the socket file before listen(), so nobody connects while the umask's mode
 * holds.  Returns the fd, or -errno with *at (if at is not NULL) saying which step failed.
 */
int unix_listen(const char *path, int backlog, mode_t mode, int flags, enum unix_step *at);

/* A socket (SOCK_CLOEXEC | flags) connected to path: the fd, or -errno with *at set as above. */
int unix_connect(const char *path, int flags, enum unix_step *at);

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

#endif
