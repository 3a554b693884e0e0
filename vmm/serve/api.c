/* `padcell serve`'s REST API: routes, request validation, E2B's JSON shapes and status codes, the API key. */
#include "vmm/serve/api.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/serve/serve_cli.h"

void serve_reply_error(struct serve_reply *rp, unsigned status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *j = json_pack("{s:i, s:s}", "code", (int)status, "message", msg);
	rp->status = status;
	rp->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
}

static void reply_json(struct serve_reply *rp, unsigned status, json_t *j)
{
	rp->status = status;
	rp->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (!rp->body)
		serve_reply_error(rp, 500, "out of memory");
	json_decref(j);
}

/* Constant time in the key's content: a wrong key's first bytes cannot be found by timing. */
bool serve_key_ok(const char *want, const char *given)
{
	if (!given)
		return false;
	size_t n = strlen(want), m = strlen(given);
	unsigned char d = (unsigned char)(n != m);
	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(want[i] ^ (i < m ? given[i] : 0));
	return d == 0;
}

void serve_keys_one(struct serve_keys *keys, const char *key)
{
	memset(keys, 0, sizeof(*keys));
	snprintf(keys->k[0].key, sizeof(keys->k[0].key), "%s", key);
	keys->n = 1;
}

const struct serve_key *serve_keys_find(const struct serve_keys *keys, const char *given)
{
	if (!given)
		return NULL;
	const struct serve_key *hit = NULL;
	size_t n = __atomic_load_n(&keys->n, __ATOMIC_ACQUIRE);
	for (size_t i = 0; i < n; i++) /* every key is compared: the time says nothing of which matched */
		if (serve_key_ok(keys->k[i].key, given) && !__atomic_load_n(&keys->k[i].revoked, __ATOMIC_ACQUIRE))
			hit = &keys->k[i];
	return hit;
}

/* The live entry of name in keys, or NULL. */
static struct serve_key *keys_live(struct serve_keys *keys, const char *name)
{
	for (size_t i = 0; i < keys->n; i++)
		if (!keys->k[i].revoked && !strcmp(keys->k[i].name, name))
			return &keys->k[i];
	return NULL;
}

static const struct serve_key *keys_named(const struct serve_keys *keys, const char *name)
{
	for (size_t i = 0; i < keys->n; i++)
		if (!strcmp(keys->k[i].name, name))
			return &keys->k[i];
	return NULL;
}

int serve_keys_merge(struct serve_keys *keys, const struct serve_keys *fresh, void (*say)(void *arg, const char *line),
		     void *arg)
{
	char line[SERVE_NAME_MAX + 64];
	struct serve_key *old[SERVE_KEYS_MAX];
	size_t nold = 0;
	/* first the new entries (a changed key works before its old one stops), published one by one */
	for (size_t i = 0; i < fresh->n; i++) {
		const struct serve_key *f = &fresh->k[i];
		struct serve_key *cur = keys_live(keys, f->name);
		if (cur && !strcmp(cur->key, f->key))
			continue;
		if (keys->n == SERVE_KEYS_SLOTS) {
			snprintf(line, sizeof(line), "no room for more keys (%d entries): restart the daemon", SERVE_KEYS_SLOTS);
			say(arg, line);
			return -E2BIG;
		}
		struct serve_key *e = &keys->k[keys->n];
		memset(e, 0, sizeof(*e));
		snprintf(e->name, sizeof(e->name), "%s", f->name);
		snprintf(e->key, sizeof(e->key), "%s", f->key);
		__atomic_store_n(&keys->n, keys->n + 1, __ATOMIC_RELEASE);
		if (cur && nold < SERVE_KEYS_MAX)
			old[nold++] = cur;
		snprintf(line, sizeof(line), "key '%s' %s", f->name, cur ? "changed" : "added");
		say(arg, line);
	}
	for (size_t i = 0; i < nold; i++)
		__atomic_store_n(&old[i]->revoked, 1, __ATOMIC_RELEASE);
	for (size_t i = 0; i < keys->n; i++) {
		struct serve_key *e = &keys->k[i];
		if (e->revoked || keys_named(fresh, e->name))
			continue;
		__atomic_store_n(&e->revoked, 1, __ATOMIC_RELEASE);
		snprintf(line, sizeof(line), "key '%s' removed: it no longer reaches its sandboxes", e->name);
		say(arg, line);
	}
	return 0;
}

