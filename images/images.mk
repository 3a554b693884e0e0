# Test initramfs: busybox-static + images/init.sh, archived by the kernel's gen_init_cpio (no root).
.PHONY: initramfs
initramfs: $(BUILD)/images/initramfs.cpio.gz

$(BUILD)/images/initramfs.cpio.gz: images/build-initramfs.sh images/init.sh $(BUILD)/kernel/gen_init_cpio
	@scripts/deps.sh images
	@images/build-initramfs.sh $@

# gen_init_cpio comes out of the kernel build; an order-only prerequisite so a parallel make runs
# that build once, not twice at the same time.
$(BUILD)/kernel/gen_init_cpio: | kernel
	@test -x $@ || { echo "$@ missing after the kernel build"; exit 1; }

# The default guest `padcell run` boots when given no --kernel/--rootfs: build/share/padcell/vmlinuz
# (the project's kernel) and rootfs.ext4 (the Debian image: python3 and the agent as init).  padcell
# looks in share/padcell beside its own binary, then ../share/padcell (an installed bin/padcell).
.PHONY: images
images: $(BUILD)/padcell kernel rootfs-debian
	@mkdir -p $(BUILD)/share/padcell
	@cp $(BUILD)/kernel/bzImage $(BUILD)/share/padcell/.vmlinuz.tmp
	@mv $(BUILD)/share/padcell/.vmlinuz.tmp $(BUILD)/share/padcell/vmlinuz
	@cp --sparse=always $(BUILD)/images/rootfs-debian.ext4 $(BUILD)/share/padcell/.rootfs.ext4.tmp
	@mv $(BUILD)/share/padcell/.rootfs.ext4.tmp $(BUILD)/share/padcell/rootfs.ext4
	@echo "images: $(BUILD)/share/padcell/vmlinuz and rootfs.ext4 are padcell run's defaults"
