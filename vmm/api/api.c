/*
 * The control socket's server: Firecracker-shaped routes over the bounded HTTP parser, JSON by
 * Jansson, sockets driven without blocking from the monitor's event loop (no thread of its own).
 */
#include "vmm/api/api.h"
#include "vmm/jail/jail.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/util.h"
#include "vmm/api/http.h"

#define IN_CAP   (HTTP_HEAD_MAX + HTTP_BODY_MAX) /* the largest request the parser lets through */
#define RESP_CAP HTTP_BODY_MAX                  /* a response body: GET /network/policy's rules */
#define OUT_CAP  (RESP_CAP + 1024u)             /* a 100 Continue and one response, always enough */
#define BODY_CAP 2048u                          /* fault messages are cut to fit half of this */
#define TAG_LISTEN UINT32_MAX

/* ---- the listening socket ------------------------------------------------------------------- */

int api_listen(const char *path, char *err, size_t errlen)
{
	size_t n = strlen(path);
	if (n == 0 || n > API_PATH_MAX)
		return errorf(err, errlen, -ENAMETOOLONG, "the path must be 1 to %u bytes", API_PATH_MAX);
	/* Whoever can connect can pause the VM and write snapshots as this user: owner only, set
	 * before listen(), so nobody can connect while the mode is still the umask's. */
	enum unix_step at;
	int fd = unix_listen(path, 16, 0600, SOCK_NONBLOCK, &at);
	if (fd >= 0)
		return fd;
	switch (at) {
	case UNIX_STEP_NOT_SOCKET:
		return errorf(err, errlen, fd, "exists and is not a socket; remove it or choose another path");
	case UNIX_STEP_LIVE: return errorf(err, errlen, fd, "in use by another process");
	case UNIX_STEP_PROBE: return errorf(err, errlen, fd, "exists and cannot be checked: %s", strerror(-fd));
	case UNIX_STEP_STALE: return errorf(err, errlen, fd, "stale socket cannot be removed: %s", strerror(-fd));
	case UNIX_STEP_SOCKET: return errorf(err, errlen, fd, "socket: %s", strerror(-fd));
	case UNIX_STEP_BIND: return errorf(err, errlen, fd, "cannot create the socket: %s", strerror(-fd));
	case UNIX_STEP_LISTEN: return errorf(err, errlen, fd, "cannot listen: %s", strerror(-fd));
	default: return errorf(err, errlen, fd, "%s", strerror(-fd));
	}
}

/* ---- routes and JSON ------------------------------------------------------------------------ */

