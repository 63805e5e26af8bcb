"""The plugins: each turns its inputs and the read model into proposals (pure functions)."""
