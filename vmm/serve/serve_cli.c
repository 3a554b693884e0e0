/* `padcell serve`'s command-line values: the listen address and the templates (a snapshot's header read). */
#include "vmm/serve/serve_cli.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/snapshot_fmt.h"

int serve_parse_listen(const char *s, struct sockaddr_in *out)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || colon - s >= INET_ADDRSTRLEN)
		return -EINVAL;
	char host[INET_ADDRSTRLEN];
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port > 65535 || colon[1] == '-' || colon[1] == '+')
		return -EINVAL;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return -EINVAL;
	*out = a;
	return 0;
}

bool serve_name_valid(const char *s, size_t n)
{
	if (n == 0 || n >= SERVE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

void serve_default_state_dir(char *out, size_t len)
{
	/* per user, under the runtime directory: sandboxes do not outlive a reboot */
	const char *rt = getenv("XDG_RUNTIME_DIR");
	if (geteuid() == 0)
		snprintf(out, len, "/run/padcell-serve");
	else if (rt && *rt == '/' && strlen(rt) < 40)
		snprintf(out, len, "%s/padcell-serve", rt);
	else
		snprintf(out, len, "/tmp/padcell-serve-%u", (unsigned)geteuid());
}

static int name_sort(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int serve_templates_scan(const char *dir, struct serve_template *t, size_t *n, size_t max,
			 void (*skip)(void *arg, const char *line), void *arg, char *why, size_t whylen)
{
	struct dirent **ents;
	int k = scandir(dir, &ents, NULL, name_sort);
	if (k < 0)
		return errno == ENOENT ? -ENOENT : errorf(why, whylen, -errno, "--templates %s: %s", dir, strerror(errno));
	int rc = 0;
	size_t given = *n;
	for (int i = 0; i < k; i++) {
		const char *name = ents[i]->d_name;
		if (rc || name[0] == '.')
			continue;
		bool dup = false;
		for (size_t j = 0; j < given; j++)
			dup |= !strcmp(t[j].name, name);
		if (dup)
			continue;
		char line[PATH_MAX + 300];
		if (!serve_name_valid(name, strlen(name))) {
			snprintf(line, sizeof(line), "%s/%.200s: not a template name (letters, digits, '.', '_', '-')", dir, name);
			skip(arg, line);
			continue;
		}
		if (*n == max) {
			rc = errorf(why, whylen, -E2BIG, "--templates %s: more than %zu templates", dir, max);
			continue;
		}
		char spec[PATH_MAX + SERVE_NAME_MAX + 2];
		if (snprintf(spec, sizeof(spec), "%s=%s/%s", name, dir, name) >= (int)sizeof(spec)) {
			rc = errorf(why, whylen, -ENAMETOOLONG, "--templates %s: path too long", dir);
			continue;
		}
		if (serve_template_parse(spec, &t[*n], line, sizeof(line)))
			skip(arg, line);
		else
			(*n)++;
	}
	for (int i = 0; i < k; i++)
		free(ents[i]);
	free(ents);
	return rc;
}

int serve_template_parse(const char *s, struct serve_template *t, char *why, size_t whylen)
{
	memset(t, 0, sizeof(*t));
	const char *eq = strchr(s, '=');
	if (!eq || eq == s || !eq[1])
		return errorf(why, whylen, -EINVAL, "--template '%s': expected NAME=SNAPSHOT_DIR", s);
	size_t n = (size_t)(eq - s);
	if (n >= sizeof(t->name))
		return errorf(why, whylen, -EINVAL, "--template '%s': the name is over %zu characters", s, sizeof(t->name) - 1);
	if (!serve_name_valid(s, n))
		return errorf(why, whylen, -EINVAL, "--template '%s': a name has letters, digits, '.', '_' and '-' only", s);
	memcpy(t->name, s, n);
	/* the child restores DIR, whatever its working directory: an absolute path */
	if (!realpath(eq + 1, t->dir))
		return errorf(why, whylen, -errno, "--template %s: %s: %s", t->name, eq + 1, strerror(errno));
	char state[PATH_MAX + 8], mem[PATH_MAX + 8];
	snprintf(state, sizeof(state), "%s/state", t->dir);
	snprintf(mem, sizeof(mem), "%s/mem", t->dir);
	int fd = open(state, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errorf(why, whylen, -errno, "--template %s: cannot read %s: %s (a snapshot directory holds state "
			      "and mem)", t->name, state, strerror(errno));
	struct snap_header h;
	ssize_t got = read(fd, &h, sizeof(h));
	close(fd);
	if (got != (ssize_t)sizeof(h) || memcmp(h.magic, SNAP_MAGIC, sizeof(h.magic)))
		return errorf(why, whylen, -EINVAL, "--template %s: %s is not a padcell snapshot state file", t->name, state);
	if (h.version != SNAP_VERSION)
		return errorf(why, whylen, -EINVAL, "--template %s: %s is format version %u, this padcell restores %u",
			      t->name, state, h.version, SNAP_VERSION);
	if (h.mem_size == 0 || h.ncpus == 0 || h.ncpus > 255)
		return errorf(why, whylen, -EINVAL, "--template %s: %s has a malformed header", t->name, state);
	struct stat st;
	if (stat(mem, &st))
		return errorf(why, whylen, -errno, "--template %s: cannot read %s: %s", t->name, mem, strerror(errno));
	t->mem_bytes = h.mem_size;
	t->cpus = h.ncpus;
	return 0;
}
