"""Start-up: build the running gateway from a context and run it until SIGTERM or SIGINT.

This is the one place that knows every part: the TUN device, the tunnel hub and its housekeeping,
the protocol sites, the portal's ASGI app and the front door that serves them on one port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from campusvpn.anyconnect.site import AnyConnectSite
from campusvpn.fortinet.site import FortinetSite
from campusvpn.frontdoor.budget import Budget
from campusvpn.frontdoor.http import Site
from campusvpn.frontdoor.server import FrontDoor, Limits, ssl_context
from campusvpn.platform import logs
from campusvpn.platform.local_share import LocalShare
from campusvpn.service import live_sessions
from campusvpn.service.context import Context
from campusvpn.service.hash_pool import PooledHasher
from campusvpn.tunnels.enforcement import Enforcer
from campusvpn.tunnels.hub import Hub
from campusvpn.tunnels.tunnel import Channel, SessionInfo, Tunnel

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from campusvpn.anyconnect.dtls_port import DtlsPort


def prepare_tun(ctx: Context) -> int:
    """Create and configure the TUN device; done before the event loop starts (pyroute2 runs its own)."""
    from campusvpn.tunnels import tun

    fd = tun.open_tun(ctx.config.gateway.tun_device)
    pools = sorted({ctx.config.vpn.settings_for(p).pool for p in [None, *ctx.config.vpn.profiles]})
    tun.configure(ctx.config.gateway.tun_device, pools, ctx.config.vpn.mtu)
    return fd


@dataclass
class Gateway:
    """The running parts, for start-up, shutdown and tests."""

    hub: Hub
    enforcer: Enforcer
    anyconnect: AnyConnectSite
    front: FrontDoor
    dtls: DtlsPort | None = None  # AnyConnect's UDP port, when [vpn] dtls is on
    udp: socket.socket | None = None  # its socket, bound by the parent of several workers

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        ctx = self.hub.ctx
        detached = await asyncio.to_thread(live_sessions.detach_node, ctx, self.hub.node)
        if detached:
            logs.event("gateway.sessions_detached", count=detached, note="left connected by an earlier run")
        await self.front.start(host, port, sock)
        dtls = self.dtls
        if dtls is not None:
            from campusvpn.anyconnect.dtls_port import udp_socket

            dtls.port = dtls.port or port
            udp = self.udp if self.udp is not None else udp_socket(host, dtls.port)
            await asyncio.get_running_loop().create_datagram_endpoint(lambda: dtls, sock=udp)
            logs.event("gateway.dtls_listening", listen=f"{host}:{dtls.port}")
        self.hub.start()
        logs.event("gateway.listening", listen=f"{host}:{port}", node=self.hub.node)

    async def stop(self) -> None:
        self.front.stop()
        if self.dtls is not None:
            self.dtls.close()
        self.hub.stop()


class LazyPortal:
    """The portal's ASGI app, built when the first browser comes: a gateway worker that carries only
    tunnels never loads FastAPI, the templates and WebAuthn (start-up memory). The import runs in a
    thread, so tunnels keep passing packets meanwhile."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._app: ASGIApp | None = None
        self._building: asyncio.Lock | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._building = self._building or asyncio.Lock()
            async with self._building:
                if self._app is None:
                    self._app = await asyncio.to_thread(_portal_app, self.ctx)
        await self._app(scope, receive, send)


def _portal_app(ctx: Context) -> ASGIApp:
    from campusvpn.portal.app import create_app

    return create_app(ctx)


class RoutedHub(Hub):
    """A worker's hub when several share the port: each tunnel's address is routed to this worker's
    TUN device as the tunnel attaches (the parent sets the route), so its return traffic comes here."""

    def __init__(self, ctx: Context, *, tun_fd: int | None, node: str, router: Callable[[str], None]) -> None:
        super().__init__(ctx, tun_fd=tun_fd, node=node)
        self.router = router

    def attach(self, session: SessionInfo, channel: Channel) -> Tunnel:
        self.router(session.address)  # before its first packet
        return super().attach(session, channel)


def build(
    ctx: Context,
    *,
    tun_fd: int | None,
    node: str = "",
    router: Callable[[str], None] | None = None,
    share: Path | None = None,
    udp: socket.socket | None = None,
    dtls_port: int | None = None,
) -> Gateway:
    """The gateway's parts; a worker of several passes its own UDP socket and the DTLS port it tells clients."""
    cfg = ctx.config
    g = cfg.gateway
    node = node or os.uname().nodename
    hub = (
        Hub(ctx, tun_fd=tun_fd, node=node)
        if router is None
        else RoutedHub(ctx, tun_fd=tun_fd, node=node, router=router)
    )
    enforcer = Enforcer(ctx, hub)
    portal: Site | None = None
    if cfg.portal.enabled:
        from campusvpn.frontdoor.asgi import AsgiSite

        portal = AsgiSite(LazyPortal(ctx), cfg.portal.max_upload)
    shared = LocalShare(share, g.auth_timeout.total_seconds()) if share is not None else None
    tls = ssl_context(str(cfg.path(cfg.tls.certificate)), str(cfg.path(cfg.tls.key)))
    dtls = None
    if cfg.vpn.dtls:  # pyOpenSSL (~9 MB) is imported only then
        from campusvpn.anyconnect.dtls_crypto import Keys
        from campusvpn.anyconnect.dtls_port import DtlsPort

        keys = Keys(str(cfg.path(cfg.tls.certificate)), str(cfg.path(cfg.tls.key)))
        dtls = DtlsPort(keys, dtls_port if dtls_port is not None else cfg.vpn.dtls_port)  # 0: the TLS port
    anyconnect = AnyConnectSite(
        ctx, hub, claim_everything=portal is None, on_review=enforcer.review_at, dtls=dtls, share=shared
    )
    front = FrontDoor(
        tls,
        [FortinetSite(ctx, hub, on_review=enforcer.review_at, share=shared), anyconnect],
        portal or anyconnect,
        budget=Budget(g.max_pending, g.pending_reserved, g.max_pending_per_address),
        limits=Limits(
            handshake=g.handshake_timeout.total_seconds(),
            header=g.header_timeout.total_seconds(),
            keepalive=g.keepalive_timeout.total_seconds(),
            min_rate=g.min_receive_rate,
        ),
    )
    return Gateway(hub, enforcer, anyconnect, front, dtls, udp)


