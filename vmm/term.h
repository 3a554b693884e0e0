/* Terminal raw mode for the guest console, always restored. */
#ifndef PADCELL_TERM_H
#define PADCELL_TERM_H

#include <stdbool.h>
#include <termios.h>

struct term {
	int fd;
	bool raw;
	struct termios saved;
};

/* Puts fd in raw mode if it is a terminal; a no-op otherwise. */
void term_raw(struct term *t, int fd);
void term_restore(struct term *t);

#endif
