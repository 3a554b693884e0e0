/* padcell entry point: subcommand dispatch, and the one place errors become messages and exit codes. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/acpi.h"
#include "vmm/check.h"
#include "vmm/cli.h"
#include "vmm/evloop.h"
#include "vmm/layout.h"
#include "vmm/term.h"
#include "vmm/vm.h"

#define PADCELL_VERSION "0.1.0"

static int die_usage(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "padcell: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

/* A read-only mapping of a whole input file. */
struct file_map {
	const uint8_t *data;
	size_t size;
};

static int file_map(const char *path, struct file_map *f, char *err, size_t errlen)
{
	f->data = NULL;
	f->size = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -errno;
	}
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		snprintf(err, errlen, "not a regular file");
	} else if (st.st_size == 0) {
		rc = -EINVAL;
		snprintf(err, errlen, "file is empty");
	} else {
		void *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			rc = -errno;
			snprintf(err, errlen, "cannot map: %s", strerror(errno));
		} else {
			f->data = p;
			f->size = st.st_size;
		}
	}
	close(fd);
	return rc;
}

static void file_unmap(struct file_map *f)
{
	if (f->data)
		munmap((void *)f->data, f->size);
	f->data = NULL;
}

static int exit_code_for(struct vm *vm)
{
	switch (vm_status(vm)) {
	case VM_STOP_POWEROFF:
	case VM_STOP_REBOOT:
		return EXIT_GUEST_OK;
	case VM_STOP_PANIC:
		return EXIT_GUEST_PANIC;
	case VM_STOP_CRASH:
		return EXIT_GUEST_CRASH;
	case VM_STOP_SIGNAL:
		return 128 + (vm->stop_signal ? vm->stop_signal : SIGINT);
	case VM_STOP_HOST_ERROR:
	case VM_RUNNING:
	default:
		return EXIT_HOST_ERROR;
	}
}

/* KVM's vCPU limit, capped by what the MADT can describe. */
static unsigned kvm_max_vcpus(int kvm_fd)
{
	int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (n <= 0)
		n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (n <= 0)
		n = 1;
	return n > ACPI_MAX_CPUS ? ACPI_MAX_CPUS : (unsigned)n;
}

/* Opens every --drive, then the --scratch disk, in device order; on error all are closed again. */
static int disks_open(const struct boot_opts *o, struct blk_disk *disks, unsigned *n, char *err, size_t errlen)
{
	char why[160];
	*n = 0;
	for (unsigned i = 0; i < o->ndrives; i++) {
		const struct drive_opt *d = &o->drives[i];
		if (blk_disk_open(&disks[*n], d->path, d->ro, d->id[0] ? d->id : NULL, why, sizeof(why))) {
			snprintf(err, errlen, "--drive '%s': %s", d->path, why);
			goto err_close;
		}
		(*n)++;
	}
	if (o->scratch) {
		if (blk_disk_scratch(&disks[*n], o->scratch, why, sizeof(why))) {
			snprintf(err, errlen, "--scratch: %s", why);
			goto err_close;
		}
		(*n)++;
	}
	return 0;
err_close:
	while (*n)
		blk_disk_close(&disks[--*n]);
	return -EINVAL;
}

