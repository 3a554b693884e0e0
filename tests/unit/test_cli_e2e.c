/* padcell as a user runs it: exit codes and the one-line error contract, plus tiny KVM guests. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/images.h"
#include "vmm/cmd/check.h"
#include "vmm/jail/jail.h"

struct run {
	int status;       /* exit code, or 128+signal, or -1 on timeout */
	char out[4096];
	char err[4096];
	unsigned err_lines;        /* not counting the cgroup warning below */
	unsigned cgroup_warnings; /* "no cgroup v2 limits" lines, taken out of err */
};

#define CGROUP_WARNING "padcell: warning: no cgroup v2 limits for this VM: "

/*
 * On a host without a delegated cgroup v2 every VM starts with one warning line: the cases below
 * are about the other lines, so it is counted apart and taken out (cli_e2e/cgroup_* check it).
 */
static void err_finish(struct run *r)
{
	r->err_lines = r->cgroup_warnings = 0;
	char *w = r->err;
	for (char *p = r->err; *p;) {
		char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
		if (!strncmp(p, CGROUP_WARNING, strlen(CGROUP_WARNING))) {
			r->cgroup_warnings++;
		} else {
			memmove(w, p, n);
			w += n;
			r->err_lines += nl != NULL;
		}
		p += n;
	}
	*w = '\0';
}

/* build/padcell next to build/tests/unit-tests, unless PADCELL overrides it. */
static const char *padcell_path(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("PADCELL");
	if (env)
		return env;
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	snprintf(path, sizeof(path), "%s/../padcell", dirname(self));
	return path;
}

/*
 * In the child: exec padcell.  A concurrent `make` may be relinking it (the file
 * briefly missing or half-written), so retry for a moment instead of failing.
 */
static void exec_padcell(const char *bin, char *const argv[])
{
	for (int i = 0; i < 100; i++) {
		execv(bin, argv);
		if (errno != ENOENT && errno != ENOEXEC && errno != ETXTBSY && errno != EACCES)
			break;
		usleep(20 * 1000);
	}
	_exit(127);
}

static void slurp(int fd, char *buf, size_t cap)
{
	lseek(fd, 0, SEEK_SET);
	ssize_t n = read(fd, buf, cap - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
}

/*
 * Runs padcell with argv (NULL-terminated, without argv[0]), stdin from /dev/null;
 * sends `sig` when sig is non-zero, once padcell's stdout holds the guest's first byte: by then
 * padcell has blocked the signals its event loop reads (a signal sent earlier, while it is
 * still being exec'd, would kill it before it can say why).
 */
static void run_sig(struct run *r, int timeout_s, int sig, char *const args[])
{
	const char *bin = padcell_path();
	for (int i = 0; i < 100 && access(bin, X_OK) != 0; i++)
		usleep(20 * 1000); /* a concurrent relink */
	cr_assert_eq(access(bin, X_OK), 0, "%s not built (make padcell)", bin);
	char *argv[32] = { (char *)"padcell" };
	int argc = 1;
	for (; args[argc - 1] && argc < 31; argc++)
		argv[argc] = args[argc - 1];
	argv[argc] = NULL;

	char outp[] = "/tmp/padcell-out-XXXXXX", errp[] = "/tmp/padcell-err-XXXXXX";
	int ofd = mkstemp(outp), efd = mkstemp(errp);
	cr_assert(ofd >= 0 && efd >= 0);
	unlink(outp);
	unlink(errp);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		dup2(in, 0);
		dup2(ofd, 1);
		dup2(efd, 2);
		exec_padcell(bin, argv);
	}
	int st = 0;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		struct stat ost;
		if (sig && fstat(ofd, &ost) == 0 && ost.st_size > 0) {
			kill(pid, sig);
			sig = 0;
		}
		if (now.tv_sec - t0.tv_sec >= timeout_s) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			st = -1;
			break;
		}
		usleep(2000);
	}
	r->status = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	slurp(ofd, r->out, sizeof(r->out));
	slurp(efd, r->err, sizeof(r->err));
	err_finish(r);
}

static void run(struct run *r, int timeout_s, char *const args[])
{
	run_sig(r, timeout_s, 0, args);
}

#define RUN(r, ...) run((r), 10, (char *const[]){ __VA_ARGS__, NULL })

/* The error contract: exit 2, exactly one line on stderr, prefixed "padcell: ". */
static void assert_usage(const struct run *r, const char *what)
{
	cr_assert_eq(r->status, 2, "%s: exit %d, stderr: %s", what, r->status, r->err);
	cr_assert_eq(r->err_lines, 1, "%s: %u lines on stderr:\n%s", what, r->err_lines, r->err);
	cr_assert_eq(strncmp(r->err, "padcell: ", 9), 0, "%s: prefix: %s", what, r->err);
}

