/*
 * `padcell serve`'s in-sandbox API, E2B's envd: the Connect-RPC services process.Process and
 * filesystem.Filesystem (Connect's JSON codec: unary calls as POST application/json, server
 * streams and the one client stream, StreamInput, as application/connect+json in 5-byte
 * envelopes) and GET/POST /files, each call
 * translated to guest-agent frames over the sandbox's vsock.  No HTTP here: vmm/serve/http.c
 * feeds it, the unit tests call it directly with a fake dialer.
 */
#ifndef PADCELL_SERVE_ENVD_H
#define PADCELL_SERVE_ENVD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "vmm/agent/agent_client.h"
#include "vmm/serve/table.h"

/*
 * What create answers as envdVersion, which sets what the SDK sends (its envd/versions.ts): from
 * 0.3.0 Start's stdin flag, from 0.4.0 no default user, from 0.5.2 CloseStdin; below 0.5.7 it
 * uploads multipart/form-data.
 */
#define ENVD_VERSION       "0.5.2"
#define ENVD_STREAM_MAX    (16u << 20)    /* a stream reply's bytes: output past it is dropped, and said so */
#define ENVD_FILE_MAX      (16u << 20)    /* a download's bytes (GET /files) */
#define ENVD_TIMEOUT_MAX_MS (3600u * 1000) /* a Connect-Timeout-Ms past an hour is cut to it */
#define ENVD_TIMEOUT_DEF_MS (60u * 1000)   /* a malformed or zero Connect-Timeout-Ms: the SDK's default */
#define ENVD_CONNECT_MS    2000           /* opening the sandbox's agent connection */
#define ENVD_LIST_MAX      10000u         /* entries of one ListDir, all its depths together */
#define ENVD_KEEPALIVE_MS  50000          /* a WatchDir stream's keepalive after that long without an event */
/* CreateWatcher's watchers: each holds one agent connection (the agent serves AGENT_MAX_CONNS at once) */
#define ENVD_WATCHERS_PER_SANDBOX 8u
#define ENVD_WATCHERS_MAX  256u           /* of the daemon, all sandboxes together */
#define ENVD_WATCHER_EVENTS 4096u         /* events a watcher keeps until GetWatcherEvents; past it the watch ends */

/*
 * The daemon's API keys.  One key (the generated api-key) has the name "": every sandbox is its.
 * With several (--api-keys) each sandbox belongs to the key that created it, recorded by name, and
 * no other key sees it: REST and envd answer another key's sandbox as a missing one (404).
 */
#define SERVE_KEY_MAX      128        /* a key file's bound; a generated key is "e2b_" + 40 hex */
#define SERVE_KEYS_MAX     64         /* live keys of one file */
#define SERVE_KEYS_SLOTS   256        /* entries a daemon's keys hold over its life (revoked ones stay) */
struct serve_key {
	char name[SERVE_NAME_MAX];
	char key[SERVE_KEY_MAX];
	int revoked;                  /* set (atomically) when a re-read dropped or changed it; never cleared */
};
/*
 * The entries are only ever appended (n published last, with release order) and an entry is
 * never rewritten but revoked, so the request threads read them without a lock while the main
 * thread merges a re-read file in (serve_keys_merge).
 */
struct serve_keys {
	struct serve_key k[SERVE_KEYS_SLOTS];
	size_t n;
};
/* keys holding key alone, named "" (the single-key daemon). */
void serve_keys_one(struct serve_keys *keys, const char *key);
/* The entry whose key given is, comparing with every key in constant time; NULL for none (or NULL given). */
const struct serve_key *serve_keys_find(const struct serve_keys *keys, const char *given);
/*
 * The keys of a re-read --api-keys file (fresh, as serve_keys_load made it) merged into keys
 * while requests use them: a name whose key is new or changed gets an entry with its key, then
 * the entries whose name the file no longer has, or whose key it changed, are revoked (a
 * sandbox belongs to a name: the changed key reaches it, the old one no longer does).  say(arg,
 * line) is told each change.  0, or -E2BIG when the entries would pass SERVE_KEYS_SLOTS (the keys
 * that fitted were added, nothing was revoked: a restart starts afresh).
 */
int serve_keys_merge(struct serve_keys *keys, const struct serve_keys *fresh, void (*say)(void *arg, const char *line),
		     void *arg);

/* How envd reaches a sandbox's agent: the real one opens sb->vsock, tests pass a fake. */
struct envd_dialer {
	void *ctx;
	/* Connects c (agent_conn_init'd by the caller) to sb's agent and reads its HELLO. */
	int (*dial)(void *ctx, const struct serve_sandbox *sb, struct agent_conn *c, char *err, size_t errlen);
};
/* The real dialer: sb->vsock, port AGENT_PORT, HELLO within AGENT_REPLY_MS. */
extern const struct envd_dialer envd_vsock_dialer;

