/* Writes the fuzz seeds that are built, not typed: state files from the format's encoder, kernels, agent frames, virtqueue requests, network frames and a ClientHello. */
#include <errno.h>
#include <linux/kvm.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "devices/acpi_pm.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_vsock.h"
#include "guest/agent/proto.h"
#include "tests/unit/images.h"
#include "vmm/snapshot_fmt.h"

static const char *root;

static void put(const char *harness, const char *name, const void *a, size_t alen, const void *b, size_t blen)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, harness);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", root, harness, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen) || fclose(f)) {
		perror(path);
		exit(1);
	}
}

/* ---- snapshot: a whole machine's state file, as the encoder writes it ---- */

static void add_zero(struct snap_enc *e, uint32_t type, uint32_t index, size_t len)
{
	void *z = calloc(1, len);
	snap_enc_add(e, type, index, z, len);
	free(z);
}

static void state_file(const char *name, unsigned ncpus, bool disk, bool vsock)
{
	struct snap_header h = { .mem_size = 64u << 20, .ncpus = ncpus, .tsc_khz = 2000000 };
	h.mem_file_size = h.mem_size + SNAP_DATA_TRAILER;
	memset(h.id, 0x5a, sizeof(h.id));
	struct snap_enc e;
	snap_enc_init(&e, &h);
	for (unsigned c = 0; c < ncpus; c++) {
		add_zero(&e, SNAP_SEC_REGS, c, sizeof(struct kvm_regs));
		add_zero(&e, SNAP_SEC_SREGS, c, sizeof(struct kvm_sregs));
		add_zero(&e, SNAP_SEC_FPU, c, sizeof(struct kvm_fpu));
		add_zero(&e, SNAP_SEC_MSRS, c, 2 * sizeof(struct kvm_msr_entry));
		add_zero(&e, SNAP_SEC_LAPIC, c, sizeof(struct kvm_lapic_state));
		add_zero(&e, SNAP_SEC_EVENTS, c, sizeof(struct kvm_vcpu_events));
		add_zero(&e, SNAP_SEC_MP_STATE, c, sizeof(struct kvm_mp_state));
		add_zero(&e, SNAP_SEC_DEBUGREGS, c, sizeof(struct kvm_debugregs));
		add_zero(&e, SNAP_SEC_CPUID, c, 2 * sizeof(struct kvm_cpuid_entry2));
	}
	for (unsigned i = 0; i < 3; i++)
		add_zero(&e, SNAP_SEC_IRQCHIP, i, sizeof(struct kvm_irqchip));
	add_zero(&e, SNAP_SEC_PIT2, 0, sizeof(struct kvm_pit_state2));
	add_zero(&e, SNAP_SEC_CLOCK, 0, sizeof(struct kvm_clock_data));
	add_zero(&e, SNAP_SEC_SERIAL, 0, sizeof(struct serial_state));
	add_zero(&e, SNAP_SEC_I8042, 0, sizeof(struct i8042_state));
	add_zero(&e, SNAP_SEC_ACPI_PM, 0, sizeof(struct acpi_pm_state));
	add_zero(&e, SNAP_SEC_PVPANIC, 0, sizeof(uint32_t));
	if (disk) {
		static struct snap_disk d = { .size = 1 << 20, .scratch = 1, .id = "scratch0", .path = "disk0.copy" };
		snap_enc_add(&e, SNAP_SEC_DISK, 0, &d, sizeof(d));
		add_zero(&e, SNAP_SEC_BLK, 0, sizeof(struct virtio_blk_state));
	}
	if (vsock) {
		struct virtio_vsock_state v = { .guest_cid = 3 };
		snap_enc_add(&e, SNAP_SEC_VSOCK, disk ? 1 : 0, &v, sizeof(v));
	}
	if (snap_enc_finish(&e))
		exit(1);
	struct snap_view view;
	char err[256];
	if (snap_decode(e.buf, e.len, &view, err, sizeof(err)) || snap_check_machine(&view, err, sizeof(err))) {
		fprintf(stderr, "mkseeds: %s: %s\n", name, err);
		exit(1);
	}
	snap_view_free(&view);
	uint8_t mode = 0; /* as written: no fix-up needed */
	put("snapshot", name, &mode, 1, e.buf, e.len);
	snap_enc_free(&e);
}

