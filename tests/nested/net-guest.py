# The Debian guest's side of the nested net tier: run by `padcell run -- python3 -c "$(cat net-guest.py)" MODE`.
# Prints one line per check: CHECK <name> ok|fail <detail>; and for the downloads: SHA <tag> <hex> <bytes> <seconds>.
# Every network wait is bounded by a socket timeout; a refused connection must be refused (RST), not time out.
import errno, hashlib, socket, sys, time

mode = sys.argv[1] if len(sys.argv) > 1 else "main"


def check(name, ok, detail):
    print("CHECK %s %s %s" % (name, "ok" if ok else "fail", detail), flush=True)


def get(addr, path, host=None, timeout=60):
    """An HTTP/1.0 GET over a plain socket: (status line, body)."""
    s = socket.create_connection((addr, 80), timeout=timeout)
    s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host or addr)).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(errors="replace"), body


def refused(addr, port):
    """(True, ms) if connecting is refused with a reset; (False, why) otherwise."""
    t = time.monotonic()
    try:
        s = socket.create_connection((addr, port), timeout=20)
        s.close()
        return False, "connected"
    except ConnectionRefusedError:
        return True, "%.0f ms" % ((time.monotonic() - t) * 1000)
    except OSError as e:
        return False, "%s after %.0f ms" % (e, (time.monotonic() - t) * 1000)


def try_get(name, addr, path, want, host=None):
    try:
        status, body = get(addr, path, host)
        check(name, body.strip() == want, "%s: %r" % (status, body[:60]))
    except OSError as e:
        check(name, False, "GET http://%s%s: %s" % (host or addr, path, e))


def client_hello(name):
    """The first flight of a real TLS client (Python's ssl) for server name `name`, with no network."""
    import ssl
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def exchange(addr, port, data, timeout=20):
    """Connects, sends data, reads to the end: (how it ended, bytes read, ms)."""
    t = time.monotonic()
    got = b""
    try:
        s = socket.create_connection((addr, port), timeout=timeout)
    except OSError as e:
        return "connect: %s" % e, got, (time.monotonic() - t) * 1000
    try:
        s.sendall(data)
        while True:
            c = s.recv(65536)
            if not c:
                return "eof", got, (time.monotonic() - t) * 1000
            got += c
    except ConnectionResetError:
        return "reset", got, (time.monotonic() - t) * 1000
    except OSError as e:
        return str(e), got, (time.monotonic() - t) * 1000
    finally:
        s.close()


def cut(name, addr, port, data, what):
    end, got, ms = exchange(addr, port, data)
    check(name, end in ("reset", "eof") and got == b"",
          "%s to %s:%d: %s after %.0f ms, %d bytes back" % (what, addr, port, end, ms, len(got)))


def keepalive():
    """Two requests on one kept-alive connection: the first for the allowed name is answered, the
    second names a host no rule allows and must be cut (the server checks it never saw it)."""
    what = "GET for web.example.test, then Host secret.example.test on the same connection"
    try:
        s = socket.create_connection(("web.example.test", 8081), timeout=20)
    except OSError as e:
        check("host-keepalive", False, "%s: connect: %s" % (what, e))
        return
    try:
        s.sendall(b"GET /one HTTP/1.1\r\nHost: web.example.test:8081\r\n\r\n")
        first = b""
        while len(first) < 50 and not first.endswith(b"keepalive-01"):
            c = s.recv(4096)
            if not c:
                break
            first += c
        if not first.endswith(b"keepalive-01"):
            check("host-keepalive", False, "%s: the first answer was %r" % (what, first[:80]))
            return
        s.sendall(b"GET /two HTTP/1.1\r\nHost: secret.example.test\r\n\r\n")
        end, second = "eof", b""
        try:
            while True:
                c = s.recv(4096)
                if not c:
                    break
                second += c
        except ConnectionResetError:
            end = "reset"
        except OSError as e:
            end = str(e)
        check("host-keepalive", end in ("reset", "eof") and second == b"",
              "%s: first answered (%d bytes), second: %s, %d bytes back" % (what, len(first), end, len(second)))
    except OSError as e:
        check("host-keepalive", False, "%s: %s" % (what, e))
    finally:
        s.close()


