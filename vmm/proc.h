/* Child monitor processes (a sandbox's `padcell boot`/`restore`): who they are, and ending them. */
#ifndef PADCELL_PROC_H
#define PADCELL_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * pid's start time in clock ticks since boot (field 22 of /proc/PID/stat), which with the pid
 * names one process for good: a pid reused later has another.  0, or -errno (-ESRCH: no such
 * process, or a zombie).
 */
int proc_start_time(pid_t pid, unsigned long long *start);

/* True when pid is a live (not zombie) process that started at start. */
bool proc_alive(pid_t pid, unsigned long long start);

/*
 * Ends pid: SIGTERM, then SIGKILL after grace_ms if it has not exited, waiting for it (bounded) and
 * reaping it when it is our child.  pidfd (< 0: opened here) makes the signals reach that process
 * and no later one with its pid.  start != 0: only if pid still started then (otherwise the
 * process is already gone and nothing is signalled).  Returns 0, or -ESRCH when it was gone.
 */
int proc_stop(pid_t pid, int pidfd, unsigned long long start, int grace_ms);

#endif
