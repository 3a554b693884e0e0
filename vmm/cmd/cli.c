/* Option parsing for the padcell subcommands; errors come back as one line for main(). */
#include "vmm/cmd/cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio_vsock.h"
#include "vmm/err.h"
#include "vmm/mem.h"
#include "vmm/net/policy.h"

int cli_parse_size(const char *s, uint64_t *out)
{
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	unsigned shift = 20; /* bare number: MiB */
	switch (toupper((unsigned char)*end)) {
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	case 'B': shift = 0; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (shift && (end[0] == 'i' || end[0] == 'I') && toupper((unsigned char)end[1]) == 'B')
		end += 2;
	else if (toupper((unsigned char)*end) == 'B')
		end++;
	if (*end)
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

int cli_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = (unsigned)v;
	return 0;
}

#define usage_err(err, errlen, ...) errorf(err, errlen, -EINVAL, __VA_ARGS__)

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_CPUS, OPT_MEM, OPT_ENTRY, OPT_VERBOSE, OPT_DRIVE,
       OPT_SCRATCH, OPT_VSOCK,
       /* run */
       OPT_ROOTFS, OPT_ENV, OPT_CWD, OPT_USER, OPT_TIMEOUT, OPT_BOOT_TIMEOUT, OPT_NO_STDIN, OPT_FROM,
       OPT_SNAPSHOT_WHEN_READY, OPT_ALLOW_PVM,
       /* boot */
       OPT_API_SOCK };

/*
 * arg itself when the value is all of it, else the first len bytes as a copy the options own.
 * The copy, not a NUL written over the comma: argv's strings may be read-only (a caller's string
 * literals), and /proc/PID/cmdline keeps showing what the user typed.
 */
