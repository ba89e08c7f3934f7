"""Traffic and connection state of tunnels, written to the database in batches.

The event loop only appends marks to a queue; one writer at a time takes the whole queue to a
worker thread, so a mass disconnect is a few transactions, not thousands fighting for SQLite's lock.
"""

from __future__ import annotations

import asyncio
import logging

from campusvpn.platform import logs, metrics
from campusvpn.service import live_sessions
from campusvpn.service.context import Context
from campusvpn.service.sessions import Mark
from campusvpn.tunnels.tunnel import Tunnel


def take_counts(t: Tunnel) -> tuple[int, int]:
    """Traffic since the last write, counted into the metrics (on the event loop: no locks needed)."""
    din, dout = t.bytes_in - t.flushed_in, t.bytes_out - t.flushed_out
    pin, pout = t.packets_in - t.flushed_pin, t.packets_out - t.flushed_pout
    t.flushed_in, t.flushed_out, t.flushed_pin, t.flushed_pout = t.bytes_in, t.bytes_out, t.packets_in, t.packets_out
    metrics.BYTES_IN.inc(din)
    metrics.BYTES_OUT.inc(dout)
    metrics.PACKETS_IN.inc(pin)
    metrics.PACKETS_OUT.inc(pout)
    return din, dout


def has_unwritten_traffic(t: Tunnel) -> bool:
    return t.bytes_in != t.flushed_in or t.bytes_out != t.flushed_out


class MarksWriter:
    """Queues session marks on the event loop and writes them in batches from a worker thread."""

    def __init__(self, ctx: Context, node: str) -> None:
        self._ctx = ctx
        self._node = node
        self._queue: list[Mark] = []
        self.writing = False

    def note(self, t: Tunnel, *, connected: bool | None) -> None:
        """Queue `t`'s traffic since the last write, and its connection state unless None."""
        din, dout = take_counts(t)
        # A detach recorded late must not mark a session that has since reconnected as detached.
        at = None if connected else self._ctx.clock.now()
        self._queue.append(Mark(t.session_id, connected, din, dout, at))
        if not self.writing:  # one writer at a time; what queues meanwhile goes in its next batch
            self.writing = True
            asyncio.get_running_loop().call_soon(self._write)

    def _write(self) -> None:
        batch, self._queue = self._queue, []
        done = asyncio.get_running_loop().run_in_executor(None, self._store, batch)
        done.add_done_callback(self._stored)

    def _stored(self, _done: asyncio.Future[None]) -> None:
        if self._queue:
            self._write()
        else:
            self.writing = False

    def _store(self, batch: list[Mark]) -> None:
        try:
            live_sessions.mark_many(self._ctx, batch, self._node)
        except Exception as exc:
            logs.event("gateway.write_failed", logging.ERROR, sessions=len(batch), error=str(exc))
