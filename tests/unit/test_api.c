/*
 * The control socket: routes with fake VM ops (status codes and bodies), the server over a real
 * Unix socket (split, pipelined, oversized and malformed requests, keep-alive, the client limit),
 * the socket path rules, the client's errors, and `padcell snapshot|pause|resume` against it.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/api/api.h"
#include "vmm/api/api_client.h"
#include "vmm/cmd/cli.h"
#include "vmm/cmd/cmd.h"
#include "vmm/api/http.h"
#include "vmm/util.h"

/* ---- a fake VM -------------------------------------------------------------------------------- */

struct fake_vm {
	bool paused;
	int pauses, resumes, snapshots;
	int pause_rc, snapshot_rc; /* what the next call returns */
	char state_path[PATH_MAX], mem_path[PATH_MAX];
	int rates;                       /* set_rate calls */
	char rate_cls[16], rate_id[64];
	struct ratelimit_patch rate[2];
	unsigned rate_np;
	bool no_nic;                     /* the policy calls say "no network interface" */
	int policies;                    /* set_policy calls that changed the rules */
	struct policy policy;            /* what they set: policy_replace, as the NIC does */
	struct policy_counts counts;
};

static int fake_pause(void *ctx, char *err, size_t errlen)
{
	struct fake_vm *f = ctx;
	f->pauses++;
	if (f->pause_rc) {
		snprintf(err, errlen, "vCPU 0 would not stop");
		return f->pause_rc;
	}
	f->paused = true;
	return 0;
}

static int fake_resume(void *ctx, char *err, size_t errlen)
{
	struct fake_vm *f = ctx;
	f->resumes++;
	f->paused = false;
	return 0;
}

static bool fake_is_paused(void *ctx)
{
	return ((struct fake_vm *)ctx)->paused;
}

static int fake_snapshot(void *ctx, const char *state_path, const char *mem_path, char *err, size_t errlen)
{
	struct fake_vm *f = ctx;
	f->snapshots++;
	snprintf(f->state_path, sizeof(f->state_path), "%s", state_path);
	snprintf(f->mem_path, sizeof(f->mem_path), "%s", mem_path);
	if (f->snapshot_rc) {
		snprintf(err, errlen, "%s: %s", mem_path, strerror(-f->snapshot_rc));
		return f->snapshot_rc;
	}
	return 0;
}

/* One drive "rootfs" (also "0") and the NIC "eth0". */
static int fake_set_rate(void *ctx, const char *cls, const char *id, const struct ratelimit_patch *p, unsigned np,
			 char *err, size_t errlen)
{
	struct fake_vm *f = ctx;
	bool drive = !strcmp(cls, "drive");
	if (drive ? strcmp(id, "rootfs") && strcmp(id, "0") : strcmp(id, "eth0")) {
		snprintf(err, errlen, "no %s '%s'", cls, id);
		return -ENOENT;
	}
	f->rates++;
	snprintf(f->rate_cls, sizeof(f->rate_cls), "%s", cls);
	snprintf(f->rate_id, sizeof(f->rate_id), "%s", id);
	f->rate_np = np;
	memcpy(f->rate, p, np * sizeof(*p));
	return 0;
}

static int fake_set_policy(void *ctx, const char *const *rules, size_t n, bool open, char *err, size_t errlen)
{
	struct fake_vm *f = ctx;
	if (f->no_nic) {
		snprintf(err, errlen, "this VM has no network interface");
		return -ENOENT;
	}
	int rc = policy_replace(&f->policy, rules, n, open, err, errlen);
	f->policies += rc == 0;
	return rc;
}

static int fake_get_policy(void *ctx, struct policy_view *v, char *err, size_t errlen)
{
	struct fake_vm *f = ctx;
	if (f->no_nic) {
		snprintf(err, errlen, "this VM has no network interface");
		return -ENOENT;
	}
	int rc = policy_view_fill(&f->policy, v);
	v->counts = f->counts;
	v->changes = (uint64_t)f->policies;
	return rc;
}

static struct api_config fake_config(struct fake_vm *f)
{
	return (struct api_config){
		.id = "test-vm",
		.vmm_version = "9.9.9",
		.ops = { .ctx = f, .pause = fake_pause, .resume = fake_resume, .is_paused = fake_is_paused,
			 .snapshot = fake_snapshot, .set_rate = fake_set_rate, .set_policy = fake_set_policy,
			 .get_policy = fake_get_policy },
	};
}

/* ---- api_handle: routes and JSON ----------------------------------------------------------------- */

static int call(struct fake_vm *f, const char *method, const char *path, const char *body, char *out)
{
	struct api_config cfg = fake_config(f);
	int status = -1;
	api_handle(&cfg, method, path, body, body ? strlen(body) : 0, &status, out, 2048);
	return status;
}

/* The fault_message of a body, asserting the body is exactly {"fault_message": string}. */
static const char *fault_msg(const char *body)
{
	static char msg[2048];
	json_error_t je;
	json_t *o = json_loads(body, 0, &je);
	cr_assert_not_null(o, "not JSON: %s", body);
	cr_assert_eq(json_object_size(o), 1, "%s", body);
	const char *m = json_string_value(json_object_get(o, "fault_message"));
	cr_assert_not_null(m, "no fault_message: %s", body);
	snprintf(msg, sizeof(msg), "%s", m);
	json_decref(o);
	return msg;
}

Test(api_routes, get_root_describes_the_instance)
{
	struct fake_vm f = { 0 };
	char out[2048];
	cr_assert_eq(call(&f, "GET", "/", NULL, out), 200);
	json_t *o = json_loads(out, 0, NULL);
	cr_assert_not_null(o, "%s", out);
	cr_assert_str_eq(json_string_value(json_object_get(o, "id")), "test-vm");
	cr_assert_str_eq(json_string_value(json_object_get(o, "state")), "Running");
	cr_assert_str_eq(json_string_value(json_object_get(o, "vmm_version")), "9.9.9");
	cr_assert_str_eq(json_string_value(json_object_get(o, "app_name")), "padcell");
	cr_assert_eq(json_object_size(o), 4);
	json_decref(o);
	f.paused = true;
	cr_assert_eq(call(&f, "GET", "/", NULL, out), 200);
	cr_assert(strstr(out, "\"state\":\"Paused\""), "%s", out);
	cr_assert_eq(call(&f, "GET", "/", "{}", out), 400);
	cr_assert_str_eq(fault_msg(out), "GET request cannot have a body.");
}

Test(api_routes, unknown_paths_and_methods)
{
	struct fake_vm f = { 0 };
	char out[2048];
	cr_assert_eq(call(&f, "GET", "/machine-config", NULL, out), 400);
	cr_assert_str_eq(fault_msg(out), "Invalid request method and/or path: GET /machine-config.");
	cr_assert_eq(call(&f, "PUT", "/vm", "{\"state\":\"Paused\"}", out), 400);
	cr_assert(strstr(fault_msg(out), "Invalid request method and/or path: PUT /vm"));
	cr_assert_eq(call(&f, "GET", "/vm", NULL, out), 400);
	cr_assert_eq(call(&f, "POST", "/", NULL, out), 400);
	cr_assert_eq(call(&f, "PATCH", "/snapshot/create", "{}", out), 400);
	cr_assert_eq(call(&f, "get", "/", NULL, out), 400, "methods are case-sensitive");
	cr_assert_eq(f.pauses + f.resumes + f.snapshots, 0);
}

