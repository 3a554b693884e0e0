# Test tiers.  `make test` installs what it needs, builds everything, runs every tier.
.PHONY: test unit kvm-test kvm-inproc nested-test bench demo

TEST_BINS := $(BUILD)/padcell $(BUILD)/padcell-static $(BUILD)/padcell-dyn

test:
	@scripts/deps.sh build kernel images nested rootfs fuzz
	@$(MAKE) --no-print-directory $(TEST_BINS) unit-tests-bin $(KVM_INPROC_BIN) unit-san-bin fuzz-bin testguest kernel initramfs rootfs-min $(BUILD)/rawconnect $(BUILD)/upstream
	@$(MAKE) --no-print-directory rootfs-debian || \
		echo "WARNING: the Debian image did not build (Debian mirror unreachable?): the nested-debian tier will be skipped"
	@tests/run-all.sh

kvm-test: $(BUILD)/padcell testguest
	tests/kvm/run.sh

# In-process KVM tests (tests/kvm/inproc.c): the library itself boots, snapshots and restores the
# test guest and compares the two VMs.  Beside the shell-driven KVM tier, not instead of it.
KVM_INPROC_BIN := $(BUILD)/tests/kvm-inproc
$(KVM_INPROC_BIN): $(BUILD)/tests/kvm/inproc.o $(BUILD)/tests/kvm/report.o $(BUILD)/libpadcell.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion $(LIB_DYN_LDLIBS)
# The unit tests' summary line, named for this tier.
$(BUILD)/tests/kvm/report.o: tests/unit/report.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -DREPORT_TIER='"kvm-inproc"' -c $< -o $@
kvm-inproc: $(KVM_INPROC_BIN) testguest
	$(KVM_INPROC_BIN) --jobs 1

nested-test: $(TEST_BINS) kernel initramfs
	@scripts/deps.sh nested
	tests/nested/boot-test.sh

bench:
	@scripts/deps.sh build kernel images nested rootfs debian bench
	@$(MAKE) --no-print-directory $(TEST_BINS) testguest kernel initramfs rootfs-min rootfs-debian $(BUILD)/vmmprobe $(BUILD)/spin.elf $(BUILD)/blkread $(BUILD)/vsockbench $(BUILD)/usock
	@tests/bench/run.sh

# scripts/demo.sh installs and builds what it needs itself (padcell, kernel, Debian image).
demo:
	@MAKE="$(MAKE)" scripts/demo.sh

$(BUILD)/vmmprobe: tests/bench/vmmprobe.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -static -o $@ $<

# The benchmark guest's block reader (runs inside the nested tier's L2 guest).
$(BUILD)/blkread: tests/bench/blkread.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -O2 -static -o $@ $<

# The nested restore benchmark's QEMU monitor client (tests/bench/usock.c), static: it runs in L1.
$(BUILD)/usock: tests/bench/usock.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -static -o $@ $<

# vsock throughput: the guest's sender and the host's sink (tests/bench/vsockbench.c).
$(BUILD)/vsockbench: tests/bench/vsockbench.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -O2 -static -o $@ $<

# The benchmark guest: PVH entry, one byte on COM1, then spin (tests/bench/spin.S).
$(BUILD)/spin.elf: tests/bench/spin.S tests/bench/spin.ld
	@mkdir -p $(dir $@)
	$(CC) -nostdlib -static -Wl,--build-id=none -T tests/bench/spin.ld -o $@ tests/bench/spin.S
