/* `padcell check`: the preflight report. */
#ifndef PADCELL_CHECK_H
#define PADCELL_CHECK_H

#include <stdio.h>

/* Prints the report; returns 0 when this host can boot standard guest kernels. */
int check_run(FILE *out);

#endif
