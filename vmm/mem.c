/* Guest RAM allocation and the single checked guest-address translation. */
#include "vmm/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/x86/layout.h"

int gmem_init(struct guest_mem *m, uint64_t size)
{
	memset(m, 0, sizeof(*m));
	if (size < GMEM_MIN_SIZE || size > GMEM_MAX_SIZE || (size & 0xfff))
		return -EINVAL;
	/*
	 * NORESERVE: a 2 GiB guest that touches 40 MiB costs 40 MiB, not 2 GiB of commit.
	 * The mapping is 2 MiB-aligned and marked for transparent huge pages, so the
	 * guest's memory can be backed (and mapped by EPT/NPT) in 2 MiB pieces: far fewer
	 * nested page faults while the guest kernel touches its memory at boot.
	 */
	uint64_t align = 2ULL << 20;
	uint8_t *raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return -errno;
	uint8_t *p = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
	if (p > raw)
		munmap(raw, p - raw);
	if (raw + align > p)
		munmap(p + size, (raw + align) - p);
	madvise(p, size, MADV_HUGEPAGE);
	/*
	 * Except the first 2 MiB, where the loader writes the boot structures before the
	 * guest runs: a huge page there would be zeroed (and possibly compacted for) on
	 * the start-up path (measured: +0.3 ms typical, stalls of several ms), for memory
	 * a guest barely uses.
	 */
	madvise(p, size < align ? size : align, MADV_NOHUGEPAGE);
	/* Guest memory never belongs in a core dump of the monitor. */
	madvise(p, size, MADV_DONTDUMP);
	m->host = p;
	m->size = size;
	m->low_size = size < LAYOUT_MMIO_GAP_START ? size : LAYOUT_MMIO_GAP_START;
	return 0;
}

int gmem_init_file(struct guest_mem *m, uint64_t size, int fd)
{
	memset(m, 0, sizeof(*m));
	if (size < GMEM_MIN_SIZE || size > GMEM_MAX_SIZE || (size & 0xfff))
		return -EINVAL;
	uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	m->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (m->file_fd < 0) {
		int rc = -errno;
		munmap(p, size);
		return rc;
	}
	madvise(p, size, MADV_DONTDUMP);
	m->host = p;
	m->size = size;
	m->low_size = size < LAYOUT_MMIO_GAP_START ? size : LAYOUT_MMIO_GAP_START;
	m->from_file = true;
	return 0;
}

void gmem_destroy(struct guest_mem *m)
{
	if (m->host)
		munmap(m->host, m->size);
	if (m->from_file)
		close(m->file_fd);
	memset(m, 0, sizeof(*m));
}

void *gmem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (!m->host || len == 0)
		return NULL;
	uint64_t last = gpa + len - 1;
	if (last < gpa)
		return NULL; /* wraps around */
	if (last < m->low_size)
		return m->host + gpa;
	if (gpa >= LAYOUT_MMIO_GAP_END) {
		uint64_t off = gpa - LAYOUT_MMIO_GAP_END;
		uint64_t high = m->size - m->low_size;
		if (off < high && len <= high - off)
			return m->host + m->low_size + off;
	}
	return NULL;
}

int gmem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
	const void *p = gmem_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int gmem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gmem_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	return 0;
}
