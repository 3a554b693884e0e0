/* Polled COM1 output and the one-line-per-check report. */
#include <linux/serial_reg.h>

#include "tg.h"
#include "vmm/layout.h"

#define COM1 LAYOUT_COM1_PORT

/* Waits for an empty transmit holding register, so nothing is lost on a real-speed UART. */
void tg_putc(char c)
{
	if (c == '\n')
		tg_putc('\r');
	for (unsigned spins = 0; spins < 100000; spins++) {
		if (inb(COM1 + UART_LSR) & UART_LSR_THRE)
			break;
		cpu_relax();
	}
	outb(COM1 + UART_TX, (uint8_t)c);
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
