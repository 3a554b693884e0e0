/* epoll loop: console input and output, termination signals, and the stop eventfd. */
#include "vmm/evloop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "vmm/util.h"

enum { TAG_STOP = 1, TAG_INPUT, TAG_SIGNAL, TAG_OUT_WAKE, TAG_OUT, TAG_HOOK /* + hook index */ };

#define ESCAPE_CHAR 0x01 /* Ctrl-A */

struct input_state {
	int fd;
	bool escape_keys;
	bool after_escape;
	bool paused; /* the guest's receive FIFO is full: stop reading until it drains */
	uint8_t pending[64];
	size_t pending_len;
};

/* Feed what fits of the pending input to the serial port. */
static void input_flush(struct vm *vm, struct input_state *in)
{
	size_t n = serial_input(vm->console, in->pending, in->pending_len);
	memmove(in->pending, in->pending + n, in->pending_len - n);
	in->pending_len -= n;
	in->paused = in->pending_len > 0;
}

/* Returns false on EOF or error: the input source is done. */
static bool input_read(struct vm *vm, struct input_state *in)
{
	/* A carried-over Ctrl-A can add one byte to what is read, so leave room for it. */
	uint8_t buf[sizeof(in->pending)];
	size_t room = sizeof(in->pending) - in->pending_len;
	if (room < 2)
		return true;
	ssize_t n = read(in->fd, buf, room - 1);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	for (ssize_t i = 0; i < n; i++) {
		uint8_t c = buf[i];
		if (in->escape_keys && in->after_escape) {
			in->after_escape = false;
			if (c == 'x') {
				vm_request_stop(vm, VM_STOP_SIGNAL, "stopped from the console (Ctrl-A x)");
				return true;
			}
			if (c != ESCAPE_CHAR)
				in->pending[in->pending_len++] = ESCAPE_CHAR;
		} else if (in->escape_keys && c == ESCAPE_CHAR) {
			in->after_escape = true;
			continue;
		}
		in->pending[in->pending_len++] = c;
	}
	input_flush(vm, in);
	return true;
}

int evloop_run(struct vm *vm, int in_fd, bool escape_keys)
{
	return evloop_run_hooks(vm, in_fd, escape_keys, NULL, 0);
}

/*
 * Guest output the console fd did not take waits in the UART's ring: flush it, and watch the fd
 * for room only while something waits (a full pipe stays "not writable" without costing a wakeup).
 */
static void console_out(struct vm *vm, int ep, bool *watching)
{
	bool empty = serial_out_flush(vm->console);
	int fd = serial_out_fd(vm->console);
	if (fd < 0 || empty == !*watching)
		return;
	struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = TAG_OUT };
	if (!empty && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0)
		*watching = true;
	else if (empty && epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) == 0)
		*watching = false;
}

int evloop_run_hooks(struct vm *vm, int in_fd, bool escape_keys, const struct evloop_hook *hooks, unsigned nhooks)
{
	if (nhooks > EVLOOP_MAX_HOOKS)
		return -EINVAL;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return -errno;
	int sfd = stop_signals_fd();

	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_STOP };
	epoll_ctl(ep, EPOLL_CTL_ADD, vm->stop_efd, &ev);
	if (sfd >= 0) {
		ev.data.u32 = TAG_SIGNAL;
		epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	}
	struct input_state in = { .fd = in_fd, .escape_keys = escape_keys };
	if (in_fd >= 0) {
		ev.data.u32 = TAG_INPUT;
		/* Regular files and /dev/null cannot be polled; they simply give no input. */
		if (epoll_ctl(ep, EPOLL_CTL_ADD, in_fd, &ev) < 0)
			in.fd = -1;
	}
	bool out_watching = false;
	if (vm->console && serial_out_wake_fd(vm->console) >= 0) {
		ev.data.u32 = TAG_OUT_WAKE;
		epoll_ctl(ep, EPOLL_CTL_ADD, serial_out_wake_fd(vm->console), &ev);
	}
	for (unsigned i = 0; i < nhooks; i++) {
		ev.events = EPOLLIN;
		ev.data.u32 = TAG_HOOK + i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, hooks[i].fd, &ev) < 0) {
			int e = errno;
			if (sfd >= 0)
				close(sfd);
			close(ep);
			return -e;
		}
	}

	while (vm_status(vm) == VM_RUNNING) {
		struct epoll_event evs[6 + EVLOOP_MAX_HOOKS];
		/* While input waits for FIFO room, poll the FIFO every few milliseconds. */
		int n = epoll_wait(ep, evs, 6 + EVLOOP_MAX_HOOKS, in.paused ? 5 : -1);
		if (n < 0 && errno != EINTR)
			break;
		if (in.paused) {
			input_flush(vm, &in);
			/* Level-triggered input would wake us at once while paused: watch it
			 * only when the FIFO can take more. */
			if (!in.paused && in.fd >= 0) {
				ev.events = EPOLLIN;
				ev.data.u32 = TAG_INPUT;
				epoll_ctl(ep, EPOLL_CTL_MOD, in.fd, &ev);
			}
		}
		for (int i = 0; i < n; i++) {
			switch (evs[i].data.u32) {
			case TAG_INPUT:
				if (!in.paused && !input_read(vm, &in)) {
					epoll_ctl(ep, EPOLL_CTL_DEL, in.fd, NULL);
					in.fd = -1;
				}
				if (in.paused && in.fd >= 0) {
					ev.events = 0; /* leave it in the kernel's buffer for now */
					ev.data.u32 = TAG_INPUT;
					epoll_ctl(ep, EPOLL_CTL_MOD, in.fd, &ev);
				}
				break;
			case TAG_OUT_WAKE:
			case TAG_OUT:
				console_out(vm, ep, &out_watching);
				break;
			case TAG_SIGNAL: {
				struct signalfd_siginfo si;
				if (read(sfd, &si, sizeof(si)) == sizeof(si))
					vm_request_stop(vm, VM_STOP_SIGNAL, "stopped by signal %u", si.ssi_signo);
				if (vm_status(vm) == VM_STOP_SIGNAL && !vm->stop_signal)
					vm->stop_signal = (int)si.ssi_signo;
				break;
			}
			default:
				if (evs[i].data.u32 >= TAG_HOOK && evs[i].data.u32 < TAG_HOOK + nhooks) {
					const struct evloop_hook *h = &hooks[evs[i].data.u32 - TAG_HOOK];
					h->ready(h->ctx);
				}
				break;
			}
		}
	}
	if (sfd >= 0)
		close(sfd);
	close(ep);
	return 0;
}