/* KVM_DEV (as in the kvm tier) points the check elsewhere, to exercise the skip path. */
static bool kvm_usable(void)
{
	const char *dev = getenv("KVM_DEV");
	int fd = open(dev ? dev : "/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

#define REQUIRE_KVM()                                                                   \
	do {                                                                            \
		if (!kvm_usable())                                                      \
			cr_skip_test("/dev/kvm is missing or not accessible");          \
	} while (0)

/* A guest: `code` at 1 MiB, entered in 64-bit mode through the Linux boot protocol. */
static char *guest_file(const uint8_t *code, size_t len)
{
	struct elf_spec s = { .code = code, .code_len = len, .entry = 0x100000 };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	char *path = img_write_tmp(img, n);
	free(img);
	return path;
}

/* mov $0x3f8,%dx; mov $'K',%al; out %al,%dx; mov $0x64,%dx; mov $0xfe,%al; out %al,%dx; hlt; jmp .-1 */
static const uint8_t guest_hello[] = {
	0x66, 0xba, 0xf8, 0x03, 0xb0, 'K', 0xee,
	0x66, 0xba, 0x64, 0x00, 0xb0, 0xfe, 0xee,
	0xf4, 0xeb, 0xfd,
};
/* mov $0x505,%dx; mov $1,%al; out %al,%dx; hlt; jmp */
static const uint8_t guest_panic[] = {
	0x66, 0xba, 0x05, 0x05, 0xb0, 0x01, 0xee, 0xf4, 0xeb, 0xfd,
};
/* mov $0x604,%dx; mov $0x3400,%ax; out %ax,%dx  (PM1a_CNT = SLP_TYP 5 | SLP_EN); hlt; jmp */
static const uint8_t guest_poweroff[] = {
	0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00, 0x34, 0x66, 0xef, 0xf4, 0xeb, 0xfd,
};
/* mov $0x605,%dx; mov $0x34,%al; out %al,%dx  (the same as a byte to PM1a_CNT's high half) */
static const uint8_t guest_poweroff_byte[] = {
	0x66, 0xba, 0x05, 0x06, 0xb0, 0x34, 0xee, 0xf4, 0xeb, 0xfd,
};
/* lea msg(%rip),%rsi; mov $8,%ecx; mov $0x3f8,%dx; cld; rep outsb; then the i8042 reset; msg: */
static const uint8_t guest_rep_outsb[] = {
	0x48, 0x8d, 0x35, 0x16, 0x00, 0x00, 0x00, 0xb9, 0x08, 0x00, 0x00, 0x00,
	0x66, 0xba, 0xf8, 0x03, 0xfc, 0xf3, 0x6e,
	0x66, 0xba, 0x64, 0x00, 0xb0, 0xfe, 0xee, 0xf4, 0xeb, 0xfd,
	'S', 'U', 'C', 'C', 'E', 'S', 'S', '\n',
};
/*
 * in from unclaimed port 0x3e8 and from COM1's LSR, echo both bytes to COM1, reset:
 * mov $0x3e8,%dx; in (%dx),%al; mov $0x3f8,%dx; out %al,(%dx);
 * mov $0x3fd,%dx; in (%dx),%al; mov $0x3f8,%dx; out %al,(%dx); reset
 */
static const uint8_t guest_port_reads[] = {
	0x66, 0xba, 0xe8, 0x03, 0xec, 0x66, 0xba, 0xf8, 0x03, 0xee,
	0x66, 0xba, 0xfd, 0x03, 0xec, 0x66, 0xba, 0xf8, 0x03, 0xee,
	0x66, 0xba, 0x64, 0x00, 0xb0, 0xfe, 0xee, 0xf4, 0xeb, 0xfd,
};
/* 64-bit entry: cmpw $0xaa55,0x1fe(%rsi) (boot_params.hdr.boot_flag); print 'L' if equal, else 'F' */
static const uint8_t guest_check_zero_page[] = {
	0x66, 0x81, 0xbe, 0xfe, 0x01, 0x00, 0x00, 0x55, 0xaa,
	0xb0, 'L', 0x74, 0x02, 0xb0, 'F',
	0x66, 0xba, 0xf8, 0x03, 0xee,
	0x66, 0xba, 0x64, 0x00, 0xb0, 0xfe, 0xee, 0xf4, 0xeb, 0xfd,
};
/* 32-bit PVH entry: cmpl $0x336ec578,(%ebx) (hvm_start_info.magic); print 'P' if equal, else 'F' */
static const uint8_t guest_check_start_info[] = {
	0x81, 0x3b, 0x78, 0xc5, 0x6e, 0x33,
	0xb0, 'P', 0x74, 0x02, 0xb0, 'F',
	0x66, 0xba, 0xf8, 0x03, 0xee,
	0x66, 0xba, 0x64, 0x00, 0xb0, 0xfe, 0xee, 0xf4, 0xeb, 0xfd,
};
/* mov $0x3f8,%dx; mov $'S',%al; out %al,%dx; then cli; hlt; jmp .-1: says it runs, then
 * sleeps until padcell is stopped from outside */
static const uint8_t guest_sleep[] = { 0x66, 0xba, 0xf8, 0x03, 0xb0, 'S', 0xee, 0xfa, 0xf4, 0xeb, 0xfd };
/* ud2: no IDT, so #UD escalates to a triple fault */
static const uint8_t guest_crash[] = { 0x0f, 0x0b };

/* ---- usage errors: no KVM needed ---- */

Test(cli_e2e, no_args, .timeout = 15)
{
	struct run r;
	run(&r, 10, (char *const[]){ NULL });
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "usage") != NULL, "usage on stderr: %s", r.err);
}

Test(cli_e2e, help_and_version, .timeout = 15)
{
	struct run r;
	RUN(&r, "--help");
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "usage") != NULL, "usage on stdout");
	cr_assert_eq(r.err[0], '\0', "nothing on stderr");
	RUN(&r, "--version");
	cr_assert_eq(r.status, 0);
	cr_assert_eq(strncmp(r.out, "padcell ", 8), 0, "%s", r.out);
}

Test(cli_e2e, unknown_command, .timeout = 15)
{
	struct run r;
	RUN(&r, "frobnicate");
	assert_usage(&r, "unknown command");
	cr_assert(strstr(r.err, "frobnicate") != NULL, "%s", r.err);
}

/* serve: a static padcell (the default) has only the stub's one line; a dynamic one checks its flags. */
Test(cli_e2e, serve_usage, .timeout = 15)
{
	struct run r;
	RUN(&r, "serve");
	assert_usage(&r, "serve");
	if (strstr(r.err, "make STATIC=0"))
		return;
	cr_assert(strstr(r.err, "--template") != NULL, "%s", r.err);
	RUN(&r, "serve", "--template", "base=/nonexistent/snapshot");
	assert_usage(&r, "serve --template missing");
	RUN(&r, "serve", "--listen", "localhost:3000", "--template", "base=/tmp");
	assert_usage(&r, "serve --listen");
	cr_assert(strstr(r.err, "--listen") != NULL, "%s", r.err);
	RUN(&r, "serve", "--max-sandboxes", "0", "--template", "base=/tmp");
	assert_usage(&r, "serve --max-sandboxes 0");
	cr_assert(strstr(r.err, "--max-sandboxes") != NULL, "%s", r.err);
}

/* How many entries dir has (. and .. not counted). */
static unsigned dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "%s", dir);
	unsigned n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

/* template build's argument errors: exit 2, one line, nothing made in the templates directory. */
Test(cli_e2e, template_build_usage, .timeout = 60)
{
	char d[] = "/tmp/padcell-tpl-usage.XXXXXX";
	cr_assert_not_null(mkdtemp(d));
	char img[64];
	snprintf(img, sizeof(img), "%s.img", d);
	fclose(fopen(img, "w"));
	struct run r;
	RUN(&r, "template");
	assert_usage(&r, "template alone");
	RUN(&r, "template", "frob", "x");
	assert_usage(&r, "template frob");
	RUN(&r, "template", "build");
	assert_usage(&r, "no name");
	RUN(&r, "template", "build", "--rootfs", img);
	assert_usage(&r, "a flag for a name");
	const char *bad_names[] = { "a/b", ".hidden", "sp ace", "x-123456789-123456789-123456789-123456789-123456789-123456789-1234" };
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		RUN(&r, "template", "build", (char *)bad_names[i], "--rootfs", img, "--kernel", img, "--dir", d);
		assert_usage(&r, bad_names[i]);
		cr_assert(strstr(r.err, "name"), "%s", r.err);
	}
	RUN(&r, "template", "build", "x", "--bogus", "--dir", d);
	assert_usage(&r, "unknown flag");
	cr_assert(strstr(r.err, "--bogus"), "%s", r.err);
	RUN(&r, "template", "build", "x", "--run");
	assert_usage(&r, "--run without a value");
	RUN(&r, "template", "build", "x", "--rootfs", img, "--kernel", img, "--dir", d, "--run", "");
	assert_usage(&r, "an empty --run");
	RUN(&r, "template", "build", "x", "--rootfs", img, "--kernel", img, "--dir", d, "true");
	assert_usage(&r, "a stray argument");
	RUN(&r, "template", "build", "x", "--rootfs", "/nonexistent/image.ext4", "--kernel", img, "--dir", d);
	assert_usage(&r, "missing image");
	cr_assert(strstr(r.err, "/nonexistent/image.ext4"), "%s", r.err);
	RUN(&r, "template", "build", "x", "--rootfs", img, "--kernel", "/nonexistent/vmlinuz", "--dir", d);
	assert_usage(&r, "missing kernel");
	RUN(&r, "template", "build", "x", "--rootfs", img, "--kernel", img, "--dir", d, "--mem", "banana");
	assert_usage(&r, "a bad --mem (run's parser)");
	cr_assert(strstr(r.err, "--mem"), "%s", r.err);
	cr_assert_eq(dir_entries(d), 0, "nothing made by the refused builds");
	/* an existing template is kept unless --force */
	char x[96];
	snprintf(x, sizeof(x), "%s/x", d);
	cr_assert_eq(mkdir(x, 0755), 0);
	RUN(&r, "template", "build", "x", "--rootfs", img, "--kernel", img, "--dir", d);
	assert_usage(&r, "an existing target");
	cr_assert(strstr(r.err, "--force"), "%s", r.err);
	cr_assert_eq(dir_entries(d), 1, "only x");
	cr_assert_eq(dir_entries(x), 0, "x untouched");
	rmdir(x);
	rmdir(d);
	unlink(img);
}

