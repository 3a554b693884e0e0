/* 16550A UART model: enough of the register set for Linux's 8250 driver and console. */
#include "devices/serial.h"

#include <errno.h>
#include <linux/serial_reg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/util.h"

/*
 * Transmission is instantaneous: a byte written to THR goes straight to the host
 * fd, so the transmitter is always empty (LSR.THRE|TEMT) and a THR-empty
 * interrupt is pending whenever the guest enabled it and has not yet read IIR
 * since its last write.  Reading IIR while it reports THRI clears that condition,
 * as on the real part.
 *
 * The host side never blocks: a console nobody reads (a full pipe, a stopped terminal) would
 * otherwise hold a vCPU in write() with the UART lock taken, and pause, stop and console input
 * behind it.  Bytes the fd does not take wait in a bounded ring that the event loop flushes
 * when the fd is writable again; a full ring drops its oldest bytes, so a reader who comes
 * back sees the latest output.  Flow control through THRE was the alternative, but Linux's
 * console spins up to 10 ms per character on a THRE that stays clear, and its tty layer waits
 * for THRI: a guest would crawl or hang on a console nobody reads.
 */

static void serial_update_irq(struct serial *s)
{
	int level = 0;
	if ((s->ier & UART_IER_RDI) && s->rx_count)
		level = 1;
	else if ((s->ier & UART_IER_THRI) && s->iir_thri_pending)
		level = 1;
	/* OUT2 gates the interrupt line to the PIC on PC-compatible boards. */
	if (!(s->mcr & UART_MCR_OUT2))
		level = 0;
	if (level != s->irq_level) {
		s->irq_level = level;
		if (s->host && s->host->set_irq)
			s->host->set_irq(s->host->ctx, s->irq, level);
	}
}

static uint8_t serial_iir(struct serial *s)
{
	uint8_t fifo = (s->fcr & UART_FCR_ENABLE_FIFO) ? 0xc0 : 0;
	if ((s->ier & UART_IER_RDI) && s->rx_count)
		return fifo | UART_IIR_RDI;
	if ((s->ier & UART_IER_THRI) && s->iir_thri_pending)
		return fifo | UART_IIR_THRI;
	return fifo | UART_IIR_NO_INT;
}

static void serial_rx_push(struct serial *s, uint8_t byte)
{
	if (s->rx_count == SERIAL_FIFO_SIZE) {
		s->lsr |= UART_LSR_OE;
		return;
	}
	s->rx[(s->rx_head + s->rx_count) % SERIAL_FIFO_SIZE] = byte;
	s->rx_count++;
	s->lsr |= UART_LSR_DR;
}

static uint8_t serial_rx_pop(struct serial *s)
{
	if (!s->rx_count)
		return 0;
	uint8_t byte = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
	if (--s->rx_count == 0)
		s->lsr &= ~UART_LSR_DR;
	return byte;
}

/* Modem status as seen by the guest: in loopback the outputs feed the inputs. */
static uint8_t serial_msr(const struct serial *s)
{
	if (s->mcr & UART_MCR_LOOP) {
		uint8_t m = 0;
		if (s->mcr & UART_MCR_RTS)
			m |= UART_MSR_CTS;
		if (s->mcr & UART_MCR_DTR)
			m |= UART_MSR_DSR;
		if (s->mcr & UART_MCR_OUT1)
			m |= UART_MSR_RI;
		if (s->mcr & UART_MCR_OUT2)
			m |= UART_MSR_DCD;
		return m;
	}
	return s->msr;
}

/* Writes up to n bytes without blocking: how many went, 0 when the fd is full.  Lock held. */
static size_t serial_out_try(struct serial *s, const uint8_t *p, size_t n, bool *gone)
{
	ssize_t w;
	do
		w = s->out_sock ? send(s->out_fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL) : write(s->out_fd, p, n);
	while (w < 0 && errno == EINTR);
	if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
		*gone = true; /* EPIPE, EIO: nobody will ever read it */
	return w > 0 ? (size_t)w : 0;
}

