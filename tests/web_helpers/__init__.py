"""Helpers for the web layer's tests: a live uvicorn server, a host app, and an engine
that drives sessions through the hooks."""
