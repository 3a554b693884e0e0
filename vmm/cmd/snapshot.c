/*
 * `padcell snapshot --api-sock PATH --to DIR`: pause the VM, write DIR/state and DIR/mem through
 * its control socket, resume it.  `pause`, `resume`, `status` and `net-policy` are the same
 * socket's smaller verbs.
 */
#include "vmm/cmd/cmd.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/api/api_client.h"
#include "vmm/api/http.h"
#include "vmm/cmd/cli.h"

enum { OPT_API_SOCK = 256, OPT_TO, OPT_LEAVE_PAUSED, OPT_ALLOW, OPT_OPEN, OPT_DENY_ALL };

static int fail(int code, const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "padcell: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	return code;
}

/* Connecting and checking it is padcell: a missing, foreign or dead socket is the user's to fix. */
static int open_api(struct api_client *c, const char *path, struct api_info *info)
{
	char err[512];
	if (api_client_connect(c, path, err, sizeof(err)) || api_client_info(c, info, err, sizeof(err))) {
		api_client_close(c);
		return fail(EXIT_USAGE, "--api-sock: %s%s", err, "");
	}
	return 0;
}

/* mkdir -p.  *made: whether dir itself was created here (so a failure can take it away again). */
static int make_dirs(const char *dir, bool *made)
{
	char p[PATH_MAX];
	*made = false;
	if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0755) == 0)
		*made = true;
	else if (errno != EEXIST)
		return -errno;
	struct stat st;
	if (stat(p, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int cmd_snapshot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "to", required_argument, NULL, OPT_TO },
		{ "leave-paused", no_argument, NULL, OPT_LEAVE_PAUSED },
		{ 0 },
	};
	const char *sock = NULL, *to = NULL;
	bool leave_paused = false;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		switch (c) {
		case OPT_API_SOCK: sock = optarg; break;
		case OPT_TO: to = optarg; break;
		case OPT_LEAVE_PAUSED: leave_paused = true; break;
		case ':': return fail(EXIT_USAGE, "%s needs a value%s", argv[optind - 1], "");
		default: return fail(EXIT_USAGE, "unknown option '%s' (see padcell --help)%s", argv[optind - 1], "");
		}
	}
	if (optind < argc)
		return fail(EXIT_USAGE, "unexpected argument '%s' (see padcell --help)%s", argv[optind], "");
	if (!sock || !to || !to[0])
		return fail(EXIT_USAGE, "usage: padcell snapshot --api-sock PATH --to DIR [--leave-paused]%s%s", "", "");

	struct api_client cl;
	struct api_info info;
	int rc = open_api(&cl, sock, &info);
	if (rc)
		return rc;
	char err[1024], abs[PATH_MAX], state_path[PATH_MAX + 8], mem_path[PATH_MAX + 8];
	bool made = false;
	int e = make_dirs(to, &made);
	if (e) {
		api_client_close(&cl);
		return fail(EXIT_USAGE, "--to '%s': cannot create the directory: %s", to, strerror(-e));
	}
	/*
	 * A jailed monitor started as root runs as another uid (--uid, --uid-range) and owns its API
	 * socket: a directory made here for its files is handed to that uid, so it can write them.
	 */
	struct stat sst;
	if (made && geteuid() == 0 && stat(sock, &sst) == 0 && sst.st_uid != 0 && chown(to, sst.st_uid, sst.st_gid) < 0) {
		rc = fail(EXIT_HOST_ERROR, "--to '%s': cannot hand it to the VM's uid: %s", to, strerror(errno));
		goto out;
	}
	/* The VM resolves paths from its own working directory: send absolute ones. */
	if (!realpath(to, abs)) {
		rc = fail(EXIT_USAGE, "--to '%s': %s", to, strerror(errno));
		goto out;
	}
	snprintf(state_path, sizeof(state_path), "%s/state", abs);
	snprintf(mem_path, sizeof(mem_path), "%s/mem", abs);

	bool was_paused = !strcmp(info.state, "Paused");
	if (!was_paused && api_client_set_paused(&cl, true, err, sizeof(err))) {
		rc = fail(EXIT_HOST_ERROR, "cannot pause the VM: %s%s", err, "");
		goto out;
	}
	if (api_client_snapshot(&cl, state_path, mem_path, err, sizeof(err))) {
		/* The VM goes back to how it was; one line says both (a killed monitor fails both). */
		char rerr[512];
		if (!was_paused && api_client_set_paused(&cl, false, rerr, sizeof(rerr)))
			rc = fail(EXIT_HOST_ERROR, "snapshot failed: %s; and the VM could not be resumed: %s", err, rerr);
		else
			rc = fail(EXIT_HOST_ERROR, "snapshot failed: %s%s", err, "");
		goto out;
	}
	made = false; /* the directory holds the snapshot now */
	if (!was_paused && !leave_paused && api_client_set_paused(&cl, false, err, sizeof(err))) {
		rc = fail(EXIT_HOST_ERROR, "the snapshot is in %s, but the VM could not be resumed: %s", abs, err);
		goto out;
	}