/* {"fault_message": msg}; bytes JSON cannot carry as they are (invalid UTF-8) become '?'. */
static void fault(int *status, int code, char *body, size_t bodylen, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void fault(int *status, int code, char *body, size_t bodylen, const char *fmt, ...)
{
	char msg[BODY_CAP / 2];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *s = json_string(msg);
	if (!s) {
		for (char *p = msg; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		s = json_string(msg);
	}
	json_t *o = json_object();
	char *text = NULL;
	if (s && o && !json_object_set_new(o, "fault_message", s)) {
		s = NULL;
		text = json_dumps(o, JSON_COMPACT);
	}
	json_decref(s);
	json_decref(o);
	*status = code;
	snprintf(body, bodylen, "%s", text ? text : "{\"fault_message\":\"out of memory\"}");
	free(text);
}

/* An errno from the VM side: the request's fault (400) or the host's (500). */
static int status_for(int rc)
{
	switch (-rc) {
	case EINVAL: case EBUSY: case ENOENT: case ENOTDIR: case EISDIR: case EEXIST: case EACCES:
	case EPERM: case ENAMETOOLONG: case EROFS: case ENOTSUP: case ELOOP: case EXDEV:
		return 400;
	default:
		return 500;
	}
}

/* Parses the body as one JSON object whose keys are all in allowed (NULL-terminated). */
static json_t *body_object(const char *what, const char *req, size_t len, const char *const *allowed, int *status,
			   char *body, size_t bodylen)
{
	if (len == 0) {
		fault(status, 400, body, bodylen, "%s needs a JSON body", what);
		return NULL;
	}
	json_error_t je;
	json_t *o = json_loadb(req, len, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		fault(status, 400, body, bodylen, "%s: the body is not valid JSON: %s (line %d, column %d)", what, je.text,
		      je.line, je.column);
		return NULL;
	}
	if (!json_is_object(o)) {
		fault(status, 400, body, bodylen, "%s: the body must be a JSON object", what);
		json_decref(o);
		return NULL;
	}
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v) {
		bool known = false;
		for (const char *const *a = allowed; *a && !known; a++)
			known = !strcmp(key, *a);
		if (!known) {
			fault(status, 400, body, bodylen, "%s: unknown field \"%s\"", what, key);
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

/* A string field: 1 present, 0 absent, -1 present but not a non-empty string (fault written). */
static int string_field(json_t *o, const char *what, const char *key, const char **out, int *status, char *body,
			size_t bodylen)
{
	json_t *v = json_object_get(o, key);
	if (!v)
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0) {
		fault(status, 400, body, bodylen, "%s: \"%s\" must be a non-empty string", what, key);
		return -1;
	}
	*out = json_string_value(v);
	return 1;
}

static void get_info(const struct api_config *cfg, int *status, char *body, size_t bodylen)
{
	bool paused = cfg->ops.is_paused && cfg->ops.is_paused(cfg->ops.ctx);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", cfg->id ? cfg->id : "padcell", "state",
			      paused ? "Paused" : "Running", "vmm_version", cfg->vmm_version ? cfg->vmm_version : "",
			      "app_name", "padcell");
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	if (!text || strlen(text) >= bodylen) {
		free(text);
		fault(status, 500, body, bodylen, "cannot describe the instance");
		return;
	}
	*status = 200;
	snprintf(body, bodylen, "%s", text);
	free(text);
}

static void patch_vm(const struct api_config *cfg, const char *req, size_t len, int *status, char *body,
		     size_t bodylen)
{
	static const char *const keys[] = { "state", NULL };
	const char *what = "PATCH /vm";
	json_t *o = body_object(what, req, len, keys, status, body, bodylen);
	if (!o)
		return;
	const char *state = NULL;
	int have = string_field(o, what, "state", &state, status, body, bodylen);
	if (have == 0)
		fault(status, 400, body, bodylen, "%s: missing field \"state\" (\"Paused\" or \"Resumed\")", what);
	if (have <= 0)
		goto out;
	bool pause = !strcmp(state, "Paused");
	if (!pause && strcmp(state, "Resumed")) {
		fault(status, 400, body, bodylen, "%s: unknown state \"%s\": expected \"Paused\" or \"Resumed\"", what,
		      state);
		goto out;
	}
	int (*op)(void *, char *, size_t) = pause ? cfg->ops.pause : cfg->ops.resume;
	if (!op || !cfg->ops.is_paused) {
		fault(status, 400, body, bodylen, "this VM cannot be %s", pause ? "paused" : "resumed");
		goto out;
	}
	/* Pausing a paused VM, or resuming a running one, is already done. */
	if (cfg->ops.is_paused(cfg->ops.ctx) != pause) {
		char why[BODY_CAP / 2] = "";
		int rc = op(cfg->ops.ctx, why, sizeof(why));
		if (rc) {
			fault(status, status_for(rc), body, bodylen, "cannot %s the VM: %s", pause ? "pause" : "resume",
			      why[0] ? why : strerror(-rc));
			goto out;
		}
	}
	*status = 204;
	body[0] = '\0';
out:
	json_decref(o);
}

static void put_snapshot(const struct api_config *cfg, const char *req, size_t len, int *status, char *body,
			 size_t bodylen)
{
	static const char *const keys[] = { "snapshot_type", "snapshot_path", "mem_file_path", NULL };
	const char *what = "PUT /snapshot/create";
	json_t *o = body_object(what, req, len, keys, status, body, bodylen);
	if (!o)
		return;
	const char *type = "Full", *state_path = NULL, *mem_path = NULL;
	int t = string_field(o, what, "snapshot_type", &type, status, body, bodylen);
	int s = t < 0 ? -1 : string_field(o, what, "snapshot_path", &state_path, status, body, bodylen);
	int m = s < 0 ? -1 : string_field(o, what, "mem_file_path", &mem_path, status, body, bodylen);
	if (m < 0)
		goto out;
	if (!strcmp(type, "Diff")) {
		fault(status, 400, body, bodylen, "%s: diff snapshots are not supported: use \"Full\"", what);
		goto out;
	}
	if (strcmp(type, "Full")) {
		fault(status, 400, body, bodylen, "%s: unknown snapshot_type \"%s\": expected \"Full\"", what, type);
		goto out;
	}
	if (!s || !m) {
		fault(status, 400, body, bodylen, "%s: missing field \"%s\"", what, !s ? "snapshot_path" : "mem_file_path");
		goto out;
	}
	if (!strcmp(state_path, mem_path)) {
		fault(status, 400, body, bodylen, "%s: snapshot_path and mem_file_path are the same file", what);
		goto out;
	}
	if (!cfg->ops.snapshot || !cfg->ops.is_paused) {
		fault(status, 400, body, bodylen, "this VM cannot be snapshotted");
		goto out;
	}
	if (!cfg->ops.is_paused(cfg->ops.ctx)) {
		fault(status, 400, body, bodylen,
		      "the VM is running: pause it first (PATCH /vm {\"state\": \"Paused\"}), then create the snapshot");
		goto out;
	}
	char why[BODY_CAP / 2] = "";
	int rc = cfg->ops.snapshot(cfg->ops.ctx, state_path, mem_path, why, sizeof(why));
	if (rc) {
		fault(status, status_for(rc), body, bodylen, "cannot create the snapshot: %s", why[0] ? why : strerror(-rc));
		goto out;
	}
	*status = 204;
	body[0] = '\0';
out:
	json_decref(o);
}

/*
 * One token bucket of a rate limiter: {"size", "one_time_burst"?, "refill_time"} (Firecracker's
 * TokenBucket; refill_time in ms).  size 0 turns the bucket off.  false with the fault written.
 */
static bool parse_bucket(json_t *v, const char *what, const char *name, struct rl_bucket_cfg *b, int *status,
			 char *body, size_t bodylen)
{
	static const char *const keys[] = { "size", "one_time_burst", "refill_time", NULL };
	if (!json_is_object(v)) {
		fault(status, 400, body, bodylen, "%s: \"%s\" must be an object {\"size\", \"one_time_burst\", \"refill_time\"}",
		      what, name);
		return false;
	}
	const char *key;
	json_t *f;
	json_object_foreach(v, key, f) {
		bool known = false;
		for (const char *const *k = keys; *k && !known; k++)
			known = !strcmp(key, *k);
		if (!known) {
			fault(status, 400, body, bodylen, "%s: \"%s\": unknown field \"%s\" (size, one_time_burst, refill_time)",
			      what, name, key);
			return false;
		}
	}
	uint64_t val[3] = { 0 };
	/* The limiter's own bounds (devices/ratelimit.c): counts up to 2^53, refill times up to 2^32 ms. */
	static const uint64_t max[3] = { 1ull << 53, 1ull << 53, 1ull << 32 };
	for (int i = 0; i < 3; i++) {
		json_t *n = json_object_get(v, keys[i]);
		if (!n) {
			if (i == 1)
				continue;
			fault(status, 400, body, bodylen, "%s: \"%s\" needs \"%s\"", what, name, keys[i]);
			return false;
		}
		if (!json_is_integer(n) || json_integer_value(n) < 0 || (uint64_t)json_integer_value(n) > max[i]) {
			fault(status, 400, body, bodylen, "%s: \"%s\".\"%s\" must be a whole number from 0 to %llu", what, name,
			      keys[i], (unsigned long long)max[i]);
			return false;
		}
		val[i] = (uint64_t)json_integer_value(n);
	}
	if (val[0] && !val[2]) {
		fault(status, 400, body, bodylen, "%s: \"%s\".\"refill_time\" must be more than 0 ms when \"size\" is not 0",
		      what, name);
		return false;
	}
	*b = (struct rl_bucket_cfg){ .size = val[0], .one_time_burst = val[1], .refill_ms = val[2] };
	return true;
}

/* {"bandwidth"?, "ops"?}: Firecracker's RateLimiter, as a change.  false with the fault written. */
static bool parse_rate_limiter(json_t *o, const char *what, const char *name, struct ratelimit_patch *p, int *status,
			       char *body, size_t bodylen)
{
	*p = (struct ratelimit_patch){ 0 };
	json_t *v = json_object_get(o, name);
	if (!v)
		return true;
	if (!json_is_object(v)) {
		fault(status, 400, body, bodylen, "%s: \"%s\" must be an object {\"bandwidth\", \"ops\"}", what, name);
		return false;
	}
	const char *key;
	json_t *f;
	json_object_foreach(v, key, f) {
		bool bw = !strcmp(key, "bandwidth");
		if (!bw && strcmp(key, "ops")) {
			fault(status, 400, body, bodylen, "%s: \"%s\": unknown field \"%s\" (bandwidth, ops)", what, name, key);
			return false;
		}
		char full[64];
		snprintf(full, sizeof(full), "%s.%s", name, key);
		if (!parse_bucket(f, what, full, bw ? &p->cfg.bytes : &p->cfg.ops, status, body, bodylen))
			return false;
		if (bw)
			p->bytes_set = true;
		else
			p->ops_set = true;
	}
	return true;
}

/* PATCH /drives/{id} and /network-interfaces/{id}: the limiters of a running VM's drive or NIC. */
static void patch_rate(const struct api_config *cfg, bool drive, const char *id, const char *req, size_t len,
		       int *status, char *body, size_t bodylen)
{
	static const char *const dkeys[] = { "drive_id", "rate_limiter", "path_on_host", NULL };
	static const char *const nkeys[] = { "iface_id", "rx_rate_limiter", "tx_rate_limiter", NULL };
	char what[128];
	snprintf(what, sizeof(what), "PATCH /%s/%.64s", drive ? "drives" : "network-interfaces", id);
	json_t *o = body_object(what, req, len, drive ? dkeys : nkeys, status, body, bodylen);
	if (!o)
		return;
	const char *idkey = drive ? "drive_id" : "iface_id", *given = NULL;
	if (string_field(o, what, idkey, &given, status, body, bodylen) < 0)
		goto out;
	if (given && strcmp(given, id)) {
		fault(status, 400, body, bodylen, "%s: \"%s\" is \"%s\", the path names \"%s\"", what, idkey, given, id);
		goto out;
	}
	if (drive && json_object_get(o, "path_on_host")) {
		fault(status, 400, body, bodylen, "%s: a running VM's drive keeps its file: only \"rate_limiter\" can change",
		      what);
		goto out;
	}
	struct ratelimit_patch p[2];
	unsigned np = drive ? 1 : 2;
	const char *names[2] = { drive ? "rate_limiter" : "rx_rate_limiter", "tx_rate_limiter" };
	bool any = false;
	for (unsigned i = 0; i < np; i++) {
		if (!parse_rate_limiter(o, what, names[i], &p[i], status, body, bodylen))
			goto out;
		any |= json_object_get(o, names[i]) != NULL;
	}
	if (!any) {
		fault(status, 400, body, bodylen, "%s: nothing to change: give %s", what,
		      drive ? "\"rate_limiter\"" : "\"rx_rate_limiter\" or \"tx_rate_limiter\"");
		goto out;
	}
	if (!cfg->ops.set_rate) {
		fault(status, 400, body, bodylen, "this VM's rate limiters cannot be changed");
		goto out;
	}
	char why[BODY_CAP / 2] = "";
	int rc = cfg->ops.set_rate(cfg->ops.ctx, drive ? "drive" : "net", id, p, np, why, sizeof(why));
	if (rc) {
		fault(status, status_for(rc), body, bodylen, "%s: %s", what, why[0] ? why : strerror(-rc));
		goto out;
	}
	*status = 204;
	body[0] = '\0';
out:
	json_decref(o);
}

/* PUT /network/policy {"allow": [RULE...], "open"?: bool}: the NIC's rules replaced, all or nothing. */
static void put_policy(const struct api_config *cfg, const char *req, size_t len, int *status, char *body,
		       size_t bodylen)
{
	static const char *const keys[] = { "allow", "open", NULL };
	const char *what = "PUT /network/policy";
	json_t *o = body_object(what, req, len, keys, status, body, bodylen);
	if (!o)
		return;
	const char **rules = NULL;
	json_t *allow = json_object_get(o, "allow"), *open = json_object_get(o, "open");
	if (!allow) {
		fault(status, 400, body, bodylen, "%s: missing field \"allow\" (a list of rules, [] for none)", what);
		goto out;
	}
	if (!json_is_array(allow)) {
		fault(status, 400, body, bodylen, "%s: \"allow\" must be a list of rule strings", what);
		goto out;
	}
	if (open && !json_is_boolean(open)) {
		fault(status, 400, body, bodylen, "%s: \"open\" must be true or false", what);
		goto out;
	}
	size_t n = json_array_size(allow);
	if (n > POLICY_MAX_RULES) {
		fault(status, 400, body, bodylen, "%s: %zu rules, at most %u", what, n, POLICY_MAX_RULES);
		goto out;
	}
	rules = calloc(n ? n : 1, sizeof(*rules));
	if (!rules) {
		fault(status, 500, body, bodylen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *r = json_array_get(allow, i);
		/* A NUL inside a string would cut the rule short of what the client sent: refused. */
		if (!json_is_string(r) || strlen(json_string_value(r)) != json_string_length(r)) {
			fault(status, 400, body, bodylen, "%s: \"allow\"[%zu] must be a rule string such as \"pypi.org:443\"",
			      what, i);
			goto out;
		}
		rules[i] = json_string_value(r);
	}
	if (!cfg->ops.set_policy) {
		fault(status, 400, body, bodylen, "this VM's network policy cannot be changed");
		goto out;
	}
	char why[BODY_CAP / 2] = "";
	int rc = cfg->ops.set_policy(cfg->ops.ctx, rules, n, open && json_is_true(open), why, sizeof(why));
	if (rc) {
		fault(status, rc == -E2BIG ? 400 : status_for(rc), body, bodylen, "%s: %s", what,
		      why[0] ? why : strerror(-rc));
		goto out;
	}
	*status = 204;
	body[0] = '\0';
out:
	free(rules);
	json_decref(o);
}

/* GET /network/policy: the rules in force, open mode, and the decisions counted per verdict. */
static void get_policy(const struct api_config *cfg, int *status, char *body, size_t bodylen)
{
	if (!cfg->ops.get_policy) {
		fault(status, 400, body, bodylen, "this VM has no network policy to show");
		return;
	}
	struct policy_view v = { 0 };
	char why[BODY_CAP / 2] = "";
	int rc = cfg->ops.get_policy(cfg->ops.ctx, &v, why, sizeof(why));
	if (rc) {
		fault(status, status_for(rc), body, bodylen, "GET /network/policy: %s", why[0] ? why : strerror(-rc));
		return;
	}
	char *text = NULL;
	json_t *rules = json_array();
	for (size_t i = 0; rules && i < v.nrules; i++) {
		json_t *r = json_string(v.rules[i]);
		if (!r || json_array_append_new(rules, r)) {
			json_decref(rules);
			rules = NULL;
		}
	}
	const struct policy_counts *c = &v.counts;
	json_t *o = rules ? json_pack("{s:o, s:b, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "allow",
				      rules, "open", v.open, "changes", (json_int_t)v.changes, "counters", "allowed",
				      (json_int_t)c->allowed, "rejected", (json_int_t)c->rejected, "dropped",
				      (json_int_t)c->dropped, "resolved", (json_int_t)c->resolved, "nxdomain",
				      (json_int_t)c->nxdomain, "servfail", (json_int_t)c->servfail, "sni_accepted",
				      (json_int_t)c->sni_accepted, "sni_refused", (json_int_t)c->sni_refused,
				      "rx_throttled", (json_int_t)c->rx_throttled, "tx_throttled",
				      (json_int_t)c->tx_throttled)
			  : NULL;
	policy_view_free(&v);
	if (o)
		text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!text || strlen(text) >= bodylen) {
		fault(status, 500, body, bodylen, text ? "the rules do not fit in one answer" : "out of memory");
		free(text);
		return;
	}
	*status = 200;
	snprintf(body, bodylen, "%s", text);
	free(text);
}

/* "/PREFIX/ID" with one non-empty ID segment: ID, else NULL. */
static const char *path_id(const char *p, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(p, prefix, n) || !p[n] || strchr(p + n, '/'))
		return NULL;
	return p + n;
}

void api_handle(const struct api_config *cfg, const char *method, const char *path, const char *req_body,
		size_t req_len, int *status, char *body, size_t bodylen)
{
	/* "/vm/" names the same resource as "/vm". */
	char p[HTTP_PATH_MAX];
	snprintf(p, sizeof(p), "%s", path);
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';

	if (!strcmp(method, "GET") && req_len) {
		fault(status, 400, body, bodylen, "GET request cannot have a body.");
		return;
	}
	if (!strcmp(p, "/") && !strcmp(method, "GET"))
		get_info(cfg, status, body, bodylen);
	else if (!strcmp(p, "/vm") && !strcmp(method, "PATCH"))
		patch_vm(cfg, req_body, req_len, status, body, bodylen);
	else if (!strcmp(p, "/snapshot/create") && !strcmp(method, "PUT"))
		put_snapshot(cfg, req_body, req_len, status, body, bodylen);
	else if (path_id(p, "/drives/") && !strcmp(method, "PATCH"))
		patch_rate(cfg, true, path_id(p, "/drives/"), req_body, req_len, status, body, bodylen);
	else if (path_id(p, "/network-interfaces/") && !strcmp(method, "PATCH"))
		patch_rate(cfg, false, path_id(p, "/network-interfaces/"), req_body, req_len, status, body, bodylen);
	else if (!strcmp(p, "/network/policy") && !strcmp(method, "PUT"))
		put_policy(cfg, req_body, req_len, status, body, bodylen);
	else if (!strcmp(p, "/network/policy") && !strcmp(method, "GET"))
		get_policy(cfg, status, body, bodylen);
	else
		fault(status, 400, body, bodylen, "Invalid request method and/or path: %s %s.", method, path);
}

/* ---- connections ---------------------------------------------------------------------------- */

struct api_conn {
	int fd;               /* -1: a free slot */
	char *in;             /* IN_CAP bytes while open */
	size_t in_len;
	char *out;            /* OUT_CAP bytes while open (an answer can be 64 KiB: not kept per idle slot) */
	size_t out_len, out_off;
	bool sent_continue;   /* the 100 Continue for the request being read is out */
	bool closing;         /* close once out is written */
	bool eof;             /* the client will send no more */
	bool writing;         /* epoll watches EPOLLOUT, not EPOLLIN */
	uint64_t last_active;
};

struct api_server {
	int ep;
	int lfd;
	char path[API_PATH_MAX + 1]; /* "" = nothing to unlink */
	char id[128], version[64];
	struct api_config cfg;
	struct api_conn conns[API_MAX_CLIENTS];
	uint64_t tick; /* activity counter: the least recently active connection is evicted first */
	int spare_fd;  /* for accept_or_shed: out of descriptors, a client is closed instead of spinning */
	bool listen_off; /* out of descriptors with no spare: the listening socket is not watched */
	uint64_t accept_wakeups; /* times the listening socket woke the server (tests look) */
	char body[RESP_CAP];     /* the answer being made, and its HTTP form: off the caller's stack */
	char resp[OUT_CAP];
};

/* Watches the listening socket again once a descriptor may be free (a connection closed). */
static void listen_rearm(struct api_server *s)
{
	if (!s->listen_off)
		return;
	if (s->spare_fd < 0)
		s->spare_fd = spare_fd_open();
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_LISTEN };
	if (epoll_ctl(s->ep, EPOLL_CTL_MOD, s->lfd, &ev) == 0)
		s->listen_off = false;
}