Test(api_routes, patch_vm_pause_and_resume)
{
	struct fake_vm f = { 0 };
	char out[2048];
	cr_assert_eq(call(&f, "PATCH", "/vm", "{\"state\": \"Paused\"}", out), 204);
	cr_assert_str_eq(out, "");
	cr_assert(f.paused);
	cr_assert_eq(f.pauses, 1);
	/* Already paused: done, without pausing again. */
	cr_assert_eq(call(&f, "PATCH", "/vm/", "{\"state\": \"Paused\"}", out), 204);
	cr_assert_eq(f.pauses, 1);
	cr_assert_eq(call(&f, "PATCH", "/vm", "{\"state\":\"Resumed\"}", out), 204);
	cr_assert(!f.paused);
	cr_assert_eq(f.resumes, 1);
	cr_assert_eq(call(&f, "PATCH", "/vm", "{\"state\":\"Resumed\"}", out), 204);
	cr_assert_eq(f.resumes, 1);
}

Test(api_routes, patch_vm_bad_bodies)
{
	struct fake_vm f = { 0 };
	char out[2048];
	static const struct {
		const char *body, *msg;
	} bad[] = {
		{ "{\"state\":\"Frozen\"}", "unknown state \"Frozen\"" },
		{ "{\"state\":\"paused\"}", "unknown state" },
		{ "{\"state\":5}", "\"state\" must be a non-empty string" },
		{ "{\"state\":null}", "must be a non-empty string" },
		{ "{\"state\":\"\"}", "must be a non-empty string" },
		{ "{}", "missing field \"state\"" },
		{ "{\"state\":\"Paused\",\"extra\":1}", "unknown field \"extra\"" },
		{ "{\"state\":\"Paused\",\"state\":\"Paused\"}", "not valid JSON" },
		{ "[\"Paused\"]", "must be a JSON object" },
		{ "\"Paused\"", "not valid JSON" },
		{ "{\"state\":\"Paused\"", "not valid JSON" },
		{ "{\"state\":\"Paused\"} x", "not valid JSON" },
		{ "{\"state\":\"Pa\\u0000used\"}", "not valid JSON" },
		{ "", "needs a JSON body" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(call(&f, "PATCH", "/vm", bad[i].body, out), 400, "%s", bad[i].body);
		const char *m = fault_msg(out);
		cr_assert(strstr(m, bad[i].msg), "body %s: fault '%s', expected '%s'", bad[i].body, m, bad[i].msg);
	}
	cr_assert_eq(f.pauses + f.resumes, 0);
}

Test(api_routes, pause_failure_is_reported)
{
	struct fake_vm f = { .pause_rc = -EIO };
	char out[2048];
	cr_assert_eq(call(&f, "PATCH", "/vm", "{\"state\":\"Paused\"}", out), 500);
	cr_assert_str_eq(fault_msg(out), "cannot pause the VM: vCPU 0 would not stop");
	f.pause_rc = -EINVAL;
	cr_assert_eq(call(&f, "PATCH", "/vm", "{\"state\":\"Paused\"}", out), 400);
	cr_assert(!f.paused);
}

Test(api_routes, snapshot_needs_a_paused_vm)
{
	struct fake_vm f = { 0 };
	char out[2048];
	const char *req = "{\"snapshot_path\":\"/s/state\",\"mem_file_path\":\"/s/mem\"}";
	cr_assert_eq(call(&f, "PUT", "/snapshot/create", req, out), 400);
	cr_assert(strstr(fault_msg(out), "pause it first"), "%s", out);
	cr_assert_eq(f.snapshots, 0);
	f.paused = true;
	cr_assert_eq(call(&f, "PUT", "/snapshot/create", req, out), 204);
	cr_assert_eq(f.snapshots, 1);
	cr_assert_str_eq(f.state_path, "/s/state");
	cr_assert_str_eq(f.mem_path, "/s/mem");
	cr_assert(f.paused, "a snapshot leaves the VM paused");
	cr_assert_eq(call(&f, "PUT", "/snapshot/create",
			  "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"a\",\"mem_file_path\":\"b\"}", out),
		     204);
	cr_assert_str_eq(f.state_path, "a");
}

Test(api_routes, snapshot_bad_bodies)
{
	struct fake_vm f = { .paused = true };
	char out[2048];
	static const struct {
		const char *body, *msg;
	} bad[] = {
		{ "{\"snapshot_type\":\"Diff\",\"snapshot_path\":\"a\",\"mem_file_path\":\"b\"}", "diff snapshots are not supported" },
		{ "{\"snapshot_type\":\"Half\",\"snapshot_path\":\"a\",\"mem_file_path\":\"b\"}", "unknown snapshot_type" },
		{ "{\"snapshot_type\":1,\"snapshot_path\":\"a\",\"mem_file_path\":\"b\"}", "\"snapshot_type\" must be" },
		{ "{\"snapshot_path\":\"a\"}", "missing field \"mem_file_path\"" },
		{ "{\"mem_file_path\":\"b\"}", "missing field \"snapshot_path\"" },
		{ "{\"snapshot_path\":[],\"mem_file_path\":\"b\"}", "\"snapshot_path\" must be" },
		{ "{\"snapshot_path\":\"a\",\"mem_file_path\":true}", "\"mem_file_path\" must be" },
		{ "{\"snapshot_path\":\"a\",\"mem_file_path\":\"a\"}", "the same file" },
		{ "{\"snapshot_path\":\"a\",\"mem_file_path\":\"b\",\"version\":\"1.0\"}", "unknown field \"version\"" },
		{ "nope", "not valid JSON" },
		{ "", "needs a JSON body" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(call(&f, "PUT", "/snapshot/create", bad[i].body, out), 400, "%s", bad[i].body);
		const char *m = fault_msg(out);
		cr_assert(strstr(m, bad[i].msg), "body %s: fault '%s', expected '%s'", bad[i].body, m, bad[i].msg);
	}
	cr_assert_eq(f.snapshots, 0);
}

Test(api_routes, snapshot_errors_map_to_400_or_500)
{
	struct fake_vm f = { .paused = true, .snapshot_rc = -ENOENT };
	char out[2048];
	const char *req = "{\"snapshot_path\":\"/no/state\",\"mem_file_path\":\"/no/mem\"}";
	cr_assert_eq(call(&f, "PUT", "/snapshot/create", req, out), 400);
	cr_assert_str_eq(fault_msg(out), "cannot create the snapshot: /no/mem: No such file or directory");
	f.snapshot_rc = -ENOSPC;
	cr_assert_eq(call(&f, "PUT", "/snapshot/create", req, out), 500);
	cr_assert(strstr(fault_msg(out), "No space left on device"));
}

Test(api_routes, fault_messages_stay_json)
{
	struct fake_vm f = { 0 };
	char out[2048];
	/* A path with invalid UTF-8 and quotes comes back inside a valid JSON string. */
	cr_assert_eq(call(&f, "GET", "/\xff\"x", NULL, out), 400);
	cr_assert(strstr(fault_msg(out), "?\"x"), "%s", out);
	/* A long path is cut, and the body is still JSON. */
	char path[1100] = "/";
	memset(path + 1, 'p', sizeof(path) - 2);
	path[sizeof(path) - 1] = '\0';
	cr_assert_eq(call(&f, "GET", path, NULL, out), 400);
	fault_msg(out);
}

/* ---- the server over a real socket ------------------------------------------------------------- */

struct server {
	char dir[64];
	char path[128];
	struct fake_vm vm;
	struct api_server *s;
	int stop;
	pthread_t thread;
};

static void *serve(void *arg)
{
	struct server *sv = arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = api_server_fd(sv->s), .events = POLLIN }, { .fd = sv->stop, .events = POLLIN } };
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		if (p[0].revents)
			api_server_service(sv->s);
	}
}

