/* Device worker threads: one start/stop/resume sequence for virtio-blk, virtio-vsock and whatever comes next. */
#include "devices/devthread.h"

#include "vmm/jail/jail.h"

void devthread_init(struct devthread *t, pthread_mutex_t *lock, void *(*fn)(void *), void (*wake)(void *), void *arg)
{
	*t = (struct devthread){ .lock = lock, .fn = fn, .wake = wake, .arg = arg, .jail_kind = JAIL_DEVICE };
}

/* Every device worker confines itself before it does any work (vmm/jail). */
static void *devthread_main(void *arg)
{
	struct devthread *t = arg;
	jail_thread_begin((enum jail_kind)t->jail_kind, t->jail_born);
	return t->fn(t->arg);
}

int devthread_start(struct devthread *t)
{
	/* A small stack: an 8 MiB default one can cost a 2 MiB huge page on hosts with transparent
	 * huge pages set to "always". */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, DEVTHREAD_STACK);
	t->jail_born = jail_thread_born();
	int rc = pthread_create(&t->thread, &attr, devthread_main, t);
	pthread_attr_destroy(&attr);
	if (rc && !t->jail_born)
		jail_thread_unborn();
	if (rc)
		return -rc;
	t->started = true;
	return 0;
}

void devthread_stop(struct devthread *t)
{
	if (!t->started)
		return;
	pthread_mutex_lock(t->lock);
	t->stop = true;
	pthread_mutex_unlock(t->lock);
	t->wake(t->arg);
	pthread_join(t->thread, NULL);
	t->started = false;
	t->stop = false;
}

int devthread_resume(struct devthread *t)
{
	if (t->started)
		return 0;
	int rc = devthread_start(t);
	if (!rc)
		t->wake(t->arg);
	return rc;
}
