"""The JobSpec's sections, one module each; core/jobspec.py puts them together."""
