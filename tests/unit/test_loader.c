/* kernel_parse on synthetic ELF and bzImage images: what is accepted, and every rejection. */
#include <criterion/criterion.h>
#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/images.h"
#include "vmm/x86/boot_x86_64.h"
#include "vmm/x86/layout.h"

#define MiB (1ULL << 20)

static const uint8_t code[64] = { 0xf4, 0xeb, 0xfd }; /* hlt; jmp .-3 */

static struct kernel_image k;
static char err[256];

static int parse(const uint8_t *data, size_t size)
{
	err[0] = '\0';
	return kernel_parse(data, size, &k, err, sizeof(err));
}

/* Every rejection is a non-zero return with a one-line reason. */
#define assert_rejected(data, size, why)                                                   \
	do {                                                                               \
		int rc_ = parse((data), (size));                                           \
		cr_assert_neq(rc_, 0, "%s: accepted", (why));                              \
		cr_assert_lt(rc_, 0, "%s: errors are -errno", (why));                      \
		cr_assert_neq(err[0], '\0', "%s: no error message", (why));                \
		cr_assert_null(strchr(err, '\n'), "%s: message is one line", (why));       \
	} while (0)

static uint8_t *elf_basic(size_t *size)
{
	struct elf_spec s = { .code = code, .code_len = sizeof(code), .bss = 0x1000, .entry = 0x100000 };
	return img_elf(&s, size);
}

static Elf64_Ehdr *ehdr(uint8_t *img) { return (Elf64_Ehdr *)img; }
static Elf64_Phdr *phdr(uint8_t *img, size_t off) { return (Elf64_Phdr *)(img + off); }

Test(loader_elf, minimal_exec_accepted)
{
	size_t n;
	uint8_t *img = elf_basic(&n);
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert_eq(k.kind, KERNEL_ELF);
	cr_assert_eq(k.load_start, 0x100000);
	cr_assert_eq(k.load_end, 0x100000 + sizeof(code) + 0x1000, "memsz counts, bss included");
	cr_assert_eq(k.entry64, 0x100000);
	cr_assert_not(k.has_pvh);
	cr_assert_not(k.is_linux, "no \"Linux\" note: a freestanding guest");
	cr_assert_eq(k.data, img);
	cr_assert_eq(k.size, n);
	free(img);
}

Test(loader_elf, pvh_note_4_byte_desc)
{
	struct elf_spec s = { .code = code, .code_len = sizeof(code), .pvh_descsz = 4, .pvh_entry = 0x100010 };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert(k.has_pvh);
	cr_assert_eq(k.pvh_entry, 0x100010);
	cr_assert_eq(k.entry64, 0x100000);
	free(img);
}

Test(loader_elf, pvh_note_8_byte_desc)
{
	struct elf_spec s = { .code = code, .code_len = sizeof(code), .pvh_descsz = 8, .pvh_entry = 0x100020 };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert(k.has_pvh);
	cr_assert_eq(k.pvh_entry, 0x100020);
	free(img);
}

Test(loader_elf, other_notes_are_skipped)
{
	struct elf_spec s = { .code = code, .code_len = sizeof(code), .pvh_descsz = 4, .pvh_entry = 0x100010 };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	Elf64_Nhdr *nh = (Elf64_Nhdr *)(img + IMG_ELF_NOTE_OFF);
	nh->n_type = 1; /* some other Xen note */
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert_not(k.has_pvh);
	nh->n_type = 18;
	memcpy(img + IMG_ELF_NOTE_OFF + sizeof(*nh), "Gnu", 4); /* not the Xen owner */
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert_not(k.has_pvh);
	free(img);
}

/* Every vmlinux carries a "Linux" note (LINUX_ELFNOTE_BUILD_SALT): that is how boot knows it is Linux. */
Test(loader_elf, linux_note_marks_linux)
{
	struct elf_spec s = { .code = code, .code_len = sizeof(code), .linux_note = 1 };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert(k.is_linux);
	cr_assert_not(k.has_pvh);
	free(img);
	/* after the PVH note in the same segment, as in a real vmlinux: both are found */
	s.pvh_descsz = 8;
	s.pvh_entry = 0x100020;
	img = img_elf(&s, &n);
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert(k.is_linux, "the note after the PVH one is read too");
	cr_assert(k.has_pvh);
	cr_assert_eq(k.pvh_entry, 0x100020);
	/* "Linu" is not "Linux" */
	memcpy(img + IMG_ELF_NOTE_OFF + sizeof(Elf64_Nhdr) + 4 + 8 + sizeof(Elf64_Nhdr), "Linu", 5);
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert_not(k.is_linux);
	free(img);
}