out:
	if (made)
		rmdir(to);
	api_client_close(&cl);
	return rc;
}

int cmd_pause_resume(int argc, char **argv)
{
	static const struct option opts[] = { { "api-sock", required_argument, NULL, OPT_API_SOCK }, { 0 } };
	const char *verb = argv[0], *sock = NULL;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		if (c == OPT_API_SOCK)
			sock = optarg;
		else if (c == ':')
			return fail(EXIT_USAGE, "%s needs a value%s", argv[optind - 1], "");
		else
			return fail(EXIT_USAGE, "unknown option '%s' (see padcell --help)%s", argv[optind - 1], "");
	}
	if (optind < argc)
		return fail(EXIT_USAGE, "unexpected argument '%s' (see padcell --help)%s", argv[optind], "");
	if (!sock)
		return fail(EXIT_USAGE, "usage: padcell %s --api-sock PATH%s", verb, "");
	struct api_client cl;
	struct api_info info;
	int rc = open_api(&cl, sock, &info);
	if (rc)
		return rc;
	char err[1024];
	if (!strcmp(verb, "status")) {
		printf("%s\n", info.state);
	} else {
		bool pause = !strcmp(verb, "pause");
		if (api_client_set_paused(&cl, pause, err, sizeof(err)))
			rc = fail(EXIT_HOST_ERROR, "cannot %s the VM: %s", verb, err);
	}
	api_client_close(&cl);
	return rc;
}

/*
 * `padcell net-policy --api-sock PATH [--allow RULE]... [--open] [--deny-all]`: replaces the NIC's
 * egress rules (all or nothing); with none of those, prints the rules and counters (GET's JSON).
 */
int cmd_net_policy(int argc, char **argv)
{
	static const struct option opts[] = { { "api-sock", required_argument, NULL, OPT_API_SOCK },
					      { "allow", required_argument, NULL, OPT_ALLOW },
					      { "open", no_argument, NULL, OPT_OPEN },
					      { "allow-internet", no_argument, NULL, OPT_OPEN },
					      { "deny-all", no_argument, NULL, OPT_DENY_ALL },
					      { 0 } };
	const char *sock = NULL;
	const char **rules = calloc((size_t)argc + 1, sizeof(*rules)); /* no more rules than arguments */
	if (!rules)
		return fail(EXIT_HOST_ERROR, "out of memory%s%s", "", "");
	size_t n = 0;
	bool open = false, deny_all = false;
	int rc = 0;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		if (c == OPT_API_SOCK)
			sock = optarg;
		else if (c == OPT_ALLOW)
			rules[n++] = optarg;
		else if (c == OPT_OPEN)
			open = true;
		else if (c == OPT_DENY_ALL)
			deny_all = true;
		else if (c == ':') {
			rc = fail(EXIT_USAGE, "%s needs a value%s", argv[optind - 1], "");
			goto out;
		} else {
			rc = fail(EXIT_USAGE, "unknown option '%s' (see padcell --help)%s", argv[optind - 1], "");
			goto out;
		}
	}
	if (optind < argc) {
		rc = fail(EXIT_USAGE, "unexpected argument '%s' (see padcell --help)%s", argv[optind], "");
		goto out;
	}
	if (!sock) {
		rc = fail(EXIT_USAGE, "usage: padcell net-policy --api-sock PATH [--allow RULE]... [--open] [--deny-all]%s%s",
			  "", "");
		goto out;
	}
	if (deny_all && (n || open)) {
		rc = fail(EXIT_USAGE, "--deny-all replaces every rule with none: it cannot be given with --allow or --open%s%s",
			  "", "");
		goto out;
	}
	struct api_client cl;
	struct api_info info;
	rc = open_api(&cl, sock, &info);
	if (rc)
		goto out;
	char err[1024];
	if (n || open || deny_all) {
		if (api_client_set_policy(&cl, rules, n, open, err, sizeof(err)))
			rc = fail(EXIT_USAGE, "cannot change the network policy: %s%s", err, "");
	} else {
		char *body = malloc(HTTP_BODY_MAX + 1);
		if (!body)
			rc = fail(EXIT_HOST_ERROR, "out of memory%s%s", "", "");
		else if (api_client_get_policy(&cl, body, HTTP_BODY_MAX + 1, err, sizeof(err)))
			rc = fail(EXIT_USAGE, "cannot read the network policy: %s%s", err, "");
		else
			printf("%s\n", body);
		free(body);
	}
	api_client_close(&cl);
out:
	free(rules);
	return rc;
}
