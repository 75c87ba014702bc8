"""Fixtures shared across the suite. Test helpers (plain functions) live in tests/helpers/.

Layout: tests/unit/ mirrors the package (tests/unit/classify/test_routes.py tests
sinch_sms_exporter/classify/routes.py); tests/e2e/ drives the real `sinch-sms-proxy` and
`mitmdump` processes; tests/monitoring/ runs promtool and a real Prometheus against the rules
and dashboards; tests/deploy/ checks the Dockerfile, compose file and Kubernetes manifests;
tests/tools/ and tests/bench/ cover the dev tools.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.certs import CA
from tests.helpers.processes import Process, running, start_simulator


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """A real `sinch-sms-simulator` process on a free port, one per test module."""
    with running(start_simulator(tmp_path_factory.mktemp("sim"))) as proc:
        yield proc


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CA:
    """A throwaway CA that issues loopback certificates (TLS upstreams, TLS /metrics)."""
    return CA(tmp_path_factory.mktemp("pki"))
