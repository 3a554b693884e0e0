/* launch_boot: one path from options to a VM ready to start, and one path back. */
#include "vmm/launch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/api/api.h"
#include "vmm/evloop.h"
#include "vmm/term.h"
#include "vmm/x86/acpi.h"
#include "vmm/err.h"
#include "vmm/jail/jail.h"
#include "vmm/util.h"

int file_map(const char *path, struct file_map *f, char *err, size_t errlen)
{
	f->data = NULL;
	f->size = 0;
	const char *kind = NULL;
	int fd = open_user_file(path, O_RDONLY, false, &kind);
	if (fd < 0 && kind)
		return errorf(err, errlen, fd, "not a regular file (%s)", kind);
	if (fd < 0)
		return errorf(err, errlen, fd, "%s", strerror(-fd));
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = errorf(err, errlen, -errno, "%s", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = errorf(err, errlen, -EINVAL, "not a regular file");
	} else if (st.st_size == 0) {
		rc = errorf(err, errlen, -EINVAL, "file is empty");
	} else {
		void *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			rc = errorf(err, errlen, -errno, "cannot map: %s", strerror(errno));
		} else {
			f->data = p;
			f->size = st.st_size;
		}
	}
	close(fd);
	return rc;
}

void file_unmap(struct file_map *f)
{
	if (f->data)
		munmap((void *)f->data, f->size);
	f->data = NULL;
}

int launch_exit_code(struct vm *vm)
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

static void api_service(void *server)
{
	api_server_service(server);
}

int launch_run_until_stop(struct vm *vm, struct api_server *api, bool verbose, const struct launch_run_hooks *hooks)
{
	struct evloop_hook hook = { .fd = api ? api_server_fd(api) : -1, .ready = api_service, .ctx = api };
	struct term term;
	term_raw(&term, STDIN_FILENO);
	/* Everything is open and the VM is built: confine, then run the guest. */
	char err[256];
	/* the cgroup's limits first: they need the host's /sys/fs/cgroup, which the jail hides */
	bool snapshots = api || (hooks && hooks->snapshots);
	int rc = cgroup_apply(vm->mem.size, vm->ncpus, snapshots, err, sizeof(err));
	if (!rc)
		rc = jail_confine(vm->mem.size, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "padcell: jail: %s\n", err);
		vm_request_stop(vm, VM_STOP_HOST_ERROR, "the jail could not confine the monitor");
		api_server_destroy(api);
		term_restore(&term);
		return EXIT_HOST_ERROR;
	}
	rc = vm_start(vm);
	jail_control_narrow();
	uint64_t jp, jc;
	jail_cost(&jp, &jc);
	if (verbose && jc)
		fprintf(stderr, "padcell: jail: %.0f us at start (namespaces %.0f, confinement %.0f)\n", (jp + jc) / 1e3,
			jp / 1e3, jc / 1e3);
	if (hooks && hooks->after_start)
		hooks->after_start(vm, rc, hooks->ctx);
	/* A VM that could not start, or already stopped, has nothing for the loop to wait for. */
	if (vm_status(vm) == VM_RUNNING)
		evloop_run_hooks(vm, STDIN_FILENO, term.raw, &hook, api ? 1 : 0);
	api_server_destroy(api); /* no more requests: the socket goes before the VM does */
	vm_kick_all(vm);
	vm_join(vm);
	if (hooks && hooks->joined)
		hooks->joined(hooks->ctx);
	term_restore(&term);
	rc = launch_exit_code(vm);
	if (rc != EXIT_GUEST_OK || verbose)
		fprintf(stderr, "padcell: %s\n", vm->stop_detail[0] ? vm->stop_detail : "VM stopped");
	uint64_t dropped = vm->console ? serial_out_dropped(vm->console) : 0;
	if (verbose && dropped)
		fprintf(stderr, "padcell: %llu bytes of console output were dropped (nobody read the console)\n",
			(unsigned long long)dropped);
	return rc;
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

