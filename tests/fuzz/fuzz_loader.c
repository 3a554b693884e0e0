/* Fuzzes the x86-64 kernel loaders (vmm/x86/boot_x86_64.c): ELF with and without the PVH note, and bzImage, parsed from bytes and loaded into guest memory. */
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/x86/boot_x86_64.h"

/*
 * Input: u8 flags (entry protocol in bits 0-1, memory size in bits 2-3, a second vCPU in bit 4),
 * u16 initrd length, u8 command-line length, the command line, the initrd, then the kernel.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint8_t flags = fuzz_u8(&in);
	size_t initrd_len = fuzz_u16(&in);
	size_t cmd_len = fuzz_u8(&in);
	char cmdline[256];
	cmd_len = fuzz_take(&in, cmdline, cmd_len);
	cmdline[cmd_len] = '\0';
	if (initrd_len > in.len)
		initrd_len = in.len;
	uint8_t *initrd = malloc(initrd_len ? initrd_len : 1);
	uint8_t *kernel = malloc(in.len - initrd_len ? in.len - initrd_len : 1);
	if (!initrd || !kernel)
		abort();
	fuzz_take(&in, initrd, initrd_len);
	size_t kernel_len = in.len;
	fuzz_take(&in, kernel, kernel_len);

	struct kernel_image k;
	char err[256];
	int rc = kernel_parse(kernel, kernel_len, &k, err, sizeof(err));
	if (rc == 0) {
		/* What the parser promises the loader. */
		if (k.load_end < k.load_start || k.load_start < (1ULL << 20))
			abort();
		/* 4 to 512 MiB: small memories make the loader refuse a kernel or initrd that does not fit. */
		static const uint64_t sizes[] = { 4ULL << 20, 32ULL << 20, 128ULL << 20, 512ULL << 20 };
		struct guest_mem m;
		if (gmem_init(&m, sizes[(flags >> 2) & 3]))
			abort();
		static const enum boot_entry entries[] = { BOOT_ENTRY_AUTO, BOOT_ENTRY_LINUX64, BOOT_ENTRY_PVH,
							   BOOT_ENTRY_AUTO };
		struct boot_config c = {
			.entry = entries[flags & 3],
			.kernel = kernel,
			.kernel_size = kernel_len,
			.initrd = initrd_len ? initrd : NULL,
			.initrd_size = initrd_len,
			.cmdline = cmdline,
			.ncpus = flags & 16 ? 2 : 1,
		};
		struct boot_result r;
		if (boot_load(&m, &c, &r, err, sizeof(err)) == 0) {
			if (r.entry < k.load_start || r.entry >= k.load_end || r.boot_info >= m.size)
				abort();
			if (initrd_len && (r.initrd_gpa < (1ULL << 20) || r.initrd_gpa + initrd_len > m.size))
				abort();
		}
		gmem_destroy(&m);
	} else if (!err[0]) {
		abort();
	}
	free(initrd);
	free(kernel);
	return 0;
}
