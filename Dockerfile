# syntax=docker/dockerfile:1.7
# One image for every Dynamo service: the command picks the service
#   docker run IMAGE serve inventory      docker run IMAGE migrate      docker run IMAGE --help
# Targets: runtime (default, the services), dev (adds the FTS3 stand-in of the test suite, for
# docker-compose), xrootd (an XRootD storage site for the local stack).
#
# gfal2 and its plugins come from Debian, whose python3-gfal2 is built for Debian's own Python
# 3.11: the image therefore uses Debian's interpreter (not python:3.11-slim, whose 3.11 has
# another build) and links that one module into the environment (as scripts/link-gfal2.sh
# does on a development machine), never the whole of dist-packages.

ARG DEBIAN_RELEASE=bookworm
# The uv that writes uv.lock on the development machines (a newer lock revision needs a newer uv).
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------- base: interpreter + gfal2
FROM debian:${DEBIAN_RELEASE}-slim AS base
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates python3 tini \
        gfal2 gfal2-plugin-file gfal2-plugin-xrootd gfal2-plugin-http python3-gfal2 \
        xrootd-client \
    && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------- build: the locked environment
FROM base AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON=/usr/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/dynamo \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-editable
RUN ln -s /usr/lib/python3/dist-packages/gfal2*.so \
        "$(/opt/dynamo/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/" \
    && /opt/dynamo/bin/python -c "import gfal2; gfal2.creat_context()" \
    && /opt/dynamo/bin/dynamo --help >/dev/null

# ---------------------------------------------------------------- runtime (default target last)
FROM base AS runtime
ARG DYNAMO_UID=10001
RUN groupadd --system --gid ${DYNAMO_UID} dynamo \
    && useradd --system --uid ${DYNAMO_UID} --gid dynamo --home-dir /var/lib/dynamo \
        --create-home --shell /usr/sbin/nologin dynamo
COPY --from=build /opt/dynamo /opt/dynamo
ENV PATH=/opt/dynamo/bin:$PATH \
    DYNAMO_HTTP_HOST=0.0.0.0 \
    DYNAMO_HTTP_PORT=8080 \
    DYNAMO_DATA_DIR=/var/lib/dynamo \
    DYNAMO_LOG_FORMAT=json \
    XRD_CONNECTIONRETRY=1 \
    XRD_CONNECTIONWINDOW=2
USER ${DYNAMO_UID}:${DYNAMO_UID}
WORKDIR /var/lib/dynamo
EXPOSE 8080
# Liveness only (the process answers); readiness (/readyz) is for orchestrators to ask.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DYNAMO_HTTP_PORT', '8080'), timeout=4)"]
# tini reaps children and forwards SIGTERM, so uvicorn shuts the service down gracefully.
ENTRYPOINT ["/usr/bin/tini", "--", "dynamo"]
CMD ["--help"]

# ---------------------------------------------------------------- dev: + the FTS3 stand-in
FROM runtime AS dev
COPY --chown=root:root tests/__init__.py /opt/dynamo-dev/tests/__init__.py
COPY --chown=root:root tests/fts3_standin /opt/dynamo-dev/tests/fts3_standin
ENV PYTHONPATH=/opt/dynamo-dev

# ---------------------------------------------------------------- xrootd: a storage site
FROM debian:${DEBIAN_RELEASE}-slim AS xrootd
RUN apt-get update \
    && apt-get install -y --no-install-recommends xrootd-server xrootd-client \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data /run/xrootd \
    && chown xrootd:xrootd /data /run/xrootd
USER xrootd
EXPOSE 1094
ENTRYPOINT ["xrootd"]
CMD ["-c", "/etc/xrootd/site.cfg", "-n", "site"]

# The image built without --target is the services' image.
FROM runtime
