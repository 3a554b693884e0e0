# Test initramfs: busybox-static + images/init.sh, archived by the kernel's gen_init_cpio (no root).
.PHONY: initramfs
initramfs: $(BUILD)/images/initramfs.cpio.gz

$(BUILD)/images/initramfs.cpio.gz: images/build-initramfs.sh images/init.sh $(BUILD)/kernel/gen_init_cpio
	@scripts/deps.sh images
	@images/build-initramfs.sh $@

$(BUILD)/kernel/gen_init_cpio:
	@$(MAKE) --no-print-directory kernel
