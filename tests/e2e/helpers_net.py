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

# The same for the FortiGate protocol: bad HTTP on /remote paths, bad PPP after a valid tunnel
# request, huge bodies, a forged cookie's tunnel request, and a second tunnel request on a cookie
# that already has a tunnel. The deterministic checks print what happened; the test reads them.
FORTI_FUZZER = r"""
import os, random, socket, ssl, struct, sys, time
host, cookie, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(int(sys.argv[4]))
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
UA = b"User-Agent: Mozilla/5.0 SV1\r\n"

def conn():
    s = socket.create_connection((host, 443), timeout=5)
    return ctx.wrap_socket(s, server_hostname=host)

def drain(t, limit=3.0):
    # Read until the gateway closes (True) or `limit` seconds pass (False).
    t.settimeout(limit); end = time.monotonic() + limit
    try:
        while time.monotonic() < end:
            if not t.recv(65536): return True
    except Exception:
        return False
    return False

def attempt(fn):
    try:
        t = conn(); fn(t); drain(t, 2); t.close()
    except Exception:
        pass

def tunnel_request(t, c):
    t.sendall(b"GET /remote/sslvpn-tunnel HTTP/1.1\r\nHost: sslvpn\r\n" + UA + b"Cookie: SVPNCOOKIE=" + c.encode() + b"\r\n\r\n")

def frame(ppp):
    return struct.pack(">HHH", len(ppp) + 6, 0x5050, len(ppp)) + ppp

def garbage_http(t): t.sendall(os.urandom(rnd.randint(1, 4000)))
def bad_remote(t):
    path = rnd.choice([b"/remote/logincheck", b"/remote/fortisslvpn_xml", b"/remote/sslvpn-tunnel", b"/remote/login",
                       b"/remote/%zz%00", b"/remote/" + os.urandom(40).hex().encode(), b"/remote/logout"])
    body = rnd.choice([os.urandom(rnd.randint(0, 2000)), b"username=%ff%fe&credential=&realm=" + b"A" * 5000,
                       b"code=1&magic=" + os.urandom(30).hex().encode() + b"&reqid=x", b"&&&===,,,", b"magic=%00%00&code=%"])
    head = rnd.choice([
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + UA + b"Content-Length: %d\r\n\r\n" % len(body),
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body),
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nCookie: SVPNCOOKIE=" + os.urandom(20) + b"\r\n\r\n",
        b"GET " + path + b" HTTP/9.9\r\n\r\n",
        b"GET " + path + b"\r\n\r\n",
    ])
    t.sendall(head + body)
def huge_body(t): t.sendall(b"POST /remote/logincheck HTTP/1.1\r\nHost: x\r\n" + UA + b"Content-Length: 100000000\r\n\r\n" + b"x" * 70000)
def huge_header(t): t.sendall(b"GET /remote/login HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
def bad_ppp(t):
    tunnel_request(t, cookie)
    t.settimeout(3); t.recv(4096)  # the gateway's LCP Configure-Request: PPP has started
    kind = rnd.randrange(7)
    if kind == 0: t.sendall(os.urandom(rnd.randint(1, 3000)))
    elif kind == 1: t.sendall(struct.pack(">HHH", 30, 0x1234, 24) + os.urandom(24))  # bad magic
    elif kind == 2: t.sendall(struct.pack(">HHH", 60006, 0x5050, 60000) + os.urandom(3000))  # over 16 KiB
    elif kind == 3: t.sendall(struct.pack(">HHH", 40, 0x5050, 10) + os.urandom(34))  # lengths disagree
    elif kind == 4: t.sendall(b"".join(frame(b"\xc0\x21" + os.urandom(rnd.randint(0, 60))) for _ in range(20)))  # LCP junk
    elif kind == 5: t.sendall(b"".join(frame(os.urandom(rnd.randint(1, 200))) for _ in range(20)))  # any protocol
    else: t.sendall(frame(b"\x00\x21" + b"\x45" + os.urandom(200)))  # an IP packet from nobody's address
def forged_cookie(t): tunnel_request(t, rnd.choice(["forged", os.urandom(32).hex(), cookie[:-2] + "xx"]))
def second_tunnel(t):
    tunnel_request(t, cookie); t.settimeout(3); t.recv(4096)
    u = conn(); tunnel_request(u, cookie); u.settimeout(3); u.recv(4096); u.close()

# Deterministic checks first.
t = conn(); tunnel_request(t, "forged"); t.settimeout(5)
print("forged:", t.recv(200).split(b"\r\n")[0].decode(), flush=True); t.close()
first = conn(); tunnel_request(first, cookie); first.settimeout(5)
print("first tunnel:", first.recv(6)[2:4].hex(), flush=True)
second = conn(); tunnel_request(second, cookie); second.settimeout(5)
print("second tunnel:", second.recv(6)[2:4].hex(), flush=True)
print("first closed:", drain(first, 5), flush=True)  # the newer connection wins
first.close(); second.close()

slow = [conn() for _ in range(5)]  # slow clients that never send a byte
for i in range(rounds):
    attempt(rnd.choice([garbage_http, bad_remote, huge_body, huge_header, bad_ppp, bad_ppp, forged_cookie, second_tunnel]))
for s in slow: s.close()
# The garbage user's session survived it all: its cookie still starts a tunnel.
t = conn(); tunnel_request(t, cookie); t.settimeout(5)
print("after:", t.recv(6)[2:4].hex(), flush=True); t.close()
print("fuzzed", rounds, flush=True)
"""
