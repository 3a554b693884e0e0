// `make bench`'s serve section: the E2B JS SDK (the same pinned `e2b` as tests/e2b/client.mjs)
// timing Sandbox.create() -> the first command's output against `padcell serve` in L1.
//   node bench.mjs --url http://127.0.0.1:PORT --key e2b_... --log L1_SERIAL_LOG --serial2 SOCK
// Templates the L1 side serves: "pooled" (with a warm pool of 5) and "plain" (no pool: each create
// is a clone restore).  One "BENCH serve ..." line per measurement, times in ms; "BENCH serve error
// ..." for anything that went wrong (the bench then says its figures are incomplete).
import { Sandbox } from "e2b";
import { readFileSync } from "node:fs";
import { connect } from "node:net";

const argv = process.argv.slice(2);
const opt = (name) => {
	const i = argv.indexOf(name);
	return i >= 0 && i + 1 < argv.length ? argv[i + 1] : undefined;
};
const url = opt("--url"), apiKey = opt("--key"), log = opt("--log"), serial2 = opt("--serial2");
if (!url || !apiKey || !log || !serial2) {
	console.error("usage: bench.mjs --url http://HOST:PORT --key e2b_KEY --log L1_LOG --serial2 SOCK");
	process.exit(64);
}
const conn = { apiUrl: url, sandboxUrl: url, apiKey, requestTimeoutMs: 120000 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (line) => console.log(`BENCH serve ${line}`);
// (undici's "fetch failed" says what failed in its cause: the socket error and its code)
const why = (e) => [e?.message ?? e, e?.cause?.code, e?.cause?.message].filter(Boolean).join(": ");
const error = (what, e) => say(`error ${what}: ${String(why(e)).slice(0, 300)}`);

// create -> first output: Sandbox.create, then `echo` through envd, its stdout checked.
async function createToOutput(template, word) {
	const t0 = performance.now();
	const sbx = await Sandbox.create(template, { ...conn, timeoutMs: 600000 }).catch((e) => {
		throw new Error(`Sandbox.create: ${why(e)}`);
	});
	const t1 = performance.now();
	const r = await sbx.commands.run(`echo ${word}`).catch((e) => {
		throw new Error(`commands.run in ${sbx.sandboxId}: ${why(e)}`);
	});
	const t2 = performance.now();
	if (r.stdout !== `${word}\n`) throw new Error(`stdout ${JSON.stringify(r.stdout)}, not ${word}`);
	return { sbx, create: t1 - t0, total: t2 - t0 };
}
const ms = (v) => v.toFixed(1);

// A line on L1's second serial port, then (bounded) the L1 side's answer in its serial log.
async function askL1(line, answer, boundMs) {
	await new Promise((ok, fail) => {
		const c = connect(serial2, () => c.end(`${line}\n`, ok));
		c.on("error", fail);
	});
	const end = Date.now() + boundMs;
	while (Date.now() < end) {
		if (readFileSync(log, "latin1").includes(answer)) return true;
		await sleep(500);
	}
	return false;
}

// 1. from the warm pool and 2. as a clone restore, one at a time; each sandbox killed before the
// next, and a pause after it so the pool's refill (a restore in the background) is not measured.
for (const [template, kind] of [["pooled", "pool"], ["plain", "clone"]]) {
	for (let i = 0; i < 5; i++) {
		try {
			const m = await createToOutput(template, `w${i}`);
			say(`${kind} create_ms=${ms(m.create)} total_ms=${ms(m.total)}`);
			await m.sbx.kill();
		} catch (e) {
			error(`${kind} ${i}`, e);
		}
		await sleep(4000);
	}
}

// 3. twenty creates at once (clones), each running its command; then the memory of the idle
// sandboxes, read by L1 while they are all alive.
const t0 = performance.now();
const all = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => createToOutput("plain", `c${i}`)));
const wall = performance.now() - t0;
const ok = all.filter((r) => r.status === "fulfilled").map((r) => r.value);
all.filter((r) => r.status === "rejected").forEach((r, i) => error(`concurrent ${i}`, r.reason));
for (const m of ok) say(`concurrent1 total_ms=${ms(m.total)}`);
say(`concurrent20 ok=${ok.length} wall_ms=${ms(wall)}`);
if (!(await askL1("__PSS__", "STEP serve-bench-pss-done", 120000))) error("pss", "L1 did not answer __PSS__");
await Promise.allSettled(ok.map((m) => m.sbx.kill()));
await askL1("__EOF__", "STEP serve-bench-end", 1000).catch((e) => error("eof", e));
