/* E2B's envd served by `padcell serve`: Connect's JSON codec and envelopes, each call as agent frames. */
#include "vmm/serve/envd.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/serve/api.h"
#include "vmm/util.h"

#define PROCESS_SVC    "/process.Process/"
#define FILESYSTEM_SVC "/filesystem.Filesystem/"
#define CT_JSON        "application/json"
#define CT_STREAM      "application/connect+json"
#define ENVD_ENV_MAX   256 /* env entries of one command (sandbox's and request's together) */
#define ENVD_ARGS_MAX  1024

/* Connect's code names and the HTTP status each maps to (Connect protocol, "Error codes"). */
static const struct {
	const char *code;
	unsigned status;
} codes[] = {
	{"canceled", 499},          {"unknown", 500},          {"invalid_argument", 400}, {"deadline_exceeded", 504},
	{"not_found", 404},         {"already_exists", 409},   {"permission_denied", 403}, {"resource_exhausted", 429},
	{"failed_precondition", 400}, {"aborted", 409},        {"out_of_range", 400},     {"unimplemented", 501},
	{"internal", 500},          {"unavailable", 503},      {"data_loss", 500},        {"unauthenticated", 401},
};

unsigned envd_code_status(const char *code)
{
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (!strcmp(codes[i].code, code))
			return codes[i].status;
	return 500;
}

bool envd_route(const char *path)
{
	return !strncmp(path, PROCESS_SVC, strlen(PROCESS_SVC)) || !strncmp(path, FILESYSTEM_SVC, strlen(FILESYSTEM_SVC)) ||
	       !strcmp(path, "/files") || !strcmp(path, "/health");
}

bool envd_streams(const char *path)
{
	return !strcmp(path, PROCESS_SVC "Start") || !strcmp(path, PROCESS_SVC "Connect") ||
	       !strcmp(path, FILESYSTEM_SVC "WatchDir");
}

bool envd_client_streams(const char *path)
{
	return !strcmp(path, PROCESS_SVC "StreamInput");
}

int envd_envelope_parse(const uint8_t *p, size_t len, size_t max, const uint8_t **msg, size_t *mlen)
{
	if (len < 5)
		return -EPROTO;
	if (p[0] != 0)
		return -EPROTO; /* compressed (no encoding was negotiated) or end-of-stream from a client */
	uint32_t n = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
	if (n > max)
		return -EMSGSIZE;
	if ((size_t)n != len - 5)
		return -EPROTO; /* short, or more than the one message */
	*msg = p + 5;
	*mlen = n;
	return 0;
}

int envd_envelope_append(char **buf, size_t *len, size_t *cap, uint8_t flag, const void *msg, size_t n)
{
	if (n > UINT32_MAX || *len + 5 + n < *len)
		return -ENOMEM;
	if (*len + 5 + n > *cap) {
		size_t c = *cap ? *cap : 4096;
		while (c < *len + 5 + n)
			c *= 2;
		char *q = realloc(*buf, c);
		if (!q)
			return -ENOMEM;
		*buf = q;
		*cap = c;
	}
	uint8_t *o = (uint8_t *)*buf + *len;
	o[0] = flag;
	o[1] = (uint8_t)(n >> 24);
	o[2] = (uint8_t)(n >> 16);
	o[3] = (uint8_t)(n >> 8);
	o[4] = (uint8_t)n;
	if (n)
		memcpy(o + 5, msg, n);
	*len += 5 + n;
	return 0;
}

/* ---- replies ---- */

static json_t *error_json(const char *code, const char *msg)
{
	return json_pack("{s:s, s:s}", "code", code, "message", msg);
}

static void set_json(struct envd_reply *rp, unsigned status, json_t *j)
{
	rp->status = status;
	rp->content_type = CT_JSON;
	rp->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	rp->len = rp->body ? strlen(rp->body) : 0;
	if (!rp->body)
		rp->status = 500;
	json_decref(j);
}

/* A unary call's error: Connect's status for code and {"code", "message"}. */
static void unary_error(struct envd_reply *rp, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void unary_error(struct envd_reply *rp, const char *code, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	set_json(rp, envd_code_status(code), error_json(code, msg));
}

/* The code an agent call's failure is: the agent's own ERROR by its text, the transport by errno. */
static const char *agent_code(int rc, const char *err)
{
	if (rc == -EIO) {
		if (strstr(err, "No such file") || strstr(err, "not found"))
			return "not_found";
		if (strstr(err, "File exists"))
			return "already_exists";
		if (strstr(err, "Permission denied") || strstr(err, "not permitted"))
			return "permission_denied";
		if (strstr(err, "Not a directory") || strstr(err, "Is a directory") || strstr(err, "not empty"))
			return "failed_precondition";
		/* SEND and RESIZE on a process that cannot take them (procs.c's texts) */
		if (strstr(err, "has no stdin open") || strstr(err, "closed its stdin") || strstr(err, "has exited") ||
		    strstr(err, "has no terminal"))
			return "failed_precondition";
		return "internal";
	}
	if (rc == -ETIMEDOUT)
		return "deadline_exceeded";
	if (rc == -EFBIG)
		return "resource_exhausted";
	if (rc == -EOPNOTSUPP)
		return "unimplemented";
	return "unavailable";
}

/* ---- the real dialer ---- */

static int vsock_dial(void *ctx, const struct serve_sandbox *sb, struct agent_conn *c, char *err, size_t errlen)
{
	(void)ctx;
	int rc = agent_conn_open(c, sb->vsock, AGENT_PORT, ENVD_CONNECT_MS, err, errlen);
	if (rc)
		return rc;
	struct agent_hello h;
	return agent_conn_hello(c, now_ms() + c->reply_ms, &h, err, errlen);
}

const struct envd_dialer envd_vsock_dialer = {.ctx = NULL, .dial = vsock_dial};

/* ---- filesystem.Filesystem ---- */

static const char *entry_type(uint32_t mode)
{
	return S_ISDIR(mode) ? "FILE_TYPE_DIRECTORY" : S_ISREG(mode) ? "FILE_TYPE_FILE" : "FILE_TYPE_UNSPECIFIED";
}

/* E2B's EntryInfo for e found at path (int64 size as a string: proto3's JSON mapping). */
static json_t *entry_json(const struct agent_entry *e, const char *path)
{
	char perm[11], mtime[48], size[24];
	static const char rwx[] = "rwxrwxrwx";
	perm[0] = S_ISDIR(e->mode) ? 'd' : S_ISLNK(e->mode) ? 'L' : '-';
	for (int i = 0; i < 9; i++)
		perm[1 + i] = (e->mode & (0400u >> i)) ? rwx[i] : '-';
	perm[10] = '\0';
	time_t s = (time_t)(e->mtime_ns / 1000000000);
	struct tm tm;
	gmtime_r(&s, &tm);
	strftime(mtime, sizeof(mtime), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(size, sizeof(size), "%llu", (unsigned long long)e->size);
	return json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s}", "name", e->name, "type", entry_type(e->mode), "path", path,
			 "size", size, "mode", (int)(e->mode & 07777), "permissions", perm, "modifiedTime", mtime);
}

/* A required absolute path field of body: the string, or NULL with the reply made. */
static const char *path_field(json_t *body, const char *name, struct envd_reply *rp)
{
	json_t *v = json_object_get(body, name);
	if (!json_is_string(v)) {
		unary_error(rp, "invalid_argument", "'%s' must be a string (an absolute path)", name);
		return NULL;
	}
	const char *p = json_string_value(v);
	if (p[0] != '/' || strlen(p) >= AGENT_MAX_PATH) {
		unary_error(rp, "invalid_argument", "'%s' must be an absolute path shorter than %u bytes", name,
			    AGENT_MAX_PATH);
		return NULL;
	}
	return p;
}

/* The entry at path as {"entry": EntryInfo}, or the reply made. */
static void stat_reply(struct agent_conn *c, const char *path, struct envd_reply *rp)
{
	char err[512];
	struct agent_entry e;
	int rc = agent_conn_stat(c, path, &e, err, sizeof(err));
	if (rc)
		unary_error(rp, agent_code(rc, err), "%s: %s", path, err);
	else
		set_json(rp, 200, json_pack("{s:o}", "entry", entry_json(&e, path)));
}

struct list_acc {
	json_t *arr;
	const char *dir;
};

static int list_each(void *arg, const struct agent_entry *e)
{
	struct list_acc *a = arg;
	char path[AGENT_MAX_PATH + AGENT_MAX_NAME + 2];
	size_t n = strlen(a->dir);
	snprintf(path, sizeof(path), "%s%s%s", a->dir, n && a->dir[n - 1] == '/' ? "" : "/", e->name);
	return json_array_append_new(a->arr, entry_json(e, path)) ? -ENOMEM : 0;
}

