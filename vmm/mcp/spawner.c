/* `padcell mcp`'s spawner process (boots and ends the sandbox VM) and the server's call to it. */
#include "vmm/mcp/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/agent/proto.h"
#include "vmm/cmd/check.h"
#include "vmm/cmd/run.h"
#include "vmm/err.h"
#include "vmm/proc.h"
#include "vmm/serve/spawner.h"
#include "vmm/util.h"

#define SANDBOX_CMDLINE "console=ttyS0 reboot=k panic=-1 quiet init=/sbin/padcell-agent"
#define SPAWN_STOP_MS   10000
/* the server's wait for a reply: a stop's grace and kill wait, and more */
#define SPAWN_REPLY_MS  30000

int mcp_spawn_req_check(const void *msg, size_t len, struct mcp_spawn_req *out, char *err, size_t errlen)
{
	if (len != sizeof(*out))
		return errorf(err, errlen, -EINVAL, "a request of %zu bytes (not %zu)", len, sizeof(*out));
	memcpy(out, msg, sizeof(*out));
	if (out->magic != MCP_SPAWN_MAGIC)
		return errorf(err, errlen, -EINVAL, "a request without the magic number");
	if (out->op < MCP_SPAWN_BOOT || out->op > MCP_SPAWN_WAIT)
		return errorf(err, errlen, -EINVAL, "an unknown request %u", out->op);
	return 0;
}

/* ---- the spawner process ------------------------------------------------------------------- */

static struct {
	const struct sandbox_opts *o;
	int fd;
	pid_t pid;
	int pidfd;
	char dir[64], vsock[128], ready[160];
	char kernel[4096], rootfs[4096];
} SP;

