/* Device state in snapshots: every device's sections through its dev_ops, and the data files devices ask for. */
#include "vmm/snapshot_dev.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/err.h"
#include "vmm/snapshot_io.h"
#include "vmm/vm.h"

static void out_add(struct dev_snap_out *o, uint32_t type, uint32_t index, const void *data, size_t len)
{
	snap_enc_add(((struct snap_dev_out *)o->ctx)->e, type, index, data, len);
}

/* Only recorded: the copies are made after the memory file, beside the state file. */
static int out_add_file(struct dev_snap_out *o, const char *name, int fd, uint64_t size)
{
	struct snap_dev_out *s = o->ctx;
	if (s->ncopies >= sizeof(s->copies) / sizeof(s->copies[0]))
		return -ENOSPC;
	snprintf(s->copies[s->ncopies].name, sizeof(s->copies[0].name), "%s", name);
	s->copies[s->ncopies].fd = fd;
	s->copies[s->ncopies].size = size;
	s->ncopies++;
	return 0;
}

static void out_uses_file(struct dev_snap_out *o, int fd)
{
	struct snap_dev_out *s = o->ctx;
	if (s->nused < sizeof(s->used) / sizeof(s->used[0]))
		s->used[s->nused++] = fd;
}

int snap_devices_save(struct vm *vm, struct snap_dev_out *o, struct snap_enc *e, const char *state_path, char *err,
		      size_t errlen)
{
	*o = (struct snap_dev_out){ .e = e };
	snap_base_of(state_path, o->base, sizeof(o->base));
	o->out = (struct dev_snap_out){ .add = out_add, .add_file = out_add_file,
				     .uses_file = out_uses_file, .state_base = o->base, .ctx = o };
	for (unsigned i = 0; i < vm->ndevices; i++) {
		struct device *d = &vm->devices[i];
		int rc;
		if (d->ops->save_backing && (rc = d->ops->save_backing(d, &o->out, err, errlen)))
			return rc;
		if (!d->ops->save)
			continue;
		void *st = calloc(1, d->ops->state_size);
		if (!st)
			return errorf(err, errlen, -ENOMEM, "out of memory");
		d->ops->save(d, st);
		snap_enc_add(e, d->ops->snap_section, d->index, st, d->ops->state_size);
		free(st);
	}
	return 0;
}

static const void *in_find(const struct dev_snap_in *in, uint32_t type, uint32_t index, uint64_t *len)
{
	return snap_find(((const struct snap_dev_in *)in->ctx)->sv, type, index, len);
}

static int in_open_file(const struct dev_snap_in *in, const char *path, const char *what, uint64_t size, char *err,
			size_t errlen)
{
	return snap_data_open(path, what, ((const struct snap_dev_in *)in->ctx)->sv->hdr->id, size, err, errlen);
}

void snap_dev_in_init(struct snap_dev_in *s, const struct snap_view *sv, const char *state_path)
{
	s->sv = sv;
	snap_dir_of(state_path, s->dir, sizeof(s->dir));
	s->in = (struct dev_snap_in){ .find = in_find, .open_file = in_open_file, .copy_file = snap_copy_sparse,
				      .dir = s->dir, .ctx = s };
}

int snap_devices_load(struct vm *vm, const struct dev_snap_in *in, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->ndevices; i++) {
		struct device *d = &vm->devices[i];
		if (!d->ops->load)
			continue;
		uint64_t len;
		const void *st = in->find(in, d->ops->snap_section, d->index, &len);
		if (!st || len != d->ops->state_size)
			return errorf(err, errlen, -EINVAL, "corrupt: no %s state", d->ops->name);
		int rc = d->ops->load(d, st, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

void snap_devices_restored(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ndevices; i++) {
		struct device *d = &vm->devices[i];
		if (d->ops->restored)
			d->ops->restored(d);
	}
}
