/* Guest RAM: one host mapping, split around the 32-bit MMIO gap, checked in one place. */
#ifndef PADCELL_MEM_H
#define PADCELL_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Guest RAM of `size` bytes lives in one anonymous host mapping.  The first
 * `low_size` bytes appear at guest-physical 0; whatever does not fit below the MMIO
 * gap appears at 4 GiB.  Every translation from a guest address to a host pointer
 * goes through gmem_ptr(), which refuses anything not entirely inside RAM.
 */
struct guest_mem {
	uint8_t *host;
	uint64_t size;
	uint64_t low_size;
	bool from_file;  /* gmem_init_file: untouched pages hold the file's data, not zeros */
	int file_fd;     /* with from_file: that file, kept open (a snapshot skips its holes) */
};

/* Smallest and largest RAM sizes padcell accepts. */
#define GMEM_MIN_SIZE (2ULL << 20)
#define GMEM_MAX_SIZE (1ULL << 40)

/* Maps `size` bytes (a multiple of 4 KiB) of zeroed, lazily allocated RAM. -errno on failure. */
int gmem_init(struct guest_mem *m, uint64_t size);
/*
 * Maps the first `size` bytes of file fd privately (copy-on-write) as guest RAM: pages load
 * from the file when first touched, guest writes never reach it, and mappings of one file
 * share its clean pages.  A duplicate of fd stays in file_fd; the caller closes its own.
 */
int gmem_init_file(struct guest_mem *m, uint64_t size, int fd);
void gmem_destroy(struct guest_mem *m);

/* Host pointer for [gpa, gpa+len), or NULL unless the whole range is RAM. len 0 is refused. */
void *gmem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copies; -EFAULT when the range is not RAM. */
int gmem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len);
int gmem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);

/* End (exclusive) of RAM below the MMIO gap, and the size of RAM above 4 GiB. */
static inline uint64_t gmem_low_end(const struct guest_mem *m) { return m->low_size; }
static inline uint64_t gmem_high_size(const struct guest_mem *m) { return m->size - m->low_size; }

#endif