static void conn_close(struct api_server *s, struct api_conn *c)
{
	if (c->fd < 0)
		return;
	epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->in);
	free(c->out);
	*c = (struct api_conn){ .fd = -1 };
	listen_rearm(s);
}

static void conn_watch(struct api_server *s, struct api_conn *c)
{
	bool want_out = c->out_len > c->out_off;
	if (want_out == c->writing)
		return;
	struct epoll_event ev = { .events = want_out ? EPOLLOUT : EPOLLIN, .data.u32 = (uint32_t)(c - s->conns) };
	epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
	c->writing = want_out;
}

/* Writes what the socket takes.  false: the connection is gone (closed here). */
static bool conn_flush(struct api_server *s, struct api_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_close(s, c);
			return false;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		if (c->closing) {
			conn_close(s, c);
			return false;
		}
	}
	conn_watch(s, c);
	return true;
}

static void queue(struct api_conn *c, const char *data, size_t len)
{
	if (len > OUT_CAP - c->out_len)
		len = OUT_CAP - c->out_len; /* cannot happen: OUT_CAP holds a 100 Continue and a response */
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
}

static void respond(struct api_server *s, struct api_conn *c, int status, const char *body, bool keep_alive)
{
	char *buf = s->resp;
	int n = http_format_response(buf, OUT_CAP, status, body[0] ? body : NULL, keep_alive);
	if (n < 0) {
		n = http_format_response(buf, OUT_CAP, 500, "{\"fault_message\":\"response too large\"}", false);
		keep_alive = false;
	}
	queue(c, buf, (size_t)n);
	if (!keep_alive)
		c->closing = true;
}