static const char *opt_value(struct boot_opts *o, const char *arg, size_t len, char *err, size_t errlen)
{
	if (!arg[len])
		return arg;
	char *copy = o->nowned < sizeof(o->owned) / sizeof(o->owned[0]) ? strndup(arg, len) : NULL;
	if (!copy) {
		errorf(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	o->owned[o->nowned++] = copy;
	return copy;
}

void cli_opts_free(struct boot_opts *o)
{
	while (o->nowned)
		free(o->owned[--o->nowned]);
}

/* PATH[,ro][,id=NAME]: the path ends at the first comma. */
static int parse_drive(const char *arg, struct boot_opts *o, struct drive_opt *d, char *err, size_t errlen)
{
	*d = (struct drive_opt){ 0 };
	const char *comma = strchr(arg, ',');
	size_t plen = comma ? (size_t)(comma - arg) : strlen(arg);
	if (plen == 0)
		return usage_err(err, errlen, "--drive '%s': expected PATH[,ro][,id=NAME]", arg);
	if (plen >= PATH_MAX)
		return usage_err(err, errlen, "--drive: path is too long");
	while (comma) {
		const char *opt = comma + 1;
		comma = strchr(opt, ',');
		size_t olen = comma ? (size_t)(comma - opt) : strlen(opt);
		if (olen == 2 && !strncmp(opt, "ro", 2)) {
			d->ro = true;
		} else if (olen > 3 && !strncmp(opt, "id=", 3)) {
			if (olen - 3 >= sizeof(d->id))
				return usage_err(err, errlen, "--drive '%s': id is longer than 20 bytes", arg);
			memcpy(d->id, opt + 3, olen - 3);
			d->id[olen - 3] = '\0';
		} else {
			return usage_err(err, errlen, "--drive '%s': unknown option '%.*s' (expected ro or id=NAME)", arg,
					 (int)olen, opt);
		}
	}
	d->path = opt_value(o, arg, plen, err, errlen); /* last: a bad option leaves nothing to free */
	return d->path ? 0 : -ENOMEM;
}

/* PATH[,cid=N]: the path ends at the first comma; CIDs 0-2 are reserved, u32 max is "any". */
static int parse_vsock(const char *arg, struct boot_opts *o, char *err, size_t errlen)
{
	const char *comma = strchr(arg, ',');
	size_t plen = comma ? (size_t)(comma - arg) : strlen(arg);
	if (plen == 0)
		return usage_err(err, errlen, "--vsock '%s': expected PATH[,cid=N]", arg);
	if (plen > VSOCK_PATH_MAX)
		return usage_err(err, errlen, "--vsock: path is longer than %u bytes (room is kept for _<port>)",
				 VSOCK_PATH_MAX);
	o->vsock_cid = VSOCK_DEFAULT_CID;
	if (comma) {
		unsigned long long cid;
		char *end;
		const char *num = comma + 1 + 4;
		if (strncmp(comma + 1, "cid=", 4) || !*num || *num < '0' || *num > '9' ||
		    (errno = 0, cid = strtoull(num, &end, 10), errno) || *end)
			return usage_err(err, errlen, "--vsock '%s': expected PATH[,cid=N]", arg);
		if (cid <= VSOCK_HOST_CID || cid >= UINT32_MAX)
			return usage_err(err, errlen, "--vsock '%s': cid must be 3 to 4294967294 (0-2 are reserved)",
					 arg);
		o->vsock_cid = (uint32_t)cid;
	}
	o->vsock_path = opt_value(o, arg, plen, err, errlen);
	return o->vsock_path ? 0 : -ENOMEM;
}

/* The options every VM-creating command shares (boot, run). */
#define VM_LONG_OPTS \
		{ "kernel", required_argument, NULL, OPT_KERNEL }, \
		{ "initrd", required_argument, NULL, OPT_INITRD }, \
		{ "cmdline", required_argument, NULL, OPT_CMDLINE }, \
		{ "cpus", required_argument, NULL, OPT_CPUS }, \
		{ "mem", required_argument, NULL, OPT_MEM }, \
		{ "entry", required_argument, NULL, OPT_ENTRY }, \
		{ "verbose", no_argument, NULL, OPT_VERBOSE }, \
		{ "drive", required_argument, NULL, OPT_DRIVE }, \
		{ "scratch", required_argument, NULL, OPT_SCRATCH }, \
		{ "vsock", required_argument, NULL, OPT_VSOCK }, \
		{ "drive-rate", required_argument, NULL, CLI_OPT_DRIVE_RATE }, \
		JAIL_LONG_OPTS, \
		CLI_NET_LONG_OPTS

static void vm_opts_defaults(struct boot_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->cmdline = CLI_DEFAULT_CMDLINE;
	o->mem = CLI_DEFAULT_MEM;
	o->cpus = 1;
	jail_opts_init(&o->jail);
}

int cli_parse_drive_rate(const char *arg, struct drive_rates *r, char *err, size_t errlen)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(arg, &end, 10);
	if (arg[0] < '0' || arg[0] > '9' || end == arg || *end != '=' || errno)
		return usage_err(err, errlen, "--drive-rate '%s': expected N=SPEC (disk N from 0; SPEC like bytes=10M/1s,ops=1000/1s)",
				 arg);
	if (n >= CLI_MAX_DRIVES)
		return usage_err(err, errlen, "--drive-rate '%s': a VM has at most %u disks (0 to %u)", arg, CLI_MAX_DRIVES,
				 CLI_MAX_DRIVES - 1);
	if (r->rate[n])
		return usage_err(err, errlen, "--drive-rate '%s': disk %lu is given twice", arg, n);
	char why[256];
	if (ratelimit_parse(end + 1, &r->cfg[n], why, sizeof(why)))
		return usage_err(err, errlen, "--drive-rate '%s': %s", arg, why);
	r->rate[n] = &r->cfg[n];
	r->any = true;
	return 0;
}

/* --net-rate-rx / --net-rate-tx SPEC. */
static int parse_net_rate(const char *flag, const char *arg, struct ratelimit_cfg *cfg, bool *set, char *err,
			  size_t errlen)
{
	if (*set)
		return usage_err(err, errlen, "--%s given twice", flag);
	char why[256];
	if (ratelimit_parse(arg, cfg, why, sizeof(why)))
		return usage_err(err, errlen, "--%s '%s': %s", flag, arg, why);
	*set = true;
	return 0;
}

int cli_parse_net_opt(int c, const char *arg, struct net_opts *o, char *err, size_t errlen)
{
	switch (c) {
	case CLI_OPT_NET_RATE_RX:
	case CLI_OPT_NET_RATE_TX: {
		bool rx = c == CLI_OPT_NET_RATE_RX;
		int rc = parse_net_rate(rx ? "net-rate-rx" : "net-rate-tx", arg, rx ? &o->rx_rate : &o->tx_rate,
					rx ? &o->rx_rate_set : &o->tx_rate_set, err, errlen);
		if (!rc)
			o->net = true;
		return rc;
	}
	case CLI_OPT_NET: o->net = true; return 0;
	case CLI_OPT_ALLOW_INTERNET: o->net = o->allow_internet = true; return 0;
	case CLI_OPT_NET_LOG:
		if (o->log)
			return usage_err(err, errlen, "--net-log given twice");
		if (!arg[0])
			return usage_err(err, errlen, "--net-log: expected a file name");
		o->log = arg;
		o->net = true;
		return 0;
	case CLI_OPT_PUBLISH: {
		if (o->npublish == NET_PUBLISH_MAX)
			return usage_err(err, errlen, "too many --publish ports: at most %u", NET_PUBLISH_MAX);
		struct net_publish *p = &o->publish[o->npublish];
		char why[200];
		if (net_publish_parse(arg, p, why, sizeof(why)))
			return usage_err(err, errlen, "%s", why);
		for (unsigned i = 0; i < o->npublish; i++)
			if (o->publish[i].host_port == p->host_port &&
			    (o->publish[i].host_addr == p->host_addr || !o->publish[i].host_addr || !p->host_addr))
				return usage_err(err, errlen, "--publish '%s': host port %u is already published", arg,
						 p->host_port);
		o->npublish++;
		o->net = true;
		return 0;
	}
	case CLI_OPT_ALLOW: {
		if (o->nallow == CLI_MAX_ALLOW)
			return usage_err(err, errlen, "too many --allow rules: at most %u", CLI_MAX_ALLOW);
		struct policy_rule *r = malloc(sizeof(*r));
		if (!r)
			return usage_err(err, errlen, "out of memory");
		char why[400];
		int rc = policy_parse_rule(arg, r, why, sizeof(why));
		free(r);
		if (rc)
			return usage_err(err, errlen, "--allow: %s", why);
		o->allow[o->nallow++] = arg;
		o->net = true;
		return 0;
	}
	default:
		return 1;
	}
}

/* One VM option (c from VM_LONG_OPTS).  1: not a VM option; 0: taken; -EINVAL with err set. */
static int parse_vm_opt(int c, const char *arg, struct boot_opts *o, char *err, size_t errlen)
{
	int jrc;
	if (jail_opt_parse(&o->jail, c, arg, &jrc, err, errlen))
		return jrc;
	switch (c) {
	case OPT_KERNEL: o->kernel = arg; return 0;
	case OPT_INITRD: o->initrd = arg; return 0;
	case OPT_CMDLINE: o->cmdline = arg; return 0;
	case OPT_VERBOSE: o->verbose = true; return 0;
	case OPT_CPUS:
		/* The upper bound against KVM's limit is checked once /dev/kvm is open. */
		if (cli_parse_uint(arg, 1, 4096, &o->cpus))
			return usage_err(err, errlen, "--cpus '%s': expected a whole number from 1 up", arg);
		return 0;
	case OPT_MEM:
		if (cli_parse_size(arg, &o->mem))
			return usage_err(err, errlen, "--mem '%s': expected a size like 256M or 2G", arg);
		if (o->mem < GMEM_MIN_SIZE || o->mem > GMEM_MAX_SIZE)
			return usage_err(err, errlen, "--mem '%s': must be between 2 MiB and 1 TiB", arg);
		if (o->mem & 0xfff)
			return usage_err(err, errlen, "--mem '%s': must be a multiple of 4 KiB", arg);
		return 0;
	case OPT_ENTRY:
		if (!strcmp(arg, "auto"))
			o->entry = BOOT_ENTRY_AUTO;
		else if (!strcmp(arg, "linux64"))
			o->entry = BOOT_ENTRY_LINUX64;
		else if (!strcmp(arg, "pvh"))
			o->entry = BOOT_ENTRY_PVH;
		else
			return usage_err(err, errlen, "--entry '%s': expected auto, linux64 or pvh", arg);
		return 0;
	case OPT_DRIVE:
		if (o->ndrives == CLI_MAX_DRIVES)
			return usage_err(err, errlen, "too many drives: at most %u, --scratch included", CLI_MAX_DRIVES);
		if (parse_drive(arg, o, &o->drives[o->ndrives], err, errlen))
			return -EINVAL;
		o->ndrives++;
		return 0;
	case OPT_SCRATCH:
		if (o->scratch)
			return usage_err(err, errlen, "--scratch given twice");
		if (cli_parse_size(arg, &o->scratch) || o->scratch == 0)
			return usage_err(err, errlen, "--scratch '%s': expected a size like 64M or 1G", arg);
		if (o->scratch % 512)
			return usage_err(err, errlen, "--scratch '%s': must be a multiple of 512 bytes", arg);
		return 0;
	case CLI_OPT_DRIVE_RATE:
		return cli_parse_drive_rate(arg, &o->rates, err, errlen);
	case OPT_VSOCK:
		if (o->vsock_path)
			return usage_err(err, errlen, "--vsock given twice");
		if (parse_vsock(arg, o, err, errlen))
			return -EINVAL;
		return 0;
	default:
		return cli_parse_net_opt(c, arg, &o->net, err, errlen);
	}
}

/* getopt's own complaints, worded once. */
static int getopt_err(int c, char **argv, char *err, size_t errlen)
{
	if (c == ':')
		return usage_err(err, errlen, "%s needs a value", argv[optind - 1]);
	return usage_err(err, errlen, "unknown option '%s' (see padcell --help)", argv[optind - 1]);
}

/* Checks that hold whatever command made the VM. */
static int vm_opts_check(const struct boot_opts *o, char *err, size_t errlen)
{
	if (o->ndrives + (o->scratch ? 1 : 0) > CLI_MAX_DRIVES)
		return usage_err(err, errlen, "too many drives: at most %u, --scratch included", CLI_MAX_DRIVES);
	if (o->ndrives + (o->scratch ? 1 : 0) + (o->vsock_path ? 1 : 0) + (o->net.net ? 1 : 0) > LAYOUT_VIRTIO_MAX)
		return usage_err(err, errlen, "too many virtio devices: at most %u drives, --scratch, --vsock and --net together",
				 LAYOUT_VIRTIO_MAX);
	return 0;
}

/* --api-sock PATH (boot, run): once, and a path a Unix socket can have (sun_path: 107 bytes and a NUL). */
static int api_sock_opt(struct boot_opts *o, const char *arg, char *err, size_t errlen)
{
	if (o->api_sock)
		return usage_err(err, errlen, "--api-sock given twice");
	if (!arg[0] || strlen(arg) > 107)
		return usage_err(err, errlen, "--api-sock '%s': expected a socket path of 1 to 107 bytes", arg);
	o->api_sock = arg;
	return 0;
}

static int parse_boot(int argc, char **argv, struct boot_opts *o, char *err, size_t errlen)
{
	static const struct option opts[] = { VM_LONG_OPTS, { "api-sock", required_argument, NULL, OPT_API_SOCK },
					      { "snapshot-when-ready", required_argument, NULL, OPT_SNAPSHOT_WHEN_READY },
					      { "allow-pvm", no_argument, NULL, OPT_ALLOW_PVM },
					      { 0 } };
	vm_opts_defaults(o);
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		int rc = parse_vm_opt(c, optarg, o, err, errlen);
		if (rc < 0)
			return rc;
		if (rc == 0)
			continue;
		if (c == OPT_SNAPSHOT_WHEN_READY) {
			o->snapshot_dir = optarg;
			continue;
		}
		if (c == OPT_ALLOW_PVM) {
			o->allow_pvm = true;
			continue;
		}
		if (c != OPT_API_SOCK)
			return getopt_err(c, argv, err, errlen);
		if ((rc = api_sock_opt(o, optarg, err, errlen)))
			return rc;
	}
	if (optind < argc)
		return usage_err(err, errlen, "unexpected argument '%s' (see padcell --help)", argv[optind]);
	if (!o->kernel)
		return usage_err(err, errlen, "boot needs --kernel FILE");
	if (o->snapshot_dir && !o->vsock_path)
		return usage_err(err, errlen, "--snapshot-when-ready needs --vsock PATH: the agent says it is ready over vsock");
	return vm_opts_check(o, err, errlen);
}

