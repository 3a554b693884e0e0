/* Guest agent protocol: encoding, checked decoding and frame I/O (guest/agent/proto.h). */
#include "guest/agent/proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

void agent_hdr_encode(uint8_t out[AGENT_HDR_LEN], uint32_t len, uint16_t type, uint16_t flags)
{
	put32(out, len);
	out[4] = (uint8_t)type;
	out[5] = (uint8_t)(type >> 8);
	out[6] = (uint8_t)flags;
	out[7] = (uint8_t)(flags >> 8);
}

int agent_hdr_decode(const uint8_t in[AGENT_HDR_LEN], struct agent_hdr *h)
{
	h->len = get32(in);
	h->type = (uint16_t)(in[4] | in[5] << 8);
	h->flags = (uint16_t)(in[6] | in[7] << 8);
	if (h->type < AGENT_HELLO || h->type > AGENT_TYPE_MAX || h->len > AGENT_MAX_PAYLOAD || h->flags)
		return -EPROTO;
	return 0;
}

void agent_hello_encode(uint8_t out[AGENT_HELLO_LEN], const struct agent_hello *h)
{
	put32(out, h->version);
	put32(out + 4, h->flags);
	put32(out + 8, h->ready_ms);
}

int agent_hello_decode(const uint8_t *p, size_t len, struct agent_hello *h)
{
	if (len != AGENT_HELLO_LEN)
		return -EPROTO;
	h->version = get32(p);
	h->flags = get32(p + 4);
	h->ready_ms = get32(p + 8);
	return 0;
}

void agent_sync_encode(uint8_t out[AGENT_SYNC_LEN], const struct agent_sync *s)
{
	put64(out, s->realtime_ns);
	memcpy(out + 8, s->seed, sizeof(s->seed));
}

int agent_sync_decode(const uint8_t *p, size_t len, struct agent_sync *s)
{
	if (len != AGENT_SYNC_LEN)
		return -EPROTO;
	s->realtime_ns = get64(p);
	memcpy(s->seed, p + 8, sizeof(s->seed));
	return 0;
}

void agent_u32_encode(uint8_t out[4], uint32_t v)
{
	put32(out, v);
}

int agent_u32_decode(const uint8_t *p, size_t len, uint32_t *v)
{
	if (len != 4)
		return -EPROTO;
	*v = get32(p);
	return 0;
}

void agent_exit_encode(uint8_t out[8], uint32_t how, int32_t code)
{
	put32(out, how);
	put32(out + 4, (uint32_t)code);
}

int agent_exit_decode(const uint8_t *p, size_t len, uint32_t *how, int32_t *code)
{
	if (len != 8)
		return -EPROTO;
	*how = get32(p);
	*code = (int32_t)get32(p + 4);
	if (*how < AGENT_EXITED || *how > AGENT_TIMEDOUT)
		return -EPROTO;
	if (*how == AGENT_EXITED && (*code < 0 || *code > 255))
		return -EPROTO;
	if (*how == AGENT_SIGNALED && (*code < 1 || *code > 64))
		return -EPROTO;
	return 0;
}

/* Appends s and its NUL; -E2BIG when it does not fit. */
static int put_str(uint8_t *out, size_t cap, size_t *off, const char *s)
{
	size_t n = strlen(s) + 1;
	if (n > cap - *off)
		return -E2BIG;
	memcpy(out + *off, s, n);
	*off += n;
	return 0;
}

int agent_exec_encode(uint8_t *out, size_t cap, const char *const *argv, const char *const *envv, const char *cwd,
		      const char *user, uint32_t timeout_ms, uint32_t flags)
{
	if (cap > AGENT_MAX_PAYLOAD)
		cap = AGENT_MAX_PAYLOAD;
	uint32_t argc = 0, envc = 0;
	while (argv && argv[argc])
		argc++;
	while (envv && envv[envc])
		envc++;
	if (argc == 0 || argc > AGENT_MAX_ARGS || envc > AGENT_MAX_ENV || cap < 16)
		return argc == 0 ? -EINVAL : -E2BIG;
	for (uint32_t i = 0; i < envc; i++)
		if (!strchr(envv[i], '=') || envv[i][0] == '=')
			return -EINVAL;
	put32(out, timeout_ms);
	put32(out + 4, flags);
	put32(out + 8, argc);
	put32(out + 12, envc);
	size_t off = 16;
	if (put_str(out, cap, &off, cwd ? cwd : "") || put_str(out, cap, &off, user ? user : ""))
		return -E2BIG;
	for (uint32_t i = 0; i < argc; i++)
		if (put_str(out, cap, &off, argv[i]))
			return -E2BIG;
	for (uint32_t i = 0; i < envc; i++)
		if (put_str(out, cap, &off, envv[i]))
			return -E2BIG;
	return (int)off;
}

