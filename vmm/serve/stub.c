/* `padcell serve` in a static padcell: not there (libmicrohttpd links dynamically only); one line says so. */
#include <stdio.h>

#include "vmm/cmd/cli.h"
#include "vmm/cmd/cmd.h"

int cmd_serve(int argc, char **argv)
{
	fprintf(stderr, "padcell: serve is not in this padcell: it is linked statically, and serve needs libmicrohttpd, "
		"which links dynamically only; build one with serve: make build/padcell-dyn, or make STATIC=0\n");
	return EXIT_USAGE;
}