static int parse_run(int argc, char **argv, struct run_opts *o, char *err, size_t errlen)
{
	static const struct option opts[] = {
		VM_LONG_OPTS,
		{ "rootfs", required_argument, NULL, OPT_ROOTFS },
		{ "env", required_argument, NULL, OPT_ENV },
		{ "cwd", required_argument, NULL, OPT_CWD },
		{ "user", required_argument, NULL, OPT_USER },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT },
		{ "no-stdin", no_argument, NULL, OPT_NO_STDIN },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "snapshot-when-ready", required_argument, NULL, OPT_SNAPSHOT_WHEN_READY },
		{ "allow-pvm", no_argument, NULL, OPT_ALLOW_PVM },
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ 0 },
	};
	memset(o, 0, sizeof(*o));
	vm_opts_defaults(&o->vm);
	o->boot_timeout = CLI_DEFAULT_BOOT_TIMEOUT;
	/* Which VM-shaping options were given: they cannot be mixed with --from. */
	const char *shaping = NULL;
	opterr = 0;
	optind = 1;
	int c, li = -1;
	while ((c = getopt_long(argc, argv, "+:", opts, &li)) != -1) {
		int rc = parse_vm_opt(c, optarg, &o->vm, err, errlen);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			/* (the jail's and the NIC's options, numbered from 1000 up, do not shape the VM) */
			if (c != OPT_VERBOSE && c != OPT_VSOCK && c != OPT_SCRATCH && c < JAIL_OPT_NO_JAIL && li >= 0)
				shaping = opts[li].name;
			continue;
		}
		switch (c) {
		case OPT_ROOTFS:
			o->rootfs = optarg;
			shaping = "rootfs";
			break;
		case OPT_ENV:
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return usage_err(err, errlen, "--env '%s': expected NAME=VALUE", optarg);
			if (o->nenv == CLI_MAX_ENV)
				return usage_err(err, errlen, "too many --env: at most %u", CLI_MAX_ENV);
			o->env[o->nenv++] = optarg;
			break;
		case OPT_CWD:
			if (optarg[0] != '/')
				return usage_err(err, errlen, "--cwd '%s': expected an absolute path in the guest", optarg);
			o->cwd = optarg;
			break;
		case OPT_USER:
			if (!optarg[0])
				return usage_err(err, errlen, "--user: expected NAME or UID[:GID]");
			o->user = optarg;
			break;
		case OPT_TIMEOUT:
			if (cli_parse_uint(optarg, 1, 7 * 24 * 3600, &o->timeout))
				return usage_err(err, errlen, "--timeout '%s': expected whole seconds from 1 up", optarg);
			break;
		case OPT_BOOT_TIMEOUT:
			if (cli_parse_uint(optarg, 1, 3600, &o->boot_timeout))
				return usage_err(err, errlen, "--boot-timeout '%s': expected whole seconds from 1 to 3600",
						 optarg);
			break;
		case OPT_NO_STDIN: o->no_stdin = true; break;
		case OPT_FROM: o->from = optarg; break;
		case OPT_SNAPSHOT_WHEN_READY: o->snapshot_dir = optarg; break;
		case OPT_ALLOW_PVM: o->allow_pvm = true; break;
		case OPT_API_SOCK:
			if ((rc = api_sock_opt(&o->vm, optarg, err, errlen)))
				return rc;
			break;
		default:
			return getopt_err(c, argv, err, errlen);
		}
	}
	if (optind < argc && !strcmp(argv[optind - 1], "--")) {
		/* getopt stopped after "--": everything left is the command. */
	} else if (optind < argc) {
		return usage_err(err, errlen, "unexpected argument '%s': put the command after -- (padcell run -- CMD)",
				 argv[optind]);
	}
	if (optind < argc) {
		o->argv = argv + optind;
		o->argc = argc - optind;
	}
	if (!o->argv && !o->snapshot_dir)
		return usage_err(err, errlen, "run needs a command: padcell run [options] -- CMD [ARGS...]");
	if (o->from && shaping)
		return usage_err(err, errlen, "--%s cannot be used with --from: the snapshot fixes the VM's shape", shaping);
	if (o->from && o->vm.scratch)
		return usage_err(err, errlen, "--scratch cannot be used with --from: the snapshot's scratch disk is copied");
	if (o->from && o->snapshot_dir)
		return usage_err(err, errlen, "--snapshot-when-ready cannot be used with --from");
	return vm_opts_check(&o->vm, err, errlen);
}

