# newsarchive: slim Python, dependencies from the lock file, runs as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_HOME=/data/prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    NEWSARCHIVE_DATA_DIR=/data/state \
    NEWSARCHIVE_CONFIG=/config/sites.toml \
    PREFECT_RUNNER_SERVER_ENABLE=true \
    PREFECT_RUNNER_SERVER_HOST=127.0.0.1 \
    PREFECT_RUNNER_SERVER_PORT=8081

# Chromium only for sites with `screenshot = true` (about 300 MB): docker compose build
# --build-arg WITH_CHROMIUM=1. Without it such a site's pages are archived with a warning.
ARG WITH_CHROMIUM=0
RUN if [ "$WITH_CHROMIUM" = "1" ]; then \
        apt-get update && apt-get install -y --no-install-recommends chromium \
        && rm -rf /var/lib/apt/lists/*; \
    fi

RUN useradd --create-home --uid 10001 newsarchive \
    && mkdir -p /data /config \
    && chown newsarchive /data

WORKDIR /app
# Dependencies first, from the lock with hashes, so code changes reuse this layer.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY pyproject.toml README.md sites.toml ./
COPY normalize ./normalize
COPY storage ./storage
COPY spiders ./spiders
COPY flows ./flows
COPY browse ./browse
RUN pip install --no-deps . && cp sites.toml /config/sites.toml

USER newsarchive
WORKDIR /data
# `serve` is healthy while its runner keeps polling the Prefect server: Prefect's runner
# webserver (enabled above, on loopback only) answers /health with 503 once polls stop. Its
# port is not 8080, Prefect's default, which is `newsarchive browse`'s: a browse started in
# a serve container (`docker compose exec serve newsarchive browse`) must not meet it there.
# Other uses of this image (browse, a worker, the Prefect server) set health checks of
# their own in docker-compose.yml.
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/health', timeout=5)"]
ENTRYPOINT ["newsarchive"]
CMD ["serve"]
