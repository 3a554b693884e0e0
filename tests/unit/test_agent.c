/*
 * The guest agent protocol: encode/decode with every malformed case, and the real agent binary
 * (build/guest/padcell-agent --serve-fd) driven as an ordinary host process over a socket pair by
 * the same client library padcell uses.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/agent/proto.h"
#include "vmm/agent/agent_client.h"
#include "tests/unit/agent_harness.h"

/* ---- encode / decode ---- */

static uint8_t buf[AGENT_MAX_PAYLOAD];
static struct agent_exec ex;

Test(agent_proto, header_round_trip_and_refusals)
{
	uint8_t h[AGENT_HDR_LEN];
	struct agent_hdr d;
	agent_hdr_encode(h, 1234, AGENT_STDOUT, 0);
	cr_assert_eq(agent_hdr_decode(h, &d), 0);
	cr_assert_eq(d.len, 1234);
	cr_assert_eq(d.type, AGENT_STDOUT);
	agent_hdr_encode(h, AGENT_MAX_PAYLOAD + 1, AGENT_STDOUT, 0);
	cr_assert_eq(agent_hdr_decode(h, &d), -EPROTO, "oversized");
	agent_hdr_encode(h, 0, 0, 0);
	cr_assert_eq(agent_hdr_decode(h, &d), -EPROTO, "type 0");
	agent_hdr_encode(h, 0, AGENT_TYPE_MAX + 1, 0);
	cr_assert_eq(agent_hdr_decode(h, &d), -EPROTO, "unknown type");
	agent_hdr_encode(h, 0, AGENT_OK, 1);
	cr_assert_eq(agent_hdr_decode(h, &d), -EPROTO, "flags are reserved");
	agent_hdr_encode(h, 0xffffffffu, AGENT_DATA, 0);
	cr_assert_eq(agent_hdr_decode(h, &d), -EPROTO);
}

Test(agent_proto, exec_round_trip)
{
	const char *argv[] = { "sh", "-c", "echo hi", NULL };
	const char *env[] = { "A=1", "B=x=y", NULL };
	int n = agent_exec_encode(buf, sizeof(buf), argv, env, "/tmp", "nobody", 2500, AGENT_EXEC_STDIN);
	cr_assert_gt(n, 0);
	cr_assert_eq(agent_exec_decode(buf, (size_t)n, &ex), 0);
	cr_assert_eq(ex.argc, 3);
	cr_assert_str_eq(ex.argv[2], "echo hi");
	cr_assert_null(ex.argv[3]);
	cr_assert_eq(ex.envc, 2);
	cr_assert_str_eq(ex.envv[1], "B=x=y");
	cr_assert_str_eq(ex.cwd, "/tmp");
	cr_assert_str_eq(ex.user, "nobody");
	cr_assert_eq(ex.timeout_ms, 2500);
	cr_assert_eq(ex.flags, AGENT_EXEC_STDIN);
	/* without env, cwd and user */
	n = agent_exec_encode(buf, sizeof(buf), argv, NULL, NULL, NULL, 0, 0);
	cr_assert_eq(agent_exec_decode(buf, (size_t)n, &ex), 0);
	cr_assert_str_eq(ex.cwd, "");
	cr_assert_eq(ex.envc, 0);
}

Test(agent_proto, exec_encode_refusals)
{
	const char *none[] = { NULL };
	const char *argv[] = { "true", NULL };
	const char *bad_env[] = { "NOEQUALS", NULL };
	cr_assert_eq(agent_exec_encode(buf, sizeof(buf), none, NULL, NULL, NULL, 0, 0), -EINVAL);
	cr_assert_eq(agent_exec_encode(buf, sizeof(buf), argv, bad_env, NULL, NULL, 0, 0), -EINVAL);
	static char big[AGENT_MAX_PAYLOAD];
	memset(big, 'a', sizeof(big) - 1);
	const char *huge[] = { big, NULL };
	cr_assert_eq(agent_exec_encode(buf, sizeof(buf), huge, NULL, NULL, NULL, 0, 0), -E2BIG);
	cr_assert_eq(agent_exec_encode(buf, 20, argv, NULL, "/a/long/directory", NULL, 0, 0), -E2BIG);
}

