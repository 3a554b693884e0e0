/* Fuzzes the guest agent protocol (guest/agent/proto.c): frames read from a stream socket, every payload decoder, and decode/encode round trips. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guest/agent/proto.h"
#include "tests/fuzz/fuzz.h"

static struct agent_exec ex; /* large: two 4097-pointer arrays */
static uint8_t payload[AGENT_MAX_PAYLOAD];
static uint8_t again[AGENT_MAX_PAYLOAD];

/* Decodes p as a payload of type t; what decodes must encode back to the same bytes. */
static void decode(uint16_t t, const uint8_t *p, size_t len)
{
	uint32_t u, how;
	int32_t code;
	char path[AGENT_MAX_PATH];
	switch (t) {
	case AGENT_HELLO: {
		struct agent_hello h;
		if (agent_hello_decode(p, len, &h) == 0) {
			agent_hello_encode(again, &h);
			if (memcmp(again, p, AGENT_HELLO_LEN))
				abort();
		}
		break;
	}
	case AGENT_SYNC: {
		struct agent_sync s;
		if (agent_sync_decode(p, len, &s) == 0) {
			agent_sync_encode(again, &s);
			if (memcmp(again, p, AGENT_SYNC_LEN))
				abort();
		}
		break;
	}
	case AGENT_EXEC:
		if (agent_exec_decode(p, len, &ex) == 0) {
			int n = agent_exec_encode(again, sizeof(again), ex.argv, ex.envv, ex.cwd, ex.user, ex.timeout_ms,
						  ex.flags);
			if (n != (int)len || memcmp(again, p, len))
				abort();
		}
		break;
	case AGENT_SIGNAL:
	case AGENT_STDIN_ACK:
		if (agent_u32_decode(p, len, &u) == 0) {
			agent_u32_encode(again, u);
			if (memcmp(again, p, 4))
				abort();
		}
		break;
	case AGENT_EXIT:
		if (agent_exit_decode(p, len, &how, &code) == 0) {
			agent_exit_encode(again, how, code);
			if (memcmp(again, p, 8))
				abort();
		}
		break;
	case AGENT_PUT:
		if (agent_put_decode(p, len, &u, path, sizeof(path)) == 0) {
			int n = agent_put_encode(again, sizeof(again), u, path);
			if (n != (int)len || memcmp(again, p, len))
				abort();
		}
		break;
	case AGENT_GET:
	case AGENT_STAT:
	case AGENT_LIST:
		if (agent_path_decode(p, len, path, sizeof(path)) == 0 && (strlen(path) != len || memcmp(path, p, len)))
			abort();
		break;
	case AGENT_MKDIR: {
		uint32_t fl;
		if (agent_mkdir_decode(p, len, &u, &fl, path, sizeof(path)) == 0) {
			int n = agent_mkdir_encode(again, sizeof(again), u, fl, path);
			if (n != (int)len || memcmp(again, p, len))
				abort();
		}
		break;
	}
	case AGENT_REMOVE:
		if (agent_remove_decode(p, len, &u, path, sizeof(path)) == 0) {
			int n = agent_remove_encode(again, sizeof(again), u, path);
			if (n != (int)len || memcmp(again, p, len))
				abort();
		}
		break;
	case AGENT_MOVE: {
		static char dst[AGENT_MAX_PATH];
		if (agent_move_decode(p, len, path, dst, sizeof(path)) == 0) {
			int n = agent_move_encode(again, sizeof(again), path, dst);
			if (n != (int)len || memcmp(again, p, len))
				abort();
		}
		break;
	}
	case AGENT_ENTRIES: {
		/* every entry that decodes encodes back to the same bytes */
		size_t off = 0, out = 0;
		struct agent_entry e;
		while (agent_entry_next(p, len, &off, &e) == 1)
			if (agent_entry_encode(again, sizeof(again), &out, &e) || memcmp(again, p, out))
				abort();
		break;
	}
	case AGENT_START: {
		static struct agent_start st;
		if (agent_start_decode(p, len, &st) == 0) {
			int n = agent_start_encode(again, sizeof(again), st.flags, st.rows, st.cols, st.tag, st.e.argv, st.e.envv,
						   st.e.cwd, st.e.user);
			if (n != (int)len || memcmp(again, p, len))
				abort();
		}
		break;
	}
	case AGENT_PROC:
	case AGENT_KILL: {
		uint32_t v;
		if (agent_id2_decode(p, len, &u, &v) == 0) {
			agent_id2_encode(again, u, v);
			if (memcmp(again, p, 8))
				abort();
		}
		break;
	}
	case AGENT_RESIZE: {
		uint16_t r, c;
		if (agent_resize_decode(p, len, &u, &r, &c) == 0) {
			agent_resize_encode(again, u, r, c);
			if (memcmp(again, p, 8))
				abort();
		}
		break;
	}
	case AGENT_GAP: {
		uint64_t b;
		if (agent_gap_decode(p, len, &u, &b) == 0) {
			agent_gap_encode(again, u, b);
			if (memcmp(again, p, 12))
				abort();
		}
		break;
	}
	case AGENT_WATCH:
		if (agent_watch_decode(p, len, &u, path, sizeof(path)) == 0) {
			int n = agent_watch_encode(again, sizeof(again), u, path);
			if (n != (int)len || memcmp(again, p, len))
				abort();
		}
		break;
	case AGENT_WEVENTS: {
		static struct agent_wevent we;
		size_t off = 0, out = 0;
		while (agent_wevent_next(p, len, &off, &we) == 1)
			if (agent_wevent_encode(again, sizeof(again), &out, &we) || memcmp(again, p, out))
				abort();
		break;
	}
	case AGENT_PROCS: {
		size_t off = 0, out = 0;
		struct agent_proc pr;
		while (agent_proc_next(p, len, &off, &pr) == 1)
			if (agent_proc_encode(again, sizeof(again), &out, &pr) || memcmp(again, p, out))
				abort();
		break;
	}
	default:
		break;
	}
}

/*
 * First byte odd: the rest is a stream of frames, written to one end of a socket pair and read
 * back with agent_read_frame until it fails; each payload goes to its type's decoder.
 * Even: the rest is one payload for the decoder of type (byte >> 1).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fuzz_fds_begin();
	if (!(data[0] & 1)) {
		uint8_t *p = malloc(size - 1 ? size - 1 : 1); /* exact size: ASan sees overreads */
		if (!p)
			return 0;
		memcpy(p, data + 1, size - 1);
		decode(data[0] >> 1, p, size - 1);
		free(p);
		return 0;
	}
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp))
		abort();
	/* What the socket takes at once; the reader then sees the end of the stream. */
	size_t off = 1;
	while (off < size) {
		ssize_t w = send(sp[1], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	shutdown(sp[1], SHUT_WR);
	for (int n = 0; n < 4096; n++) {
		struct agent_hdr h;
		int rc = agent_read_frame(sp[0], &h, payload, sizeof(payload));
		if (rc == -EPIPE || rc == -EPROTO)
			break;
		if (rc)
			abort(); /* nothing else can go wrong reading a socket pair */
		decode(h.type, payload, h.len);
	}
	close(sp[0]);
	close(sp[1]);
	fuzz_fds_end();
	return 0;
}
