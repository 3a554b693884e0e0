/*
 * `padcell run`: one command in a fresh microVM.  Boot (or restore), wait for the guest agent to
 * connect, run the command with this process's stdin/stdout/stderr, hand back its exit code, and
 * leave nothing behind: the VM, its private socket directory and its scratch disk all go.
 */
#include "vmm/cmd/run.h"
#include "vmm/cmd/cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guest/agent/proto.h"
#include "vmm/agent/agent_client.h"
#include "vmm/api/api.h"
#include "vmm/cmd/check.h"
#include "vmm/cmd/cli.h"
#include "vmm/err.h"
#include "vmm/jail/jail.h"
#include "vmm/launch.h"
#include "vmm/snapshot.h"
#include "vmm/util.h"

#define RUN_DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=-1 quiet"
#define RUN_AGENT_INIT      "/sbin/padcell-agent"
#define CONSOLE_TAIL        3000 /* bytes of guest console shown when the VM fails */

/*
 * The default kernel or root image: $PADCELL_KERNEL / $PADCELL_ROOTFS, else share/padcell/NAME
 * beside the executable (build/share/padcell after `make images`) or one level up (an installed
 * bin/padcell finds ../share/padcell).
 */
int run_default_file(const char *env, const char *name, char *out, size_t outlen, char *err, size_t errlen)
{
	const char *e = getenv(env);
	if (e && *e) {
		snprintf(out, outlen, "%s", e);
		return 0;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return errorf(err, errlen, -ENOENT, "cannot find padcell's own path to look for the default %s", name);
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	static const char *const rel[] = { "share/padcell", "../share/padcell" };
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		if (snprintf(out, outlen, "%s/%s/%s", exe, rel[i], name) >= (int)outlen)
			continue;
		if (access(out, R_OK) == 0)
			return 0;
	}
	return errorf(err, errlen, -ENOENT,
		      "no default %s in %s/share/padcell or %s/../share/padcell: build it with `make images`, "
		      "set $%s, or pass --%s FILE", name, exe, exe, env, strcmp(env, "PADCELL_KERNEL") ? "rootfs" : "kernel");
}

struct console_ring {
	int rfd;
	pthread_t thread;
	pthread_mutex_t lock;
	bool jail_born;            /* started before the jail confined the process */
	uint64_t total;            /* bytes seen; the last CONSOLE_TAIL of them are in buf */
	char buf[CONSOLE_TAIL];
};

struct run {
	struct run_opts o;
	struct launch l;
	struct vm *vm;
	char dir[64];              /* private directory for the sockets, "" when none was made */
	char vsock_path[128];
	char ready_path[160];      /* vsock_path_<AGENT_PORT>: the agent's ready connection lands here */
	int ready_fd;
	bool named;                /* the socket names (and the private directory) still exist */
	int console_fd;            /* where the guest console goes: a pipe to the ring, or stderr */
	bool console_mine;
	struct console_ring ring;
	int sig_fd;
	double t_start, t_vm, t_ready, t_cmd;
	/* --api-sock: boot's control socket, served on a thread of its own while the command runs */
	struct {
		int fd;                /* the listening socket until the server owns it, else -1 */
		struct api_server *server;
		pthread_t thread;
		int quit_efd;
		bool started, jail_born;
	} api;
};

/*
 * The guest console of a run: kept, bounded, only to show why a VM failed.  A pipe from the serial
 * device to a thread that keeps the last CONSOLE_TAIL bytes; a guest flooding its console costs
 * nothing but that thread's time.
 */