/*
 * A build whose run fails (here the kernel is not one; on a PVM host the cold boot is refused first)
 * leaves nothing: no template, no half-made build directory beside it.
 */
Test(cli_e2e, template_build_failure_leaves_nothing, .timeout = 60)
{
	char d[] = "/tmp/padcell-tpl-fail.XXXXXX";
	cr_assert_not_null(mkdtemp(d));
	char img[64];
	snprintf(img, sizeof(img), "%s.img", d);
	FILE *f = fopen(img, "w");
	fputs("not a kernel, not an image\n", f);
	fclose(f);
	struct run r;
	RUN(&r, "template", "build", "x", "--rootfs", img, "--kernel", img, "--dir", d, "--run", "echo hi >/tmp/f");
	cr_assert_neq(r.status, 0, "a bogus kernel built a template: %s", r.out);
	cr_assert_neq(r.status, -1, "timed out");
	cr_assert(strstr(r.err, "padcell: "), "%s", r.err);
	cr_assert_eq(dir_entries(d), 0, "left behind in %s (stderr: %s)", d, r.err);
	rmdir(d);
	unlink(img);
}

Test(cli_e2e, unknown_flag, .timeout = 15)
{
	struct run r;
	RUN(&r, "boot", "--kernel", "/nonexistent", "--frob");
	assert_usage(&r, "unknown flag");
	cr_assert(strstr(r.err, "--frob") != NULL, "%s", r.err);
}

Test(cli_e2e, missing_kernel_flag, .timeout = 15)
{
	struct run r;
	RUN(&r, "boot");
	assert_usage(&r, "boot without --kernel");
	RUN(&r, "boot", "--kernel");
	assert_usage(&r, "--kernel without a value");
}

Test(cli_e2e, kernel_file_missing, .timeout = 15)
{
	struct run r;
	RUN(&r, "boot", "--kernel", "/nonexistent/padcell-vmlinux");
	assert_usage(&r, "missing kernel file");
	cr_assert(strstr(r.err, "/nonexistent/padcell-vmlinux") != NULL, "names the file: %s", r.err);
}

Test(cli_e2e, kernel_not_a_file, .timeout = 15)
{
	struct run r;
	RUN(&r, "boot", "--kernel", "/tmp");
	assert_usage(&r, "directory as kernel");
	char *empty = img_write_tmp("", 0);
	RUN(&r, "boot", "--kernel", empty);
	assert_usage(&r, "empty kernel");
	unlink(empty);
	free(empty);
}

Test(cli_e2e, garbage_kernel, .timeout = 15)
{
	uint8_t junk[4096];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	char *path = img_write_tmp(junk, sizeof(junk));
	struct run r;
	RUN(&r, "boot", "--kernel", path);
	assert_usage(&r, "garbage kernel");
	cr_assert(strstr(r.err, "not bootable") != NULL, "%s", r.err);
	cr_assert(strstr(r.err, path) != NULL, "names the file: %s", r.err);
	unlink(path);
	free(path);
}

Test(cli_e2e, truncated_elf, .timeout = 15)
{
	size_t n;
	struct elf_spec s = { .code = guest_hello, .code_len = sizeof(guest_hello) };
	uint8_t *img = img_elf(&s, &n);
	char *path = img_write_tmp(img, 40);
	struct run r;
	RUN(&r, "boot", "--kernel", path);
	assert_usage(&r, "truncated ELF");
	cr_assert(strstr(r.err, "not bootable") != NULL, "%s", r.err);
	unlink(path);
	free(path);
	free(img);
}

Test(cli_e2e, bad_mem, .timeout = 20)
{
	char *k = guest_file(guest_hello, sizeof(guest_hello));
	const char *bad[] = { "abc", "0", "5T", "1.5G", "-1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct run r;
		RUN(&r, "boot", "--kernel", k, "--mem", (char *)bad[i]);
		assert_usage(&r, bad[i]);
		cr_assert(strstr(r.err, "--mem") != NULL, "%s", r.err);
	}
	unlink(k);
	free(k);
}

Test(cli_e2e, bad_cpus_and_entry, .timeout = 20)
{
	char *k = guest_file(guest_hello, sizeof(guest_hello));
	struct run r;
	RUN(&r, "boot", "--kernel", k, "--cpus", "0");
	assert_usage(&r, "--cpus 0");
	RUN(&r, "boot", "--kernel", k, "--cpus", "5000");
	assert_usage(&r, "--cpus 5000");
	RUN(&r, "boot", "--kernel", k, "--entry", "bios");
	assert_usage(&r, "--entry bios");
	RUN(&r, "boot", "--kernel", k, "--entry", "pvh");
	assert_usage(&r, "--entry pvh without the note");
	cr_assert(strstr(r.err, "PVH") != NULL, "%s", r.err);
	unlink(k);
	free(k);
}

Test(cli_e2e, missing_initrd_file, .timeout = 15)
{
	char *k = guest_file(guest_hello, sizeof(guest_hello));
	struct run r;
	RUN(&r, "boot", "--kernel", k, "--initrd", "/nonexistent/initrd.img");
	assert_usage(&r, "missing initrd");
	cr_assert(strstr(r.err, "/nonexistent/initrd.img") != NULL, "%s", r.err);
	unlink(k);
	free(k);
}

/* ---- with KVM ---- */