static void reply(struct mcp_spawn_rep *r, const int *fds, int nfds)
{
	r->magic = MCP_SPAWN_MAGIC;
	struct iovec iov = { .iov_base = r, .iov_len = sizeof(*r) };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} cm;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0) {
		memset(&cm, 0, sizeof(cm));
		m.msg_control = cm.buf;
		m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(h), fds, nfds * sizeof(int));
	}
	while (sendmsg(SP.fd, &m, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

static void files_remove(void)
{
	if (!SP.dir[0])
		return;
	unlink(SP.ready);
	unlink(SP.vsock);
	rmdir(SP.dir);
	SP.dir[0] = '\0';
}

static void do_stop(struct mcp_spawn_rep *r)
{
	if (SP.pid > 0) {
		/* padcell boot ends on SIGTERM at once; a stuck one is killed after SPAWN_STOP_MS */
		proc_stop(SP.pid, SP.pidfd, 0, SPAWN_STOP_MS);
		SP.pid = 0;
	}
	if (SP.pidfd >= 0)
		close(SP.pidfd);
	SP.pidfd = -1;
	files_remove();
	reply(r, NULL, 0);
}

static int boot(struct mcp_spawn_rep *r, int *ready_fd)
{
	const struct sandbox_opts *o = SP.o;
	char *err = r->err;
	size_t errlen = sizeof(r->err);
	if (SP.pid > 0 || SP.dir[0])
		return errorf(err, errlen, -EBUSY, "a sandbox VM is up already");
	if (!o->allow_pvm && host_kvm_kind() == HOST_KVM_PVM)
		return errorf(err, errlen, -ENOTSUP, "this host's /dev/kvm is PVM (no VT-x/AMD-V), where a standard Linux "
			      "kernel cannot boot: the sandbox needs a host with hardware KVM (padcell check)");
	if (!o->kernel && run_default_file("PADCELL_KERNEL", "vmlinuz", SP.kernel, sizeof(SP.kernel), err, errlen))
		return -ENOENT;
	if (!o->rootfs && run_default_file("PADCELL_ROOTFS", "rootfs.ext4", SP.rootfs, sizeof(SP.rootfs), err, errlen))
		return -ENOENT;
	if (o->kernel)
		snprintf(SP.kernel, sizeof(SP.kernel), "%s", o->kernel);
	if (o->rootfs)
		snprintf(SP.rootfs, sizeof(SP.rootfs), "%s", o->rootfs);
	const char *base = getenv("XDG_RUNTIME_DIR");
	if (!base || !*base || access(base, W_OK) || strlen(base) > 40)
		base = "/tmp";
	snprintf(SP.dir, sizeof(SP.dir), "%s/padcell-mcp.XXXXXX", base);
	if (!mkdtemp(SP.dir)) {
		int e = errno;
		SP.dir[0] = '\0';
		return errorf(err, errlen, -e, "cannot make a private directory in %s: %s", base, strerror(e));
	}
	snprintf(SP.vsock, sizeof(SP.vsock), "%s/vsock", SP.dir);
	snprintf(SP.ready, sizeof(SP.ready), "%s_%u", SP.vsock, AGENT_PORT);
	enum unix_step at;
	int rfd = unix_listen(SP.ready, 4, 0, 0, &at);
	if (rfd < 0) {
		files_remove();
		return errorf(err, errlen, rfd, "cannot listen on %s: %s", SP.ready, strerror(-rfd));
	}
	char drive[4200], cpus[16];
	snprintf(drive, sizeof(drive), "%s,ro,id=rootfs", SP.rootfs);
	snprintf(cpus, sizeof(cpus), "%u", o->cpus);
	const char *argv[] = { o->padcell, "boot", "--kernel", SP.kernel, "--drive", drive, "--vsock", SP.vsock,
			       "--mem", o->mem, "--cpus", cpus, "--cmdline", SANDBOX_CMDLINE,
			       o->allow_pvm ? "--allow-pvm" : NULL, NULL };
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(rfd);
		files_remove();
		return errorf(err, errlen, -e, "fork: %s", strerror(e));
	}
	if (pid == 0) {
		/* The VM goes with this process, however it ends; stdio is the protocol's, never the VM's. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int null = open("/dev/null", O_RDWR);
		dup2(null, STDIN_FILENO);
		dup2(o->verbose ? STDERR_FILENO : null, STDOUT_FILENO);
		close_range(3, ~0u, 0);
		execv(o->padcell, (char *const *)argv);
		_exit(127);
	}
	SP.pid = pid;
	SP.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	r->pid = pid;
	snprintf(r->dir, sizeof(r->dir), "%s", SP.dir);
	*ready_fd = rfd;
	return 0;
}

static void serve_one(void)
{
	unsigned char buf[sizeof(struct mcp_spawn_req) + 1];
	ssize_t n = recv(SP.fd, buf, sizeof(buf), MSG_TRUNC);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* the server is gone: so is its sandbox */
		struct mcp_spawn_rep r = { 0 };
		do_stop(&r);
		_exit(0);
	}
	struct mcp_spawn_req q;
	struct mcp_spawn_rep r = { 0 };
	if ((r.rc = mcp_spawn_req_check(buf, (size_t)n, &q, r.err, sizeof(r.err)))) {
		fprintf(stderr, "padcell: mcp: spawner: refused %s\n", r.err);
		return reply(&r, NULL, 0);
	}
	switch (q.op) {
	case MCP_SPAWN_BOOT: {
		int rfd = -1;
		if ((r.rc = boot(&r, &rfd)))
			return reply(&r, NULL, 0);
		int fds[2] = { rfd, SP.pidfd };
		reply(&r, fds, SP.pidfd >= 0 ? 2 : 1);
		close(rfd);
		break;
	}
	case MCP_SPAWN_STOP: do_stop(&r); break;
	case MCP_SPAWN_WAIT: {
		int st = 0;
		if (SP.pid > 0 && waitpid(SP.pid, &st, WNOHANG) == SP.pid) {
			r.exited = 1;
			r.status = st;
			SP.pid = 0;
		}
		reply(&r, NULL, 0);
		break;
	}
	}
}

int mcp_spawner_fork(const struct sandbox_opts *o, int *fd, pid_t *pid, char *err, size_t errlen)
{
	int rc = spawner_fork_child(fd, pid, err, errlen);
	if (rc != 1)
		return rc;
	/* stdin and stdout are the protocol's: not the spawner's */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	SP.o = o;
	SP.fd = *fd;
	SP.pidfd = -1;
	for (;;) {
		struct pollfd q = { .fd = SP.fd, .events = POLLIN };
		if (poll(&q, 1, -1) > 0)
			serve_one();
	}
}

/* ---- the server's call ---------------------------------------------------------------------- */

int mcp_spawn_call(int fd, enum mcp_spawn_op op, struct mcp_spawn_rep *r, int fds[2])
{
	fds[0] = fds[1] = -1;
	struct mcp_spawn_req q = { .magic = MCP_SPAWN_MAGIC, .op = op };
	ssize_t n;
	while ((n = send(fd, &q, sizeof(q), MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(q))
		return -EPIPE;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	double deadline = now_ms() + SPAWN_REPLY_MS;
	for (;;) {
		double left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		int k = poll(&p, 1, (int)left + 1);
		if (k > 0)
			break;
		if (k < 0 && errno != EINTR)
			return -errno;
	}
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} cm;
	struct iovec iov = { .iov_base = r, .iov_len = sizeof(*r) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
	while ((n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return n < 0 ? -errno : -EPIPE;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
		if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
			size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(fds, CMSG_DATA(h), (k > 2 ? 2 : k) * sizeof(int));
		}
	if (n != (ssize_t)sizeof(*r) || r->magic != MCP_SPAWN_MAGIC) {
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return -EPROTO;
	}
	r->err[sizeof(r->err) - 1] = '\0';
	r->dir[sizeof(r->dir) - 1] = '\0';
	return 0;
}
