"""Several gateway processes on one port: a root parent that prepares and supervises, and workers.

The parent (still root) opens one TUN device per worker, binds the listening socket and starts the
workers (`campusvpn.cli.worker`, a fresh interpreter each), which inherit both, drop privileges like
a single gateway does, and accept on the shared socket. A worker's tunnels are routed to its own TUN
device: when a tunnel attaches, the worker asks the parent for a /32 route to its device (only the
parent may change routes). Addresses come
from the database, so a session keeps its address on whichever worker its reconnect reaches, and
two workers never hand out the same one.

The parent reads nothing from the network: only 5-byte route requests from its own workers, each
checked against the configured pools. It restarts a worker that dies, passes SIGTERM and SIGINT on
for a clean stop, and exits when every worker has stopped.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import pickle
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from campusvpn.platform import logs

if TYPE_CHECKING:
    from campusvpn.platform.config import Config
    from campusvpn.service.context import Context

ROUTE = b"R"  # + 4 bytes of IPv4 address: route this address to the sender's TUN device
STOP_GRACE = 10.0  # seconds workers get to stop before they are killed
RESTART_SOON, RESTART_LATER = 0.5, 5.0  # a worker that dies quickly is restarted more slowly
SHORT_LIFE = 10.0


def device_names(base: str, count: int) -> list[str]:
    """TUN device of each worker: the configured name for worker 0, the name + "w" + index after it."""
    names = [base] + [f"{base}w{i}" for i in range(1, count)]
    too_long = [n for n in names if len(n) > 15]
    if too_long:
        raise ValueError(
            f"TUN device name {too_long[-1]!r} is longer than Linux allows (15); shorten [gateway] tun_device"
        )
    return names


def route_request(address: str) -> bytes:
    return ROUTE + socket.inet_aton(address)


def parse_route_request(data: bytes, pools: Iterable[str]) -> str | None:
    """The address a worker asks a route for, if the request is well formed and the address is a
    client address of one of the pools (never a network, broadcast or the gateway's own address)."""
    if len(data) != 5 or data[:1] != ROUTE:
        return None
    addr = ipaddress.IPv4Address(data[1:])
    for pool in pools:
        net = ipaddress.ip_network(pool)
        if addr in net and addr not in (net.network_address, net.broadcast_address, next(net.hosts())):
            return str(addr)
    return None


def config_fd(config: Config) -> int:
    """The parent's validated config in an anonymous in-memory file, for a worker to inherit: the
    worker neither reads the file again (every worker runs the config the parent checked, also one
    restarted after the file was edited) nor validates it, so it does not build pydantic's validators.
    Only the root parent writes it, and only its child inherits it."""
    fd = os.memfd_create("campusvpn-config", os.MFD_CLOEXEC)
    os.write(fd, pickle.dumps(config))  # a few KiB: one write
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def read_config(fd: int) -> Config:
    """A worker's end of `config_fd`."""
    with os.fdopen(fd, "rb") as f:
        config: Config = pickle.load(f)  # noqa: S301 - written by our own root parent, see config_fd
    return config


class RouteClient:
    """A worker's end of its channel to the parent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def route(self, address: str) -> None:
        try:
            self.sock.send(route_request(address))
        except OSError as exc:  # the parent is gone: this worker is about to be stopped anyway
            logs.event("gateway.route_request_failed", logging.WARNING, address=address, error=str(exc))


@dataclass
class Worker:
    index: int
    tun_fd: int | None
    tun_name: str
    parent_end: socket.socket
    child_end: socket.socket
    pid: int = 0
    started: float = 0.0
    restart_at: float | None = None
    restarts: int = field(default=0)


class Supervisor:
    """Runs in the parent: starts, watches and stops the workers, and sets their routes."""

    def __init__(
        self,
        workers: list[Worker],
        pools: list[str],
        start_worker: Callable[[Worker], int],
        on_worker_exit: Callable[[int], None] = lambda _pid: None,
    ) -> None:
        self.workers = workers
        self.pools = pools
        self.start_worker = start_worker  # starts a worker process, returns its pid
        self.on_worker_exit = on_worker_exit
        self.stopping = False
        self.failed = False  # a worker could not start: the run ends with an error
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._ifindex: dict[int, int] = {}

    # --- children --------------------------------------------------------------------------

    def spawn(self, w: Worker) -> None:
        w.pid, w.started, w.restart_at = self.start_worker(w), time.monotonic(), None
        logs.event("gateway.worker_started", index=w.index, pid=w.pid, tun=w.tun_name)

    # --- the parent's loop -----------------------------------------------------------------

    def run(self) -> int:
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop through the wake-up fd
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        for w in self.workers:
            w.parent_end.setblocking(False)
            self._sel.register(w.parent_end, selectors.EVENT_READ, w)
            self.spawn(w)
        deadline: float | None = None
        while True:
            for key, _ in self._sel.select(timeout=0.5):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
                else:
                    self._read_requests(key.data)
            self._reap()
            now = time.monotonic()
            if self.stopping:
                if deadline is None:
                    deadline = now + STOP_GRACE
                    self._signal_all(signal.SIGTERM)
                if not any(w.pid for w in self.workers):
                    logs.event("gateway.workers_stopped")
                    return 1 if self.failed else 0
                if now > deadline:
                    self._signal_all(signal.SIGKILL)
                continue
            for w in self.workers:
                if not w.pid and w.restart_at is not None and now >= w.restart_at:
                    w.restarts += 1
                    self.spawn(w)

    def _on_stop_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def _signal_all(self, sig: int) -> None:
        for w in self.workers:
            if w.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, sig)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = next((w for w in self.workers if w.pid == pid), None)
            if w is None:
                continue
            w.pid = 0
            self.on_worker_exit(pid)
            lived = time.monotonic() - w.started
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == FATAL and not self.stopping:
                logs.event("gateway.worker_cannot_start", logging.CRITICAL, index=w.index, note="stopping the gateway")
                self.stopping, self.failed = True, True
            if not self.stopping:
                delay = RESTART_SOON if lived > SHORT_LIFE else RESTART_LATER
                w.restart_at = time.monotonic() + delay
                logs.event(
                    "gateway.worker_died",
                    logging.ERROR,
                    index=w.index,
                    pid=pid,
                    status=_describe(status),
                    restart_in=delay,
                )

    # --- routes ----------------------------------------------------------------------------

    def _read_requests(self, w: Worker) -> None:
        while True:
            try:
                data = w.parent_end.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            address = parse_route_request(data, self.pools)
            if address is None:
                logs.event("gateway.bad_route_request", logging.WARNING, index=w.index)
                continue
            self._route(address, w)

    def _route(self, address: str, w: Worker) -> None:
        from pyroute2 import IPRoute

        try:
            with IPRoute() as ipr:
                if w.index not in self._ifindex:
                    self._ifindex[w.index] = ipr.link_lookup(ifname=w.tun_name)[0]
                ipr.route("replace", dst=f"{address}/32", oif=self._ifindex[w.index])
        except Exception as exc:  # a route that fails leaves that one tunnel without return traffic
            logs.event("gateway.route_failed", logging.ERROR, address=address, tun=w.tun_name, error=str(exc))


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def make_workers(count: int, tun_fds: list[int | None], tun_names: list[str]) -> list[Worker]:
    out = []
    for i in range(count):
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out.append(Worker(i, tun_fds[i], tun_names[i], parent_end, child_end))
    return out


FATAL = 3  # a worker's exit status when it cannot start at all (privileges, state): restarting will not help


def run_dir() -> str:
    """A fresh folder for this run, shared by the workers: `metrics` (their metric files, set as
    PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client, which reads it when a metric
    is created) and `share` (sign-ins between requests, see platform.local_share)."""
    import tempfile

    path = tempfile.mkdtemp(prefix="campusvpn-run-")
    for sub in ("metrics", "share"):
        os.mkdir(os.path.join(path, sub), 0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(path, "metrics")
    return path


def listening_socket(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def dtls_sockets(ctx: Context, count: int) -> list[tuple[socket.socket, int]]:
    """One UDP socket per worker for DTLS, on consecutive ports from [vpn] dtls_port (0: the TLS port).

    A DTLS datagram carries nothing the kernel could steer by, so each worker tells its clients its
    own port (X-DTLS-Port) and every datagram reaches the worker that holds the tunnel.
    """
    if not ctx.config.vpn.dtls:
        return []
    from campusvpn.anyconnect.dtls_port import udp_socket

    host, _, port = ctx.config.gateway.listen.rpartition(":")
    base = ctx.config.vpn.dtls_port or int(port)
    return [(udp_socket(host.strip("[]"), base + i), base + i) for i in range(count)]


def serve_workers(
    ctx: Context,
    count: int,
    *,
    no_tun: bool,
    owner: tuple[int, int] | None,
    run_path: str,
    config_path: Path,
) -> int:
    """The parent: prepare the TUN devices and the port as root, then run `count` workers until stopped."""
    g = ctx.config.gateway
    names = device_names(g.tun_device, count)
    pools = sorted({ctx.config.vpn.settings_for(p).pool for p in [None, *ctx.config.vpn.profiles]})
    fds: list[int | None] = [None] * count
    if not no_tun:
        from campusvpn.tunnels import tun

        fds = [tun.open_tun(name) for name in names]
        tun.configure(names[0], pools, ctx.config.vpn.mtu)  # the pools' addresses and routes
        for name in names[1:]:
            tun.configure(name, [], ctx.config.vpn.mtu)  # reached through each tunnel's /32 route
    sock = listening_socket(g.listen)
    udp = dtls_sockets(ctx, count)
    if owner is not None:
        for sub in ("", "metrics", "share"):
            os.chown(os.path.join(run_path, sub), *owner)
    metrics_path = os.path.join(run_path, "metrics")
    workers = make_workers(count, fds, names)
    ctx.engine.dispose()

    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start_worker(w: Worker) -> int:
        # A fresh interpreter, not a fork: it imports only what serving needs (start-up memory).
        tun = -1 if w.tun_fd is None else w.tun_fd
        cfg = config_fd(ctx.config)
        fds = [cfg, sock.fileno(), w.child_end.fileno(), *([tun] if tun >= 0 else [])]
        args = [str(config_path), str(cfg), str(w.index), str(sock.fileno()), str(tun), str(w.child_end.fileno())]
        args.append(run_path)
        if udp:
            udp_sock, udp_port = udp[w.index]
            fds.append(udp_sock.fileno())
            args += [str(udp_sock.fileno()), str(udp_port)]
        try:
            p = subprocess.Popen([sys.executable, "-m", "campusvpn.cli.worker", *args], pass_fds=fds)  # noqa: S603
        finally:
            os.close(cfg)
        procs[p.pid] = p
        return p.pid

    def worker_exited(pid: int) -> None:
        p = procs.pop(pid, None)
        if p is not None:
            p.returncode = -1  # reaped by the supervisor already
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, metrics_path)  # type: ignore[no-untyped-call]

    logs.worker = "main"
    logs.event("gateway.workers", count=count, listen=g.listen, tun=names if not no_tun else None)
    try:
        return Supervisor(workers, pools, start_worker, worker_exited).run()
    finally:
        import shutil

        shutil.rmtree(run_path, ignore_errors=True)
