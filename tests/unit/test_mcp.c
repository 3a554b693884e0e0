/*
 * The MCP layer of `padcell mcp` (vmm/mcp/mcp.c) with a fake sandbox backend that records what
 * the tools asked for: JSON-RPC framing, malformed and oversized messages, wrong types, unknown
 * methods and tools, notifications that get no answer, and each tool's result shape.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/mcp/mcp.h"

struct fake {
	char argv[3][256];
	char env[4][128];
	int nenv;
	char cwd[64];
	unsigned timeout;
	int fail;          /* the next call fails with this (-errno) */
	const char *out;   /* the command's stdout / the file's bytes */
	size_t out_len;
	char written[64];
	size_t written_len;
	char path[128];
	int calls;
};

static int f_run(void *ctx, const struct mcp_run_req *req, struct mcp_run_res *res, char *err, size_t errlen)
{
	struct fake *f = ctx;
	f->calls++;
	if (f->fail)
		return snprintf(err, errlen, "the sandbox failed"), f->fail;
	for (int i = 0; i < 3; i++)
		snprintf(f->argv[i], sizeof(f->argv[i]), "%s", req->argv[i]);
	cr_assert_null(req->argv[3]);
	f->nenv = 0;
	for (int i = 0; req->env[i] && i < 4; i++)
		snprintf(f->env[f->nenv++], sizeof(f->env[0]), "%s", req->env[i]);
	snprintf(f->cwd, sizeof(f->cwd), "%s", req->cwd ? req->cwd : "(none)");
	f->timeout = req->timeout_s;
	res->out.data = malloc(f->out_len + 1);
	memcpy(res->out.data, f->out, f->out_len);
	res->out.len = f->out_len;
	res->err.data = strdup("warn\n");
	res->err.len = 5;
	res->exit_code = 3;
	return 0;
}

static int f_read(void *ctx, const char *path, struct mcp_output *o, char *err, size_t errlen)
{
	struct fake *f = ctx;
	f->calls++;
	snprintf(f->path, sizeof(f->path), "%s", path);
	if (f->fail)
		return snprintf(err, errlen, "no such file"), f->fail;
	o->data = malloc(f->out_len + 1);
	memcpy(o->data, f->out, f->out_len);
	o->len = f->out_len;
	return 0;
}

static int f_write(void *ctx, const char *path, const void *data, size_t len, char *err, size_t errlen)
{
	struct fake *f = ctx;
	f->calls++;
	snprintf(f->path, sizeof(f->path), "%s", path);
	memcpy(f->written, data, len < sizeof(f->written) ? len : sizeof(f->written));
	f->written_len = len;
	return 0;
}

static int f_list(void *ctx, const char *path, struct mcp_entry **e, size_t *n, char *err, size_t errlen)
{
	struct fake *f = ctx;
	f->calls++;
	snprintf(f->path, sizeof(f->path), "%s", path);
	*e = calloc(2, sizeof(**e));
	(*e)[0] = (struct mcp_entry){ .type = 'd', .mode = 0755, .size = 4096, .mtime_s = 0, .name = "etc" };
	(*e)[1] = (struct mcp_entry){ .type = '-', .mode = 0644, .size = 12, .mtime_s = 86400, .name = "hello.txt" };
	*n = 2;
	return 0;
}

static struct fake fk;
static struct mcp_backend backend = { .ctx = &fk, .run = f_run, .read_file = f_read, .write_file = f_write, .list = f_list };
static struct mcp m;

static void setup(void)
{
	memset(&fk, 0, sizeof(fk));
	fk.out = "hi\n";
	fk.out_len = 3;
	backend.stop_signo = 0;
	mcp_init(&m, &backend, "9.9");
}

/* Sends one line; the answer parsed (NULL when there was none).  Every answer is one line of JSON-RPC 2.0. */
static json_t *ask(const char *line)
{
	char *a = mcp_handle(&m, line, strlen(line));
	if (!a)
		return NULL;
	cr_assert_null(strchr(a, '\n'), "one line: %s", a);
	json_error_t je;
	json_t *j = json_loads(a, 0, &je);
	cr_assert_not_null(j, "answer is JSON: %s", a);
	cr_assert_str_eq(json_string_value(json_object_get(j, "jsonrpc")), "2.0");
	free(a);
	return j;
}

static int error_code(json_t *j)
{
	cr_assert_not_null(j);
	json_t *e = json_object_get(j, "error");
	cr_assert(json_is_object(e), "an error answer");
	cr_assert(json_is_string(json_object_get(e, "message")));
	return (int)json_integer_value(json_object_get(e, "code"));
}

