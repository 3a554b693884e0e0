/* 16550A on a fake bus at COM1, with a fake host recording the IRQ line and a pipe for output. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/serial_reg.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/bus.h"
#include "devices/serial.h"
#include "tests/unit/fake_host.h"
#include "vmm/x86/layout.h"

#define COM1 LAYOUT_COM1_PORT
#define IRQ  LAYOUT_COM1_IRQ

static struct fake_host fh;
static struct serial s;
static struct bus b;
static int pipefd[2];

static void setup(void)
{
	fake_host_init(&fh);
	cr_assert_eq(pipe2(pipefd, O_NONBLOCK), 0);
	serial_init(&s, pipefd[1], IRQ, &fh.host);
	bus_init(&b);
	cr_assert_eq(bus_register(&b, COM1, 8, &serial_ops, &s, "com1"), 0);
}

static void teardown(void)
{
	serial_destroy(&s);
	close(pipefd[0]);
	close(pipefd[1]);
}

TestSuite(serial, .init = setup, .fini = teardown);

static uint8_t rd(unsigned reg)
{
	uint8_t v = 0;
	cr_assert(bus_read(&b, COM1 + reg, &v, 1));
	return v;
}

static void wr(unsigned reg, uint8_t v)
{
	cr_assert(bus_write(&b, COM1 + reg, &v, 1));
}

/* What the guest has written to the console so far. */
static size_t drain(char *buf, size_t cap)
{
	ssize_t n = read(pipefd[0], buf, cap);
	return n < 0 ? 0 : (size_t)n;
}

Test(serial, reset_state)
{
	cr_assert_eq(rd(UART_LSR), UART_LSR_TEMT | UART_LSR_THRE, "LSR at reset is 0x60");
	cr_assert_eq(rd(UART_LSR), 0x60);
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
	cr_assert_eq(rd(UART_IER), 0);
	cr_assert_eq(rd(UART_LCR), 0);
	cr_assert_eq(rd(UART_MCR), 0);
	cr_assert_eq(rd(UART_MSR) & (UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS),
		     UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS, "carrier, DSR, CTS asserted");
	cr_assert_eq(fh.irq_calls, 0);
}

Test(serial, thr_output_goes_to_fd)
{
	const char *msg = "hello\n";
	for (const char *p = msg; *p; p++)
		wr(UART_TX, (uint8_t)*p);
	char buf[32];
	size_t n = drain(buf, sizeof(buf));
	cr_assert_eq(n, strlen(msg));
	cr_assert_arr_eq(buf, msg, n);
	cr_assert_eq(rd(UART_LSR) & (UART_LSR_TEMT | UART_LSR_THRE), 0x60, "transmitter always empty");
}

Test(serial, no_output_fd_drops_bytes)
{
	struct serial quiet;
	serial_init(&quiet, -1, IRQ, &fh.host);
	uint8_t v = 'q';
	serial_ops.write(&quiet, UART_TX, &v, 1);
	char buf[4];
	cr_assert_eq(drain(buf, sizeof(buf)), 0);
	serial_destroy(&quiet);
}

Test(serial, scratch_register)
{
	wr(UART_SCR, 0xa5);
	cr_assert_eq(rd(UART_SCR), 0xa5);
	wr(UART_SCR, 0x5a);
	cr_assert_eq(rd(UART_SCR), 0x5a);
}

Test(serial, dlab_divisor_latch)
{
	wr(UART_IER, 0x05);
	wr(UART_LCR, UART_LCR_DLAB | UART_LCR_WLEN8);
	wr(UART_DLL, 0x01);
	wr(UART_DLM, 0x02);
	cr_assert_eq(rd(UART_DLL), 0x01);
	cr_assert_eq(rd(UART_DLM), 0x02);
	char buf[4];
	cr_assert_eq(drain(buf, sizeof(buf)), 0, "DLL writes are not transmitted");
	wr(UART_LCR, UART_LCR_WLEN8);
	cr_assert_eq(rd(UART_IER), 0x05, "DLM write did not touch IER");
	cr_assert_eq(rd(UART_LCR), UART_LCR_WLEN8);
	wr(UART_LCR, UART_LCR_DLAB);
	cr_assert_eq(rd(UART_DLL), 0x01, "divisor kept across DLAB toggles");
	cr_assert_eq(rd(UART_DLM), 0x02);
}

