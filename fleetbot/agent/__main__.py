"""`python -m fleetbot.agent …` is `fleetbot agent …` (for a venv whose bin is not on PATH)."""

from fleetbot.agent.cli import main

raise SystemExit(main())
