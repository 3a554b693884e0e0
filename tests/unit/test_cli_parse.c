/* cli_parse_size, cli_parse_uint and cli_parse_boot: what the user may type. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "vmm/cmd/cli.h"

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define TiB (1ULL << 40)

static void size_ok(const char *s, uint64_t want)
{
	uint64_t v = 0xdead;
	int rc = cli_parse_size(s, &v);
	cr_assert_eq(rc, 0, "'%s' rejected (%d)", s, rc);
	cr_assert_eq(v, want, "'%s' = %llu, want %llu", s, (unsigned long long)v, (unsigned long long)want);
}

static void size_bad(const char *s)
{
	uint64_t v = 0xdead;
	int rc = cli_parse_size(s, &v);
	cr_assert(rc == -EINVAL || rc == -ERANGE, "'%s' gave %d", s, rc);
	cr_assert_eq(v, 0xdead, "'%s' wrote the output on failure", s);
}

Test(cli_size, good_values)
{
	size_ok("256M", 256 * MiB);
	size_ok("2G", 2 * GiB);
	size_ok("512K", 512 * KiB);
	size_ok("1T", TiB);
	size_ok("64", 64 * MiB);
	size_ok("4KiB", 4 * KiB);
	size_ok("1GB", GiB);
	size_ok("1g", GiB);
	size_ok("3gib", 3 * GiB);
	size_ok("128MiB", 128 * MiB);
	size_ok("4096B", 4096);
	size_ok("0", 0);
	size_ok("16777215T", 16777215ULL << 40);
}

Test(cli_size, bad_values)
{
	size_bad("");
	size_bad("abc");
	size_bad("12Q");
	size_bad("-1");
	size_bad("+1G");
	size_bad("1.5G");
	size_bad(" 1G");
	size_bad("1G ");
	size_bad("1GG");
	size_bad("1Gi");
	size_bad("1iB");
	size_bad("1BB");
	size_bad("M");
	size_bad("0x100");
}

Test(cli_size, overflow)
{
	uint64_t v;
	cr_assert_eq(cli_parse_size("99999999999T", &v), -ERANGE);
	cr_assert_eq(cli_parse_size("16777216T", &v), -ERANGE, "2^64 bytes");
	cr_assert_eq(cli_parse_size("17592186044416", &v), -ERANGE, "2^44 MiB = 2^64 bytes");
	cr_assert_eq(cli_parse_size("99999999999999999999999", &v), -ERANGE, "beyond strtoull");
	cr_assert_neq(cli_parse_size(NULL, &v), 0);
}

Test(cli_uint, bounds)
{
	unsigned v = 77;
	cr_assert_eq(cli_parse_uint("1", 1, 4096, &v), 0);
	cr_assert_eq(v, 1);
	cr_assert_eq(cli_parse_uint("4096", 1, 4096, &v), 0);
	cr_assert_eq(v, 4096);
	cr_assert_eq(cli_parse_uint("0", 0, 0, &v), 0);
	cr_assert_eq(v, 0);
	v = 77;
	cr_assert_eq(cli_parse_uint("0", 1, 4096, &v), -ERANGE);
	cr_assert_eq(cli_parse_uint("4097", 1, 4096, &v), -ERANGE);
	cr_assert_eq(cli_parse_uint("4294967296", 0, UINT_MAX, &v), -ERANGE, "2^32 does not fit");
	cr_assert_eq(cli_parse_uint("99999999999999999999999", 0, UINT_MAX, &v), -ERANGE);
	cr_assert_eq(cli_parse_uint("4294967295", 0, UINT_MAX, &v), 0);
	cr_assert_eq(v, UINT_MAX);
}

Test(cli_uint, malformed)
{
	unsigned v = 77;
	const char *bad[] = { "", "x", "-1", "+1", " 1", "1 ", "1k", "0x10", "2.0" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(cli_parse_uint(bad[i], 0, 100, &v), -EINVAL, "'%s'", bad[i]);
	cr_assert_eq(v, 77, "output untouched on failure");
	cr_assert_neq(cli_parse_uint(NULL, 0, 100, &v), 0);
}

/* ---- cli_parse_boot ---- */