LIFECYCLE_FIRST_AFTER = 60.0  # seconds after start; the job is idempotent and runs hourly by default


async def lifecycle_and_mail(ctx: Context, mail_every: float = 60.0) -> None:
    """The lifecycle job every [lifecycle] run_every and the e-mail queue every minute. Both are
    idempotent and keyed in the database, so several nodes may run them; a failure is logged
    and tried again at the next round."""
    from campusvpn.service import lifecycle, mail_sender

    log = logging.getLogger("campusvpn.lifecycle")
    loop = asyncio.get_running_loop()
    # Not at once: a restarted gateway first takes back its reconnecting tunnels (the job reads every
    # open account; at start it competed with a thousand resumes for the cores, bench/SOAK.md).
    next_lifecycle = loop.time() + LIFECYCLE_FIRST_AFTER
    while True:
        try:
            if loop.time() >= next_lifecycle:
                report = await asyncio.to_thread(lifecycle.run, ctx)
                next_lifecycle = loop.time() + ctx.config.lifecycle.run_every.total_seconds()
                if report.done or report.notices:
                    logs.event("lifecycle.run", done=len(report.done), notices=len(report.notices))
            await mail_sender.deliver(ctx)
        except Exception:
            log.exception("lifecycle or mail round failed; trying again at the next round")
        await asyncio.sleep(mail_every)


@dataclass(frozen=True)
class WorkerPlace:
    """What a worker of several gets from the parent: its number, the shared listening socket and its
    channel for route requests."""

    index: int
    sock: socket.socket
    router: Callable[[str], None]  # asks the parent to route an address to this worker's TUN device
    channel: socket.socket  # to the parent; reads end-of-file once the parent is gone
    share: Path  # the folder of values every worker sees (platform.local_share)
    # DTLS: each worker has a UDP port of its own (the first worker's is [vpn] dtls_port or the TLS
    # port, the next one up, ...), told to its clients in X-DTLS-Port, so a datagram always reaches
    # the worker that holds its tunnel.
    udp: socket.socket | None = None
    dtls_port: int | None = None


async def serve(
    ctx: Context,
    tun_fd: int | None,
    after_bind: Callable[[], None] | None = None,
    worker: WorkerPlace | None = None,
) -> None:
    """Run the gateway (or one worker of several) until SIGTERM or SIGINT; `after_bind` runs once every
    port is bound."""
    from prometheus_client import start_http_server

    g = ctx.config.gateway
    if worker is None or worker.index == 0:  # one process serves the metrics, summed over the workers
        mhost, _, mport = g.metrics_listen.rpartition(":")
        start_http_server(int(mport), addr=mhost.strip("[]"), registry=metrics_registry())
    node = os.uname().nodename if worker is None else f"{os.uname().nodename}/{worker.index}"
    gw = build(
        ctx,
        tun_fd=tun_fd,
        node=node,
        router=worker.router if worker else None,
        share=worker.share if worker else None,
        udp=worker.udp if worker else None,
        dtls_port=worker.dtls_port if worker else None,
    )
    loop = asyncio.get_running_loop()
    host, _, port = g.listen.rpartition(":")
    await gw.start(host.strip("[]"), int(port), worker.sock if worker else None)
    if after_bind is not None:
        after_bind()
    if g.hash_processes:  # after the drop: the pool's queues and semaphores belong to the service user
        ctx.hasher = PooledHasher(ctx.hasher.params, g.hash_processes)
    warming = asyncio.create_task(asyncio.to_thread(ctx.hasher.warm))  # in the pool when there is one
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if worker is not None:  # the parent gone (even killed): its channel reads end-of-file; stop too
        worker.channel.setblocking(False)
        loop.add_reader(worker.channel.fileno(), _parent_gone, worker.channel, stop)
    keeper = asyncio.create_task(gw.enforcer.run())
    # The lifecycle job and the mail queue run in one process, not once per worker.
    chores = asyncio.create_task(lifecycle_and_mail(ctx)) if worker is None or worker.index == 0 else None
    await stop.wait()
    keeper.cancel()
    if chores is not None:
        chores.cancel()
    warming.cancel()
    await gw.stop()
    if isinstance(ctx.hasher, PooledHasher):
        ctx.hasher.close()
    logs.event("gateway.stopped")


def _parent_gone(channel: socket.socket, stop: asyncio.Event) -> None:
    try:
        if channel.recv(64) != b"":
            return  # the parent sends nothing today; ignore anything
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        pass
    asyncio.get_running_loop().remove_reader(channel.fileno())
    logs.event("gateway.parent_gone", logging.WARNING, note="stopping this worker")
    stop.set()


def metrics_registry() -> CollectorRegistry:
    """The default registry; with several workers (PROMETHEUS_MULTIPROC_DIR set by the parent) one that
    sums what every worker wrote."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