int disks_open(const struct boot_opts *o, struct blk_disk *disks, unsigned *n, char *err, size_t errlen)
{
	char why[160];
	*n = 0;
	/* --drive-rate N counts the VM's disks: run's root image first, the --drive's, then --scratch. */
	unsigned total = o->ndrives + (o->scratch ? 1 : 0);
	for (unsigned i = total; i < CLI_MAX_DRIVES; i++)
		if (o->rates.rate[i]) {
			snprintf(err, errlen, "--drive-rate %u=...: the VM has no disk %u (%u disk%s, counted from 0)", i, i, total,
				 total == 1 ? "" : "s");
			return -EINVAL;
		}
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
	for (unsigned i = 0; i < *n; i++)
		if (o->rates.rate[i])
			disks[i].rate = *o->rates.rate[i];
	return 0;
err_close:
	while (*n)
		blk_disk_close(&disks[--*n]);
	return -EINVAL;
}

int launch_net(const struct net_opts *o, struct net_params *p, char *err, size_t errlen)
{
	*p = (struct net_params){ .rules = o->allow, .nrules = o->nallow, .open = o->allow_internet, .log_fd = -1,
				  .publish = o->publish, .npublish = o->npublish, .rx_rate = o->rx_rate,
				  .tx_rate = o->tx_rate };
	if (!net_slirp_built_in()) {
		char why[256];
		net_slirp_backend(NULL, why, sizeof(why));
		snprintf(err, errlen, "--net: %s", why);
		return EXIT_USAGE;
	}
	/*
	 * A published port must be free now, the user's error in one line; the stack listens on it
	 * when the NIC is made (a port taken in between fails there, as the device's error).
	 */
	for (unsigned i = 0; i < o->npublish; i++) {
		const struct net_publish *pub = &o->publish[i];
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int one = 1;
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(pub->host_port),
					  .sin_addr.s_addr = htonl(pub->host_addr) };
		int rc = fd < 0 ? -errno : 0;
		/* SO_REUSEADDR as slirp sets it: a port in TIME_WAIT is free, a listening one is not */
		if (!rc && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
			    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0))
			rc = -errno;
		if (fd >= 0)
			close(fd);
		if (rc) {
			snprintf(err, errlen, "--publish '%s': cannot listen on %s:%u: %s", pub->text,
				 inet_ntoa(sa.sin_addr), pub->host_port, strerror(-rc));
			return EXIT_USAGE;
		}
	}
	if (o->log) {
		p->log_fd = open(o->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (p->log_fd < 0) {
			snprintf(err, errlen, "--net-log '%s': %s", o->log, strerror(errno));
			return EXIT_USAGE;
		}
	}
	return 0;
}

void launch_net_close(struct net_params *p)
{
	if (p->log_fd >= 0)
		close(p->log_fd);
	p->log_fd = -1;
}

void launch_init(struct launch *l)
{
	/*
	 * Field by field, not memset: the disks (CLI_MAX_DRIVES x 4 KiB) are each set up whole by
	 * blk_disk_open as they are opened, the VM by vm_create and the command line when it is built,
	 * and clearing ~42 KiB would make all of it resident (the struct usually lives on the stack).
	 */
	l->kernel = l->initrd = (struct file_map){ 0 };
	l->ndisks = 0;
	l->vsock_fd = -1;
	l->vsock_path = NULL;
	l->net = (struct net_params){ .log_fd = -1 };
	l->net_log_fd = -1;
	l->vm_made = false;
	l->br = (struct boot_result){ 0 };
	l->cmdline[0] = '\0';
}

