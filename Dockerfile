# syntax=docker/dockerfile:1
# reconciler as a container image, for pipelines that prefer images to `pipx install`:
#
#   docker build -t reconciler .
#   docker run --rm -v "$PWD:/work" reconciler validate manifests/
#   docker run --rm -v "$PWD:/work" -e AZURE_CLIENT_ID -e AZURE_TENANT_ID -e AZURE_FEDERATED_TOKEN_FILE \
#     reconciler plan manifests/
#
# Two stages: the builder makes the wheel of this checkout and of every dependency; the final
# stage installs only those wheels (no index, no compilers, no source tree) and runs as a
# non-root user. Pin the base image by digest (PYTHON_IMAGE=...@sha256:...) for reproducible builds.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY reconciler/ reconciler/
RUN python -m pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The wheels are bind-mounted, not copied: they never become a layer of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --root-user-action=ignore --no-index --find-links /wheels managed-identity-reconciler \
    && useradd --create-home --uid 10001 --user-group reconciler
USER 10001:10001
WORKDIR /work
LABEL org.opencontainers.image.title="reconciler" \
      org.opencontainers.image.description="Declarative reconciler for Azure managed identities, federated credentials and role assignments" \
      org.opencontainers.image.source="https://github.com/OWNER/reconciler" \
      org.opencontainers.image.licenses="MIT"
ENTRYPOINT ["reconciler"]
CMD ["--help"]
