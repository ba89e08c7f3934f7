"""The AnyConnect (Cisco Secure Client, openconnect) protocol: XML sign-in, CONNECT, CSTP; sans-IO cores."""
