/* The PS/2 keyboard controller, modelled only as far as the reset line and the self-tests. */
#ifndef PADCELL_I8042_H
#define PADCELL_I8042_H

#include <pthread.h>
#include <stdint.h>

#include "devices/bus.h"
#include "devices/devhost.h"
#include "devices/device.h"

struct i8042 {
	pthread_mutex_t lock;
	uint8_t status, cmd_byte, out, pending_cmd, output_port;
	const struct dev_host *host;
};

/* Both ports sit on one bus range, 0x60..0x64, and the device tells them apart by offset. */
#define I8042_RANGE_LEN 5
extern const struct bus_ops i8042_ops;

/* Snapshot state (fixed layout). */
struct i8042_state {
	uint8_t status, cmd_byte, out, pending_cmd, output_port;
	uint8_t pad[3];
};
void i8042_save(struct i8042 *k, struct i8042_state *st);
void i8042_load(struct i8042 *k, const struct i8042_state *st);

void i8042_init(struct i8042 *k, const struct dev_host *host);
void i8042_destroy(struct i8042 *k);

/* As a device (devices/device.h): the controller's range at d->base; no params. */
dev_create_fn i8042_create;

#endif