/* The NUL-terminated string at *off, inside len: NULL when it runs off the end. */
static const char *take_str(const uint8_t *p, size_t len, size_t *off)
{
	if (*off >= len)
		return NULL;
	const uint8_t *nul = memchr(p + *off, '\0', len - *off);
	if (!nul)
		return NULL;
	const char *s = (const char *)p + *off;
	*off = (size_t)(nul - p) + 1;
	return s;
}

int agent_exec_decode(const uint8_t *p, size_t len, struct agent_exec *e)
{
	if (len < 16 || len > AGENT_MAX_PAYLOAD)
		return -EPROTO;
	e->timeout_ms = get32(p);
	e->flags = get32(p + 4);
	e->argc = get32(p + 8);
	e->envc = get32(p + 12);
	if (e->flags & ~AGENT_EXEC_STDIN)
		return -EPROTO;
	if (e->argc == 0 || e->argc > AGENT_MAX_ARGS || e->envc > AGENT_MAX_ENV)
		return -EPROTO;
	size_t off = 16;
	if (!(e->cwd = take_str(p, len, &off)) || !(e->user = take_str(p, len, &off)))
		return -EPROTO;
	if (strlen(e->cwd) >= AGENT_MAX_PATH || (e->cwd[0] && e->cwd[0] != '/'))
		return -EPROTO;
	for (uint32_t i = 0; i < e->argc; i++)
		if (!(e->argv[i] = take_str(p, len, &off)))
			return -EPROTO;
	e->argv[e->argc] = NULL;
	if (!e->argv[0][0])
		return -EPROTO;
	for (uint32_t i = 0; i < e->envc; i++) {
		const char *s = take_str(p, len, &off);
		if (!s || s[0] == '=' || !strchr(s, '='))
			return -EPROTO;
		e->envv[i] = s;
	}
	e->envv[e->envc] = NULL;
	return off == len ? 0 : -EPROTO; /* nothing may trail the last string */
}

int agent_put_encode(uint8_t *out, size_t cap, uint32_t mode, const char *path)
{
	size_t n = strlen(path);
	if (n == 0 || n >= AGENT_MAX_PATH || path[0] != '/' || 4 + n > cap)
		return -E2BIG;
	put32(out, mode);
	memcpy(out + 4, path, n);
	return (int)(4 + n);
}

int agent_path_decode(const uint8_t *p, size_t len, char *path, size_t pathcap)
{
	/* Absolute only: the agent's own working directory is nothing the host should depend on. */
	if (len == 0 || len >= AGENT_MAX_PATH || len >= pathcap || p[0] != '/' || memchr(p, '\0', len))
		return -EPROTO;
	memcpy(path, p, len);
	path[len] = '\0';
	return 0;
}

int agent_put_decode(const uint8_t *p, size_t len, uint32_t *mode, char *path, size_t pathcap)
{
	if (len < 5)
		return -EPROTO;
	*mode = get32(p);
	if (*mode & ~07777u)
		return -EPROTO;
	return agent_path_decode(p + 4, len - 4, path, pathcap);
}

/* An absolute path of 1..AGENT_MAX_PATH-1 bytes without NUL: its length, or 0. */
static size_t path_ok(const char *path)
{
	size_t n = strlen(path);
	return n && n < AGENT_MAX_PATH && path[0] == '/' ? n : 0;
}

int agent_path_encode(uint8_t *out, size_t cap, const char *path)
{
	size_t n = path_ok(path);
	if (!n)
		return -EINVAL;
	if (n > cap)
		return -E2BIG;
	memcpy(out, path, n);
	return (int)n;
}

