# Tokens Forge gateway image.
#   docker build -t tokens-forge .
#   docker run -p 8000:8000 -e TF_DATABASE_URL=postgresql://user:pw@host:5432/db -e TF_ADMIN_TOKEN=... tokens-forge
# TF_DATABASE_URL should always be set in a container: without it the gateway would start an embedded
# PostgreSQL inside the container (under TF_DATA_DIR), which is lost with the container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the wheel needs. pyproject.toml force-includes migrations/ into the wheel as
# tokens_forge/_migrations, so the installed package applies its own migrations at start-up.
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
RUN pip install . && rm -rf /app/src /app/migrations

RUN useradd --create-home --home-dir /home/forge --uid 10001 --shell /usr/sbin/nologin forge \
    && mkdir -p /data && chown forge:forge /data
USER forge
WORKDIR /home/forge

ENV TF_DATA_DIR=/data

EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# `serve` applies pending migrations, then serves with two worker processes.
CMD ["tokens-forge", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
