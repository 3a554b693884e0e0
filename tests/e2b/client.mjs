// The E2B JS SDK (`e2b`, pinned by tests/e2b/package-lock.json), unchanged, against `padcell serve`:
// the SDK's single-URL mode (apiUrl and sandboxUrl both the daemon's URL: envd calls carry the
// E2b-Sandbox-Id header).  One PASS/FAIL line per case, then "RESULT <passed> passed, <failed> failed".
//   node client.mjs --url http://127.0.0.1:PORT --key e2b_... [--template base]
import http from "node:http";
import { Sandbox, CommandExitError, NotFoundError, SandboxNotFoundError, TimeoutError } from "e2b";

const argv = process.argv.slice(2);
const opt = (name, def) => {
	const i = argv.indexOf(name);
	return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
};
const url = opt("--url"), apiKey = opt("--key"), template = opt("--template", "base");
if (!url || !apiKey) {
	console.error("usage: client.mjs --url http://HOST:PORT --key e2b_KEY [--template NAME]");
	process.exit(64);
}
// Every call under the nested tier's TCG is slow: generous request bounds (a hang guard only).
const conn = { apiUrl: url, sandboxUrl: url, apiKey, requestTimeoutMs: 120000 };
// A background command's stream ends with an error when its sandbox pauses: said, never fatal.
process.on("unhandledRejection", (e) => console.log(`note: unhandled rejection: ${e}`));

let passed = 0, failed = 0;
const check = (name, ok, why) => {
	if (ok) { passed++; console.log(`PASS ${name}`); } else { failed++; console.log(`FAIL ${name}: ${why}`); }
};
// A case: its body returns "" (passed) or why it failed; a throw fails it with the error.
const run = async (name, body) => {
	try {
		const why = await body();
		check(name, !why, why);
	} catch (e) {
		check(name, false, `threw ${e?.constructor?.name}: ${e?.message ?? e}`.slice(0, 400));
	}
};
const q = (v) => JSON.stringify(v);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Polls cond() (true when done) every 500 ms for up to ms.
const until = async (ms, cond) => {
	const end = Date.now() + ms;
	while (Date.now() < end) {
		if (await cond()) return true;
		await sleep(500);
	}
	return false;
};

// Connect's 5-byte envelopes: flag, u32 big-endian length, the JSON message.
const envelope = (msg, flag = 0) => {
	const m = Buffer.from(JSON.stringify(msg));
	const b = Buffer.alloc(5 + m.length);
	b[0] = flag;
	b.writeUInt32BE(m.length, 1);
	m.copy(b, 5);
	return b;
};
// The envelopes of a byte stream as they complete: feed(chunk) returns the [flag, JSON] ones done.
const envelopeReader = () => {
	let buf = Buffer.alloc(0);
	return (chunk) => {
		buf = Buffer.concat([buf, chunk]);
		const out = [];
		while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
			const n = buf.readUInt32BE(1);
			out.push([buf[0], JSON.parse(buf.subarray(5, 5 + n).toString() || "{}")]);
			buf = buf.subarray(5 + n);
		}
		return out;
	};
};
// A raw Connect call to envd on the sandbox (what the SDK does not expose: tags, StreamInput).
// Returns the request (written to by the caller, ended by it) and a promise of {status, envelopes}
// or, for a unary call (json), {status, body}; onEnvelope sees a stream's envelopes as they come.
const envdCall = (sandbox, method, { json, onEnvelope } = {}) => {
	const u = new URL(`/process.Process/${method}`, url);
	const req = http.request(u, {
		method: "POST",
		headers: {
			"Content-Type": json ? "application/json" : "application/connect+json",
			"E2b-Sandbox-Id": sandbox.sandboxId, "X-Access-Token": apiKey, "Connect-Protocol-Version": "1",
		},
	});
	const done = new Promise((resolve, reject) => {
		req.on("error", reject);
		req.on("response", (res) => {
			const read = envelopeReader(), envelopes = [];
			let body = "";
			res.on("data", (c) => {
				if (json) { body += c; return; }
				for (const e of read(c)) { envelopes.push(e); onEnvelope?.(e); }
			});
			res.on("end", () => resolve(json ? { status: res.statusCode, body: body ? JSON.parse(body) : null }
				: { status: res.statusCode, envelopes }));
			res.on("error", reject);
		});
	});
	return { req, done };
};
const b64 = (s) => Buffer.from(s).toString("base64");

