"""Agent auth: the key ring, tokens (the only jwt importer), agent auth, rotation, secret files."""