Test(cli_e2e, memory_too_small_for_initrd, .timeout = 20)
{
	REQUIRE_KVM();
	char *k = guest_file(guest_hello, sizeof(guest_hello));
	size_t big = 6 << 20;
	uint8_t *blob = calloc(1, big);
	char *initrd = img_write_tmp(blob, big);
	struct run r;
	RUN(&r, "boot", "--kernel", k, "--initrd", initrd, "--mem", "4M");
	assert_usage(&r, "6 MiB initrd in 4 MiB");
	cr_assert(strstr(r.err, "memory") != NULL, "mentions memory: %s", r.err);
	unlink(initrd);
	unlink(k);
	free(initrd);
	free(k);
	free(blob);
}

static void boot_guest_cpus(struct run *r, const uint8_t *code, size_t len, const char *cpus)
{
	char *k = guest_file(code, len);
	run(r, 10, (char *const[]){ "boot", "--kernel", k, "--mem", "16M", "--cpus", (char *)cpus, NULL });
	unlink(k);
	free(k);
}

static void boot_guest(struct run *r, const uint8_t *code, size_t len)
{
	boot_guest_cpus(r, code, len, "1");
}

Test(cli_e2e, cmdline_too_long, .timeout = 20)
{
	REQUIRE_KVM();
	char *k = guest_file(guest_hello, sizeof(guest_hello));
	char *cl = malloc(5000);
	memset(cl, 'x', 4999);
	cl[4999] = '\0';
	struct run r;
	RUN(&r, "boot", "--kernel", k, "--cmdline", cl);
	assert_usage(&r, "5000-byte command line");
	free(cl);
	unlink(k);
	free(k);
}

Test(cli_e2e, more_cpus_than_acpi_describes, .timeout = 20)
{
	REQUIRE_KVM();
	char *k = guest_file(guest_hello, sizeof(guest_hello));
	struct run r;
	RUN(&r, "boot", "--kernel", k, "--cpus", "255");
	assert_usage(&r, "--cpus 255");
	cr_assert(strstr(r.err, "--cpus") != NULL, "%s", r.err);
	unlink(k);
	free(k);
}

Test(cli_e2e, guest_rep_outsb, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	boot_guest(&r, guest_rep_outsb, sizeof(guest_rep_outsb));
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, "SUCCESS\n", "string I/O: every byte of rep outsb");
}

Test(cli_e2e, guest_port_reads, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	boot_guest(&r, guest_port_reads, sizeof(guest_port_reads));
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_eq(strlen(r.out), 2, "two bytes echoed");
	cr_assert_eq((uint8_t)r.out[0], 0xff, "unclaimed port reads all-ones");
	cr_assert_eq((uint8_t)r.out[1], 0x60, "LSR: transmitter empty");
}

Test(cli_e2e, guest_smp_boot_cpu_runs, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	boot_guest_cpus(&r, guest_hello, sizeof(guest_hello), "2");
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, "K");
}

Test(cli_e2e, guest_prints_and_resets, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	boot_guest(&r, guest_hello, sizeof(guest_hello));
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, "K", "console output");
}

