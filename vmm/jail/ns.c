/* Namespaces: the monitor leaves the host's network, IPC and hostname behind (rootless: inside a user namespace). */
#include "vmm/jail/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int rc = n == (ssize_t)strlen(text) ? 0 : n < 0 ? -errno : -EIO;
	close(fd);
	return rc;
}

/*
 * Unshares network, IPC and UTS namespaces; not root, it first makes a user namespace that maps
 * only the caller's own uid and gid (the same numbers inside), which must happen while the
 * process is single-threaded.  Without a NIC the VM never needs the host's network: a fresh,
 * empty network namespace.  With one (host_net), the NIC's user-mode stack makes its host
 * sockets in this process, so the host's network namespace stays.  The mount namespace and a PID namespace
 * are not used (see README "The jail").  Returns 0, or -errno with what set to the step that failed.
 */
int jail_ns_enter(bool root, bool host_net, char *what, size_t whatlen)
{
	int flags = (host_net ? 0 : CLONE_NEWNET) | CLONE_NEWIPC | CLONE_NEWUTS;
	if (!root) {
		uid_t uid = getuid();
		gid_t gid = getgid();
		if (unshare(CLONE_NEWUSER) < 0) {
			snprintf(what, whatlen, "user namespace");
			return -errno;
		}
		char map[64];
		int rc = write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "%u %u 1", (unsigned)uid, (unsigned)uid);
		if (!rc)
			rc = write_file("/proc/self/uid_map", map);
		snprintf(map, sizeof(map), "%u %u 1", (unsigned)gid, (unsigned)gid);
		if (!rc)
			rc = write_file("/proc/self/gid_map", map);
		if (rc) {
			snprintf(what, whatlen, "user namespace id maps");
			return rc;
		}
	}
	if (unshare(flags) < 0) {
		snprintf(what, whatlen, "network, IPC and UTS namespaces");
		return -errno;
	}
	sethostname("padcell", 7);
	return 0;
}
