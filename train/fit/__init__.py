"""Fitting: the trainer, its stages, loss, run folders, devices and configuration."""
