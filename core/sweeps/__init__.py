"""Sweeps: many jobs from one base spec, searched with Optuna (docs/sweeps.md)."""