/* ---- loader: flags, initrd length, command line, initrd, kernel ---- */

static void kernel_seed(const char *name, uint8_t flags, const uint8_t *k, size_t klen)
{
	static const char cmd[] = "console=ttyS0 panic=-1";
	static const uint8_t initrd[64] = "070701 initrd";
	uint8_t head[4 + sizeof(cmd) - 1 + sizeof(initrd)];
	head[0] = flags;
	head[1] = sizeof(initrd);
	head[2] = 0;
	head[3] = sizeof(cmd) - 1;
	memcpy(head + 4, cmd, sizeof(cmd) - 1);
	memcpy(head + 4 + sizeof(cmd) - 1, initrd, sizeof(initrd));
	put("loader", name, head, sizeof(head), k, klen);
}

static void loader_seeds(void)
{
	static const uint8_t code[] = { 0xfa, 0xf4, 0xeb, 0xfd }; /* cli; hlt; jmp . */
	size_t n;
	struct elf_spec es = { .code = code, .code_len = sizeof(code), .bss = 0x1000 };
	uint8_t *img = img_elf(&es, &n);
	kernel_seed("elf", 1 << 2, img, n);
	free(img);
	es.pvh_descsz = 4;
	es.pvh_entry = 0x100000;
	img = img_elf(&es, &n);
	kernel_seed("elf-pvh4", 2 | 1 << 2, img, n);
	free(img);
	es.pvh_descsz = 8;
	img = img_elf(&es, &n);
	kernel_seed("elf-pvh8-2cpu", 16 | 1 << 2, img, n);
	free(img);
	struct bz_spec bs = img_bz_default();
	bs.pm_len = 4096;
	bs.init_size = 1 << 20;
	img = img_bzimage(&bs, &n);
	kernel_seed("bzimage", 2 << 2, img, n);
	free(img);
}

/* ---- agent frames ---- */

static size_t frame(uint8_t *out, uint16_t type, const void *p, uint32_t len)
{
	agent_hdr_encode(out, len, type, 0);
	if (len)
		memcpy(out + AGENT_HDR_LEN, p, len);
	return AGENT_HDR_LEN + len;
}

static size_t hello(uint8_t *out)
{
	struct agent_hello h = { .version = AGENT_PROTO_VERSION, .flags = AGENT_HELLO_INIT, .ready_ms = 120 };
	uint8_t b[AGENT_HELLO_LEN];
	agent_hello_encode(b, &h);
	return frame(out, AGENT_HELLO, b, sizeof(b));
}

