"""The agent HTTP API: `routes` (every endpoint), `dependencies` (what an endpoint may ask for),
`errors` (how refusals are answered), `guard` (token checks), `schemas` (bodies), `app` (the
assembly, `create_app`) and `server` (uvicorn in the caller's event loop)."""

from core.api.app import create_app
from core.api.guard import Guard

__all__ = ["Guard", "create_app"]
