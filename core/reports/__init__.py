"""Read models behind /status, /costs and the digest."""
