"""Command and button handlers, one module per topic."""
