# syntax=docker/dockerfile:1
# reconciler as a container image, for pipelines that prefer images to `pipx install`:
#
#   docker build -t reconciler .
#   docker run --rm -v "$PWD:/work" reconciler validate manifests/
#   docker run --rm -v "$PWD:/work" -u "$(id -u):$(id -g)" -e AZURE_CLIENT_ID -e AZURE_TENANT_ID \
#     -e AZURE_FEDERATED_TOKEN_FILE reconciler plan manifests/ --out plan.json
#
# It runs as uid 10001; `-u "$(id -u):$(id -g)"` lets it write (plan files, reports) into the
# mounted directory as you.
#
# Two stages: the builder makes the wheel of this checkout and installs it, with its dependencies
# as wheels, into the venv /opt/reconciler (without pip); the final stage gets only that venv:
# no source tree, no wheels, no build tools, no compilers (python:3.11-slim has none), and runs
# as a non-root user. (Not `RUN --mount=type=bind,from=build`: podman reuses such layers from its
# cache with stale or missing files, containers/podman#16281 and #17119.)
# Pin the base image by digest (--build-arg PYTHON_IMAGE=...@sha256:...) for reproducible builds.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY reconciler/ reconciler/
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/reconciler \
    && python -m pip --python /opt/reconciler/bin/python install --only-binary :all: /wheels/*.whl

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/reconciler/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 --user-group reconciler
COPY --from=build /opt/reconciler /opt/reconciler
USER 10001:10001
WORKDIR /work
LABEL org.opencontainers.image.title="reconciler" \
      org.opencontainers.image.description="Declarative reconciler for Azure managed identities, federated credentials and role assignments" \
      org.opencontainers.image.source="https://github.com/OWNER/reconciler" \
      org.opencontainers.image.licenses="MIT"
ENTRYPOINT ["reconciler"]
CMD ["--help"]
