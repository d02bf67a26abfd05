"""Labelling app: collect 1-10 ratings from several raters and export them as training labels.

- :mod:`.database`: the SQLite (WAL) file and its tables, opened read-write (serve) or read-only (export).
- :mod:`.store`: images, raters, ratings and leases, and the rule that picks a rater's next photo.
- :mod:`.checks`: what a request may hold (rater names, scores, image ids) and the app's errors.
- :mod:`.guards`: Host, Origin/Sec-Fetch-Site, token and JSON-body checks of every request.
- :mod:`.app`: routes and content (the page in ``static/``, photos by id); :mod:`.server`: the HTTP server.
- :mod:`.export`: vote-count CSV for ``nima-rt train`` and a rater-agreement summary.
- :mod:`.cli`: ``nima-rt label serve | export``.

Nothing here imports torch; the server needs only the standard library.
"""
