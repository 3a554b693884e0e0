/*
 * What the monitor's binary costs in memory before it does anything: static TLS is copied and
 * zeroed into every thread (vCPUs, devices, the NIC), so one large thread-local array is resident
 * once per thread; .data is file-backed and faulted in by the dozen pages around any field touched.
 * Read from build/padcell's program headers (PT_TLS, the writable PT_LOAD).
 */
#include <criterion/criterion.h>
#include <elf.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TLS_MAX_BYTES  (4u << 10)  /* libc's own is ~0.3 KiB; a 64 KiB buffer was there twice */
#define DATA_MAX_BYTES (64u << 10) /* initialised writable data (.data); .bss is not counted */

struct seg {
	uint64_t tls_mem;  /* PT_TLS p_memsz: .tdata + .tbss */
	uint64_t data_file; /* the writable PT_LOAD's p_filesz: .data and friends, file-backed */
};

static void read_segments(const char *path, struct seg *s)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "%s: %m (build it first: make build/padcell)", path);
	Elf64_Ehdr eh;
	cr_assert_eq(pread(fd, &eh, sizeof(eh), 0), (ssize_t)sizeof(eh));
	cr_assert_eq(memcmp(eh.e_ident, ELFMAG, SELFMAG), 0, "%s is ELF", path);
	cr_assert_eq(eh.e_ident[EI_CLASS], ELFCLASS64);
	cr_assert_eq(eh.e_phentsize, sizeof(Elf64_Phdr));
	memset(s, 0, sizeof(*s));
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		cr_assert_eq(pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (uint64_t)i * sizeof(ph))), (ssize_t)sizeof(ph));
		if (ph.p_type == PT_TLS)
			s->tls_mem = ph.p_memsz;
		else if (ph.p_type == PT_LOAD && (ph.p_flags & PF_W))
			s->data_file += ph.p_filesz;
	}
	close(fd);
}

static void binary_path(const char *name, char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert_gt(n, 0);
	self[n] = '\0';
	snprintf(out, len, "%s/../%s", dirname(self), name);
}

/* build/padcell's segments (beside build/tests/unit-tests). */
static void padcell_segments(char *path, size_t len, struct seg *s)
{
	binary_path("padcell", path, len);
	read_segments(path, s);
}

Test(footprint, static_tls_is_small)
{
	char path[PATH_MAX];
	struct seg s;
	padcell_segments(path, sizeof(path), &s);
	cr_assert_leq(s.tls_mem, TLS_MAX_BYTES,
		      "%s: %llu bytes of static TLS, zeroed in every thread: move big thread-local buffers to the heap",
		      path, (unsigned long long)s.tls_mem);
}

Test(footprint, initialised_data_is_small)
{
	char path[PATH_MAX];
	struct seg s;
	padcell_segments(path, sizeof(path), &s);
	cr_assert_leq(s.data_file, DATA_MAX_BYTES,
		      "%s: %llu bytes of initialised writable data: large tables belong in .bss (no initialiser)",
		      path, (unsigned long long)s.data_file);
}