/*
 * Answers every complete request in the input buffer, one at a time: the next is parsed only
 * once the previous answer is written, so a pipelining client cannot make padcell queue output.
 */
static void conn_process(struct api_server *s, struct api_conn *c)
{
	while (c->fd >= 0 && !c->closing && c->out_len == 0 && c->in_len) {
		struct http_request req;
		char why[256];
		int rc = http_parse_request_head(c->in, c->in_len, &req, why, sizeof(why));
		char *body = s->body;
		int status;
		if (rc == 0) {
			if (c->eof)
				c->closing = true; /* a partial request and no more to come */
			break;
		}
		if (rc < 0) {
			fault(&status, -rc, body, RESP_CAP, "%s", why);
			respond(s, c, status, body, false);
		} else if (req.content_length > c->in_len - req.head_len) {
			if (c->eof) {
				c->closing = true;
				break;
			}
			if (req.expect_continue && !c->sent_continue) {
				static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
				queue(c, cont, sizeof(cont) - 1);
				c->sent_continue = true;
				conn_flush(s, c);
			}
			break;
		} else {
			bool needs_body = !strcmp(req.method, "PUT") || !strcmp(req.method, "PATCH");
			if (needs_body && !req.has_length) {
				fault(&status, 411, body, RESP_CAP, "%s needs a body with Content-Length", req.method);
				respond(s, c, status, body, false);
			} else {
				api_handle(&s->cfg, req.method, req.path, c->in + req.head_len, req.content_length, &status, body,
					   RESP_CAP);
				respond(s, c, status, body, req.keep_alive);
			}
			size_t used = req.head_len + req.content_length;
			memmove(c->in, c->in + used, c->in_len - used);
			c->in_len -= used;
			c->sent_continue = false;
		}
		if (c->closing)
			c->in_len = 0;
		if (!conn_flush(s, c))
			return;
	}
	/* Done when told to close, or when the client has finished sending and all is answered. */
	if (c->fd >= 0 && (c->closing || c->eof) && c->out_len == 0)
		conn_close(s, c);
	else if (c->fd >= 0)
		conn_watch(s, c);
}