Test(loader_reject, empty_file)
{
	uint8_t b = 0;
	assert_rejected(&b, 0, "empty file");
}

Test(loader_reject, garbage)
{
	uint8_t junk[8192];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 131 + 17);
	assert_rejected(junk, sizeof(junk), "garbage");
	assert_rejected(junk, 100, "short garbage");
	uint8_t zeros[4096] = { 0 };
	assert_rejected(zeros, sizeof(zeros), "zeros");
}

Test(loader_reject, truncated_elf_header)
{
	size_t n;
	uint8_t *img = elf_basic(&n);
	assert_rejected(img, 4, "ELF magic only");
	assert_rejected(img, 32, "half a header");
	assert_rejected(img, sizeof(Elf64_Ehdr) - 1, "one byte short");
	free(img);
}

Test(loader_reject, program_headers_past_eof)
{
	size_t n;
	uint8_t *img = elf_basic(&n);
	assert_rejected(img, IMG_ELF_PH_LOAD + 20, "file ends inside the phdr");
	ehdr(img)->e_phoff = n - 8;
	assert_rejected(img, n, "e_phoff near EOF");
	ehdr(img)->e_phoff = UINT64_MAX - 8;
	assert_rejected(img, n, "e_phoff wraps");
	ehdr(img)->e_phoff = IMG_ELF_PH_LOAD;
	ehdr(img)->e_phnum = 0xffff;
	assert_rejected(img, n, "absurd e_phnum");
	ehdr(img)->e_phnum = 1;
	ehdr(img)->e_phentsize = 32;
	assert_rejected(img, n, "wrong e_phentsize");
	free(img);
}

Test(loader_reject, segment_past_eof)
{
	size_t n;
	uint8_t *img = elf_basic(&n);
	phdr(img, IMG_ELF_PH_LOAD)->p_filesz += 1;
	phdr(img, IMG_ELF_PH_LOAD)->p_memsz += 1;
	assert_rejected(img, n, "filesz one byte past EOF");
	phdr(img, IMG_ELF_PH_LOAD)->p_filesz = sizeof(code);
	phdr(img, IMG_ELF_PH_LOAD)->p_offset = UINT64_MAX - 16;
	assert_rejected(img, n, "p_offset wraps");
	free(img);
}

Test(loader_reject, filesz_greater_than_memsz)
{
	size_t n;
	uint8_t *img = elf_basic(&n);
	phdr(img, IMG_ELF_PH_LOAD)->p_memsz = sizeof(code) - 1;
	assert_rejected(img, n, "filesz > memsz");
	free(img);
}

Test(loader_reject, segment_outside_1m_3g)
{
	struct elf_spec s = { .code = code, .code_len = sizeof(code) };
	size_t n;
	s.paddr = 0x80000;
	uint8_t *img = img_elf(&s, &n);
	assert_rejected(img, n, "segment below 1 MiB");
	free(img);
	s.paddr = LAYOUT_MMIO_GAP_START;
	img = img_elf(&s, &n);
	assert_rejected(img, n, "segment at 3 GiB");
	free(img);
	s.paddr = LAYOUT_MMIO_GAP_START - 0x1000;
	s.bss = 0x2000;
	img = img_elf(&s, &n);
	assert_rejected(img, n, "segment crossing 3 GiB");
	free(img);
	s.paddr = 0x100000;
	s.bss = UINT64_MAX - 0x1000;
	img = img_elf(&s, &n);
	assert_rejected(img, n, "memsz wraps");
	free(img);
	s.paddr = LAYOUT_MMIO_GAP_END;
	s.bss = 0;
	img = img_elf(&s, &n);
	assert_rejected(img, n, "segment above 4 GiB");
	free(img);
}

Test(loader_reject, entry_outside_segments)
{
	struct elf_spec s = { .code = code, .code_len = sizeof(code), .entry = 0x100000 + sizeof(code) };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	assert_rejected(img, n, "entry one past the end");
	ehdr(img)->e_entry = 0xfffff;
	assert_rejected(img, n, "entry below the segment");
	ehdr(img)->e_entry = 0xffffffff81000000ULL;
	assert_rejected(img, n, "virtual entry address");
	free(img);
}

Test(loader_reject, pvh_entry_outside_segments)
{
	struct elf_spec s = { .code = code, .code_len = sizeof(code), .pvh_descsz = 4, .pvh_entry = 0x200000 };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	assert_rejected(img, n, "PVH entry outside");
	free(img);
}

