/*
 * envd in `padcell serve` (vmm/serve/envd.c) without a VM: Connect's envelopes (short, oversized,
 * wrong flags), requests with wrong types, unknown methods and missing sandboxes, then every call
 * translated to agent frames against the real guest agent run as a host process on a Unix socket
 * (the test's dialer stands in for the sandbox's vsock): a command's stdout, stderr, exit code,
 * envVars and cwd; a background command listed, signalled and reconnected to (List, SendSignal,
 * Connect); stdin kept open for SendInput and ended by CloseStdin; a PTY's size set by Start and
 * changed by Update; /health; Stat, ListDir, MakeDir, Move, Remove; /files upload and download;
 * ListDir to a depth and its bound; WatchDir as a live stream (create, write, a recursive watch's
 * subdirectory, the reader leaving) and the polling watchers (CreateWatcher, GetWatcherEvents,
 * RemoveWatcher, their bound per sandbox), with their malformed requests.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/serve/api.h"
#include "vmm/serve/envd.h"
#include "vmm/serve/table.h"
#include "vmm/util.h"
#include "tests/unit/agent_harness.h"

#define KEY "pc_0123456789abcdef0123456789abcdef01234567"
/* The daemon's one key (the generated api-key's case), as serve_api_handle and envd take keys. */
static const struct serve_keys *keys1(void)
{
	static struct serve_keys k;
	serve_keys_one(&k, KEY);
	return &k;
}

static int fk_start(void *ctx, const struct serve_template *tp, struct serve_sandbox *sb,
		    int (*launched)(void *arg, const struct serve_sandbox *sb), void *arg, char *err, size_t errlen)
{
	sb->pid = getpid();
	sb->start_time = 1;
	return launched(arg, sb);
}
static void fk_stop(void *ctx, const struct serve_sandbox *sb) {}
static bool fk_alive(void *ctx, const struct serve_sandbox *sb) { return true; }
static double fk_now(void *ctx) { return 1000.0; }

static struct serve_template tmpl = {.name = "base", .dir = "/nonexistent", .mem_bytes = 256ull << 20, .cpus = 1};
static struct serve_table T;
static char state[64], work[64], sid[SERVE_ID_LEN + 1], agent_name[32];
static pid_t agent_pid = -1;

/* The dialer: the agent's abstract socket, then its HELLO. */
static int test_dial(void *ctx, const struct serve_sandbox *sb, struct agent_conn *c, char *err, size_t errlen)
{
	c->fd = agent_dial(agent_name);
	struct agent_hello h;
	return agent_conn_hello(c, now_ms() + 20000, &h, err, errlen);
}
static const struct envd_dialer D = {.dial = test_dial};

static void setup(void)
{
	snprintf(state, sizeof(state), "/tmp/padcell-envd-test.XXXXXX");
	cr_assert_not_null(mkdtemp(state));
	snprintf(work, sizeof(work), "/tmp/padcell-envd-work.XXXXXX");
	cr_assert_not_null(mkdtemp(work));
	struct serve_spawner sp = {.start = fk_start, .stop = fk_stop, .alive = fk_alive};
	struct serve_clock clk = {.now = fk_now};
	struct serve_limits lim = {.max_sandboxes = 4, .max_mem = 4ull << 30};
	char err[512];
	cr_assert_eq(serve_table_init(&T, state, &lim, &tmpl, 1, &sp, &clk, err, sizeof(err)), 0, "%s", err);
	json_t *env = json_pack("{s:s, s:s}", "FROM_SANDBOX", "sb-value", "BOTH", "sandbox");
	struct serve_sandbox s;
	cr_assert_eq(serve_create(&T, "base", 60, NULL, env, &s, err, sizeof(err)), 0, "%s", err);
	json_decref(env);
	snprintf(sid, sizeof(sid), "%s", s.id);
	serve_sandbox_put(&s);
	snprintf(agent_name, sizeof(agent_name), "envd-%d", (int)getpid());
	agent_pid = agent_spawn_listen(agent_name);
}

static void teardown(void)
{
	if (agent_pid > 0) {
		kill(agent_pid, SIGKILL);
		waitpid(agent_pid, NULL, 0);
	}
	envd_watchers_end(&T);
	serve_table_free(&T);
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", state, work);
	cr_assert_eq(system(cmd), 0);
}

/* A call: method, path, content type, body (len -1: strlen). */
static void call(const char *method, const char *path, const char *ct, const char *body, ssize_t len,
		 const char *file_path, struct envd_reply *rp)
{
	struct envd_request rq = {
		.method = method, .path = path, .sandbox_id = sid, .token = KEY, .content_type = ct,
		.file_path = file_path, .body = body, .len = len < 0 ? (body ? strlen(body) : 0) : (size_t)len,
	};
	envd_handle(&T, &D, keys1(), &rq, rp);
}

static json_t *reply_json(const struct envd_reply *rp)
{
	json_error_t je;
	json_t *j = json_loadb(rp->body, rp->len, 0, &je);
	cr_assert_not_null(j, "reply is JSON: %.*s", (int)rp->len, rp->body);
	return j;
}

static void expect_error(const struct envd_reply *rp, unsigned status, const char *code)
{
	cr_assert_eq(rp->status, status, "status %u, want %u: %.*s", rp->status, status, (int)rp->len, rp->body);
	json_t *j = reply_json(rp);
	cr_assert_str_eq(json_string_value(json_object_get(j, "code")), code);
	cr_assert_not_null(json_string_value(json_object_get(j, "message")));
	json_decref(j);
}

static void unary(const char *path, const char *body, struct envd_reply *rp)
{
	call("POST", path, "application/json", body, -1, NULL, rp);
}

/* A stream call's request: body in one envelope. */
static void stream_call(const char *path, const char *msg, struct envd_reply *rp)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	cr_assert_eq(envd_envelope_append(&buf, &len, &cap, 0, msg, strlen(msg)), 0);
	call("POST", path, "application/connect+json", buf, (ssize_t)len, NULL, rp);
	free(buf);
}

/* ---- envelopes, codes ---- */

