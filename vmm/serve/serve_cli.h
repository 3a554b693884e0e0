/* `padcell serve`'s command-line values: --listen ADDR:PORT and --template NAME=SNAPSHOT_DIR. */
#ifndef PADCELL_SERVE_CLI_H
#define PADCELL_SERVE_CLI_H

#include <netinet/in.h>
#include <stddef.h>

#include "vmm/serve/table.h"

#define SERVE_DEFAULT_PORT 3000

/* An IPv4 address and port ("127.0.0.1:3000"; port 0: the kernel picks): 0, or -EINVAL. */
int serve_parse_listen(const char *s, struct sockaddr_in *out);

/*
 * NAME=DIR: the name (letters, digits, '.', '_', '-'; at most 63), the snapshot's state file read
 * for its RAM size and vCPUs, DIR/mem present.  0, or -errno with why set.
 */
int serve_template_parse(const char *s, struct serve_template *t, char *why, size_t whylen);

#endif