Test(agent_proto, exec_decode_malformed)
{
	const char *argv[] = { "ls", "-l", NULL };
	const char *env[] = { "K=V", NULL };
	int n = agent_exec_encode(buf, sizeof(buf), argv, env, "/", "", 0, 0);
	cr_assert_gt(n, 0);
	/* every truncation is refused */
	for (int cut = 0; cut < n; cut++)
		cr_assert_eq(agent_exec_decode(buf, (size_t)cut, &ex), -EPROTO, "truncated at %d accepted", cut);
	static uint8_t b2[AGENT_MAX_PAYLOAD];
	/* trailing bytes */
	memcpy(b2, buf, (size_t)n);
	b2[n] = 'x';
	cr_assert_eq(agent_exec_decode(b2, (size_t)n + 1, &ex), -EPROTO);
	/* the last string without its NUL */
	memcpy(b2, buf, (size_t)n);
	b2[n - 1] = 'x';
	cr_assert_eq(agent_exec_decode(b2, (size_t)n, &ex), -EPROTO);
	/* counts that lie: argc too big, argc 0, huge envc */
	uint32_t lies[][2] = { { 3, 1 }, { 0, 1 }, { 2, 2 }, { 2, 0xffffffffu }, { 0xffffffffu, 1 }, { AGENT_MAX_ARGS + 1, 1 } };
	for (size_t i = 0; i < sizeof(lies) / sizeof(lies[0]); i++) {
		memcpy(b2, buf, (size_t)n);
		memcpy(b2 + 8, &lies[i][0], 4);
		memcpy(b2 + 12, &lies[i][1], 4);
		cr_assert_eq(agent_exec_decode(b2, (size_t)n, &ex), -EPROTO, "counts %u/%u accepted", lies[i][0], lies[i][1]);
	}
	/* unknown flags */
	memcpy(b2, buf, (size_t)n);
	b2[4] = 0x80;
	cr_assert_eq(agent_exec_decode(b2, (size_t)n, &ex), -EPROTO);
	/* an env entry without '=' (encode refuses it, a hostile host could still send it) */
	memcpy(b2, buf, (size_t)n);
	b2[n - 3] = 'x'; /* "K=V" -> "KxV" */
	cr_assert_eq(agent_exec_decode(b2, (size_t)n, &ex), -EPROTO);
	/* a relative cwd */
	n = agent_exec_encode(buf, sizeof(buf), argv, NULL, "rel", "", 0, 0);
	cr_assert_eq(agent_exec_decode(buf, (size_t)n, &ex), -EPROTO);
	/* an empty program name */
	const char *empty[] = { "", NULL };
	n = agent_exec_encode(buf, sizeof(buf), empty, NULL, NULL, NULL, 0, 0);
	cr_assert_eq(agent_exec_decode(buf, (size_t)n, &ex), -EPROTO);
}

Test(agent_proto, small_messages)
{
	struct agent_hello h = { .version = 7, .flags = 1, .ready_ms = 99 }, h2;
	uint8_t b[AGENT_SYNC_LEN];
	agent_hello_encode(b, &h);
	cr_assert_eq(agent_hello_decode(b, AGENT_HELLO_LEN, &h2), 0);
	cr_assert_eq(h2.version, 7);
	cr_assert_eq(h2.ready_ms, 99);
	cr_assert_eq(agent_hello_decode(b, AGENT_HELLO_LEN - 1, &h2), -EPROTO);
	struct agent_sync s = { .realtime_ns = 1700000000123456789ull }, s2;
	memset(s.seed, 0xab, sizeof(s.seed));
	agent_sync_encode(b, &s);
	cr_assert_eq(agent_sync_decode(b, AGENT_SYNC_LEN, &s2), 0);
	cr_assert_eq(s2.realtime_ns, s.realtime_ns);
	cr_assert_eq(memcmp(s2.seed, s.seed, sizeof(s.seed)), 0);
	cr_assert_eq(agent_sync_decode(b, AGENT_SYNC_LEN + 1, &s2), -EPROTO);
	uint32_t how;
	int32_t code;
	agent_exit_encode(b, AGENT_EXITED, 3);
	cr_assert_eq(agent_exit_decode(b, 8, &how, &code), 0);
	cr_assert_eq(code, 3);
	agent_exit_encode(b, AGENT_EXITED, 300);
	cr_assert_eq(agent_exit_decode(b, 8, &how, &code), -EPROTO, "exit status over 255");
	agent_exit_encode(b, AGENT_SIGNALED, 0);
	cr_assert_eq(agent_exit_decode(b, 8, &how, &code), -EPROTO, "signal 0");
	agent_exit_encode(b, 9, 0);
	cr_assert_eq(agent_exit_decode(b, 8, &how, &code), -EPROTO, "unknown kind");
	char path[64];
	uint32_t mode;
	int n = agent_put_encode(buf, sizeof(buf), 0755, "/tmp/f");
	cr_assert_eq(agent_put_decode(buf, (size_t)n, &mode, path, sizeof(path)), 0);
	cr_assert_eq(mode, 0755);
	cr_assert_str_eq(path, "/tmp/f");
	cr_assert_eq(agent_put_decode(buf, 4, &mode, path, sizeof(path)), -EPROTO, "no path");
	buf[5] = '\0';
	cr_assert_eq(agent_put_decode(buf, (size_t)n, &mode, path, sizeof(path)), -EPROTO, "NUL inside the path");
	cr_assert_eq(agent_path_decode((const uint8_t *)"/a/very/long/path", 17, path, 8), -EPROTO, "too long for the caller");
}

