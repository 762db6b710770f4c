# syntax=docker/dockerfile:1

# --- builder: resolve and install everything into a self-contained virtualenv -----------------
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package needs, so edits to tests or docs do not invalidate this layer.
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY connectors/ connectors/
COPY conversation/ conversation/
RUN pip install --upgrade pip && pip install .

# --- runtime: the virtualenv, the default config, and nothing to build with -------------------
FROM python:3.11-slim
# A container is reached from outside itself, so the gateway listens on every interface.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMNIGATEWAY_GATEWAY__HOST=0.0.0.0 \
    OMNIGATEWAY_GATEWAY__PORT=8080 \
    OMNIGATEWAY_GATEWAY__DATA_DIR=/app/var
RUN groupadd --system --gid 10001 omnigateway \
 && useradd --system --uid 10001 --gid omnigateway --home-dir /app --shell /usr/sbin/nologin omnigateway
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY config/ config/
# The embedded Valkey (used when no redis_url is set) keeps its append-only file here.
RUN mkdir -p /app/var && chown omnigateway:omnigateway /app/var
VOLUME ["/app/var"]
USER omnigateway
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('OMNIGATEWAY_GATEWAY__PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
# Exec form: omnigateway is PID 1 and gets `docker stop`'s SIGTERM itself, so it drains first.
CMD ["omnigateway", "serve", "--config", "config/gateway.toml"]
