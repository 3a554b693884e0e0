/* Writes the fuzz seeds that are built, not typed: state files from the format's encoder, kernels, agent frames, virtqueue requests. */
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
		{ "poweroff", 0x85 },
	};
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
	return 0;
}