Test(serial, thri_interrupt_and_iir_read_clears_it)
{
	wr(UART_MCR, UART_MCR_OUT2);
	cr_assert_eq(fh.irq_level[IRQ], 0);
	wr(UART_IER, UART_IER_THRI);
	cr_assert_eq(fh.irq_level[IRQ], 1, "enabling THRI with an empty transmitter raises the line");
	cr_assert_eq(fh.last_irq, IRQ);
	cr_assert_eq(rd(UART_IIR) & UART_IIR_ID, UART_IIR_THRI);
	cr_assert_eq(fh.irq_level[IRQ], 0, "reading IIR that reports THRI clears it");
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
	wr(UART_TX, 'a');
	cr_assert_eq(fh.irq_level[IRQ], 1, "THR write re-arms THRI");
	wr(UART_IER, 0);
	cr_assert_eq(fh.irq_level[IRQ], 0, "disabling THRI lowers the line");
}

Test(serial, out2_gates_the_line)
{
	wr(UART_IER, UART_IER_THRI);
	cr_assert_eq(fh.irq_level[IRQ], 0);
	cr_assert_eq(fh.irq_calls, 0, "no OUT2, no interrupt");
	wr(UART_MCR, UART_MCR_OUT2);
	cr_assert_eq(fh.irq_level[IRQ], 1);
	wr(UART_MCR, 0);
	cr_assert_eq(fh.irq_level[IRQ], 0);
}

Test(serial, rx_input_sets_dr_and_rdi)
{
	wr(UART_MCR, UART_MCR_OUT2);
	wr(UART_IER, UART_IER_RDI);
	cr_assert_eq(fh.irq_level[IRQ], 0);
	cr_assert_eq(serial_input(&s, (const uint8_t *)"ab", 2), 2);
	cr_assert(rd(UART_LSR) & UART_LSR_DR);
	cr_assert_eq(fh.irq_level[IRQ], 1);
	cr_assert_eq(rd(UART_IIR) & UART_IIR_ID, UART_IIR_RDI);
	cr_assert_eq(fh.irq_level[IRQ], 1, "reading IIR does not clear RDI");
	cr_assert_eq(rd(UART_RX), 'a');
	cr_assert(rd(UART_LSR) & UART_LSR_DR, "one byte left");
	cr_assert_eq(rd(UART_RX), 'b');
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0, "reading the last byte clears DR");
	cr_assert_eq(fh.irq_level[IRQ], 0);
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
}

Test(serial, rdi_has_priority_over_thri)
{
	wr(UART_MCR, UART_MCR_OUT2);
	wr(UART_IER, UART_IER_RDI | UART_IER_THRI);
	serial_input(&s, (const uint8_t *)"x", 1);
	cr_assert_eq(rd(UART_IIR) & UART_IIR_ID, UART_IIR_RDI);
	cr_assert_eq(rd(UART_RX), 'x');
	cr_assert_eq(rd(UART_IIR) & UART_IIR_ID, UART_IIR_THRI, "THRI still pending underneath");
	cr_assert_eq(rd(UART_IIR), UART_IIR_NO_INT);
}

Test(serial, rx_fifo_full)
{
	uint8_t in[SERIAL_FIFO_SIZE + 36];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	cr_assert_eq(serial_rx_room(&s), SERIAL_FIFO_SIZE);
	cr_assert_eq(serial_input(&s, in, sizeof(in)), SERIAL_FIFO_SIZE, "only what fits is taken");
	cr_assert_eq(serial_rx_room(&s), 0);
	cr_assert_eq(serial_input(&s, in, 1), 0);
	/* Refused host input is left for later, not lost: it is no overrun. */
	cr_assert_eq(rd(UART_LSR) & UART_LSR_OE, 0);
	for (unsigned i = 0; i < SERIAL_FIFO_SIZE; i++)
		cr_assert_eq(rd(UART_RX), (uint8_t)i, "byte %u in order", i);
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0);
	cr_assert_eq(serial_rx_room(&s), SERIAL_FIFO_SIZE);
}

Test(serial, rx_fifo_wraps_around)
{
	uint8_t in[40];
	for (int round = 0; round < 4; round++) {
		for (size_t i = 0; i < sizeof(in); i++)
			in[i] = (uint8_t)(round * 40 + i);
		cr_assert_eq(serial_input(&s, in, sizeof(in)), sizeof(in));
		for (size_t i = 0; i < sizeof(in); i++)
			cr_assert_eq(rd(UART_RX), in[i]);
	}
}

