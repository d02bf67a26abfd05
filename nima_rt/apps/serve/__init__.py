"""``nima-rt serve``: an HTTP scoring service with micro-batching (the ``serve`` extra: Starlette, uvicorn,
prometheus-client, python-multipart). docs/guide/serve.md.

- :mod:`.options`: the settings (``ServeOptions``); :mod:`.uploads`, :mod:`.multipart`: a request's
  images within the limits; :mod:`.batcher`: micro-batching across requests; :mod:`.metrics`:
  Prometheus; :mod:`.app`: the routes; :mod:`.server`: listening, uvicorn, graceful shutdown.
"""
