# Nested tier (design-notes §2): real KVM inside an emulated L1 host.  `nested-test` (tests/tests.mk)
# runs the padcell cases; these run QEMU microvm as the L2 VMM, alone (harness check) or side by side.
.PHONY: nested-qemu nested-compare
nested-qemu: kernel initramfs
	@scripts/deps.sh nested
	tests/nested/boot-test.sh --vmm qemu

nested-compare: $(BUILD)/padcell-static kernel initramfs
	@scripts/deps.sh nested
	tests/nested/boot-test.sh --vmm both

# The raw CONNECT-protocol client of the run test (tests/nested/rawconnect.c): static, runs in L1.
$(BUILD)/rawconnect: tests/nested/rawconnect.c guest/agent/proto.c guest/agent/proto.h
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -static -o $@ tests/nested/rawconnect.c guest/agent/proto.c

# The net tier's "internet" UDP services (tests/nested/upstream.c: a DNS server that logs what it is
# asked, a UDP sink): static, run in L1's test netns; the DNS one on padcell's own wire code.
$(BUILD)/upstream: tests/nested/upstream.c vmm/net/dns.c vmm/net/dns.h
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -static -o $@ tests/nested/upstream.c vmm/net/dns.c