int serve_keys_load(const char *path, struct serve_keys *keys, char *err, size_t errlen)
{
	memset(keys, 0, sizeof(*keys));
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errorf(err, errlen, -errno, "--api-keys %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (st.st_mode & 077) || st.st_uid != geteuid()) {
		close(fd);
		return errorf(err, errlen, -EPERM, "--api-keys %s must be a regular file of this user, mode 0600", path);
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return errorf(err, errlen, -ENOMEM, "--api-keys %s: out of memory", path);
	}
	char line[SERVE_NAME_MAX + SERVE_KEY_MAX + 8];
	unsigned ln = 0;
	int rc = 0;
	while (!rc && fgets(line, sizeof(line), f)) {
		ln++;
		size_t n = strlen(line);
		if (n && line[n - 1] != '\n' && !feof(f)) {
			rc = errorf(err, errlen, -EINVAL, "--api-keys %s:%u: the line is too long", path, ln);
			break;
		}
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (!n || line[0] == '#')
			continue;
		char *sp = strchr(line, ' ');
		const char *k = sp ? sp + 1 : "";
		size_t nl = sp ? (size_t)(sp - line) : n, kl = strlen(k);
		bool key_ok = kl >= 16 && kl < SERVE_KEY_MAX;
		for (size_t i = 0; key_ok && i < kl; i++)
			key_ok = k[i] > ' ' && k[i] < 0x7f;
		if (!sp || !serve_name_valid(line, nl) || !key_ok) {
			rc = errorf(err, errlen, -EINVAL, "--api-keys %s:%u: expected NAME KEY (a name of letters, digits, "
				    "'.', '_', '-'; a key of 16 to %d printable characters)", path, ln, SERVE_KEY_MAX - 1);
			break;
		}
		if (keys->n == SERVE_KEYS_MAX) {
			rc = errorf(err, errlen, -E2BIG, "--api-keys %s: more than %d keys", path, SERVE_KEYS_MAX);
			break;
		}
		*sp = '\0';
		for (size_t i = 0; i < keys->n; i++)
			if (!strcmp(keys->k[i].name, line) || !strcmp(keys->k[i].key, k))
				rc = errorf(err, errlen, -EINVAL, "--api-keys %s:%u: the %s is given twice", path, ln,
					    !strcmp(keys->k[i].name, line) ? "name" : "key");
		if (rc)
			break;
		snprintf(keys->k[keys->n].name, sizeof(keys->k[0].name), "%s", line);
		snprintf(keys->k[keys->n].key, sizeof(keys->k[0].key), "%s", k);
		keys->n++;
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
	if (!rc && !keys->n)
		rc = errorf(err, errlen, -EINVAL, "--api-keys %s: no keys", path);
	return rc;
}

/* RFC 3339 in UTC with milliseconds, as E2B's date-time fields. */
static void rfc3339(double t, char *out, size_t len)
{
	time_t s = (time_t)t;
	struct tm tm;
	gmtime_r(&s, &tm);
	char base[32];
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	int ms = (int)((t - (double)s) * 1000.0);
	snprintf(out, len, "%s.%03dZ", base, ms < 0 ? 0 : ms > 999 ? 999 : ms);
}

/* What E2B's state field says: being paused still runs, being resumed is still paused. */
static bool shown_paused(const struct serve_sandbox *s)
{
	return s->state == SERVE_PAUSED || s->state == SERVE_RESUMING;
}

/* A ListedSandbox / SandboxDetail; a paused one's endAt is where its timeout would end if resumed now. */
static json_t *sandbox_json(const struct serve_table *t, const struct serve_sandbox *s)
{
	char started[40], end[40];
	rfc3339(s->started_at, started, sizeof(started));
	rfc3339(shown_paused(s) ? t->clk.now(t->clk.ctx) + s->remaining : s->deadline, end, sizeof(end));
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:O, s:s, s:s}", "templateID", s->tmpl, "sandboxID", s->id,
			 "clientID", SERVE_CLIENT_ID, "startedAt", started, "endAt", end, "cpuCount", (int)s->cpus,
			 "memoryMB", (int)(s->mem_bytes >> 20), "metadata", s->metadata,
			 "state", shown_paused(s) ? "paused" : "running",
			 "envdVersion", ENVD_VERSION);
}

/* An object whose values are all strings (metadata, envVars): NULL when fine, else why not. */
static const char *string_map_error(json_t *o)
{
	if (!json_is_object(o))
		return "must be an object";
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
		if (!json_is_string(v))
			return "must map names to strings";
	return NULL;
}

