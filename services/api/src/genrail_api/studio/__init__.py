"""The web studio: server-rendered pages (Jinja2 + htmx) over the same handlers and read models as /v1."""
