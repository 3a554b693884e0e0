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

#include "vmm/err.h"
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
 * device through a vCPU exit (which only wakes its thread), and interrupts go through
 * KVM_IRQ_LINE.  So a refusal from KVM is not an error.
 */
static void virtio_connect_kvm(struct vm *vm, struct device *d)
{
	/* The device thread sleeps on its kick eventfd; the device says which QueueNotify values wake it. */
	if (d->kick_fd >= 0) {
		struct kvm_ioeventfd io = {
			.datamatch = 0,
			.addr = d->base + VIRTIO_MMIO_QUEUE_NOTIFY,
			.len = 4,
			.fd = d->kick_fd,
			.flags = d->kick_datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0,
		};
		d->ioeventfd = ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) == 0;
	}
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

int vm_virtio_add(struct vm *vm, dev_create_fn *create, const void *params, char *err, size_t errlen)
{
	if (vm->nvirtio >= LAYOUT_VIRTIO_MAX || vm->ndevices >= VM_MAX_DEVICES)
		return errorf(err, errlen, -EINVAL, "too many virtio devices (at most %u)", LAYOUT_VIRTIO_MAX);
	unsigned slot = vm->nvirtio;
	struct device *d = &vm->devices[vm->ndevices];
	*d = (struct device){ .index = slot, .kick_fd = -1, .irqfd = -1 };
	vm_virtio_slot(slot, &d->base, &d->irq);
	int rc = create(d, &vm->mem, &vm->devhost, params);
	if (rc)
		return errorf(err, errlen, rc, "cannot create virtio device %u: %s", slot, strerror(-rc));
	vm->ndevices++;
	vm->nvirtio++;
	rc = bus_register(&vm->mmio, d->base, d->len, d->bus_ops, d->bus_opaque, d->ops->name);
	if (!rc && d->ops->start)
		rc = d->ops->start(d);
	if (rc)
		return errorf(err, errlen, rc, "cannot add the %s device in virtio slot %u: %s", d->ops->name, slot,
			      strerror(-rc));
	virtio_connect_kvm(vm, d);
	return 0;
}