/* A failed parse frees what it copied: the caller frees only the options it goes on to use. */
int cli_parse_boot(int argc, char **argv, struct boot_opts *o, char *err, size_t errlen)
{
	int rc = parse_boot(argc, argv, o, err, errlen);
	if (rc)
		cli_opts_free(o);
	return rc;
}

int cli_parse_run(int argc, char **argv, struct run_opts *o, char *err, size_t errlen)
{
	int rc = parse_run(argc, argv, o, err, errlen);
	if (rc)
		cli_opts_free(&o->vm);
	return rc;
}

void cli_usage(FILE *out)
{
	fputs("usage: padcell <command> [options]\n"
	      "\n"
	      "commands:\n"
	      "  run [VM options] [--rootfs IMAGE] [--env K=V]... [--cwd DIR] [--user U]\n"
	      "      [--timeout SEC] [--no-stdin] [--boot-timeout SEC] [--from DIR]\n"
	      "      [--snapshot-when-ready DIR] [--api-sock PATH] [--allow-pvm] -- CMD [ARGS...]\n"
	      "      Run CMD in a fresh microVM: stdin passed in, stdout/stderr streamed back,\n"
	      "      its exit code returned, the VM gone afterwards.  The kernel and read-only\n"
	      "      root image default to share/padcell/{vmlinuz,rootfs.ext4} beside padcell\n"
	      "      (`make images`; $PADCELL_KERNEL, $PADCELL_ROOTFS override); the guest agent\n"
	      "      (/sbin/padcell-agent) is init.  --from DIR restores a snapshot instead of\n"
	      "      booting (a clone: many at once are fine); --snapshot-when-ready DIR writes\n"
	      "      one once the agent is ready.  VM options are boot's; --verbose shows the\n"
	      "      console and the boot / agent-ready / command times.  On a PVM host\n"
	      "      (/dev/kvm without VT-x/AMD-V) a cold boot is refused at once (exit 2):\n"
	      "      a standard Linux kernel cannot boot there; --allow-pvm tries anyway.\n"
	      "      --api-sock PATH: boot's control socket while the command runs (net-policy,\n"
	      "      pause, snapshot ...), removed when the run ends.\n"
	      "  exec --vsock PATH [--env K=V]... [--cwd DIR] [--user U] [--timeout SEC]\n"
	      "       [--no-stdin] [--verbose] [--background] [--pty] -- CMD [ARGS...]\n"
	      "      Run CMD in a running VM (booted with --vsock PATH and the agent as init).\n"
	      "      --background: start it, print its process id and leave it running;\n"
	      "      --pty: on a terminal (the host's in raw mode when stdin is one).\n"
	      "  ps --vsock PATH          The agent's background processes.\n"
	      "  attach --vsock PATH ID   Its kept and live output; exit code = the process's.\n"
	      "  kill --vsock PATH [--signal SIG] ID   Signal its process group (TERM).\n"
	      "  cp --vsock PATH [--max-size SIZE] SRC DST\n"
	      "      Copy a file in or out of a running VM; one side is vm:/path, '-' is stdio.\n"
	      "      A copy out of the VM larger than --max-size (default 1G) is refused.\n"
	      "  fs stat|ls|mkdir|mv|rm --vsock PATH [-p] [--mode MODE] [-r] GUEST_PATH...\n"
	      "      File operations in a running VM: stat, list a directory, mkdir (-p: with\n"
	      "      parents), move (rename), remove (-r: a directory and all in it).  Exit 1\n"
	      "      when the agent refused a path (each one still tried), 125 as for exec.\n"
	      "  boot --kernel FILE [--initrd FILE] [--cmdline STR] [--cpus N] [--mem SIZE]\n"
	      "       [--entry auto|linux64|pvh] [--drive PATH[,ro][,id=NAME]]... [--scratch SIZE]\n"
	      "       [--vsock PATH[,cid=N]] [--api-sock PATH] [--snapshot-when-ready DIR]\n"
	      "       [--allow-pvm] [--verbose]\n"
	      "      Boot a VM with its serial console on this terminal (Ctrl-A x quits).\n"
	      "      On a PVM host a Linux kernel (a bzImage, or a vmlinux with its \"Linux\"\n"
	      "      note) is refused at once (exit 2): it cannot boot there; other guests\n"
	      "      boot; --allow-pvm boots it anyway.\n"
	      "      --kernel   vmlinux ELF (PVH note used when present) or bzImage\n"
	      "      --mem      guest RAM, e.g. 256M, 2G (bare number = MiB; default 256M)\n"
	      "      --cpus     vCPUs (default 1)\n"
	      "      --cmdline  kernel command line (default \"" CLI_DEFAULT_CMDLINE "\")\n"
	      "      --drive    raw disk image as virtio-blk (repeatable; the first is root=/dev/vda,\n"
	      "                 ro = read-only, id = GET_ID serial, default the file name)\n"
	      "      --scratch  writable disk of SIZE backed by an unlinked sparse temp file\n"
	      "                 (after the drives; nothing survives the VM)\n"
	      "      --vsock    virtio-vsock, guest CID N (default 3); host side on the Unix socket\n"
	      "                 PATH (write \"CONNECT <port>\\n\", get \"OK <hostport>\\n\"); guest\n"
	      "                 connections to CID 2 port P go to the socket PATH_P\n"
	      "      --api-sock control socket: Firecracker's HTTP API for GET /, PATCH /vm\n"
	      "                 (pause, resume), PUT /snapshot/create and PATCH /drives/ID,\n"
	      "                 /network-interfaces/eth0 (rate limiters)\n"
	      "      --snapshot-when-ready  snapshot into DIR once the guest agent says it is ready\n"
	      "  network (boot, run, restore; default: no NIC at all):\n"
	      "      --net      a virtio-net NIC (10.0.2.15/24, gateway 10.0.2.2, DNS 10.0.2.3)\n"
	      "                 that reaches nothing: every connection is refused with a reset\n"
	      "      --allow RULE  allow TARGET[:PORTS][/PROTO] (repeatable; implies --net):\n"
	      "                 an IPv4 address, CIDR, domain or *.domain; PORTS N or N-M;\n"
	      "                 PROTO tcp (default) or udp; names no rule allows get NXDOMAIN\n"
	      "      --allow-internet  any public address (implies --net); loopback, private,\n"
	      "                 link-local and the host's ranges stay refused unless a rule names them\n"
	      "      --net-log FILE  append every egress decision as a JSON line\n"
	      "      --publish [ADDR:]HOSTPORT:GUESTPORT  forward a host TCP port (on ADDR,\n"
	      "                 127.0.0.1 by default) to a guest port (repeatable; implies --net)\n"
	      "  rate limits (boot, run, run --from, restore): token buckets, Firecracker's kind\n"
	      "      --drive-rate N=SPEC  disk N (from 0: run's root image, --drive's, --scratch)\n"
	      "      --net-rate-rx SPEC, --net-rate-tx SPEC  frames to / from the guest (implies --net)\n"
	      "                 SPEC: bytes=SIZE/TIME,bytes-burst=SIZE,ops=N/TIME,ops-burst=N\n"
	      "                 (any subset; TIME N, Nms or Ns; e.g. bytes=10M/1s), or none\n"
	      "  resource limits (boot, run, restore; cgroup v2 leaf per VM where delegated):\n"
	      "      --cpu-quota N   cpu.max: N CPUs, fractional (default: the vCPU count)\n"
	      "      --mem-limit SIZE  memory.max (default: guest RAM plus the monitor's overhead)\n"
	      "      --io-limit RATE   io.max read and write bytes/s on the disks' block devices\n"
	      "                 (default none); without cgroup v2 a named limit is an error (exit 2)\n"
	      "  restore --from DIR [--vsock PATH] [--api-sock PATH] [--drive N=PATH]...\n"
	      "          [--net|--allow RULE...] [--drive-rate N=SPEC]... [--verbose]\n"
	      "      Restore a snapshot: memory mapped copy-on-write, the VM continues where it was.\n"
	      "      A snapshot's NIC gets a fresh stack (open connections are gone) with the\n"
	      "      policy given here; none given: deny everything.\n"
	      "      A writable drive is reopened only if it is the file the snapshot was taken\n"
	      "      with; --drive N=PATH names the file for the snapshot's disk N instead.\n"
	      "  snapshot --api-sock PATH --to DIR [--leave-paused]\n"
	      "      Snapshot a running VM into DIR/state and DIR/mem: pause, write, resume\n"
	      "      (a VM that was paused stays paused; --leave-paused keeps it paused).\n"
	      "  pause|resume|status --api-sock PATH\n"
	      "      Pause or resume the VM behind a control socket, or print its state.\n"
	      "  net-policy --api-sock PATH [--allow RULE]... [--open] [--deny-all]\n"
	      "      Replace a running VM's egress rules (as --allow / --allow-internet; all or\n"
	      "      nothing); --deny-all: none.  Without them: print the rules and the decision\n"
	      "      counters as JSON.  Connections already open are kept.\n"
	      "  serve [--template NAME=SNAPSHOT_DIR]... [--templates DIR] [--listen ADDR:PORT]\n"
	      "        [--state-dir DIR] [--max-sandboxes N] [--max-mem SIZE] [--ready-timeout SEC]\n"
	      "        [--padcell PATH] [--pool NAME=N]... [--api-keys FILE] [--verbose]\n"
	      "      A daemon owning this host's sandboxes (each a child restore of a template\n"
	      "      snapshot) behind E2B's REST API (POST/GET /sandboxes, GET/DELETE\n"
	      "      /sandboxes/ID, POST /sandboxes/ID/timeout) on 127.0.0.1:3000, X-API-Key\n"
	      "      in DIR/api-key (--api-keys FILE: NAME KEY lines, each key seeing only its\n"
	      "      own sandboxes).  Only in a dynamic build (build/padcell-dyn, STATIC=0).\n"
	      "  template build NAME [--rootfs IMAGE] [--kernel K] [--mem M] [--cpus N] [--net]\n"
	      "        [--allow RULE]... [--env K=V]... [--timeout SEC] [--run CMD]... [--dir DIR]\n"
	      "        [--force]\n"
	      "      Boot IMAGE (run's defaults), run each CMD with sh -c in order, snapshot when\n"
	      "      they are done into DIR/NAME (default: serve's state dir's templates/) with a\n"
	      "      manifest.json; serve takes it by name.\n"
	      "  check\n"
	      "      Preflight: can this host run padcell VMs, and what kind of KVM is it?\n"
	      "  help, --help, --version\n"
	      "\n"
	      "exit codes:\n"
	      "  0  the guest powered off or rebooted\n"
	      "  1  padcell or the host failed (KVM error, out of memory, I/O error)\n"
	      "  2  bad usage or bad input (unknown flag, missing or corrupt kernel, bad size)\n"
	      "  3  the guest kernel panicked\n"
	      "  4  the guest crashed the vCPU (triple fault, KVM internal or emulation error)\n"
	      "  128+N  padcell was stopped by signal N (Ctrl-A x counts as 130)\n"
	      "run and exec: the command's exit code; 128+N when signal N killed it;\n"
	      "  124  the command hit --timeout (its whole process group was killed)\n"
	      "  125  the VM, the agent or padcell failed before the command ended\n"
	      "  2    bad usage or bad input, as above\n",
	      out);
}
