"""Scoring: the Scorer, its backends (one module per runtime), GPU decode, ranking and metrics."""
