"""The web portal: member pages, the admin console and the JSON API, as one ASGI application."""