int agent_mkdir_encode(uint8_t *out, size_t cap, uint32_t mode, uint32_t flags, const char *path)
{
	size_t n = path_ok(path);
	if (!n || (mode & ~07777u) || (flags & ~AGENT_MKDIR_PARENTS))
		return -EINVAL;
	if (8 + n > cap)
		return -E2BIG;
	put32(out, mode);
	put32(out + 4, flags);
	memcpy(out + 8, path, n);
	return (int)(8 + n);
}

int agent_mkdir_decode(const uint8_t *p, size_t len, uint32_t *mode, uint32_t *flags, char *path, size_t pathcap)
{
	if (len < 9)
		return -EPROTO;
	*mode = get32(p);
	*flags = get32(p + 4);
	if ((*mode & ~07777u) || (*flags & ~AGENT_MKDIR_PARENTS))
		return -EPROTO;
	return agent_path_decode(p + 8, len - 8, path, pathcap);
}

/* A u32 of flags (only those in known) and a path: REMOVE's and WATCH's payload. */
static int flags_path_encode(uint8_t *out, size_t cap, uint32_t flags, uint32_t known, const char *path)
{
	size_t n = path_ok(path);
	if (!n || (flags & ~known))
		return -EINVAL;
	if (4 + n > cap)
		return -E2BIG;
	put32(out, flags);
	memcpy(out + 4, path, n);
	return (int)(4 + n);
}

static int flags_path_decode(const uint8_t *p, size_t len, uint32_t known, uint32_t *flags, char *path, size_t pathcap)
{
	if (len < 5)
		return -EPROTO;
	*flags = get32(p);
	if (*flags & ~known)
		return -EPROTO;
	return agent_path_decode(p + 4, len - 4, path, pathcap);
}

int agent_remove_encode(uint8_t *out, size_t cap, uint32_t flags, const char *path)
{
	return flags_path_encode(out, cap, flags, AGENT_REMOVE_RECURSIVE, path);
}

int agent_remove_decode(const uint8_t *p, size_t len, uint32_t *flags, char *path, size_t pathcap)
{
	return flags_path_decode(p, len, AGENT_REMOVE_RECURSIVE, flags, path, pathcap);
}

int agent_move_encode(uint8_t *out, size_t cap, const char *src, const char *dst)
{
	size_t a = path_ok(src), b = path_ok(dst);
	if (!a || !b)
		return -EINVAL;
	if (a + 1 + b > cap)
		return -E2BIG;
	memcpy(out, src, a);
	out[a] = '\0';
	memcpy(out + a + 1, dst, b);
	return (int)(a + 1 + b);
}

int agent_move_decode(const uint8_t *p, size_t len, char *src, char *dst, size_t pathcap)
{
	const uint8_t *nul = len ? memchr(p, '\0', len) : NULL;
	if (!nul)
		return -EPROTO;
	size_t a = (size_t)(nul - p);
	if (agent_path_decode(p, a, src, pathcap))
		return -EPROTO;
	return agent_path_decode(nul + 1, len - a - 1, dst, pathcap); /* a second NUL is refused there */
}

/* The file types an entry may name: what lstat can report. */
static int mode_ok(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		return (mode & ~(uint32_t)(S_IFMT | 07777)) == 0;
	default:
		return 0;
	}
}

