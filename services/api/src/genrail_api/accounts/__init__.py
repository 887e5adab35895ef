"""Accounts for the web studio: session cookies and CSRF, API keys, sign-in by emailed link and by
OAuth/OpenID Connect providers. The domain events are in `genrail_events.accounts`."""
