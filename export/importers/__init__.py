"""Importing peers' NIMA models (Keras HDF5, PyTorch state dicts) as contract models."""