/* A name an entry may carry: no NUL or '/', not "." or "..", except the root's own "/". */
static int name_ok(const uint8_t *s, size_t n)
{
	if (n == 0 || n > AGENT_MAX_NAME || memchr(s, '\0', n))
		return 0;
	if (n == 1 && s[0] == '/')
		return 1;
	if (memchr(s, '/', n) || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
		return 0;
	return 1;
}

int agent_entry_encode(uint8_t *out, size_t cap, size_t *off, const struct agent_entry *e)
{
	size_t n = strlen(e->name);
	if (!name_ok((const uint8_t *)e->name, n) || !mode_ok(e->mode))
		return -EINVAL;
	if (cap > AGENT_MAX_PAYLOAD)
		cap = AGENT_MAX_PAYLOAD;
	if (*off > cap || AGENT_ENTRY_FIXED + n > cap - *off)
		return -E2BIG;
	uint8_t *q = out + *off;
	put32(q, e->mode);
	put64(q + 4, e->size);
	put64(q + 12, (uint64_t)e->mtime_ns);
	q[20] = (uint8_t)n;
	q[21] = (uint8_t)(n >> 8);
	memcpy(q + AGENT_ENTRY_FIXED, e->name, n);
	*off += AGENT_ENTRY_FIXED + n;
	return 0;
}

int agent_entry_next(const uint8_t *p, size_t len, size_t *off, struct agent_entry *e)
{
	if (*off == len)
		return 0;
	if (*off > len || len - *off < AGENT_ENTRY_FIXED)
		return -EPROTO;
	const uint8_t *q = p + *off;
	size_t n = (size_t)q[20] | (size_t)q[21] << 8;
	if (n > len - *off - AGENT_ENTRY_FIXED || !name_ok(q + AGENT_ENTRY_FIXED, n))
		return -EPROTO;
	e->mode = get32(q);
	if (!mode_ok(e->mode))
		return -EPROTO;
	e->size = get64(q + 4);
	e->mtime_ns = (int64_t)get64(q + 12);
	memcpy(e->name, q + AGENT_ENTRY_FIXED, n);
	e->name[n] = '\0';
	*off += AGENT_ENTRY_FIXED + n;
	return 1;
}

/* ---- background processes (version 4) ---- */

bool agent_tag_ok(const char *tag, size_t n)
{
	return n >= 1 && n <= AGENT_MAX_TAG && !memchr(tag, '\0', n);
}

int agent_start_encode(uint8_t *out, size_t cap, uint32_t flags, uint16_t rows, uint16_t cols, const char *tag,
		       const char *const *argv, const char *const *envv, const char *cwd, const char *user)
{
	size_t tl = tag ? strlen(tag) : 0;
	if (cap > AGENT_MAX_PAYLOAD)
		cap = AGENT_MAX_PAYLOAD;
	if ((flags & ~(AGENT_START_PTY | AGENT_START_STDIN)) || rows > AGENT_MAX_WINSZ || cols > AGENT_MAX_WINSZ ||
	    (tl && !agent_tag_ok(tag, tl)))
		return -EINVAL;
	size_t head = 8 + (tl ? 2 + tl : 0);
	if (cap < head)
		return -E2BIG;
	put32(out, flags | (tl ? AGENT_START_TAG : 0));
	out[4] = (uint8_t)rows;
	out[5] = (uint8_t)(rows >> 8);
	out[6] = (uint8_t)cols;
	out[7] = (uint8_t)(cols >> 8);
	if (tl) {
		out[8] = (uint8_t)tl;
		out[9] = (uint8_t)(tl >> 8);
		memcpy(out + 10, tag, tl);
	}
	int n = agent_exec_encode(out + head, cap - head, argv, envv, cwd, user, 0, 0);
	return n < 0 ? n : n + (int)head;
}

int agent_start_decode(const uint8_t *p, size_t len, struct agent_start *s)
{
	if (len < 8 || len > AGENT_MAX_PAYLOAD)
		return -EPROTO;
	s->flags = get32(p);
	s->rows = (uint16_t)(p[4] | p[5] << 8);
	s->cols = (uint16_t)(p[6] | p[7] << 8);
	s->tag[0] = '\0';
	if ((s->flags & ~(AGENT_START_PTY | AGENT_START_STDIN | AGENT_START_TAG)) || s->rows > AGENT_MAX_WINSZ ||
	    s->cols > AGENT_MAX_WINSZ)
		return -EPROTO;
	size_t head = 8;
	if (s->flags & AGENT_START_TAG) {
		if (len < 10)
			return -EPROTO;
		size_t tl = (size_t)p[8] | (size_t)p[9] << 8;
		if (tl > len - 10 || !agent_tag_ok((const char *)p + 10, tl))
			return -EPROTO;
		memcpy(s->tag, p + 10, tl);
		s->tag[tl] = '\0';
		head = 10 + tl;
		s->flags &= ~AGENT_START_TAG; /* the tag says it */
	}
	if (agent_exec_decode(p + head, len - head, &s->e) || s->e.timeout_ms || s->e.flags)
		return -EPROTO;
	return 0;
}

void agent_id2_encode(uint8_t out[8], uint32_t id, uint32_t v)
{
	put32(out, id);
	put32(out + 4, v);
}

int agent_id2_decode(const uint8_t *p, size_t len, uint32_t *id, uint32_t *v)
{
	if (len != 8)
		return -EPROTO;
	*id = get32(p);
	*v = get32(p + 4);
	return *id ? 0 : -EPROTO;
}

void agent_resize_encode(uint8_t out[8], uint32_t id, uint16_t rows, uint16_t cols)
{
	put32(out, id);
	out[4] = (uint8_t)rows;
	out[5] = (uint8_t)(rows >> 8);
	out[6] = (uint8_t)cols;
	out[7] = (uint8_t)(cols >> 8);
}

int agent_resize_decode(const uint8_t *p, size_t len, uint32_t *id, uint16_t *rows, uint16_t *cols)
{
	if (len != 8)
		return -EPROTO;
	*id = get32(p);
	*rows = (uint16_t)(p[4] | p[5] << 8);
	*cols = (uint16_t)(p[6] | p[7] << 8);
	if (!*id || !*rows || !*cols || *rows > AGENT_MAX_WINSZ || *cols > AGENT_MAX_WINSZ)
		return -EPROTO;
	return 0;
}

void agent_gap_encode(uint8_t out[12], uint32_t stream, uint64_t bytes)
{
	put32(out, stream);
	put64(out + 4, bytes);
}

int agent_gap_decode(const uint8_t *p, size_t len, uint32_t *stream, uint64_t *bytes)
{
	if (len != 12)
		return -EPROTO;
	*stream = get32(p);
	*bytes = get64(p + 4);
	return (*stream == AGENT_STDOUT || *stream == AGENT_STDERR) && *bytes ? 0 : -EPROTO;
}

/* An entry's state, how and code agree: running has none, exited has what EXIT may carry. */
static int proc_state_ok(const struct agent_proc *pr)
{
	if (!pr->id || !pr->pid)
		return 0;
	if (pr->state == AGENT_PROC_RUNNING)
		return pr->how == 0 && pr->code == 0;
	if (pr->state != AGENT_PROC_EXITED)
		return 0;
	uint8_t x[8];
	uint32_t how;
	int32_t code;
	agent_exit_encode(x, pr->how, pr->code);
	return agent_exit_decode(x, sizeof(x), &how, &code) == 0;
}

void agent_proc_set_argv(struct agent_proc *pr, const char *const *argv, uint32_t argc)
{
	size_t off = 0;
	pr->flags &= ~AGENT_PROC_ARGV_CUT;
	for (uint32_t i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);
		if (n + 1 > sizeof(pr->argv) - off) {
			pr->flags |= AGENT_PROC_ARGV_CUT;
			if (i == 0) { /* the command itself is kept, cut to fit */
				memcpy(pr->argv, argv[0], sizeof(pr->argv) - 1);
				off = sizeof(pr->argv) - 1;
				pr->argv[off++] = '\0';
			}
			break;
		}
		memcpy(pr->argv + off, argv[i], n + 1);
		off += n + 1;
	}
	pr->argv_len = (uint16_t)off;
}