/* ---- the real agent, over a socket pair ---- */

static pid_t agent_pid;

static int start_agent(void)
{
	return agent_spawn(&agent_pid);
}

static int agent_end(int fd)
{
	close(fd);
	int st;
	cr_assert_eq(waitpid(agent_pid, &st, 0), agent_pid);
	return st;
}

static char err[512];

/* Runs argv through a fresh agent; stdout and stderr into files; returns the result. */
static struct agent_exec_result run_cmd(char *const *argv, char *const *env, const char *cwd, uint32_t timeout_ms,
					int stdin_fd, int out, int errf)
{
	int fd = start_agent();
	struct agent_hello h;
	cr_assert_eq(agent_hello(fd, &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(h.version, AGENT_PROTO_VERSION);
	cr_assert_eq(h.flags & AGENT_HELLO_INIT, 0, "not init on the host");
	struct agent_exec_req req = { .argv = argv, .env = env, .cwd = cwd, .timeout_ms = timeout_ms, .stdin_fd = stdin_fd };
	struct agent_exec_result res = { 0 };
	cr_assert_eq(agent_exec(fd, &req, out, errf, -1, &res, err, sizeof(err)), 0, "%s", err);
	agent_end(fd);
	return res;
}

static int tmpfile_fd(void)
{
	char t[] = "/tmp/padcell-agent-test.XXXXXX";
	int fd = mkstemp(t);
	cr_assert_geq(fd, 0);
	unlink(t);
	return fd;
}

/* The file's contents, valid until the next call (which frees them). */
static char *slurp(int fd, size_t *len)
{
	static char *last;
	free(last);
	off_t n = lseek(fd, 0, SEEK_END);
	char *p = last = malloc((size_t)n + 1);
	cr_assert_eq(pread(fd, p, (size_t)n, 0), n);
	p[n] = '\0';
	if (len)
		*len = (size_t)n;
	return p;
}

/* The one mapping every command uses (run, run's setup commands, exec, attach, the MCP server). */
Test(agent_client, exit_code_mapping)
{
	cr_assert_eq(agent_exit_code(AGENT_EXITED, 0), 0);
	cr_assert_eq(agent_exit_code(AGENT_EXITED, 255), 255);
	cr_assert_eq(agent_exit_code(AGENT_SIGNALED, SIGKILL), 137);
	cr_assert_eq(agent_exit_code(AGENT_SIGNALED, 1), 129);
	cr_assert_eq(agent_exit_code(AGENT_TIMEDOUT, 0), 124);
	cr_assert_eq(agent_exit_code(AGENT_TIMEDOUT, 9), 124, "a timeout's code field is not the exit code");
	cr_assert_eq(agent_exit_code(0, 3), 125, "a kind the protocol has not");
	cr_assert_eq(agent_exit_code(AGENT_TIMEDOUT + 1, 0), 125);
}

Test(agent_e2e, streams_and_exit_code)
{
	int out = tmpfile_fd(), errf = tmpfile_fd();
	char *argv[] = { "sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3", NULL };
	struct agent_exec_result r = run_cmd(argv, NULL, NULL, 0, -1, out, errf);
	cr_assert_eq(r.how, AGENT_EXITED);
	cr_assert_eq(r.code, 3);
	cr_assert_eq(agent_exit_code(r.how, r.code), 3, "padcell run/exec exit with the command's code");
	cr_assert_str_eq(slurp(out, NULL), "out1\nout2\n");
	cr_assert_str_eq(slurp(errf, NULL), "err1\n");
}

Test(agent_e2e, signal_death_env_cwd)
{
	int out = tmpfile_fd(), errf = tmpfile_fd();
	char *argv[] = { "sh", "-c", "echo \"$PADCELL_X\"; pwd; kill -TERM $$", NULL };
	char *env[] = { "PADCELL_X=hello world", NULL };
	struct agent_exec_result r = run_cmd(argv, env, "/tmp", 0, -1, out, errf);
	cr_assert_eq(r.how, AGENT_SIGNALED);
	cr_assert_eq(r.code, SIGTERM);
	cr_assert_eq(agent_exit_code(r.how, r.code), 128 + SIGTERM, "a signal's death is 128+N, as a shell says it");
	cr_assert_str_eq(slurp(out, NULL), "hello world\n/tmp\n");
}

Test(agent_e2e, missing_command_is_127)
{
	int out = tmpfile_fd(), errf = tmpfile_fd();
	char *argv[] = { "/nonexistent/padcell-no-such-program", NULL };
	struct agent_exec_result r = run_cmd(argv, NULL, NULL, 0, -1, out, errf);
	cr_assert_eq(r.how, AGENT_EXITED);
	cr_assert_eq(r.code, 127);
	cr_assert(strstr(slurp(errf, NULL), "cannot run") != NULL);
}

Test(agent_e2e, stdin_passes_through)
{
	int in = tmpfile_fd(), out = tmpfile_fd(), errf = tmpfile_fd();
	static char data[300000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)('a' + i % 26);
	cr_assert_eq(write(in, data, sizeof(data)), (ssize_t)sizeof(data));
	lseek(in, 0, SEEK_SET);
	char *argv[] = { "wc", "-c", NULL };
	struct agent_exec_result r = run_cmd(argv, NULL, NULL, 0, in, out, errf);
	cr_assert_eq(r.code, 0);
	cr_assert_eq(atoi(slurp(out, NULL)), (int)sizeof(data));
}

Test(agent_e2e, ten_mib_of_stdout_intact, .timeout = 60)
{
	int out = tmpfile_fd(), errf = tmpfile_fd();
	/* a recognisable pattern: line numbers, so a lost or repeated frame shows */
	char *argv[] = { "sh", "-c", "seq 1 1600000", NULL };
	struct agent_exec_result r = run_cmd(argv, NULL, NULL, 0, -1, out, errf);
	cr_assert_eq(r.code, 0);
	size_t len;
	char *p = slurp(out, &len);
	cr_assert_gt(len, 10u << 20);
	char *line = p;
	for (unsigned want = 1; want <= 1600000; want++) {
		char *nl = strchr(line, '\n');
		cr_assert_not_null(nl, "line %u missing", want);
		*nl = '\0';
		cr_assert_eq(strtoul(line, NULL, 10), want, "line %u reads '%s'", want, line);
		line = nl + 1;
	}
	cr_assert_eq(*line, '\0');
}

Test(agent_e2e, timeout_kills_the_whole_group, .timeout = 60)
{
	int out = tmpfile_fd(), errf = tmpfile_fd();
	char pidfile[] = "/tmp/padcell-agent-bg.XXXXXX";
	int pf = mkstemp(pidfile);
	close(pf);
	char script[256];
	snprintf(script, sizeof(script), "sleep 300 & echo $! > %s; sleep 301", pidfile);
	char *argv[] = { "sh", "-c", script, NULL };
	/*
	 * The timeout may fire before a slow machine got the shell as far as starting its
	 * background child and writing its pid; then nothing was tested, and the same command
	 * runs again with twice the time (0.5 s, 1 s, ... 8 s).
	 */
	int bg = 0;
	for (uint32_t ms = 500; bg <= 0 && ms <= 8000; ms *= 2) {
		struct agent_exec_result r = run_cmd(argv, NULL, NULL, ms, -1, out, errf);
		cr_assert_eq(r.how, AGENT_TIMEDOUT);
		cr_assert_eq(agent_exit_code(r.how, r.code), 124, "--timeout's exit code, whatever code came with it");
		FILE *f = fopen(pidfile, "r");
		cr_assert_not_null(f);
		if (fscanf(f, "%d", &bg) != 1)
			bg = 0;
		fclose(f);
	}
	unlink(pidfile);
	cr_assert_gt(bg, 0, "the command never got as far as starting its background child");
	/* the background sleep was in the command's group: gone (or a zombie about to be reaped);
	 * SIGKILL takes effect when the process next runs, so allow a loaded machine 20 s */
	char path[64], st[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", bg);
	for (int i = 0; i < 2000; i++) {
		FILE *s = fopen(path, "r");
		if (!s)
			return;
		bool zombie = fgets(st, sizeof(st), s) && strstr(st, ") Z ");
		fclose(s);
		if (zombie)
			return;
		usleep(10000);
	}
	cr_assert_fail("background process %d of the timed-out command survived", bg);
}

Test(agent_e2e, put_and_get_round_trip)
{
	char dir[] = "/tmp/padcell-agent-cp.XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char gpath[128];
	snprintf(gpath, sizeof(gpath), "%s/file", dir);
	int src = tmpfile_fd();
	static char data[200001];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7 + 3);
	cr_assert_eq(write(src, data, sizeof(data)), (ssize_t)sizeof(data));
	lseek(src, 0, SEEK_SET);
	int fd = start_agent();
	struct agent_hello h;
	cr_assert_eq(agent_hello(fd, &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(agent_put_file(fd, src, gpath, 0640, err, sizeof(err)), 0, "%s", err);
	int dst = tmpfile_fd();
	cr_assert_eq(agent_get_file(fd, gpath, dst, err, sizeof(err)), 0, "%s", err);
	/* a missing file is an error message, and the connection ends */
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nope", dir);
	cr_assert_neq(agent_get_file(fd, missing, dst, err, sizeof(err)), 0);
	cr_assert(strstr(err, "nope") != NULL, "%s", err);
	agent_end(fd);
	size_t len;
	char *back = slurp(dst, &len);
	cr_assert_eq(len, sizeof(data));
	cr_assert_eq(memcmp(back, data, len), 0);
	struct stat st;
	cr_assert_eq(stat(gpath, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0640);
	unlink(gpath);
	rmdir(dir);
}

Test(agent_e2e, garbage_closes_the_connection_not_the_agent)
{
	/* bad header, oversized frame, command frames out of place, truncated frame */
	static const uint8_t junk[][AGENT_HDR_LEN] = {
		{ 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0 },
		{ 0, 0, 0, 0, 0x99, 0, 0, 0 },
		{ 4, 0, 0, 0, AGENT_SIGNAL, 0, 0, 0 },
		{ 0, 0, 0, 0, AGENT_STDOUT, 0, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		int fd = start_agent();
		struct agent_hello h;
		cr_assert_eq(agent_hello(fd, &h, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(write(fd, junk[i], sizeof(junk[i])), (ssize_t)sizeof(junk[i]));
		if (junk[i][4] == AGENT_SIGNAL)
			cr_assert_eq(write(fd, "\x09\0\0\0", 4), 4);
		/* the agent answers ERROR (or nothing) and ends this connection */
		struct agent_hdr hd;
		uint8_t *pl = malloc(AGENT_MAX_PAYLOAD);
		int rc = agent_read_frame(fd, &hd, pl, AGENT_MAX_PAYLOAD);
		cr_assert(rc == -EPIPE || (rc == 0 && hd.type == AGENT_ERROR), "case %zu: rc %d type %u", i, rc, hd.type);
		free(pl);
		int st = agent_end(fd);
		cr_assert(WIFEXITED(st), "case %zu: the agent crashed (status %#x)", i, st);
	}
	/* a frame cut short: the agent sees the end of the stream and exits cleanly */
	int fd = start_agent();
	struct agent_hello h;
	cr_assert_eq(agent_hello(fd, &h, err, sizeof(err)), 0, "%s", err);
	uint8_t hdr[AGENT_HDR_LEN];
	agent_hdr_encode(hdr, 100, AGENT_EXEC, 0);
	cr_assert_eq(write(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	cr_assert_eq(write(fd, "abc", 3), 3);
	shutdown(fd, SHUT_WR);
	int st = agent_end(fd);
	cr_assert(WIFEXITED(st));
}

Test(agent_e2e, sync_is_acknowledged)
{
	int fd = start_agent();
	struct agent_hello h;
	cr_assert_eq(agent_hello(fd, &h, err, sizeof(err)), 0, "%s", err);
	/* not init here: the clock and pool are not its to change, but the frame is answered */
	cr_assert_eq(agent_sync(fd, err, sizeof(err)), 0, "%s", err);
	cr_assert_neq(agent_poweroff(fd, err, sizeof(err)), 0, "only init powers off");
	cr_assert(strstr(err, "not init") != NULL, "%s", err);
	agent_end(fd);
}
