#!/bin/bash
# Writes the spdy_frame seeds: frame sequences as client-go opens exec and port-forward sessions, compressed by Python's zlib with the SPDY/3 dictionary.
# Usage: test/fuzz/tools/make-spdy-seeds.sh [OUT_DIR]   (default test/fuzz/corpus/spdy_frame)
set -euo pipefail
here=$(cd "$(dirname "$0")/../../.." && pwd)
out=${1:-$here/test/fuzz/corpus/spdy_frame}
mkdir -p "$out"
python3 - "$here/cri/streaming/spdy_headers.cc" "$out" <<'PY'
import ast, struct, sys, zlib
src = open(sys.argv[1]).read()
lit = src[src.index("kDictionary[] =") + len("kDictionary[] ="):]
lit = lit[:lit.index(";")]
# The C literal's escapes are octal, which Python's bytes literals share.
dictionary = b"".join(ast.literal_eval("b" + part.strip()) for part in lit.strip().splitlines())
assert len(dictionary) == 1423
out = sys.argv[2]

def control(t, flags, payload, version=3):
    return struct.pack(">HHI", 0x8000 | version, t, flags << 24 | len(payload)) + payload
def data(sid, flags, payload):
    return struct.pack(">II", sid, flags << 24 | len(payload)) + payload
def block(pairs):
    b = struct.pack(">I", len(pairs))
    for n, v in pairs:
        b += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
    return b
class Compressor:
    def __init__(self):
        self.z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, dictionary)
    def __call__(self, pairs):
        return self.z.compress(block(pairs)) + self.z.flush(zlib.Z_SYNC_FLUSH)
def syn(c, sid, pairs, flags=0):
    return control(1, flags, struct.pack(">IIBB", sid, 0, 0, 0) + c(pairs))

def write(name, steer, frames):
    with open(f"{out}/{name}", "wb") as f:
        f.write(bytes([steer]) + b"".join(frames))

c = Compressor()
write("exec-v4", 63, [syn(c, 1, [(b"streamtype", b"error")]), syn(c, 3, [(b"streamtype", b"stdin")]),
                      syn(c, 5, [(b"streamtype", b"stdout")]), syn(c, 7, [(b"streamtype", b"stderr")]),
                      data(3, 0, b"echo hello\n"), data(3, 1, b""), control(6, 0, struct.pack(">I", 1)),
                      control(7, 0, struct.pack(">II", 7, 0))])
c = Compressor()
write("exec-tty", 7, [syn(c, 1, [(b"streamtype", b"error")]), syn(c, 3, [(b"streamtype", b"stdin")]),
                      syn(c, 5, [(b"streamtype", b"stdout")]), syn(c, 7, [(b"streamtype", b"resize")]),
                      data(7, 0, b'{"Width":80,"Height":24}\n'), data(3, 0, b"ls\r")])
c = Compressor()
pf = []
for rid, port in ((b"0", b"8080"), (b"1", b"22")):
    sid = 1 + 4 * int(rid)
    pf += [syn(c, sid, [(b"streamtype", b"error"), (b"port", port), (b"requestid", rid)], flags=1),
           syn(c, sid + 2, [(b"streamtype", b"data"), (b"port", port), (b"requestid", rid)]),
           data(sid + 2, 0, b"GET / HTTP/1.0\r\n\r\n"), data(sid + 2, 1, b"")]
pf.append(control(3, 0, struct.pack(">II", 3, 5)))
write("portforward", 32, pf)
write("control", 1, [control(4, 0, struct.pack(">IIIII", 2, 4, 100, 7, 1 << 20)),
                     control(9, 0, struct.pack(">II", 0, 1 << 16)), control(9, 0, struct.pack(">II", 1, 5)),
                     control(8, 1, struct.pack(">I", 1) + Compressor()([])),
                     control(2, 0, struct.pack(">I", 2) + Compressor()([(b"status", b"200")]))])
write("bomb", 64, [syn(Compressor(), 1, [(b"x", b"a" * 200000)])])
write("bad-version", 8, [control(1, 0, b"\0" * 12, version=2)])
PY
ls -l "$out"
