# libFuzzer harnesses (tests/fuzz/*.c), built by clang into their own tree, apart from the gcc build:
# the library again with -fsanitize=fuzzer-no-link,address,undefined, each harness linked with
# -fsanitize=fuzzer,address,undefined (the same warnings as gcc's build, less clang's complaint about
# the GNU extension the KVM headers' flexible arrays need).  `make fuzz SECONDS=N` runs each for N seconds;
# `make fuzz-bin` only builds; `make fuzz-seeds` regenerates the generated seed files.
FUZZ_CC     ?= clang
FUZZ_BUILD  := $(BUILD)/fuzz
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := $(filter-out -MMD -MP,$(PADCELL_CFLAGS)) -MMD -MP -O1 -g $(FUZZ_SAN) -Wno-gnu-variable-sized-type-not-at-end
FUZZ_NAMES  := http api snapshot agent_proto agent_client loader virtq_blk vsock gate dns sni httpreq policy virtio_net mcp
FUZZ_BINS   := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/bin/fuzz_%)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o) $(FUZZ_BUILD)/obj/vmm/dsdt_blob.o $(FUZZ_BUILD)/obj/vmm/jail/seccomp_bpf.o
SECONDS     ?= 60

.PHONY: fuzz fuzz-bin fuzz-seeds
# The harness objects come from a pattern chain: keep them, so a rebuild only redoes what changed.
.SECONDARY: $(FUZZ_NAMES:%=$(FUZZ_BUILD)/h/fuzz_%.o)
fuzz-bin: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	tests/fuzz/run.sh --seconds $(SECONDS)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/obj/vmm/dsdt_blob.o: vmm/x86/dsdt_blob.S $(BUILD)/vmm/dsdt.aml
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -c -DDSDT_AML='"$(BUILD)/vmm/dsdt.aml"' $< -o $@

$(FUZZ_BUILD)/obj/vmm/jail/seccomp_bpf.o: $(BUILD)/vmm/jail/seccomp_bpf.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libpadcell.a: $(FUZZ_LIB_OBJS)
	ar rcs $@ $^

# The harnesses' own objects: no fuzzer instrumentation needed beyond what -fsanitize=fuzzer adds.
$(FUZZ_BUILD)/h/%.o: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -c $< -o $@

$(FUZZ_BUILD)/bin/fuzz_%: $(FUZZ_BUILD)/h/fuzz_%.o $(FUZZ_BUILD)/libpadcell.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< $(FUZZ_BUILD)/libpadcell.a $(LIB_DYN_LDLIBS)

# The seed generator: builds the seeds that are awkward to write by hand (a state file from the
# format's encoder, ELF and bzImage kernels, EXEC frames) with the library's own encoders.
$(FUZZ_BUILD)/mkseeds: tests/fuzz/mkseeds.c tests/unit/images.c $(FUZZ_BUILD)/libpadcell.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(filter-out -MMD -MP,$(FUZZ_CFLAGS)) -o $@ tests/fuzz/mkseeds.c tests/unit/images.c \
		$(FUZZ_BUILD)/libpadcell.a $(LIB_DYN_LDLIBS)

fuzz-seeds: $(FUZZ_BUILD)/mkseeds
	$(FUZZ_BUILD)/mkseeds tests/fuzz/corpus
