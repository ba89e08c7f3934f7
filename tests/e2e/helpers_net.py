"""Small programs run inside the namespaces: a TCP peer on the campus host, a raw TLS fuzzer."""

TCP_SERVER = r"""
import hashlib, socket, sys
n = int(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); s.settimeout(30)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(30)
got = bytearray()
while len(got) < n:
    chunk = c.recv(65536)
    if not chunk: break
    got += chunk
reply = hashlib.sha256(got).digest() * (n // 32)
c.sendall(reply); c.shutdown(socket.SHUT_WR)
print(hashlib.sha256(got).hexdigest(), flush=True)
"""

TCP_CLIENT = r"""
import hashlib, os, socket, sys
n = int(sys.argv[2])
data = os.urandom(n)
c = socket.create_connection((sys.argv[1], 5001), timeout=30)
c.sendall(data)
back = bytearray()
while True:
    chunk = c.recv(65536)
    if not chunk: break
    back += chunk
ok = bytes(back) == hashlib.sha256(data).digest() * (n // 32)
print(hashlib.sha256(data).hexdigest(), "ok" if ok else f"bad {len(back)}", flush=True)
"""

FUZZER = r"""
import os, random, socket, ssl, struct, sys, time
host, cookie, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(int(sys.argv[4]))
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE

def conn():
    s = socket.create_connection((host, 443), timeout=5)
    return ctx.wrap_socket(s, server_hostname=host)

def attempt(fn):
    try:
        t = conn(); fn(t); t.settimeout(2)
        try:
            while t.recv(65536): pass
        except Exception: pass
        t.close()
    except Exception:
        pass

def garbage_http(t): t.sendall(os.urandom(rnd.randint(1, 4000)))
def bad_xml(t):
    body = rnd.choice([b"<config-auth", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><config-auth type='init'>&a;</config-auth>",
                       b"<config-auth type='nonsense'/>", os.urandom(300), b"<a>" * 5000])
    # As a VPN client sends it (browsers' requests on the same port go to the portal instead).
    t.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Aggregate-Auth: 1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
def huge_body(t): t.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 70000)
def huge_header(t): t.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
def bad_frames(t):
    t.sendall(b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: x\r\nCookie: webvpn=" + cookie.encode() + b"\r\nX-CSTP-Version: 1\r\n\r\n")
    t.settimeout(3); head = t.recv(4096)
    kind = rnd.randrange(4)
    if kind == 0: t.sendall(os.urandom(rnd.randint(1, 3000)))
    elif kind == 1: t.sendall(b"STF\x01" + struct.pack(">HBB", 60000, 0, 0) + os.urandom(100))
    elif kind == 2: t.sendall(b"STF\x01" + struct.pack(">HBB", 10, 0x42, 0) + os.urandom(10))
    else: t.sendall(b"STF\x01" + struct.pack(">HBB", 20, 0, 0) + os.urandom(20) + b"junk" * 100)
def bad_cookie(t): t.sendall(b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: x\r\nCookie: webvpn=forged\r\n\r\n")

slow = [conn() for _ in range(5)]  # slow clients that never send a byte
for i in range(rounds):
    attempt(rnd.choice([garbage_http, bad_xml, huge_body, huge_header, bad_frames, bad_cookie]))
for s in slow: s.close()
print("fuzzed", rounds, flush=True)
"""