/* The ring's bytes to the fd, oldest first, while it takes them.  Lock held; true when empty. */
static bool serial_out_drain(struct serial *s)
{
	bool gone = false;
	while (s->out_len && !gone) {
		unsigned chunk = SERIAL_OUT_BUF - s->out_head;
		if (chunk > s->out_len)
			chunk = s->out_len;
		size_t w = serial_out_try(s, s->out_buf + s->out_head, chunk, &gone);
		if (!w && !gone)
			break;
		s->out_head = (s->out_head + (unsigned)w) % SERIAL_OUT_BUF;
		s->out_len -= (unsigned)w;
	}
	if (gone) {
		s->out_dropped += s->out_len;
		s->out_head = s->out_len = 0;
	}
	return s->out_len == 0;
}

static void serial_transmit(struct serial *s, uint8_t byte)
{
	if (s->mcr & UART_MCR_LOOP) {
		serial_rx_push(s, byte);
		return;
	}
	if (s->out_fd < 0)
		return;
	/* Order: what already waits goes first. */
	if (serial_out_drain(s)) {
		bool gone = false;
		if (serial_out_try(s, &byte, 1, &gone) || gone) {
			s->out_dropped += gone;
			return;
		}
	}
	if (!s->out_buf) {
		s->out_dropped++;
		return;
	}
	if (s->out_len == 0 && s->out_wake_fd >= 0) {
		uint64_t one = 1;
		if (write(s->out_wake_fd, &one, sizeof(one)) < 0) {
			/* EAGAIN: the counter is already set, the loop will look */
		}
	}
	if (s->out_len == SERIAL_OUT_BUF) {
		s->out_head = (s->out_head + 1) % SERIAL_OUT_BUF;
		s->out_len--;
		s->out_dropped++;
	}
	s->out_buf[(s->out_head + s->out_len) % SERIAL_OUT_BUF] = byte;
	s->out_len++;
}

