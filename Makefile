# padcell: plain Make, explicit source lists.  `make WERROR=0` turns warnings back into warnings.
CC      ?= cc
WERROR  ?= 1
CFLAGS  ?= -O2 -g
BUILD   := build

PADCELL_CFLAGS := -std=gnu11 -Wall -Wextra -Wshadow -Wno-unused-parameter \
                  -D_GNU_SOURCE -I. -MMD -MP $(if $(filter 1,$(WERROR)),-Werror)
# Jansson (libjansson-dev): JSON for the control socket's API; its static .a links cleanly.
# libseccomp (libseccomp-dev): the jail's BPF filters, made from one table at build time by
# vmm/jail/mkfilters.c (a build-time program); padcell itself does not link it.
# c-ares (libc-ares-dev, which ships libcares.a): the NIC's host-side resolver for names a rule allows.
# It reads /etc/hosts and resolv.conf itself (glibc's getaddrinfo needs NSS modules at run time, which
# a static binary cannot load reliably) and resolves asynchronously on the NIC's own poll loop.
PADCELL_LDLIBS := -ljansson -lcares -lpthread
# padcell links statically by default: one file to copy into a jail or an initramfs,
# and no dynamic loader on the start-up path (measured: ~0.4 ms of a ~2.5 ms start).
STATIC  ?= 1
PADCELL_LDFLAGS := $(if $(filter 1,$(STATIC)),-static)
# libslirp (libslirp-dev): the NIC's user-mode TCP/IP stack.  Debian ships only libslirp.so, so a static
# padcell links the libslirp.a that scripts/libslirp-static.sh builds from Debian's source package of the
# installed version (cached in $(PADCELL_CACHE)); it needs glib, whose libglib-2.0.a libglib2.0-dev ships
# (and libpcre2-8.a, libpcre2-dev).  A dynamic padcell (STATIC=0) links the system's libslirp.so.
# SLIRP=0 builds without it: --net is then refused with one line.
PADCELL_CACHE ?= /var/cache/padcell
SLIRP   ?= 1
SLIRP_DYN_LDLIBS := -lslirp
SLIRP_STATIC_LDLIBS := $(BUILD)/libslirp.a -lglib-2.0 -lm -lpcre2-8
ifeq ($(SLIRP),1)
PADCELL_CFLAGS += -DPADCELL_SLIRP -I/usr/include/slirp
SLIRP_LDLIBS := $(if $(filter 1,$(STATIC)),$(SLIRP_STATIC_LDLIBS),$(SLIRP_DYN_LDLIBS))
SLIRP_DEP := $(if $(filter 1,$(STATIC)),$(BUILD)/libslirp.a)
else
SLIRP_LDLIBS :=
SLIRP_STATIC_LDLIBS :=
SLIRP_DEP :=
endif
# What the dynamically linked test binaries (unit, kvm-inproc, sanitizers, fuzz) link with libpadcell.a.
LIB_DYN_LDLIBS := $(PADCELL_LDLIBS) $(if $(filter 1,$(SLIRP)),$(SLIRP_DYN_LDLIBS))

VMM_SRCS := vmm/main.c vmm/cmd/cli.c vmm/cmd/check.c vmm/vm.c vmm/vcpu.c vmm/x86/cpuid.c vmm/util.c \
            vmm/mem.c vmm/x86/boot_x86_64.c vmm/x86/acpi.c vmm/term.c vmm/evloop.c vmm/err.c \
            vmm/vm_virtio.c vmm/vm_devices.c vmm/launch.c vmm/api/http.c vmm/api/api.c vmm/api/api_client.c vmm/cmd/snapshot.c vmm/api/api_vm.c vmm/cmd/boot.c
# Snapshots: the state-file format, its files, x86 and device state, snapshot/restore, and `padcell restore`.
VMM_SRCS += vmm/snapshot_fmt.c vmm/snapshot_io.c vmm/x86/snapshot_x86.c vmm/snapshot_dev.c vmm/snapshot.c \
            vmm/cmd/restore.c