#define CALL(args) "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":" args "}"

TestSuite(mcp, .init = setup);

Test(mcp, initialize_negotiates_the_version)
{
	json_t *j = ask("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-03-26\","
			"\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}");
	json_t *r = json_object_get(j, "result");
	cr_assert_eq(json_integer_value(json_object_get(j, "id")), 1);
	cr_assert_str_eq(json_string_value(json_object_get(r, "protocolVersion")), "2025-03-26", "a version we speak: kept");
	cr_assert(json_is_object(json_object_get(json_object_get(r, "capabilities"), "tools")));
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "serverInfo"), "name")), "padcell");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "serverInfo"), "version")), "9.9");
	json_decref(j);
	j = ask("{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"1999-01-01\"}}");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "result"), "protocolVersion")), "2025-06-18",
			 "another: our newest");
	cr_assert_str_eq(json_string_value(json_object_get(j, "id")), "x", "a string id comes back as it was");
	json_decref(j);
	j = ask("{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\",\"params\":{\"protocolVersion\":20250618}}");
	cr_assert_eq(error_code(j), MCP_INVALID_PARAMS);
	json_decref(j);
	j = ask("{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\"}");
	cr_assert_eq(error_code(j), MCP_INVALID_PARAMS, "no params");
	json_decref(j);
}

Test(mcp, notifications_and_responses_get_no_answer)
{
	cr_assert_null(ask("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"));
	cr_assert_null(ask("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":3}}"));
	cr_assert_null(ask("{\"jsonrpc\":\"2.0\",\"method\":\"no/such/notification\"}"), "unknown: still no answer");
	cr_assert_null(ask("{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"run_command\","
			   "\"arguments\":{\"cmd\":\"rm -rf /\"}}}"));
	cr_assert_eq(fk.calls, 0, "a notification never runs a tool");
	cr_assert_null(ask("{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}"), "a response to nothing");
}

Test(mcp, malformed_messages)
{
	static const char *const parse[] = { "{", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} trailing",
					     "\xff\xfe", "{\"a\":1,\"a\":2}", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\\u0000ng\"}" };
	for (size_t i = 0; i < sizeof(parse) / sizeof(parse[0]); i++) {
		json_t *j = ask(parse[i]);
		cr_assert_eq(error_code(j), MCP_PARSE_ERROR, "case %zu", i);
		cr_assert(json_is_null(json_object_get(j, "id")), "id null: the request could not be read");
		json_decref(j);
	}
	static const char *const invalid[] = {
		"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", /* batches are gone since 2025-06-18 */
		"42", "\"ping\"", "null",
		"{\"id\":1,\"method\":\"ping\"}",                        /* no jsonrpc */
		"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}",
		"{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"ping\"}",
		"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}",
		"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}",
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":\"x\"}",
	};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		json_t *j = ask(invalid[i]);
		cr_assert_eq(error_code(j), MCP_INVALID_REQUEST, "case %zu: %s", i, invalid[i]);
		json_decref(j);
	}
	json_t *j = ask("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":[1]}");
	cr_assert_eq(error_code(j), MCP_INVALID_PARAMS, "positional params");
	json_decref(j);
	j = ask("{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"resources/list\"}");
	cr_assert_eq(error_code(j), MCP_METHOD_NOT_FOUND);
	cr_assert_eq(json_integer_value(json_object_get(j, "id")), 9);
	json_decref(j);
	j = ask("{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}");
	cr_assert(json_is_object(json_object_get(j, "result")));
	json_decref(j);
}

Test(mcp, tools_list_names_five_tools_with_schemas)
{
	json_t *j = ask("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{}}");
	json_t *tools = json_object_get(json_object_get(j, "result"), "tools");
	cr_assert_eq(json_array_size(tools), 5);
	static const char *const names[] = { "run_command", "run_python", "read_file", "write_file", "list_files" };
	for (size_t i = 0; i < 5; i++) {
		json_t *t = json_array_get(tools, i);
		cr_assert_str_eq(json_string_value(json_object_get(t, "name")), names[i]);
		cr_assert_str_eq(json_string_value(json_object_get(json_object_get(t, "inputSchema"), "type")), "object");
		cr_assert(json_is_string(json_object_get(t, "description")));
	}
	json_decref(j);
}