/* The JSON body of a request: an object, or NULL with the 400 reply made. */
static json_t *body_object(const struct serve_request *rq, bool required, struct serve_reply *rp)
{
	if (rq->len == 0 && !required)
		return json_object();
	json_error_t je;
	json_t *j = json_loadb(rq->body ? rq->body : "", rq->len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		serve_reply_error(rp, 400, "malformed JSON body: %s (line %d, column %d)", je.text, je.line, je.column);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		serve_reply_error(rp, 400, "the body must be a JSON object");
		return NULL;
	}
	return j;
}

/* An optional integer field in seconds: def when absent, -1 with the reply made when wrong. */
static long seconds_field(json_t *body, const char *name, long def, struct serve_reply *rp)
{
	json_t *v = json_object_get(body, name);
	if (!v || json_is_null(v))
		return def;
	if (!json_is_integer(v)) {
		serve_reply_error(rp, 400, "'%s' must be an integer (seconds)", name);
		return -1;
	}
	json_int_t s = json_integer_value(v);
	if (s < 1 || s > SERVE_TIMEOUT_MAX) {
		serve_reply_error(rp, 400, "'%s' must be 1 to %d seconds, not %lld", name, SERVE_TIMEOUT_MAX, (long long)s);
		return -1;
	}
	return (long)s;
}

/* E2B's Sandbox: what create, resume and connect answer; envd (vmm/serve/envd.c) takes the daemon's key as its access token. */
static void reply_sandbox(struct serve_reply *rp, unsigned status, const struct serve_sandbox *s,
			  const char *key)
{
	reply_json(rp, status, json_pack("{s:s, s:s, s:s, s:s, s:s}", "sandboxID", s->id, "templateID", s->tmpl, "clientID",
					 SERVE_CLIENT_ID, "envdVersion", ENVD_VERSION, "envdAccessToken", key));
}

static void create(struct serve_table *t, const struct serve_key *key, const struct serve_request *rq,
		   struct serve_reply *rp)
{
	json_t *body = body_object(rq, true, rp);
	if (!body)
		return;
	json_t *tid = json_object_get(body, "templateID");
	json_t *md = json_object_get(body, "metadata"), *env = json_object_get(body, "envVars");
	const char *why;
	long timeout;
	if (!tid) {
		serve_reply_error(rp, 400, "'templateID' is required");
	} else if (!json_is_string(tid)) {
		serve_reply_error(rp, 400, "'templateID' must be a string");
	} else if ((timeout = seconds_field(body, "timeout", SERVE_DEFAULT_TIMEOUT, rp)) < 0) {
		/* the reply is made */
	} else if (md && !json_is_null(md) && (why = string_map_error(md))) {
		serve_reply_error(rp, 400, "'metadata' %s", why);
	} else if (env && !json_is_null(env) && (why = string_map_error(env))) {
		serve_reply_error(rp, 400, "'envVars' %s", why);
	} else {
		char err[512];
		struct serve_sandbox s;
		int rc = serve_create_owned(t, key->name, json_string_value(tid), timeout, json_is_object(md) ? md : NULL,
					    json_is_object(env) ? env : NULL, &s, err, sizeof(err));
		if (rc == 0) {
			reply_sandbox(rp, 201, &s, key->key);
			serve_sandbox_put(&s);
		} else if (rc == -ENOENT || rc == -EINVAL) {
			serve_reply_error(rp, 400, "%s", err);
		} else if (rc == -EUSERS || rc == -ENOMEM) {
			/* E2B answers its concurrency limit with 429; the SDK makes it a RateLimitError */
			serve_reply_error(rp, 429, "%s", err);
		} else {
			serve_reply_error(rp, 500, "%s", err);
		}
	}
	json_decref(body);
}

/* GET /sandboxes' filters: which states (none named: all), and metadata pairs that must all match. */
struct list_filter {
	bool running, paused;
	json_t *md;                /* object of strings */
};

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A form-encoded component (E2B's SDK encodes metadata as URLSearchParams inside the argument): 0, or -1. */
static int form_decode(const char *in, size_t len, char *out, size_t outlen)
{
	size_t k = 0;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (c == '%') {
			if (i + 2 >= len)
				return -1;
			int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) /* a NUL would cut the key */
				return -1;
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		if (k + 1 >= outlen)
			return -1;
		out[k++] = c;
	}
	out[k] = '\0';
	return 0;
}