def download(tag, addr, host):
    """GET /big.bin: prints SHA <tag> <hex> <bytes> <seconds>."""
    t = time.monotonic()
    try:
        s = socket.create_connection((addr, 80), timeout=120)
        s.sendall(("GET /big.bin HTTP/1.0\r\nHost: %s\r\n\r\n" % host).encode())
        h, buf, n = hashlib.sha256(), b"", 0
        while b"\r\n\r\n" not in buf:
            c = s.recv(65536)
            if not c:
                break
            buf += c
        _, _, rest = buf.partition(b"\r\n\r\n")
        h.update(rest)
        n = len(rest)
        while True:
            c = s.recv(1 << 20)
            if not c:
                break
            h.update(c)
            n += len(c)
        s.close()
        print("SHA %s %s %d %.3f" % (tag, h.hexdigest(), n, time.monotonic() - t), flush=True)
    except OSError as e:
        print("SHA %s error %s" % (tag, e), flush=True)


def resolve(name):
    try:
        return socket.gethostbyname(name)
    except OSError as e:
        return "error: %s" % e


if mode == "main":
    mtu = open("/sys/class/net/eth0/mtu").read().strip()
    route = [l.split() for l in open("/proc/net/route").read().splitlines()[1:]]
    default = [r for r in route if r[1] == "00000000" and r[0] == "eth0"]
    resolv = open("/etc/resolv.conf").read()
    check("eth0", mtu == "16384" and default and default[0][2] == "0202000A" and "nameserver 10.0.2.3" in resolv,
          "mtu %s, default route %s, resolv.conf %r" % (mtu, default[0][2] if default else "none", resolv.strip()[-30:]))

    try_get("by-ip", "198.51.100.10", "/hello.txt", b"hello-a")

    ok, why = refused("198.51.100.11", 80)
    check("name-only-before-dns", ok, "198.51.100.11:80 before its name was resolved: refused " + why if ok else why)
    a = resolve("web.example.test")
    check("dns-allowed", a == "198.51.100.11", "web.example.test -> %s" % a)
    try_get("by-name", "web.example.test", "/hello.txt", b"hello-b")
    # the name's address is a CDN's: only connections naming an allowed host get through
    try:
        hello = client_hello("web.example.test")
        end, got, ms = exchange("web.example.test", 443, hello)
        check("sni-own", got == b"peeked %d\n" % len(hello),
              "TLS ClientHello (%d bytes) with SNI web.example.test: %s, %r" % (len(hello), end, got[:40]))
        cut("sni-other", "198.51.100.11", 443, client_hello("other.example.test"),
            "the same address with SNI other.example.test")
    except ImportError as e:
        check("sni-own", False, "no ssl module in the guest: %s" % e)
        check("sni-other", False, "no ssl module in the guest: %s" % e)
    cut("host-other", "198.51.100.11", 80, b"GET /hello.txt HTTP/1.0\r\nHost: secret.example.test\r\n\r\n",
        "HTTP with Host secret.example.test")
    keepalive()
    ok, why = refused("198.51.100.11", 81)
    check("name-other-port", ok, "web.example.test's address on port 81: " + ("refused " + why if ok else why))

    a = resolve("hosts.example.test")
    check("dns-etc-hosts", a == "198.51.100.10", "hosts.example.test (the host's /etc/hosts) -> %s" % a)

    a = resolve("secret.example.test")
    check("dns-denied", a.startswith("error"), "secret.example.test (no rule) -> %s" % a)
    a = resolve("rebind.example.test")
    check("dns-rebind", a.startswith("error"), "rebind.example.test (upstream says 127.0.0.1) -> %s" % a)

    ok, why = refused("198.51.100.20", 80)
    check("denied", ok, "198.51.100.20:80 (no rule): " + ("refused in " + why if ok else why))
    bad = []
    for addr, port in [("10.0.2.2", 8080), ("169.254.169.254", 80), ("192.168.1.1", 80), ("10.1.2.3", 80),
                       ("172.16.0.1", 80), ("100.64.0.1", 80), ("10.0.2.3", 80)]:
        ok, why = refused(addr, port)
        if not ok:
            bad.append("%s:%d %s" % (addr, port, why))
    check("refused-ranges", not bad, "; ".join(bad) or "host loopback (10.0.2.2), metadata, RFC 1918, CGNAT, the stack's DNS: refused")

    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):
        u.sendto(b"udp-probe", ("198.51.100.10", 9999))
    u.close()
    check("udp-sent", True, "3 datagrams to 198.51.100.10:9999 (the host checks none arrived)")

    download("ip", "198.51.100.10", "198.51.100.10")
    download("name", "web.example.test", "web.example.test")  # through padcell's SNI/Host check and splice