/* An entry's argv: one or more NUL-terminated arguments. */
static int proc_argv_ok(const char *a, size_t n)
{
	return n >= 1 && n <= AGENT_PROC_ARGV && a[n - 1] == '\0';
}

int agent_proc_encode(uint8_t *out, size_t cap, size_t *off, const struct agent_proc *pr)
{
	size_t tl = strnlen(pr->tag, sizeof(pr->tag));
	if ((tl && !agent_tag_ok(pr->tag, tl)) || tl > AGENT_MAX_TAG || !proc_state_ok(pr) ||
	    (pr->flags & ~(AGENT_PROC_PTY | AGENT_PROC_ARGV_CUT)) || !proc_argv_ok(pr->argv, pr->argv_len))
		return -EINVAL;
	if (cap > AGENT_MAX_PAYLOAD)
		cap = AGENT_MAX_PAYLOAD;
	size_t n = AGENT_PROC_FIXED + tl + pr->argv_len;
	if (*off > cap || n > cap - *off)
		return -E2BIG;
	uint8_t *q = out + *off;
	put32(q, pr->id);
	put32(q + 4, pr->pid);
	put32(q + 8, pr->state);
	put32(q + 12, pr->how);
	put32(q + 16, (uint32_t)pr->code);
	put32(q + 20, pr->flags);
	q[24] = (uint8_t)tl;
	q[25] = (uint8_t)(tl >> 8);
	q[26] = (uint8_t)pr->argv_len;
	q[27] = (uint8_t)(pr->argv_len >> 8);
	memcpy(q + AGENT_PROC_FIXED, pr->tag, tl);
	memcpy(q + AGENT_PROC_FIXED + tl, pr->argv, pr->argv_len);
	*off += n;
	return 0;
}

