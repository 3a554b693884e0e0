/* padcell's commands: one file each under vmm/cmd/, dispatched from the table in vmm/main.c. */
#ifndef PADCELL_CMD_H
#define PADCELL_CMD_H

#define PADCELL_VERSION "0.1.0"

/*
 * Each command parses its own argv (argv[0] is the command's name), prints its own errors
 * (one "padcell: ..." line) and returns the process exit code (vmm/cmd/cli.h).
 */
int cmd_boot(int argc, char **argv);     /* boot.c */
int cmd_run(int argc, char **argv);      /* run.c */
int cmd_exec(int argc, char **argv);     /* agent.c */
int cmd_cp(int argc, char **argv);       /* agent.c */
int cmd_fs(int argc, char **argv);       /* agent.c: stat, ls, mkdir, mv, rm */
int cmd_ps(int argc, char **argv);       /* procs.c: the agent's background processes */
int cmd_attach(int argc, char **argv);   /* procs.c */
int cmd_kill(int argc, char **argv);     /* procs.c */
int cmd_mcp(int argc, char **argv);      /* mcp.c: the MCP server (vmm/mcp/) */
int cmd_serve(int argc, char **argv);    /* serve.c (a dynamic build), else vmm/serve/stub.c */
int cmd_template(int argc, char **argv); /* template.c: template build */
int cmd_restore(int argc, char **argv);  /* restore.c */
int cmd_snapshot(int argc, char **argv); /* snapshot.c */
int cmd_pause_resume(int argc, char **argv); /* snapshot.c: "pause", "resume" or "status" */
int cmd_net_policy(int argc, char **argv);   /* snapshot.c: "net-policy" */
int cmd_check(int argc, char **argv);    /* check.c */

#endif
