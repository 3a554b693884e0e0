/*
 * The guest agent protocol: one definition for the agent (guest/agent/agent.c) and the host client
 * (vmm/agent/agent_client.c).  README "Guest agent protocol" documents it for other clients.
 *
 * A stream (vsock port AGENT_PORT, or any stream socket) carries frames: an 8-byte little-endian
 * header {u32 len, u16 type, u16 flags} and len payload bytes, len <= AGENT_MAX_PAYLOAD.  The agent
 * speaks first (HELLO); one connection runs at most one command, then ends.  The file operations
 * (STAT, LIST, MKDIR, MOVE, REMOVE) may follow each other on one connection; their ERROR answer
 * does not end it (every other ERROR does).
 *
 * Version 4: background processes (START, PLIST, ATTACH, SEND, KILL, RESIZE), kept by the agent's
 * process manager, so a process outlives the connection that started it.  The first of these
 * frames hands the connection to the process manager: from then on it carries only them, each
 * answered (an ERROR answer does not end it).  See "Background processes" below.
 *
 * Version 5: a process carries a tag (START's AGENT_START_TAG) and PROCS entries say it, whether
 * the process has a PTY, and its argv as started (NUL-separated) instead of a joined summary.
 * START without a tag keeps version 4's layout; PROCS entries are version 5's only, so the host
 * lists processes only on a version 5 agent (the agent and padcell ship together).
 * Version 5 also watches a directory (WATCH, WEVENTS): the connection carries that watch's events
 * until the host closes it.  See "Watching a directory" below.
 */
#ifndef PADCELL_AGENT_PROTO_H
#define PADCELL_AGENT_PROTO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTO_VERSION 5u   /* 2: STDIN_ACK flow control for stdin; 3: file operations; 4: background processes;
                                    5: process tags, PROCS entries with argv and a PTY flag, watching a directory */
#define AGENT_PROTO_MIN     3u   /* the oldest agent the host still talks to (for what that version had) */
#define AGENT_PORT          1024u          /* the agent listens here; it also calls the host here when ready */
#define AGENT_HDR_LEN       8u
#define AGENT_MAX_PAYLOAD   (64u << 10)    /* one frame's payload */
#define AGENT_MAX_ARGS      4096u          /* argv entries of one EXEC */
#define AGENT_MAX_ENV       4096u          /* environment entries of one EXEC */
#define AGENT_MAX_CONNS     16u            /* connections the agent serves at once; more wait in the backlog */
#define AGENT_MAX_PATH      4096u
#define AGENT_MAX_NAME      255u           /* one directory entry's name (NAME_MAX) */
/*
 * Stdin flow control: the host never has more than AGENT_STDIN_WINDOW bytes of STDIN payload sent
 * and not yet acknowledged by STDIN_ACK, and the agent holds that much for a command that is slow
 * to read.  So the agent can always read its connection while a command runs: SIGNAL frames and the
 * host's disconnect are seen at once, even behind stdin the command does not read, and neither side
 * ever blocks writing while the other blocks writing.  A host that overruns the window is cut off.
 */
#define AGENT_STDIN_WINDOW  (256u << 10)

