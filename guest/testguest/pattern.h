/* The test initrd's content, shared by the guest that checks it and the host tool that writes it. */
#ifndef TG_PATTERN_H
#define TG_PATTERN_H

/*
 * Byte i of the initrd is (i * 131 + 7) mod 256.  131 is odd, so the pattern runs
 * through all 256 values before repeating: a shifted, truncated or zero-filled
 * image shows up at once, and the period lets the guest compare eight bytes at a time.
 */
#define TG_PATTERN_PERIOD 256u

static inline unsigned char tg_pattern_byte(unsigned long long i)
{
	return (unsigned char)((i * 131u + 7u) & 0xffu);
}

#endif
