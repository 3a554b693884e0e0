/*
 * Namespaces: the monitor leaves the host's mounts, network, IPC and hostname behind (rootless:
 * inside a user namespace), and at confinement enters an empty tmpfs root of its own (its PID
 * namespace: vmm/jail/pidns.c).
 */
#include "vmm/jail/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/util.h"

/*
 * Making namespaces is the dear part of the jail: the network namespace takes ~0.3 ms of kernel
 * work, detaching the host's mount tree from the empty root waits for an RCU grace period
 * (0.06 ms idle, several ms on a busy host), IPC and UTS take 0.06 ms (all measured on our
 * hosts).  So a helper thread makes them all while the command opens its files and builds the
 * VM: IPC and UTS namespaces are simply unshared, with CLONE_NEWNS (which
 * implies CLONE_FS: its root and working directory are its own) it copies the mount tree,
 * pivots that copy into the empty root and detaches the rest, and with CLONE_NEWNET it makes
 * the empty network namespace; it keeps each alive as an fd and ends.  The other threads go on
 * in the host's namespaces until jail_confine, where each of them enters these (jail_ns_join,
 * jail_ns_net_join): setns into a mount namespace lands on its root, the empty tmpfs.
 */
static struct {
	pthread_t thread;
	bool started;
	bool net;          /* make a network namespace too */
	int net_fd;        /* the new network namespace, or -errno */
	int ipc_fd, uts_fd; /* the new IPC and UTS namespaces (the hostname "padcell"), or -errno */
	int mnt_fd;        /* the new mount namespace, or -errno */
	int pivot_rc;      /* 0 when the mount namespace's root is the empty tmpfs, or -errno ... */
	char what[96];     /* ... with the step that failed */
} NS = { .net_fd = -1, .ipc_fd = -1, .uts_fd = -1, .mnt_fd = -1 };

static int ns_fd(const char *name)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/thread-self/ns/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static void *ns_maker(void *arg)
{
	(void)arg;
	if (unshare(CLONE_NEWIPC | CLONE_NEWUTS) == 0) {
		sethostname("padcell", 7);
		NS.ipc_fd = ns_fd("ipc");
		NS.uts_fd = ns_fd("uts");
	} else {
		NS.ipc_fd = NS.uts_fd = -errno;
	}
	if (NS.net)
		NS.net_fd = unshare(CLONE_NEWNET) < 0 ? -errno : ns_fd("net");
	/*
	 * Mounts become private to the new namespace first, so nothing mounted or unmounted in it
	 * reaches the host's (as root no user namespace turns shared mounts into slaves for us).
	 */
	if (unshare(CLONE_NEWNS) < 0) {
		NS.mnt_fd = -errno;
		snprintf(NS.what, sizeof(NS.what), "mount namespace");
	} else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		NS.mnt_fd = -errno;
		snprintf(NS.what, sizeof(NS.what), "private mounts");
	} else if ((NS.mnt_fd = ns_fd("mnt")) >= 0) {
		/* the namespace is the process's to join even when its root could not be swapped */
		struct stat st;
		const char *mountpoint = stat("/tmp", &st) == 0 && S_ISDIR(st.st_mode) ? "/tmp" : "/dev";
		NS.pivot_rc = jail_ns_pivot(mountpoint, NS.what, sizeof(NS.what));
	} else {
		snprintf(NS.what, sizeof(NS.what), "open the mount namespace");
	}
	return NULL;
}

/*
 * Not root: a user namespace that maps only the caller's own uid and gid (the same numbers
 * inside), which must happen while the process is single-threaded (the PID namespace and the
 * helper's namespaces then belong to it).  Returns 0, or -errno with what set to the step that
 * failed.
 */
int jail_ns_user(char *what, size_t whatlen)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(CLONE_NEWUSER) < 0) {
		snprintf(what, whatlen, "user namespace");
		return -errno;
	}
	char map[64];
	int rc = write_text_at(AT_FDCWD, "/proc/self/setgroups", "deny", 0);
	snprintf(map, sizeof(map), "%u %u 1", (unsigned)uid, (unsigned)uid);
	if (!rc)
		rc = write_text_at(AT_FDCWD, "/proc/self/uid_map", map, 0);
	snprintf(map, sizeof(map), "%u %u 1", (unsigned)gid, (unsigned)gid);
	if (!rc)
		rc = write_text_at(AT_FDCWD, "/proc/self/gid_map", map, 0);
	if (rc)
		snprintf(what, whatlen, "user namespace id maps");
	return rc;
}

