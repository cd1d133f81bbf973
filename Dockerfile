# syntax=docker/dockerfile:1
# tokensvc image: a wheel built in a throwaway stage, installed into a venv that is copied
# into a clean python:3.11-slim. No compiler, pip cache or source tree in the final image.
#   docker build -t registry.example.com/tokensvc:0.1.0 .
# Pin the base by digest in CI (python:3.11-slim@sha256:...) so every region runs the same bytes.
ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: build the project's wheel and install it with its dependencies into /opt/venv ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel needs (see .dockerignore): metadata and the pinned versions first, then
# the package. constraints.txt (make lock) pins every dependency and the build backend, so the
# image holds exactly the versions `make test` ran with.
COPY pyproject.toml README.md constraints.txt ./
COPY tokensvc/ ./tokensvc/
ENV PIP_CONSTRAINT=/src/constraints.txt
# Every dependency ships manylinux wheels (uvloop, cryptography, ...), so no build tools.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/tokensvc-*.whl \
    && /opt/venv/bin/pip uninstall --yes pip

# --- runtime ---
FROM ${PYTHON_IMAGE} AS runtime
# DL3064 matches "TOKEN" in the TOKENSVC_ prefix: this is a config path, not a secret.
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TOKENSVC_CONFIG_DIR=/etc/tokensvc/clients
# A fixed non-root uid/gid (10001) that the Helm chart's securityContext names too.
RUN groupadd --system --gid 10001 tokensvc \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin tokensvc
COPY --from=builder /opt/venv /opt/venv
# Only a default for `docker run`: the example is a dev client (never for production), so the
# service refuses it on 0.0.0.0 unless the demo opts in: `docker run -e TOKENSVC_ALLOW_DEV=true`.
# The Helm chart mounts its ConfigMap over this directory.
COPY --chown=root:root clients_config/ /etc/tokensvc/clients/
USER 10001:10001
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=2)"]
ENTRYPOINT ["tokensvc"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