Test(serial, overrun_in_loopback)
{
	wr(UART_MCR, UART_MCR_LOOP);
	for (unsigned i = 0; i < SERIAL_FIFO_SIZE + 1; i++)
		wr(UART_TX, (uint8_t)i);
	uint8_t lsr = rd(UART_LSR);
	cr_assert(lsr & UART_LSR_OE, "65th byte into a 64-byte FIFO overruns");
	cr_assert(lsr & UART_LSR_DR);
	cr_assert_eq(rd(UART_LSR) & UART_LSR_OE, 0, "reading LSR clears OE");
	cr_assert_eq(rd(UART_RX), 0, "the FIFO kept the oldest bytes");
}

Test(serial, loopback)
{
	wr(UART_MCR, 0x1a); /* LOOP | OUT2 | RTS */
	cr_assert_eq(rd(UART_MSR) & 0xf0, 0x90, "RTS->CTS, OUT2->DCD");
	wr(UART_MCR, UART_MCR_LOOP | UART_MCR_DTR | UART_MCR_OUT1);
	cr_assert_eq(rd(UART_MSR) & 0xf0, UART_MSR_DSR | UART_MSR_RI);
	wr(UART_TX, 'Z');
	cr_assert(rd(UART_LSR) & UART_LSR_DR);
	cr_assert_eq(rd(UART_RX), 'Z');
	char buf[4];
	cr_assert_eq(drain(buf, sizeof(buf)), 0, "loopback output never reaches the host");
	wr(UART_MCR, 0);
	cr_assert_eq(rd(UART_MSR) & 0xb0, 0xb0, "back to the real modem lines");
}

Test(serial, fcr_clear_receiver)
{
	wr(UART_MCR, UART_MCR_OUT2);
	wr(UART_IER, UART_IER_RDI);
	serial_input(&s, (const uint8_t *)"abc", 3);
	cr_assert_eq(fh.irq_level[IRQ], 1);
	wr(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR);
	cr_assert_eq(rd(UART_LSR) & UART_LSR_DR, 0);
	cr_assert_eq(serial_rx_room(&s), SERIAL_FIFO_SIZE);
	cr_assert_eq(fh.irq_level[IRQ], 0, "nothing left to interrupt for");
	cr_assert_eq(rd(UART_IIR), 0xc0 | UART_IIR_NO_INT, "FIFOs enabled show in IIR bits 7:6");
	serial_input(&s, (const uint8_t *)"d", 1);
	cr_assert_eq(rd(UART_RX), 'd', "new input after the clear");
}

Test(serial, lsr_and_msr_are_read_only)
{
	wr(UART_LSR, 0x00);
	wr(UART_MSR, 0x00);
	cr_assert_eq(rd(UART_LSR), 0x60);
	cr_assert_eq(rd(UART_MSR) & 0xb0, 0xb0);
}

/* Linux's 8250 startup probe for UARTs that fail to re-assert THRE (UART_BUG_THRE). */
Test(serial, thre_reasserts_like_a_real_16550)
{
	wr(UART_MCR, UART_MCR_OUT2);
	wr(UART_IER, UART_IER_THRI);
	cr_assert_eq(rd(UART_IIR) & UART_IIR_NO_INT, 0, "first THRI");
	wr(UART_IER, 0);
	wr(UART_IER, UART_IER_THRI);
	uint8_t iir = rd(UART_IIR);
	cr_assert_eq(iir & UART_IIR_NO_INT, 0, "re-enabling THRI on an idle transmitter re-asserts it");
	cr_assert_eq(iir & UART_IIR_ID, UART_IIR_THRI);
	wr(UART_IER, 0);
	cr_assert_eq(fh.irq_level[IRQ], 0);
}

/* Linux's autoconfig: IER keeps only its low four bits; loopback shows 0x90 in MSR. */
Test(serial, linux_autoconfig_probe)
{
	wr(UART_IER, 0);
	cr_assert_eq(rd(UART_IER) & 0x0f, 0);
	wr(UART_IER, 0x0f);
	cr_assert_eq(rd(UART_IER) & 0x0f, 0x0f);
	wr(UART_IER, 0xff);
	cr_assert_eq(rd(UART_IER), 0x0f, "bits 7:4 of IER are reserved");
	wr(UART_IER, 0);
	wr(UART_MCR, UART_MCR_LOOP | 0x0a);
	cr_assert_eq(rd(UART_MSR) & 0xf0, 0x90);
	wr(UART_MCR, 0);
}

