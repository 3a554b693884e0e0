/* Command-line parsing: options, sizes and the documented exit codes. */
#ifndef PADCELL_CLI_H
#define PADCELL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/ratelimit.h"
#include "vmm/jail/jail.h"
#include "vmm/net/publish.h"
#include "vmm/x86/boot_x86_64.h"
#include "vmm/x86/layout.h"

/* Process exit codes (README "Exit codes"). */
#define EXIT_GUEST_OK    0   /* guest powered off or rebooted            */
#define EXIT_HOST_ERROR  1   /* padcell or the host failed               */
#define EXIT_USAGE       2   /* bad command line or input files          */
#define EXIT_GUEST_PANIC 3   /* guest kernel panicked                    */
#define EXIT_GUEST_CRASH 4   /* triple fault, KVM internal error, etc.   */
/* run / exec: the command's own exit code, 128+N when a signal N killed it, and: */
#define EXIT_CMD_TIMEOUT 124 /* --timeout fired; the command's process group was killed */
#define EXIT_RUN_FAILED  125 /* the VM, the agent or padcell failed before the command ended */
/* 128+N: padcell was stopped by signal N (130 for SIGINT, and for Ctrl-A x). */

#define CLI_DEFAULT_MEM     (256ULL << 20)
#define CLI_DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=-1"

/*
 * Option values point into argv, which lives as long as the process; argv itself stays untouched.
 * A value cut from a longer argument (PATH of "PATH,ro") is a copy the options own: after a
 * successful parse, cli_opts_free() releases them.
 */
#define CLI_MAX_DRIVES LAYOUT_VIRTIO_MAX /* every virtio-mmio slot, --scratch included */
struct drive_opt {              /* one --drive PATH[,ro][,id=NAME] */
	const char *path;
	char id[21];            /* "" = the file's basename */
	bool ro;
};

/*
 * --net, --allow RULE (repeatable, implies --net), --allow-internet (implies --net), --net-log FILE,
 * --publish [ADDR:]HOSTPORT:GUESTPORT (repeatable, implies --net).
 */
#define CLI_MAX_ALLOW 1024 /* POLICY_MAX_RULES */
struct net_opts {
	bool net;                         /* a NIC at all; default none */
	const char *allow[CLI_MAX_ALLOW]; /* rules as typed, each checked by the parser */
	unsigned nallow;
	bool allow_internet;
	const char *log;                  /* --net-log FILE */
	struct net_publish publish[NET_PUBLISH_MAX];
	unsigned npublish;
	struct ratelimit_cfg rx_rate, tx_rate;  /* --net-rate-rx / --net-rate-tx SPEC (implies --net) */
	bool rx_rate_set, tx_rate_set;
};
enum { CLI_OPT_NET = 0x4e00, CLI_OPT_ALLOW, CLI_OPT_ALLOW_INTERNET, CLI_OPT_NET_LOG, CLI_OPT_PUBLISH,
       CLI_OPT_NET_RATE_RX, CLI_OPT_NET_RATE_TX, CLI_OPT_DRIVE_RATE };
#define CLI_NET_LONG_OPTS \
		{ "net", no_argument, NULL, CLI_OPT_NET }, \
		{ "allow", required_argument, NULL, CLI_OPT_ALLOW }, \
		{ "allow-internet", no_argument, NULL, CLI_OPT_ALLOW_INTERNET }, \
		{ "net-log", required_argument, NULL, CLI_OPT_NET_LOG }, \
		{ "publish", required_argument, NULL, CLI_OPT_PUBLISH }, \
		{ "net-rate-rx", required_argument, NULL, CLI_OPT_NET_RATE_RX }, \
		{ "net-rate-tx", required_argument, NULL, CLI_OPT_NET_RATE_TX }
/* One network option (c a CLI_OPT_ code).  1: not one; 0: taken; -EINVAL with err set (a bad rule says why). */
int cli_parse_net_opt(int c, const char *arg, struct net_opts *o, char *err, size_t errlen);

/*
 * --drive-rate N=SPEC (boot, run, run --from, restore): the rate limit of disk N, counted from 0
 * in device order (--drive's, then --scratch; a snapshot's disks as they were).  SPEC as
 * ratelimit_parse() reads it.  rate[N] points into cfg[N] when given, else NULL.
 */
