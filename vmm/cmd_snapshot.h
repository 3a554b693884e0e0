/* `padcell snapshot`, `pause`, `resume` and `status`: clients of a running VM's control socket. */
#ifndef PADCELL_CMD_SNAPSHOT_H
#define PADCELL_CMD_SNAPSHOT_H

/* argv[0] is the command's name.  Each returns a process exit code (vmm/cli.h). */
int cmd_snapshot(int argc, char **argv);
int cmd_pause_resume(int argc, char **argv); /* "pause", "resume" or "status" */

#endif