Test(mcp, run_command_passes_its_arguments_and_returns_the_result)
{
	json_t *j = ask(CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":\"echo hi; exit 3\",\"cwd\":\"/tmp\","
			     "\"env\":{\"A\":\"1\",\"B\":\"x y\"},\"timeout\":9}}"));
	cr_assert_str_eq(fk.argv[0], "/bin/sh");
	cr_assert_str_eq(fk.argv[1], "-c");
	cr_assert_str_eq(fk.argv[2], "echo hi; exit 3");
	cr_assert_eq(fk.nenv, 2);
	cr_assert_str_eq(fk.env[0], "A=1");
	cr_assert_str_eq(fk.env[1], "B=x y");
	cr_assert_str_eq(fk.cwd, "/tmp");
	cr_assert_eq(fk.timeout, 9);
	json_t *r = json_object_get(j, "result");
	cr_assert(json_is_false(json_object_get(r, "isError")), "a non-zero exit is the command's answer, not a tool failure");
	json_t *sc = json_object_get(r, "structuredContent");
	cr_assert_str_eq(json_string_value(json_object_get(sc, "stdout")), "hi\n");
	cr_assert_str_eq(json_string_value(json_object_get(sc, "stderr")), "warn\n");
	cr_assert_eq(json_integer_value(json_object_get(sc, "exit_code")), 3);
	cr_assert(json_is_false(json_object_get(sc, "timed_out")));
	const char *text = json_string_value(json_object_get(json_array_get(json_object_get(r, "content"), 0), "text"));
	cr_assert(text && strstr(text, "exit code: 3") && strstr(text, "hi\n") && strstr(text, "warn\n"), "%s", text);
	json_decref(j);
	/* the defaults: no cwd, no env, the default timeout; python's argv */
	j = ask(CALL("{\"name\":\"run_python\",\"arguments\":{\"code\":\"print(1)\"}}"));
	cr_assert_str_eq(fk.argv[0], "python3");
	cr_assert_str_eq(fk.argv[2], "print(1)");
	cr_assert_eq(fk.nenv, 0);
	cr_assert_str_eq(fk.cwd, "(none)");
	cr_assert_eq(fk.timeout, MCP_TIMEOUT_DEFAULT);
	json_decref(j);
}

Test(mcp, output_that_is_not_utf8_still_answers)
{
	fk.out = "ok\xff\xc0\x80\xed\xa0\x80z";
	fk.out_len = 9;
	json_t *j = ask(CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":\"cat /bin/sh\"}}"));
	json_t *sc = json_object_get(json_object_get(j, "result"), "structuredContent");
	const char *o = json_string_value(json_object_get(sc, "stdout"));
	cr_assert_not_null(o);
	cr_assert(!strncmp(o, "ok\xef\xbf\xbd", 5) && o[strlen(o) - 1] == 'z', "bad bytes become U+FFFD: %s", o);
	json_decref(j);
	j = ask(CALL("{\"name\":\"read_file\",\"arguments\":{\"path\":\"/bin/sh\"}}"));
	cr_assert(json_is_true(json_object_get(json_object_get(j, "result"), "isError")), "read_file returns text only");
	json_decref(j);
}

Test(mcp, wrong_arguments_are_invalid_params_and_run_nothing)
{
	static const char *const bad[] = {
		CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":5}}"),
		CALL("{\"name\":\"run_command\",\"arguments\":{}}"),
		CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":\"x\",\"timeout\":\"5\"}}"),
		CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":\"x\",\"timeout\":0}}"),
		CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":\"x\",\"timeout\":86401}}"),
		CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":\"x\",\"cwd\":\"tmp\"}}"),
		CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":\"x\",\"env\":[\"A=1\"]}}"),
		CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":\"x\",\"env\":{\"A\":1}}}"),
		CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":\"x\",\"env\":{\"A=B\":\"1\"}}}"),
		CALL("{\"name\":\"run_command\",\"arguments\":\"cmd\"}"),
		CALL("{\"name\":\"run_python\",\"arguments\":{\"cmd\":\"print(1)\"}}"),
		CALL("{\"name\":\"read_file\",\"arguments\":{}}"),
		CALL("{\"name\":\"read_file\",\"arguments\":{\"path\":\"relative\"}}"),
		CALL("{\"name\":\"write_file\",\"arguments\":{\"path\":\"/a\"}}"),
		CALL("{\"name\":\"write_file\",\"arguments\":{\"path\":\"/a\",\"content\":[]}}"),
		CALL("{\"name\":\"list_files\",\"arguments\":{\"path\":3}}"),
		CALL("{\"name\":\"no_such_tool\",\"arguments\":{}}"),
		CALL("{\"name\":42}"),
		CALL("{}"),
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *j = ask(bad[i]);
		cr_assert_eq(error_code(j), MCP_INVALID_PARAMS, "case %zu: %s", i, bad[i]);
		cr_assert_eq(json_integer_value(json_object_get(j, "id")), 7);
		json_decref(j);
	}
	cr_assert_eq(fk.calls, 0, "nothing reached the sandbox");
}

