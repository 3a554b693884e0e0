/* 16550A-compatible UART (the PC's COM1): guest console output and host input. */
#ifndef PADCELL_SERIAL_H
#define PADCELL_SERIAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/bus.h"
#include "devices/devhost.h"
#include "devices/device.h"

#define SERIAL_FIFO_SIZE 64

struct serial {
	pthread_mutex_t lock; /* vCPU threads write registers, the event loop feeds input */
	uint8_t ier, iir_thri_pending, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	uint8_t rx[SERIAL_FIFO_SIZE];
	unsigned rx_head, rx_count;
	int irq_level;
	int out_fd;
	unsigned irq;
	const struct dev_host *host;
};

extern const struct bus_ops serial_ops;

/* Snapshot state: the registers and the receive FIFO in order (fixed layout, padcell's format). */
struct serial_state {
	uint8_t ier, iir_thri_pending, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	uint8_t rx_count;
	uint8_t pad[5];
	uint8_t rx[SERIAL_FIFO_SIZE];
};
_Static_assert(sizeof(struct serial_state) == 16 + SERIAL_FIFO_SIZE, "serial_state layout");
void serial_save(struct serial *s, struct serial_state *st);
/* -EINVAL for an impossible state.  Re-raises the interrupt line the state implies. */
int serial_load(struct serial *s, const struct serial_state *st);

/* Output bytes go to out_fd (-1 drops them); the interrupt is `irq` via `host`. */
void serial_init(struct serial *s, int out_fd, unsigned irq, const struct dev_host *host);
void serial_destroy(struct serial *s);
/* Queue host input for the guest; returns how many bytes fitted in the receive FIFO. */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);
/* Free space in the receive FIFO, so the event loop reads no more than fits. */
size_t serial_rx_room(struct serial *s);

/* As a device (devices/device.h): the UART at d->base, interrupt d->irq; params a struct serial_params. */
struct serial_params {
	int out_fd;
};
dev_create_fn serial_create;

#endif
