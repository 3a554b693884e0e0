/* Virtio-mmio devices in the VM: bus windows, IRQs, KVM ioeventfd kicks and irqfd interrupts. */
#include <errno.h>
#include <linux/kvm.h>
#include <linux/virtio_mmio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm/vm.h"

static const unsigned char virtio_irqs[LAYOUT_VIRTIO_MAX] = LAYOUT_VIRTIO_IRQS;

void vm_virtio_slot(unsigned i, uint64_t *base, unsigned *irq)
{
	*base = LAYOUT_VIRTIO_MMIO_BASE + (uint64_t)i * LAYOUT_VIRTIO_MMIO_STRIDE;
	*irq = virtio_irqs[i];
}

int vm_virtio_cmdline(char *out, size_t outlen, const char *user, unsigned ndev, int root_disk)
{
	if (ndev > LAYOUT_VIRTIO_MAX)
		return -EINVAL;
	size_t n = (size_t)snprintf(out, outlen, "%s", user);
	/* root= as its own word anywhere in the user's line means the user chose the root. */
	bool has_root = !strncmp(user, "root=", 5) || strstr(user, " root=");
	if (root_disk >= 0 && !has_root && n < outlen)
		n += (size_t)snprintf(out + n, outlen - n, " root=/dev/vda%s", root_disk ? " ro" : "");
	for (unsigned i = 0; i < ndev && n < outlen; i++) {
		uint64_t base;
		unsigned irq;
		vm_virtio_slot(i, &base, &irq);
		n += (size_t)snprintf(out + n, outlen - n, " virtio_mmio.device=%uK@0x%llx:%u",
				      VIRTIO_MMIO_RANGE_LEN >> 10, (unsigned long long)base, irq);
	}
	return n < outlen ? 0 : -ENAMETOOLONG;
}

/*
 * The notification fds are an optimisation: without them QueueNotify still reaches the
 * device through a vCPU exit (which only wakes the worker), and interrupts go through
 * KVM_IRQ_LINE.  So a refusal from KVM is not an error.
 */
static void virtio_connect_kvm(struct vm *vm, struct vm_virtio *d)
{
	/*
	 * The device thread sleeps on its kick eventfd.  virtio-blk has one queue: KVM signals it
	 * for QueueNotify == 0.  virtio-vsock serves all three queues in one pass: any value does.
	 */
	struct kvm_ioeventfd io = {
		.datamatch = 0,
		.addr = d->base + VIRTIO_MMIO_QUEUE_NOTIFY,
		.len = 4,
		.fd = d->blk ? d->blk->kick_fd : d->vsock->kick_fd,
		.flags = d->blk ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0,
	};
	d->ioeventfd = ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) == 0;
	d->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->irqfd >= 0) {
		struct kvm_irqfd irqfd = { .fd = (uint32_t)d->irqfd, .gsi = d->irq };
		if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
			close(d->irqfd);
			d->irqfd = -1;
		} else {
			vm->irqfd_by_gsi[d->irq] = d->irqfd;
		}
	}
	if (vm->verbose)
		fprintf(stderr, "padcell: virtio-mmio at 0x%llx irq %u: %s, %s\n", (unsigned long long)d->base, d->irq,
			d->ioeventfd ? "ioeventfd" : "notify by exit", d->irqfd >= 0 ? "irqfd" : "KVM_IRQ_LINE");
}

int vm_virtio_add(struct vm *vm, const struct vm_config *cfg, char *err, size_t errlen)
{
	for (unsigned i = 0; i < sizeof(vm->irqfd_by_gsi) / sizeof(vm->irqfd_by_gsi[0]); i++)
		vm->irqfd_by_gsi[i] = -1;
	unsigned ndev = cfg->ndisks + (cfg->vsock_path ? 1 : 0);
	if (ndev > LAYOUT_VIRTIO_MAX) {
		snprintf(err, errlen, "too many virtio devices (%u, at most %u)", ndev, LAYOUT_VIRTIO_MAX);
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->ndisks; i++) {
		struct vm_virtio *d = &vm->virtio[i];
		*d = (struct vm_virtio){ .irqfd = -1 };
		vm_virtio_slot(i, &d->base, &d->irq);
		d->blk = calloc(1, sizeof(*d->blk));
		int rc = d->blk ? virtio_blk_init(d->blk, &cfg->disks[i], &vm->mem, &vm->devhost, d->irq) : -ENOMEM;
		if (rc) {
			free(d->blk);
			d->blk = NULL;
			snprintf(err, errlen, "cannot create virtio-blk device %u: %s", i, strerror(-rc));
			return rc;
		}
		vm->nvirtio++;
		rc = bus_register(&vm->mmio, d->base, VIRTIO_MMIO_RANGE_LEN, &virtio_mmio_ops, &d->blk->t,
				      "virtio-blk");
		if (!rc)
			rc = virtio_blk_start(d->blk);
		if (rc) {
			snprintf(err, errlen, "cannot add virtio-blk device %u: %s", i, strerror(-rc));
			return rc;
		}
		virtio_connect_kvm(vm, d);
	}
	if (cfg->vsock_path) {
		struct vm_virtio *d = &vm->virtio[vm->nvirtio];
		*d = (struct vm_virtio){ .irqfd = -1 };
		vm_virtio_slot(vm->nvirtio, &d->base, &d->irq);
		d->vsock = calloc(1, sizeof(*d->vsock));
		int rc = d->vsock ? virtio_vsock_init(d->vsock, cfg->vsock_path, cfg->vsock_listen_fd, cfg->vsock_cid,
						      &vm->mem, &vm->devhost, d->irq)
				  : -ENOMEM;
		if (rc) {
			free(d->vsock);
			d->vsock = NULL;
			snprintf(err, errlen, "cannot create the virtio-vsock device: %s", strerror(-rc));
			return rc;
		}
		vm->nvirtio++;
		rc = bus_register(&vm->mmio, d->base, VIRTIO_MMIO_RANGE_LEN, &virtio_mmio_ops, &d->vsock->t,
				  "virtio-vsock");
		if (!rc)
			rc = virtio_vsock_start(d->vsock);
		if (rc) {
			snprintf(err, errlen, "cannot add the virtio-vsock device: %s", strerror(-rc));
			return rc;
		}
		virtio_connect_kvm(vm, d);
	}
	return 0;
}

void vm_virtio_destroy(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		struct vm_virtio *d = &vm->virtio[i];
		if (d->blk)
			virtio_blk_destroy(d->blk);
		if (d->vsock)
			virtio_vsock_destroy(d->vsock);
		free(d->blk);
		free(d->vsock);
		if (d->irqfd >= 0)
			close(d->irqfd);
		*d = (struct vm_virtio){ .irqfd = -1 };
	}
	vm->nvirtio = 0;
	for (unsigned i = 0; i < sizeof(vm->irqfd_by_gsi) / sizeof(vm->irqfd_by_gsi[0]); i++)
		vm->irqfd_by_gsi[i] = -1;
}