Test(mcp, a_failing_sandbox_is_an_error_result)
{
	fk.fail = -EIO;
	json_t *j = ask(CALL("{\"name\":\"run_command\",\"arguments\":{\"cmd\":\"true\"}}"));
	json_t *r = json_object_get(j, "result");
	cr_assert(json_is_true(json_object_get(r, "isError")));
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(r, "content"), 0), "text")),
			 "the sandbox failed");
	cr_assert_null(json_object_get(r, "structuredContent"));
	json_decref(j);
	j = ask(CALL("{\"name\":\"read_file\",\"arguments\":{\"path\":\"/nope\"}}"));
	cr_assert(json_is_true(json_object_get(json_object_get(j, "result"), "isError")));
	json_decref(j);
}

Test(mcp, files_and_listing)
{
	json_t *j = ask(CALL("{\"name\":\"write_file\",\"arguments\":{\"path\":\"/w/x.txt\",\"content\":\"caf\\u00e9\"}}"));
	cr_assert(json_is_false(json_object_get(json_object_get(j, "result"), "isError")));
	cr_assert_str_eq(fk.path, "/w/x.txt");
	cr_assert_eq(fk.written_len, 5);
	cr_assert_eq(memcmp(fk.written, "caf\xc3\xa9", 5), 0);
	json_decref(j);
	fk.out = "line\n";
	fk.out_len = 5;
	j = ask(CALL("{\"name\":\"read_file\",\"arguments\":{\"path\":\"/etc/hostname\"}}"));
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(
				 json_object_get(json_object_get(j, "result"), "content"), 0), "text")), "line\n");
	json_decref(j);
	j = ask(CALL("{\"name\":\"list_files\"}"));
	cr_assert_str_eq(fk.path, "/", "the default directory");
	const char *t = json_string_value(json_object_get(json_array_get(
		json_object_get(json_object_get(j, "result"), "content"), 0), "text"));
	cr_assert_str_eq(t, "d 0755 4096 1970-01-01T00:00:00Z etc\n- 0644 12 1970-01-02T00:00:00Z hello.txt\n");
	json_decref(j);
}

/* ---- the stdio loop ---- */

struct feeder {
	int fd;
	const char *data;
	size_t len;
};

static void *feed(void *arg)
{
	struct feeder *f = arg;
	for (size_t off = 0; off < f->len;) {
		ssize_t w = write(f->fd, f->data + off, f->len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(f->fd);
	return NULL;
}

Test(mcp, serve_bounds_lines_and_ends_at_eof, .timeout = 60)
{
	/* an oversized line between two good ones; a CRLF line; a last line without newline is dropped */
	size_t big = MCP_LINE_MAX + 1000;
	const char *pre = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n";
	const char *post = "\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}";
	size_t len = strlen(pre) + big + strlen(post);
	char *in = malloc(len);
	memcpy(in, pre, strlen(pre));
	memset(in + strlen(pre), 'x', big);
	memcpy(in + strlen(pre) + big, post, strlen(post));
	int pin[2], pout[2];
	cr_assert_eq(pipe(pin), 0);
	cr_assert_eq(pipe(pout), 0);
	struct feeder f = { pin[1], in, len };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, feed, &f), 0);
	int signo = 0;
	cr_assert_eq(mcp_serve(&m, pin[0], pout[1], -1, &signo), 0);
	pthread_join(t, NULL);
	close(pout[1]);
	char out[4096];
	ssize_t n = read(pout[0], out, sizeof(out) - 1);
	cr_assert_gt(n, 0);
	out[n] = '\0';
	char *l1 = out, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
	cr_assert(strstr(l1, "\"id\":1") && strstr(l1, "\"result\""), "%s", out);
	cr_assert(strstr(l2, "-32600") && strstr(l2, "4 MiB"), "%s", out);
	cr_assert(strstr(l3, "\"id\":2"), "%s", out);
	cr_assert_null(strstr(out, "\"id\":3"), "no newline, no message");
	close(pin[0]);
	close(pout[0]);
	free(in);
}

/* ---- build/padcell mcp itself ---- */

