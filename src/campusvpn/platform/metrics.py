"""Prometheus counters of the gateway, served on their own local port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

# With several gateway workers, gauges are summed over the live ones ("livesum") and counters over all.
PENDING = Gauge(
    "campusvpn_pending_connections",
    "Connections held by the front door that are not tunnels yet",
    multiprocess_mode="livesum",
)
# `protocol` is the VPN protocol's package name: "anyconnect", "fortinet".
SESSIONS = Gauge(
    "campusvpn_tunnels", "Live tunnels (connected sessions) by protocol", ["protocol"], multiprocess_mode="livesum"
)
LOGINS = Counter("campusvpn_logins_total", "Completed sign-ins by protocol and outcome", ["protocol", "outcome"])
BYTES_IN = Counter("campusvpn_bytes_in_total", "Bytes received from clients through tunnels")
BYTES_OUT = Counter("campusvpn_bytes_out_total", "Bytes sent to clients through tunnels")
PACKETS_IN = Counter("campusvpn_packets_in_total", "Packets received from clients")
PACKETS_OUT = Counter("campusvpn_packets_out_total", "Packets sent to clients")
PACKETS_DROPPED = Counter(
    "campusvpn_packets_dropped_total", "Packets for clients dropped because the client's queue was full"
)
DTLS_CHANNELS = Gauge(
    "campusvpn_dtls_channels",
    "Tunnels whose packets may go over DTLS (UDP) besides TLS",
    multiprocess_mode="livesum",  # summed over the workers, like the tunnels
)
DTLS_DROPPED = Counter(
    "campusvpn_dtls_dropped_total",
    "UDP datagrams the DTLS port dropped, by reason (unknown peer, bad record...)",
    ["reason"],
)
PROTOCOL_ERRORS = Counter("campusvpn_protocol_errors_total", "Connections closed for protocol errors", ["kind"])


def declare_protocol(protocol: str) -> None:
    """A protocol's series exist from start-up (at zero), so dashboards and alerts see every protocol
    served, not only those someone has used since the last restart."""
    for outcome in ("ok", "refused"):
        LOGINS.labels(protocol, outcome)
    SESSIONS.labels(protocol)
