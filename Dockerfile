# sinch-sms-proxy as a container image: Python 3.12 + mitmproxy 12, every package pinned and
# hashed (deploy/docker/requirements.txt), running as an unprivileged user. Settings come from the
# SINCH_PROXY_* environment variables (sinch-sms-proxy --help lists them) or flags:
#   docker build -t sinch-sms-exporter:0.1.0 .
#   docker run -p 127.0.0.1:8080:8080 -p 19880:19880 sinch-sms-exporter:0.1.0 --upstream https://eu.sms.api.sinch.com
# The same image runs the simulator and the traffic generator (docker-compose.yml):
#   --entrypoint sinch-sms-simulator   /   --entrypoint python … -m sinch_sms_exporter.sim.traffic
# docs/deploy.md explains every choice; tests/test_image.py checks this file against the CLI.

ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm

# ---- build: a virtualenv with the project and its pinned dependencies -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY deploy/docker/requirements.txt deploy/docker/build-requirements.txt deploy/docker/
# Dependencies first (a layer that survives source edits); the wheel is built by a throwaway
# virtualenv with pinned setuptools/wheel (no unpinned build isolation), then installed alone.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir --require-hashes --requirement deploy/docker/build-requirements.txt \
 && python -m venv /opt/sinch \
 && /opt/sinch/bin/pip install --no-cache-dir --require-hashes --requirement deploy/docker/requirements.txt
COPY pyproject.toml README.md ./
COPY addon addon
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/sinch/bin/pip install --no-cache-dir --no-deps /wheels/*.whl \
 && /opt/sinch/bin/pip check

# ---- runtime --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sinch-sms-exporter" \
      org.opencontainers.image.description="mitmproxy sidecar: Sinch SMS API answers by status and error code, as Prometheus metrics" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it. mitmproxy keeps its CA in
# the confdir (created at start, even in reverse mode): the one directory that must be writable.
RUN groupadd --system --gid 10001 sinch \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/sinch --create-home --shell /usr/sbin/nologin sinch \
 && install --directory --owner 10001 --group 10001 --mode 0700 /home/sinch/.mitmproxy
COPY --from=build /opt/sinch /opt/sinch
# SINCH_PROXY_LISTEN_HOST=0.0.0.0: in a container, "localhost" is the container itself, so the
# CLI's 127.0.0.1 default would refuse every other container (compose services). The proxy
# still refuses clients from public addresses (mitmproxy's block_global); a Kubernetes sidecar,
# reached over the pod's loopback, sets it back to 127.0.0.1 (deploy/kubernetes/).
ENV PATH=/opt/sinch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SINCH_PROXY_LISTEN_HOST=0.0.0.0 \
    SINCH_PROXY_LISTEN_PORT=8080 \
    SINCH_PROXY_METRICS_HOST=0.0.0.0 \
    SINCH_PROXY_METRICS_PORT=19880 \
    SINCH_PROXY_CONFDIR=/home/sinch/.mitmproxy
USER 10001:10001
WORKDIR /home/sinch
# 8080: the proxy (the service's Sinch base URL); 19880: /metrics and /healthz.
EXPOSE 8080 19880
# No curl in the slim image: Python's urllib asks the metrics server, on the configured port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SINCH_PROXY_METRICS_PORT', '19880'), timeout=4)"]
ENTRYPOINT ["sinch-sms-proxy"]