enum agent_type {
	AGENT_HELLO = 1,   /* agent -> host: struct agent_hello                                     */
	AGENT_SYNC,        /* host -> agent: u64 realtime_ns, 32 random bytes; answered by OK/ERROR  */
	AGENT_EXEC,        /* host -> agent: the command (agent_exec_encode)                        */
	AGENT_STDIN,       /* host -> agent: stdin bytes; an empty one is end of input               */
	AGENT_STDOUT,      /* agent -> host: the command's stdout bytes, in order                    */
	AGENT_STDERR,      /* agent -> host: the command's stderr bytes, in order                    */
	AGENT_SIGNAL,      /* host -> agent: u32 signal number, for the command's process group      */
	AGENT_EXIT,        /* agent -> host: u32 how (enum agent_exit_how), i32 code; last frame     */
	AGENT_PUT,         /* host -> agent: u32 mode, path; OK, then DATA..., empty DATA, then OK   */
	AGENT_GET,         /* host -> agent: path; DATA..., empty DATA (or ERROR)                    */
	AGENT_DATA,        /* file bytes either way; an empty one ends the file                      */
	AGENT_OK,          /* either way: done                                                       */
	AGENT_ERROR,       /* either way: a one-line message (no NUL); the connection then ends     */
	AGENT_POWEROFF,    /* host -> agent: sync and power the VM off (only when the agent is init) */
	AGENT_STDIN_ACK,   /* agent -> host: u32 stdin bytes the command has consumed (see below)     */
	/* Version 3: file operations, each answered by ENTRIES, OK or ERROR (the connection goes on). */
	AGENT_STAT,        /* host -> agent: path; one ENTRIES frame with one entry (lstat)          */
	AGENT_LIST,        /* host -> agent: path of a directory; ENTRIES frames, then an empty one   */
	AGENT_MKDIR,       /* host -> agent: u32 mode, u32 flags (AGENT_MKDIR_*), path; OK           */
	AGENT_MOVE,        /* host -> agent: source path, NUL, destination path (rename); OK         */
	AGENT_REMOVE,      /* host -> agent: u32 flags (AGENT_REMOVE_*), path; OK                    */
	AGENT_ENTRIES,     /* agent -> host: directory entries (agent_entry_encode), packed          */
	/* Version 4: background processes (agent_start_encode and the rest below). */
	AGENT_START,       /* host -> agent: u32 flags, u16 rows, u16 cols, [tag], an EXEC payload; PROC */
	AGENT_PLIST,       /* host -> agent: empty; PROCS frames, then an empty one                  */
	AGENT_ATTACH,      /* host -> agent: u32 id; OK, then STDOUT/STDERR/GAP..., EXIT            */
	AGENT_SEND,        /* host -> agent: u32 id, stdin bytes (none: close stdin); OK once written */
	AGENT_KILL,        /* host -> agent: u32 id, u32 signal, for its process group; OK           */
	AGENT_RESIZE,      /* host -> agent: u32 id, u16 rows, u16 cols (a PTY's window size); OK   */
	AGENT_PROC,        /* agent -> host: u32 id, u32 pid: the process START started             */
	AGENT_PROCS,       /* agent -> host: process entries (agent_proc_encode), packed             */
	AGENT_GAP,         /* agent -> host: u32 stream (AGENT_STDOUT/STDERR), u64 bytes dropped      */
	/* Version 5: watching a directory (agent_watch_encode, agent_wevent_encode). */
	AGENT_WATCH,       /* host -> agent: u32 flags (AGENT_WATCH_*), path of a directory; OK, then WEVENTS... */
	AGENT_WEVENTS,     /* agent -> host: watch events (agent_wevent_encode), packed               */
	AGENT_TYPE_MAX = AGENT_WEVENTS,
};

enum agent_exit_how {
	AGENT_EXITED = 1,   /* code = exit status                              */
	AGENT_SIGNALED = 2, /* code = the signal that killed it                */
	AGENT_TIMEDOUT = 3, /* the timeout fired; its process group was killed */
};

#define AGENT_EXEC_STDIN 1u /* EXEC flag: STDIN frames follow; otherwise stdin is /dev/null */
#define AGENT_HELLO_INIT 1u /* HELLO flag: the agent is PID 1 (it can power off)          */
#define AGENT_MKDIR_PARENTS   1u /* MKDIR: make missing parents; an existing directory is fine */
#define AGENT_REMOVE_RECURSIVE 1u /* REMOVE: a directory with everything in it (never following links) */

struct agent_hdr {
	uint32_t len;
	uint16_t type;
	uint16_t flags;
};

struct agent_hello {
	uint32_t version;
	uint32_t flags;    /* AGENT_HELLO_* */
	uint32_t ready_ms; /* CLOCK_BOOTTIME when the agent became ready: boot to agent, in the guest */
};
#define AGENT_HELLO_LEN 12u

