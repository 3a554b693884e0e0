/* Fuzzes the control-socket API (vmm/api/api.c): bytes from a client connection to a real server on a Unix socket, and api_handle's routes and JSON directly. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/api/api.h"

/* A VM that only keeps a flag: snapshot never writes a file; odd paths fail as the host would. */
struct fake_vm {
	bool paused;
};

static int fake_pause(void *ctx, char *err, size_t errlen)
{
	((struct fake_vm *)ctx)->paused = true;
	return 0;
}

static int fake_resume(void *ctx, char *err, size_t errlen)
{
	((struct fake_vm *)ctx)->paused = false;
	return 0;
}

static bool fake_is_paused(void *ctx)
{
	return ((struct fake_vm *)ctx)->paused;
}

static int fake_snapshot(void *ctx, const char *state_path, const char *mem_path, char *err, size_t errlen)
{
	if (strlen(state_path) % 3 == 0) {
		snprintf(err, errlen, "%s: no space left", mem_path);
		return -ENOSPC;
	}
	if (strlen(mem_path) % 3 == 0)
		return -EACCES;
	return 0;
}

/* Checks what the parser hands over: a patch never carries more than the limiter's bounds. */
static int fake_set_rate(void *ctx, const char *cls, const char *id, const struct ratelimit_patch *p, unsigned np,
			 char *err, size_t errlen)
{
	if (np != (strcmp(cls, "drive") ? 2u : 1u))
		abort();
	for (unsigned i = 0; i < np; i++) {
		const struct rl_bucket_cfg *b[2] = { &p[i].cfg.bytes, &p[i].cfg.ops };
		for (int k = 0; k < 2; k++)
			if (b[k]->size > (1ull << 53) || b[k]->one_time_burst > (1ull << 53) || b[k]->refill_ms > (1ull << 32) ||
			    (b[k]->size && !b[k]->refill_ms))
				abort();
	}
	if (strlen(id) % 2) {
		snprintf(err, errlen, "no such %s", cls);
		return -ENOENT;
	}
	return 0;
}

/* A real rule set behind the policy routes: what the API hands over is parsed as the NIC would. */
static struct policy fuzz_policy;

static int fake_set_policy(void *ctx, const char *const *rules, size_t n, bool open, char *err, size_t errlen)
{
	if (n > POLICY_MAX_RULES)
		abort(); /* the API bounds the list before it gets here */
	for (size_t i = 0; i < n; i++)
		if (!rules[i])
			abort();
	return policy_replace(&fuzz_policy, rules, n, open, err, errlen);
}

static int fake_get_policy(void *ctx, struct policy_view *v, char *err, size_t errlen)
{
	v->counts = (struct policy_counts){ .allowed = 7, .rejected = 1ull << 40 };
	v->changes = 3;
	return policy_view_fill(&fuzz_policy, v);
}

static struct fake_vm vm;
static struct api_config cfg = {
	.id = "fuzz-vm",
	.vmm_version = "0.0.0",
	.ops = { .ctx = &vm, .pause = fake_pause, .resume = fake_resume, .is_paused = fake_is_paused,
		 .snapshot = fake_snapshot, .set_rate = fake_set_rate, .set_policy = fake_set_policy,
		 .get_policy = fake_get_policy },
};
static struct api_server *server;
static char dir[64], sock_path[128];

static void cleanup(void)
{
	api_server_destroy(server); /* unlinks the socket */
	policy_destroy(&fuzz_policy);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(dir, sizeof(dir), "/tmp/padcell-fuzz-api-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/api.sock", dir);
	char err[256];
	int lfd = api_listen(sock_path, err, sizeof(err));
	if (lfd < 0) {
		fprintf(stderr, "api_listen: %s\n", err);
		abort();
	}
	policy_init(&fuzz_policy);
	server = api_server_new(lfd, sock_path, &cfg, err, sizeof(err));
	if (!server) {
		fprintf(stderr, "api_server_new: %s\n", err);
		abort();
	}
	atexit(cleanup);
	return 0;
}

/* Reads whatever the server wrote; true once it has closed its end. */
static bool drain(int fd)
{
	char buf[8192];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0)
			return true;
		if (n < 0)
			return errno != EAGAIN && errno != EINTR;
	}
}

/* One client: connects, sends the input in chunks of a size the first byte picks, then EOF. */
static void over_socket(const uint8_t *data, size_t size)
{
	size_t chunk = (size_t)(data[0] & 0x7f) * 61 + 1;
	data++, size--;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		abort();
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		abort();
	api_server_service(server);
	size_t off = 0;
	bool closed = false;
	for (int round = 0; off < size && !closed && round < 100000; round++) {
		size_t n = size - off < chunk ? size - off : chunk;
		ssize_t w = send(fd, data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0)
			off += (size_t)w;
		else if (w < 0 && errno != EAGAIN)
			break; /* the server closed on us (a 4xx that ends the connection) */
		api_server_service(server);
		closed = drain(fd);
	}
	shutdown(fd, SHUT_WR);
	int round = 0;
	for (; !closed && round < 100000; round++) {
		api_server_service(server);
		closed = drain(fd);
	}
	close(fd);
	/* Told the client is done, the server must answer what it can and close; it holds nothing after. */
	for (int i = 0; i < 4 && api_server_clients(server); i++)
		api_server_service(server);
	if (!closed || api_server_clients(server)) {
		fprintf(stderr, "fuzz: the server kept the connection (%u open)\n", api_server_clients(server));
		abort();
	}
}

/* api_handle alone: a method, a path up to the first newline, the rest the body. */
static void direct(const uint8_t *data, size_t size)
{
	static const char *const methods[] = { "GET", "PUT", "PATCH", "POST", "DELETE", "HEAD" };
	const char *method = methods[data[0] % 6];
	vm.paused = data[0] & 0x80;
	data++, size--;
	const uint8_t *nl = memchr(data, '\n', size);
	size_t plen = nl ? (size_t)(nl - data) : size;
	char path[1024];
	if (plen >= sizeof(path))
		plen = sizeof(path) - 1;
	memcpy(path, data, plen);
	path[plen] = '\0';
	size_t skip = nl ? (size_t)(nl - data) + 1 : size;
	char *body = malloc(size - skip + 1);
	if (!body)
		return;
	memcpy(body, data + skip, size - skip);
	char out[2048];
	int status = -1;
	api_handle(&cfg, method, path, body, size - skip, &status, out, sizeof(out));
	if (status < 200 || status > 599 || !memchr(out, '\0', sizeof(out)))
		abort();
	free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	fuzz_fds_begin();
	if (data[0] & 0x80)
		over_socket(data + 1, size - 1);
	else
		direct(data + 1, size - 1);
	fuzz_fds_end();
	return 0;
}