Test(envd_codec, envelope_parse)
{
	const uint8_t *m;
	size_t n;
	uint8_t ok[] = {0, 0, 0, 0, 2, '{', '}'};
	cr_assert_eq(envd_envelope_parse(ok, sizeof(ok), 100, &m, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(m, ok + 5);
	cr_assert_eq(envd_envelope_parse(ok, 4, 100, &m, &n), -EPROTO, "shorter than the prefix");
	cr_assert_eq(envd_envelope_parse(ok, 6, 100, &m, &n), -EPROTO, "shorter than its length");
	uint8_t trailing[] = {0, 0, 0, 0, 1, '1', '2'};
	cr_assert_eq(envd_envelope_parse(trailing, sizeof(trailing), 100, &m, &n), -EPROTO, "a second message");
	uint8_t compressed[] = {ENVD_FLAG_COMPRESSED, 0, 0, 0, 2, '{', '}'};
	cr_assert_eq(envd_envelope_parse(compressed, sizeof(compressed), 100, &m, &n), -EPROTO);
	uint8_t end[] = {ENVD_FLAG_END, 0, 0, 0, 2, '{', '}'};
	cr_assert_eq(envd_envelope_parse(end, sizeof(end), 100, &m, &n), -EPROTO);
	uint8_t huge[] = {0, 0xff, 0xff, 0xff, 0xff, 0};
	cr_assert_eq(envd_envelope_parse(huge, sizeof(huge), 1 << 20, &m, &n), -EMSGSIZE, "4 GiB announced");
	cr_assert_eq(envd_envelope_parse(ok, sizeof(ok), 1, &m, &n), -EMSGSIZE, "past the bound");
}

Test(envd_codec, envelope_append_and_codes)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	cr_assert_eq(envd_envelope_append(&buf, &len, &cap, 0, "abc", 3), 0);
	cr_assert_eq(envd_envelope_append(&buf, &len, &cap, ENVD_FLAG_END, "{}", 2), 0);
	cr_assert_eq(len, 15);
	cr_assert_eq(memcmp(buf, "\0\0\0\0\3abc\2\0\0\0\2{}", 15), 0);
	free(buf);
	cr_assert_eq(envd_code_status("not_found"), 404);
	cr_assert_eq(envd_code_status("invalid_argument"), 400);
	cr_assert_eq(envd_code_status("unimplemented"), 501);
	cr_assert_eq(envd_code_status("deadline_exceeded"), 504);
	cr_assert_eq(envd_code_status("unauthenticated"), 401);
	cr_assert_eq(envd_code_status("no-such-code"), 500);
	cr_assert(envd_route("/process.Process/Start"));
	cr_assert(envd_route("/filesystem.Filesystem/Stat"));
	cr_assert(envd_route("/files"));
	cr_assert_not(envd_route("/sandboxes"));
	cr_assert_not(envd_route("/filesx"));
}

/* ---- bad requests: no agent is dialled for any of these ---- */

static int no_dial(void *ctx, const struct serve_sandbox *sb, struct agent_conn *c, char *err, size_t errlen)
{
	cr_assert_fail("a bad request must not reach the agent: %s", ctx ? (const char *)ctx : "");
	return -EIO;
}

static void bad(const char *method, const char *path, const char *ct, const char *body, ssize_t len, const char *id,
		const char *token, unsigned status, const char *code)
{
	char what[300];
	snprintf(what, sizeof(what), "%s %s %.40s", method, path, body);
	struct envd_dialer nd = {.ctx = what, .dial = no_dial};
	struct envd_request rq = {
		.method = method, .path = path, .sandbox_id = id, .token = token, .content_type = ct,
		.body = body, .len = len < 0 ? strlen(body) : (size_t)len,
	};
	struct envd_reply rp;
	envd_handle(&T, &nd, keys1(), &rq, &rp);
	expect_error(&rp, status, code);
	free(rp.body);
}

Test(envd_bad, refused_before_the_agent, .init = setup, .fini = teardown)
{
	const char *st = "/filesystem.Filesystem/Stat", *j = "application/json";
	bad("POST", st, j, "{\"path\":\"/\"}", -1, sid, NULL, 401, "unauthenticated");
	bad("POST", st, j, "{\"path\":\"/\"}", -1, sid, "wrong", 401, "unauthenticated");
	bad("POST", "/filesystem.Filesystem/Chmod", j, "{}", -1, sid, KEY, 501, "unimplemented");
	bad("POST", "/process.Process/Teleport", j, "{}", -1, sid, KEY, 501, "unimplemented");
	bad("GET", st, j, "", -1, sid, KEY, 501, "unimplemented");
	bad("POST", st, "text/plain", "{\"path\":\"/\"}", -1, sid, KEY, 415, "unknown");
	bad("POST", st, j, "{\"path\":", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", st, j, "[1,2]", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", st, j, "{\"path\":\"/\"}", -1, "inosuchsandbox000000", KEY, 404, "not_found");
	bad("POST", st, j, "{\"path\":\"/\"}", -1, NULL, KEY, 404, "not_found");
	bad("POST", "/process.Process/Start", j, "{}", -1, sid, KEY, 415, "unknown");
	bad("POST", "/process.Process/Start", "application/connect+json", "\0\0\0\0\5{}", 7, sid, KEY, 400,
	    "invalid_argument");
	bad("POST", "/files", j, "", 0, sid, KEY, 400, "invalid_argument");
}

/* envd_signal_parse of v (a new reference, released here) */
static int sigp(json_t *v)
{
	int r = envd_signal_parse(v);
	json_decref(v);
	return r;
}

Test(envd_codec, signal_parse)
{
	cr_assert_eq(sigp(json_string("SIGNAL_SIGKILL")), 9);
	cr_assert_eq(sigp(json_string("SIGNAL_SIGTERM")), 15);
	cr_assert_eq(sigp(json_integer(9)), 9);
	cr_assert_eq(sigp(json_integer(15)), 15);
	cr_assert_eq(sigp(json_string("SIGNAL_UNSPECIFIED")), -EINVAL);
	cr_assert_eq(sigp(json_string("SIGNAL_SIGHUP")), -EINVAL);
	cr_assert_eq(sigp(json_string("sigkill")), -EINVAL, "names are exact");
	cr_assert_eq(sigp(json_integer(1)), -EINVAL, "only E2B's two signals");
	cr_assert_eq(sigp(json_integer(0)), -EINVAL);
	cr_assert_eq(sigp(json_real(9.0)), -EINVAL, "a float");
	cr_assert_eq(sigp(json_true()), -EINVAL);
	cr_assert_eq(envd_signal_parse(NULL), -EINVAL, "absent");
	cr_assert(envd_streams("/process.Process/Start"));
	cr_assert(envd_streams("/process.Process/Connect"));
	cr_assert_not(envd_streams("/process.Process/List"));
	cr_assert_not(envd_streams("/process.Process/SendSignal"));
}

/* process.Process's unary calls with wrong types, and the ones padcell does not serve */
Test(envd_bad, process_calls_refused_before_the_agent, .init = setup, .fini = teardown)
{
	const char *ss = "/process.Process/SendSignal", *j = "application/json";
	bad("POST", ss, j, "{}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ss, j, "{\"signal\":\"SIGNAL_SIGKILL\"}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ss, j, "{\"process\":{\"pid\":\"12\"},\"signal\":\"SIGNAL_SIGKILL\"}", -1, sid, KEY, 400,
	    "invalid_argument");
	bad("POST", ss, j, "{\"process\":{\"pid\":0},\"signal\":9}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ss, j, "{\"process\":{\"pid\":-3},\"signal\":9}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ss, j, "{\"process\":{\"pid\":4294967296},\"signal\":9}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ss, j, "{\"process\":{\"pid\":1.5},\"signal\":9}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ss, j, "{\"process\":[7],\"signal\":9}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ss, j, "{\"process\":{\"pid\":7}}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ss, j, "{\"process\":{\"pid\":7},\"signal\":\"SIGNAL_SIGHUP\"}", -1, sid, KEY, 400,
	    "invalid_argument");
	bad("POST", ss, j, "{\"process\":{\"pid\":7},\"signal\":{}}", -1, sid, KEY, 400, "invalid_argument");
	/* the tag selector: a wrong type, empty, over 64 bytes, a NUL inside, both pid and tag */
	static const char *const bad_tag[] = {
		"{\"process\":{\"tag\":7},\"signal\":9}", "{\"process\":{\"tag\":[\"web\"]},\"signal\":9}",
		"{\"process\":{\"tag\":\"\"},\"signal\":9}",
		"{\"process\":{\"tag\":\"0123456789012345678901234567890123456789012345678901234567890123x\"},\"signal\":9}",
		"{\"process\":{\"tag\":\"a\\u0000b\"},\"signal\":9}", "{\"process\":{\"pid\":7,\"tag\":\"web\"},\"signal\":9}",
	};
	for (size_t i = 0; i < sizeof(bad_tag) / sizeof(bad_tag[0]); i++)
		bad("POST", ss, j, bad_tag[i], -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ss, j, "{\"process\":{\"pid\":7},\"signal\":9,\"signal\":15}", -1, sid, KEY, 400,
	    "invalid_argument");
	bad("POST", ss, "application/connect+json", "\0\0\0\0\2{}", 7, sid, KEY, 415, "unknown");
	bad("POST", "/process.Process/List", "text/plain", "{}", -1, sid, KEY, 415, "unknown");
	bad("POST", "/process.Process/List", j, "[]", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", "/process.Process/Connect", j, "{\"process\":{\"pid\":7}}", -1, sid, KEY, 415, "unknown");
	bad("POST", "/process.Process/StreamInput", j, "{}", -1, sid, KEY, 415, "unknown");
	bad("POST", "/process.Process/StreamInput", "application/connect+json", "\0\0\0\0\2{}", 7, "inosuchsandbox000000",
	    KEY, 404, "not_found");
	bad("POST", "/process.Process/StreamInput", "application/connect+json", "\0\0\0\0\2{}", 7, sid, "nokey", 401,
	    "unauthenticated");
	bad("POST", ss, j, "{\"process\":{\"pid\":7},\"signal\":9}", -1, "inosuchsandbox000000", KEY, 404,
	    "not_found");
	/* over the body's bound */
	struct envd_dialer nd = {.ctx = "oversized", .dial = no_dial};
	struct envd_request rq = {.method = "POST", .path = ss, .sandbox_id = sid, .token = KEY, .content_type = j,
				  .body = "{}", .len = 2, .overflow = true};
	struct envd_reply rp;
	envd_handle(&T, &nd, keys1(), &rq, &rp);
	expect_error(&rp, 429, "resource_exhausted");
	free(rp.body);
}

/* SendInput, CloseStdin and Update with wrong types, malformed input or over the body's bound */
Test(envd_bad, input_calls_refused_before_the_agent, .init = setup, .fini = teardown)
{
	const char *si = "/process.Process/SendInput", *cs = "/process.Process/CloseStdin";
	const char *up = "/process.Process/Update", *j = "application/json";
	static const char *const bad_input[] = {
		"{}",                                                         /* no process, no input */
		"{\"input\":{\"stdin\":\"aGk=\"}}",                           /* no process */
		"{\"process\":{\"pid\":\"7\"},\"input\":{\"stdin\":\"aGk=\"}}",   /* pid as a string */
		"{\"process\":{\"pid\":7}}",                                  /* no input */
		"{\"process\":{\"pid\":7},\"input\":\"aGk=\"}",                 /* input not a ProcessInput */
		"{\"process\":{\"pid\":7},\"input\":{}}",                       /* neither stdin nor pty */
		"{\"process\":{\"pid\":7},\"input\":{\"stdin\":\"aGk=\",\"pty\":\"aGk=\"}}", /* both */
		"{\"process\":{\"pid\":7},\"input\":{\"stdout\":\"aGk=\"}}",     /* another field */
		"{\"process\":{\"pid\":7},\"input\":{\"stdin\":104}}",           /* bytes as a number */
		"{\"process\":{\"pid\":7},\"input\":{\"stdin\":[104,105]}}",     /* bytes as an array */
		"{\"process\":{\"pid\":7},\"input\":{\"stdin\":\"a@b=\"}}",       /* not base64 */
		"{\"process\":{\"pid\":7},\"input\":{\"pty\":\"a\"}}",            /* a lone sextet */
		"{\"process\":{\"pid\":7},\"input\":{\"pty\":\"aGk===\"}}",       /* too much padding */
		"{\"process\":{\"pid\":7},\"input\":{\"stdin\":\"aG=k\"}}",       /* padding inside */
		"{\"process\":{\"pid\":7},\"input\":{\"stdin\":\"aGk=\"},\"input\":{}}", /* duplicate keys */
	};
	for (size_t i = 0; i < sizeof(bad_input) / sizeof(bad_input[0]); i++)
		bad("POST", si, j, bad_input[i], -1, sid, KEY, 400, "invalid_argument");
	bad("POST", si, j, "{\"process\":{\"tag\":true},\"input\":{\"stdin\":\"aGk=\"}}", -1, sid, KEY, 400,
	    "invalid_argument");
	bad("POST", cs, j, "{}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", cs, j, "{\"process\":{\"pid\":-1}}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", cs, j, "{\"process\":7}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", cs, j, "{\"process\":{\"tag\":{}}}", -1, sid, KEY, 400, "invalid_argument");
	static const char *const bad_update[] = {
		"{\"pty\":{\"size\":{\"cols\":80,\"rows\":24}}}",                 /* no process */
		"{\"process\":{\"pid\":7},\"pty\":[80,24]}",                      /* pty not a PTY message */
		"{\"process\":{\"pid\":7},\"pty\":{}}",                           /* no size */
		"{\"process\":{\"pid\":7},\"pty\":{\"size\":{\"cols\":80}}}",       /* no rows */
		"{\"process\":{\"pid\":7},\"pty\":{\"size\":{\"cols\":0,\"rows\":24}}}", /* 0 columns */
		"{\"process\":{\"pid\":7},\"pty\":{\"size\":{\"cols\":80,\"rows\":4097}}}",
		"{\"process\":{\"pid\":7},\"pty\":{\"size\":{\"cols\":80,\"rows\":-24}}}",
		"{\"process\":{\"pid\":7},\"pty\":{\"size\":{\"cols\":\"80\",\"rows\":24}}}",
		"{\"process\":{\"pid\":7},\"pty\":{\"size\":{\"cols\":80.5,\"rows\":24}}}",
		"{\"process\":{\"pid\":7},\"pty\":{\"size\":{\"cols\":4294967376,\"rows\":24}}}",
	};
	for (size_t i = 0; i < sizeof(bad_update) / sizeof(bad_update[0]); i++)
		bad("POST", up, j, bad_update[i], -1, sid, KEY, 400, "invalid_argument");
	bad("POST", si, "application/connect+json", "\0\0\0\0\2{}", 7, sid, KEY, 415, "unknown");
	bad("POST", up, j, "{\"process\":{\"pid\":7}}", -1, "inosuchsandbox000000", KEY, 404, "not_found");
	/* over the body's bound: refused unread */
	const char *paths[] = {si, cs, up};
	for (int i = 0; i < 3; i++) {
		struct envd_dialer nd = {.ctx = "oversized", .dial = no_dial};
		struct envd_request rq = {.method = "POST", .path = paths[i], .sandbox_id = sid, .token = KEY,
					  .content_type = j, .body = "{}", .len = 2, .overflow = true};
		struct envd_reply rp;
		envd_handle(&T, &nd, keys1(), &rq, &rp);
		expect_error(&rp, 429, "resource_exhausted");
		free(rp.body);
	}
}

/* Stream replies: the messages, and the end's error code (NULL: none). */
static json_t *stream_parse(const struct envd_reply *rp, const char **end_code)
{
	cr_assert_eq(rp->status, 200);
	cr_assert_str_eq(rp->content_type, "application/connect+json");
	json_t *msgs = json_array();
	size_t off = 0;
	bool ended = false;
	*end_code = NULL;
	while (off < rp->len) {
		cr_assert_not(ended, "nothing after the end-of-stream envelope");
		cr_assert_geq(rp->len - off, 5);
		const uint8_t *p = (const uint8_t *)rp->body + off;
		size_t n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
		cr_assert_leq(n, rp->len - off - 5);
		json_t *j = json_loadb((const char *)p + 5, n, 0, NULL);
		cr_assert_not_null(j);
		if (p[0] == ENVD_FLAG_END) {
			ended = true;
			json_t *e = json_object_get(j, "error");
			if (e) {
				static char code[64];
				snprintf(code, sizeof(code), "%s", json_string_value(json_object_get(e, "code")));
				*end_code = code;
			}
			json_decref(j);
		} else {
			cr_assert_eq(p[0], 0);
			json_array_append_new(msgs, j);
		}
		off += 5 + n;
	}
	cr_assert(ended, "the stream has its end");
	return msgs;
}

Test(envd_bad, start_missing_sandbox_ends_the_stream, .init = setup, .fini = teardown)
{
	struct envd_dialer nd = {.dial = no_dial};
	const char *msg = "{\"process\":{\"cmd\":\"/bin/true\"}}";
	char *buf = NULL;
	size_t len = 0, cap = 0;
	envd_envelope_append(&buf, &len, &cap, 0, msg, strlen(msg));
	struct envd_request rq = {.method = "POST", .path = "/process.Process/Start", .sandbox_id = "igone",
				  .token = KEY, .content_type = "application/connect+json", .body = buf, .len = len};
	struct envd_reply rp;
	envd_handle(&T, &nd, keys1(), &rq, &rp);
	const char *code;
	json_t *m = stream_parse(&rp, &code);
	cr_assert_eq(json_array_size(m), 0);
	cr_assert_str_eq(code, "not_found");
	json_decref(m);
	free(rp.body);
	free(buf);
}

/* A Connect with a bad selector ends its stream with the error (a stream's error is in its end). */
Test(envd_bad, connect_bad_selector_ends_the_stream, .init = setup, .fini = teardown)
{
	struct envd_dialer nd = {.dial = no_dial};
	const char *msgs[] = {"{}", "{\"process\":{\"pid\":\"x\"}}", "{\"process\":{\"tag\":1}}"};
	const char *codes[] = {"invalid_argument", "invalid_argument", "invalid_argument"};
	for (int i = 0; i < 3; i++) {
		char *buf = NULL;
		size_t len = 0, cap = 0;
		envd_envelope_append(&buf, &len, &cap, 0, msgs[i], strlen(msgs[i]));
		struct envd_request rq = {.method = "POST", .path = "/process.Process/Connect", .sandbox_id = sid,
					  .token = KEY, .content_type = "application/connect+json", .body = buf,
					  .len = len};
		struct envd_reply rp;
		envd_handle(&T, &nd, keys1(), &rq, &rp);
		const char *code;
		json_t *m = stream_parse(&rp, &code);
		cr_assert_eq(json_array_size(m), 0);
		cr_assert_str_eq(code, codes[i], "%s", msgs[i]);
		json_decref(m);
		free(rp.body);
		free(buf);
	}
}

/* ---- against the real agent ---- */

static size_t unb64(const char *s, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	uint32_t v = 0;
	int bits = 0;
	for (; *s && *s != '='; s++) {
		const char *p = strchr(a, *s);
		cr_assert_not_null(p, "base64");
		v = v << 6 | (uint32_t)(p - a);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)(v >> bits & 0xff);
		}
	}
	out[o] = '\0';
	return o;
}

/* Runs cmd through sh -c with envs (JSON object text) in cwd: stdout, stderr, exitCode. */
static int run(const char *cmd, const char *envs, const char *cwd, char *out, char *errb, const char **end_code)
{
	json_t *rq = json_pack("{s:{s:s, s:[s, s], s:o}, s:b}", "process", "cmd", "/bin/sh", "args", "-c", cmd, "envs",
			       json_loads(envs, 0, NULL), "stdin", 0);
	if (cwd)
		json_object_set_new(json_object_get(rq, "process"), "cwd", json_string(cwd));
	char *msg = json_dumps(rq, JSON_COMPACT);
	json_decref(rq);
	struct envd_reply rp;
	stream_call("/process.Process/Start", msg, &rp);
	free(msg);
	json_t *m = stream_parse(&rp, end_code);
	out[0] = errb[0] = '\0';
	int code = -1000;
	cr_assert_geq(json_array_size(m), 1);
	cr_assert_not_null(json_object_get(json_object_get(json_object_get(json_array_get(m, 0), "event"), "start"), "pid"),
			   "the first event is start");
	size_t i;
	json_t *e;
	json_array_foreach(m, i, e) {
		json_t *ev = json_object_get(e, "event"), *d = json_object_get(ev, "data"), *end = json_object_get(ev, "end");
		char chunk[65536];
		if (d && json_object_get(d, "stdout"))
			unb64(json_string_value(json_object_get(d, "stdout")), chunk), strcat(out, chunk);
		if (d && json_object_get(d, "stderr"))
			unb64(json_string_value(json_object_get(d, "stderr")), chunk), strcat(errb, chunk);
		if (end) {
			cr_assert_eq(i, json_array_size(m) - 1, "end is the last event");
			code = (int)json_integer_value(json_object_get(end, "exitCode"));
		}
	}
	json_decref(m);
	free(rp.body);
	return code;
}

Test(envd_agent, process_start, .init = setup, .fini = teardown, .timeout = 60)
{
	char out[8192], errb[8192];
	const char *ec;
	int code = run("echo hello; echo oops >&2; echo \"$FROM_SANDBOX $BOTH $FROM_REQ\"; pwd; exit 3",
		       "{\"BOTH\":\"request\",\"FROM_REQ\":\"r\"}", work, out, errb, &ec);
	cr_assert_null(ec, "no stream error: %s", ec);
	cr_assert_eq(code, 3);
	char want[200];
	snprintf(want, sizeof(want), "hello\nsb-value request r\n%s\n", work);
	cr_assert_str_eq(out, want);
	cr_assert_str_eq(errb, "oops\n");
	code = run("true", "{}", NULL, out, errb, &ec);
	cr_assert_eq(code, 0);
	cr_assert_str_eq(out, "");

	struct envd_reply rp;
	stream_call("/process.Process/Start", "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[1]}}", &rp);
	json_t *m = stream_parse(&rp, &ec);
	cr_assert_str_eq(ec, "invalid_argument", "args of numbers");
	json_decref(m);
	free(rp.body);
	stream_call("/process.Process/Start", "{\"process\":{\"cmd\":\"/bin/sh\",\"envs\":{\"A\":1}}}", &rp);
	m = stream_parse(&rp, &ec);
	cr_assert_str_eq(ec, "invalid_argument", "envs of numbers");
	json_decref(m);
	free(rp.body);
}

Test(envd_agent, command_timeout, .init = setup, .fini = teardown, .timeout = 60)
{
	const char *msg = "{\"process\":{\"cmd\":\"/bin/sleep\",\"args\":[\"30\"]}}";
	char *buf = NULL;
	size_t len = 0, cap = 0;
	envd_envelope_append(&buf, &len, &cap, 0, msg, strlen(msg));
	struct envd_request rq = {.method = "POST", .path = "/process.Process/Start", .sandbox_id = sid, .token = KEY,
				  .content_type = "application/connect+json", .timeout_ms = "300", .body = buf,
				  .len = len};
	struct envd_reply rp;
	envd_handle(&T, &D, keys1(), &rq, &rp);
	const char *ec;
	json_t *m = stream_parse(&rp, &ec);
	cr_assert_str_eq(ec, "deadline_exceeded");
	json_decref(m);
	free(rp.body);
	free(buf);
}

Test(envd_agent, filesystem_and_files, .init = setup, .fini = teardown, .timeout = 60)
{
	char body[512], p[300];
	struct envd_reply rp;
	/* MakeDir (with parents) answers the new entry */
	snprintf(body, sizeof(body), "{\"path\":\"%s/a/b\"}", work);
	unary("/filesystem.Filesystem/MakeDir", body, &rp);
	cr_assert_eq(rp.status, 200, "%.*s", (int)rp.len, rp.body);
	json_t *j = reply_json(&rp);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "entry"), "type")), "FILE_TYPE_DIRECTORY");
	json_decref(j);
	free(rp.body);

	/* upload by multipart, as the SDK's files.write does */
	snprintf(p, sizeof(p), "%s/a/b/hello.txt", work);
	const char *mp = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\n"
			 "Content-Type: application/octet-stream\r\n\r\nhi there\r\n--XyZ--\r\n";
	call("POST", "/files", "multipart/form-data; boundary=XyZ", mp, -1, p, &rp);
	cr_assert_eq(rp.status, 200, "%.*s", (int)rp.len, rp.body);
	j = reply_json(&rp);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "path")), p);
	json_decref(j);
	free(rp.body);
	call("POST", "/files", "multipart/form-data; boundary=XyZ", "--XyZ\r\nno end", -1, p, &rp);
	expect_error(&rp, 400, "invalid_argument");
	free(rp.body);

	call("GET", "/files", NULL, NULL, 0, p, &rp);
	cr_assert_eq(rp.status, 200);
	cr_assert_eq(rp.len, 8);
	cr_assert_eq(memcmp(rp.body, "hi there", 8), 0);
	free(rp.body);

	snprintf(body, sizeof(body), "{\"path\":\"%s\"}", p);
	unary("/filesystem.Filesystem/Stat", body, &rp);
	j = reply_json(&rp);
	json_t *e = json_object_get(j, "entry");
	cr_assert_str_eq(json_string_value(json_object_get(e, "type")), "FILE_TYPE_FILE");
	cr_assert_str_eq(json_string_value(json_object_get(e, "size")), "8");
	cr_assert_str_eq(json_string_value(json_object_get(e, "name")), "hello.txt");
	json_decref(j);
	free(rp.body);

	snprintf(body, sizeof(body), "{\"path\":\"%s/a/b\",\"depth\":1}", work);
	unary("/filesystem.Filesystem/ListDir", body, &rp);
	j = reply_json(&rp);
	json_t *ents = json_object_get(j, "entries");
	cr_assert_eq(json_array_size(ents), 1);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ents, 0), "path")), p);
	json_decref(j);
	free(rp.body);
	snprintf(body, sizeof(body), "{\"path\":\"%s\",\"depth\":\"1\"}", work);
	unary("/filesystem.Filesystem/ListDir", body, &rp);
	expect_error(&rp, 400, "invalid_argument");
	free(rp.body);

	snprintf(body, sizeof(body), "{\"source\":\"%s\",\"destination\":\"%s/moved.txt\"}", p, work);
	unary("/filesystem.Filesystem/Move", body, &rp);
	cr_assert_eq(rp.status, 200, "%.*s", (int)rp.len, rp.body);
	free(rp.body);
	snprintf(body, sizeof(body), "{\"path\":\"%s\"}", p);
	unary("/filesystem.Filesystem/Stat", body, &rp);
	expect_error(&rp, 404, "not_found");
	free(rp.body);
	call("GET", "/files", NULL, NULL, 0, p, &rp);
	expect_error(&rp, 404, "not_found");
	free(rp.body);

	snprintf(body, sizeof(body), "{\"path\":\"%s/a\"}", work);
	unary("/filesystem.Filesystem/Remove", body, &rp);
	cr_assert_eq(rp.status, 200, "%.*s", (int)rp.len, rp.body);
	free(rp.body);
	char a[200];
	snprintf(a, sizeof(a), "%s/a", work);
	struct stat st;
	cr_assert_eq(stat(a, &st), -1, "removed recursively");
	snprintf(a, sizeof(a), "%s/moved.txt", work);
	cr_assert_eq(stat(a, &st), 0);
	unary("/filesystem.Filesystem/Stat", "{\"path\":5}", &rp);
	expect_error(&rp, 400, "invalid_argument");
	free(rp.body);
}