static void *ring_thread(void *arg)
{
	struct console_ring *r = arg;
	jail_thread_begin(JAIL_CONTROL, r->jail_born); /* guest output: confined like the rest */
	char buf[4096];
	for (;;) {
		ssize_t n = read(r->rfd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		pthread_mutex_lock(&r->lock);
		for (ssize_t i = 0; i < n; i++)
			r->buf[(r->total + (uint64_t)i) % CONSOLE_TAIL] = buf[i];
		r->total += (uint64_t)n;
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

static int ring_start(struct console_ring *r, int *wfd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	r->rfd = p[0];
	r->total = 0;
	pthread_mutex_init(&r->lock, NULL);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VM_THREAD_STACK);
	r->jail_born = jail_thread_born();
	int rc = pthread_create(&r->thread, &attr, ring_thread, r);
	pthread_attr_destroy(&attr);
	if (rc && !r->jail_born)
		jail_thread_unborn();
	if (rc) {
		close(p[0]);
		close(p[1]);
		return -rc;
	}
	*wfd = p[1];
	return 0;
}

/* Closes the write end (after the VM is gone), waits for the reader. */
static void ring_stop(struct console_ring *r, int wfd)
{
	close(wfd);
	pthread_join(r->thread, NULL);
	close(r->rfd);
}

/*
 * The control socket's thread: run's main thread is in the agent's calls, so the requests (a
 * policy change, a pause, a snapshot) are answered here, as boot's event loop answers them.
 */
static void *api_thread(void *arg)
{
	struct run *r = arg;
	jail_thread_begin(JAIL_CONTROL, r->api.jail_born);
	for (;;) {
		struct pollfd p[2] = { { .fd = api_server_fd(r->api.server), .events = POLLIN },
				       { .fd = r->api.quit_efd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents)
			api_server_service(r->api.server);
	}
	return NULL;
}

/* Serves the control socket (claimed by run_main) for the VM just built. */
static int api_start(struct run *r, char *err, size_t errlen)
{
	char why[256];
	r->api.server = api_vm_serve(r->vm, r->api.fd, r->o.vm.api_sock, PADCELL_VERSION, why, sizeof(why));
	r->api.fd = -1; /* the server's now, or closed and removed */
	if (!r->api.server)
		return errorf(err, errlen, -EIO, "--api-sock '%s': %s", r->o.vm.api_sock, why);
	r->api.quit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->api.quit_efd < 0)
		return errorf(err, errlen, -errno, "eventfd: %s", strerror(errno));
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VM_THREAD_STACK);
	r->api.jail_born = jail_thread_born();
	int rc = pthread_create(&r->api.thread, &attr, api_thread, r);
	pthread_attr_destroy(&attr);
	if (rc && !r->api.jail_born)
		jail_thread_unborn();
	if (rc)
		return errorf(err, errlen, -rc, "cannot start the control socket's thread: %s", strerror(rc));
	r->api.started = true;
	return 0;
}

/* No more requests: the thread ends and the socket goes (before the VM does). */
static void api_stop(struct run *r)
{
	if (r->api.started) {
		uint64_t one = 1;
		if (write(r->api.quit_efd, &one, sizeof(one)) < 0) {
			/* cannot fail for a fresh eventfd */
		}
		pthread_join(r->api.thread, NULL);
		r->api.started = false;
	}
	if (r->api.quit_efd >= 0)
		close(r->api.quit_efd);
	r->api.quit_efd = -1;
	api_server_destroy(r->api.server); /* unlinks the socket, through the jail */
	r->api.server = NULL;
	if (r->api.fd >= 0) { /* claimed, never served */
		close(r->api.fd);
		jail_unlink(r->o.vm.api_sock);
	}
	r->api.fd = -1;
}

/* Prints the end of the guest console: why a VM that never became ready failed. */
static void console_tail(struct run *r)
{
	if (!r->console_mine)
		return;
	pthread_mutex_lock(&r->ring.lock);
	uint64_t total = r->ring.total;
	size_t n = total < CONSOLE_TAIL ? (size_t)total : CONSOLE_TAIL;
	char out[CONSOLE_TAIL];
	for (size_t i = 0; i < n; i++)
		out[i] = r->ring.buf[(total - n + i) % CONSOLE_TAIL];
	pthread_mutex_unlock(&r->ring.lock);
	if (!n)
		return;
	/* The guest's bytes, shown in padcell's own message: escaped (util.h text_escape), newlines
	 * kept.  A tail that begins inside a UTF-8 character starts after it. */
	size_t skip = 0;
	while (n == CONSOLE_TAIL && skip < 3 && skip < n && ((uint8_t)out[skip] & 0xc0) == 0x80)
		skip++;
	static char shown[4 * CONSOLE_TAIL + 4];
	size_t len = text_escape(shown, sizeof(shown), out + skip, n - skip, TEXT_MULTILINE);
	fprintf(stderr, "padcell: last %zu bytes of the guest console:\n", n);
	fwrite(shown, 1, len, stderr);
	if (!len || shown[len - 1] != '\n')
		fputc('\n', stderr);
}

/* A Unix listening socket at path (a stale socket file there is replaced). */
static int listen_unix(const char *path, char *err, size_t errlen)
{
	enum unix_step at;
	int fd = unix_listen(path, 4, 0, 0, &at);
	if (fd >= 0)
		return fd;
	if (at == UNIX_STEP_PATH)
		return errorf(err, errlen, fd, "socket path '%s' is too long", path);
	if (at == UNIX_STEP_SOCKET)
		return errorf(err, errlen, fd, "socket: %s", strerror(-fd));
	return errorf(err, errlen, fd, "cannot listen on %s: %s", path, strerror(-fd));
}

/* The private directory and the two socket paths: the VM's vsock socket and the ready socket. */
static int run_paths(struct run *r, char *err, size_t errlen)
{
	if (r->o.vm.vsock_path) {
		snprintf(r->vsock_path, sizeof(r->vsock_path), "%s", r->o.vm.vsock_path);
	} else {
		const char *base = getenv("XDG_RUNTIME_DIR");
		if (!base || !*base || access(base, W_OK) || strlen(base) > 40)
			base = "/tmp";
		snprintf(r->dir, sizeof(r->dir), "%s/padcell-run.XXXXXX", base);
		if (!mkdtemp(r->dir)) {
			int e = errno;
			r->dir[0] = '\0';
			return errorf(err, errlen, -e, "cannot make a private directory in %s: %s", base, strerror(e));
		}
		snprintf(r->vsock_path, sizeof(r->vsock_path), "%s/vsock", r->dir);
		r->o.vm.vsock_path = r->vsock_path;
		r->o.vm.vsock_cid = 3;
	}
	snprintf(r->ready_path, sizeof(r->ready_path), "%s_%u", r->vsock_path, AGENT_PORT);
	return 0;
}

/*
 * The names go as soon as nothing needs them by name: once the agent is connected, nobody connects
 * to the ready socket or (a private directory's) vsock socket again, and both listening sockets
 * stay usable without their names.  So a run killed by SIGKILL while its command runs leaves no
 * directory and no socket behind.  After confinement the paths are gone from this process's root:
 * the jail removes them through the directories it holds (jail_unlink, jail_rmdir), as at exit.  A
 * --vsock the user named is the user's, and stays until the end.
 */
static void run_unname(struct run *r)
{
	if (!r->named)
		return;
	r->named = false;
	if (r->ready_fd >= 0)
		jail_unlink(r->ready_path);
	if (r->dir[0]) {
		jail_unlink(r->vsock_path);
		r->l.vsock_path = NULL; /* launch_teardown: the name is gone already */
		jail_rmdir(r->dir);
		r->dir[0] = '\0';
	}
}

static void run_cleanup(struct run *r)
{
	jail_abort(); /* a run that never confined: the console thread waits at the jail's gate */
	if (r->ready_fd >= 0) {
		close(r->ready_fd);
		if (r->named)
			jail_unlink(r->ready_path);
		r->ready_fd = -1;
	}
	api_stop(r);
	if (r->vm) {
		vm_request_stop(r->vm, VM_STOP_POWEROFF, "the command finished");
		vm_kick_all(r->vm);
		vm_join(r->vm);
	}
	launch_teardown(&r->l);
	r->vm = NULL;
	if (r->dir[0]) {
		jail_unlink(r->vsock_path);
		jail_rmdir(r->dir);
		r->dir[0] = '\0';
	}
	if (r->console_mine)
		ring_stop(&r->ring, r->console_fd);
	r->console_mine = false;
}

/*
 * Waits until fd is readable; meanwhile a signal, the VM's end or the deadline (boot timeout)
 * end the wait with *code and err set.  0 when fd is readable.
 */
static int wait_event(struct run *r, int fd, double deadline, int *code, char *err, size_t errlen)
{
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = r->vm->stop_efd, .events = POLLIN },
			{ .fd = r->sig_fd, .events = POLLIN },
		};
		double left = deadline - now_ms();
		if (left <= 0) {
			*code = EXIT_RUN_FAILED;
			/* PVM runs only PVM-enabled guest kernels: a standard one hangs silently. */
			bool pvm = access("/sys/module/kvm_pvm", F_OK) == 0;
			return errorf(err, errlen, -ETIMEDOUT,
				      "the guest agent did not become ready within %u s (--boot-timeout); is %s in the image?%s",
				      r->o.boot_timeout, RUN_AGENT_INIT,
				      pvm ? " This host's /dev/kvm is PVM, where a standard Linux kernel cannot boot (see padcell check)"
					  : "");
		}
		int n = poll(p, 3, (int)left + 1); /* poll skips a negative fd: then only the other two count */
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*code = EXIT_RUN_FAILED;
			return errorf(err, errlen, -errno, "poll: %s", strerror(errno));
		}
		struct pollfd *sig = &p[2], *stop = &p[1];
		if (sig->revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(r->sig_fd, &si, sizeof(si)) == sizeof(si)) {
				*code = 128 + (int)si.ssi_signo;
				return errorf(err, errlen, -EINTR, "stopped by signal %u before the command ran", si.ssi_signo);
			}
		}
		if (stop->revents & POLLIN) {
			*code = EXIT_RUN_FAILED;
			return errorf(err, errlen, -EPIPE, "the VM stopped before its agent was ready: %s",
				      r->vm->stop_detail[0] ? r->vm->stop_detail : "no reason given");
		}
		if (fd >= 0 && p[0].revents)
			return 0;
	}
}

