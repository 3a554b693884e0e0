# Root filesystem images (images/build-rootfs.sh): no root, no loop devices, no mount.
#   rootfs-min     build/images/rootfs-min.{ext4,erofs}: busybox-static + images/rootfs/init (seconds)
#   rootfs-debian  build/images/rootfs-debian.ext4: bookworm minbase + python3 by mmdebstrap
#                  (about a minute cold, needs the Debian mirror; under a second from the cache)
#   rootfs-check   boot the minimal images in QEMU microvm (TCG) and run their self-test
#   rootfs-check-debian   the same for the Debian image (builds it if needed)
#   rootfs-check-debian-cached   the same only when the cache has the image (never builds, never
#                  goes online): SKIP otherwise — the variant for `make test`
ROOTFS_INPUTS := images/build-rootfs.sh images/rootfs/init images/rootfs/selftest

.PHONY: rootfs-min rootfs-debian rootfs-check rootfs-check-debian rootfs-check-debian-cached
rootfs-min: $(BUILD)/images/rootfs-min.ext4 $(BUILD)/images/rootfs-min.erofs

$(BUILD)/images/rootfs-min.ext4 $(BUILD)/images/rootfs-min.erofs &: $(ROOTFS_INPUTS) $(GUEST_BUILD)/padcell-agent
	@images/build-rootfs.sh --out $(BUILD)/images --agent $(GUEST_BUILD)/padcell-agent min

# Always asks the script: its content-addressed cache decides whether anything is built.
rootfs-debian: $(GUEST_BUILD)/padcell-agent
	@images/build-rootfs.sh --out $(BUILD)/images --agent $(GUEST_BUILD)/padcell-agent debian

rootfs-check: rootfs-min
	@[ -f $(BUILD)/kernel/bzImage ] || $(MAKE) --no-print-directory kernel
	@scripts/deps.sh nested
	@images/rootfs/qemu-check.sh $(BUILD)/images/rootfs-min.ext4 $(BUILD)/images/rootfs-min.erofs

rootfs-check-debian: rootfs-debian
	@[ -f $(BUILD)/kernel/bzImage ] || $(MAKE) --no-print-directory kernel
	@scripts/deps.sh nested
	@images/rootfs/qemu-check.sh $(BUILD)/images/rootfs-debian.ext4

rootfs-check-debian-cached:
	@rc=0; images/build-rootfs.sh --out $(BUILD)/images --cached-only debian || rc=$$?; \
	if [ $$rc = 3 ]; then echo "SKIP rootfs-debian.ext4 (not cached; make rootfs-debian builds it)"; \
	elif [ $$rc != 0 ]; then exit $$rc; \
	else [ -f $(BUILD)/kernel/bzImage ] || $(MAKE) --no-print-directory kernel; \
		images/rootfs/qemu-check.sh $(BUILD)/images/rootfs-debian.ext4; fi
