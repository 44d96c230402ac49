"""The JobSpec's sections, one module each; core/specs/job.py puts them together."""
