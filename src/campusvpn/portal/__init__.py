"""The web portal: member pages, admin console and JSON API, as one ASGI app (`app.create_app`)."""
