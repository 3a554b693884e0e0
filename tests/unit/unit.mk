# Criterion unit tests: device state machines on a fake bus, loaders and ACPI on real guest_mem,
# and the CLI driven end to end.  `make unit` builds and runs them; `make unit-tests-bin` only builds.
UNIT_SRCS := tests/unit/images.c tests/unit/test_gmem.c tests/unit/test_bus.c \
             tests/unit/test_serial.c tests/unit/test_devices.c tests/unit/test_loader.c \
             tests/unit/test_boot.c tests/unit/test_acpi.c tests/unit/test_cli_parse.c \
             tests/unit/test_cli_e2e.c tests/unit/test_vm.c \
             tests/unit/test_virtq.c tests/unit/test_virtio_mmio.c tests/unit/test_virtio_blk.c \
             tests/unit/test_virtio_vsock.c \
             tests/unit/test_api_http.c tests/unit/test_api.c \
             tests/unit/test_snapshot.c tests/unit/test_agent.c tests/unit/test_agent_flow.c \
             tests/unit/test_agent_hostile.c \
             tests/unit/test_util.c \
             tests/unit/report.c
UNIT_OBJS := $(UNIT_SRCS:%.c=$(BUILD)/%.o)
UNIT_BIN  := $(BUILD)/tests/unit-tests

.PHONY: unit unit-tests-bin
unit-tests-bin: $(UNIT_BIN) $(GUEST_BUILD)/padcell-agent

$(UNIT_BIN): $(UNIT_OBJS) $(BUILD)/libpadcell.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJS) $(BUILD)/libpadcell.a -lcriterion $(PADCELL_LDLIBS)

# The end-to-end tests spawn build/padcell, so it is built first.
unit: $(UNIT_BIN) $(BUILD)/padcell $(GUEST_BUILD)/padcell-agent
	$(UNIT_BIN) --jobs 2
