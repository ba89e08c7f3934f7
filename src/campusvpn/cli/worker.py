"""One gateway worker, started by `campusvpn serve` when it runs several (app.workers); not for operators.

    python3 -m campusvpn.cli.worker CONFIG CONFIG_FD INDEX LISTEN_FD TUN_FD ROUTE_FD RUN_DIR [UDP_FD DTLS_PORT]

It inherits the parent's validated config (CONFIG names the file it was read from), the bound
listening socket, its TUN device (-1: none), its channel to the parent and, with DTLS, its own
bound UDP socket and port; it opens the database the parent has upgraded,
becomes the service user like a single gateway, and serves until SIGTERM. Its imports are only
what serving needs; see docs/architecture.md.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from campusvpn.app.serve import WorkerPlace, serve
    from campusvpn.app.workers import FATAL, RouteClient, read_config
    from campusvpn.cli import service_user
    from campusvpn.platform import logs, privileges, state_files
    from campusvpn.platform.privileges import PrivilegeError
    from campusvpn.service.context import open_context

    config_path, config_fd, index, listen_fd, tun_fd, route_fd, run_dir, *dtls = argv  # dtls: UDP socket, port
    logs.setup(os.environ.get("CAMPUSVPN_LOG_LEVEL", "INFO"))
    logs.worker = index
    cfg = read_config(int(config_fd))
    try:
        name = cfg.service.user
        account = privileges.service_account(name) if name and os.geteuid() == 0 else None
        ctx = open_context(cfg, migrate=False)  # the parent upgraded the schema
        drop = service_user.after_bind(ctx, state_files.of(cfg, Path(config_path)), account)
        channel = socket.socket(fileno=int(route_fd))
        place = WorkerPlace(
            int(index),
            socket.socket(fileno=int(listen_fd)),
            RouteClient(channel).route,
            channel,
            Path(run_dir) / "share",
            udp=socket.socket(fileno=int(dtls[0])) if dtls else None,
            dtls_port=int(dtls[1]) if dtls else None,
        )
        tun = None if int(tun_fd) < 0 else int(tun_fd)
        if cfg.gateway.event_loop == "uvloop":
            import uvloop

            uvloop.run(serve(ctx, tun, after_bind=drop, worker=place))
        else:
            import asyncio

            asyncio.run(serve(ctx, tun, after_bind=drop, worker=place))
    except PrivilegeError as exc:
        logs.event("gateway.worker_refused", 50, error=str(exc))
        return FATAL
    return 0


if __name__ == "__main__":  # not when a pool process of this worker imports it as __mp_main__
    sys.exit(main(sys.argv[1:]))
