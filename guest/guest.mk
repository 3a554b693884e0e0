# The test guest (guest/testguest): a freestanding ELF64 linked at 1 MiB with a PVH note,
# booted by padcell through both entry protocols.  Included from the top-level Makefile.
GUEST_BUILD := $(BUILD)/guest
TG_SRCS := guest/testguest/main.c guest/testguest/acpi.c guest/testguest/devices.c \
           guest/testguest/smp.c guest/testguest/console.c guest/testguest/exit.c \
           guest/testguest/lib.c guest/testguest/virtio.c guest/testguest/vsock.c \
           guest/testguest/count.c guest/testguest/net.c
TG_ASM  := guest/testguest/entry.S guest/testguest/trampoline.S
TG_OBJS := $(TG_SRCS:%.c=$(BUILD)/%.o) $(TG_ASM:%.S=$(BUILD)/%.o)

# No SSE, no red zone (nothing may touch state padcell did not set up), no CET
# (endbr64 is not an instruction the PVM emulator promises), no stack protector.
TG_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -Wshadow $(if $(filter 1,$(WERROR)),-Werror) \
             -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables \
             -fcf-protection=none -mno-red-zone -mno-sse -mno-mmx -mno-avx -mgeneral-regs-only \
             -mcmodel=small -m64 -I. -I/usr/include -I/usr/include/x86_64-linux-gnu -MMD -MP
TG_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,max-page-size=0x1000 \
              -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments -Wl,-T,guest/testguest/testguest.ld

.PHONY: testguest
testguest: $(GUEST_BUILD)/testguest.elf $(GUEST_BUILD)/tg-mkinitrd $(GUEST_BUILD)/tg-vsock

$(BUILD)/guest/testguest/%.o: guest/testguest/%.c
	@mkdir -p $(dir $@)
	$(CC) $(TG_CFLAGS) -c $< -o $@

$(BUILD)/guest/testguest/%.o: guest/testguest/%.S
	@mkdir -p $(dir $@)
	$(CC) $(TG_CFLAGS) -c $< -o $@

$(GUEST_BUILD)/testguest.elf: $(TG_OBJS) guest/testguest/testguest.ld
	$(CC) $(TG_LDFLAGS) -o $@ $(TG_OBJS)

# Host tool: the initrd pattern the guest checks (guest/testguest/pattern.h).
$(GUEST_BUILD)/tg-mkinitrd: guest/tools/tg-mkinitrd.c guest/testguest/pattern.h
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -o $@ $<

# Host tool: runs padcell and checks tg.case=vsock from the host's side (CONNECT, echo, PATH_5000).
$(GUEST_BUILD)/tg-vsock: guest/tools/tg-vsock.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -o $@ $<

# The guest agent (guest/agent): static, init of the run images (/sbin/padcell-agent), and run
# by the unit tests as an ordinary host process (--serve-fd).
.PHONY: agent
agent: $(GUEST_BUILD)/padcell-agent
AGENT_SRCS := guest/agent/agent.c guest/agent/procs.c guest/agent/proto.c guest/agent/netcfg.c guest/agent/watch.c
$(GUEST_BUILD)/padcell-agent: $(AGENT_SRCS) guest/agent/proto.h guest/agent/netcfg.h guest/agent/procs.h \
			       guest/agent/watch.h
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -static -o $@ $(AGENT_SRCS)