static int entry_name_cmp(const void *a, const void *b)
{
	return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
		      json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

/*
 * ListDir to depth levels, as E2B's envd walks: each directory's entries by name, a
 * subdirectory's own entries right after it while levels remain, every entry with its full
 * path, directories listed too, links never followed (the agent's entries are lstat's).
 * Appends to out; -EFBIG past ENVD_LIST_MAX entries in all.
 */
static int list_tree(struct agent_conn *c, const char *dir, uint32_t levels, json_t *out, char *err, size_t errlen)
{
	struct list_acc a = {.arr = json_array(), .dir = dir};
	if (!a.arr)
		return -ENOMEM;
	c->list_max = ENVD_LIST_MAX - (uint32_t)json_array_size(out);
	int rc = agent_conn_list(c, dir, list_each, &a, err, errlen);
	size_t n = json_array_size(a.arr);
	json_t **v = rc || !n ? NULL : malloc(n * sizeof(*v));
	if (!rc && n && !v)
		rc = -ENOMEM;
	for (size_t i = 0; v && i < n; i++)
		v[i] = json_array_get(a.arr, i);
	if (v)
		qsort(v, n, sizeof(*v), entry_name_cmp);
	for (size_t i = 0; !rc && v && i < n; i++) {
		if (json_array_append(out, v[i]))
			rc = -ENOMEM;
		else if (levels > 1 && !strcmp(json_string_value(json_object_get(v[i], "type")), "FILE_TYPE_DIRECTORY"))
			rc = list_tree(c, json_string_value(json_object_get(v[i], "path")), levels - 1, out, err, errlen);
	}
	free(v);
	json_decref(a.arr);
	return rc;
}

static void filesystem_call(struct agent_conn *c, const char *method, json_t *body, struct envd_reply *rp)
{
	char err[512];
	const char *p, *q;
	int rc;
	if (!strcmp(method, "Stat")) {
		if ((p = path_field(body, "path", rp)))
			stat_reply(c, p, rp);
	} else if (!strcmp(method, "ListDir")) {
		json_t *depth = json_object_get(body, "depth");
		if (!(p = path_field(body, "path", rp)))
			return;
		if (depth && !json_is_null(depth) && (!json_is_integer(depth) || json_integer_value(depth) < 0)) {
			unary_error(rp, "invalid_argument", "'depth' must be a non-negative integer");
			return;
		}
		/* E2B's default: 0 (or none) is 1, this directory's entries */
		json_int_t levels = depth && json_integer_value(depth) > 0 ? json_integer_value(depth) : 1;
		json_t *out = json_array();
		rc = out ? list_tree(c, p, levels > UINT32_MAX ? UINT32_MAX : (uint32_t)levels, out, err, sizeof(err))
			 : -ENOMEM;
		if (rc == -EFBIG)
			unary_error(rp, "resource_exhausted", "%s holds more than %u entries to depth %lld (the bound of one "
							       "ListDir): list a smaller tree", p, ENVD_LIST_MAX, (long long)levels);
		else if (rc)
			unary_error(rp, agent_code(rc, err), "%s: %s", p, err);
		else
			set_json(rp, 200, json_pack("{s:O}", "entries", out));
		json_decref(out);
	} else if (!strcmp(method, "MakeDir")) {
		if (!(p = path_field(body, "path", rp)))
			return;
		if ((rc = agent_conn_mkdir(c, p, 0755, true, err, sizeof(err))))
			unary_error(rp, agent_code(rc, err), "%s: %s", p, err);
		else
			stat_reply(c, p, rp);
	} else if (!strcmp(method, "Move")) {
		if (!(p = path_field(body, "source", rp)) || !(q = path_field(body, "destination", rp)))
			return;
		if ((rc = agent_conn_move(c, p, q, err, sizeof(err))))
			unary_error(rp, agent_code(rc, err), "%s -> %s: %s", p, q, err);
		else
			stat_reply(c, q, rp);
	} else if (!strcmp(method, "Remove")) {
		if (!(p = path_field(body, "path", rp)))
			return;
		if ((rc = agent_conn_remove(c, p, true, err, sizeof(err))))
			unary_error(rp, agent_code(rc, err), "%s: %s", p, err);
		else
			set_json(rp, 200, json_object());
	} else {
		unary_error(rp, "unimplemented", "filesystem.Filesystem/%s is not served by padcell", method);
	}
}

/* ---- process.Process/Start: a server stream ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* bytes as base64 (proto3's JSON for bytes) into out (4 * ((n + 2) / 3) + 1 bytes). */
static void base64(const uint8_t *p, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? b64[v & 63] : '=';
	}
	out[o] = '\0';
}

struct stream {
	int fd;        /* >= 0: envelopes are sent there as they come (a live stream), else kept in buf */
	bool broken;   /* the live stream's reader went away: the rest is dropped */
	char *buf;
	size_t len, cap;
	bool dropped;  /* output past ENVD_STREAM_MAX was read and not kept */
	bool oom;
};

/* On a live stream: the envelope just appended to buf is sent, and buf emptied. */
static void stream_flush(struct stream *s)
{
	if (s->fd < 0)
		return;
	size_t off = 0;
	while (!s->broken && off < s->len) {
		ssize_t n = send(s->fd, s->buf + off, s->len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			s->broken = true; /* the client is gone; the command still runs to its end or timeout */
		else
			off += (size_t)n;
	}
	s->len = 0;
}

/* One message of the stream (j is taken). */
static void stream_msg(struct stream *s, json_t *j)
{
	char *m = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!m || envd_envelope_append(&s->buf, &s->len, &s->cap, 0, m, strlen(m)))
		s->oom = true;
	free(m);
	stream_flush(s);
}

/* A ProcessEvent message: {"event": ev} (ev is taken). */
static void stream_event(struct stream *s, json_t *ev)
{
	stream_msg(s, json_pack("{s:o}", "event", ev));
}

/* The stream's reader: both pipes' output as DataEvents, in the order it comes, until both close. */
struct pump {
	struct stream *s;
	int fd[2];
	bool pty; /* a terminal's output (all of it on fd[0]) is DataEvent's `pty`, not `stdout` */
};

static void *pump_run(void *arg)
{
	struct pump *pu = arg;
	const char *names[2] = {pu->pty ? "pty" : "stdout", "stderr"};
	uint8_t chunk[16384];
	char enc[4 * (sizeof(chunk) + 2) / 3 + 1];
	int open_n = 2;
	while (open_n) {
		struct pollfd pf[2] = {{.fd = pu->fd[0], .events = POLLIN}, {.fd = pu->fd[1], .events = POLLIN}};
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (pu->fd[i] < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(pu->fd[i], chunk, sizeof(chunk));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(pu->fd[i]);
				pu->fd[i] = -1;
				open_n--;
				continue;
			}
			if (pu->s->broken || pu->s->dropped || pu->s->len + 4 * (size_t)n / 3 + 64 > ENVD_STREAM_MAX) {
				pu->s->dropped = true;
				continue;
			}
			base64(chunk, (size_t)n, enc);
			stream_event(pu->s, json_pack("{s:{s:s}}", "data", names[i], enc));
		}
	}
	return NULL;
}

/* The env of a command: the sandbox's envVars, then the request's envs on top ("NAME=VALUE"). */
static int env_build(json_t *sandbox_env, json_t *req_env, char ***out)
{
	size_t n = json_object_size(sandbox_env) + json_object_size(req_env);
	if (n > ENVD_ENV_MAX)
		return -E2BIG;
	char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	size_t k = 0;
	json_t *maps[2] = {sandbox_env, req_env};
	for (int m = 0; m < 2; m++) {
		const char *name;
		json_t *val;
		json_object_foreach(maps[m], name, val) {
			if (m == 0 && json_object_get(req_env, name))
				continue; /* the request's value wins */
			if (asprintf(&v[k], "%s=%s", name, json_string_value(val)) < 0) {
				v[k] = NULL;
				goto err_free;
			}
			k++;
		}
	}
	*out = v;
	return 0;
err_free:
	for (size_t i = 0; i < k; i++)
		free(v[i]);
	free(v);
	return -ENOMEM;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* An object of strings (envs): NULL when fine. */
static bool string_map(json_t *o)
{
	if (!json_is_object(o))
		return false;
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
		if (!json_is_string(v) || !*k || strchr(k, '='))
			return false;
	return true;
}

/*
 * E2B's PTY message ({"size": {"cols": C, "rows": R}}, uint32s) as a window size the agent takes
 * (each 1..AGENT_MAX_WINSZ); no size leaves 0x0 (the agent's 24x80) when size_optional.  0 or -EINVAL.
 */
static int pty_size(json_t *pty, bool size_optional, uint16_t *rows, uint16_t *cols)
{
	*rows = *cols = 0;
	if (!json_is_object(pty))
		return -EINVAL;
	json_t *size = json_object_get(pty, "size");
	if (!size || json_is_null(size))
		return size_optional ? 0 : -EINVAL;
	json_t *v[2] = {json_object_get(size, "rows"), json_object_get(size, "cols")};
	uint16_t *out[2] = {rows, cols};
	for (int i = 0; i < 2; i++) {
		if (!json_is_integer(v[i]) || json_integer_value(v[i]) < 1 || json_integer_value(v[i]) > AGENT_MAX_WINSZ)
			return -EINVAL;
		*out[i] = (uint16_t)json_integer_value(v[i]);
	}
	return 0;
}

/*
 * proto3's JSON for bytes: base64, standard or URL-safe alphabet, padding optional.  Decodes s
 * into a malloc'd *out (*len bytes; NULL for none): 0, -EINVAL for anything else, -ENOMEM.
 */
static int unbase64(const char *s, uint8_t **out, size_t *len)
{
	size_t n = strlen(s), pad = 0;
	while (n && s[n - 1] == '=' && pad < 2)
		n--, pad++;
	if (n % 4 == 1 || (pad && (n + pad) % 4))
		return -EINVAL;
	uint8_t *o = malloc(n / 4 * 3 + 3);
	if (!o)
		return -ENOMEM;
	size_t k = 0;
	uint32_t v = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i], d;
		if (c >= 'A' && c <= 'Z')
			d = c - 'A';
		else if (c >= 'a' && c <= 'z')
			d = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			d = c - '0' + 52;
		else if (c == '+' || c == '-')
			d = 62;
		else if (c == '/' || c == '_')
			d = 63;
		else {
			free(o);
			return -EINVAL;
		}
		v = v << 6 | (uint32_t)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			o[k++] = (uint8_t)(v >> bits);
		}
	}
	*out = k ? o : (free(o), NULL);
	*len = k;
	return 0;
}

