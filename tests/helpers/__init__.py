"""Shared test helpers, one module per job: paths, processes, client (HTTP, scrapes),
prometheus (promtool, Prometheus), certs (test PKI), flows (mitmproxy test flows),
deploy_files (Dockerfile, compose, Kubernetes manifests)."""
