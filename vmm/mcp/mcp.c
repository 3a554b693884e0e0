/* The MCP layer of `padcell mcp`: JSON-RPC 2.0 messages, initialize, tools/list, tools/call, ping. */
#include "vmm/mcp/mcp.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* The protocol versions this server speaks, newest first: a client asking for another gets the newest. */
static const char *const versions[] = { "2025-06-18", "2025-03-26", "2024-11-05" };

void mcp_init(struct mcp *m, struct mcp_backend *b, const char *server_version)
{
	memset(m, 0, sizeof(*m));
	m->backend = b;
	m->server_version = server_version;
}

void mcp_output_free(struct mcp_output *o)
{
	free(o->data);
	o->data = NULL;
	o->len = 0;
}

static char *dump(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

static char *error_reply(json_t *id, int code, const char *msg)
{
	return dump(json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error",
			      "code", code, "message", msg));
}

static char *result_reply(json_t *id, json_t *result)
{
	return dump(json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result));
}

/* ---- the tools ---- */

static json_t *schema_run_out(void)
{
	return json_pack("{s:s, s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}, s:[s, s, s, s]}", "type", "object", "properties",
			 "stdout", "type", "string", "stderr", "type", "string", "exit_code", "type", "integer",
			 "timed_out", "type", "boolean", "required", "stdout", "stderr", "exit_code", "timed_out");
}

static json_t *tools_list(void)
{
	json_t *run = json_pack(
		"{s:s, s:s, s:{s:s, s:{s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:s, s:i, s:i}}, s:[s]}, s:o}",
		"name", "run_command",
		"description", "Run a shell command (sh -c) in this session's sandbox VM; returns its stdout, stderr and exit code.",
		"inputSchema", "type", "object", "properties",
		"cmd", "type", "string", "description", "the command line, run by /bin/sh -c",
		"cwd", "type", "string", "description", "absolute working directory (default /)",
		"env", "type", "object", "description", "extra environment variables", "additionalProperties", "type", "string",
		"timeout", "type", "integer", "description", "seconds before the command and everything it started are killed",
		"minimum", 1, "maximum", (int)MCP_TIMEOUT_MAX,
		"required", "cmd", "outputSchema", schema_run_out());
	json_t *py = json_pack("{s:s, s:s, s:{s:s, s:{s:{s:s, s:s}, s:{s:s, s:i, s:i}}, s:[s]}, s:o}", "name", "run_python",
			       "description", "Run Python 3 code (python3 -c) in the sandbox; returns stdout, stderr and exit code.",
			       "inputSchema", "type", "object", "properties", "code", "type", "string", "description",
			       "the program", "timeout", "type", "integer", "minimum", 1, "maximum", (int)MCP_TIMEOUT_MAX,
			       "required", "code", "outputSchema", schema_run_out());
	json_t *rd = json_pack("{s:s, s:s, s:{s:s, s:{s:{s:s, s:s}}, s:[s]}}", "name", "read_file", "description",
			       "Read a UTF-8 text file (at most 1 MiB) from the sandbox.", "inputSchema", "type", "object",
			       "properties", "path", "type", "string", "description", "absolute path", "required", "path");
	json_t *wr = json_pack("{s:s, s:s, s:{s:s, s:{s:{s:s, s:s}, s:{s:s}}, s:[s, s]}}", "name", "write_file",
			       "description", "Write a text file in the sandbox (created or replaced; missing parent directories made).",
			       "inputSchema", "type", "object", "properties", "path", "type", "string", "description",
			       "absolute path", "content", "type", "string", "required", "path", "content");
	json_t *ls = json_pack("{s:s, s:s, s:{s:s, s:{s:{s:s, s:s}}}}", "name", "list_files", "description",
			       "List a directory in the sandbox: one line per entry, TYPE MODE SIZE MTIME NAME.",
			       "inputSchema", "type", "object", "properties", "path", "type", "string", "description",
			       "absolute path of a directory (default /)");
	return json_pack("{s:[o, o, o, o, o]}", "tools", run, py, rd, wr, ls);
}