static void agent_seeds(void)
{
	static uint8_t s[1 << 16];
	uint8_t b[4096], x[8];
	size_t n;
	/* agent_proto: the host's frames to the agent, as one stream (first byte odd) */
	const char *argv[] = { "/bin/sh", "-c", "echo hi", NULL }, *env[] = { "PATH=/bin", "A=b", NULL };
	s[0] = 1;
	n = 1;
	struct agent_sync sy = { .realtime_ns = 1700000000000000000ull };
	uint8_t sb[AGENT_SYNC_LEN];
	agent_sync_encode(sb, &sy);
	n += frame(s + n, AGENT_SYNC, sb, sizeof(sb));
	int e = agent_exec_encode(b, sizeof(b), argv, env, "/tmp", "1000:1000", 5000, AGENT_EXEC_STDIN);
	n += frame(s + n, AGENT_EXEC, b, (uint32_t)e);
	n += frame(s + n, AGENT_STDIN, "input\n", 6);
	n += frame(s + n, AGENT_STDIN, NULL, 0);
	agent_u32_encode(x, 15);
	n += frame(s + n, AGENT_SIGNAL, x, 4);
	put("agent_proto", "host-exec-stream", s, n, NULL, 0);
	n = 1;
	e = agent_put_encode(b, sizeof(b), 0644, "/tmp/file");
	n += frame(s + n, AGENT_PUT, b, (uint32_t)e);
	n += frame(s + n, AGENT_DATA, "contents", 8);
	n += frame(s + n, AGENT_DATA, NULL, 0);
	n += frame(s + n, AGENT_GET, "/etc/hostname", 13);
	n += frame(s + n, AGENT_STAT, "/etc", 4);
	n += frame(s + n, AGENT_LIST, "/etc", 4);
	e = agent_mkdir_encode(b, sizeof(b), 0755, AGENT_MKDIR_PARENTS, "/tmp/a/b");
	n += frame(s + n, AGENT_MKDIR, b, (uint32_t)e);
	e = agent_move_encode(b, sizeof(b), "/tmp/a", "/tmp/c");
	n += frame(s + n, AGENT_MOVE, b, (uint32_t)e);
	e = agent_remove_encode(b, sizeof(b), AGENT_REMOVE_RECURSIVE, "/tmp/c");
	n += frame(s + n, AGENT_REMOVE, b, (uint32_t)e);
	n += frame(s + n, AGENT_POWEROFF, NULL, 0);
	put("agent_proto", "host-files-stream", s, n, NULL, 0);
	/* the agent's frames to the host */
	n = 1;
	n += hello(s + n);
	n += frame(s + n, AGENT_STDOUT, "hi\n", 3);
	agent_exit_encode(x, AGENT_EXITED, 0);
	n += frame(s + n, AGENT_EXIT, x, 8);
	put("agent_proto", "agent-stream", s, n, NULL, 0);
	uint8_t t = AGENT_EXEC << 1;
	put("agent_proto", "exec-payload", &t, 1, b, 0);
	e = agent_exec_encode(b, sizeof(b), argv, env, "", "", 0, 0);
	put("agent_proto", "exec-payload", &t, 1, b, (size_t)e);

	/* agent_client: op, then the agent's side of the conversation */
	struct { const char *name; uint8_t op; } ops[] = {
		{ "sync", 0x80 }, { "exec", 0x81 }, { "exec-stdin", 0x82 }, { "put", 0x83 }, { "get", 0x84 },
		{ "poweroff", 0x85 }, { "stat", 0x86 }, { "list", 0x87 },
	};
	struct agent_entry ent = { .mode = 0100644, .size = 6, .mtime_ns = 1700000000000000000ll, .name = "hostname" };
	size_t eoff;
	for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		s[0] = ops[i].op;
		n = 1 + hello(s + 1);
		switch (ops[i].op & 7) {
		case 1:
		case 2:
			n += frame(s + n, AGENT_STDOUT, "hi\n", 3);
			n += frame(s + n, AGENT_STDERR, "warn\n", 5);
			agent_u32_encode(x, 0);
			n += frame(s + n, AGENT_STDIN_ACK, x, 4);
			agent_exit_encode(x, AGENT_SIGNALED, 9);
			n += frame(s + n, AGENT_EXIT, x, 8);
			break;
		case 3:
			n += frame(s + n, AGENT_OK, NULL, 0);
			n += frame(s + n, AGENT_OK, NULL, 0);
			break;
		case 4:
			n += frame(s + n, AGENT_DATA, "guest\n", 6);
			n += frame(s + n, AGENT_DATA, NULL, 0);
			break;
		case 6:
		case 7:
			eoff = 0;
			agent_entry_encode(b, sizeof(b), &eoff, &ent);
			if ((ops[i].op & 7) == 7) {
				strcpy(ent.name, "passwd");
				agent_entry_encode(b, sizeof(b), &eoff, &ent);
			}
			n += frame(s + n, AGENT_ENTRIES, b, (uint32_t)eoff);
			if ((ops[i].op & 7) == 7)
				n += frame(s + n, AGENT_ENTRIES, NULL, 0);
			break;
		default:
			n += frame(s + n, AGENT_OK, NULL, 0);
			break;
		}
		put("agent_client", ops[i].name, s, n, NULL, 0);
	}
	s[0] = 0x81;
	n = 1 + hello(s + 1);
	n += frame(s + n, AGENT_ERROR, "cannot run /bin/sh: No such file", 32);
	put("agent_client", "exec-error", s, n, NULL, 0);
}

