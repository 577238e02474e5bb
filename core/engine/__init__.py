"""The engine: when to wake an agent, what a heartbeat does, what to do about failures."""
