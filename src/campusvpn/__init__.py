"""campusvpn: remote access for a university — accounts, MFA, access policy, gateway and portal."""

__version__ = "0.1.0"