/* Waits (as wait_event does) for the agent's ready call; returns the connection, or < 0 with *code set. */
static int wait_ready(struct run *r, int *code, char *err, size_t errlen)
{
	double deadline = r->t_start + r->o.boot_timeout * 1e3;
	for (;;) {
		int rc = wait_event(r, r->ready_fd, deadline, code, err, errlen);
		if (rc)
			return rc;
		int c = accept4(r->ready_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c >= 0)
			return c;
	}
}

/*
 * The exit code for an agent call on c that failed with rc (err set): 128+N after stop signal N,
 * else 125 — when the VM stopped, with the reason added to err.
 */
static int run_conn_code(struct run *r, const struct agent_conn *c, int rc, char *err, size_t errlen)
{
	if (rc == -EINTR && c->signo > 0)
		return 128 + c->signo;
	if (vm_status(r->vm) != VM_RUNNING) {
		/* the client already says the VM stopped (its connection ended); the monitor knows why */
		const char *why = r->vm->stop_detail[0] ? r->vm->stop_detail : "no reason given";
		size_t n = strlen(err);
		snprintf(err + n, errlen - n, strstr(err, "VM stopped") ? ": %s" : " (the VM stopped: %s)", why);
	}
	return EXIT_RUN_FAILED;
}

/*
 * --from: the restored agent's listener, asked again until it answers or the boot timeout; a
 * signal or the VM's end stops the asking at once.  0 with c->fd set, or < 0 with *code set.
 */
