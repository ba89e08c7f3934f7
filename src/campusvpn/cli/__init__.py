"""The `campusvpn` command."""
