"""A live tunnel as the hub sees it: one session's address, counters and channels, whatever the protocol.

A *channel* is one way of carrying the tunnel's packets to the client: CSTP frames on the TLS
stream today; a DTLS channel or PPP frames on a TLS stream plug in the same way. The hub never
frames a packet itself: it hands packets to the tunnel, which hands them to its best channel.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

# A slow client's queue: beyond this much unsent data, packets for it are dropped (as a router
# drops from a full queue) instead of buffering without bound; TCP inside the tunnel slows down.
WRITE_HIGH_WATER = 512 * 1024


class Ending(NamedTuple):
    """Why a channel's connection stopped, as its protocol reports it to the hub."""

    reason: str
    signed_off: bool = False  # the user ended the session (not just the connection)
    protocol_error: bool = False


class Channel(Protocol):
    """What a protocol package implements to carry packets for the hub."""

    @property
    def ready(self) -> bool:
        """False while the client is not keeping up (its queue is full) or the channel is closing."""

    def send_packets(self, packets: Sequence[bytes]) -> None:
        """Frame the IP packets and write them (one write for the batch where the transport allows)."""

    def send_keepalive(self) -> None:
        """Something small that tells the client the gateway is there."""

    def close(self, reason: str) -> None:
        """Tell the client why (it shows the reason) and close the connection."""

    def drop(self) -> None:
        """Close without a word (a dead peer: nobody would read it)."""


@dataclass(frozen=True)
class SessionInfo:
    """What the hub keeps of a session: no database row, no lazy loading on the event loop."""

    session_id: str
    username: str
    user_id: int
    address: str
    expires_at: datetime
    protocol: str  # the protocol package's name ("anyconnect", "fortinet"): a label for logs and metrics
    language: str | None = None  # the person's stored language (None: never chosen): what the client is told

    @property
    def addr_bytes(self) -> bytes:
        return bytes(int(x) for x in self.address.split("."))


@dataclass(eq=False)
class Tunnel:
    """A session with at least one connected channel."""

    session: SessionInfo
    channel: Channel  # the stream the client connected with; later channels (DTLS) are preferred
    extra_channels: list[Channel] = field(default_factory=list)
    addr_bytes: bytes = b""
    connected_at: float = field(default_factory=time.monotonic)
    last_rx: float = field(default_factory=time.monotonic)  # anything from the client: it is alive
    last_data: float = field(default_factory=time.monotonic)  # packets either way: the user is active
    bytes_in: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    flushed_in: int = 0
    flushed_out: int = 0
    flushed_pin: int = 0
    flushed_pout: int = 0
    closing: bool = False

    def __post_init__(self) -> None:
        if not self.addr_bytes:
            self.addr_bytes = self.session.addr_bytes

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def username(self) -> str:
        return self.session.username

    @property
    def user_id(self) -> int:
        return self.session.user_id

    @property
    def address(self) -> str:
        return self.session.address

    @property
    def expires_at(self) -> datetime:
        return self.session.expires_at

    def best_channel(self) -> Channel | None:
        """The newest ready channel (a datagram channel beats the stream), else None: drop."""
        for ch in reversed(self.extra_channels):
            if ch.ready:
                return ch
        return self.channel if self.channel.ready else None

    def channels(self) -> list[Channel]:
        return [self.channel, *self.extra_channels]
