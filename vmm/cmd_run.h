/* `padcell run`: one command in a fresh (or restored) microVM. */
#ifndef PADCELL_CMD_RUN_H
#define PADCELL_CMD_RUN_H

#include <stddef.h>

int cmd_run(int argc, char **argv);

/* The default kernel or root image: $env, else share/padcell/name beside or above the executable. */
int run_default_file(const char *env, const char *name, char *out, size_t outlen, char *err, size_t errlen);

#endif