Test(loader_reject, elf32)
{
	size_t n;
	uint8_t *img = elf_basic(&n);
	img[EI_CLASS] = ELFCLASS32;
	assert_rejected(img, n, "32-bit ELF");
	img[EI_CLASS] = ELFCLASS64;
	img[EI_DATA] = ELFDATA2MSB;
	assert_rejected(img, n, "big-endian ELF");
	free(img);
}

Test(loader_reject, wrong_machine_and_type)
{
	size_t n;
	uint8_t *img = elf_basic(&n);
	ehdr(img)->e_machine = EM_AARCH64;
	assert_rejected(img, n, "aarch64");
	ehdr(img)->e_machine = EM_386;
	assert_rejected(img, n, "i386");
	ehdr(img)->e_machine = EM_X86_64;
	ehdr(img)->e_type = ET_DYN;
	assert_rejected(img, n, "ET_DYN");
	ehdr(img)->e_type = ET_REL;
	assert_rejected(img, n, "ET_REL");
	free(img);
}

Test(loader_reject, no_loadable_segment)
{
	size_t n;
	uint8_t *img = elf_basic(&n);
	phdr(img, IMG_ELF_PH_LOAD)->p_type = PT_GNU_STACK;
	assert_rejected(img, n, "no PT_LOAD");
	free(img);
}

Test(loader_reject, malformed_note)
{
	struct elf_spec s = { .code = code, .code_len = sizeof(code), .pvh_descsz = 4, .pvh_entry = 0x100010 };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	Elf64_Nhdr *nh = (Elf64_Nhdr *)(img + IMG_ELF_NOTE_OFF);
	nh->n_namesz = 0x1000;
	assert_rejected(img, n, "namesz overflows the segment");
	nh->n_namesz = 0xffffffff;
	assert_rejected(img, n, "namesz near 2^32");
	nh->n_namesz = 4;
	nh->n_descsz = 0xfffffffd;
	assert_rejected(img, n, "descsz overflows the segment");
	nh->n_descsz = 4;
	phdr(img, IMG_ELF_PH_NOTE)->p_filesz = n;
	assert_rejected(img, n, "note segment past EOF");
	free(img);
}

Test(loader_reject, pvh_desc_neither_4_nor_8_bytes)
{
	/* An 8-byte slot whose first bytes hold a valid entry: only the size is wrong. */
	struct elf_spec s = { .code = code, .code_len = sizeof(code), .pvh_descsz = 8, .pvh_entry = 0x100020 };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	Elf64_Nhdr *nh = (Elf64_Nhdr *)(img + IMG_ELF_NOTE_OFF);
	for (uint32_t d = 5; d <= 7; d++) {
		nh->n_descsz = d;
		assert_rejected(img, n, "PVH desc of 5..7 bytes");
	}
	nh->n_descsz = 8;
	cr_assert_eq(parse(img, n), 0, "%s", err);
	free(img);
}

Test(loader_reject, pvh_entry_above_4g)
{
	struct elf_spec s = { .code = code, .code_len = sizeof(code), .pvh_descsz = 8,
			      .pvh_entry = 0x100000100000ULL };
	size_t n;
	uint8_t *img = img_elf(&s, &n);
	assert_rejected(img, n, "PVH entry is a 32-bit address");
	free(img);
}

/* ---- bzImage ---- */

Test(loader_bz, valid_bzimage)
{
	struct bz_spec s = img_bz_default();
	size_t n;
	uint8_t *img = img_bzimage(&s, &n);
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert_eq(k.kind, KERNEL_BZIMAGE);
	cr_assert_eq(k.load_start, 16 * MiB, "pref_address, already 2 MiB aligned");
	cr_assert_eq(k.entry64, 16 * MiB + 0x200, "startup_64 is 0x200 into the image");
	cr_assert_eq(k.setup_size, 5 * 512);
	cr_assert_eq(k.pm_size, s.pm_len);
	cr_assert_eq(k.load_end, 16 * MiB + s.init_size, "init_size reserves the decompression room");
	cr_assert_eq(k.hdr.version, 0x020f);
	cr_assert_not(k.has_pvh);
	cr_assert(k.is_linux, "a bzImage is Linux's own format");
	free(img);
}

Test(loader_bz, relocatable_rounds_up_to_alignment)
{
	struct bz_spec s = img_bz_default();
	s.pref_address = 17 * MiB;
	size_t n;
	uint8_t *img = img_bzimage(&s, &n);
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert_eq(k.load_start, 18 * MiB);
	cr_assert_eq(k.entry64, 18 * MiB + 0x200);
	free(img);
}