/* A live stream: output reaches the reader while the command still runs (it waits for the test). */
struct live_call {
	struct envd_request rq;
	struct envd_reply rp;
	int fd;
};

static void *live_thread(void *arg)
{
	struct live_call *l = arg;
	envd_handle_live(&T, &D, keys1(), &l->rq, l->fd, &l->rp);
	close(l->fd);
	return NULL;
}

/* The next envelope from fd: its flag, its JSON in *j. */
static uint8_t read_envelope(int fd, json_t **j)
{
	uint8_t h[5];
	size_t got = 0;
	while (got < 5) {
		ssize_t n = read(fd, h + got, 5 - got);
		cr_assert_gt(n, 0, "the stream went on");
		got += (size_t)n;
	}
	size_t len = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
	char *m = malloc(len + 1);
	for (got = 0; got < len;) {
		ssize_t n = read(fd, m + got, len - got);
		cr_assert_gt(n, 0);
		got += (size_t)n;
	}
	*j = json_loadb(m, len, 0, NULL);
	cr_assert_not_null(*j);
	free(m);
	return h[0];
}

/* Starts a live stream call of path with request msg on a thread; the reader's end of its socket. */
static int live_begin(struct live_call *l, pthread_t *th, const char *path, const char *msg, char **buf)
{
	size_t len = 0, cap = 0;
	*buf = NULL;
	envd_envelope_append(buf, &len, &cap, 0, msg, strlen(msg));
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	*l = (struct live_call){
		.rq = {.method = "POST", .path = path, .sandbox_id = sid, .token = KEY,
		       .content_type = "application/connect+json", .body = *buf, .len = len},
		.fd = sv[1],
	};
	cr_assert_eq(pthread_create(th, NULL, live_thread, l), 0);
	return sv[0];
}

