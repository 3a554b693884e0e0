/* Raw terminal mode: every key goes to the guest, including Ctrl-C. */
#include "vmm/term.h"

#include <unistd.h>

void term_raw(struct term *t, int fd)
{
	t->fd = fd;
	t->raw = false;
	if (!isatty(fd) || tcgetattr(fd, &t->saved) < 0)
		return;
	struct termios r = t->saved;
	cfmakeraw(&r);
	/* Keep output post-processing so the guest's "\n" still returns the carriage. */
	r.c_oflag |= OPOST | ONLCR;
	if (tcsetattr(fd, TCSANOW, &r) == 0)
		t->raw = true;
}

void term_restore(struct term *t)
{
	if (t->raw) {
		tcsetattr(t->fd, TCSANOW, &t->saved);
		t->raw = false;
	}
}
