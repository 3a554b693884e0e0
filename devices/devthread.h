/* A device's worker thread: started, stopped with no work in flight, and restarted the same way by every device. */
#ifndef PADCELL_DEVTHREAD_H
#define PADCELL_DEVTHREAD_H

#include <pthread.h>
#include <stdbool.h>

/* Device threads' frames are shallow (see VM_THREAD_STACK for why small). */
#define DEVTHREAD_STACK (256u << 10)

/*
 * The thread runs fn(arg) and must look at `stop` under *lock (the device's own lock) every
 * time it wakes, and return once it is set.  wake(arg) makes it wake (writes its kick fd).
 */
struct devthread {
	pthread_t thread;
	bool started;
	bool stop;
	bool jail_born; /* created before the jail confined the process (vmm/jail) */
	int jail_kind;  /* its seccomp allow-list: JAIL_DEVICE unless the device says otherwise */
	pthread_mutex_t *lock;
	void *(*fn)(void *arg);
	void (*wake)(void *arg);
	void *arg;
};

void devthread_init(struct devthread *t, pthread_mutex_t *lock, void *(*fn)(void *), void (*wake)(void *), void *arg);
/* -errno when the thread cannot be created. */
int devthread_start(struct devthread *t);
/* Asks the thread to stop, wakes it and waits for it: no work in flight after.  Not started: nothing. */
void devthread_stop(struct devthread *t);
/* Starts it again (running: 0) and wakes it once, for a kick the stopping thread swallowed or that came meanwhile. */
int devthread_resume(struct devthread *t);

#endif
