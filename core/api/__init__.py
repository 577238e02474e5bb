"""The agent HTTP API."""

from core.api.app import create_app
from core.api.guard import Guard

__all__ = ["Guard", "create_app"]
