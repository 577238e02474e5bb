"""Replicas of `fleetbot run` on one database, one of them leading (core.cluster.leadership)."""