Test(envd_agent, live_stream_before_the_end, .init = setup, .fini = teardown, .timeout = 60)
{
	char cmd[300], flag[128];
	snprintf(flag, sizeof(flag), "%s/go", work);
	/* bounded: 30 s at most, whatever the test does */
	snprintf(cmd, sizeof(cmd), "echo first; i=0; while [ ! -e %s ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo second",
		 flag);
	json_t *rq = json_pack("{s:{s:s, s:[s, s]}}", "process", "cmd", "/bin/sh", "args", "-c", cmd);
	char *msg = json_dumps(rq, JSON_COMPACT), *buf;
	json_decref(rq);
	struct live_call l;
	pthread_t th;
	int sv[1] = {live_begin(&l, &th, "/process.Process/Start", msg, &buf)};
	free(msg);
	json_t *j;
	cr_assert_eq(read_envelope(sv[0], &j), 0);
	cr_assert_not_null(json_object_get(json_object_get(j, "event"), "start"));
	json_decref(j);
	cr_assert_eq(read_envelope(sv[0], &j), 0);
	char out[64];
	unb64(json_string_value(json_object_get(json_object_get(json_object_get(j, "event"), "data"), "stdout")), out);
	cr_assert_str_eq(out, "first\n", "the first output comes while the command waits");
	json_decref(j);
	FILE *f = fopen(flag, "w");
	cr_assert_not_null(f);
	fclose(f);
	char all[64] = "";
	uint8_t fl;
	bool ended = false;
	while ((fl = read_envelope(sv[0], &j)) == 0) {
		json_t *ev = json_object_get(j, "event");
		json_t *d = json_object_get(json_object_get(ev, "data"), "stdout");
		if (d)
			unb64(json_string_value(d), out), strcat(all, out);
		if (json_object_get(ev, "end")) {
			cr_assert_eq(json_integer_value(json_object_get(json_object_get(ev, "end"), "exitCode")), 0);
			ended = true;
		}
		json_decref(j);
	}
	cr_assert_eq(fl, ENVD_FLAG_END);
	cr_assert_null(json_object_get(j, "error"));
	json_decref(j);
	cr_assert(ended);
	cr_assert_str_eq(all, "second\n");
	pthread_join(th, NULL);
	cr_assert_eq(l.rp.status, 200);
	cr_assert_null(l.rp.body, "a live stream leaves nothing in the reply");
	close(sv[0]);
	free(buf);
}

/* A live stream's reader that leaves ends the call at once (the command is ended with it). */
Test(envd_agent, live_reader_gone_ends_the_call, .init = setup, .fini = teardown, .timeout = 60)
{
	const char *msg = "{\"process\":{\"cmd\":\"/bin/sleep\",\"args\":[\"100\"]}}";
	char *buf = NULL;
	size_t len = 0, cap = 0;
	envd_envelope_append(&buf, &len, &cap, 0, msg, strlen(msg));
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct live_call l = {
		.rq = {.method = "POST", .path = "/process.Process/Start", .sandbox_id = sid, .token = KEY,
		       .content_type = "application/connect+json", .timeout_ms = "100000", .body = buf, .len = len},
		.fd = sv[1],
	};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, live_thread, &l), 0);
	json_t *j;
	cr_assert_eq(read_envelope(sv[0], &j), 0);
	cr_assert_not_null(json_object_get(json_object_get(j, "event"), "start"));
	json_decref(j);
	close(sv[0]);
	/* the command would run 100 s, past this test's 60 s bound: the join returning is the proof */
	pthread_join(th, NULL);
	free(l.rp.body);
	free(buf);
}

/* A live Start of cmd on a thread: l filled, the start event read, its pid returned. */
static uint32_t live_start(struct live_call *l, pthread_t *th, int *reader, const char *msg, char **buf)
{
	size_t len = 0, cap = 0;
	*buf = NULL;
	envd_envelope_append(buf, &len, &cap, 0, msg, strlen(msg));
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	*l = (struct live_call){
		.rq = {.method = "POST", .path = "/process.Process/Start", .sandbox_id = sid, .token = KEY,
		       .content_type = "application/connect+json", .timeout_ms = "100000", .body = *buf, .len = len},
		.fd = sv[1],
	};
	cr_assert_eq(pthread_create(th, NULL, live_thread, l), 0);
	*reader = sv[0];
	json_t *j;
	cr_assert_eq(read_envelope(sv[0], &j), 0);
	json_t *pid = json_object_get(json_object_get(json_object_get(j, "event"), "start"), "pid");
	cr_assert(json_is_integer(pid) && json_integer_value(pid) > 0, "the start event names the guest pid");
	uint32_t p = (uint32_t)json_integer_value(pid);
	json_decref(j);
	return p;
}

/* The pids List shows, as JSON; *cfg set to the config of pid (a new reference, or NULL). */
static json_t *list_pids(uint32_t pid, json_t **cfg)
{
	struct envd_reply rp;
	unary("/process.Process/List", "{}", &rp);
	cr_assert_eq(rp.status, 200, "%.*s", (int)rp.len, rp.body);
	json_t *j = reply_json(&rp), *pids = json_array(), *p;
	size_t i;
	*cfg = NULL;
	json_array_foreach(json_object_get(j, "processes"), i, p) {
		json_array_append(pids, json_object_get(p, "pid"));
		if (json_integer_value(json_object_get(p, "pid")) == pid)
			*cfg = json_incref(json_object_get(p, "config"));
	}
	json_decref(j);
	free(rp.body);
	return pids;
}

static void send_signal(uint32_t pid, const char *sig, unsigned status)
{
	char body[128];
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u},\"signal\":\"%s\"}", pid, sig);
	struct envd_reply rp;
	unary("/process.Process/SendSignal", body, &rp);
	cr_assert_eq(rp.status, status, "SendSignal %s to %u: %.*s", sig, pid, (int)rp.len, rp.body);
	free(rp.body);
}