#include <signal.h>
#include <sys/wait.h>

static pid_t mcp_spawn(int *to, int *from)
{
	char self[4096], bin[4200];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	snprintf(bin, sizeof(bin), "%s/../padcell", self);
	int a[2], b[2];
	cr_assert_eq(pipe(a), 0);
	cr_assert_eq(pipe(b), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(a[0], 0);
		dup2(b[1], 1);
		close(a[1]);
		close(b[0]);
		/* no kernel there: the sandbox cannot boot, whatever this host's KVM is */
		setenv("PADCELL_KERNEL", "/nonexistent/vmlinuz", 1);
		setenv("PADCELL_ROOTFS", "/nonexistent/rootfs.ext4", 1);
		execl(bin, bin, "mcp", (char *)NULL);
		_exit(127);
	}
	close(a[0]);
	close(b[1]);
	*to = a[1];
	*from = b[0];
	return pid;
}

static char *read_line(int fd)
{
	static char line[65536];
	size_t n = 0;
	while (n < sizeof(line) - 1 && read(fd, line + n, 1) == 1 && line[n] != '\n')
		n++;
	line[n] = '\0';
	return line;
}

Test(mcp, the_binary_answers_and_ends_cleanly, .timeout = 60)
{
	int to, from;
	pid_t pid = mcp_spawn(&to, &from);
	const char *in = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\"}}\n"
			 "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n"
			 "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"run_command\","
			 "\"arguments\":{\"cmd\":\"true\"}}}\n";
	cr_assert_eq(write(to, in, strlen(in)), (ssize_t)strlen(in));
	char *l = read_line(from);
	cr_assert(strstr(l, "\"id\":1") && strstr(l, "\"protocolVersion\":\"2025-06-18\""), "%s", l);
	l = read_line(from);
	cr_assert(strstr(l, "\"id\":2") && strstr(l, "\"isError\":true"), "a sandbox that cannot boot is a tool error: %s", l);
	close(to); /* the end of input ends the session */
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %x", st);
	close(from);
	/* SIGTERM while it waits for input: 128+15 */
	pid = mcp_spawn(&to, &from);
	cr_assert_eq(write(to, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n", 41), 41);
	l = read_line(from); /* it is serving now, its signals blocked and read */
	cr_assert(strstr(l, "\"result\":{}"), "%s", l);
	kill(pid, SIGTERM);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 143, "exit %x", st);
	close(to);
	close(from);
}

struct late_signal {
	int in_fd, sig_w;
};

/* Sends the "stop signal" once the server has taken its input: it then waits to write its answer. */
static void *late_signal(void *arg)
{
	struct late_signal *l = arg;
	for (int i = 0; i < 30000; i++) { /* a bound, not a clock: at most 30 s of 1 ms checks */
		int left = 1;
		if (ioctl(l->in_fd, FIONREAD, &left) == 0 && left == 0)
			break;
		usleep(1000);
	}
	struct signalfd_siginfo si = { .ssi_signo = SIGUSR1 };
	if (write(l->sig_w, &si, sizeof(si)) != (ssize_t)sizeof(si))
		abort();
	return NULL;
}

Test(mcp, a_client_that_stops_reading_cannot_hold_a_stop_signal, .timeout = 60)
{
	/* stdout a blocking pipe that is already full: the answer cannot be written */
	int pin[2], pout[2], sig[2];
	cr_assert_eq(pipe(pin), 0);
	cr_assert_eq(pipe2(pout, O_NONBLOCK), 0);
	cr_assert_eq(pipe(sig), 0); /* reads like a signalfd: one signalfd_siginfo per signal */
	static char fill[1 << 16];
	while (write(pout[1], fill, sizeof(fill)) > 0)
		;
	int fl = fcntl(pout[1], F_GETFL);
	cr_assert_eq(fcntl(pout[1], F_SETFL, fl & ~O_NONBLOCK), 0, "a blocking stdout, as a client's pipe is");
	const char *req = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n";
	cr_assert_eq(write(pin[1], req, strlen(req)), (ssize_t)strlen(req));
	struct late_signal l = { pin[0], sig[1] };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, late_signal, &l), 0);
	int signo = 0;
	cr_assert_eq(mcp_serve(&m, pin[0], pout[1], sig[0], &signo), -EINTR);
	cr_assert_eq(signo, SIGUSR1);
	pthread_join(t, NULL);
	for (int i = 0; i < 2; i++) {
		close(pin[i]);
		close(pout[i]);
		close(sig[i]);
	}
}