/* A tool's answer: text content, isError, and for the commands their structured result. */
static json_t *tool_result(const char *text, size_t len, bool is_error, json_t *structured)
{
	json_t *t = json_stringn_nocheck(text, len);
	json_t *r = json_pack("{s:[{s:s, s:o}], s:b}", "content", "type", "text", "text", t, "isError", is_error);
	if (structured)
		json_object_set_new(r, "structuredContent", structured);
	return r;
}

static json_t *tool_error(const char *fmt, const char *what)
{
	char msg[800];
	snprintf(msg, sizeof(msg), fmt, what);
	return tool_result(msg, strlen(msg), true, NULL);
}

/* The length of the well-formed UTF-8 character at p (RFC 3629: no overlong forms, no surrogates), or 0. */
static size_t utf8_len(const unsigned char *p, size_t left)
{
	unsigned c = p[0];
	size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	if (!n || n > left || (n == 1 && c == 0))
		return 0;
	for (size_t k = 1; k < n; k++)
		if ((p[k] & 0xc0) != 0x80)
			return 0;
	if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) || (c == 0xf0 && p[1] < 0x90) ||
	    (c == 0xf4 && p[1] > 0x8f))
		return 0;
	return n;
}

/*
 * Guest bytes as a JSON string: valid UTF-8 as it is, anything else with each bad byte replaced
 * by U+FFFD, so a command printing binary still gets an answer.
 */