# The guest agent's protocol (shared with guest/agent), its client, run/exec/cp.
VMM_SRCS += guest/agent/proto.c vmm/agent/agent_client.c vmm/cmd/agent.c vmm/cmd/procs.c vmm/cmd/run.c
# `padcell template build`: a run with setup commands, snapshotted into serve's templates directory.
VMM_SRCS += vmm/cmd/template.c
# `padcell mcp`: the MCP layer (JSON-RPC over stdio, Jansson) and its sandbox VM backend.
VMM_SRCS += vmm/mcp/mcp.c vmm/mcp/sandbox.c vmm/mcp/spawner.c vmm/cmd/mcp.c
# Child monitor processes (mcp's and serve's sandboxes): start times, the bounded stop.
VMM_SRCS += vmm/proc.c
# `padcell serve`: its sandbox table, REST API, real spawner and CLI values (Jansson only) ...
VMM_SRCS += vmm/serve/table.c vmm/serve/api.c vmm/serve/envd.c vmm/serve/spawn.c vmm/serve/spawner.c vmm/serve/serve_cli.c
# ... and its HTTP front and command, on libmicrohttpd (libmicrohttpd-dev), which links dynamically
# only (its static chain is GnuTLS and p11-kit): a dynamic padcell (STATIC=0) has serve, a static
# one (the default, and padcell-static) has vmm/serve/stub.c, which says so in one line.
SERVE_DYN_SRCS := vmm/serve/http.c vmm/cmd/serve.c
SERVE_DYN_OBJS := $(SERVE_DYN_SRCS:%.c=$(BUILD)/%.o)
SERVE_STUB_OBJ := $(BUILD)/vmm/serve/stub.o
SERVE_LDLIBS   := -lmicrohttpd
SERVE_OBJS     := $(if $(filter 1,$(STATIC)),$(SERVE_STUB_OBJ),$(SERVE_DYN_OBJS))
SERVE_LINK     := $(SERVE_OBJS) $(if $(filter 1,$(STATIC)),,$(SERVE_LDLIBS))
DEV_SRCS := devices/bus.c devices/serial.c devices/i8042.c devices/pvpanic.c \
            devices/acpi_pm.c devices/virtq.c devices/virtio_mmio.c devices/virtio_blk.c \
            devices/virtio_vsock.c devices/devthread.c devices/ratelimit.c
# The jail: the monitor confines itself (seccomp, Landlock, namespaces, privileges).
VMM_SRCS += vmm/jail/jail.c vmm/jail/seccomp.c vmm/jail/landlock.c vmm/jail/ns.c vmm/jail/pidns.c vmm/jail/cgroup.c
# virtio-net and its backend (libslirp with SLIRP=1, else a stub that refuses --net).
DEV_SRCS += devices/virtio_net.c devices/net_slirp.c devices/net_resolve.c
# The network egress core: policy, frame gate, DNS, SNI/Host (pure; devices/virtio_net.c runs them).
NET_SRCS := vmm/net/policy.c vmm/net/gate.c vmm/net/dns.c vmm/net/sni.c vmm/net/httpreq.c vmm/net/sniproxy.c vmm/net/publish.c

# Everything but main.c goes into a library the unit tests link against.
LIB_SRCS := $(filter-out vmm/main.c,$(VMM_SRCS)) $(DEV_SRCS) $(NET_SRCS)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/vmm/dsdt_blob.o $(BUILD)/vmm/jail/seccomp_bpf.o

.PHONY: all padcell test demo bench unit kvm-test nested-test deps clean
all: padcell
padcell: $(BUILD)/padcell

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -c $< -o $@

# The DSDT is written in ASL and compiled by Debian's iasl at build time.
$(BUILD)/vmm/dsdt.aml: vmm/x86/dsdt.asl vmm/x86/layout.h
	@mkdir -p $(dir $@)
	iasl -p $(BUILD)/vmm/dsdt -vs -oa $< >/dev/null
$(BUILD)/vmm/dsdt_blob.o: vmm/x86/dsdt_blob.S $(BUILD)/vmm/dsdt.aml
	$(CC) -c -DDSDT_AML='"$(BUILD)/vmm/dsdt.aml"' $< -o $@