static int connect_restored(struct run *r, struct agent_conn *c, int *code, char *err, size_t errlen)
{
	double deadline = r->t_start + r->o.boot_timeout * 1e3;
	for (;;) {
		int rc = agent_conn_open(c, r->vsock_path, AGENT_PORT, 1000, err, errlen);
		if (rc == 0)
			return 0;
		if (rc == -EINTR || rc == -ECONNABORTED || now_ms() >= deadline) {
			*code = run_conn_code(r, c, rc, err, errlen);
			return rc;
		}
	}
}

/* Pauses the VM, writes DIR/state and DIR/mem, resumes it. */
static int snapshot_to_dir(struct vm *vm, const char *dir, char *err, size_t errlen)
{
	int mrc = jail_mkdir(dir, 0755);
	if (mrc && mrc != -EEXIST)
		return errorf(err, errlen, mrc, "--snapshot-when-ready: cannot make %s: %s", dir, strerror(-mrc));
	char state[PATH_MAX], mem[PATH_MAX], why[256];
	if (snprintf(state, sizeof(state), "%s/state", dir) >= (int)sizeof(state) ||
	    snprintf(mem, sizeof(mem), "%s/mem", dir) >= (int)sizeof(mem))
		return errorf(err, errlen, -ENAMETOOLONG, "--snapshot-when-ready: path too long");
	if (vm_pause(vm, why, sizeof(why)))
		return errorf(err, errlen, -EIO, "cannot pause the VM for its snapshot: %s", why);
	int rc = snapshot_create(vm, state, mem, why, sizeof(why));
	char why2[256];
	int rc2 = vm_resume(vm, why2, sizeof(why2));
	if (rc)
		return errorf(err, errlen, rc, "snapshot to %s failed: %s", dir, why);
	if (rc2)
		return errorf(err, errlen, rc2, "cannot resume the VM after its snapshot: %s", why2);
	return 0;
}

/*
 * template build's setup: each command as `sh -c CMD` with the run's env, cwd, user and per-command
 * --timeout, its output streamed to ours.  The first uses the ready connection c (its HELLO read);
 * the agent ends a connection after EXIT, so each further one, and the final check that the agent
 * listens again (the snapshot comes next), connect anew.  A command that fails sets *code to its
 * exit code, says so in one line and leaves err empty; a connection failure sets err.
 */