int launch_boot(struct launch *l, const struct boot_opts *o, int console_fd, char *err, size_t errlen)
{
	launch_init(l);
	char why[256];
	int rc = EXIT_USAGE;

	if (file_map(o->kernel, &l->kernel, why, sizeof(why))) {
		snprintf(err, errlen, "cannot read kernel '%s': %s", o->kernel, why);
		goto fail;
	}
	struct kernel_image k;
	if (kernel_parse(l->kernel.data, l->kernel.size, &k, why, sizeof(why))) {
		snprintf(err, errlen, "kernel '%s' is not bootable: %s", o->kernel, why);
		goto fail;
	}
	if (o->entry == BOOT_ENTRY_PVH && !k.has_pvh) {
		snprintf(err, errlen, "kernel '%s' has no PVH entry note; use --entry linux64", o->kernel);
		goto fail;
	}
	if (o->initrd && file_map(o->initrd, &l->initrd, why, sizeof(why))) {
		snprintf(err, errlen, "cannot read initrd '%s': %s", o->initrd, why);
		goto fail;
	}
	if (disks_open(o, l->disks, &l->ndisks, err, errlen))
		goto fail;
	/* The first --drive is the root disk; a --scratch disk alone is not. */
	if (o->net.net && launch_net(&o->net, &l->net, err, errlen))
		goto fail;
	/* With a NIC, the guest agent learns its addresses from padcell.net= (virtio_net.h). */
	char user[LAYOUT_CMDLINE_MAX], netarg[96] = "";
	if (o->net.net)
		virtio_net_cmdline(netarg, sizeof(netarg));
	if (snprintf(user, sizeof(user), "%s%s%s", o->cmdline, *netarg ? " " : "", netarg) >= (int)sizeof(user) ||
	    vm_virtio_cmdline(l->cmdline, sizeof(l->cmdline), user,
			      l->ndisks + (o->vsock_path ? 1 : 0) + (o->net.net ? 1 : 0),
			      o->ndrives ? (int)o->drives[0].ro : -1)) {
		snprintf(err, errlen, "the kernel command line with the virtio devices is over %u bytes",
			 LAYOUT_CMDLINE_MAX - 1);
		goto fail;
	}
	/* The vsock socket is claimed before the VM exists: a live or unusable PATH is the user's error. */
	if (o->vsock_path) {
		l->vsock_fd = vsock_listen(o->vsock_path, why, sizeof(why));
		if (l->vsock_fd < 0) {
			snprintf(err, errlen, "--vsock '%s': %s", o->vsock_path, why);
			goto fail;
		}
		l->vsock_path = o->vsock_path;
	}
	struct vm_config cfg = { .mem_size = o->mem, .ncpus = o->cpus, .console_out = console_fd,
				 .verbose = o->verbose, .disks = l->disks, .ndisks = l->ndisks,
				 .vsock_path = l->vsock_fd >= 0 ? l->vsock_path : NULL, .vsock_listen_fd = l->vsock_fd,
				 .vsock_cid = o->vsock_cid, .net = o->net.net ? &l->net : NULL };
	rc = EXIT_HOST_ERROR;
	if (vm_create(&l->vm, &cfg, err, errlen))
		goto fail;
	l->vm_made = true;
	unsigned max = kvm_max_vcpus(l->vm.kvm_fd);
	if (o->cpus > max) {
		snprintf(err, errlen, "--cpus %u is more than this host's KVM allows (%u)", o->cpus, max);
		rc = EXIT_USAGE;
		goto fail;
	}
	struct boot_config bc = {
		.entry = o->entry, .kernel = l->kernel.data, .kernel_size = l->kernel.size,
		.initrd = l->initrd.data, .initrd_size = l->initrd.size, .cmdline = l->cmdline, .ncpus = o->cpus,
	};
	if (boot_load(&l->vm.mem, &bc, &l->br, err, errlen)) {
		rc = EXIT_USAGE;
		goto fail;
	}
	if (vm_setup_vcpus(&l->vm, &l->br, err, errlen))
		goto fail;
	/* The files are in guest memory now; drop them before the guest runs. */
	file_unmap(&l->kernel);
	file_unmap(&l->initrd);
	if (o->verbose && (l->ndisks || l->vsock_fd >= 0 || o->net.net))
		fprintf(stderr, "padcell: kernel command line: %s\n", l->cmdline);
	if (o->verbose)
		fprintf(stderr, "padcell: %s entry at 0x%llx, %u vCPU(s), %llu MiB\n", l->br.pvh ? "PVH" : "64-bit Linux",
			(unsigned long long)l->br.entry, o->cpus, (unsigned long long)(o->mem >> 20));
	return 0;
fail:
	launch_teardown(l);
	return rc;
}

void launch_teardown(struct launch *l)
{
	if (l->vm_made)
		vm_destroy(&l->vm);
	l->vm_made = false;
	launch_net_close(&l->net);
	if (l->vsock_fd >= 0) {
		close(l->vsock_fd);
		if (l->vsock_path) /* NULL: its name was removed already (run) */
			jail_unlink(l->vsock_path);
	}
	l->vsock_fd = -1;
	while (l->ndisks)
		blk_disk_close(&l->disks[--l->ndisks]);
	file_unmap(&l->kernel);
	file_unmap(&l->initrd);
}
