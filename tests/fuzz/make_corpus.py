#!/usr/bin/env python3
"""Writes the seed corpus under tests/fuzz/corpus/<target>/ (the committed files came from
this script; run it again after changing it). Python's standard library only: the TLS
ClientHellos come from its OpenSSL, so they differ a little from one machine to another.

Each seed is named for what it is; libFuzzer adds the files it finds under their hashes
when it runs (run.sh runs it on a scratch copy, so the committed corpus stays small).
"""
import base64
import hashlib
import hmac
import json
import os
import random
import ssl

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- http_head: requests as clients send them ------------------------------------------
M = "/.well-known/mercure"
heads = {
    "subscribe": f"GET {M}?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&topic=%2A HTTP/1.1\r\n"
    "Host: localhost:8080\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
    "subscribe-resume": f"GET {M}?topic=a&lastEventID=earliest HTTP/1.1\r\nHost: x\r\n"
    "Last-Event-ID: urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427\r\n\r\n",
    "subscribe-cookie": f"GET {M}?topic=a HTTP/1.1\r\nHost: x\r\n"
    "Cookie: a=1; mercureAuthorization=eyJhbGciOiJIUzI1NiJ9.e30.c2ln\r\nCookie: b=2\r\n\r\n",
    "subscribe-query-token": f"GET {M}?topic=a&authorization=eyJhbGciOiJIUzI1NiJ9.e30.c2ln HTTP/1.1\r\n"
    "Host: x\r\n\r\n",
    "publish": f"POST {M} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 27\r\n\r\n"
    "topic=a&data=%7B%22x%22%3A1%7D",
    "publish-expect": f"POST {M} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    "Content-Length: 7\r\nConnection: keep-alive\r\n\r\ntopic=a",
    "publish-chunked": f"POST {M} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7\r\ntopic=a\r\n0\r\n\r\n",
    "smuggle-cl-te": f"POST {M} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    "duplicate-cl": f"POST {M} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
    "preflight": f"OPTIONS {M} HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.com\r\n"
    "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization\r\n\r\n",
    "http10": "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "bare-lf": "GET /healthz HTTP/1.1\nHost: x\n\n",
    "pipelined": "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "two-hosts": "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "h2-preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "partial": "GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + "a" * 200,
    "long-uri": "GET /" + "u" * 8300 + " HTTP/1.1\r\n",
}
for name, h in heads.items():
    put("http_head", name, h)

# --- form: publish bodies and queries ----------------------------------------------------
forms = {
    "publish": "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&data=%7B%22title%22%3A%22Dune%22%7D",
    "full": "topic=a&topic=b&data=x%0Ay&id=my-1&type=ping&retry=100&private=on",
    "plus-and-utf8": "data=caf%C3%A9+au+lait&x=%E2%9C%93&empty=&flag&&",
    "query": "topic=%2A&lastEventID=earliest&authorization=eyJ0",
    "bad-escape": "topic=%zz",
    "short-escape": "topic=%4",
    "bad-utf8": "topic=%ff%fe",
    "encoded-amp": "a=1%262&b%3D=3",
}
for name, f in forms.items():
    put("form", name, f)

# --- selector: template, 0xFF, topics ------------------------------------------------------
FF = b"\xff"
selectors = {
    "simple": ("https://example.com/books/{id}", ["https://example.com/books/1", "https://example.com/books/1/x"]),
    "reserved": ("https://x/{+path}/end", ["https://x/a/b/c/end"]),
    "path": ("https://x/users{/id,tab}", ["https://x/users/7/posts", "https://x/users"]),
    "label": ("https://x/file{.ext}", ["https://x/file.json"]),
    "params": ("https://x/m{;v,w}", ["https://x/m;v=2;w"]),
    "fragment": ("https://x/page{#frag}", ["https://x/page#a/b"]),
    "query": ("https://x/s{?q,lang}", ["https://x/s?q=dune&lang=en"]),
    "continuation": ("https://x/s?fixed=1{&q}", ["https://x/s?fixed=1&q=2"]),
    "prefix": ("https://x/{term:1}/{term}", ["https://x/c/cat", "https://x/ca/cat"]),
    "explode": ("https://x/{?keys*}", ["https://x/?a=1&b=2"]),
    "private-claim": ("https://example.com/users/foo/{?topic}",
                      ["https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"]),
    "star": ("*", ["anything"]),
    "exact": ("https://example.com/books/1", ["https://example.com/books/1"]),
    "invalid": ("https://x/}{a}", ["https://x/}{a}"]),
    # Found by the target: the regex matcher before cfe02cb kept 9.6 MB for this; prefixes
    # counted octets, not characters, and bounded every variable of their expression
    # (before dba8468).
    "prefix-9999": ("{v:9999}", ["a" * 100]),
    "prefix-utf8": ("https://x/{v:1}", ["https://x/%C3%A9"]),
    "prefix-list": ("{t,e:1}", ["a1,a"]),
    "many-prefixes": ("{a:9999}{b:9999}{c:9999}", ["x"]),
    "hostile-topic": ("https://x/{a}{b}{c}{d}{e}/{+f}", ["https://x/" + "a" * 400 + "!"]),
}
for name, (sel, topics) in selectors.items():
    put("selector", name, FF.join([sel.encode()] + [t.encode() for t in topics]))

