"""The `traindock` console script."""
