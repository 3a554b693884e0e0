/* Preflight checks: is /dev/kvm usable, which KVM is it, and what does padcell need from it. */
#include "vmm/cmd/check.h"
#include "vmm/cmd/cli.h"
#include "vmm/cmd/cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/jail/jail.h"
#include "vmm/x86/acpi.h"

static bool cpu_has_flag(const char *flag)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return false;
	char line[4096];
	bool found = false;
	size_t fl = strlen(flag);
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5))
			continue;
		for (char *p = strstr(line, flag); p; p = strstr(p + 1, flag)) {
			if ((p == line || p[-1] == ' ') && (p[fl] == ' ' || p[fl] == '\n' || !p[fl])) {
				found = true;
				break;
			}
		}
		break; /* the first CPU's flags speak for all */
	}
	fclose(f);
	return found;
}

enum host_kvm host_kvm_kind(void)
{
	if (cpu_has_flag("vmx") || cpu_has_flag("svm"))
		return HOST_KVM_HARDWARE;
	return access("/sys/module/kvm_pvm", F_OK) == 0 ? HOST_KVM_PVM : HOST_KVM_UNKNOWN;
}

static void row(FILE *out, const char *status, const char *what, const char *detail)
{
	fprintf(out, "  [%-4s] %-28s %s\n", status, what, detail);
}

int check_run(FILE *out)
{
	int problems = 0;
	char buf[256];
	fprintf(out, "padcell check\n");

	bool pvm = access("/sys/module/kvm_pvm", F_OK) == 0;
	bool vmx = cpu_has_flag("vmx"), svm = cpu_has_flag("svm");
	const char *kind = vmx ? "hardware (Intel VT-x)" : svm ? "hardware (AMD-V)" : pvm ? "PVM (software, kvm_pvm)" : "unknown";

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		int e = errno;
		if (e == ENOENT) {
			row(out, "FAIL", "/dev/kvm", "missing: load kvm_intel or kvm_amd (modprobe), or enable virtualization in firmware");
		} else {
			snprintf(buf, sizeof(buf), "not accessible: %s (add your user to the 'kvm' group or run as root)", strerror(e));
			row(out, "FAIL", "/dev/kvm", buf);
		}
		fprintf(out, "result: this host cannot run padcell VMs\n");
		return 1;
	}
	row(out, "ok", "/dev/kvm", "present and accessible");

	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	snprintf(buf, sizeof(buf), "%d%s", api, api == KVM_API_VERSION ? "" : " (padcell needs 12)");
	row(out, api == KVM_API_VERSION ? "ok" : "FAIL", "KVM API version", buf);
	problems += api != KVM_API_VERSION;

	static const struct { int cap; const char *name; bool required; const char *why; } caps[] = {
		{ KVM_CAP_IRQCHIP, "in-kernel irqchip", true, "interrupt controllers" },
		{ KVM_CAP_PIT2, "in-kernel PIT", true, "timer" },
		{ KVM_CAP_USER_MEMORY, "user memory slots", true, "guest RAM" },
		{ KVM_CAP_IMMEDIATE_EXIT, "immediate exit", true, "stopping vCPUs" },
		{ KVM_CAP_EXT_CPUID, "extended CPUID", true, "CPUID" },
		{ KVM_CAP_IOEVENTFD, "ioeventfd", false, "virtio kicks without an exit to padcell; else slower" },
		{ KVM_CAP_IRQFD, "irqfd", false, "virtio interrupts; else KVM_IRQ_LINE" },
		{ KVM_CAP_ADJUST_CLOCK, "adjust clock", false, "snapshot/restore of kvmclock" },
		{ KVM_CAP_XSAVE, "XSAVE state", false, "snapshot/restore of FPU state" },
		{ KVM_CAP_VCPU_EVENTS, "vCPU events", false, "snapshot/restore" },
	};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		bool have = ioctl(kvm, KVM_CHECK_EXTENSION, caps[i].cap) > 0;
		snprintf(buf, sizeof(buf), "%s (%s)", have ? "yes" : "no", caps[i].why);
		row(out, have ? "ok" : caps[i].required ? "FAIL" : "warn", caps[i].name, buf);
		problems += !have && caps[i].required;
	}
	int max_vcpus = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_vcpus <= 0)
		max_vcpus = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max_vcpus > ACPI_MAX_CPUS)
		max_vcpus = ACPI_MAX_CPUS;
	snprintf(buf, sizeof(buf), "%d", max_vcpus);
	row(out, "ok", "max vCPUs per VM", buf);
	close(kvm);

	row(out, vmx || svm ? "ok" : "warn", "virtualization", kind);
	if (host_kvm_kind() == HOST_KVM_PVM) {
		fprintf(out,
			"note: this host's KVM is PVM (software virtualization). Standard Linux guest kernels\n"
			"      cannot run here: they need a kernel built with CONFIG_PVM_GUEST. Tiny polling\n"
			"      test guests do run. To boot a real guest on this machine use the nested tier\n"
			"      (`make demo` does this automatically).\n");
		problems++;
	}
	access("/dev/net/tun", F_OK) == 0 ? row(out, "ok", "/dev/net/tun", "present (networking, later features)")
					  : row(out, "warn", "/dev/net/tun", "missing (networking, later features)");

	/* The jail (README "The jail"): what this host lets padcell confine itself with. */
	struct jail_support js;
	jail_probe(&js);
	row(out, js.seccomp ? "ok" : "FAIL", "seccomp filters", js.seccomp ? "available" : "missing: padcell cannot confine itself (--no-jail runs anyway)");
	if (!js.seccomp)
		problems++;
	snprintf(buf, sizeof(buf), "ABI %d", js.landlock_abi);
	row(out, js.landlock_abi ? "ok" : "warn", "Landlock", js.landlock_abi ? buf : "missing: the monitor's file access is not restricted");
	row(out, js.userns ? "ok" : "warn", "user namespaces", js.userns ? "allowed (rootless runs get mount/PID/network/IPC/UTS namespaces)"
								 : "not allowed for unprivileged users");
	row(out, js.pidns ? "ok" : "warn", "PID namespaces", js.pidns ? "the monitor runs as pid 1 of its own, under a supervisor"
								: "cannot be made: the monitor runs among the host's pids");
	row(out, js.cgroup2_delegated ? "ok" : "warn", "cgroup v2 delegated", js.cgroup_detail);
	if (problems)
		fprintf(out, "result: %d problem(s): standard guest kernels will not run on this host\n", problems);
	else
		fprintf(out, "result: ready\n");
	return problems ? 1 : 0;
}

int cmd_check(int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "padcell: check takes no arguments (got '%s')\n", argv[1]);
		return EXIT_USAGE;
	}
	return check_run(stdout) ? EXIT_HOST_ERROR : 0;
}
