"""The web dashboard: static pages served by the API, no CDN."""
