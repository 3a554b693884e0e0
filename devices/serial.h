/* 16550A-compatible UART (the PC's COM1): guest console output and host input. */
#ifndef PADCELL_SERIAL_H
#define PADCELL_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/bus.h"
#include "devices/devhost.h"
#include "devices/device.h"

#define SERIAL_FIFO_SIZE 64
/* Guest output the console fd would not take yet; beyond it the oldest bytes are dropped. */
#define SERIAL_OUT_BUF (64u << 10)

struct serial {
	pthread_mutex_t lock; /* vCPU threads write registers, the event loop feeds input */
	uint8_t ier, iir_thri_pending, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	uint8_t rx[SERIAL_FIFO_SIZE];
	unsigned rx_head, rx_count;
	int irq_level;
	int out_fd;                 /* our own non-blocking copy of the console fd, or -1 */
	bool out_sock;              /* out_fd is a socket: send(MSG_DONTWAIT) */
	int out_restore_flags;      /* fcntl flags to put back on out_fd's file at destroy, or -1 */
	int out_wake_fd;            /* eventfd: signalled when out_buf stops being empty, or -1 */
	uint8_t *out_buf;           /* SERIAL_OUT_BUF bytes, a ring */
	unsigned out_head, out_len;
	uint64_t out_dropped;       /* guest bytes lost: the buffer was full, or the console is gone */
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

/*
 * Output bytes go to out_fd (-1 drops them); the interrupt is `irq` via `host`.  The UART writes
 * to a non-blocking copy of out_fd (out_fd itself and its file's flags are left alone), so a
 * console nobody reads never blocks a vCPU: what the fd will not take waits in a
 * SERIAL_OUT_BUF ring, and when that is full the oldest bytes are dropped (counted in
 * out_dropped).  THRE stays set: the guest is never made to wait.
 */
void serial_init(struct serial *s, int out_fd, unsigned irq, const struct dev_host *host);
/* Writes what it can of the buffered output, then closes the UART's copy of the fd. */
void serial_destroy(struct serial *s);

/*
 * For the event loop: an eventfd that becomes readable when output starts waiting (-1 if none),
 * the fd to wait on for POLLOUT while it waits, and the flush itself (without blocking).
 * serial_out_flush returns true when nothing is left waiting.
 */
int serial_out_wake_fd(struct serial *s);
int serial_out_fd(struct serial *s);
bool serial_out_flush(struct serial *s);
/* Guest output bytes dropped so far. */
uint64_t serial_out_dropped(struct serial *s);
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
