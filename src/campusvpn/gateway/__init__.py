"""The AnyConnect-protocol VPN gateway: sans-IO protocol pieces and a thin asyncio server."""
