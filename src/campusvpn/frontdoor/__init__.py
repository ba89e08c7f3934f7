"""The front door: the public TLS port, HTTP/1.1, and the sites (protocols, the portal) behind it."""