static void conn_readable(struct api_server *s, struct api_conn *c)
{
	c->last_active = ++s->tick;
	if (c->in_len < IN_CAP) {
		ssize_t n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n < 0) {
			conn_close(s, c);
			return;
		}
		if (n == 0)
			c->eof = true;
		c->in_len += (size_t)n;
	}
	conn_process(s, c);
}

static void accept_all(struct api_server *s)
{
	s->accept_wakeups++;
	for (int i = 0; i < 16; i++) {
		/* Level-triggered: a client left in the backlog wakes the loop again at once, so one
		 * that cannot be given a descriptor is closed (accept_or_shed), never left there. */
		int fd = accept_or_shed(s->lfd, SOCK_NONBLOCK | SOCK_CLOEXEC, &s->spare_fd);
		if (fd == -ECONNABORTED)
			continue;
		if (fd == -EMFILE || fd == -ENFILE) {
			struct epoll_event ev = { .events = 0, .data.u32 = TAG_LISTEN };
			if (epoll_ctl(s->ep, EPOLL_CTL_MOD, s->lfd, &ev) == 0)
				s->listen_off = true; /* until a connection closes */
			return;
		}
		if (fd < 0)
			return;
		struct api_conn *slot = NULL, *oldest = NULL;
		for (unsigned k = 0; k < API_MAX_CLIENTS && !slot; k++) {
			struct api_conn *c = &s->conns[k];
			if (c->fd < 0)
				slot = c;
			else if (!oldest || c->last_active < oldest->last_active)
				oldest = c;
		}
		if (!slot) {
			/* Full: the connection idle the longest makes room (keep-alive clients that went quiet). */
			conn_close(s, oldest);
			slot = oldest;
		}
		slot->in = malloc(IN_CAP);
		slot->out = malloc(OUT_CAP);
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)(slot - s->conns) };
		if (!slot->in || !slot->out || epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(slot->in);
			free(slot->out);
			slot->in = slot->out = NULL;
			close(fd);
			continue;
		}
		slot->fd = fd;
		slot->last_active = ++s->tick;
	}
}

