"""A strict, in-process stand-in for the Telegram Bot API, for tests, the demo and benchmarks."""
