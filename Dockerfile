# nima-rt serve on CPU: the HTTP scoring service with the bundled models (docs/guide/serve.md).
#
#   docker build -t nima-rt-serve .
#   docker run --rm -p 8000:8000 nima-rt-serve                      # the bundled default models
#   docker run --rm -p 8000:8000 nima-rt-serve --host 0.0.0.0 --max-batch 8   # options replace CMD's
#
# The GPU variant (base image, extra, run flags) is in docs/guide/serve.md#gpu. tests/apps/test_serve_install.py
# runs this file's install, start and health-check commands in a clean virtual environment.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nima_rt nima_rt
COPY train train
COPY export export
RUN python -m venv /opt/nima-rt && /opt/nima-rt/bin/pip install --no-cache-dir ".[serve]"

FROM python:3.11-slim
COPY --from=build /opt/nima-rt /opt/nima-rt
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin nima
ENV PATH=/opt/nima-rt/bin:$PATH PYTHONUNBUFFERED=1
USER nima
WORKDIR /home/nima
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
ENTRYPOINT ["nima-rt", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8000"]