static int run_setup(struct run *r, struct agent_conn *c, int *code, char *err, size_t errlen)
{
	err[0] = '\0';
	for (unsigned i = 0; i <= r->o.nsetup; i++) {
		int rc;
		if (i > 0) {
			struct agent_hello h;
			agent_conn_init(c, -1, r->sig_fd, r->vm->stop_efd);
			if ((rc = agent_conn_open(c, r->vsock_path, AGENT_PORT, AGENT_REPLY_MS, err, errlen)) ||
			    (rc = agent_conn_hello(c, now_ms() + AGENT_REPLY_MS, &h, err, errlen))) {
				if (c->fd >= 0)
					close(c->fd);
				c->fd = -1;
				*code = run_conn_code(r, c, rc, err, errlen);
				return rc;
			}
		}
		if (i == r->o.nsetup) {
			close(c->fd); /* the agent listens again: nothing of the setup is running */
			c->fd = -1;   /* run_main's later close(conn.fd) must not close a reused number */
			return 0;
		}
		const char *cmd = r->o.setup[i];
		char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)cmd, NULL };
		struct agent_exec_req req = { .argv = argv, .env = (char *const *)r->o.env, .cwd = r->o.cwd,
					      .user = r->o.user, .timeout_ms = r->o.timeout * 1000u, .stdin_fd = -1 };
		struct agent_exec_result res;
		fprintf(stderr, "padcell: template build: [%u/%u] %s\n", i + 1, r->o.nsetup, cmd);
		rc = agent_conn_exec(c, &req, STDOUT_FILENO, STDERR_FILENO, &res, err, errlen);
		close(c->fd);
		c->fd = -1;
		if (rc) {
			*code = run_conn_code(r, c, rc, err, errlen);
			return rc;
		}
		if (res.how == AGENT_EXITED && res.code == 0)
			continue;
		*code = agent_exit_code(res.how, res.code);
		char shown[200];
		text_escape(shown, sizeof(shown), cmd, strlen(cmd), 0); /* long ones end in "..." */
		fprintf(stderr, "padcell: template build: setup command %u (%s) %s %d; nothing was built\n", i + 1, shown,
			res.how == AGENT_EXITED ? "exited with code" : res.how == AGENT_SIGNALED ? "was killed by signal"
			: "timed out (--timeout), exit", res.how == AGENT_TIMEDOUT ? *code : res.code);
		return -ECANCELED;
	}
	return 0;
}

/* --from DIR: the VM is DIR/state + DIR/mem (copy-on-write), its vsock device on our path. */
static int run_restore(struct run *r, char *err, size_t errlen)
{
	char state[PATH_MAX], mem[PATH_MAX], why[256];
	if (snprintf(state, sizeof(state), "%s/state", r->o.from) >= (int)sizeof(state) ||
	    snprintf(mem, sizeof(mem), "%s/mem", r->o.from) >= (int)sizeof(mem)) {
		snprintf(err, errlen, "--from: path too long");
		return EXIT_USAGE;
	}
	struct launch *l = &r->l;
	launch_init(l);
	l->vsock_fd = vsock_listen(r->vsock_path, why, sizeof(why));
	if (l->vsock_fd < 0) {
		snprintf(err, errlen, "--vsock '%s': %s", r->vsock_path, why);
		return EXIT_USAGE;
	}
	l->vsock_path = r->vsock_path;
	int rc;
	/* The snapshot's NIC, if it has one, gets a fresh stack with the policy given now. */
	if (r->o.vm.net.net && (rc = launch_net(&r->o.vm.net, &l->net, err, errlen))) {
		launch_teardown(l);
		return rc;
	}
	struct vm_config cfg = { .console_out = r->console_fd, .verbose = r->o.vm.verbose,
				 .vsock_path = l->vsock_path, .vsock_listen_fd = l->vsock_fd,
				 .vsock_cid = r->o.vm.vsock_cid, .net = r->o.vm.net.net ? &l->net : NULL,
				 .drive_rates = r->o.vm.rates.any ? r->o.vm.rates.rate : NULL };
	rc = vm_restore(&l->vm, &cfg, state, mem, why, sizeof(why));
	if (rc) {
		snprintf(err, errlen, "cannot restore the snapshot in %s: %s", r->o.from, why);
		launch_teardown(l);
		return rc == -EINVAL ? EXIT_USAGE : EXIT_RUN_FAILED;
	}
	l->vm_made = true;
	return 0;
}

int ready_snap_listen(struct ready_snap *s, const char *vsock_path, const char *dir, char *err, size_t errlen)
{
	s->dir = dir;
	s->started = false;
	snprintf(s->ready_path, sizeof(s->ready_path), "%s_%u", vsock_path, AGENT_PORT);
	s->ready_fd = listen_unix(s->ready_path, err, errlen);
	return s->ready_fd < 0 ? s->ready_fd : 0;
}

/*
 * Waits for one ready call, then snapshots.  Nothing it waits for can hold it: the VM's end or
 * ready_snap_finish (quit_efd) end the accept, and the caller's HELLO must come within
 * AGENT_FRAME_MS, with quit_efd ending that wait too (a guest that connects and sends nothing,
 * or half a frame, cannot keep the join waiting).
 */