const cases = [
	"create", "run-stdout", "run-stderr", "command-exit-error", "run-envs", "run-cwd", "run-timeout",
	"background-kill", "stdin", "pty", "tag-stream-input", "files", "watch-dir", "watch-recursive", "watch-stop",
	"list-depth", "pause-resume", "pty-reconnect", "list", "set-timeout-expires", "kill", "missing-sandbox",
];
let sbx = null, other = null;
const t0 = Date.now();

await run("create", async () => {
	sbx = await Sandbox.create(template, { ...conn, timeoutMs: 600000, metadata: { tier: "nested-e2b" } });
	return /^[0-9a-z]+$/.test(sbx.sandboxId) ? "" : `sandboxId ${q(sbx.sandboxId)}`;
});
console.log(`MEASURE e2b-create Sandbox.create ${((Date.now() - t0) / 1000).toFixed(1)}s`);
if (!sbx) {
	for (const c of cases.slice(1)) check(c, false, "no sandbox (create failed)");
	console.log(`RESULT ${passed} passed, ${failed} failed`);
	process.exit(1);
}

await run("run-stdout", async () => {
	const r = await sbx.commands.run("echo hello; echo world");
	return r.stdout === "hello\nworld\n" && r.exitCode === 0 ? "" : `result ${q(r)}`;
});
await run("run-stderr", async () => {
	const r = await sbx.commands.run("echo out; echo oops >&2");
	return r.stderr === "oops\n" && r.stdout === "out\n" ? "" : `result ${q(r)}`;
});
await run("command-exit-error", async () => {
	try {
		const r = await sbx.commands.run("echo partial; exit 3");
		return `no error: ${q(r)}`;
	} catch (e) {
		if (!(e instanceof CommandExitError)) throw e;
		return e.exitCode === 3 && e.stdout === "partial\n" ? "" : `exitCode ${e.exitCode}, stdout ${q(e.stdout)}`;
	}
});
await run("run-envs", async () => {
	const r = await sbx.commands.run('echo "$FOO-$BAR"', { envs: { FOO: "foo value", BAR: "b=2" } });
	return r.stdout === "foo value-b=2\n" ? "" : `stdout ${q(r.stdout)}`;
});
await run("run-cwd", async () => {
	const r = await sbx.commands.run("pwd", { cwd: "/tmp" });
	return r.stdout === "/tmp\n" ? "" : `stdout ${q(r.stdout)}`;
});
await run("run-timeout", async () => {
	const t = Date.now();
	try {
		const r = await sbx.commands.run("sleep 600; echo late", { timeoutMs: 3000 });
		return `no error: ${q(r)}`;
	} catch (e) {
		if (!(e instanceof TimeoutError)) throw e;
	}
	// the command was ended with its call: no sleep 600 is left running
	const left = await sbx.commands.run(
		"for p in /proc/[0-9]*; do tr '\\0' ' ' <$p/cmdline 2>/dev/null; echo; done | grep -c '^sleep 600 ' || true");
	return left.stdout.trim() === "0" ? "" : `sleep 600 still runs after ${Date.now() - t} ms: ${q(left.stdout)}`;
});
await run("background-kill", async () => {
	const line = "sleep 100000; echo 'two  spaces'";
	const h = await sbx.commands.run(line, { background: true, timeoutMs: 0 });
	if (!(h.pid > 0)) return `pid ${h.pid}`;
	const listed = (await sbx.commands.list()).find((p) => p.pid === h.pid);
	if (!listed) return `pid ${h.pid} not in commands.list()`;
	// cmd and args as started (the SDK's /bin/bash -l -c LINE): the line one argument, its spaces kept
	if (listed.cmd !== "/bin/bash" || q(listed.args) !== q(["-l", "-c", line])) return `listed as ${q(listed)}`;
	if (!(await h.kill())) return "kill() answered false";
	try {
		const r = await h.wait();
		return `wait() after kill gave ${q(r)}`;
	} catch (e) {
		if (!(e instanceof CommandExitError)) throw e;
	}
	const after = (await sbx.commands.list()).find((p) => p.pid === h.pid);
	if (after) return `still listed after kill: ${q(after)}`;
	return (await sbx.commands.kill(h.pid)) === false ? "" : "a second kill of the pid answered true";
});
await run("stdin", async () => {
	let seen = "";
	const h = await sbx.commands.run("cat; echo cat-ended", {
		background: true, stdin: true, timeoutMs: 0, onStdout: (d) => { seen += d; },
	});
	await h.sendStdin("line one\n");
	if (!(await until(60000, async () => seen.includes("line one\n")))) return `cat did not echo: ${q(seen)}`;
	await h.sendStdin(new TextEncoder().encode("line two\n"));
	await h.closeStdin(); // cat sees its end of file, and the command goes on to its echo
	const r = await h.wait();
	return r.exitCode === 0 && r.stdout === "line one\nline two\ncat-ended\n" ? "" : `result ${q(r)}`;
});
await run("pty", async () => {
	const enc = new TextEncoder(), dec = new TextDecoder();
	let out = "";
	const t = await sbx.pty.create({
		cols: 100, rows: 30, timeoutMs: 0, onData: (d) => { out += dec.decode(d, { stream: true }); },
	});
	if (!(t.pid > 0)) return `pid ${t.pid}`;
	await until(60000, async () => out.length > 0); // the shell's first prompt: it reads its terminal now
	await sbx.pty.sendInput(t.pid, enc.encode("tty; stty size\n"));
	if (!(await until(60000, async () => out.includes("30 100")))) return `no size 30 100: ${q(out.slice(-400))}`;
	if (!out.includes("/dev/pts/")) return `not a terminal: ${q(out.slice(-400))}`;
	await sbx.pty.resize(t.pid, { cols: 120, rows: 40 });
	await sbx.pty.sendInput(t.pid, enc.encode("stty size\n"));
	if (!(await until(60000, async () => out.includes("40 120")))) return `no size 40 120 after resize: ${q(out.slice(-400))}`;
	if (!(await sbx.pty.kill(t.pid))) return "kill() answered false";
	try {
		const r = await t.wait();
		return `wait() after kill gave ${q(r)}`;
	} catch (e) {
		if (!(e instanceof CommandExitError)) throw e;
	}
	const after = (await sbx.commands.list()).find((p) => p.pid === t.pid);
	return after ? `still listed after kill: ${q(after)}` : "";
});
await run("tag-stream-input", async () => {
	// Start with a tag (the SDK's commands.run has no tag: raw Connect JSON), its stream kept open
	let out = "", pid = 0, end = null;
	const start = envdCall(sbx, "Start", {
		onEnvelope: ([flag, m]) => {
			const ev = m.event;
			if (ev?.start) pid = ev.start.pid;
			if (ev?.data?.stdout) out += Buffer.from(ev.data.stdout, "base64").toString();
			if (ev?.end) end = ev.end;
		},
	});
	start.req.end(envelope({
		process: { cmd: "/bin/sh", args: ["-c", "read x; echo got $x; read y; echo end $y"] }, tag: "e2b tag", stdin: true,
	}));
	if (!(await until(60000, async () => pid > 0))) return "no start event";
	const listed = (await sbx.commands.list()).find((p) => p.pid === pid);
	if (listed?.tag !== "e2b tag" || listed.cmd !== "/bin/sh" || q(listed.args) !== q(["-c", "read x; echo got $x; read y; echo end $y"]))
		return `listed as ${q(listed)}`;
	// a second Start with the tag of a running process; a signal to an unknown tag
	const dup = envdCall(sbx, "Start");
	dup.req.end(envelope({ process: { cmd: "/bin/true" }, tag: "e2b tag" }));
	const d = await dup.done;
	const dupEnd = d.envelopes.find(([f]) => f === 2)?.[1];
	if (dupEnd?.error?.code !== "already_exists") return `a duplicate tag's Start ended ${q(dupEnd)}`;
	const sig = envdCall(sbx, "SendSignal", { json: true });
	sig.req.end(JSON.stringify({ process: { tag: "no such tag" }, signal: "SIGNAL_SIGKILL" }));
	const sr = await sig.done;
	if (sr.status !== 404 || sr.body?.code !== "not_found") return `SendSignal to an unknown tag: ${sr.status} ${q(sr.body)}`;
	// StreamInput (a client stream, chunked): the start envelope split across two writes, then data;
	// its bytes reach the process while the request is still open
	const si = envdCall(sbx, "StreamInput");
	const first = envelope({ start: { process: { tag: "e2b tag" } } });
	si.req.write(first.subarray(0, 7));
	await sleep(200);
	si.req.write(Buffer.concat([first.subarray(7), envelope({ data: { input: { stdin: b64("hi\n") } } })]));
	if (!(await until(60000, async () => out.includes("got hi\n")))) return `no echo while the input streamed: ${q(out)}`;
	si.req.write(envelope({ keepalive: {} }));
	si.req.end(envelope({ data: { input: { stdin: b64("there\n") } } }));
	const r = await si.done;
	const [m0, m1] = r.envelopes;
	if (r.status !== 200 || r.envelopes.length !== 2 || m0[0] !== 0 || q(m0[1]) !== "{}" || m1[0] !== 2 || m1[1].error)
		return `StreamInput answered ${r.status} ${q(r.envelopes)}`;
	await start.done;
	return end?.exitCode === 0 && out === "got hi\nend there\n" ? "" : `end ${q(end)}, output ${q(out)}`;
});
await run("files", async () => {
	const w = await sbx.files.write("/tmp/e2b/dir/hello.txt", "hello from the SDK\n");
	if (w.path !== "/tmp/e2b/dir/hello.txt") return `write answered ${q(w)}`;
	const text = await sbx.files.read("/tmp/e2b/dir/hello.txt");
	if (text !== "hello from the SDK\n") return `read ${q(text)}`;
	const entries = await sbx.files.list("/tmp/e2b/dir");
	const e = entries.find((x) => x.name === "hello.txt");
	if (!e || e.type !== "file" || e.path !== "/tmp/e2b/dir/hello.txt") return `list ${q(entries)}`;
	const viaShell = await sbx.commands.run("cat /tmp/e2b/dir/hello.txt");
	return viaShell.stdout === "hello from the SDK\n" ? "" : `cat ${q(viaShell.stdout)}`;
});
// A directory watch's events as "type name" strings; waits (bounded) until want are all among them.
const watchEvents = () => {
	const seen = [];
	return { seen, onEvent: (e) => { seen.push(`${e.type} ${e.name}`); } };
};
const sawAll = (w, want, ms = 60000) => until(ms, () => want.every((x) => w.seen.includes(x)));
await run("watch-dir", async () => {
	await sbx.commands.run("mkdir -p /tmp/watched");
	const w = watchEvents();
	const h = await sbx.files.watchDir("/tmp/watched", w.onEvent, { timeoutMs: 0 });
	try {
		await sbx.commands.run("echo from-command > /tmp/watched/by-run.txt");
		await sbx.files.write("/tmp/watched/by-write.txt", "from files.write\n");
		const want = ["create by-run.txt", "write by-run.txt", "create by-write.txt", "write by-write.txt"];
		if (!(await sawAll(w, want))) return `events ${q(w.seen)}, want ${q(want)}`;
		return w.seen[0] === "create by-run.txt" ? "" : `the first event ${q(w.seen[0])}`;
	} finally {
		await h.stop();
	}
});
await run("watch-recursive", async () => {
	const flat = watchEvents(), deep = watchEvents();
	const hf = await sbx.files.watchDir("/tmp/watched", flat.onEvent, { timeoutMs: 0 });
	const hd = await sbx.files.watchDir("/tmp/watched", deep.onEvent, { recursive: true, timeoutMs: 0 });
	try {
		await sbx.commands.run("mkdir /tmp/watched/sub");
		if (!(await sawAll(deep, ["create sub"]))) return `no subdirectory's create: ${q(deep.seen)}`;
		await sbx.files.write("/tmp/watched/sub/nested.txt", "deep\n");
		await sbx.files.write("/tmp/watched/after.txt", "flat\n");
		if (!(await sawAll(deep, ["create sub/nested.txt", "write sub/nested.txt", "create after.txt"])))
			return `recursive events ${q(deep.seen)}`;
		/* the same order on the flat watch: after.txt came later, so sub/nested.txt would be before it */
		if (!(await sawAll(flat, ["create sub", "create after.txt"]))) return `flat events ${q(flat.seen)}`;
		return flat.seen.some((x) => x.includes("nested")) ? `a flat watch saw the subdirectory: ${q(flat.seen)}` : "";
	} finally {
		await hf.stop();
		await hd.stop();
	}
});
await run("watch-stop", async () => {
	/* stop() ends the watch: onExit comes, and no watch is left holding the guest agent, whose
	 * connections are bounded (16 at once): 20 watches started and stopped one after another all start */
	for (let i = 0; i < 20; i++) {
		let exited = false;
		const h = await sbx.files.watchDir("/tmp/watched", () => {}, { timeoutMs: 0, onExit: () => { exited = true; } });
		await h.stop();
		if (!(await until(30000, () => exited))) return `watch ${i}: no onExit after stop()`;
	}
	const w = watchEvents();
	const h = await sbx.files.watchDir("/tmp/watched", w.onEvent, { timeoutMs: 0 });
	try {
		await sbx.files.write("/tmp/watched/last.txt", "x");
		return (await sawAll(w, ["create last.txt"])) ? "" : `the 21st watch's events ${q(w.seen)}`;
	} finally {
		await h.stop();
	}
});
await run("list-depth", async () => {
	await sbx.files.write("/tmp/tree/a/b/deep.txt", "d");
	await sbx.files.write("/tmp/tree/a/mid.txt", "m");
	await sbx.files.write("/tmp/tree/top.txt", "t");
	const paths = async (depth) => (await sbx.files.list("/tmp/tree", { depth })).map((e) => `${e.path}:${e.type}`).sort();
	const one = await paths(1), two = await paths(2), three = await paths(3);
	const want1 = ["/tmp/tree/a:dir", "/tmp/tree/top.txt:file"];
	const want2 = ["/tmp/tree/a/b:dir", "/tmp/tree/a/mid.txt:file", ...want1].sort();
	const want3 = ["/tmp/tree/a/b/deep.txt:file", ...want2].sort();
	if (q(one) !== q(want1)) return `depth 1 ${q(one)}`;
	if (q(two) !== q(want2)) return `depth 2 ${q(two)}`;
	return q(three) === q(want3) ? "" : `depth 3 ${q(three)}`;
});
await run("pause-resume", async () => {
	await sbx.files.write("/tmp/kept.txt", "kept through pause\n");
	const h = await sbx.commands.run("sleep 100000", { background: true, timeoutMs: 0 });
	const paused = await sbx.pause();
	if (paused !== true) return `pause() answered ${paused}`;
	const info = await Sandbox.getInfo(sbx.sandboxId, conn);
	if (info.state !== "paused") return `state after pause ${q(info.state)}`;
	const t = Date.now();
	const back = await Sandbox.connect(sbx.sandboxId, { ...conn, timeoutMs: 600000 });
	console.log(`MEASURE e2b-resume Sandbox.connect of a paused sandbox ${((Date.now() - t) / 1000).toFixed(1)}s`);
	sbx = back;
	const text = await sbx.files.read("/tmp/kept.txt");
	if (text !== "kept through pause\n") return `file after resume ${q(text)}`;
	const listed = (await sbx.commands.list()).find((p) => p.pid === h.pid);
	if (!listed) return `the background process ${h.pid} is gone after resume`;
	return (await sbx.commands.kill(h.pid)) ? "" : "could not kill the kept process";
});
await run("pty-reconnect", async () => {
	// a terminal outlives its stream at a pause; pty.connect after the resume gets the output the
	// agent kept and what follows as the terminal's (pty) data, not stdout
	const enc = new TextEncoder(), dec = new TextDecoder();
	let before = "";
	const t = await sbx.pty.create({ cols: 80, rows: 24, timeoutMs: 0, onData: (d) => { before += dec.decode(d); } });
	await until(60000, async () => before.length > 0);
	await sbx.pty.sendInput(t.pid, enc.encode("echo before-$((6*7))\n"));
	if (!(await until(60000, async () => before.includes("before-42")))) return `no output before: ${q(before.slice(-300))}`;
	if ((await sbx.pause()) !== true) return "pause() did not answer true";
	sbx = await Sandbox.connect(sbx.sandboxId, { ...conn, timeoutMs: 600000 });
	let after = "";
	const h = await sbx.pty.connect(t.pid, { timeoutMs: 0, onData: (d) => { after += dec.decode(d); } });
	if (!(await until(60000, async () => after.includes("before-42")))) return `the kept output not pty data: ${q(after.slice(-300))}`;
	await sbx.pty.sendInput(t.pid, enc.encode("echo after-$((6*8))\n"));
	if (!(await until(60000, async () => after.includes("after-48")))) return `no live pty data: ${q(after.slice(-300))}`;
	if (!(await sbx.pty.kill(t.pid))) return "kill() answered false";
	try {
		await h.wait();
	} catch (e) {
		if (!(e instanceof CommandExitError)) throw e;
	}
	return "";
});
await run("list", async () => {
	other = await Sandbox.create(template, { ...conn, timeoutMs: 600000, metadata: { tier: "nested-e2b", n: "2" } });
	const paginator = Sandbox.list({ ...conn, query: { metadata: { tier: "nested-e2b" } } });
	const items = await paginator.nextItems();
	const ids = items.map((s) => s.sandboxId).sort();
	const want = [sbx.sandboxId, other.sandboxId].sort();
	if (q(ids) !== q(want)) return `listed ${q(ids)}, want ${q(want)}`;
	const mine = items.find((s) => s.sandboxId === other.sandboxId);
	return mine.metadata?.n === "2" && mine.state === "running" ? "" : `listed ${q(mine)}`;
});
await run("set-timeout-expires", async () => {
	await other.setTimeout(1000);
	const gone = await until(120000, async () => {
		try {
			await Sandbox.getInfo(other.sandboxId, conn);
			return false;
		} catch (e) {
			if (e instanceof SandboxNotFoundError) return true;
			throw e;
		}
	});
	return gone ? "" : "still there 120 s after a 1 s timeout";
});
await run("kill", async () => {
	const id = sbx.sandboxId;
	if ((await sbx.isRunning()) !== true) return "isRunning() before the kill was not true";
	if ((await sbx.kill()) !== true) return "kill() answered false";
	if ((await sbx.isRunning()) !== false) return "isRunning() after the kill was not false";
	const ids = (await Sandbox.list(conn).nextItems()).map((s) => s.sandboxId);
	if (ids.includes(id)) return `still listed: ${q(ids)}`;
	return (await Sandbox.kill(id, conn)) === false ? "" : "a second kill answered true";
});
await run("missing-sandbox", async () => {
	const why = [];
	try {
		await Sandbox.connect("i0123456789abcdef0123", conn);
		why.push("connect to an unknown id did not throw");
	} catch (e) {
		if (!(e instanceof SandboxNotFoundError)) why.push(`connect threw ${e?.constructor?.name}: ${e?.message}`);
	}
	try {
		await Sandbox.getInfo("i0123456789abcdef0123", conn);
		why.push("getInfo of an unknown id did not throw");
	} catch (e) {
		if (!(e instanceof SandboxNotFoundError)) why.push(`getInfo threw ${e?.constructor?.name}: ${e?.message}`);
	}
	// the killed sandbox's envd: a command there is the SDK's NotFoundError
	try {
		await sbx.commands.run("true");
		why.push("a command in a killed sandbox did not throw");
	} catch (e) {
		if (!(e instanceof NotFoundError)) why.push(`a command in a killed sandbox threw ${e?.constructor?.name}: ${e?.message}`);
	}
	return why.join("; ");
});

console.log(`RESULT ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