Test(cli_e2e, guest_panic_exits_3, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	boot_guest(&r, guest_panic, sizeof(guest_panic));
	cr_assert_eq(r.status, 3, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_eq(r.err_lines, 1, "one line saying why: %s", r.err);
	cr_assert_eq(strncmp(r.err, "padcell: ", 9), 0, "%s", r.err);
}

Test(cli_e2e, guest_acpi_poweroff_exits_0, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	boot_guest(&r, guest_poweroff, sizeof(guest_poweroff));
	cr_assert_eq(r.status, 0, "word write: exit %d, stderr: %s", r.status, r.err);
	boot_guest(&r, guest_poweroff_byte, sizeof(guest_poweroff_byte));
	cr_assert_eq(r.status, 0, "byte write: exit %d, stderr: %s", r.status, r.err);
}

Test(cli_e2e, guest_triple_fault_exits_4, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	boot_guest(&r, guest_crash, sizeof(guest_crash));
	cr_assert_eq(r.status, 4, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_eq(strncmp(r.err, "padcell: ", 9), 0, "%s", r.err);
}

Test(cli_e2e, linux64_entry_sees_boot_params, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	boot_guest(&r, guest_check_zero_page, sizeof(guest_check_zero_page));
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, "L", "RSI must point at boot_params with boot_flag 0xaa55");
}

Test(cli_e2e, pvh_entry_sees_start_info, .timeout = 20)
{
	REQUIRE_KVM();
	struct elf_spec s = { .code = guest_check_start_info, .code_len = sizeof(guest_check_start_info),
			      .entry = 0x100000, .pvh_descsz = 4, .pvh_entry = 0x100000 };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	char *k = img_write_tmp(img, n);
	struct run r;
	RUN(&r, "boot", "--kernel", k, "--mem", "16M");
	cr_assert_eq(r.status, 0, "auto: exit %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, "P", "auto picks PVH; EBX must point at hvm_start_info");
	RUN(&r, "boot", "--kernel", k, "--mem", "16M", "--entry", "pvh");
	cr_assert_eq(r.status, 0, "--entry pvh: exit %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, "P");
	unlink(k);
	free(k);
	free(img);
}

Test(cli_e2e, sigterm_exits_143, .timeout = 20)
{
	REQUIRE_KVM();
	char *k = guest_file(guest_sleep, sizeof(guest_sleep));
	struct run r;
	run_sig(&r, 10, SIGTERM, (char *const[]){ "boot", "--kernel", k, "--mem", "16M", NULL });
	cr_assert_eq(r.status, 128 + SIGTERM, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_eq(r.err_lines, 1, "one line saying why: %s", r.err);
	cr_assert_eq(strncmp(r.err, "padcell: ", 9), 0, "%s", r.err);
	unlink(k);
	free(k);
}

Test(cli_e2e, check_command, .timeout = 20)
{
	/* 0 when guests can run, 1 when the host has a problem (no /dev/kvm, or PVM). */
	struct run r;
	RUN(&r, "check");
	cr_assert(r.status == 0 || r.status == 1, "check: exit %d\n%s%s", r.status, r.out, r.err);
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		cr_assert_eq(r.status, 1, "check without /dev/kvm must fail");
	cr_assert(strstr(r.out, "result:") != NULL, "check ends with a result line:\n%s", r.out);
}

/* ---- cgroup v2 limits where there is no delegated cgroup v2 (this project's hosts: v1) ---- */

static bool cgroup_delegated(void)
{
	struct jail_support js;
	jail_probe(&js);
	return js.cgroup2_delegated;
}

Test(cli_e2e, cgroup_missing_one_warning, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	boot_guest(&r, guest_poweroff, sizeof(guest_poweroff));
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_eq(r.cgroup_warnings, cgroup_delegated() ? 0 : 1, "the cgroup warning, once where cgroup v2 is not ours");
	cr_assert_eq(r.err_lines, 0, "nothing else: %s", r.err);
	/* --no-jail asks for no limits: only its own warning */
	char *k = guest_file(guest_poweroff, sizeof(guest_poweroff));
	RUN(&r, "boot", "--kernel", k, "--mem", "16M", "--no-jail");
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_eq(r.cgroup_warnings, 0, "%s", r.err);
	unlink(k);
	free(k);
}

Test(cli_e2e, cgroup_missing_explicit_limit_refused, .timeout = 30)
{
	if (cgroup_delegated())
		cr_skip_test("cgroup v2 is delegated here: the nested tier's cgroup cases cover the limits");
	char *k = guest_file(guest_hello, sizeof(guest_hello));
	static const char *const flags[][2] = { { "--cpu-quota", "0.5" }, { "--mem-limit", "512M" }, { "--io-limit", "10M" } };
	for (unsigned i = 0; i < 3; i++) {
		struct run r;
		RUN(&r, "boot", "--kernel", k, "--mem", "16M", (char *)flags[i][0], (char *)flags[i][1]);
		assert_usage(&r, flags[i][0]);
		cr_assert(strstr(r.err, "cgroup v2") != NULL, "%s: says why: %s", flags[i][0], r.err);
		cr_assert_eq(r.out[0], '\0', "%s: the guest never ran: '%s'", flags[i][0], r.out);
		cr_assert_eq(r.cgroup_warnings, 0, "an error, not a warning: %s", r.err);
		/* also with --no-jail: a limit by name is still a limit */
		RUN(&r, "boot", "--kernel", k, "--mem", "16M", "--no-jail", (char *)flags[i][0], (char *)flags[i][1]);
		cr_assert_eq(r.status, 2, "--no-jail %s: exit %d", flags[i][0], r.status);
		cr_assert(strstr(r.err, "cgroup v2") != NULL, "%s", r.err);
	}
	/* run and restore take them too, and refuse them the same way before anything is made */
	struct run r;
	RUN(&r, "restore", "--from", "/nonexistent-dir", "--cpu-quota", "1");
	assert_usage(&r, "restore --cpu-quota");
	cr_assert(strstr(r.err, "cgroup v2") != NULL, "%s", r.err);
	RUN(&r, "boot", "--kernel", k, "--cpu-quota", "0");
	assert_usage(&r, "--cpu-quota 0");
	cr_assert(strstr(r.err, "--cpu-quota '0'") != NULL, "%s", r.err);
	unlink(k);
	free(k);
}

/* ---- run on a PVM host: refused at once, booted only with --allow-pvm ---- */

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The refusal: exit 2, one line, naming PVM, the way out (make demo) and the flag that insists. */
static void assert_pvm_refusal(const struct run *r, double secs, const char *what)
{
	assert_usage(r, what);
	cr_assert(strstr(r->err, "PVM") && strstr(r->err, "cannot boot"), "%s: says why: %s", what, r->err);
	cr_assert(strstr(r->err, "make demo") && strstr(r->err, "hardware KVM"), "%s: says the way out: %s", what, r->err);
	cr_assert(strstr(r->err, "--allow-pvm"), "%s: names the flag: %s", what, r->err);
	/* at once: not after a --boot-timeout (60 s by default) spent in instruction emulation */
	cr_assert_lt(secs, 2.0, "%s: took %.2f s", what, secs);
}

Test(cli_e2e, run_on_pvm_refused_at_once, .timeout = 30)
{
	if (host_kvm_kind() != HOST_KVM_PVM)
		cr_skip_test("not a PVM host (no /sys/module/kvm_pvm, or VT-x/AMD-V present)");
	char *k = guest_file(guest_poweroff, sizeof(guest_poweroff));
	char dir[] = "/tmp/padcell-pvm-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char snap[64];
	snprintf(snap, sizeof(snap), "%s/snap", dir);
	struct run r;
	double t0 = mono_s();
	RUN(&r, "run", "--kernel", k, "--rootfs", "none", "--", "true");
	assert_pvm_refusal(&r, mono_s() - t0, "run --kernel");
	t0 = mono_s();
	RUN(&r, "run", "--", "python3", "-c", "print(1)"); /* the default kernel and image, found or not */
	assert_pvm_refusal(&r, mono_s() - t0, "run with the defaults");
	t0 = mono_s();
	RUN(&r, "run", "--kernel", k, "--rootfs", "none", "--snapshot-when-ready", snap);
	assert_pvm_refusal(&r, mono_s() - t0, "run --snapshot-when-ready");
	cr_assert_neq(access(snap, F_OK), 0, "a refused run made no snapshot directory");
	/* a restore is not a boot: --from gets as far as reading the snapshot */
	RUN(&r, "run", "--from", dir, "--", "true");
	cr_assert_eq(r.status, 2, "run --from: exit %d, stderr: %s", r.status, r.err);
	cr_assert(strstr(r.err, "cannot restore the snapshot") && !strstr(r.err, "PVM"), "run --from: %s", r.err);
	rmdir(dir);
	unlink(k);
	free(k);
}

Test(cli_e2e, run_allow_pvm_boots, .timeout = 30)
{
	REQUIRE_KVM();
	if (host_kvm_kind() != HOST_KVM_PVM)
		cr_skip_test("not a PVM host: run boots without --allow-pvm here");
	/* A guest that powers off at once: it booted, and stopped before any agent could call. */
	char *k = guest_file(guest_poweroff, sizeof(guest_poweroff));
	struct run r;
	RUN(&r, "run", "--allow-pvm", "--kernel", k, "--rootfs", "none", "--mem", "16M", "--boot-timeout", "8", "--", "true");
	cr_assert_eq(r.status, 125, "exit %d, stderr: %s", r.status, r.err);
	cr_assert(strstr(r.err, "the VM stopped before its agent was ready"), "it booted the guest: %s", r.err);
	cr_assert_null(strstr(r.err, "--allow-pvm"), "no refusal: %s", r.err);
	unlink(k);
	free(k);
}

/* boot refuses only what cannot boot on PVM: a Linux kernel; the tiny guests above boot there. */
Test(cli_e2e, boot_linux_on_pvm_refused_at_once, .timeout = 30)
{
	if (host_kvm_kind() != HOST_KVM_PVM)
		cr_skip_test("not a PVM host (no /sys/module/kvm_pvm, or VT-x/AMD-V present)");
	struct bz_spec bs = img_bz_default();
	size_t n;
	uint8_t *img = img_bzimage(&bs, &n);
	char *bz = img_write_tmp(img, n);
	free(img);
	/* a vmlinux-like ELF: the poweroff guest with a "Linux" note */
	struct elf_spec es = { .code = guest_poweroff, .code_len = sizeof(guest_poweroff), .entry = 0x100000,
			       .linux_note = 1 };
	img = img_elf(&es, &n);
	char *vmlinux = img_write_tmp(img, n);
	free(img);
	struct run r;
	double t0 = mono_s();
	RUN(&r, "boot", "--kernel", bz, "--mem", "16M");
	assert_pvm_refusal(&r, mono_s() - t0, "boot of a bzImage");
	cr_assert(strstr(r.err, bz), "names the kernel: %s", r.err);
	t0 = mono_s();
	RUN(&r, "boot", "--kernel", vmlinux, "--mem", "16M");
	assert_pvm_refusal(&r, mono_s() - t0, "boot of an ELF with a Linux note");
	if (kvm_usable()) {
		RUN(&r, "boot", "--allow-pvm", "--kernel", vmlinux, "--mem", "16M");
		cr_assert_eq(r.status, 0, "--allow-pvm boots it (and it powers off): exit %d, stderr: %s", r.status, r.err);
	}
	unlink(bz);
	unlink(vmlinux);
	free(bz);
	free(vmlinux);
}

/* ---- the serial console on a terminal (a pty as stdin) ---- */

/*
 * Prints 'R', then echoes every received byte until it sees 'q', then resets:
 *   mov $0x3f8,%dx; mov $'R',%al; out %al,%dx
 * 1: mov $0x3fd,%dx; in (%dx),%al; test $1,%al; jz 1b
 *    mov $0x3f8,%dx; in (%dx),%al; out %al,%dx; cmp $'q',%al; jne 1b
 *    i8042 reset
 */
static const uint8_t guest_echo[] = {
	0x66, 0xba, 0xf8, 0x03, 0xb0, 'R', 0xee,
	0x66, 0xba, 0xfd, 0x03, 0xec, 0xa8, 0x01, 0x74, 0xf7,
	0x66, 0xba, 0xf8, 0x03, 0xec, 0xee, 0x3c, 'q', 0x75, 0xed,
	0x66, 0xba, 0x64, 0x00, 0xb0, 0xfe, 0xee, 0xf4, 0xeb, 0xfd,
};

struct chunk {
	const char *data;
	size_t len;
	size_t echoed; /* bytes the guest echoes once padcell has passed this chunk on */
};

/* A hang guard only: how long a loaded machine may take for output padcell owes us. */
#define E2E_HANG_MS 15000

/* Waits until file fd holds at least `size` bytes; false after the hang guard. */
static bool wait_file_size(int fd, off_t size)
{
	for (int i = 0; i < E2E_HANG_MS; i++) {
		struct stat st;
		if (fstat(fd, &st) == 0 && st.st_size >= size)
			return true;
		usleep(1000);
	}
	return false;
}

/* Runs padcell on guest_echo with a pty as its terminal; once 'R' is out, types the chunks. */
static void run_pty(struct run *r, const struct chunk *chunks, size_t nchunks)
{
	const char *bin = padcell_path();
	char *k = guest_file(guest_echo, sizeof(guest_echo));
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	cr_assert_geq(master, 0);
	cr_assert_eq(grantpt(master), 0);
	cr_assert_eq(unlockpt(master), 0);
	char *slave = ptsname(master);
	cr_assert_not_null(slave);
	char outp[] = "/tmp/padcell-out-XXXXXX", errp[] = "/tmp/padcell-err-XXXXXX";
	int ofd = mkstemp(outp), efd = mkstemp(errp);
	unlink(outp);
	unlink(errp);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		setsid();
		int in = open(slave, O_RDWR);
		dup2(in, 0);
		dup2(ofd, 1);
		dup2(efd, 2);
		exec_padcell(bin, (char *const[]){ "padcell", "boot", "--kernel", k, "--mem", "16M", NULL });
	}
	/* Wait for the guest's 'R': by then padcell has put the terminal in raw mode. */
	cr_assert(wait_file_size(ofd, 1), "the guest never printed 'R'");
	/*
	 * Each chunk reaches padcell in a read of its own: the next is typed only once the guest
	 * has echoed this one.  A chunk padcell holds back (a lone Ctrl-A) shows nothing to wait
	 * for; after it, a pause makes a separate read likely (no assertion depends on it).
	 */
	off_t echoed = 1;
	for (size_t i = 0; i < nchunks; i++) {
		cr_assert_eq(write(master, chunks[i].data, chunks[i].len), (ssize_t)chunks[i].len);
		echoed += (off_t)chunks[i].echoed;
		if (i + 1 == nchunks)
			break;
		if (chunks[i].echoed)
			cr_assert(wait_file_size(ofd, echoed), "chunk %zu was not echoed", i);
		else
			usleep(200 * 1000);
	}
	int st = 0;
	bool drain = true;
	for (int i = 0; i < E2E_HANG_MS / 2; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			goto done;
		/*
		 * Keep the pty's output side drained (padcell writes nothing there, but be safe).  A
		 * read error (EIO) means padcell just closed its side while exiting: stop draining and
		 * keep waiting for its status, which is the result.
		 */
		struct pollfd p = { master, POLLIN, 0 };
		if (drain && poll(&p, 1, 0) > 0) {
			char junk[256];
			if (read(master, junk, sizeof(junk)) < 0)
				drain = false;
		}
		usleep(2000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	st = -1;
done:
	r->status = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	slurp(ofd, r->out, sizeof(r->out));
	slurp(efd, r->err, sizeof(r->err));
	err_finish(r);
	close(master);
	unlink(k);
	free(k);
}

Test(cli_e2e, console_input_reaches_guest, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	const struct chunk c[] = { { "hello", 5, 5 }, { "q", 1, 1 } };
	run_pty(&r, c, 2);
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, "Rhelloq");
}

Test(cli_e2e, ctrl_a_x_exits_130, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	const struct chunk c[] = { { "ab", 2, 2 }, { "\x01x", 2, 0 } };
	run_pty(&r, c, 2);
	cr_assert_eq(r.status, 130, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, "Rab", "nothing of the escape reaches the guest");
	cr_assert_eq(r.err_lines, 1, "%s", r.err);
	cr_assert_eq(strncmp(r.err, "padcell: ", 9), 0, "%s", r.err);
}

Test(cli_e2e, ctrl_a_ctrl_a_sends_one_ctrl_a, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	const struct chunk c[] = { { "a\x01\x01" "b", 4, 3 }, { "\x01", 1, 0 }, { "c", 1, 2 }, { "q", 1, 1 } };
	run_pty(&r, c, 4);
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	/* Ctrl-A then an ordinary key sends both. */
	cr_assert_str_eq(r.out, "Ra\x01" "b\x01" "cq");
}

/*
 * Regression (found by this test, fixed in 1fbbd57), vmm/evloop.c input_read(): when a read
 * ends with Ctrl-A and the next read brings a full 64-byte buffer starting with an
 * ordinary key, the re-inserted Ctrl-A plus 64 bytes do not fit in the 64-byte
 * `pending` array, and the last byte was silently dropped.
 */
Test(cli_e2e, regression_lone_ctrl_a_then_full_read_keeps_every_byte, .timeout = 20)
{
	REQUIRE_KVM();
	char block[64];
	memset(block, 'b', sizeof(block));
	block[63] = 'z';
	struct run r;
	const struct chunk c[] = { { "\x01", 1, 0 }, { block, sizeof(block), 1 + sizeof(block) }, { "q", 1, 1 } };
	run_pty(&r, c, 3);
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	char want[80] = "R\x01";
	memcpy(want + 2, block, sizeof(block));
	strcpy(want + 2 + sizeof(block), "q");
	cr_assert_str_eq(r.out, want, "a byte of console input was lost: got %zu bytes, want %zu, the final 'z' %s",
			 strlen(r.out), strlen(want), strchr(r.out, 'z') ? "kept" : "lost");
}

/* The memory map at its extremes: the 2 MiB minimum, and RAM continuing above 4 GiB. */
Test(cli_e2e, guest_runs_with_min_and_split_memory, .timeout = 30)
{
	REQUIRE_KVM();
	char *k = guest_file(guest_hello, sizeof(guest_hello));
	const char *sizes[] = { "2M", "3072M", "3584M", "5G" };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct run r;
		RUN(&r, "boot", "--kernel", k, "--mem", (char *)sizes[i], "--cpus", "4");
		cr_assert_eq(r.status, 0, "--mem %s: exit %d, stderr: %s", sizes[i], r.status, r.err);
		cr_assert_str_eq(r.out, "K", "--mem %s", sizes[i]);
	}
	unlink(k);
	free(k);
}

/*
 * MMIO to nothing in the 32-bit gap: reads give all-ones, writes are dropped, the
 * guest goes on.  mov $0xd0000000,%ebx; mov (%rbx),%eax; mov $0x3f8,%dx; out %al,%dx;
 * movl $0x12345678,(%rbx); mov (%rbx),%eax; out %al,%dx; reset
 */
static const uint8_t guest_mmio_gap[] = {
	0xbb, 0x00, 0x00, 0x00, 0xd0, 0x8b, 0x03, 0x66, 0xba, 0xf8, 0x03, 0xee,
	0xc7, 0x03, 0x78, 0x56, 0x34, 0x12, 0x8b, 0x03, 0xee,
	0x66, 0xba, 0x64, 0x00, 0xb0, 0xfe, 0xee, 0xf4, 0xeb, 0xfd,
};

Test(cli_e2e, guest_unclaimed_mmio, .timeout = 20)
{
	REQUIRE_KVM();
	struct run r;
	boot_guest(&r, guest_mmio_gap, sizeof(guest_mmio_gap));
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_eq(strlen(r.out), 2, "two bytes: %zu", strlen(r.out));
	cr_assert_eq((uint8_t)r.out[0], 0xff, "unclaimed MMIO reads all-ones");
	cr_assert_eq((uint8_t)r.out[1], 0xff, "and a write there changed nothing");
}

/* CPU time (user + system) padcell has used so far, in seconds. */
static double proc_cpu_seconds(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* Fields after the parenthesised command name: state is field 3, utime 14, stime 15. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long ut = 0, st = 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/*
 * Boots guest_sleep (never reads its UART) on a pty, types `typed` bytes, and returns
 * how much CPU padcell burns in the following second; then stops it with SIGTERM.
 */
static double idle_cpu_with_input(size_t typed)
{
	const char *bin = padcell_path();
	char *k = guest_file(guest_sleep, sizeof(guest_sleep));
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	cr_assert_geq(master, 0);
	cr_assert_eq(grantpt(master), 0);
	cr_assert_eq(unlockpt(master), 0);
	char *slave = ptsname(master);
	char outp[] = "/tmp/padcell-out-XXXXXX";
	int ofd = mkstemp(outp);
	cr_assert_geq(ofd, 0);
	unlink(outp);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		setsid();
		int in = open(slave, O_RDWR), null = open("/dev/null", O_WRONLY);
		dup2(in, 0);
		dup2(ofd, 1);
		dup2(null, 2);
		exec_padcell(bin, (char *const[]){ "padcell", "boot", "--kernel", k, "--mem", "16M", NULL });
	}
	/* The guest's 'S': booted, the terminal in raw mode, the boot's own CPU time spent. */
	cr_assert(wait_file_size(ofd, 1), "the guest never printed 'S'");
	close(ofd);
	char buf[512];
	memset(buf, 'a', sizeof(buf));
	if (typed)
		cr_assert_eq(write(master, buf, typed), (ssize_t)typed);
	usleep(200 * 1000);
	double t0 = proc_cpu_seconds(pid);
	usleep(1000 * 1000);
	double t1 = proc_cpu_seconds(pid);
	kill(pid, SIGTERM);
	int st;
	waitpid(pid, &st, 0);
	close(master);
	unlink(k);
	free(k);
	cr_assert_geq(t0, 0);
	cr_assert_geq(t1, 0);
	return t1 - t0;
}

Test(cli_e2e, idle_guest_costs_no_cpu, .timeout = 20)
{
	REQUIRE_KVM();
	double cpu = idle_cpu_with_input(0);
	cr_assert_lt(cpu, 0.3, "a halted guest with no input used %.2f s of CPU in 1 s", cpu);
}

/*
 * Regression (found by this test, fixed in 6241e33), vmm/evloop.c evloop_run(): when the
 * guest does not drain its receive FIFO, input_flush() leaves bytes pending and sets
 * `paused`; the terminal fd stays in the level-triggered epoll set, so while more
 * input waited in the terminal, epoll_wait() returned at once on every iteration and
 * the event loop spun a host core until the guest read.
 */
Test(cli_e2e, regression_paused_input_does_not_spin, .timeout = 20)
{
	REQUIRE_KVM();
	double cpu = idle_cpu_with_input(200); /* 64 fill the FIFO, 64 wait in padcell, the rest in the pty */
	cr_assert_lt(cpu, 0.3, "with unread console input padcell used %.2f s of CPU in 1 s", cpu);
}

/* More input than the FIFO and padcell's buffer hold: all of it arrives, in order. */
Test(cli_e2e, console_bulk_input_all_delivered, .timeout = 30)
{
	REQUIRE_KVM();
	char bulk[1000];
	for (size_t i = 0; i < sizeof(bulk); i++)
		bulk[i] = (char)('A' + i % 26);
	struct run r;
	const struct chunk c[] = { { bulk, sizeof(bulk), sizeof(bulk) }, { "q", 1, 1 } };
	run_pty(&r, c, 2);
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_eq(strlen(r.out), 1 + sizeof(bulk) + 1, "got %zu bytes", strlen(r.out));
	cr_assert_eq(r.out[0], 'R');
	cr_assert_eq(memcmp(r.out + 1, bulk, sizeof(bulk)), 0, "bytes in order");
	cr_assert_eq(r.out[1 + sizeof(bulk)], 'q');
}

/* Past the end of RAM is MMIO to nothing as well: a 16 MiB guest reading at 16 MiB. */
Test(cli_e2e, guest_reads_past_ram, .timeout = 20)
{
	REQUIRE_KVM();
	uint8_t code[sizeof(guest_mmio_gap)];
	memcpy(code, guest_mmio_gap, sizeof(code));
	uint32_t addr = 16 << 20;
	memcpy(code + 1, &addr, 4); /* the imm32 of mov $addr,%ebx */
	struct run r;
	boot_guest(&r, code, sizeof(code));
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_eq(strlen(r.out), 2);
	cr_assert_eq((uint8_t)r.out[0], 0xff);
	cr_assert_eq((uint8_t)r.out[1], 0xff);
}

/* jmp . : a vCPU that never exits on its own still stops on a signal. */
static const uint8_t guest_spin[] = { 0x66, 0xba, 0xf8, 0x03, 0xb0, 'S', 0xee, 0xeb, 0xfe }; /* 'S', then jmp . */

Test(cli_e2e, busy_guest_stops_on_sigint_and_sighup, .timeout = 30)
{
	REQUIRE_KVM();
	char *k = guest_file(guest_spin, sizeof(guest_spin));
	struct run r;
	run_sig(&r, 10, SIGINT, (char *const[]){ "boot", "--kernel", k, "--mem", "16M", "--cpus", "2", NULL });
	cr_assert_eq(r.status, 130, "SIGINT: exit %d, stderr: %s", r.status, r.err);
	cr_assert_eq(r.err_lines, 1, "%s", r.err);
	run_sig(&r, 10, SIGHUP, (char *const[]){ "boot", "--kernel", k, "--mem", "16M", NULL });
	cr_assert_eq(r.status, 128 + SIGHUP, "SIGHUP: exit %d, stderr: %s", r.status, r.err);
	unlink(k);
	free(k);
}

/* Nobody reads the console any more: output is dropped, the guest still ends normally. */
Test(cli_e2e, closed_stdout_is_not_fatal, .timeout = 20)
{
	REQUIRE_KVM();
	char *k = guest_file(guest_rep_outsb, sizeof(guest_rep_outsb));
	int p[2];
	cr_assert_eq(pipe(p), 0);
	char errp[] = "/tmp/padcell-err-XXXXXX";
	int efd = mkstemp(errp);
	unlink(errp);
	pid_t pid = fork();
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		dup2(in, 0);
		dup2(p[1], 1);
		dup2(efd, 2);
		close(p[0]);
		exec_padcell(padcell_path(), (char *const[]){ "padcell", "boot", "--kernel", k, "--mem", "16M", NULL });
	}
	close(p[0]); /* the reader is gone before the guest prints */
	close(p[1]);
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	char err[512];
	slurp(efd, err, sizeof(err));
	cr_assert(WIFEXITED(st), "killed by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	cr_assert_eq(WEXITSTATUS(st), 0, "exit %d, stderr: %s", WEXITSTATUS(st), err);
	unlink(k);
	free(k);
}

/* --verbose says which entry it used; success stays exit 0. */
Test(cli_e2e, verbose_names_the_entry, .timeout = 20)
{
	REQUIRE_KVM();
	char *k = guest_file(guest_hello, sizeof(guest_hello));
	struct run r;
	RUN(&r, "boot", "--kernel", k, "--mem", "16M", "--verbose");
	cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
	cr_assert_str_eq(r.out, "K");
	cr_assert(strstr(r.err, "64-bit Linux entry at 0x100000") != NULL, "%s", r.err);
	for (const char *p = r.err; *p; p = strchr(p, '\n') + 1) {
		cr_assert_eq(strncmp(p, "padcell: ", 9), 0, "every line is prefixed: %s", p);
		if (!strchr(p, '\n'))
			break;
	}
	unlink(k);
	free(k);
}

/* ---- special files are refused before they can block ---- */

/*
 * A FIFO nobody writes would block open() forever; every path the user names is opened without
 * blocking and refused unless it is a regular file: one line naming the FIFO, exit 2, in time
 * (run()'s timeout is the hang guard: a hang shows as exit -1), and nothing left beside it.
 */
static void assert_fifo_refused(const struct run *r, const char *what, const char *dir)
{
	assert_usage(r, what);
	cr_assert(strstr(r->err, "FIFO") || strstr(r->err, "Not a directory"), "%s: %s", what, r->err);
	unsigned n = 0;
	DIR *dh = opendir(dir);
	cr_assert_not_null(dh);
	struct dirent *e;
	while ((e = readdir(dh)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(dh);
	cr_assert_eq(n, 2, "%s: something was left beside the FIFOs in %s", what, dir);
}

Test(cli_e2e, fifo_paths_are_refused_without_blocking, .timeout = 120)
{
	char dir[] = "/tmp/padcell-fifo-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char fifo[64], state[64];
	snprintf(fifo, sizeof(fifo), "%s/f", dir);
	snprintf(state, sizeof(state), "%s/state", dir); /* restore --from DIR opens DIR/state */
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	cr_assert_eq(mkfifo(state, 0600), 0);
	char *k = guest_file(guest_hello, sizeof(guest_hello));
	char ro[80];
	snprintf(ro, sizeof(ro), "%s,ro", fifo);
	struct run r;

	RUN(&r, "boot", "--kernel", fifo);
	assert_fifo_refused(&r, "--kernel FIFO", dir);
	RUN(&r, "boot", "--kernel", k, "--initrd", fifo);
	assert_fifo_refused(&r, "--initrd FIFO", dir);
	RUN(&r, "boot", "--kernel", k, "--drive", ro);
	assert_fifo_refused(&r, "--drive FIFO,ro", dir);
	RUN(&r, "boot", "--kernel", k, "--drive", fifo);
	assert_fifo_refused(&r, "--drive FIFO", dir);
	RUN(&r, "run", "--kernel", k, "--rootfs", fifo, "--allow-pvm", "--", "true");
	assert_fifo_refused(&r, "run --rootfs FIFO", dir);
	RUN(&r, "restore", "--state", fifo, "--mem", state);
	assert_fifo_refused(&r, "restore --state FIFO", dir);
	RUN(&r, "restore", "--from", dir);
	assert_fifo_refused(&r, "restore --from DIR with DIR/state a FIFO", dir);
	setenv("TMPDIR", fifo, 1);
	RUN(&r, "boot", "--kernel", k, "--scratch", "1M");
	unsetenv("TMPDIR");
	assert_fifo_refused(&r, "--scratch with $TMPDIR a FIFO", dir);

	unlink(fifo);
	unlink(state);
	rmdir(dir);
	unlink(k);
	free(k);
}

/* restore --drive N=PATH: parsed strictly, before anything is opened. */
Test(cli_e2e, restore_drive_option_is_parsed_strictly)
{
	static const char *const bad[] = { "x.img", "=x.img", "0=", "8=/x.img", "-1=/x.img", "1x=/x.img" };
	struct run r;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		RUN(&r, "restore", "--from", "/nonexistent", "--drive", (char *)bad[i]);
		assert_usage(&r, bad[i]);
		cr_assert(strstr(r.err, "--drive"), "%s: %s", bad[i], r.err);
	}
	RUN(&r, "restore", "--from", "/nonexistent", "--drive", "0=/a.img", "--drive", "0=/b.img");
	assert_usage(&r, "twice");
	cr_assert(strstr(r.err, "named twice"), "%s", r.err);
}