/* ---- virtq_blk: a queue of 8 with a read, a write, a flush and a GET_ID in it ---- */

static uint8_t mem[0x5000];

static void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };
	memcpy(mem + 0x1000 + 16 * i, &d, sizeof(d));
}

static void blk_seeds(bool event_idx)
{
	memset(mem, 0, sizeof(mem));
	struct virtio_blk_outhdr h[4] = {
		{ .type = VIRTIO_BLK_T_IN, .sector = 1 }, { .type = VIRTIO_BLK_T_OUT, .sector = 2 },
		{ .type = VIRTIO_BLK_T_FLUSH }, { .type = VIRTIO_BLK_T_GET_ID },
	};
	for (uint16_t r = 0; r < 4; r++) {
		uint64_t buf = 0x4000 + 0x400 * r;
		memcpy(mem + buf, &h[r], sizeof(h[r]));
		uint16_t d = 3 * r;
		desc(d, buf, sizeof(h[r]), VRING_DESC_F_NEXT, d + 1);
		if (r == 2) {
			desc(d + 1, buf + 0x3ff, 1, VRING_DESC_F_WRITE, 0);
		} else {
			desc(d + 1, 0x10000 + 0x1000 * r, r == 3 ? 20 : 512,
			     VRING_DESC_F_NEXT | (r == 1 ? 0 : VRING_DESC_F_WRITE), d + 2);
			desc(d + 2, buf + 0x3ff, 1, VRING_DESC_F_WRITE, 0);
		}
		uint16_t head = d;
		memcpy(mem + 0x2000 + 4 + 2 * r, &head, 2); /* avail ring */
	}
	uint16_t idx = 4;
	memcpy(mem + 0x2002, &idx, 2);
	uint8_t hd[1 + 6 + 2];
	hd[0] = (uint8_t)(3 | (event_idx ? 0x80 : 0)); /* 8 entries */
	uint16_t offs[4] = { 0x1000 / 16, 0x2000 / 2, 0x3000 / 4, sizeof(mem) };
	memcpy(hd + 1, offs, 8);
	/* then one more round: the driver republishes avail idx 4 (nothing new) */
	uint8_t tail[2 * 4 + 4] = { 0 };
	uint16_t round[2] = { 0x2002, 4 };
	memcpy(tail + 8, round, 4);
	uint8_t *all = malloc(sizeof(hd) + sizeof(mem) + sizeof(tail));
	memcpy(all, hd, sizeof(hd));
	memcpy(all + sizeof(hd), mem, sizeof(mem));
	memcpy(all + sizeof(hd) + sizeof(mem), tail, sizeof(tail));
	put("virtq_blk", event_idx ? "four-requests-event-idx" : "four-requests", all,
	    sizeof(hd) + sizeof(mem) + sizeof(tail), NULL, 0);
	free(all);
}

/* ---- the network: guest frames (ARP, SYNs, a DNS query, a ping), a ClientHello, rules ---- */

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t gw_mac[6] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 };
#define GUEST_IP 0x0a00020fu

static size_t be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; return 2; }
static size_t be32(uint8_t *p, uint32_t v) { be16(p, (uint16_t)(v >> 16)); return 2 + be16(p + 2, (uint16_t)v); }

