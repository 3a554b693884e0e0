/* Option parsing for the padcell subcommands; errors come back as one line for main(). */
#include "vmm/cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/mem.h"

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

static int usage_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_CPUS, OPT_MEM, OPT_ENTRY, OPT_VERBOSE };

int cli_parse_boot(int argc, char **argv, struct boot_opts *o, char *err, size_t errlen)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "cmdline", required_argument, NULL, OPT_CMDLINE },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "mem", required_argument, NULL, OPT_MEM },
		{ "entry", required_argument, NULL, OPT_ENTRY },
		{ "verbose", no_argument, NULL, OPT_VERBOSE },
		{ 0 },
	};
	*o = (struct boot_opts){ .cmdline = CLI_DEFAULT_CMDLINE, .mem = CLI_DEFAULT_MEM, .cpus = 1 };
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL: o->kernel = optarg; break;
		case OPT_INITRD: o->initrd = optarg; break;
		case OPT_CMDLINE: o->cmdline = optarg; break;
		case OPT_VERBOSE: o->verbose = true; break;
		case OPT_CPUS:
			/* The upper bound against KVM's limit is checked once /dev/kvm is open. */
			if (cli_parse_uint(optarg, 1, 4096, &o->cpus))
				return usage_err(err, errlen, "--cpus '%s': expected a whole number from 1 up", optarg);
			break;
		case OPT_MEM: {
			int rc = cli_parse_size(optarg, &o->mem);
			if (rc)
				return usage_err(err, errlen, "--mem '%s': expected a size like 256M or 2G", optarg);
			if (o->mem < GMEM_MIN_SIZE || o->mem > GMEM_MAX_SIZE)
				return usage_err(err, errlen, "--mem '%s': must be between 2 MiB and 1 TiB", optarg);
			if (o->mem & 0xfff)
				return usage_err(err, errlen, "--mem '%s': must be a multiple of 4 KiB", optarg);
			break;
		}
		case OPT_ENTRY:
			if (!strcmp(optarg, "auto"))
				o->entry = BOOT_ENTRY_AUTO;
			else if (!strcmp(optarg, "linux64"))
				o->entry = BOOT_ENTRY_LINUX64;
			else if (!strcmp(optarg, "pvh"))
				o->entry = BOOT_ENTRY_PVH;
			else
				return usage_err(err, errlen, "--entry '%s': expected auto, linux64 or pvh", optarg);
			break;
		case ':':
			return usage_err(err, errlen, "%s needs a value", argv[optind - 1]);
		default:
			return usage_err(err, errlen, "unknown option '%s' (see padcell --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_err(err, errlen, "unexpected argument '%s' (see padcell --help)", argv[optind]);
	if (!o->kernel)
		return usage_err(err, errlen, "boot needs --kernel FILE");
	return 0;
}

void cli_usage(FILE *out)
{
	fputs("usage: padcell <command> [options]\n"
	      "\n"
	      "commands:\n"
	      "  boot --kernel FILE [--initrd FILE] [--cmdline STR] [--cpus N] [--mem SIZE]\n"
	      "       [--entry auto|linux64|pvh] [--verbose]\n"
	      "      Boot a VM with its serial console on this terminal (Ctrl-A x quits).\n"
	      "      --kernel   vmlinux ELF (PVH note used when present) or bzImage\n"
	      "      --mem      guest RAM, e.g. 256M, 2G (bare number = MiB; default 256M)\n"
	      "      --cpus     vCPUs (default 1)\n"
	      "      --cmdline  kernel command line (default \"" CLI_DEFAULT_CMDLINE "\")\n"
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
	      "  128+N  padcell was stopped by signal N (Ctrl-A x counts as 130)\n",
	      out);
}
