"""What a wake-up costs on this machine: the same small operations timed hot and after sleeping.

A ping through the tunnel wakes the gateway from sleep once per packet. On this VM the first
microseconds after a sleep run with cold caches and TLB, so every operation costs many times its
hot price, and the cost grows with the memory an operation touches. C code that touches little
(ocserv) pays little; the Python interpreter touches much more per packet. This prints, for each
operation, the median time right after sleeping GAP seconds and back-to-back (`name value unit`).

    python bench/wakeup_cost.py
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def tls_pair() -> tuple[ssl.SSLObject, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """A server and client SSLObject joined by memory BIOs, handshake done (TLS 1.3, AES-256-GCM)."""
    tmp = Path(tempfile.mkdtemp())
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(tmp / "k.pem"), "-out", str(tmp / "c.pem"), "-days", "1", "-subj", "/CN=bench"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out)
    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    return server, client, s_in, c_out


def main() -> None:
    server, client, s_in, c_out = tls_pair()
    buf = memoryview(bytearray(256 * 1024))

    def decrypt_one_record() -> None:  # what the gateway does per ping on the way in
        s_in.write(record[0])
        server.read(len(buf), buf)

    record = [b""]

    def prepare() -> None:
        client.write(b"x" * 92)  # a CSTP frame holding an 84-byte ICMP echo
        record[0] = c_out.read()

    ops: dict[str, Callable[[], object]] = {
        "call_empty_function": lambda: None,
        "getpid_syscall": os.getpid,
        "sha256_100B": lambda: hashlib.sha256(b"x" * 100).digest(),
        "sum_range_1000": lambda: sum(range(1000)),
        "tls_decrypt_one_record": decrypt_one_record,
    }
    for name, op in ops.items():
        for gap, rounds in ((0.2, 40), (0.02, 100), (0.0, 2000)):
            times = []
            for _ in range(rounds):
                prepare()
                if gap:
                    time.sleep(gap)
                t0 = time.perf_counter_ns()
                op()
                times.append((time.perf_counter_ns() - t0) / 1000)
            label = f"after_sleep_{int(gap * 1000)}ms" if gap else "hot"
            print(f"wakeup.{name}.{label} {statistics.median(times):.2f} us", flush=True)


if __name__ == "__main__":
    main()
