#!/usr/bin/env python3
"""A tiny package index for the nested net tier's pip cases (issue 10), python3's standard library only.

Usage: tests/nested/net-wheel.py DIR VALUE
Writes DIR/packages/padcell_hello-1.0-py3-none-any.whl, a pure-Python wheel (one module, padcell_hello,
whose VALUE is the given string; its .dist-info has METADATA, WHEEL and a RECORD of sha256 digests), and
a PEP 503 "simple" index for it: DIR/simple/index.html and DIR/simple/padcell-hello/index.html, whose
link carries the wheel's sha256.  The bytes depend only on VALUE (fixed zip timestamps).
"""
import base64
import hashlib
import io
import os
import sys
import zipfile

NAME, VERSION, MODULE = "padcell-hello", "1.0", "padcell_hello"


def record_digest(data):
    """A RECORD entry's hash: sha256, urlsafe base64 without padding (the wheel spec's form)."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_bytes(value):
    dist = "%s-%s.dist-info" % (MODULE, VERSION)
    files = [
        ("%s.py" % MODULE, ("VALUE = %r\n" % value).encode()),
        ("%s/METADATA" % dist, ("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: padcell's nested-net test package\n"
                                % (NAME, VERSION)).encode()),
        ("%s/WHEEL" % dist, b"Wheel-Version: 1.0\nGenerator: padcell net-wheel.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    record = "".join("%s,%s,%d\n" % (p, record_digest(d), len(d)) for p, d in files) + "%s/RECORD,,\n" % dist
    files.append(("%s/RECORD" % dist, record.encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: net-wheel.py DIR VALUE")
    top, value = sys.argv[1], sys.argv[2]
    whl = "%s-%s-py3-none-any.whl" % (MODULE, VERSION)
    data = wheel_bytes(value)
    for d in ("packages", "simple", "simple/" + NAME):
        os.makedirs(os.path.join(top, d), exist_ok=True)
    with open(os.path.join(top, "packages", whl), "wb") as f:
        f.write(data)
    page = "<!DOCTYPE html>\n<html><body>\n%s\n</body></html>\n"
    with open(os.path.join(top, "simple", "index.html"), "w") as f:
        f.write(page % ('<a href="%s/">%s</a>' % (NAME, NAME)))
    with open(os.path.join(top, "simple", NAME, "index.html"), "w") as f:
        f.write(page % ('<a href="../../packages/%s#sha256=%s">%s</a>' % (whl, hashlib.sha256(data).hexdigest(), whl)))


if __name__ == "__main__":
    main()
