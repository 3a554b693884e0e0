/* Library-side error reporting: a return code plus one line for the user, written into a caller's buffer. */
#ifndef PADCELL_ERR_H
#define PADCELL_ERR_H

#include <stddef.h>

/* Formats the message into err (errlen bytes) and returns rc, so callers can `return errorf(...)`. */
int errorf(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
