/* The VM handle: one object owns KVM, guest memory, the buses, devices and vCPU threads. */
#ifndef PADCELL_VM_H
#define PADCELL_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/bus.h"
#include "devices/devhost.h"
#include "devices/device.h"
#include "devices/serial.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_vsock.h"
#include "vmm/x86/boot_x86_64.h"
#include "vmm/x86/layout.h"
#include "vmm/mem.h"

/* Why the VM stopped.  main() maps these to the documented process exit codes. */
enum vm_status {
	VM_RUNNING = 0,
	VM_STOP_POWEROFF,  /* ACPI S5                                   */
	VM_STOP_REBOOT,    /* keyboard-controller reset                  */
	VM_STOP_PANIC,     /* pvpanic                                    */
	VM_STOP_CRASH,     /* triple fault, KVM internal error, bad exit */
	VM_STOP_HOST_ERROR,/* the monitor itself failed                  */
	VM_STOP_SIGNAL,    /* padcell was told to stop                   */
};

/* Stack size for the monitor's own threads (vCPUs; device workers use DEVTHREAD_STACK, the same). */
#define VM_THREAD_STACK (256u << 10)

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
};

struct vm_config {
	uint64_t mem_size;
	unsigned ncpus;
	int console_out; /* fd guest serial output goes to */
	bool verbose;
	struct blk_disk *disks; /* opened by the caller, who closes them after vm_destroy */
	unsigned ndisks;        /* at most LAYOUT_VIRTIO_MAX; device i is /dev/vd('a'+i) */
	const char *vsock_path; /* --vsock: NULL for none; then the next virtio slot after the disks */
	int vsock_listen_fd;    /* from vsock_listen(vsock_path), the caller's */
	uint32_t vsock_cid;
	const struct net_params *net; /* --net/--allow: NULL for no NIC (the default); the slot after vsock */
	int mem_fd;             /* with mem_from_file: guest RAM is this file, mapped copy-on-write (restore) */
	const char *mem_path;   /* its name, for the error if it is truncated under the VM */
	bool mem_from_file;
	/* restore: LAYOUT_VIRTIO_MAX paths, entry i replacing the snapshot's drive in slot i (NULL: keep it), or NULL */
	const char *const *restore_drives;
	/* restore: LAYOUT_VIRTIO_MAX entries, entry i the rate limit of the snapshot's disk i (NULL: none), or NULL */
	const struct ratelimit_cfg *const *drive_rates;
};

/* The legacy PC devices (UART, i8042, ACPI PM, pvpanic) and the virtio-mmio slots. */
#define VM_MAX_DEVICES (4 + LAYOUT_VIRTIO_MAX)

struct vm {
	int kvm_fd;
	int vm_fd;
	int run_size; /* size of each vCPU's struct kvm_run mapping */
	struct guest_mem mem;
	struct bus pio;
	struct bus mmio;
	unsigned ncpus;
	struct vcpu *vcpus;
	struct kvm_cpuid2 *cpuid; /* what KVM supports; patched per vCPU */
	bool verbose;

	struct dev_host devhost;
	/* Every device, in the order vm_devices_add added them: paused, saved, restored and destroyed in loops. */
	struct device devices[VM_MAX_DEVICES];
	unsigned ndevices;
	unsigned nvirtio;        /* of those, virtio-mmio slots taken */
	struct serial *console;  /* the UART the event loop feeds host input to */
	int irqfd_by_gsi[24];    /* -1 where no irqfd is registered */

	_Atomic int status;      /* enum vm_status; the first stop wins */
	int stop_efd;            /* eventfd: signalled when status leaves VM_RUNNING */
	char stop_detail[160];   /* e.g. the exit reason and RIP of a crash */
	int stop_signal;         /* for VM_STOP_SIGNAL: which signal, 0 for the console escape */

	/* Pause (vm_pause): vCPU threads park on pause_cond; the lock covers the fields below. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool pause_sync;         /* pause_lock/pause_cond initialised */
	_Atomic bool pause_req;  /* vCPUs: park at the top of the run loop */
	unsigned parked;         /* vCPU threads parked, their last exit completed */
	unsigned exited;         /* vCPU threads that left their run loop */
	bool paused;             /* parked and device threads quiesced */

	/* Guest RAM from a file (restore): a truncated file faults (SIGBUS, or EFAULT from KVM_RUN). */
	char mem_file[256];
	char mem_fault_detail[160]; /* stop_detail for that, written ahead: the SIGBUS handler only copies it */

	struct blk_disk *own_disks; /* disks vm_restore opened; closed by vm_destroy */
	unsigned own_ndisks;
};

/*
 * Opens /dev/kvm, creates the VM with its irqchip, PIT, memory and devices.
 * Returns 0 or -errno; on failure err says what and nothing is left open.
 */
int vm_create(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen);
void vm_destroy(struct vm *vm);