struct envd_request {
	const char *method;
	const char *path;          /* without the query string */
	const char *sandbox_id;    /* the E2b-Sandbox-Id header (SDK's single-URL mode), NULL when absent */
	const char *token;         /* X-Access-Token, NULL when absent */
	const char *api_key;       /* X-API-Key, NULL when absent */
	const char *content_type;
	const char *timeout_ms;    /* Connect-Timeout-Ms, NULL when absent */
	const char *file_path;     /* /files' ?path= */
	const char *body;
	size_t len;
	bool overflow;
};

struct envd_reply {
	unsigned status;
	const char *content_type;  /* static */
	char *body;                /* malloc'd, len bytes (may be NULL with len 0) */
	size_t len;
};

/* Whether path is one of envd's (the Connect services, or the files endpoint). */
bool envd_route(const char *path);

/* Handles one envd request on t's sandbox named by rq->sandbox_id, for a client holding one of keys (of its owner's). */
void envd_handle(struct serve_table *t, const struct envd_dialer *d, const struct serve_keys *keys,
		 const struct envd_request *rq, struct envd_reply *rp);

/*
 * The same, but a server stream's envelopes are sent on the stream socket fd as they come (a
 * live stream; rp then says 200 with no body); a unary answer, or an error refused before the
 * stream began, is in rp with nothing sent.  A reader gone from fd drops the rest of the output.
 */
void envd_handle_live(struct serve_table *t, const struct envd_dialer *d, const struct serve_keys *keys,
		      const struct envd_request *rq, int fd, struct envd_reply *rp);

/*
 * process.Process/StreamInput, a client stream, fed as its body arrives: open checks the key, the
 * content type and the sandbox (NULL with the error in rp); feed takes the body's bytes in any
 * pieces (envelopes across pieces, each message at most ENVD_INPUT_MSG_MAX): the start message's
 * selector finds the running process on a connection of the call's own, each data message's
 * bytes are written to its stdin (or terminal) before feed returns, keepalives do nothing; the
 * first error drops the rest.  close (rp NULL: the client left) answers StreamInputResponse {}
 * and the stream's end, or the end with the first error, and frees it.
 */
#define ENVD_INPUT_MSG_MAX (1u << 20)
struct envd_instream;
struct envd_instream *envd_instream_open(struct serve_table *t, const struct envd_dialer *d,
					 const struct serve_keys *keys, const struct envd_request *rq,
					 struct envd_reply *rp);
void envd_instream_feed(struct envd_instream *in, const void *buf, size_t n);
void envd_instream_close(struct envd_instream *in, struct envd_reply *rp);
/* Whether path is the client-streaming call (process.Process/StreamInput). */
bool envd_client_streams(const char *path);

/*
 * Ends every CreateWatcher watcher of t and frees what they hold (the daemon's end, before
 * serve_table_free).  A watcher whose sandbox has ended is removed at the next envd call.
 */
void envd_watchers_end(struct serve_table *t);

/* Whether path is a server-streaming call (process.Process/Start, Connect; filesystem.Filesystem/WatchDir). */
bool envd_streams(const char *path);

/* A SendSignal's `signal` (E2B's Signal enum: "SIGNAL_SIGTERM"/15, "SIGNAL_SIGKILL"/9): the signal
 * number, or -EINVAL for anything else (another name or number, a wrong type, absent). */
int envd_signal_parse(json_t *v);

/* A process tag (Start's `tag`, a ProcessSelector's): 0 with *tag, or -EINVAL with *why (not a
 * string, empty, over AGENT_MAX_TAG bytes, a NUL inside). */
int envd_tag_parse(json_t *v, const char **tag, const char **why);

/*
 * Connect's envelopes: flag byte, u32 big-endian length, the message.  Parses the one envelope a
 * unary-request stream (a server-streaming call's request) must be: 0 with *msg and *mlen, or
 * -EPROTO (short, trailing bytes, a compressed or end-of-stream flag), -EMSGSIZE (past max).
 */
int envd_envelope_parse(const uint8_t *p, size_t len, size_t max, const uint8_t **msg, size_t *mlen);
/* Appends an envelope of flag and n bytes to *buf (malloc'd, *len, *cap): 0 or -ENOMEM. */
int envd_envelope_append(char **buf, size_t *len, size_t *cap, uint8_t flag, const void *msg, size_t n);

#define ENVD_FLAG_COMPRESSED 0x01u
#define ENVD_FLAG_END        0x02u

/* The HTTP status Connect maps a code name to ("not_found" -> 404), 500 for an unknown one. */
unsigned envd_code_status(const char *code);

#endif