static bool filter_parse(const struct serve_request *rq, struct list_filter *f, struct serve_reply *rp)
{
	memset(f, 0, sizeof(*f));
	f->md = json_object();
	if (rq->query_overflow) {
		serve_reply_error(rp, 400, "too many query arguments (at most %d)", SERVE_QUERY_MAX);
		return false;
	}
	for (size_t i = 0; i < rq->nquery; i++) {
		const char *k = rq->query[i].key, *v = rq->query[i].value ? rq->query[i].value : "";
		if (!strcmp(k, "state")) {
			/* state=running,paused or state=running&state=paused */
			for (const char *p = v;;) {
				size_t n = strcspn(p, ",");
				if (n == 7 && !strncmp(p, "running", 7)) {
					f->running = true;
				} else if (n == 6 && !strncmp(p, "paused", 6)) {
					f->paused = true;
				} else {
					serve_reply_error(rp, 400, "state '%.*s' is not one of running, paused (state=running,paused)",
							  (int)(n > 64 ? 64 : n), p);
					return false;
				}
				if (!p[n])
					break;
				p += n + 1;
			}
		} else if (!strcmp(k, "metadata")) {
			/* metadata=k1%3Dv1%26k2%3Dv2: pairs, each component form-encoded again */
			for (const char *p = v;;) {
				size_t n = strcspn(p, "&");
				const char *eq = memchr(p, '=', n);
				char key[256], val[1024];
				if (!eq || eq == p || form_decode(p, (size_t)(eq - p), key, sizeof(key)) ||
				    form_decode(eq + 1, n - (size_t)(eq - p) - 1, val, sizeof(val))) {
					serve_reply_error(rp, 400, "metadata filter '%.*s' is malformed: expected key=value pairs "
							  "joined by & (metadata=key%%3Dvalue)", (int)(n > 64 ? 64 : n), p);
					return false;
				}
				json_object_set_new(f->md, key, json_string(val));
				if (!p[n])
					break;
				p += n + 1;
			}
		}
		/* others (limit, nextToken): one page holds every sandbox of a host */
	}
	if (!f->running && !f->paused)
		f->running = f->paused = true;
	return true;
}

static bool filter_match(const struct list_filter *f, const struct serve_sandbox *s)
{
	if (!(shown_paused(s) ? f->paused : f->running))
		return false;
	const char *k;
	json_t *v;
	json_object_foreach(f->md, k, v) {
		json_t *have = json_object_get(s->metadata, k);
		if (!json_is_string(have) || strcmp(json_string_value(have), json_string_value(v)))
			return false;
	}
	return true;
}

static void list(struct serve_table *t, const char *owner, const struct serve_request *rq, struct serve_reply *rp)
{
	struct list_filter f;
	if (!filter_parse(rq, &f, rp)) {
		json_decref(f.md);
		return;
	}
	struct serve_sandbox *a;
	size_t n;
	if (serve_list(t, &a, &n)) {
		json_decref(f.md);
		serve_reply_error(rp, 500, "out of memory");
		return;
	}
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(a[i].owner, owner) && filter_match(&f, &a[i]))
			json_array_append_new(arr, sandbox_json(t, &a[i]));
		serve_sandbox_put(&a[i]);
	}
	json_decref(f.md);
	free(a);
	reply_json(rp, 200, arr);
}

static void not_found(struct serve_reply *rp, const char *id)
{
	serve_reply_error(rp, 404, "sandbox \"%s\" not found", id);
}

static void set_timeout(struct serve_table *t, const char *id, const struct serve_request *rq, const char *field,
			bool required, struct serve_reply *rp)
{
	json_t *body = body_object(rq, required, rp);
	if (!body)
		return;
	long s = 0;
	int rc;
	if (required && !json_object_get(body, field))
		serve_reply_error(rp, 400, "'%s' is required", field);
	else if ((s = seconds_field(body, field, SERVE_DEFAULT_TIMEOUT, rp)) < 0)
		; /* the reply is made */
	else if ((rc = serve_set_timeout(t, id, s)) == -ENOENT)
		not_found(rp, id);
	else if (rc == -EBUSY)
		serve_reply_error(rp, 409, "sandbox \"%s\" is being paused or resumed: try again", id);
	else if (rc)
		serve_reply_error(rp, 500, "cannot keep the new timeout: %s", strerror(-rc));
	else
		rp->status = 204;
	json_decref(body);
}