struct drive_rates {
	struct ratelimit_cfg cfg[CLI_MAX_DRIVES];
	const struct ratelimit_cfg *rate[CLI_MAX_DRIVES];
	bool any;
};
/* One --drive-rate value into r.  0, or -EINVAL with err set (given twice, N out of range, a bad SPEC). */
int cli_parse_drive_rate(const char *arg, struct drive_rates *r, char *err, size_t errlen);

struct boot_opts {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	uint64_t mem;
	unsigned cpus;
	enum boot_entry entry;
	bool verbose;
	struct drive_opt drives[CLI_MAX_DRIVES];
	unsigned ndrives;
	uint64_t scratch; /* --scratch SIZE in bytes, 0 = none */
	const char *vsock_path; /* --vsock PATH[,cid=N], at most VSOCK_PATH_MAX bytes; NULL = no vsock device */
	uint32_t vsock_cid;   /* 3 unless cid= says otherwise; never 0-2 nor 0xffffffff */
	const char *api_sock; /* boot --api-sock PATH: the control socket; NULL = none */
	const char *snapshot_dir; /* boot --snapshot-when-ready DIR (needs --vsock) */
	bool allow_pvm;           /* boot --allow-pvm: boot a Linux kernel even on a PVM host */
	struct jail_opts jail;    /* --no-jail, --seccomp, --uid, --gid, --jail-dir */
	struct net_opts net;      /* boot and run: the NIC and its egress policy */
	struct drive_rates rates; /* --drive-rate */
	char *owned[CLI_MAX_DRIVES + 1]; /* the cut copies: one per --drive, one for --vsock */
	unsigned nowned;
};

/* `padcell run`: the VM options above plus what to run in it. */
#define CLI_MAX_ENV 256
#define CLI_DEFAULT_BOOT_TIMEOUT 60 /* seconds from start until the agent must be ready */
struct run_opts {
	struct boot_opts vm;       /* kernel NULL = the default kernel */
	const char *rootfs;        /* --rootfs IMAGE, NULL = the default image ("none": no root disk) */
	const char *env[CLI_MAX_ENV + 1]; /* --env K=V, NULL-terminated */
	unsigned nenv;
	const char *cwd;           /* --cwd DIR */
	const char *user;          /* --user NAME|UID[:GID] */
	unsigned timeout;          /* --timeout SEC, 0 = none */
	unsigned boot_timeout;     /* --boot-timeout SEC */
	bool no_stdin;             /* --no-stdin */
	const char *from;          /* --from DIR: restore a snapshot instead of booting */
	const char *snapshot_dir;  /* --snapshot-when-ready DIR */
	bool allow_pvm;            /* --allow-pvm: cold-boot even on a PVM host (refused there otherwise) */
	/* template build's setup commands (never set by cli_parse_run): each `sh -c CMD` once the agent is
	 * ready, in order, before the snapshot; the first that fails ends the run with its code */
	const char *const *setup;
	unsigned nsetup;
	char **argv;               /* the command after "--"; NULL when none was given */
	int argc;
};

/* Parses `padcell run` (argv[0] is "run").  0, or -EINVAL with err set (nothing to free). */
int cli_parse_run(int argc, char **argv, struct run_opts *o, char *err, size_t errlen);

/*
 * Sizes: a number with an optional K/M/G/T suffix (binary, optional trailing
 * "B" or "iB"); a bare number means MiB.  Returns 0 or -EINVAL/-ERANGE.
 */
int cli_parse_size(const char *s, uint64_t *out);
/* Decimal unsigned in [min, max]. */
int cli_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);

/* Parses `padcell boot` options (argv[0] is "boot").  0, or -EINVAL with err set (nothing to free). */
int cli_parse_boot(int argc, char **argv, struct boot_opts *o, char *err, size_t errlen);

/* Frees the copies a successful cli_parse_boot or cli_parse_run made.  Safe to call twice. */
void cli_opts_free(struct boot_opts *o);

#include <stdio.h>
void cli_usage(FILE *out);

#endif
