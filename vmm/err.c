/* errorf: the one formatter behind every library error message. */
#include "vmm/err.h"

#include <stdarg.h>
#include <stdio.h>

int errorf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}