elif mode == "serve":
    # A server the guest starts, reached from the host through --publish: requests until GET /quit,
    # so the host can look at what listens while the server is still up.
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", 8000))
    l.listen(4)
    l.settimeout(120)
    first = None
    try:
        while True:
            c, peer = l.accept()
            c.settimeout(30)
            req = c.recv(4096)
            quit = req.startswith(b"GET /quit")
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + (b"bye\n" if quit else b"published-ok\n"))
            c.close()
            if first is None:
                first = (req, peer)
            if quit:
                break
        check("serve", first[0].startswith(b"GET /"), "first request from %s:%d" % first[1])
    except OSError as e:
        check("serve", False, "accept: %s" % e)
elif mode == "clone-allowed":
    try_get("clone-get", "198.51.100.10", "/hello.txt", b"hello-a")
elif mode == "clone-denied":
    ok, why = refused("198.51.100.10", 80)
    check("clone-deny-all", ok, "a clone restored without rules: " + ("refused " + why if ok else why))
elif mode == "live-before":
    # A VM booted with --allow web.example.test:80 only; the host changes its policy between execs.
    ok, why = refused("198.51.100.20", 80)
    check("live-denied", ok, "198.51.100.20:80 before the change: " + ("refused " + why if ok else why))
    a = resolve("web.example.test")
    if a != "198.51.100.11":
        check("live-name-before", False, "web.example.test -> %s" % a)
    else:
        try_get("live-name-before", "web.example.test", "/hello.txt", b"hello-b")
elif mode == "live-allowed":
    try_get("live-allowed", "198.51.100.20", "/hello.txt", b"hello-c")
elif mode == "live-removed":
    ok, why = refused("198.51.100.20", 80)
    check("live-removed", ok, "198.51.100.20:80 after its rule was removed: " + ("refused " + why if ok else why))
    # the address the guest was given for web.example.test, dialled without asking DNS again
    ok, why = refused("198.51.100.11", 80)
    a = resolve("web.example.test")
    check("live-name-removed", ok and a.startswith("error"),
          "web.example.test's earlier address 198.51.100.11:80: %s; the name now -> %s" % ("refused " + why if ok else why, a))
elif mode == "run-live":
    # `padcell run --api-sock` with --allow web.example.test:80 only: refused first; the host then
    # allows the address through the run's socket while this command runs.
    ok, why = refused("198.51.100.20", 80)
    check("run-live-denied", ok, "198.51.100.20:80 before the change: " + ("refused " + why if ok else why))
    deadline = time.monotonic() + 120
    while ok and time.monotonic() < deadline:
        time.sleep(0.5)
        ok, why = refused("198.51.100.20", 80)
    try_get("run-live-allowed", "198.51.100.20", "/hello.txt", b"hello-c")
elif mode in ("pip-install", "pip-denied"):
    # pip from the local index (net-wheel.py's files, served by net-inet.sh at pypi.example.test:8080).
    # The root is read-only: --target puts the package in /tmp (and, with --target, pip skips Debian's
    # PEP 668 "externally managed" guard); HOME is /tmp for the same reason.
    import os, subprocess
    env = dict(os.environ, HOME="/tmp")
    cmd = ["python3", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
           "--index-url", "http://pypi.example.test:8080/simple", "--trusted-host", "pypi.example.test",
           "--target", "/tmp/site", "padcell-hello"]
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        rc, out = p.returncode, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", (e.stdout or b"").decode(errors="replace")
    s = time.monotonic() - t
    tail = " ".join(out.split())[-240:]
    if mode == "pip-install":
        got = ""
        if rc == 0:
            env["PYTHONPATH"] = "/tmp/site"
            q = subprocess.run(["python3", "-c", "import padcell_hello; print(padcell_hello.VALUE)"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
            got = q.stdout.decode(errors="replace").strip()
        check("pip-install", rc == 0 and got == "hello-from-local-index",
              "pip exited %s in %.1f s; import printed %r; pip: %s" % (rc, s, got, tail))
    else:
        # refused by name: the name has no rule, so padcell's DNS never asks upstream and pip cannot resolve it
        named = "resolution" in out or "Name or service not known" in out or "NewConnectionError" in out
        check("pip-denied", rc not in (0, "timeout") and named,
              "pip exited %s in %.1f s; pip: %s" % (rc, s, tail))
