/* `padcell restore --from DIR`: a VM brought back from a snapshot, run like `boot` runs one. */
#include "vmm/cmd/cmd.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm/api/api.h"
#include "vmm/cmd/cli.h"
#include "vmm/jail/jail.h"
#include "vmm/launch.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

enum { OPT_FROM = 256, OPT_STATE, OPT_MEM, OPT_VSOCK, OPT_API_SOCK, OPT_VERBOSE, OPT_DRIVE };


struct restore_opts {
	const char *from, *state, *mem, *vsock, *api_sock;
	bool verbose;
	struct jail_opts jail;
	const char *drives[LAYOUT_VIRTIO_MAX]; /* --drive N=PATH: the user's file for the snapshot's drive N */
	bool any_drive;
	struct drive_rates rates; /* --drive-rate N=SPEC: the snapshot's disk N's limit */
	struct net_opts net; /* the snapshot's NIC gets a fresh stack with this policy (none given: deny all) */
};

static int usage_error(const char *fmt, const char *a)
{
	fprintf(stderr, "padcell: ");
	fprintf(stderr, fmt, a);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

static int parse(int argc, char **argv, struct restore_opts *o)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, OPT_FROM },
		{ "state", required_argument, NULL, OPT_STATE },
		{ "mem", required_argument, NULL, OPT_MEM },
		{ "vsock", required_argument, NULL, OPT_VSOCK },
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "verbose", no_argument, NULL, OPT_VERBOSE },
		JAIL_LONG_OPTS,
		{ "drive", required_argument, NULL, OPT_DRIVE },
		{ "drive-rate", required_argument, NULL, CLI_OPT_DRIVE_RATE },
		CLI_NET_LONG_OPTS,
		{ 0 },
	};
	*o = (struct restore_opts){ 0 };
	jail_opts_init(&o->jail);
	char jerr[160];
	int jrc;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		if (jail_opt_parse(&o->jail, c, optarg, &jrc, jerr, sizeof(jerr))) {
			if (jrc)
				return usage_error("restore: %s", jerr);
			continue;
		}
		char why[512];
		int rc = cli_parse_net_opt(c, optarg, &o->net, why, sizeof(why));
		if (rc < 0)
			return usage_error("restore: %s", why);
		if (rc == 0)
			continue;
		switch (c) {
		case OPT_FROM: o->from = optarg; break;
		case OPT_STATE: o->state = optarg; break;
		case OPT_MEM: o->mem = optarg; break;
		case OPT_VSOCK: o->vsock = optarg; break;
		case OPT_API_SOCK: o->api_sock = optarg; break;
		case OPT_VERBOSE: o->verbose = true; break;
		case CLI_OPT_DRIVE_RATE:
			if (cli_parse_drive_rate(optarg, &o->rates, why, sizeof(why)))
				return usage_error("restore: %s", why);
			break;
		case OPT_DRIVE: {
			char *end;
			unsigned long n = strtoul(optarg, &end, 10);
			if (end == optarg || *end != '=' || !end[1] || optarg[0] < '0' || optarg[0] > '9')
				return usage_error("restore: --drive '%s': expected N=PATH (the snapshot's disk N, from 0)", optarg);
			if (n >= LAYOUT_VIRTIO_MAX)
				return usage_error("restore: --drive '%s': a VM has at most 8 disks (0 to 7)", optarg);
			if (o->drives[n])
				return usage_error("restore: --drive '%s': that disk is named twice", optarg);
			o->drives[n] = end + 1;
			o->any_drive = true;
			break;
		}
		case ':': return usage_error("restore: %s needs a value", argv[optind - 1]);
		default: return usage_error("restore: unknown option '%s' (see padcell --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("restore: unexpected argument '%s'", argv[optind]);
	if (!o->from && !(o->state && o->mem))
		return usage_error("restore: give --from DIR (with DIR/state and DIR/mem), or --state FILE and --mem FILE%s", "");
	if (o->from && (o->state || o->mem))
		return usage_error("restore: --from DIR names both files; leave out --state and --mem%s", "");
	if (o->vsock && strchr(o->vsock, ','))
		return usage_error("restore: --vsock takes only a PATH; the guest keeps the snapshot's CID (%s)", o->vsock);
	if (o->vsock && strlen(o->vsock) > VSOCK_PATH_MAX)
		return usage_error("restore: --vsock path is longer than 96 bytes: %s", o->vsock);
	return 0;
}

/* --verbose: restore latency as a user sees it, from padcell's start to running vCPUs. */
static void timing_after_start(struct vm *vm, int rc, void *ctx)
{
	const struct timespec *ts0 = ctx;
	if (rc)
		return;
	struct timespec ts1;
	clock_gettime(CLOCK_MONOTONIC, &ts1);
	fprintf(stderr, "padcell: restore: %.3f ms from start to vCPUs running\n",
		(ts1.tv_sec - ts0->tv_sec) * 1e3 + (ts1.tv_nsec - ts0->tv_nsec) / 1e6);
}

int cmd_restore(int argc, char **argv)
{
	struct timespec ts0;
	clock_gettime(CLOCK_MONOTONIC, &ts0);
	struct restore_opts o;
	if (parse(argc, argv, &o))
		return EXIT_USAGE;
	char state[4200], mem[4200], err[512], why[256];
	snprintf(state, sizeof(state), "%s%s", o.from ? o.from : o.state, o.from ? "/state" : "");
	snprintf(mem, sizeof(mem), "%s%s", o.from ? o.from : o.mem, o.from ? "/mem" : "");

	o.jail.host_net = o.net.net;
	if (jail_prepare(&o.jail, err, sizeof(err)))
		return usage_error("restore: %s", err);
	/* What the VM touches after confinement: its sockets (removed at exit), API snapshots beside them. */
	jail_allow_path(o.api_sock, false);
	jail_allow_connect(o.vsock);
	jail_own_path(o.api_sock); /* with --uid/--uid-range: the VM's uid owns its sockets */
	jail_own_path(o.vsock);
	/* Sockets first: a live or unusable PATH is the user's error, found before anything is built. */
	int api_fd = -1, vsock_fd = -1, rc = EXIT_USAGE;
	struct net_params net = { .log_fd = -1 };
	if (o.api_sock && (api_fd = api_listen(o.api_sock, why, sizeof(why))) < 0) {
		fprintf(stderr, "padcell: --api-sock '%s': %s\n", o.api_sock, why);
		return EXIT_USAGE;
	}
	if (o.vsock && (vsock_fd = vsock_listen(o.vsock, why, sizeof(why))) < 0) {
		fprintf(stderr, "padcell: --vsock '%s': %s\n", o.vsock, why);
		goto out_sockets;
	}
	if (o.net.net && launch_net(&o.net, &net, err, sizeof(err))) {
		fprintf(stderr, "padcell: %s\n", err);
		goto out_sockets;
	}
	struct vm vm;
	struct vm_config cfg = { .console_out = STDOUT_FILENO, .verbose = o.verbose, .vsock_path = o.vsock,
				 .vsock_listen_fd = vsock_fd, .net = o.net.net ? &net : NULL,
				 .restore_drives = o.any_drive ? o.drives : NULL,
				 .drive_rates = o.rates.any ? o.rates.rate : NULL };
	int r = vm_restore(&vm, &cfg, state, mem, err, sizeof(err));
	if (r) {
		fprintf(stderr, "padcell: cannot restore: %s\n", err);
		rc = r == -EINVAL || r == -ENOENT ? EXIT_USAGE : EXIT_HOST_ERROR;
		goto out_sockets;
	}
	struct api_server *api = NULL;
	if (api_fd >= 0) {
		api = api_vm_serve(&vm, api_fd, o.api_sock, PADCELL_VERSION, why, sizeof(why));
		api_fd = -1; /* the server's now, closed even on failure */
		if (!api) {
			fprintf(stderr, "padcell: --api-sock '%s': %s\n", o.api_sock, why);
			vm_destroy(&vm);
			rc = EXIT_HOST_ERROR;
			goto out_sockets;
		}
	}
	struct launch_run_hooks hooks = { .after_start = o.verbose ? timing_after_start : NULL, .ctx = &ts0 };
	rc = launch_run_until_stop(&vm, api, o.verbose, &hooks);
	vm_destroy(&vm);
out_sockets:
	launch_net_close(&net);
	if (vsock_fd >= 0) {
		close(vsock_fd);
		jail_unlink(o.vsock);
	}
	if (api_fd >= 0) {
		close(api_fd);
		jail_unlink(o.api_sock);
	}
	return rc;
}