struct agent_sync {
	uint64_t realtime_ns;
	uint8_t seed[32];
};
#define AGENT_SYNC_LEN 40u

/* A decoded EXEC: strings point into the payload it was decoded from. */
struct agent_exec {
	uint32_t timeout_ms; /* 0 = none */
	uint32_t flags;      /* AGENT_EXEC_* */
	const char *cwd;     /* "" = the agent's default (/) */
	const char *user;    /* "" = root; NAME or UID[:GID] */
	uint32_t argc, envc;
	const char *argv[AGENT_MAX_ARGS + 1]; /* NULL-terminated */
	const char *envv[AGENT_MAX_ENV + 1];  /* NULL-terminated, each NAME=VALUE */
};

/* Header bytes <-> struct.  Decoding refuses unknown types and oversized lengths: -EPROTO. */
void agent_hdr_encode(uint8_t out[AGENT_HDR_LEN], uint32_t len, uint16_t type, uint16_t flags);
int agent_hdr_decode(const uint8_t in[AGENT_HDR_LEN], struct agent_hdr *h);

void agent_hello_encode(uint8_t out[AGENT_HELLO_LEN], const struct agent_hello *h);
int agent_hello_decode(const uint8_t *p, size_t len, struct agent_hello *h);
void agent_sync_encode(uint8_t out[AGENT_SYNC_LEN], const struct agent_sync *s);
int agent_sync_decode(const uint8_t *p, size_t len, struct agent_sync *s);
/* u32 payloads: SIGNAL (signal number), STDIN_ACK (bytes) and the first word of PUT (mode). */
void agent_u32_encode(uint8_t out[4], uint32_t v);
int agent_u32_decode(const uint8_t *p, size_t len, uint32_t *v); /* -EPROTO unless len is 4 */
int agent_exit_decode(const uint8_t *p, size_t len, uint32_t *how, int32_t *code);
void agent_exit_encode(uint8_t out[8], uint32_t how, int32_t code);

/*
 * EXEC payload: u32 timeout_ms, u32 flags, u32 argc, u32 envc, then NUL-terminated strings:
 * cwd, user, argv[0..argc), envv[0..envc).  Encode returns the length, or -E2BIG when it does
 * not fit in cap (at most AGENT_MAX_PAYLOAD).  Decode checks every count, string and the exact
 * length: -EPROTO for anything else.  argv must not be empty; env entries need a '='.
 */
int agent_exec_encode(uint8_t *out, size_t cap, const char *const *argv, const char *const *envv, const char *cwd,
		      const char *user, uint32_t timeout_ms, uint32_t flags);
int agent_exec_decode(const uint8_t *p, size_t len, struct agent_exec *e);

/* PUT payload: u32 mode, then the absolute path (no NUL, 1..AGENT_MAX_PATH-1 bytes).  GET: the path alone. */
int agent_put_encode(uint8_t *out, size_t cap, uint32_t mode, const char *path);
int agent_put_decode(const uint8_t *p, size_t len, uint32_t *mode, char *path, size_t pathcap);
int agent_path_decode(const uint8_t *p, size_t len, char *path, size_t pathcap);

/*
 * File operations.  STAT and LIST take the path alone (agent_path_decode).  MKDIR: u32 mode
 * (<= 07777), u32 flags, path.  REMOVE: u32 flags, path.  MOVE: the two paths with one NUL between
 * them.  Every path is absolute, 1..AGENT_MAX_PATH-1 bytes, no NUL.  Encode: the length or -E2BIG
 * / -EINVAL; decode: 0 or -EPROTO.
 */