static struct boot_opts o;
static char err[256];

static int parse(int argc, char **argv)
{
	err[0] = '\0';
	return cli_parse_boot(argc, argv, &o, err, sizeof(err));
}

#define ARGV(...) (char *[]){ "boot", __VA_ARGS__, NULL }
#define ARGC(...) ((int)(sizeof((char *[]){ "boot", __VA_ARGS__ }) / sizeof(char *)))
#define PARSE(...) parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__))

static void assert_usage_error(int rc)
{
	cr_assert_neq(rc, 0);
	cr_assert_neq(err[0], '\0', "error message");
	cr_assert_null(strchr(err, '\n'), "one line: %s", err);
}

Test(cli_boot, defaults)
{
	cr_assert_eq(PARSE("--kernel", "vmlinux"), 0, "%s", err);
	cr_assert_str_eq(o.kernel, "vmlinux");
	cr_assert_null(o.initrd);
	cr_assert_str_eq(o.cmdline, CLI_DEFAULT_CMDLINE);
	cr_assert_eq(o.mem, CLI_DEFAULT_MEM);
	cr_assert_eq(o.cpus, 1);
	cr_assert_eq(o.entry, BOOT_ENTRY_AUTO);
	cr_assert_not(o.verbose);
}

Test(cli_boot, all_options)
{
	cr_assert_eq(PARSE("--kernel", "k", "--initrd", "i", "--cmdline", "quiet", "--cpus", "4",
			   "--mem", "1G", "--entry", "pvh", "--verbose"), 0, "%s", err);
	cr_assert_str_eq(o.initrd, "i");
	cr_assert_str_eq(o.cmdline, "quiet");
	cr_assert_eq(o.cpus, 4);
	cr_assert_eq(o.mem, GiB);
	cr_assert_eq(o.entry, BOOT_ENTRY_PVH);
	cr_assert(o.verbose);
	cr_assert_eq(PARSE("--kernel=k", "--mem=512", "--entry=linux64"), 0, "%s", err);
	cr_assert_eq(o.mem, 512 * MiB);
	cr_assert_eq(o.entry, BOOT_ENTRY_LINUX64);
}

Test(cli_boot, errors)
{
	assert_usage_error(PARSE("--initrd", "i"));                  /* no --kernel */
	cr_assert(strstr(err, "--kernel") != NULL, "%s", err);
	assert_usage_error(PARSE("--kernel", "k", "--bogus"));
	cr_assert(strstr(err, "--bogus") != NULL, "names the flag: %s", err);
	assert_usage_error(PARSE("--kernel"));                        /* missing value */
	assert_usage_error(PARSE("--kernel", "k", "stray"));
	assert_usage_error(PARSE("--kernel", "k", "--mem", "abc"));
	assert_usage_error(PARSE("--kernel", "k", "--mem", "0"));
	assert_usage_error(PARSE("--kernel", "k", "--mem", "1M"));    /* below 2 MiB */
	assert_usage_error(PARSE("--kernel", "k", "--mem", "5T"));    /* above 1 TiB */
	assert_usage_error(PARSE("--kernel", "k", "--mem", "4097K")); /* not 4 KiB granular */
	assert_usage_error(PARSE("--kernel", "k", "--cpus", "0"));
	assert_usage_error(PARSE("--kernel", "k", "--cpus", "5000"));
	assert_usage_error(PARSE("--kernel", "k", "--cpus", "two"));
	assert_usage_error(PARSE("--kernel", "k", "--entry", "bios"));
}

Test(cli_boot, reparse_resets_state)
{
	cr_assert_neq(PARSE("--kernel", "k", "--bogus"), 0);
	cr_assert_eq(PARSE("--kernel", "k2"), 0, "getopt state must not leak between calls: %s", err);
	cr_assert_str_eq(o.kernel, "k2");
}

