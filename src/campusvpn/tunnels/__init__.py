"""The tunnel hub: live tunnels, addresses, the TUN device, accounting and enforcement; protocol-neutral."""