static int cmd_boot(int argc, char **argv)
{
	char err[256];
	struct boot_opts o;
	if (cli_parse_boot(argc, argv, &o, err, sizeof(err)))
		return die_usage("%s%s", err, "");

	struct file_map kernel = { 0 }, initrd = { 0 };
	if (file_map(o.kernel, &kernel, err, sizeof(err)))
		return die_usage("cannot read kernel '%s': %s", o.kernel, err);
	struct kernel_image k;
	if (kernel_parse(kernel.data, kernel.size, &k, err, sizeof(err))) {
		file_unmap(&kernel);
		return die_usage("kernel '%s' is not bootable: %s", o.kernel, err);
	}
	if (o.entry == BOOT_ENTRY_PVH && !k.has_pvh) {
		file_unmap(&kernel);
		return die_usage("kernel '%s' has no PVH entry note; use --entry linux64%s", o.kernel, "");
	}
	if (o.initrd && file_map(o.initrd, &initrd, err, sizeof(err))) {
		file_unmap(&kernel);
		return die_usage("cannot read initrd '%s': %s", o.initrd, err);
	}

	int rc = EXIT_HOST_ERROR;
	struct blk_disk disks[CLI_MAX_DRIVES];
	unsigned ndisks = 0;
	static char cmdline[LAYOUT_CMDLINE_MAX];
	if (disks_open(&o, disks, &ndisks, err, sizeof(err))) {
		fprintf(stderr, "padcell: %s\n", err);
		rc = EXIT_USAGE;
		goto out_files;
	}
	/* The first --drive is the root disk; a --scratch disk alone is not. */
	if (vm_virtio_cmdline(cmdline, sizeof(cmdline), o.cmdline, ndisks + (o.vsock_path[0] ? 1 : 0),
			      o.ndrives ? (int)o.drives[0].ro : -1)) {
		fprintf(stderr, "padcell: the kernel command line with the virtio devices is over %u bytes\n",
			LAYOUT_CMDLINE_MAX - 1);
		rc = EXIT_USAGE;
		goto out_disks;
	}
	/* The vsock socket is claimed before the VM exists: a live or unusable PATH is the user's error. */
	int vsock_fd = -1;
	if (o.vsock_path[0]) {
		vsock_fd = vsock_listen(o.vsock_path, err, sizeof(err));
		if (vsock_fd < 0) {
			fprintf(stderr, "padcell: --vsock '%s': %s\n", o.vsock_path, err);
			rc = EXIT_USAGE;
			goto out_disks;
		}
	}
	struct vm vm;
	struct vm_config cfg = { .mem_size = o.mem, .ncpus = o.cpus, .console_out = STDOUT_FILENO,
				 .verbose = o.verbose, .disks = disks, .ndisks = ndisks,
				 .vsock_path = o.vsock_path[0] ? o.vsock_path : NULL, .vsock_listen_fd = vsock_fd,
				 .vsock_cid = o.vsock_cid };
	if (vm_create(&vm, &cfg, err, sizeof(err))) {
		fprintf(stderr, "padcell: %s\n", err);
		goto out_vsock;
	}
	unsigned max = kvm_max_vcpus(vm.kvm_fd);
	if (o.cpus > max) {
		fprintf(stderr, "padcell: --cpus %u is more than this host's KVM allows (%u)\n", o.cpus, max);
		rc = EXIT_USAGE;
		goto out_vm;
	}

	struct boot_config bc = {
		.entry = o.entry, .kernel = kernel.data, .kernel_size = kernel.size,
		.initrd = initrd.data, .initrd_size = initrd.size, .cmdline = cmdline, .ncpus = o.cpus,
	};
	struct boot_result br;
	if (boot_load(&vm.mem, &bc, &br, err, sizeof(err))) {
		fprintf(stderr, "padcell: %s\n", err);
		rc = EXIT_USAGE;
		goto out_vm;
	}
	if (vm_setup_vcpus(&vm, &br, err, sizeof(err))) {
		fprintf(stderr, "padcell: %s\n", err);
		goto out_vm;
	}
	/* The files are in guest memory now; drop them before the guest runs. */
	file_unmap(&kernel);
	file_unmap(&initrd);
	if (o.verbose && (ndisks || vsock_fd >= 0))
		fprintf(stderr, "padcell: kernel command line: %s\n", cmdline);
	if (o.verbose)
		fprintf(stderr, "padcell: %s entry at 0x%llx, %u vCPU(s), %llu MiB\n", br.pvh ? "PVH" : "64-bit Linux",
			(unsigned long long)br.entry, o.cpus, (unsigned long long)(o.mem >> 20));

	struct term term;
	term_raw(&term, STDIN_FILENO);
	if (vm_start(&vm) == 0 || vm_status(&vm) != VM_RUNNING)
		evloop_run(&vm, STDIN_FILENO, term.raw);
	vm_kick_all(&vm);
	vm_join(&vm);
	term_restore(&term);

	rc = exit_code_for(&vm);
	if (rc != EXIT_GUEST_OK || o.verbose)
		fprintf(stderr, "padcell: %s\n", vm.stop_detail[0] ? vm.stop_detail : "VM stopped");
out_vm:
	vm_destroy(&vm);
out_vsock:
	if (vsock_fd >= 0) {
		close(vsock_fd);
		unlink(o.vsock_path);
	}
out_disks:
	while (ndisks)
		blk_disk_close(&disks[--ndisks]);
out_files:
	file_unmap(&kernel);
	file_unmap(&initrd);
	return rc;
}

int main(int argc, char **argv)
{
	/* Termination signals are read through a signalfd by the event loop; a closed
	 * console must not kill the monitor mid-write. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		cli_usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "boot"))
		return cmd_boot(argc - 1, argv + 1);
	if (!strcmp(cmd, "check"))
		return check_run(stdout) ? EXIT_HOST_ERROR : 0;
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		cli_usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("padcell %s\n", PADCELL_VERSION);
		return 0;
	}
	return die_usage("unknown command '%s' (see padcell --help)%s", cmd, "");
}
