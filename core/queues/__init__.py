"""Queues that feed themselves: routines, backlog promotion, the planner, active hours and the
spend-velocity breaker. `schedule` and `hours` are leaves (pure time arithmetic the config
validates with); the rest work through the store and the service."""
