# Criterion unit tests: device state machines on a fake bus, loaders and ACPI on real guest_mem,
# and the CLI driven end to end.  `make unit` builds and runs them; `make unit-tests-bin` only builds.
UNIT_SRCS := tests/unit/images.c tests/unit/test_gmem.c tests/unit/test_bus.c \
             tests/unit/test_serial.c tests/unit/test_devices.c tests/unit/test_device_ops.c tests/unit/test_loader.c \
             tests/unit/test_boot.c tests/unit/test_acpi.c tests/unit/test_cli_parse.c \
             tests/unit/test_cli_e2e.c tests/unit/test_vm.c \
             tests/unit/test_virtq.c tests/unit/test_virtio_mmio.c tests/unit/test_virtio_blk.c \
             tests/unit/test_virtio_vsock.c tests/unit/test_virtio_net.c \
             tests/unit/test_api_http.c tests/unit/test_api.c \
             tests/unit/test_snapshot.c tests/unit/test_agent.c tests/unit/test_agent_flow.c \
             tests/unit/test_agent_hostile.c tests/unit/test_agent_netcfg.c guest/agent/netcfg.c \
             tests/unit/test_agent_fs.c tests/unit/test_agent_procs.c tests/unit/test_agent_watch.c tests/unit/test_mcp.c \
             tests/unit/test_util.c tests/unit/test_cgroup.c tests/unit/test_footprint.c \
             tests/unit/test_ratelimit.c tests/unit/test_net_policy.c tests/unit/test_net_gate.c \
             tests/unit/test_net_dns.c tests/unit/test_net_sni.c tests/unit/test_net_httpreq.c tests/unit/test_net_sniproxy.c tests/unit/test_net_resolve.c \
             tests/unit/test_jail.c \
             tests/unit/test_serve.c tests/unit/test_serve_http.c vmm/serve/http.c tests/unit/test_envd.c \
             tests/unit/test_spawner.c \
             tests/unit/report.c
UNIT_OBJS := $(UNIT_SRCS:%.c=$(BUILD)/%.o)
UNIT_BIN  := $(BUILD)/tests/unit-tests

.PHONY: unit unit-tests-bin
unit-tests-bin: $(UNIT_BIN) $(GUEST_BUILD)/padcell-agent

# The unit tests link dynamically, so they always have libslirp (libslirp-dev), whatever SLIRP says
# for padcell: the backend is built once more with it, ahead of libpadcell.a, whose stub then stays out.
UNIT_SLIRP_OBJ := $(BUILD)/tests/unit/net_slirp_on.o
$(UNIT_SLIRP_OBJ): devices/net_slirp.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -DPADCELL_SLIRP -I/usr/include/slirp -c $< -o $@

$(UNIT_BIN): $(UNIT_OBJS) $(UNIT_SLIRP_OBJ) $(BUILD)/libpadcell.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJS) $(UNIT_SLIRP_OBJ) $(BUILD)/libpadcell.a -lcriterion $(PADCELL_LDLIBS) $(SLIRP_DYN_LDLIBS) $(SERVE_LDLIBS)

# The end-to-end tests spawn build/padcell, so it is built first.
unit: $(UNIT_BIN) $(BUILD)/padcell $(GUEST_BUILD)/padcell-agent
	$(UNIT_BIN) --jobs 2

# SAN=1 (or `make unit-san-bin`): the library and the unit tests again under ASan + UBSan, into
# build/san so the objects never mix with the normal ones.  Dynamic, whatever STATIC says: ASan
# cannot link statically.  The tests' subprocesses (padcell, padcell-dyn, the agent) stay the
# normal build's: build/san/padcell, build/san/padcell-dyn and build/san/guest/padcell-agent are
# links to them.
SAN_BUILD  := $(BUILD)/san
SAN_FLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
SAN_OBJS   := $(LIB_SRCS:%.c=$(SAN_BUILD)/%.o) $(SAN_BUILD)/vmm/dsdt_blob.o $(SAN_BUILD)/vmm/jail/seccomp_bpf.o \
              $(UNIT_SRCS:%.c=$(SAN_BUILD)/%.o)
SAN_UNIT_BIN := $(SAN_BUILD)/tests/unit-tests

.PHONY: unit-san unit-san-bin
ifeq ($(SAN),1)
all: unit-san-bin
endif
unit-san-bin: $(SAN_UNIT_BIN) $(SAN_BUILD)/padcell $(SAN_BUILD)/padcell-dyn $(SAN_BUILD)/guest/padcell-agent

$(SAN_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) $(SAN_FLAGS) -c $< -o $@

$(SAN_BUILD)/vmm/dsdt_blob.o: vmm/x86/dsdt_blob.S $(BUILD)/vmm/dsdt.aml
	@mkdir -p $(dir $@)
	$(CC) -c -DDSDT_AML='"$(BUILD)/vmm/dsdt.aml"' $< -o $@

# the jail's generated programs (Makefile)
$(SAN_BUILD)/vmm/jail/seccomp_bpf.o: $(BUILD)/vmm/jail/seccomp_bpf.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) $(SAN_FLAGS) -c $< -o $@

$(SAN_UNIT_BIN): $(SAN_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(SAN_FLAGS) $(LDFLAGS) -o $@ $(SAN_OBJS) -lcriterion $(LIB_DYN_LDLIBS) $(SERVE_LDLIBS)

$(SAN_BUILD)/padcell: $(BUILD)/padcell
	@mkdir -p $(dir $@)
	ln -sf ../padcell $@
$(SAN_BUILD)/padcell-dyn: $(BUILD)/padcell-dyn
	@mkdir -p $(dir $@)
	ln -sf ../padcell-dyn $@
$(SAN_BUILD)/guest/padcell-agent: $(GUEST_BUILD)/padcell-agent
	@mkdir -p $(dir $@)
	ln -sf ../../guest/padcell-agent $@

unit-san: unit-san-bin
	tests/unit/run-san.sh