/* The stream's end: {} or {"error": ...}, then the reply (a stream's status is 200 even for an error). */
static void stream_end(struct stream *s, const char *code, const char *msg, struct envd_reply *rp)
{
	json_t *end = code ? json_pack("{s:o}", "error", error_json(code, msg)) : json_object();
	char *m = json_dumps(end, JSON_COMPACT);
	json_decref(end);
	if (!m || s->oom || envd_envelope_append(&s->buf, &s->len, &s->cap, ENVD_FLAG_END, m, strlen(m))) {
		free(m);
		free(s->buf);
		unary_error(rp, "resource_exhausted", "out of memory for the reply");
		return;
	}
	free(m);
	stream_flush(s);
	rp->status = 200;
	rp->content_type = CT_STREAM;
	if (s->fd >= 0) {
		free(s->buf); /* all of it was sent */
		return;
	}
	rp->body = s->buf;
	rp->len = s->len;
}

/*
 * What cuts a process stream's wait short, as the agent connection's one abort fd: an epoll fd
 * holding the live reader's socket (readable: the client left) and a timerfd at the call's
 * deadline.  Which one fired is read back from the timerfd.
 */
struct stream_stop {
	int ep, timer;
};

static int stream_stop_open(struct stream_stop *st, int reader_fd, uint32_t timeout_ms)
{
	st->ep = epoll_create1(EPOLL_CLOEXEC);
	st->timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	struct itimerspec its = {.it_value = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000}};
	struct epoll_event ev = {.events = EPOLLIN};
	if (st->ep < 0 || st->timer < 0 || timerfd_settime(st->timer, 0, &its, NULL) ||
	    epoll_ctl(st->ep, EPOLL_CTL_ADD, st->timer, &ev) ||
	    (reader_fd >= 0 && epoll_ctl(st->ep, EPOLL_CTL_ADD, reader_fd, &(struct epoll_event){.events = EPOLLIN}))) {
		int e = errno;
		if (st->ep >= 0)
			close(st->ep);
		if (st->timer >= 0)
			close(st->timer);
		return -e;
	}
	return 0;
}

static bool stream_stop_timed_out(const struct stream_stop *st)
{
	uint64_t n = 0;
	return read(st->timer, &n, sizeof(n)) == (ssize_t)sizeof(n) && n > 0;
}

static void stream_stop_close(struct stream_stop *st)
{
	close(st->ep);
	close(st->timer);
}

/* Signals process id of sb's agent on a connection of its own (the stream's is mid-ATTACH). */
static void process_kill_aside(const struct envd_dialer *d, const struct serve_sandbox *sb, uint32_t id, int sig)
{
	struct agent_conn k;
	char err[512];
	agent_conn_init(&k, -1, -1, -1);
	if (!d->dial(d->ctx, sb, &k, err, sizeof(err)))
		agent_conn_kill(&k, id, sig, err, sizeof(err));
	if (k.fd >= 0)
		close(k.fd);
}

/*
 * Streams process id (guest pid) as envd's ProcessEvents: start, its output as data, end with
 * its exit; the stream's end after that.  The wait ends early at the deadline (timeout_ms) or
 * when the live reader leaves; `owned` (Start) then kills the process, as a command lives no
 * longer than its call, while Connect's process goes on.
 */
static void process_stream(struct agent_conn *c, const struct envd_dialer *d, const struct serve_sandbox *sb,
			   uint32_t id, uint32_t pid, uint32_t timeout_ms, bool owned, bool pty, struct stream *s,
			   struct envd_reply *rp)
{
	int pipes[2][2] = {{-1, -1}, {-1, -1}};
	struct stream_stop st;
	if (stream_stop_open(&st, s->fd, timeout_ms)) {
		if (owned)
			process_kill_aside(d, sb, id, SIGKILL);
		stream_end(s, "resource_exhausted", "cannot make the call's deadline timer", rp);
		return;
	}
	if (pipe2(pipes[0], O_CLOEXEC) || pipe2(pipes[1], O_CLOEXEC)) {
		if (owned)
			process_kill_aside(d, sb, id, SIGKILL);
		stream_end(s, "resource_exhausted", "cannot make pipes for the output", rp);
		goto out;
	}
	stream_event(s, json_pack("{s:{s:I}}", "start", "pid", (json_int_t)pid));
	struct pump pu = {.s = s, .fd = {pipes[0][0], pipes[1][0]}, .pty = pty};
	pipes[0][0] = pipes[1][0] = -1;
	pthread_t th;
	if (pthread_create(&th, NULL, pump_run, &pu)) {
		close(pu.fd[0]);
		close(pu.fd[1]);
		if (owned)
			process_kill_aside(d, sb, id, SIGKILL);
		stream_end(s, "resource_exhausted", "cannot start the output reader", rp);
		goto out;
	}
	struct agent_attach_result res;
	char err[512];
	c->abort_fd = st.ep;
	int rc = agent_conn_attach(c, id, pipes[0][1], pipes[1][1], &res, err, sizeof(err));
	close(pipes[0][1]);
	close(pipes[1][1]);
	pipes[0][1] = pipes[1][1] = -1;
	pthread_join(th, NULL);
	bool timed_out = rc == -ECONNABORTED && stream_stop_timed_out(&st);
	if (rc == -ECONNABORTED && owned)
		process_kill_aside(d, sb, id, SIGKILL);
	if (timed_out) {
		stream_end(s, "deadline_exceeded",
			   owned ? "the command ran past its timeout and was killed" : "the call ran past its timeout", rp);
	} else if (rc == -ECONNABORTED) {
		stream_end(s, "canceled", "the client left", rp);
	} else if (rc) {
		stream_end(s, agent_code(rc, err), err, rp);
	} else {
		char status[64];
		if (res.how == AGENT_EXITED)
			snprintf(status, sizeof(status), "exit status %d", res.code);
		else
			snprintf(status, sizeof(status), "signal: %s", strsignal(res.code));
		json_t *end = json_pack("{s:i, s:b, s:s}", "exitCode", res.how == AGENT_EXITED ? res.code : -1, "exited",
					res.how == AGENT_EXITED, "status", status);
		if (s->dropped)
			json_object_set_new(end, "error", json_string("output past the reply's bound was dropped"));
		else if (res.gap[0] || res.gap[1])
			json_object_set_new(end, "error", json_string("output the agent could not keep was dropped"));
		stream_event(s, json_pack("{s:o}", "end", end));
		stream_end(s, NULL, NULL, rp);
	}
out:
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++)
			if (pipes[i][j] >= 0)
				close(pipes[i][j]);
	stream_stop_close(&st);
}

/*
 * process.Process/Start: the command as one of the agent's kept processes (START, then ATTACH on
 * the same connection), so its guest pid is real and SendSignal, List and Connect can name it.
 */
static void process_start(struct agent_conn *c, const struct envd_dialer *d, const struct serve_sandbox *sb,
			  json_t *body, uint32_t timeout_ms, int fd, struct envd_reply *rp)
{
	struct stream s = {.fd = fd};
	json_t *proc = json_object_get(body, "process"), *cmd = json_object_get(proc, "cmd");
	json_t *args = json_object_get(proc, "args"), *envs = json_object_get(proc, "envs");
	json_t *cwd = json_object_get(proc, "cwd"), *pty = json_object_get(body, "pty");
	json_t *stdin_ = json_object_get(body, "stdin"), *tag = json_object_get(body, "tag");
	if (!json_is_object(proc) || !json_is_string(cmd) || !*json_string_value(cmd)) {
		stream_end(&s, "invalid_argument", "'process.cmd' must be a non-empty string", rp);
		return;
	}
	if (args && !json_is_null(args) && (!json_is_array(args) || json_array_size(args) > ENVD_ARGS_MAX)) {
		stream_end(&s, "invalid_argument", "'process.args' must be an array of strings", rp);
		return;
	}
	if (envs && !json_is_null(envs) && !string_map(envs)) {
		stream_end(&s, "invalid_argument", "'process.envs' must map names (no '=') to strings", rp);
		return;
	}
	if (cwd && !json_is_null(cwd) && (!json_is_string(cwd) || json_string_value(cwd)[0] != '/')) {
		stream_end(&s, "invalid_argument", "'process.cwd' must be an absolute path", rp);
		return;
	}
	uint16_t rows = 0, cols = 0;
	bool with_pty = pty && !json_is_null(pty);
	if (with_pty && pty_size(pty, true, &rows, &cols)) {
		stream_end(&s, "invalid_argument", "'pty' must be {\"size\": {\"cols\": N, \"rows\": N}} (1..4096 each)", rp);
		return;
	}
	if (stdin_ && !json_is_null(stdin_) && !json_is_boolean(stdin_)) {
		stream_end(&s, "invalid_argument", "'stdin' must be a boolean", rp);
		return;
	}
	const char *why, *tag_s = NULL;
	if (tag && !json_is_null(tag) && envd_tag_parse(tag, &tag_s, &why)) {
		stream_end(&s, "invalid_argument", why, rp);
		return;
	}
	size_t nargs = json_array_size(args);
	const char **argv = calloc(nargs + 2, sizeof(*argv));
	char **envv = NULL;
	if (!argv) {
		stream_end(&s, "resource_exhausted", "out of memory", rp);
		return;
	}
	argv[0] = json_string_value(cmd);
	for (size_t i = 0; i < nargs; i++) {
		json_t *a = json_array_get(args, i);
		if (!json_is_string(a)) {
			stream_end(&s, "invalid_argument", "'process.args' must be an array of strings", rp);
			goto out_argv;
		}
		argv[i + 1] = json_string_value(a);
	}
	int rc = env_build(sb->env, json_is_object(envs) ? envs : NULL, &envv);
	if (rc) {
		stream_end(&s, "invalid_argument", rc == -E2BIG ? "too many environment variables" : "out of memory", rp);
		goto out_argv;
	}
	struct agent_start_req req = {
		.exec = {.argv = (char *const *)argv, .env = envv,
			 .cwd = json_is_string(cwd) ? json_string_value(cwd) : NULL, .stdin_fd = -1},
		/* stdin stays open for SendInput and CloseStdin; a terminal's always is */
		.pty = with_pty, .keep_stdin = with_pty || json_is_true(stdin_), .rows = rows, .cols = cols, .tag = tag_s,
	};
	uint32_t id, pid;
	char err[512];
	rc = agent_conn_start(c, &req, &id, &pid, err, sizeof(err));
	if (rc)
		stream_end(&s, strstr(err, "tag is in use") ? "already_exists" : agent_code(rc, err), err, rp);
	else
		process_stream(c, d, sb, id, pid, timeout_ms, true, req.pty, &s, rp);
out_argv:
	strv_free(envv);
	free(argv);
}