static json_t *text_of(const char *p, size_t len)
{
	json_t *j = json_stringn(p, len);
	if (j)
		return j;
	char *q = malloc(len * 3 + 1);
	if (!q)
		return json_string("");
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_len((const unsigned char *)p + i, len - i);
		if (n) {
			memcpy(q + o, p + i, n);
			o += n;
			i += n;
		} else {
			memcpy(q + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	j = json_stringn(q, o);
	free(q);
	return j ? j : json_string("");
}

static json_t *run_result(const struct mcp_run_res *res)
{
	json_t *so = text_of(res->out.data ? res->out.data : "", res->out.len);
	json_t *se = text_of(res->err.data ? res->err.data : "", res->err.len);
	/* the text for a model: the exit code first, then both streams */
	size_t cap = json_string_length(so) + json_string_length(se) + 256;
	char *t = malloc(cap);
	int n = 0;
	if (t)
		n = snprintf(t, cap, "%s%d%s%s\n--- stdout ---\n%s%s\n--- stderr ---\n%s%s",
			     res->timed_out ? "timed out and killed (exit code " : "exit code: ", res->exit_code,
			     res->timed_out ? ")" : "", "", json_string_value(so), res->out.truncated ? "\n[truncated at 1 MiB]" : "",
			     json_string_value(se), res->err.truncated ? "\n[truncated at 1 MiB]" : "");
	json_t *st = json_pack("{s:O, s:O, s:i, s:b}", "stdout", so, "stderr", se, "exit_code", res->exit_code,
			       "timed_out", res->timed_out);
	json_t *r = tool_result(t ? t : "", t ? (size_t)n : 0, false, st);
	free(t);
	json_decref(so);
	json_decref(se);
	return r;
}

/* An absolute path argument: NULL with *bad set when it is not one. */
static const char *path_arg(json_t *args, const char *key, bool required, const char *dflt, const char **bad)
{
	json_t *v = json_object_get(args, key);
	if (!v) {
		if (required)
			*bad = "is required";
		return required ? NULL : dflt;
	}
	const char *s = json_string_value(v);
	if (!s) {
		*bad = "must be a string";
		return NULL;
	}
	if (s[0] != '/' || strlen(s) != json_string_length(v) || json_string_length(v) >= 4096) {
		*bad = "must be an absolute path (at most 4095 bytes, no NUL)";
		return NULL;
	}
	return s;
}

#define MCP_MAX_ENV 256

/* The message of an Invalid Params error; returns its code. */
static int invalid(char *msg, size_t msglen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int invalid(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
	return MCP_INVALID_PARAMS;
}

/*
 * tools/call: 0 with *result set, or a JSON-RPC error (code, message) for a call that cannot be
 * made: an unknown tool, arguments of the wrong shape.
 */
static int tools_call(struct mcp *m, json_t *params, json_t **result, char *msg, size_t msglen)
{
	struct mcp_backend *b = m->backend;
	json_t *name = json_object_get(params, "name"), *args = json_object_get(params, "arguments");
	if (!json_is_string(name))
		return invalid(msg, msglen, "tools/call needs params.name, a string");
	if (args && !json_is_object(args))
		return invalid(msg, msglen, "tools/call: params.arguments must be an object");
	json_t *empty = NULL;
	if (!args)
		args = empty = json_object();
	const char *tool = json_string_value(name);
	char err[600];
	int rc = 0, code = 0;
	const char *bad = NULL;
	if (!strcmp(tool, "run_command") || !strcmp(tool, "run_python")) {
		bool py = tool[4] == 'p';
		const char *key = py ? "code" : "cmd";
		json_t *c = json_object_get(args, key), *env = json_object_get(args, "env"), *to = json_object_get(args, "timeout");
		const char *cwd = path_arg(args, "cwd", false, NULL, &bad);
		if (!json_is_string(c) || strlen(json_string_value(c)) != json_string_length(c)) {
			code = invalid(msg, msglen, "%s: arguments.%s must be a string without NUL", tool, key);
		} else if (bad) {
			code = invalid(msg, msglen, "%s: arguments.cwd %s", tool, bad);
		} else if ((env && (py || !json_is_object(env) || json_object_size(env) > MCP_MAX_ENV)) ||
			   (to && (!json_is_integer(to) || json_integer_value(to) < 1 ||
				   json_integer_value(to) > MCP_TIMEOUT_MAX))) {
			code = invalid(msg, msglen, "%s: %s", tool, env && (py || !json_is_object(env) || json_object_size(env) > MCP_MAX_ENV)
				? "arguments.env must be an object of at most 256 string values (run_command only)"
				: "arguments.timeout must be an integer of seconds, 1 to 86400");
		} else {
			static char *envv[MCP_MAX_ENV + 1];
			char *kv[MCP_MAX_ENV];
			size_t ne = 0;
			const char *k;
			json_t *v;
			json_object_foreach(env, k, v) {
				const char *s = json_string_value(v);
				if (!s || !k[0] || strchr(k, '=') || strlen(s) != json_string_length(v)) {
					code = invalid(msg, msglen, "%s: arguments.env: each NAME (no '=') needs a string value without NUL",
							tool);
					break;
				}
				if (asprintf(&kv[ne], "%s=%s", k, s) < 0)
					break;
				envv[ne] = kv[ne];
				ne++;
			}
			envv[ne] = NULL;
			if (!code) {
				char *argv[] = { py ? "python3" : "/bin/sh", py ? "-c" : "-c", (char *)json_string_value(c), NULL };
				struct mcp_run_req req = { .argv = argv, .env = envv, .cwd = cwd,
							   .timeout_s = to ? (unsigned)json_integer_value(to) : MCP_TIMEOUT_DEFAULT };
				struct mcp_run_res res = { 0 };
				rc = b->run(b->ctx, &req, &res, err, sizeof(err));
				*result = rc ? tool_error("%s", err) : run_result(&res);
				mcp_output_free(&res.out);
				mcp_output_free(&res.err);
			}
			for (size_t i = 0; i < ne; i++)
				free(kv[i]);
		}
	} else if (!strcmp(tool, "read_file")) {
		const char *p = path_arg(args, "path", true, NULL, &bad);
		if (!p) {
			code = invalid(msg, msglen, "read_file: arguments.path %s", bad);
		} else {
			struct mcp_output o = { 0 };
			rc = b->read_file(b->ctx, p, &o, err, sizeof(err));
			json_t *t = rc ? NULL : json_stringn(o.data ? o.data : "", o.len);
			if (rc)
				*result = tool_error("%s", err);
			else if (!t)
				*result = tool_error("%s is not UTF-8 text (read_file returns text only)", p);
			else
				*result = json_pack("{s:[{s:s, s:o}], s:b}", "content", "type", "text", "text", t, "isError", false);
			mcp_output_free(&o);
		}
	} else if (!strcmp(tool, "write_file")) {
		const char *p = path_arg(args, "path", true, NULL, &bad);
		json_t *c = json_object_get(args, "content");
		if (!p)
			code = invalid(msg, msglen, "write_file: arguments.path %s", bad);
		else if (!json_is_string(c))
			code = invalid(msg, msglen, "write_file: arguments.content must be a string");
		else {
			rc = b->write_file(b->ctx, p, json_string_value(c), json_string_length(c), err, sizeof(err));
			char ok[4200];
			snprintf(ok, sizeof(ok), "wrote %zu bytes to %s", json_string_length(c), p);
			*result = rc ? tool_error("%s", err) : tool_result(ok, strlen(ok), false, NULL);
		}
	} else if (!strcmp(tool, "list_files")) {
		const char *p = path_arg(args, "path", false, "/", &bad);
		if (!p) {
			code = invalid(msg, msglen, "list_files: arguments.path %s", bad);
		} else {
			struct mcp_entry *e = NULL;
			size_t n = 0;
			rc = b->list(b->ctx, p, &e, &n, err, sizeof(err));
			if (rc) {
				*result = tool_error("%s", err);
			} else {
				size_t cap = n * 320 + 1, off = 0;
				char *t = malloc(cap);
				for (size_t i = 0; t && i < n; i++) {
					time_t secs = (time_t)e[i].mtime_s;
					struct tm tm;
					char when[32] = "?";
					if (gmtime_r(&secs, &tm))
						strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
					off += (size_t)snprintf(t + off, cap - off, "%c %04o %llu %s %s\n", e[i].type, e[i].mode,
								(unsigned long long)e[i].size, when, e[i].name);
				}
				json_t *s = t ? text_of(t, off) : json_string("");
				*result = json_pack("{s:[{s:s, s:o}], s:b}", "content", "type", "text", "text", s, "isError", false);
				free(t);
			}
			free(e);
		}
	} else {
		code = invalid(msg, msglen, "unknown tool '%.200s'", tool);
	}
	json_decref(empty);
	return code;
}

/* ---- messages ---- */

char *mcp_handle(struct mcp *m, const char *line, size_t len)
{
	json_error_t je;
	json_t *msg = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!msg) {
		char t[300];
		snprintf(t, sizeof(t), "Parse error: %s", je.text);
		return error_reply(NULL, MCP_PARSE_ERROR, t);
	}
	char *out = NULL;
	json_t *id = json_object_get(msg, "id");
	json_t *method = json_object_get(msg, "method");
	json_t *params = json_object_get(msg, "params");
	bool id_ok = id && (json_is_string(id) || json_is_integer(id));
	if (!json_is_object(msg)) {
		out = error_reply(NULL, MCP_INVALID_REQUEST, json_is_array(msg) ? "Invalid Request: batches are not supported"
										     : "Invalid Request: not an object");
		goto done;
	}
	if (!method && (json_object_get(msg, "result") || json_object_get(msg, "error")))
		goto done; /* a response: this server sends no requests, so there is nothing to match */
	if (!json_is_string(json_object_get(msg, "jsonrpc")) || strcmp(json_string_value(json_object_get(msg, "jsonrpc")), "2.0") ||
	    !json_is_string(method) || (id && !id_ok) || (params && !json_is_object(params) && !json_is_array(params))) {
		out = error_reply(id_ok ? id : NULL, MCP_INVALID_REQUEST,
				  "Invalid Request: needs jsonrpc \"2.0\", a string method, a string or integer id, object params");
		goto done;
	}
	const char *meth = json_string_value(method);
	if (!id)
		goto done; /* a notification (notifications/initialized, cancelled, ...): never answered */
	if (params && !json_is_object(params)) {
		out = error_reply(id, MCP_INVALID_PARAMS, "params must be an object");
		goto done;
	}
	if (!strcmp(meth, "initialize")) {
		json_t *pv = json_object_get(params, "protocolVersion");
		if (!json_is_string(pv)) {
			out = error_reply(id, MCP_INVALID_PARAMS, "initialize needs params.protocolVersion, a string");
			goto done;
		}
		const char *agreed = versions[0];
		for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
			if (!strcmp(json_string_value(pv), versions[i]))
				agreed = versions[i];
		snprintf(m->version, sizeof(m->version), "%s", agreed);
		m->initialized = true;
		out = result_reply(id, json_pack("{s:s, s:{s:{s:b}}, s:{s:s, s:s}, s:s}", "protocolVersion", agreed,
						 "capabilities", "tools", "listChanged", false, "serverInfo", "name", "padcell",
						 "version", m->server_version, "instructions",
						 "Each session has one sandbox: a padcell microVM (Debian with python3), booted at the "
						 "first tool call and destroyed when the session ends."));
	} else if (!strcmp(meth, "ping")) {
		out = result_reply(id, json_object());
	} else if (!strcmp(meth, "tools/list")) {
		out = result_reply(id, tools_list());
	} else if (!strcmp(meth, "tools/call")) {
		char why[400];
		json_t *res = NULL;
		int code = tools_call(m, params, &res, why, sizeof(why));
		if (code)
			out = error_reply(id, code, why);
		else if (!res)
			out = error_reply(id, MCP_INTERNAL_ERROR, "out of memory");
		else
			out = result_reply(id, res);
	} else {
		char t[300];
		snprintf(t, sizeof(t), "Method not found: %.200s", meth);
		out = error_reply(id, MCP_METHOD_NOT_FOUND, t);
	}
done:
	json_decref(msg);
	return out;
}

/* ---- the stdio loop ---- */

/* Waits for fd's events or a stop signal: 0, -EINTR (signal, *signo set) or -errno. */
static int serve_wait(int fd, short events, int sig_fd, int *signo)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = events }, { .fd = sig_fd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				*signo = (int)si.ssi_signo;
				return -EINTR;
			}
		}
		if (p[0].revents)
			return 0;
	}
}

