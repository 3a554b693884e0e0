/* cgroup v2: only looked at, never written (our build machines' cgroups are v1 and not ours). */
#include "vmm/jail/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

/*
 * Is this process in a cgroup v2 hierarchy that it may make a leaf in?  "0::PATH" in
 * /proc/self/cgroup names the v2 cgroup; it is usable when /sys/fs/cgroup is cgroup2 (not v1
 * with an empty v2 beside it) and PATH's directory and its cgroup.subtree_control are writable
 * by this user (delegated).  Reads only.
 */
void jail_cgroup_probe(struct jail_support *s)
{
	s->cgroup2 = s->cgroup2_delegated = false;
	struct statfs fs;
	if (statfs("/sys/fs/cgroup", &fs) < 0 || fs.f_type != CGROUP2_SUPER_MAGIC) {
		snprintf(s->cgroup_detail, sizeof(s->cgroup_detail),
			 "/sys/fs/cgroup is not cgroup2 (v1 or hybrid): padcell sets no limits and leaves v1 alone");
		return;
	}
	s->cgroup2 = true;
	FILE *f = fopen("/proc/self/cgroup", "r");
	char line[512], path[600] = "";
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, sizeof(path), "/sys/fs/cgroup%s", line + 3);
		}
	if (f)
		fclose(f);
	char ctl[700];
	snprintf(ctl, sizeof(ctl), "%s/cgroup.subtree_control", path);
	if (path[0] && access(path, W_OK) == 0 && access(ctl, W_OK) == 0) {
		s->cgroup2_delegated = true;
		snprintf(s->cgroup_detail, sizeof(s->cgroup_detail), "%s is writable", path);
	} else {
		snprintf(s->cgroup_detail, sizeof(s->cgroup_detail), "cgroup2 mounted, but %s is not delegated to this user",
			 path[0] ? path : "this process's cgroup");
	}
}
