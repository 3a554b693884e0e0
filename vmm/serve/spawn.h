/* `padcell serve`'s real spawner: each sandbox a child `padcell restore` of its template's snapshot. */
#ifndef PADCELL_SERVE_SPAWN_H
#define PADCELL_SERVE_SPAWN_H

#include <stdbool.h>

#include "vmm/serve/table.h"

struct spawner_client;
struct serve_spawn_opts {
	struct spawner_client *rpc; /* the spawner process, which starts and ends the monitors */
	const char *padcell;        /* the padcell the monitors run (the spawner's: vmm/serve/spawner.h) */
	unsigned ready_timeout;     /* seconds from the start until the restored agent answers */
	int quit_fd;                /* readable once the daemon stops (an eventfd; -1: none): a start ends within 1 s */
	bool verbose;               /* the monitors' output on the daemon's stderr, not their log file */
};

/* Fills sp with the real spawner (o must outlive it). */
void serve_spawner_real(struct serve_spawner *sp, struct serve_spawn_opts *o);

#endif