/* A background command (the SDK's commands.run({background: true})): listed while it runs,
 * SendSignal ends it and its stream's end says so, then it is neither listed nor signalled. */
Test(envd_agent, background_list_and_signal, .init = setup, .fini = teardown, .timeout = 60)
{
	struct live_call l;
	pthread_t th;
	int rd;
	char *buf;
	uint32_t pid = live_start(&l, &th, &rd, "{\"process\":{\"cmd\":\"/bin/sleep\",\"args\":[\"100\"]}}", &buf);
	json_t *cfg, *pids = list_pids(pid, &cfg);
	cr_assert_not_null(cfg, "pid %u listed", pid);
	cr_assert_str_eq(json_string_value(json_object_get(cfg, "cmd")), "/bin/sleep");
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(cfg, "args"), 0)), "100");
	cr_assert_eq(json_array_size(json_object_get(cfg, "args")), 1);
	json_decref(cfg);
	json_decref(pids);
	send_signal(pid, "SIGNAL_SIGTERM", 200);
	json_t *j, *end = NULL;
	uint8_t fl;
	while ((fl = read_envelope(rd, &j)) == 0) {
		json_t *e = json_object_get(json_object_get(j, "event"), "end");
		if (e)
			end = json_incref(e);
		json_decref(j);
	}
	cr_assert_eq(fl, ENVD_FLAG_END);
	cr_assert_null(json_object_get(j, "error"), "the stream itself ended well");
	json_decref(j);
	cr_assert_not_null(end, "an end event");
	cr_assert(json_is_false(json_object_get(end, "exited")));
	cr_assert_str_eq(json_string_value(json_object_get(end, "status")), "signal: Terminated");
	json_decref(end);
	pthread_join(th, NULL);
	close(rd);
	free(buf);
	pids = list_pids(pid, &cfg);
	cr_assert_null(cfg, "an ended process is not listed");
	json_decref(pids);
	send_signal(pid, "SIGNAL_SIGKILL", 404);
}

/* A Connect by selector: its output of stream `name`, its start event's pid (start_pid, may be NULL) and its exit code. */
static int connect_output(const char *selector, const char *name, char *out, size_t cap, uint32_t *start_pid)
{
	char msg[200], chunk[4096];
	snprintf(msg, sizeof(msg), "{\"process\":%s}", selector);
	struct envd_reply rp;
	stream_call("/process.Process/Connect", msg, &rp);
	const char *ec;
	json_t *m = stream_parse(&rp, &ec);
	cr_assert_null(ec, "no stream error: %s", ec);
	int code = -1000;
	size_t i;
	json_t *e;
	out[0] = '\0';
	json_array_foreach(m, i, e) {
		json_t *ev = json_object_get(e, "event"), *data = json_object_get(ev, "data");
		cr_assert(!json_object_get(data, strcmp(name, "pty") ? "pty" : "stdout"), "output named %s only", name);
		json_t *d = json_object_get(data, name);
		if (d && unb64(json_string_value(d), chunk) < cap - strlen(out))
			strcat(out, chunk);
		if (start_pid && json_object_get(ev, "start"))
			*start_pid = (uint32_t)json_integer_value(json_object_get(json_object_get(ev, "start"), "pid"));
		if (json_object_get(ev, "end"))
			code = (int)json_integer_value(json_object_get(json_object_get(ev, "end"), "exitCode"));
	}
	json_decref(m);
	free(rp.body);
	return code;
}

/* Connect to a process started earlier (as one kept across a pause is), running or ended by the
 * time Connect looks: the kept output, then its end. */
Test(envd_agent, connect_to_a_kept_process, .init = setup, .fini = teardown, .timeout = 60)
{
	struct agent_conn c;
	char err[512];
	agent_conn_init(&c, -1, -1, -1);
	cr_assert_eq(test_dial(NULL, NULL, &c, err, sizeof(err)), 0, "%s", err);
	char flag[128], script[300];
	snprintf(flag, sizeof(flag), "%s/go", work);
	snprintf(script, sizeof(script), "echo kept; i=0; while [ ! -e %s ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; exit 4",
		 flag);
	char *const argv[] = {"/bin/sh", "-c", script, NULL};
	struct agent_start_req req = {.exec = {.argv = argv, .stdin_fd = -1}};
	uint32_t id, pid;
	cr_assert_eq(agent_conn_start(&c, &req, &id, &pid, err, sizeof(err)), 0, "%s", err);
	close(c.fd);
	FILE *f = fopen(flag, "w");
	cr_assert_not_null(f);
	fclose(f);
	char msg[64], sel[32], out[256];
	snprintf(sel, sizeof(sel), "{\"pid\":%u}", pid);
	snprintf(msg, sizeof(msg), "{\"process\":%s}", sel);
	uint32_t spid = 0;
	cr_assert_eq(connect_output(sel, "stdout", out, sizeof(out), &spid), 4);
	cr_assert_eq(spid, pid);
	cr_assert_str_eq(out, "kept\n", "the output kept from before the Connect");
	struct envd_reply rp;
	const char *ec;
	json_t *m;
	stream_call("/process.Process/Connect", msg, &rp);
	m = stream_parse(&rp, &ec);
	cr_assert_str_eq(ec, "not_found", "an ended, collected process");
	json_decref(m);
	free(rp.body);
}

/* GET /health: 204 for a running sandbox whose agent answers; 502 (E2B's proxy's answer, the
 * SDK's isRunning() false) for an unknown id or an agent that does not answer; the key checked first. */
static int down_dial(void *ctx, const struct serve_sandbox *sb, struct agent_conn *c, char *err, size_t errlen)
{
	snprintf(err, errlen, "nothing listens");
	return -EAGAIN;
}

Test(envd_agent, health, .init = setup, .fini = teardown, .timeout = 60)
{
	struct envd_reply rp;
	call("GET", "/health", NULL, NULL, 0, NULL, &rp);
	cr_assert_eq(rp.status, 204, "%.*s", (int)rp.len, rp.body);
	cr_assert_null(rp.body);
	struct envd_dialer down = {.dial = down_dial};
	struct envd_request rq = {.method = "GET", .path = "/health", .sandbox_id = sid, .token = KEY};
	envd_handle(&T, &down, keys1(), &rq, &rp);
	cr_assert_eq(rp.status, 502);
	free(rp.body);
	struct envd_dialer nd = {.dial = no_dial};
	rq.sandbox_id = "inosuchsandbox000000";
	envd_handle(&T, &nd, keys1(), &rq, &rp);
	cr_assert_eq(rp.status, 502);
	free(rp.body);
	rq.sandbox_id = NULL;
	envd_handle(&T, &nd, keys1(), &rq, &rp);
	cr_assert_eq(rp.status, 502);
	free(rp.body);
	bad("GET", "/health", NULL, "", 0, sid, "wrong", 401, "unauthenticated");
	bad("POST", "/health", "application/json", "{}", -1, sid, KEY, 501, "unimplemented");
	cr_assert(envd_route("/health"));
}

/* A unary call on the agent: its status must be status (the reply's text in the message). */
static void unary_expect(const char *path, const char *body, unsigned status, const char *code)
{
	struct envd_reply rp;
	unary(path, body, &rp);
	if (code)
		expect_error(&rp, status, code);
	else
		cr_assert_eq(rp.status, status, "%s %s: %.*s", path, body, (int)rp.len, rp.body);
	free(rp.body);
}

/*
 * Reads a live stream's envelopes, appending the bytes of its data events named field to acc
 * (size cap), until acc holds want (want NULL: until the stream's end).  *end set to the end
 * event's exitCode once it came (else left).  Returns whether the stream ended; a data event
 * of another name fails the test.
 */
static bool read_output(int rd, const char *field, char *acc, size_t cap, const char *want, int *end)
{
	while (!want || !strstr(acc, want)) {
		json_t *j;
		uint8_t fl = read_envelope(rd, &j);
		if (fl == ENVD_FLAG_END) {
			cr_assert_null(json_object_get(j, "error"), "the stream ended well");
			json_decref(j);
			return true;
		}
		json_t *ev = json_object_get(j, "event"), *d = json_object_get(ev, "data"), *e = json_object_get(ev, "end");
		if (d) {
			json_t *v = json_object_get(d, field);
			cr_assert(json_is_string(v) && json_object_size(d) == 1, "data only as %s", field);
			char chunk[65536];
			size_t n = unb64(json_string_value(v), chunk);
			cr_assert_lt(strlen(acc) + n, cap, "output within the test's buffer");
			strcat(acc, chunk);
		}
		if (e)
			*end = (int)json_integer_value(json_object_get(e, "exitCode"));
		json_decref(j);
	}
	return false;
}

/* commands.run(..., {background: true, stdin: true}), sendStdin, closeStdin: a cat echoes what
 * SendInput gives it and ends at CloseStdin; a command started without stdin refuses both. */