static uint16_t csum(uint32_t s, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s += i % 2 ? b[i] : (uint32_t)b[i] << 8;
	while (s > 0xffff)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static size_t arp_frame(uint8_t *f)
{
	memset(f, 0, 42);
	memset(f, 0xff, 6);
	memcpy(f + 6, guest_mac, 6);
	be16(f + 12, 0x0806);
	be16(f + 14, 1), be16(f + 16, 0x0800), f[18] = 6, f[19] = 4, be16(f + 20, 1);
	memcpy(f + 22, guest_mac, 6);
	be32(f + 28, GUEST_IP);
	be32(f + 38, 0x0a000202u);
	return 42;
}

/* Ethernet + IPv4 to dst + an L4 header and payload (l4, l4len), the L4 checksum at csum_off. */
static size_t ip_frame(uint8_t *f, uint8_t proto, uint32_t dst, const uint8_t *l4, size_t l4len, int csum_off)
{
	memcpy(f, gw_mac, 6);
	memcpy(f + 6, guest_mac, 6);
	be16(f + 12, 0x0800);
	uint8_t *ip = f + 14;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	be16(ip + 2, (uint16_t)(20 + l4len));
	be16(ip + 4, 0x1234);
	be16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = proto;
	be32(ip + 12, GUEST_IP);
	be32(ip + 16, dst);
	be16(ip + 10, csum(0, ip, 20));
	memcpy(ip + 20, l4, l4len);
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0, ph[9] = proto;
	be16(ph + 10, (uint16_t)l4len);
	uint32_t s = 0;
	for (size_t i = 0; i < 12; i++)
		s += i % 2 ? ph[i] : (uint32_t)ph[i] << 8;
	if (csum_off >= 0)
		be16(ip + 20 + csum_off, proto == 1 ? csum(0, ip + 20, l4len) : csum(s, ip + 20, l4len));
	return 14 + 20 + l4len;
}

static size_t syn_frame(uint8_t *f, uint32_t dst, uint16_t port)
{
	uint8_t t[20] = { 0 };
	be16(t, 40000), be16(t + 2, port), be32(t + 4, 1000);
	t[12] = 5 << 4, t[13] = 0x02;
	be16(t + 14, 65535);
	return ip_frame(f, 6, dst, t, sizeof(t), 16);
}

/* A DNS query for name (dotted), type qtype, with id. */
static size_t dns_msg(uint8_t *q, const char *name, uint16_t qtype, uint16_t id)
{
	size_t n = 0;
	memset(q, 0, 12);
	be16(q, id), be16(q + 2, 0x0100), be16(q + 4, 1);
	n = 12;
	for (const char *p = name; *p;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		q[n++] = (uint8_t)l;
		memcpy(q + n, p, l);
		n += l;
		p += l + (dot ? 1 : 0);
	}
	q[n++] = 0;
	n += be16(q + n, qtype);
	n += be16(q + n, 1);
	return n;
}

static size_t dns_frame(uint8_t *f, const char *name)
{
	uint8_t u[300];
	size_t n = dns_msg(u + 8, name, 1, 0x4242);
	be16(u, 33333), be16(u + 2, 53), be16(u + 4, (uint16_t)(8 + n)), be16(u + 6, 0);
	return ip_frame(f, 17, 0x0a000203u, u, 8 + n, 6);
}

static size_t ping_frame(uint8_t *f, uint32_t dst)
{
	uint8_t e[16] = { 8, 0, 0, 0, 0x12, 0x34, 0, 1, 'p', 'a', 'd', 'c', 'e', 'l', 'l', '!' };
	return ip_frame(f, 1, dst, e, sizeof(e), 2);
}

/* A ClientHello as a TLS 1.3 client sends it: session id, suites, SNI, groups, versions, key share. */
static size_t client_hello(uint8_t *out, const char *host, size_t record_split)
{
	uint8_t b[1024];
	size_t n = 0, hl = strlen(host);
	n += be16(b + n, 0x0303);
	for (int i = 0; i < 32; i++)
		b[n++] = (uint8_t)(i * 7);
	b[n++] = 32;
	for (int i = 0; i < 32; i++)
		b[n++] = (uint8_t)(0xa0 + i);
	static const uint16_t suites[] = { 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9 };
	n += be16(b + n, sizeof(suites));
	for (size_t i = 0; i < sizeof(suites) / 2; i++)
		n += be16(b + n, suites[i]);
	b[n++] = 1, b[n++] = 0;
	size_t ext_len_at = n;
	n += 2;
	/* server_name */
	n += be16(b + n, 0), n += be16(b + n, (uint16_t)(hl + 5)), n += be16(b + n, (uint16_t)(hl + 3));
	b[n++] = 0;
	n += be16(b + n, (uint16_t)hl);
	memcpy(b + n, host, hl), n += hl;
	/* supported_groups: x25519, secp256r1 */
	n += be16(b + n, 10), n += be16(b + n, 6), n += be16(b + n, 4), n += be16(b + n, 29), n += be16(b + n, 23);
	/* ALPN: h2, http/1.1 */
	n += be16(b + n, 16), n += be16(b + n, 14), n += be16(b + n, 12);
	b[n++] = 2, memcpy(b + n, "h2", 2), n += 2;
	b[n++] = 8, memcpy(b + n, "http/1.1", 8), n += 8;
	/* supported_versions: 1.3, 1.2 */
	n += be16(b + n, 43), n += be16(b + n, 5), b[n++] = 4, n += be16(b + n, 0x0304), n += be16(b + n, 0x0303);
	/* key_share: x25519 */
	n += be16(b + n, 51), n += be16(b + n, 38), n += be16(b + n, 36), n += be16(b + n, 29), n += be16(b + n, 32);
	for (int i = 0; i < 32; i++)
		b[n++] = (uint8_t)(0x55 ^ i);
	be16(b + ext_len_at, (uint16_t)(n - ext_len_at - 2));

	uint8_t hs[1100];
	hs[0] = 1, hs[1] = 0, be16(hs + 2, (uint16_t)n);
	memcpy(hs + 4, b, n);
	size_t hsl = n + 4, o = 0, first = record_split && record_split < hsl ? record_split : hsl;
	for (size_t at = 0, len = first; at < hsl; at += len, len = hsl - at) {
		out[o++] = 0x16, out[o++] = 3, out[o++] = 1;
		o += be16(out + o, (uint16_t)len);
		memcpy(out + o, hs + at, len), o += len;
	}
	return o;
}

static void net_seeds(void)
{
	uint8_t f[2048], s[4096];
	size_t n;
	struct { const char *name; size_t len; uint8_t frame[512]; } fr[6];
	fr[0].name = "arp-request", fr[0].len = arp_frame(fr[0].frame);
	fr[1].name = "syn-denied", fr[1].len = syn_frame(fr[1].frame, 0x09090909u, 80);
	fr[2].name = "syn-allowed", fr[2].len = syn_frame(fr[2].frame, 0x5db8d822u, 443);
	fr[3].name = "dns-query", fr[3].len = dns_frame(fr[3].frame, "pypi.org");
	fr[4].name = "ping", fr[4].len = ping_frame(fr[4].frame, 0x08080808u);
	fr[5].name = "syn-metadata", fr[5].len = syn_frame(fr[5].frame, 0xa9fea9feu, 80);
	for (int i = 0; i < 6; i++) {
		s[0] = 0; /* closed mode, MTU 1500 */
		put("gate", fr[i].name, s, 1, fr[i].frame, fr[i].len);
	}

	/* dns: two addresses, a 512-byte buffer, TTL 60, then the query */
	uint8_t pre[2 + 4 + 8] = { 2, 0 };
	be32(pre + 2, 60), be32(pre + 6, 0x5db8d822u), be32(pre + 10, 0x01010101u);
	uint8_t msg[300];
	n = dns_msg(msg, "pypi.org", 1, 0x1234);
	put("dns", "a-pypi", pre, sizeof(pre), msg, n);
	n = dns_msg(msg, "files.PythonHosted.org", 28, 0x1235);
	put("dns", "aaaa-mixed-case", pre, sizeof(pre), msg, n);
	/* a well-formed question whose name is no host name (a space in a label) */
	n = dns_msg(msg, "bad name.example", 1, 0x1236);
	put("dns", "badname", pre, sizeof(pre), msg, n);

	/* sni: a seed byte for the chunking, then the stream */
	s[0] = 7;
	n = client_hello(s + 1, "files.pythonhosted.org", 0);
	put("sni", "client-hello", s, 1 + n, NULL, 0);
	n = client_hello(s + 1, "pypi.org", 100);
	put("sni", "client-hello-two-records", s, 1 + n, NULL, 0);
	static const char get[] = "GET /simple/ HTTP/1.1\r\nHost: pypi.org\r\nUser-Agent: pip/24.0\r\nAccept: */*\r\n\r\n";
	put("sni", "http-get", s, 1, get, sizeof(get) - 1);
	static const char post[] = "POST /upload HTTP/1.0\r\nHost: example.com:8080\r\nContent-Length: 2\r\n\r\nhi";
	put("sni", "http-post-port", s, 1, post, sizeof(post) - 1);

	/* httpreq: a seed byte for the pieces, then the guest's stream (the harness allows web.test:80) */
	static const char keepalive[] = "GET /a HTTP/1.1\r\nHost: web.test\r\n\r\n"
					"POST /b HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\n\r\nhello"
					"GET /c HTTP/1.1\r\nHost: evil.test\r\n\r\n";
	put("httpreq", "keepalive", s, 1, keepalive, sizeof(keepalive) - 1);
	static const char chunked[] = "PUT / HTTP/1.1\r\nHost: img.cdn.test\r\nTransfer-Encoding: chunked\r\n\r\n"
				      "3;a=b\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nHost: web.test\r\n\r\n";
	put("httpreq", "chunked", s, 1, chunked, sizeof(chunked) - 1);
	static const char upgrade[] = "GET /ws HTTP/1.1\r\nHost: web.test\r\nUpgrade: websocket\r\n\r\n\x81\x00";
	put("httpreq", "upgrade", s, 1, upgrade, sizeof(upgrade) - 1);

	/* policy: a flags byte, then rules one a line */
	static const char rules[] = "pypi.org:443\n*.pythonhosted.org\n93.184.216.34:80-443\n10.1.0.0/16/udp\n"
				    "1.1.1.1:53/udp\n0.0.0.0/0\nEXAMPLE.com.\n10.0.2.2:8000\n169.254.169.254";
	s[0] = 0;
	put("policy", "rules", s, 1, rules, sizeof(rules) - 1);
	static const char bad[] = "pypi.org:0\n*.*.org\n10.1.0.1/16\n::1\nexample.com/udp\n1.2.3.4:90-80\n-a.org";
	s[0] = 1;
	put("policy", "bad-rules-open", s, 1, bad, sizeof(bad) - 1);

	/* virtio_net: queues of 8 and 16 with their rings in the image, rx buffers, the frames on tx, a host frame */
	n = 0;
	s[n++] = 3 | (2 << 4) | 0x80;
	uint16_t offs[6] = { 0x1000 / 16, 0x2000 / 2, 0x3000 / 4, 0x4000 / 16, 0x5000 / 2, 0x6000 / 4 };
	memcpy(s + n, offs, sizeof(offs)), n += sizeof(offs);
	s[n++] = 0, s[n++] = 0; /* no image: the rings start zeroed */
	for (uint8_t i = 0; i < 4; i++) {
		s[n++] = 3, s[n++] = i; /* an rx buffer of 4096 */
		s[n++] = 0x00, s[n++] = 0x10;
	}
	for (int i = 0; i < 6; i++) {
		s[n++] = 2, s[n++] = (uint8_t)i, s[n++] = 0;
		s[n++] = (uint8_t)fr[i].len, s[n++] = (uint8_t)(fr[i].len >> 8);
		memcpy(s + n, fr[i].frame, fr[i].len), n += fr[i].len;
	}
	size_t rl = arp_frame(f);
	memcpy(f, guest_mac, 6), memcpy(f + 6, gw_mac, 6);
	f[21] = 2; /* the gateway's ARP reply */
	s[n++] = 4, s[n++] = (uint8_t)rl, s[n++] = 0;
	memcpy(s + n, f, rl), n += rl;
	s[n++] = 5, s[n++] = (uint8_t)rl, s[n++] = 0;
	memcpy(s + n, f, rl), n += rl;
	s[n++] = 0;
	put("virtio_net", "arp-syns-dns-ping", s, n, NULL, 0);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds CORPUS-DIR\n");
		return 2;
	}
	root = argv[1];
	mkdir(root, 0755);
	state_file("one-cpu", 1, false, false);
	state_file("two-cpus-disk-vsock", 2, true, true);
	loader_seeds();
	agent_seeds();
	blk_seeds(false);
	blk_seeds(true);
	net_seeds();
	return 0;
}