static struct server *server_start(void)
{
	struct server *sv = calloc(1, sizeof(*sv));
	strcpy(sv->dir, "/tmp/padcell-api-XXXXXX");
	cr_assert_not_null(mkdtemp(sv->dir));
	snprintf(sv->path, sizeof(sv->path), "%s/api.sock", sv->dir);
	char err[256];
	int fd = api_listen(sv->path, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	struct stat st;
	cr_assert_eq(stat(sv->path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "the control socket is the owner's only");
	struct api_config cfg = fake_config(&sv->vm);
	sv->s = api_server_new(fd, sv->path, &cfg, err, sizeof(err));
	cr_assert_not_null(sv->s, "%s", err);
	sv->stop = eventfd(0, EFD_CLOEXEC);
	pthread_create(&sv->thread, NULL, serve, sv);
	return sv;
}

static void server_stop(struct server *sv)
{
	uint64_t one = 1;
	cr_assert_eq(write(sv->stop, &one, 8), 8);
	pthread_join(sv->thread, NULL);
	api_server_destroy(sv->s);
	cr_assert_eq(access(sv->path, F_OK), -1, "the socket file is removed");
	close(sv->stop);
	rmdir(sv->dir);
	free(sv);
}

static int raw_connect(const char *path)
{
	int fd = unix_connect(path, 0, NULL);
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_str(int fd, const char *s, size_t n)
{
	cr_assert_eq(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads one response (head + Content-Length body) from fd; returns its status, body into out. */
static int read_response(int fd, char *out, size_t outlen, bool *keep_alive)
{
	static char buf[HTTP_HEAD_MAX + HTTP_BODY_MAX];
	static size_t len; /* bytes of a following response already read: pipelining */
	struct http_response r;
	char why[128];
	for (;;) {
		int pr = http_parse_response_head(buf, len, &r, why, sizeof(why));
		cr_assert_geq(pr, 0, "bad response: %s", why);
		if (pr == 1 && len - r.head_len >= r.content_length)
			break;
		ssize_t n = recv(fd, buf + len, sizeof(buf) - len, 0);
		cr_assert_gt(n, 0, "connection ended before a whole response (%zu bytes in)", len);
		len += (size_t)n;
	}
	cr_assert_lt(r.content_length, outlen);
	memcpy(out, buf + r.head_len, r.content_length);
	out[r.content_length] = '\0';
	size_t used = r.head_len + r.content_length;
	memmove(buf, buf + used, len - used);
	len -= used;
	if (keep_alive)
		*keep_alive = r.keep_alive;
	return r.status;
}

static void assert_closed(int fd)
{
	char c;
	cr_assert_eq(recv(fd, &c, 1, 0), 0, "the server should have closed the connection");
}

Test(api_server, client_round_trip)
{
	struct server *sv = server_start();
	struct api_client c;
	char err[512];
	cr_assert_eq(api_client_connect(&c, sv->path, err, sizeof(err)), 0, "%s", err);
	struct api_info info;
	cr_assert_eq(api_client_info(&c, &info, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(info.state, "Running");
	cr_assert_str_eq(info.id, "test-vm");
	cr_assert_str_eq(info.vmm_version, "9.9.9");
	cr_assert_eq(api_client_snapshot(&c, "/x/state", "/x/mem", err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "pause it first"), "%s", err);
	cr_assert_eq(api_client_set_paused(&c, true, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(api_client_info(&c, &info, err, sizeof(err)), 0);
	cr_assert_str_eq(info.state, "Paused");
	cr_assert_eq(api_client_snapshot(&c, "/x/state", "/x/mem", err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(sv->vm.state_path, "/x/state");
	cr_assert_eq(api_client_set_paused(&c, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(api_client_info(&c, &info, err, sizeof(err)), 0);
	cr_assert_str_eq(info.state, "Running");
	/* All of it on one keep-alive connection. */
	cr_assert_eq(api_server_clients(sv->s), 1);
	api_client_close(&c);
	server_stop(sv);
}

Test(api_server, byte_by_byte_request)
{
	struct server *sv = server_start();
	int fd = raw_connect(sv->path);
	const char *req = "PATCH /vm HTTP/1.1\r\nHost: localhost\r\nContent-Length: 18\r\n\r\n{\"state\":\"Paused\"}";
	for (size_t i = 0; req[i]; i++) {
		send_str(fd, req + i, 1);
		usleep(200);
	}
	char body[4096];
	bool ka;
	cr_assert_eq(read_response(fd, body, sizeof(body), &ka), 204);
	cr_assert(ka);
	cr_assert(sv->vm.paused);
	close(fd);
	server_stop(sv);
}

Test(api_server, pipelined_requests_answered_in_order)
{
	struct server *sv = server_start();
	int fd = raw_connect(sv->path);
	const char *reqs = "GET / HTTP/1.1\r\n\r\n"
			   "PATCH /vm HTTP/1.1\r\nContent-Length: 18\r\n\r\n{\"state\":\"Paused\"}"
			   "GET / HTTP/1.1\r\n\r\n"
			   "GET /nope HTTP/1.1\r\n\r\n"
			   "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
	send_str(fd, reqs, strlen(reqs));
	char body[4096];
	cr_assert_eq(read_response(fd, body, sizeof(body), NULL), 200);
	cr_assert(strstr(body, "\"Running\""), "%s", body);
	cr_assert_eq(read_response(fd, body, sizeof(body), NULL), 204);
	cr_assert_eq(read_response(fd, body, sizeof(body), NULL), 200);
	cr_assert(strstr(body, "\"Paused\""), "%s", body);
	cr_assert_eq(read_response(fd, body, sizeof(body), NULL), 400);
	cr_assert(strstr(fault_msg(body), "Invalid request method and/or path"));
	bool ka = true;
	cr_assert_eq(read_response(fd, body, sizeof(body), &ka), 200);
	cr_assert(!ka, "Connection: close is answered with close");
	assert_closed(fd);
	close(fd);
	server_stop(sv);
}

Test(api_server, oversize_head_is_400_and_closes)
{
	struct server *sv = server_start();
	int fd = raw_connect(sv->path);
	char *big = malloc(HTTP_HEAD_MAX + 1000);
	int k = sprintf(big, "GET / HTTP/1.1\r\nX-Pad: ");
	memset(big + k, 'a', HTTP_HEAD_MAX + 1000 - k);
	send_str(fd, big, HTTP_HEAD_MAX + 1000);
	free(big);
	char body[4096];
	bool ka = true;
	cr_assert_eq(read_response(fd, body, sizeof(body), &ka), 400);
	cr_assert(strstr(fault_msg(body), "over 8192 bytes"));
	cr_assert(!ka);
	assert_closed(fd);
	close(fd);
	server_stop(sv);
}

Test(api_server, oversize_body_is_413)
{
	struct server *sv = server_start();
	int fd = raw_connect(sv->path);
	const char *req = "PUT /snapshot/create HTTP/1.1\r\nContent-Length: 70000\r\n\r\n";
	send_str(fd, req, strlen(req));
	char body[4096];
	cr_assert_eq(read_response(fd, body, sizeof(body), NULL), 413);
	cr_assert(strstr(fault_msg(body), "65536"));
	assert_closed(fd);
	close(fd);
	server_stop(sv);
}

Test(api_server, body_of_exactly_the_limit_is_read)
{
	struct server *sv = server_start();
	int fd = raw_connect(sv->path);
	/* A 64 KiB body of JSON whitespace around a valid object: read whole, then parsed. */
	char *req = malloc(HTTP_BODY_MAX + 256);
	int k = sprintf(req, "PATCH /vm HTTP/1.1\r\nContent-Length: %u\r\n\r\n", HTTP_BODY_MAX);
	memset(req + k, ' ', HTTP_BODY_MAX);
	memcpy(req + k, "{\"state\":\"Paused\"}", 18);
	send_str(fd, req, (size_t)k + HTTP_BODY_MAX);
	free(req);
	char body[4096];
	cr_assert_eq(read_response(fd, body, sizeof(body), NULL), 204);
	cr_assert(sv->vm.paused);
	close(fd);
	server_stop(sv);
}

Test(api_server, put_without_content_length_is_411)
{
	struct server *sv = server_start();
	int fd = raw_connect(sv->path);
	const char *req = "PUT /snapshot/create HTTP/1.1\r\nHost: x\r\n\r\n";
	send_str(fd, req, strlen(req));
	char body[4096];
	cr_assert_eq(read_response(fd, body, sizeof(body), NULL), 411);
	cr_assert(strstr(fault_msg(body), "Content-Length"));
	assert_closed(fd);
	close(fd);
	fd = raw_connect(sv->path);
	req = "PATCH /vm HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n12\r\n{\"state\":\"Paused\"}\r\n0\r\n\r\n";
	send_str(fd, req, strlen(req));
	cr_assert_eq(read_response(fd, body, sizeof(body), NULL), 411);
	assert_closed(fd);
	close(fd);
	cr_assert(!sv->vm.paused);
	server_stop(sv);
}

Test(api_server, malformed_request_is_400_json)
{
	struct server *sv = server_start();
	int fd = raw_connect(sv->path);
	const char *req = "HELLO\r\n\r\n";
	send_str(fd, req, strlen(req));
	char body[4096];
	cr_assert_eq(read_response(fd, body, sizeof(body), NULL), 400);
	cr_assert(strstr(fault_msg(body), "malformed request line"));
	assert_closed(fd);
	close(fd);
	server_stop(sv);
}

Test(api_server, expect_100_continue)
{
	struct server *sv = server_start();
	int fd = raw_connect(sv->path);
	const char *head = "PATCH /vm HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 18\r\n\r\n";
	send_str(fd, head, strlen(head));
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	cr_assert_str_eq(buf, "HTTP/1.1 100 Continue\r\n\r\n");
	send_str(fd, "{\"state\":\"Paused\"}", 18);
	char body[4096];
	cr_assert_eq(read_response(fd, body, sizeof(body), NULL), 204);
	close(fd);
	server_stop(sv);
}

Test(api_server, http10_closes_after_answer)
{
	struct server *sv = server_start();
	int fd = raw_connect(sv->path);
	const char *req = "GET / HTTP/1.0\r\n\r\n";
	send_str(fd, req, strlen(req));
	char body[4096];
	bool ka = true;
	cr_assert_eq(read_response(fd, body, sizeof(body), &ka), 200);
	cr_assert(!ka);
	assert_closed(fd);
	close(fd);
	server_stop(sv);
}

Test(api_server, half_request_then_hangup_is_dropped)
{
	struct server *sv = server_start();
	int fd = raw_connect(sv->path);
	send_str(fd, "GET / HT", 8);
	shutdown(fd, SHUT_WR);
	assert_closed(fd);
	close(fd);
	/* The server still answers others. */
	struct api_client c;
	char err[256];
	struct api_info info;
	cr_assert_eq(api_client_connect(&c, sv->path, err, sizeof(err)), 0);
	cr_assert_eq(api_client_info(&c, &info, err, sizeof(err)), 0, "%s", err);
	api_client_close(&c);
	server_stop(sv);
}

Test(api_server, at_most_eight_clients_least_recent_evicted)
{
	struct server *sv = server_start();
	int fds[API_MAX_CLIENTS];
	char body[4096];
	for (unsigned i = 0; i < API_MAX_CLIENTS; i++) {
		fds[i] = raw_connect(sv->path);
		/* One request each, in order, so connection 0 is the least recently active. */
		send_str(fds[i], "GET / HTTP/1.1\r\n\r\n", 18);
		cr_assert_eq(read_response(fds[i], body, sizeof(body), NULL), 200);
	}
	cr_assert_eq(api_server_clients(sv->s), API_MAX_CLIENTS);
	int extra = raw_connect(sv->path);
	send_str(extra, "GET / HTTP/1.1\r\n\r\n", 18);
	cr_assert_eq(read_response(extra, body, sizeof(body), NULL), 200);
	cr_assert_eq(api_server_clients(sv->s), API_MAX_CLIENTS);
	assert_closed(fds[0]);
	/* The others are still served. */
	for (unsigned i = 1; i < API_MAX_CLIENTS; i++) {
		send_str(fds[i], "GET / HTTP/1.1\r\n\r\n", 18);
		cr_assert_eq(read_response(fds[i], body, sizeof(body), NULL), 200, "client %u", i);
	}
	for (unsigned i = 0; i < API_MAX_CLIENTS; i++)
		close(fds[i]);
	close(extra);
	server_stop(sv);
}

Test(api_server, client_gone_mid_answer_does_not_hurt)
{
	struct server *sv = server_start();
	for (int i = 0; i < 20; i++) {
		int fd = raw_connect(sv->path);
		send_str(fd, "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", 36);
		close(fd);
	}
	struct api_client c;
	char err[256];
	struct api_info info;
	cr_assert_eq(api_client_connect(&c, sv->path, err, sizeof(err)), 0);
	cr_assert_eq(api_client_info(&c, &info, err, sizeof(err)), 0, "%s", err);
	api_client_close(&c);
	server_stop(sv);
}

/* ---- the socket path ------------------------------------------------------------------------------ */

static void tmpdir(char *dir)
{
	strcpy(dir, "/tmp/padcell-api-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

Test(api_listen, stale_socket_is_replaced)
{
	char dir[64], path[128], err[256];
	tmpdir(dir);
	snprintf(path, sizeof(path), "%s/s", dir);
	/* A socket file nobody listens on: what a crashed padcell leaves. */
	int old = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strcpy(a.sun_path, path);
	cr_assert_eq(bind(old, (struct sockaddr *)&a, sizeof(a)), 0);
	close(old);
	int fd = api_listen(path, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	struct api_client c;
	cr_assert_eq(api_client_connect(&c, path, err, sizeof(err)), 0, "%s", err);
	api_client_close(&c);
	close(fd);
	unlink(path);
	rmdir(dir);
}

Test(api_listen, live_socket_and_other_files_are_refused)
{
	char dir[64], path[128], err[256];
	tmpdir(dir);
	snprintf(path, sizeof(path), "%s/s", dir);
	int live = api_listen(path, err, sizeof(err));
	cr_assert_geq(live, 0, "%s", err);
	cr_assert_eq(api_listen(path, err, sizeof(err)), -EADDRINUSE);
	cr_assert_str_eq(err, "in use by another process");
	close(live);
	unlink(path);

	FILE *f = fopen(path, "w");
	fputs("keep me", f);
	fclose(f);
	cr_assert_eq(api_listen(path, err, sizeof(err)), -EEXIST);
	cr_assert(strstr(err, "not a socket"), "%s", err);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 7, "the file is left alone");
	unlink(path);

	char longp[200];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	cr_assert_eq(api_listen(longp, err, sizeof(err)), -ENAMETOOLONG);
	snprintf(path, sizeof(path), "%s/no/such/dir/s", dir);
	cr_assert_lt(api_listen(path, err, sizeof(err)), 0);
	rmdir(dir);
}

/* ---- the client's errors -------------------------------------------------------------------------- */

/* A server thread that answers one connection with fixed bytes, then closes. */
struct canned {
	int lfd;
	const char *answer;
	pthread_t t;
};

static void *canned_serve(void *arg)
{
	struct canned *c = arg;
	/*
	 * api_listen's socket is non-blocking (the monitor's event loop accepts from it): wait for
	 * the client to connect before accepting, or accept fails with EAGAIN whenever this thread
	 * wins the race.  The poll's bound is only a hang guard.
	 */
	struct pollfd lp = { .fd = c->lfd, .events = POLLIN };
	int fd = poll(&lp, 1, 30000) == 1 ? accept(c->lfd, NULL, NULL) : -1;
	cr_assert_geq(fd, 0, "the client never connected");
	/*
	 * Read the whole request (the client's GET has no body) before answering and closing:
	 * closing a Unix socket with unread data resets the connection, and the client would see
	 * ECONNRESET instead of the answer.  Blocking reads; the poll is only a hang guard.
	 */
	char buf[4096];
	size_t n = 0;
	while (n < sizeof(buf) - 1 && !memmem(buf, n, "\r\n\r\n", 4)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 30000) != 1)
			break;
		ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	(void)!send(fd, c->answer, strlen(c->answer), MSG_NOSIGNAL);
	close(fd);
	return NULL;
}

static int client_against(const char *answer, char *err, size_t errlen)
{
	char dir[64], path[128];
	tmpdir(dir);
	snprintf(path, sizeof(path), "%s/s", dir);
	struct canned c = { .answer = answer };
	c.lfd = api_listen(path, err, errlen);
	cr_assert_geq(c.lfd, 0);
	pthread_create(&c.t, NULL, canned_serve, &c);
	struct api_client cl;
	struct api_info info;
	int rc = api_client_connect(&cl, path, err, errlen);
	if (!rc)
		rc = api_client_info(&cl, &info, err, errlen);
	api_client_close(&cl);
	pthread_join(c.t, NULL);
	close(c.lfd);
	unlink(path);
	rmdir(dir);
	return rc;
}

Test(api_client, not_padcell)
{
	char err[512];
	cr_assert_eq(client_against("SSH-2.0-OpenSSH_9.2\r\n", err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "does not speak HTTP"), "%s", err);
	cr_assert_eq(client_against("", err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "without an answer"), "%s", err);
	const char *other = "{\"id\":\"anonymous-instance\",\"state\":\"Running\",\"vmm_version\":\"1.7\",\"app_name\":\"X\"}";
	char answer[512];
	snprintf(answer, sizeof(answer), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(other), other);
	cr_assert_eq(client_against(answer, err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "the API of X, not padcell"), "%s", err);
	cr_assert_eq(client_against("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "not with padcell's API"), "%s", err);
	cr_assert_eq(client_against("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "in the middle of the answer"), "%s", err);
}

Test(api_client, missing_foreign_and_dead_sockets)
{
	char dir[64], path[128], err[512];
	tmpdir(dir);
	struct api_client c;
	snprintf(path, sizeof(path), "%s/none", dir);
	cr_assert_eq(api_client_connect(&c, path, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "does not exist"), "%s", err);
	snprintf(path, sizeof(path), "%s/file", dir);
	FILE *f = fopen(path, "w");
	fclose(f);
	cr_assert_eq(api_client_connect(&c, path, err, sizeof(err)), -ENOTSOCK);
	unlink(path);
	snprintf(path, sizeof(path), "%s/dead", dir);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strcpy(a.sun_path, path);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	close(s);
	cr_assert_eq(api_client_connect(&c, path, err, sizeof(err)), -ECONNREFUSED);
	cr_assert(strstr(err, "has the VM exited"), "%s", err);
	unlink(path);
	rmdir(dir);
}

/* ---- padcell snapshot / pause / resume against a fake VM ---------------------------------------- */

static int run_cmd(int (*fn)(int, char **), const char *a0, const char *a1, const char *a2, const char *a3,
		   const char *a4, const char *a5)
{
	char *argv[] = { (char *)a0, (char *)a1, (char *)a2, (char *)a3, (char *)a4, (char *)a5, NULL };
	int argc = 0;
	while (argv[argc])
		argc++;
	return fn(argc, argv);
}

Test(api_cmd, snapshot_pauses_snapshots_resumes, .init = cr_redirect_stderr)
{
	struct server *sv = server_start();
	char to[128], want[PATH_MAX + 16];
	snprintf(to, sizeof(to), "%s/snaps/one", sv->dir);
	cr_assert_eq(run_cmd(cmd_snapshot, "snapshot", "--api-sock", sv->path, "--to", to, NULL), 0);
	cr_assert_eq(sv->vm.pauses, 1);
	cr_assert_eq(sv->vm.snapshots, 1);
	cr_assert_eq(sv->vm.resumes, 1);
	cr_assert(!sv->vm.paused);
	char abs[PATH_MAX];
	cr_assert_not_null(realpath(to, abs), "the directory was made");
	snprintf(want, sizeof(want), "%s/state", abs);
	cr_assert_str_eq(sv->vm.state_path, want);
	snprintf(want, sizeof(want), "%s/mem", abs);
	cr_assert_str_eq(sv->vm.mem_path, want);

	/* --leave-paused */
	cr_assert_eq(run_cmd(cmd_snapshot, "snapshot", "--api-sock", sv->path, "--to", to, "--leave-paused"), 0);
	cr_assert(sv->vm.paused);
	cr_assert_eq(sv->vm.resumes, 1);
	/* Already paused: snapshotted and left paused. */
	cr_assert_eq(run_cmd(cmd_snapshot, "snapshot", "--api-sock", sv->path, "--to", to, NULL), 0);
	cr_assert(sv->vm.paused);
	cr_assert_eq(sv->vm.pauses, 2);
	cr_assert_eq(sv->vm.snapshots, 3);
	cr_assert_eq(sv->vm.resumes, 1);
	rmdir(to);
	snprintf(want, sizeof(want), "%s/snaps", sv->dir);
	rmdir(want);
	server_stop(sv);
}

Test(api_cmd, snapshot_failure_resumes_and_leaves_nothing, .init = cr_redirect_stderr)
{
	struct server *sv = server_start();
	sv->vm.snapshot_rc = -ENOSPC;
	char to[128];
	snprintf(to, sizeof(to), "%s/snap", sv->dir);
	cr_assert_eq(run_cmd(cmd_snapshot, "snapshot", "--api-sock", sv->path, "--to", to, NULL), EXIT_HOST_ERROR);
	cr_assert_eq(sv->vm.snapshots, 1);
	cr_assert(!sv->vm.paused, "the VM runs again");
	cr_assert_eq(access(to, F_OK), -1, "the directory made for it is gone");
	server_stop(sv);
}

Test(api_cmd, usage_errors, .init = cr_redirect_stderr)
{
	/* A path of this test's own that does not exist (never a shared name like /tmp/x). */
	char dir[] = "/tmp/padcell-usage-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char x[64];
	snprintf(x, sizeof(x), "%s/x", dir);
	cr_assert_eq(run_cmd(cmd_snapshot, "snapshot", "--to", x, NULL, NULL, NULL), EXIT_USAGE);
	cr_assert_eq(run_cmd(cmd_snapshot, "snapshot", "--api-sock", x, NULL, NULL, NULL), EXIT_USAGE);
	cr_assert_eq(run_cmd(cmd_snapshot, "snapshot", "--api-sock", "/nonexistent/api.sock", "--to", x, NULL),
		     EXIT_USAGE);
	cr_assert_eq(access(x, F_OK), -1, "no directory made for a VM that is not there");
	rmdir(dir);
	cr_assert_eq(run_cmd(cmd_snapshot, "snapshot", "--bogus", NULL, NULL, NULL, NULL), EXIT_USAGE);
	cr_assert_eq(run_cmd(cmd_pause_resume, "pause", NULL, NULL, NULL, NULL, NULL), EXIT_USAGE);
	cr_assert_eq(run_cmd(cmd_pause_resume, "pause", "--api-sock", "/nonexistent/api.sock", NULL, NULL, NULL), EXIT_USAGE);
	cr_assert_eq(run_cmd(cmd_pause_resume, "resume", "--api-sock", NULL, NULL, NULL, NULL), EXIT_USAGE);
	cr_assert_eq(run_cmd(cmd_pause_resume, "resume", "--api-sock", "/x", "extra", NULL, NULL), EXIT_USAGE);
}

Test(api_cmd, pause_resume_status, .init = cr_redirect_stdout)
{
	struct server *sv = server_start();
	cr_assert_eq(run_cmd(cmd_pause_resume, "pause", "--api-sock", sv->path, NULL, NULL, NULL), 0);
	cr_assert(sv->vm.paused);
	cr_assert_eq(run_cmd(cmd_pause_resume, "status", "--api-sock", sv->path, NULL, NULL, NULL), 0);
	cr_assert_eq(run_cmd(cmd_pause_resume, "resume", "--api-sock", sv->path, NULL, NULL, NULL), 0);
	cr_assert(!sv->vm.paused);
	cr_assert_eq(run_cmd(cmd_pause_resume, "status", "--api-sock", sv->path, NULL, NULL, NULL), 0);
	fflush(stdout);
	cr_assert_stdout_eq_str("Paused\nRunning\n");
	server_stop(sv);
}

/* ---- padcell boot --api-sock: the path is checked before anything is built ---------------------- */

static int run_padcell(char *const argv[], char *err, size_t errlen)
{
	char self[PATH_MAX], bin[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	snprintf(bin, sizeof(bin), "%s/../padcell", self);
	const char *env = getenv("PADCELL");
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		close(p[0]);
		execv(env ? env : bin, argv);
		_exit(127);
	}
	close(p[1]);
	size_t len = 0;
	ssize_t r;
	while (len < errlen - 1 && (r = read(p[0], err + len, errlen - 1 - len)) > 0)
		len += (size_t)r;
	err[len] = '\0';
	close(p[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(api_boot, unusable_api_sock_is_exit_2, .timeout = 20)
{
	char dir[64], path[128], err[1024], want[256];
	tmpdir(dir);
	snprintf(path, sizeof(path), "%s/file", dir);
	FILE *f = fopen(path, "w");
	fputs("data", f);
	fclose(f);
	/* The kernel does not even exist: the socket path is refused first. */
	int rc = run_padcell((char *const[]){ "padcell", "boot", "--kernel", "/nonexistent", "--api-sock", path, NULL }, err,
			     sizeof(err));
	cr_assert_eq(rc, EXIT_USAGE, "exit %d: %s", rc, err);
	snprintf(want, sizeof(want), "padcell: --api-sock '%s': exists and is not a socket", path);
	cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
	cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line: %s", err);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 4, "the file is left alone");
	unlink(path);

	/* A usable path but a bad kernel: the socket made for it is removed again. */
	snprintf(path, sizeof(path), "%s/api.sock", dir);
	rc = run_padcell((char *const[]){ "padcell", "boot", "--kernel", "/nonexistent", "--api-sock", path, NULL }, err,
			 sizeof(err));
	cr_assert_eq(rc, EXIT_USAGE, "exit %d: %s", rc, err);
	cr_assert(strstr(err, "cannot read kernel"), "%s", err);
	cr_assert_eq(access(path, F_OK), -1, "padcell left %s behind", path);
	rmdir(dir);
}

/* ---- out of descriptors: the level-triggered accept must not spin, and must recover ---------- */

/*
 * In a child (its RLIMIT_NOFILE lowered, every descriptor taken): a client waiting to be accepted
 * used to stay in the backlog, so the listening socket stayed readable and the event loop woke
 * forever.  Now it is shed (closed) with the spare descriptor: the server's fd goes quiet after a
 * bounded number of wakeups, and once descriptors are free again a new client is served.
 * Exit codes say what failed.
 */
static int emfile_child(const char *sock)
{
	struct fake_vm f = { 0 };
	struct api_config cfg = fake_config(&f);
	char err[256];
	struct rlimit rl = { .rlim_cur = 64, .rlim_max = 64 };
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = 64;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 10;
	int lfd = api_listen(sock, err, sizeof(err));
	if (lfd < 0)
		return 11;
	struct api_server *s = api_server_new(lfd, sock, &cfg, err, sizeof(err));
	if (!s)
		return 12;
	int c1 = unix_connect(sock, 0, NULL);
	if (c1 < 0)
		return 13;
	int fill[64], nfill = 0;
	while (nfill < 64 && (fill[nfill] = dup(0)) >= 0)
		nfill++;
	if (nfill == 64)
		return 14; /* never ran out */
	/* Serve while the server's fd says there is work, as the event loop would. */
	unsigned loops = 0;
	struct pollfd p = { .fd = api_server_fd(s), .events = POLLIN };
	while (loops < 1000 && poll(&p, 1, 0) == 1) {
		api_server_service(s);
		loops++;
	}
	if (loops >= 1000)
		return 15; /* spinning */
	if (api_server_accept_wakeups(s) > 4)
		return 16;
	char b;
	struct pollfd cp = { .fd = c1, .events = POLLIN };
	if (poll(&cp, 1, 5000) != 1 || recv(c1, &b, 1, 0) > 0)
		return 17; /* the shed client must see its connection end */
	close(c1);
	/* Descriptors free again: a new client is served. */
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
	int c2 = unix_connect(sock, 0, NULL);
	if (c2 < 0)
		return 18;
	const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	if (write(c2, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1))
		return 19;
	char out[1024];
	size_t got = 0;
	for (unsigned i = 0; i < 1000 && got < sizeof(out) - 1; i++) {
		struct pollfd sp = { .fd = api_server_fd(s), .events = POLLIN };
		if (poll(&sp, 1, 10) == 1)
			api_server_service(s);
		ssize_t n = recv(c2, out + got, sizeof(out) - 1 - got, MSG_DONTWAIT);
		if (n == 0)
			break;
		if (n > 0)
			got += (size_t)n;
	}
	out[got] = '\0';
	if (!strstr(out, "HTTP/1.1 200"))
		return 20;
	close(c2);
	api_server_destroy(s);
	return 0;
}

Test(api_server, out_of_descriptors_accept_does_not_spin_and_recovers, .timeout = 60)
{
	char dir[] = "/tmp/padcell-api-emfile-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char sock[96];
	snprintf(sock, sizeof(sock), "%s/api.sock", dir);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(emfile_child(sock));
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	unlink(sock);
	rmdir(dir);
	cr_assert(WIFEXITED(st), "the child died");
	cr_assert_eq(WEXITSTATUS(st), 0, "step %d failed (15: the accept loop spun)", WEXITSTATUS(st));
}

/* ---- PATCH /drives/{id} and /network-interfaces/{id}: rate limiters ---------------------------- */

Test(api_routes, patch_drive_rate_limiter)
{
	struct fake_vm f = { 0 };
	char out[2048];
	cr_assert_eq(call(&f, "PATCH", "/drives/rootfs",
			  "{\"drive_id\":\"rootfs\",\"rate_limiter\":{\"bandwidth\":{\"size\":1048576,"
			  "\"one_time_burst\":4096,\"refill_time\":1000}}}", out), 204, "%s", out);
	cr_assert_eq(f.rates, 1);
	cr_assert_str_eq(f.rate_cls, "drive");
	cr_assert_eq(f.rate_np, 1);
	cr_assert(f.rate[0].bytes_set);
	cr_assert_not(f.rate[0].ops_set, "a bucket left out stays as it is");
	cr_assert_eq(f.rate[0].cfg.bytes.size, 1048576);
	cr_assert_eq(f.rate[0].cfg.bytes.one_time_burst, 4096);
	cr_assert_eq(f.rate[0].cfg.bytes.refill_ms, 1000);
	/* ops alone, size 0 turning a bucket off, and the id from the path only */
	cr_assert_eq(call(&f, "PATCH", "/drives/0", "{\"rate_limiter\":{\"ops\":{\"size\":100,\"refill_time\":1000},"
			  "\"bandwidth\":{\"size\":0,\"refill_time\":0}}}", out), 204, "%s", out);
	cr_assert(f.rate[0].ops_set && f.rate[0].bytes_set);
	cr_assert_eq(f.rate[0].cfg.ops.size, 100);
	cr_assert_eq(f.rate[0].cfg.bytes.size, 0);
	cr_assert_eq(call(&f, "PATCH", "/drives/rootfs", "{\"rate_limiter\":{}}", out), 204, "{} changes nothing, validly");
	cr_assert_not(f.rate[0].ops_set || f.rate[0].bytes_set);
	cr_assert_eq(call(&f, "PATCH", "/drives/nope", "{\"rate_limiter\":{}}", out), 400);
	cr_assert(strstr(fault_msg(out), "no drive 'nope'"), "%s", out);
	cr_assert_eq(f.rates, 3);
}

Test(api_routes, patch_network_interface_rate_limiters)
{
	struct fake_vm f = { 0 };
	char out[2048];
	cr_assert_eq(call(&f, "PATCH", "/network-interfaces/eth0",
			  "{\"iface_id\":\"eth0\",\"tx_rate_limiter\":{\"ops\":{\"size\":10,\"refill_time\":100}}}", out),
		     204, "%s", out);
	cr_assert_str_eq(f.rate_cls, "net");
	cr_assert_eq(f.rate_np, 2);
	cr_assert_not(f.rate[0].bytes_set || f.rate[0].ops_set, "rx left as it is");
	cr_assert(f.rate[1].ops_set);
	cr_assert_eq(f.rate[1].cfg.ops.size, 10);
	cr_assert_eq(f.rate[1].cfg.ops.refill_ms, 100);
	cr_assert_eq(call(&f, "PATCH", "/network-interfaces/eth0",
			  "{\"rx_rate_limiter\":{\"bandwidth\":{\"size\":65536,\"refill_time\":10}}}", out), 204, "%s", out);
	cr_assert(f.rate[0].bytes_set);
	cr_assert_eq(call(&f, "PATCH", "/network-interfaces/eth1", "{\"rx_rate_limiter\":{}}", out), 400);
	cr_assert_eq(f.rates, 2);
}

Test(api_routes, patch_rate_limiter_bad_bodies)
{
	struct fake_vm f = { 0 };
	char out[2048];
	static const struct {
		const char *path, *body, *msg;
	} bad[] = {
		{ "/drives/rootfs", "{}", "nothing to change" },
		{ "/drives/rootfs", "", "needs a JSON body" },
		{ "/drives/rootfs", "{\"rate_limiter\":5}", "\"rate_limiter\" must be an object" },
		{ "/drives/rootfs", "{\"rate_limiter\":{\"bw\":{}}}", "unknown field \"bw\"" },
		{ "/drives/rootfs", "{\"rate_limiter\":{\"ops\":[]}}", "must be an object" },
		{ "/drives/rootfs", "{\"rate_limiter\":{\"ops\":{\"size\":5}}}", "needs \"refill_time\"" },
		{ "/drives/rootfs", "{\"rate_limiter\":{\"ops\":{\"refill_time\":5}}}", "needs \"size\"" },
		{ "/drives/rootfs", "{\"rate_limiter\":{\"ops\":{\"size\":-1,\"refill_time\":5}}}", "whole number" },
		{ "/drives/rootfs", "{\"rate_limiter\":{\"ops\":{\"size\":1.5,\"refill_time\":5}}}", "whole number" },
		{ "/drives/rootfs", "{\"rate_limiter\":{\"ops\":{\"size\":\"5\",\"refill_time\":5}}}", "whole number" },
		{ "/drives/rootfs", "{\"rate_limiter\":{\"ops\":{\"size\":9007199254740993,\"refill_time\":5}}}",
		  "whole number from 0 to 9007199254740992" },
		{ "/drives/rootfs", "{\"rate_limiter\":{\"ops\":{\"size\":5,\"refill_time\":0}}}", "more than 0 ms" },
		{ "/drives/rootfs", "{\"rate_limiter\":{\"ops\":{\"size\":5,\"refill_time\":5,\"x\":1}}}",
		  "unknown field \"x\"" },
		{ "/drives/rootfs", "{\"drive_id\":\"other\",\"rate_limiter\":{}}", "the path names \"rootfs\"" },
		{ "/drives/rootfs", "{\"path_on_host\":\"/x\",\"rate_limiter\":{}}", "keeps its file" },
		{ "/drives/rootfs", "{\"rx_rate_limiter\":{}}", "unknown field \"rx_rate_limiter\"" },
		{ "/network-interfaces/eth0", "{\"rate_limiter\":{}}", "unknown field \"rate_limiter\"" },
		{ "/network-interfaces/eth0", "{\"iface_id\":\"eth1\",\"tx_rate_limiter\":{}}", "the path names" },
		{ "/network-interfaces/eth0", "{}", "nothing to change" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(call(&f, "PATCH", bad[i].path, bad[i].body, out), 400, "%s", bad[i].body);
		const char *m = fault_msg(out);
		cr_assert(strstr(m, bad[i].msg), "body %s: fault '%s', expected '%s'", bad[i].body, m, bad[i].msg);
	}
	cr_assert_eq(f.rates, 0, "nothing half-applied");
	/* Other methods and shapes of the path are not routes. */
	cr_assert_eq(call(&f, "PUT", "/drives/rootfs", "{\"rate_limiter\":{}}", out), 400);
	cr_assert(strstr(fault_msg(out), "Invalid request method and/or path"));
	cr_assert_eq(call(&f, "PATCH", "/drives/", "{\"rate_limiter\":{}}", out), 400);
	cr_assert_eq(call(&f, "PATCH", "/drives/a/b", "{\"rate_limiter\":{}}", out), 400);
	cr_assert(strstr(fault_msg(out), "Invalid request method and/or path"));
}

/* ---- PUT and GET /network/policy ----------------------------------------------------------------- */

Test(api_routes, put_policy_replaces_the_rules_and_get_shows_them)
{
	struct fake_vm f = { 0 };
	policy_init(&f.policy);
	char out[2048];
	cr_assert_eq(call(&f, "PUT", "/network/policy",
			  "{\"allow\":[\"pypi.org:443\",\"*.pythonhosted.org:443\",\"10.1.2.3:5432\"],\"open\":false}", out),
		     204, "%s", out);
	cr_assert_eq(f.policies, 1);
	cr_assert_eq(f.policy.nrules, 3);
	cr_assert_not(f.policy.open);
	f.counts = (struct policy_counts){ .allowed = 7, .rejected = 3, .dropped = 2, .resolved = 5, .nxdomain = 4,
					   .servfail = 1, .sni_accepted = 6, .sni_refused = 8, .rx_throttled = 9,
					   .tx_throttled = 10 };
	cr_assert_eq(call(&f, "GET", "/network/policy", NULL, out), 200, "%s", out);
	cr_assert_str_eq(out, "{\"allow\":[\"pypi.org:443\",\"*.pythonhosted.org:443\",\"10.1.2.3:5432\"],\"open\":false,"
			      "\"changes\":1,\"counters\":{\"allowed\":7,\"rejected\":3,\"dropped\":2,\"resolved\":5,"
			      "\"nxdomain\":4,\"servfail\":1,\"sni_accepted\":6,\"sni_refused\":8,\"rx_throttled\":9,"
			      "\"tx_throttled\":10}}");
	/* open mode, "open" left out meaning false, an empty list closing everything, a trailing slash */
	cr_assert_eq(call(&f, "PUT", "/network/policy", "{\"allow\":[],\"open\":true}", out), 204, "%s", out);
	cr_assert(f.policy.open);
	cr_assert_eq(f.policy.nrules, 0);
	cr_assert_eq(call(&f, "PUT", "/network/policy/", "{\"allow\":[\"1.2.3.4\"]}", out), 204, "%s", out);
	cr_assert_not(f.policy.open, "open left out: false");
	cr_assert_eq(call(&f, "GET", "/network/policy", NULL, out), 200, "%s", out);
	cr_assert(strstr(out, "\"allow\":[\"1.2.3.4\"],\"open\":false,\"changes\":3"), "%s", out);
	policy_destroy(&f.policy);
}

Test(api_routes, put_policy_bad_bodies_change_nothing)
{
	struct fake_vm f = { 0 };
	policy_init(&f.policy);
	char out[2048];
	const char *keep = "{\"allow\":[\"example.org:443\"]}";
	cr_assert_eq(call(&f, "PUT", "/network/policy", keep, out), 204, "%s", out);
	static const struct {
		const char *body, *msg;
	} bad[] = {
		{ "", "needs a JSON body" },
		{ "{", "not valid JSON" },
		{ "[]", "must be a JSON object" },
		{ "{}", "missing field \"allow\"" },
		{ "{\"allow\":\"pypi.org\"}", "\"allow\" must be a list" },
		{ "{\"allow\":{}}", "\"allow\" must be a list" },
		{ "{\"allow\":[443]}", "\"allow\"[0] must be a rule string" },
		{ "{\"allow\":[\"a.org\",null]}", "\"allow\"[1] must be a rule string" },
		{ "{\"allow\":[\"a.org\\u0000b.org\"]}", "not valid JSON" },
		{ "{\"allow\":[],\"open\":\"yes\"}", "\"open\" must be true or false" },
		{ "{\"allow\":[],\"open\":1}", "\"open\" must be true or false" },
		{ "{\"allow\":[],\"deny\":[]}", "unknown field \"deny\"" },
		{ "{\"allow\":[],\"allow\":[]}", "not valid JSON" },
		/* a bad rule among good ones: named, and none of them applied */
		{ "{\"allow\":[\"pypi.org:443\",\"10.0.0.1/8\"]}", "10.0.0.1/8" },
		{ "{\"allow\":[\"pypi.org:99999\"]}", "pypi.org:99999" },
		{ "{\"allow\":[\"\"]}", "empty" },
		{ "{\"allow\":[\"*.org:443/udp\"]}", "*.org:443/udp" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(call(&f, "PUT", "/network/policy", bad[i].body, out), 400, "%s: %s", bad[i].body, out);
		const char *m = fault_msg(out);
		cr_assert(strstr(m, bad[i].msg), "body %s: fault '%s', expected '%s'", bad[i].body, m, bad[i].msg);
		cr_assert_eq(f.policy.nrules, 1, "nothing half-applied: %s", bad[i].body);
		cr_assert_str_eq(f.policy.rules[0].text, "example.org:443");
	}
	cr_assert_eq(f.policies, 1);
	/* more rules than a policy holds */
	size_t cap = 16 + (POLICY_MAX_RULES + 1) * 10;
	char *big = malloc(cap);
	size_t o = (size_t)snprintf(big, cap, "{\"allow\":[");
	for (int i = 0; i <= POLICY_MAX_RULES; i++)
		o += (size_t)snprintf(big + o, cap - o, "%s\"1.2.3.4\"", i ? "," : "");
	snprintf(big + o, cap - o, "]}");
	cr_assert_eq(call(&f, "PUT", "/network/policy", big, out), 400);
	cr_assert(strstr(fault_msg(out), "at most 1024"), "%s", out);
	free(big);
	cr_assert_eq(f.policy.nrules, 1);
	/* other methods are not routes; GET takes no body */
	cr_assert_eq(call(&f, "PATCH", "/network/policy", keep, out), 400);
	cr_assert(strstr(fault_msg(out), "Invalid request method and/or path"));
	cr_assert_eq(call(&f, "GET", "/network/policy", "{}", out), 400);
	policy_destroy(&f.policy);
}

Test(api_routes, policy_without_a_nic_is_400)
{
	struct fake_vm f = { .no_nic = true };
	char out[2048];
	cr_assert_eq(call(&f, "PUT", "/network/policy", "{\"allow\":[]}", out), 400);
	cr_assert(strstr(fault_msg(out), "no network interface"), "%s", out);
	cr_assert_eq(call(&f, "GET", "/network/policy", NULL, out), 400);
	cr_assert(strstr(fault_msg(out), "no network interface"), "%s", out);
}

Test(api_cmd, net_policy_sets_shows_and_refuses_bad_rules, .init = cr_redirect_stdout)
{
	struct server *sv = server_start();
	policy_init(&sv->vm.policy);
	cr_assert_eq(run_cmd(cmd_net_policy, "net-policy", "--api-sock", sv->path, "--allow", "pypi.org:443", "--open"), 0);
	cr_assert_eq(sv->vm.policy.nrules, 1);
	cr_assert(sv->vm.policy.open);
	cr_assert_eq(run_cmd(cmd_net_policy, "net-policy", "--api-sock", sv->path, "--allow", "10.0.0.1/8", NULL), 2,
		     "a bad rule: the CLI's usage error");
	cr_assert_eq(sv->vm.policy.nrules, 1, "and nothing changed");
	cr_assert_eq(run_cmd(cmd_net_policy, "net-policy", "--api-sock", sv->path, NULL, NULL, NULL), 0);
	cr_assert_eq(run_cmd(cmd_net_policy, "net-policy", "--api-sock", sv->path, "--deny-all", NULL, NULL), 0);
	cr_assert_eq(sv->vm.policy.nrules, 0);
	cr_assert_not(sv->vm.policy.open);
	fflush(stdout);
	cr_assert_stdout_eq_str("{\"allow\":[\"pypi.org:443\"],\"open\":true,\"changes\":1,\"counters\":{\"allowed\":0,"
				"\"rejected\":0,\"dropped\":0,\"resolved\":0,\"nxdomain\":0,\"servfail\":0,"
				"\"sni_accepted\":0,\"sni_refused\":0,\"rx_throttled\":0,\"tx_throttled\":0}}\n");
	policy_destroy(&sv->vm.policy);
	server_stop(sv);
}

Test(api_server, a_policy_answer_larger_than_4k_arrives_whole)
{
	struct server *sv = server_start();
	policy_init(&sv->vm.policy);
	static char names[POLICY_MAX_RULES][32];
	const char *rules[POLICY_MAX_RULES];
	for (int i = 0; i < POLICY_MAX_RULES; i++) {
		snprintf(names[i], sizeof(names[i]), "host-%04d.example.org:443", i);
		rules[i] = names[i];
	}
	struct api_client cl;
	char err[512];
	cr_assert_eq(api_client_connect(&cl, sv->path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(api_client_set_policy(&cl, rules, POLICY_MAX_RULES, false, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sv->vm.policy.nrules, POLICY_MAX_RULES);
	char *body = malloc(HTTP_BODY_MAX + 1);
	cr_assert_eq(api_client_get_policy(&cl, body, HTTP_BODY_MAX + 1, err, sizeof(err)), 0, "%s", err);
	cr_assert_gt(strlen(body), 28000, "1024 rules of 25 characters, listed");
	json_t *o = json_loads(body, 0, NULL);
	cr_assert_not_null(o, "whole JSON");
	cr_assert_eq(json_array_size(json_object_get(o, "allow")), POLICY_MAX_RULES);
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(o, "allow"), 1023)), "host-1023.example.org:443");
	json_decref(o);
	free(body);
	api_client_close(&cl);
	policy_destroy(&sv->vm.policy);
	server_stop(sv);
}