Test(envd_agent, stdin_reaches_cat_and_close_ends_it, .init = setup, .fini = teardown, .timeout = 60)
{
	struct live_call l;
	pthread_t th;
	int rd;
	char *buf, body[200], acc[256] = "";
	uint32_t pid = live_start(&l, &th, &rd, "{\"process\":{\"cmd\":\"/bin/cat\"},\"stdin\":true}", &buf);
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u},\"input\":{\"stdin\":\"aGVsbG8K\"}}", pid);
	unary_expect("/process.Process/SendInput", body, 200, NULL); /* "hello\n" */
	int end = -1000;
	cr_assert_not(read_output(rd, "stdout", acc, sizeof(acc), "hello\n", &end), "cat still runs");
	/* no bytes: nothing sent (an empty SEND would close stdin); URL-safe base64 without padding */
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u},\"input\":{\"stdin\":\"\"}}", pid);
	unary_expect("/process.Process/SendInput", body, 200, NULL);
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u},\"input\":{\"stdin\":\"Pz8_Cg\"}}", pid);
	unary_expect("/process.Process/SendInput", body, 200, NULL); /* "???\n" */
	cr_assert_not(read_output(rd, "stdout", acc, sizeof(acc), "hello\n???\n", &end), "cat still runs");
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u}}", pid);
	unary_expect("/process.Process/CloseStdin", body, 200, NULL);
	cr_assert(read_output(rd, "stdout", acc, sizeof(acc), NULL, &end), "the stream ends");
	cr_assert_eq(end, 0, "cat ended at its stdin's end");
	cr_assert_str_eq(acc, "hello\n???\n");
	pthread_join(th, NULL);
	close(rd);
	free(buf);
	/* gone: collected by its Start's stream */
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u},\"input\":{\"stdin\":\"aGk=\"}}", pid);
	unary_expect("/process.Process/SendInput", body, 404, "not_found");
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u}}", pid);
	unary_expect("/process.Process/CloseStdin", body, 404, "not_found");

	/* without stdin: true, stdin is /dev/null and no terminal to resize */
	pid = live_start(&l, &th, &rd, "{\"process\":{\"cmd\":\"/bin/sleep\",\"args\":[\"100\"]},\"stdin\":false}", &buf);
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u},\"input\":{\"stdin\":\"aGk=\"}}", pid);
	unary_expect("/process.Process/SendInput", body, 400, "failed_precondition");
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u}}", pid);
	unary_expect("/process.Process/CloseStdin", body, 400, "failed_precondition");
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u},\"pty\":{\"size\":{\"cols\":90,\"rows\":20}}}", pid);
	unary_expect("/process.Process/Update", body, 400, "failed_precondition");
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u}}", pid);
	unary_expect("/process.Process/Update", body, 200, NULL); /* nothing to change */
	send_signal(pid, "SIGNAL_SIGKILL", 200);
	cr_assert(read_output(rd, "stdout", acc, sizeof(acc), NULL, &end));
	pthread_join(th, NULL);
	close(rd);
	free(buf);
	/* a Start's own malformed pty or stdin */
	struct envd_reply rp;
	const char *ec;
	static const char *const bad_start[] = {
		"{\"process\":{\"cmd\":\"/bin/true\"},\"stdin\":\"yes\"}",
		"{\"process\":{\"cmd\":\"/bin/true\"},\"pty\":true}",
		"{\"process\":{\"cmd\":\"/bin/true\"},\"pty\":{\"size\":{\"cols\":0,\"rows\":0}}}",
		"{\"process\":{\"cmd\":\"/bin/true\"},\"pty\":{\"size\":{\"cols\":80,\"rows\":70000}}}",
	};
	for (size_t i = 0; i < sizeof(bad_start) / sizeof(bad_start[0]); i++) {
		stream_call("/process.Process/Start", bad_start[i], &rp);
		json_t *m = stream_parse(&rp, &ec);
		cr_assert_str_eq(ec, "invalid_argument", "%s", bad_start[i]);
		cr_assert_eq(json_array_size(m), 0, "nothing started");
		json_decref(m);
		free(rp.body);
	}
}

/* sandbox.pty.create, sendInput, resize: the process sees a terminal of the size Start set, Update
 * changes it, and all its output comes as DataEvent's `pty`. */
Test(envd_agent, pty_size_and_resize, .init = setup, .fini = teardown, .timeout = 60)
{
	struct live_call l;
	pthread_t th;
	int rd;
	char *buf, body[200], acc[4096] = "";
	uint32_t pid = live_start(&l, &th, &rd,
				  "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"tty; echo size $(stty size); "
				  "read x; echo got $x; echo size $(stty size)\"]},\"pty\":{\"size\":{\"cols\":100,\"rows\":30}}}",
				  &buf);
	int end = -1000;
	cr_assert_not(read_output(rd, "pty", acc, sizeof(acc), "size 30 100", &end), "the shell waits for input");
	cr_assert(strstr(acc, "/dev/pts/"), "a terminal: %s", acc);
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u},\"pty\":{\"size\":{\"cols\":120,\"rows\":40}}}", pid);
	unary_expect("/process.Process/Update", body, 200, NULL);
	snprintf(body, sizeof(body), "{\"process\":{\"pid\":%u},\"input\":{\"pty\":\"Z28K\"}}", pid); /* "go\n" */
	unary_expect("/process.Process/SendInput", body, 200, NULL);
	cr_assert(read_output(rd, "pty", acc, sizeof(acc), NULL, &end), "the stream ends");
	cr_assert_eq(end, 0);
	cr_assert(strstr(acc, "got go"), "the input reached the shell: %s", acc);
	cr_assert(strstr(acc, "size 40 120"), "Update resized the terminal: %s", acc);
	pthread_join(th, NULL);
	close(rd);
	free(buf);
}

