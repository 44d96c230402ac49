"""Uploaded datasets: parsing and validating what users bring (npz, csv, MNIST IDX, image
folders), before core/dataset_store.py stores it."""