/*
 * Starts the helper above.  Without a NIC the VM never needs the host's network: a fresh, empty
 * network namespace.  With one (host_net), the NIC's user-mode stack makes its host sockets in
 * this process, so the host's network namespace stays.  (The PID namespace is made before, by
 * forking: vmm/jail/pidns.c.)  Returns 0, or -errno with what set to the step that failed.
 */
int jail_ns_enter(bool host_net, char *what, size_t whatlen)
{
	NS.net = !host_net;
	pthread_attr_t attr; /* a shallow thread: a small stack, not glibc's 8 MiB default */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256u << 10); /* as device threads: room for the static TLS */
	int rc = pthread_create(&NS.thread, &attr, ns_maker, NULL);
	pthread_attr_destroy(&attr);
	if (rc) {
		snprintf(what, whatlen, "namespace thread");
		return -rc;
	}
	NS.started = true;
	return 0;
}

int jail_ns_wait(char *what, size_t whatlen)
{
	if (NS.started) {
		pthread_join(NS.thread, NULL);
		NS.started = false;
	}
	if (NS.ipc_fd < 0 || NS.uts_fd < 0) {
		snprintf(what, whatlen, "IPC and UTS namespaces");
		return NS.ipc_fd < 0 ? NS.ipc_fd : NS.uts_fd;
	}
	snprintf(what, whatlen, "%s", NS.what);
	return NS.mnt_fd < 0 ? NS.mnt_fd : NS.pivot_rc;
}

int jail_ns_net_status(void)
{
	return NS.net_fd < 0 ? NS.net_fd : 0;
}

int jail_ns_net_join(void)
{
	if (NS.net_fd < 0)
		return NS.net_fd == -1 ? 0 : NS.net_fd;
	return setns(NS.net_fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

int jail_ns_join(int cwd_fd)
{
	if (NS.ipc_fd < 0 || NS.uts_fd < 0)
		return NS.ipc_fd < 0 ? NS.ipc_fd : NS.uts_fd;
	if (setns(NS.ipc_fd, CLONE_NEWIPC) < 0 || setns(NS.uts_fd, CLONE_NEWUTS) < 0)
		return -errno;
	if (NS.mnt_fd < 0)
		return NS.mnt_fd;
	/* setns into a mount namespace needs a root and working directory of this thread's own */
	if (unshare(CLONE_FS) < 0 || setns(NS.mnt_fd, CLONE_NEWNS) < 0)
		return -errno;
	return cwd_fd >= 0 && fchdir(cwd_fd) < 0 ? -errno : 0;
}

void jail_ns_done(void)
{
	int *fds[] = { &NS.net_fd, &NS.ipc_fd, &NS.uts_fd, &NS.mnt_fd };
	for (unsigned i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

/*
 * The empty root: a tmpfs mounted over mountpoint (an existing directory: the mount lives in this
 * process's private mount namespace only, so the host never sees it and it vanishes with the
 * process, however it ends), pivot_root into it, the old root detached, the new one made
 * read-only.  Called by the helper thread above, in its own mount namespace and fs_struct.
 */
int jail_ns_pivot(const char *mountpoint, char *what, size_t whatlen)
{
	if (mount("padcell-jail", mountpoint, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,nr_inodes=1,mode=0555") < 0) {
		snprintf(what, whatlen, "mount the jail's tmpfs on %s", mountpoint);
		return -errno;
	}
	if (chdir(mountpoint) < 0) {
		int e = errno;
		umount2(mountpoint, MNT_DETACH);
		snprintf(what, whatlen, "enter the jail's tmpfs");
		return -e;
	}
	if (syscall(SYS_pivot_root, ".", ".") == 0) {
		/* pivot_root(".", ".") stacks the old root on the new one: detach it, and the jail is all there is */
		if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0) {
			snprintf(what, whatlen, "detach the host's root");
			return -errno;
		}
	} else if (errno == EINVAL) {
		/* the root is the initramfs (the nested tier's L1 host), which cannot be pivoted away:
		 * move the tmpfs over it and chroot, as switch_root does */
		if (mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0) {
			snprintf(what, whatlen, "move the jail over the initramfs");
			return -errno;
		}
	} else {
		int e = errno;
		umount2(mountpoint, MNT_DETACH);
		snprintf(what, whatlen, "pivot_root");
		return -e;
	}
	mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	return 0;
}