/* Creates the vCPUs and sets their registers for the loaded kernel. */
int vm_setup_vcpus(struct vm *vm, const struct boot_result *boot, char *err, size_t errlen);

/* Starts every vCPU thread; vm_stop_all() kicks them out of KVM_RUN; vm_join() waits. */
int vm_start(struct vm *vm);
void vm_kick_all(struct vm *vm);
void vm_join(struct vm *vm);

/* Records why the VM ends (first caller wins) and wakes the event loop. */
void vm_request_stop(struct vm *vm, enum vm_status why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline enum vm_status vm_status(struct vm *vm) { return atomic_load(&vm->status); }

/*
 * Pause: kicks every vCPU out of KVM_RUN, completes its last I/O or MMIO exit and parks it,
 * then stops the device threads (no request in flight, no guest-memory writes).  Returns when
 * all of that is done; 0 or -errno with err set.  Pausing a paused VM is 0.  A paused VM still
 * stops (vm_request_stop wakes the parked vCPUs, which then leave their loops).
 */
int vm_pause(struct vm *vm, char *err, size_t errlen);
/* Restarts the device threads, then unparks the vCPUs.  Resuming a running VM is 0. */
int vm_resume(struct vm *vm, char *err, size_t errlen);
bool vm_is_paused(struct vm *vm);

/* Interrupt line for a device (in-kernel irqchip). */
int vm_irq_line(struct vm *vm, unsigned irq, int level);

/*
 * vm_devices.c, the one place that knows which devices a VM has: adds them all in boot order
 * (OpenBSD vmd's init_emulated_hw), 0 or -errno with err set.  Called by vm_create.
 */
int vm_devices_add(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen);
/*
 * A live change of the rate limiters of resource cls ("drive", "net") named id, from the API: asks
 * each device's set_rate hook in turn.  -ENOENT with err set when no device is that resource.
 */
int vm_set_rate(struct vm *vm, const char *cls, const char *id, const struct ratelimit_patch *p, unsigned np,
		char *err, size_t errlen);
/*
 * The egress policy of the VM's NIC, live (the API's PUT and GET /network/policy): as the
 * devices' set_policy/get_policy hooks.  -ENOENT with err set when the VM has no NIC.
 */
struct policy_view;
int vm_set_policy(struct vm *vm, const char *const *rules, size_t n, bool open, char *err, size_t errlen);
int vm_get_policy(struct vm *vm, struct policy_view *v, char *err, size_t errlen);
/*
 * Its restore half (vmd's restore_emulated_hw): fills in what cfg needs to make the snapshot's
 * devices again (disks reopened into `disks`, LAYOUT_VIRTIO_MAX of them; the vsock CID), or
 * refuses a cfg that does not fit the snapshot.  0 or -errno with err set; disks closed then.
 */
int vm_devices_config_restore(const struct dev_snap_in *in, struct vm_config *cfg, struct blk_disk *disks,
			      char *err, size_t errlen);

/* A port-I/O device at [base, base + its length) with interrupt irq, made by create(params), started. */
int vm_pio_add(struct vm *vm, uint64_t base, unsigned irq, dev_create_fn *create, const void *params,
	       char *err, size_t errlen);
/* vm_virtio.c: a virtio-mmio device in the next free slot, with ioeventfd kicks and irqfd interrupts. */
int vm_virtio_add(struct vm *vm, dev_create_fn *create, const void *params, char *err, size_t errlen);
/* Stops and releases every device, the last added first; the VM's notification fds with them. */
void vm_devices_destroy(struct vm *vm);
/* Where device i lives: one table, so the command line and the bus always agree. */
void vm_virtio_slot(unsigned i, uint64_t *base, unsigned *irq);
/*
 * The kernel command line padcell passes: the user's, then "root=/dev/vda" (+ " ro") when
 * root_disk >= 0 (0 writable, 1 read-only) and the user's line has no root=, then one
 * virtio_mmio.device=<size>@<base>:<irq> per device.  -ENAMETOOLONG if it does not fit.
 */
int vm_virtio_cmdline(char *out, size_t outlen, const char *user, unsigned ndev, int root_disk);

/* vcpu.c */
/* Creates vCPU `index` and maps its kvm_run; registers are KVM's reset state. */
int vcpu_create(struct vm *vm, struct vcpu *v, unsigned index, char *err, size_t errlen);
int vcpu_init(struct vm *vm, struct vcpu *v, unsigned index, const struct boot_result *boot,
	      char *err, size_t errlen);
void *vcpu_thread(void *arg);
int vcpu_kick_signal(void); /* the signal used to interrupt KVM_RUN */

/* cpuid.c: adapt KVM's supported CPUID for one vCPU (APIC ID, topology). */
struct kvm_cpuid2;
struct kvm_cpuid2 *cpuid_supported(int kvm_fd);
void cpuid_patch_for_vcpu(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus);

#endif