static void *ready_snap_thread(void *arg)
{
	struct ready_snap *s = arg;
	for (;;) {
		struct pollfd p[3] = { { .fd = s->ready_fd, .events = POLLIN }, { .fd = s->vm->stop_efd, .events = POLLIN },
				       { .fd = s->quit_efd, .events = POLLIN } };
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		if (p[1].revents || p[2].revents)
			return NULL;
		int c = accept4(s->ready_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c < 0)
			continue;
		char err[400];
		struct agent_hello h;
		struct agent_conn conn;
		agent_conn_init(&conn, c, -1, s->quit_efd);
		double t0 = now_ms();
		if (agent_conn_hello(&conn, t0 + AGENT_FRAME_MS, &h, err, sizeof(err)) ||
		    snapshot_to_dir(s->vm, s->dir, err, sizeof(err)))
			fprintf(stderr, "\r\npadcell: --snapshot-when-ready: %s\r\n", err);
		else
			fprintf(stderr, "\r\npadcell: the agent was ready %u ms after boot; snapshot written to %s in %.1f ms\r\n",
				h.ready_ms, s->dir, now_ms() - t0);
		close(c);
		return NULL;
	}
}

int ready_snap_start(struct ready_snap *s, struct vm *vm)
{
	s->vm = vm;
	s->quit_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->quit_efd < 0)
		return -errno;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VM_THREAD_STACK);
	int rc = pthread_create(&s->thread, &attr, ready_snap_thread, s);
	pthread_attr_destroy(&attr);
	s->started = rc == 0;
	if (rc)
		close(s->quit_efd);
	return -rc;
}

void ready_snap_finish(struct ready_snap *s)
{
	if (s->started) {
		uint64_t one = 1;
		if (write(s->quit_efd, &one, sizeof(one)) < 0) {
			/* cannot fail for a fresh eventfd */
		}
		pthread_join(s->thread, NULL);
		close(s->quit_efd);
	}
	s->started = false;
	if (s->ready_fd >= 0) {
		close(s->ready_fd);
		jail_unlink(s->ready_path);
	}
	s->ready_fd = -1;
}