Test(cli_boot, api_sock)
{
	cr_assert_eq(PARSE("--kernel", "k"), 0, "%s", err);
	cr_assert_null(o.api_sock, "no control socket unless asked");
	cr_assert_eq(PARSE("--kernel", "k", "--api-sock", "/run/vm.sock"), 0, "%s", err);
	cr_assert_str_eq(o.api_sock, "/run/vm.sock");
	cr_assert_eq(PARSE("--api-sock=/tmp/a", "--kernel", "k"), 0, "%s", err);
	cr_assert_str_eq(o.api_sock, "/tmp/a");
	assert_usage_error(PARSE("--kernel", "k", "--api-sock"));
	assert_usage_error(PARSE("--kernel", "k", "--api-sock", ""));
	assert_usage_error(PARSE("--kernel", "k", "--api-sock", "/a", "--api-sock", "/b"));
	cr_assert(strstr(err, "twice") != NULL, "%s", err);
	char longp[120];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	assert_usage_error(PARSE("--kernel", "k", "--api-sock", longp));
	cr_assert(strstr(err, "107") != NULL, "%s", err);
	longp[107] = '\0';
	cr_assert_eq(PARSE("--kernel", "k", "--api-sock", longp), 0, "107 bytes fit: %s", err);
}

/* ---- cli_parse_run ---- */

static struct run_opts ro;
static char *run_argv[64];

static int parse_run(int argc, char **argv)
{
	err[0] = '\0';
	return cli_parse_run(argc, argv, &ro, err, sizeof(err));
}

/* ro.argv points into the argv given, so the array must outlive the assertion that parses:
 * a compound literal inside cr_assert_eq() ends with the assertion's block. */
#define RARGV(...) memcpy(run_argv, (char *[]){ "run", __VA_ARGS__, NULL }, sizeof((char *[]){ "run", __VA_ARGS__, NULL }))
#define RARGC(...) ((int)(sizeof((char *[]){ "run", __VA_ARGS__ }) / sizeof(char *)))
#define RUN(...) parse_run(RARGC(__VA_ARGS__), RARGV(__VA_ARGS__))

Test(cli_run, command_after_double_dash)
{
	cr_assert_eq(RUN("--", "python3", "-c", "print(1)"), 0, "%s", err);
	cr_assert_eq(ro.argc, 3);
	cr_assert_str_eq(ro.argv[0], "python3");
	cr_assert_str_eq(ro.argv[2], "print(1)");
	cr_assert_null(ro.vm.kernel, "the default kernel is resolved later");
	cr_assert_null(ro.rootfs);
	cr_assert_eq(ro.vm.mem, CLI_DEFAULT_MEM);
	cr_assert_eq(ro.boot_timeout, CLI_DEFAULT_BOOT_TIMEOUT);
	cr_assert_eq(ro.timeout, 0);
	/* options after -- belong to the command */
	cr_assert_eq(RUN("--mem", "512M", "--", "ls", "--mem"), 0, "%s", err);
	cr_assert_eq(ro.vm.mem, 512 * MiB);
	cr_assert_str_eq(ro.argv[1], "--mem");
}

Test(cli_run, run_options)
{
	cr_assert_eq(RUN("--env", "A=1", "--env", "B=x=y", "--cwd", "/tmp", "--user", "1000:1000", "--timeout", "5",
			 "--no-stdin", "--cpus", "2", "--rootfs", "r.img", "--kernel", "k", "--", "true"), 0, "%s", err);
	cr_assert_eq(ro.nenv, 2);
	cr_assert_str_eq(ro.env[1], "B=x=y");
	cr_assert_null(ro.env[2]);
	cr_assert_str_eq(ro.cwd, "/tmp");
	cr_assert_str_eq(ro.user, "1000:1000");
	cr_assert_eq(ro.timeout, 5);
	cr_assert(ro.no_stdin);
	cr_assert_eq(ro.vm.cpus, 2);
	cr_assert_str_eq(ro.rootfs, "r.img");
	cr_assert_str_eq(ro.vm.kernel, "k");
	cr_assert_eq(RUN("--from", "snap", "--vsock", "/tmp/v.sock", "--", "true"), 0, "%s", err);
	cr_assert_str_eq(ro.from, "snap");
	cr_assert_eq(RUN("--snapshot-when-ready", "snap"), 0, "no command is fine when only snapshotting: %s", err);
	cr_assert_null(ro.argv);
	cr_assert_not(ro.allow_pvm, "a PVM host's refusal is on by default");
	cr_assert_eq(RUN("--allow-pvm", "--", "true"), 0, "%s", err);
	cr_assert(ro.allow_pvm);
	cr_assert_eq(RUN("--from", "snap", "--allow-pvm", "--", "true"), 0, "a permission, not a VM shape: %s", err);
}

