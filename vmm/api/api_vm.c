/* The control socket wired to a VM: pause, resume, snapshot, and live rate-limit and egress-policy changes. */
#include <stdio.h>
#include <unistd.h>

#include "vmm/api/api.h"
#include "vmm/jail/jail.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

static int op_pause(void *ctx, char *err, size_t errlen)
{
	return vm_pause(ctx, err, errlen);
}

static int op_resume(void *ctx, char *err, size_t errlen)
{
	return vm_resume(ctx, err, errlen);
}

static bool op_is_paused(void *ctx)
{
	return vm_is_paused(ctx);
}

static int op_snapshot(void *ctx, const char *state_path, const char *mem_path, char *err, size_t errlen)
{
	return snapshot_create(ctx, state_path, mem_path, err, errlen);
}

static int op_set_rate(void *ctx, const char *cls, const char *id, const struct ratelimit_patch *p, unsigned np,
		       char *err, size_t errlen)
{
	return vm_set_rate(ctx, cls, id, p, np, err, errlen);
}

static int op_set_policy(void *ctx, const char *const *rules, size_t n, bool open, char *err, size_t errlen)
{
	return vm_set_policy(ctx, rules, n, open, err, errlen);
}

static int op_get_policy(void *ctx, struct policy_view *v, char *err, size_t errlen)
{
	return vm_get_policy(ctx, v, err, errlen);
}

struct api_server *api_vm_serve(struct vm *vm, int listen_fd, const char *path, const char *version, char *err,
				size_t errlen)
{
	char id[32];
	snprintf(id, sizeof(id), "padcell-%d", (int)jail_pid()); /* the pid callers know (README "The jail") */
	struct api_config cfg = {
		.id = id,
		.vmm_version = version,
		.ops = { .ctx = vm, .pause = op_pause, .resume = op_resume, .is_paused = op_is_paused,
			 .snapshot = op_snapshot, .set_rate = op_set_rate, .set_policy = op_set_policy,
			 .get_policy = op_get_policy },
	};
	return api_server_new(listen_fd, path, &cfg, err, errlen);
}
