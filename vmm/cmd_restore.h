/* `padcell restore`: run a VM restored from a snapshot. */
#ifndef PADCELL_CMD_RESTORE_H
#define PADCELL_CMD_RESTORE_H

/* argv[0] is "restore"; version is what the API reports.  Returns the process exit code. */
int cmd_restore(int argc, char **argv, const char *version);

#endif
