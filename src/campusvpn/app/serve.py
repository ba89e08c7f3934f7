"""Start-up: build the running gateway from a context and run it until SIGTERM or SIGINT.

This is the one place that knows every part: the TUN device, the tunnel hub and its housekeeping,
the protocol sites, the portal's ASGI app and the front door that serves them on one port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from campusvpn.anyconnect.site import AnyConnectSite
from campusvpn.fortinet.site import FortinetSite
from campusvpn.frontdoor.budget import Budget
from campusvpn.frontdoor.http import Site
from campusvpn.frontdoor.server import FrontDoor, Limits, ssl_context
from campusvpn.platform import logs
from campusvpn.service import live_sessions
from campusvpn.service.context import Context
from campusvpn.tunnels.enforcement import Enforcer
from campusvpn.tunnels.hub import Hub

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

    async def start(self, host: str, port: int) -> None:
        ctx = self.hub.ctx
        detached = await asyncio.to_thread(live_sessions.detach_node, ctx, self.hub.node)
        if detached:
            logs.event("gateway.sessions_detached", count=detached, note="left connected by an earlier run")
        await self.front.start(host, port)
        dtls = self.dtls
        if dtls is not None:
            dtls.port = dtls.port or port
            from campusvpn.anyconnect.dtls_port import udp_socket

            sock = udp_socket(host, dtls.port)
            await asyncio.get_running_loop().create_datagram_endpoint(lambda: dtls, sock=sock)
            logs.event("gateway.dtls_listening", listen=f"{host}:{dtls.port}")
        self.hub.start()
        logs.event("gateway.listening", listen=f"{host}:{port}", node=self.hub.node)

    async def stop(self) -> None:
        self.front.stop()
        if self.dtls is not None:
            self.dtls.close()
        self.hub.stop()


def build(ctx: Context, *, tun_fd: int | None, node: str = "") -> Gateway:
    cfg = ctx.config
    g = cfg.gateway
    hub = Hub(ctx, tun_fd=tun_fd, node=node or os.uname().nodename)
    enforcer = Enforcer(ctx, hub)
    portal: Site | None = None
    if cfg.portal.enabled:
        from campusvpn.frontdoor.asgi import AsgiSite
        from campusvpn.portal.app import create_app

        portal = AsgiSite(create_app(ctx), cfg.portal.max_upload)
    tls = ssl_context(str(cfg.path(cfg.tls.certificate)), str(cfg.path(cfg.tls.key)))
    dtls = None
    if cfg.vpn.dtls:  # pyOpenSSL (~9 MB) is imported only then
        from campusvpn.anyconnect.dtls_crypto import Keys
        from campusvpn.anyconnect.dtls_port import DtlsPort

        keys = Keys(str(cfg.path(cfg.tls.certificate)), str(cfg.path(cfg.tls.key)))
        dtls = DtlsPort(keys, cfg.vpn.dtls_port or 0)  # 0: the TLS port, known at start
    anyconnect = AnyConnectSite(ctx, hub, claim_everything=portal is None, on_review=enforcer.review_at, dtls=dtls)
    front = FrontDoor(
        tls,
        [FortinetSite(ctx, hub, on_review=enforcer.review_at), anyconnect],
        portal or anyconnect,
        budget=Budget(g.max_pending, g.pending_reserved, g.max_pending_per_address),
        limits=Limits(
            handshake=g.handshake_timeout.total_seconds(),
            header=g.header_timeout.total_seconds(),
            keepalive=g.keepalive_timeout.total_seconds(),
            min_rate=g.min_receive_rate,
        ),
    )
    return Gateway(hub, enforcer, anyconnect, front, dtls)


async def lifecycle_and_mail(ctx: Context, mail_every: float = 60.0) -> None:
    """The lifecycle job every [lifecycle] run_every and the e-mail queue every minute. Both are
    idempotent and keyed in the database, so several nodes may run them; a failure is logged
    and tried again at the next round."""
    from campusvpn.service import lifecycle, mail_sender

    log = logging.getLogger("campusvpn.lifecycle")
    next_lifecycle = 0.0
    loop = asyncio.get_running_loop()
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


async def serve(ctx: Context, tun_fd: int | None, after_bind: Callable[[], None] | None = None) -> None:
    """Run the gateway until SIGTERM or SIGINT; `after_bind` runs once every port is bound."""
    from prometheus_client import start_http_server

    g = ctx.config.gateway
    mhost, _, mport = g.metrics_listen.rpartition(":")
    start_http_server(int(mport), addr=mhost.strip("[]"))
    gw = build(ctx, tun_fd=tun_fd)
    loop = asyncio.get_running_loop()
    host, _, port = g.listen.rpartition(":")
    await gw.start(host.strip("[]"), int(port))
    if after_bind is not None:
        after_bind()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    keeper = asyncio.create_task(gw.enforcer.run())
    chores = asyncio.create_task(lifecycle_and_mail(ctx))
    await stop.wait()
    keeper.cancel()
    chores.cancel()
    await gw.stop()
    logs.event("gateway.stopped")