Test(cli_run, api_sock)
{
	cr_assert_eq(RUN("--", "true"), 0, "%s", err);
	cr_assert_null(ro.vm.api_sock, "no control socket unless asked");
	cr_assert_eq(RUN("--api-sock", "/run/vm.sock", "--", "true"), 0, "%s", err);
	cr_assert_str_eq(ro.vm.api_sock, "/run/vm.sock");
	cr_assert_eq(RUN("--from", "snap", "--api-sock", "/tmp/a", "--", "true"), 0, "not a VM shape: %s", err);
	cr_assert_str_eq(ro.vm.api_sock, "/tmp/a");
	cr_assert_neq(RUN("--api-sock", "/a", "--api-sock", "/b", "--", "true"), 0);
	cr_assert(strstr(err, "twice") != NULL, "%s", err);
	cr_assert_neq(RUN("--api-sock", "", "--", "true"), 0);
	cr_assert(strstr(err, "107") != NULL, "%s", err);
}

Test(cli_run, errors)
{
	assert_usage_error(RUN("--mem", "256M"));                         /* no command */
	cr_assert(strstr(err, "--") != NULL, "says how: %s", err);
	assert_usage_error(RUN("python3"));                               /* no -- */
	assert_usage_error(RUN("--env", "NOEQUALS", "--", "true"));
	assert_usage_error(RUN("--env", "=x", "--", "true"));
	assert_usage_error(RUN("--cwd", "relative", "--", "true"));
	assert_usage_error(RUN("--timeout", "0", "--", "true"));
	assert_usage_error(RUN("--timeout", "soon", "--", "true"));
	assert_usage_error(RUN("--boot-timeout", "0", "--", "true"));
	assert_usage_error(RUN("--bogus", "--", "true"));
	cr_assert(strstr(err, "--bogus") != NULL, "%s", err);
	/* --from fixes the VM's shape */
	assert_usage_error(RUN("--from", "d", "--mem", "1G", "--", "true"));
	cr_assert(strstr(err, "--mem") != NULL, "names the clash: %s", err);
	assert_usage_error(RUN("--from", "d", "--kernel", "k", "--", "true"));
	assert_usage_error(RUN("--from", "d", "--rootfs", "r", "--", "true"));
	assert_usage_error(RUN("--from", "d", "--scratch", "64M", "--", "true"));
	assert_usage_error(RUN("--from", "d", "--snapshot-when-ready", "e", "--", "true"));
}

/* Values point into argv; a PATH cut at a comma is a copy, and argv is left as the user typed it. */
Test(cli_boot, values_point_into_argv_and_cut_ones_are_copies)
{
	char drive[] = "d.img,ro,id=root", vsock[] = "/tmp/v.sock,cid=9", kernel[] = "k", plain[] = "e.img";
	char *argv[] = { "boot", "--kernel", kernel, "--drive", drive, "--drive", plain, "--vsock", vsock, NULL };
	cr_assert_eq(parse(9, argv), 0, "%s", err);
	cr_assert_eq(o.kernel, kernel);
	cr_assert_eq(o.drives[1].path, plain, "a whole value is argv's own string");
	cr_assert_str_eq(o.drives[0].path, "d.img");
	cr_assert_str_eq(o.drives[0].id, "root");
	cr_assert_str_eq(o.vsock_path, "/tmp/v.sock");
	cr_assert_eq(o.vsock_cid, 9);
	cr_assert_str_eq(drive, "d.img,ro,id=root", "argv untouched");
	cr_assert_str_eq(vsock, "/tmp/v.sock,cid=9", "argv untouched");
	cr_assert_eq(o.nowned, 2);
	cli_opts_free(&o);
	cr_assert_eq(o.nowned, 0);
	cli_opts_free(&o); /* twice is fine */
	/* A failed parse keeps nothing. */
	char *bad[] = { "boot", "--kernel", "k", "--drive", "a.img,ro", "--drive", "b.img,rw", NULL };
	cr_assert_neq(parse(7, bad), 0);
	cr_assert_eq(o.nowned, 0);
}