int agent_proc_next(const uint8_t *p, size_t len, size_t *off, struct agent_proc *pr)
{
	if (*off == len)
		return 0;
	if (*off > len || len - *off < AGENT_PROC_FIXED)
		return -EPROTO;
	const uint8_t *q = p + *off;
	size_t tl = (size_t)q[24] | (size_t)q[25] << 8, al = (size_t)q[26] | (size_t)q[27] << 8;
	size_t room = len - *off - AGENT_PROC_FIXED;
	if (tl > AGENT_MAX_TAG || al > AGENT_PROC_ARGV || tl + al > room ||
	    (tl && !agent_tag_ok((const char *)q + AGENT_PROC_FIXED, tl)) ||
	    !proc_argv_ok((const char *)q + AGENT_PROC_FIXED + tl, al))
		return -EPROTO;
	pr->id = get32(q);
	pr->pid = get32(q + 4);
	pr->state = get32(q + 8);
	pr->how = get32(q + 12);
	pr->code = (int32_t)get32(q + 16);
	pr->flags = get32(q + 20);
	memcpy(pr->tag, q + AGENT_PROC_FIXED, tl);
	pr->tag[tl] = '\0';
	pr->argv_len = (uint16_t)al;
	memcpy(pr->argv, q + AGENT_PROC_FIXED + tl, al);
	if (!proc_state_ok(pr) || (pr->flags & ~(AGENT_PROC_PTY | AGENT_PROC_ARGV_CUT)))
		return -EPROTO;
	*off += AGENT_PROC_FIXED + tl + al;
	return 1;
}

/* ---- watching a directory (version 5) ---- */

int agent_watch_encode(uint8_t *out, size_t cap, uint32_t flags, const char *path)
{
	return flags_path_encode(out, cap, flags, AGENT_WATCH_RECURSIVE, path);
}

int agent_watch_decode(const uint8_t *p, size_t len, uint32_t *flags, char *path, size_t pathcap)
{
	return flags_path_decode(p, len, AGENT_WATCH_RECURSIVE, flags, path, pathcap);
}

int agent_wevent_name_ok(const char *s, size_t n)
{
	if (n == 0 || n >= AGENT_MAX_PATH || memchr(s, '\0', n) || s[0] == '/' || s[n - 1] == '/')
		return 0;
	/* every component: not empty ("a//b"), not "." or ".." */
	for (size_t b = 0; b < n;) {
		const char *slash = memchr(s + b, '/', n - b);
		size_t e = slash ? (size_t)(slash - s) : n, k = e - b;
		if (k == 0 || (k == 1 && s[b] == '.') || (k == 2 && s[b] == '.' && s[b + 1] == '.'))
			return 0;
		b = e + 1;
	}
	return 1;
}

/* Whether an event of kind carries a name. */
static int wevent_named(uint16_t kind)
{
	return (kind >= AGENT_WEV_CREATE && kind <= AGENT_WEV_CHMOD) || kind == AGENT_WEV_UNWATCHED;
}

