/* Polled COM1 output and the one-line-per-check report. */
#include <linux/serial_reg.h>

#include "tg.h"
#include "vmm/x86/layout.h"

#define COM1 LAYOUT_COM1_PORT

#define UART_FIFO_DEPTH 16 /* 16550A transmit FIFO */

static unsigned tx_burst = 1;   /* bytes one THRE poll allows: 16 with the FIFO on, else 1 */
static char line[128];          /* output is assembled here and sent in bursts */
static unsigned line_len;

/*
 * Turns on the 16550A FIFOs when the UART has them (IIR bits 7:6 read 11 afterwards);
 * then one THRE poll allows a burst of 16 bytes, as Linux's 8250 driver does.
 */
void tg_console_init(void)
{
	outb(COM1 + UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT);
	if ((inb(COM1 + UART_IIR) & 0xc0) == 0xc0)
		tx_burst = UART_FIFO_DEPTH;
}

/*
 * Sends the buffered bytes: wait for LSR.THRE, then one `rep outsb` of up to a FIFO's
 * worth.  Under PVM's instruction emulation every guest instruction costs about a
 * microsecond, so a string instruction per burst is far cheaper than a loop per byte.
 */
static void line_flush(void)
{
	const char *p = line;
	unsigned left = line_len;
	while (left) {
		for (unsigned spins = 0; spins < 100000; spins++) {
			if (inb(COM1 + UART_LSR) & UART_LSR_THRE)
				break;
			cpu_relax();
		}
		unsigned long n = left < tx_burst ? left : tx_burst;
		left -= (unsigned)n;
		__asm__ volatile("cld; rep outsb" : "+S"(p), "+c"(n) : "d"((uint16_t)(COM1 + UART_TX)) : "memory");
	}
	line_len = 0;
}

/* Buffers one character; a newline (sent as CR LF) or a full buffer sends the line. */
void tg_putc(char c)
{
	if (c == '\n')
		tg_putc('\r');
	line[line_len++] = c;
	if (c == '\n' || line_len == sizeof(line))
		line_flush();
}

static void put_num(uint64_t v, unsigned base, bool neg)
{
	char buf[24];
	int n = 0;
	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		tg_putc('-');
	while (n)
		tg_putc(buf[--n]);
}

static void tg_vprintf(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			tg_putc(*fmt);
			continue;
		}
		fmt++;
		int prec = -1;
		if (*fmt == '.') {
			prec = 0;
			while (*++fmt >= '0' && *fmt <= '9')
				prec = prec * 10 + (*fmt - '0');
		}
		unsigned longs = 0;
		while (*fmt == 'l')
			longs++, fmt++;
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			for (int i = 0; s[i] && (prec < 0 || i < prec); i++)
				tg_putc(s[i]);
			break;
		}
		case 'c':
			tg_putc((char)va_arg(ap, int));
			break;
		case 'd': {
			int64_t v = longs ? va_arg(ap, long) : va_arg(ap, int);
			put_num(v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0);
			break;
		}
		case 'u':
		case 'x': {
			uint64_t v = longs ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
			put_num(v, *fmt == 'x' ? 16 : 10, false);
			break;
		}
		case '%':
			tg_putc('%');
			break;
		case '\0':
			return;
		default:
			tg_putc('?');
			break;
		}
	}
}

void tg_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tg_vprintf(fmt, ap);
	va_end(ap);
}

static unsigned failures;

void tg_ok(const char *check, const char *fmt, ...)
{
	va_list ap;
	tg_printf("ok %s: ", check);
	va_start(ap, fmt);
	tg_vprintf(fmt, ap);
	va_end(ap);
	tg_putc('\n');
}

void tg_fail(const char *check, const char *fmt, ...)
{
	va_list ap;
	failures++;
	tg_printf("FAIL %s: ", check);
	va_start(ap, fmt);
	tg_vprintf(fmt, ap);
	va_end(ap);
	tg_putc('\n');
}

unsigned tg_failures(void)
{
	return failures;
}