static void pause_(struct serve_table *t, const char *id, struct serve_reply *rp)
{
	char err[512];
	int rc = serve_pause(t, id, err, sizeof(err));
	if (rc == 0)
		rp->status = 204;
	else if (rc == -ENOENT)
		not_found(rp, id);
	else if (rc == -EALREADY || rc == -EBUSY)
		serve_reply_error(rp, 409, "%s", err);
	else
		serve_reply_error(rp, 500, "cannot pause sandbox \"%s\": %s", id, err);
}

/*
 * resume (body {timeout?}: 201, 409 when it runs) and connect (body {timeout}: 200 when it runs,
 * its timeout then set as by /timeout; 201 when it was paused and is resumed).
 */
/* resume, or connect (need_timeout: v1's connect, where E2B requires it; v2's SDK may leave it out) */
static void resume(struct serve_table *t, const struct serve_key *key, const char *id, const struct serve_request *rq,
		   bool connect, bool need_timeout, struct serve_reply *rp)
{
	json_t *body = body_object(rq, connect, rp);
	if (!body)
		return;
	long timeout = 0;
	if (need_timeout && !json_object_get(body, "timeout")) {
		serve_reply_error(rp, 400, "'timeout' is required");
	} else if ((timeout = seconds_field(body, "timeout", 0, rp)) < 0) {
		/* the reply is made */
	} else {
		char err[512];
		struct serve_sandbox s;
		int rc = serve_resume(t, id, timeout, &s, err, sizeof(err));
		if (rc == -EALREADY && connect) {
			/* running: connect just returns it, with the new timeout when one was given */
			rc = timeout ? serve_set_timeout(t, id, timeout) : 0;
			if (rc == 0 && (rc = serve_get(t, id, &s)) == 0) {
				reply_sandbox(rp, 200, &s, key->key);
				serve_sandbox_put(&s);
			} else if (rc == -ENOENT) {
				not_found(rp, id);
			} else {
				serve_reply_error(rp, 409, "sandbox \"%s\" is being paused or resumed", id);
			}
		} else if (rc == 0) {
			reply_sandbox(rp, 201, &s, key->key);
			serve_sandbox_put(&s);
		} else if (rc == -ENOENT) {
			not_found(rp, id);
		} else if (rc == -EALREADY || rc == -EBUSY) {
			serve_reply_error(rp, 409, "%s", err);
		} else if (rc == -EINVAL) {
			serve_reply_error(rp, 400, "%s", err);
		} else if (rc == -ENOMEM) {
			serve_reply_error(rp, 429, "%s", err);
		} else {
			serve_reply_error(rp, 500, "cannot resume sandbox \"%s\": %s", id, err);
		}
	}
	json_decref(body);
}

