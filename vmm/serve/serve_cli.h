/* `padcell serve`'s command-line values: --listen ADDR:PORT and --template NAME=SNAPSHOT_DIR. */
#ifndef PADCELL_SERVE_CLI_H
#define PADCELL_SERVE_CLI_H

#include <netinet/in.h>
#include <stdbool.h>
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

/* A template name: 1 to SERVE_NAME_MAX-1 letters, digits, '.', '_', '-'. */
bool serve_name_valid(const char *s, size_t n);

/*
 * The default state directory: /run/padcell-serve for root, else $XDG_RUNTIME_DIR/padcell-serve
 * (when absolute and short), else /tmp/padcell-serve-UID.  Templates live in its "templates".
 */
void serve_default_state_dir(char *out, size_t len);
#define SERVE_TEMPLATES_SUBDIR "templates"

/*
 * Every template directory in dir (as `padcell template build` makes them: DIR/NAME holding state,
 * mem and manifest.json), in name order, appended to t[*n..max): names beginning with '.' (builds
 * under way) are not looked at; a name already in t[0..*n) is skipped (an explicit --template
 * wins); an entry that is not a valid snapshot is skipped with skip(arg, line) saying why.
 * 0; -ENOENT when dir does not exist (the caller decides if that matters); -E2BIG when more than
 * max would be taken; another -errno with why set.
 */
int serve_templates_scan(const char *dir, struct serve_template *t, size_t *n, size_t max,
			 void (*skip)(void *arg, const char *line), void *arg, char *why, size_t whylen);

#endif