struct api_server *api_server_new(int listen_fd, const char *path, const struct api_config *cfg, char *err,
				  size_t errlen)
{
	struct api_server *s = calloc(1, sizeof(*s));
	if (!s) {
		errorf(err, errlen, -ENOMEM, "out of memory");
		goto err_fd;
	}
	for (unsigned i = 0; i < API_MAX_CLIENTS; i++)
		s->conns[i].fd = -1;
	s->lfd = listen_fd;
	s->spare_fd = spare_fd_open();
	if (path)
		snprintf(s->path, sizeof(s->path), "%s", path);
	s->cfg = *cfg;
	snprintf(s->id, sizeof(s->id), "%s", cfg->id ? cfg->id : "padcell");
	snprintf(s->version, sizeof(s->version), "%s", cfg->vmm_version ? cfg->vmm_version : "");
	s->cfg.id = s->id;
	s->cfg.vmm_version = s->version;
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->ep < 0) {
		errorf(err, errlen, -errno, "epoll: %s", strerror(errno));
		goto err_free;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_LISTEN };
	if (epoll_ctl(s->ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
		errorf(err, errlen, -errno, "epoll: %s", strerror(errno));
		goto err_ep;
	}
	return s;
err_ep:
	close(s->ep);
err_free:
	if (s->spare_fd >= 0)
		close(s->spare_fd);
	free(s);
err_fd:
	close(listen_fd);
	if (path)
		unlink(path);
	return NULL;
}