/* ---- process.Process: the unary calls and Connect, on the agent's process table ---- */

/* The signal of a SendSignal: E2B's Signal enum by name or number, as a host signal number. */
int envd_signal_parse(json_t *v)
{
	static const struct {
		const char *name;
		int num;
	} sigs[] = {{"SIGNAL_SIGTERM", 15}, {"SIGNAL_SIGKILL", 9}};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if ((json_is_string(v) && !strcmp(json_string_value(v), sigs[i].name)) ||
		    (json_is_integer(v) && json_integer_value(v) == sigs[i].num))
			return sigs[i].num;
	return -EINVAL;
}

int envd_tag_parse(json_t *v, const char **tag, const char **why)
{
	*why = "'tag' must be a string of 1 to 64 bytes (no NUL)";
	if (!json_is_string(v))
		return -EINVAL;
	const char *t = json_string_value(v);
	size_t n = json_string_length(v);
	if (!agent_tag_ok(t, n) || strlen(t) != n)
		return -EINVAL;
	*tag = t;
	return 0;
}

/* How a call names its process: E2B's ProcessSelector, one of pid and tag. */
struct proc_sel {
	uint32_t pid;                /* 0 when by tag */
	char tag[AGENT_MAX_TAG + 1];
};

struct proc_find {
	const struct proc_sel *sel;
	bool ended;   /* finding: an ended process not yet collected counts too (Connect streams its end) */
	json_t *list; /* List's processes, or NULL when finding */
	struct agent_proc found; /* the match (found.id 0: none); a running one is preferred */
};

/* n bytes from the agent as a JSON string: invalid UTF-8 (a hostile agent's) shown as '?' each. */
static json_t *agent_text(const char *p, size_t n)
{
	json_t *j = json_stringn(p, n);
	if (j || !n)
		return j;
	char *q = malloc(n);
	if (!q)
		return NULL;
	for (size_t i = 0; i < n; i++)
		q[i] = (unsigned char)p[i] < 0x80 ? p[i] : '?';
	j = json_stringn(q, n);
	free(q);
	return j;
}

/* E2B's ProcessConfig of an entry: cmd and args as started (the agent's argv, NUL-separated). */
static json_t *proc_config(const struct agent_proc *p)
{
	json_t *args = json_array(), *cfg = json_object();
	size_t off = 0;
	bool first = true;
	while (off < p->argv_len) {
		size_t n = strnlen(p->argv + off, p->argv_len - off);
		json_t *a = agent_text(p->argv + off, n);
		if (first)
			json_object_set_new(cfg, "cmd", a ? a : json_string(""));
		else if (a)
			json_array_append_new(args, a);
		first = false;
		off += n + 1;
	}
	json_object_set_new(cfg, "args", args);
	json_object_set_new(cfg, "envs", json_object());
	return cfg;
}

static int proc_each(void *arg, const struct agent_proc *p)
{
	struct proc_find *f = arg;
	bool running = p->state == AGENT_PROC_RUNNING;
	if (!running && (f->list || !f->ended))
		return 0; /* ended and not yet collected: not a running command for E2B */
	if (f->list) {
		json_t *e = json_pack("{s:o, s:I}", "config", proc_config(p), "pid", (json_int_t)p->pid);
		json_t *tag = p->tag[0] ? agent_text(p->tag, strlen(p->tag)) : NULL;
		if (e && tag)
			json_object_set_new(e, "tag", tag);
		return json_array_append_new(f->list, e) ? -ENOMEM : 0;
	}
	if (f->sel->pid ? p->pid != f->sel->pid : strcmp(p->tag, f->sel->tag))
		return 0;
	if (!f->found.id || (running && f->found.state != AGENT_PROC_RUNNING) ||
	    (running == (f->found.state == AGENT_PROC_RUNNING) && p->id > f->found.id))
		f->found = *p; /* a running one, else the newest ended one */
	return 0;
}

/* The agent's entry of the selected process (running, or also ended): 0 with *out, -ENOENT, or the agent's failure. */
static int proc_find(struct agent_conn *c, const struct proc_sel *sel, bool ended, struct agent_proc *out, char *err,
		     size_t errlen)
{
	struct proc_find f = {.sel = sel, .ended = ended};
	int rc = agent_conn_ps(c, proc_each, &f, err, errlen);
	if (rc)
		return rc;
	if (!f.found.id) {
		if (sel->pid)
			snprintf(err, errlen, "no %sprocess with pid %u", ended ? "" : "running ", sel->pid);
		else
			snprintf(err, errlen, "no %sprocess with that tag", ended ? "" : "running ");
		return -ENOENT;
	}
	*out = f.found;
	return 0;
}

/* What a call on one process carries besides its selector, checked before the agent is dialled. */
struct proc_args {
	struct proc_sel sel;
	int sig;              /* SendSignal's */
	bool resize;          /* Update's: a PTY size was given */
	uint16_t rows, cols;
	uint8_t *input;       /* SendInput's bytes (malloc'd; NULL for none) */
	size_t input_len;
};

/* SendInput's `input`, a ProcessInput: one of `stdin` or `pty`, base64 bytes.  0, or -EINVAL/-ENOMEM with *why. */
static int input_parse(json_t *input, struct proc_args *a, const char **why)
{
	json_t *in = json_object_get(input, "stdin"), *pty = json_object_get(input, "pty");
	*why = "'input' must hold one of 'stdin' or 'pty' (base64 bytes)";
	if (!json_is_object(input) || json_object_size(input) != 1 || (!in && !pty))
		return -EINVAL;
	json_t *v = in ? in : pty;
	*why = "'input.stdin' / 'input.pty' must be a base64 string";
	if (!json_is_string(v))
		return -EINVAL;
	int rc = unbase64(json_string_value(v), &a->input, &a->input_len);
	*why = rc == -ENOMEM ? "out of memory for the input" : "'input.stdin' / 'input.pty' is not valid base64";
	return rc;
}

/*
 * The arguments of the calls on one process (Connect, SendSignal, SendInput, CloseStdin, Update):
 * the pid of the ProcessSelector ({"pid": N}), SendSignal's signal, SendInput's bytes, Update's
 * PTY size.  NULL, or the Connect code with *why (a->input freed).
 */
static const char *process_args(const char *method, json_t *body, struct proc_args *a, const char **why)
{
	memset(a, 0, sizeof(*a));
	if (!strcmp(method, "List") || !strcmp(method, "Start"))
		return NULL; /* List takes nothing; Start is checked as it starts */
	json_t *proc = json_object_get(body, "process");
	json_t *p = json_object_get(proc, "pid"), *tag = json_object_get(proc, "tag");
	if (p && json_is_null(p))
		p = NULL;
	if (tag && json_is_null(tag))
		tag = NULL;
	*why = "'process' must be a ProcessSelector: one of 'pid' (a positive integer) or 'tag' (a string)";
	if (!json_is_object(proc) || !p == !tag)
		return "invalid_argument";
	if (tag) {
		const char *t;
		if (envd_tag_parse(tag, &t, why))
			return "invalid_argument";
		memcpy(a->sel.tag, t, strlen(t) + 1);
	} else if (!json_is_integer(p) || json_integer_value(p) <= 0 || json_integer_value(p) > UINT32_MAX) {
		*why = "'process.pid' must be a positive integer";
		return "invalid_argument";
	} else {
		a->sel.pid = (uint32_t)json_integer_value(p);
	}
	if (!strcmp(method, "SendSignal") && (a->sig = envd_signal_parse(json_object_get(body, "signal"))) < 0) {
		*why = "'signal' must be SIGNAL_SIGTERM or SIGNAL_SIGKILL";
		return "invalid_argument";
	}
	int rc = strcmp(method, "SendInput") ? 0 : input_parse(json_object_get(body, "input"), a, why);
	if (rc)
		return rc == -ENOMEM ? "resource_exhausted" : "invalid_argument"; /* a->input is NULL */
	json_t *pty = json_object_get(body, "pty");
	if (!strcmp(method, "Update") && pty && !json_is_null(pty)) {
		if (pty_size(pty, false, &a->rows, &a->cols)) {
			*why = "'pty' must be {\"size\": {\"cols\": N, \"rows\": N}} (1..4096 each)";
			return "invalid_argument";
		}
		a->resize = true;
	}
	return NULL;
}

/* SendInput's bytes to process id's stdin (or terminal), in frames the agent takes. */
static int process_send(struct agent_conn *c, uint32_t id, const struct proc_args *a, char *err, size_t errlen)
{
	for (size_t off = 0; off < a->input_len;) {
		size_t n = a->input_len - off < AGENT_MAX_PAYLOAD - 4 ? a->input_len - off : AGENT_MAX_PAYLOAD - 4;
		int rc = agent_conn_send(c, id, a->input + off, n, err, errlen);
		if (rc)
			return rc;
		off += n;
	}
	return 0;
}

