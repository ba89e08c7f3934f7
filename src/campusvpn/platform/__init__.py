"""Platform services every layer may use: configuration, clock, secret box."""
