/* The L1 host's heartbeat for tests/nested/l1.sh's freeze detector: one byte every 5 s to QEMU's
 * isa-debugcon (I/O port 0xe9, a file on the host), never on the serial console the tiers parse.
 * An out to the debugcon is synchronous (no interrupt, no driver), so the beat stops only when L1
 * stops scheduling this process: a frozen L1 (no interrupt delivered, the vCPU halted for good).
 * Started by tests/nested/l1-init.sh; the L1 kernel has no /dev/port, hence this program. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/io.h>
#include <time.h>

#define BEAT_PORT 0xe9
#define BEAT_PERIOD_S 5

int main(void)
{
	if (ioperm(BEAT_PORT, 1, 1) != 0) {
		printf("L1-WARN no heartbeat: ioperm(0x%x): %s\n", BEAT_PORT, strerror(errno));
		return 1;
	}
	for (;;) {
		struct timespec ts = { .tv_sec = BEAT_PERIOD_S };
		outb('h', BEAT_PORT);
		/* A sleep cut short by a signal goes on for what is left of it. */
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
}
