/* Builders for the synthetic ELF and bzImage kernels the tests load. */
#include "tests/unit/images.h"

#include <asm/bootparam.h>
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint8_t *img_elf(const struct elf_spec *s, size_t *size)
{
	uint64_t paddr = s->paddr ? s->paddr : 0x100000;
	size_t total = IMG_ELF_CODE_OFF + s->code_len;
	uint8_t *buf = calloc(1, total);
	if (!buf)
		abort();

	Elf64_Ehdr eh = { 0 };
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_entry = s->entry ? s->entry : paddr;
	eh.e_phoff = IMG_ELF_PH_LOAD;
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = s->pvh_descsz || s->linux_note ? 2 : 1;
	memcpy(buf, &eh, sizeof(eh));

	Elf64_Phdr load = {
		.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = IMG_ELF_CODE_OFF,
		.p_vaddr = paddr, .p_paddr = paddr, .p_filesz = s->code_len,
		.p_memsz = s->code_len + s->bss, .p_align = 0x1000,
	};
	memcpy(buf + IMG_ELF_PH_LOAD, &load, sizeof(load));

	size_t notes = 0;
	uint8_t *p = buf + IMG_ELF_NOTE_OFF;
	if (s->pvh_descsz) {
		Elf64_Nhdr n = { .n_namesz = 4, .n_descsz = s->pvh_descsz, .n_type = 18 };
		memcpy(p, &n, sizeof(n));
		memcpy(p + sizeof(n), "Xen", 4);
		memcpy(p + sizeof(n) + 4, &s->pvh_entry, s->pvh_descsz);
		notes = sizeof(n) + 4 + s->pvh_descsz;
	}
	if (s->linux_note) {
		/* LINUX_ELFNOTE_BUILD_SALT (0x100): name "Linux" padded to 8, a 4-byte salt */
		Elf64_Nhdr n = { .n_namesz = 6, .n_descsz = 4, .n_type = 0x100 };
		memcpy(p + notes, &n, sizeof(n));
		memcpy(p + notes + sizeof(n), "Linux", 6);
		memcpy(p + notes + sizeof(n) + 8, "salt", 4);
		notes += sizeof(n) + 8 + 4;
	}
	if (notes) {
		Elf64_Phdr note = {
			.p_type = PT_NOTE, .p_flags = PF_R, .p_offset = IMG_ELF_NOTE_OFF,
			.p_filesz = notes, .p_align = 4,
		};
		memcpy(buf + IMG_ELF_PH_NOTE, &note, sizeof(note));
	}
	if (s->code_len)
		memcpy(buf + IMG_ELF_CODE_OFF, s->code, s->code_len);
	*size = total;
	return buf;
}

struct bz_spec img_bz_default(void)
{
	return (struct bz_spec){
		.boot_flag = 0xaa55,
		.header = 0x53726448, /* "HdrS" */
		.version = 0x020f,
		.loadflags = LOADED_HIGH,
		.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
		.relocatable = 1,
		.kernel_alignment = 2 << 20,
		.pref_address = 16 << 20,
		.setup_sects = 4,
		.pm_len = 64 << 10,
		.init_size = 4 << 20,
		.cmdline_size = 2047,
		.initrd_addr_max = 0x7fffffff,
	};
}

uint8_t img_bz_pm_byte(size_t i)
{
	return (uint8_t)(i * 7 + 3);
}

uint8_t *img_bzimage(const struct bz_spec *s, size_t *size)
{
	size_t setup = ((size_t)(s->setup_sects ? s->setup_sects : 4) + 1) * 512;
	size_t total = setup + s->pm_len;
	uint8_t *buf = calloc(1, total);
	if (!buf)
		abort();
	struct setup_header h = { 0 };
	h.setup_sects = s->setup_sects;
	h.syssize = s->syssize ? s->syssize : s->pm_len / 16;
	h.boot_flag = s->boot_flag;
	/* A short jump over the header, as in a real kernel: the header ends at 0x202 + disp. */
	h.jump = (uint16_t)(0xeb | ((0x1f1 + sizeof(h) - 0x202) << 8));
	h.header = s->header;
	h.version = s->version;
	h.loadflags = s->loadflags;
	h.code32_start = 0x100000;
	h.initrd_addr_max = s->initrd_addr_max;
	h.kernel_alignment = s->kernel_alignment;
	h.relocatable_kernel = s->relocatable;
	h.xloadflags = s->xloadflags;
	h.cmdline_size = s->cmdline_size;
	h.pref_address = s->pref_address;
	h.init_size = s->init_size;
	memcpy(buf + 0x1f1, &h, sizeof(h));
	for (size_t i = 0; i < s->pm_len; i++)
		buf[setup + i] = img_bz_pm_byte(i);
	*size = total;
	return buf;
}

char *img_write_tmp(const void *buf, size_t len)
{
	char *path = strdup("/tmp/padcell-unit-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0)
		abort();
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n <= 0)
			abort();
		p += n;
		len -= (size_t)n;
	}
	close(fd);
	return path;
}