Test(loader_bz, setup_sects_zero_means_four)
{
	struct bz_spec s = img_bz_default();
	s.setup_sects = 0;
	size_t n;
	uint8_t *img = img_bzimage(&s, &n);
	cr_assert_eq(parse(img, n), 0, "%s", err);
	cr_assert_eq(k.setup_size, 5 * 512);
	free(img);
}

static void bz_reject(struct bz_spec *s, const char *why)
{
	size_t n;
	uint8_t *img = img_bzimage(s, &n);
	assert_rejected(img, n, why);
	free(img);
}

Test(loader_bz, rejections)
{
	struct bz_spec s;
	s = img_bz_default(); s.boot_flag = 0x55aa;         bz_reject(&s, "bad boot_flag");
	s = img_bz_default(); s.header = 0x53726449;        bz_reject(&s, "bad HdrS magic");
	s = img_bz_default(); s.version = 0x020b;           bz_reject(&s, "protocol 2.11");
	s = img_bz_default(); s.version = 0x0204;           bz_reject(&s, "protocol 2.04");
	s = img_bz_default(); s.loadflags = 0;              bz_reject(&s, "not LOADED_HIGH");
	s = img_bz_default(); s.xloadflags = 0;             bz_reject(&s, "no XLF_KERNEL_64");
	s = img_bz_default(); s.syssize = s.pm_len / 16 + 1; bz_reject(&s, "syssize beyond the file");
	s = img_bz_default(); s.syssize = 0xffffffff;       bz_reject(&s, "huge syssize");
	s = img_bz_default(); s.kernel_alignment = 3 << 20; bz_reject(&s, "alignment not a power of two");
	s = img_bz_default(); s.kernel_alignment = 0;       bz_reject(&s, "alignment zero");
	s = img_bz_default(); s.pref_address = 0x80000; s.relocatable = 0;
	bz_reject(&s, "loads below 1 MiB");
	s = img_bz_default(); s.pref_address = LAYOUT_MMIO_GAP_START - MiB;
	bz_reject(&s, "init_size crosses 3 GiB");
}

Test(loader_bz, truncated_header)
{
	struct bz_spec s = img_bz_default();
	size_t n;
	uint8_t *img = img_bzimage(&s, &n);
	assert_rejected(img, 0x1f1 + 10, "file ends inside the setup header");
	assert_rejected(img, 5 * 512, "setup only, no protected-mode part");
	assert_rejected(img, n - 1, "one byte short of syssize");
	free(img);
}

/*
 * Regression (found by this test, fixed in 70a427b): for a non-relocatable bzImage, pref_address near 2^64
 * makes `load + need` wrap below 3 GiB, so bzimage_parse() accepts a load address
 * far outside RAM (boot_load then silently failed to copy the kernel and the guest
 * started at a bogus RIP).
 */
Test(loader_bz, regression_pref_address_wraps)
{
	struct bz_spec s = img_bz_default();
	s.relocatable = 0;
	s.pref_address = 0xfffffffffff00000ULL; /* + 4 MiB init_size wraps to 3 MiB */
	size_t n;
	uint8_t *img = img_bzimage(&s, &n);
	assert_rejected(img, n, "pref_address near 2^64");
	s.pref_address = LAYOUT_MMIO_GAP_END; /* above the gap: never RAM for a kernel */
	free(img);
	img = img_bzimage(&s, &n);
	assert_rejected(img, n, "pref_address at 4 GiB");
	free(img);
}

/*
 * Regression (found by tests/fuzz/fuzz_loader.c): a bzImage whose protected-mode part (syssize)
 * ends before +0x200 was accepted, with its 64-bit entry past everything loaded and reserved
 * (load_end = load + 16 bytes): the guest jumped into zeroed memory and crashed its vCPU, where
 * padcell should have refused the kernel as truncated.
 */
Test(loader_bz, regression_pm_part_without_the_64_bit_entry)
{
	struct bz_spec s = img_bz_default();
	s.pm_len = 16;
	s.init_size = 0;
	bz_reject(&s, "16-byte protected-mode part");
	s.pm_len = 0x200;
	bz_reject(&s, "entry exactly at the end of the protected-mode part");
	s.pm_len = 0x210;
	size_t n;
	uint8_t *img = img_bzimage(&s, &n);
	struct kernel_image ki;
	char why[256];
	cr_assert_eq(kernel_parse(img, n, &ki, why, sizeof(why)), 0, "%s", why);
	cr_assert(ki.entry64 < ki.load_end);
	free(img);
}