/* List, and the calls on one running process (Connect also on an ended one), on sb's agent. */
static void process_call(struct agent_conn *c, const struct envd_dialer *d, const struct serve_sandbox *sb,
			 const char *method, const struct proc_args *a, uint32_t timeout_ms, int fd,
			 struct envd_reply *rp)
{
	char err[512];
	uint32_t id;
	int rc;
	if (!strcmp(method, "List")) {
		struct proc_find f = {.list = json_array(), .sel = &a->sel};
		if ((rc = agent_conn_ps(c, proc_each, &f, err, sizeof(err)))) {
			json_decref(f.list);
			unary_error(rp, agent_code(rc, err), "%s", err);
		} else {
			set_json(rp, 200, json_pack("{s:o}", "processes", f.list));
		}
		return;
	}
	bool stream = !strcmp(method, "Connect");
	struct stream s = {.fd = fd};
	struct agent_proc found = {0};
	rc = proc_find(c, &a->sel, stream, &found, err, sizeof(err));
	id = found.id;
	if (!rc && stream) {
		/* a terminal's output is all stdout to the agent, and `pty` data to E2B */
		process_stream(c, d, sb, id, found.pid, timeout_ms, false, found.flags & AGENT_PROC_PTY, &s, rp);
		return;
	}
	if (!rc && !strcmp(method, "SendSignal"))
		rc = agent_conn_kill(c, id, a->sig, err, sizeof(err));
	else if (!rc && !strcmp(method, "SendInput"))
		rc = process_send(c, id, a, err, sizeof(err)); /* no bytes: nothing to do (a SEND of none would close) */
	else if (!rc && !strcmp(method, "CloseStdin"))
		rc = agent_conn_send(c, id, NULL, 0, err, sizeof(err));
	else if (!rc && a->resize)
		rc = agent_conn_resize(c, id, a->rows, a->cols, err, sizeof(err)); /* Update: a PTY size is all it changes */
	if (!rc)
		set_json(rp, 200, json_object());
	else if (stream)
		stream_end(&s, rc == -ENOENT ? "not_found" : agent_code(rc, err), err, rp);
	else
		unary_error(rp, rc == -ENOENT ? "not_found" : agent_code(rc, err), "%s", err);
}

/* The caller's key: the access token first (what create answered), else an API key; NULL with the reply made. */
static const struct serve_key *request_key(const struct serve_keys *keys, const struct envd_request *rq,
					   struct envd_reply *rp)
{
	const struct serve_key *key = serve_keys_find(keys, rq->token);
	if (!key)
		key = serve_keys_find(keys, rq->api_key);
	if (!key)
		unary_error(rp, "unauthenticated", "missing or wrong access token (X-Access-Token)");
	return key;
}

/* ---- process.Process/StreamInput: a client stream ---- */

/*
 * The call's state while its request envelopes arrive: the envelope being assembled (its 5-byte
 * prefix, then its message, each at most ENVD_INPUT_MSG_MAX), the agent connection once the
 * start message has named the process, and the first error, after which the rest of the body is
 * read and dropped (the answer is given at the end, as a unary call's is).
 */
struct envd_instream {
	struct serve_sandbox sb;
	const struct envd_dialer *d;
	struct agent_conn c;
	bool started;        /* the start message came and its process was found */
	uint32_t id;         /* the agent's id of that process */
	uint8_t pre[5];
	size_t pre_got;
	uint8_t *msg;        /* the message being assembled: msg_len bytes of msg_got */
	size_t msg_len, msg_got;
	uint64_t messages;
	const char *code;    /* the first error: its Connect code (static) and message */
	char why[600];
};

static void instream_fail(struct envd_instream *in, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void instream_fail(struct envd_instream *in, const char *code, const char *fmt, ...)
{
	if (in->code)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(in->why, sizeof(in->why), fmt, ap);
	va_end(ap);
	in->code = code;
}

/* One request message: StreamInputRequest, one of start {process}, data {input}, keepalive {}. */
static void instream_message(struct envd_instream *in, const uint8_t *m, size_t n)
{
	json_error_t je;
	json_t *j = json_loadb((const char *)m, n, JSON_REJECT_DUPLICATES, &je);
	json_t *start = json_object_get(j, "start"), *data = json_object_get(j, "data");
	json_t *keep = json_object_get(j, "keepalive");
	char err[512];
	in->messages++;
	if (!json_is_object(j) || json_object_size(j) != 1 || !(start || data || keep)) {
		instream_fail(in, "invalid_argument", "message %llu must be one of 'start', 'data' or 'keepalive'",
			      (unsigned long long)in->messages);
	} else if (keep) {
		/* nothing to do: it kept the connection alive */
	} else if (start && in->started) {
		instream_fail(in, "invalid_argument", "a second 'start' message");
	} else if (start) {
		struct proc_args a;
		const char *why, *bad = process_args("StreamInput", start, &a, &why);
		struct agent_proc found = {0};
		int rc;
		if (bad) {
			instream_fail(in, bad, "start: %s", why);
		} else if ((rc = in->d->dial(in->d->ctx, &in->sb, &in->c, err, sizeof(err)))) {
			instream_fail(in, "unavailable", "sandbox %s's agent does not answer: %s", in->sb.id, err);
		} else if ((rc = proc_find(&in->c, &a.sel, false, &found, err, sizeof(err)))) {
			instream_fail(in, rc == -ENOENT ? "not_found" : agent_code(rc, err), "%s", err);
		} else {
			in->started = true;
			in->id = found.id;
		}
	} else if (!in->started) {
		instream_fail(in, "invalid_argument", "'data' before 'start' (the first message names the process)");
	} else {
		struct proc_args a = {0};
		const char *why;
		int rc = input_parse(json_object_get(data, "input"), &a, &why);
		if (rc)
			instream_fail(in, rc == -ENOMEM ? "resource_exhausted" : "invalid_argument", "data: %s", why);
		else if ((rc = process_send(&in->c, in->id, &a, err, sizeof(err))))
			instream_fail(in, agent_code(rc, err), "%s", err);
		free(a.input);
	}
	json_decref(j);
}

void envd_instream_feed(struct envd_instream *in, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n && !in->code) {
		if (in->pre_got < sizeof(in->pre)) {
			size_t k = sizeof(in->pre) - in->pre_got < n ? sizeof(in->pre) - in->pre_got : n;
			memcpy(in->pre + in->pre_got, p, k);
			in->pre_got += k;
			p += k;
			n -= k;
			if (in->pre_got < sizeof(in->pre))
				return;
			uint32_t len = (uint32_t)in->pre[1] << 24 | (uint32_t)in->pre[2] << 16 | (uint32_t)in->pre[3] << 8 |
				       in->pre[4];
			if (in->pre[0] != 0) {
				instream_fail(in, "invalid_argument", "envelope %llu: flag 0x%02x (compressed or end-of-stream)",
					      (unsigned long long)in->messages + 1, in->pre[0]);
				return;
			}
			if (len > ENVD_INPUT_MSG_MAX) {
				instream_fail(in, "resource_exhausted", "envelope %llu: %u bytes, over the bound of %u",
					      (unsigned long long)in->messages + 1, len, ENVD_INPUT_MSG_MAX);
				return;
			}
			in->msg = malloc(len ? len : 1);
			if (!in->msg) {
				instream_fail(in, "resource_exhausted", "out of memory for an envelope");
				return;
			}
			in->msg_len = len;
			in->msg_got = 0;
		}
		size_t k = in->msg_len - in->msg_got < n ? in->msg_len - in->msg_got : n;
		memcpy(in->msg + in->msg_got, p, k);
		in->msg_got += k;
		p += k;
		n -= k;
		if (in->msg_got == in->msg_len) {
			instream_message(in, in->msg, in->msg_len);
			free(in->msg);
			in->msg = NULL;
			in->pre_got = 0;
		}
	}
}

/* The call's checks before any envelope: the key, the content type, the sandbox (as envd_handle's). */
struct envd_instream *envd_instream_open(struct serve_table *t, const struct envd_dialer *d,
					 const struct serve_keys *keys, const struct envd_request *rq,
					 struct envd_reply *rp)
{
	memset(rp, 0, sizeof(*rp));
	const struct serve_key *key = request_key(keys, rq, rp);
	if (!key)
		return NULL;
	if (strcmp(rq->method, "POST")) {
		unary_error(rp, "unimplemented", "%s is not allowed on %s", rq->method, rq->path);
		return NULL;
	}
	if (!rq->content_type || strncmp(rq->content_type, CT_STREAM, strlen(CT_STREAM))) {
		set_json(rp, 415, error_json("unknown", "a client stream takes Content-Type application/connect+json"));
		return NULL;
	}
	struct envd_instream *in = calloc(1, sizeof(*in));
	if (!in) {
		unary_error(rp, "resource_exhausted", "out of memory");
		return NULL;
	}
	if (!rq->sandbox_id || serve_get_owned(t, key->name, rq->sandbox_id, &in->sb)) {
		unary_error(rp, "not_found", "sandbox \"%.*s\" not found (the E2b-Sandbox-Id header)", SERVE_ID_LEN + 4,
			    rq->sandbox_id ? rq->sandbox_id : "");
		free(in);
		return NULL;
	}
	in->d = d;
	agent_conn_init(&in->c, -1, -1, -1);
	return in;
}

void envd_instream_close(struct envd_instream *in, struct envd_reply *rp)
{
	if (rp) {
		struct stream s = {.fd = -1};
		if (!in->code && in->pre_got)
			instream_fail(in, "invalid_argument", "the body ends inside an envelope");
		if (!in->code && !in->started)
			instream_fail(in, "invalid_argument", "no 'start' message (it names the process)");
		if (!in->code && envd_envelope_append(&s.buf, &s.len, &s.cap, 0, "{}", 2))
			s.oom = true;
		memset(rp, 0, sizeof(*rp));
		stream_end(&s, in->code, in->why, rp); /* StreamInputResponse {}, then the end */
	}
	if (in->c.fd >= 0)
		close(in->c.fd);
	free(in->msg);
	serve_sandbox_put(&in->sb);
	free(in);
}

/* ---- watching a directory: WatchDir (a stream) and the polling watchers (CreateWatcher...) ---- */

static const char *const event_type[] = {
	[AGENT_WEV_CREATE] = "EVENT_TYPE_CREATE", [AGENT_WEV_WRITE] = "EVENT_TYPE_WRITE",
	[AGENT_WEV_REMOVE] = "EVENT_TYPE_REMOVE", [AGENT_WEV_RENAME] = "EVENT_TYPE_RENAME",
	[AGENT_WEV_CHMOD] = "EVENT_TYPE_CHMOD",
};

