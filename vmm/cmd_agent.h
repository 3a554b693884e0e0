/* `padcell exec` and `padcell cp`: commands and files through the guest agent of a running VM. */
#ifndef PADCELL_CMD_AGENT_H
#define PADCELL_CMD_AGENT_H

int cmd_exec(int argc, char **argv);
int cmd_cp(int argc, char **argv);

#endif
