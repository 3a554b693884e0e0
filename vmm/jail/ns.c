/*
 * Namespaces: the monitor leaves the host's mounts, network, IPC and hostname behind (rootless:
 * inside a user namespace), and at confinement pivots into an empty tmpfs of its own.
 */
#include "vmm/jail/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/util.h"

/*
 * The network namespace is the dear one (~0.3 ms of kernel work to make, measured on our
 * hosts, against ~0.06 ms for mount, IPC and UTS together), so a helper thread makes it while
 * the command opens its files and builds the VM: unshare(CLONE_NEWNET) moves only the calling
 * thread, which keeps the namespace alive as an fd; jail_ns_net_join() then moves each thread into it.
 */
static struct {
	pthread_t thread;
	bool started;
	int fd;  /* the new namespace, or -errno */
} NET = { .fd = -1 };

static void *net_maker(void *arg)
{
	(void)arg;
	if (unshare(CLONE_NEWNET) < 0)
		NET.fd = -errno;
	else if ((NET.fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
		NET.fd = -errno;
	return NULL;
}

/*
 * Unshares mount, IPC and UTS namespaces and starts making the network one; not root, it first
 * makes a user namespace that maps only the caller's own uid and gid (the same numbers inside),
 * which must happen while the process is single-threaded.  Without a NIC the VM never needs the
 * host's network: a fresh, empty network namespace.  With one (host_net), the NIC's user-mode
 * stack makes its host sockets in this process, so the host's network namespace stays.  Mounts
 * become private to this namespace (nothing the jail mounts reaches the host).  No PID namespace:
 * see README "The jail".  Returns 0, or -errno with what set to the step that failed.
 */
int jail_ns_enter(bool root, bool host_net, char *what, size_t whatlen)
{
	if (!root) {
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
		if (rc) {
			snprintf(what, whatlen, "user namespace id maps");
			return rc;
		}
	}
	if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) < 0) {
		snprintf(what, whatlen, "mount, IPC and UTS namespaces");
		return -errno;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		snprintf(what, whatlen, "private mounts");
		return -errno;
	}
	sethostname("padcell", 7);
	if (!host_net) {
		pthread_attr_t attr; /* a shallow thread: a small stack, not glibc's 8 MiB default */
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 256u << 10); /* as device threads: room for the static TLS */
		int rc = pthread_create(&NET.thread, &attr, net_maker, NULL);
		pthread_attr_destroy(&attr);
		if (rc) {
			snprintf(what, whatlen, "network namespace thread");
			return -rc;
		}
		NET.started = true;
	}
	return 0;
}

int jail_ns_net_wait(void)
{
	if (NET.started) {
		pthread_join(NET.thread, NULL);
		NET.started = false;
	}
	return NET.fd;
}

int jail_ns_net_join(void)
{
	if (NET.fd < 0)
		return NET.fd == -1 ? 0 : NET.fd;
	return setns(NET.fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

void jail_ns_net_done(void)
{
	if (NET.fd >= 0)
		close(NET.fd);
	NET.fd = -1;
}

/*
 * The empty root: a tmpfs mounted over mountpoint (an existing directory: the mount lives in this
 * process's private mount namespace only, so the host never sees it and it vanishes with the
 * process, however it ends), pivot_root into it, the old root detached, the new one made
 * read-only.  Every thread's root and working directory follow (they share the fs_struct).
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