void api_server_destroy(struct api_server *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < API_MAX_CLIENTS; i++)
		conn_close(s, &s->conns[i]);
	close(s->lfd);
	if (s->path[0])
		jail_unlink(s->path); /* through the jail: its root is empty by now */
	close(s->ep);
	if (s->spare_fd >= 0)
		close(s->spare_fd);
	free(s);
}

uint64_t api_server_accept_wakeups(const struct api_server *s)
{
	return s->accept_wakeups;
}

int api_server_fd(const struct api_server *s)
{
	return s->ep;
}

unsigned api_server_clients(const struct api_server *s)
{
	unsigned n = 0;
	for (unsigned i = 0; i < API_MAX_CLIENTS; i++)
		n += s->conns[i].fd >= 0;
	return n;
}

void api_server_service(struct api_server *s)
{
	struct epoll_event evs[API_MAX_CLIENTS + 1];
	int n = epoll_wait(s->ep, evs, API_MAX_CLIENTS + 1, 0);
	for (int i = 0; i < n; i++) {
		uint32_t tag = evs[i].data.u32;
		if (tag == TAG_LISTEN) {
			accept_all(s);
			continue;
		}
		if (tag >= API_MAX_CLIENTS)
			continue;
		struct api_conn *c = &s->conns[tag];
		if (c->fd < 0)
			continue; /* closed by an eviction earlier in this batch */
		if (c->writing) {
			if (conn_flush(s, c))
				conn_process(s, c);
		} else {
			conn_readable(s, c);
		}
	}
}