int agent_mkdir_encode(uint8_t *out, size_t cap, uint32_t mode, uint32_t flags, const char *path);
int agent_mkdir_decode(const uint8_t *p, size_t len, uint32_t *mode, uint32_t *flags, char *path, size_t pathcap);
int agent_remove_encode(uint8_t *out, size_t cap, uint32_t flags, const char *path);
int agent_remove_decode(const uint8_t *p, size_t len, uint32_t *flags, char *path, size_t pathcap);
int agent_move_encode(uint8_t *out, size_t cap, const char *src, const char *dst);
int agent_move_decode(const uint8_t *p, size_t len, char *src, char *dst, size_t pathcap);
int agent_path_encode(uint8_t *out, size_t cap, const char *path);

/*
 * One directory entry in an ENTRIES payload: u32 mode (st_mode: the type bits and 07777), u64
 * size, i64 mtime in ns since the epoch, u16 name length, the name (1..AGENT_MAX_NAME bytes, no
 * NUL, no '/', not "." or ".."; STAT's entry of "/" is named "/").  Entries are packed one after
 * another; a frame holds whole entries only.
 */
#define AGENT_ENTRY_FIXED 22u
struct agent_entry {
	uint32_t mode;
	uint64_t size;
	int64_t mtime_ns;
	char name[AGENT_MAX_NAME + 1];
};
/* Appends e at *off of out (cap bytes): 0, or -E2BIG when it does not fit (nothing written). */
int agent_entry_encode(uint8_t *out, size_t cap, size_t *off, const struct agent_entry *e);
/* The entry at *off of p (len bytes): 1 with e filled and *off moved on, 0 at the end, -EPROTO. */
int agent_entry_next(const uint8_t *p, size_t len, size_t *off, struct agent_entry *e);

/*
 * Background processes (version 4).  START's EXEC payload has timeout_ms 0 (a background process
 * has no timeout; KILL ends it).  The agent keeps at most AGENT_MAX_PROCS processes, running or
 * exited-and-not-yet-collected; START with the table full drops the oldest exited one, or fails
 * when all run.  A process id is the agent's handle (1.., never reused while the agent runs), not
 * the guest pid.  The agent keeps the last AGENT_PROC_RING bytes of each of a process's stdout
 * and stderr (a PTY's output is all stdout; less once all rings hold AGENT_PROC_RING_TOTAL); ATTACH sends what is kept, a GAP for what was dropped
 * before it, then live output, then EXIT once the process has ended and its output is drained.
 * A process's EXIT sent by ATTACH is collected: the entry leaves the table.  A PTY process's stdin
 * is the terminal: SEND's bytes go to it, and closing stdin sends the terminal's end-of-file
 * character.  Without AGENT_START_STDIN (and no PTY) its stdin is /dev/null.  A START whose tag
 * a running process of the table has is refused (ERROR "the tag is in use ..."): a tag names one
 * running process.
 */
#define AGENT_MAX_PROCS   64u
#define AGENT_PROC_RING   (512u << 10) /* per stream */
#define AGENT_PROC_RING_TOTAL (16u << 20) /* all streams together: past it, rings grow no more */
#define AGENT_MAX_ATTACH  16u          /* connections the process manager serves at once */
#define AGENT_START_PTY   1u
#define AGENT_START_STDIN 2u
#define AGENT_START_TAG   4u           /* version 5: u16 tag length and the tag follow rows and cols */
#define AGENT_MAX_TAG     64u          /* a tag: 1..AGENT_MAX_TAG bytes, no NUL */
#define AGENT_PROC_ARGV   896u         /* a PROCS entry's argv bytes (each argument NUL-terminated) */
#define AGENT_PROC_FIXED  28u
#define AGENT_PROC_PTY      1u         /* PROCS entry flag: the process runs on a terminal */
#define AGENT_PROC_ARGV_CUT 2u         /* PROCS entry flag: argv did not fit: the arguments that did */
_Static_assert(AGENT_MAX_PROCS * (AGENT_PROC_FIXED + AGENT_MAX_TAG + AGENT_PROC_ARGV) <= AGENT_MAX_PAYLOAD,
	       "a full process table fits one PROCS frame");

