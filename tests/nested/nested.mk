# Nested tier (design-notes §2): real KVM inside an emulated L1 host.  `nested-test` (tests/tests.mk)
# runs the padcell cases; these run QEMU microvm as the L2 VMM, alone (harness check) or side by side.
.PHONY: nested-qemu nested-compare
nested-qemu: kernel initramfs
	@scripts/deps.sh nested
	tests/nested/boot-test.sh --vmm qemu

nested-compare: $(BUILD)/padcell-static kernel initramfs
	@scripts/deps.sh nested
	tests/nested/boot-test.sh --vmm both
