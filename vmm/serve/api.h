/*
 * `padcell serve`'s REST API, E2B's control-plane shape: one request (method, path, the
 * X-API-Key header, the body) in, one reply (status, JSON body) out.  No HTTP here: vmm/serve/http.c
 * feeds it from libmicrohttpd, the unit tests call it directly.
 */
#ifndef PADCELL_SERVE_API_H
#define PADCELL_SERVE_API_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/serve/envd.h"
#include "vmm/serve/table.h"

#define SERVE_BODY_MAX     (1u << 20) /* a request body past 1 MiB is refused (413) unread */
#define SERVE_DEFAULT_TIMEOUT 15      /* seconds, E2B's NewSandbox default */
#define SERVE_CLIENT_ID    "padcell"

#define SERVE_QUERY_MAX    32         /* query arguments kept; more: 400 */

/* One query argument, decoded once (as the HTTP layer does): ?metadata=a%3D1 is {"metadata", "a=1"}. */
struct serve_query_arg {
	const char *key;
	const char *value;         /* "" for a key without '=' */
};

struct serve_request {
	const char *method;
	const char *path;          /* without the query string */
	const char *api_key;       /* the X-API-Key header, NULL when absent */
	const char *body;
	size_t len;                /* bytes of body (a longer body than SERVE_BODY_MAX: refused) */
	bool overflow;             /* the body went past what was kept */
	const struct serve_query_arg *query; /* GET /sandboxes' filters: state=running,paused and metadata=k%3Dv */
	size_t nquery;
	bool query_overflow;       /* more than SERVE_QUERY_MAX arguments */
};

struct serve_reply {
	unsigned status;
	char *body;                /* malloc'd JSON, NULL for no content (204) */
};

/* Whether GIVEN is the daemon's key WANT, in time independent of the key's content (REST and envd). */
bool serve_key_ok(const char *want, const char *given);

/* Handles one request against t from a client holding one of keys (compared in constant time). */
void serve_api_handle(struct serve_table *t, const struct serve_keys *keys, const struct serve_request *rq,
		      struct serve_reply *rp);

/* An error reply, E2B's Error schema: {"code": status, "message": msg}. */
void serve_reply_error(struct serve_reply *rp, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * The API key in DIR/api-key: read when it is there (a file of ours: 0600, regular), else
 * made from getrandom and written 0600 (*created set).  0, or -errno with err set.
 */
int serve_key_load(const char *dir, char *key, size_t keylen, bool *created, char *err, size_t errlen);

/*
 * --api-keys FILE: one `NAME KEY` per line (a name as a template's; a key of 16 to SERVE_KEY_MAX-1
 * printable characters without spaces; blank lines and lines beginning with '#' skipped; names and
 * keys unique; at most SERVE_KEYS_MAX), the file a regular one of this user's, mode 0600 (as
 * api-key).  0, or -errno with err naming the file and the line.
 */
int serve_keys_load(const char *path, struct serve_keys *keys, char *err, size_t errlen);

#endif