/* With several keys a sandbox is its creator's: another key's token finds no sandbox (not_found), its own works. */
Test(envd_scope, a_foreign_token_is_not_found, .init = setup, .fini = teardown)
{
	struct serve_keys ks = {.n = 2};
	snprintf(ks.k[0].name, sizeof(ks.k[0].name), "alice");
	snprintf(ks.k[0].key, sizeof(ks.k[0].key), "e2b_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	snprintf(ks.k[1].name, sizeof(ks.k[1].name), "bob");
	snprintf(ks.k[1].key, sizeof(ks.k[1].key), "e2b_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	struct serve_sandbox s;
	char err[512];
	cr_assert_eq(serve_create_owned(&T, "alice", "base", 60, NULL, NULL, &s, err, sizeof(err)), 0, "%s", err);
	char body[128];
	snprintf(body, sizeof(body), "{\"path\":\"%s\"}", work);
	struct envd_request rq = {.method = "POST", .path = "/filesystem.Filesystem/Stat", .sandbox_id = s.id,
				  .token = ks.k[1].key, .content_type = "application/json", .body = body, .len = strlen(body)};
	struct envd_reply rp;
	envd_handle(&T, &D, &ks, &rq, &rp);
	expect_error(&rp, 404, "not_found");
	free(rp.body);
	rq.method = "GET";
	rq.path = "/health";
	envd_handle(&T, &D, &ks, &rq, &rp);
	cr_assert_eq(rp.status, 502, "bob's health of alice's sandbox: %u", rp.status);
	free(rp.body);
	/* the sandbox of the single-key daemon (owner "") is no key's of these */
	rq.method = "POST";
	rq.path = "/filesystem.Filesystem/Stat";
	rq.sandbox_id = sid;
	rq.token = ks.k[0].key;
	envd_handle(&T, &D, &ks, &rq, &rp);
	expect_error(&rp, 404, "not_found");
	free(rp.body);
	rq.sandbox_id = s.id;
	envd_handle(&T, &D, &ks, &rq, &rp);
	cr_assert_eq(rp.status, 200, "alice's own: %u %.*s", rp.status, (int)rp.len, rp.body);
	free(rp.body);
	serve_sandbox_put(&s);
}

/* Starts argv on the test agent with tag (and stdin or a PTY): its guest pid. */
static uint32_t start_tagged(char *const *argv, const char *tag, bool pty)
{
	struct agent_conn c;
	char err[512];
	agent_conn_init(&c, -1, -1, -1);
	cr_assert_eq(test_dial(NULL, NULL, &c, err, sizeof(err)), 0, "%s", err);
	struct agent_start_req req = {.exec = {.argv = argv, .stdin_fd = -1}, .tag = tag, .pty = pty, .keep_stdin = true};
	uint32_t id, pid;
	cr_assert_eq(agent_conn_start(&c, &req, &id, &pid, err, sizeof(err)), 0, "%s", err);
	close(c.fd);
	return pid;
}

/*
 * Tags: Start's tag shown by List with cmd and args as started (spaces inside an argument kept);
 * SendInput, CloseStdin, Update, SendSignal and Connect selecting by tag; a tag in use refused;
 * an unknown tag not_found; a PTY process reconnected gets its output as `pty`.
 */
Test(envd_agent, process_tags, .init = setup, .fini = teardown, .timeout = 60)
{
	char *const bg[] = {"/bin/sh", "-c", "echo kept; read x; echo got $x; read y; echo end $y", NULL};
	uint32_t pid = start_tagged(bg, "bg job", false);
	char *const term[] = {"/bin/sh", "-c", "echo onpty; read x; echo size $(stty size)", NULL};
	uint32_t tpid = start_tagged(term, "term", true);
	struct envd_reply rp;
	unary("/process.Process/List", "{}", &rp);
	cr_assert_eq(rp.status, 200);
	json_t *j = reply_json(&rp), *p;
	size_t i;
	int seen = 0;
	json_array_foreach(json_object_get(j, "processes"), i, p) {
		json_t *cfg = json_object_get(p, "config"), *args = json_object_get(cfg, "args");
		if (json_integer_value(json_object_get(p, "pid")) != pid)
			continue;
		seen++;
		cr_assert_str_eq(json_string_value(json_object_get(p, "tag")), "bg job");
		cr_assert_str_eq(json_string_value(json_object_get(cfg, "cmd")), "/bin/sh");
		cr_assert_eq(json_array_size(args), 2);
		cr_assert_str_eq(json_string_value(json_array_get(args, 1)), bg[2], "one argument, spaces kept");
	}
	cr_assert_eq(seen, 1);
	json_decref(j);
	free(rp.body);
	/* a second Start with a tag a running process has */
	const char *dup = "{\"process\":{\"cmd\":\"/bin/true\"},\"tag\":\"bg job\"}";
	stream_call("/process.Process/Start", dup, &rp);
	const char *ec;
	json_t *m = stream_parse(&rp, &ec);
	cr_assert_str_eq(ec, "already_exists");
	json_decref(m);
	free(rp.body);
	/* Start's tag of the wrong type, oversized */
	stream_call("/process.Process/Start", "{\"process\":{\"cmd\":\"/bin/true\"},\"tag\":5}", &rp);
	m = stream_parse(&rp, &ec);
	cr_assert_str_eq(ec, "invalid_argument");
	json_decref(m);
	free(rp.body);
	stream_call("/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/true\"},\"tag\":\"0123456789012345678901234567890123456789012345678901234567890123x\"}",
		    &rp);
	m = stream_parse(&rp, &ec);
	cr_assert_str_eq(ec, "invalid_argument");
	json_decref(m);
	free(rp.body);
	/* input by tag ("hi\n"), then stdin closed by tag: the second read ends */
	unary_expect("/process.Process/SendInput", "{\"process\":{\"tag\":\"bg job\"},\"input\":{\"stdin\":\"aGkK\"}}", 200,
		     NULL);
	unary_expect("/process.Process/CloseStdin", "{\"process\":{\"tag\":\"bg job\"}}", 200, NULL);
	unary_expect("/process.Process/SendSignal", "{\"process\":{\"tag\":\"nosuch\"},\"signal\":9}", 404, "not_found");
	unary_expect("/process.Process/CloseStdin", "{\"process\":{\"tag\":\"nosuch\"}}", 404, "not_found");
	char out[4096];
	cr_assert_eq(connect_output("{\"tag\":\"bg job\"}", "stdout", out, sizeof(out), NULL), 0);
	cr_assert_str_eq(out, "kept\ngot hi\nend\n");
	/* the terminal: resized and fed by tag, reconnected: its output is `pty` data */
	unary_expect("/process.Process/Update", "{\"process\":{\"tag\":\"term\"},\"pty\":{\"size\":{\"cols\":90,\"rows\":33}}}",
		     200, NULL);
	unary_expect("/process.Process/SendInput", "{\"process\":{\"tag\":\"term\"},\"input\":{\"pty\":\"Z28K\"}}", 200, NULL);
	char sel[64];
	snprintf(sel, sizeof(sel), "{\"pid\":%u}", tpid);
	cr_assert_eq(connect_output(sel, "pty", out, sizeof(out), NULL), 0);
	cr_assert(strstr(out, "onpty") && strstr(out, "size 33 90"), "%s", out);
	unary_expect("/process.Process/SendSignal", "{\"process\":{\"tag\":\"term\"},\"signal\":9}", 404, "not_found");
}

/* StreamInput's request body: envelopes of msgs (NULL-ended) appended to *buf. */
static size_t input_body(char **buf, const char *const *msgs)
{
	size_t len = 0, cap = 0;
	*buf = NULL;
	for (size_t i = 0; msgs[i]; i++)
		cr_assert_eq(envd_envelope_append(buf, &len, &cap, 0, msgs[i], strlen(msgs[i])), 0);
	return len;
}

/* StreamInput fed body in pieces of `piece` bytes: the stream's end code (NULL: {} then a clean end). */
static const char *input_call(const char *body, size_t len, size_t piece)
{
	struct envd_request rq = {.method = "POST", .path = "/process.Process/StreamInput", .sandbox_id = sid,
				  .token = KEY, .content_type = "application/connect+json"};
	struct envd_reply rp;
	struct envd_instream *in = envd_instream_open(&T, &D, keys1(), &rq, &rp);
	cr_assert_not_null(in, "%.*s", (int)rp.len, rp.body);
	for (size_t off = 0; off < len; off += piece)
		envd_instream_feed(in, body + off, len - off < piece ? len - off : piece);
	envd_instream_close(in, &rp);
	static const char *code;
	code = NULL;
	json_t *m = stream_parse(&rp, &code);
	if (!code) {
		cr_assert_eq(json_array_size(m), 1, "one StreamInputResponse");
		cr_assert_eq(json_object_size(json_array_get(m, 0)), 0, "{}");
	}
	json_decref(m);
	free(rp.body);
	return code;
}

/*
 * StreamInput (a client stream): a start naming the process by tag, data messages (stdin, also a
 * pty's input field), keepalives, split across feeds at every byte; cat echoes all of it.  Then
 * its malformed cases: data before start, two starts, an unknown tag, a bad flag, an envelope
 * over its bound, a body ending inside an envelope, a message that is none of the three.
 */
Test(envd_agent, stream_input, .init = setup, .fini = teardown, .timeout = 60)
{
	char *const cat[] = {"/bin/cat", NULL};
	start_tagged(cat, "cat", false);
	static const char *const ok[] = {"{\"start\":{\"process\":{\"tag\":\"cat\"}}}", "{\"keepalive\":{}}",
					 "{\"data\":{\"input\":{\"stdin\":\"aGVsbG8g\"}}}", "{\"keepalive\":{}}",
					 "{\"data\":{\"input\":{\"stdin\":\"d29ybGQK\"}}}", NULL};
	char *body;
	size_t len = input_body(&body, ok);
	cr_assert_null(input_call(body, len, 1), "fed a byte at a time");
	cr_assert_null(input_call(body, len, 7));
	struct envd_reply rp;
	call("POST", "/process.Process/StreamInput", "application/connect+json", body, (ssize_t)len, NULL, &rp);
	cr_assert_eq(rp.status, 200);
	free(rp.body);
	free(body);
	unary_expect("/process.Process/CloseStdin", "{\"process\":{\"tag\":\"cat\"}}", 200, NULL);
	char out[4096];
	cr_assert_eq(connect_output("{\"tag\":\"cat\"}", "stdout", out, sizeof(out), NULL), 0);
	cr_assert_str_eq(out, "hello world\nhello world\nhello world\n");
	/* malformed */
	start_tagged(cat, "cat2", false);
	static const char *const before[] = {"{\"data\":{\"input\":{\"stdin\":\"eA==\"}}}", NULL};
	static const char *const twice[] = {"{\"start\":{\"process\":{\"tag\":\"cat2\"}}}",
					    "{\"start\":{\"process\":{\"tag\":\"cat2\"}}}", NULL};
	static const char *const unknown[] = {"{\"start\":{\"process\":{\"tag\":\"nosuch\"}}}", NULL};
	static const char *const badsel[] = {"{\"start\":{\"process\":{\"tag\":9}}}", NULL};
	static const char *const other[] = {"{\"start\":{\"process\":{\"tag\":\"cat2\"}}}", "{\"stop\":{}}", NULL};
	static const char *const badinput[] = {"{\"start\":{\"process\":{\"tag\":\"cat2\"}}}",
					       "{\"data\":{\"input\":{\"stdin\":\"@@\"}}}", NULL};
	static const char *const none[] = {"{\"keepalive\":{}}", NULL};
	const struct {
		const char *const *msgs;
		const char *code;
	} cases[] = {{before, "invalid_argument"}, {twice, "invalid_argument"}, {unknown, "not_found"},
		     {badsel, "invalid_argument"},  {other, "invalid_argument"}, {badinput, "invalid_argument"},
		     {none, "invalid_argument"}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = input_body(&body, cases[i].msgs);
		const char *code = input_call(body, len, 3);
		cr_assert(code && !strcmp(code, cases[i].code), "case %zu: %s", i, code ? code : "(none)");
		free(body);
	}
	cr_assert_str_eq(input_call("\1\0\0\0\2{}", 7, 1), "invalid_argument", "a compressed envelope");
	cr_assert_str_eq(input_call("\0\0\x10\0\1", 5, 2), "resource_exhausted", "an envelope past 1 MiB");
	cr_assert_str_eq(input_call("\0\0\0\0\x20{}", 7, 2), "invalid_argument", "the body ends inside an envelope");
	/* the body as a whole has no bound: a stream of keepalives past 1 MiB, then the start */
	size_t cap = 0;
	len = 0;
	body = NULL;
	for (unsigned i = 0; i < 60000; i++)
		envd_envelope_append(&body, &len, &cap, 0, "{\"keepalive\":{}}", 16);
	envd_envelope_append(&body, &len, &cap, 0, twice[0], strlen(twice[0]));
	cr_assert_gt(len, 1u << 20);
	cr_assert_null(input_call(body, len, 65536));
	free(body);
}

/* ---- watching and deep listings ---- */

/* A stream call's error end (refused before the agent): its code. */
static const char *stream_refused(const char *path, const char *msg)
{
	struct envd_dialer nd = {.dial = no_dial};
	char *buf = NULL;
	size_t len = 0, cap = 0;
	envd_envelope_append(&buf, &len, &cap, 0, msg, strlen(msg));
	struct envd_request rq = {.method = "POST", .path = path, .sandbox_id = sid, .token = KEY,
				  .content_type = "application/connect+json", .body = buf, .len = len};
	struct envd_reply rp;
	envd_handle(&T, &nd, keys1(), &rq, &rp);
	const char *code;
	json_t *m = stream_parse(&rp, &code);
	cr_assert_eq(json_array_size(m), 0, "no start message");
	json_decref(m);
	free(rp.body);
	free(buf);
	return code;
}

Test(envd_bad, watch_calls_refused_before_the_agent, .init = setup, .fini = teardown)
{
	const char *j = "application/json", *cw = "/filesystem.Filesystem/CreateWatcher";
	const char *ge = "/filesystem.Filesystem/GetWatcherEvents", *rm = "/filesystem.Filesystem/RemoveWatcher";
	bad("POST", cw, j, "{}", -1, sid, KEY, 400, "invalid_argument");                          /* no path */
	bad("POST", cw, j, "{\"path\":5}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", cw, j, "{\"path\":\"tmp\"}", -1, sid, KEY, 400, "invalid_argument");            /* relative */
	bad("POST", cw, j, "{\"path\":\"/tmp\",\"recursive\":\"yes\"}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", cw, j, "{\"path\":\"/tmp\",\"allowNetworkMounts\":1}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", cw, j, "{\"path\":\"/tmp\",\"includeEntry\":true}", -1, sid, KEY, 501, "unimplemented");
	bad("POST", ge, j, "{}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ge, j, "{\"watcherId\":7}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ge, j, "{\"watcherId\":\"\"}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ge, j, "{\"watcherId\":\"w0123456789abcdef\"}", -1, sid, KEY, 404, "not_found"); /* unknown */
	bad("POST", rm, j, "{\"watcherId\":\"w0123456789abcdef\"}", -1, sid, KEY, 404, "not_found");
	bad("POST", rm, j, "{\"watcherId\":[]}", -1, sid, KEY, 400, "invalid_argument");
	bad("POST", ge, j, "{\"watcherId\":\"w0123456789abcdef\"}", -1, "inosuchsandbox000000", KEY, 404, "not_found");
	bad("POST", "/filesystem.Filesystem/WatchDir", j, "{\"path\":\"/\"}", -1, sid, KEY, 415, "unknown");
	const char *wd = "/filesystem.Filesystem/WatchDir";
	cr_assert_str_eq(stream_refused(wd, "{}"), "invalid_argument");
	cr_assert_str_eq(stream_refused(wd, "{\"path\":null}"), "invalid_argument");
	cr_assert_str_eq(stream_refused(wd, "{\"path\":\"/tmp\",\"recursive\":1}"), "invalid_argument");
	cr_assert_str_eq(stream_refused(wd, "{\"path\":\"/tmp\",\"includeEntry\":true}"), "unimplemented");
}

static void write_file(const char *rel, const char *text)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", work, rel);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f, "%s", p);
	fputs(text, f);
	fclose(f);
}

/* ListDir's entries' paths relative to work, joined by spaces (their types' initials after a ':'). */
static void list_names(int depth, char *out, size_t cap)
{
	char body[200];
	struct envd_reply rp;
	snprintf(body, sizeof(body), "{\"path\":\"%s\",\"depth\":%d}", work, depth);
	unary("/filesystem.Filesystem/ListDir", body, &rp);
	cr_assert_eq(rp.status, 200, "%.*s", (int)rp.len, rp.body);
	json_t *j = reply_json(&rp), *e;
	size_t i;
	out[0] = '\0';
	json_array_foreach(json_object_get(j, "entries"), i, e) {
		const char *path = json_string_value(json_object_get(e, "path"));
		const char *type = json_string_value(json_object_get(e, "type"));
		cr_assert(!strncmp(path, work, strlen(work)) && path[strlen(work)] == '/', "%s", path);
		cr_assert_str_eq(json_string_value(json_object_get(e, "name")), strrchr(path, '/') + 1);
		size_t n = strlen(out);
		snprintf(out + n, cap - n, "%s%s:%c", n ? " " : "", path + strlen(work) + 1, type[10]);
	}
	json_decref(j);
	free(rp.body);
}

Test(envd_agent, list_dir_depth, .init = setup, .fini = teardown, .timeout = 60)
{
	char p[PATH_MAX], got[1024];
	snprintf(p, sizeof(p), "mkdir -p %s/a/b", work);
	cr_assert_eq(system(p), 0);
	write_file("a/b/deep.txt", "d");
	write_file("a/mid.txt", "m");
	write_file("top.txt", "t");
	snprintf(p, sizeof(p), "%s/link", work);
	cr_assert_eq(symlink("a", p), 0);
	/* F(ILE) D(IRECTORY) U(NSPECIFIED: the link, never followed) */
	list_names(1, got, sizeof(got));
	cr_assert_str_eq(got, "a:D link:U top.txt:F");
	list_names(0, got, sizeof(got)); /* E2B's 0 is 1 */
	cr_assert_str_eq(got, "a:D link:U top.txt:F");
	list_names(2, got, sizeof(got));
	cr_assert_str_eq(got, "a:D a/b:D a/mid.txt:F link:U top.txt:F");
	list_names(3, got, sizeof(got));
	cr_assert_str_eq(got, "a:D a/b:D a/b/deep.txt:F a/mid.txt:F link:U top.txt:F");
	list_names(100, got, sizeof(got));
	cr_assert_str_eq(got, "a:D a/b:D a/b/deep.txt:F a/mid.txt:F link:U top.txt:F");
	struct envd_reply rp;
	const char *bad_depth[] = {"\"2\"", "-1", "1.5", "true"};
	for (size_t i = 0; i < 4; i++) {
		char b[200];
		snprintf(b, sizeof(b), "{\"path\":\"%s\",\"depth\":%s}", work, bad_depth[i]);
		unary("/filesystem.Filesystem/ListDir", b, &rp);
		expect_error(&rp, 400, "invalid_argument");
		free(rp.body);
	}
	/* past the bound on one listing's entries: an error naming it */
	snprintf(p, sizeof(p), "mkdir %s/many && cd %s/many && seq 1 %u | xargs touch", work, work, ENVD_LIST_MAX);
	cr_assert_eq(system(p), 0);
	char body[200];
	snprintf(body, sizeof(body), "{\"path\":\"%s\",\"depth\":2}", work);
	unary("/filesystem.Filesystem/ListDir", body, &rp);
	expect_error(&rp, 429, "resource_exhausted");
	cr_assert(memmem(rp.body, rp.len, "10000 entries", 13), "%.*s", (int)rp.len, rp.body);
	free(rp.body);
	snprintf(body, sizeof(body), "{\"path\":\"%s/many\"}", work);
	unary("/filesystem.Filesystem/ListDir", body, &rp);
	cr_assert_eq(rp.status, 200, "exactly the bound is fine: %.*s", (int)rp.len, rp.body);
	free(rp.body);
}

/* The next envelope's filesystem event of a live WatchDir (keepalives skipped): "TYPE name". */
static void watch_next(int fd, char *out, size_t cap)
{
	for (;;) {
		json_t *j;
		cr_assert_eq(read_envelope(fd, &j), 0, "the watch goes on");
		json_t *fs = json_object_get(j, "filesystem");
		if (fs) {
			snprintf(out, cap, "%s %s", json_string_value(json_object_get(fs, "type")) + 11,
				 json_string_value(json_object_get(fs, "name")));
			json_decref(j);
			return;
		}
		cr_assert_not_null(json_object_get(j, "keepalive"), "only events and keepalives after the start");
		json_decref(j);
	}
}

/* Events until "want" comes, every one before it one of allowed (space-separated), or fails. */
static void watch_until(int fd, const char *want)
{
	char ev[600];
	for (int i = 0; i < 50; i++) {
		watch_next(fd, ev, sizeof(ev));
		if (!strcmp(ev, want))
			return;
	}
	cr_assert_fail("no '%s' in 50 events", want);
}

Test(envd_agent, watch_dir_live, .init = setup, .fini = teardown, .timeout = 60)
{
	char msg[300], *buf;
	snprintf(msg, sizeof(msg), "{\"path\":\"%s\",\"recursive\":true}", work);
	struct live_call l;
	pthread_t th;
	int sv[1] = {live_begin(&l, &th, "/filesystem.Filesystem/WatchDir", msg, &buf)};
	json_t *j;
	cr_assert_eq(read_envelope(sv[0], &j), 0);
	cr_assert(json_is_object(json_object_get(j, "start")), "the start message first");
	json_decref(j);
	/* the start came after the agent's OK: this file's events are seen */
	write_file("w.txt", "hello");
	char ev[600];
	watch_next(sv[0], ev, sizeof(ev));
	cr_assert_str_eq(ev, "CREATE w.txt");
	watch_until(sv[0], "WRITE w.txt");
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/sub", work);
	cr_assert_eq(mkdir(p, 0755), 0);
	watch_until(sv[0], "CREATE sub");
	write_file("sub/inner.txt", "x");
	watch_until(sv[0], "CREATE sub/inner.txt");
	/* the reader leaves (the SDK's stop()): the call ends */
	close(sv[0]);
	pthread_join(th, NULL);
	cr_assert_eq(l.rp.status, 200);
	free(buf);
}

/* GetWatcherEvents until an event "TYPE name" is among them (bounded: 400 polls); the events seen. */
static void poll_until(const char *id, const char *want, char *seen, size_t cap)
{
	char body[200];
	snprintf(body, sizeof(body), "{\"watcherId\":\"%s\"}", id);
	seen[0] = '\0';
	for (int i = 0; i < 400; i++) {
		struct envd_reply rp;
		unary("/filesystem.Filesystem/GetWatcherEvents", body, &rp);
		cr_assert_eq(rp.status, 200, "%.*s", (int)rp.len, rp.body);
		json_t *j = reply_json(&rp), *e;
		size_t k;
		bool found = false;
		json_array_foreach(json_object_get(j, "events"), k, e) {
			char one[600];
			snprintf(one, sizeof(one), "%s %s", json_string_value(json_object_get(e, "type")) + 11,
				 json_string_value(json_object_get(e, "name")));
			size_t n = strlen(seen);
			snprintf(seen + n, cap - n, "%s%s", n ? "," : "", one);
			found |= !strcmp(one, want);
		}
		json_decref(j);
		free(rp.body);
		if (found)
			return;
		usleep(25000);
	}
	cr_assert_fail("no '%s' in 400 GetWatcherEvents: %s", want, seen);
}

Test(envd_agent, polling_watchers, .init = setup, .fini = teardown, .timeout = 90)
{
	char body[300], ids[ENVD_WATCHERS_PER_SANDBOX][32], seen[4096];
	struct envd_reply rp;
	snprintf(body, sizeof(body), "{\"path\":\"%s\"}", work);
	for (unsigned i = 0; i < ENVD_WATCHERS_PER_SANDBOX; i++) {
		unary("/filesystem.Filesystem/CreateWatcher", body, &rp);
		cr_assert_eq(rp.status, 200, "%.*s", (int)rp.len, rp.body);
		json_t *j = reply_json(&rp);
		const char *id = json_string_value(json_object_get(j, "watcherId"));
		cr_assert(id && id[0] == 'w' && strlen(id) == 17, "%s", id ? id : "(none)");
		snprintf(ids[i], sizeof(ids[i]), "%s", id);
		json_decref(j);
		free(rp.body);
	}
	unary("/filesystem.Filesystem/CreateWatcher", body, &rp);
	expect_error(&rp, 429, "resource_exhausted");
	free(rp.body);
	/* the watch began with CreateWatcher's answer: a file made now is in the events */
	write_file("polled.txt", "1");
	poll_until(ids[0], "CREATE polled.txt", seen, sizeof(seen));
	cr_assert(!strncmp(seen, "CREATE polled.txt", 17), "the create first: %s", seen);
	if (!strstr(seen, "WRITE polled.txt"))
		poll_until(ids[0], "WRITE polled.txt", seen, sizeof(seen));
	/* each watcher has its own events: another one saw the same */
	poll_until(ids[1], "CREATE polled.txt", seen, sizeof(seen));
	/* removed: gone, and its room is free again */
	snprintf(body, sizeof(body), "{\"watcherId\":\"%s\"}", ids[0]);
	unary("/filesystem.Filesystem/RemoveWatcher", body, &rp);
	cr_assert_eq(rp.status, 200, "%.*s", (int)rp.len, rp.body);
	free(rp.body);
	unary("/filesystem.Filesystem/GetWatcherEvents", body, &rp);
	expect_error(&rp, 404, "not_found");
	free(rp.body);
	unary("/filesystem.Filesystem/RemoveWatcher", body, &rp);
	expect_error(&rp, 404, "not_found");
	free(rp.body);
	snprintf(body, sizeof(body), "{\"path\":\"%s/missing\"}", work);
	unary("/filesystem.Filesystem/CreateWatcher", body, &rp);
	expect_error(&rp, 404, "not_found");
	free(rp.body);
	snprintf(body, sizeof(body), "{\"path\":\"%s\",\"recursive\":true}", work);
	unary("/filesystem.Filesystem/CreateWatcher", body, &rp);
	cr_assert_eq(rp.status, 200, "room again: %.*s", (int)rp.len, rp.body);
	free(rp.body);
	/* the watchers are the sandbox's: its end removes them (the next call sweeps them) */
	cr_assert_eq(serve_kill(&T, sid), 0);
	snprintf(body, sizeof(body), "{\"watcherId\":\"%s\"}", ids[1]);
	unary("/filesystem.Filesystem/GetWatcherEvents", body, &rp);
	expect_error(&rp, 404, "not_found");
	free(rp.body);
}