static int run_main(struct run *r)
{
	char err[512];
	int code = EXIT_RUN_FAILED;
	r->t_start = now_ms();

	/* The guest console: its tail kept and shown only if the VM fails (all of it on stderr with --verbose). */
	if (r->o.vm.verbose) {
		r->console_fd = STDERR_FILENO;
	} else {
		int rc = ring_start(&r->ring, &r->console_fd);
		if (rc) {
			fprintf(stderr, "padcell: cannot keep the guest console: %s\n", strerror(-rc));
			return EXIT_RUN_FAILED;
		}
		r->console_mine = true;
	}
	if (run_paths(r, err, sizeof(err)))
		goto fail;
	r->named = true;
	r->ready_fd = listen_unix(r->ready_path, err, sizeof(err));
	if (r->ready_fd < 0)
		goto fail;
	/* What the VM touches after confinement: its socket directory (its own), its snapshots. */
	jail_allow_connect(r->vsock_path);
	jail_allow_path(r->o.snapshot_dir, true);
	if (r->dir[0]) {
		jail_allow_rmdir(r->dir);
		jail_own_path(r->dir);
		jail_own_path(r->vsock_path);
		jail_own_path(r->ready_path);
	}
	/* The control socket is claimed before the VM is built: a live or unusable PATH is the user's error. */
	if (r->o.vm.api_sock) {
		jail_allow_path(r->o.vm.api_sock, false); /* removed at exit */
		jail_own_path(r->o.vm.api_sock);
		char why[256];
		r->api.fd = api_listen(r->o.vm.api_sock, why, sizeof(why));
		if (r->api.fd < 0) {
			snprintf(err, sizeof(err), "--api-sock '%s': %s", r->o.vm.api_sock, why);
			code = EXIT_USAGE;
			goto fail_quiet_console;
		}
	}

	if (r->o.from) {
		code = run_restore(r, err, sizeof(err));
		if (code)
			goto fail_quiet_console;
	} else {
		code = launch_boot(&r->l, &r->o.vm, r->console_fd, err, sizeof(err));
		if (code) {
			code = code == EXIT_USAGE ? EXIT_USAGE : EXIT_RUN_FAILED;
			goto fail_quiet_console;
		}
	}
	r->vm = &r->l.vm;
	code = EXIT_RUN_FAILED;
	if (r->o.vm.api_sock && api_start(r, err, sizeof(err)))
		goto fail;
	/* Everything is open and the VM is built: confine, then run the guest. */
	if (cgroup_apply(r->vm->mem.size, r->vm->ncpus, r->o.snapshot_dir != NULL || r->api.server, err, sizeof(err)) ||
	    jail_confine(r->vm->mem.size, err, sizeof(err))) {
		snprintf(err + strlen(err), sizeof(err) - strlen(err), " (the jail could not confine the monitor)");
		goto fail;
	}
	int started = vm_start(r->vm);
	jail_control_narrow();
	if (started) {
		snprintf(err, sizeof(err), "cannot start the vCPUs: %s",
			 r->vm->stop_detail[0] ? r->vm->stop_detail : "thread creation failed");
		goto fail;
	}
	r->t_vm = now_ms();

	/* Every wait on the agent ends at a stop signal, or when the VM stops (its stop eventfd). */
	struct agent_conn conn;
	agent_conn_init(&conn, -1, r->sig_fd, r->vm->stop_efd);
	double boot_deadline = r->t_start + r->o.boot_timeout * 1e3;
	int rc;
	if (r->o.from) {
		/* A restored agent is already listening; its old connections were reset. */
		if (connect_restored(r, &conn, &code, err, sizeof(err)) < 0)
			goto fail;
	} else {
		conn.fd = wait_ready(r, &code, err, sizeof(err));
		if (conn.fd < 0)
			goto fail;
	}
	if (!r->o.nsetup)
		run_unname(r); /* setup commands connect again, by name */
	struct agent_hello hello;
	if (wait_event(r, conn.fd, boot_deadline, &code, err, sizeof(err)))
		goto fail_conn;
	if ((rc = agent_conn_hello(&conn, boot_deadline, &hello, err, sizeof(err))) ||
	    (r->o.from && (rc = agent_conn_sync(&conn, err, sizeof(err))))) {
		code = run_conn_code(r, &conn, rc, err, sizeof(err));
		goto fail_conn;
	}
	r->t_ready = now_ms();
	if (r->o.vm.verbose)
		fprintf(stderr, "padcell: agent ready %.1f ms after start (VM running at %.1f ms; in the guest %u ms after boot)\n",
			r->t_ready - r->t_start, r->t_vm - r->t_start, hello.ready_ms);

	if (r->o.nsetup) {
		rc = run_setup(r, &conn, &code, err, sizeof(err));
		run_unname(r);
		if (rc)
			goto fail_setup;
	}
	if (r->o.snapshot_dir) {
		double t0 = now_ms();
		if (snapshot_to_dir(r->vm, r->o.snapshot_dir, err, sizeof(err)))
			goto fail_conn;
		if (r->o.vm.verbose)
			fprintf(stderr, "padcell: snapshot written to %s in %.1f ms\n", r->o.snapshot_dir, now_ms() - t0);
	}
	if (!r->o.argv) {
		close(conn.fd);
		code = 0;
		goto out;
	}

	struct agent_exec_req req = {
		.argv = r->o.argv, .env = (char *const *)r->o.env, .cwd = r->o.cwd, .user = r->o.user,
		.timeout_ms = r->o.timeout * 1000u, .stdin_fd = r->o.no_stdin ? -1 : STDIN_FILENO,
	};
	struct agent_exec_result res;
	rc = agent_conn_exec(&conn, &req, STDOUT_FILENO, STDERR_FILENO, &res, err, sizeof(err));
	close(conn.fd);
	r->t_cmd = now_ms();
	if (rc) {
		code = run_conn_code(r, &conn, rc, err, sizeof(err));
		goto fail;
	}
	code = agent_exit_code(res.how, res.code);
	if (res.how == AGENT_TIMEDOUT)
		fprintf(stderr, "padcell: the command timed out after %u s and was killed with its process group\n",
			r->o.timeout);
	if (r->o.vm.verbose)
		fprintf(stderr, "padcell: command %.1f ms\n", r->t_cmd - r->t_ready);
out: {
	double t0 = now_ms();
	run_cleanup(r);
	if (r->o.vm.verbose)
		fprintf(stderr, "padcell: teardown %.1f ms, total %.1f ms\n", now_ms() - t0, now_ms() - r->t_start);
	return code;
}
fail_setup:
	if (!err[0]) { /* the command's own failure, said already: no console tail */
		run_cleanup(r);
		return code;
	}
	goto fail;
fail_conn:
	close(conn.fd);
fail:
	fprintf(stderr, "padcell: %s\n", err);
	if (code <= 128) /* a stop signal is not the guest's failure: its console is not shown */
		console_tail(r);
	run_cleanup(r);
	return code;
fail_quiet_console:
	fprintf(stderr, "padcell: %s\n", err);
	run_cleanup(r);
	return code;
}