#define WATCH_END  1 /* a sink's answer: the watch ends, its reason recorded */
#define WATCH_STOP 2 /* a sink's answer: its stop fd fired (a busy watch's frames never let the wait see it) */

/* Whether fd (an eventfd or epoll fd) is readable now. */
static bool fd_fired(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return fd >= 0 && poll(&p, 1, 0) > 0;
}

/*
 * What E2B's FilesystemEvent cannot say (events lost, a directory past the agent's bound on
 * watches) ends the watch rather than go unsaid: its code with msg, or NULL for a plain event.
 */
static const char *wevent_end(const struct agent_wevent *e, char *msg, size_t n)
{
	switch (e->kind) {
	case AGENT_WEV_LOST:
		snprintf(msg, n, "the guest dropped %llu events its reader did not take in time", (unsigned long long)e->lost);
		return "data_loss";
	case AGENT_WEV_OVERFLOW:
		snprintf(msg, n, "the guest kernel's inotify queue overflowed: events were lost");
		return "data_loss";
	case AGENT_WEV_UNWATCHED:
		snprintf(msg, n, "%.300s cannot be watched: past the bound of %u directories of a recursive watch", e->name,
			 AGENT_WATCH_MAX_DIRS);
		return "resource_exhausted";
	default:
		return NULL;
	}
}

static json_t *wevent_json(const struct agent_wevent *e)
{
	return json_pack("{s:s, s:s}", "name", e->name, "type", event_type[e->kind]);
}

/* The fields of WatchDir and CreateWatcher, GetWatcherEvents and RemoveWatcher. */
struct watch_args {
	const char *path;
	bool recursive;
	const char *watcher_id;
};
#define WATCHER_ID_LEN 17 /* "w" and 16 hex digits */

/* The watch calls' arguments, checked before the agent is dialled: NULL, or the code with *why. */
static const char *watch_args_parse(const char *method, json_t *body, struct watch_args *a, const char **why)
{
	memset(a, 0, sizeof(*a));
	if (!strcmp(method, "GetWatcherEvents") || !strcmp(method, "RemoveWatcher")) {
		json_t *id = json_object_get(body, "watcherId");
		*why = "'watcherId' must be the string CreateWatcher answered";
		if (!json_is_string(id) || !json_string_length(id) || json_string_length(id) > 64)
			return "invalid_argument";
		a->watcher_id = json_string_value(id);
		return NULL;
	}
	if (strcmp(method, "WatchDir") && strcmp(method, "CreateWatcher"))
		return NULL;
	json_t *path = json_object_get(body, "path"), *rec = json_object_get(body, "recursive");
	json_t *entry = json_object_get(body, "includeEntry"), *net = json_object_get(body, "allowNetworkMounts");
	*why = "'path' must be an absolute path shorter than 4096 bytes";
	if (!json_is_string(path) || json_string_value(path)[0] != '/' || json_string_length(path) >= AGENT_MAX_PATH)
		return "invalid_argument";
	*why = "'recursive', 'includeEntry' and 'allowNetworkMounts' must be booleans";
	if ((rec && !json_is_null(rec) && !json_is_boolean(rec)) || (entry && !json_is_null(entry) && !json_is_boolean(entry)) ||
	    (net && !json_is_null(net) && !json_is_boolean(net)))
		return "invalid_argument";
	if (json_is_true(entry)) {
		*why = "padcell's envd sends no entry with a watch event ('includeEntry', envd 0.6.3)";
		return "unimplemented";
	}
	a->path = json_string_value(path);
	a->recursive = json_is_true(rec);
	return NULL;
}

/* WatchDir's sink: each event as a WatchDirResponse on the stream. */
struct watch_sink {
	struct stream *s;
	int stop;         /* the call's stream_stop epoll: the deadline or the reader's leaving */
	const char *code; /* why the sink ended the watch; NULL: the reader left */
	char msg[600];
};

static int watch_stream_each(void *arg, const struct agent_wevent *e)
{
	struct watch_sink *k = arg;
	if (fd_fired(k->stop))
		return WATCH_STOP;
	if (e && (k->code = wevent_end(e, k->msg, sizeof(k->msg))))
		return WATCH_END;
	stream_msg(k->s, e ? json_pack("{s:o}", "filesystem", wevent_json(e)) : json_pack("{s:{}}", "keepalive"));
	if (k->s->oom || k->s->len > ENVD_STREAM_MAX) {
		k->code = "resource_exhausted";
		snprintf(k->msg, sizeof(k->msg), "the watch's reply is over its bound");
		return WATCH_END;
	}
	return k->s->broken ? WATCH_END : 0;
}

/*
 * filesystem.Filesystem/WatchDir: the agent's OK first (every change after the start message
 * is seen), then {"start": {}}, the events as {"filesystem": {name, type}}, a keepalive when the
 * directory is quiet, until the deadline, the reader's leaving, or the agent's end of the watch.
 */
static void watch_stream(struct agent_conn *c, const struct watch_args *a, uint32_t timeout_ms, struct stream *s,
			 struct envd_reply *rp)
{
	struct stream_stop st;
	if (stream_stop_open(&st, s->fd, timeout_ms)) {
		stream_end(s, "resource_exhausted", "cannot make the call's deadline timer", rp);
		return;
	}
	if (s->fd < 0 && !timeout_ms) {
		/* buffered (no thread for a live stream): only a deadline would ever end it */
		stream_end(s, "resource_exhausted", "a watch without a deadline needs a live stream (no thread for one)", rp);
		stream_stop_close(&st);
		return;
	}
	char err[512];
	struct watch_sink k = {.s = s, .stop = st.ep};
	c->abort_fd = st.ep;
	int rc = agent_conn_watch(c, a->path, a->recursive, err, sizeof(err));
	if (!rc) {
		stream_msg(s, json_pack("{s:{}}", "start"));
		rc = agent_conn_watch_read(c, ENVD_KEEPALIVE_MS, watch_stream_each, &k, err, sizeof(err));
	}
	if ((rc == -ECONNABORTED || rc == WATCH_STOP) && stream_stop_timed_out(&st))
		stream_end(s, "deadline_exceeded", "the watch ran past its timeout", rp);
	else if (rc == -ECONNABORTED || rc == WATCH_STOP || (rc == WATCH_END && !k.code))
		stream_end(s, "canceled", "the client left", rp);
	else if (rc == WATCH_END)
		stream_end(s, k.code, k.msg, rp);
	else
		stream_end(s, agent_code(rc, err), err, rp);
	stream_stop_close(&st);
}

/* One CreateWatcher watcher: its own agent connection, read by a thread of its own. */
struct envd_watcher {
	char id[WATCHER_ID_LEN + 1];
	char sandbox[SERVE_ID_LEN + 1];
	struct agent_conn c;
	int stop;                 /* eventfd, the connection's abort fd: RemoveWatcher, the daemon's end */
	pthread_t th;
	pthread_mutex_t lock;     /* events, code, msg */
	json_t *events;           /* FilesystemEvents not yet fetched */
	const char *code;         /* once the watch ended: why (GetWatcherEvents answers it) */
	char msg[600];
};

struct envd_watchers {
	pthread_mutex_t lock;     /* the array; taken before a watcher's, never while the table's is held */
	struct envd_watcher *w[ENVD_WATCHERS_MAX];
	size_t n;
};

static int watcher_each(void *arg, const struct agent_wevent *e)
{
	struct envd_watcher *w = arg;
	if (fd_fired(w->stop))
		return WATCH_STOP;
	char msg[600];
	const char *code = wevent_end(e, msg, sizeof(msg));
	pthread_mutex_lock(&w->lock);
	if (!code && json_array_size(w->events) >= ENVD_WATCHER_EVENTS) {
		code = "data_loss";
		snprintf(msg, sizeof(msg), "more than %u events were not fetched (GetWatcherEvents): the watch ended",
			 ENVD_WATCHER_EVENTS);
	}
	if (code) {
		w->code = code;
		snprintf(w->msg, sizeof(w->msg), "%s", msg);
	} else if (json_array_append_new(w->events, wevent_json(e))) {
		w->code = "resource_exhausted";
		snprintf(w->msg, sizeof(w->msg), "out of memory for the watcher's events");
	}
	code = w->code;
	pthread_mutex_unlock(&w->lock);
	return code ? WATCH_END : 0;
}

static void *watcher_run(void *arg)
{
	struct envd_watcher *w = arg;
	char err[512];
	int rc = agent_conn_watch_read(&w->c, 0, watcher_each, w, err, sizeof(err));
	pthread_mutex_lock(&w->lock);
	if (!w->code && (rc == -ECONNABORTED || rc == WATCH_STOP)) {
		w->code = "canceled";
		snprintf(w->msg, sizeof(w->msg), "the watcher was removed");
	} else if (!w->code) {
		/* a paused or ended sandbox's connection closes: the watch ends with it */
		w->code = agent_code(rc, err);
		snprintf(w->msg, sizeof(w->msg), "the watch ended: %s", err);
	}
	pthread_mutex_unlock(&w->lock);
	close(w->c.fd); /* the guest's watch ends with it */
	w->c.fd = -1;
	return NULL;
}

