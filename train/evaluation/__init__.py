"""Evaluation: metrics on held-out labels, plots, graded and cross-source tables, baselines, feature visualisation.
"""