void serve_api_handle(struct serve_table *t, const struct serve_keys *keys, const struct serve_request *rq,
		      struct serve_reply *rp)
{
	rp->status = 500;
	rp->body = NULL;
	const struct serve_key *key = serve_keys_find(keys, rq->api_key);
	if (!key) {
		serve_reply_error(rp, 401, rq->api_key ? "invalid API key (X-API-Key)" : "missing API key: the X-API-Key header");
		return;
	}
	if (rq->overflow || rq->len > SERVE_BODY_MAX) {
		serve_reply_error(rp, 413, "the request body is over %u bytes", SERVE_BODY_MAX);
		return;
	}
	const char *m = rq->method, *p = rq->path;
	bool v2 = false;
	/* E2B's v2 routes that current SDKs call (create, list, connect) have the v1 shapes */
	if (!strncmp(p, "/v2/sandboxes", 13)) {
		const char *rest = p + 13, *sl = *rest == '/' ? strchr(rest + 1, '/') : NULL;
		if (*rest && strcmp(rest, "/") && !(sl && !strcmp(sl, "/connect") && sl > rest + 1)) {
			serve_reply_error(rp, 404, "no such endpoint: %s", p);
			return;
		}
		p += 3;
		v2 = true;
	}
	if (!strcmp(p, "/sandboxes") || !strcmp(p, "/sandboxes/")) {
		if (!strcmp(m, "POST"))
			create(t, key, rq, rp);
		else if (!strcmp(m, "GET"))
			list(t, key->name, rq, rp);
		else
			serve_reply_error(rp, 405, "%s is not allowed on /sandboxes (GET, POST)", m);
		return;
	}
	if (strncmp(p, "/sandboxes/", 11)) {
		serve_reply_error(rp, 404, "no such endpoint: %s", p);
		return;
	}
	/* /sandboxes/{id}[/action]: an id is at most SERVE_ID_LEN characters, anything longer is unknown */
	const char *id0 = p + 11, *slash = strchr(id0, '/');
	size_t idlen = slash ? (size_t)(slash - id0) : strlen(id0);
	char id[SERVE_ID_LEN + 1];
	if (idlen == 0 || idlen > SERVE_ID_LEN) {
		serve_reply_error(rp, 404, "no such sandbox");
		return;
	}
	memcpy(id, id0, idlen);
	id[idlen] = '\0';
	const char *action = slash ? slash + 1 : "";
	/* another key's sandbox is answered as a missing one, before anything is done or told of it (an
	 * owner never changes, and ids are random: the check holds for the call) */
	struct serve_sandbox s;
	if (serve_get(t, id, &s) == 0) {
		bool mine = !strcmp(s.owner, key->name);
		serve_sandbox_put(&s);
		if (!mine) {
			not_found(rp, id);
			return;
		}
	}
	if (!*action) {
		if (!strcmp(m, "GET")) {
			if (serve_get_owned(t, key->name, id, &s)) {
				not_found(rp, id);
				return;
			}
			reply_json(rp, 200, sandbox_json(t, &s));
			serve_sandbox_put(&s);
		} else if (!strcmp(m, "DELETE")) {
			int rc = serve_kill(t, id);
			if (rc == -EBUSY)
				serve_reply_error(rp, 409, "sandbox \"%s\" is being paused or resumed: try again", id);
			else if (rc)
				not_found(rp, id);
			else
				rp->status = 204;
		} else {
			serve_reply_error(rp, 405, "%s is not allowed on /sandboxes/{id} (GET, DELETE)", m);
		}
	} else if (!strcmp(action, "timeout") || !strcmp(action, "refreshes")) {
		if (strcmp(m, "POST"))
			serve_reply_error(rp, 405, "%s is not allowed on /sandboxes/{id}/%s (POST)", m, action);
		else if (!strcmp(action, "timeout"))
			set_timeout(t, id, rq, "timeout", true, rp);
		else
			set_timeout(t, id, rq, "duration", false, rp);
	} else if (!strcmp(action, "pause") || !strcmp(action, "resume") || !strcmp(action, "connect")) {
		if (strcmp(m, "POST"))
			serve_reply_error(rp, 405, "%s is not allowed on /sandboxes/{id}/%s (POST)", m, action);
		else if (!strcmp(action, "pause"))
			pause_(t, id, rp);
		else
			resume(t, key, id, rq, !strcmp(action, "connect"), !strcmp(action, "connect") && !v2, rp);
	} else {
		serve_reply_error(rp, 404, "no such endpoint: %s", p);
	}
}

int serve_key_load(const char *dir, char *key, size_t keylen, bool *created, char *err, size_t errlen)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/api-key", dir);
	*created = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		struct stat st;
		char buf[128];
		ssize_t n = -1;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && !(st.st_mode & 077) && st.st_uid == geteuid())
			n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n < 0)
			return errorf(err, errlen, -EPERM, "%s must be a regular file of this user, mode 0600", path);
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
		buf[n] = '\0';
		if (n < 16 || (size_t)n >= keylen)
			return errorf(err, errlen, -EINVAL, "%s: expected one key of 16 to %zu characters", path, keylen - 1);
		memcpy(key, buf, (size_t)n + 1);
		return 0;
	}
	if (errno != ENOENT)
		return errorf(err, errlen, -errno, "cannot read %s: %s", path, strerror(errno));
	unsigned char r[20];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return errorf(err, errlen, -EIO, "getrandom failed");
	if (keylen < 5 + 2 * sizeof(r))
		return errorf(err, errlen, -EINVAL, "key buffer too small");
	/* E2B's shape, "e2b_" and hex digits: the JS SDK refuses a key of any other form before a request */
	strcpy(key, "e2b_");
	for (size_t i = 0; i < sizeof(r); i++)
		sprintf(key + 4 + 2 * i, "%02x", r[i]);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return errorf(err, errlen, -errno, "cannot create %s: %s", path, strerror(errno));
	size_t n = strlen(key);
	key[n] = '\n';
	bool ok = write(fd, key, n + 1) == (ssize_t)(n + 1) && fsync(fd) == 0;
	key[n] = '\0';
	close(fd);
	if (!ok) {
		unlink(path);
		return errorf(err, errlen, -EIO, "cannot write %s", path);
	}
	*created = true;
	return 0;
}