/* Stops w's thread and frees it (w is out of the array). */
static void watcher_free(struct envd_watcher *w)
{
	uint64_t one = 1;
	if (write(w->stop, &one, sizeof(one)) != (ssize_t)sizeof(one)) {
		/* an eventfd takes this write unless its count is at the maximum: it fired already */
	}
	pthread_join(w->th, NULL);
	close(w->stop);
	json_decref(w->events);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

/* t's watchers, made on first use; NULL when out of memory. */
static struct envd_watchers *watchers_of(struct serve_table *t)
{
	pthread_mutex_lock(&t->lock);
	if (!t->watchers && (t->watchers = calloc(1, sizeof(*t->watchers))))
		pthread_mutex_init(&t->watchers->lock, NULL);
	struct envd_watchers *r = t->watchers;
	pthread_mutex_unlock(&t->lock);
	return r;
}

/* Removes the watchers whose sandbox has ended (their threads ended with its connection). */
static void watchers_sweep(struct serve_table *t)
{
	pthread_mutex_lock(&t->lock);
	struct envd_watchers *r = t->watchers;
	pthread_mutex_unlock(&t->lock);
	if (!r)
		return;
	struct envd_watcher *gone[ENVD_WATCHERS_MAX];
	size_t ng = 0;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n;) {
		struct serve_sandbox sb;
		if (serve_get(t, r->w[i]->sandbox, &sb) == 0) {
			serve_sandbox_put(&sb);
			i++;
		} else {
			gone[ng++] = r->w[i];
			r->w[i] = r->w[--r->n];
		}
	}
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < ng; i++)
		watcher_free(gone[i]);
}

void envd_watchers_end(struct serve_table *t)
{
	struct envd_watchers *r = t->watchers;
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		watcher_free(r->w[i]);
	pthread_mutex_destroy(&r->lock);
	free(r);
	t->watchers = NULL;
}

/* The watcher id of sandbox sb's in r (r->lock held), or NULL. */
static struct envd_watcher *watcher_find(struct envd_watchers *r, const char *sandbox, const char *id, size_t *at)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->w[i]->id, id) && !strcmp(r->w[i]->sandbox, sandbox)) {
			if (at)
				*at = i;
			return r->w[i];
		}
	return NULL;
}

/* Whether sandbox has room for one more watcher (r->lock held); else the reply made. */
static bool watcher_room(struct envd_watchers *r, const char *sandbox, struct envd_reply *rp)
{
	unsigned mine = 0;
	for (size_t i = 0; i < r->n; i++)
		mine += !strcmp(r->w[i]->sandbox, sandbox);
	if (mine < ENVD_WATCHERS_PER_SANDBOX && r->n < ENVD_WATCHERS_MAX)
		return true;
	unary_error(rp, "resource_exhausted", "%s has %u watchers (at most %u per sandbox, %u in all): remove one first",
		    sandbox, mine, ENVD_WATCHERS_PER_SANDBOX, ENVD_WATCHERS_MAX);
	return false;
}

/*
 * CreateWatcher: the watch set up on c (the agent's OK comes first: every change after the answer
 * is kept), then c handed to a watcher's thread, which keeps its events for GetWatcherEvents.
 */
static void watcher_create(struct serve_table *t, struct agent_conn *c, const struct serve_sandbox *sb,
			   const struct watch_args *a, struct envd_reply *rp)
{
	struct envd_watchers *r = watchers_of(t);
	if (!r) {
		unary_error(rp, "resource_exhausted", "out of memory for a watcher");
		return;
	}
	pthread_mutex_lock(&r->lock);
	bool room = watcher_room(r, sb->id, rp);
	pthread_mutex_unlock(&r->lock);
	if (!room)
		return;
	char err[512];
	int rc = agent_conn_watch(c, a->path, a->recursive, err, sizeof(err));
	if (rc) {
		unary_error(rp, agent_code(rc, err), "%s: %s", a->path, err);
		return;
	}
	struct envd_watcher *w = calloc(1, sizeof(*w));
	uint8_t rnd[8];
	if (!w || getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd) || !(w->events = json_array()) ||
	    (w->stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		if (w)
			json_decref(w->events);
		free(w);
		unary_error(rp, "resource_exhausted", "cannot make a watcher: %s", strerror(errno));
		return;
	}
	w->id[0] = 'w';
	for (int i = 0; i < 8; i++)
		snprintf(w->id + 1 + 2 * i, 3, "%02x", rnd[i]);
	snprintf(w->sandbox, sizeof(w->sandbox), "%s", sb->id);
	pthread_mutex_init(&w->lock, NULL);
	w->c = *c;
	w->c.sig_fd = -1;
	w->c.abort_fd = w->stop;
	c->fd = -1; /* the watcher's now */
	if (pthread_create(&w->th, NULL, watcher_run, w)) {
		close(w->c.fd);
		close(w->stop);
		json_decref(w->events);
		pthread_mutex_destroy(&w->lock);
		free(w);
		unary_error(rp, "resource_exhausted", "cannot start a watcher's thread");
		return;
	}
	pthread_mutex_lock(&r->lock);
	room = watcher_room(r, sb->id, rp); /* another create may have taken the room meanwhile */
	if (room)
		r->w[r->n++] = w;
	pthread_mutex_unlock(&r->lock);
	if (!room) {
		watcher_free(w);
		return;
	}
	set_json(rp, 200, json_pack("{s:s}", "watcherId", w->id));
}

/* GetWatcherEvents (the events since the last call, then the watch's end once it ended) and RemoveWatcher. */
static void watcher_call(struct serve_table *t, const char *method, const struct serve_sandbox *sb,
			 const struct watch_args *a, struct envd_reply *rp)
{
	struct envd_watchers *r = watchers_of(t);
	if (!r) {
		unary_error(rp, "resource_exhausted", "out of memory for the watchers");
		return;
	}
	size_t at;
	pthread_mutex_lock(&r->lock);
	struct envd_watcher *w = watcher_find(r, sb->id, a->watcher_id, &at);
	if (!w) {
		pthread_mutex_unlock(&r->lock);
		unary_error(rp, "not_found", "watcher with id %.64s not found", a->watcher_id);
		return;
	}
	if (!strcmp(method, "RemoveWatcher")) {
		r->w[at] = r->w[--r->n];
		pthread_mutex_unlock(&r->lock);
		watcher_free(w);
		set_json(rp, 200, json_object());
		return;
	}
	json_t *fresh = json_array();
	pthread_mutex_lock(&w->lock);
	json_t *events = w->events;
	const char *code = w->code;
	char msg[600];
	snprintf(msg, sizeof(msg), "%s", w->msg);
	if (fresh && json_array_size(events))
		w->events = fresh, fresh = NULL;
	else
		events = NULL;
	pthread_mutex_unlock(&w->lock);
	pthread_mutex_unlock(&r->lock);
	json_decref(fresh);
	if (events)
		set_json(rp, 200, json_pack("{s:o}", "events", events));
	else if (code)
		unary_error(rp, code, "%s", msg); /* what was kept came first; now why it ended */
	else
		set_json(rp, 200, json_pack("{s:[]}", "events"));
}

/* ---- /files ---- */

static void files_get(struct agent_conn *c, const char *path, struct envd_reply *rp)
{
	char err[512];
	int fd = memfd_create("envd-get", MFD_CLOEXEC);
	if (fd < 0) {
		unary_error(rp, "resource_exhausted", "cannot make a buffer: %s", strerror(errno));
		return;
	}
	c->get_max = ENVD_FILE_MAX;
	int rc = agent_conn_get_file(c, path, fd, err, sizeof(err));
	off_t n = rc ? 0 : lseek(fd, 0, SEEK_CUR);
	char *buf = rc || n < 0 ? NULL : malloc((size_t)n + 1);
	if (rc) {
		unary_error(rp, agent_code(rc, err), "%s: %s", path, err);
	} else if (!buf || pread(fd, buf, (size_t)n, 0) != n) {
		free(buf);
		unary_error(rp, "internal", "cannot read back %s", path);
	} else {
		rp->status = 200;
		rp->content_type = "application/octet-stream";
		rp->body = buf;
		rp->len = (size_t)n;
	}
	close(fd);
}

/*
 * The first part of a multipart/form-data body (RFC 7578), the file the SDK uploads: its bytes,
 * or NULL.  Bounded by the body, which http.c bounded.
 */
static const char *multipart_first(const char *ct, const char *body, size_t len, size_t *plen)
{
	const char *b = ct ? strstr(ct, "boundary=") : NULL;
	if (!b)
		return NULL;
	b += 9;
	char delim[80];
	size_t bl = strcspn(b, "; \t");
	if (bl && b[0] == '"') {
		b++;
		bl = strcspn(b, "\"");
	}
	if (bl == 0 || bl > 70)
		return NULL;
	int dl = snprintf(delim, sizeof(delim), "--%.*s", (int)bl, b);
	const char *p = memmem(body, len, delim, (size_t)dl);
	if (!p)
		return NULL;
	const char *end = body + len;
	const char *hdr_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
	if (!hdr_end)
		return NULL;
	const char *data = hdr_end + 4;
	char close_delim[84];
	int cl = snprintf(close_delim, sizeof(close_delim), "\r\n%s", delim);
	const char *stop = memmem(data, (size_t)(end - data), close_delim, (size_t)cl);
	if (!stop)
		return NULL;
	*plen = (size_t)(stop - data);
	return data;
}

static void files_post(struct agent_conn *c, const struct envd_request *rq, struct envd_reply *rp)
{
	size_t n = 0;
	const char *data = rq->content_type && !strncmp(rq->content_type, "multipart/form-data", 19)
				   ? multipart_first(rq->content_type, rq->body, rq->len, &n)
				   : (n = rq->len, rq->body ? rq->body : "");
	if (!data) {
		unary_error(rp, "invalid_argument", "a malformed multipart/form-data body (no complete first part)");
		return;
	}
	int fd = memfd_create("envd-put", MFD_CLOEXEC);
	if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n) || lseek(fd, 0, SEEK_SET) != 0) {
		if (fd >= 0)
			close(fd);
		unary_error(rp, "resource_exhausted", "cannot buffer the upload");
		return;
	}
	char err[512];
	/* E2B's SDK makes the parent directories itself first (MakeDir is not asked for by files.write) */
	const char *slash = strrchr(rq->file_path, '/');
	int rc = 0;
	if (slash && slash != rq->file_path) {
		char dir[AGENT_MAX_PATH];
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - rq->file_path), rq->file_path);
		rc = agent_conn_mkdir(c, dir, 0755, true, err, sizeof(err));
	}
	if (!rc)
		rc = agent_conn_put_file(c, fd, rq->file_path, 0644, err, sizeof(err));
	close(fd);
	if (rc) {
		unary_error(rp, agent_code(rc, err), "%s: %s", rq->file_path, err);
		return;
	}
	json_t *arr = json_array();
	json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "name", slash ? slash + 1 : rq->file_path, "type", "file",
					     "path", rq->file_path));
	set_json(rp, 200, arr);
}

