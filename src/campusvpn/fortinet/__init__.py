"""FortiGate SSL-VPN ("fortinet") protocol: the /remote/... dialogue, its tunnel configuration and PPP over TLS."""