int agent_wevent_encode(uint8_t *out, size_t cap, size_t *off, const struct agent_wevent *e)
{
	size_t n;
	if (wevent_named(e->kind)) {
		n = strnlen(e->name, sizeof(e->name));
		if (!agent_wevent_name_ok(e->name, n))
			return -EINVAL;
	} else if (e->kind == AGENT_WEV_LOST) {
		if (!e->lost)
			return -EINVAL;
		n = 8;
	} else if (e->kind == AGENT_WEV_OVERFLOW) {
		n = 0;
	} else {
		return -EINVAL;
	}
	if (cap > AGENT_MAX_PAYLOAD)
		cap = AGENT_MAX_PAYLOAD;
	if (*off > cap || AGENT_WEVENT_FIXED + n > cap - *off)
		return -E2BIG;
	uint8_t *q = out + *off;
	q[0] = (uint8_t)e->kind;
	q[1] = (uint8_t)(e->kind >> 8);
	q[2] = (uint8_t)n;
	q[3] = (uint8_t)(n >> 8);
	if (e->kind == AGENT_WEV_LOST)
		put64(q + AGENT_WEVENT_FIXED, e->lost);
	else
		memcpy(q + AGENT_WEVENT_FIXED, e->name, n);
	*off += AGENT_WEVENT_FIXED + n;
	return 0;
}

int agent_wevent_next(const uint8_t *p, size_t len, size_t *off, struct agent_wevent *e)
{
	if (*off == len)
		return 0;
	if (*off > len || len - *off < AGENT_WEVENT_FIXED)
		return -EPROTO;
	const uint8_t *q = p + *off;
	uint16_t kind = (uint16_t)(q[0] | q[1] << 8);
	size_t n = (size_t)q[2] | (size_t)q[3] << 8;
	if (n > len - *off - AGENT_WEVENT_FIXED)
		return -EPROTO;
	const uint8_t *v = q + AGENT_WEVENT_FIXED;
	e->kind = kind;
	e->lost = 0;
	e->name[0] = '\0';
	if (wevent_named(kind)) {
		if (!agent_wevent_name_ok((const char *)v, n))
			return -EPROTO;
		memcpy(e->name, v, n);
		e->name[n] = '\0';
	} else if (kind == AGENT_WEV_LOST) {
		if (n != 8 || !(e->lost = get64(v)))
			return -EPROTO;
	} else if (kind != AGENT_WEV_OVERFLOW || n != 0) {
		return -EPROTO;
	}
	*off += AGENT_WEVENT_FIXED + n;
	return 1;
}

int agent_write_frame(int fd, uint16_t type, const void *payload, uint32_t len)
{
	uint8_t hdr[AGENT_HDR_LEN];
	agent_hdr_encode(hdr, len, type, 0);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, len } };
	int n = len ? 2 : 1;
	struct iovec *v = iov;
	while (n) {
		ssize_t w = writev(fd, v, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		while (n && (size_t)w >= v->iov_len) {
			w -= (ssize_t)v->iov_len;
			v++;
			n--;
		}
		if (n) {
			v->iov_base = (uint8_t *)v->iov_base + w;
			v->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Reads exactly len bytes: 0, 1 for end of stream before the first byte, or -errno. */
static int read_full(int fd, uint8_t *p, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = read(fd, p + got, len - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return got ? -EPROTO : 1;
		got += (size_t)r;
	}
	return 0;
}

int agent_read_frame(int fd, struct agent_hdr *h, uint8_t *payload, size_t payload_cap)
{
	uint8_t hdr[AGENT_HDR_LEN];
	int rc = read_full(fd, hdr, sizeof(hdr));
	if (rc == 1)
		return -EPIPE;
	if (rc)
		return rc;
	if (agent_hdr_decode(hdr, h) || h->len > payload_cap)
		return -EPROTO;
	rc = read_full(fd, payload, h->len);
	return rc == 1 ? -EPROTO : rc;
}

uint32_t agent_error_text(char *msg, size_t size, const char *fmt, va_list ap)
{
	int n = vsnprintf(msg, size, fmt, ap);
	if (n < 0)
		return msg[0] = '\0', 0;
	return (size_t)n >= size ? (uint32_t)(size - 1) : (uint32_t)n;
}