struct agent_start {
	uint32_t flags;      /* AGENT_START_* */
	uint16_t rows, cols; /* the PTY's size (0,0: 24x80); ignored without a PTY */
	char tag[AGENT_MAX_TAG + 1]; /* "" without AGENT_START_TAG */
	struct agent_exec e;
};

enum agent_proc_state { AGENT_PROC_RUNNING = 1, AGENT_PROC_EXITED = 2 };

/*
 * One PROCS entry (version 5): u32 id, u32 pid, u32 state, u32 how, i32 code, u32 flags
 * (AGENT_PROC_*), u16 tag length (0..AGENT_MAX_TAG), u16 argv length (1..AGENT_PROC_ARGV), the
 * tag (no NUL), argv: one or more arguments, each followed by a NUL.  An
 * argv that does not fit is cut after the last whole argument that does (the first one is cut
 * to fit when it alone does not), and the entry says AGENT_PROC_ARGV_CUT.
 */
struct agent_proc {
	uint32_t id, pid, state, how; /* how, code: as in EXIT, when exited */
	int32_t code;
	uint32_t flags;               /* AGENT_PROC_* */
	char tag[AGENT_MAX_TAG + 1];  /* "" for none */
	uint16_t argv_len;
	char argv[AGENT_PROC_ARGV];   /* argv_len bytes: NUL-terminated arguments, packed */
};

/* Packs argv into pr->argv as the entry carries it (cut, and flagged so, when it does not fit). */
void agent_proc_set_argv(struct agent_proc *pr, const char *const *argv, uint32_t argc);
/* A tag as both sides check it: 1..AGENT_MAX_TAG bytes (n), no NUL. */
bool agent_tag_ok(const char *tag, size_t n);

/*
 * START: encode as EXEC does (-E2BIG, -EINVAL: also a bad tag; tag NULL or "": none, else
 * AGENT_START_TAG is added); decode 0 or -EPROTO (unknown flags, a timeout, a bad tag).
 */
int agent_start_encode(uint8_t *out, size_t cap, uint32_t flags, uint16_t rows, uint16_t cols, const char *tag,
		       const char *const *argv, const char *const *envv, const char *cwd, const char *user);
int agent_start_decode(const uint8_t *p, size_t len, struct agent_start *s);
/* PROC: u32 id, u32 pid; KILL: u32 id, u32 signal (1..64); both 8 bytes.  Ids are never 0. */
void agent_id2_encode(uint8_t out[8], uint32_t id, uint32_t v);
int agent_id2_decode(const uint8_t *p, size_t len, uint32_t *id, uint32_t *v);
/* RESIZE: u32 id, u16 rows, u16 cols (each 1..AGENT_MAX_WINSZ). */
#define AGENT_MAX_WINSZ 4096u
void agent_resize_encode(uint8_t out[8], uint32_t id, uint16_t rows, uint16_t cols);
int agent_resize_decode(const uint8_t *p, size_t len, uint32_t *id, uint16_t *rows, uint16_t *cols);
/* GAP: u32 stream (AGENT_STDOUT or AGENT_STDERR), u64 bytes (> 0). */
void agent_gap_encode(uint8_t out[12], uint32_t stream, uint64_t bytes);
int agent_gap_decode(const uint8_t *p, size_t len, uint32_t *stream, uint64_t *bytes);
/* PROCS entries, packed like ENTRIES: append (0 or -E2BIG) and walk (1, 0 at the end, -EPROTO). */
int agent_proc_encode(uint8_t *out, size_t cap, size_t *off, const struct agent_proc *pr);
int agent_proc_next(const uint8_t *p, size_t len, size_t *off, struct agent_proc *pr);

