"""Shared by the API, the worker and the CLI: settings, schema, job specs, queue names."""
