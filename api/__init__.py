"""The HTTP API (FastAPI). Validates specs, writes rows, publishes job ids by task name."""
