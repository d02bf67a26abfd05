"""Labelling app: collect 1-10 ratings from several raters and export them as training labels.

- :mod:`.store`: the SQLite (WAL) database of images, raters and ratings, and the assignment rule.
- :mod:`.server`: a small standard-library HTTP server and the rating page (``static/``).
- :mod:`.export`: vote-count CSV for ``nima-rt train`` and a rater-agreement summary.
- :mod:`.cli`: ``nima-rt label serve | export``.

Nothing here imports torch; the server needs only the standard library.
"""
