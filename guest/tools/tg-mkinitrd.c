/* Host tool: writes a test initrd of a given size filled with the pattern the test guest checks. */
#include <stdio.h>
#include <stdlib.h>

#include "guest/testguest/pattern.h"

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: tg-mkinitrd SIZE FILE\n");
		return 2;
	}
	char *end;
	unsigned long long size = strtoull(argv[1], &end, 0);
	if (*end || size == 0) {
		fprintf(stderr, "tg-mkinitrd: bad size '%s'\n", argv[1]);
		return 2;
	}
	FILE *f = fopen(argv[2], "wb");
	if (!f) {
		perror(argv[2]);
		return 1;
	}
	for (unsigned long long i = 0; i < size; i++)
		putc(tg_pattern_byte(i), f);
	if (fclose(f)) {
		perror(argv[2]);
		return 1;
	}
	return 0;
}