static int write_line(int fd, const char *s, int sig_fd, int *signo)
{
	size_t len = strlen(s) + 1, off = 0;
	char *line = malloc(len);
	if (!line)
		return -ENOMEM;
	memcpy(line, s, len - 1);
	line[len - 1] = '\n';
	int rc = 0;
	/*
	 * A client that stops reading must not make padcell unkillable: each write waits for room
	 * (or a stop signal) first and is at most PIPE_BUF bytes, which a pipe with room takes
	 * without blocking; stdout's own flags are left alone (it may be shared).
	 */
	while (off < len) {
		if ((rc = serve_wait(fd, POLLOUT, sig_fd, signo)))
			break;
		size_t n = len - off < PIPE_BUF ? len - off : PIPE_BUF;
		ssize_t w = write(fd, line + off, n);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w < 0) {
			rc = -errno;
			break;
		}
		off += (size_t)w;
	}
	free(line);
	return rc;
}

int mcp_serve(struct mcp *m, int in_fd, int out_fd, int sig_fd, int *signo)
{
	size_t cap = MCP_LINE_MAX + 1;
	char *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	size_t len = 0;
	bool skipping = false; /* inside a line that passed MCP_LINE_MAX: dropped to its newline */
	int rc = 0;
	for (;;) {
		if ((rc = serve_wait(in_fd, POLLIN, sig_fd, signo)))
			break;
		ssize_t r = read(in_fd, buf + len, cap - len);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0) {
			rc = -errno;
			break;
		}
		if (r == 0)
			break; /* the client is gone: a last line without its newline is not a message */
		len += (size_t)r;
		size_t start = 0;
		for (;;) {
			char *nl = memchr(buf + start, '\n', len - start);
			if (!nl)
				break;
			size_t n = (size_t)(nl - (buf + start));
			if (!skipping && n && !(n == 1 && buf[start] == '\r')) {
				char *ans = mcp_handle(m, buf + start, n);
				if (ans) {
					rc = write_line(out_fd, ans, sig_fd, signo);
					free(ans);
					if (rc)
						goto out;
				}
				if (m->backend->stop_signo) { /* a stop signal came while a tool ran */
					*signo = m->backend->stop_signo;
					rc = -EINTR;
					goto out;
				}
			}
			skipping = false;
			start += n + 1;
		}
		memmove(buf, buf + start, len - start);
		len -= start;
		if (len == cap) {
			if (!skipping) {
				char *ans = error_reply(NULL, MCP_INVALID_REQUEST, "Invalid Request: a message over 4 MiB");
				rc = ans ? write_line(out_fd, ans, sig_fd, signo) : -ENOMEM;
				free(ans);
				if (rc)
					goto out;
			}
			skipping = true;
			len = 0;
		}
	}
out:
	free(buf);
	return rc;
}
