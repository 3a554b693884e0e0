/* SMP check: wake the second vCPU with INIT/SIPI/SIPI and wait for it to reach long mode. */
#include "tg.h"

void tg_check_smp(const struct tg_params *p)
{
	(void)p;
	tg_fail("smp", "not implemented yet");
}
