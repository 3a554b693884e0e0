/*
 * The guest agent protocol: one definition for the agent (guest/agent/agent.c) and the host client
 * (vmm/agent/agent_client.c).  README "Guest agent protocol" documents it for other clients.
 *
 * A stream (vsock port AGENT_PORT, or any stream socket) carries frames: an 8-byte little-endian
 * header {u32 len, u16 type, u16 flags} and len payload bytes, len <= AGENT_MAX_PAYLOAD.  The agent
 * speaks first (HELLO); one connection runs at most one command, then ends.  The file operations
 * (STAT, LIST, MKDIR, MOVE, REMOVE) may follow each other on one connection; their ERROR answer
 * does not end it (every other ERROR does).
 */
#ifndef PADCELL_AGENT_PROTO_H
#define PADCELL_AGENT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTO_VERSION 3u   /* 2: STDIN_ACK flow control for stdin; 3: file operations */
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
	AGENT_TYPE_MAX = AGENT_ENTRIES,
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
 * Blocking frame I/O on a stream fd (EINTR retried).  Write: 0 or -errno.  Read: 0 with the
 * header and payload (payload_cap >= AGENT_MAX_PAYLOAD), -EPIPE at a clean end of stream before
 * a header, -EPROTO for a bad header, -errno otherwise.
 */
int agent_write_frame(int fd, uint16_t type, const void *payload, uint32_t len);
int agent_read_frame(int fd, struct agent_hdr *h, uint8_t *payload, size_t payload_cap);

#endif