/* ---- /health ---- */

/*
 * envd's GET /health: 204 when the sandbox runs and its agent answers HELLO; otherwise 502, as
 * E2B's proxy answers for a sandbox that is gone or paused (the SDK's isRunning() reads 502 as
 * false, and probes this when a call's connection dropped).
 */
static void health(struct serve_table *t, const struct envd_dialer *d, const char *owner, const struct envd_request *rq,
		   struct envd_reply *rp)
{
	if (strcmp(rq->method, "GET")) {
		unary_error(rp, "unimplemented", "%s is not allowed on /health (GET)", rq->method);
		return;
	}
	struct serve_sandbox sb;
	if (!rq->sandbox_id || serve_get_owned(t, owner, rq->sandbox_id, &sb)) {
		set_json(rp, 502, json_pack("{s:i, s:s}", "code", 502, "message", "no such sandbox (the E2b-Sandbox-Id header)"));
		return;
	}
	struct agent_conn c;
	char err[512];
	agent_conn_init(&c, -1, -1, -1);
	if (sb.state == SERVE_PAUSED || sb.state == SERVE_RESUMING) {
		set_json(rp, 502, json_pack("{s:i, s:s}", "code", 502, "message", "the sandbox is not running (paused)"));
	} else if (d->dial(d->ctx, &sb, &c, err, sizeof(err))) {
		char msg[600];
		snprintf(msg, sizeof(msg), "the sandbox's agent does not answer: %s", err);
		set_json(rp, 502, json_pack("{s:i, s:s}", "code", 502, "message", msg));
	} else {
		rp->status = 204;
		rp->content_type = CT_JSON;
	}
	if (c.fd >= 0)
		close(c.fd);
	serve_sandbox_put(&sb);
}

/* ---- dispatch ---- */

/* The call's request message: a unary's body, or a stream's one envelope; NULL with the reply made. */
static json_t *request_message(const struct envd_request *rq, bool stream, struct envd_reply *rp)
{
	const uint8_t *msg = (const uint8_t *)(rq->body ? rq->body : "");
	size_t mlen = rq->len;
	const char *want = stream ? CT_STREAM : CT_JSON;
	if (!rq->content_type || strncmp(rq->content_type, want, strlen(want))) {
		/* Connect answers an unsupported codec with HTTP 415 */
		set_json(rp, 415, error_json("unknown", stream ? "a server stream takes Content-Type application/connect+json"
							     : "a unary call takes Content-Type application/json"));
		return NULL;
	}
	if (stream) {
		int rc = envd_envelope_parse(msg, rq->len, SERVE_BODY_MAX, &msg, &mlen);
		if (rc) {
			unary_error(rp, "invalid_argument", rc == -EMSGSIZE ? "the request envelope is over its bound"
									: "the request must be one uncompressed envelope");
			return NULL;
		}
	}
	json_error_t je;
	json_t *j = json_loadb((const char *)msg, mlen, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		unary_error(rp, "invalid_argument", "the request message must be a JSON object");
		return NULL;
	}
	return j;
}

void envd_handle(struct serve_table *t, const struct envd_dialer *d, const struct serve_keys *keys,
		 const struct envd_request *rq, struct envd_reply *rp)
{
	envd_handle_live(t, d, keys, rq, -1, rp);
}

void envd_handle_live(struct serve_table *t, const struct envd_dialer *d, const struct serve_keys *keys,
		      const struct envd_request *rq, int fd, struct envd_reply *rp)
{
	memset(rp, 0, sizeof(*rp));
	const struct serve_key *key = request_key(keys, rq, rp);
	if (!key)
		return;
	if (rq->overflow) {
		unary_error(rp, "resource_exhausted", "the request body is over its bound");
		return;
	}
	if (!strcmp(rq->path, "/health")) {
		health(t, d, key->name, rq, rp);
		return;
	}
	bool files = !strcmp(rq->path, "/files");
	bool process = !strncmp(rq->path, PROCESS_SVC, strlen(PROCESS_SVC));
	const char *method = files ? "" : strchr(rq->path + 1, '/') + 1;
	bool start = process && !strcmp(method, "Start"), stream = envd_streams(rq->path);
	if (files ? strcmp(rq->method, "GET") && strcmp(rq->method, "POST") : strcmp(rq->method, "POST")) {
		unary_error(rp, "unimplemented", "%s is not allowed on %s", rq->method, rq->path);
		return;
	}
	static const char *const fs_methods[] = {"Stat",          "ListDir",          "MakeDir",      "Move", "Remove",
						 "WatchDir",      "CreateWatcher",    "GetWatcherEvents", "RemoveWatcher"};
	static const char *const proc_methods[] = {"Start",     "Connect",    "List",  "SendSignal",
						   "SendInput", "CloseStdin", "Update"};
	bool known = files;
	for (size_t i = 0; !known && !process && i < sizeof(fs_methods) / sizeof(fs_methods[0]); i++)
		known = !strcmp(method, fs_methods[i]);
	for (size_t i = 0; !known && process && i < sizeof(proc_methods) / sizeof(proc_methods[0]); i++)
		known = !strcmp(method, proc_methods[i]);
	if (!known && process && !strcmp(method, "StreamInput")) {
		/* a client stream given whole (http.c feeds it as it arrives instead) */
		struct envd_instream *in = envd_instream_open(t, d, keys, rq, rp);
		if (in) {
			envd_instream_feed(in, rq->body ? rq->body : "", rq->len);
			envd_instream_close(in, rp);
		}
		return;
	}
	if (!known) {
		unary_error(rp, "unimplemented", "%s is not served by padcell's envd", rq->path + 1);
		return;
	}
	if (files && (!rq->file_path || rq->file_path[0] != '/' || strlen(rq->file_path) >= AGENT_MAX_PATH)) {
		unary_error(rp, "invalid_argument", "/files needs ?path= an absolute path");
		return;
	}
	json_t *body = NULL;
	if (!files && !(body = request_message(rq, stream, rp)))
		return;
	struct proc_args pa = {0};
	struct watch_args wa = {0};
	const char *why = NULL, *bad = process ? process_args(method, body, &pa, &why)
				      : files  ? NULL
					       : watch_args_parse(method, body, &wa, &why);
	if (bad) {
		if (stream) {
			struct stream s = {.fd = fd};
			stream_end(&s, bad, why, rp);
		} else {
			unary_error(rp, bad, "%s", why);
		}
		json_decref(body);
		return;
	}
	watchers_sweep(t); /* the watchers of a sandbox that ended go now */
	struct serve_sandbox sb;
	if (!rq->sandbox_id || serve_get_owned(t, key->name, rq->sandbox_id, &sb)) {
		char msg[128];
		snprintf(msg, sizeof(msg), "sandbox \"%.*s\" not found (the E2b-Sandbox-Id header)", SERVE_ID_LEN + 4,
			 rq->sandbox_id ? rq->sandbox_id : "");
		if (stream) {
			struct stream s = {.fd = fd};
			stream_end(&s, "not_found", msg, rp); /* a stream's error is in its end, under HTTP 200 */
		} else {
			unary_error(rp, "not_found", "%s", msg);
		}
		free(pa.input);
		json_decref(body);
		return;
	}
	/* no Connect-Timeout-Ms: no deadline (Connect clients leave it out for a timeout of 0, "none";
	 * a Start's process still ends with its client); a malformed one: the SDK's default */
	uint32_t timeout = 0;
	if (rq->timeout_ms) {
		char *e;
		unsigned long long v = strtoull(rq->timeout_ms, &e, 10);
		timeout = *e || v == 0 ? ENVD_TIMEOUT_DEF_MS : v > ENVD_TIMEOUT_MAX_MS ? ENVD_TIMEOUT_MAX_MS : (uint32_t)v;
	}
	if (wa.watcher_id) {
		/* the daemon's own state: no agent call */
		watcher_call(t, method, &sb, &wa, rp);
		serve_sandbox_put(&sb);
		json_decref(body);
		return;
	}
	struct agent_conn c;
	char err[512];
	/* a live stream's reader gone (its end closed: fd readable) ends the wait, and closing the
	 * connection then ends the command: a worker never outlives its client by more than that */
	agent_conn_init(&c, -1, -1, fd);
	int rc = d->dial(d->ctx, &sb, &c, err, sizeof(err));
	if (rc && stream) {
		struct stream s = {.fd = fd};
		char msg[600];
		snprintf(msg, sizeof(msg), "sandbox %s's agent does not answer: %s", sb.id, err);
		stream_end(&s, "unavailable", msg, rp);
	} else if (rc) {
		unary_error(rp, "unavailable", "sandbox %s's agent does not answer: %s", sb.id, err);
	} else if (files) {
		if (!strcmp(rq->method, "GET"))
			files_get(&c, rq->file_path, rp);
		else
			files_post(&c, rq, rp);
	} else if (start) {
		process_start(&c, d, &sb, body, timeout, fd, rp);
	} else if (process) {
		process_call(&c, d, &sb, method, &pa, timeout, fd, rp);
	} else if (!strcmp(method, "WatchDir")) {
		struct stream s = {.fd = fd};
		watch_stream(&c, &wa, timeout, &s, rp);
	} else if (!strcmp(method, "CreateWatcher")) {
		watcher_create(t, &c, &sb, &wa, rp);
	} else {
		filesystem_call(&c, method, body, rp);
	}
	if (c.fd >= 0)
		close(c.fd);
	serve_sandbox_put(&sb);
	free(pa.input);
	json_decref(body);
}
