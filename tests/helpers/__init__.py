"""Helpers the tests share: tiny models, generated photos, hostile files, fakes, the layer check."""