# --- jwt -----------------------------------------------------------------------------------
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def token(header, payload, key):
    msg = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(payload).encode())
    sig = hmac.new(key, msg, hashlib.sha256).digest()
    return msg + b"." + b64(sig)


# Mode 0 (even first byte): tokens as sent, signed with keys the target does not use.
well_known = b"!ChangeThisMercureHubJWTSecretKey!"
HS = {"alg": "HS256", "typ": "JWT"}
put("jwt", "raw-mercure-example", b"\x00" + token(HS, {"mercure": {"publish": ["*"]}}, well_known))
put("jwt", "raw-subscriber", b"\x00" + token(HS, {"mercure": {"subscribe": ["https://example.com/{id}"],
                                                                 "payload": {"user": "x"}}}, well_known))
put("jwt", "raw-alg-none", b"\x00" + b64(b'{"alg":"none"}') + b"." + b64(b'{"mercure":{"publish":["*"]}}') + b".")
put("jwt", "raw-rs256", b"\x00" + b64(b'{"alg":"RS256","typ":"JWT"}') + b"." + b64(b"{}") + b"." + b64(b"\x01" * 256))
put("jwt", "raw-garbage", b"\x00eyJ.eyJ.")
# Mode 1: payload JSON under the usual header, signed by the target.
payloads = {
    "publish-all": {"mercure": {"publish": ["*"]}},
    "full": {"mercure": {"publish": ["https://example.com/{id}"], "subscribe": ["*"],
                         "payload": {"a": [1, 2, {"b": None}]}}, "exp": 4102444800, "nbf": 1},
    "expired": {"mercure": {"publish": ["*"]}, "exp": 1000000},
    "not-yet": {"mercure": {"publish": ["*"]}, "nbf": 4102444800},
    "types": {"mercure": {"publish": "*", "subscribe": [1]}, "exp": "soon"},
    "empty": {},
}
for name, p in payloads.items():
    put("jwt", "signed-" + name, b"\x01" + json.dumps(p).encode())
# Mode 3: header JSON, 0xFF, payload JSON.
headers = {
    "crit": {"alg": "HS256", "crit": ["exp"]},
    "kid": {"alg": "HS256", "typ": "JWT", "kid": "k1", "cty": "x"},
    "none": {"alg": "none"},
    "hs384": {"alg": "HS384"},
    "jwk": {"alg": "HS256", "jwk": {"kty": "oct", "k": "AA"}},
}
for name, h in headers.items():
    put("jwt", "header-" + name, b"\x03" + json.dumps(h).encode() + FF + b'{"mercure":{"publish":["*"]}}')
put("jwt", "header-padded", b"\x07" + json.dumps(HS).encode() + FF + b'{"a":1}')

# --- tls -------------------------------------------------------------------------------------
def client_hello(minv, maxv, alpn, sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version, ctx.maximum_version = minv, maxv
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


V = ssl.TLSVersion
hellos = {
    "hello13": client_hello(V.TLSv1_3, V.TLSv1_3, ["http/1.1"], "localhost"),
    "hello12": client_hello(V.TLSv1_2, V.TLSv1_2, ["http/1.1"], "localhost"),
    "hello-any-h2": client_hello(V.MINIMUM_SUPPORTED, V.MAXIMUM_SUPPORTED, ["h2", "http/1.1"], None),
}
# Raw mode: mode, read size, write size, client bytes.
for name, h in hellos.items():
    put("tls", "raw-" + name, b"\x00\x00\x00" + h)
    put("tls", "raw-" + name + "-bytewise", b"\x02\x01\x07" + h)
    # The hello then records a client without keys could send.
    put("tls", "raw-" + name + "-then-junk", b"\x00\x00\x00" + h + b"\x14\x03\x03\x00\x01\x01"
        + b"\x17\x03\x03\x00\x20" + bytes(32))
put("tls", "raw-plaintext-http", b"\x00\x00\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n")
put("tls", "raw-alert", b"\x00\x00\x00\x15\x03\x03\x00\x02\x02\x28")
put("tls", "raw-sslv2-hello", b"\x00\x00\x00\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10"
    + bytes(21) + bytes(range(16)))
# Session mode: the rest is read by `arbitrary`; a few shapes of bytes to start from.
rng = random.Random(6570)
for i, n in enumerate([16, 64, 200, 600]):
    put("tls", f"session-{i}", b"\x01" + bytes(rng.randrange(256) for _ in range(n)))

# --- sse_roundtrip: read by `arbitrary` (strings, options); text that carries line ends ----
texts = [
    b"\x05a\r\nb\x00\x02\x01",
    b"\x10line one\rline two\nthree\r\n\x01\x00\x05ping!",
    "\x0cdonn\u00e9es \u2603\n\n\x01\x00".encode(),
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    b"\x08\r\r\n\n\r\x00\x01#id\x01\x00",
]
for i, t in enumerate(texts):
    put("sse_roundtrip", f"seed-{i}", t)
for i, n in enumerate([32, 128, 512]):
    put("sse_roundtrip", f"random-{i}", bytes(rng.randrange(256) for _ in range(n)))