static void serial_read(void *opaque, uint64_t offset, void *data, uint32_t len)
{
	struct serial *s = opaque;
	uint8_t v = 0xff;
	pthread_mutex_lock(&s->lock);
	bool dlab = s->lcr & UART_LCR_DLAB;
	switch (offset) {
	case UART_RX:
		v = dlab ? s->dll : serial_rx_pop(s);
		break;
	case UART_IER:
		v = dlab ? s->dlm : s->ier;
		break;
	case UART_IIR:
		v = serial_iir(s);
		if ((v & UART_IIR_ID) == UART_IIR_THRI)
			s->iir_thri_pending = 0;
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = s->lsr;
		s->lsr &= ~(UART_LSR_OE | UART_LSR_PE | UART_LSR_FE | UART_LSR_BI);
		break;
	case UART_MSR:
		v = serial_msr(s);
		break;
	case UART_SCR:
		v = s->scr;
		break;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	memset(data, 0, len);
	*(uint8_t *)data = v;
}

static void serial_write(void *opaque, uint64_t offset, const void *data, uint32_t len)
{
	struct serial *s = opaque;
	uint8_t v = *(const uint8_t *)data;
	pthread_mutex_lock(&s->lock);
	bool dlab = s->lcr & UART_LCR_DLAB;
	switch (offset) {
	case UART_TX:
		if (dlab) {
			s->dll = v;
		} else {
			serial_transmit(s, v);
			s->iir_thri_pending = 1;
		}
		break;
	case UART_IER:
		if (dlab) {
			s->dlm = v;
		} else {
			/* Enabling THRI while the transmitter is empty raises it at once. */
			if (!(s->ier & UART_IER_THRI) && (v & UART_IER_THRI))
				s->iir_thri_pending = 1;
			s->ier = v & 0x0f;
		}
		break;
	case UART_FCR:
		s->fcr = v & (UART_FCR_ENABLE_FIFO | 0xc0);
		if (v & UART_FCR_CLEAR_RCVR) {
			s->rx_head = s->rx_count = 0;
			s->lsr &= ~UART_LSR_DR;
		}
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		s->mcr = v & 0x1f;
		break;
	case UART_SCR:
		s->scr = v;
		break;
	default: /* LSR and MSR are read-only */
		break;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

const struct bus_ops serial_ops = { .read = serial_read, .write = serial_write };

void serial_init(struct serial *s, int out_fd, unsigned irq, const struct dev_host *host)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = -1;
	s->out_restore_flags = -1;
	s->out_wake_fd = -1;
	if (out_fd >= 0) {
		s->out_fd = fd_nonblocking_copy(out_fd, &s->out_sock, &s->out_restore_flags);
		if (s->out_fd < 0)
			s->out_fd = -1; /* out of descriptors: the console is lost, the guest runs on */
		s->out_buf = malloc(SERIAL_OUT_BUF);
		s->out_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
	s->irq = irq;
	s->host = host;
	s->lsr = UART_LSR_TEMT | UART_LSR_THRE;
	s->msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
}

void serial_destroy(struct serial *s)
{
	if (s->out_fd >= 0) {
		serial_out_drain(s); /* a last try, without waiting */
		if (s->out_restore_flags >= 0)
			fcntl(s->out_fd, F_SETFL, s->out_restore_flags);
		close(s->out_fd);
	}
	if (s->out_wake_fd >= 0)
		close(s->out_wake_fd);
	free(s->out_buf);
	s->out_fd = s->out_wake_fd = -1;
	s->out_buf = NULL;
	pthread_mutex_destroy(&s->lock);
}

int serial_out_wake_fd(struct serial *s)
{
	return s->out_wake_fd;
}

int serial_out_fd(struct serial *s)
{
	return s->out_fd;
}

bool serial_out_flush(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->out_wake_fd >= 0) {
		uint64_t cnt;
		if (read(s->out_wake_fd, &cnt, sizeof(cnt)) < 0) {
			/* EAGAIN: not signalled since the last flush */
		}
	}
	bool empty = s->out_fd < 0 || serial_out_drain(s);
	pthread_mutex_unlock(&s->lock);
	return empty;
}

uint64_t serial_out_dropped(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	uint64_t n = s->out_dropped;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void serial_save(struct serial *s, struct serial_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&s->lock);
	st->ier = s->ier;
	st->iir_thri_pending = s->iir_thri_pending;
	st->lcr = s->lcr;
	st->mcr = s->mcr;
	st->lsr = s->lsr;
	st->msr = s->msr;
	st->scr = s->scr;
	st->dll = s->dll;
	st->dlm = s->dlm;
	st->fcr = s->fcr;
	st->rx_count = (uint8_t)s->rx_count;
	for (unsigned i = 0; i < s->rx_count; i++)
		st->rx[i] = s->rx[(s->rx_head + i) % SERIAL_FIFO_SIZE];
	pthread_mutex_unlock(&s->lock);
}

int serial_load(struct serial *s, const struct serial_state *st)
{
	if (st->rx_count > SERIAL_FIFO_SIZE)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	s->ier = st->ier;
	s->iir_thri_pending = st->iir_thri_pending;
	s->lcr = st->lcr;
	s->mcr = st->mcr;
	s->lsr = st->lsr;
	s->msr = st->msr;
	s->scr = st->scr;
	s->dll = st->dll;
	s->dlm = st->dlm;
	s->fcr = st->fcr;
	s->rx_head = 0;
	s->rx_count = st->rx_count;
	memcpy(s->rx, st->rx, sizeof(s->rx));
	/* KVM's line level is not part of the irqchip state: drive it from the registers again. */
	s->irq_level = 0;
	if (s->host && s->host->set_irq)
		s->host->set_irq(s->host->ctx, s->irq, 0);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

size_t serial_rx_room(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	size_t room = SERIAL_FIFO_SIZE - s->rx_count;
	pthread_mutex_unlock(&s->lock);
	return room;
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;
	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_count < SERIAL_FIFO_SIZE)
		serial_rx_push(s, buf[n++]);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- the device interface ---------------------------------------------------------------- */

static void serial_dev_save(struct device *d, void *st)
{
	serial_save(d->dev, st);
}

static int serial_dev_load(struct device *d, const void *st, char *err, size_t errlen)
{
	if (serial_load(d->dev, st))
		return errorf(err, errlen, -EINVAL, "corrupt: serial state");
	return 0;
}

static void serial_dev_destroy(struct device *d)
{
	serial_destroy(d->dev);
	free(d->dev);
}

static const struct dev_ops serial_dev_ops = {
	.name = "com1",
	.snap_section = SNAP_SEC_SERIAL,
	.state_size = sizeof(struct serial_state),
	.save = serial_dev_save,
	.load = serial_dev_load,
	.destroy = serial_dev_destroy,
};

int serial_create(struct device *d, const struct guest_mem *mem, const struct dev_host *host, const void *params)
{
	const struct serial_params *p = params;
	struct serial *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	serial_init(s, p->out_fd, d->irq, host);
	d->ops = &serial_dev_ops;
	d->dev = d->bus_opaque = s;
	d->bus_ops = &serial_ops;
	d->len = 8;
	return 0;
}