/* The command (with template build's setup commands) with its state in *r (zeroed). */
static int run_in(struct run *r, int argc, char **argv, const char *const *setup, unsigned nsetup, char *err,
		  size_t errlen)
{
	r->ready_fd = -1;
	r->console_fd = -1;
	r->api.fd = r->api.quit_efd = -1;
	if (cli_parse_run(argc, argv, &r->o, err, errlen)) {
		fprintf(stderr, "padcell: %s\n", err);
		return EXIT_USAGE;
	}
	r->o.setup = setup;
	r->o.nsetup = nsetup;
	char kernel[PATH_MAX], rootfs[PATH_MAX], cmdline[LAYOUT_CMDLINE_MAX];
	int code = EXIT_USAGE;
	/*
	 * On PVM a standard Linux kernel spins in instruction emulation until --boot-timeout: say so
	 * now.  A restore (--from) is not a boot, and whatever runs there is the snapshot's business.
	 */
	if (!r->o.from && !r->o.allow_pvm && host_kvm_kind() == HOST_KVM_PVM) {
		fprintf(stderr, "padcell: this host's /dev/kvm is PVM (kvm_pvm, no VT-x/AMD-V), where a standard Linux "
				"kernel cannot boot; run on a host with hardware KVM, or see run work here in the nested tier "
				"with `make demo` (--allow-pvm boots anyway)\n");
		goto out;
	}
	if (!r->o.from) {
		if (!r->o.vm.kernel) {
			if (run_default_file("PADCELL_KERNEL", "vmlinuz", kernel, sizeof(kernel), err, errlen)) {
				fprintf(stderr, "padcell: %s\n", err);
				goto out;
			}
			r->o.vm.kernel = kernel;
		}
		if (!r->o.rootfs) {
			if (run_default_file("PADCELL_ROOTFS", "rootfs.ext4", rootfs, sizeof(rootfs), err, errlen)) {
				fprintf(stderr, "padcell: %s\n", err);
				goto out;
			}
			r->o.rootfs = rootfs;
		}
		/* The root image is the first disk, read-only; the user's --drive and --scratch follow. */
		if (strcmp(r->o.rootfs, "none")) {
			struct boot_opts *vm = &r->o.vm;
			if (vm->ndrives + (vm->scratch ? 1 : 0) + 2 > LAYOUT_VIRTIO_MAX) {
				fprintf(stderr, "padcell: too many drives for run: at most %u besides the root image and vsock\n",
					LAYOUT_VIRTIO_MAX - 2);
				goto out;
			}
			if (strlen(r->o.rootfs) >= PATH_MAX) {
				fprintf(stderr, "padcell: --rootfs path is too long\n");
				goto out;
			}
			memmove(&vm->drives[1], &vm->drives[0], vm->ndrives * sizeof(vm->drives[0]));
			vm->drives[0] = (struct drive_opt){ .path = r->o.rootfs, .id = "rootfs", .ro = true };
			vm->ndrives++;
		}
		/* The agent is init unless the user's command line names another-> */
		const char *user = strcmp(r->o.vm.cmdline, CLI_DEFAULT_CMDLINE) ? r->o.vm.cmdline : RUN_DEFAULT_CMDLINE;
		if (strstr(user, "init="))
			snprintf(cmdline, sizeof(cmdline), "%s", user);
		else if (snprintf(cmdline, sizeof(cmdline), "%s init=" RUN_AGENT_INIT, user) >= (int)sizeof(cmdline)) {
			fprintf(stderr, "padcell: --cmdline is too long\n");
			goto out;
		}
		r->o.vm.cmdline = cmdline;
	}
	r->o.vm.jail.host_net = r->o.vm.net.net;
	if (jail_prepare(&r->o.vm.jail, err, errlen)) {
		fprintf(stderr, "padcell: %s\n", err);
		goto out;
	}
	r->sig_fd = stop_signals_fd();
	if (r->sig_fd < 0) {
		fprintf(stderr, "padcell: signalfd: %s\n", strerror(-r->sig_fd));
		code = EXIT_RUN_FAILED;
		goto out;
	}
	code = run_main(r);
	close(r->sig_fd);
out:
	cli_opts_free(&r->o.vm);
	return code;
}

int run_with_setup(int argc, char **argv, const char *const *setup, unsigned nsetup)
{
	char err[512];
	/* ~55 KiB (the options, the VM, its disks): zero pages, resident only where written */
	struct run *rp = page_zalloc(sizeof(*rp));
	if (!rp) {
		fprintf(stderr, "padcell: out of memory\n");
		return EXIT_RUN_FAILED;
	}
	int code = run_in(rp, argc, argv, setup, nsetup, err, sizeof(err));
	page_free(rp, sizeof(*rp));
	return code;
}

int cmd_run(int argc, char **argv)
{
	return run_with_setup(argc, argv, NULL, 0);
}