# The jail's seccomp programs, both default actions (trap, log), and the syscall names: generated from
# vmm/jail/seccomp_rules.h with libseccomp at build time, so a start only patches in its pid and loads them.
$(BUILD)/mkfilters: vmm/jail/mkfilters.c vmm/jail/seccomp_rules.h vmm/jail/seccomp_bpf.h vmm/jail/jail.h
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -o $@ $< -lseccomp
$(BUILD)/vmm/jail/seccomp_bpf.c: $(BUILD)/mkfilters
	@mkdir -p $(dir $@)
	$(BUILD)/mkfilters >$@.tmp && mv $@.tmp $@
$(BUILD)/vmm/jail/seccomp_bpf.o: $(BUILD)/vmm/jail/seccomp_bpf.c
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libpadcell.a: $(LIB_OBJS)
	ar rcs $@ $^

# libslirp.a, built once per libslirp-dev version into the shared cache and copied here.
$(BUILD)/libslirp.a: scripts/libslirp-static.sh
	@mkdir -p $(BUILD)
	@prefix=$$(PADCELL_CACHE=$(PADCELL_CACHE) scripts/libslirp-static.sh) && cp "$$prefix/lib/libslirp.a" $@

$(BUILD)/padcell: $(BUILD)/vmm/main.o $(SERVE_OBJS) $(BUILD)/libpadcell.a $(SLIRP_DEP)
	$(CC) $(PADCELL_LDFLAGS) $(LDFLAGS) -o $@ $(BUILD)/vmm/main.o $(SERVE_LINK) $(BUILD)/libpadcell.a $(SLIRP_LDLIBS) $(PADCELL_LDLIBS)

# Always static, whatever STATIC says: the nested tier's L1 host has only busybox.
$(BUILD)/padcell-static: $(BUILD)/vmm/main.o $(SERVE_STUB_OBJ) $(BUILD)/libpadcell.a $(if $(SLIRP_STATIC_LDLIBS),$(BUILD)/libslirp.a)
	$(CC) -static $(LDFLAGS) -o $@ $(BUILD)/vmm/main.o $(SERVE_STUB_OBJ) $(BUILD)/libpadcell.a $(SLIRP_STATIC_LDLIBS) $(PADCELL_LDLIBS)

# A dynamically linked padcell with serve, whatever STATIC says (`make build/padcell-dyn`): the same
# objects as padcell, linked against the system's shared libraries.
$(BUILD)/padcell-dyn: $(BUILD)/vmm/main.o $(SERVE_DYN_OBJS) $(BUILD)/libpadcell.a
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/vmm/main.o $(SERVE_DYN_OBJS) $(BUILD)/libpadcell.a $(SERVE_LDLIBS) $(LIB_DYN_LDLIBS)

# A test build: PADCELL_JAIL_TEST_VIOLATION=KIND makes that thread kind call a forbidden syscall.
$(BUILD)/vmm/jail/jail-test.o: vmm/jail/jail.c
	@mkdir -p $(dir $@)
	$(CC) $(PADCELL_CFLAGS) $(CFLAGS) -DPADCELL_TEST_HOOKS -c $< -o $@
$(BUILD)/padcell-jailtest: $(BUILD)/vmm/main.o $(BUILD)/vmm/jail/jail-test.o $(SERVE_OBJS) $(BUILD)/libpadcell.a $(SLIRP_DEP)
	$(CC) $(PADCELL_LDFLAGS) $(LDFLAGS) -o $@ $(BUILD)/vmm/main.o $(BUILD)/vmm/jail/jail-test.o $(SERVE_LINK) $(BUILD)/libpadcell.a $(SLIRP_LDLIBS) $(PADCELL_LDLIBS)

deps:
	scripts/deps.sh build

-include guest/guest.mk
-include kernel-config/kernel.mk
-include images/images.mk
-include images/rootfs.mk
-include tests/nested/nested.mk
-include tests/unit/unit.mk
-include tests/tests.mk
-include tests/fuzz/fuzz.mk

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
