// The official MCP SDK client (@modelcontextprotocol/sdk) against `padcell mcp`: lists the tools and
// calls each one.  One PASS/FAIL line per check, then "RESULT <passed> passed, <failed> failed".
//   node client.mjs --spawn CMD [ARGS...]   the SDK's stdio transport runs CMD (e.g. build/padcell mcp)
//   node client.mjs --socket PATH           the same client over a Unix socket that reaches padcell mcp's
//                                           stdio (the nested tier's serial line into L1), framed by the
//                                           SDK's own stdio reader/serializer; "__EOF__" ends the line
//   --expect sandbox|no-kvm   sandbox: every tool works; no-kvm: a tool call is an isError result
import net from "node:net";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

const argv = process.argv.slice(2);
let expect = "sandbox", mode = null, target = [];
for (let i = 0; i < argv.length; i++) {
	if (argv[i] === "--expect") expect = argv[++i];
	else if (argv[i] === "--socket") { mode = "socket"; target = [argv[++i]]; }
	else if (argv[i] === "--spawn") { mode = "spawn"; target = argv.slice(i + 1); break; }
}
if (!mode || !target.length || !["sandbox", "no-kvm"].includes(expect)) {
	console.error("usage: client.mjs [--expect sandbox|no-kvm] (--socket PATH | --spawn CMD [ARGS...])");
	process.exit(64);
}

// A transport over a connected stream, with the SDK's newline-delimited JSON framing.
class SocketTransport {
	constructor(path) { this.path = path; this.buf = new ReadBuffer(); }
	start() {
		return new Promise((resolve, reject) => {
			this.sock = net.connect(this.path, resolve);
			this.sock.once("error", reject);
			this.sock.on("data", (d) => {
				this.buf.append(d);
				for (;;) {
					let m;
					try { m = this.buf.readMessage(); } catch (e) { this.onerror?.(e); continue; }
					if (m === null) break;
					this.onmessage?.(m);
				}
			});
			this.sock.on("close", () => this.onclose?.());
		});
	}
	send(msg) { return new Promise((r) => this.sock.write(serializeMessage(msg), r)); }
	async close() { await new Promise((r) => this.sock.end("__EOF__\n", r)); }
}

let passed = 0, failed = 0;
const check = (name, ok, why) => {
	if (ok) { passed++; console.log(`PASS ${name}`); } else { failed++; console.log(`FAIL ${name}: ${why}`); }
};
const text = (r) => (r.content || []).map((c) => c.text).join("");
const slow = { timeout: 300000 }; // the first call boots the sandbox: minutes under the nested tier's TCG

const transport = mode === "spawn"
	? new StdioClientTransport({ command: target[0], args: target.slice(1), stderr: "inherit" })
	: new SocketTransport(target[0]);
const client = new Client({ name: "padcell-test", version: "1.0.0" });
const t0 = Date.now();
try {
	await client.connect(transport, slow);
	check("initialize", client.getServerVersion()?.name === "padcell", JSON.stringify(client.getServerVersion()));
	check("capabilities.tools", !!client.getServerCapabilities()?.tools, JSON.stringify(client.getServerCapabilities()));
	await client.ping();
	check("ping", true);
	const tools = (await client.listTools()).tools.map((t) => t.name).sort();
	const want = ["list_files", "read_file", "run_command", "run_python", "write_file"];
	check("tools/list", JSON.stringify(tools) === JSON.stringify(want), JSON.stringify(tools));
	// protocol errors come back as the SDK's McpError with the JSON-RPC code
	try {
		await client.callTool({ name: "no_such_tool", arguments: {} });
		check("unknown tool", false, "no error");
	} catch (e) {
		check("unknown tool", e instanceof McpError && e.code === -32602, `${e}`);
	}
	try {
		await client.callTool({ name: "run_command", arguments: { cmd: 42 } });
		check("wrong argument type", false, "no error");
	} catch (e) {
		check("wrong argument type", e instanceof McpError && e.code === -32602, `${e}`);
	}
	if (expect === "no-kvm") {
		const r = await client.callTool({ name: "run_command", arguments: { cmd: "true" } });
		check("no sandbox here: isError", r.isError === true && /KVM|kvm/.test(text(r)), JSON.stringify(r));
	} else {
		const t1 = Date.now();
		let r = await client.callTool({ name: "run_command", arguments: { cmd: "echo out; echo err >&2; exit 3" } },
			undefined, slow);
		console.log(`first call (the sandbox boots): ${Date.now() - t1} ms`);
		const s = r.structuredContent || {};
		check("run_command streams and exit code", !r.isError && s.stdout === "out\n" && s.stderr === "err\n" &&
			s.exit_code === 3 && s.timed_out === false, JSON.stringify(r));
		const t2 = Date.now();
		r = await client.callTool({ name: "run_command",
			arguments: { cmd: "echo \"$FOO\"; pwd", env: { FOO: "bar baz" }, cwd: "/tmp" } });
		console.log(`a second command: ${Date.now() - t2} ms`);
		check("run_command env and cwd", r.structuredContent?.stdout === "bar baz\n/tmp\n", JSON.stringify(r));
		r = await client.callTool({ name: "run_command", arguments: { cmd: "sleep 60 & sleep 60", timeout: 2 } });
		check("run_command timeout", r.structuredContent?.timed_out === true, JSON.stringify(r));
		r = await client.callTool({ name: "run_python",
			arguments: { code: "import sys, platform; print(sys.version_info[0], platform.system())" } });
		check("run_python", r.structuredContent?.stdout === "3 Linux\n", JSON.stringify(r));
		r = await client.callTool({ name: "write_file", arguments: { path: "/tmp/mcp/deep/a.txt", content: "h\u00e9llo\n" } });
		check("write_file (with parents)", !r.isError, JSON.stringify(r));
		r = await client.callTool({ name: "read_file", arguments: { path: "/tmp/mcp/deep/a.txt" } });
		check("read_file", !r.isError && text(r) === "h\u00e9llo\n", JSON.stringify(r));
		r = await client.callTool({ name: "list_files", arguments: { path: "/tmp/mcp/deep" } });
		check("list_files", !r.isError && /^- 0644 7 \S+ a\.txt$/m.test(text(r)), JSON.stringify(r));
		r = await client.callTool({ name: "run_command", arguments: { cmd: "cat /tmp/mcp/deep/a.txt" } });
		check("one sandbox for the session", r.structuredContent?.stdout === "h\u00e9llo\n", JSON.stringify(r));
		r = await client.callTool({ name: "read_file", arguments: { path: "/no/such/file" } });
		check("read_file of a missing file: isError", r.isError === true && /No such file/.test(text(r)), JSON.stringify(r));
	}
} catch (e) {
	check("session", false, `${e?.stack || e}`);
}
await client.close().catch(() => {});
console.log(`session ${Date.now() - t0} ms`);
console.log(`RESULT ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
