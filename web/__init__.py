"""The web console (FastAPI): pages rendered from Jinja2 templates, the JSON API.

``web.app.create_app`` builds the app; one router per area lives in
``web/routes``; the rules it applies live in :mod:`responder` (the web only
parses, authorises and renders), and nothing in ``responder`` imports ``web``.
"""