/* ---- a console nobody reads: never blocks, bounded, drops the oldest ---- */

struct writer {
	struct serial *s;
	size_t n;
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;
	for (size_t i = 0; i < w->n; i++) {
		uint8_t v = (uint8_t)(i % 251);
		serial_ops.write(w->s, UART_TX, &v, 1);
	}
	return NULL;
}

/* The writer (a vCPU) must finish, and console input and state saving must get the lock meanwhile:
 * the hang guard (the test's timeout) fails it if the UART blocks on the full pipe. */
Test(serial, full_pipe_nobody_reads_never_blocks_the_guest, .timeout = 60)
{
	struct serial c;
	int p[2];
	cr_assert_eq(pipe(p), 0); /* blocking, like a shell's pipe to `less` */
	serial_init(&c, p[1], IRQ, &fh.host);
	int psize = fcntl(p[1], F_GETPIPE_SZ);
	cr_assert_gt(psize, 0);
	struct writer w = { .s = &c, .n = (size_t)psize + SERIAL_OUT_BUF + 100000 };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, writer_thread, &w), 0);
	struct serial_state st;
	for (int i = 0; i < 1000; i++) {
		serial_input(&c, (const uint8_t *)"k", 1);
		serial_save(&c, &st);
		uint8_t v;
		serial_ops.read(&c, UART_RX, &v, 1);
	}
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(fcntl(p[1], F_GETFL) & O_NONBLOCK, 0, "the caller's pipe was made non-blocking");
	cr_assert_eq(serial_out_dropped(&c), w.n - (size_t)psize - SERIAL_OUT_BUF, "dropped bytes counted");
	cr_assert_eq(c.out_len, SERIAL_OUT_BUF, "the ring is bounded");
	uint8_t v;
	serial_ops.read(&c, UART_LSR, &v, 1);
	cr_assert_eq(v & UART_LSR_THRE, UART_LSR_THRE, "the guest is never held back");

	/* The pipe holds the first bytes; once it is read, a flush sends the latest SERIAL_OUT_BUF. */
	uint8_t *buf = malloc((size_t)psize + SERIAL_OUT_BUF);
	size_t got = 0;
	while (got < (size_t)psize) {
		ssize_t n = read(p[0], buf + got, (size_t)psize - got);
		cr_assert_gt(n, 0);
		got += (size_t)n;
	}
	for (size_t i = 0; i < got; i++)
		cr_assert_eq(buf[i], i % 251, "byte %zu of the pipe", i);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	for (int round = 0; round < 1000 && got < (size_t)psize + SERIAL_OUT_BUF; round++) {
		serial_out_flush(&c);
		ssize_t n = read(p[0], buf + got, (size_t)psize + SERIAL_OUT_BUF - got);
		if (n > 0)
			got += (size_t)n;
	}
	cr_assert_eq(got, (size_t)psize + SERIAL_OUT_BUF);
	cr_assert(serial_out_flush(&c), "nothing left waiting");
	size_t first = w.n - SERIAL_OUT_BUF; /* the index of the oldest byte kept */
	for (size_t i = 0; i < SERIAL_OUT_BUF; i++)
		cr_assert_eq(buf[(size_t)psize + i], (first + i) % 251, "kept byte %zu is the latest output", i);
	free(buf);
	serial_destroy(&c);
	close(p[0]);
	close(p[1]);
}

Test(serial, closed_console_drops_and_counts)
{
	struct serial c;
	int p[2];
	cr_assert_eq(pipe(p), 0);
	serial_init(&c, p[1], IRQ, &fh.host);
	close(p[0]); /* EPIPE from now on (SIGPIPE is ignored by padcell and here) */
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < 10; i++) {
		uint8_t v = 'z';
		serial_ops.write(&c, UART_TX, &v, 1);
	}
	cr_assert_eq(serial_out_dropped(&c), 10);
	cr_assert_eq(c.out_len, 0);
	serial_destroy(&c);
	close(p[1]);
}