/*
 * Watching a directory (version 5).  WATCH: u32 flags, the directory's absolute path.  The agent
 * answers ERROR (not a directory, no inotify, more than AGENT_WATCH_MAX_DIRS directories under a
 * recursive watch; the connection then ends) or OK once the watches are in place: every change
 * after that OK is reported.  Then WEVENTS frames, each whole events, until the host closes the
 * connection (the host sends nothing more; anything it sends ends the watch too).  A final ERROR
 * says why the agent ended a watch itself (the directory was removed or moved away).
 *
 * With AGENT_WATCH_RECURSIVE every subdirectory is watched too, also ones created or moved in
 * later (up to AGENT_WATCH_MAX_DIRS watches; a directory past that is reported UNWATCHED), never
 * following a symbolic link.  A directory created is scanned once it is watched, and what is in
 * it already is reported as CREATE: a file made right after its directory is never missed.
 *
 * Bounds: the agent holds at most AGENT_WATCH_QUEUE bytes of events the host has not read; past
 * that, events are dropped and counted, and one LOST event with the count comes where they were.
 * The kernel's own queue overflowing is an OVERFLOW event (how many were lost is unknown).  A
 * name longer than AGENT_MAX_PATH - 1 bytes is dropped and counted the same way.
 *
 * One event: u16 kind (enum agent_wevent_kind), u16 length, then that many bytes: for CREATE..
 * CHMOD and UNWATCHED the name relative to the watched directory ("f", "sub/f": 1..AGENT_MAX_PATH
 * - 1 bytes, no NUL, no leading or trailing '/', no empty, "." or ".." component); for LOST a u64
 * count (> 0); for OVERFLOW nothing.
 */
#define AGENT_WATCH_RECURSIVE 1u
#define AGENT_WATCH_MAX_DIRS  1024u       /* watches of one recursive WATCH */
#define AGENT_WATCH_QUEUE     (256u << 10) /* bytes of events held for a host that does not read */
#define AGENT_WEVENT_FIXED    4u

enum agent_wevent_kind {
	AGENT_WEV_CREATE = 1, /* the numbers of E2B's EventType */
	AGENT_WEV_WRITE = 2,
	AGENT_WEV_REMOVE = 3,
	AGENT_WEV_RENAME = 4, /* moved away (its new name, inside the watch, is a CREATE) */
	AGENT_WEV_CHMOD = 5,  /* its attributes changed (mode, owner, times) */
	AGENT_WEV_OVERFLOW = 6,
	AGENT_WEV_LOST = 7,
	AGENT_WEV_UNWATCHED = 8,
};

struct agent_wevent {
	uint16_t kind;
	uint64_t lost;                /* LOST's count */
	char name[AGENT_MAX_PATH];    /* CREATE..CHMOD, UNWATCHED; "" otherwise */
};

/* WATCH: encode the length or -EINVAL/-E2BIG; decode 0 or -EPROTO (unknown flags, a bad path). */
int agent_watch_encode(uint8_t *out, size_t cap, uint32_t flags, const char *path);
int agent_watch_decode(const uint8_t *p, size_t len, uint32_t *flags, char *path, size_t pathcap);
/* Appends e at *off (0, -E2BIG when it does not fit: nothing written, -EINVAL for a bad event). */
int agent_wevent_encode(uint8_t *out, size_t cap, size_t *off, const struct agent_wevent *e);
/* The event at *off: 1 with e filled and *off moved on, 0 at the end, -EPROTO. */
int agent_wevent_next(const uint8_t *p, size_t len, size_t *off, struct agent_wevent *e);
/* Whether s (n bytes) is a name a watch event may carry (relative, see above). */
int agent_wevent_name_ok(const char *s, size_t n);

/*
 * Blocking frame I/O on a stream fd (EINTR retried).  Write: 0 or -errno.  Read: 0 with the
 * header and payload (payload_cap >= AGENT_MAX_PAYLOAD), -EPIPE at a clean end of stream before
 * a header, -EPROTO for a bad header, -errno otherwise.
 */
int agent_write_frame(int fd, uint16_t type, const void *payload, uint32_t len);

/* An ERROR frame's text: vsnprintf into msg (size > 0), cut to fit; returns its length. */
uint32_t agent_error_text(char *msg, size_t size, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
int agent_read_frame(int fd, struct agent_hdr *h, uint8_t *payload, size_t payload_cap);

#endif
