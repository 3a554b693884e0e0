/* i8042 keyboard controller: the reset pulse ends the VM; the rest answers the driver's probes. */
#include "devices/i8042.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/snapshot_fmt.h"

/* Status register bits. */
#define ST_OBF      0x01 /* output buffer full: data waiting at port 0x60 */
#define ST_SYSFLAG  0x04 /* passed self-test                                */
#define ST_CMD      0x08 /* last write went to the command port             */

/* Controller commands (written to port 0x64). */
#define CMD_READ_CMD_BYTE   0x20
#define CMD_WRITE_CMD_BYTE  0x60
#define CMD_DISABLE_AUX     0xa7
#define CMD_ENABLE_AUX      0xa8
#define CMD_TEST_AUX        0xa9
#define CMD_SELF_TEST       0xaa
#define CMD_TEST_KBD        0xab
#define CMD_DISABLE_KBD     0xad
#define CMD_ENABLE_KBD      0xae
#define CMD_READ_OUTPUT     0xd0
#define CMD_WRITE_OUTPUT    0xd1
#define CMD_WRITE_AUX       0xd4
#define CMD_PULSE_RESET     0xfe

#define DATA_PORT_OFF 0
#define CMD_PORT_OFF  4

static void i8042_put(struct i8042 *k, uint8_t v)
{
	k->out = v;
	k->status |= ST_OBF;
}

static void i8042_reset_guest(struct i8042 *k)
{
	if (k->host && k->host->event)
		k->host->event(k->host->ctx, DEV_EVENT_RESET);
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	k->pending_cmd = 0; /* a new command abandons a parameter still awaited */
	switch (cmd) {
	case CMD_READ_CMD_BYTE:
		i8042_put(k, k->cmd_byte);
		break;
	case CMD_WRITE_CMD_BYTE:
	case CMD_WRITE_OUTPUT:
	case CMD_WRITE_AUX:
		k->pending_cmd = cmd; /* the argument follows on the data port */
		break;
	case CMD_SELF_TEST:
		i8042_put(k, 0x55);
		break;
	case CMD_TEST_KBD:
	case CMD_TEST_AUX:
		i8042_put(k, 0x00);
		break;
	case CMD_READ_OUTPUT:
		i8042_put(k, k->output_port);
		break;
	case CMD_DISABLE_KBD:
		k->cmd_byte |= 0x10;
		break;
	case CMD_ENABLE_KBD:
		k->cmd_byte &= ~0x10;
		break;
	case CMD_DISABLE_AUX:
		k->cmd_byte |= 0x20;
		break;
	case CMD_ENABLE_AUX:
		k->cmd_byte &= ~0x20;
		break;
	default:
		/* 0xf0-0xff pulse output-port lines; bit 0 is the CPU reset line. */
		if ((cmd & 0xf0) == 0xf0 && !(cmd & 0x01))
			i8042_reset_guest(k);
		break;
	}
}

static void i8042_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending_cmd;
	k->pending_cmd = 0;
	switch (cmd) {
	case CMD_WRITE_CMD_BYTE:
		k->cmd_byte = v;
		break;
	case CMD_WRITE_OUTPUT:
		k->output_port = v;
		if (!(v & 0x01)) /* reset line driven low */
			i8042_reset_guest(k);
		break;
	case CMD_WRITE_AUX:
		break; /* no mouse behind the controller */
	default:
		/* A command to the keyboard itself: there is none, so answer like a
		 * controller with no device attached would not; acknowledging keeps the
		 * driver's probe short. */
		i8042_put(k, 0xfa);
		break;
	}
}

static void i8042_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct i8042 *k = opaque;
	uint8_t v = 0xff;
	pthread_mutex_lock(&k->lock);
	if (offset == DATA_PORT_OFF) {
		v = k->out;
		k->status &= ~ST_OBF;
	} else if (offset == CMD_PORT_OFF) {
		v = k->status;
	}
	pthread_mutex_unlock(&k->lock);
	memset(data, 0, len);
	*(uint8_t *)data = v;
}

static void i8042_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct i8042 *k = opaque;
	uint8_t v = *(const uint8_t *)data;
	pthread_mutex_lock(&k->lock);
	if (offset == DATA_PORT_OFF) {
		k->status &= ~ST_CMD;
		i8042_data(k, v);
	} else if (offset == CMD_PORT_OFF) {
		k->status |= ST_CMD;
		i8042_command(k, v);
	}
	pthread_mutex_unlock(&k->lock);
}

const struct bus_ops i8042_ops = { .read = i8042_read, .write = i8042_write };

void i8042_init(struct i8042 *k, const struct dev_host *host)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->host = host;
	k->status = ST_SYSFLAG;
	k->cmd_byte = 0x45;    /* translate, system flag, keyboard interrupt enabled */
	k->output_port = 0x03; /* reset line high (inactive), A20 enabled */
}

void i8042_save(struct i8042 *k, struct i8042_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&k->lock);
	st->status = k->status;
	st->cmd_byte = k->cmd_byte;
	st->out = k->out;
	st->pending_cmd = k->pending_cmd;
	st->output_port = k->output_port;
	pthread_mutex_unlock(&k->lock);
}

void i8042_load(struct i8042 *k, const struct i8042_state *st)
{
	pthread_mutex_lock(&k->lock);
	k->status = st->status;
	k->cmd_byte = st->cmd_byte;
	k->out = st->out;
	k->pending_cmd = st->pending_cmd;
	k->output_port = st->output_port;
	pthread_mutex_unlock(&k->lock);
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

/* ---- the device interface ---------------------------------------------------------------- */

static void i8042_dev_save(struct device *d, void *st)
{
	i8042_save(d->dev, st);
}

static int i8042_dev_load(struct device *d, const void *st, char *err, size_t errlen)
{
	i8042_load(d->dev, st);
	return 0;
}

static void i8042_dev_destroy(struct device *d)
{
	i8042_destroy(d->dev);
	free(d->dev);
}

static const struct dev_ops i8042_dev_ops = {
	.name = "i8042",
	.snap_section = SNAP_SEC_I8042,
	.state_size = sizeof(struct i8042_state),
	.save = i8042_dev_save,
	.load = i8042_dev_load,
	.destroy = i8042_dev_destroy,
};

int i8042_create(struct device *d, const struct guest_mem *mem, const struct dev_host *host, const void *params)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	i8042_init(k, host);
	d->ops = &i8042_dev_ops;
	d->dev = d->bus_opaque = k;
	d->bus_ops = &i8042_ops;
	d->len = I8042_RANGE_LEN;
	return 0;
}