/* ---- --drive-rate, --net-rate-rx, --net-rate-tx ---- */

Test(cli_rate, drive_and_net_rates)
{
	cr_assert_eq(PARSE("--kernel", "k", "--drive", "a.img", "--drive-rate", "0=bytes=1M/1s,bytes-burst=4M,ops=100/1s",
			   "--net-rate-rx", "bytes=512K/100ms", "--net-rate-tx", "ops=10/1s"), 0, "%s", err);
	cr_assert_not_null(o.rates.rate[0]);
	cr_assert_null(o.rates.rate[1]);
	cr_assert_eq(o.rates.rate[0]->bytes.size, 1u << 20);
	cr_assert_eq(o.rates.rate[0]->bytes.refill_ms, 1000);
	cr_assert_eq(o.rates.rate[0]->bytes.one_time_burst, 4u << 20);
	cr_assert_eq(o.rates.rate[0]->ops.size, 100);
	cr_assert(o.net.net, "a NIC rate implies --net");
	cr_assert_eq(o.net.rx_rate.bytes.size, 512u << 10);
	cr_assert_eq(o.net.rx_rate.bytes.refill_ms, 100);
	cr_assert_eq(o.net.tx_rate.ops.size, 10);
	cli_opts_free(&o);
	/* "none" is no limit, and still counts as given */
	cr_assert_eq(PARSE("--kernel", "k", "--drive-rate", "3=none"), 0, "%s", err);
	cr_assert_not_null(o.rates.rate[3]);
	cr_assert(ratelimit_is_unlimited(o.rates.rate[3]));
	cli_opts_free(&o);
}

Test(cli_rate, bad_rates_are_one_line_errors)
{
	static const char *const bad_drive[] = { "bytes=1M/1s", "=bytes=1M/1s", "x=none", "8=none", "0=bytes=1M",
						 "0=bytes=0/1s", "0=ops=5/0", "0=bogus=1", "0=bytes-burst=5", "-1=none",
						 "0=bytes=1M/1s,bytes=2M/1s", "99999999999999999999=none" };
	for (size_t i = 0; i < sizeof(bad_drive) / sizeof(bad_drive[0]); i++) {
		assert_usage_error(PARSE("--kernel", "k", "--drive-rate", (char *)bad_drive[i]));
		cr_assert(strstr(err, "--drive-rate"), "'%s': %s", bad_drive[i], err);
	}
	assert_usage_error(PARSE("--kernel", "k", "--drive-rate", "0=none", "--drive-rate", "0=none"));
	cr_assert(strstr(err, "given twice"), "%s", err);
	assert_usage_error(PARSE("--kernel", "k", "--net-rate-tx", "bytes=1Q/1s"));
	cr_assert(strstr(err, "--net-rate-tx"), "%s", err);
	assert_usage_error(PARSE("--kernel", "k", "--net-rate-rx", "none", "--net-rate-rx", "none"));
	cr_assert(strstr(err, "given twice"), "%s", err);
}

Test(cli_rate, run_from_takes_rates)
{
	/* Limits are not the VM's shape: a clone may have its own. */
	cr_assert_eq(RUN("--from", "snap", "--drive-rate", "0=bytes=1M/1s", "--net-rate-tx", "ops=1/1s", "--", "true"), 0,
		     "%s", err);
	cr_assert_not_null(ro.vm.rates.rate[0]);
	cli_opts_free(&ro.vm);
}
