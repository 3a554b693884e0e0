/* Synthetic kernel images built in memory, for the loader, boot and CLI tests. */
#ifndef PADCELL_TEST_IMAGES_H
#define PADCELL_TEST_IMAGES_H

#include <stddef.h>
#include <stdint.h>

/*
 * ELF64 x86-64 ET_EXEC: the ELF header, program headers at offset 64 (one PT_LOAD,
 * plus a PT_NOTE when pvh_descsz is 4 or 8 or linux_note is set), the notes, then `code` at
 * IMG_ELF_CODE_OFF.
 */
#define IMG_ELF_CODE_OFF 0x200

struct elf_spec {
	uint64_t paddr;       /* PT_LOAD physical address (default 1 MiB when 0) */
	const uint8_t *code;  /* file contents of the segment                      */
	size_t code_len;
	uint64_t bss;         /* memsz - filesz                                    */
	uint64_t entry;       /* e_entry (default paddr when 0)                    */
	unsigned pvh_descsz;  /* 0: no note; 4 or 8: Xen PHYS32_ENTRY note        */
	uint64_t pvh_entry;
	int linux_note;       /* non-zero: a "Linux" note (as every vmlinux has) after any PVH note */
};

/* Returns a malloc'ed image and its size. */
uint8_t *img_elf(const struct elf_spec *s, size_t *size);
/* Offsets of the program headers inside an img_elf() image. */
#define IMG_ELF_PH_LOAD 64
#define IMG_ELF_PH_NOTE (64 + 56)
#define IMG_ELF_NOTE_OFF (64 + 2 * 56)

/*
 * bzImage: (setup_sects + 1) * 512 bytes of real-mode setup with the setup header
 * at 0x1f1, then pm_len bytes of protected-mode kernel filled with a pattern.
 * img_bz_default() gives a valid 64-bit relocatable kernel (protocol 2.15).
 */
struct bz_spec {
	uint16_t boot_flag;
	uint32_t header;
	uint16_t version;
	uint8_t loadflags;
	uint16_t xloadflags;
	uint8_t relocatable;
	uint32_t kernel_alignment;
	uint64_t pref_address;
	uint8_t setup_sects;
	uint32_t pm_len;
	uint32_t syssize; /* 0: pm_len / 16 */
	uint32_t init_size;
	uint32_t cmdline_size;
	uint32_t initrd_addr_max;
};

struct bz_spec img_bz_default(void);
uint8_t *img_bzimage(const struct bz_spec *s, size_t *size);
/* Byte i of the protected-mode part of an img_bzimage() kernel. */
uint8_t img_bz_pm_byte(size_t i);

/* Writes buf to a new temporary file; returns its malloc'ed path. */
char *img_write_tmp(const void *buf, size_t len);

#endif
